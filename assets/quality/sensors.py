"""Sensors of the quality layer: a failed gate or reconciliation becomes an alert; a project's
changed gate floors re-evaluate the days they apply to; a day whose quality was rewritten
rebuilds the later days whose trailing history (scorecard trends, drift baseline) that changes."""

import datetime as dt
import hashlib
import json
import time
from collections.abc import Set as AbstractSet
from typing import TypedDict, cast

import polars as pl
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DefaultSensorStatus,
    FloatMetadataValue,
    IntMetadataValue,
    JsonMetadataValue,
    RunRequest,
    RunsFilter,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TextMetadataValue,
    sensor,
)

from annotation_pipelines.quality.drift import BASELINE_COLUMNS, stale_baselines
from annotation_pipelines.quality.gates import project_gate_floors
from annotation_pipelines.quality.scorecards import HISTORY_COLUMNS, stale_history
from annotation_pipelines.settings import load_settings
from assets.common.alerts import record_alert
from assets.common.cursors import load_cursor
from assets.common.partitions import daily_partitions
from assets.common.runs import NOT_STARTED_YET, UNFINISHED
from assets.quality.assets import (
    GATES,
    HISTORY_WINDOW_METADATA,
    QualityConfig,
    label_counts,
    quality,
    trailing_days,
)
from assets.quality.jobs import quality_job
from assets.quality.kinds import KIND_GATES, kind_quality
from resources.lake import Lake
from resources.landing import LandingZone, project_settings_path

# The checks whose failures are alerts: the quality gates of every kind and the ingest
# checks (rows reconcile, quarantined share).
ALERTING_CHECKS = (
    *(AssetCheckKey(AssetKey("quality_report"), spec.name) for spec in GATES),
    *(AssetCheckKey(AssetKey("kind_quality_report"), spec.name) for spec in KIND_GATES),
    *(
        AssetCheckKey(AssetKey(source), check)
        for source in ("landing_exports", "annotation_db_changes")
        for check in ("rows_reconcile", "quarantine_share")
    ),
)


# How many failing (check, partition, severity) keys the cursor remembers; the oldest go first.
MAX_OPEN_FAILURES = 2_000


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A failed asset check (a quality gate) → an alert record, a log line, a webhook.",
)
def quality_alert_sensor(context: SensorEvaluationContext, lake: Lake) -> SkipReason:
    # Checks run inside runs, so every finished run is read once, in order, through the public
    # run-status index (indexed in every storage, SQLite's run-sharded one too); the cursor keeps
    # one position per terminal status.
    state = load_cursor(context.cursor)
    # A day's quality layer is rebuilt by every run that restages it (one per export file), and
    # each rebuild evaluates its gates again: a gate already failing for that day with the same
    # severity is alerted once per failing project, and again only after an evaluation has
    # passed it (or no longer names the project).
    failing = _open_failures(state.get("failing", {}))
    alerts: list[dict[str, object]] = []
    for status in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
        result = context.instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(event_type=status),
            limit=200,
            cursor=state.get(status.value),
            ascending=True,
        )
        for record in result.records:
            alerts.extend(_failed_check_alerts(context, record.run_id, failing))
        if result.records:
            state[status.value] = result.cursor
    recorded = record_alert(lake, alerts, log=context.log)
    state["failing"] = dict(list(failing.items())[-MAX_OPEN_FAILURES:])
    context.update_cursor(json.dumps(state, sort_keys=True))
    if not alerts:
        return SkipReason("no failed checks")
    held = len(alerts) - len(recorded)
    again = f"; {held} already recorded by an earlier evaluation of this cursor" if held else ""
    return SkipReason(f"{len(recorded)} alert(s) recorded{again}")


class OpenFailure(TypedDict):
    """A failing (check, day, severity) as the cursor keeps it: the run that alerted it last,
    and the projects that fail or warn it as last evaluated (None: not known)."""

    run: str
    projects: list[str] | None


def _open_failures(stored: dict[str, object]) -> dict[str, OpenFailure]:
    """The cursor's failing keys. A cursor written before the projects were kept holds the run
    id alone: its projects are unknown, and the next failure of the key adopts its projects
    without alerting them again."""
    return {
        key: cast(OpenFailure, value)
        if isinstance(value, dict)
        else OpenFailure(run=str(value), projects=None)
        for key, value in stored.items()
    }


