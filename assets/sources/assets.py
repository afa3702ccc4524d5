"""Sources: every source is staged per day in the lake; the raw layer unions the stages.

Three sources, one path:
- export drops in the landing zone: each file is a dynamic partition of `landing_exports`,
  parsed by the ingest engine and staged per day in the lake (`staging/<table>/day=D/<file>`);
- the annotation tool's database: `annotation_db_changes` extracts rows changed since a
  watermark and upserts them into the staged day of each row (late rows land in their own day),
  and removes the rows the tool deleted (their tombstones) from theirs;
- the synthetic generator (the embedded default), read straight from the landing zone.
The daily `raw_annotations` (assets/raw) then unions the day's staged rows and synthetic parts.
"""

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime

import duckdb
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from annotation_pipelines import schema
from annotation_pipelines.ingest import IngestResult, ingest_bytes
from annotation_pipelines.ingest.ids import non_finite_text
from annotation_pipelines.ingest.postgres import (
    MIGRATION_FIX,
    DatabaseExtract,
    merge_partition,
    partition_by_day,
)
from annotation_pipelines.ingest.result import set_aside_before, set_aside_case_twins
from annotation_pipelines.ingest.tables import (
    READ_ERROR,
    named_by_line,
    path_line_ids,
    project_mapping,
    read_landing_table,
)
from annotation_pipelines.ingest.validation import (
    is_safe_project,
    project_coordinates,
    project_label_set,
    validate,
)
from annotation_pipelines.lake import (
    ANNOTATION_DB_SCALES_KEY,
    ANNOTATION_DB_SEEN_KEY,
    ANNOTATION_DB_WATERMARK_KEY,
    ANNOTATION_DB_WITHDRAWN_KEY,
    quarantine_key,
    staging_day,
    staging_key,
    staging_prefix,
    staging_source,
)
from annotation_pipelines.scale import project_scale
from annotation_pipelines.settings import MAX_QUARANTINED_SHARE, load_settings
from annotation_pipelines.tabular import padded_count, unpacked
from assets.common.metadata import markdown_table
from assets.common.partitions import START_DATE
from resources.annotation_db import AnnotationDatabase
from resources.lake import Lake, parquet_bytes
from resources.landing import LandingZone, parse_export_path, project_settings_path

SOURCES_GROUP = "sources"
OWNERS = ["team:annotation-platform"]

# The name is a constant because the instance's dynamic-partition calls take a plain `str`.
EXPORT_FILES = "export_files"
export_files = DynamicPartitionsDefinition(name=EXPORT_FILES)

# (staged table, canonical schema, the timestamp whose UTC day is the row's partition)
STAGED_TABLES: tuple[tuple[str, dict[str, pl.DataType], str], ...] = (
    ("judgments", schema.JUDGMENTS, "submitted_at"),
    ("raw_tasks", schema.RAW_TASKS, "created_at"),
    ("gold_labels", schema.GOLD_LABELS, "updated_at"),
)


# A judgment is one row in the daily layers however many sources staged it: per
# (project, judgment_id) the newest version wins, the live ledger's rule. A version is its
# `updated_at`: the tool's row version for the DB, the moment its file was ingested for an
# export (the live loop stamps a file's rows with the moment it read them); then the later
# `submitted_at`, then the later source file in path order.
JUDGMENT_KEY = ("project", "judgment_id")
JUDGMENT_VERSION = ("updated_at", "submitted_at", "source_file")


def judgment_identity() -> list[pl.Expr]:
    """`JUDGMENT_KEY` as one judgment's identity across sources: an id named by its line is
    told apart by its file (`named_by_line`)."""
    return [
        pl.col("project"),
        pl.when(named_by_line())
        .then(pl.col("judgment_id") + "\x00" + pl.col("source_file"))
        .otherwise(pl.col("judgment_id"))
        .alias("judgment_id"),
    ]


def shareable(frame: pl.DataFrame) -> pl.DataFrame:
    """The `JUDGMENT_KEY` of `frame`'s rows (with `source_file`) that another source can
    stage too: not those named by their line."""
    return frame.filter(~named_by_line()).select(JUDGMENT_KEY)


