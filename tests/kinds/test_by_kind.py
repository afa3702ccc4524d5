"""Every declared kind method runs through the one facade and returns the shared shape."""

import polars as pl
import pytest

from annotation_pipelines.aggregation.by_kind import aggregate_kind
from annotation_pipelines.aggregation.registry import KIND_REGISTRY, methods_for
from annotation_pipelines.kinds import BOX, SPAN

ANNOTATORS = ["a", "b", "c"]


def _rows(values: dict[str, list], column: str, dtype: pl.DataType | None = None) -> pl.DataFrame:
    rows = [
        {"task_id": task, "annotator_id": annotator, column: value}
        for task, answers in values.items()
        for annotator, value in zip(ANNOTATORS, answers, strict=True)
    ]
    schema = {"task_id": pl.String, "annotator_id": pl.String}
    if dtype is not None:
        schema[column] = dtype
    return pl.DataFrame(rows, schema_overrides=schema)


def _span(start, end, label="PER"):
    return {"start": start, "end": end, "label": label}


def _box(x, y, size=10.0, label="car"):
    return {"label": label, "x_min": x, "y_min": y, "x_max": x + size, "y_max": y + size}


FRAMES = {
    "categorical": _rows({"t1": ["x", "x", "y"], "t2": ["y", "y", "y"]}, "label"),
    "multilabel": _rows(
        {"t1": [["a", "b"], ["a"], ["a", "b"]], "t2": [["b"], ["b"], []]},
        "labels",
        pl.List(pl.String),
    ),
    "numeric": _rows({"t1": [1.0, 2.0, 1.5], "t2": [4.0, 5.0, 4.5]}, "value"),
    "ranking": _rows(
        {"t1": [["p", "q", "r"], ["p", "r", "q"], ["p", "q", "r"]], "t2": [["r", "q"]] * 3},
        "ranking",
        pl.List(pl.String),
    ),
    "spans": _rows(
        {"t1": [[_span(0, 5)], [_span(0, 5)], [_span(1, 5)]], "t2": [[], [_span(3, 9)], []]},
        "spans",
        pl.List(SPAN),
    ),
    "boxes": _rows(
        {"t1": [[_box(0, 0)], [_box(1, 1)], [_box(0, 1)]], "t2": [[_box(50, 50)], [], []]},
        "boxes",
        pl.List(BOX),
    ),
    "text": _rows({"t1": ["a cat", "a cat", "the cat"], "t2": ["dog", "dogs", "dog"]}, "text"),
}
PAIRWISE = pl.DataFrame(
    {
        "task_id": ["t1", "t1", "t1", "t2", "t2", "t2", "t3", "t3", "t3"],
        "annotator_id": ANNOTATORS * 3,
        "left": ["m1", "m1", "m1", "m2", "m2", "m2", "m1", "m1", "m1"],
        "right": ["m2", "m2", "m2", "m3", "m3", "m3", "m3", "m3", "m3"],
        "winner": ["left", "left", "right", "left", "left", "left", "left", "tie", "left"],
    }
)
FRAMES["pairwise"] = PAIRWISE


@pytest.mark.parametrize(
    ("kind", "method"),
    [("categorical", None)] + [(declared.kind, declared.name) for declared in KIND_REGISTRY],
)
def test_every_declared_method_runs_through_the_facade(kind, method):
    result = aggregate_kind(FRAMES[kind], kind=kind, method=method)
    expected = {"item", "score", "lo", "hi"} if kind == "pairwise" else {"task_id", "confidence"}
    assert result.labels.height > 0
    assert expected <= set(result.labels.columns)
    assert "annotator_id" in result.annotators.columns
    assert result.method.startswith(method or "")


def test_method_lists_derive_from_the_registry():
    assert methods_for("boxes") == ("weighted_fusion", "majority")
    assert methods_for("categorical")[0] == "auto"
    with pytest.raises(ValueError, match="expected one of"):
        aggregate_kind(FRAMES["text"], kind="text", method="glad")


# One more task, t3, judged once: its one answer is no evidence of agreement.
LONE = {
    "numeric": 3.0,
    "ranking": ["r", "p", "q"],
    "boxes": [_box(20, 20)],
    "text": "a bird",
}


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        (declared.kind, declared.name)
        for declared in KIND_REGISTRY
        if declared.kind in LONE and declared.name != "bias_noise"
    ],
)
def test_a_task_judged_once_is_not_more_confident_than_one_the_crowd_agreed_on(kind, method):
    # A lone ranking, box set or rating agreed with itself: confidence 1.0, above every task
    # three annotators agreed on, so a min_confidence filter kept exactly the least supported
    # labels and the replay stopped each task after its first judgment. Free text already said
    # 0.5 (no evidence either way); the others now do too.
    lone = pl.DataFrame(
        [
            {
                "task_id": "t3",
                "annotator_id": "a",
                kind if kind != "numeric" else "value": LONE[kind],
            }
        ],
        schema=FRAMES[kind].schema,
    )
    frame = pl.concat([FRAMES[kind], lone])
    labels = aggregate_kind(frame, kind=kind, method=method).labels
    confidence = dict(labels.select("task_id", "confidence").iter_rows())
    assert confidence["t3"] == 0.5
    if kind == "boxes":
        [box] = labels.filter(pl.col("task_id") == "t3")["boxes"].item().to_list()
        assert box["confidence"] <= 0.5
