"""The annotation-database source through the asset: a real Postgres seeded with the synthetic
workload, extracted by watermark into the right days, idempotent on re-run, then the raw layer."""

from datetime import UTC, date, datetime

import polars as pl
import psycopg
import pytest
from dagster import AssetKey, DagsterInstance

from annotation_pipelines.ingest.postgres import seed_database
from annotation_pipelines.synthetic import generate_workload
from assets.definitions import build_definitions
from tests.services import fresh_database

pytestmark = pytest.mark.services
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def test_db_changes_land_in_their_days_and_reruns_change_nothing(tmp_path, monkeypatch):
    workload = tmp_path / "workload"
    generate_workload(workload, judgments=3_000, start=date(2026, 11, 2), days=2, seed=6)
    judgments = pl.read_parquet(workload / "judgments" / "**" / "*.parquet")
    with fresh_database("annotation_db") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        seed_database(dsn, judgments=judgments)
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
        defs = build_definitions(profile="local")
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={AssetKey("annotation_db_changes")}
        )
        instance = DagsterInstance.ephemeral()
        first = job.execute_in_process(instance=instance, run_config=QUIET)
        assert first.success
        metadata = first.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["days"].value == ["2026-11-02", "2026-11-03"]
        assert metadata["rows_read"].value == metadata["rows_loaded"].value + (
            metadata["rows_quarantined"].value
        )
        assert all(check.passed for check in first.get_asset_check_evaluations())
        staged = tmp_path / "data" / "lake" / "staging" / "judgments"
        before = {p: p.read_bytes() for p in staged.rglob("*.parquet")}
        # Nothing changed in the database since the watermark: the re-run stages nothing new.
        second = job.execute_in_process(instance=instance, run_config=QUIET)
        assert second.success
        assert (
            second.get_asset_materialization_events()[0].materialization.metadata["rows_read"].value
            == 0
        )
        assert {p: p.read_bytes() for p in staged.rglob("*.parquet")} == before
        # The raw layer for a day now holds exactly the database's rows of that day.
        raw = defs.resolve_job_def("raw_job").execute_in_process(
            partition_key="2026-11-02", instance=instance, run_config=QUIET
        )
        assert raw.success
        lake_dir = tmp_path / "data" / "lake"
        day = pl.read_parquet(lake_dir / "judgments" / "day=2026-11-02" / "data.parquet")
        expected = judgments.filter(pl.col("submitted_at").dt.date() == date(2026, 11, 2))
        assert day.height == expected.height
        assert set(day["source"]) == {"postgres"}

        # A corrected submitted_at moves a judgment to the next day: its former day, which
        # still stages the older version, is reported and drops it when rebuilt.
        moved = day.item(0, "judgment_id")
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "UPDATE judgments SET submitted_at = %s WHERE judgment_id = %s",
                (datetime(2026, 11, 3, 0, 30, tzinfo=UTC), moved),
            )
        third = job.execute_in_process(instance=instance, run_config=QUIET)
        assert third.success
        metadata = third.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["days"].value == ["2026-11-02", "2026-11-03"]
        for rebuilt in metadata["days"].value:
            assert (
                defs.resolve_job_def("raw_job")
                .execute_in_process(partition_key=rebuilt, instance=instance, run_config=QUIET)
                .success
            )
    both = pl.read_parquet(lake_dir / "judgments" / "*" / "data.parquet", include_file_paths="f")
    copies = both.filter(pl.col("judgment_id") == moved)
    assert copies.height == 1 and copies.item(0, "f").endswith("day=2026-11-03/data.parquet")
    assert both.height == judgments.height


def test_db_rows_before_the_start_date_are_quarantined_by_name(tmp_path, monkeypatch):
    workload = tmp_path / "workload"
    generate_workload(workload, judgments=200, start=date(2026, 11, 2), days=1, seed=7)
    judgments = pl.read_parquet(workload / "judgments" / "**" / "*.parquet")
    with fresh_database("annotation_db") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        seed_database(dsn, judgments=judgments)
        early = judgments.item(0, "judgment_id")
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "UPDATE judgments SET submitted_at = %s WHERE judgment_id = %s",
                (datetime(2026, 8, 31, 23, 59, tzinfo=UTC), early),
            )
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
        defs = build_definitions(profile="local")
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={AssetKey("annotation_db_changes")}
        )
        run = job.execute_in_process(instance=DagsterInstance.ephemeral(), run_config=QUIET)
        assert run.success
        metadata = run.get_asset_materialization_events()[0].materialization.metadata
        # No partition holds 2026-08-31: staged there, the row would never reach a layer.
        assert metadata["days"].value == ["2026-11-02"]
        assert metadata["quarantine_reasons"].value == {"before_start_date (2026-09-01)": 1}
        assert metadata["rows_read"].value == metadata["rows_loaded"].value + 1
        assert all(check.passed for check in run.get_asset_check_evaluations())
        staged = pl.read_parquet(
            tmp_path / "data" / "lake" / "staging" / "judgments" / "**" / "*.parquet"
        )
        assert early not in staged["judgment_id"].to_list()
        assert staged.height == judgments.height - 1


def test_a_task_whose_created_at_moves_to_another_day_counts_there_only(tmp_path, monkeypatch):
    """Staging merges a day's tasks by task_id: a task dated anew stayed in its former day's
    raw_tasks too, and the workforce layer counted it in twice."""
    workload = tmp_path / "workload"
    generate_workload(workload, judgments=300, start=date(2026, 11, 2), days=2, seed=6)
    judgments = pl.read_parquet(workload / "judgments" / "**" / "*.parquet")
    lake_dir = tmp_path / "data" / "lake"
    with fresh_database("annotation_db") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        seed_database(dsn, judgments=judgments)
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
        defs = build_definitions(profile="local")
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={AssetKey("annotation_db_changes")}
        )
        instance = DagsterInstance.ephemeral()
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        with psycopg.connect(dsn, autocommit=True) as connection:
            moved, created = connection.execute(
                "SELECT task_id, created_at FROM tasks WHERE created_at < %s "
                "ORDER BY task_id LIMIT 1",
                (datetime(2026, 11, 3, tzinfo=UTC),),
            ).fetchone()
            assert created.date() == date(2026, 11, 2)
            connection.execute(
                "UPDATE tasks SET created_at = %s WHERE task_id = %s",
                (datetime(2026, 11, 3, 0, 30, tzinfo=UTC), moved),
            )
            total = connection.execute("SELECT count(*) FROM tasks").fetchone()[0]
        second = job.execute_in_process(instance=instance, run_config=QUIET)
        assert second.success
        days = second.get_asset_materialization_events()[0].materialization.metadata["days"]
        assert days.value == ["2026-11-02", "2026-11-03"]
        for day in days.value:
            assert (
                defs.resolve_job_def("raw_job")
                .execute_in_process(partition_key=day, instance=instance, run_config=QUIET)
                .success
            )
    tasks = pl.read_parquet(lake_dir / "raw_tasks" / "*" / "data.parquet", include_file_paths="f")
    copies = tasks.filter(pl.col("task_id") == moved)
    assert copies.height == 1 and copies.item(0, "f").endswith("day=2026-11-03/data.parquet")
    assert tasks.height == total
