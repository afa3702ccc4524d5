"""The live asset against a real annotation DB: requests and blocks written once per decision,
the lake state and stream position committed together, the Label Studio list beside them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest
from dagster import AssetKey, DagsterInstance

from annotation_pipelines.ingest.postgres import apply_schema, seed_database
from annotation_pipelines.loop.live import load_state
from annotation_pipelines.loop.writeback import write_requests
from assets.definitions import build_definitions
from tests.loop.test_live import stream
from tests.services import fresh_database

pytestmark = pytest.mark.services
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _judgments() -> pl.DataFrame:
    judgments, _ = stream(n_tasks=300, spammer_from=100)
    start = datetime.now(UTC) - timedelta(hours=1)
    return judgments.with_columns(
        project=pl.lit("reviews"),
        submitted_at=pl.lit(start) + pl.duration(milliseconds=pl.int_range(pl.len()) * 10),
    )


def _rows(dsn: str, table: str) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(f"SELECT decision_id FROM {table} ORDER BY 1").fetchall()


def test_the_live_asset_writes_each_decision_once(tmp_path, monkeypatch):
    judgments = _judgments()
    with fresh_database("live_writeback") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        apply_schema(dsn)  # the migration is idempotent
        seed_database(
            dsn, judgments=judgments.head(1200), label_sets={"reviews": ["c0", "c1", "c2"]}
        )
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
        defs = build_definitions(profile="local")
        job = defs.resolve_job_def("live_quality_job")
        instance = DagsterInstance.ephemeral()
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        seed_database(dsn, judgments=judgments.slice(1200))
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        requests, actions = _rows(dsn, "task_requests"), _rows(dsn, "annotator_actions")
        assert requests and len(actions) == 1
        # Nothing new: a third run writes nothing and moves no state.
        lake = tmp_path / "data" / "lake" / "live"
        third = job.execute_in_process(instance=instance, run_config=QUIET)
        metadata = third.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["new_judgments"].value == 0
        assert _rows(dsn, "task_requests") == requests
        state = load_state(
            "reviews",
            lambda key: (lake.parent / key).read_bytes() if (lake.parent / key).exists() else None,
        )
        assert state.ledger.height == judgments.height
        assert state.annotators.filter(pl.col("annotator_id") == "s00")["blocked"].item()
        with psycopg.connect(dsn) as connection:
            block = connection.execute(
                "SELECT annotator_id, project, action, evidence->>'n_judgments' "
                "FROM annotator_actions"
            ).fetchone()
        assert block[:3] == ("s00", "reviews", "block") and int(block[3]) >= 30
        imported = json.loads((lake / "reviews" / "requests.json").read_text())
        assert imported and {"id", "data"} <= set(imported[0])
        # A retried write of the same decisions inserts nothing.
        frame = pl.DataFrame(
            {"task_id": ["t0001"], "project": ["reviews"], "request": ["another_judgment"],
             "reason": ["r"], "confidence": [0.5], "posterior": ['{"c0": 0.5}'],
             "decision_id": ["d1"], "created_at": [datetime.now(UTC)]}
        )  # fmt: skip
        empty = pl.DataFrame(schema={c: pl.String for c in ("annotator_id",)})
        assert (
            write_requests(dsn, task_requests=frame, annotator_actions=empty.head(0))[
                "task_requests"
            ]
            == 1
        )
        assert (
            write_requests(dsn, task_requests=frame, annotator_actions=empty.head(0))[
                "task_requests"
            ]
            == 0
        )
    assert instance.get_latest_materialization_event(AssetKey("live_quality_state")) is not None
