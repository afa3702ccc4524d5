"""A numeric project's declared scale in the live layer, against a real PostgreSQL annotation
DB and a real Dagster materialization of `live_quality_state`: an export's answers outside the
scale its project.json declares never reach the numeric kind state and are counted in the run's
metadata; the same answers of a project without a scale are folded in as before; a project.json
whose scale is not a scale keeps its files out, the error naming the file and the field; and a
scale declared or fixed later reads the project's files again, withdrawing what it refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live import load_files
from annotation_pipelines.loop.live_kinds import load_kind_state
from assets.live.assets import pending_files
from resources.landing import LocalLandingZone
from tests.loop.test_live_writeback import QUIET
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
RATERS = ("a", "b", "c")
# Three tasks, one answer far off a 1-5 scale and one below it.
ANSWERS = {"t1": (3, 4, 3), "t2": (5, 5, 4), "t3": (2, 1e200, 2), "t4": (4, 0, 4)}


def _export(landing: Path, project: str, settings: dict | None) -> None:
    folder = landing / "exports" / project
    (folder / "jsonl").mkdir(parents=True)
    if settings is not None:
        (folder / "project.json").write_text(json.dumps(settings))
    start = datetime.now(UTC) - timedelta(hours=1)
    lines = [
        {
            "task_id": task,
            "annotator_id": rater,
            "kind": "numeric",
            "value": value,
            "submitted_at": (start + timedelta(seconds=10 * n)).isoformat(),
        }
        for n, (task, rater, value) in enumerate(
            (task, rater, value)
            for task, values in ANSWERS.items()
            for rater, value in zip(RATERS, values, strict=True)
        )
    ]
    (folder / "jsonl" / "batch.jsonl").write_text("\n".join(json.dumps(x) for x in lines))


def test_answers_outside_the_declared_scale_never_reach_the_live_numeric_state(
    tmp_path, monkeypatch
):
    data = tmp_path / "data"
    landing, lake = data / "landing", data / "lake"
    _export(landing, "scaled", {"scale": {"min": 1, "max": 5, "step": 1}})
    _export(landing, "unscaled", None)
    _export(landing, "broken", {"scale": {"min": 5, "max": 1}})
    with fresh_database("live_scale") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        result = job.execute_in_process(instance=instance, run_config=QUIET)
        assert result.success
        metadata = first_metadata(result)
        _check_first_run(lake, metadata)
        folded = load_files(lake_reader(lake))
        assert pending_files(LocalLandingZone(path=str(landing), settle_seconds=0), folded) == []

        # The scale declared later, and the broken one fixed: each project's file is read
        # again whole, so the answer off the new scale is withdrawn and the refused file folds.
        scale = {"scale": {"min": 1, "max": 5, "step": 1}}
        (landing / "exports" / "unscaled" / "project.json").write_text(json.dumps(scale))
        (landing / "exports" / "broken" / "project.json").write_text(json.dumps(scale))
        pending = pending_files(LocalLandingZone(path=str(landing), settle_seconds=0), folded)
        assert sorted(p.split("@")[0] for p in pending) == [
            "exports/broken/jsonl/batch.jsonl",
            "exports/unscaled/jsonl/batch.jsonl",
        ]
        again = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert again["files_read"] == sorted(p.split("@")[0] for p in pending)
        assert again["files_quarantine_reasons"] == {"outside_scale": 4}
        assert again["kind_withdrawn_judgments"] == 2
        read = lake_reader(lake)
        for project in ("scaled", "unscaled", "broken"):
            state = load_kind_state(project, "numeric", read)
            assert state.ledger.height == 10 and state.ledger["value"].max() == 5.0, project
        assert "error" not in load_files(read)["exports/broken/jsonl/batch.jsonl"]
        quiet = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert quiet["files_read"] == [] and quiet["files_quarantined"] == 0


def _check_first_run(lake: Path, metadata: dict[str, object]) -> None:
    read = lake_reader(lake)
    scaled = load_kind_state("scaled", "numeric", read)
    unscaled = load_kind_state("unscaled", "numeric", read)
    # Counted, never silent: the two answers off the scale, by reason.
    assert metadata["files_quarantined"] == 2
    assert metadata["files_quarantine_reasons"] == {"outside_scale": 2}
    assert metadata["kind_new_judgments"] == 12 + 10
    assert scaled.ledger.height == 10 and scaled.ledger["value"].max() == 5.0
    assert unscaled.ledger.height == 12 and unscaled.ledger["value"].max() == 1e200
    values = dict(scaled.tasks.select("task_id", "value").iter_rows())
    assert values["t3"] == pytest.approx(2.0, abs=0.5)
    assert values["t4"] == pytest.approx(4.0, abs=0.5)
    assert all(1.0 <= value <= 5.0 for value in values.values())
    # A scale that is not a scale is no scale nobody meant: the project's file stays out, the
    # error naming the file and the field, until project.json is fixed.
    record = load_files(read)["exports/broken/jsonl/batch.jsonl"]
    assert "exports/broken/project.json: scale: min must be below max" in record["error"]
    assert load_kind_state("broken", "numeric", read).ledger.height == 0
