"""Conformal 80/95% intervals from backtest residuals, and the interval (Winkler) score.

Split conformal prediction (Vovk, Gammerman & Shafer, 2005; for forecasts: Stankeviciute,
Alaa & van der Schaar, NeurIPS 2021): the errors of a forecast rule on past backtest windows
whose whole horizon is observed are the calibration set; the interval at level L is the point
forecast plus or minus their ceil((n + 1) L) / n empirical quantile.

The score is normalized by the horizon (normalized conformal: Papadopoulos, Vovk & Gammerman,
2008; Lei et al., JASA 2018, with the step h of the horizon as the only covariate of the
scale): s(h) = a + b sqrt(h), a, b >= 0, fitted by least squares to the series' mean absolute
error at each step over *every* ended backtest window (the sqrt form is how the h-step error of
a random walk grows; a = 1, b = 0 when nothing grows). The conformal quantile of |e| / s(h) is
taken over the series' `windows` most recent ended windows, pooled over the steps, and the
band at step h is that quantile times s(h). Two things are estimated on two time scales: how
errors grow along the horizon is a property of the rule and the series, stable enough to need
all the history (four windows often show no growth by chance), while how large they are now
changes week to week, so the recent windows set the level. The shape is fitted on data that
include the calibration windows; two parameters over thousands of residuals, a negligible
departure from the exchangeability of split conformal.

Measured on the held-out Helios weeks with the same point forecasts (`benchmarks/
bench_capacity.py --interval-study`): against the flat quantile (s = 1) it covers the month's
last week 0.935 instead of 0.891 with a lower Winkler-95 on every one of the four test weeks.
Not adopted, each fixed before it was run: a quantile per 24-h band of the horizon
(Stankeviciute et al.'s per-step calibration; noisier per band); 8 calibration windows (every
week covered 100%: the older windows follow a day of zero demand on two clusters); the sqrt(h)
growth imposed rather than fitted (covers the last week; Winkler-95 +23% over the four weeks,
vc6YE's errors do not grow); the growth fitted on the 4 recent windows alone (too few: flat for
vcMod); recency-weighted conformal (Barber, Candes, Ramdas & Tibshirani, Ann. Stat. 2023,
weights 0.99 per hour of age) over every ended window (over-covers: the zero-demand day keeps
weight) or over every residual observed by the origin, partly ended windows too (covers the
last week, over-covers the first two); the freshest residual per step; quantiles of the signed
errors (asymmetric bands); the point shifted by the recent median error; a tail or a horizon
shape pooled over clusters; normalized conformal pooled over clusters (Papadopoulos et al.,
2008; Lei et al., 2018: by recent seasonal MAE or by GPU quota); and adaptive conformal
inference (Gibbs & Candes, NeurIPS 2021, gamma = 0.005: with a one-week
horizon and daily origins only a handful of weeks have ended before a test origin). The shipped
one was picked among them by a rule fixed in advance on the three earlier test weeks (lowest
Winkler-95 among those covering 0.92-0.98 pooled); benchmarks/RESULTS_capacity.md says which
variants were designed after a first look at the last week.

The Winkler (1972) interval score of a (1 - alpha) interval [lo, hi] at an observation y is
(hi - lo) + (2 / alpha) (lo - y) when y < lo, + (2 / alpha) (y - hi) when y > hi: width, plus
a penalty for every miss (Gneiting & Raftery, 2007). Lower is better; it rewards narrow
intervals only as long as they still cover.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import polars as pl
from scipy.optimize import nnls

from annotation_pipelines.forecasting.metrics import LEVELS


def conformal_quantile(errors: np.ndarray, *, level: float) -> float:
    """The split-conformal quantile of absolute `errors` for a `level`% interval (NaN if empty)."""
    errors = np.sort(np.abs(errors[np.isfinite(errors)]))
    n = errors.size
    if n == 0:
        return float("nan")
    rank = min(n, math.ceil((n + 1) * level / 100))
    return float(errors[rank - 1])


def horizon_shape(steps: np.ndarray, mean_abs_error: np.ndarray) -> tuple[float, float]:
    """(a, b) of s(h) = a + b sqrt(h), a, b >= 0, least squares on the mean absolute error at
    each step h (1-based); (1, 0), a flat shape, when the errors give no positive fit."""
    keep = np.isfinite(mean_abs_error)
    if not keep.any():
        return 1.0, 0.0
    design = np.column_stack([np.ones(int(keep.sum())), np.sqrt(steps[keep].astype(float))])
    (a, b), _ = nnls(design, mean_abs_error[keep])
    # Steps start at 1, so s(h) >= a + b > 0 unless both are zero (errors all zero).
    return (float(a), float(b)) if a + b > 0 else (1.0, 0.0)


def shaped_half_widths(
    recent: np.ndarray, every: np.ndarray, *, level: float, steps: int
) -> np.ndarray:
    """The `level`% half-widths at steps 1..`steps` from one series' errors: `recent` (the
    calibration windows) and `every` (all ended windows, for the shape), each [windows,
    horizon] with the horizon's steps in order (NaN where a window is shorter)."""
    horizon = every.shape[1]
    finite = np.isfinite(every)
    counts = finite.sum(axis=0)
    totals = np.where(finite, np.abs(every), 0.0).sum(axis=0)
    # Steps no window reached stay NaN and out of the fit.
    profile = np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)
    a, b = horizon_shape(np.arange(1, horizon + 1), profile)
    scale = a + b * np.sqrt(np.arange(1, horizon + 1, dtype=float))
    q = conformal_quantile((recent / scale).ravel(), level=level)
    return q * (a + b * np.sqrt(np.arange(1, steps + 1, dtype=float)))


