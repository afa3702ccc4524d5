"""Generic Krippendorff alpha over any distance: equal to the references where they exist."""

from __future__ import annotations

import krippendorff
import numpy as np
import polars as pl
import pytest

from annotation_pipelines.agreement import krippendorff_alpha
from annotation_pipelines.agreement.kinds import agreement


def nominal(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    return (values_a != values_b).to_numpy().astype(np.float64)


def interval(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    return (values_a.to_numpy() - values_b.to_numpy()) ** 2


def jaccard(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    out = []
    for a, b in zip(values_a.to_list(), values_b.to_list(), strict=True):
        union = set(a) | set(b)
        out.append(0.0 if not union else 1.0 - len(set(a) & set(b)) / len(union))
    return np.asarray(out)


def reliability_matrix(
    rng: np.random.Generator, *, n_annotators: int, n_tasks: int, missing: float
) -> np.ndarray:
    truth = rng.normal(3.0, 1.5, n_tasks)
    matrix = truth[None, :] + rng.normal(0.0, 1.0, (n_annotators, n_tasks))
    matrix = np.round(matrix, 1)
    matrix[rng.random(matrix.shape) < missing] = np.nan
    return matrix


def long_frame(matrix: np.ndarray, column: str = "value") -> pl.DataFrame:
    annotators, tasks = np.nonzero(~np.isnan(matrix))
    return pl.DataFrame(
        {
            "task_id": [f"t{t}" for t in tasks],
            "annotator_id": [f"a{a}" for a in annotators],
            column: matrix[annotators, tasks],
        }
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_numeric_interval_alpha_equals_krippendorff_package(seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = reliability_matrix(rng, n_annotators=6, n_tasks=150, missing=0.35)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="interval")
    judgments = long_frame(matrix)
    named = agreement(judgments, kind="numeric", n_resamples=200, seed=seed)
    assert named["distance"] == "interval"
    assert named["krippendorff_alpha"] == pytest.approx(expected, abs=1e-9)
    # The same distance as a plain function: D_e by exact enumeration, same answer.
    custom = agreement(judgments, kind="numeric", distance=interval, n_resamples=0)
    assert custom["expected_distance_exact"] is True
    assert custom["krippendorff_alpha"] == pytest.approx(expected, abs=1e-9)
    assert named["ci_low"] < named["krippendorff_alpha"] < named["ci_high"]
    # Raw figure for the interval distance: the mean absolute difference within tasks.
    assert named["raw_measure"] == "mean_absolute_difference"
    frame = judgments.join(judgments, on="task_id").filter(
        pl.col("annotator_id") < pl.col("annotator_id_right")
    )
    mad = (frame.get_column("value") - frame.get_column("value_right")).abs().mean()
    assert named["mean_pairwise_distance"] == pytest.approx(mad, abs=1e-12)
    # A distance is not a share of agreeing pairs: the field every kind reads as one, higher
    # better, stays empty rather than holding it.
    assert named["mean_pairwise_agreement"] is None


def test_categorical_nominal_alpha_equals_existing_metric() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for task in range(300):
        truth = rng.integers(0, 4)
        for annotator in rng.choice(8, size=rng.integers(1, 6), replace=False):
            label = truth if rng.random() < 0.7 else rng.integers(0, 4)
            rows.append((f"t{task}", f"a{annotator}", f"c{label}"))
    judgments = pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")
    expected = krippendorff_alpha(judgments)
    result = agreement(judgments, kind="categorical", n_resamples=300, seed=1)
    assert result["distance"] == "nominal"
    assert result["krippendorff_alpha"] == pytest.approx(expected, abs=1e-12)
    custom = agreement(judgments, kind="categorical", distance=nominal, n_resamples=0)
    assert custom["krippendorff_alpha"] == pytest.approx(expected, abs=1e-12)
    assert result["n_tasks"] == judgments.get_column("task_id").n_unique()
    assert result["n_judgments"] == judgments.height
    assert result["ci_low"] < expected < result["ci_high"]
    pairs = judgments.join(judgments, on="task_id").filter(
        pl.col("annotator_id") < pl.col("annotator_id_right")
    )
    raw = (pairs.get_column("label") == pairs.get_column("label_right")).mean()
    assert result["mean_pairwise_agreement"] == pytest.approx(raw, abs=1e-12)
    assert result["mean_pairwise_distance"] == pytest.approx(1 - raw, abs=1e-12)
    assert result["raw_measure"] == "1 - mean_pairwise_distance"


def test_sampled_expected_distance_is_close_to_exact() -> None:
    """Above EXACT_PAIRS values pairs, D_e is sampled; its error stays near the stated bound."""
    rng = np.random.default_rng(3)
    matrix = reliability_matrix(rng, n_annotators=5, n_tasks=800, missing=0.1)
    judgments = long_frame(matrix)
    assert judgments.height * (judgments.height - 1) // 2 > 2_000_000
    exact = agreement(judgments, kind="numeric", n_resamples=0)
    scaled = judgments.with_columns(value=pl.col("value") / 20.0)

    def bounded(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
        return np.minimum(interval(values_a, values_b), 1.0)

    sampled = agreement(scaled, kind="numeric", distance=bounded, n_resamples=0)
    assert sampled["expected_distance_exact"] is False
    assert sampled["krippendorff_alpha"] == pytest.approx(exact["krippendorff_alpha"], abs=0.01)


def test_list_valued_kind_with_a_custom_distance() -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t2", "t2", "t3", "t3", "t4"],
            "annotator_id": ["a", "b", "a", "b", "a", "b", "a"],
            "labels": [["x"], ["x"], ["x", "y"], ["y"], [], ["z"], ["x"]],
        },
        schema={"task_id": pl.String, "annotator_id": pl.String, "labels": pl.List(pl.String)},
    )
    result = agreement(judgments, kind="multilabel", distance=jaccard, n_resamples=0)
    # Pairs: d = 0, 0.5, 1 -> D_o = (2/1 * 1.5) / 6 = 0.5; 6 values, 15 pairs for D_e.
    values = judgments.filter(pl.col("task_id") != "t4").get_column("labels")
    first, second = np.triu_indices(6, k=1)
    d_e = jaccard(values.gather(first), values.gather(second)).mean()
    assert result["krippendorff_alpha"] == pytest.approx(1 - 0.5 / d_e)
    assert result["mean_pairwise_agreement"] == pytest.approx(0.5)
    assert result["n_tasks"] == 4 and result["n_judgments"] == 7 and result["n_annotators"] == 2


def test_unknown_kind_and_missing_columns_are_named() -> None:
    frame = pl.DataFrame({"task_id": ["t"], "annotator_id": ["a"]})
    with pytest.raises(ValueError, match="unknown kind 'shapes'"):
        agreement(frame, kind="shapes")
    with pytest.raises(ValueError, match=r"missing column.*value"):
        agreement(frame, kind="numeric")


def test_a_million_judgments_recover_the_generating_reliability() -> None:
    """At scale (bootstrap over random groups of tasks) alpha is var(truth)/var(value) = 0.8."""
    rng = np.random.default_rng(0)
    n_tasks, per_task = 250_000, 4
    tasks = np.repeat(np.arange(n_tasks), per_task)
    judgments = pl.DataFrame(
        {
            "task_id": pl.Series(tasks).cast(pl.String),
            "annotator_id": pl.Series(rng.integers(0, 500, tasks.size)).cast(pl.String),
            "value": np.repeat(rng.normal(0, 1, n_tasks), per_task)
            + rng.normal(0, 0.5, tasks.size),
        }
    )
    result = agreement(judgments, kind="numeric", n_resamples=200)
    assert result["n_judgments"] == 1_000_000 and result["n_pairs"] == 1_500_000
    assert result["krippendorff_alpha"] == pytest.approx(0.8, abs=0.005)
    assert result["ci_low"] < result["krippendorff_alpha"] < result["ci_high"]
    assert result["ci_high"] - result["ci_low"] < 0.005


def test_undefined_alpha_is_none_not_a_number() -> None:
    single = pl.DataFrame(
        {"task_id": ["t1", "t2"], "annotator_id": ["a", "b"], "label": ["x", "y"]}
    )
    result = agreement(single, kind="categorical")
    assert result["krippendorff_alpha"] is None and result["n_pairs"] == 0
    assert result["n_tasks"] == 2 and result["n_judgments"] == 2
    same = pl.DataFrame({"task_id": ["t1", "t1"], "annotator_id": ["a", "b"], "value": [2.0, 2.0]})
    constant = agreement(same, kind="numeric")
    assert constant["krippendorff_alpha"] is None and constant["ci_low"] is None
    assert constant["mean_pairwise_distance"] == 0.0  # mean absolute difference
    assert constant["mean_pairwise_agreement"] is None
