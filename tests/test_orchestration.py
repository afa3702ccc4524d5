"""Schedules and sensors through Dagster's test APIs, on a real temporary instance.

Each sensor is ticked several times with its cursor carried over, and the runs it asks for are
executed in between, the way the daemon would.
"""

import json
import logging
import os
import time
from datetime import UTC, date, datetime
from typing import ClassVar

import polars as pl
import pytest
from click.testing import CliRunner
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DailyPartitionsDefinition,
    Output,
    RunsFilter,
    asset,
    build_asset_context,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from annotation_pipelines.cli import main
from annotation_pipelines.lake import quarantine_key, staging_prefix
from annotation_pipelines.synthetic import generate_workload
from assets.curation import sensors as curation_sensors
from assets.definitions import build_definitions
from assets.forecasting import jobs as schedules
from assets.live.assets import _fold_files, pending_files
from assets.operations import sensors
from assets.quality import sensors as quality_sensors
from assets.raw import sensors as raw_sensors
from assets.sources import sensors as source_sensors
from assets.sources.assets import landing_exports, source_id
from resources.landing import LocalLandingZone

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
HEADER = "task_id,annotator_id,label,submitted_at,duration_s\n"
# Thresholds no synthetic day meets: the agreement floor fails (ERROR), the flagged-annotator
# cap and the gold-accuracy floor (WARN, which names no held-back project).
GATES_FAIL = {"min_alpha": 0.99, "min_gold_accuracy": 0.999, "max_flagged_share": 0.0}


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    landing = tmp_path / "data" / "landing"
    project = landing / "exports" / "reviews"
    (project / "csv").mkdir(parents=True)
    (project / "project.json").write_text(json.dumps({"label_set": ["pos", "neg"]}))
    defs = build_definitions(profile="local")
    # The folder is for the two-process test's own on-disk instances. These tests' instance is
    # in memory: the sensors read the same SQL run and event storage, without an engine and a
    # connection per stored event.
    (tmp_path / "home").mkdir()
    instance = DagsterInstance.ephemeral()
    yield defs, instance, landing
    instance.dispose()


def _tick(sensor, defs, instance, cursor=None):
    # Only the resources sensors use: the annotation DB's DSN is unset in these tests.
    resources = {k: v for k, v in defs.resources.items() if k in ("lake", "landing")}
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor(context), context


def _run(defs, instance, job, partition):
    return defs.resolve_job_def(job).execute_in_process(
        partition_key=partition, instance=instance, run_config=QUIET, raise_on_error=False
    )


def test_landing_sensor_ingests_each_file_once_retries_failures_and_requests_its_days(env):
    defs, instance, landing = env
    export = landing / "exports" / "reviews" / "csv" / "batch-1.csv"
    export.write_text(
        HEADER
        + "t1,a1,pos,2026-11-02T10:00:00Z,3\n"
        + "t1,a2,pos,2026-11-02T11:00:00Z,4\n"
        + "t2,a1,neg,2026-11-03T09:00:00Z,5\n"
        + "t2,a2,maybe,2026-11-03T09:30:00Z,5\n"  # unknown label: quarantined
    )
    result, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    assert [r.partition_key for r in result.run_requests] == ["exports/reviews/csv/batch-1.csv"]
    assert result.dynamic_partitions_requests[0].partition_keys == [
        "exports/reviews/csv/batch-1.csv"
    ]
    instance.add_dynamic_partitions("export_files", ["exports/reviews/csv/batch-1.csv"])
    run = _run(defs, instance, "ingest_export_job", "exports/reviews/csv/batch-1.csv")
    assert run.success
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_read"].value == 4
    assert metadata["rows_loaded"].value + metadata["rows_quarantined"].value == 4
    assert metadata["days"].value == ["2026-11-02", "2026-11-03"]
    checks = {c.check_name: c for c in run.get_asset_check_evaluations()}
    assert checks["rows_reconcile"].passed
    # One row of four set aside is over the 5 % a file may lose unremarked: a warning that
    # names the reason, while the good rows are staged all the same.
    share = checks["quarantine_share"]
    assert not share.passed and share.severity == AssetCheckSeverity.WARN
    assert "1 of 4 rows quarantined (25.0%, above 5%" in share.description

    # Next ticks: the file is done, nothing is requested again.
    cursor = result.cursor
    for _ in range(2):
        again, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, cursor)
        assert again.run_requests == []
        cursor = again.cursor

    # The staged-days sensor asks for exactly the two days, once.
    staged, _ = _tick(raw_sensors.staged_days_sensor, defs, instance)
    assert sorted(r.partition_key for r in staged.run_requests) == ["2026-11-02", "2026-11-03"]
    nothing, _ = _tick(raw_sensors.staged_days_sensor, defs, instance, staged.cursor)
    assert not getattr(nothing, "run_requests", None)

    # The raw layer for a requested day now holds the staged rows.
    assert _run(defs, instance, "raw_job", "2026-11-02").success
    judgments = pl.read_parquet(
        landing.parent / "lake" / "judgments" / "day=2026-11-02" / "data.parquet"
    )
    assert judgments.height == 2 and set(judgments["source_file"]) == {
        "exports/reviews/csv/batch-1.csv"
    }

    # An unreadable file: its run fails naming it, and the next tick retries it.
    broken = landing / "exports" / "reviews" / "csv" / "broken.csv"
    broken.write_bytes(b"\x00\x01not,a\xff\xfecsv")
    first, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, cursor)
    assert [r.partition_key for r in first.run_requests] == ["exports/reviews/csv/broken.csv"]
    instance.add_dynamic_partitions("export_files", ["exports/reviews/csv/broken.csv"])
    failed = _run(defs, instance, "ingest_export_job", "exports/reviews/csv/broken.csv")
    assert not failed.success
    retry, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, first.cursor)
    assert [r.partition_key for r in retry.run_requests] == ["exports/reviews/csv/broken.csv"]
    assert retry.run_requests[0].run_key != first.run_requests[0].run_key

    # A changed file (new fingerprint) is ingested again.
    os.utime(export, (1, 1))
    changed, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, retry.cursor)
    assert "exports/reviews/csv/batch-1.csv" in [r.partition_key for r in changed.run_requests]


def test_a_file_rewritten_while_its_run_stages_it_is_ingested_again(env):
    """The run records the version it read, not the one listed after staging: a file a tool
    rewrote while the run waited for the staging lock was recorded as ingested in its new
    version, and its new rows were never staged."""
    import threading

    defs, instance, landing = env
    path = "exports/reviews/csv/batch-1.csv"
    export = landing / path
    export.write_text(HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\n")
    first, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    instance.add_dynamic_partitions("export_files", [path])
    lake = defs.resources["lake"]
    finished = []
    with lake.staging_lock():
        # The run reads the file, then waits here for the lock this test holds.
        worker = threading.Thread(
            target=lambda: finished.append(_run(defs, instance, "ingest_export_job", path))
        )
        worker.start()

        def waiting() -> bool:
            logs = [e.message for e in instance.all_logs(instance.get_runs()[0].run_id)]
            return any("waiting for another run to finish staging" in m for m in logs)

        deadline = time.time() + 60
        while not (instance.get_runs() and waiting()) and time.time() < deadline:
            time.sleep(0.1)
        assert waiting()
        export.write_text(
            HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\nt1,a2,neg,2026-11-02T11:00:00Z,4\n"
        )
    worker.join(timeout=120)
    assert finished and finished[0].success
    again, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, first.cursor)
    assert [r.partition_key for r in again.run_requests] == [path]
    assert again.run_requests[0].tags["annotation_pipelines/reason"] == "file changed"


def test_landing_sensor_offers_a_file_only_once_it_has_settled(env, monkeypatch):
    defs, instance, landing = env
    monkeypatch.setenv("ANNOTATION_PIPELINES_LANDING_SETTLE_SECONDS", "60")
    defs = build_definitions(profile="local")
    folder = landing / "exports" / "reviews" / "csv"
    growing = folder / "slow.csv"
    growing.write_text(HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\nt1,a2,po")
    for name in (
        "copy.csv.tmp",
        "copy.csv.part",
        "copy.csv.partial",
        "copy.csv.crdownload",
        ".copy.csv",
        "copy.csv._COPYING_",
    ):
        (folder / name).write_text(HEADER)
    first, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    assert first.run_requests == []
    growing.write_text(
        HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\nt1,a2,pos,2026-11-02T11:00:00Z,4\n"
    )
    # Written 30 s ago: not settled yet; the live sensor's listing holds it back as well.
    written = growing.stat().st_mtime - 30
    os.utime(growing, (written, written))
    second, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, first.cursor)
    assert second.run_requests == []
    # The Automation page shows why a tick launched nothing.
    assert second.skip_reason.skip_message == (
        "no new or changed export file; 1 written to within 60 s, offered once it settles: "
        "exports/reviews/csv/slow.csv"
    )
    assert pending_files(defs.resources["landing"], {}) == []
    written -= 31
    os.utime(growing, (written, written))
    third, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["exports/reviews/csv/slow.csv"]
    assert [p.split("@")[0] for p in pending_files(defs.resources["landing"], {})] == [
        "exports/reviews/csv/slow.csv"
    ]
    instance.add_dynamic_partitions("export_files", ["exports/reviews/csv/slow.csv"])
    run = _run(defs, instance, "ingest_export_job", "exports/reviews/csv/slow.csv")
    assert run.success
    ingest = run.get_asset_materialization_events()[0].materialization.metadata
    assert (ingest["rows_read"].value, ingest["rows_quarantined"].value) == (2, 0)
    fourth, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, third.cursor)
    fifth, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, fourth.cursor)
    assert fourth.run_requests == fifth.run_requests == []
    assert fifth.skip_reason.skip_message == "no new or changed export file (1 ingested)"


