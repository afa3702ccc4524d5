"""Equality with krippendorff, statsmodels and scikit-learn on random data (hypothesis)."""

from __future__ import annotations

import math
from unittest.mock import patch

import krippendorff
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from annotation_pipelines.agreement import (
    cohen_kappa_matrix,
    fleiss_kappa,
    krippendorff_alpha,
    metrics,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def reliability_data(draw):
    """A coders × units matrix with NaN for missing, and its values drawn from a small domain."""
    n_coders = draw(st.integers(2, 6))
    n_units = draw(st.integers(2, 25))
    domain = draw(st.lists(st.integers(-3, 40), min_size=2, max_size=7, unique=True).map(sorted))
    seed = draw(st.integers(0, 2**32 - 1))
    missing = draw(st.floats(0.0, 0.6))
    generator = np.random.default_rng(seed)
    matrix = generator.choice(np.array(domain, dtype=float), size=(n_coders, n_units))
    matrix[generator.random(matrix.shape) < missing] = np.nan
    return matrix


def to_judgments(matrix: np.ndarray) -> pl.DataFrame:
    coders, units = np.nonzero(~np.isnan(matrix))
    return pl.DataFrame(
        {
            "task_id": [f"u{unit}" for unit in units],
            "annotator_id": [f"c{coder}" for coder in coders],
            "label": [repr(float(value)) for value in matrix[coders, units]],
        }
    )


def reference_alpha(matrix: np.ndarray, level: str) -> float:
    observed = matrix[~np.isnan(matrix)]
    pairable = (np.sum(~np.isnan(matrix), axis=0) >= 2).any()
    if len(np.unique(observed)) < 2 or not pairable:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


@SETTINGS
@given(reliability_data(), st.sampled_from(["nominal", "ordinal", "interval", "ratio"]))
def test_alpha_equals_krippendorff_package(matrix, level):
    judgments = to_judgments(matrix)
    theirs = reference_alpha(matrix, level)
    # Both ways of getting the coincidences: the dense units × values product and the
    # pairs of distinct values within units (used when there are many values).
    dense = krippendorff_alpha(judgments, level=level)
    with patch.object(metrics, "_DENSE_MAX_VALUES", 0):
        pairs = krippendorff_alpha(judgments, level=level)
    for ours in (dense, pairs):
        if math.isnan(theirs):
            assert math.isnan(ours)
        else:
            assert ours == pytest.approx(theirs, abs=1e-9, rel=1e-9)


@SETTINGS
@given(
    st.integers(2, 30),
    st.integers(2, 8),
    st.integers(2, 6),
    st.integers(0, 2**32 - 1),
)
def test_fleiss_equals_statsmodels_with_equal_raters(n_subjects, n_raters, n_categories, seed):
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, n_categories, size=(n_subjects, n_raters))
    table = np.stack([np.bincount(row, minlength=n_categories) for row in labels])
    judgments = pl.DataFrame(
        {
            "task_id": [f"s{s}" for s in range(n_subjects) for _ in range(n_raters)],
            "annotator_id": [f"r{r}" for _ in range(n_subjects) for r in range(n_raters)],
            "label": [f"c{label}" for label in labels.ravel()],
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        theirs = float(statsmodels_fleiss_kappa(table))
    ours = fleiss_kappa(judgments)
    if not math.isfinite(theirs):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(theirs, abs=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@SETTINGS
@given(
    st.integers(3, 40),
    st.integers(2, 6),
    st.sampled_from([None, "linear", "quadratic"]),
    st.integers(0, 2**32 - 1),
)
def test_cohen_matrix_equals_sklearn(n_tasks, n_labels, weights, seed):
    generator = np.random.default_rng(seed)
    n_annotators = 4
    labels = generator.integers(1, n_labels + 1, size=(n_annotators, n_tasks))
    present = generator.random((n_annotators, n_tasks)) < 0.8
    annotators, tasks = np.nonzero(present)
    judgments = pl.DataFrame(
        {
            "task_id": [f"t{t}" for t in tasks],
            "annotator_id": [f"a{a}" for a in annotators],
            "label": [str(labels[a, t]) for a, t in zip(annotators, tasks, strict=True)],
        }
    )
    domain = sorted(judgments.get_column("label").unique().to_list(), key=int)
    pairs = cohen_kappa_matrix(judgments, weights=weights, min_overlap=2)
    expected = 0
    for a in range(n_annotators):
        for b in range(a + 1, n_annotators):
            shared = present[a] & present[b]
            if shared.sum() < 2:
                continue
            expected += 1
            with np.errstate(divide="ignore", invalid="ignore"):
                theirs = cohen_kappa_score(
                    labels[a, shared].astype(str),
                    labels[b, shared].astype(str),
                    weights=weights,
                    labels=domain,
                )
            row = pairs.filter(
                (pl.col("annotator_a") == f"a{a}") & (pl.col("annotator_b") == f"a{b}")
            )
            assert row.height == 1
            assert row["n_shared"][0] == shared.sum()
            ours = row["kappa"][0]
            if math.isfinite(theirs):
                assert ours == pytest.approx(theirs, abs=1e-9)
            else:
                assert ours is None
    assert pairs.height == expected


@pytest.mark.parametrize("weights", ["linear", "quadratic"])
def test_weighted_cohen_places_labels_in_the_declared_order(weights):
    # Ordinal labels whose text order (bad, fair, good, great, poor) is not their scale.
    order = ["poor", "fair", "good", "great"]
    generator = np.random.default_rng(7)
    truth = generator.integers(0, 4, 60)
    a = np.clip(truth + generator.integers(-1, 2, 60), 0, 3)
    b = np.clip(truth + generator.integers(-1, 2, 60), 0, 3)
    judgments = pl.DataFrame(
        {
            "task_id": [f"t{i}" for i in range(60)] * 2,
            "annotator_id": ["a"] * 60 + ["b"] * 60,
            "label": [order[v] for v in a] + [order[v] for v in b],
        }
    )
    ours = cohen_kappa_matrix(judgments, weights=weights, min_overlap=2, label_order=order)
    theirs = cohen_kappa_score(
        [order[v] for v in a], [order[v] for v in b], weights=weights, labels=order
    )
    assert ours["kappa"].item() == pytest.approx(theirs, abs=1e-12)
    text_order = cohen_kappa_matrix(judgments, weights=weights, min_overlap=2)
    assert text_order["kappa"].item() != pytest.approx(theirs, abs=1e-3)
    # Unweighted kappa does not depend on the order.
    plain = cohen_kappa_matrix(judgments, min_overlap=2, label_order=order)
    assert plain["kappa"].item() == pytest.approx(
        cohen_kappa_matrix(judgments, min_overlap=2)["kappa"].item(), abs=1e-12
    )
    with pytest.raises(ValueError, match="label 'great' is not in label_order"):
        cohen_kappa_matrix(judgments, weights=weights, label_order=order[:3])
    with pytest.raises(ValueError, match="label_order lists 'fair' twice"):
        cohen_kappa_matrix(judgments, weights=weights, label_order=[*order, "fair"])


def test_cohen_min_overlap_and_duplicates():
    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t2", "t2", "t3", "t3", "t1"],
            "annotator_id": ["a", "b", "a", "b", "a", "c", "a"],
            "label": ["x", "x", "y", "y", "x", "y", "y"],
        }
    )
    pairs = cohen_kappa_matrix(judgments, min_overlap=2)
    # a's second judgment of t1 ("y") is ignored; a–c share one task only.
    assert pairs.select("annotator_a", "annotator_b", "n_shared", "kappa").rows() == [
        ("a", "b", 2, 1.0)
    ]
    with pytest.raises(ValueError, match="weights must be"):
        cohen_kappa_matrix(judgments, weights="cubic")


def test_kappa_square_takes_any_annotator_id():
    """The square pivots on annotator ids: an annotator named like the index column
    (`annotator_a`) was a duplicate column."""
    from annotation_pipelines.agreement.cohen import kappa_square

    pairs = pl.DataFrame(
        {
            "annotator_a": ["annotator_a", "annotator_b"],
            "annotator_b": ["x", "x"],
            "kappa": [0.5, 0.4],
        }
    )
    square = kappa_square(pairs)
    assert square.columns == ["annotator_id", "annotator_a", "annotator_b", "x"]
    assert square.rows() == [
        ("annotator_a", 1.0, None, 0.5),
        ("annotator_b", None, 1.0, 0.4),
        ("x", 0.5, 0.4, 1.0),
    ]
    named_like_the_index = pairs.with_columns(pl.col("annotator_b").replace("x", "annotator_id"))
    with pytest.raises(ValueError, match="'annotator_id' cannot be a column"):
        kappa_square(named_like_the_index)
