"""A judgment the tool edits into a row the extract sets aside (a label outside the project's
set, the annotator cleared) no longer says what the earlier version said: that version leaves
the live state and its staged day, as a deleted one does (real PostgreSQL, real Dagster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest
from dagster import AssetKey

from annotation_pipelines.loop.live import load_state
from tests.loop.test_live_requests_db import QUIET, _reviews_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services


def test_an_edit_into_a_set_aside_row_withdraws_the_version_read_before(tmp_path, monkeypatch):
    data = tmp_path / "data"
    lake = data / "lake"
    submitted = datetime.now(UTC) - timedelta(minutes=10)
    day = submitted.date().isoformat()
    with _reviews_database("live_edit_quarantined") as dsn:
        with psycopg.connect(dsn, autocommit=True) as connection:
            for task in ("t1", "t2"):
                for annotator, label in (("a1", "pos"), ("a2", "pos"), ("a3", "neg")):
                    connection.execute(
                        "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, "
                        "label, submitted_at, duration_s) VALUES (%s, %s, 'reviews', %s, %s, "
                        "%s, 3)",
                        (f"{task}-{annotator}", task, annotator, label, submitted),
                    )
            connection.execute(
                "INSERT INTO gold_labels (task_id, project, label) VALUES ('t2', 'reviews', 'pos')"
            )
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        changes = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={AssetKey("annotation_db_changes")}
        )
        staged_key = lake / "staging" / "judgments" / f"day={day}" / "annotation_db.parquet"

        def staged() -> set[str]:
            result = changes.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return set(pl.read_parquet(staged_key)["judgment_id"].to_list())

        def staged_gold() -> set[str]:
            paths = (lake / "staging" / "gold_labels").glob("day=*/annotation_db.parquet")
            return {t for path in paths for t in pl.read_parquet(path)["task_id"].to_list()}

        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        before = load_state("reviews", lake_reader(lake))
        assert before.ledger.height == 6
        assert before.tasks.filter(pl.col("task_id") == "t2")["gold"].item() == "pos"
        assert len(staged()) == 6
        assert staged_gold() == {"t2"}

        # The tool changes one vote to a label the project does not have, and clears the
        # annotator of another, and gives a gold answer outside the set: none says pos now.
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("UPDATE judgments SET label = 'maybe' WHERE judgment_id = 't1-a1'")
            connection.execute(
                "UPDATE judgments SET annotator_id = NULL WHERE judgment_id = 't2-a2'"
            )
            connection.execute("UPDATE gold_labels SET label = 'nope' WHERE task_id = 't2'")
        result = job.execute_in_process(instance=instance, run_config=QUIET)
        assert result.success
        state = load_state("reviews", lake_reader(lake))
        assert sorted(state.ledger["judgment_id"].to_list()) == [
            "t1-a2",
            "t1-a3",
            "t2-a1",
            "t2-a3",
        ]
        votes = dict(state.tasks.select("task_id", "n_votes").iter_rows())
        assert votes == {"t1": 2, "t2": 2}
        assert state.tasks.filter(pl.col("task_id") == "t2")["gold"].item() is None
        metadata = first_metadata(result)
        assert metadata["quarantined"] == 3
        assert metadata["set_aside_withdrawn"] == 3
        assert staged() == {"t1-a2", "t1-a3", "t2-a1", "t2-a3"}
        assert staged_gold() == set()

        # The tool's correction is folded in again, once.
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("UPDATE judgments SET label = 'neg' WHERE judgment_id = 't1-a1'")
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        state = load_state("reviews", lake_reader(lake))
        assert state.ledger.filter(pl.col("task_id") == "t1").height == 3
        assert "t1-a1" in staged()