def test_project_sensor_adds_new_projects_once(env, tmp_path):
    defs, instance, landing = env
    generate_workload(
        landing / "synthetic", judgments=3_000, start=date(2026, 11, 2), days=1, seed=1
    )
    assert _run(defs, instance, "raw_job", "2026-11-02").success
    result, _ = _tick(curation_sensors.project_sensor, defs, instance)
    added = result.dynamic_partitions_requests[0].partition_keys
    assert sorted(added) == ["intent", "sentiment", "toxicity"]
    assert sorted(r.partition_key for r in result.run_requests) == sorted(added)
    instance.add_dynamic_partitions("projects", added)
    again, _ = _tick(curation_sensors.project_sensor, defs, instance)
    assert not getattr(again, "run_requests", None)


def test_project_sensor_finds_a_project_on_any_day_and_reads_only_days_written_since(env):
    defs, instance, _ = env
    lake = defs.resources["lake"]

    def day_of(project: str, day: str) -> pl.DataFrame:
        return pl.DataFrame(
            {"judgment_id": [f"{project}-{day}"], "task_id": ["t1"], "project": [project],
             "annotator_id": ["a1"], "label": ["pos"]}
        )  # fmt: skip

    days = [f"2026-11-{d:02d}" for d in range(3, 13)]
    for day in days:
        lake.write_table("judgments", day_of("reviews", day), day=day)
    first, _ = _tick(curation_sensors.project_sensor, defs, instance)
    assert first.dynamic_partitions_requests[0].partition_keys == ["reviews"]
    instance.add_dynamic_partitions("projects", ["reviews"])
    # A project backfilled on a day older than the latest week still becomes a partition.
    lake.write_table("judgments", day_of("legacy", "2026-11-02"), day="2026-11-02")
    backfilled, _ = _tick(curation_sensors.project_sensor, defs, instance, first.cursor)
    assert backfilled.dynamic_partitions_requests[0].partition_keys == ["legacy"]
    assert [r.partition_key for r in backfilled.run_requests] == ["legacy"]
    instance.add_dynamic_partitions("projects", ["legacy"])
    # So does one that a rewrite of an old day brings.
    rewritten = pl.concat([day_of("reviews", days[0]), day_of("archive", days[0])])
    lake.write_table("judgments", rewritten, day=days[0])
    later, _ = _tick(curation_sensors.project_sensor, defs, instance, backfilled.cursor)
    assert later.dynamic_partitions_requests[0].partition_keys == ["archive"]
    instance.add_dynamic_partitions("projects", ["archive"])
    idle, _ = _tick(curation_sensors.project_sensor, defs, instance, later.cursor)
    assert not idle.run_requests and idle.skip_reason.skip_message == "no new projects"


def test_gold_set_sensor_fires_on_change_only(env):
    defs, instance, landing = env
    gold = landing / "gold" / "reviews"
    gold.mkdir(parents=True)
    (gold / "gold.csv").write_text("task_id,label\nt1,pos\n")
    first, _ = _tick(source_sensors.gold_set_sensor, defs, instance)
    assert len(first.run_requests) == 1
    same, _ = _tick(source_sensors.gold_set_sensor, defs, instance, first.cursor)
    assert not getattr(same, "run_requests", None)
    (gold / "gold.csv").write_text("task_id,label\nt1,neg\n")
    os.utime(gold / "gold.csv", (10, 10))
    changed, _ = _tick(source_sensors.gold_set_sensor, defs, instance, first.cursor)
    assert len(changed.run_requests) == 1


def test_a_changed_label_set_restages_the_gold_sets_it_checks(env):
    """Gold rows are checked against their project's label set, so a project.json that
    changes restages them, as it re-ingests the project's exports: a gold label quarantined
    as unknown_label stayed out after the label set gained it."""
    defs, instance, landing = env
    gold = landing / "gold" / "reviews"
    gold.mkdir(parents=True)
    (gold / "gold.csv").write_text("task_id,label\nt1,pos\nt2,mixed\n")
    first, _ = _tick(source_sensors.gold_set_sensor, defs, instance)
    assert len(first.run_requests) == 1
    settings = landing / "exports" / "reviews" / "project.json"
    settings.write_text(json.dumps({"label_set": ["pos", "neg", "mixed"]}))
    changed, _ = _tick(source_sensors.gold_set_sensor, defs, instance, first.cursor)
    assert len(changed.run_requests) == 1
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key
    # Settings of a project without a gold set restage nothing.
    (landing / "exports" / "other").mkdir()
    (landing / "exports" / "other" / "project.json").write_text("{}")
    idle, _ = _tick(source_sensors.gold_set_sensor, defs, instance, changed.cursor)
    assert not getattr(idle, "run_requests", None)


def test_removing_the_last_gold_set_restages_the_gold_sets_without_it(env):
    defs, instance, landing = env
    gold = landing / "gold" / "reviews"
    gold.mkdir(parents=True)
    (gold / "gold.csv").write_text("task_id,label\nt1,pos\n")
    first, _ = _tick(source_sensors.gold_set_sensor, defs, instance)
    assert _run_unpartitioned(defs, instance, "gold_sets_job").success
    (gold / "gold.csv").unlink()
    removed, _ = _tick(source_sensors.gold_set_sensor, defs, instance, first.cursor)
    assert len(removed.run_requests) == 1
    run = _run_unpartitioned(defs, instance, "gold_sets_job")
    assert run.success
    lake = defs.resources["lake"]
    staged = [lake.get_frame(k) for k in lake.list_keys(staging_prefix("gold_labels"))]
    assert sum(frame.height for frame in staged) == 0
    idle, _ = _tick(source_sensors.gold_set_sensor, defs, instance, removed.cursor)
    assert not getattr(idle, "run_requests", None)
    # A landing zone that never held a gold set has nothing to restage.
    fresh, _ = _tick(source_sensors.gold_set_sensor, defs, instance)
    assert not getattr(fresh, "run_requests", None)


class ListingLanding(LocalLandingZone):
    """The local landing zone, recording each prefix it lists: class-wide, as Dagster hands a
    run its own copy of a resource."""

    listed: ClassVar[list[str]] = []

    def list_entries(self, prefix: str) -> list[tuple[str, str, float]]:
        self.listed.append(prefix)
        return super().list_entries(prefix)


