"""`live_quality_state`: running scorecards and task posteriors, a few seconds behind the DB.

The asset reads the annotation DB's changes since the stream position stored in the lake and
the landing-zone export files not yet folded in, folds them into each project's live state
(`loop.live.update`), writes the resulting requests and blocks to the annotation DB, and
commits the states, the new stream position and the record of folded files together
(`Lake.commit`): each project's new ledger segment, its tasks and annotators, `state.json`
listing the segments, the segments a compaction merged away deleted. Exactly once follows
from that: a run that dies before its commit leaves the old position, record and segment
list, and the next run reads the same rows and files again; the ledger drops what it already
holds, and a file whose content hash is recorded is not read twice. An edited file is read
whole, and the judgments it no longer has are withdrawn; a removed file takes nothing back.
Runs may overlap (the sensor launches the next while one works); the annotation DB's advisory
lock lets one at a time read, update and commit.

A block the annotation tool revoked (`annotator_actions.status = 'revoked'`) is read in the
same window as the judgments and lifted in the run (`loop.live.update`'s `reversals`; a kind's
block, whose evidence names its kind, by that kind's state: `loop.live_kinds.update_kind`); the
run reports the annotators it unblocked (`unblocked`, and `kind_unblocked` per project/kind)
and logs each.

The quality team's gold sets (`gold/<project>/`) reach the live state as the daily layers
read them: the table `gold_sets` stages in the lake is read again whenever it changes, each
gold row naming its gold-set file, and every gold-set file given then or before is read whole,
so gold a set no longer gives (or a set removed) is withdrawn. A gold task, whatever gave its
gold, is answered with the gold at confidence 1 and never requested, in every kind.

The daily layers stay the record of truth: when a day's `aggregated_labels` materializes, the
sensor names the day in the next run, which re-bases that day's tasks on it (`loop.live.rebase`),
so at the end of a day the live labels are the daily labels (a gold task keeps its gold).

Every other kind (multilabel, numeric, ranking, pairwise, spans, boxes, text) arrives in export
files and in the DB's judgments and gold tables (a row's `kind` and its value columns). The
same run folds the rows of those kinds into one state per (project, kind) (`loop.live_kinds`,
under `live/<project>/kinds/<kind>/`), never into the categorical state, writes their requests
and blocks in the same DB write and commits them in the same `Lake.commit`, so exactly once
holds for them too: a DB row is versioned by its `updated_at` (read again in the overlap, it
counts once; an update replaces it), and a file's rows by the file. A file's record names the
kinds it held, so an edit that drops a kind still withdraws it; a DB tombstone names no kind,
so the run looks up which kind state holds its row (by ids alone), and that state withdraws it
(`loop.live_kinds.held_deletions`); the categorical state gets every tombstone, since one id
can be held by both (a state written before kind changes were followed).
A numeric DB row off the scale its project declares in the DB (`projects.scale`) is set aside
by the extract and counted (`outside_scale`); an edit that moved a folded row off it, and a
scale declared or changed later, withdraw what the numeric state holds of it once
(`outside_scale_withdrawn`; the scales taken in are recorded with the stream position,
`DB_SCALES_KEY`). An export's project.json scale that disagrees with the DB's keeps the
project's files out, naming both (`file_scale`); a file is read with the DB's scale where its
project.json declares none, and read again when the DB's scale of its project changes.
A DB row the tool moved to another project or kind, or both (`UPDATE judgments SET project =
..., kind = ...`; a gold label the same way) is withdrawn from the state that held it,
categorical or of any kind, as a deleted row is: the judgments and gold tasks new to a
receiving state are looked up in every other stored state (`loop.moves.moved`), whose
projects and kinds the lake records (`live/_stream/projects.json`, listed once when absent, and
the kinds index). So are the DB's tombstones and its rows set aside off a scale, which name the
row's project now (`loop.moves.departures`): a row moved and then deleted, or moved off a scale,
between two runs leaves the state holding its earlier version.
When a day's `kind_aggregated_labels` materializes, the sensor names the day in the next run
(as for `aggregated_labels`): each of that day's tasks whose votes the daily fit saw exactly
takes the daily answer (`loop.live_kinds.rebase_kind`), so at the end of a day the live kind
labels are the daily kind labels too, and every kind state records a request for a full refit
of its annotator parameters. The runs never fit a kind state whole but for its first fit: a
full fit due (that request, or the growth rule of `KindLiveOptions`) is left to
`live_kind_fit_job` (`assets.live.kind_fits`), which the live sensor launches; it re-applies the
recorded re-base days after the fit.
"""

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from logging import Logger

import polars as pl
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from annotation_pipelines.ingest import ingest_bytes
from annotation_pipelines.ingest.command import where_in_export
from annotation_pipelines.ingest.postgres import DELETIONS, GOLD_DELETIONS, MIGRATION_FIX
from annotation_pipelines.ingest.result import set_aside_case_twins
from annotation_pipelines.ingest.tables import path_line_ids, project_mapping
from annotation_pipelines.ingest.validation import (
    OUTSIDE_SCALE,
    project_coordinates,
    project_label_set,
)
from annotation_pipelines.kinds import of_kind
from annotation_pipelines.lake import quarantine_key, staging_prefix, staging_source
from annotation_pipelines.loop.live import (
    ANNOTATOR_ACTIONS,
    FILES_KEY,
    LIVE_COMPACTION,
    STREAM_PREFIX,
    TASK_REQUESTS,
    LiveEvents,
    LiveOptions,
    LiveState,
    OpenSegment,
    content_hash,
    due_reversals,
    file_rows,
    files_object,
    load_files,
    load_projects,
    load_state,
    load_stream,
    load_touched,
    projects_object,
    rebase,
    requests_update,
    restamp_requests,
    state_objects,
    state_prefix,
    stream_files,
    update_projects,
)
from annotation_pipelines.loop.live_kinds import (
    KindLiveOptions,
    KindState,
    due_kind_reversals,
    held_deletions,
    kind_db_rows,
    kind_file_rows,
    kind_prefix,
    kind_requests_update,
    kind_state_objects,
    kinds_index_object,
    load_kind_state,
    load_kinds_index,
    merged_events,
    rebase_kind_projects,
    refused_by_scale,
    settled_frame,
    states_holding,
    update_kind_projects,
)
from annotation_pipelines.loop.moves import DEPARTING, GOLD_DEPARTING, departures, moved
from annotation_pipelines.loop.policy import RECOMMENDED
from annotation_pipelines.loop.writeback import LiveLock, LiveLockLost, StateWrite
from annotation_pipelines.scale import RatingScale, agreed_scale, project_scale
from annotation_pipelines.schema import QUARANTINE
from annotation_pipelines.tabular import InputError, data_row_lines, unpacked
from assets.common.alerts import alert_objects, announce_alerts
from assets.common.metadata import figure
from assets.live.compaction import live_projects
from assets.sources.assets import projects_staged
from resources.annotation_db import AnnotationDatabase
from resources.lake import Lake, parquet_bytes
from resources.landing import (
    ExportFile,
    LandingZone,
    parse_export_path,
    project_settings_path,
)

# The daily table the live state is re-based on at the end of a day.
DAILY_LABELS = "aggregated_labels"
# The same for the other kinds (`loop.live_kinds.rebase_kind`).
KIND_DAILY_LABELS = "kind_aggregated_labels"
# The columns the live engine reads from a batch of judgments / gold labels.
_JUDGMENT_COLUMNS = (
    "judgment_id",
    "task_id",
    "project",
    "annotator_id",
    "label",
    "submitted_at",
    "duration_s",
    "updated_at",
    "source",
)

LIVE_GROUP = "live"
# The lake's quarantine source of the rows the live runs set aside from the annotation DB.
LIVE_QUARANTINE_SOURCE = "annotation_db_live"
# The scales the annotation DB's projects declared (`projects.scale`) when the live state last
# took them in: a scale declared or changed since withdraws the DB's answers it refuses.
DB_SCALES_KEY = f"{STREAM_PREFIX}/db_scales.json"
# The key column each table of the annotation DB names a row by.
_ROW_KEYS = {"judgments": "judgment_id", "gold_labels": "task_id", "raw_tasks": "task_id"}


