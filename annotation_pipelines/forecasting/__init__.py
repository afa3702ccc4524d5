"""Capacity forecasting: accelerator demand against supply, and annotator hours against SLAs.

Pure engine (no dagster): Polars frames in, Polars frames out. See `telemetry` (load and
summarise accelerator telemetry); `candidates` (the statsforecast models), `metrics` (MASE and
coverage), `backtesting` and `selection` (the rolling-origin choice of a model per series) and
`forecaster` (backtested forecasts with intervals), over `statsforecast_adapter`; `supply`
(crossing dates and procurement); `plot`; and `workforce` (throughput, backlog, hours needed,
risk).
"""

from annotation_pipelines.lazy_exports import lazy_exports

# Each name is imported from its module on first use, so importing one submodule (the CLI's
# `command`) does not import its siblings.
__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "backtesting": ("BacktestResult", "backtest"),
        "forecaster": ("ForecastResult", "forecast"),
        "metrics": ("pooled_coverage", "relative_mase"),
        "telemetry": (
            "hour_of_day_profile",
            "load_helios",
            "load_helios_supply",
            "normalize_usage",
            "regularize",
            "summarize_usage",
            "to_series",
        ),
        "workforce": (
            "PLAN_COLUMNS",
            "THROUGHPUT_COLUMNS",
            "WorkforceForecast",
            "project_settings",
            "workforce_forecast",
            "workforce_throughput",
        ),
    },
)