def test_an_export_run_and_a_gold_tick_list_only_what_they_read(env):
    """An export's run lists no folder: its project.json and its own version are looked up
    alone. The gold set sensor lists gold/, not the exports beside the project.json it
    watches."""
    defs, instance, landing = env
    path = "exports/reviews/csv/batch-1.csv"
    (landing / path).write_text(HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\n")
    (landing / "exports/reviews/csv/batch-0.csv").write_text(HEADER)
    (landing / "gold" / "reviews").mkdir(parents=True)
    (landing / "gold" / "reviews" / "gold.csv").write_text("task_id,label\nt1,pos\n")
    zone = ListingLanding(path=str(landing), settle_seconds=0)
    instance.add_dynamic_partitions("export_files", [path])
    ListingLanding.listed.clear()
    result = landing_exports(
        build_asset_context(partition_key=path, instance=instance),
        landing=zone,
        lake=defs.resources["lake"],
    )
    assert ListingLanding.listed == []
    assert result.metadata is not None
    assert result.metadata["rows_loaded"].value == 1
    # The label set applied: a label outside it would have been quarantined.
    assert result.metadata["quarantine_reasons"].value == {}
    assert result.metadata["fingerprint"].value == dict(zone.list_files("exports/"))[path]
    ListingLanding.listed.clear()
    tick = source_sensors.gold_set_sensor(
        build_sensor_context(
            instance=instance, resources={"lake": defs.resources["lake"], "landing": zone}
        )
    )
    assert ListingLanding.listed == ["gold/"]
    assert set(json.loads(tick.cursor)) == {"gold/reviews/gold.csv", "exports/reviews/project.json"}


def test_gold_set_sensor_offers_a_gold_file_only_once_it_has_settled(env, monkeypatch):
    defs, instance, landing = env
    monkeypatch.setenv("ANNOTATION_PIPELINES_LANDING_SETTLE_SECONDS", "60")
    defs = build_definitions(profile="local")
    gold = landing / "gold" / "reviews"
    gold.mkdir(parents=True)
    (gold / "gold.csv").write_text("task_id,label\nt1,pos\nt2,ne")
    (gold / "more.csv.part").write_text("task_id,label\nt3,pos\n")
    fresh, _ = _tick(source_sensors.gold_set_sensor, defs, instance)
    assert not getattr(fresh, "run_requests", None)
    assert "gold/reviews/gold.csv" in fresh.skip_message
    assert "more.csv.part" not in fresh.skip_message
    _age(gold / "gold.csv", 61)
    settled, _ = _tick(source_sensors.gold_set_sensor, defs, instance)
    assert len(settled.run_requests) == 1
    # An upload's temporary name is never offered, however long it rests.
    _age(gold / "more.csv.part", 3600)
    again, _ = _tick(source_sensors.gold_set_sensor, defs, instance, settled.cursor)
    assert not getattr(again, "run_requests", None)


def test_gold_sets_read_only_settled_files_and_keep_a_rewritten_ones_last_rows(env, monkeypatch):
    defs, instance, landing = env
    monkeypatch.setenv("ANNOTATION_PIPELINES_LANDING_SETTLE_SECONDS", "60")
    defs = build_definitions(profile="local")
    gold = landing / "gold" / "reviews"
    gold.mkdir(parents=True)
    (gold / "gold.csv").write_text("task_id,label\nt1,pos\n")
    _age(gold / "gold.csv", 61)
    # Not a table yet: reading it would fail the run or stage a truncated gold set.
    (gold / "more.csv.part").write_text("task_id\n")
    (gold / "late.csv").write_text("task_id\n")

    def staged():
        run = _run_unpartitioned(defs, instance, "gold_sets_job")
        assert run.success
        lake = defs.resources["lake"]
        [key] = [k for k in lake.list_keys(staging_prefix("gold_labels")) if "gold_sets" in k]
        frame = lake.get_frame(key).sort("task_id")
        metadata = run.get_asset_materialization_events()[0].materialization.metadata
        return dict(frame.select("task_id", "label").rows()), metadata["unsettled_files"].value

    assert staged() == ({"t1": "pos"}, ["gold/reviews/late.csv"])
    # A rewrite in progress: the file's last staged rows stay until it has settled.
    (gold / "gold.csv").write_text("task_id,label\nt1,neg\nt2,p")
    (gold / "late.csv").write_text("task_id,label\nt9,neg\n")
    _age(gold / "late.csv", 61)
    assert staged() == ({"t1": "pos", "t9": "neg"}, ["gold/reviews/gold.csv"])
    (gold / "gold.csv").write_text("task_id,label\nt1,neg\nt2,pos\n")
    _age(gold / "gold.csv", 61)
    assert staged() == ({"t1": "neg", "t2": "pos", "t9": "neg"}, [])


def _age(path, seconds):
    written = time.time() - seconds
    os.utime(path, (written, written))


def _run_unpartitioned(defs, instance, job):
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, run_config=QUIET, raise_on_error=False
    )


def test_a_file_mostly_quarantined_warns_and_is_alerted_naming_the_reason(env):
    defs, instance, landing = env
    export = landing / "exports" / "reviews" / "csv" / "batch-2.csv"
    # Exported with the tool's display names instead of the project's label set.
    rows = [f"t{i},a{i % 3},Positive,2026-11-02T10:{i:02d}:00Z,3\n" for i in range(19)]
    export.write_text(HEADER + "".join(rows) + "t99,a1,pos,2026-11-02T11:00:00Z,3\n")
    instance.add_dynamic_partitions("export_files", ["exports/reviews/csv/batch-2.csv"])
    run = _run(defs, instance, "ingest_export_job", "exports/reviews/csv/batch-2.csv")
    assert run.success  # a warning: the good row is staged
    checks = {c.check_name: c for c in run.get_asset_check_evaluations()}
    assert checks["rows_reconcile"].passed
    assert not checks["quarantine_share"].passed
    assert checks["quarantine_share"].metadata["quarantined_share"].value == 0.95
    _tick(quality_sensors.quality_alert_sensor, defs, instance)
    [alert] = pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet").to_dicts()
    assert (alert["check"], alert["severity"]) == ("quarantine_share", "WARN")
    assert alert["partition"] == "exports/reviews/csv/batch-2.csv"
    assert "19 of 20 rows quarantined (95.0%, above 5%" in alert["message"]
    assert "ANNOTATION_PIPELINES_MAX_QUARANTINED_SHARE" in alert["message"]

    # The file exported again with the same mistake: still failing, not alerted again; with
    # another mistake (times without a zone), alerted again, naming it.
    def again(rows: list[str]) -> list[dict[str, object]]:
        export.write_text(HEADER + "".join(rows) + "t99,a1,pos,2026-11-02T11:00:00Z,3\n")
        assert _run(defs, instance, "ingest_export_job", "exports/reviews/csv/batch-2.csv").success
        _tick(quality_sensors.quality_alert_sensor, defs, instance, cursor)
        return pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet").to_dicts()

    cursor = _tick(quality_sensors.quality_alert_sensor, defs, instance)[1].cursor
    assert len(again([row.replace(",3", ",4") for row in rows])) == 1
    naive = [f"t{i},a{i % 3},pos,2026-11-02T10:{i:02d}:00,3\n" for i in range(19)]
    alerts = again(naive)
    assert len(alerts) == 2
    assert sum("timestamp_without_timezone (19)" in a["message"] for a in alerts) == 1


def test_quality_alert_sensor_records_failed_gates(env):
    defs, instance, landing = env
    generate_workload(
        landing / "synthetic", judgments=4_000, start=date(2026, 11, 2), days=1, seed=2
    )
    strict = {
        **QUIET,
        "ops": {"quality": {"config": {**GATES_FAIL, "bootstrap_resamples": 0}}},
    }
    result = defs.resolve_job_def("daily_annotation_job").execute_in_process(
        partition_key="2026-11-02", instance=instance, run_config=strict, raise_on_error=False
    )
    assert any(not c.passed for c in result.get_asset_check_evaluations())
    _, context = _tick(quality_sensors.quality_alert_sensor, defs, instance)
    alerts = pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet")
    assert set(alerts["check"]) == {
        "agreement_floor",
        "gold_accuracy_floor",
        "flagged_annotator_share",
    }
    assert (alerts["partition"] == "2026-11-02").all()
    # Every message says which project failed, with its figure and the threshold.
    for message in alerts["message"]:
        reason = message.split("failed for 2026-11-02: ", 1)[1]
        assert any(p in reason for p in ("intent", "sentiment", "toxicity")), message
    [floor] = alerts.filter(pl.col("check") == "agreement_floor")["message"]
    assert "alpha" in floor and "floor 0.99" in floor, floor
    # The per-project figures the check also carries for its plots are not repeated.
    assert not alerts["message"].str.contains("/value|/floor").any()
    # A second tick from the advanced cursor records nothing new.
    _tick(quality_sensors.quality_alert_sensor, defs, instance, context.cursor)
    assert pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet").height == alerts.height

    # The same day's gates evaluated again by another run fail the same gates: they are not
    # alerted again; once a rebuild passes a gate, its next failure is. The rebuilds re-score
    # the quality layer alone (quality_job, what the floor-change sensor launches); the alerts
    # come from whichever run evaluated the checks, so the upstream layers need not run again.
    def rebuild(gates: dict[str, float]) -> None:
        config = {**QUIET, "ops": {"quality": {"config": {**gates, "bootstrap_resamples": 0}}}}
        run = defs.resolve_job_def("quality_job").execute_in_process(
            partition_key="2026-11-02", instance=instance, run_config=config, raise_on_error=False
        )
        failed = {c.check_name for c in run.get_asset_check_evaluations() if not c.passed}
        assert failed == (set(alerts["check"]) if gates is GATES_FAIL else set())

    rebuild(GATES_FAIL)
    _, context = _tick(quality_sensors.quality_alert_sensor, defs, instance, context.cursor)
    assert pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet").height == alerts.height
    rebuild({"min_alpha": -1.0, "min_gold_accuracy": 0.0, "max_flagged_share": 1.0})
    rebuild(GATES_FAIL)
    _tick(quality_sensors.quality_alert_sensor, defs, instance, context.cursor)
    again = pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet")
    assert sorted(again.sort("raised_at")["check"][alerts.height :]) == sorted(alerts["check"])