def unblock_lines(
    reversals: pl.DataFrame,
    unblocked: dict[str, list[str]],
    min_judgments: int,
    kind: str | None = None,
) -> list[str]:
    """One line per annotator a reversal unblocked in this run: who, who revoked, when (and
    of which kind's state, for a kind's block)."""
    lines = []
    for project, annotators in sorted(unblocked.items()):
        where = project if kind is None else f"{project} ({kind})"
        for annotator in annotators:
            row = (
                reversals.filter(
                    (pl.col("project") == project) & (pl.col("annotator_id") == annotator)
                )
                .sort("revoked_at")
                .row(-1, named=True)
            )
            lines.append(
                f"{where}: annotator {annotator} unblocked (block revoked by "
                f"{row['revoked_by']} at {row['revoked_at'].isoformat()}): their judgments "
                f"count again; a new block needs {min_judgments} judgments after it"
            )
    return lines


def quarantine_lines(quarantined: pl.DataFrame, limit: int = 5) -> list[str]:
    """The first `limit` rows set aside, each as `table key=value: field: reason`, and how many
    more. The key is read from the row's `raw` text, where the DB's columns come in table
    order (the key first), so it is there even when a long row's text was cut."""
    lines = []
    for row in quarantined.head(limit).iter_rows(named=True):
        column = _ROW_KEYS.get(row["table"], "task_id")
        found = re.search(rf'"{column}":("(?:[^"\\]|\\.)*"|null)', row["raw"] or "")
        value = json.loads(found.group(1)) if found else None
        lines.append(f"{row['table']} {column}={value!r}: {row['field']}: {row['reason']}")
    if quarantined.height > limit:
        lines.append(f"... and {quarantined.height - limit} more row(s)")
    return lines


# How many rows an export's ingest set aside a live run logs one by one.
FILE_QUARANTINE_SHOWN = 5


def file_quarantine_lines(
    quarantined: pl.DataFrame,
    limit: int = FILE_QUARANTINE_SHOWN,
    *,
    lines: Mapping[tuple[str, int], int] | None = None,
) -> list[str]:
    """The first `limit` rows an export's ingest set aside, each as `file, where: field:
    reason` (where as the `ingest` command names it, `lines` giving the line a row of a
    delimited file really starts on: `FileBatch.lines`), and how many more."""
    lines = lines or {}
    out = []
    for row in quarantined.head(limit).iter_rows(named=True):
        parsed = parse_export_path(row["source_file"])
        line = lines.get((row["source_file"], row["source_line"]))
        where = where_in_export(parsed[1] if parsed else "", row["source_line"], line=line)
        out.append(f"{row['source_file']}, {where}: {row['field']}: {row['reason']}")
    if quarantined.height > limit:
        out.append(f"... and {quarantined.height - limit} more row(s)")
    return out


def scale_key(scale: RatingScale) -> str:
    """A scale as its record names it: exact, where `describe` rounds."""
    return json.dumps([scale.low, scale.high, scale.step, scale.integer])


def file_scale(
    project: str, settings: Mapping[str, object], db_scales: Mapping[str, RatingScale]
) -> RatingScale | None:
    """The scale `project`'s export files are read with: its project.json's, or the one the
    annotation DB declares (`projects.scale`) where project.json declares none, as the daily
    kind aggregation sets their answers aside; where both declare one the two must be the same
    (`scale.agreed_scale`: a ValueError naming both otherwise)."""
    source = project_settings_path(project)
    declared = project_scale(settings, source=source)
    return agreed_scale(declared, db_scales.get(project), source=source, project=project)


def db_scale_key(project: str, db_scales: Mapping[str, RatingScale]) -> str:
    """The annotation DB's scale of `project` as a file's record names it ("" for none)."""
    scale = db_scales.get(project)
    return "" if scale is None else scale_key(scale)


def rescaled(
    read: Callable[[str], bytes | None],
    scales: Mapping[str, RatingScale],
    *,
    at: datetime,
    loaded: dict[tuple[str, str], KindState] | None = None,
) -> tuple[dict[str, str], pl.DataFrame, pl.DataFrame]:
    """(the record of `scales` to commit, tombstones of the DB's numeric judgments and gold
    the live state holds that a scale declared or changed since the last record refuses:
    `refused_by_scale`). The first run that reads a DB with scales (no record yet) checks
    every project declaring one, an idempotent resync. A scale removed or widened withdraws
    nothing, and brings back nothing an earlier scale set aside. The numeric states it loads
    are put in `loaded`, for the run to apply the tombstones to without loading them again."""
    raw = read(DB_SCALES_KEY)
    recorded = {} if raw is None else dict(json.loads(raw))
    record = {project: scale_key(scale) for project, scale in sorted(scales.items())}
    judged = [pl.DataFrame(schema=DELETIONS)]
    golden = [pl.DataFrame(schema=GOLD_DELETIONS)]
    changed = [project for project, key in record.items() if recorded.get(project) != key]
    index = load_kinds_index(read) if changed else {}
    for project in changed:
        if "numeric" not in index.get(project, ()):
            continue
        state = load_kind_state(project, "numeric", read)
        if loaded is not None:
            loaded[(project, "numeric")] = state
        refused, refused_gold = refused_by_scale(state, scales[project], at=at)
        judged.append(refused)
        golden.append(refused_gold)
    return (
        record,
        pl.concat(judged, how="vertical_relaxed").cast(pl.Schema(DELETIONS)),
        pl.concat(golden, how="vertical_relaxed").cast(pl.Schema(GOLD_DELETIONS)),
    )


class KindThresholds(Config):
    """The block and policy settings the non-categorical kinds read, shared by the live runs
    (`LiveConfig`) and the kinds' full-fit runs (`kind_fits.KindFitConfig`)."""

    min_judgments: int = 30
    min_gold: int = 10
    # The policy defaults are `policy.RECOMMENDED`, as in the replay.
    min_votes: int = RECOMMENDED.min_votes
    max_votes: int = RECOMMENDED.max_votes
    # The other kinds' block floors (the daily kind scorecards' defaults) and how many
    # versions a kind state carries its annotator parameters before a full refit.
    kind_min_gold_score: float = KindLiveOptions.min_gold_score
    kind_min_consensus_alpha: float = KindLiveOptions.min_consensus_alpha
    kind_full_fit_every: int = KindLiveOptions.full_fit_every

    def kind_options(self) -> KindLiveOptions:
        """The same block and policy settings for the other kinds; each kind's target is its
        `KIND_TARGETS` entry (the daily layer's), not the categorical one."""
        return KindLiveOptions(
            min_judgments=self.min_judgments,
            min_gold=self.min_gold,
            min_gold_score=self.kind_min_gold_score,
            min_consensus_alpha=self.kind_min_consensus_alpha,
            full_fit_every=self.kind_full_fit_every,
            # A full fit takes seconds over a large ledger: the maintenance job runs it.
            inline_full_fits=False,
            policy=replace(RECOMMENDED, min_votes=self.min_votes, max_votes=self.max_votes),
        )


class LiveConfig(KindThresholds):
    """Set by the sensor; the thresholds are the project lead's (see `LiveOptions`)."""

    until: str | None = Field(
        default=None,
        description="Window end the sensor saw (informational: the run reads to the DB's safe "
        "bound when it takes the lock, or a slice of a backlog: `live_max_rows`).",
    )
    min_gold_accuracy: float = 0.6
    max_spammer_score: float = 0.8
    min_agreement: float = 0.6
    target_confidence: float = RECOMMENDED.target_confidence
    rebase_days: list[str] = Field(
        default_factory=list,
        description="Days whose aggregated_labels just materialized: re-base their tasks on it.",
    )
    kind_rebase_days: list[str] = Field(
        default_factory=list,
        description="Days whose kind_aggregated_labels just materialized: re-base their kind "
        "tasks on it.",
    )

    def options(self) -> LiveOptions:
        return LiveOptions(
            min_judgments=self.min_judgments,
            min_gold=self.min_gold,
            min_gold_accuracy=self.min_gold_accuracy,
            max_spammer_score=self.max_spammer_score,
            min_agreement=self.min_agreement,
            policy=replace(
                RECOMMENDED,
                min_votes=self.min_votes,
                max_votes=self.max_votes,
                target_confidence=self.target_confidence,
            ),
        )


def stream_position(lake: Lake) -> tuple[bytes | None, bytes | None]:
    """The committed change-stream position and record of folded files, as stored: every live
    run's commit rewrites them, so they change whenever another run has committed."""
    return lake.get_if_exists(f"{STREAM_PREFIX}/watermark.json"), lake.get_if_exists(FILES_KEY)


