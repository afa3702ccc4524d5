"""Krippendorff's alpha over any distance, for every annotation kind, with bootstrap intervals.

Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", and Krippendorff (2004),
*Content Analysis*, ch. 11: for a distance δ on values, alpha = 1 − D_o / D_e where, over the
pairable units u (tasks with m_u ≥ 2 values; n = Σ m_u values in all),

    D_o = (1/n) Σ_u 1/(m_u − 1) Σ_{i≠j in u} δ(v_i, v_j)      (observed, within units)
    D_e = 1/(n(n − 1)) Σ_{i≠j, all pairable values} δ(v_i, v_j) (expected, across units)

This is the coincidence-matrix form written over pairs of values, so it holds for values that
have no finite domain (span sets, box sets, texts). With δ = [a ≠ b] it is the nominal alpha,
with δ = (a − b)² the interval alpha.

How each part is computed:
- Within-unit pairs come from one Polars self-join on `task_id` (each value with every later
  value of its task), and the distance is evaluated once, vectorised, on the two value columns.
- D_e is exact in closed form for the nominal distance (from value counts:
  1 − Σ_c n_c(n_c − 1) / (n(n − 1))) and the interval distance (Σ_{i≠j} (x_i − x_j)² =
  2nΣx² − 2(Σx)²). For any other distance it is exact by enumerating all value pairs when
  there are at most `EXACT_PAIRS` of them, else estimated from `SAMPLED_PAIRS` = 200,000 pairs
  of distinct values drawn uniformly with a fixed seed: for distances in [0, 1] the standard
  error of that estimate is at most 0.5/√200000 ≈ 0.0011 (typically much smaller), so alpha's
  sampling error is about that divided by D_e.
- Bootstrap: tasks are resampled with replacement (`n_resamples` times, fixed `seed`); each
  resample re-weights the per-task sums of D_o, and D_e is held at its full-sample value, as
  in Hayes & Krippendorff (2007), "Answering the call for a standard reliability measure for
  coding data". The interval is the percentile interval at `confidence`. Above
  `BOOTSTRAP_GROUPS` tasks, tasks are dealt at random into that many groups and the groups
  are resampled: group totals are i.i.d. like the tasks, so the interval is the same to
  O(1/groups) and the cost per resample no longer grows with the number of tasks.

`mean_pairwise_distance` is the raw, uncorrected figure: the mean distance over all
within-task pairs, lower is better; `mean_pairwise_agreement` is 1 − it (what Label Studio
reports), a share in [0, 1], higher is better, for distances in [0, 1]. The interval distance
(squared difference) is unbounded: for it `mean_pairwise_distance` is the mean absolute
difference |a − b| over within-task pairs, in the answers' own unit, and
`mean_pairwise_agreement` is None, so that a reader of that field across kinds never takes a
distance for a share. `raw_measure` says which figure the kind has.

Per-kind distance functions take the two sides of the pairs and return one distance each:
`def pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray`. They are
named in `DISTANCES`; those defined in other modules are imported only when used.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from annotation_pipelines.kinds import VALUE_COLUMNS, boxes_in_task_unit, check_kind
from annotation_pipelines.numbers import finite

PairDistance = Callable[[pl.Series, pl.Series], np.ndarray]

EXACT_PAIRS = 2_000_000
SAMPLED_PAIRS = 200_000
# Pairs of values evaluated per call of a distance when enumerating or sampling.
_BLOCK_PAIRS = 1_000_000
# Above this many tasks the bootstrap resamples random groups of tasks (see `_bootstrap`).
BOOTSTRAP_GROUPS = 20_000


def nominal_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """0 where the two values are equal, else 1."""
    return (values_a != values_b).fill_null(True).to_numpy().astype(np.float64)


def interval_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """Squared difference (Krippendorff's interval metric)."""
    difference = values_a.cast(pl.Float64).to_numpy() - values_b.cast(pl.Float64).to_numpy()
    return difference * difference


# Distances by name: a callable, or "module:function" imported on first use.
DISTANCES: dict[str, PairDistance | str] = {
    "nominal": nominal_pair_distances,
    "interval": interval_pair_distances,
    "masi": "annotation_pipelines.agreement.distances:masi_pair_distances",
    "jaccard": "annotation_pipelines.agreement.distances:jaccard_pair_distances",
    "kendall": "annotation_pipelines.agreement.distances:kendall_pair_distances",
    "edit": "annotation_pipelines.agreement.distances:edit_pair_distances",
    "pairwise": "annotation_pipelines.agreement.distances:pairwise_pair_distances",
    "span": "annotation_pipelines.agreement.spans:span_pair_distances",
    "box": "annotation_pipelines.agreement.boxes:box_pair_distances",
}
DEFAULT_DISTANCE: dict[str, str] = {
    "categorical": "nominal",
    "multilabel": "masi",
    "numeric": "interval",
    "ranking": "kendall",
    "pairwise": "pairwise",
    "spans": "span",
    "boxes": "box",
    "text": "edit",
}
# Distances with an exact closed form for D_e.
_CLOSED_FORMS = ("nominal", "interval")


def resolve_distance(distance: str | PairDistance) -> tuple[str, PairDistance]:
    """(name, function) for a distance given by name or as a function."""
    if callable(distance):
        return getattr(distance, "__name__", "custom"), distance
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; expected one of {', '.join(DISTANCES)}")
    target = DISTANCES[distance]
    if callable(target):
        return distance, target
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"distance {distance!r} needs {module_name}, which is not available"
        ) from error
    return distance, getattr(module, function_name)


