"""The learned candidate: boosted trees on calendar and lag features (mlforecast + LightGBM).

Hu et al., "Characterization and Prediction of Deep Learning Workloads in Large-Scale GPU
Datacenters" (SC'21; the Helios traces) forecast cluster GPU demand with gradient-boosted
trees on time-of-day / day-of-week features and recent history. This is that recipe through
Nixtla's mlforecast (Olivares et al.) with LightGBM (Ke et al., NeurIPS 2017): one global model
over every series, each series scaled by its own mean and standard deviation so clusters of
different sizes share the trees, lags of one hour to one week, rolling means of the last day
and week, hour of day and day of week; forecasts are recursive (each step feeds the next).

Point forecasts only: intervals for every candidate come from `conformal` on backtest
residuals, so the learned model and the statistical ones are calibrated the same way.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl

from annotation_pipelines.forecasting.scalars import as_int

if TYPE_CHECKING:
    from mlforecast import MLForecast

LEARNED = "LightGBM"


def _features(
    season_length: int, *, shortest: int
) -> tuple[list[int], dict[int, list[object]], list[str]]:
    """Lags and rolling means up to a week when every series has three weeks to learn from;
    shorter histories get the daily ones only (a week-long lag would leave nothing to fit)."""
    from mlforecast.lag_transforms import RollingMean

    weekly = season_length > 1 and shortest >= 3 * 7 * season_length
    lags = {1, 2, 3} | ({season_length} if season_length > 1 else set())
    transforms: dict[int, list[object]] = {1: [RollingMean(window_size=max(season_length, 2))]}
    if weekly:
        lags.add(7 * season_length)
        transforms[1].append(RollingMean(window_size=7 * season_length))
    calendar = ["hour", "weekday"] if season_length == 24 else ["weekday", "month"]
    return sorted(lags), transforms, calendar


def _engine(*, freq: str, season_length: int, seed: int, shortest: int) -> MLForecast:
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.target_transforms import LocalStandardScaler

    lags, transforms, calendar = _features(season_length, shortest=shortest)
    model = LGBMRegressor(
        n_estimators=200,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=seed,
        n_jobs=1,
        deterministic=True,
        force_row_wise=True,
        verbosity=-1,
    )
    return MLForecast(
        models={LEARNED: model},
        # Polars' own offset ("1d", "15m", "1w"): the frames are polars, and mlforecast checks
        # their continuity with polars, which knows no pandas alias ("1D", "15min", "1W").
        freq=freq,
        lags=lags,
        # mlforecast types a lag transform as a callable, but its own transform classes
        # (RollingMean here, as its documentation shows) are objects with `transform` methods.
        lag_transforms=transforms,  # type: ignore[arg-type]
        date_features=calendar,
        target_transforms=[LocalStandardScaler()],
    )


def _to_mlforecast(history: pl.DataFrame) -> pl.DataFrame:
    return history.select(
        pl.col("id").alias("unique_id"),
        pl.col("time").cast(pl.Datetime("us")).alias("ds"),
        pl.col("value").cast(pl.Float64).alias("y"),
    )


def learned_forecast(
    history: pl.DataFrame, *, horizon: int, freq: str, season_length: int, seed: int = 0
) -> pl.DataFrame:
    """[id, time, LightGBM] for `horizon` steps after each series' last time.

    history: [id, time, value] on a regular naive-UTC grid (`statsforecast_adapter.naive_utc`).
    """
    shortest = as_int(
        history.group_by("id").len().get_column("len").min(), what="shortest series length"
    )
    engine = _engine(freq=freq, season_length=season_length, seed=seed, shortest=shortest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine.fit(_to_mlforecast(history))
        raw = engine.predict(h=horizon)
    return pl.DataFrame(raw).select(
        pl.col("unique_id").cast(pl.String).alias("id"),
        pl.col("ds").cast(pl.Datetime("us")).alias("time"),
        pl.col(LEARNED).cast(pl.Float64),
    )


def learned_cross_validation(
    history: pl.DataFrame,
    *,
    horizon: int,
    freq: str,
    season_length: int,
    cutoffs: Sequence[dt.datetime],
    seed: int = 0,
) -> pl.DataFrame:
    """[id, time, cutoff, LightGBM]: the model refit on the history up to each cutoff.

    Every cutoff gets its own fit on data at or before it, as statsforecast's cross-validation
    does, so the learned and statistical candidates are scored on identical information.
    """
    frames = []
    for cutoff in cutoffs:
        past = history.filter(pl.col("time") <= cutoff)
        frames.append(
            learned_forecast(
                past, horizon=horizon, freq=freq, season_length=season_length, seed=seed
            ).with_columns(pl.lit(cutoff).cast(pl.Datetime("us")).alias("cutoff"))
        )
    return pl.concat(frames).select("id", "time", "cutoff", LEARNED)