def staged_judgment_versions(lake: Lake, keys: list[str], ids: pl.DataFrame) -> pl.DataFrame:
    """The versions (`JUDGMENT_KEY`, `JUDGMENT_VERSION`, `key`) of the judgments `ids` names
    (`JUDGMENT_KEY` columns) staged under `keys`. Only those columns are read; on a local
    lake DuckDB streams them through one hash join with `ids`, so a day's ten million ids
    against every staged day costs a column scan, not a read of the staged rows; an object
    store's files are read by byte ranges, several at once (`Lake.read_columns_each`). A file
    staged before exports carried `updated_at` has a null one, older than any."""
    columns = [*JUDGMENT_KEY, *JUDGMENT_VERSION]
    types = {c: schema.JUDGMENTS.get(c, schema.UTC_TIMESTAMP) for c in columns}
    empty = pl.DataFrame(schema={**types, "key": pl.String()})
    if not keys or ids.height == 0:
        return empty
    wanted = ids.select(JUDGMENT_KEY).unique()
    paths = {key: lake.local_path(key) for key in keys}
    local = {str(path): key for key, path in paths.items() if path is not None}
    found = [empty]
    if local:
        connection = duckdb.connect()
        try:
            connection.register("wanted", wanted.to_arrow())
            connection.execute("SET preserve_insertion_order = false")
            listed = list(local)
            present = {
                row[0]
                for row in connection.execute(
                    "DESCRIBE SELECT * FROM read_parquet(?, union_by_name = true)", [listed]
                ).fetchall()
            }
            selected = ", ".join(
                f"s.{c}" if c in present else f"NULL AS {c}" for c in JUDGMENT_VERSION
            )
            # A relation, not a DB-API result: DuckDB hands its Arrow over without copying.
            rows = connection.sql(
                f"SELECT s.project, s.judgment_id, {selected}, s.filename AS path "
                "FROM read_parquet(?, union_by_name = true, filename = true) AS s "
                "SEMI JOIN wanted USING (project, judgment_id)",
                params=[listed],
            ).to_arrow_table()
        finally:
            connection.close()
        found.append(
            pl.DataFrame(pl.from_arrow(rows)).select(
                *[pl.col(c).cast(t) for c, t in types.items()],
                key=pl.col("path").replace_strict(local, return_dtype=pl.String),
            )
        )
    remote = [key for key, path in paths.items() if path is None]
    for key, staged in zip(remote, lake.read_columns_each(remote, columns), strict=True):
        found.append(
            staged.join(wanted, on=list(JUDGMENT_KEY), how="semi").select(
                *[
                    pl.col(c).cast(t) if c in staged.columns else pl.lit(None, t).alias(c)
                    for c, t in types.items()
                ],
                key=pl.lit(key, pl.String),
            )
        )
    return pl.concat(found, how="vertical")


def days_sharing_judgments(lake: Lake, ids: pl.DataFrame, *, skip: set[str]) -> set[str]:
    """The staged days, other than the keys in `skip`, that hold a version of a judgment
    `ids` names: one of them may just have lost its copy (or got it back), so it is rebuilt."""
    keys = [
        key
        for key in lake.list_keys(staging_prefix("judgments"))
        if key.endswith(".parquet") and key not in skip
    ]
    found = staged_judgment_versions(lake, keys, ids)
    return {staging_day(key) for key in found.get_column("key").unique().to_list()}


def _staged_ids(lake: Lake, keys: list[str]) -> Iterator[pl.DataFrame]:
    """The `JUDGMENT_KEY` and `source_file` columns of each staged judgments file `keys`."""
    columns = [*JUDGMENT_KEY, "source_file"]
    return (frame.select(columns) for frame in lake.read_columns_each(keys, columns))


def within_partitions(
    context: AssetExecutionContext,
    result: IngestResult,
    *,
    name: str,
    lake: Lake,
    replaces: str | None = None,
) -> IngestResult:
    """`result` with its rows dated before the start date quarantined (`set_aside_before`),
    said in the log naming the source: such a row has no daily partition, and staged on its
    day nothing would ever rebuild it. Rows whose project differs only in case from one the
    lake's staged rows hold (other than those of source `replaces`, which `result` replaces) or
    from an earlier row's are quarantined too (`set_aside_case_twins`)."""
    known = projects_staged(lake, besides=replaces)
    result = set_aside_case_twins(result, known)
    twins = result.quarantine.filter(
        pl.col("field").str.starts_with("project (differs only in case")
    )
    if twins.height:
        context.log.warning(
            f"{name}: {twins.height} row(s) quarantined whose project differs only in case from "
            "another's (one folder on a case-insensitive disk): "
            + "; ".join(sorted(set(twins.get_column("field").to_list()))[:5])
        )
    result = set_aside_before(result, START_DATE)
    early = sum(n for reason, n in result.reasons.items() if reason.startswith("before_start"))
    if early:
        context.log.warning(
            f"{name}: {early} row(s) dated before the start date {START_DATE} "
            "(ANNOTATION_PIPELINES_START_DATE) quarantined: no daily partition holds them"
        )
    return result


def staged_projects(
    keys: Iterable[str],
    *,
    read: Callable[[Sequence[str], Sequence[str]], Iterable[pl.DataFrame]],
) -> set[str]:
    """The projects the Parquet files `keys` hold rows of, reading each one's project column
    alone through `read` (`Lake.read_columns_each`: a local file in place, an object store's
    by byte ranges, several at once); a file without one holds no project."""
    projects: set[str] = set()
    for part in read([key for key in keys if key.endswith(".parquet")], ["project"]):
        if "project" in part.columns:
            projects.update(part.get_column("project").drop_nulls().unique().to_list())
    return projects


def projects_staged(lake: Lake, *, besides: str | None = None) -> set[str]:
    """The projects of every staged judgments and gold file, but for those of source `besides`
    (the source whose rows the caller is about to replace)."""
    keys = [
        key
        for table in ("judgments", "gold_labels")
        for key in lake.list_keys(staging_prefix(table))
        if besides is None or staging_source(key) != besides
    ]
    return staged_projects(keys, read=lake.read_columns_each)


def source_id(path: str) -> str:
    """A short stable id for a source file, used as its staged file name."""
    return hashlib.sha1(path.encode()).hexdigest()[:16]