def _gate_run(instance, report, check, *, failing, day="2026-11-02"):
    """A run that evaluates `check` of `report` for `day` the way the quality steps do: failed
    with ERROR for the projects `failing` (one clause each), passed when there are none."""
    clauses = {project: f"alpha 0.3{i} < floor 0.99 (project.json)" for i, project in
               enumerate(failing)}  # fmt: skip

    @asset(name=report, check_specs=[AssetCheckSpec(check, asset=report)],
           partitions_def=DailyPartitionsDefinition(start_date="2026-11-01"))  # fmt: skip
    def gated():
        yield Output(None)
        yield AssetCheckResult(
            check_name=check,
            passed=not failing,
            severity=AssetCheckSeverity.ERROR,
            description="; ".join(f"{p}: {text}" for p, text in clauses.items()) or "ok",
            metadata={"failing": list(failing), "warned": []},
        )

    run = materialize([gated], instance=instance, partition_key=day, raise_on_error=False)
    assert run.success


def _alerts(landing):
    return pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet").sort("raised_at")


def test_quality_alert_sensor_records_a_failed_kind_gate(env):
    defs, instance, landing = env
    _gate_run(instance, "kind_quality_report", "agreement_floor", failing=["ratings"])
    _tick(quality_sensors.quality_alert_sensor, defs, instance)
    [alert] = _alerts(landing).rows(named=True)
    assert (alert["asset"], alert["check"], alert["severity"]) == (
        "kind_quality_report", "agreement_floor", "ERROR")  # fmt: skip
    assert alert["message"].startswith(
        "kind_quality_report:agreement_floor failed for 2026-11-02: ratings: alpha 0.30"
    )


def test_a_project_newly_failing_a_gate_already_failing_that_day_is_alerted(env):
    # A floor raised for a second project fails the gate that a first one already fails: the
    # second is alerted, naming it alone; a rebuild failing the same projects is not.
    defs, instance, landing = env
    check = ("quality_report", "agreement_floor")
    _gate_run(instance, *check, failing=["intent"])
    _, context = _tick(quality_sensors.quality_alert_sensor, defs, instance)
    _gate_run(instance, *check, failing=["intent", "sentiment"])
    _, context = _tick(quality_sensors.quality_alert_sensor, defs, instance, context.cursor)
    messages = _alerts(landing)["message"].to_list()
    assert len(messages) == 2, messages
    assert "intent" in messages[0] and "sentiment" not in messages[0]
    assert messages[1] == (
        "quality_report:agreement_floor failed for 2026-11-02: "
        "sentiment: alpha 0.31 < floor 0.99 (project.json)"
    )
    _gate_run(instance, *check, failing=["sentiment", "intent"])
    _, context = _tick(quality_sensors.quality_alert_sensor, defs, instance, context.cursor)
    assert _alerts(landing).height == 2
    # A project that stopped failing and fails again is new again.
    _gate_run(instance, *check, failing=["intent"])
    _gate_run(instance, *check, failing=["intent", "sentiment"])
    _tick(quality_sensors.quality_alert_sensor, defs, instance, context.cursor)
    assert _alerts(landing)["message"].to_list()[2:] == messages[1:]


def test_a_cursor_without_projects_adopts_them_without_alerting_again(env):
    # A cursor written before the projects were kept names the alerting run only.
    defs, instance, landing = env
    check = ("quality_report", "agreement_floor")
    _gate_run(instance, *check, failing=["intent"])
    _, context = _tick(quality_sensors.quality_alert_sensor, defs, instance)
    state = json.loads(context.cursor)
    state["failing"] = {key: open_["run"] for key, open_ in state["failing"].items()}
    _gate_run(instance, *check, failing=["intent"])
    _, context = _tick(quality_sensors.quality_alert_sensor, defs, instance, json.dumps(state))
    assert _alerts(landing).height == 1
    _gate_run(instance, *check, failing=["intent", "sentiment"])
    _tick(quality_sensors.quality_alert_sensor, defs, instance, context.cursor)
    assert (
        _alerts(landing)["message"]
        .to_list()[1]
        .endswith("sentiment: alpha 0.31 < floor 0.99 (project.json)")
    )


def test_run_failure_sensor_writes_an_alert(env):
    defs, instance, landing = env
    instance.add_dynamic_partitions("export_files", ["exports/reviews/csv/absent.csv"])
    failed = _run(defs, instance, "ingest_export_job", "exports/reviews/csv/absent.csv")
    assert not failed.success
    assert instance.get_run_by_id(failed.run_id).status == DagsterRunStatus.FAILURE
    _alert_run_failure(defs, instance, failed.run_id)
    alerts = pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet")
    assert alerts["kind"].to_list() == ["run_failure"]
    assert alerts["severity"].to_list() == ["ERROR"]
    # The alert says what failed: the step's error, class and first line, not Dagster's wrapper.
    [message] = alerts["message"]
    assert "Cause: FileNotFoundError: " in message and "absent.csv" in message, message
    assert "DagsterExecutionStepExecutionError" not in message
    # A failed attempt that Dagster will retry (the tag its run-retry logic sets) warns.
    instance.add_run_tags(failed.run_id, {"dagster/will_retry": "true"})
    _alert_run_failure(defs, instance, failed.run_id)
    alerts = pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet").sort("raised_at")
    assert alerts["severity"].to_list() == ["ERROR", "WARNING"]
    assert alerts["message"][-1].endswith("(the daemon retries it)")


def test_a_failed_materialization_launched_from_the_ui_alerts_with_the_asset_name(env):
    # The UI's Materialize button runs Dagster's hidden asset job, whose name means nothing to
    # whoever reads the alert: the alert names the asset instead.
    defs, instance, landing = env
    instance.add_dynamic_partitions("projects", ["reviews"])
    # What the webserver launches: the hidden job with the clicked asset as its selection.
    failed = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key="reviews",
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
        asset_selection=[AssetKey("curated_dataset")],
    )
    assert not failed.success
    _alert_run_failure(defs, instance, failed.run_id)
    alerts = pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet")
    [message] = alerts["message"]
    assert alerts["asset"].to_list() == ["curated_dataset"]
    assert alerts["partition"].to_list() == ["reviews"]
    assert message.startswith("curated_dataset: "), message
    assert "__ASSET_JOB" not in message
    # The lake is empty: the cause says what is missing and what builds it.
    assert (
        "Cause: ValueError: curated_dataset 'reviews': the lake has no judgments on any day; "
        "materialize the daily layers (daily_annotation_job) first"
    ) in message, message


def test_lake_maintenance_runs_daily_and_removes_an_orphaned_commit_only_once_it_is_old(env):
    defs, instance, landing = env
    lake_dir = landing.parent / "lake"
    orphan, young = lake_dir / "_commits" / "1-x" / "00000", lake_dir / "_commits" / "2-y" / "00000"
    for path in (orphan, young):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"staged by a commit that failed before its marker")
    two_hours_ago = time.time() - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))
    schedule = defs.resolve_schedule_def("daily_lake_maintenance_schedule")
    assert schedule.cron_schedule == "30 4 * * *"
    [request] = schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests
    job = defs.resolve_job_def(schedule.job_name)
    result = job.execute_in_process(instance=instance, run_config=QUIET, tags=request.tags)
    assert result.success
    assert not orphan.exists()
    assert young.exists()


def test_daily_schedule_targets_yesterday_and_weekly_forecast_is_monday():
    tick = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
    context = build_schedule_context(scheduled_execution_time=tick)
    daily = build_definitions(profile="local").resolve_schedule_def("daily_annotation_schedule")
    [request] = daily.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-20"
    assert schedules.weekly_forecast_schedule.cron_schedule == "0 6 * * 1"


def test_run_summary_sensor_adds_a_summary_to_the_run_log(env):
    defs, instance, landing = env
    generate_workload(
        landing / "synthetic", judgments=2_000, start=date(2026, 11, 2), days=1, seed=5
    )
    result = _run(defs, instance, "raw_job", "2026-11-02")
    assert result.success
    summary = sensors.run_summary(instance, result.run_id)
    assert set(summary["asset"]) == {"raw_tasks", "judgments", "gold_labels"}
    assert (summary["rows"] > 0).all()
    run = instance.get_run_by_id(result.run_id)
    context = build_run_status_sensor_context(
        sensor_name="run_summary_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=next(
            e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS"
        ),
        resources={"lake": defs.resources["lake"]},
    )
    sensors.run_summary_sensor(context)
    messages = [entry.message for entry in instance.all_logs(result.run_id)]
    assert any(m.startswith("Run summary: 3 materialization(s)") for m in messages)


