"""The annotator table's `confusion` column: cut from repeated label pairs, the grouped rows'
value exactly."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation import result
from annotation_pipelines.aggregation.encoding import Encoded, encode
from annotation_pipelines.aggregation.result import _confusion_column


def _grouped(encoded: Encoded, confusion: np.ndarray) -> pl.Series:
    """The column built by grouping one row per (annotator, observed, truth) by annotator."""
    n_annotators, k, _ = confusion.shape
    observed = np.tile(np.repeat(np.arange(k), k), n_annotators)
    truth = np.tile(np.arange(k), n_annotators * k)
    flat = pl.DataFrame(
        {
            "annotator": np.repeat(np.arange(n_annotators), k * k),
            "observed": encoded.label_values.gather(observed),
            "truth": encoded.label_values.gather(truth),
            "probability": confusion.reshape(-1),
        }
    )
    nested = flat.group_by("annotator", maintain_order=True).agg(
        pl.struct("observed", "truth", "probability").alias("confusion")
    )
    return nested.get_column("confusion")


@pytest.mark.parametrize("labels", [["b", "a", "c", "a"], [3, 1, 2, 2], ["x", "y"]])
@pytest.mark.parametrize("annotators", [0, 1, 4, 7])
# 1 << 20: one gathered block; 10: blocks of two or one annotator, the last one cut short.
@pytest.mark.parametrize("pair_rows", [1 << 20, 10])
def test_confusion_column_equals_the_grouped_rows(
    labels: list[object], annotators: int, pair_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(result, "_PAIR_ROWS", pair_rows)
    judgments = pl.DataFrame(
        {
            "task_id": [f"t{index}" for index in range(len(labels))],
            "annotator_id": [f"a{index % 2}" for index in range(len(labels))],
            "label": labels,
        }
    )
    encoded = encode(judgments)
    k = encoded.n_classes
    confusion = np.random.default_rng(annotators).random((annotators, k, k))
    built, grouped = _confusion_column(encoded, confusion), _grouped(encoded, confusion)
    assert built.dtype == grouped.dtype
    assert built.name == grouped.name
    assert built.to_list() == grouped.to_list()


def test_confusion_column_of_many_classes() -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["t0", "t1"],
            "annotator_id": ["a", "b"],
            "label": ["c0", "c1"],
        }
    )
    encoded = encode(judgments, extra_labels=pl.Series([f"c{index}" for index in range(300)]))
    confusion = np.random.default_rng(0).random((2, 300, 300))
    assert _confusion_column(encoded, confusion).equals(_grouped(encoded, confusion))
