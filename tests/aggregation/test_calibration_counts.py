"""The calibration's confusion counts are stored per answered (annotator, answer) row, with
the bits of the dense annotators × K × K table, and its memory follows the judgments."""

from __future__ import annotations

import tracemalloc

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation.calibration import (
    SHRINKAGE_GRID,
    _counts,
    _held_out_rows,
    calibrate,
)
from annotation_pipelines.aggregation.encoding import encode
from annotation_pipelines.aggregation.registry import run_kernel
from tests.aggregation import calibration_reference


def _problem(*, tasks: int, classes: int, annotators: int, seed: int) -> pl.DataFrame:
    """Tasks with 1–6 votes, each right with probability 0.6 and otherwise any class."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in range(tasks):
        truth = int(rng.integers(classes))
        for _ in range(int(rng.integers(1, 7))):
            label = truth if rng.random() < 0.6 else int(rng.integers(classes))
            rows.append((f"t{task}", f"a{int(rng.integers(annotators))}", f"c{label}"))
    return pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")


# The first two keep the dense table (annotators × K no larger than the judgments), the others
# store the answered rows; `_counts` has no other size switch, so 300 classes stand for many.
@pytest.mark.parametrize(
    ("tasks", "classes", "annotators"),
    [(60, 2, 8), (80, 5, 12), (150, 50, 20), (400, 300, 6)],
)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", ["majority_vote", "dawid_skene"])
def test_answered_rows_hold_the_dense_tables_bits(
    tasks: int, classes: int, annotators: int, seed: int, method: str
) -> None:
    encoded = encode(_problem(tasks=tasks, classes=classes, annotators=annotators, seed=seed))
    soft = run_kernel(encoded, method).posteriors
    counts = _counts(encoded, soft)
    annotator, totals, pooled = calibration_reference.dense_counts(encoded, soft)
    k = encoded.n_classes
    assert counts.answered.shape[0] <= encoded.n_judgments
    cells = encoded.annotators.astype(np.int64) * k + encoded.labels
    # The whole table when it is no larger than the judgments, else the answered rows.
    rows = np.arange(annotator.shape[0] * k) if counts.answered.size == annotator.size else cells
    assert np.array_equal(counts.answered, annotator.reshape(-1, k)[np.unique(rows)])
    assert np.array_equal(
        counts.answered[counts.judgment_rows], annotator[encoded.annotators, encoded.labels]
    )
    unanswered = np.ones((encoded.n_annotators, k), dtype=bool)
    unanswered[encoded.annotators, encoded.labels] = False
    assert not annotator[unanswered].any()
    assert np.array_equal(counts.annotator_totals, totals)
    assert np.array_equal(counts.pooled, pooled)
    everyone = np.arange(encoded.n_judgments)
    for per_class in SHRINKAGE_GRID:
        shrinkage = per_class * k
        numerator, denominator = _held_out_rows(encoded, counts, everyone, shrinkage)
        expected = calibration_reference.dense_held_out_rows(encoded, counts, annotator, shrinkage)
        assert np.array_equal(numerator, expected[0])
        assert np.array_equal(denominator, expected[1])


def test_memory_follows_the_judgments_not_annotators_times_classes_squared() -> None:
    """800 judgments from 400 annotators over 400 classes: the dense table alone was 512 MB
    (400 × 400² × 8 B); what is observed is 800 rows of 400 classes (2.6 MB)."""
    rng = np.random.default_rng(5)
    tasks = np.repeat(np.arange(400), 2)
    truth = np.repeat(rng.permutation(400), 2)
    judgments = pl.DataFrame(
        {
            "task_id": [f"t{task}" for task in tasks],
            "annotator_id": [f"a{a}" for a in rng.permutation(tasks.size) % 400],
            "label": [f"c{label}" for label in truth],
        }
    )
    encoded = encode(judgments)
    assert (encoded.n_annotators, encoded.n_classes) == (400, 400)
    soft = run_kernel(encoded, "majority_vote").posteriors
    tracemalloc.start()
    try:
        calibrate(encoded, soft)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"calibration peaked at {peak / 2**20:.0f} MB"
