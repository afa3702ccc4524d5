"""Hierarchical reconciliation: forecasts of nested series that add up, with bands per node.

A fleet's series nest: a cluster's demand is the sum of its accelerator types', a type's the sum
of its workload classes' (training / inference / other), a class's the sum of its virtual
clusters' or teams'. Forecasting every node on its own gives numbers that do not add up;
summing the bottom forecasts (bottom-up) throws away what the aggregates' own forecasts know,
and summing the bottom P90s overstates an aggregate's P90 (its series do not all peak
together). MinTrace (Wickramasuriya, Athanasopoulos & Hyndman, "Optimal forecast reconciliation
for hierarchical and grouped time series through trace minimization", JASA 2019) projects the
base forecasts of every node onto the coherent subspace:

    y~ = S P y^,    P = (S' W^-1 S)^-1 S' W^-1

S the summing matrix (aggregates first, then the bottom series), W the covariance of the base
forecast errors. `mint_shrink` estimates W with the Schafer & Strimmer (2005) shrinkage toward
its diagonal, which stays invertible with few error vectors. P is computed here as Nixtla's
`hierarchicalforecast` (Olivares et al., 2022) computes it, term for term (the tests compare
the two; `projection` says why not by calling it); this module also builds S from the series'
profiles and applies P to many windows at once.

The errors are the base rule's out-of-sample errors at earlier backtest origins whose horizon
had ended (the h-step errors the forecast at hand makes, not one-step in-sample residuals).
Intervals are split conformal on the *reconciled* errors of those windows, per node (Principato
et al., "Conformal prediction for hierarchical data", 2024; hierarchicalforecast's `conformal`
intervals do the same): when actuals add up, y - S P y^ = S P (y - y^), so the reconciled errors
of past windows are one matrix product away. As for single series, each node's band grows along
the horizon as its errors did (`conformal.shaped_half_widths`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from annotation_pipelines.forecasting.conformal import shaped_half_widths
from annotation_pipelines.forecasting.metrics import LEVELS

METHODS = ("bottom_up", "ols", "wls_struct", "mint_shrink")
DEFAULT_METHOD = "mint_shrink"
SEPARATOR = "/"


# Ids are names from telemetry (a Helios file `helios_earth_time.csv` is series `time`), so a
# long frame's ids are prefixed before it is pivoted on them: a node named like the pivot's
# index column would otherwise be a second column of that name.
_WIDE_PREFIX = "id:"


def wide_column(node: str) -> str:
    """The column a node's values take in a frame pivoted on `wide_ids()`."""
    return _WIDE_PREFIX + node


def wide_ids() -> pl.Expr:
    """`id` as the column names `wide_column` gives, to pivot on."""
    return (pl.lit(_WIDE_PREFIX) + pl.col("id")).alias("id")


@dataclass(frozen=True)
class Hierarchy:
    """Nodes (aggregates top-down, then the bottom series), each node's level name, and S."""

    nodes: tuple[str, ...]
    levels: tuple[str, ...]
    summing: np.ndarray  # [len(nodes), len(bottom)]

    @property
    def bottom(self) -> tuple[str, ...]:
        return self.nodes[len(self.nodes) - self.summing.shape[1] :]

    @property
    def aggregates(self) -> tuple[str, ...]:
        return self.nodes[: len(self.nodes) - self.summing.shape[1]]

    def level_of(self, node: str) -> str:
        return self.levels[self.nodes.index(node)]

    def children_sum(self, values: np.ndarray) -> np.ndarray:
        """S @ bottom: every node's value from the bottom series' values ([bottom, ...])."""
        return self.summing @ values

    def nodes_frame(self) -> pl.DataFrame:
        return pl.DataFrame({"id": list(self.nodes), "level": list(self.levels)})

    def without(self, series: Collection[str]) -> Hierarchy:
        """The hierarchy of the other series, as `build_hierarchy` builds it from their
        profiles: an aggregate left with one series, or with the same series as another that
        `build_hierarchy` prefers (a named level over the total, the shallower), is dropped."""
        keep = [k for k, b in enumerate(self.bottom) if b not in series]
        summing = self.summing[:, keep]
        aggregates = range(len(self.aggregates))
        preferred = [r for r in aggregates if self.levels[r] != "total"] + [
            r for r in aggregates if self.levels[r] == "total"
        ]
        seen: set[frozenset[int]] = set()
        kept: set[int] = set()
        for row in preferred:
            members = frozenset(np.flatnonzero(summing[row]).tolist())
            if len(members) > 1 and members not in seen:
                seen.add(members)
                kept.add(row)
        rows = [r for r in aggregates if r in kept] + [len(self.aggregates) + k for k in keep]
        return Hierarchy(
            nodes=tuple(self.nodes[r] for r in rows),
            levels=tuple(self.levels[r] for r in rows),
            summing=summing[rows],
        )


