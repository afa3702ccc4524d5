"""Run order: a day's quality verdict and flags are the same whichever order the days ran in.

On a real temporary instance: exports are ingested through the landing sensor, days run with
the daily job in process, and the sensors are ticked with their cursor carried over, the way
the daemon would.
"""

import json
import random
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, build_sensor_context

from assets.definitions import build_definitions
from assets.quality import sensors as quality_sensors
from assets.sources import sensors as source_sensors

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
HEADER = "task_id,annotator_id,label,submitted_at,duration_s\n"
LABELS = ("pos", "neg")


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    monkeypatch.setenv("ANNOTATION_PIPELINES_LANDING_SETTLE_SECONDS", "0")
    landing = tmp_path / "data" / "landing"
    project = landing / "exports" / "reviews"
    (project / "csv").mkdir(parents=True)
    (project / "project.json").write_text(json.dumps({"label_set": list(LABELS)}))
    defs = build_definitions(profile="local")
    # In memory: the sensors read the same SQL event log either way, and the on-disk SQLite
    # instance spent over a third of these tests' CPU storing events (the daemon tests cover it).
    instance = DagsterInstance.ephemeral()
    yield defs, instance, landing
    instance.dispose()


def _write_day(landing, day, *, prefix, accuracy, seed, tasks=30):
    """One export of `day`: every annotator judges every task, right with its `accuracy`."""
    rng = random.Random(seed)
    lines = []
    for task in range(tasks):
        truth, other = LABELS[task % 2], LABELS[(task + 1) % 2]
        for annotator, right in enumerate(accuracy):
            label = truth if rng.random() < right else other
            lines.append(f"{prefix}-t{task},a{annotator},{label},{day}T1{annotator}:00:00Z,3\n")
    (landing / "exports" / "reviews" / "csv" / f"{day}.csv").write_text(HEADER + "".join(lines))


def _tick(sensor, defs, instance, cursor=None):
    resources = {k: v for k, v in defs.resources.items() if k in ("lake", "landing")}
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, definitions=defs
    )
    return sensor(context)


def _ingest(defs, instance):
    result = _tick(source_sensors.landing_zone_sensor, defs, instance)
    for request in result.run_requests:
        instance.add_dynamic_partitions("export_files", [request.partition_key])
        run = defs.resolve_job_def("ingest_export_job").execute_in_process(
            partition_key=request.partition_key,
            instance=instance,
            run_config=QUIET,
            tags=request.tags,
        )
        assert run.success


def _run(defs, instance, job, partition=None, config=QUIET, **options):
    run = defs.resolve_job_def(job).execute_in_process(
        partition_key=partition, instance=instance, run_config=config, **options
    )
    assert run.success, (job, partition)
    return run


def _table(landing, name, day):
    return pl.read_parquet(landing.parent / "lake" / name / f"day={day}" / "data.parquet")


def _verdict(landing, day):
    report = _table(landing, "quality_report", day)
    return report.select("gates_passed", "failed_gates", "gate_reasons").row(0)


def test_a_project_with_a_staged_gold_set_gets_one_gold_verdict_whatever_the_run_order(env):
    # 11-02 judges no gold task; 11-03 does. Whether the project has gold is read from the gold
    # sets staged, so 11-02 is held back (README: a project with gold requires it) whether it
    # runs before any gold day was materialized, after one, or again with the same inputs.
    defs, instance, landing = env
    _write_day(landing, "2026-11-02", prefix="A", accuracy=[0.97] * 4, seed=1)
    _write_day(landing, "2026-11-03", prefix="B", accuracy=[0.97] * 4, seed=2)
    _ingest(defs, instance)
    _run(defs, instance, "daily_annotation_job", "2026-11-02")
    before = _verdict(landing, "2026-11-02")
    assert before[:2] == (True, "")
    assert "the project has no gold set" in before[2]

    gold = landing / "gold" / "reviews"
    gold.mkdir(parents=True)
    rows = "".join(f"B-t{task},{LABELS[task % 2]}\n" for task in range(6))
    (gold / "gold.csv").write_text("task_id,label\n" + rows)
    staged = _run(defs, instance, "gold_sets_job")
    [event] = staged.get_asset_materialization_events()
    # The project gained a gold set: its day without gold changes verdict, so it is rebuilt
    # too, not only the days that judged a gold task (none built yet: 11-03 is not).
    assert event.materialization.metadata["days"].value == ["2026-11-02"]

    held = (False, "gold_accuracy_floor")
    reason = "no gold task judged this day (the project has a gold set)"
    _run(defs, instance, "daily_annotation_job", "2026-11-02")
    assert _verdict(landing, "2026-11-02")[:2] == held
    assert reason in _verdict(landing, "2026-11-02")[2]
    _run(defs, instance, "daily_annotation_job", "2026-11-03")
    assert _verdict(landing, "2026-11-03")[:2] == (True, "")
    _run(defs, instance, "daily_annotation_job", "2026-11-02")
    assert _verdict(landing, "2026-11-02")[:2] == held


