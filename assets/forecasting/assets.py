"""Capacity forecasts: accelerator demand against supply (and, with the workforce layer, hours)."""

import datetime as dt

import polars as pl
from dagster import (
    AssetExecutionContext,
    Config,
    FreshnessPolicy,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field

from annotation_pipelines import schema
from annotation_pipelines.forecasting import forecast, relative_mase, to_series
from annotation_pipelines.forecasting.plot import plot_forecast
from annotation_pipelines.forecasting.supply import procurement, supply_crossing
from assets.common.metadata import markdown_table, png_markdown
from resources.lake import Lake


class ComputeForecastConfig(Config):
    history_days: int = Field(default=28, ge=14, description="Days of telemetry to learn from.")
    freq: str = "1h"
    horizon: int = Field(default=168, description="Steps ahead (168 hours = one week).")
    season_length: int = 24
    backtest_windows: int = Field(default=2, description="Windows to choose the model on.")
    lead_time_days: int = Field(default=2, description="Days from order to usable accelerators.")
    queueing_target: float = Field(default=0.0, description="Accelerators allowed to queue.")


@asset(
    group_name="forecasting",
    owners=["team:compute-capacity"],
    kinds={"statsforecast", "polars"},
    deps=["compute_usage"],
    freshness_policy=FreshnessPolicy.time_window(fail_window=dt.timedelta(days=8)),
    description=(
        "Hourly accelerator demand (running + pending) forecast one week ahead per series, "
        "with 80/95% intervals; model per series chosen by rolling-origin backtest."
    ),
)
def compute_capacity_forecast(
    context: AssetExecutionContext, config: ComputeForecastConfig, lake: Lake
) -> Output[pl.DataFrame]:
    days = lake.days("compute_usage")[-config.history_days :]
    if not days:
        raise FileNotFoundError("compute_usage has no partitions in the lake; materialize it first")
    usage = lake.read_days("compute_usage", days)
    context.log.info(f"forecasting from {usage.height:,} telemetry rows over {len(days)} days")
    history = to_series(usage, freq=config.freq)
    result = forecast(
        history,
        horizon=config.horizon,
        season_length=config.season_length,
        freq=config.freq,
        backtest_windows=config.backtest_windows,
    )
    supply = to_series(usage, freq=config.freq, value="total").rename({"value": "supply"})
    # Supply is flat over the horizon unless procurement changes it: carry the last value.
    future_supply = result.forecast.select("id", "time").join(
        supply.sort("time").group_by("id").agg(pl.col("supply").last()), on="id"
    )
    crossing = supply_crossing(result.forecast, future_supply)
    plan = procurement(
        result.forecast,
        future_supply,
        lead_time=dt.timedelta(days=config.lead_time_days),
        queueing_target=config.queueing_target,
    )
    frame = schema.conform(result.forecast, schema.CAPACITY_FORECAST, name="capacity_forecast")
    return Output(
        frame.select(list(schema.CAPACITY_FORECAST)),
        metadata={
            "relative_mase": MetadataValue.float(round(relative_mase(result.scores), 4)),
            "models": markdown_table(result.scores),
            "supply_crossing": markdown_table(crossing),
            "procurement": markdown_table(plan),
            "plot": png_markdown(
                plot_forecast(result.history, result.forecast, supply=future_supply),
                alt="history, forecast and intervals",
            ),
            "history_days": MetadataValue.int(len(days)),
        },
    )
