"""Capacity forecasting: accelerator demand against supply, and annotator hours against SLAs.

Pure engine (no dagster): Polars frames in, Polars frames out. See `telemetry` (load and
summarise accelerator telemetry); `candidates` (the statsforecast models), `metrics` (MASE and
coverage), `backtest` and `selection` (the rolling-origin choice of a model per series) and
`forecaster` (backtested forecasts with intervals), over `statsforecast_adapter`; `supply`
(crossing dates and procurement); `plot`; and `workforce` (throughput, backlog, hours needed,
risk).
"""

from annotation_pipelines.forecasting.backtest import BacktestResult, backtest
from annotation_pipelines.forecasting.forecaster import ForecastResult, forecast
from annotation_pipelines.forecasting.metrics import pooled_coverage, relative_mase
from annotation_pipelines.forecasting.telemetry import (
    hour_of_day_profile,
    load_helios,
    load_helios_supply,
    normalize_usage,
    regularize,
    summarize_usage,
    to_series,
)
from annotation_pipelines.forecasting.workforce import (
    PLAN_COLUMNS,
    THROUGHPUT_COLUMNS,
    WorkforceForecast,
    project_settings,
    workforce_forecast,
    workforce_throughput,
)

__all__ = [
    "PLAN_COLUMNS",
    "THROUGHPUT_COLUMNS",
    "BacktestResult",
    "ForecastResult",
    "WorkforceForecast",
    "backtest",
    "forecast",
    "hour_of_day_profile",
    "load_helios",
    "load_helios_supply",
    "normalize_usage",
    "pooled_coverage",
    "project_settings",
    "regularize",
    "relative_mase",
    "summarize_usage",
    "to_series",
    "workforce_forecast",
    "workforce_throughput",
]