def fence(lock: LiveLock, lake: Lake, position: tuple[bytes | None, bytes | None]) -> None:
    """Refuse to commit unless this run still holds the live lock and no other run committed
    since it read the state (`position`).

    A session that dropped (a partition, a terminated backend) has lost its lock, and another
    run may have taken it: committing then would overwrite that run's state with one built
    from an older version. The run fails instead and folds nothing; its rows and files are
    still after the committed position, so the next run folds them, once. What is left is
    the milliseconds between this check and the commit's marker: a lock lost in between is
    noticed only by the keepalives, ~25 s later, when any taker is still reading.
    """
    lock.verify()
    if stream_position(lake) != position:
        raise LiveLockLost(
            "the live state was committed by another run while this one held the lock; "
            "not committing: the next run folds these rows"
        )


def _opener(lake: Lake) -> OpenSegment:
    """Segments opened for lookups that read only the row groups which may hold what they
    look for: in place on a local lake, by byte ranges on an object store."""

    def open_segment(key: str) -> pq.ParquetFile:
        try:
            return lake.open_parquet(key)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{key} missing: the state lists it") from error

    return open_segment


def _load_states(
    lake: Lake,
    projects: set[str],
    judgments: pl.DataFrame,
    gold: pl.DataFrame,
    resynced: dict[str, list[str]],
    *,
    whole: bool,
    deleted: pl.DataFrame,
    deleted_gold: pl.DataFrame,
) -> dict[str, LiveState]:
    """Each project's state: the part its batch touches (`load_touched`), so a run's reads do
    not grow with the history held; the whole state when a re-base is due (it recounts from
    every task and judgment)."""
    read = lake.get_if_exists
    if whole:
        return {project: load_state(project, read) for project in sorted(projects)}
    return {
        project: load_touched(
            project,
            read,
            judgments=judgments.filter(pl.col("project") == project),
            gold=gold.filter(pl.col("project") == project),
            resynced=resynced.get(project, ()),
            open_segment=_opener(lake),
            deleted=deleted.filter(pl.col("project") == project),
            deleted_gold=deleted_gold.filter(pl.col("project") == project),
        )
        for project in sorted(projects)
    }


def pending_files(landing: LandingZone, folded: dict[str, dict[str, str]]) -> list[str]:
    """`path@fingerprint` of every export whose listing, or whose project's settings, differ
    from the folded record (the annotation DB's scales, which the sensor does not read, are
    compared by the run)."""
    scan = landing.scan_export_zone()
    return [
        f"{export.path}@{export.fingerprint}"
        for export in scan.exports
        if not _folded_as_listed(folded.get(export.path, {}), export, scan.settings)
    ]


def _folded_as_listed(
    record: Mapping[str, str],
    export: ExportFile,
    settings: Mapping[str, str],
    db_scale: str | None = None,
) -> bool:
    """Whether `record` folded `export` as listed now, under its project's settings as they
    are now: a label set or scale declared or changed after a file was folded applies to it
    (a record without settings was folded without a project.json), and so does a scale the
    annotation DB declares or changes (`db_scale`, `db_scale_key`; None: not compared)."""
    return (
        record.get("fingerprint") == export.fingerprint
        and record.get("settings", "") == settings.get(export.project, "")
        and (db_scale is None or record.get("db_scale", "") == db_scale)
    )


@dataclass(frozen=True)
class FileBatch:
    """What the export files not folded in yet hold."""

    judgments: pl.DataFrame
    gold: pl.DataFrame
    # project → the files read whole (new or edited): their rows are the file's every judgment.
    resynced: dict[str, list[str]]
    # The same for the other kinds (`loop.live_kinds`), keyed by (project, kind).
    kind_judgments: pl.DataFrame
    kind_gold: pl.DataFrame
    kind_resynced: dict[tuple[str, str], list[str]]
    paths: list[str]
    # The rows the files' ingest set aside (a label outside the label set, an answer outside
    # the declared scale, ...): never folded in, and counted in the run's metadata.
    quarantine: pl.DataFrame
    # file → its rows set aside because their project differs only in case from a known one.
    case_twins: dict[str, int] = field(default_factory=dict)
    # (file, source_line) → the line the row starts on, for the quarantined CSV/TSV rows the
    # run logs: a quoted cell over two lines puts later rows below their stored line.
    lines: dict[tuple[str, int], int] = field(default_factory=dict)


class ProjectSpellings:
    """The known spellings of project names, against which a live run checks its export files'
    projects (`set_aside_case_twins`). A known name is never a twin itself, so each of
    `sources` (cheapest first: the live states' projects, then the lake's staged ones, which
    cost a read of every staged file) is asked only once a file holds a project none of the
    names known so far spell exactly. The projects of each file folded are added as it goes."""

    def __init__(self, *sources: Callable[[], Iterable[str]]) -> None:
        self._sources = list(sources)
        self.names: set[str] = set()

    def covering(self, projects: Collection[str]) -> set[str]:
        """The names known, after asking as many sources as it takes to know `projects` (or
        every source, when some of them are new)."""
        while self._sources and not set(projects) <= self.names:
            self.names |= set(self._sources.pop(0)())
        return self.names

    def add(self, projects: Iterable[str]) -> None:
        self.names |= set(projects)


