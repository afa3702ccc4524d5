"""The floor-change sensor on a real temporary instance: a project's changed `quality_gates`
re-evaluate the gates of its materialized days, and nothing else does."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import AssetKey, DagsterRunStatus, SensorResult, SkipReason, build_sensor_context

from assets.common.partitions import daily_partitions
from assets.quality import sensors
from assets.quality.assets import quality
from assets.quality.kinds import kind_quality
from tests.support import QUIET, local_graph

# The days are relative to today: the sensor looks back over the last N daily partitions, the
# last of which is yesterday, by its own clock. TODAY is read once, at import, and midnight may
# pass before a tick: with N = 3, RECENT sits a day inside the window at either end and OLD a
# day beyond it, whether the tick's today is TODAY or the day after.
TODAY = dt.datetime.now(dt.UTC).date()
OLD, RECENT, YESTERDAY = ((TODAY - dt.timedelta(days=back)).isoformat() for back in (5, 2, 1))
DAYS = "ANNOTATION_PIPELINES_FLOOR_RECHECK_DAYS"


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    root = tmp_path_factory.mktemp("floors")
    start = TODAY - dt.timedelta(days=5)
    with local_graph(
        root, judgments=2_000, start=start, days=5, seed=13, kinds=True, judgments_per_kind=400
    ) as env:
        defs, instance, _ = env
        daily = defs.resolve_job_def("daily_annotation_job")
        config = {**QUIET, "ops": {"kind_quality": {"config": {"bootstrap_resamples": 0}}}}
        for day in (OLD, RECENT, YESTERDAY):
            daily.execute_in_process(partition_key=day, instance=instance, run_config=config)
        yield env


def _tick(defs, instance, cursor, *, landing=None):
    resources = {k: v for k, v in defs.resources.items() if k in ("lake", "landing")}
    if landing is not None:
        resources["landing"] = landing
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensors.floor_change_sensor(context)
    if isinstance(result, SkipReason):
        return [], result.skip_message, cursor
    assert isinstance(result, SensorResult)
    reason = result.skip_reason.skip_message if result.skip_reason else None
    return result.run_requests or [], reason, result.cursor


def _write(data, project, settings):
    path = data / "landing" / "exports" / project / "project.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings))
    return path


def _kind_project(data):
    report = pl.read_parquet(data / "lake" / "kind_quality_report" / f"day={RECENT}" / "*.parquet")
    return report["project"].sort()[0]


def test_a_changed_floor_reevaluates_the_projects_recent_days_and_nothing_else_does(
    graph, monkeypatch
):
    defs, instance, data = graph
    monkeypatch.setenv(DAYS, "3")
    settings = _write(data, "sentiment", {"label_set": ["pos", "neg"]})
    try:
        _write(data, "intent", {"quality_gates": {"min_alpha": 0.2}})
        # The first tick after deploy records the floors as they are and re-runs nothing.
        requests, reason, cursor = _tick(defs, instance, None)
        assert requests == [] and cursor is not None
        assert reason.startswith("first tick: recorded the floors of 1 project(s)"), reason

        # An edit that leaves the floors as they were launches nothing.
        _write(data, "sentiment", {"label_set": ["pos", "neg"], "overlap": 4})
        _write(data, "intent", {"quality_gates": {"min_alpha": 0.20}, "sla_days": 3})
        requests, reason, cursor = _tick(defs, instance, cursor)
        assert requests == [] and reason.startswith("no project's floors changed"), reason

        # A stricter floor: the days of the project in the window are re-evaluated, the day
        # before it is not; the run says why and over how many days.
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.99}})
        requests, reason, changed = _tick(defs, instance, cursor)
        assert reason is None
        assert [r.partition_key for r in requests] == [RECENT, YESTERDAY]
        request = requests[0]
        assert set(request.asset_selection) == set(quality.keys)
        assert request.tags[sensors.FLOORS_CHANGED_TAG] == "sentiment"
        assert request.tags[sensors.RECHECK_DAYS_TAG] == "3"
        assert request.tags["dagster/priority"] == "-1"
        # Evaluated twice from the same cursor, the tick asks for the same runs (same run keys).
        again, _, _ = _tick(defs, instance, cursor)
        assert [r.run_key for r in again] == [r.run_key for r in requests]

        run = defs.resolve_job_def("quality_job").execute_in_process(
            partition_key=request.partition_key,
            asset_selection=request.asset_selection,
            tags=request.tags,
            instance=instance,
            run_config=QUIET,
        )
        checks = {
            c.check_name: c
            for c in run.get_asset_check_evaluations()
            if c.asset_key == AssetKey("quality_report")
        }
        agreement = checks["agreement_floor"]
        assert agreement.partition == RECENT and not agreement.passed
        assert agreement.metadata["failing"].value == ["sentiment"]
        assert agreement.metadata["floor_source"].value["sentiment"] == "project.json"
        report = pl.read_parquet(data / "lake" / "quality_report" / f"day={RECENT}" / "*.parquet")
        verdict = dict(report.select("project", "failed_gates").rows())
        assert "agreement_floor" in verdict["sentiment"]

        # Nothing changed since: nothing more.
        requests, reason, cursor = _tick(defs, instance, changed)
        assert requests == [] and reason.startswith("no project's floors changed"), reason

        # Back to the default (the file without floors): re-evaluated again, under a new run key
        # although that day was asked for before.
        settings.write_text(json.dumps({"label_set": ["pos", "neg"]}))
        requests, _, cursor = _tick(defs, instance, cursor)
        assert [r.partition_key for r in requests] == [RECENT, YESTERDAY]
        assert requests[0].run_key != request.run_key
    finally:
        for project in ("sentiment", "intent"):
            (data / "landing" / "exports" / project / "project.json").unlink(missing_ok=True)


def test_a_malformed_file_reevaluates_nothing_until_fixed_and_kinds_rerun_their_own_asset(
    graph, monkeypatch
):
    defs, instance, data = graph
    monkeypatch.delenv(DAYS, raising=False)
    project = _kind_project(data)
    try:
        _write(data, project, {"quality_gates": {"min_alpha": 0.1}})
        _, _, cursor = _tick(defs, instance, None)

        # A malformed floor would fail the quality step: nothing runs, and the tick says why,
        # naming the file, the field and the value.
        _write(data, project, {"quality_gates": {"min_alpha": "high"}})
        requests, reason, cursor = _tick(defs, instance, cursor)
        assert requests == []
        assert (
            f"exports/{project}/project.json: quality_gates.min_alpha: expected a number in "
            "[-1, 1], got 'high'" in reason
        ), reason
        # Fixed back to the floors last read: still nothing to re-evaluate.
        _write(data, project, {"quality_gates": {"min_alpha": 0.1}})
        requests, reason, cursor = _tick(defs, instance, cursor)
        assert requests == [] and reason.startswith("no project's floors changed"), reason

        # A new floor for a non-categorical project: its own quality asset, over every
        # materialized day of the default window (30 days).
        _write(data, project, {"quality_gates": {"min_alpha": 0.1, "min_gold_accuracy": 0.9}})
        requests, reason, cursor = _tick(defs, instance, cursor)
        assert sorted(r.partition_key for r in requests) == [OLD, RECENT, YESTERDAY]
        for request in requests:
            assert set(request.asset_selection) == set(kind_quality.keys)
            assert request.tags[sensors.FLOORS_CHANGED_TAG] == project
            assert request.tags[sensors.RECHECK_DAYS_TAG] == "30"

        # A project with no materialized day in the window: the cursor moves, nothing runs.
        _write(data, "unjudged", {"quality_gates": {"min_alpha": 0.5}})
        requests, reason, _ = _tick(defs, instance, cursor)
        assert requests == []
        assert reason == (
            "floors changed for unjudged; it has no materialized day in the last 30 days to "
            "re-evaluate"
        )
    finally:
        for name in (project, "unjudged"):
            (data / "landing" / "exports" / name / "project.json").unlink(missing_ok=True)


def test_run_keys_name_the_change_so_a_reset_cursor_reuses_no_earlier_key(graph, monkeypatch):
    # Dagster skips a request whose run key any earlier run of the sensor had: after the
    # cursor is reset (a fresh baseline), a new change must still get keys of its own, the
    # same floors set back and forth again included.
    defs, instance, data = graph
    monkeypatch.delenv(DAYS, raising=False)
    keys: list[str] = []
    try:
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.3}})
        _, _, cursor = _tick(defs, instance, None)
        for floor in (0.4, 0.3, 0.4):
            _write(data, "sentiment", {"quality_gates": {"min_alpha": floor}})
            requests, _, _ = _tick(defs, instance, cursor)
            assert sorted(r.partition_key for r in requests) == [OLD, RECENT, YESTERDAY]
            assert all(r.run_key.startswith(f"floors:{r.partition_key}:") for r in requests)
            keys += [r.run_key for r in requests]
            # The cursor lost: the next tick records the floors as they are, re-runs nothing.
            requests, reason, cursor = _tick(defs, instance, None)
            assert requests == [] and reason.startswith("first tick"), reason
        assert len(set(keys)) == len(keys) == 9, keys
    finally:
        (data / "landing" / "exports" / "sentiment" / "project.json").unlink(missing_ok=True)


@pytest.mark.parametrize("config", ["dagster.yaml", "dagster.production.yaml"])
def test_the_run_queue_limits_the_runs_the_sensor_tags(config):
    # The limit is keyed by a tag name the sensor sets: a rename on one side only would leave
    # the re-check runs without a budget.
    root = Path(__file__).resolve().parents[2]
    runs = yaml.safe_load((root / config).read_text())["concurrency"]["runs"]
    limits = {limit["key"]: limit["limit"] for limit in runs["tag_concurrency_limits"]}
    assert sensors.FLOORS_CHANGED_TAG in limits
    assert limits[sensors.FLOORS_CHANGED_TAG] < runs["max_concurrent_runs"]


def test_a_window_of_one_day_rechecks_yesterday(graph, monkeypatch):
    # Today is not a partition until it ends, so the window counts back from yesterday.
    defs, instance, data = graph
    monkeypatch.setenv(DAYS, "1")
    try:
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.3}})
        _, _, cursor = _tick(defs, instance, None)
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.4}})
        requests, _, _ = _tick(defs, instance, cursor)
        if daily_partitions.get_last_partition_key() != YESTERDAY:
            # Midnight passed since TODAY was read: the one-day window now holds a day never
            # materialized, which has no gates to re-run (a skip would fail CI at midnight).
            assert requests == []
        else:
            assert [r.partition_key for r in requests] == [YESTERDAY]
            assert requests[0].tags[sensors.RECHECK_DAYS_TAG] == "1"
    finally:
        (data / "landing" / "exports" / "sentiment" / "project.json").unlink(missing_ok=True)


def test_a_day_whose_recheck_still_waits_is_not_queued_again(graph, monkeypatch):
    # A re-check run reads the floors when it starts: one still waiting for a day applies the
    # latest edit too, so repeated edits do not queue the day again.
    defs, instance, data = graph
    monkeypatch.setenv(DAYS, "3")
    job = defs.resolve_job_def("quality_job")
    waiting = []
    try:
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.3}})
        _, _, cursor = _tick(defs, instance, None)
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.4}})
        first, _, cursor = _tick(defs, instance, cursor)
        assert [r.partition_key for r in first] == [RECENT, YESTERDAY]
        # RECENT's run is on its way (created, not started; a queued one is held the same).
        request = first[0]
        waiting.append(
            instance.create_run_for_job(
                job_def=job,
                status=DagsterRunStatus.NOT_STARTED,
                tags={**request.tags, "dagster/partition": RECENT},
                asset_selection=frozenset(request.asset_selection),
            )
        )
        # A run without the floors tag (a daily one) holds nothing back.
        waiting.append(
            instance.create_run_for_job(
                job_def=job,
                status=DagsterRunStatus.NOT_STARTED,
                tags={"dagster/partition": YESTERDAY},
                asset_selection=frozenset(request.asset_selection),
            )
        )
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.5}})
        requests, reason, cursor = _tick(defs, instance, cursor)
        assert [r.partition_key for r in requests] == [YESTERDAY], reason
        # Every day still waiting: nothing to queue, and the tick says which days.
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.6}})
        instance.delete_run(waiting.pop().run_id)
        waiting.append(
            instance.create_run_for_job(
                job_def=job,
                status=DagsterRunStatus.NOT_STARTED,
                tags={**requests[0].tags, "dagster/partition": YESTERDAY},
                asset_selection=frozenset(requests[0].asset_selection),
            )
        )
        requests, reason, cursor = _tick(defs, instance, cursor)
        assert requests == []
        assert f"re-check still waiting for {RECENT}, {YESTERDAY}" in reason, reason
        # Once they started, a new edit queues the days again.
        for run in waiting:
            instance.delete_run(run.run_id)
        waiting.clear()
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.7}})
        requests, reason, _ = _tick(defs, instance, cursor)
        assert [r.partition_key for r in requests] == [RECENT, YESTERDAY], reason
    finally:
        for run in waiting:
            instance.delete_run(run.run_id)
        (data / "landing" / "exports" / "sentiment" / "project.json").unlink(missing_ok=True)


def test_a_removed_file_counts_once_it_stays_missing_past_the_settle_time(graph, monkeypatch):
    # A tool that replaces a file may delete it first: a file gone for less than the landing
    # settle time keeps its floors, as one being written does.
    defs, instance, data = graph
    monkeypatch.setenv(DAYS, "3")
    local = defs.resources["landing"]
    landing = type(local)(path=local.path, settle_seconds=1.0)

    def write(floor):
        path = _write(data, "sentiment", {"quality_gates": {"min_alpha": floor}})
        os.utime(path, (time.time() - 10, time.time() - 10))  # settled
        return path

    try:
        settings = write(0.3)
        _, _, cursor = _tick(defs, instance, None, landing=landing)
        settings.unlink()
        requests, reason, cursor = _tick(defs, instance, cursor, landing=landing)
        assert requests == [] and "exports/sentiment/project.json missing since" in reason, reason
        assert json.loads(cursor)["floors"] == {"sentiment": {"min_alpha": 0.3}}
        # Back with the same floors: nothing changed, and nothing is missing any more.
        write(0.3)
        requests, reason, cursor = _tick(defs, instance, cursor, landing=landing)
        assert requests == [] and reason.startswith("no project's floors changed"), reason
        assert "missing" not in reason and not json.loads(cursor).get("missing")

        # Gone for longer than the settle time: back to the defaults, the days re-evaluated.
        settings.unlink()
        requests, _, cursor = _tick(defs, instance, cursor, landing=landing)
        assert requests == []
        time.sleep(1.2)
        requests, reason, after = _tick(defs, instance, cursor, landing=landing)
        assert [r.partition_key for r in requests] == [RECENT, YESTERDAY], reason
        assert json.loads(after) == {"floors": {}}
        # The same tick evaluated again asks for the same runs.
        again, _, _ = _tick(defs, instance, cursor, landing=landing)
        assert [r.run_key for r in again] == [r.run_key for r in requests]
    finally:
        (data / "landing" / "exports" / "sentiment" / "project.json").unlink(missing_ok=True)


@pytest.mark.parametrize(
    "cursor",
    [
        "not json",
        "[]",
        '{"changes": 3}',
        '{"floors": []}',
        '{"floors": {"sentiment": "high"}}',
        '{"floors": {"sentiment": {"min_alpha": "high"}}}',
        '{"floors": {}, "missing": {"sentiment": "yesterday"}}',
    ],
)
def test_a_cursor_it_cannot_read_is_a_first_tick_not_an_error(graph, cursor):
    # A cursor set by hand (or by an older version) starts a new baseline, once, with a warning.
    defs, instance, data = graph
    try:
        _write(data, "sentiment", {"quality_gates": {"min_alpha": 0.3}})
        requests, reason, after = _tick(defs, instance, cursor)
        assert requests == [] and "first tick: recorded the floors of 1 project(s)" in reason
        assert json.loads(after) == {"floors": {"sentiment": {"min_alpha": 0.3}}}
        requests, reason, _ = _tick(defs, instance, after)
        assert requests == [] and reason.startswith("no project's floors changed"), reason
    finally:
        (data / "landing" / "exports" / "sentiment" / "project.json").unlink(missing_ok=True)