def test_run_status_sensors_take_the_lake_resource_not_the_definitions_module():
    # Importing the definitions from a sensor made an import cycle; the lake comes as a resource.
    import inspect

    source = inspect.getsource(sensors)
    assert "annotation_pipelines.definitions" not in source and "dagster._" not in source
    for sensor in (sensors.run_failure_alert_sensor, sensors.run_summary_sensor):
        assert "lake" in sensor.required_resource_keys


SENSOR_TWICE = """
import json, sys
from dagster import DagsterInstance, build_sensor_context
from assets.curation.sensors import project_sensor
from assets.definitions import build_definitions
from assets.quality.sensors import floor_change_sensor, quality_alert_sensor
from assets.raw.sensors import staged_days_sensor
from assets.sources.sensors import gold_set_sensor, landing_zone_sensor

def evaluate(home):
    defs = build_definitions(profile="local")
    resources = {k: v for k, v in defs.resources.items() if k in ("lake", "landing")}
    sensors = {"landing_zone_sensor": landing_zone_sensor, "gold_set_sensor": gold_set_sensor,
               "staged_days_sensor": staged_days_sensor, "project_sensor": project_sensor,
               "quality_alert_sensor": quality_alert_sensor,
               "floor_change_sensor": floor_change_sensor}
    out = {}
    with DagsterInstance.from_ref(DagsterInstance.local_temp(home).get_ref()) as instance:
        for name, sensor in sensors.items():
            context = build_sensor_context(instance=instance, cursor=None, resources=resources)
            result = sensor(context)
            requests = getattr(result, "run_requests", None) or []
            out[name] = {
                "run_keys": [r.run_key for r in requests],
                "cursor": getattr(result, "cursor", None) or context.cursor,
            }
    return out

if __name__ == "__main__":
    print("RESULT " + json.dumps(evaluate(sys.argv[1]), sort_keys=True))
"""


def test_every_sensor_gives_the_same_run_keys_and_cursors_in_two_processes(env, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    _, _, landing = env
    (landing / "exports" / "reviews" / "csv" / "a.csv").write_text(HEADER + "t1,a1,pos,x,1\n")
    (landing / "gold" / "reviews").mkdir(parents=True)
    (landing / "gold" / "reviews" / "gold.csv").write_text("task_id,label\nt1,pos\n")
    root = Path(__file__).resolve().parents[1]
    home = str(tmp_path / "home")
    # The two processes are this one and a child of another hash seed (what a daemon restart
    # gives): the child alone pays for importing the code location, and this long-lived
    # process, whose string hashes and caches have seen the tests before, is the stricter side.
    ours = os.environ.get("PYTHONHASHSEED", "random")
    seed = "2" if ours == "1" else "1"
    child = subprocess.run(
        [sys.executable, "-c", SENSOR_TWICE, home],
        cwd=root,
        env={**os.environ, "PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in child.stdout.splitlines() if x.startswith("RESULT "))
    namespace: dict[str, object] = {"__name__": "sensor_twice"}
    exec(compile(SENSOR_TWICE, "<sensor_twice>", "exec"), namespace)
    here = json.loads(json.dumps(namespace["evaluate"](home), sort_keys=True))
    outputs = [here, json.loads(line.removeprefix("RESULT "))]
    assert outputs[0] == outputs[1]
    assert outputs[0]["gold_set_sensor"]["run_keys"]
    assert outputs[0]["landing_zone_sensor"]["run_keys"]
    assert json.loads(outputs[0]["floor_change_sensor"]["cursor"])["floors"] == {}


def test_a_task_with_no_valid_judgment_leaves_the_rest_of_its_file_loading(env, tmp_path):
    defs, instance, landing = env
    path = "exports/reviews/csv/mixed.csv"
    good = [
        f"t{task},a{annotator},{'pos' if (task + annotator) % 3 else 'neg'},"
        f"2026-11-0{2 + task % 2}T1{annotator}:00:00Z,{annotator + 1}\n"
        for task in range(1, 9)
        for annotator in range(3)
    ]
    bad = [  # one task, every judgment outside the label set or without a usable time
        "t9,a0,cat,2026-11-03T10:00:00Z,1\n",
        "t9,a1,cat,2026-11-03T11:00:00Z,1\n",
        "t9,a2,pos,not-a-time,1\n",
    ]
    (landing / path).write_text(HEADER + "".join(good[:12] + bad + good[12:]))

    requested, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    assert [r.partition_key for r in requested.run_requests] == [path]
    instance.add_dynamic_partitions("export_files", [path])
    run = _run(defs, instance, "ingest_export_job", path)
    assert run.success
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert (metadata["rows_read"].value, metadata["rows_loaded"].value) == (27, 24)
    assert metadata["rows_quarantined"].value == 3
    assert metadata["days"].value == ["2026-11-02", "2026-11-03"]
    assert metadata["undated_tasks"].value == 1
    # The file is done: the sensor neither retries nor reports it.
    after, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, requested.cursor)
    assert after.run_requests == []

    # The quarantine holds the bad rows with the reasons the ingest command gives the file.
    lake_dir = landing.parent / "lake"
    staged = pl.read_parquet(lake_dir / quarantine_key(source_id(path)))
    settings = landing / "exports" / "reviews" / "project.json"
    command = ["ingest", str(landing / path), "--format", "csv", "--project", "reviews"]
    command += ["--settings", str(settings), "--output", str(tmp_path / "cli")]
    cli = CliRunner().invoke(main, command, catch_exceptions=False)
    assert cli.exit_code == 0
    reported = json.loads(cli.stdout.strip().splitlines()[-1])
    assert reported["reasons"] == {"unknown_label": 2, "wrong_type": 1}
    assert (reported["rows_loaded"], reported["tasks"]) == (24, 9)
    columns = ["source_line", "field", "reason"]
    from_cli = pl.read_parquet(tmp_path / "cli" / "quarantine.parquet").select(columns)
    assert staged.select(columns).sort("source_line").equals(from_cli.sort("source_line"))

    # The daily layer loads the good rows, and no task without a day.
    for day in ("2026-11-02", "2026-11-03"):
        assert _run(defs, instance, "raw_job", day).success
    judgments = pl.read_parquet(lake_dir / "judgments" / "*" / "data.parquet")
    tasks = pl.read_parquet(lake_dir / "raw_tasks" / "*" / "data.parquet")
    assert judgments.height == 24 and "t9" not in judgments["task_id"].to_list()
    assert sorted(tasks["task_id"]) == [f"t{task}" for task in range(1, 9)]
    assert tasks["created_at"].null_count() == 0

    # The live loop reads the same file to the same judgments.
    live = _fold_files(
        defs.resources["landing"], {}, read_at=datetime.now(UTC), log=logging.getLogger("t")
    ).judgments
    assert sorted(live["judgment_id"]) == sorted(judgments["judgment_id"])

    # A file with no valid row at all loads nothing, quarantines everything, and succeeds.
    wrong = "exports/reviews/csv/wronglabels.csv"
    (landing / wrong).write_text(HEADER + "".join(bad[:2]) + "t10,a1,cat,2026-11-02T10:00:00Z,1\n")
    instance.add_dynamic_partitions("export_files", [wrong])
    run = _run(defs, instance, "ingest_export_job", wrong)
    assert run.success
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert (metadata["rows_loaded"].value, metadata["rows_quarantined"].value) == (0, 3)
    assert metadata["days"].value == []
    assert metadata["quarantine_reasons"].value == {"unknown_label": 3}


def _alert_run_failure(defs, instance, run_id):
    run = instance.get_run_by_id(run_id)
    failure = next(
        entry.dagster_event
        for entry in instance.all_logs(run_id)
        if entry.dagster_event and entry.dagster_event.event_type_value == "PIPELINE_FAILURE"
    )
    context = build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure,
        resources={"lake": defs.resources["lake"]},
    ).for_run_failure()
    sensors.run_failure_alert_sensor(context)


def test_a_file_failing_every_retry_alerts_at_its_first_and_last_attempt_with_the_cause(env):
    defs, instance, landing = env
    path = "exports/reviews/csv/broken.csv"
    (landing / path).write_bytes(b"task_id\n")
    job = defs.resolve_job_def("ingest_export_job")
    cursor = None
    for _ in range(source_sensors.MAX_ATTEMPTS):
        tick, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, cursor)
        cursor = tick.cursor
        [request] = tick.run_requests
        instance.add_dynamic_partitions("export_files", [path])
        failed = job.execute_in_process(
            partition_key=path,
            instance=instance,
            run_config=QUIET,
            raise_on_error=False,
            tags=request.tags,
        )
        assert not failed.success
        _alert_run_failure(defs, instance, failed.run_id)
    retried, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, cursor)
    assert retried.run_requests == []

    alerts = pl.read_parquet(landing.parent / "lake" / "alerts" / "*.parquet").sort("raised_at")
    assert alerts["severity"].to_list() == ["WARNING", "ERROR"]
    assert (alerts["partition"] == path).all()
    first, last = alerts["message"]
    assert f"Cause: UnreadableFileError: {path}: missing column(s)" in first, first
    assert "(attempt 1 of 5; the landing sensor retries it)" in first
    assert "(attempt 5 of 5; no retry left: fix or replace the file)" in last