def _fold_files(
    landing: LandingZone,
    folded: dict[str, dict[str, str]],
    *,
    read_at: datetime,
    log: Logger,
    db_scales: Mapping[str, RatingScale] | None = None,
    spellings: ProjectSpellings | None = None,
) -> FileBatch:
    """The rows of the export files not folded in yet; `folded` updated.

    A file is identified by its content hash: one touched without a change is only
    re-fingerprinted. A file read again after an edit is read whole, so its judgments that the
    new version no longer has are withdrawn from the live state (`update(resynced=...)`), as
    the ingest restages the file for the daily layers. A file removed from the landing zone
    takes nothing back, as in the daily layers: the landing zone is where files are dropped,
    and clearing it out retracts nothing; an edited (or emptied) version does, gold included:
    its gold rows carry the file in `source`, so the gold it no longer gives is withdrawn. A
    file the live loop cannot read is recorded with its error and skipped (the ingest sensor
    reports it and retries it for the daily layers), so it never stalls the live state; its
    rows stay as the last readable version gave them. A file is read again whole when its
    project's settings (project.json) change, as the ingest restages it: answers a new label
    set or scale refuses are withdrawn, and a file refused for bad settings is retried. A
    project.json scale that disagrees with the annotation DB's (`db_scales`) is such a bad
    setting (`file_scale`), and a file is read again when the DB's scale of its project is
    declared, changed or removed: a file it refused is retried, and a folded file's answers
    off a scale the DB declares later are withdrawn.

    A row whose project differs only in case from one `spellings` knows (a live state's, a
    staged one's, an earlier file's of this run) is set aside as the daily ingest sets it
    aside (`set_aside_case_twins`: reason `invalid_project`, its field naming the other
    spelling), never folded: on a case-insensitive disk the two would share one folder. A
    project both spellings of which are known already (folded before this check) stays.
    """
    spellings = spellings or ProjectSpellings()
    twins: dict[str, int] = {}
    lines: dict[tuple[str, int], int] = {}
    judgments, gold, kind_judgments, kind_gold = [], [], [], []
    quarantine: list[pl.DataFrame] = []
    resynced: dict[str, list[str]] = {}
    kind_resynced: dict[tuple[str, str], list[str]] = {}
    paths: list[str] = []
    scan = landing.scan_export_zone()
    for export in scan.exports:
        record = folded.get(export.path, {})
        db_scale = db_scale_key(export.project, db_scales or {})
        if _folded_as_listed(record, export, scan.settings, db_scale):
            continue
        settings_version = scan.settings.get(export.project, "")
        data = landing.read_bytes(export.path)
        digest = content_hash(data)
        if (
            record.get("sha256") == digest
            and record.get("settings", "") == settings_version
            and record.get("db_scale", "") == db_scale
        ):
            folded[export.path] = {**record, "fingerprint": export.fingerprint}
            continue
        try:
            state_prefix(export.project)
            settings = landing.project_settings(export.project)
            source = project_settings_path(export.project)
            mapping = project_mapping(settings, source=source)
            label_set = project_label_set(settings, source=source)
            coordinates = project_coordinates(settings, source=source)
            # Unpacked as the commands unpack a `.gz` export: the parsers' checks read the bytes.
            content = unpacked(data, name=export.path)
            result = ingest_bytes(
                content,
                format=export.format,
                source_file=export.path,
                project=export.project,
                label_set=label_set,
                scale=file_scale(export.project, settings, db_scales or {}),
                mapping=mapping,
                coordinates=coordinates,
            )
        except (InputError, ValueError) as error:
            log.warning(f"{export.path}: not folded into the live state: {error}")
            folded[export.path] = {
                "fingerprint": export.fingerprint,
                "sha256": digest,
                "settings": settings_version,
                **({"db_scale": db_scale} if db_scale else {}),
                "error": str(error)[:500],
                # What its last readable version gave stays; its next one resyncs those kinds.
                "kinds": ",".join(sorted(_recorded_kinds(record))),
            }
            continue
        projects = {
            *result.judgments.get_column("project").drop_nulls().to_list(),
            *result.gold.get_column("project").drop_nulls().to_list(),
        }
        checked = set_aside_case_twins(result, spellings.covering(projects))
        if checked is not result:
            set_aside = checked.quarantine.slice(result.quarantine.height)
            twins[export.path] = set_aside.height
            log.warning(
                f"live: {export.path}: {set_aside.height} row(s) not folded whose project "
                "differs only in case from another's (one folder on a case-insensitive disk): "
                + "; ".join(sorted(set(set_aside.get_column("field").to_list())))
            )
            result = checked
        spellings.add(result.judgments.get_column("project").drop_nulls().to_list())
        spellings.add(result.gold.get_column("project").drop_nulls().to_list())
        # Named by path as the daily layer names them (`landing_exports`): the ledger keys a
        # judgment by its id alone, and the next day's file of the same name in another folder
        # must not replace these votes.
        if result.quarantine.height:
            # Counted while the file's bytes are at hand, for the rows the run will log only.
            logged = FILE_QUARANTINE_SHOWN - sum(frame.height for frame in quarantine)
            if logged > 0 and export.format in ("csv", "tsv"):
                stored = result.quarantine.head(logged).get_column("source_line").drop_nulls()
                starts = data_row_lines(content, export.format, [n - 1 for n in stored])
                lines.update({(export.path, row + 1): at for row, at in starts.items()})
            quarantine.append(result.quarantine)
        judged = path_line_ids(result.judgments)
        rows, golden = file_rows(judged, result.gold, read_at=read_at, source=export.path)
        kind_rows, kind_golden = kind_file_rows(
            judged, result.gold, read_at=read_at, source=export.path
        )
        kinds = _kinds_of(rows, kind_rows)
        # A file is resynced for each kind it holds now or held before (an edit may drop one).
        before = _recorded_kinds(record)
        if "categorical" in kinds | before:
            judgments.append(rows)
            gold.append(golden)
            resynced.setdefault(export.project, []).append(export.path)
        for kind in sorted((kinds | before) - {"categorical"}):
            kind_resynced.setdefault((export.project, kind), []).append(export.path)
        if kind_rows.height:
            kind_judgments.append(kind_rows)
        if kind_golden.height:
            kind_gold.append(kind_golden)
        paths.append(export.path)
        folded[export.path] = {
            "fingerprint": export.fingerprint,
            "sha256": digest,
            "settings": settings_version,
            **({"db_scale": db_scale} if db_scale else {}),
            "kinds": ",".join(sorted(kinds)),
        }
    return FileBatch(
        judgments=pl.concat(judgments) if judgments else pl.DataFrame(),
        gold=pl.concat(gold) if gold else pl.DataFrame(),
        resynced=resynced,
        kind_judgments=pl.concat(kind_judgments, how="vertical_relaxed")
        if kind_judgments
        else pl.DataFrame(),
        kind_gold=pl.concat(kind_gold, how="vertical_relaxed") if kind_gold else pl.DataFrame(),
        kind_resynced=kind_resynced,
        paths=sorted(paths),
        quarantine=pl.concat(quarantine) if quarantine else pl.DataFrame(schema=QUARANTINE),
        case_twins=twins,
        lines=lines,
    )


# The quality team's gold sets as the `gold_sets` asset stages them for the daily layers (one
# table, replaced whole), and their entry in the record of folded files, whose other keys are
# landing paths (`exports/...`).
GOLD_SETS = "gold_sets"


def staged_gold_sets(lake: Lake) -> list[str]:
    """The lake's staged gold-set tables: the gold the daily layers read besides the exports'
    and the annotation DB's, which the live runs read as they are."""
    return sorted(
        key
        for key in lake.list_keys(staging_prefix("gold_labels"))
        if key.endswith(".parquet") and staging_source(key) == GOLD_SETS
    )


def _gold_sets_listing(lake: Lake, keys: list[str]) -> str:
    return ";".join(f"{key}@{lake.modified_at(key)!r}" for key in keys)


def pending_gold_sets(lake: Lake, folded: Mapping[str, Mapping[str, str]]) -> list[str]:
    """`gold_sets@<keys and times>` when the staged gold sets are not those folded in."""
    listing = _gold_sets_listing(lake, staged_gold_sets(lake))
    if listing == folded.get(GOLD_SETS, {}).get("listing", ""):
        return []
    return [f"{GOLD_SETS}@{listing}"]


def _fold_gold_sets(lake: Lake, folded: dict[str, dict[str, str]], files: FileBatch) -> FileBatch:
    """`files` with the staged gold sets' gold when they changed since folded (`folded`
    updated). Each gold row names its gold-set file in `source`, and every gold-set file given
    now or before is read whole (`resynced`): a task a gold set no longer gives, or a gold set
    removed, loses that gold live as `gold_sets` takes it from the daily layers."""
    keys = staged_gold_sets(lake)
    listing = _gold_sets_listing(lake, keys)
    record = folded.get(GOLD_SETS, {})
    if listing == record.get("listing", ""):
        return files
    data = [lake.get(key) for key in keys]
    digest = content_hash("".join(content_hash(part) for part in data).encode())
    if digest == record.get("sha256"):
        folded[GOLD_SETS] = {**record, "listing": listing}
        return files
    staged = [pl.read_parquet(part) for part in data]
    gold = (
        of_kind(pl.concat(staged, how="diagonal_relaxed"))
        .filter(pl.col("source_file").is_not_null())
        .select("task_id", "project", "label", source="source_file")
        if staged
        else pl.DataFrame(
            schema={
                "task_id": pl.String,
                "project": pl.String,
                "label": pl.String,
                "source": pl.String,
            }
        )
    )
    given: dict[str, list[str]] = {
        project: sorted(set(sources))
        for project, sources in gold.group_by("project").agg(pl.col("source").unique()).iter_rows()
    }
    before: dict[str, list[str]] = json.loads(record.get("files", "{}"))
    resynced = {project: list(paths) for project, paths in files.resynced.items()}
    for project in sorted(set(before) | set(given)):
        paths = set(before.get(project, [])) | set(given.get(project, []))
        resynced.setdefault(project, []).extend(sorted(paths))
    folded[GOLD_SETS] = {
        "listing": listing,
        "sha256": digest,
        "files": json.dumps(given, sort_keys=True),
    }
    if gold.height == 0 and not resynced:
        return files
    merged = pl.concat([files.gold, gold], how="vertical_relaxed") if files.gold.height else gold
    return replace(files, gold=merged, resynced=resynced)


def _kinds_of(categorical: pl.DataFrame, others: pl.DataFrame) -> set[str]:
    kinds = {"categorical"} if categorical.height else set()
    return kinds | (set(others.get_column("kind").unique().to_list()) if others.height else set())


def _recorded_kinds(record: dict[str, str]) -> set[str]:
    """The kinds a folded file held; a record written before kinds were recorded held only
    categorical judgments (the live layer read nothing else)."""
    if not record:
        return set()
    if "kinds" not in record:
        return {"categorical"}
    return {kind for kind in record["kinds"].split(",") if kind}