def _failed_check_alerts(
    context: SensorEvaluationContext, run_id: str, failing: dict[str, OpenFailure]
) -> list[dict[str, object]]:
    """The run's failed alerting checks not already alerted, or failed by a project that was
    not failing them before; `failing` (key → run and projects) updated."""
    entries = context.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    alerts: list[dict[str, object]] = []
    for entry in entries:
        evaluation = entry.asset_check_evaluation
        if evaluation is None:
            continue
        check_key = AssetCheckKey(evaluation.asset_key, evaluation.check_name)
        if check_key not in ALERTING_CHECKS:
            continue
        name = check_key.to_user_string()
        partition = evaluation.partition or _run_partition(context, run_id)
        if evaluation.passed:
            if _read_nothing(evaluation):
                continue  # an ingest that read no row says nothing of the share it warns of
            for severity in AssetCheckSeverity:
                failing.pop(f"{name}|{partition}|{severity.value}", None)
            continue
        key = f"{name}|{partition}|{evaluation.severity.value}"
        projects = _projects(evaluation)
        known = failing.get(key)
        if known is not None:
            before = known["projects"]
            new = [] if before is None else [p for p in projects if p not in before]
            # The set as now evaluated: a project that left it and comes back is new again.
            known["projects"] = projects
            if not new:
                context.log.info(
                    f"{name} for {partition} still failing (alerted from {known['run']})"
                )
                continue
            known["run"] = run_id
            reason = _reason(evaluation, only=new)
        else:
            failing[key] = {"run": run_id, "projects": projects}
            reason = _reason(evaluation)
        alerts.append(
            {
                "kind": "quality_gate",
                "asset": check_key.asset_key.to_user_string(),
                "check": check_key.name,
                "partition": partition,
                "severity": evaluation.severity.value,
                "run_id": run_id,
                "message": f"{name} failed for {partition}: {reason}",
            }
        )
    return alerts


def _read_nothing(evaluation: AssetCheckEvaluation) -> bool:
    value = evaluation.metadata.get("rows_read")
    return isinstance(value, IntMetadataValue) and value.value == 0


def _projects(evaluation: AssetCheckEvaluation) -> list[str]:
    """The projects a gate failed or warned, or the reasons an ingest's quarantined share
    came from (sorted); [] for a check that names none."""
    named: set[str] = set()
    for label in ("failing", "warned", "reasons"):
        value = evaluation.metadata.get(label)
        if isinstance(value, JsonMetadataValue) and isinstance(value.value, list):
            named.update(str(project) for project in value.value)
    return sorted(named)


def _reason(evaluation: AssetCheckEvaluation, *, only: list[str] | None = None) -> str:
    """Why the check failed: its description (a gate's names each project with its figure and
    threshold), then its scalar figures; its JSON figures (projects, values, thresholds) when
    it has no description. With `only`, the description's clauses of those projects alone."""
    metadata = evaluation.metadata
    # `<project>/value` and `<project>/floor` are there for the check's plots; the description
    # already words each failing project's figure and floor.
    figures = [
        f"{label} {value.value}"
        for label, value in metadata.items()
        if isinstance(value, IntMetadataValue | FloatMetadataValue | TextMetadataValue)
        and "/" not in label
    ]
    parts = [evaluation.description] if evaluation.description else []
    if parts and only is not None:
        # A gate's description is "<project>: <reason>" clauses joined by "; ".
        clauses = [
            clause
            for clause in parts[0].split("; ")
            if any(clause.startswith(f"{project}: ") for project in only)
        ]
        parts = ["; ".join(clauses)] if clauses else parts
    if not parts:
        parts = [
            f"{label} {value.value}"
            for label, value in metadata.items()
            if isinstance(value, JsonMetadataValue) and value.value
        ] or ["no project named"]
    return "; ".join(parts + figures)


def _run_partition(context: SensorEvaluationContext, run_id: str) -> str:
    run = context.instance.get_run_by_id(run_id)
    return run.tags.get("dagster/partition", "") if run else ""