def with_step(frame: pl.DataFrame, *, over: list[str]) -> pl.DataFrame:
    """`frame` with `step`: 1 for the first forecast time of each `over` group, then 2, 3, ..."""
    return frame.with_columns(pl.col("time").rank("dense").over(over).cast(pl.Int64).alias("step"))


def calibration_quantiles(
    residuals: pl.DataFrame, *, windows: int, shaped: bool = True
) -> pl.DataFrame:
    """[id, a, b, q_80, q_95] from [id, cutoff, step, residual]: the band at step h is
    q_L (a + b sqrt(h)).

    (a, b) is the horizon shape fitted on every cutoff in `residuals` (all must have ended);
    q_L the split-conformal quantile of |residual| / s(step) over each series' `windows`
    latest cutoffs. With `shaped=False` (or no `step` column) a = 1, b = 0: one quantile for
    every step.
    """
    shaped = shaped and "step" in residuals.columns
    latest = (
        residuals.select("id", "cutoff")
        .unique()
        .sort("id", "cutoff")
        .group_by("id", maintain_order=True)
        .tail(windows)
    )
    used = residuals.join(latest, on=["id", "cutoff"])
    shapes: dict[str, tuple[float, float]] = {}
    if shaped:
        profile = (
            residuals.group_by("id", "step")
            .agg(pl.col("residual").abs().mean().alias("mae"))
            .sort("id", "step")
        )
        for (series_id,), frame in profile.group_by("id", maintain_order=True):
            shapes[str(series_id)] = horizon_shape(
                frame.get_column("step").to_numpy(), frame.get_column("mae").to_numpy()
            )
    rows = []
    for (series_id,), frame in used.group_by("id", maintain_order=True):
        a, b = shapes.get(str(series_id), (1.0, 0.0))
        errors = frame.get_column("residual").to_numpy()
        if shaped:
            errors = errors / (a + b * np.sqrt(frame.get_column("step").to_numpy().astype(float)))
        rows.append(
            (series_id, a, b, *[conformal_quantile(errors, level=level) for level in LEVELS])
        )
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "a": pl.Float64,
            "b": pl.Float64,
            **{f"q_{level}": pl.Float64 for level in LEVELS},
        },
        orient="row",
    )


