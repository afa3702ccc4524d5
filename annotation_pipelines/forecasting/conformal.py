"""Conformal 80/95% intervals from backtest residuals, and the interval (Winkler) score.

Split conformal prediction (Vovk, Gammerman & Shafer, 2005; for forecasts: Stankeviciute,
Alaa & van der Schaar, NeurIPS 2021): the absolute errors of a forecast rule on past backtest
windows whose whole horizon is observed are the calibration set; the interval at level L is the
point forecast plus or minus their ceil((n + 1) L) / n empirical quantile. The set is one
series' own errors, pooled over the steps of the horizon, from its `windows` most recent
calibration origins: recent windows track the series' current volatility (a cluster that has
just woken up is not calibrated by its idle weeks), pooling over steps gives enough points for
a 95% quantile (4 daily origins x 168 hourly steps).

Alternatives measured on the held-out Helios weeks with the same point forecasts
(`benchmarks/bench_capacity.py --interval-study`, each fixed before it was run) and not adopted,
because none covers better without wider bands: a quantile per 24-h band of the horizon
(per-step calibration as in Stankeviciute et al.; same coverage and Winkler score, noisier per
band), 8 calibration windows instead of 4 (every week covered 100%, Winkler-95 +57%: the older
windows follow a day of zero demand on two clusters), normalized conformal pooled over
clusters (Papadopoulos et al., 2008; Lei et al., 2018: residual / the series' recent seasonal
MAE; an idle series' near-zero
scale turns its wake-up into huge normalized residuals, Winkler-95 2.5x; with the series' GPU
quota as the scale instead, Winkler-95 1.6x and the last week covered less), the conformal bands
of the reconciled hierarchy (`hierarchy`, measured with `--hierarchy`: pooled coverage within
0.005 of the same bands unreconciled) and adaptive conformal
inference (Gibbs & Candes, NeurIPS 2021, gamma = 0.005: with a one-week horizon and daily
origins only a handful of weeks have ended before a test origin, so alpha hardly moves).

The Winkler (1972) interval score of a (1 - alpha) interval [lo, hi] at an observation y is
(hi - lo) + (2 / alpha) (lo - y) when y < lo, + (2 / alpha) (y - hi) when y > hi: width, plus
a penalty for every miss (Gneiting & Raftery, 2007). Lower is better; it rewards narrow
intervals only as long as they still cover.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from annotation_pipelines.forecasting.metrics import LEVELS


def conformal_quantile(errors: np.ndarray, *, level: float) -> float:
    """The split-conformal quantile of absolute `errors` for a `level`% interval (NaN if empty)."""
    errors = np.sort(np.abs(errors[np.isfinite(errors)]))
    n = errors.size
    if n == 0:
        return float("nan")
    rank = min(n, math.ceil((n + 1) * level / 100))
    return float(errors[rank - 1])


def calibration_quantiles(residuals: pl.DataFrame, *, windows: int) -> pl.DataFrame:
    """[id, q_80, q_95] from [id, cutoff, residual] using each series' `windows` latest cutoffs."""
    latest = (
        residuals.select("id", "cutoff")
        .unique()
        .sort("id", "cutoff")
        .group_by("id", maintain_order=True)
        .tail(windows)
    )
    used = residuals.join(latest, on=["id", "cutoff"])
    rows = []
    for (series_id,), frame in used.group_by("id", maintain_order=True):
        errors = frame.get_column("residual").to_numpy()
        rows.append((series_id, *[conformal_quantile(errors, level=level) for level in LEVELS]))
    return pl.DataFrame(
        rows,
        schema={"id": pl.String, **{f"q_{level}": pl.Float64 for level in LEVELS}},
        orient="row",
    )


def apply_quantiles(
    forecast: pl.DataFrame, quantiles: pl.DataFrame, *, nonnegative: bool = True
) -> pl.DataFrame:
    """lo_L / hi_L = forecast -/+ q_L per series (clipped at zero for counts)."""
    joined = forecast.join(quantiles, on="id", how="left")
    bounds = []
    for level in LEVELS:
        lo = pl.col("forecast") - pl.col(f"q_{level}")
        bounds += [
            (lo.clip(lower_bound=0.0) if nonnegative else lo).alias(f"lo_{level}"),
            (pl.col("forecast") + pl.col(f"q_{level}")).alias(f"hi_{level}"),
        ]
    return joined.with_columns(bounds).drop([f"q_{level}" for level in LEVELS])


def winkler(*, value: pl.Expr, lo: pl.Expr, hi: pl.Expr, level: int) -> pl.Expr:
    """Winkler interval score per row of a `level`% interval."""
    alpha = 1 - level / 100
    below = (lo - value).clip(lower_bound=0.0)
    above = (value - hi).clip(lower_bound=0.0)
    return (hi - lo) + (2 / alpha) * below + (2 / alpha) * above