def stamped(judgments: pl.DataFrame, before: list[pl.DataFrame], now: datetime) -> pl.DataFrame:
    """`judgments` of one source with their version, `updated_at`: that of the same row as the
    source staged it before (`before`), else `now`. A file read again as it was (a project.json
    change reads every file of its project again, in any order) gives no new version, so it
    never takes a judgment back from a later export that corrected it; a row it changed, or
    holds anew, is a new version; one that only moved to another line of the file is not.
    The rows are compared by `DataFrame.hash_rows`, stable within one Polars version: after
    an upgrade a row reads as changed, as every row did."""
    stamp = pl.lit(now, schema.UTC_TIMESTAMP)
    columns = [c for c in judgments.columns if c != "source_line"]
    earlier = [
        frame.select(*columns, "updated_at").cast({c: judgments.schema[c] for c in columns})
        for frame in before
        if frame.height and "updated_at" in frame.columns and set(columns) <= set(frame.columns)
    ]
    if not earlier or judgments.is_empty():
        return judgments.with_columns(updated_at=stamp)
    staged = pl.concat(earlier)
    versions = (
        staged.select("updated_at", _row=staged.select(columns).hash_rows())
        .group_by("_row")
        .agg(pl.col("updated_at").max())
    )
    return (
        judgments.with_columns(_row=judgments.select(columns).hash_rows())
        .join(versions, on="_row", how="left", maintain_order="left")
        .with_columns(pl.coalesce("updated_at", stamp).alias("updated_at"))
        .drop("_row")
    )


def stage(lake: Lake, result: IngestResult, *, source: str) -> list[str]:
    """Replace `source`'s staged rows with `result`'s, split by day; return the days touched.

    One lake commit writes the new parts, the quarantine and drops the days the file no longer
    has: a run killed part-way leaves either the previous staging or the new one, never a file
    with no staged rows (which no later run would notice).

    A task with no `created_at` (not judged yet, or every judgment of it quarantined) has no
    day and is left out: a task is context, not a row, so there is nothing to quarantine, and
    its rows are in the quarantine already with their own reasons (`undated_tasks` counts it).
    """
    writes: dict[str, bytes] = {}
    previous = [
        key
        for table, _, _ in STAGED_TABLES
        for key in lake.list_keys(staging_prefix(table))
        if staging_source(key) == source
    ]
    days = {staging_day(key) for key in previous}
    own = [key for key in previous if key.startswith(staging_prefix("judgments"))]
    tasks = result.tasks.filter(pl.col("created_at").is_not_null())
    ingested = datetime.now(UTC)
    judgments = result.judgments
    if "updated_at" not in judgments.columns:
        earlier = [lake.get_frame(key) for key in own if key.endswith(".parquet")]
        judgments = stamped(judgments, earlier, ingested)
    for table, _, column in STAGED_TABLES:
        frame = {"judgments": judgments, "raw_tasks": tasks}.get(table, result.gold)
        for day, part in partition_by_day(frame, column=column, name=table).items():
            writes[staging_key(table, day.isoformat(), source)] = parquet_bytes(part)
            days.add(day.isoformat())
    writes[quarantine_key(source)] = parquet_bytes(result.quarantine)
    # The judgments this source gives now or gave before: every other day holding one of them
    # may now keep or lose its copy.
    given = pl.concat(
        [
            shareable(judgments.select(*JUDGMENT_KEY, "source_file")),
            *(shareable(ids) for ids in _staged_ids(lake, own)),
        ]
    ).unique()
    days |= days_sharing_judgments(lake, given, skip=set(own))
    lake.commit(writes, deletes=[key for key in previous if key not in writes])
    return sorted(days)


def undated_tasks(result: IngestResult) -> int:
    """Tasks `stage` leaves out for want of a day."""
    return result.tasks.get_column("created_at").null_count()


def reconciliation(result: IngestResult) -> dict[str, MetadataValue]:
    return {
        "rows_read": MetadataValue.int(result.rows_read),
        "rows_loaded": MetadataValue.int(result.rows_loaded),
        "rows_quarantined": MetadataValue.int(result.rows_quarantined),
        "duplicates": MetadataValue.int(result.duplicates),
        "quarantine_reasons": MetadataValue.json(result.reasons),
        # Ids and categorical labels staged with whitespace around them, as written (why:
        # `tabular.PaddedValues`); `ingest` and the other commands name the first.
        "padded_values": MetadataValue.int(
            padded_count(result.judgments, ["task_id", "annotator_id", "label"])
        ),
    }


def ingest_checks(result: IngestResult) -> list[AssetCheckResult]:
    """The checks of one staging: its rows reconcile, and its quarantined share is bounded."""
    return [
        reconciliation_check(result, name="rows_reconcile"),
        quarantine_share_check(result, limit=load_settings().max_quarantined_share),
    ]


def quarantine_share_check(result: IngestResult, *, limit: float) -> AssetCheckResult:
    """Warns when more than `limit` of the rows read were quarantined: the rows reconcile
    whatever share is set aside, so a wrong label set or a changed export format that
    quarantines most of a file would otherwise pass unseen. A warning, not a hold: the rows
    that passed are good, and the quarantine names every row and field that did not."""
    share = result.rows_quarantined / result.rows_read if result.rows_read else 0.0
    passed = share <= limit
    ceiling = f"{limit * 100:g}%"
    description = f"at most {ceiling} of the rows read quarantined"
    if not passed:
        top = sorted(result.reasons.items(), key=lambda item: (-item[1], item[0]))[:3]
        reasons = ", ".join(f"{reason} ({count:,})" for reason, count in top)
        description = (
            f"{result.rows_quarantined:,} of {result.rows_read:,} rows quarantined "
            f"({share:.1%}, above {ceiling}; {MAX_QUARANTINED_SHARE}): {reasons}"
        )
    return AssetCheckResult(
        check_name="quarantine_share",
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "quarantined_share": share,
            "max_quarantined_share": limit,
            # The alert sensor keeps a failure open while its reasons stay the same (a new
            # reason is alerted again), and a run that read nothing leaves it open.
            "rows_read": result.rows_read,
            "reasons": MetadataValue.json([] if passed else sorted(result.reasons)),
        },
        description=description,
    )


