"""Krippendorff's alpha, Fleiss' kappa and percent agreement from per-(task, value) counts.

Each statistic is a small "kernel" built once from the counts. Calling it with per-task
weights re-evaluates the statistic on a reweighted set of tasks, which is exactly what a
bootstrap over tasks needs (a resample is the multiplicity with which each task was drawn),
so a thousand resamples cost a thousand weighted sums, not a thousand group-bys.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from annotation_pipelines.agreement._encoding import (
    TaskValueCounts,
    pairs_within_groups,
    task_value_counts,
)

# Bound on the elements of one block of the values × values distance matrix.
_BLOCK_ELEMENTS = 1 << 22
# Up to this many distinct values, coincidences come from a dense units × values table.
_DENSE_MAX_VALUES = 64
# Up to this many values, their coincidences are summed one dot product per pair of values.
_GRAM_DOT_MAX_ROWS = 12


def _within_range(domain: np.ndarray) -> np.ndarray:
    """`domain` divided by a power of two (exact) when its squared differences would overflow:
    interval and ratio alpha do not change with the unit of the answers, and labels near 1e308
    printed alpha null."""
    magnitude = float(np.max(np.abs(domain))) if domain.size else 0.0
    if not math.isfinite(magnitude) or magnitude <= 2.0**480:
        return domain
    return domain / 2.0 ** (math.ceil(math.log2(magnitude)) - 480)


class AlphaKernel:
    """Krippendorff's alpha, evaluable under per-task weights.

    Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability". Every unit u with
    m_u ≥ 2 values contributes n_uc·(n_uk − [c = k])/(m_u − 1) to the coincidence o_ck;
    n_c = Σ_k o_ck; alpha = 1 − (n − 1)·Σ_ck o_ck δ²_ck / Σ_ck n_c n_k δ²_ck. Nominal
    uses the closed form Σ_{c≠k} o_ck = n − Σ_c o_cc, interval the closed form of
    Σ n_c n_k (c − k)². Ordinal, interval and ratio need the coincidences of distinct
    values: with few values they come from one product Nᵀ·diag(1/(m_u − 1))·N of the
    units × values count table N; with many values, from the pairs of distinct values that
    co-occur in a unit. Cost O(judgments + min(units·values², Σ_u distinct_u²) + values²),
    never O(coders × units).
    """

    def __init__(self, counts: TaskValueCounts, level: str) -> None:
        self.level = level
        self.n_values = counts.n_values
        self.domain = (
            _within_range(counts.domain) if level in ("interval", "ratio") else (counts.domain)
        )
        self.dense = (
            level != "nominal"
            and counts.n_values <= _DENSE_MAX_VALUES
            and counts.n_tasks * counts.n_values <= max(4 * len(counts.task), 1 << 20)
        )
        if self.dense:
            self._dense_table(counts)
            return
        totals = np.bincount(counts.task, weights=counts.count, minlength=counts.n_tasks)
        units = totals[counts.task]
        keep = units >= 2
        self.pairable_tasks = np.flatnonzero(totals >= 2)
        if keep.all():  # the common case: skip four copies
            self.task, self.value, self.count, self.units = (
                counts.task,
                counts.value,
                counts.count,
                units,
            )
        else:
            self.task = counts.task[keep]
            self.value = counts.value[keep]
            self.count = counts.count[keep]
            self.units = units[keep]
        if level == "nominal":
            self.agreeing = self.count * (self.count - 1.0) / (self.units - 1.0)
        else:
            self._pairs()

    def _dense_table(self, counts: TaskValueCounts) -> None:
        # values × units, so the coincidence product runs over contiguous rows.
        table = np.zeros((self.n_values, counts.n_tasks))
        table[counts.value, counts.task] = counts.count
        units = table.sum(axis=0)
        pairable = units >= 2
        self.pairable_tasks = np.flatnonzero(pairable)
        if not pairable.all():
            table, units = table[:, pairable], units[pairable]
        self.table = table
        self.inverse_pairs = 1.0 / (units - 1.0)

    def _pairs(self) -> None:
        # Rows are sorted by task: enumerate, per task, the pairs (c < k) of distinct values.
        n_rows = len(self.task)
        if n_rows == 0:
            self.pair_left = self.pair_right = self.pair_task = np.empty(0, dtype=np.int64)
            self.pair_weight = np.empty(0)
            return
        left, right = pairs_within_groups(self.task)
        self.pair_task = self.task[left]
        self.pair_left = self.value[left]
        self.pair_right = self.value[right]
        self.pair_weight = self.count[left] * self.count[right] / (self.units[left] - 1.0)
        if self.level in ("interval", "ratio"):
            # These distances do not depend on the data's marginals: fold them in once.
            self.pair_weight = self.pair_weight * self._distance(
                self.pair_left, self.pair_right, None
            )

    def _distance(
        self, left: np.ndarray, right: np.ndarray, totals: np.ndarray | None
    ) -> np.ndarray:
        first, second = self.domain[left], self.domain[right]
        if self.level == "interval":
            return (first - second) ** 2
        if self.level == "ratio":
            total = first + second
            return (
                np.divide(
                    first - second,
                    total,
                    out=np.zeros(np.broadcast(first, second).shape),
                    where=total != 0,
                )
                ** 2
            )
        assert totals is not None
        low, high = np.minimum(left, right), np.maximum(left, right)
        cumulative = np.r_[0.0, np.cumsum(totals)]
        between = cumulative[high + 1] - cumulative[low]
        return (between - (totals[low] + totals[high]) / 2.0) ** 2

    def __call__(self, task_weights: np.ndarray | None = None) -> float:
        if self.dense:
            return self._dense_alpha(task_weights)
        weights = 1.0 if task_weights is None else task_weights[self.task]
        totals = np.bincount(self.value, weights=weights * self.count, minlength=self.n_values)
        n = totals.sum()
        if n <= 1:
            return math.nan
        if self.level == "nominal":
            observed = n - np.sum(weights * self.agreeing)
            expected = (n * n - np.dot(totals, totals)) / (n - 1.0)
            return _one_minus_ratio(observed, expected)
        pair_weights = (
            self.pair_weight
            if task_weights is None
            else self.pair_weight * task_weights[self.pair_task]
        )
        if self.level == "ordinal":
            observed = 2.0 * np.sum(
                pair_weights * self._distance(self.pair_left, self.pair_right, totals)
            )
        else:
            observed = 2.0 * np.sum(pair_weights)
        if self.level == "interval":
            mean = np.dot(totals, self.domain) / n
            expected_sum = 2.0 * n * np.dot(totals, (self.domain - mean) ** 2)
        else:
            expected_sum = self._expected_sum(totals)
        return _one_minus_ratio(observed, expected_sum / (n - 1.0))

    def _dense_alpha(self, task_weights: np.ndarray | None) -> float:
        if task_weights is None:
            totals = self.table.sum(axis=1)
            scale = self.inverse_pairs
        else:
            unit_weights = task_weights[self.pairable_tasks]
            totals = self.table @ unit_weights
            scale = self.inverse_pairs * unit_weights
        n = totals.sum()
        if n <= 1:
            return math.nan
        # The diagonal of the coincidences lacks its −n_uc/(m_u − 1) term, but δ_cc = 0.
        coincidences = _weighted_gram(self.table, scale)
        values = np.arange(self.n_values)
        distance = self._distance(values[:, None], values[None, :], totals)
        observed = float(np.sum(coincidences * distance))
        expected = float(totals @ distance @ totals)
        return _one_minus_ratio(observed, expected / (n - 1.0))

    def _expected_sum(self, totals: np.ndarray) -> float:
        # Σ_{c,k} n_c n_k δ²_ck over the values that occur, in blocks to bound memory.
        present = np.flatnonzero(totals > 0)
        block = max(1, _BLOCK_ELEMENTS // max(1, len(present)))
        total = 0.0
        for start in range(0, len(present), block):
            rows = present[start : start + block]
            distance = self._distance(rows[:, None], present[None, :], totals)
            total += float(totals[rows] @ distance @ totals[present])
        return total


class FleissKernel:
    """Fleiss' kappa and percent agreement, generalised to unequal raters per task.

    Fleiss (1971), "Measuring nominal scale agreement among many raters". Per task with
    m_u ≥ 2 ratings, P_u = Σ_c n_uc(n_uc − 1)/(m_u(m_u − 1)) is the share of agreeing
    ordered rater pairs; P̄ is the mean of P_u over those tasks (each task counts once),
    p_c = Σ_u n_uc / Σ_u m_u pools all their ratings, P̄e = Σ_c p_c², and
    kappa = (P̄ − P̄e)/(1 − P̄e). With equal m_u this is exactly Fleiss' statistic; tasks
    with a single rating carry no agreement information and drop out of both terms.
    """

    def __init__(self, counts: TaskValueCounts) -> None:
        totals = np.bincount(counts.task, weights=counts.count, minlength=counts.n_tasks)
        keep = totals[counts.task] >= 2
        self.pairable_tasks = np.flatnonzero(totals >= 2)
        self.n_values = counts.n_values
        self.value = counts.value[keep]
        self.count = counts.count[keep]
        self.row_task = counts.task[keep]
        squares = np.bincount(
            self.row_task, weights=self.count * self.count, minlength=counts.n_tasks
        )
        units = totals[self.pairable_tasks]
        self.units = units
        self.agreement = (squares[self.pairable_tasks] - units) / (units * (units - 1.0))

    def _weights(self, task_weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | float]:
        if task_weights is None:
            return np.ones(len(self.pairable_tasks)), 1.0
        return task_weights[self.pairable_tasks], task_weights[self.row_task]

    def percent_agreement(self, task_weights: np.ndarray | None = None) -> float:
        weights, _ = self._weights(task_weights)
        total = weights.sum()
        return math.nan if total == 0 else float(np.dot(weights, self.agreement) / total)

    def __call__(self, task_weights: np.ndarray | None = None) -> float:
        weights, row_weights = self._weights(task_weights)
        total = weights.sum()
        if total == 0:
            return math.nan
        observed = float(np.dot(weights, self.agreement) / total)
        shares = np.bincount(self.value, weights=row_weights * self.count, minlength=self.n_values)
        shares = shares / shares.sum()
        chance = float(np.dot(shares, shares))
        return math.nan if chance >= 1.0 else (observed - chance) / (1.0 - chance)


def _weighted_gram(table: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """table · diag(scale) · tableᵀ for a few long rows.

    One dot product per pair of rows: for 5 × 200,000 that is several times faster than
    the matrix product, which BLAS does not tile well for this shape. A constant scale (every
    unit has as many values, the usual case) is factored out instead of scaling the table.
    einsum, not np.dot: OpenBLAS threads a long dot product and its idle thread then spins
    on the other core, doubling the CPU the whole statistic costs.
    """
    if len(scale) and scale.min() == scale.max():
        scaled, factor = table, float(scale[0])
    else:
        scaled, factor = table * scale, 1.0
    size = len(table)
    if size > _GRAM_DOT_MAX_ROWS:  # many pairs of rows: one matrix product wins again
        return (scaled @ table.T) * factor
    gram = np.empty((size, size))
    for row in range(size):
        for column in range(row, size):
            gram[row, column] = gram[column, row] = np.einsum("i,i->", scaled[row], table[column])
    return gram * factor


def _one_minus_ratio(observed: float, expected: float) -> float:
    return math.nan if expected <= 0 else float(1.0 - observed / expected)


def krippendorff_alpha(judgments: pl.DataFrame, level: str = "nominal") -> float:
    """Krippendorff's alpha of `judgments` (task_id, annotator_id, label) at `level`.

    Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": alpha = 1 − D_o/D_e,
    the observed disagreement between values paired within a task over the disagreement
    expected if values were paired at random; 1 is perfect agreement, 0 chance. Levels
    "nominal", "ordinal", "interval" and "ratio" choose the distance δ between values; the
    last three read labels as numbers (a ValueError names a label that is not). Tasks with
    fewer than two values are not pairable and drop out. NaN when undefined (no pairable
    task, or a single value overall). Every judgment is one value of its task; the
    annotator column is not needed for the statistic.
    """
    return AlphaKernel(task_value_counts(judgments, level=level), level)()


def fleiss_kappa(judgments: pl.DataFrame) -> float:
    """Fleiss' kappa of nominal `judgments` (task_id, annotator_id, label), any raters per task.

    Fleiss (1971). With m_u ratings of task u: P_u = Σ_c n_uc(n_uc − 1)/(m_u(m_u − 1)),
    P̄ = mean of P_u over tasks with m_u ≥ 2, p_c = pooled share of category c over those
    tasks, P̄e = Σ p_c², kappa = (P̄ − P̄e)/(1 − P̄e). Equal to Fleiss' statistic (and to
    statsmodels' `fleiss_kappa`) when every task has the same number of ratings. NaN when
    undefined.
    """
    return FleissKernel(task_value_counts(judgments, level="nominal"))()


def percent_agreement(judgments: pl.DataFrame) -> float:
    """Mean over tasks with ≥ 2 judgments of the share of judgment pairs that agree (P̄)."""
    return FleissKernel(task_value_counts(judgments, level="nominal")).percent_agreement()
