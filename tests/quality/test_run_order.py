"""Run order: a day's quality verdict and flags are the same whichever order the days ran in.

On a real temporary instance: exports are ingested through the landing sensor, days run with
the daily job in process, and the sensors are ticked with their cursor carried over, the way
the daemon would.
"""

import json
import random

import polars as pl
import pytest
from dagster import DagsterInstance, build_sensor_context

from assets.definitions import build_definitions
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
    (tmp_path / "home").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "home"))
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