def reconciliation_check(result: IngestResult, *, name: str) -> AssetCheckResult:
    balanced = result.rows_read == result.rows_loaded + result.rows_quarantined
    return AssetCheckResult(
        check_name=name,
        passed=balanced,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows_read": result.rows_read,
            "rows_loaded_plus_quarantined": result.rows_loaded + result.rows_quarantined,
        },
        description="rows read = rows loaded + rows quarantined",
    )


@asset(
    partitions_def=export_files,
    group_name=SOURCES_GROUP,
    owners=OWNERS,
    kinds={"polars", "parquet"},
    check_specs=[
        AssetCheckSpec("rows_reconcile", asset="landing_exports", blocking=True),
        AssetCheckSpec("quarantine_share", asset="landing_exports"),
    ],
    description=(
        "One export file from the landing zone (Label Studio JSON, SageMaker Ground Truth "
        "manifest, CSV/TSV/Parquet/JSONL), validated and staged per day; bad rows quarantined."
    ),
)
def landing_exports(
    context: AssetExecutionContext, landing: LandingZone, lake: Lake
) -> MaterializeResult:
    path = context.partition_key
    parsed = parse_export_path(path)
    if parsed is None:
        raise ValueError(f"{path}: not an export path (exports/<project>/<format>/<file>)")
    project, format_name = parsed
    settings = landing.project_settings(project)
    mapping = project_mapping(settings, source=project_settings_path(project))
    # A malformed scale fails the run naming the file and field, as a malformed gate floor
    # does: a scale nobody meant would quarantine good answers.
    scale = project_scale(settings, source=project_settings_path(project))
    label_set = project_label_set(settings, source=project_settings_path(project))
    coordinates = project_coordinates(settings, source=project_settings_path(project))
    context.log.info(f"ingesting {path} as {format_name} for project {project}")
    # Looked up before the read: a file rewritten while this run stages it then shows a
    # version other than the one recorded, and the sensor ingests it again.
    fingerprint = landing.fingerprint(path) or ""
    # An unreadable file raises here and fails the run with a message naming it; the sensor
    # retries it on a later tick rather than skipping it.
    result = ingest_bytes(
        # Unpacked as the commands unpack a `.gz` export: the parsers' checks read the bytes.
        unpacked(landing.read_bytes(path), name=path),
        format=format_name,
        source_file=path,
        project=project,
        label_set=label_set,
        scale=scale,
        mapping=mapping,
        coordinates=coordinates,
    )
    with lake.staging_lock(log=context.log.info):
        result = within_partitions(context, result, name=path, lake=lake, replaces=source_id(path))
        # Ids made from the file's name and line are made from its path, as the live loop
        # keys them: the next day's file of the same name in another folder is another one.
        result = dataclasses.replace(result, judgments=path_line_ids(result.judgments))
        days = stage(lake, result, source=source_id(path))
    undated = undated_tasks(result)
    if undated:
        context.log.warning(
            f"{path}: {undated} task(s) with no created_at and no valid judgment not staged "
            f"(quarantine reasons: {result.reasons or 'none'})"
        )
    return MaterializeResult(
        metadata={
            **reconciliation(result),
            "days": MetadataValue.json(days),
            "undated_tasks": MetadataValue.int(undated),
            "fingerprint": MetadataValue.text(fingerprint),
            "quarantine_preview": markdown_table(result.quarantine.drop("raw", strict=False)),
        },
        check_results=ingest_checks(result),
    )


@asset(
    group_name=SOURCES_GROUP,
    owners=OWNERS,
    kinds={"postgres", "polars"},
    check_specs=[
        AssetCheckSpec("rows_reconcile", asset="annotation_db_changes", blocking=True),
        AssetCheckSpec("quarantine_share", asset="annotation_db_changes"),
    ],
    description=(
        "Rows of the annotation tool's database changed since the last watermark (updated_at), "
        "read in bulk as Arrow and upserted into the staged day of each row; rows it deleted "
        "(tombstones, deleted_at) leave their staged day."
    ),
)
def annotation_db_changes(
    context: AssetExecutionContext, annotation_db: AnnotationDatabase, lake: Lake
) -> MaterializeResult:
    since = datetime(1970, 1, 1, tzinfo=UTC)
    if lake.exists(ANNOTATION_DB_WATERMARK_KEY):
        since = datetime.fromisoformat(
            json.loads(lake.get(ANNOTATION_DB_WATERMARK_KEY))["watermark"]
        )
    seen = lake.get_frame(ANNOTATION_DB_SEEN_KEY) if lake.exists(ANNOTATION_DB_SEEN_KEY) else None
    extract = annotation_db.extract(since=since, seen=seen)
    with lake.staging_lock(log=context.log.info):
        return _stage_db_extract(context, lake, extract, since=since)


