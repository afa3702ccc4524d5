"""A kind full fit whose block the tool revoked between its attempts, against a real PostgreSQL
DB: `live_kind_fit_job` adopts a fit that blocks an annotator, writes the block to the DB and
fails at its lake commit; a project lead revokes the block; the live run the revocation starts
decides nothing (no full fit on its path) and commits its stream position past the revocation;
the daemon retries the fit job, which adopts the same fit at the same version and decides the
same block again. The retry must lift it: the tool revoked it, and no later run reads that
revocation again."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live_kinds import (
    KindLiveOptions,
    KindState,
    fit_snapshot,
    load_kind_state,
    update_kind,
)
from annotation_pipelines.loop.writeback import RevokedBlockInForce, revoked_attempts
from resources.lake import LocalLake
from tests.loop.test_live_kinds import NOW, _synthetic
from tests.loop.test_live_kinds_fit import _stored
from tests.loop.test_live_writeback import QUIET
from tests.loop.test_retry_writeback_db import START, STATE, _requests, _write
from tests.loop.test_retry_writeback_db import _blocks as _block_rows
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job, state_commit_lost

pytestmark = pytest.mark.services
KIND = "multilabel"
LEAD = "lead@example.org"


def _state_a_full_fit_would_block() -> tuple[KindState, str, dict[str, bytes]]:
    """A multilabel state folded by live runs (no full fit on their path) whose full fit blocks
    an annotator the live rules have not blocked; its stored objects, a full fit requested."""
    options = KindLiveOptions(inline_full_fits=False)
    rows, gold, _ = _synthetic(KIND, 1200)
    state = KindState(project=rows["project"][0], kind=KIND)
    for start in range(0, rows.height, 50):
        after, events = update_kind(
            state, rows.slice(start, 50), gold if start == 0 else None, options, now=NOW
        )
        assert events.annotator_actions.height == 0
        state = after
        fit = fit_snapshot(state, options, now=NOW)
        if fit.actions.height:
            store: dict[str, bytes] = {}
            stored = _stored(replace(state, fit_requested=True), store)
            return stored, fit.actions["annotator_id"][0], store
    raise AssertionError("no full fit blocked anyone before the live rules did")


def _blocks(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(
            "SELECT decision_id, annotator_id, status FROM annotator_actions ORDER BY action_id"
        ).fetchall()


def test_a_fit_retry_lifts_its_block_the_tool_revoked_between_attempts(tmp_path, monkeypatch):
    state, spammer, store = _state_a_full_fit_would_block()
    project = state.project
    lake_root = tmp_path / "data" / "lake"
    LocalLake(base_path=str(lake_root)).commit(store)
    read = lake_reader(lake_root)

    def card() -> dict[str, object]:
        stored = load_kind_state(project, KIND, read)
        return stored.annotators.filter(pl.col("annotator_id") == spammer).row(0, named=True)

    with fresh_database("live_fit_revoked") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        defs, live_job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        fit_job = defs.resolve_job_def("live_kind_fit_job")
        config = {"ops": {"fit_kind_states": {"config": {"states": [f"{project}/{KIND}"]}}}}

        # Attempt 1 writes the block to the DB; its lake commit is lost.
        with state_commit_lost(monkeypatch):
            failed = fit_job.execute_in_process(
                instance=instance, run_config={**config, **QUIET}, raise_on_error=False
            )
        assert not failed.success
        ((decision, annotator, status),) = _blocks(dsn)
        assert (annotator, status) == (spammer, "active")
        assert load_kind_state(project, KIND, read).version == state.version
        # An attempt that never committed raised no alert.
        assert not list((lake_root / "alerts").rglob("*.parquet"))

        # The lead revokes it; the live run for the reversal decides no block and moves the
        # stream position past the revocation.
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "UPDATE annotator_actions SET status = 'revoked', revoked_at = now(), "
                "revoked_by = %s WHERE decision_id = %s",
                (LEAD, decision),
            )
        live = live_job.execute_in_process(instance=instance, run_config=QUIET)
        assert first_metadata(live)["kind_unblocked"] == {}
        assert load_kind_state(project, KIND, read).version == state.version

        # The retry decides the same block again (same version) and lifts it.
        retried = fit_job.execute_in_process(instance=instance, run_config={**config, **QUIET})
        assert retried.success
        fitted = load_kind_state(project, KIND, read)
        assert fitted.version == state.version + 1 and fitted.fitted_version == fitted.version
        assert not card()["blocked"] and card()["block_decision_id"] is None
        assert card()["n_flagged"] == 0
        assert not fitted.ledger.filter(pl.col("annotator_id") == spammer)["flagged"].any()
        assert _blocks(dsn) == [(decision, spammer, "revoked")]
        logged = [entry.user_message for entry in instance.all_logs(retried.run_id)]
        assert any(f"{spammer} an earlier attempt wrote and the tool revoked" in m for m in logged)
        # Nor did the retry: the block it decided is lifted.
        assert not list((lake_root / "alerts").rglob("*.parquet"))

        # Later live runs read nothing that changes it.
        again = live_job.execute_in_process(instance=instance, run_config=QUIET)
        assert again.success and not card()["blocked"]


def test_a_write_keeping_in_force_a_block_the_tool_revoked_is_refused() -> None:
    with fresh_database("live_revoked_write") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        none = _requests({}, START)
        # An attempt from version 4 blocks `a` and never commits; the tool revokes the block.
        first = _block_rows(["a"], 5, START)
        (decision,) = first["decision_id"]
        _write(dsn, none, base=4, keeps={decision}, blocks=first)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "UPDATE annotator_actions SET status = 'revoked', revoked_at = now(), "
                "revoked_by = %s WHERE decision_id = %s",
                (LEAD, decision),
            )
        # What a retry from version 4 reads before its update; nothing from a later base.
        found = revoked_attempts(dsn, {STATE: 4})
        assert found.select("annotator_id", "decision_id", "revoked_by", "state").rows() == [
            ("a", decision, LEAD, STATE)
        ]
        assert revoked_attempts(dsn, {STATE: 5}).height == 0
        # A retry that decides it again and keeps it in force writes nothing at all.
        second = _block_rows(["a", "b"], 5, START)
        with pytest.raises(RevokedBlockInForce):
            _write(dsn, none, base=4, keeps=set(second["decision_id"]), blocks=second)
        with psycopg.connect(dsn) as connection:
            rows = connection.execute(
                "SELECT annotator_id, status FROM annotator_actions ORDER BY annotator_id"
            ).fetchall()
        assert rows == [("a", "revoked")]
        # One that lifted it (keeps only `b`) is written.
        _write(dsn, none, base=4, keeps={second["decision_id"][1]}, blocks=second)
        with psycopg.connect(dsn) as connection:
            rows = connection.execute(
                "SELECT annotator_id, status FROM annotator_actions ORDER BY annotator_id"
            ).fetchall()
        assert rows == [("a", "revoked"), ("b", "active")]
