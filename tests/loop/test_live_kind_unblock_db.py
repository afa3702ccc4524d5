"""Reversing a kind's block as the annotation tool does it, against a real PostgreSQL DB and a
real Dagster instance: the tool revokes a spans block (migration 5 allows it), the sensor starts
a run for the reversal alone, that run lifts the block in the kind's state and reports it, a
restarted run reads the reversal again and changes nothing, and only judgments after the
reversal can block the annotator again, as a new decision."""

from __future__ import annotations

import json

import polars as pl
import psycopg
import pytest
from dagster import DagsterInstance

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live_kinds import load_kind_state
from tests.loop.test_live_kinds import _synthetic
from tests.loop.test_live_kinds_asset import PROJECT, _export
from tests.loop.test_live_writeback import QUIET, _launch, _tick
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
LEAD = "lead@example.org"


def _blocks(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(
            "SELECT decision_id, annotator_id, status, evidence FROM annotator_actions "
            "ORDER BY action_id"
        ).fetchall()


def test_the_tool_revokes_a_kind_block_and_the_live_run_lifts_it_once(tmp_path, monkeypatch):
    rows, _, spammer = _synthetic("spans", 600)
    mine = pl.col("annotator_id") == spammer
    late = rows.filter(mine).tail(60)
    early = rows.join(late.select("judgment_id"), on="judgment_id", how="anti")
    exports = tmp_path / "data" / "landing" / "exports" / PROJECT / "parquet"
    lake = tmp_path / "data" / "lake"

    def card() -> dict[str, object]:
        state = load_kind_state(PROJECT, "spans", lake_reader(lake))
        return state.annotators.filter(mine).row(0, named=True)

    with fresh_database("live_kind_unblock") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _export(exports / "batch-1.parquet", early)
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        _launch(job, instance, _tick(defs, instance))
        (block,) = _blocks(dsn)
        decision, annotator, status, evidence = block
        assert (annotator, status, evidence["kind"]) == (spammer, "active", "spans")
        assert card()["blocked"] and card()["block_decision_id"] == decision
        assert not _tick(defs, instance).run_requests

        # A kind's block can be revoked (migration 5), naming who and when.
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "UPDATE annotator_actions SET status = 'revoked', revoked_at = now(), "
                "revoked_by = %s WHERE decision_id = %s",
                (LEAD, decision),
            )
            versions = connection.execute(
                "SELECT version FROM annotation_pipelines_migrations WHERE version = 5"
            )
            assert versions.fetchone() == (5,)

        # The reversal alone starts a run, which lifts the block in the spans state.
        (lifted,) = _launch(job, instance, _tick(defs, instance))
        metadata = first_metadata(lifted)
        assert metadata["kind_unblocked"] == {f"{PROJECT}/spans": [spammer]}
        assert metadata["unblocked"] == {}
        logged = [entry.user_message for entry in instance.all_logs(lifted.run_id)]
        assert any(
            f"{PROJECT} (spans): annotator {spammer} unblocked (block revoked by {LEAD}" in m
            for m in logged
        )
        state = load_kind_state(PROJECT, "spans", lake_reader(lake))
        assert not card()["blocked"] and card()["n_flagged"] == 0
        assert not state.ledger["flagged"].any()
        assert state.tasks["n_votes"].sum() == state.ledger.height
        version = state.version

        # A restarted daemon (a new instance) re-reads the overlap: nothing more happens.
        again = job.execute_in_process(instance=DagsterInstance.ephemeral(), run_config=QUIET)
        assert first_metadata(again)["kind_unblocked"] == {}
        assert load_kind_state(PROJECT, "spans", lake_reader(lake)).version == version
        assert len(_blocks(dsn)) == 1

        # Twenty more answers of the spammer: too few after the reversal, whatever they are.
        _export(exports / "batch-2.parquet", late.head(20))
        few = job.execute_in_process(instance=instance, run_config=QUIET)
        assert first_metadata(few)["blocks_written"] == 0 and not card()["blocked"]
        # Past the minimum after the reversal the rules decide again: a new block of its own.
        _export(exports / "batch-3.parquet", late.tail(40))
        more = job.execute_in_process(instance=instance, run_config=QUIET)
        assert first_metadata(more)["blocks_written"] == 1
        first, second = _blocks(dsn)
        assert first[0] == decision and first[2] == "revoked"
        assert second[0] != decision and second[1:3] == (spammer, "active")
        since = second[3]["since"]
        assert 30 <= second[3]["n_judgments"] <= 60 and isinstance(since, str)
        assert card()["blocked"] and card()["block_decision_id"] == second[0]
        assert json.loads(json.dumps(second[3]))["kind"] == "spans"
