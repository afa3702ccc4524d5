"""Multi-label tasks: one yes/no problem per class through the categorical methods."""

from __future__ import annotations

import polars as pl
import pytest

from annotation_pipelines.aggregation import fit
from annotation_pipelines.aggregation.multilabel import aggregate_multilabel

ROWS = [
    ("t1", "w1", "cat,dog"),
    ("t1", "w2", "cat"),
    ("t1", "w3", "cat, dog"),
    ("t2", "w1", ""),
    ("t2", "w2", "bird"),
    ("t2", "w3", ""),
    ("t3", "w1", "dog"),
]


def _frame() -> pl.DataFrame:
    return pl.DataFrame(ROWS, schema=["task_id", "annotator_id", "label"], orient="row")


def test_majority_vote_by_hand() -> None:
    result = aggregate_multilabel(_frame(), "majority_vote")
    rows = {row["task_id"]: row for row in result.iter_rows(named=True)}
    assert rows["t1"]["labels"] == ["cat", "dog"]
    assert rows["t1"]["probability"] == pytest.approx({"bird": 0.0, "cat": 1.0, "dog": 2 / 3})
    assert rows["t2"]["labels"] == []  # empty answers count as "none applies"
    assert rows["t2"]["probability"]["bird"] == pytest.approx(1 / 3)
    assert rows["t3"]["labels"] == ["dog"]
    assert [rows[t]["n_votes"] for t in ("t1", "t2", "t3")] == [3, 3, 1]


def test_list_column_and_threshold() -> None:
    frame = _frame().with_columns(
        pl.col("label").str.split(",").list.eval(pl.element().str.strip_chars())
    )
    strict = aggregate_multilabel(frame, "majority_vote", threshold=0.9)
    assert strict.filter(pl.col("task_id") == "t1")["labels"].item().to_list() == ["cat"]


@pytest.mark.parametrize("method", ["dawid_skene", "glad", "wawa", "mace", "auto"])
def test_each_class_equals_the_binary_fit(method: str) -> None:
    frame = _frame()
    result = aggregate_multilabel(frame, method)
    binary = frame.with_columns(pl.col("label").str.contains("dog").alias("label"))
    if method == "auto":
        return  # auto may choose differently per class; the other cases pin the mechanics
    reference = fit(binary, method).labels.select(
        "task_id", pl.col("posterior").struct.field("True").alias("dog")
    )
    joined = result.select("task_id", pl.col("probability").struct.field("dog")).join(
        reference, on="task_id", suffix="_reference"
    )
    assert joined["dog"].to_list() == pytest.approx(joined["dog_reference"].to_list(), abs=1e-9)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        aggregate_multilabel(_frame(), "nope")


def test_no_class_chosen_anywhere() -> None:
    frame = pl.DataFrame({"task_id": ["a", "a"], "annotator_id": ["x", "y"], "label": ["", " "]})
    result = aggregate_multilabel(frame, "dawid_skene")
    assert result["labels"].to_list() == [[]]
    assert result["n_votes"].to_list() == [2]