def _rebase_days(
    lake: Lake,
    states: dict[str, LiveState],
    days: list[str],
    options: LiveOptions,
    now: datetime,
) -> dict[str, list[LiveEvents]]:
    """Re-base each project's tasks of `days` on that day's daily labels (states updated)."""
    events: dict[str, list[LiveEvents]] = {}
    for day in sorted(set(days)):
        if not lake.has_table(DAILY_LABELS, day=day):
            continue
        daily = lake.read_table(DAILY_LABELS, day=day)
        for project in sorted(daily.get_column("project").unique().to_list()):
            state = states.get(project) or load_state(project, lake.get_if_exists)
            if state.version == 0:
                continue
            rows = daily.filter(pl.col("project") == project)
            states[project], event = rebase(state, rows, day, options, now=now)
            events.setdefault(project, []).append(event)
    return events


@dataclass(frozen=True)
class KindUpdate:
    """The other kinds' states after this run's update, and what it caused."""

    states: dict[tuple[str, str], KindState]
    loaded: dict[tuple[str, str], int]
    events: dict[tuple[str, str], LiveEvents]
    index: dict[str, list[str]]

    def objects(
        self,
        read: Callable[[str], bytes | None],
        options: KindLiveOptions,
        now: datetime,
        written: Collection[str],
    ) -> tuple[dict[str, bytes], list[str], list[str]]:
        """The changed kind states' lake objects (and their request lists,
        `kind_requests_update`), plus the index of kind states, for the run's one commit; and
        the requests that left the lists (`written`: the decisions this run writes)."""
        writes: dict[str, bytes] = {}
        deletes: list[str] = []
        closed: list[str] = []
        index = {p: set(k) for p, k in self.index.items()}
        for (project, kind), state in sorted(self.states.items()):
            if state.version == self.loaded.get((project, kind)) or state.version == 0:
                continue
            objects, gone = kind_state_objects(state, read)
            writes.update(objects)
            deletes.extend(gone)
            listed, gone_requests = kind_requests_update(
                state, options, now=now, read=read, written=written
            )
            writes.update(listed)
            closed.extend(gone_requests)
            index.setdefault(project, set()).add(kind)
        if writes:
            writes.update(kinds_index_object(index))
        return writes, deletes, closed

    def state_writes(self, writes: Mapping[str, bytes]) -> list[StateWrite]:
        """The kind states whose request lists `writes` holds, as parts of the run's write."""
        return [
            state_write(
                writes,
                prefix=kind_prefix(project, kind),
                project=project,
                base=self.loaded.get((project, kind), 0),
                version=state.version,
                annotators=state.annotators,
            )
            for (project, kind), state in sorted(self.states.items())
            if f"{kind_prefix(project, kind)}/requests.parquet" in writes
        ]


def state_write(
    writes: Mapping[str, bytes],
    *,
    prefix: str,
    project: str,
    base: int,
    version: int,
    annotators: pl.DataFrame,
) -> StateWrite:
    """The part of a run's write that is the state under `prefix`, loaded at `base` and
    committed at `version`: what it keeps is its request list in `writes` (the run's lake
    commit) and its blocks in force (`annotators`), read only if an earlier attempt of the
    state never committed."""

    def keeps() -> set[str]:
        listed = writes.get(f"{prefix}/requests.parquet")
        ids = (
            set(pl.read_parquet(listed, columns=["decision_id"])["decision_id"])
            if listed
            else set()
        )
        blocks = annotators.filter(pl.col("blocked")).get_column("block_decision_id")
        return ids | set(blocks.drop_nulls())

    return StateWrite(state=prefix, project=project, base=base, version=version, keeps=keeps)


