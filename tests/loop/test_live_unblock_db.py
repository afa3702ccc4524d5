"""Reversing a block as the annotation tool does it, against a real PostgreSQL DB and a real
Dagster instance: the tool revokes the block row (migration 4), the sensor starts a run for
the reversal alone, that run un-flags the annotator and reports it, a restarted run reads the
reversal again and changes nothing, and only judgments after the reversal can block the
annotator again, as a new decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import psycopg
import pytest
from dagster import DagsterInstance

from annotation_pipelines.ingest.postgres import apply_schema, seed_database
from annotation_pipelines.loop.live import load_state
from tests.loop.test_live import stream
from tests.loop.test_live_writeback import _launch, _tick
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
LEAD = "lead@example.org"


def _judgments() -> pl.DataFrame:
    # s00 answers at random on t0100..t0199, enough for the spammer rule in one run.
    judgments, _ = stream(n_tasks=200, votes=5, spammer_from=100)
    start = datetime.now(UTC) - timedelta(hours=1)
    return judgments.with_columns(
        project=pl.lit("reviews"),
        submitted_at=pl.lit(start) + pl.duration(milliseconds=pl.int_range(pl.len()) * 10),
    )


def _spam(first: int, count: int) -> pl.DataFrame:
    """`count` random answers of s00 on tasks it has not judged yet (t0000..t0099)."""
    rng = np.random.default_rng(first)
    return pl.DataFrame(
        {
            "judgment_id": [f"late{first + i}" for i in range(count)],
            "task_id": [f"t{first + i:04d}" for i in range(count)],
            "annotator_id": ["s00"] * count,
            "label": [f"c{rng.integers(0, 3)}" for _ in range(count)],
        }
    ).with_columns(
        project=pl.lit("reviews"),
        submitted_at=pl.lit(datetime.now(UTC) - timedelta(seconds=30)),
        duration_s=pl.lit(4.0),
    )


def _blocks(connection: psycopg.Connection) -> list[tuple]:
    return connection.execute(
        "SELECT decision_id, annotator_id, status, revoked_at, revoked_by, updated_at "
        "FROM annotator_actions ORDER BY action_id"
    ).fetchall()


def _card(data, annotator: str = "s00") -> dict[str, object]:
    state = load_state("reviews", lake_reader(data / "lake"))
    return state.annotators.filter(pl.col("annotator_id") == annotator).row(0, named=True)


def test_the_tool_revokes_a_block_and_the_live_run_lifts_it_once(tmp_path, monkeypatch):
    data = tmp_path / "data"
    with fresh_database("live_unblock") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        seed_database(dsn, judgments=_judgments(), label_sets={"reviews": ["c0", "c1", "c2"]})
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        # The run's own block row is no change for the sensor.
        assert not _tick(defs, instance).run_requests
        with psycopg.connect(dsn, autocommit=True) as connection:
            (block,) = _blocks(connection)
            decision, annotator, status, revoked_at, revoked_by, stamped = block
            assert (annotator, status, revoked_at, revoked_by) == ("s00", "active", None, None)
            # A revocation names who and when.
            with pytest.raises(psycopg.errors.CheckViolation):
                connection.execute(
                    "UPDATE annotator_actions SET status = 'revoked' WHERE decision_id = %s",
                    (decision,),
                )
            connection.execute(
                "UPDATE annotator_actions SET status = 'revoked', revoked_at = now(), "
                "revoked_by = %s WHERE decision_id = %s",
                (LEAD, decision),
            )
            (revoked,) = _blocks(connection)
            assert revoked[2] == "revoked" and revoked[5] > stamped
            # Once revoked it stays revoked.
            with pytest.raises(psycopg.errors.CheckViolation):
                connection.execute(
                    "UPDATE annotator_actions SET status = 'active', revoked_at = NULL, "
                    "revoked_by = NULL WHERE decision_id = %s",
                    (decision,),
                )
        assert _card(data)["blocked"]

        # The reversal alone starts a run.
        (lifted,) = _launch(job, instance, _tick(defs, instance))
        assert first_metadata(lifted)["unblocked"] == {"reviews": ["s00"]}
        logged = [entry.user_message for entry in instance.all_logs(lifted.run_id)]
        assert any(f"annotator s00 unblocked (block revoked by {LEAD}" in m for m in logged)
        card = _card(data)
        assert not card["blocked"] and card["n_flagged"] == 0
        state = load_state("reviews", lake_reader(data / "lake"))
        assert not state.ledger["flagged"].any()
        assert state.tasks["n_votes"].sum() == state.ledger.height
        version = state.version

        # A reversal of a project with no live state makes none.
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO annotator_actions (annotator_id, project, action, reason, "
                "decision_id, status, revoked_at, revoked_by) "
                "VALUES ('s00', 'ghost', 'block', 'r', 'ghost-block', 'revoked', now(), %s)",
                (LEAD,),
            )
        # A restarted daemon (a new instance) re-reads the overlap: nothing more happens.
        again = job.execute_in_process(instance=DagsterInstance.ephemeral(), run_config=QUIET)
        assert first_metadata(again)["unblocked"] == {}
        assert load_state("reviews", lake_reader(data / "lake")).version == version
        assert not (data / "lake" / "live" / "ghost").exists()
        with psycopg.connect(dsn, autocommit=True) as connection:
            assert len(_blocks(connection)) == 2

        # Twenty random answers after the reversal: too few to judge, whatever they are.
        seed_database(dsn, judgments=_spam(0, 20))
        few = job.execute_in_process(instance=instance, run_config=QUIET)
        assert first_metadata(few)["blocks_written"] == 0
        assert not _card(data)["blocked"]
        # Past thirty new ones the rules decide again: a new block, its own decision.
        seed_database(dsn, judgments=_spam(20, 60))
        more = job.execute_in_process(instance=instance, run_config=QUIET)
        assert first_metadata(more)["blocks_written"] == 1
        with psycopg.connect(dsn, autocommit=True) as connection:
            first, _, second = _blocks(connection)
        assert first[0] == decision and first[2] == "revoked"
        assert second[0] != decision and second[1:3] == ("s00", "active")
        card = _card(data)
        assert card["blocked"] and card["block_decision_id"] == second[0]
