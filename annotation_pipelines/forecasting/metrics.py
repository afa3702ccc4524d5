"""Forecast accuracy: MASE per window, interval coverage, and their summaries over series.

MASE (Hyndman & Koehler, 2006) is the forecast MAE over the in-sample MAE of the seasonal
naive at the same origin; coverage is the share of observed values inside an interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from annotation_pipelines.forecasting.scalars import as_float

if TYPE_CHECKING:
    from annotation_pipelines.forecasting.backtesting import BacktestResult

LEVELS = (80, 95)


def mase(
    cross_validation: pl.DataFrame,
    history: pl.DataFrame,
    *,
    models: Sequence[str],
    seasonality: int,
) -> pl.DataFrame:
    """MASE per (id, cutoff, model): forecast MAE / in-sample seasonal-naive MAE to the cutoff.

    `cross_validation` has [id, time, cutoff, value, <model>...]; `history` has [id, time, value].
    Matches `utilsforecast.losses.mase` evaluated one cutoff at a time.
    """
    scales = []
    for cutoff in cross_validation.get_column("cutoff").unique().sort():
        scales.append(
            history.filter(pl.col("time") <= cutoff)
            .sort("id", "time")
            .group_by("id")
            .agg((pl.col("value") - pl.col("value").shift(seasonality)).abs().mean().alias("scale"))
            .with_columns(pl.lit(cutoff).alias("cutoff"))
        )
    scale = pl.concat(scales)
    errors = cross_validation.group_by("id", "cutoff").agg(
        [(pl.col("value") - pl.col(model)).abs().mean().alias(model) for model in models]
    )
    return (
        errors.join(scale, on=["id", "cutoff"])
        .unpivot(index=["id", "cutoff", "scale"], variable_name="model", value_name="mae")
        .with_columns((pl.col("mae") / pl.col("scale")).alias("mase"))
        .select("id", "cutoff", "model", "mae", "mase")
        .sort("id", "cutoff", "model")
    )


def coverage(frame: pl.DataFrame, *, model: str, level: int) -> pl.Expr:
    """Expression: share of rows whose value is in the model's `level`% interval (inclusive)."""
    del frame
    return (
        (pl.col("value") >= pl.col(f"{model}-lo-{level}"))
        & (pl.col("value") <= pl.col(f"{model}-hi-{level}"))
    ).mean()


def score_windows(
    cross_validation: pl.DataFrame,
    history: pl.DataFrame,
    *,
    models: list[str],
    season_length: int,
) -> pl.DataFrame:
    """[id, cutoff, model, mae, mase, coverage_80, coverage_95] for each model column."""
    per_window = mase(cross_validation, history, models=models, seasonality=season_length)
    coverages = cross_validation.group_by("id", "cutoff").agg(
        [
            coverage(cross_validation, model=m, level=level).alias(f"{m}|{level}")
            for m in models
            for level in LEVELS
        ]
    )
    coverage_long = (
        coverages.unpivot(index=["id", "cutoff"], variable_name="key", value_name="share")
        .with_columns(
            pl.col("key").str.split_exact("|", 1).struct.rename_fields(["model", "level"])
        )
        .unnest("key")
        .pivot("level", index=["id", "cutoff", "model"], values="share")
        .rename({str(level): f"coverage_{level}" for level in LEVELS})
    )
    return per_window.join(coverage_long, on=["id", "cutoff", "model"])


def relative_mase(scores: pl.DataFrame) -> float:
    """Geometric mean over series of chosen MASE ÷ seasonal naive MASE (Hyndman & Koehler, 2006)."""
    # Every positive ratio counts: the smallest positive float is the least ratio kept.
    value, _ = geometric_mean_ratio(
        scores.get_column("relative_mase"), minimum=float(np.nextafter(0.0, 1.0))
    )
    return float("nan") if value is None else value


def geometric_mean_ratio(ratios: pl.Series, *, minimum: float) -> tuple[float | None, int]:
    """The geometric mean of per-series MASE ratios (nulls dropped) and how many ratios it
    leaves out: a non-finite one (the naive was exact too) or one below `minimum` (an exact
    forecast, whose log would swamp the others)."""
    values = ratios.drop_nulls().to_numpy()
    usable = values[np.isfinite(values) & (values >= minimum)]
    excluded = values.size - usable.size
    return (float(np.exp(np.mean(np.log(usable)))) if usable.size else None), excluded


def pooled_coverage(result: BacktestResult, *, level: int) -> float:
    """Share of all held-out points (all series) inside the chosen model's `level`% interval."""
    chosen = result.scores.select("id", "model")
    role = "evaluation" if bool(result.scores.get_column("held_out").all()) else "selection"
    cutoffs = result.window_scores.filter(pl.col("role") == role).select("id", "cutoff").unique()
    points = result.cross_validation.join(cutoffs, on=["id", "cutoff"]).join(chosen, on="id")
    inside = []
    for model in points.get_column("model").unique():
        subset = points.filter(pl.col("model") == model)
        inside.append(
            (subset.get_column("value") >= subset.get_column(f"{model}-lo-{level}"))
            & (subset.get_column("value") <= subset.get_column(f"{model}-hi-{level}"))
        )
    if not inside:
        return float("nan")
    return as_float(pl.concat(inside).mean(), what=f"share inside the {level}% interval")