# Tags of a run that re-evaluates a day after a floor change: the projects whose floors changed,
# and how many days back the sensor looked.
FLOORS_CHANGED_TAG = "annotation_pipelines/floors_changed"
RECHECK_DAYS_TAG = "annotation_pipelines/recheck_days"
# The run queue starts runs in the order they came, and a change queues up to
# ANNOTATION_PIPELINES_FLOOR_RECHECK_DAYS of them; below the default priority (0), a daily run
# queued after them still takes the next free slot.
PRIORITY_TAG, RECHECK_PRIORITY = "dagster/priority", "-1"
PARTITION_TAG = "dagster/partition"
# The assets that evaluate the gates, each with the report table that lists the projects a day
# has: categorical projects are gated by `quality`, the other kinds by `kind_quality`.
GATED = ((quality, "quality_report"), (kind_quality, "kind_quality_report"))


@sensor(
    job=quality_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A project's quality_gates floors changed in its project.json → re-evaluate the "
    "gates of its materialized days among the last ANNOTATION_PIPELINES_FLOOR_RECHECK_DAYS "
    "(default 30) daily partitions, yesterday the last.",
)
def floor_change_sensor(
    context: SensorEvaluationContext, lake: Lake, landing: LandingZone
) -> SensorResult | SkipReason:
    # The cursor holds each project's floors as last read (projects without floors of their
    # own are left out), and since when a file with floors has been missing. A run is keyed by
    # what changed (`_change_digest`), never by a count kept in the cursor: Dagster refuses a
    # run key any earlier run of the sensor had, and a reset cursor would count from the start.
    recorded, missing_since, problem = _floor_cursor(context.cursor)
    read, files, unread = _read_floors(landing)
    if recorded is None:
        # Before the first tick nobody knows which floors the stored days were gated with; the
        # runs of each day since applied the files as they were, so today's are the baseline.
        # A cursor not understood (set by hand) is the same: failing on it every tick would
        # stop the sensor for good.
        if problem:
            context.log.warning(f"cursor not understood ({problem}); a new baseline is recorded")
        return SensorResult(
            skip_reason=("cursor not understood, taken as the " if problem else "")
            + f"first tick: recorded the floors of {len(read)} project(s); a change "
            "from now on re-evaluates the project's days" + _unread_note(unread),
            cursor=json.dumps({"floors": read}, sort_keys=True),
        )
    # A file not read this tick (being written, or malformed) keeps the floors last read.
    current = dict(read)
    current.update({p: recorded[p] for p in unread if p in recorded})
    missing, removed = _missing_files(landing, recorded, {*files, *unread}, missing_since)
    for project, since in missing.items():
        current[project] = recorded[project]
        unread[project] = (
            f"{project_settings_path(project)} missing since {_when(since)}; its floors count "
            f"as removed once it stays missing for over {landing.settle_seconds:g} s"
        )
    cursor = json.dumps(
        {"floors": current, **({"missing": missing} if missing else {})}, sort_keys=True
    )
    changed = sorted(p for p in {*current, *recorded} if current.get(p) != recorded.get(p))
    if not changed:
        return SensorResult(
            skip_reason=f"no project's floors changed ({len(current)} with floors of their own)"
            + _unread_note(unread),
            cursor=cursor,
        )
    days = load_settings().floor_recheck_days
    changes: dict[str, dict[str, object]] = {
        project: {
            "project": project,
            "old": recorded.get(project),
            "new": current.get(project),
            "file": files.get(project),
            "missing_since": removed.get(project),
        }
        for project in changed
    }
    per_day = _gated_days(context, lake, changed, days=days)
    for project in changed:
        rechecked = [day for day, (_, projects) in sorted(per_day.items()) if project in projects]
        context.log.info(
            f"{project}: quality_gates {_shown(recorded.get(project))} -> "
            f"{_shown(current.get(project))}; re-evaluating {len(rechecked)} materialized day(s) "
            f"of the last {days}: {', '.join(rechecked) or 'none'}"
        )
    # A re-check reads the floors when its run starts: one still waiting for a day, over the
    # same assets, applies this change as well, and repeated edits queue the day once.
    waiting = _waiting_rechecks(context)
    held = sorted(
        day
        for day, (keys, _) in per_day.items()
        if any(selection is None or keys <= selection for selection in waiting.get(day, []))
    )
    if held:
        context.log.info(f"not queued again, a floor re-check still waiting: {', '.join(held)}")
    requests = [
        _recheck_request(day, keys, [changes[p] for p in sorted(projects)], days=days)
        for day, (keys, projects) in sorted(per_day.items())
        if day not in held
    ]
    if not requests:
        nothing = (
            f"the re-check still waiting for {', '.join(held)} applies them when it starts"
            if held
            else f"{'it has no' if len(changed) == 1 else 'none of them has a'} materialized "
            f"day in the last {days} days to re-evaluate"
        )
        return SensorResult(
            skip_reason=f"floors changed for {', '.join(changed)}; {nothing}"
            + _unread_note(unread),
            cursor=cursor,
        )
    for problem in unread.values():
        context.log.warning(problem)
    return SensorResult(run_requests=requests, cursor=cursor)


