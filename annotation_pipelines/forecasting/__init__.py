"""Capacity forecasting: accelerator demand against supply, and annotator hours against SLAs.

Pure engine (no dagster): Polars frames in, Polars frames out. See `telemetry` (load and
summarise accelerator telemetry), `models` (backtested forecasts with intervals), `supply`
(crossing dates and procurement) and `workforce` (throughput, backlog, hours needed, risk).
"""

from annotation_pipelines.forecasting.models import (
    BacktestResult,
    ForecastResult,
    backtest,
    forecast,
    pooled_coverage,
    relative_mase,
)
from annotation_pipelines.forecasting.telemetry import (
    hour_of_day_profile,
    load_helios,
    load_helios_supply,
    normalize_usage,
    regularize,
    summarize_usage,
    to_series,
)

__all__ = [
    "BacktestResult",
    "ForecastResult",
    "backtest",
    "forecast",
    "hour_of_day_profile",
    "load_helios",
    "load_helios_supply",
    "normalize_usage",
    "pooled_coverage",
    "regularize",
    "relative_mase",
    "summarize_usage",
    "to_series",
]