def _ingest_all(defs, instance, cursor=None):
    requested, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, cursor)
    paths = [r.partition_key for r in requested.run_requests]
    instance.add_dynamic_partitions("export_files", paths)
    runs = {path: _run(defs, instance, "ingest_export_job", path) for path in paths}
    assert all(run.success for run in runs.values())
    return runs, requested.cursor


def test_files_of_one_name_in_two_folders_keep_both_their_rows(env):
    """A file without a judgment_id column names its rows `<file name>:<line>`: daily drops
    named alike in dated folders share those names, and must not replace each other's rows."""
    defs, instance, landing = env
    header = "task_id,annotator_id,label,submitted_at,duration_s\n"
    for day, label in (("2026-11-02", "pos"), ("2026-11-03", "neg")):
        folder = landing / "exports" / "reviews" / "csv" / day
        folder.mkdir(parents=True)
        (folder / "labels.csv").write_text(
            header + f"t-{day},a1,{label},{day}T10:00:00Z,3\nt-{day},a2,{label},{day}T11:00:00Z,3\n"
        )
    runs, _ = _ingest_all(defs, instance)
    assert len(runs) == 2
    for day in ("2026-11-02", "2026-11-03"):
        assert _run(defs, instance, "raw_job", day).success
    judgments = pl.read_parquet(landing.parent / "lake" / "judgments" / "*" / "data.parquet")
    assert sorted(judgments.select("task_id", "annotator_id", "label").rows()) == [
        ("t-2026-11-02", "a1", "pos"),
        ("t-2026-11-02", "a2", "pos"),
        ("t-2026-11-03", "a1", "neg"),
        ("t-2026-11-03", "a2", "neg"),
    ]
    assert sorted(judgments["judgment_id"]) == [
        f"exports/reviews/csv/{day}/labels.csv:{line}"
        for day in ("2026-11-02", "2026-11-03")
        for line in (2, 3)
    ]


def test_two_projects_reusing_task_ids_keep_each_others_rows_through_the_daily_graph(env):
    """Task ids are unique per tool and project only: every layer keys a task by project too."""
    defs, instance, landing = env
    other = landing / "exports" / "toxicity"
    (other / "csv").mkdir(parents=True)
    (other / "project.json").write_text(json.dumps({"label_set": ["toxic", "ok"]}))
    rows = {"reviews": ("pos", "neg"), "toxicity": ("toxic", "ok")}
    for project, (yes, no) in rows.items():
        lines = [  # the same task ids and annotators in both projects; t2 is the gold task
            f"t{task},a{annotator},{yes if (task + annotator) % 4 else no},"
            f"2026-11-02T1{annotator}:{task:02d}:00Z,{annotator + 2}\n"
            for task in range(1, 7)
            for annotator in range(4)
        ]
        (landing / "exports" / project / "csv" / "batch.csv").write_text(HEADER + "".join(lines))
        gold = landing / "gold" / project
        gold.mkdir(parents=True)
        (gold / "gold.csv").write_text(f"task_id,label\nt2,{no}\n")
    _ingest_all(defs, instance)
    assert _run_unpartitioned(defs, instance, "gold_sets_job").success
    day = "2026-11-02"
    for job in ("raw_job", "aggregation_job", "quality_job"):
        assert _run(defs, instance, job, day).success, job
    lake_dir = landing.parent / "lake"

    def table(name):
        frame = pl.read_parquet(lake_dir / name / f"day={day}" / "data.parquet")
        return {p: frame.filter(pl.col("project") == p) for p in rows}

    judgments, tasks, gold = table("judgments"), table("raw_tasks"), table("gold_labels")
    labels, report = table("aggregated_labels"), table("quality_report")
    for project, (yes, no) in rows.items():
        assert judgments[project].height == 24, project
        assert set(judgments[project]["label"]) == {yes, no}
        assert sorted(tasks[project]["task_id"]) == [f"t{task}" for task in range(1, 7)]
        assert gold[project].select("task_id", "label").rows() == [("t2", no)]
        assert labels[project].height == 6 and set(labels[project]["label"]) <= {yes, no}
        assert labels[project]["n_votes"].to_list() == [4] * 6
        [quality] = report[project].iter_rows(named=True)
        assert (quality["n_tasks"], quality["n_judgments"]) == (6, 24)
        assert quality["n_gold_judgments"] == 4

    instance.add_dynamic_partitions("projects", list(rows))
    for project, (yes, no) in rows.items():
        assert _run(defs, instance, "curation_job", project).success, project
        current = json.loads((lake_dir / "datasets" / project / "current.json").read_text())
        folder = lake_dir / "datasets" / project / current["version_id"]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert set(manifest["label_set"]) == {yes, no}
        curated = pl.concat(pl.read_parquet(path) for path in folder.glob("*.parquet"))
        assert set(curated["label"]) <= {yes, no}


def test_a_judgment_in_two_exports_counts_once_and_the_day_losing_its_copy_is_rebuilt(env):
    """A corrected re-export under a new name carries the same judgment ids: the version
    ingested last wins in every day, and the day that held the older copy is rebuilt."""
    defs, instance, landing = env
    folder = landing / "exports" / "reviews" / "csv"
    header = "judgment_id,task_id,annotator_id,label,submitted_at,duration_s\n"
    (folder / "export-1.csv").write_text(
        header + "j1,t1,a1,pos,2026-11-02T23:55:00Z,3\nj2,t2,a2,pos,2026-11-02T12:00:00Z,3\n"
    )
    _, cursor = _ingest_all(defs, instance)
    staged, _ = _tick(raw_sensors.staged_days_sensor, defs, instance)
    assert [r.partition_key for r in staged.run_requests] == ["2026-11-02"]
    assert _run(defs, instance, "raw_job", "2026-11-02").success

    # j1 moved past midnight and relabelled, j2's annotator id corrected.
    (folder / "export-2.csv").write_text(
        header + "j1,t1,a1,neg,2026-11-03T00:05:00Z,3\nj2,t2,a2-fixed,pos,2026-11-02T12:00:00Z,3\n"
    )
    second, cursor = _ingest_all(defs, instance, cursor)
    [run] = second.values()
    days = run.get_asset_materialization_events()[0].materialization.metadata["days"].value
    assert days == ["2026-11-02", "2026-11-03"]
    again, _ = _tick(raw_sensors.staged_days_sensor, defs, instance, staged.cursor)
    rebuilt = sorted(r.partition_key for r in again.run_requests)
    assert rebuilt == ["2026-11-02", "2026-11-03"]
    for day in rebuilt:
        assert _run(defs, instance, "raw_job", day).success
    lake_dir = landing.parent / "lake"
    judgments = pl.read_parquet(lake_dir / "judgments" / "*" / "data.parquet")
    assert judgments.sort("judgment_id").select("judgment_id", "annotator_id", "label").rows() == [
        ("j1", "a1", "neg"),
        ("j2", "a2-fixed", "pos"),
    ]

    # An emptied re-export gives the judgments back to the first one, in their own days.
    (folder / "export-2.csv").write_text(header)
    os.utime(folder / "export-2.csv", (1, 1))
    emptied, _ = _ingest_all(defs, instance, cursor)
    [run] = emptied.values()
    days = run.get_asset_materialization_events()[0].materialization.metadata["days"].value
    assert days == ["2026-11-02", "2026-11-03"]
    for day in days:
        assert _run(defs, instance, "raw_job", day).success
    judgments = pl.read_parquet(lake_dir / "judgments" / "*" / "data.parquet")
    assert judgments.sort("judgment_id").select("judgment_id", "annotator_id", "label").rows() == [
        ("j1", "a1", "pos"),
        ("j2", "a2", "pos"),
    ]