def _read_floors(
    landing: LandingZone,
) -> tuple[dict[str, dict[str, float]], dict[str, list[object]], dict[str, str]]:
    """(project → its floors, for the projects whose settings file sets any; project → its
    settled file's [fingerprint, last modified]; project → why its file was not read this tick:
    written to within the settle time, or malformed)."""
    settled, waiting = landing.scan_settled_entries("exports/")
    floors: dict[str, dict[str, float]] = {}
    files: dict[str, list[object]] = {}
    unread: dict[str, str] = {}
    for path in waiting:
        if project := _settings_project(path):
            unread[project] = landing.unsettled_note(
                [path], what="settings file", then="read once it settles"
            )
    for path, fingerprint, modified in settled:
        if not (project := _settings_project(path)):
            continue
        files[project] = [fingerprint, modified]
        try:
            # The reader and the validation the quality step uses, so the sensor sees the
            # floors that step would apply, and refuses what it would refuse.
            # The scan just listed the file: read it without listing its folder again.
            own = project_gate_floors(landing.read_project_settings(path), source=path)
        except ValueError as error:
            unread[project] = f"{error} (the floors last read stay until it is fixed)"
            continue
        except FileNotFoundError:
            unread[project] = f"{path} went away while being read; the floors last read stay"
            continue
        if own:
            floors[project] = own
    return floors, files, unread


def _floor_cursor(
    cursor: str | None,
) -> tuple[dict[str, dict[str, float]] | None, dict[str, float], str | None]:
    """(project → floors last read, None before the first tick; project → since when its file
    has been missing; why the cursor was not understood, which makes it a first tick)."""
    if not cursor:
        return None, {}, None
    try:
        state = json.loads(cursor)
    except json.JSONDecodeError as error:
        return None, {}, f"not JSON: {error}"
    floors = state.get("floors") if isinstance(state, dict) else None
    missing = state.get("missing", {}) if isinstance(state, dict) else None
    if not isinstance(floors, dict) or not all(
        isinstance(own, dict) and all(_is_number(floor) for floor in own.values())
        for own in floors.values()
    ):
        return None, {}, f'expected {{"floors": {{project: {{gate: number}}}}}}, got {cursor:.200}'
    if not isinstance(missing, dict) or not all(_is_number(since) for since in missing.values()):
        return None, {}, f'expected "missing": {{project: epoch seconds}}, got {cursor:.200}'
    return floors, missing, None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _missing_files(
    landing: LandingZone,
    recorded: dict[str, dict[str, float]],
    listed: set[str],
    missing_since: dict[str, float],
) -> tuple[dict[str, float], dict[str, float]]:
    """(project → since when its file has been missing, for the projects with floors recorded
    whose file went missing within the settle time; the same for those missing for longer,
    whose floors count as removed)."""
    # A tool that replaces a file may delete it first, and an upload may land under another
    # name until complete: a file gone for less than the settle time is one being rewritten.
    now = time.time()
    missing: dict[str, float] = {}
    removed: dict[str, float] = {}
    for project in sorted(set(recorded) - listed):
        since = missing_since.get(project, now)
        if landing.settle_seconds > 0 and now - since <= landing.settle_seconds:
            missing[project] = since
        else:
            removed[project] = since
    return missing, removed


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def _settings_project(path: str) -> str | None:
    """The project whose settings file `path` is, else None."""
    parts = path.split("/")
    return parts[1] if len(parts) == 3 and path == project_settings_path(parts[1]) else None


