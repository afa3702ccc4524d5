"""Numeric and ordinal ratings: one value per task with a bootstrap confidence interval.

Estimators: the mean; the median; the trimmed mean (the mean after dropping
`floor(trim · n)` of the lowest and as many of the highest ratings, as in
`scipy.stats.trim_mean`), which keeps most of the mean's efficiency while ignoring a careless
or adversarial rater. Ordinal ratings (1–5 stars, Likert items) are aggregated on their numeric
codes; the median is the estimator that respects an ordinal scale.

Interval: the percentile bootstrap (B. Efron, "Bootstrap Methods: Another Look at the
Jackknife", Annals of Statistics 7(1), 1979, 1–26; B. Efron and R. J. Tibshirani, "An
Introduction to the Bootstrap", Chapman & Hall, 1993, ch. 13). Each task's ratings are
resampled with replacement `n_resamples` times, the statistic is recomputed on every resample,
and the interval is the (α/2, 1 − α/2) quantile pair of those replicates. With a handful of
ratings per task the percentile interval is narrow and the resampling distribution discrete:
it describes rater disagreement on that task, not a guaranteed coverage. A task with a single
rating has a zero-width interval.

The bootstrap is vectorised over tasks with the same number of ratings: their ratings form a
(tasks × n) matrix and one draw of indices of shape (resamples × tasks × n) serves a whole
block, sized to keep temporaries around 32 MB.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.encoding import encode_column

STATISTICS = ("mean", "median", "trimmed_mean")
_BLOCK_ELEMENTS = 1 << 22


def aggregate_numeric(
    judgments: pl.DataFrame,
    *,
    statistic: Literal["mean", "median", "trimmed_mean"] = "mean",
    trim: float = 0.1,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per task: `task_id`, `value`, `low`, `high`, `n_votes`.

    `judgments` has `task_id` and a numeric `label` (text that parses as a number is
    accepted; `annotator_id` is not needed). `statistic` is the point estimate; `trim` the
    share cut from each end for `trimmed_mean`; `low`/`high` the percentile bootstrap
    interval at `confidence` from `n_resamples` resamples drawn with `seed`. Tasks appear in
    order of first appearance (ascending for integer task ids).
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {STATISTICS}")
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    missing = [column for column in ("task_id", "label") if column not in judgments.columns]
    if missing:
        raise ValueError(
            f"judgments: missing column(s) {', '.join(missing)}; "
            f"have {', '.join(judgments.columns)}"
        )
    ratings = _ratings(judgments)
    task_codes, task_values = encode_column(judgments.get_column("task_id"), sort=False)
    n_tasks = task_values.len()
    order = np.argsort(task_codes, kind="stable")
    sorted_ratings = ratings[order]
    counts = np.bincount(task_codes, minlength=n_tasks)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    value = np.empty(n_tasks)
    low = np.empty(n_tasks)
    high = np.empty(n_tasks)
    rng = np.random.default_rng(seed)
    quantiles = np.array([(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    for size in np.unique(counts):
        tasks = np.flatnonzero(counts == size)
        matrix = sorted_ratings[starts[tasks, None] + np.arange(size)[None, :]]
        value[tasks] = _statistic(matrix, statistic, trim)
        if size == 1:
            low[tasks] = high[tasks] = matrix[:, 0]
            continue
        block = max(1, _BLOCK_ELEMENTS // (n_resamples * int(size)))
        for first in range(0, tasks.shape[0], block):
            rows = matrix[first : first + block]
            draws = rng.integers(0, size, size=(n_resamples, rows.shape[0], size))
            resampled = np.take_along_axis(rows[None, :, :], draws, axis=2)
            replicates = _statistic(resampled, statistic, trim)
            bounds = np.quantile(replicates, quantiles, axis=0)
            low[tasks[first : first + block]] = bounds[0]
            high[tasks[first : first + block]] = bounds[1]
    return pl.DataFrame(
        {
            "task_id": task_values,
            "value": pl.Series(value, dtype=pl.Float64),
            "low": pl.Series(low, dtype=pl.Float64),
            "high": pl.Series(high, dtype=pl.Float64),
            "n_votes": pl.Series(counts, dtype=pl.UInt32),
        }
    )


def _ratings(judgments: pl.DataFrame) -> np.ndarray:
    column = judgments.get_column("label")
    if column.null_count():
        raise ValueError(f"judgments: column 'label' has {column.null_count()} empty value(s)")
    if not column.dtype.is_numeric():
        parsed = column.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        bad = parsed.is_null()
        if bad.any():
            row = int(bad.arg_true()[0])
            raise ValueError(
                f"judgments: row {row} column 'label': {column[row]!r} is not a number"
            )
        column = parsed
    return column.cast(pl.Float64).to_numpy()


def _statistic(values: np.ndarray, statistic: str, trim: float) -> np.ndarray:
    """The statistic along the last axis."""
    if statistic == "mean":
        return values.mean(axis=-1)
    ordered = np.sort(values, axis=-1)
    size = ordered.shape[-1]
    if statistic == "median":
        middle = size // 2
        if size % 2:
            return ordered[..., middle]
        return (ordered[..., middle - 1] + ordered[..., middle]) / 2
    cut = int(trim * size)
    return ordered[..., cut : size - cut].mean(axis=-1)