def apply_quantiles(
    forecast: pl.DataFrame, quantiles: pl.DataFrame, *, nonnegative: bool = True
) -> pl.DataFrame:
    """lo_L / hi_L = forecast -/+ q_L (a + b sqrt(step)) per series, ordered by `ordered_bands`
    (for counts the point is clipped at zero first); without a `step` column the steps are
    counted per series from its first time."""
    counted = "step" not in forecast.columns
    if counted:
        forecast = with_step(forecast, over=["id"])
    joined = forecast.join(quantiles, on="id", how="left")
    scale = pl.col("a") + pl.col("b") * pl.col("step").cast(pl.Float64).sqrt()
    bounds = []
    for level in LEVELS:
        half = pl.col(f"q_{level}") * scale
        bounds += [
            (pl.col("forecast") - half).alias(f"lo_{level}"),
            (pl.col("forecast") + half).alias(f"hi_{level}"),
        ]
    dropped = ["a", "b", *[f"q_{level}" for level in LEVELS], *(["step"] if counted else [])]
    return ordered_bands(joined.with_columns(bounds).drop(dropped), nonnegative=nonnegative)


def bound_name(side: str, level: int) -> str:
    return f"{side}_{level}"


def ordered_bands(
    frame: pl.DataFrame,
    *,
    nonnegative: bool,
    point: str = "forecast",
    bound: Callable[[str, int], str] = bound_name,
    shift: pl.Expr | None = None,
) -> pl.DataFrame:
    """`frame` with lo_95 <= lo_80 <= point <= hi_80 <= hi_95 on every row whose bounds are set.

    For counts (`nonnegative`) a negative point is raised to zero and its bounds move with it
    (by `shift` when given: a reconciled hierarchy raises its aggregates by what their leaves
    were raised), as if the band had been built around the clipped point; then the lower
    bounds are clipped at zero. Clipping the point after the band was built left bands wholly
    below a zero forecast. Null or NaN bounds (nothing to calibrate on) stay as they are.
    """
    lows = [bound("lo", level) for level in sorted(LEVELS, reverse=True)]
    highs = [bound("hi", level) for level in sorted(LEVELS, reverse=True)]
    if nonnegative:
        raise_by = (-pl.col(point)).clip(lower_bound=0.0) if shift is None else shift
        frame = frame.with_columns(
            (pl.col(c) + raise_by.fill_null(0.0)).alias(c) for c in [point, *lows, *highs]
        ).with_columns(pl.col(lows).clip(lower_bound=0.0))

    def unset(name: str) -> pl.Expr:
        return pl.col(name).is_null() | pl.col(name).is_nan()

    # Innermost first: each bound is pushed out past the one inside it.
    inner = {lows[-1]: point, highs[-1]: point}
    inner.update({lows[k]: lows[k + 1] for k in range(len(lows) - 1)})
    inner.update({highs[k]: highs[k + 1] for k in range(len(highs) - 1)})
    for name in [lows[-1], highs[-1], *reversed(lows[:-1]), *reversed(highs[:-1])]:
        pick = pl.min_horizontal if name in lows else pl.max_horizontal
        frame = frame.with_columns(
            pl.when(unset(name) | unset(inner[name]))
            .then(pl.col(name))
            .otherwise(pick(name, inner[name]))
            .alias(name)
        )
    return frame


def winkler(*, value: pl.Expr, lo: pl.Expr, hi: pl.Expr, level: int) -> pl.Expr:
    """Winkler interval score per row of a `level`% interval."""
    alpha = 1 - level / 100
    below = (lo - value).clip(lower_bound=0.0)
    above = (value - hi).clip(lower_bound=0.0)
    return (hi - lo) + (2 / alpha) * below + (2 / alpha) * above