def _gated_days(
    context: SensorEvaluationContext, lake: Lake, changed: list[str], *, days: int
) -> dict[str, tuple[set[AssetKey], set[str]]]:
    """Day → (the gated assets of its projects in `changed`, those projects), for the days of
    the last `days` daily partitions on which a project of `changed` was gated. A day the
    project was not judged has no gate of its own to change."""
    # The last partition is yesterday (a day is one once it has ended), so the window counts
    # back from it, not from today: `days` partitions, and 1 is yesterday.
    last = daily_partitions.get_last_partition_key()
    if last is None:
        return {}
    end = dt.date.fromisoformat(last)
    window = {(end - dt.timedelta(days=back)).isoformat() for back in range(days)}
    per_day: dict[str, tuple[set[AssetKey], set[str]]] = {}
    for gated, report in GATED:
        materialized = window & context.instance.get_materialized_partitions(AssetKey(report))
        scan = lake.scan_days(report, sorted(materialized))
        if not scan.collect_schema():
            continue
        judged = (
            scan.filter(pl.col("project").is_in(changed))
            .select("day", "project")
            .unique()
            .collect()
        )
        for day, project in judged.iter_rows():
            keys, projects = per_day.setdefault(day.isoformat(), (set(), set()))
            keys.update(gated.keys)
            projects.add(project)
    return per_day


def _waiting_rechecks(
    context: SensorEvaluationContext,
) -> dict[str, list[AbstractSet[AssetKey] | None]]:
    """Day → the asset selections (None: the whole job) of its floor re-check runs not started
    yet."""
    runs = context.instance.get_runs(
        RunsFilter(
            job_name=quality_job.name,
            statuses=NOT_STARTED_YET,
        )
    )
    waiting: dict[str, list[AbstractSet[AssetKey] | None]] = {}
    for run in runs:
        if FLOORS_CHANGED_TAG in run.tags and (day := run.tags.get(PARTITION_TAG)):
            waiting.setdefault(day, []).append(run.asset_selection)
    return waiting


def _recheck_request(
    day: str, keys: set[AssetKey], changes: list[dict[str, object]], *, days: int
) -> RunRequest:
    """The run that re-evaluates `keys` on `day` after `changes` (the changed projects judged
    that day)."""
    return RunRequest(
        run_key=f"floors:{day}:{_change_digest(changes)}",
        partition_key=day,
        asset_selection=sorted(keys, key=lambda key: key.to_user_string()),
        tags={
            FLOORS_CHANGED_TAG: ",".join(str(change["project"]) for change in changes),
            RECHECK_DAYS_TAG: str(days),
            PRIORITY_TAG: RECHECK_PRIORITY,
        },
    )


def _change_digest(changes: list[dict[str, object]]) -> str:
    """A hash of the changes a run re-evaluates: each project with its floors before and after,
    and its file's fingerprint and last-modified time. The time tells apart an edit back to
    earlier content, which an object store fingerprints (ETag) as before."""
    return hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()


def _shown(floors: dict[str, float] | None) -> str:
    return json.dumps(floors, sort_keys=True) if floors else "defaults"


def _unread_note(unread: dict[str, str]) -> str:
    return "".join(f"; not read: {unread[project]}" for project in sorted(unread))


SCORECARDS = AssetKey("annotator_scorecards")
# The window a day's trends read when its materialization does not say (the config default).
DEFAULT_HISTORY_WINDOW: int = QualityConfig.model_fields["trailing_days"].default
# Tags of a run that rebuilds a day whose trailing history changed: how many of its scorecards
# (project, annotator) read a different history now, and how many of its drift rows (project)
# a different baseline. Every such run carries the first, which the run queue limits.
STALE_HISTORY_TAG = "annotation_pipelines/stale_history_scorecards"
STALE_DRIFT_TAG = "annotation_pipelines/stale_drift_baselines"