def _values(judgments: pl.DataFrame, kind: str) -> pl.DataFrame:
    """task_id, the value (a struct for multi-column kinds) and a per-task position."""
    columns = VALUE_COLUMNS[kind]
    missing = [c for c in ("task_id", "annotator_id", *columns) if c not in judgments.columns]
    if missing:
        raise ValueError(
            f"agreement for kind {kind!r}: missing column(s) {', '.join(missing)}; "
            f"have {', '.join(judgments.columns)}"
        )
    value = pl.col(columns[0]) if len(columns) == 1 else pl.struct(list(columns))
    if kind == "boxes":
        judgments = boxes_in_task_unit(judgments)
    return (
        judgments.filter(pl.all_horizontal([pl.col(c).is_not_null() for c in columns]))
        .select(pl.col("task_id").cast(pl.String), "annotator_id", value=value)
        .sort("task_id", maintain_order=True)
    )


def agreement(
    judgments: pl.DataFrame,
    *,
    kind: str,
    distance: str | PairDistance | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Chance-corrected (Krippendorff's alpha) and raw agreement of `judgments` of `kind`.

    `judgments` has `task_id`, `annotator_id` and the kind's value column(s); rows with a null
    value are not pairable and are left out. `distance` is a name from `DISTANCES`, a function
    `pair_distances(values_a, values_b) -> np.ndarray`, or None for the kind's default. For a
    multi-column kind (pairwise) the function receives a struct Series of its columns.
    Returns `krippendorff_alpha`, `distance`, `mean_pairwise_agreement`,
    `mean_pairwise_distance`, `raw_measure`,
    `n_tasks`, `n_annotators`, `n_judgments`, `n_pairs`, `ci_low`, `ci_high`, `confidence`,
    `expected_distance_exact` (see the module docstring). Statistics that need two values in
    one task are None when no task has them.
    """
    check_kind(kind)
    name, function = resolve_distance(distance or DEFAULT_DISTANCE[kind])
    values = _values(judgments, kind)
    n_annotators = values.get_column("annotator_id").n_unique()
    per_task = values.group_by("task_id").agg(m=pl.len())
    pairable = per_task.filter(pl.col("m") >= 2)
    values = values.join(pairable, on="task_id", how="semi").with_columns(
        position=pl.int_range(pl.len()).over("task_id")
    )
    result: dict[str, Any] = {
        "krippendorff_alpha": None,
        "distance": name,
        "mean_pairwise_agreement": None,
        "mean_pairwise_distance": None,
        "raw_measure": "mean_absolute_difference"
        if name == "interval"
        else "1 - mean_pairwise_distance",
        "n_tasks": per_task.height,
        "n_annotators": n_annotators,
        "n_judgments": int(per_task.get_column("m").sum()) if per_task.height else 0,
        "n_pairs": 0,
        "ci_low": None,
        "ci_high": None,
        "confidence": confidence,
        "expected_distance_exact": None,
    }
    if values.height == 0:
        return result
    scale = 0
    if name == "interval":
        values, scale = _power_of_two_scaled(values)

    left = values.select("task_id", "position", value_a="value")
    right = values.select("task_id", position_b="position", value_b="value")
    pairs = left.join(right, on="task_id").filter(pl.col("position") < pl.col("position_b"))
    within = np.asarray(
        function(pairs.get_column("value_a"), pairs.get_column("value_b")), dtype=np.float64
    )
    task_codes = pairable.sort("task_id").with_row_index("task_code")
    pair_tasks = (
        pairs.select("task_id")
        .join(
            task_codes.select("task_id", "task_code"),
            on="task_id",
            how="left",
            maintain_order="left",
        )
        .get_column("task_code")
        .to_numpy()
    )
    m = task_codes.get_column("m").to_numpy().astype(np.float64)
    n = float(m.sum())
    # Both orders of each pair (i, j) and (j, i) count: hence 2 / (m_u − 1).
    task_sums = np.bincount(pair_tasks, weights=within, minlength=m.size) * 2.0 / (m - 1.0)
    observed = float(task_sums.sum()) / n
    expected, exact = _expected_distance(values.get_column("value"), name, function, seed=seed)
    result["expected_distance_exact"] = exact
    result["n_pairs"] = int(within.size)
    if name == "interval":
        a = pairs.get_column("value_a").cast(pl.Float64).to_numpy()
        b = pairs.get_column("value_b").cast(pl.Float64).to_numpy()
        # Beyond the largest float the difference is infinite, which `finite` reports as null.
        with np.errstate(over="ignore"):
            difference = float(np.ldexp(np.mean(np.abs(a - b)), scale))
        result["mean_pairwise_distance"] = finite(difference)
    else:
        result["mean_pairwise_distance"] = float(within.mean())
        result["mean_pairwise_agreement"] = 1.0 - float(within.mean())
    result["krippendorff_alpha"] = _alpha(observed, expected)
    if n_resamples > 0 and expected > 0:
        low, high = _bootstrap(
            task_sums, m, expected, n_resamples=n_resamples, seed=seed, confidence=confidence
        )
        result["ci_low"], result["ci_high"] = low, high
    return result


def _power_of_two_scaled(values: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """(`values` with `value` divided by the power of two 2^k that brings the largest into
    [0.5, 1), k): squared differences of finite answers near 1e200 or ±1e308 overflow, and
    alpha, a ratio of squared differences, does not change with the scale. A power of two
    divides exactly, so ordinary answers give the very same figures."""
    x = values.get_column("value").cast(pl.Float64).to_numpy()
    largest = float(np.max(np.abs(x))) if x.size else 0.0
    if largest == 0.0 or not math.isfinite(largest):
        return values, 0
    _, exponent = math.frexp(largest)
    return values.with_columns(value=pl.Series(np.ldexp(x, -exponent))), exponent


def _alpha(observed: float, expected: float) -> float | None:
    if expected <= 0:
        # Every pairable value is the same: alpha is undefined (as in `krippendorff_alpha`).
        return None
    return 1.0 - observed / expected


def _distinct_values(values: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """The distinct values (in order of first appearance) and each value's index among them;
    every value its own where the type cannot be grouped."""
    rows = values.to_frame("value").with_row_index("row")
    try:
        grouped = rows.group_by("value", maintain_order=True).agg(pl.col("row"))
    except pl.exceptions.PolarsError:
        return values, np.arange(values.len())
    members = grouped.with_row_index("code").select("code", "row").explode("row")
    codes = np.empty(values.len(), dtype=np.int64)
    codes[members.get_column("row").to_numpy()] = members.get_column("code").to_numpy()
    return grouped.get_column("value"), codes


def _expected_distance(
    values: pl.Series, name: str, function: PairDistance, *, seed: int
) -> tuple[float, bool]:
    """D_e over all pairs of distinct pairable values: (value, whether it is exact)."""
    n = values.len()
    if n < 2:
        return 0.0, True
    if name == "nominal":
        counts = values.value_counts().get_column("count").to_numpy().astype(np.float64)
        return 1.0 - float((counts * (counts - 1.0)).sum()) / (n * (n - 1.0)), True
    if name == "interval":
        x = values.cast(pl.Float64).to_numpy()
        # Centred first: the same sum of squares without cancellation on large values.
        x = x - x.mean()
        total = 2.0 * n * float(np.dot(x, x)) - 2.0 * float(x.sum()) ** 2
        return total / (n * (n - 1.0)), True
    n_pairs = n * (n - 1) // 2
    if n_pairs <= EXACT_PAIRS:
        # Values repeat (rankings of a few items, the same span set): each pair of distinct
        # values is measured once, weighted by how many value pairs it stands for, c_p·c_q
        # between two values and c_p(c_p − 1)/2 within one. The same sum over all n(n − 1)/2
        # pairs, with one distance per distinct pair instead of one per pair.
        distinct, codes = _distinct_values(values)
        counts = np.bincount(codes, minlength=distinct.len()).astype(np.float64)
        first, second = np.triu_indices(distinct.len(), k=0)
        weights = np.where(
            first == second,
            counts[first] * (counts[first] - 1.0) / 2.0,
            counts[first] * counts[second],
        )
        used = weights > 0
        first, second, weights = first[used], second[used], weights[used]
        total = 0.0
        for start in range(0, first.size, _BLOCK_PAIRS):
            stop = start + _BLOCK_PAIRS
            distances = function(
                distinct.gather(first[start:stop]), distinct.gather(second[start:stop])
            )
            total += float(np.dot(np.asarray(distances, np.float64), weights[start:stop]))
        return total / n_pairs, True
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, SAMPLED_PAIRS)
    # A uniform partner among the n − 1 other values.
    second = (first + rng.integers(1, n, SAMPLED_PAIRS)) % n
    # The same sampled pairs, each distinct (value, value) pair among them measured once.
    distinct, codes = _distinct_values(values)
    k = distinct.len()
    measured, back = np.unique(codes[first] * k + codes[second], return_inverse=True)
    distances = np.asarray(
        function(distinct.gather(measured // k), distinct.gather(measured % k)), np.float64
    )[back]
    return float(distances.mean()), False


def _bootstrap(
    task_sums: np.ndarray,
    m: np.ndarray,
    expected: float,
    *,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> tuple[float | None, float | None]:
    """Percentile interval of alpha over resamples of tasks (D_e held fixed)."""
    rng = np.random.default_rng(seed)
    if m.size > BOOTSTRAP_GROUPS:
        # Tasks in random groups: group totals are independent and identically distributed
        # like the tasks themselves, so resampling groups gives the same sampling variance of
        # the ratio (to O(1/groups)) at a fraction of the cost per resample.
        group = rng.permutation(m.size) % BOOTSTRAP_GROUPS
        task_sums = np.bincount(group, weights=task_sums, minlength=BOOTSTRAP_GROUPS)
        m = np.bincount(group, weights=m, minlength=BOOTSTRAP_GROUPS)
    units = np.stack([task_sums, m], axis=1)
    alphas = np.empty(n_resamples)
    for index in range(n_resamples):
        drawn = np.take(units, rng.integers(0, m.size, m.size, dtype=np.int64), axis=0).sum(0)
        alphas[index] = 1.0 - float(drawn[0]) / float(drawn[1]) / expected
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(alphas, [tail, 1.0 - tail])
    return finite(low), finite(high)