FLAG_CONFIG = {**QUIET, "ops": {"quality": {"config": {"bootstrap_resamples": 0}}}}


def _run_request(defs, instance, request):
    """The rebuild the sensor asked for, as the daemon would launch it."""
    return _run(
        defs,
        instance,
        "quality_job",
        request.partition_key,
        {**FLAG_CONFIG, **request.run_config},
        asset_selection=request.asset_selection,
        tags=request.tags,
    )


def _cards(landing, day):
    return _table(landing, "annotator_scorecards", day)


def test_days_run_out_of_order_end_with_the_flags_of_the_days_run_in_order(env):
    # a3 judges well on 11-02 and worse on 11-03: in order, its consensus agreement on 11-03
    # fell against its own trailing history and it is flagged. Run 11-03 first, it has no
    # history then; the sensor rebuilds 11-03 once 11-02 is written, and only that.
    defs, instance, landing = env
    sensor = quality_sensors.scorecard_history_sensor
    cursor = _tick(sensor, defs, instance).cursor  # the first tick: a baseline
    _write_day(landing, "2026-11-02", prefix="A", accuracy=[1.0] * 5, seed=1)
    _write_day(landing, "2026-11-03", prefix="B", accuracy=[1.0, 1.0, 1.0, 0.7, 1.0], seed=2)
    _ingest(defs, instance)
    for day in ("2026-11-03", "2026-11-02"):
        _run(defs, instance, "daily_annotation_job", day, FLAG_CONFIG)
    early = _cards(landing, "2026-11-03").filter(pl.col("annotator_id") == "a3").row(0, named=True)
    assert (early["history_days"], early["flagged"]) == (0, False)

    result = _tick(sensor, defs, instance, cursor)
    [request] = result.run_requests
    assert request.partition_key == "2026-11-03"
    assert {key.to_user_string() for key in request.asset_selection} == {
        "quality_report", "annotator_scorecards", "reannotation_queue",
        "annotator_pair_agreement", "label_drift",
    }  # fmt: skip
    _run_request(defs, instance, request)
    rebuilt = _cards(landing, "2026-11-03")
    late = rebuilt.filter(pl.col("annotator_id") == "a3").row(0, named=True)
    assert late["flagged"] and late["history_days"] == 1
    assert "consensus agreement fell" in late["flag_reason"]
    # ...and what is curated follows the flag (automation re-curates after the rebuild).
    instance.add_dynamic_partitions("projects", ["reviews"])
    _run(defs, instance, "curation_job", "reviews")
    datasets = landing.parent / "lake" / "datasets" / "reviews"
    version = json.loads((datasets / "current.json").read_text())["version_id"]
    manifest = json.loads((datasets / version / "manifest.json").read_text())
    assert manifest["filters"]["excluded_flagged_annotators"] == 1  # a3 on 11-03

    # The rebuilt day is current: nothing more is asked, and the day run again in order (its
    # history in place) writes the very same scorecards.
    quiet = _tick(sensor, defs, instance, result.cursor)
    assert not quiet.run_requests
    assert "every trailing history and drift baseline current" in quiet.skip_reason.skip_message
    _run(defs, instance, "daily_annotation_job", "2026-11-03", FLAG_CONFIG)
    assert _cards(landing, "2026-11-03").equals(rebuilt)
    # Days run again with unchanged inputs launch nothing either.
    _run(defs, instance, "daily_annotation_job", "2026-11-02", FLAG_CONFIG)
    again = _tick(sensor, defs, instance, quiet.cursor)
    assert not again.run_requests, [r.partition_key for r in again.run_requests]


def test_a_day_is_not_checked_while_a_run_of_its_window_is_unfinished(env):
    defs, instance, landing = env
    sensor = quality_sensors.scorecard_history_sensor
    cursor = _tick(sensor, defs, instance).cursor
    _write_day(landing, "2026-11-02", prefix="A", accuracy=[1.0] * 5, seed=1)
    _write_day(landing, "2026-11-03", prefix="B", accuracy=[1.0, 1.0, 1.0, 0.7, 1.0], seed=2)
    _ingest(defs, instance)
    for day in ("2026-11-03", "2026-11-02"):
        _run(defs, instance, "daily_annotation_job", day, FLAG_CONFIG)
    # A run of 11-02 not started yet: 11-03 would read its history before it lands.
    job = defs.resolve_job_def("daily_annotation_job")
    instance.create_run_for_job(
        job,
        run_config=FLAG_CONFIG,
        tags={"dagster/partition": "2026-11-02"},
        status=DagsterRunStatus.NOT_STARTED,
    )
    waiting = _tick(sensor, defs, instance, cursor)
    assert not waiting.run_requests
    assert "waiting for unfinished runs: 2026-11-02, 2026-11-03" in waiting.skip_reason.skip_message
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.NOT_STARTED])):
        instance.delete_run(run.run_id)
    [request] = _tick(sensor, defs, instance, waiting.cursor).run_requests
    assert request.partition_key == "2026-11-03"