@sensor(
    job=quality_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A day's quality was written (a late day, days run out of order, a rebuild) → "
    "rebuild the quality of each materialized day within the trailing window after it whose "
    "annotators' trailing history or label-drift baseline now differs from the one it was "
    "computed with, once no run of that day or its window is unfinished.",
)
def scorecard_history_sensor(context: SensorEvaluationContext, lake: Lake) -> SensorResult:
    # Each day's trends (and the "consensus agreement fell" flag) read the scorecards of the
    # days before it straight from the lake, and its label drift their judgments and reports'
    # alphas: dependencies the asset graph does not declare (a self-dependency would serialize
    # every backfill and have automation rebuild all 28 later days on any change). The
    # earlier day's quality run writes its scorecards and report after the judgments it read,
    # so that run's scorecards materialization is the one watched. The cursor holds the last
    # materialization read and the days still to check; a day is rebuilt only when its stored
    # history columns or drift baseline differ from those the lake gives now, so a rebuild
    # with unchanged figures, or a change to annotators or projects a later day did not
    # judge, launches nothing.
    state = load_cursor(context.cursor)
    if "after" not in state:
        latest = context.instance.fetch_materializations(SCORECARDS, limit=1, ascending=False)
        after = latest.records[0].storage_id if latest.records else 0
        return SensorResult(
            skip_reason="first tick: scorecards written from now on are checked against the "
            "later days' history",
            cursor=json.dumps({"after": after, "pending": []}),
        )
    result = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=SCORECARDS, after_storage_id=int(state["after"])),
        limit=200,
        ascending=True,
    )
    pending = set(state.get("pending", []))
    windows: dict[str, int] = {}
    materialized = context.instance.get_materialized_partitions(SCORECARDS)
    for record in result.records:
        day = record.partition_key
        if not day:
            continue
        windows[day] = _window_of(record)
        # The day itself too: a run that read its history while an earlier day was rewritten.
        pending.add(day)
        start = dt.date.fromisoformat(day)
        for offset in range(1, DEFAULT_HISTORY_WINDOW + 1):
            later = (start + dt.timedelta(days=offset)).isoformat()
            if later in materialized:
                pending.add(later)
    after = result.records[-1].storage_id if result.records else int(state["after"])
    busy = {
        day
        for run in context.instance.get_runs(RunsFilter(statuses=UNFINISHED))
        if (day := run.tags.get(PARTITION_TAG))
    }
    checked, waiting, requests = [], [], []
    ready: dict[int, list[str]] = {}
    for day in sorted(pending):
        window = windows.get(day) or _latest_window(context, day)
        if window is None or not lake.has_table("annotator_scorecards", day=day):
            continue  # not built (or wiped): its first build reads the history there is then
        if busy & {day, *trailing_days(day, window)}:
            waiting.append(day)
            continue
        ready.setdefault(window, []).append(day)
    for window, days in sorted(ready.items()):
        past = sorted({d for day in days for d in trailing_days(day, window)})
        stale_cards = _by_day(
            stale_history(
                lake.read_days("annotator_scorecards", days),
                lake.read_days("annotator_scorecards", past),
                history_days=window,
            )
        )
        stale_drift = _by_day(_stale_drift(lake, days, past, window))
        checked += days
        for day in sorted({*stale_cards, *stale_drift}):
            cards, drift = stale_cards.get(day), stale_drift.get(day)
            changes = []
            if cards is not None:
                changes.append(
                    f"the trailing history of {cards.height} scorecard(s) changed since it was "
                    f"scored ({_shown_change(cards)})"
                )
            if drift is not None:
                changes.append(
                    f"the drift baseline of {drift.height} project(s) changed since it was "
                    f"computed ({_shown_baseline(drift)})"
                )
            context.log.info(f"{day}: {'; '.join(changes)}; rebuilding its quality")
            requests.append(_history_request(day, cards, drift, window))
    cursor = json.dumps({"after": after, "pending": waiting}, sort_keys=True)
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    done = (
        f"{len(checked)} day(s) checked, every trailing history and drift baseline current"
        if checked
        else "no day to check"
    )
    note = f"; waiting for unfinished runs: {', '.join(waiting)}" if waiting else ""
    return SensorResult(skip_reason=done + note, cursor=cursor)


