"""The live boxes state keeps each judgment's and gold's unit and image size, so its fits and
scorecards read a task's boxes in one unit as the daily layer does: a pixel box beside percent
ones of the same object is one object live too, and gold in another unit anchors the task."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import polars as pl
import pytest

from annotation_pipelines.kinds import BOX, BOX_CONTEXT
from annotation_pipelines.loop.live_kinds import (
    LIVE_KINDS,
    KindState,
    gold_schema,
    kind_db_rows,
    kind_file_rows,
    kind_state_objects,
    ledger_schema,
    load_kind_state,
    rebase_kind,
    tasks_schema,
    update_kind,
)
from annotation_pipelines.quality.kinds import aggregate_kind_day
from tests.loop.test_live_kinds import NOW, OPTIONS, START

PERCENT = {"label": "car", "x_min": 10.0, "y_min": 10.0, "x_max": 40.0, "y_max": 40.0}
PIXELS = {"label": "car", "x_min": 64.0, "y_min": 48.0, "x_max": 256.0, "y_max": 192.0}
WIDTH, HEIGHT = 640.0, 480.0


def _no_gold() -> pl.DataFrame:
    return box_rows([]).drop("judgment_id", "annotator_id")


def _shifted(box: dict[str, object], by: float) -> dict[str, object]:
    return {**box, **{k: float(box[k]) + by for k in ("x_min", "x_max")}}  # type: ignore[arg-type]


def box_rows(answers: list[tuple[str, str, str, dict[str, object]]], *, first: int = 0):
    """Lake rows of `boxes` from (task, annotator, unit, box), images of 640 × 480."""
    n = len(answers)
    return pl.DataFrame(
        {
            "judgment_id": [f"j{first + i}" for i in range(n)],
            "task_id": [a[0] for a in answers],
            "project": ["p"] * n,
            "annotator_id": [a[1] for a in answers],
            "kind": ["boxes"] * n,
            "boxes": pl.Series([[a[3]] for a in answers], dtype=pl.List(BOX)),
            "coordinates": [a[2] for a in answers],
            "image_width": [WIDTH] * n,
            "image_height": [HEIGHT] * n,
            "submitted_at": [START + timedelta(seconds=first + i) for i in range(n)],
            "duration_s": [10.0] * n,
            "updated_at": [START + timedelta(seconds=first + i) for i in range(n)],
        }
    )


def mixed_task(task: str = "t1", *, first: int = 0) -> pl.DataFrame:
    """`task` judged with a pixel box by `a` and the same box in percent by `b` and `c`."""
    return box_rows(
        [
            (task, "a", "pixel", PIXELS),
            (task, "b", "percent", PERCENT),
            (task, "c", "percent", PERCENT),
        ],
        first=first,
    )


def percent_tasks(n: int) -> pl.DataFrame:
    """`n` tasks judged in percent by a, b, c, one box each a few points apart."""
    return box_rows(
        [
            (f"u{i}", r, "percent", _shifted(PERCENT, i + 0.5 * k))
            for i in range(n)
            for k, r in enumerate(("a", "b", "c"))
        ],
        first=100,
    )


def _fused(state: KindState, task: str) -> list[dict[str, object]]:
    return state.tasks.filter(pl.col("task_id") == task)["boxes"].item().to_list()


def _daily(judgments: pl.DataFrame, gold: pl.DataFrame | None = None) -> pl.DataFrame:
    return aggregate_kind_day(judgments, project="p", day=date(2026, 11, 1), gold=gold).labels


def _plain(boxes: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in box.items() if k != "confidence"} for box in boxes]


def test_the_unit_and_image_size_live_only_in_the_boxes_state():
    for kind in LIVE_KINDS:
        for schema in (ledger_schema(kind), gold_schema(kind), tasks_schema(kind)):
            assert (set(BOX_CONTEXT) <= set(schema)) == (kind == "boxes")


def test_a_full_fit_reads_a_pixel_box_beside_percent_ones_as_the_daily_layer_does():
    rows, _ = kind_file_rows(mixed_task(), mixed_task().head(0), read_at=NOW, source="f")
    state, _ = update_kind(KindState(project="p", kind="boxes"), rows, None, OPTIONS, now=NOW)
    assert state.ledger.sort("judgment_id")["coordinates"].to_list() == [
        "pixel",
        "percent",
        "percent",
    ]
    assert _fused(state, "t1") == [pytest.approx(PERCENT)]
    daily = _daily(mixed_task()).row(0, named=True)
    assert _fused(state, "t1") == [pytest.approx(b) for b in _plain(daily["boxes"])]
    task = state.tasks.row(0, named=True)
    # All three drew it: the support, and so the confidence, counts the pixel box too.
    assert task["confidence"] == pytest.approx(daily["confidence"])
    assert (task["coordinates"], task["image_width"], task["image_height"]) == (
        "percent",
        WIDTH,
        HEIGHT,
    )


def test_a_refit_with_carried_reliabilities_reads_the_units_of_the_db_rows():
    first, _ = kind_db_rows(percent_tasks(4), _no_gold())
    one, _ = update_kind(KindState(project="p", kind="boxes"), first, None, OPTIONS, now=NOW)
    second, _ = kind_db_rows(mixed_task(), _no_gold())
    two, events = update_kind(one, second, None, OPTIONS, now=NOW)
    assert two.fitted_version == 1 and events.refitted_tasks == 1
    assert _fused(two, "t1") == [pytest.approx(PERCENT)]
    assert two.tasks.filter(pl.col("task_id") == "t1")["coordinates"].item() == "percent"


def test_gold_in_pixels_is_the_answer_of_a_task_judged_in_percent_in_its_unit():
    judged = mixed_task()
    gold = judged.head(1).drop("annotator_id")
    rows, golden = kind_file_rows(judged, gold, read_at=NOW, source="f")
    state, _ = update_kind(KindState(project="p", kind="boxes"), rows, golden, OPTIONS, now=NOW)
    assert state.gold["coordinates"].to_list() == ["pixel"]
    task = state.tasks.row(0, named=True)
    assert _plain(task["boxes"]) == [pytest.approx(PERCENT)] and task["confidence"] == 1.0
    assert task["coordinates"] == "percent"
    daily = _daily(judged, gold).row(0, named=True)
    assert _plain(task["boxes"]) == [pytest.approx(b) for b in _plain(daily["boxes"])]
    # Every annotator drew the gold box, in whichever unit.
    cards = state.annotators.sort("annotator_id")
    assert cards["n_gold"].to_list() == [1, 1, 1]
    assert cards["gold_total"].to_list() == pytest.approx([1.0, 1.0, 1.0])


def test_a_pixel_annotator_agrees_with_the_percent_consensus_as_the_others_do():
    rows = pl.concat([mixed_task("t1"), mixed_task("t2", first=3)])
    state, _ = update_kind(KindState(project="p", kind="boxes"), rows, None, OPTIONS, now=NOW)
    cards = {r["annotator_id"]: r for r in state.annotators.iter_rows(named=True)}
    assert cards["a"]["n_compared"] == 2
    assert cards["a"]["distance_total"] == pytest.approx(0.0, abs=1e-9)
    assert cards["a"]["agreement"] == pytest.approx(cards["b"]["agreement"])
    # A refit of one task moves the sums from the old answer to the new one, in one unit.
    more, _ = kind_db_rows(box_rows([("t1", "d", "pixel", PIXELS)], first=50), _no_gold())
    after, _ = update_kind(state, more, None, OPTIONS, now=NOW)
    refreshed = {r["annotator_id"]: r for r in after.annotators.iter_rows(named=True)}
    assert refreshed["d"]["distance_total"] == pytest.approx(0.0, abs=1e-9)
    assert refreshed["a"]["distance_total"] == pytest.approx(0.0, abs=1e-9)


def test_a_boxes_state_stored_without_units_reads_and_takes_new_rows_with_them():
    # Two draw the box in pixels, two in percent: without the units, two objects of half
    # the annotators each.
    rows = pl.concat([mixed_task(), box_rows([("t1", "d", "pixel", PIXELS)], first=3)])
    plain = rows.drop(*BOX_CONTEXT)
    state, _ = update_kind(KindState(project="p", kind="boxes"), plain, None, OPTIONS, now=NOW)
    store: dict[str, bytes] = {}
    writes, _ = kind_state_objects(state, store.get)
    store.update(writes)
    # As a writer before the unit was kept left them: no unit columns anywhere.
    for key in list(store):
        if key.endswith(".parquet"):
            frame = pl.read_parquet(io.BytesIO(store[key]))
            older = io.BytesIO()
            frame.drop([c for c in BOX_CONTEXT if c in frame.columns]).write_parquet(older)
            store[key] = older.getvalue()
    loaded = load_kind_state("p", "boxes", store.get)
    assert loaded.ledger.height == 4 and loaded.ledger["coordinates"].is_null().all()
    assert loaded.tasks["coordinates"].is_null().all()
    # Nulls are an unknown unit, left as written: the pixel box stays a second object.
    assert len(_fused(loaded, "t1")) == 2
    # The same judgments read again with their units replace the stored ones.
    again, _ = update_kind(
        loaded, rows.with_columns(updated_at=pl.lit(NOW)), None, OPTIONS, now=NOW
    )
    assert again.ledger.sort("judgment_id")["coordinates"].to_list() == [
        "pixel",
        "percent",
        "percent",
        "pixel",
    ]
    assert _fused(again, "t1") == [pytest.approx(PERCENT)]
    writes, deletes = kind_state_objects(again, store.get)
    store.update(writes)
    for key in deletes:
        store.pop(key)
    reloaded = load_kind_state("p", "boxes", store.get)
    assert reloaded.ledger.sort("judgment_id").equals(again.ledger.sort("judgment_id"))
    assert _fused(reloaded, "t1") == [pytest.approx(PERCENT)]


def test_a_request_for_boxes_names_the_unit_its_boxes_are_in():
    rows = box_rows(
        [
            ("t1", "a", "pixel", PIXELS),
            ("t1", "b", "percent", PERCENT),
            ("t1", "c", "percent", _shifted(PERCENT, 50.0)),
            ("t1", "d", "percent", _shifted(PERCENT, 50.0)),
        ]
    )
    _, events = update_kind(KindState(project="p", kind="boxes"), rows, None, OPTIONS, now=NOW)
    (posterior,) = events.task_requests["posterior"].to_list()
    answer = json.loads(posterior)
    assert pytest.approx(PERCENT) in answer["boxes"] and len(answer["boxes"]) == 2
    assert (answer["coordinates"], answer["image_width"], answer["image_height"]) == (
        "percent",
        WIDTH,
        HEIGHT,
    )


def test_the_daily_re_base_takes_the_daily_boxes_with_their_unit():
    rows = pl.concat([mixed_task("t1"), mixed_task("t2", first=3)])
    state, _ = update_kind(KindState(project="p", kind="boxes"), rows, None, OPTIONS, now=NOW)
    daily = _daily(rows)
    rebased, events = rebase_kind(state, daily, "2026-11-01", OPTIONS, now=NOW)
    assert events.rebased_tasks == 2
    for task in rebased.tasks.iter_rows(named=True):
        assert task["boxes"] == [pytest.approx(PERCENT)] and task["coordinates"] == "percent"
    # The agreement sums moved from the live answers to the daily ones, both in percent.
    cards = rebased.annotators.sort("annotator_id")
    assert cards["distance_total"].to_list() == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
