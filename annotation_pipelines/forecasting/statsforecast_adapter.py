"""Polars [id, time, value] series to and from statsforecast's [unique_id, ds, y] frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from statsforecast import StatsForecast


def naive_utc(series: pl.DataFrame) -> pl.DataFrame:
    """[id, time, value] with naive-UTC time (statsforecast drops time zones)."""
    dtype = series.schema["time"]
    time = pl.col("time")
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        time = time.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return series.select(
        pl.col("id").cast(pl.String),
        time.cast(pl.Datetime("us")).alias("time"),
        pl.col("value").cast(pl.Float64),
    )


def to_statsforecast(series: pl.DataFrame) -> pl.DataFrame:
    return series.select(
        pl.col("id").cast(pl.String).alias("unique_id"),
        pl.col("time").alias("ds"),
        pl.col("value").cast(pl.Float64).alias("y"),
    )


def from_statsforecast(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.rename(
        {"unique_id": "id", "ds": "time", **({"y": "value"} if "y" in frame.columns else {})}
    )


def statsforecast_engine(models: list[object], *, freq: str, n_jobs: int) -> StatsForecast:
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    return StatsForecast(models=models, freq=freq, n_jobs=n_jobs, fallback_model=SeasonalNaive(1))