def _drift(landing, day):
    return _table(landing, "label_drift", day).row(0, named=True)


def test_a_changed_earlier_day_rebuilds_the_later_drift_that_reads_it(env):
    # Seven days of even pos/neg (the fewest a drift baseline takes), then 11-08 alike: no
    # drift. A late export adds 1,500 "pos" judgments to 11-06 by an annotator who judges
    # nothing on 11-08, so 11-08's scorecards' history is unchanged but its drift baseline is
    # not: rebuilt, it is flagged. The late day is near the end of the window so that two
    # later days, not four, are rebuilt: each rebuild is a whole quality step.
    defs, instance, landing = env
    sensor = quality_sensors.scorecard_history_sensor
    days = [f"2026-11-0{d}" for d in range(1, 9)]
    for seed, day in enumerate(days):
        _write_day(landing, day, prefix=f"D{seed}", accuracy=[1.0] * 4, seed=seed, tasks=20)
    # The days arrive in one export: one ingest run, where the rebuild does not care how the
    # judgments were split into files.
    exports = landing / "exports" / "reviews" / "csv"
    lines = [(exports / f"{day}.csv").read_text().removeprefix(HEADER) for day in days]
    for day in days:
        (exports / f"{day}.csv").unlink()
    (exports / "history.csv").write_text(HEADER + "".join(lines))
    _ingest(defs, instance)
    for day in days:
        _run(defs, instance, "daily_annotation_job", day, FLAG_CONFIG)
    before = _drift(landing, "2026-11-08")
    assert (before["baseline_days"], before["label_drift"]) == (7, False)
    cursor = _tick(sensor, defs, instance).cursor  # the first tick: a baseline
    cards = _cards(landing, "2026-11-08")

    late = "".join(f"L-t{task},a9,pos,2026-11-06T15:00:00Z,3\n" for task in range(1500))
    (landing / "exports" / "reviews" / "csv" / "late.csv").write_text(HEADER + late)
    _ingest(defs, instance)
    _run(defs, instance, "daily_annotation_job", "2026-11-06", FLAG_CONFIG)
    result = _tick(sensor, defs, instance, cursor)
    # Every built day after 11-06 reads it, and none of them is rebuilt for its scorecards.
    assert [r.partition_key for r in result.run_requests] == days[6:]
    for request in result.run_requests:
        assert request.tags[quality_sensors.STALE_DRIFT_TAG] == "1"
        assert request.tags[quality_sensors.STALE_HISTORY_TAG] == "0"
        _run_request(defs, instance, request)
    after = _drift(landing, "2026-11-08")
    assert after["label_drift"] and after["js_distance"] > 0.1
    assert "label distribution moved" in after["reason"]
    assert _cards(landing, "2026-11-08").equals(cards)

    # Current now and no cascade: nothing more is asked, 11-06 run again with unchanged inputs
    # launches nothing, and 11-08 run again in order writes the same drift.
    quiet = _tick(sensor, defs, instance, result.cursor)
    assert not quiet.run_requests
    assert "every trailing history and drift baseline current" in quiet.skip_reason.skip_message
    _run(defs, instance, "daily_annotation_job", "2026-11-06", FLAG_CONFIG)
    again = _tick(sensor, defs, instance, quiet.cursor)
    assert not again.run_requests, [r.partition_key for r in again.run_requests]
    _run(defs, instance, "daily_annotation_job", "2026-11-08", FLAG_CONFIG)
    assert _drift(landing, "2026-11-08") == after


@pytest.mark.parametrize("config", ["dagster.yaml", "dagster.production.yaml"])
def test_the_run_queue_limits_the_history_rebuilds(config):
    # Keyed by the tag the sensor sets: a late day can queue a rebuild for each later day of
    # its window, which must not take every run slot on two cores.
    root = Path(__file__).resolve().parents[2]
    runs = yaml.safe_load((root / config).read_text())["concurrency"]["runs"]
    limits = {limit["key"]: limit["limit"] for limit in runs["tag_concurrency_limits"]}
    assert limits[quality_sensors.STALE_HISTORY_TAG] < runs["max_concurrent_runs"]
