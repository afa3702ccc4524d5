"""Sensors of the sources layer: new export files and changed gold sets in the landing zone."""

import hashlib
import json

from dagster import (
    AssetRecordsFilter,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TextMetadataValue,
    sensor,
)

from annotation_pipelines.ingest import FORMATS
from assets.common.cursors import load_cursor
from assets.sources.assets import EXPORT_FILES, export_files, landing_exports
from assets.sources.jobs import gold_sets_job, ingest_export_job
from resources.landing import LandingZone, project_settings_path

# A file whose ingest failed is retried on later ticks, at most this many times; after that
# the sensor logs an error on every tick until the file is fixed (a new fingerprint resets it).
MAX_ATTEMPTS = 5
# Run tags saying which attempt of a file a run is, so that a failure alert can tell a failure
# that will be retried from the last one.
ATTEMPT_TAG = "annotation_pipelines/attempt"
MAX_ATTEMPTS_TAG = "annotation_pipelines/max_attempts"
# The version of the file a run was asked to ingest.
FINGERPRINT_TAG = "annotation_pipelines/fingerprint"
# The version of its project's settings (project.json) it was asked to apply, and why.
SETTINGS_TAG = "annotation_pipelines/settings_fingerprint"
REASON_TAG = "annotation_pipelines/reason"
IN_PROGRESS = (DagsterRunStatus.QUEUED, DagsterRunStatus.STARTED, DagsterRunStatus.STARTING)


def _latest_run(
    context: SensorEvaluationContext, partition: str
) -> tuple[DagsterRunStatus | None, str]:
    """(status, run id) of the partition's latest ingest run; (None, "") without one."""
    runs = context.instance.get_runs(
        RunsFilter(job_name=ingest_export_job.name, tags={"dagster/partition": partition}), limit=1
    )
    return (runs[0].status, runs[0].run_id) if runs else (None, "")


def _ingested(context: SensorEvaluationContext, path: str) -> tuple[str, str | None, str] | None:
    """(file fingerprint, settings fingerprint, run id) of the partition's latest
    materialization: the file's as the run listed it, else as the sensor asked the run for it,
    the settings' as the sensor asked (None when the run does not say); None when unknown."""
    result = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=landing_exports.key, asset_partitions=[path]),
        limit=1,
        ascending=False,
    )
    if not result.records:
        return None
    record = result.records[0]
    materialization = record.asset_materialization
    listed = materialization.metadata.get("fingerprint") if materialization else None
    run = context.instance.get_run_by_id(record.run_id)
    tags = run.tags if run else {}
    if isinstance(listed, TextMetadataValue) and listed.value:
        fingerprint: str | None = listed.value
    else:
        fingerprint = tags.get(FINGERPRINT_TAG)
    return (fingerprint, tags.get(SETTINGS_TAG), record.run_id) if fingerprint else None


@sensor(
    job=ingest_export_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="New or changed export files in the landing zone, or a project.json that "
    "changed → one ingest run per file.",
)
def landing_zone_sensor(context: SensorEvaluationContext, landing: LandingZone) -> SensorResult:
    state = load_cursor(context.cursor)
    # What the sensor saw ingested for each path, and what it last asked for, as [file
    # fingerprint, project settings fingerprint]: {path: version}, {path: [version, attempts]}.
    done: dict[str, list[str | None]] = {
        # A cursor from before settings were tracked: the settings are taken as applied.
        path: version if isinstance(version, list) else [version, None]
        for path, version in state.get("done", {}).items()
    }
    asked: dict[str, list] = state.get("asked", {})
    # Every launch gets the next number of one counter, never reset: the daemon skips a
    # request whose run key an earlier run has, so a file reverted to a version ingested
    # before would otherwise never be ingested again. One number, not one per path, so the
    # cursor holds only the paths present. A cursor of per-path counts starts above them all,
    # so no key it gave is given again.
    launched: int = state.get("launched", max(state.get("launches", {}).values(), default=0))
    known = set(context.instance.get_dynamic_partitions(EXPORT_FILES))
    new_partitions, requests = [], []
    scan = landing.scan_export_zone()
    present = {export.path for export in scan.exports} | set(scan.waiting)
    for export in scan.exports:
        path = export.path
        # The settings are part of the version: a label set or mapping that arrives or changes
        # after a file was ingested applies to it only if the file is ingested again.
        version: list[str | None] = [export.fingerprint, scan.settings[export.project]]
        if done.get(path) in (version, [export.fingerprint, None]):
            done[path] = version
            continue
        ingested = _ingested(context, path)
        status, latest = _latest_run(context, path)
        # [version, attempts, the partition's latest run when the sensor asked]
        entry = asked.get(path, [None, 0, ""])
        previous, tried, before = entry[0], entry[1], entry[2] if len(entry) > 2 else ""
        if ingested is not None:
            fingerprint, applied, run_id = ingested
            if applied is None:
                # A run that does not say which settings it applied (launched by hand): the
                # ones the sensor asked for if it came after it asked, else the ones last seen
                # applied, else (nothing known) the current ones.
                if previous is not None and run_id != before:
                    applied = previous[1]
                elif path in done:
                    applied = done[path][1]
                elif previous is None:
                    applied = version[1]
            current = fingerprint == version[0] and applied == version[1]
        else:
            # Nor which file version: it counts when it came after the sensor asked for this
            # version, and succeeded.
            current = (
                previous == version and status == DagsterRunStatus.SUCCESS and latest != before
            )
        if current:
            done[path] = version
            asked.pop(path, None)
            continue
        if status in IN_PROGRESS:
            continue
        tried = tried if previous == version else 0
        if tried >= MAX_ATTEMPTS:
            context.log.error(f"{path}: ingest failed {tried} times; fix or replace it")
            continue
        if path not in known:
            new_partitions.append(path)
            known.add(path)
        reason = _launch_reason(
            done.get(path) or previous or (list(ingested[:2]) if ingested else None),
            version,
            tried,
        )
        if reason == "project settings changed":
            context.log.info(
                f"{path}: {project_settings_path(export.project)} changed, ingested again"
            )
        asked[path] = [version, tried + 1, latest]
        launched += 1
        requests.append(
            RunRequest(
                run_key=f"{path}@{export.fingerprint}#{launched}",
                partition_key=path,
                tags={
                    ATTEMPT_TAG: str(tried + 1),
                    MAX_ATTEMPTS_TAG: str(MAX_ATTEMPTS),
                    FINGERPRINT_TAG: export.fingerprint,
                    SETTINGS_TAG: scan.settings[export.project],
                    REASON_TAG: reason,
                },
            )
        )
    waiting = scan.waiting
    if waiting:
        context.log.info(landing.unsettled_note(waiting, then="offered once they settle"))
    if scan.misplaced:
        context.log.warning(_misplaced_note(scan.misplaced))
    # A file removed from the zone is forgotten.
    done = {path: version for path, version in done.items() if path in present}
    asked = {path: entry for path, entry in asked.items() if path in present}
    given_up = sorted(path for path, entry in asked.items() if entry[1] >= MAX_ATTEMPTS)
    return SensorResult(
        run_requests=requests,
        skip_reason=None
        if requests
        else _idle_reason(done, waiting, given_up, landing, scan.misplaced),
        dynamic_partitions_requests=[export_files.build_add_request(new_partitions)]
        if new_partitions
        else [],
        cursor=json.dumps({"done": done, "asked": asked, "launched": launched}, sort_keys=True),
    )