def build_hierarchy(
    profiles: pl.DataFrame, *, levels: Sequence[str], total: str | None = "total"
) -> Hierarchy:
    """The hierarchy total -> levels[0] -> levels[0]/levels[1] -> ... -> the series (`id`).

    `profiles` has one row per bottom series: `id` and the `levels` columns (null reads
    "unknown"). Aggregate ids join the level values with "/" ("earth/H100/training"); the top
    is `total` (None: no grand total). An aggregate of a single series, or with the same series
    as a shallower one, is dropped (it would add nothing but a duplicated error).
    """
    missing = [c for c in ("id", *levels) if c not in profiles.columns]
    if missing:
        raise ValueError(f"hierarchy: profiles lack column(s) {', '.join(missing)}")
    profiles = profiles.with_columns(
        [pl.col(c).cast(pl.String).fill_null("unknown") for c in levels]
    ).sort([*levels, "id"])
    bottom = profiles.get_column("id").cast(pl.String).to_list()
    if len(set(bottom)) != len(bottom):
        raise ValueError("hierarchy: a series appears twice in the profiles")
    candidates: list[tuple[str, str, frozenset[int]]] = []
    for depth in range(1, len(levels) + 1):
        keys = profiles.select(
            pl.concat_str([pl.col(c) for c in levels[:depth]], separator=SEPARATOR).alias("key")
        ).get_column("key")
        groups: dict[str, set[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(key, set()).add(index)
        for key, indices in groups.items():
            candidates.append((key, levels[depth - 1], frozenset(indices)))
    if total is not None:
        candidates.append((total, "total", frozenset(range(len(bottom)))))
    # Of nodes with the same series the shallowest named one stays (a cluster with one class is
    # the cluster; a fleet of one cluster is that cluster, not "total").
    seen: set[frozenset[int]] = set()
    kept: list[tuple[str, str, frozenset[int]]] = []
    for key, level, members in candidates:
        if len(members) > 1 and members not in seen:
            seen.add(members)
            kept.append((key, level, members))
    kept.sort(key=lambda node: -1 if node[1] == "total" else list(levels).index(node[1]))
    if set(k for k, _, _ in kept) & set(bottom):
        raise ValueError("hierarchy: an aggregate's id is also a series id")
    summing = np.zeros((len(kept) + len(bottom), len(bottom)))
    for row, (_, _, members) in enumerate(kept):
        summing[row, sorted(members)] = 1.0
    summing[len(kept) :, :] = np.eye(len(bottom))
    return Hierarchy(
        nodes=tuple([k for k, _, _ in kept] + bottom),
        levels=tuple([lv for _, lv, _ in kept] + ["series"] * len(bottom)),
        summing=summing,
    )


def aggregate_history(history: pl.DataFrame, hierarchy: Hierarchy) -> pl.DataFrame:
    """[id, time, value] for every node: the sum of its series at each time (a series counts
    zero before its first value, demand that did not exist yet, and its last value after its
    last: a telemetry gap is no change, not zero)."""
    every, times = node_values(history, hierarchy)
    return pl.DataFrame(
        {
            "id": pl.Series(hierarchy.nodes, dtype=pl.String).gather(
                np.repeat(np.arange(len(hierarchy.nodes)), times.len())
            ),
            "time": pl.concat([times] * len(hierarchy.nodes)),
            "value": every.ravel(),
        }
    )


def aggregate_supply(supply: pl.DataFrame, hierarchy: Hierarchy) -> pl.DataFrame:
    """[id, time, value] of every node's supply, as `aggregate_history` sums it, but null for a
    node with a series under it that never reports one: its supply is unknown, not that
    series' zero (which read as a series over its supply from the first step)."""
    bottom = list(hierarchy.bottom)
    unknown = [
        bottom.index(series_id)
        for series_id, blank in supply.group_by("id")
        .agg(pl.col("value").is_null().all())
        .iter_rows()
        if blank and series_id in bottom
    ]
    nodes = [node for node, row in zip(hierarchy.nodes, hierarchy.summing, strict=True)
             if row[unknown].any()]  # fmt: skip
    return aggregate_history(supply, hierarchy).with_columns(
        pl.when(pl.col("id").is_in(nodes)).then(None).otherwise(pl.col("value")).alias("value")
    )


def node_values(history: pl.DataFrame, hierarchy: Hierarchy) -> tuple[np.ndarray, pl.Series]:
    """[nodes, times] of every node's sum of its series (`aggregate_history`), and the times."""
    bottom = list(hierarchy.bottom)
    # Summed before the pivot: the pivot's own sum fills a day a series has no row with 0.
    wide = (
        history.filter(pl.col("id").is_in(bottom))
        .group_by("id", "time")
        .agg(pl.col("value").sum())
        .with_columns(wide_ids())
        .pivot(on="id", index="time", values="value")
        .sort("time")
    )
    columns = [wide_column(series_id) for series_id in bottom]
    for column in columns:
        if column not in wide.columns:
            wide = wide.with_columns(pl.lit(0.0).alias(column))
    # Forward first: only the days before a series' first value are left to count zero.
    values = wide.select(columns).fill_null(strategy="forward").fill_null(0.0).to_numpy().T
    return hierarchy.children_sum(values), wide.get_column("time")


def projection(
    hierarchy: Hierarchy, errors: np.ndarray | None, *, method: str = DEFAULT_METHOD
) -> np.ndarray:
    """P ([bottom, nodes]) of `method` from base forecast `errors` ([nodes, observations]; NaN
    columns dropped). Methods that need errors fall back to `wls_struct` (weights by the number
    of series under a node, no errors needed) when fewer than two complete columns exist or
    the errors are all but zero.

    The same P as hierarchicalforecast's `MinTrace` / `BottomUp` (tests compare them, and on
    the 500-series fleet's errors P agrees to 2.4e-13), computed here: for that fleet's 511
    nodes and 15,249 error columns its shrunk covariance, a C++ loop over node pairs, took
    2.0-2.8 s of CPU per call against 0.5-0.7 s for the two BLAS products of
    `shrunk_covariance`, and importing the package costs 1.5-2.4 s of CPU (about 9 s on a
    loaded machine) in every process that reconciles."""
    if method not in METHODS:
        raise ValueError(f"unknown reconciliation {method!r}; choose from {', '.join(METHODS)}")
    summing = hierarchy.summing
    nodes, bottom = summing.shape
    aggregates = nodes - bottom
    # P = J - J W U (U' W U)^-1 U', the form of Wickramasuriya et al. (2019) that
    # hierarchicalforecast solves: J = [0 | I] picks the bottom series and U' = [I | -S_agg]
    # is zero on coherent vectors, so only an (aggregates x aggregates) system is solved.
    select = np.eye(bottom, nodes, aggregates)
    if method == "bottom_up":
        return select
    usable = None
    if errors is not None:
        usable = errors[:, np.all(np.isfinite(errors), axis=0)]
    # Errors that nearly all sum to zero (a fleet idle throughout) give no covariance.
    if method == "mint_shrink" and (
        usable is None or usable.shape[1] < 2 or np.mean(np.abs(usable.sum(axis=1)) < 1e-4) > 0.98
    ):
        method = "wls_struct"
    constraints = np.concatenate([np.eye(aggregates), -summing[:aggregates]], axis=1)
    if method == "ols":
        weighted = constraints
    elif method == "wls_struct" or usable is None:
        weighted = constraints * summing.sum(axis=1)
    else:
        weighted = constraints @ shrunk_covariance(usable)
    coefficients = weighted[:, aggregates:] @ constraints.T[aggregates:] + weighted[:, :aggregates]
    coefficients[np.abs(coefficients) < 1e-10] = 0.0
    dependent = weighted[:, aggregates:] @ select.T[aggregates:]
    dependent[np.abs(dependent) < 1e-10] = 0.0
    try:
        return select - np.linalg.solve(coefficients, dependent).T @ constraints
    except np.linalg.LinAlgError as error:
        raise ValueError(
            f"reconciliation ({method}) is ill-conditioned for this hierarchy's errors; "
            "use another method"
        ) from error


def shrunk_covariance(errors: np.ndarray, *, ridge: float = 2e-8) -> np.ndarray:
    """W of `mint_shrink`: the sample covariance of `errors` ([nodes, observations], no NaN)
    with its off-diagonal shrunk toward zero by the Schafer & Strimmer (2005) intensity

        lambda = sum_{i<j} Var(r_ij) / sum_{i<j} r_ij^2  (clipped to [0, 1]),

    r_ij the correlations, Var(r_ij) estimated from the products of the standardized errors;
    the diagonal at least `ridge`. hierarchicalforecast's estimator term for term (its 2e-8
    guards included); sum_k c_ik c_jk and sum_k (c_ik c_jk)^2 are the two matrix products."""
    count = errors.shape[1]
    eps = 2e-8
    centered = errors - errors.mean(axis=1, keepdims=True)
    products = centered @ centered.T
    squared = centered * centered
    fourth = squared @ squared.T
    inverse_std = 1.0 / (np.sqrt(np.diag(products) / count) + eps)
    scale = np.outer(inverse_std, inverse_std)
    off = ~np.eye(errors.shape[0], dtype=bool)
    # Each pair once (the matrices are symmetric): half the sum over the off-diagonal.
    variance = float(np.sum((scale * scale * (fourth - products * products / count))[off])) / 2
    mean_square = float(np.sum((scale * products / count)[off] ** 2)) / 2
    intensity = np.clip(variance / (count * (count - 1)) / (mean_square + eps), 0.0, 1.0)
    covariance = products / (count - 1) * (1.0 - intensity)
    np.fill_diagonal(covariance, np.maximum(np.diag(products) / (count - 1), ridge))
    return covariance


def reconcile(base: np.ndarray, hierarchy: Hierarchy, p: np.ndarray) -> np.ndarray:
    """S P base: coherent values for every node from base values ([nodes, ...])."""
    return hierarchy.summing @ (p @ base)


def _matrix(frame: pl.DataFrame, hierarchy: Hierarchy, column: str) -> tuple[np.ndarray, list]:
    """[nodes, times] of `column` from a long [id, time, column] frame, and the times."""
    wide = frame.with_columns(wide_ids()).pivot(on="id", index="time", values=column).sort("time")
    absent = [n for n in hierarchy.nodes if wide_column(n) not in wide.columns]
    if absent:
        raise ValueError(f"reconciliation: no forecast for node(s) {', '.join(absent[:5])}")
    nodes = wide.select([wide_column(n) for n in hierarchy.nodes])
    return nodes.to_numpy().T, wide.get_column("time").to_list()


def reconciled_backtest(
    ruled: pl.DataFrame,
    hierarchy: Hierarchy,
    *,
    horizon_span: dt.timedelta,
    calibration_windows: int,
    method: str = DEFAULT_METHOD,
) -> pl.DataFrame:
    """Per backtest origin, the reconciled forecast of every node with conformal bands:
    [id, time, cutoff, value, forecast, lo_80, hi_80, lo_95, hi_95].

    `ruled` is [id, time, cutoff, value, forecast] for every node (a rule's base forecasts).
    At each origin, P is estimated from the base errors of every origin whose horizon had ended
    by then; the same P reconciles the `calibration_windows` latest of those, whose reconciled
    errors give the node's split-conformal quantiles. Origins with no ended origin get null
    bounds (and P from `wls_struct`).
    """
    cutoffs = ruled.get_column("cutoff").unique().sort().to_list()
    base: dict[object, tuple[np.ndarray, np.ndarray, list]] = {}
    for cutoff in cutoffs:
        window = ruled.filter(pl.col("cutoff") == cutoff)
        forecast, times = _matrix(window, hierarchy, "forecast")
        actual, _ = _matrix(window, hierarchy, "value")
        base[cutoff] = (forecast, actual, times)
    frames = []
    for origin in cutoffs:
        ended = [c for c in cutoffs if c + horizon_span <= origin]
        errors = np.concatenate([base[c][1] - base[c][0] for c in ended], axis=1) if ended else None
        p = projection(hierarchy, errors, method=method)
        forecast, actual, times = base[origin]
        point = reconcile(forecast, hierarchy, p)
        quantiles = None
        if ended:
            reconciled_errors = [base[c][1] - reconcile(base[c][0], hierarchy, p) for c in ended]
            quantiles = _node_half_widths(
                reconciled_errors, windows=calibration_windows, steps=len(times)
            )
        frames.append(_long(hierarchy, times, point, actual, quantiles, cutoff=origin))
    return pl.concat(frames).sort("id", "cutoff", "time")


def _long(
    hierarchy: Hierarchy,
    times: list,
    point: np.ndarray,
    actual: np.ndarray | None,
    quantiles: dict[int, np.ndarray] | None,
    *,
    cutoff: object | None = None,
) -> pl.DataFrame:
    rows = []
    for row, node in enumerate(hierarchy.nodes):
        columns: dict[str, object] = {"id": node, "time": times}
        if cutoff is not None:
            columns["cutoff"] = [cutoff] * len(times)
        if actual is not None:
            columns["value"] = actual[row]
        columns["forecast"] = point[row]
        for level in LEVELS:
            q = np.nan if quantiles is None else quantiles[level][row]
            columns[f"lo_{level}"] = point[row] - q
            columns[f"hi_{level}"] = point[row] + q
        rows.append(pl.DataFrame(columns))
    return pl.concat(rows).with_columns(pl.col(pl.Float64).fill_nan(None))


def reconciled_forecast(
    future: pl.DataFrame,
    ruled: pl.DataFrame,
    hierarchy: Hierarchy,
    *,
    calibration_windows: int,
    method: str = DEFAULT_METHOD,
) -> pl.DataFrame:
    """The shipped forecast reconciled: [id, time, forecast, lo_80, hi_80, lo_95, hi_95].

    `future` is [id, time, forecast] (base, every node); P from every backtest origin of
    `ruled` (all have ended by the forecast origin), bands from the reconciled errors of the
    `calibration_windows` latest."""
    cutoffs = ruled.get_column("cutoff").unique().sort().to_list()
    errors = []
    windows = []
    for cutoff in cutoffs:
        window = ruled.filter(pl.col("cutoff") == cutoff)
        forecast, _ = _matrix(window, hierarchy, "forecast")
        actual, _ = _matrix(window, hierarchy, "value")
        errors.append(actual - forecast)
        windows.append((forecast, actual))
    p = projection(hierarchy, np.concatenate(errors, axis=1) if errors else None, method=method)
    forecast, times = _matrix(future, hierarchy, "forecast")
    quantiles = _node_half_widths(
        [a - reconcile(f, hierarchy, p) for f, a in windows],
        windows=calibration_windows,
        steps=len(times),
    )
    point = reconcile(forecast, hierarchy, p)
    return _long(hierarchy, times, point, None, quantiles)


def _node_half_widths(
    errors: list[np.ndarray], *, windows: int, steps: int
) -> dict[int, np.ndarray]:
    """Per level, [nodes, steps] half-widths from the reconciled errors of every ended window
    ([nodes, horizon] each, oldest first): the horizon shape from all of them, the level from
    the `windows` latest (`conformal.shaped_half_widths`)."""
    horizon = max(e.shape[1] for e in errors)
    stacked = np.full((len(errors), errors[0].shape[0], horizon), np.nan)
    for k, error in enumerate(errors):
        stacked[k, :, : error.shape[1]] = error
    return {
        level: np.array(
            [
                shaped_half_widths(
                    stacked[-windows:, node], stacked[:, node], level=level, steps=steps
                )
                for node in range(stacked.shape[1])
            ]
        )
        for level in LEVELS
    }
