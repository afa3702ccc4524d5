"""The live asset re-bases every kind on the day's `kind_aggregated_labels`: the real daily kind
asset materializes a day in a real Dagster instance, a real sensor tick names the day in the
next live run, and every task of the day ends with the daily answer (real PostgreSQL
annotation DB, export files in the landing zone)."""

from __future__ import annotations

import polars as pl
import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.kinds import VALUE_COLUMNS
from annotation_pipelines.loop.live_kinds import LIVE_KINDS, load_kind_state
from annotation_pipelines.synthetic.kinds import draw_project_day
from resources.lake import LocalLake
from tests.aggregation.kind_day import materialize_kind_day
from tests.loop.test_kind_rebase import DAY, agreement
from tests.loop.test_live_writeback import _launch, _tick
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
TASKS = 80


def test_a_day_s_kind_aggregation_re_bases_every_kind_state_on_it(tmp_path, monkeypatch):
    days = {kind: _day(kind) for kind in LIVE_KINDS}
    lake_dir = tmp_path / "data" / "lake"
    exports = tmp_path / "data" / "landing" / "exports"
    judgments, tasks = [], []
    base = ["judgment_id", "task_id", "annotator_id", "kind", "submitted_at", "duration_s"]

    def export(part: int) -> None:
        """Half the day's judgments of every kind project: the first half, then the second
        (folded with the parameters carried from the first)."""
        for kind, (rows, _) in days.items():
            half = rows.height // 2
            chosen = rows.head(half) if part == 1 else rows.slice(half)
            path = exports / str(rows["project"][0]) / "parquet" / f"batch-{part}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            chosen.select(*base, *VALUE_COLUMNS[kind]).write_parquet(path)

    for rows, raw in days.values():
        judgments.append(rows)
        tasks.append(raw)

    read = lake_reader(lake_dir)

    with fresh_database("live_kind_rebase") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        export(1)
        tick = _tick(defs, instance)
        _launch(job, instance, tick)
        export(2)
        tick = _tick(defs, instance, tick.cursor)
        _launch(job, instance, tick)

        # The daily layer: the real kind aggregation asset on the day the raw layer would build
        # from the same files (no gold in either layer).
        lake = LocalLake(base_path=str(lake_dir))
        day = DAY.isoformat()
        assert materialize_kind_day(
            lake,
            pl.concat(judgments, how="diagonal_relaxed"),
            day=day,
            landing=exports.parent,
            tasks=pl.concat(tasks, how="diagonal_relaxed"),
            instance=instance,
        ).success
        daily = lake.read_table("kind_aggregated_labels", day=day)

        def figures() -> dict[str, tuple[int, float]]:
            found = {}
            for kind in LIVE_KINDS:
                project = str(days[kind][0]["project"][0])
                state = load_kind_state(project, kind, read)
                found[kind] = agreement(state, daily.filter(pl.col("project") == project))
            return found

        def _state(rows: pl.DataFrame, kind: str):
            return load_kind_state(str(rows["project"][0]), kind, read)

        before = figures()
        # The sensor learns of the materialization and names the day for the kinds only.
        tick = _tick(defs, instance, tick.cursor)
        assert tick.run_requests, tick.skip_message
        config = tick.run_requests[0].run_config["ops"]["live_quality_state"]["config"]
        assert config["kind_rebase_days"] == [day] and config["rebase_days"] == []
        result = first_metadata(_launch(job, instance, tick)[0])
        after = figures()
        for kind in LIVE_KINDS:
            print(
                f"{kind}: {after[kind][0]} tasks, agreement before {before[kind][1]:.4f}, "
                f"after {after[kind][1]:.4f}"
            )
        assert {kind: share for kind, (_, share) in after.items()} == dict.fromkeys(LIVE_KINDS, 1.0)
        rebased = result["kind_rebased_tasks"]
        for kind in LIVE_KINDS:
            project = str(days[kind][0]["project"][0])
            assert rebased[f"{project}/{kind}"] == after[kind][0] == TASKS
        # The run did not refit the states whole: each records the request and the day, and
        # the next tick launches the kind fit job for them (no live run: nothing new).
        states = {kind: _state(days[kind][0], kind) for kind in LIVE_KINDS}
        for kind, state in states.items():
            assert state.fit_requested and state.rebase_after_fit == (day,), kind
            assert state.fitted_version < state.version, kind
        tick = _tick(defs, instance, tick.cursor)
        (request,) = tick.run_requests
        assert request.job_name == "live_kind_fit_job"
        (fit_run,) = _launch(job, instance, tick)
        # Every state fitted whole, and the day re-applied after the fit: still the daily
        # answers; its ledger untouched.
        for kind in LIVE_KINDS:
            fitted = _state(days[kind][0], kind)
            assert fitted.fitted_version == fitted.version - 1, kind  # the re-base day's version
            assert not fitted.fit_requested and fitted.rebase_after_fit == (), kind
            assert fitted.ledger.sort("judgment_id").equals(
                states[kind].ledger.sort("judgment_id")
            ), kind
            active = states[kind].ledger.filter(~pl.col("flagged"))
            assert fitted.fitted_judgments == active.height, kind
        assert {kind: share for kind, (_, share) in figures().items()} == dict.fromkeys(
            LIVE_KINDS, 1.0
        )
        assert fit_run.success
        # The cursor moved past the materialization and nothing is due: the next tick asks
        # for nothing.
        assert not _tick(defs, instance, tick.cursor).run_requests


def _day(kind: str, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The judgments (as `tests.loop.test_live_kinds._synthetic` draws them) and raw tasks."""
    drawn, _ = draw_project_day(kind, day=DAY, count=TASKS, seed=seed)
    return drawn["judgments"].sort("submitted_at"), drawn["tasks"]