def _stage_db_extract(
    context: AssetExecutionContext, lake: Lake, extract: DatabaseExtract, *, since: datetime
) -> MaterializeResult:
    """`annotation_db_changes` from its extract on: the rows checked, staged and the watermark
    moved, under the staging lock."""
    result = within_partitions(context, extract.result, name="annotation DB", lake=lake)
    days: set[str] = set()
    for table, _, column in STAGED_TABLES:
        incoming = {"judgments": result.judgments, "raw_tasks": result.tasks}.get(
            table, result.gold
        )
        key_columns = {"judgments": ("judgment_id",), "raw_tasks": ("task_id",)}.get(
            table, ("task_id",)
        )
        for day, part in partition_by_day(incoming, column=column, name=table).items():
            key = staging_key(table, day.isoformat(), "annotation_db")
            existing = lake.get_frame(key) if lake.exists(key) else None
            version = "updated_at" if "updated_at" in part.columns else column
            lake.put_frame(key, merge_partition(existing, part, key=key_columns, version=version))
            days.add(day.isoformat())
    # A row whose submitted_at moved leaves its older version in its former day's staging.
    days |= days_sharing_judgments(lake, result.judgments.select(JUDGMENT_KEY), skip=set())
    days |= withdraw_moved_tasks(lake, result.tasks)
    withdrawn = withdraw_counted(lake, extract, since=since)
    days |= withdrawn.days
    scale_days, scale_record = scales_changed(lake, extract)
    days |= scale_days
    if withdrawn.unknown:
        context.log.info(f"{withdrawn.unknown} deletion(s) of rows never staged: ignored")
    if not extract.deletions_tracked:
        context.log.warning(
            "the annotation DB has no tombstone tables this role can read (migration 6), so "
            f"rows the tool deletes stay in the daily layers; {MIGRATION_FIX}"
        )
    lake.put_frame(
        quarantine_key("annotation_db", f"{extract.until:%Y%m%dT%H%M%S}"), result.quarantine
    )
    # The watermark moves only after every staged write succeeded, so a crash re-reads.
    lake.put_frame(ANNOTATION_DB_SEEN_KEY, extract.seen)
    lake.put(
        ANNOTATION_DB_WATERMARK_KEY, json.dumps({"watermark": extract.until.isoformat()}).encode()
    )
    if scale_record is not None:
        # After the watermark: a retry of a run that failed before it names the days again.
        lake.put(ANNOTATION_DB_SCALES_KEY, scale_record)
    context.log.info(f"extracted ({since}, {extract.until}]: {result.rows_read:,} rows")
    return MaterializeResult(
        metadata={
            **reconciliation(result),
            "days": MetadataValue.json(sorted(days)),
            "watermark": MetadataValue.text(extract.until.isoformat()),
            "deletions_applied": MetadataValue.int(withdrawn.deleted),
            "deletions_unknown": MetadataValue.int(withdrawn.unknown),
            "deletions_tracked": MetadataValue.bool(extract.deletions_tracked),
            # False: the DB predates migration 9, and every row it gives is categorical.
            "kind_answers": MetadataValue.bool(extract.kind_answers),
            # Staged versions an edit off the project's scale (`projects.scale`) withdrew.
            "outside_scale_withdrawn": MetadataValue.int(withdrawn.off_scale),
            # Staged versions an edit into a row set aside for another reason withdrew.
            "set_aside_withdrawn": MetadataValue.int(withdrawn.set_aside),
        },
        check_results=ingest_checks(result),
    )


def withdraw_moved_tasks(lake: Lake, tasks: pl.DataFrame) -> set[str]:
    """The days whose annotation-DB staging held a task of `tasks` that is now dated another
    day, that copy removed. The database holds one row per task, and the raw layer unions a
    day's staged tasks without looking at other days: the former day's copy counted the task
    in a second time (the workforce layer's tasks in)."""
    dated = tasks.filter(pl.col("created_at").is_not_null()).select(
        "task_id", _day=pl.col("created_at").dt.date().cast(pl.String)
    )
    if dated.is_empty():
        return set()
    keys = [
        key
        for key in lake.list_keys(staging_prefix("raw_tasks"))
        if key.endswith(".parquet") and staging_source(key) == "annotation_db"
    ]
    days = set()
    for key, staged in zip(keys, lake.read_columns_each(keys, ["task_id"]), strict=True):
        day = staging_day(key)
        moved = dated.filter(pl.col("_day") != day).get_column("task_id").implode()
        if staged.get_column("task_id").is_in(moved).any():
            frame = lake.get_frame(key)
            lake.put_frame(key, frame.filter(~pl.col("task_id").is_in(moved)))
            days.add(day)
    return days


def scales_changed(lake: Lake, extract: DatabaseExtract) -> tuple[set[str], bytes | None]:
    """(the days holding judgments of a project whose scale the annotation DB declared,
    changed or removed since the recorded one (`ANNOTATION_DB_SCALES_KEY`), to rebuild on it:
    rows staged before it are set aside there, or no longer; the new record for the daily kind
    aggregation, None when unchanged). Nothing without `projects.scale` (migration 10)."""
    if extract.scales is None:
        return set(), None
    record = {project: scale.settings() for project, scale in sorted(extract.scales.items())}
    raw = lake.get_if_exists(ANNOTATION_DB_SCALES_KEY)
    before = {} if raw is None else json.loads(raw)
    if record == before:
        return set(), None
    changed = sorted(p for p in {*record, *before} if record.get(p) != before.get(p))
    days: set[str] = set()
    if lake.days("judgments"):
        judged = (
            lake.scan_all("judgments")
            .filter(pl.col("project").is_in(changed))
            .select(pl.col("submitted_at").dt.date().cast(pl.String).unique())
            .collect()
        )
        days = set(judged.to_series().to_list())
    return days, json.dumps(record, sort_keys=True).encode()


