"""Block alerts of a live run that wrote the DB and failed at its lake commit, against a real
PostgreSQL DB: the failed attempt raises no alert (none in the lake's alerts table, none sent
to the webhook), and its retry, deciding the same block, raises it once; a retry that decides
otherwise raises none."""

from __future__ import annotations

import glob
from pathlib import Path

import polars as pl
import psycopg
import pytest

import assets.common.alerts as alerts_module
from annotation_pipelines.ingest.postgres import apply_schema, seed_database
from tests.loop.test_live_writeback import QUIET, _judgments
from tests.services import fresh_database
from tests.support import live_quality_job, state_commit_lost

pytestmark = pytest.mark.services
SPAMMER = "s00"


def _block_alerts(data: Path) -> list[str]:
    found = glob.glob(f"{data}/lake/alerts/**/*.parquet", recursive=True)
    if not found:
        return []
    frame = pl.concat([pl.read_parquet(p) for p in found], how="diagonal_relaxed")
    return frame.filter(pl.col("kind") == "annotator_blocked")["message"].to_list()


def _blocks(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(
            "SELECT annotator_id, status FROM annotator_actions ORDER BY action_id"
        ).fetchall()


@pytest.mark.parametrize("decides_again", [True, False])
def test_a_failed_attempt_raises_no_alert_and_its_retry_raises_it_once(
    tmp_path, monkeypatch, decides_again
):
    data = tmp_path / "data"
    posted: list[str] = []
    monkeypatch.setenv("ANNOTATION_PIPELINES_ALERT_WEBHOOK", "http://127.0.0.1:9/alerts")
    monkeypatch.setattr(
        alerts_module,
        "post_alerts",
        lambda url, alerts, *, log: posted.extend(str(a["message"]) for a in alerts),
    )
    with fresh_database("live_alert_retry") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        seed_database(dsn, judgments=_judgments(), label_sets={"reviews": ["c0", "c1", "c2"]})
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        with state_commit_lost(monkeypatch):
            failed = job.execute_in_process(
                instance=instance, run_config=QUIET, raise_on_error=False
            )
        assert not failed.success
        assert (SPAMMER, "active") in _blocks(dsn)
        assert _block_alerts(data) == [] and posted == []

        if not decides_again:
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute("DELETE FROM judgments WHERE annotator_id = %s", (SPAMMER,))
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        raised = [m for m in _block_alerts(data) if f"annotator {SPAMMER} blocked" in m]
        sent = [m for m in posted if f"annotator {SPAMMER} blocked" in m]
        if decides_again:
            assert (SPAMMER, "active") in _blocks(dsn)
            assert len(raised) == 1 and sent == raised
        else:
            assert (SPAMMER, "withdrawn") in _blocks(dsn)
            assert raised == [] and sent == []