def test_ingesting_an_unchanged_export_again_keeps_the_judgments_a_later_export_corrected(env):
    """A project.json change ingests every file of its project again, in any order: the older
    export, read again as it was, must not take back a judgment a later export corrected."""
    defs, instance, landing = env
    folder = landing / "exports" / "reviews" / "csv"
    header = "judgment_id,task_id,annotator_id,label,submitted_at,duration_s\n"
    (folder / "export-1.csv").write_text(header + "j1,t1,a1,pos,2026-11-02T10:00:00Z,3\n")
    (folder / "export-2.csv").write_text(header + "j1,t1,a1,neg,2026-11-02T10:00:00Z,3\n")
    paths = ["exports/reviews/csv/export-1.csv", "exports/reviews/csv/export-2.csv"]
    instance.add_dynamic_partitions("export_files", paths)
    lake_dir = landing.parent / "lake"

    def labels():
        assert _run(defs, instance, "raw_job", "2026-11-02").success
        judgments = pl.read_parquet(lake_dir / "judgments" / "day=2026-11-02" / "data.parquet")
        return judgments.select("judgment_id", "label").rows()

    for path in paths:
        assert _run(defs, instance, "ingest_export_job", path).success
    assert labels() == [("j1", "neg")]
    assert _run(defs, instance, "ingest_export_job", paths[0]).success
    assert labels() == [("j1", "neg")]
    # Rewritten with a new row above it, export-1's j1 is still the version staged before.
    (folder / "export-1.csv").write_text(
        header + "j0,t0,a1,pos,2026-11-02T10:00:00Z,3\nj1,t1,a1,pos,2026-11-02T10:00:00Z,3\n"
    )
    assert _run(defs, instance, "ingest_export_job", paths[0]).success
    assert labels() == [("j0", "pos"), ("j1", "neg")]
    # A file whose row changed is a new version of it, and wins as before.
    (folder / "export-1.csv").write_text(header + "j1,t1,a1,pos,2026-11-02T10:00:00Z,5\n")
    assert _run(defs, instance, "ingest_export_job", paths[0]).success
    assert labels() == [("j1", "pos")]


def _evaluate(sensor_name, defs, instance, cursor=None):
    """A tick the way the daemon evaluates it: every request is resolved against the job's
    partitions, so a request for a day that is not a partition fails the whole tick."""
    sensor = defs.resolve_sensor_def(sensor_name)
    with build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as context:
        return sensor.evaluate_tick(context)


def test_staged_days_sensor_requests_only_partitions_and_holds_today_until_it_is_one(
    env, monkeypatch
):
    defs, instance, landing = env
    today = datetime.now(UTC)
    path = "exports/reviews/csv/intraday.csv"
    (landing / path).write_text(
        HEADER
        + "t1,a1,pos,2026-08-31T23:59:00Z,3\n"  # before the start date: never a partition
        + "t2,a1,pos,2026-11-03T10:00:00Z,3\n"
        + f"t3,a1,pos,{today:%Y-%m-%dT%H:%M:%SZ},3\n"  # today: a partition once the day ends
    )
    instance.add_dynamic_partitions("export_files", [path])
    run = _run(defs, instance, "ingest_export_job", path)
    assert run.success
    # A row before the start date never reaches a day: the ingest quarantines it, naming it.
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["quarantine_reasons"].value == {"before_start_date (2026-09-01)": 1}

    first = _evaluate("staged_days_sensor", defs, instance)
    assert [r.partition_key for r in first.run_requests] == ["2026-11-03"]
    again = _evaluate("staged_days_sensor", defs, instance, first.cursor)
    assert not again.run_requests
    assert f"1 staged day(s) not partitions yet ({today:%Y-%m-%d})" in again.skip_message

    # A later file for an ordinary day is still requested; today waits in the cursor.
    late = "exports/reviews/csv/late.csv"
    (landing / late).write_text(HEADER + "t9,a1,neg,2026-11-05T10:00:00Z,3\n")
    instance.add_dynamic_partitions("export_files", [late])
    assert _run(defs, instance, "ingest_export_job", late).success
    later = _evaluate("staged_days_sensor", defs, instance, again.cursor)
    assert [r.partition_key for r in later.run_requests] == ["2026-11-05"]

    # Once today has ended it is a partition, and it is requested exactly once (called
    # directly: the daemon's own check of the partition would read the real clock).
    tomorrow = datetime.fromtimestamp(today.timestamp() + 86_400, UTC)
    monkeypatch.setattr(raw_sensors, "_now", lambda: tomorrow)
    ended, _ = _tick(raw_sensors.staged_days_sensor, defs, instance, later.cursor)
    assert [r.partition_key for r in ended.run_requests] == [f"{today:%Y-%m-%d}"]
    after, _ = _tick(raw_sensors.staged_days_sensor, defs, instance, ended.cursor)
    assert not after.run_requests


def _launch(defs, instance, request):
    """Run a sensor's request the way the daemon launches it (its run key among the tags);
    the daemon skips a request whose run key an earlier run already has."""
    used = instance.get_runs(RunsFilter(tags={"dagster/run_key": request.run_key}))
    assert not used, f"run key {request.run_key} reused: the daemon would skip it"
    instance.add_dynamic_partitions("export_files", [request.partition_key])
    return defs.resolve_job_def("ingest_export_job").execute_in_process(
        partition_key=request.partition_key,
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
        tags={**request.tags, "dagster/run_key": request.run_key},
    )


def _staged_labels(landing):
    parts = (landing.parent / "lake" / "staging" / "judgments").rglob("*.parquet")
    return sorted(pl.concat([pl.read_parquet(p) for p in parts])["label"].to_list())


def test_landing_sensor_ingests_a_file_reverted_to_an_earlier_version_again(env):
    defs, instance, landing = env
    export = landing / "exports" / "reviews" / "csv" / "batch.csv"
    versions = {
        label: HEADER
        + f"t1,a1,{label},2026-11-02T10:00:00Z,3\nt2,a1,{label},2026-11-02T10:01:00Z,3\n"
        for label in ("pos", "neg")
    }
    cursor = None
    # v1, a correction (v2), then v1 restored with its mtime (cp -p; on S3 the same ETag).
    for label, mtime in (("pos", 1_790_000_000), ("neg", 1_790_000_100), ("pos", 1_790_000_000)):
        export.write_text(versions[label])
        os.utime(export, (mtime, mtime))
        tick, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, cursor)
        [request] = tick.run_requests
        assert _launch(defs, instance, request).success
        idle, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, tick.cursor)
        assert idle.run_requests == []
        cursor = idle.cursor
        assert _staged_labels(landing) == [label, label]


def test_landing_sensor_cursor_holds_only_present_files_and_never_reuses_a_run_key(env):
    defs, instance, landing = env
    export = landing / "exports" / "reviews" / "csv" / "gone.csv"
    export.write_text(HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\n")
    first, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    [request] = first.run_requests
    assert _launch(defs, instance, request).success
    export.unlink()
    idle, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, first.cursor)
    # Thousands of files a day for a year must not pile up in the cursor.
    assert "gone.csv" not in idle.cursor
    # The same file back with the same content is a new launch under a new key.
    export.write_text(HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\n")
    again, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, idle.cursor)
    [request] = again.run_requests
    assert _launch(defs, instance, request).success
    # A cursor written with one count per path starts above every key those counts gave.
    path = "exports/reviews/csv/gone.csv"
    old = json.loads(again.cursor)
    old.pop("launched")
    old["launches"] = {path: 2, "exports/reviews/csv/other.csv": 7}
    old["done"].pop(path, None)
    export.write_text(HEADER + "t1,a1,neg,2026-11-02T10:00:00Z,3\n")
    changed, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, json.dumps(old))
    [request] = changed.run_requests
    assert request.run_key.endswith("#8")
    assert _launch(defs, instance, request).success


def test_landing_sensor_ingests_a_projects_files_again_when_its_project_json_changes(env):
    defs, instance, landing = env
    settings = landing / "exports" / "reviews" / "project.json"
    settings.unlink()  # the export arrives before its project's settings
    path = "exports/reviews/csv/batch.csv"
    (landing / path).write_text(
        HEADER
        + "t1,a1,pos,2026-11-02T10:00:00Z,3\n"
        + "t1,a2,postive,2026-11-02T10:01:00Z,3\n"  # outside the label set, once there is one
    )
    first, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    [request] = first.run_requests
    assert request.tags["annotation_pipelines/reason"] == "new file"
    assert _launch(defs, instance, request).success
    idle, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, first.cursor)
    assert idle.run_requests == []
    assert _staged_labels(landing) == ["pos", "postive"]

    settings.write_text(json.dumps({"label_set": ["pos", "neg"]}))
    changed, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, idle.cursor)
    [request] = changed.run_requests
    assert request.partition_key == path
    assert request.tags["annotation_pipelines/reason"] == "project settings changed"
    run = _launch(defs, instance, request)
    assert run.success
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["quarantine_reasons"].value == {"unknown_label": 1}
    assert _staged_labels(landing) == ["pos"]
    after, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, changed.cursor)
    assert after.run_requests == []