# What withdraws a staged version, in the order that claims a version two of them name: the
# tool's deletion of its row; an edit that moved the row off its project's scale (quarantined:
# the version staged before leaves its day as a deleted one does); any other edit that made it
# a row the extract sets aside (the row the tool holds no longer says what the staged version
# says).
DELETED, OFF_SCALE, SET_ASIDE = range(3)
WITHDRAWALS = (DELETED, OFF_SCALE, SET_ASIDE)


@dataclasses.dataclass(frozen=True)
class Withdrawn:
    """What an extract's tombstones withdrew from the staged rows (`withdraw_counted`)."""

    # Keys the tool's deletions removed, and those of deletions that removed nothing.
    deleted: int
    unknown: int
    # Staged (table, key)s an edit off the project's scale, or into a row set aside for
    # another reason, withdrew.
    off_scale: int
    set_aside: int
    days: set[str]


def withdraw_deleted(lake: Lake, extract: DatabaseExtract) -> tuple[int, set[str]]:
    """(how many keys a tombstone removed from the staged rows, the days to rebuild): a deleted
    judgment leaves the staged day of its `submitted_at`, a deleted gold label every staged
    day of the DB's gold, each only where the staged version is the deleted one or older (a
    row inserted again after the deletion is newer than the deleted version, and stays). A
    tombstone of a row never staged removes nothing. The days are those of every tombstone,
    whether it removed a row now or in an attempt that failed before the watermark moved, so
    a retry rebuilds them."""
    removed, days = _withdrawn(lake, extract, causes=(DELETED,))
    return len(removed[DELETED]), days


def withdraw_counted(lake: Lake, extract: DatabaseExtract, *, since: datetime) -> Withdrawn:
    """`withdraw_deleted` of every tombstone of the extract (its deletions, and the versions
    its edits set aside: `WITHDRAWALS`) in one pass, each staged file read and rewritten once,
    counted by key. The deletions' keys removed are recorded with the window's start (`since`)
    until the next window, so a retry of the window after an attempt that failed once it had
    removed rows counts those as removed, not as never staged; an attempt that fails while it
    rewrites staged days records nothing, and its retry counts what it removed as never
    staged. A deletion of a project name the ingest refuses removed nothing."""
    removed, days = _withdrawn(lake, extract)
    wanted = {("judgments", k) for k in extract.deletions["judgment_id"].unique()} | {
        ("gold_labels", k) for k in extract.gold_deletions["task_id"].unique()
    }
    earlier: set[tuple[str, str]] = set()
    if lake.exists(ANNOTATION_DB_WITHDRAWN_KEY):
        record = json.loads(lake.get(ANNOTATION_DB_WITHDRAWN_KEY))
        if record.get("since") == since.isoformat():
            earlier = {(table, key) for table, key in record["keys"]}
    applied = (removed[DELETED] | earlier) & wanted
    if applied:
        record = {"since": since.isoformat(), "keys": sorted(applied)}
        lake.put(ANNOTATION_DB_WITHDRAWN_KEY, json.dumps(record).encode())
    return Withdrawn(
        deleted=len(applied),
        unknown=len(wanted) + extract.ignored_deletions - len(applied),
        off_scale=len(removed[OFF_SCALE]),
        set_aside=len(removed[SET_ASIDE]),
        days=days,
    )


