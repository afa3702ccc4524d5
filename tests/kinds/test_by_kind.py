"""Every declared kind method runs through the one facade and returns the shared shape."""

import polars as pl
import pytest

from annotation_pipelines.aggregation.by_kind import aggregate_kind
from annotation_pipelines.aggregation.registry import KIND_REGISTRY, methods_for
from annotation_pipelines.kinds import BOX, SPAN, VALUE_COLUMNS

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
    "multilabel": ["a"],
    "numeric": 3.0,
    "ranking": ["r", "p", "q"],
    "spans": [_span(2, 7)],
    "boxes": [_box(20, 20)],
    "text": "a bird",
}


@pytest.mark.parametrize(
    ("kind", "method"),
    [(declared.kind, declared.name) for declared in KIND_REGISTRY if declared.kind in LONE],
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
                VALUE_COLUMNS[kind][0]: LONE[kind],
            }
        ],
        schema=FRAMES[kind].schema,
    )
    frame = pl.concat([FRAMES[kind], lone])
    labels = aggregate_kind(frame, kind=kind, method=method).labels
    confidence = dict(labels.select("task_id", "confidence").iter_rows())
    assert confidence["t3"] == 0.5
    if kind in ("boxes", "spans"):
        [region] = labels.filter(pl.col("task_id") == "t3")[kind].item().to_list()
        assert region["confidence"] <= 0.5


def test_a_lone_rating_has_the_interval_of_its_annotators_noise():
    # The bias-and-noise model's interval of one rating is its annotator's noise (±1.96 σ), not
    # the ±0.05 % a file with no second rating anywhere gave it.
    lone = pl.DataFrame(
        [{"task_id": "t3", "annotator_id": "a", "value": 3.0}], schema=FRAMES["numeric"].schema
    )
    result = aggregate_kind(pl.concat([FRAMES["numeric"], lone]), kind="numeric")
    row = result.labels.filter(pl.col("task_id") == "t3").row(0, named=True)
    noise = result.annotators.filter(pl.col("annotator_id") == "a")["noise_sd"].item()
    assert row["hi"] - row["value"] == pytest.approx(1.959964 * noise, rel=1e-5)
    assert row["value"] - row["lo"] == pytest.approx(1.959964 * noise, rel=1e-5)


def test_a_rating_with_no_measure_of_noise_has_no_interval():
    # One rating in all: nothing measures anyone's noise. The interval is unknown (null), not
    # a width of nothing; with a declared scale it is the scale's spread.
    from annotation_pipelines.scale import RatingScale

    alone = pl.DataFrame({"task_id": ["t1"], "annotator_id": ["a"], "value": [3.0]})
    labels = aggregate_kind(alone, kind="numeric").labels
    assert labels.select("value", "lo", "hi", "confidence").row(0) == (3.0, None, None, 0.5)
    scaled = aggregate_kind(alone, kind="numeric", scale=RatingScale(1, 5, step=1)).labels
    row = scaled.row(0, named=True)
    assert (row["value"], row["confidence"]) == (3.0, 0.5)
    assert row["lo"] < 2.0 and row["hi"] > 4.0


# One car on a 640x480 image: drawn in percent by two annotators, in pixels by one.
PERCENT_BOX = {"label": "car", "x_min": 10.0, "y_min": 10.0, "x_max": 40.0, "y_max": 40.0}
PIXEL_BOX = {"label": "car", "x_min": 64.0, "y_min": 48.0, "x_max": 256.0, "y_max": 192.0}


def mixed_unit_boxes() -> pl.DataFrame:
    """Task t1's three judgments of that car, each with its unit and image size."""
    return pl.DataFrame(
        {
            "task_id": ["t1"] * 3,
            "annotator_id": ["a", "b", "c"],
            "boxes": [[PIXEL_BOX], [PERCENT_BOX], [PERCENT_BOX]],
            "coordinates": ["pixel", "percent", "percent"],
            "image_width": [640.0] * 3,
            "image_height": [480.0] * 3,
        },
        schema_overrides={"boxes": pl.List(BOX)},
    )


def test_a_tasks_boxes_in_two_units_are_fused_in_its_most_common_one() -> None:
    # The lake keeps each judgment's unit and image size (Label Studio percent, Ground Truth
    # pixels); before, the daily fusion read a pixel box beside percent ones as another object.
    (fused,) = aggregate_kind(mixed_unit_boxes(), kind="boxes").labels["boxes"].to_list()
    assert fused == [pytest.approx({**PERCENT_BOX, "confidence": 1.0})]


def test_gold_boxes_in_another_unit_are_put_in_their_tasks_unit() -> None:
    judgments = mixed_unit_boxes()
    gold = judgments.head(1).drop("annotator_id")
    (fused,) = aggregate_kind(judgments, kind="boxes", gold=gold).labels["boxes"].to_list()
    assert fused == [pytest.approx({**PERCENT_BOX, "confidence": 1.0})]
