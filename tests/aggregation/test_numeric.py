"""Numeric ratings: estimates against NumPy/SciPy, the interval against scipy.stats.bootstrap."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from annotation_pipelines.aggregation.numeric import aggregate_numeric

RATINGS = {"a": [1.0, 2.0, 2.0, 3.0, 10.0], "b": [4.0, 4.0, 5.0], "c": [3.0]}


def _frame(ratings: dict[str, list[float]]) -> pl.DataFrame:
    rows = [
        (task, f"w{i}", value) for task, values in ratings.items() for i, value in enumerate(values)
    ]
    return pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")


def _by_task(result: pl.DataFrame) -> dict:
    return {row["task_id"]: row for row in result.iter_rows(named=True)}


def test_point_estimates_by_hand() -> None:
    frame = _frame(RATINGS)
    mean = _by_task(aggregate_numeric(frame, statistic="mean", n_resamples=10))
    median = _by_task(aggregate_numeric(frame, statistic="median", n_resamples=10))
    trimmed = _by_task(aggregate_numeric(frame, statistic="trimmed_mean", trim=0.2, n_resamples=10))
    assert mean["a"]["value"] == pytest.approx(18 / 5)
    assert median["a"]["value"] == 2.0
    assert median["b"]["value"] == 4.0
    # trim 0.2 of 5 ratings drops one from each end: mean of 2, 2, 3.
    assert trimmed["a"]["value"] == pytest.approx(7 / 3)
    assert trimmed["a"]["value"] == pytest.approx(stats.trim_mean(RATINGS["a"], 0.2))
    assert [mean[task]["n_votes"] for task in "abc"] == [5, 3, 1]
    # One rating: the interval collapses onto it.
    assert mean["c"]["low"] == mean["c"]["high"] == mean["c"]["value"] == 3.0


def test_even_count_median_averages_the_middle_pair() -> None:
    result = aggregate_numeric(_frame({"t": [1.0, 2.0, 4.0, 9.0]}), statistic="median")
    assert result["value"].item() == 3.0


@pytest.mark.parametrize("statistic", ["mean", "median", "trimmed_mean"])
def test_interval_matches_scipy_bootstrap(statistic: str) -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(3.0, 1.0, 12).round(1)
    frame = _frame({"t": list(values)})
    ours = aggregate_numeric(frame, statistic=statistic, trim=0.1, n_resamples=20_000, seed=1)
    reference_statistic = {
        "mean": np.mean,
        "median": np.median,
        "trimmed_mean": lambda x, axis=-1: stats.trim_mean(x, 0.1, axis=axis),
    }[statistic]
    reference = stats.bootstrap(
        (values,),
        reference_statistic,
        n_resamples=20_000,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(2),
    ).confidence_interval
    # Two independent Monte Carlo runs of the same percentile interval.
    assert ours["low"].item() == pytest.approx(reference.low, abs=0.06)
    assert ours["high"].item() == pytest.approx(reference.high, abs=0.06)
    assert ours["low"].item() <= ours["value"].item() <= ours["high"].item()


def test_text_ratings_seeded_and_bad_value_reported() -> None:
    frame = _frame(RATINGS).with_columns(pl.col("label").cast(pl.String))
    first = aggregate_numeric(frame, seed=5)
    assert first.equals(aggregate_numeric(frame, seed=5))
    assert first.columns == ["task_id", "value", "low", "high", "n_votes"]
    bad = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("x")).otherwise("label").alias("label")
    )
    with pytest.raises(ValueError, match="row 2 column 'label'"):
        aggregate_numeric(bad)
    with pytest.raises(ValueError, match="statistic"):
        aggregate_numeric(frame, statistic="mode")  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(st.integers(1, 5), min_size=1, max_size=9),
    statistic=st.sampled_from(["mean", "median", "trimmed_mean"]),
)
def test_interval_brackets_estimate_within_range(values: list[int], statistic: str) -> None:
    result = aggregate_numeric(
        _frame({"t": [float(v) for v in values]}), statistic=statistic, n_resamples=200
    )
    row = result.row(0, named=True)
    assert min(values) <= row["low"] <= row["high"] <= max(values)
    assert min(values) <= row["value"] <= max(values)


@pytest.mark.parametrize("statistic", ["mean", "median", "trimmed_mean"])
@pytest.mark.parametrize("values", [[1.0, 2.0, 2.0, 7.0], [5.0, 1.0, 4.0, 4.0, 2.0]])
def test_exact_bootstrap_equals_brute_force_enumeration(statistic: str, values: list) -> None:
    # Few ratings: the distinct resamples are enumerated exactly. Check against all n^n
    # equally likely index tuples, the bootstrap distribution by definition.
    n = len(values)
    tuples = np.array(np.meshgrid(*[np.arange(n)] * n, indexing="ij")).reshape(n, -1).T
    resamples = np.asarray(values)[tuples]
    replicates = {
        "mean": resamples.mean(axis=1),
        "median": np.median(resamples, axis=1),
        "trimmed_mean": stats.trim_mean(resamples, 0.25, axis=1),
    }[statistic]
    ordered = np.sort(replicates)
    cumulative = np.arange(1, ordered.shape[0] + 1) / ordered.shape[0]

    def inverse(q: float) -> float:
        return float(ordered[np.argmax(cumulative >= q - 1e-12)])

    result = aggregate_numeric(
        _frame({"t": values}), statistic=statistic, trim=0.25, confidence=0.9, seed=123
    ).row(0, named=True)
    assert result["low"] == pytest.approx(inverse(0.05), abs=1e-12)
    assert result["high"] == pytest.approx(inverse(0.95), abs=1e-12)


@pytest.mark.parametrize("statistic", ["mean", "median", "trimmed_mean"])
def test_answers_near_the_largest_float_stay_finite(statistic: str) -> None:
    # Two answers of 1e308 summed overflow to inf, so the task's value was printed as `inf`.
    frame = _frame({"a": [1e308, 1e308, 1.7e308], "b": [-1e308, -1.5e308], "c": [1.0, 3.0]})
    result = _by_task(aggregate_numeric(frame, statistic=statistic, n_resamples=50))
    for task, values in {"a": [1e308, 1e308, 1.7e308], "b": [-1e308, -1.5e308]}.items():
        row = result[task]
        assert all(np.isfinite([row["value"], row["low"], row["high"]])), (task, row)
        assert min(values) <= row["low"] <= row["value"] <= row["high"] <= max(values)
    assert result["b"]["value"] == pytest.approx(-1.25e308)
    # Ordinary answers beside them are computed as they are, bit for bit.
    assert result["c"]["value"] == 2.0