def tagged_decisions(
    events: Iterable[tuple[str, LiveEvents]],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The requests and blocks of `events` (each with its state's prefix), each row naming its
    state in `state`, as `write_decisions` takes them."""
    found = list(events)
    requests = pl.concat(
        [
            pl.DataFrame(schema={**TASK_REQUESTS, "state": pl.String()}),
            *(e.task_requests.with_columns(state=pl.lit(key)) for key, e in found),
        ]
    )
    actions = pl.concat(
        [
            pl.DataFrame(schema={**ANNOTATOR_ACTIONS, "state": pl.String()}),
            *(e.annotator_actions.with_columns(state=pl.lit(key)) for key, e in found),
        ]
    )
    return requests, actions


def write_decisions(
    annotation_db: AnnotationDatabase,
    writes: dict[str, bytes],
    *,
    task_requests: pl.DataFrame,
    annotator_actions: pl.DataFrame,
    withdrawn: Collection[str],
    settled: pl.DataFrame,
    states: Collection[StateWrite],
    lock: LiveLock,
    log: Logger,
    label: str,
) -> dict[str, int]:
    """Write a run's decisions to the annotation DB and give the request lists in `writes`
    (the run's lake commit, still to come) the `created_at` the DB kept for a decision it
    already held (`restamp_requests`), so that lake and DB order requests alike; the counts
    written (`AnnotationDatabase.write_requests_recorded`). The write stands for `states`' versions:
    what an earlier attempt of theirs that never committed left in the DB is settled by it,
    and only while `lock` is still held."""
    written, recorded = annotation_db.write_requests_recorded(
        task_requests=task_requests,
        annotator_actions=annotator_actions,
        withdrawn=withdrawn,
        settled=settled,
        states=states,
        lock=lock,
    )
    restamped = restamp_requests(writes, recorded)
    if restamped:
        log.info(
            f"{label}: {restamped} listed request(s) take the created_at the DB kept from an "
            "earlier attempt"
        )
    if written["reopened"] or written["blocks_withdrawn"]:
        log.warning(
            f"{label}: an earlier attempt of this version wrote the DB and never committed: "
            f"{written['reopened']} request(s) it withdrew open again, "
            f"{written['blocks_withdrawn']} of its block(s) withdrawn"
        )
    return written


@dataclass(frozen=True)
class KindBatch:
    """What this run folds into the kind states: the export files' and the DB's judgments and
    gold of the other kinds, the files read whole, and the kind states it loaded (`states`,
    with the kinds `index`): those its rows, reversals and re-base days touch, and every kind
    state holding a row of the DB's tombstones (a tombstone names no kind)."""

    judgments: pl.DataFrame
    gold: pl.DataFrame
    resynced: dict[tuple[str, str], list[str]]
    states: dict[tuple[str, str], KindState]
    index: dict[str, list[str]]


def _load_kinds(
    lake: Lake,
    files: FileBatch,
    from_db: tuple[pl.DataFrame, pl.DataFrame],
    config: LiveConfig,
    reversals: pl.DataFrame,
    deleted: tuple[pl.DataFrame, pl.DataFrame],
    loaded: Mapping[tuple[str, str], KindState] | None = None,
) -> KindBatch:
    """The run's kind rows (files first, then the DB's: `kind_db_rows`) and the kind states
    they, the `reversals` and the re-base days touch, and those holding a judgment or gold of
    the DB's tombstones (`deleted`: judgments', gold's; `states_holding`). A state the run
    has `loaded` already (unchanged since) is taken from there."""
    read = lake.get_if_exists
    index = load_kinds_index(read)
    judgments = [frame for frame in (files.kind_judgments, from_db[0]) if frame.height]
    gold = [frame for frame in (files.kind_gold, from_db[1]) if frame.height]
    keys = set(files.kind_resynced) | set(reversals.select("project", "kind").unique().iter_rows())
    for frame in (*judgments, *gold):
        keys |= set(frame.select("project", "kind").unique().iter_rows())
    if config.rebase_days or config.kind_rebase_days:
        keys |= {(project, kind) for project, kinds in index.items() for kind in kinds}
    keys |= states_holding(index, *deleted, read, known=keys)
    return KindBatch(
        judgments=pl.concat(judgments, how="vertical_relaxed") if judgments else pl.DataFrame(),
        gold=pl.concat(gold, how="vertical_relaxed") if gold else pl.DataFrame(),
        resynced=files.kind_resynced,
        states={
            key: loaded[key] if loaded and key in loaded else load_kind_state(key[0], key[1], read)
            for key in sorted(keys)
        },
        index=index,
    )


def _update_kinds(
    lake: Lake,
    batch: KindBatch,
    config: LiveConfig,
    now: datetime,
    reversals: pl.DataFrame,
    *,
    deleted: pl.DataFrame,
    deleted_gold: pl.DataFrame,
) -> KindUpdate:
    """Fold the batch's non-categorical judgments into their (project, kind) states
    (`loop.live_kinds`), lifting the kind blocks the tool revoked (`reversals`, due ones:
    `due_kind_reversals`) and withdrawing what the DB deleted (`deleted` / `deleted_gold`: the
    tombstones of what a kind state holds, with its `kind`: `held_deletions`); on a re-base
    day the day's kind tasks are re-based on `kind_aggregated_labels`, and every kind state
    records a full fit request with the days to re-apply after it (`live_kind_fit_job` fits
    it)."""
    rebasing = config.rebase_days or config.kind_rebase_days
    daily = {
        day: lake.read_table(KIND_DAILY_LABELS, day=day)
        for day in sorted(set(config.kind_rebase_days))
        if lake.has_table(KIND_DAILY_LABELS, day=day)
    }
    loaded = {key: state.version for key, state in batch.states.items()}
    states, events = update_kind_projects(
        batch.states,
        batch.judgments,
        batch.gold,
        config.kind_options(),
        resynced=batch.resynced,
        full_fit=bool(rebasing),
        now=now,
        reversals=reversals,
        deleted=deleted,
        deleted_gold=deleted_gold,
    )
    states, rebased = rebase_kind_projects(states, daily, config.kind_options(), now=now)
    for key, found in rebased.items():
        events[key] = merged_events([*([events[key]] if key in events else []), *found])
    if daily:
        states = {
            key: replace(state, rebase_after_fit=tuple(sorted({*state.rebase_after_fit, *daily})))
            if state.fit_requested
            else state
            for key, state in states.items()
        }
    return KindUpdate(states=states, loaded=loaded, events=events, index=batch.index)


@dataclass(frozen=True)
class Tombstoned:
    """The judgment ids and gold task ids a run's tombstones withdrew from some state, of
    either engine: one id is counted once however many tombstones named it (a deletion and the
    look-up of the state it left, an edit off a scale and the scale changed in one run)."""

    judgments: frozenset[str]
    gold: frozenset[str]

    def unknown(self, deleted: pl.DataFrame, deleted_gold: pl.DataFrame) -> int:
        """How many of the DB's tombstones (`deleted`, `deleted_gold`) withdrew nothing."""
        return _count_outside(deleted, "judgment_id", self.judgments) + _count_outside(
            deleted_gold, "task_id", self.gold
        )

    def among(self, judged: pl.DataFrame, golden: pl.DataFrame) -> int:
        """How many distinct judgments of `judged` and gold tasks of `golden` were withdrawn."""
        return len(set(judged.get_column("judgment_id").to_list()) & self.judgments) + len(
            set(golden.get_column("task_id").to_list()) & self.gold
        )


def _count_outside(tombstones: pl.DataFrame, column: str, withdrawn: frozenset[str]) -> int:
    keys = set(tombstones.select("project", column).iter_rows())
    return sum(key not in withdrawn for _, key in keys)


def tombstoned(
    events: Mapping[str, LiveEvents],
    kind_events: Mapping[tuple[str, str], LiveEvents],
    tombstones: tuple[pl.DataFrame, pl.DataFrame],
    kind_tombstones: tuple[pl.DataFrame, pl.DataFrame],
) -> Tombstoned:
    """What the tombstones each state was given (`tombstones`: the categorical states', by
    `project`; `kind_tombstones`: the kind states', by `project` and `kind`) withdrew: those
    its update names as having withdrawn nothing (`LiveEvents.unknown_deleted`) aside."""
    judged: set[str] = set()
    golden: set[str] = set()
    given: list[tuple[pl.Expr, pl.DataFrame, pl.DataFrame, LiveEvents]] = [
        (pl.col("project") == project, *tombstones, e) for project, e in events.items()
    ]
    given += [
        ((pl.col("project") == project) & (pl.col("kind") == kind), *kind_tombstones, e)
        for (project, kind), e in kind_events.items()
    ]
    for mine, deleted, deleted_gold, e in given:
        if deleted.height:
            named = set(deleted.filter(mine).get_column("judgment_id").to_list())
            judged |= named - e.unknown_deleted
        if deleted_gold.height:
            named = set(deleted_gold.filter(mine).get_column("task_id").to_list())
            golden |= named - e.unknown_deleted_gold
    return Tombstoned(judgments=frozenset(judged), gold=frozenset(golden))


@asset(
    group_name=LIVE_GROUP,
    # The quality team acts on the running scorecards, blocks and requests.
    owners=["team:annotation-quality"],
    kinds={"postgres", "polars"},
    description=(
        "Running annotator scorecards and per-task posteriors per project, updated from the "
        "annotation DB's change stream and new landing-zone exports within a minute, for every "
        "kind of annotation; blocks and task requests written back; re-based on each day's "
        "aggregated_labels. Needs the annotation DB (ANNOTATION_DB_DSN); without one its "
        "sensor skips saying so."
    ),
    deps=[DAILY_LABELS, KIND_DAILY_LABELS],
)
def live_quality_state(
    context: AssetExecutionContext,
    config: LiveConfig,
    annotation_db: AnnotationDatabase,
    lake: Lake,
    landing: LandingZone,
) -> MaterializeResult:
    options = config.options()
    with annotation_db.live_lock() as lock:
        lake.recover()
        position = stream_position(lake)
        # The position's two objects as just read (the state the fence checks), not again.
        held = dict(zip((f"{STREAM_PREFIX}/watermark.json", FILES_KEY), position, strict=True))
        # The DB scales record is compared with the run's scales and rewritten at the commit
        # only: read once for both.
        held[DB_SCALES_KEY] = lake.get_if_exists(DB_SCALES_KEY)

        def read(key: str) -> bytes | None:
            return held[key] if key in held else lake.get_if_exists(key)

        since, seen = load_stream(read)
        extract = annotation_db.extract_live(since=since, seen=seen)
        # The same window as the judgments: committed with the same position, so a run that
        # fails reads them again, and one that commits does not.
        revoked = annotation_db.read_reversals(since=since, until=extract.until)
        categorical = pl.col("kind").is_null()
        reversals = due_reversals(revoked.filter(categorical).drop("kind"), lake.get_if_exists)
        kind_reversals = due_kind_reversals(revoked.filter(~categorical), lake.get_if_exists)
        now = datetime.now(UTC)
        folded = load_files(read)
        db_scales = extract.scales or {}
        recorded = load_projects(read)
        # Not recorded yet: listed once, then committed with the states.
        stored = live_projects(lake) if recorded is None else recorded
        # An export project spelled as a known one in another case is refused as the daily
        # ingest refuses it; the staged projects are read only for a project no state holds.
        spellings = ProjectSpellings(
            lambda: [*stored, *load_kinds_index(read)], lambda: projects_staged(lake)
        )
        files = _fold_files(
            landing,
            folded,
            read_at=now,
            log=context.log,
            db_scales=db_scales,
            spellings=spellings,
        )
        files = _fold_gold_sets(lake, folded, files)
        from_files = files.judgments
        for line in file_quarantine_lines(files.quarantine, lines=files.lines):
            context.log.warning(f"live: not folded in: {line}")
        # A DB row an edit made one the extract sets aside withdraws the version read before,
        # from whichever engine holds it, as the row's deletion would.
        db_deleted = pl.concat([extract.deletions, extract.set_aside], how="vertical_relaxed")
        db_deleted_gold = pl.concat(
            [extract.gold_deletions, extract.set_aside_gold], how="vertical_relaxed"
        )
        # A numeric DB row off its project's scale withdraws what the state holds of it: the
        # version an edit moved off it (`extract.off_scale`), and, when a project declares or
        # changes its scale, every answer of the DB the state holds that it refuses. The kind
        # states only: a categorical vote has no scale.
        rescaled_states: dict[tuple[str, str], KindState] = {}
        scale_record, refused, refused_gold = rescaled(
            read, db_scales, at=now, loaded=rescaled_states
        )
        off_scale = pl.concat([extract.off_scale, refused], how="vertical_relaxed")
        off_scale_gold = pl.concat([extract.off_scale_gold, refused_gold], how="vertical_relaxed")
        kind_tombstones = pl.concat([db_deleted, off_scale], how="vertical_relaxed")
        kind_gold_tombstones = pl.concat([db_deleted_gold, off_scale_gold], how="vertical_relaxed")
        # The DB's rows of the other kinds go to their kind states only: a kind judgment has
        # no label, and is never a categorical vote.
        kind_batch = _load_kinds(
            lake,
            files,
            kind_db_rows(extract.result.judgments, extract.result.gold),
            config,
            kind_reversals,
            (kind_tombstones, kind_gold_tombstones),
            rescaled_states,
        )
        kind_deleted, kind_deleted_gold = held_deletions(
            kind_batch.states, kind_tombstones, kind_gold_tombstones
        )
        # The categorical engine takes the DB's categorical rows only.
        from_db = of_kind(extract.result.judgments).with_columns(source=pl.lit(None, pl.String))
        judgments = pl.concat(
            [
                from_db.select(_JUDGMENT_COLUMNS),
                *([from_files.select(_JUDGMENT_COLUMNS)] if from_files.height else []),
            ],
            how="vertical_relaxed",
        )
        gold = pl.concat(
            [
                # The DB's gold names no file: no file edit withdraws it.
                of_kind(extract.result.gold).select(
                    "task_id", "project", "label", source=pl.lit(None, pl.String)
                ),
                *([files.gold] if files.gold.height else []),
            ],
            how="vertical_relaxed",
        )
        projects = (
            set(judgments["project"].unique())
            | set(gold["project"].unique())
            | set(files.resynced)
            | set(reversals["project"].unique())
            | set(db_deleted["project"].unique())
            | set(db_deleted_gold["project"].unique())
        )
        states = _load_states(
            lake,
            projects,
            judgments,
            gold,
            files.resynced,
            whole=bool(config.rebase_days),
            deleted=db_deleted,
            deleted_gold=db_deleted_gold,
        )
        # A DB row re-filed under another project or kind (the tool moved its task, or
        # changed what it asks) is withdrawn from the state that held it, categorical or of a
        # kind, as a deleted one is: a judgment's tombstone is dated by the newer version.
        # A categorical state is loaded for it with those tasks' rows, a kind state whole.
        # A row deleted or set aside off its project's scale names its project now, whose
        # states hold nothing of it when the tool moved it (or gave a vote an off-scale
        # answer) since the last run: the state holding the version before is found the same
        # way.
        departing = departures(db_deleted, extract.off_scale, DEPARTING)
        departing_gold = departures(db_deleted_gold, extract.off_scale_gold, GOLD_DEPARTING)
        moves = moved(
            states,
            judgments,
            gold,
            kind_batch.states,
            kind_batch.judgments,
            kind_batch.gold,
            projects=stored,
            index=kind_batch.index,
            read=lake.get_if_exists,
            open_segment=_opener(lake),
            departing=departing,
            departing_gold=departing_gold,
        )
        deleted, deleted_gold = db_deleted, db_deleted_gold
        if moves.projects:
            deleted = pl.concat([deleted, moves.judgments], how="diagonal_relaxed")
            deleted_gold = pl.concat([deleted_gold, moves.gold], how="diagonal_relaxed")
            states.update(
                _load_states(
                    lake,
                    moves.projects,
                    judgments,
                    gold,
                    files.resynced,
                    whole=bool(config.rebase_days),
                    deleted=deleted,
                    deleted_gold=deleted_gold,
                )
            )
        if moves.kind_judgments.height or moves.kind_gold.height:
            kind_batch.states.update(moves.kind_states)
            kind_deleted = pl.concat([kind_deleted, moves.kind_judgments], how="diagonal_relaxed")
            kind_deleted_gold = pl.concat(
                [kind_deleted_gold, moves.kind_gold], how="diagonal_relaxed"
            )
        left_ids = departing.get_column("judgment_id").implode()
        left_tasks = departing_gold.get_column("task_id").implode()
        left = sum(
            frame.filter(pl.col("judgment_id").is_in(left_ids)).height
            for frame in (moves.judgments, moves.kind_judgments)
        )
        left_gold = sum(
            frame.filter(pl.col("task_id").is_in(left_tasks)).height
            for frame in (moves.gold, moves.kind_gold)
        )
        moved_judgments = moves.judgments.height + moves.kind_judgments.height - left
        moved_gold = moves.gold.height + moves.kind_gold.height - left_gold
        if moved_judgments or moved_gold:
            context.log.info(
                f"live: {moved_judgments} judgment(s) and {moved_gold} gold label(s) the DB "
                "moved to another project or kind withdrawn from the state holding them"
            )
        if left or left_gold:
            context.log.info(
                f"live: {left} judgment(s) and {left_gold} gold label(s) the DB deleted or set "
                "aside off a scale after moving them withdrawn from the state holding them"
            )
        # The blocks an uncommitted attempt of these versions wrote that the tool revoked
        # since: a revocation an earlier run consumed without deciding the block lies behind
        # the stream position, and this run may decide the same block again.
        revoked = annotation_db.revoked_attempts(
            {
                **{state_prefix(p): s.committed for p, s in states.items()},
                **{kind_prefix(*key): s.version for key, s in kind_batch.states.items()},
            }
        )
        if revoked.height:
            reversals = pl.concat(
                [reversals, revoked.filter(pl.col("kind").is_null()).select(reversals.columns)]
            ).unique(maintain_order=True)
            kind_reversals = pl.concat(
                [
                    kind_reversals,
                    revoked.filter(pl.col("kind").is_not_null()).select(kind_reversals.columns),
                ]
            ).unique(maintain_order=True)
        states, events = update_projects(
            states,
            judgments,
            gold,
            options,
            resynced=files.resynced,
            watermark=extract.until,
            now=now,
            reversals=reversals,
            # Every tombstone, those the kind states take too: one id can be held by both (a
            # state written before a kind change withdrew the older version, a file's id equal
            # to a DB row's), and the ledger removes only a DB version at or below the one
            # deleted.
            deleted=deleted,
            deleted_gold=deleted_gold,
        )
        unblocked = {p: list(e.unblocked) for p, e in events.items() if e.unblocked}
        for line in unblock_lines(reversals, unblocked, options.min_judgments):
            context.log.warning(f"live: {line}")
        rebased = _rebase_days(lake, states, config.rebase_days, options, now)
        kinds = _update_kinds(
            lake,
            kind_batch,
            config,
            now,
            kind_reversals,
            deleted=kind_deleted,
            deleted_gold=kind_deleted_gold,
        )
        kind_unblocked = {key: list(e.unblocked) for key, e in kinds.events.items() if e.unblocked}
        for (project, kind), ids in sorted(kind_unblocked.items()):
            for line in unblock_lines(
                kind_reversals.filter(pl.col("kind") == kind),
                {project: ids},
                config.kind_options().min_judgments,
                kind,
            ):
                context.log.warning(f"live: {line}")
        requests, actions = tagged_decisions(
            [
                *((state_prefix(p), e) for p, e in events.items()),
                *((state_prefix(p), e) for p, found in rebased.items() for e in found),
                *((kind_prefix(p, k), e) for (p, k), e in kinds.events.items()),
            ]
        )
        writes = {**stream_files(extract.until, extract.seen), **files_object(folded)}
        if read(DB_SCALES_KEY) != (encoded := json.dumps(scale_record, sort_keys=True).encode()):
            writes[DB_SCALES_KEY] = encoded
        if recorded is None or not set(states) <= set(stored):
            writes.update(projects_object({*stored, *states}))
        # The extract reads a judgment dated after its window again on every run until the
        # clock catches up, whatever else is wrong with it, so setting it aside here would
        # write it again on every run: it is set aside by the run whose window holds its time.
        later = extract.result.quarantine.filter(extract.read_again)
        deferred = later.height
        quarantined = extract.result.quarantine.filter(~extract.read_again)
        if deferred:
            reasons = ", ".join(
                f"{reason} {count}"
                for reason, count in later.group_by("reason").len().sort("reason").iter_rows()
            )
            context.log.warning(
                f"live: {deferred} deferred: dated in the future ({reasons}), read again "
                "when their time comes"
            )
        if quarantined.height:
            # Committed with the stream position that skips them: each bad row is set aside
            # once, and a correction (a newer updated_at) is read again like any change.
            key = quarantine_key(LIVE_QUARANTINE_SOURCE, f"{extract.until:%Y%m%dT%H%M%S%f}")
            writes[key] = parquet_bytes(quarantined)
            for line in quarantine_lines(quarantined):
                context.log.warning(f"live: set aside {line}")
        deletes: list[str] = []
        closed: list[str] = []
        for state in states.values():
            objects = state_objects(state, lake.get_if_exists, compaction=LIVE_COMPACTION)
            writes.update(objects.writes)
            deletes.extend(objects.deletes)
            listed, gone = requests_update(
                state,
                options,
                now=now,
                read=lake.get_if_exists,
                written=requests.get_column("decision_id"),
            )
            writes.update(listed)
            closed.extend(gone)
        kind_writes, kind_deletes, kind_closed = kinds.objects(
            lake.get_if_exists,
            config.kind_options(),
            now,
            written=requests.get_column("decision_id"),
        )
        writes.update(kind_writes)
        deletes.extend(kind_deletes)
        closed.extend(kind_closed)
        # The DB first: a crash after it re-runs this version, whose decisions the DB already
        # holds (same decision_id) and whose withdrawals find nothing open left to withdraw; a
        # crash before the lake commit loses nothing.
        written = write_decisions(
            annotation_db,
            writes,
            task_requests=requests,
            annotator_actions=actions,
            withdrawn=closed,
            settled=settled_frame(kinds.events),
            states=[
                *(
                    state_write(
                        writes,
                        prefix=state_prefix(project),
                        project=project,
                        # The version its run loaded, also for a state loaded only to re-base.
                        base=state.committed,
                        version=state.version,
                        annotators=state.annotators,
                    )
                    for project, state in sorted(states.items())
                ),
                *kinds.state_writes(writes),
            ],
            lock=lock,
            log=context.log,
            label="live",
        )
        alerts = [a for e in [*events.values(), *kinds.events.values()] for a in e.alerts]
        # Recorded with the state that raised them and sent only once it is committed: an
        # attempt that never commits raises nothing, and its retry raises them once.
        writes.update(alert_objects(alerts))
        fence(lock, lake, position)
        lake.commit(writes, deletes=deletes)
    announce_alerts(alerts, log=context.log)
    # A Datetime column's min is a datetime, or None when the frame is empty. Files may hold
    # judgments from long ago: the lag is the change stream's.
    first = extract.result.judgments["submitted_at"].min()
    lag = (now - first).total_seconds() if isinstance(first, datetime) else 0.0
    withdrawn_by = tombstoned(
        events, kinds.events, (deleted, deleted_gold), (kind_deleted, kind_deleted_gold)
    )
    unknown_deletions = extract.ignored_deletions + withdrawn_by.unknown(
        extract.deletions, extract.gold_deletions
    )
    withdrawn_off_scale = withdrawn_by.among(off_scale, off_scale_gold)
    withdrawn_set_aside = withdrawn_by.among(extract.set_aside, extract.set_aside_gold)
    if unknown_deletions:
        context.log.info(f"live: {unknown_deletions} deletion(s) of rows not held: ignored")
    if not extract.deletions_tracked and not annotation_db.skipped_migrations:
        # A skipped migration was logged with its cause when it was tried.
        context.log.warning(
            "live: the annotation DB has no tombstone tables this role can read (migration 6), "
            f"so rows the tool deletes stay in the live state; {MIGRATION_FIX}"
        )
    context.log.info(
        f"live ({since}, {extract.until}]: {from_db.height} judgment(s) from the DB, "
        f"{from_files.height} from {len(files.paths)} file(s), "
        f"{sum(e.withdrawn_judgments for e in events.values())} withdrawn, "
        f"{kind_batch.judgments.height} of other kinds ({files.kind_judgments.height} from "
        f"files) in {len(kinds.events)} kind state(s), "
        f"{written['task_requests']} request(s), {written['withdrawn']} withdrawn, "
        f"{written['annotator_actions']} block(s)"
        + (
            f"; a slice of a backlog ({annotation_db.live_max_rows:,} rows at most): the next "
            "run reads on from here"
            if extract.capped
            else ""
        )
        + (f", re-based on {', '.join(config.rebase_days)}" if config.rebase_days else "")
        + (
            f", kinds re-based on {', '.join(config.kind_rebase_days)}"
            if config.kind_rebase_days
            else ""
        )
    )
    return MaterializeResult(
        metadata={
            "watermark": MetadataValue.text(extract.until.isoformat()),
            "db_rows_read": MetadataValue.int(
                extract.result.judgments.height
                + extract.result.gold.height
                + extract.result.tasks.height
                + extract.result.quarantine.height
                + extract.deletions.height
                + extract.gold_deletions.height
            ),
            "backlog_remains": MetadataValue.bool(extract.capped),
            "judgments": MetadataValue.int(judgments.height),
            "files_read": MetadataValue.json(files.paths),
            "moved_judgments": MetadataValue.int(moved_judgments),
            "moved_gold": MetadataValue.int(moved_gold),
            "departed_judgments": MetadataValue.int(left),
            "departed_gold": MetadataValue.int(left_gold),
            "withdrawn_judgments": MetadataValue.int(
                sum(e.withdrawn_judgments for e in events.values())
            ),
            "withdrawn_gold": MetadataValue.int(sum(e.withdrawn_gold for e in events.values())),
            "deletions_read": MetadataValue.int(
                extract.deletions.height + extract.gold_deletions.height
            ),
            "deletions_unknown": MetadataValue.int(unknown_deletions),
            "deletions_tracked": MetadataValue.bool(extract.deletions_tracked),
            "migrations_skipped": MetadataValue.json(
                [s.version for s in annotation_db.skipped_migrations]
            ),
            "rebased_tasks": MetadataValue.json(
                {p: sum(e.rebased_tasks for e in found) for p, found in rebased.items()}
            ),
            "new_judgments": MetadataValue.int(sum(e.new_judgments for e in events.values())),
            "unblocked": MetadataValue.json(unblocked),
            "kind_unblocked": MetadataValue.json(
                {f"{p}/{k}": ids for (p, k), ids in kind_unblocked.items()}
            ),
            "quarantined": MetadataValue.int(quarantined.height),
            "quarantine_reasons": MetadataValue.json(
                dict(quarantined.group_by("reason").len().sort("reason").iter_rows())
            ),
            # The DB's numeric rows off their project's scale (`projects.scale`): set aside,
            # and what the live state held of them withdrawn (judgments and gold).
            "outside_scale": MetadataValue.int(
                quarantined.filter(pl.col("reason") == OUTSIDE_SCALE).height
            ),
            "outside_scale_withdrawn": MetadataValue.int(withdrawn_off_scale),
            # What the live state held of the DB rows an edit made ones set aside, withdrawn.
            "set_aside_withdrawn": MetadataValue.int(withdrawn_set_aside),
            "db_scales": MetadataValue.json(
                {p: scale.describe() for p, scale in sorted(db_scales.items())}
            ),
            # The files' rows their ingest set aside; the landing asset quarantines them for
            # the daily layers.
            "files_quarantined": MetadataValue.int(files.quarantine.height),
            "files_quarantine_reasons": MetadataValue.json(
                dict(files.quarantine.group_by("reason").len().sort("reason").iter_rows())
            ),
            # Of those, by file, the rows whose project differs only in case from a known one.
            "files_case_twins": MetadataValue.json(files.case_twins),
            "deferred": MetadataValue.int(deferred),
            "task_requests_written": MetadataValue.int(written["task_requests"]),
            "blocks_written": MetadataValue.int(written["annotator_actions"]),
            "task_requests_withdrawn": MetadataValue.int(written["withdrawn"]),
            "task_requests_reopened": MetadataValue.int(written["reopened"]),
            "blocks_withdrawn": MetadataValue.int(written["blocks_withdrawn"]),
            "oldest_judgment_lag_s": figure(float(lag), digits=1),
            "versions": MetadataValue.json({p: s.version for p, s in states.items()}),
            "kind_db_judgments": MetadataValue.int(
                kind_batch.judgments.filter(pl.col("source").is_null()).height
                if kind_batch.judgments.height
                else 0
            ),
            "kind_new_judgments": MetadataValue.int(
                sum(e.new_judgments for e in kinds.events.values())
            ),
            "kind_withdrawn_judgments": MetadataValue.int(
                sum(e.withdrawn_judgments for e in kinds.events.values())
            ),
            "kind_withdrawn_gold": MetadataValue.int(
                sum(e.withdrawn_gold for e in kinds.events.values())
            ),
            "kind_refitted_tasks": MetadataValue.int(
                sum(e.refitted_tasks for e in kinds.events.values())
            ),
            "kind_rebased_tasks": MetadataValue.json(
                {f"{p}/{k}": e.rebased_tasks for (p, k), e in kinds.events.items()}
            ),
            "kind_versions": MetadataValue.json(
                {f"{p}/{k}": s.version for (p, k), s in kinds.states.items()}
            ),
        }
    )
