"""An end-of-day re-base whose run fails is asked again: the live sensor keeps a day until a run
that carried it succeeds, and does not ask for it twice while that run is on its way (real
PostgreSQL annotation DB, real Dagster instance, real sensor ticks, the real daily aggregation
asset)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from annotation_pipelines.ingest.postgres import seed_database
from annotation_pipelines.loop.live import load_state
from tests.loop.test_live import stream
from tests.loop.test_live_writeback import QUIET, _launch, _tick, daily_labels, yesterdays_stream
from tests.services import fresh_database
from tests.support import lake_reader, live_quality_job

pytestmark = pytest.mark.services


def _rebase_days(tick) -> list[str]:
    (request,) = [r for r in tick.run_requests if r.job_name in (None, "live_quality_job")]
    return request.run_config["ops"]["live_quality_state"]["config"]["rebase_days"]


def test_a_failed_re_base_is_asked_again_once_its_run_has_failed(tmp_path, monkeypatch):
    from annotation_pipelines.lake import partition_key
    from resources.lake import LocalLake

    judgments, day = yesterdays_stream(n_tasks=300, spammer_from=150)
    lake_dir = tmp_path / "data" / "lake"
    with fresh_database("live_rebase_retry") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        seed_database(dsn, judgments=judgments, label_sets={"reviews": ["c0", "c1", "c2"]})
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        tick = _tick(defs, instance)
        _launch(job, instance, tick)

        daily = daily_labels(lake_dir, judgments, day, instance)

        def agreement() -> float:
            state = load_state("reviews", lake_reader(lake_dir))
            joined = state.tasks.join(daily.rename({"label": "daily"}), on="task_id")
            return float((joined["label"] == joined["daily"]).mean())

        # The re-base run is asked for and not launched yet: a tick meanwhile (new judgments
        # arrived) folds them without the day, which is on its way.
        rebase = _tick(defs, instance, tick.cursor)
        assert _rebase_days(rebase) == [day.isoformat()]
        more, _ = stream(n_tasks=20, spammer_from=20)
        more = more.with_columns(
            project=pl.lit("reviews"),
            task_id=pl.lit("late-") + pl.col("task_id").cast(pl.Utf8),
            judgment_id=pl.lit("late-") + pl.col("judgment_id").cast(pl.Utf8),
            submitted_at=pl.lit(datetime.now(UTC) - timedelta(minutes=5)),
        )
        seed_database(dsn, judgments=more)
        meanwhile = _tick(defs, instance, rebase.cursor)
        assert _rebase_days(meanwhile) == []

        # The re-base run fails (the day's table unreadable while it runs) and is not retried
        # (this instance has no run retries: as after the last of the daemon's retries).
        table = LocalLake(base_path=str(lake_dir)).local_path(
            partition_key("aggregated_labels", day.isoformat())
        )
        assert table is not None
        shutil.move(table, tmp_path / "aside.parquet")
        table.write_bytes(b"not parquet")
        (request,) = rebase.run_requests
        failed = job.execute_in_process(
            instance=instance,
            run_config={**request.run_config, **QUIET},
            tags={**request.tags, "dagster/run_key": request.run_key},
            raise_on_error=False,
        )
        assert not failed.success
        shutil.move(tmp_path / "aside.parquet", table)
        _launch(job, instance, meanwhile)
        before = agreement()

        # The next tick asks for the day again, under a run key of its own (the daemon skips a
        # request whose key already ran).
        again = _tick(defs, instance, meanwhile.cursor)
        assert again.run_requests, again.skip_message
        assert _rebase_days(again) == [day.isoformat()]
        assert again.run_requests[0].run_key != request.run_key
        _launch(job, instance, again)
        assert agreement() == 1.0, f"agreement before the re-base {before:.4f}"
        # It succeeded: the next tick asks for nothing and follows no re-base run any more.
        last = _tick(defs, instance, again.cursor)
        assert not last.run_requests
        assert json.loads(last.cursor)["rebasing"] == {}
