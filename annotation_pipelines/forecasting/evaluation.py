"""Leave-one-cluster-out evaluation: is the forecast rule good on clusters it was not chosen on?

Every candidate is backtested once at origins `step` apart on every series. For each test
origin and each held-out series (a cluster or virtual cluster):

1. the rule is chosen on the *other* series only, on origins whose whole horizon ended at or
   before the test origin (geometric mean over those series of the MAE ratio to the seasonal
   naive); so neither the held-out series nor the test week takes part in the choice;
2. the held-out series is forecast from the test origin with that rule, its conformal bands
   calibrated on its own residuals at earlier origins (its past, as in production);
3. it is scored on the `horizon` steps after the origin: MAE ratio to the seasonal naive
   (relative MASE; the scale cancels), 80/95% coverage and Winkler score.

The comparators are scored on identical origins and calibrated the same way: the seasonal
naive, statsforecast's best single model (chosen leave-one-cluster-out among the statistical
candidates), the Helios recipe (LightGBM on calendar and lag features alone) and ours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from annotation_pipelines.forecasting.candidates import BASELINE
from annotation_pipelines.forecasting.ensemble import (
    CALIBRATION_WINDOWS,
    COMBINATIONS,
    apply_rule,
    calibrated_backtest,
    candidate_cross_validation,
    candidate_names,
    score_points,
    window_mase,
)
from annotation_pipelines.forecasting.learned import LEARNED
from annotation_pipelines.forecasting.scalars import as_float
from annotation_pipelines.forecasting.statsforecast_adapter import naive_utc

OURS = "ours (rule chosen leave-one-cluster-out)"
STATISTICAL = "statsforecast best single (chosen leave-one-cluster-out)"
HELIOS = "Helios recipe (LightGBM, calendar + lags)"
NAIVE = "seasonal naive"


def _geometric_mean(values: Sequence[float]) -> float:
    array = np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0])
    return float(np.exp(np.mean(np.log(array)))) if array.size else float("nan")


def _ratio(frame: pl.DataFrame) -> float:
    base = as_float((frame["value"] - frame[BASELINE]).abs().sum(), what="baseline error")
    error = as_float((frame["value"] - frame["forecast"]).abs().sum(), what="forecast error")
    return error / base if base else float("nan")


def leave_one_cluster_out(
    series: pl.DataFrame,
    *,
    horizon: int,
    season_length: int,
    freq: str,
    windows: int,
    step: int,
    test_origins: int = 1,
    calibration_windows: int = CALIBRATION_WINDOWS,
    cross_validation: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per (test origin, held-out series, method): the rule used, relative MASE,
    coverage_80/95 and winkler_80/95 (in the series' units).

    The last `test_origins` backtest origins are test origins in turn. Pass a precomputed
    `cross_validation` (from `candidate_cross_validation`) to skip the backtest.
    """
    history = naive_utc(series)
    models = candidate_names(season_length=season_length)
    if cross_validation is None:
        cross_validation = candidate_cross_validation(
            history, horizon=horizon, season_length=season_length, freq=freq,
            windows=windows, step=step, models=models,
        )  # fmt: skip
    span = dt.timedelta(seconds=_step_seconds(cross_validation) * horizon)
    scores = window_mase(cross_validation, history, models=models, season_length=season_length)
    rules = [*COMBINATIONS, *models]
    # Every rule's forecast at every origin, calibrated on origins that ended before each.
    ruled = {
        rule: calibrated_backtest(
            apply_rule(cross_validation, rule=rule, models=models, window_scores=scores,
                       horizon_span=span),
            horizon_span=span, calibration_windows=calibration_windows,
        ).join(cross_validation.select("id", "time", "cutoff", BASELINE),
               on=["id", "time", "cutoff"])
        for rule in rules
    }  # fmt: skip
    ids = sorted(cross_validation.get_column("id").unique().to_list())
    cutoffs = cross_validation.get_column("cutoff").unique().sort().to_list()
    statistical = [m for m in models if m not in (BASELINE, LEARNED)]
    rows = []
    for origin in cutoffs[-test_origins:]:
        validation = [c for c in cutoffs if c + span <= origin]
        for held_out in ids:
            others = [i for i in ids if i != held_out]

            def validated(
                rule: str, others: list[str] = others, validation: list[object] = validation
            ) -> float:
                frame = ruled[rule].filter(pl.col("cutoff").is_in(validation))
                return _geometric_mean([_ratio(frame.filter(pl.col("id") == i)) for i in others])

            if validation:
                ours = min(rules, key=lambda r: (validated(r), rules.index(r)))
                single = min(statistical, key=lambda r: (validated(r), statistical.index(r)))
            else:
                ours, single = BASELINE, BASELINE
            for method, rule in ((NAIVE, BASELINE), (STATISTICAL, single), (HELIOS, LEARNED),
                                 (OURS, ours)):  # fmt: skip
                points = ruled[rule].filter(
                    (pl.col("id") == held_out) & (pl.col("cutoff") == origin)
                )
                figures = points.select(score_points(points)).row(0, named=True)
                rows.append(
                    {"origin": origin, "id": held_out, "method": method, "rule": rule,
                     "relative_mase": _ratio(points), **figures}
                )  # fmt: skip
    return pl.DataFrame(rows)


def summarize(
    evaluation: pl.DataFrame, *, cross_validation_points: int | None = None
) -> pl.DataFrame:
    """Per (origin, method): geometric-mean relative MASE over held-out series, and coverage
    and Winkler averaged over series (every series has the same number of points)."""
    del cross_validation_points
    return (
        evaluation.group_by("origin", "method", maintain_order=True)
        .agg(
            pl.col("relative_mase").log().mean().exp().alias("relative_mase"),
            pl.col("coverage_80").mean(),
            pl.col("coverage_95").mean(),
            pl.col("winkler_80").mean(),
            pl.col("winkler_95").mean(),
            pl.col("rule").unique().sort().str.join(", ").alias("rules"),
        )
        .sort("origin", "method")
    )


def _step_seconds(cross_validation: pl.DataFrame) -> float:
    """The grid step: the smallest positive gap between forecast times of one window."""
    gaps = (
        cross_validation.sort("id", "cutoff", "time")
        .get_column("time")
        .diff()
        .dt.total_seconds()
        .drop_nulls()
    )
    return as_float(gaps.filter(gaps > 0).min(), what="smallest time step")