def test_a_declared_scale_quarantines_the_ratings_outside_it_and_a_bad_one_fails_naming_it(env):
    defs, instance, landing = env
    project = landing / "exports" / "ratings"
    (project / "csv").mkdir(parents=True)
    settings = project / "project.json"
    settings.write_text(json.dumps({"scale": {"min": 1, "max": 5, "step": 1}}))
    path = "exports/ratings/csv/batch.csv"
    (landing / path).write_text(
        "task_id,annotator_id,kind,value,submitted_at\n"
        "t1,a1,numeric,4,2026-11-02T10:00:00Z\n"
        "t1,a2,numeric,1e200,2026-11-02T10:01:00Z\n"
        "t1,a3,numeric,3.5,2026-11-02T10:02:00Z\n"
    )
    first, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    [request] = first.run_requests
    run = _launch(defs, instance, request)
    assert run.success
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_read"].value == 3 and metadata["rows_loaded"].value == 1
    assert metadata["quarantine_reasons"].value == {"outside_scale": 2}
    quarantine = pl.read_parquet(
        landing.parent / "lake" / f"{quarantine_key(source_id(path))}"
    ).sort("source_line")
    assert quarantine.select("source_file", "source_line", "field", "reason").rows() == [
        (path, 3, "value (scale [1, 5] step 1)", "outside_scale"),
        (path, 4, "value (scale [1, 5] step 1)", "outside_scale"),
    ]
    staged = (landing.parent / "lake" / "staging" / "judgments").rglob("*.parquet")
    assert pl.concat([pl.read_parquet(p) for p in staged])["value"].to_list() == [4.0]

    # A scale that is not one fails the run naming the file and the field, as a malformed
    # gate floor does; what the last good settings staged stays staged.
    settings.write_text(json.dumps({"scale": {"min": 5, "max": 5}}))
    changed, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, first.cursor)
    [request] = changed.run_requests
    assert request.tags["annotation_pipelines/reason"] == "project settings changed"
    failed = _launch(defs, instance, request)
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "exports/ratings/project.json: scale: min must be below max, got min 5 and max 5" in str(
        failure.step_failure_data.error
    )


def test_an_emptied_export_takes_its_rows_back_in_every_format(env):
    defs, instance, landing = env
    line = (
        '{"task_id":"t1","annotator_id":"a1","label":"pos","submitted_at":"2026-11-02T10:00:00Z"}'
    )
    manifest = json.dumps(
        {
            "source": "s3://x/1.txt",
            "label": 0,
            "label-metadata": {
                "class-name": "pos",
                "job-name": "j",
                "creation-date": "2026-11-02T10:00:00.000000",
                "type": "groundtruth/text-classification",
                "human-annotated": "yes",
            },
        }
    )
    files = {
        "exports/reviews/jsonl/a.jsonl": (line + "\n", b""),
        "exports/reviews/sagemaker-gt/b.manifest": (manifest + "\n", b"\n"),
        "exports/reviews/csv/c.csv": (HEADER + "t3,a1,pos,2026-11-02T10:00:00Z,3\n", b""),
    }
    for path, (content, _) in files.items():
        (landing / path).parent.mkdir(parents=True, exist_ok=True)
        (landing / path).write_text(content)
    tick, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    for request in tick.run_requests:
        assert _launch(defs, instance, request).success
    lake = defs.resources["lake"]
    staged = {source_id(path) for path in files}
    assert {
        k for k in lake.list_keys(staging_prefix("judgments")) if k.split("/")[-1][:16] in staged
    }
    for path, (_, emptied) in files.items():
        (landing / path).write_bytes(emptied)
        os.utime(landing / path, (2_000_000_000, 2_000_000_000))
    again, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, tick.cursor)
    assert sorted(r.partition_key for r in again.run_requests) == sorted(files)
    for request in again.run_requests:
        run = _launch(defs, instance, request)
        assert run.success
        metadata = run.get_asset_materialization_events()[0].materialization.metadata
        assert (metadata["rows_read"].value, metadata["rows_loaded"].value) == (0, 0)
        # The day that held the file's rows is rebuilt without them.
        assert metadata["days"].value == ["2026-11-02"]
    for table in ("judgments", "raw_tasks"):
        keys = lake.list_keys(staging_prefix(table))
        assert not [k for k in keys if k.split("/")[-1][:16] in staged], keys


def test_landing_sensor_names_files_dropped_outside_a_format_folder(env):
    defs, instance, landing = env
    project = landing / "exports" / "reviews"
    for rel in ("CSV/a.csv", "label_studio/b.json", "c.csv", "csvs/d.csv", "sagemaker/e.manifest"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\n")
    (project / "csv" / "f.csv.part").write_text(HEADER)  # an upload in progress: not misplaced
    result, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    assert result.run_requests == []
    assert result.skip_reason.skip_message == (
        "no new or changed export file; 5 file(s) under exports/ not in a format "
        "folder (exports/<project>/<format>/<file>, format one of label-studio, sagemaker-gt, "
        "csv, tsv, parquet, jsonl), never offered: exports/reviews/CSV/a.csv, "
        "exports/reviews/c.csv, exports/reviews/csvs/d.csv, exports/reviews/label_studio/b.json, "
        "exports/reviews/sagemaker/e.manifest"
    )


def test_landing_sensor_with_a_fresh_cursor_does_not_ingest_what_was_ingested_again(env):
    # A reset cursor, or a run that says which file version it read but not which settings
    # (launched by hand with the version's tag): the partition's materialization decides.
    defs, instance, landing = env
    path = "exports/reviews/csv/batch.csv"
    (landing / path).write_text(HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\n")
    first, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    [request] = first.run_requests
    tags = {source_sensors.FINGERPRINT_TAG: request.tags[source_sensors.FINGERPRINT_TAG]}
    instance.add_dynamic_partitions("export_files", [path])
    assert (
        defs.resolve_job_def("ingest_export_job")
        .execute_in_process(partition_key=path, instance=instance, run_config=QUIET, tags=tags)
        .success
    )
    fresh, _ = _tick(source_sensors.landing_zone_sensor, defs, instance)
    assert fresh.run_requests == []
    assert fresh.skip_reason.skip_message == "no new or changed export file (1 ingested)"

    # Its project.json changes and the run that applies it fails: that run ingested nothing, and
    # the older run says nothing of settings, so the file is retried, not taken as done.
    (landing / "exports" / "reviews" / "project.json").write_text("{not json")
    changed, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, fresh.cursor)
    [request] = changed.run_requests
    assert not _launch(defs, instance, request).success
    retry, _ = _tick(source_sensors.landing_zone_sensor, defs, instance, changed.cursor)
    assert [r.tags[source_sensors.ATTEMPT_TAG] for r in retry.run_requests] == ["2"]


def test_the_raw_layer_names_a_project_answering_through_several_controls(env):
    """One answer per task and annotator: a second control's answers cannot be kept, and the
    day says which project lost them and through which controls."""
    defs, instance, landing = env
    folder = landing / "exports" / "survey" / "label-studio"
    folder.mkdir(parents=True)

    def annotation(number: int, annotator: int, label: str, rating: int) -> dict:
        return {
            "id": number,
            "completed_by": annotator,
            "created_at": "2026-11-02T10:00:00Z",
            "updated_at": "2026-11-02T10:00:00Z",
            "lead_time": 2.0,
            "result": [
                {"from_name": "sentiment", "to_name": "text", "type": "choices",
                 "value": {"choices": [label]}},
                {"from_name": "quality", "to_name": "text", "type": "rating",
                 "value": {"rating": rating}},
            ],
        }  # fmt: skip

    tasks = [
        {"id": 1, "data": {"text": "x"}, "annotations": [annotation(11, 1, "pos", 4)]},
        {"id": 2, "data": {"text": "y"}, "annotations": [annotation(12, 1, "neg", 2)]},
    ]
    (folder / "export.json").write_text(json.dumps(tasks))
    _ingest_all(defs, instance)
    run = _run(defs, instance, "raw_job", "2026-11-02")
    assert run.success
    [judged] = [
        event.materialization
        for event in run.get_asset_materialization_events()
        if event.materialization.asset_key.path[-1] == "judgments"
    ]
    assert judged.metadata["projects_with_several_controls"].value == {
        "survey": ["quality", "sentiment"]
    }


def test_an_alert_sensor_evaluated_twice_from_one_cursor_records_its_alert_once(env):
    # A preview (`dagster sensor preview`) evaluates the sensor without keeping its cursor, and
    # the daemon's tick then evaluates it again from the same cursor: the alert is one record
    # and one announcement, not one per evaluation.
    defs, instance, landing = env
    _gate_run(instance, "quality_report", "agreement_floor", failing=["intent"])
    first, _ = _tick(quality_sensors.quality_alert_sensor, defs, instance)
    second, _ = _tick(quality_sensors.quality_alert_sensor, defs, instance)
    [alert] = _alerts(landing).rows(named=True)
    assert alert["message"].startswith("quality_report:agreement_floor failed for 2026-11-02")
    assert "1 alert(s) recorded" in first.skip_message
    assert "already recorded" in second.skip_message