def _launch_reason(before: list | None, version: list[str | None], tried: int) -> str:
    """Why a file is ingested (the run's reason tag): what differs from what was ingested or
    asked for before."""
    if tried:
        return f"retry after a failed attempt ({tried} of {MAX_ATTEMPTS})"
    if before is None:
        return "new file"
    if before[0] == version[0]:
        return "project settings changed"
    return "file changed"


def _misplaced_note(paths: list[str]) -> str:
    """Files under exports/ that are not where an export goes, in the words the Automation
    page and the log show: how many, where they belong, the first five."""
    return (
        f"{len(paths)} file(s) under exports/ not in a format folder "
        f"(exports/<project>/<format>/<file>, format one of {', '.join(FORMATS)}), never "
        f"offered: {', '.join(paths[:5])}"
    )


def _idle_reason(
    done: dict[str, list[str | None]],
    waiting: list[str],
    given_up: list[str],
    landing: LandingZone,
    misplaced: list[str],
) -> str:
    """Why a tick launched nothing, in the words the Automation page shows."""
    parts = []
    if waiting:
        parts.append(landing.unsettled_note(waiting, what=None, then="offered once it settles"))
    if given_up:
        parts.append(
            f"{len(given_up)} failed {MAX_ATTEMPTS} times, not retried until fixed or "
            f"replaced: {', '.join(given_up[:5])}"
        )
    if misplaced:
        parts.append(_misplaced_note(misplaced))
    if not parts:
        return f"no new or changed export file ({len(done)} ingested)"
    return "no new or changed export file; " + "; ".join(parts)


@sensor(
    job=gold_sets_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A gold set, or the project.json its labels are checked against, changed in "
    "the landing zone → restage the gold sets once every gold file has settled; quality and "
    "curation follow.",
)
def gold_set_sensor(
    context: SensorEvaluationContext, landing: LandingZone
) -> SensorResult | SkipReason:
    settled, waiting = landing.scan_settled("gold/")
    if waiting:
        # The gold sets are restaged whole: a run now would read the rest without this file.
        return SkipReason(
            landing.unsettled_note(waiting, what="gold file(s)", then="offered once they settle")
        )
    files = dict(settled)
    # Gold rows are checked against their project's label set: a project.json that changes
    # restages them, as it re-ingests the project's exports. Each is looked up alone, not the
    # exports beside it.
    settings = {project_settings_path(path.split("/")[1]) for path in files if path.count("/") == 2}
    for path in sorted(settings):
        if (version := landing.fingerprint(path)) is not None:
            files[path] = version
    fingerprint = json.dumps(files, sort_keys=True)
    # No gold file is a change too once some were staged: removing the last gold set has to
    # unstage it, or its labels gate and anchor the project for good.
    if fingerprint == (context.cursor or json.dumps({})):
        return SkipReason("gold sets unchanged")
    # A content hash: the built-in hash() of a str differs per process, so two daemons (or one
    # after a restart) would launch the same change twice under different run keys.
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:32]
    return SensorResult(run_requests=[RunRequest(run_key=f"gold:{digest}")], cursor=fingerprint)