def _window_of(record: object) -> int:
    materialization = getattr(record, "asset_materialization", None)
    value = materialization.metadata.get(HISTORY_WINDOW_METADATA) if materialization else None
    return (
        value.value
        if isinstance(value, IntMetadataValue) and value.value
        else DEFAULT_HISTORY_WINDOW
    )


def _latest_window(context: SensorEvaluationContext, day: str) -> int | None:
    """The window the day's latest scorecards read; None when it has none."""
    latest = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=SCORECARDS, asset_partitions=[day]), limit=1, ascending=False
    )
    return _window_of(latest.records[0]) if latest.records else None


def _shown_change(rows: pl.DataFrame) -> str:
    """A few of the changed scorecards, e.g. "reviews/a3: 0 -> 1 day(s)"."""
    shown = [
        f"{project}/{annotator}: {before} -> {now} day(s)"
        for project, annotator, before, now in rows.select(
            "project", "annotator_id", "history_days", "history_days_now"
        )
        .head(3)
        .iter_rows()
    ]
    return ", ".join(shown) + (f", {rows.height - 3} more" if rows.height > 3 else "")


def _by_day(stale: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return {
        day.isoformat(): rows
        for (day,), rows in stale.partition_by("day", as_dict=True, maintain_order=True).items()
    }


def _stale_drift(lake: Lake, days: list[str], past: list[str], window: int) -> pl.DataFrame:
    """The drift rows of `days` whose baseline the lake's `past` days no longer give."""
    stored = lake.read_days("label_drift", days)
    if stored.is_empty():
        return pl.DataFrame(schema={"day": pl.Date})
    return stale_baselines(
        stored,
        label_counts(lake, past),
        quality=lake.read_days("quality_report", past),
        trailing_days=window,
    )


def _shown_baseline(rows: pl.DataFrame) -> str:
    """A few of the changed baselines, e.g. "reviews: 3 -> 4 day(s), 120 -> 150 judgment(s)"."""

    def judgments(counts: list[dict[str, int]] | None) -> str:
        return "?" if counts is None else str(sum(entry["n_judgments"] for entry in counts))

    shown = [
        f"{project}: {before} -> {now} day(s), {judgments(counts)} -> "
        f"{judgments(counts_now)} judgment(s)"
        for project, before, now, counts, counts_now in rows.select(
            "project",
            "baseline_days",
            "baseline_days_now",
            "baseline_label_counts",
            "baseline_label_counts_now",
        )
        .head(3)
        .iter_rows()
    ]
    return ", ".join(shown) + (f", {rows.height - 3} more" if rows.height > 3 else "")


def _history_request(
    day: str, cards: pl.DataFrame | None, drift: pl.DataFrame | None, window: int
) -> RunRequest:
    """The run that rebuilds the quality of `day`, keyed by the history and baseline it will
    read, so a tick evaluated twice, or the same change seen again, queues the day once."""
    now = [
        rows.select(*keys, *(f"{c}_now" for c in columns)).rows()
        for rows, keys, columns in (
            (cards, ("project", "annotator_id"), HISTORY_COLUMNS),
            (drift, ("project",), BASELINE_COLUMNS),
        )
        if rows is not None
    ]
    digest = hashlib.sha256(json.dumps(now, default=str).encode()).hexdigest()[:16]
    config = {"ops": {"quality": {"config": {"trailing_days": window}}}}
    return RunRequest(
        run_key=f"history:{day}:{digest}",
        partition_key=day,
        asset_selection=sorted(quality.keys, key=lambda key: key.to_user_string()),
        run_config=config if window != DEFAULT_HISTORY_WINDOW else {},
        tags={
            STALE_HISTORY_TAG: str(cards.height if cards is not None else 0),
            STALE_DRIFT_TAG: str(drift.height if drift is not None else 0),
            PRIORITY_TAG: RECHECK_PRIORITY,
        },
    )