def _tombstones(
    extract: DatabaseExtract, causes: Sequence[int]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The extract's judgment and gold tombstones of `causes` (`WITHDRAWALS`) in one frame
    each, every row with its `_cause`."""
    frames = {
        DELETED: (extract.deletions, extract.gold_deletions),
        OFF_SCALE: (extract.off_scale, extract.off_scale_gold),
        SET_ASIDE: (extract.set_aside, extract.set_aside_gold),
    }

    def tagged(table: int) -> pl.DataFrame:
        return pl.concat(
            [frames[cause][table].with_columns(_cause=pl.lit(cause, pl.Int8)) for cause in causes],
            how="vertical_relaxed",
        )

    return tagged(0), tagged(1)


def _withdrawn(
    lake: Lake, extract: DatabaseExtract, *, causes: Sequence[int] = WITHDRAWALS
) -> tuple[dict[int, set[tuple[str, str]]], set[str]]:
    """`withdraw_deleted`'s work for the tombstones of `causes` at once: per cause, the (table,
    key) it removed (a version two causes name counts for the first); the days to rebuild."""
    removed: set[tuple[int, str, str]] = set()
    days: set[str] = set()
    judged, gold = _tombstones(extract, causes)
    deletions = judged.with_columns(_day=pl.col("submitted_at").dt.date())
    for (day,), part in deletions.partition_by("_day", as_dict=True).items():
        key = staging_key("judgments", day.isoformat(), "annotation_db")
        if lake.exists(key):
            removed |= {
                (cause, "judgments", k)
                for cause, k in _without_deleted(lake, key, part, "judgment_id")
            }
            days.add(day.isoformat())
    if gold.height:
        for key in lake.list_keys(staging_prefix("gold_labels")):
            if staging_source(key) == "annotation_db" and key.endswith(".parquet"):
                removed |= {
                    (cause, "gold_labels", k)
                    for cause, k in _without_deleted(lake, key, gold, "task_id")
                }
        tasks = gold.get_column("task_id").unique().to_list()
        if lake.days("judgments"):
            judged_days = (
                lake.scan_all("judgments")
                .filter(pl.col("task_id").is_in(tasks))
                .select(pl.col("submitted_at").dt.date().cast(pl.String).unique())
                .collect()
            )
            days |= set(judged_days.to_series().to_list())
    by_cause = {cause: {(t, k) for c, t, k in removed if c == cause} for cause in causes}
    return by_cause, days


def _without_deleted(
    lake: Lake, key: str, tombstones: pl.DataFrame, id_column: str
) -> set[tuple[int, str]]:
    """Rewrite the staged `key` without the rows a tombstone deleted (`ledger.deleted`'s rule:
    the deleted version or an older one); the (`_cause`, id) of each, a row that tombstones
    of two causes delete counted for the one first in `WITHDRAWALS`."""
    staged = lake.get_frame(key)
    deaths = tombstones.select(id_column, "_cause", _version="updated_at", _deleted_at="deleted_at")
    dead = (
        staged.select(id_column, "updated_at")
        .join(deaths, on=id_column, how="inner")
        .filter(
            (pl.col("updated_at") <= pl.col("_version"))
            & (pl.col("updated_at") < pl.col("_deleted_at"))
        )
        .group_by(id_column, "updated_at")
        .agg(pl.col("_cause").min())
    )
    if dead.height == 0:
        return set()
    lake.put_frame(
        key,
        staged.join(
            dead.select(id_column, "updated_at"),
            on=[id_column, "updated_at"],
            how="anti",
            maintain_order="left",
        ),
    )
    return set(dead.select("_cause", id_column).iter_rows())


@asset(
    group_name=SOURCES_GROUP,
    owners=["team:annotation-quality"],
    kinds={"polars", "parquet"},
    description=(
        "Gold sets maintained by the quality team (landing zone gold/<project>/*.csv or "
        ".parquet with task_id, label), staged so every day that judged those tasks rebuilds; "
        "a file still being written keeps its last staged rows until it settles. Each row is "
        "checked as an export's gold rows are; a bad one is quarantined naming file, row and "
        "field."
    ),
)
def gold_sets(
    context: AssetExecutionContext, landing: LandingZone, lake: Lake
) -> MaterializeResult:
    with lake.staging_lock(log=context.log.info):
        return _stage_gold_sets(context, landing, lake)


def _stage_gold_sets(
    context: AssetExecutionContext, landing: LandingZone, lake: Lake
) -> MaterializeResult:
    """`gold_sets`, under the staging lock: its project-name check reads the staged projects
    and its commit must land before another run reads them."""
    now = datetime.now(UTC)
    frames = []
    target = staging_key("gold_labels", now.date().isoformat(), "gold_sets")
    previous = [
        key
        for key in lake.list_keys(staging_prefix("gold_labels"))
        if staging_source(key) == "gold_sets"
    ]
    settled, waiting = landing.scan_settled("gold/")
    waiting = [path for path in waiting if _is_gold_set(path)]
    quarantined: list[pl.DataFrame] = []
    if waiting and lake.exists(quarantine_key("gold_sets")):
        # A waiting file's rows quarantined when it was last read stay with its staged ones.
        before = lake.get_frame(quarantine_key("gold_sets"))
        quarantined.append(before.filter(pl.col("source_file").is_in(waiting)))
    if waiting:
        # A file still being written is not read: its rows from the last restage stay.
        context.log.warning(
            landing.unsettled_note(
                waiting, what="gold file(s)", then="their last staged rows kept until they settle"
            )
        )
        kept = [lake.get_frame(key) for key in previous]
        frames += [
            frame.filter(pl.col("source_file").is_in(waiting))
            for frame in kept
            if "source_file" in frame.columns
        ]
    ignored = sorted(path for path, _ in settled if not _is_gold_set(path))
    if ignored:
        # Dropped where no gold set goes: said, or the quality team waits for gold that never
        # comes.
        context.log.warning(
            f"{len(ignored)} file(s) under gold/ not read: a gold set is "
            f"gold/<project>/<file>.csv or .parquet: {', '.join(ignored[:5])}"
        )
    for path, _ in settled:
        parts = path.split("/")
        if not _is_gold_set(path):
            continue
        frame = read_landing_table(path, landing.read_bytes(path), columns=("task_id", "label"))
        missing = {"task_id", "label"} - set(frame.columns)
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        good, bad = _validated_gold(
            landing, frame, project=parts[1], path=path, now=now, warn=context.log.warning
        )
        frames.append(good)
        quarantined.append(bad)
    gold = pl.concat(frames, how="diagonal_relaxed") if frames else schema.empty(schema.GOLD_LABELS)
    gold = schema.conform(gold, schema.GOLD_LABELS, name="gold_sets")
    quarantine = (
        pl.concat([q.cast(pl.Schema(schema.QUARANTINE)) for q in quarantined])
        if quarantined
        else schema.empty(schema.QUARANTINE)
    )
    # A gold folder spelled as a project of the lake in another case would share its folder
    # on a case-insensitive disk; the gold sets' own earlier spellings are replaced here.
    known = projects_staged(lake, besides="gold_sets")
    files = tuple(sorted(set(gold.get_column("source_file").to_list())))
    checked = set_aside_case_twins(
        IngestResult(
            schema.empty(schema.JUDGMENTS),
            schema.empty(schema.RAW_TASKS),
            gold,
            quarantine,
            gold.height + quarantine.height,
            files,
        ),
        known,
    )
    gold = checked.gold.unique(["project", "task_id"], keep="last")
    quarantine = checked.quarantine
    if quarantine.height:
        reasons = quarantine.group_by("reason").len().sort("reason").rows()
        context.log.warning(
            f"{quarantine.height} gold row(s) quarantined: "
            + ", ".join(f"{reason} {n}" for reason, n in reasons)
        )
    had_gold = staged_projects(previous, read=lake.read_columns_each)
    # The new gold set replaces the old in one commit: a killed run keeps the previous one.
    lake.commit(
        {target: parquet_bytes(gold), quarantine_key("gold_sets"): parquet_bytes(quarantine)},
        deletes=[key for key in previous if key != target],
    )
    # The days to rebuild are the days that judged a gold task, and every judged day of a
    # project that gained or lost its gold set: whether such a project's day without gold is
    # held back (the gold floor) changed with it. The scan pushes the filter down.
    turned = sorted(had_gold ^ set(gold["project"].unique().to_list()))
    judged = (
        lake.scan_all("judgments")
        .filter(
            pl.col("task_id").is_in(gold["task_id"].implode()) | pl.col("project").is_in(turned)
        )
        .select(pl.col("submitted_at").dt.date().cast(pl.String).unique())
        .collect()
        if lake.days("judgments") and (gold.height or turned)
        else pl.DataFrame({"submitted_at": []})
    )
    days = sorted(judged.to_series().to_list())
    context.log.info(f"{gold.height} gold labels staged; {len(days)} day(s) to rebuild")
    return MaterializeResult(
        metadata={
            "dagster/row_count": MetadataValue.int(gold.height),
            "days": MetadataValue.json(days),
            "projects": MetadataValue.json(sorted(gold["project"].unique().to_list())),
            "unsettled_files": MetadataValue.json(waiting),
            "ignored_files": MetadataValue.json(ignored),
            "rows_quarantined": MetadataValue.int(quarantine.height),
            "quarantine_preview": markdown_table(quarantine.drop("raw")),
        }
    )


def _non_finite_error(frame: pl.DataFrame) -> dict[str, pl.Expr]:
    """`label_error` and `error_field` (as `validate` reads them) of each row of a typed gold
    set whose float `task_id` or `label` is NaN or infinite: cast to text, every NaN task would
    be the task "NaN". Worded as the file readers and the commands word it."""
    messages = {
        "task_id": "task_id: expected a string or a number, got ",
        "label": "label: expected a scalar, got ",
    }
    errors = [
        (name, pl.lit(message) + non_finite_text(pl.col(name)))
        for name, message in messages.items()
        if frame.schema[name].is_float()
    ]
    if not errors:
        return {}
    return {
        "label_error": pl.coalesce(error for _, error in errors),
        "error_field": pl.coalesce(
            pl.when(error.is_not_null()).then(pl.lit(name)) for name, error in errors
        ),
    }


def _validated_gold(
    landing: LandingZone,
    frame: pl.DataFrame,
    *,
    project: str,
    path: str,
    now: datetime,
    warn: Callable[[str], None],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the gold labels of one gold set file, its quarantined rows), each row checked as an
    export's gold rows are (`validate`): a missing or oversized task id or label, a NUL byte, a
    project name no folder can hold, a label outside the project's label set, a task given
    twice (the later row wins). `source_line` is the row's number in the file, from 1."""
    try:
        settings = landing.project_settings(project) if is_safe_project(project) else {}
        label_set = project_label_set(settings, source=project_settings_path(project))
    except ValueError as error:
        # One project's unreadable project.json must not stop every project's gold: this
        # project's rows are staged without the label-set check, and the log says why.
        warn(f"{path}: labels not checked against the label set: {error}")
        label_set = None
    staged = frame.select(
        task_id=pl.col("task_id").cast(pl.String),
        label=pl.col("label").cast(pl.String),
        project=pl.lit(project, pl.String),
        submitted_at=pl.lit(now.isoformat(), pl.String),
        source_line=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        reason=pl.col(READ_ERROR),
        field=pl.lit(None, pl.String),
        record=pl.struct(pl.exclude(READ_ERROR)),
        **_non_finite_error(frame),
    )
    good, bad = validate(
        staged,
        label_set=label_set,
        now=now,
        duplicate_key=("task_id",),
        required=("task_id", "label", "submitted_at"),
        table="gold_labels",
        source="gold_set",
        source_file=path,
    )
    gold = good.select(
        "task_id",
        "project",
        "label",
        updated_at=pl.lit(now),
        source=pl.lit("gold_set"),
        source_file=pl.lit(path),
        source_line="source_line",
    )
    return gold, bad


def _is_gold_set(path: str) -> bool:
    """Whether a landing path is a gold set, `gold/<project>/<file>.{csv,parquet}`."""
    return len(path.split("/")) == 3 and path.endswith((".csv", ".parquet"))
