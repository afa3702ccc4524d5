"""The live asset with a Label Studio export holding gold: through real sensor ticks and runs
(real Dagster instance, real PostgreSQL annotation DB), an edited export without some of its
ground-truth annotations withdraws that gold from the live state, and an emptied one the
rest, as restaging the file does for the daily layers."""

from __future__ import annotations

import json

import polars as pl
import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live import load_state
from tests.loop.test_live_writeback import _launch, _tick
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
PROJECT = "reviews"
LABELS = ("pos", "neg", "neutral")


def _annotation(number: int, annotator: int, label: str, *, gold: bool = False) -> dict:
    return {
        "id": number,
        "completed_by": annotator,
        "lead_time": 3.5,
        "was_cancelled": False,
        "ground_truth": gold,
        "created_at": f"2026-05-01T09:{number % 60:02d}:00Z",
        "updated_at": f"2026-05-01T09:{number % 60:02d}:00Z",
        "result": [
            {
                "from_name": "sentiment",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [label]},
            }
        ],
    }


def _tasks(gold_tasks: range) -> list[dict]:
    """Thirty tasks of three judgments each; the tasks of `gold_tasks` carry a ground-truth
    annotation (their gold label) as well."""
    tasks = []
    for task in range(30):
        truth = LABELS[task % 3]
        annotations = [
            _annotation(task * 10 + a, 11 + a, truth if a or task % 4 else LABELS[(task + 1) % 3])
            for a in range(3)
        ]
        if task in gold_tasks:
            annotations.append(_annotation(task * 10 + 9, 99, truth, gold=True))
        tasks.append(
            {"id": 1000 + task, "data": {"text": f"review {task}"}, "annotations": annotations}
        )
    return tasks


def test_gold_an_edited_export_no_longer_holds_leaves_the_live_state(tmp_path, monkeypatch):
    export = tmp_path / "data" / "landing" / "exports" / PROJECT / "label-studio" / "batch.json"
    export.parent.mkdir(parents=True)
    lake = tmp_path / "data" / "lake"

    def state():
        return load_state(PROJECT, lake_reader(lake))

    with fresh_database("live_gold") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        export.write_text(json.dumps(_tasks(range(10))))
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        tick = _tick(defs, instance)
        _launch(job, instance, tick)
        folded = state()
        gold = folded.tasks.drop_nulls("gold")
        assert gold.height == 10 and folded.ledger.height == 90
        path = f"exports/{PROJECT}/label-studio/batch.json"
        assert gold["gold_sources"].to_list() == [[path]] * 10
        assert folded.annotators["n_gold"].sum() == 30

        # Edited: tasks 1000–1004 lose their ground truth, their judgments stay.
        export.write_text(json.dumps(_tasks(range(5, 10))))
        tick = _tick(defs, instance, tick.cursor)
        edited_run = first_metadata(_launch(job, instance, tick)[0])
        assert edited_run["withdrawn_gold"] == 5
        assert edited_run["withdrawn_judgments"] == 0 and edited_run["new_judgments"] == 0
        edited = state()
        lost = edited.tasks.filter(pl.col("task_id").is_in([str(1000 + t) for t in range(5)]))
        assert lost.height == 5 and lost["gold"].is_null().all()
        assert (lost["n_votes"] == 3).all() and lost["label"].is_not_null().all()
        assert edited.tasks.drop_nulls("gold").height == 5
        # The scorecards count only the gold left.
        assert edited.annotators["n_gold"].sum() == 15
        assert (edited.annotators["n_gold"] <= folded.annotators["n_gold"]).all()

        # Emptied: every judgment and every gold label goes, and so do the tasks.
        export.write_text("[]")
        tick = _tick(defs, instance, tick.cursor)
        emptied_run = first_metadata(_launch(job, instance, tick)[0])
        assert emptied_run["withdrawn_gold"] == 5
        emptied = state()
        assert emptied.tasks.height == 0 and emptied.ledger.height == 0
        assert emptied.annotators["n_gold"].sum() == 0
