"""Demand forecasts with intervals, the model chosen per series by a nested rolling-origin backtest.

The candidates are in `candidates`, the backtest and the choice in `backtest` and `selection`;
`forecast` refits each series' chosen model (or the members of its combination) on the whole
history and forecasts with 80/95% intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from annotation_pipelines import schema
from annotation_pipelines.forecasting.backtesting import (
    BacktestResult,
    backtest,
    combined_columns,
    shipped_bands,
)
from annotation_pipelines.forecasting.candidates import (
    candidate_models,
    default_extra_seasonalities,
)
from annotation_pipelines.forecasting.conformal import bound_name
from annotation_pipelines.forecasting.metrics import LEVELS
from annotation_pipelines.forecasting.statsforecast_adapter import (
    from_statsforecast,
    naive_utc,
    statsforecast_engine,
    to_statsforecast,
)
from annotation_pipelines.numbers import finite


@dataclass(frozen=True)
class ForecastResult:
    """The forecast table (`schema.CAPACITY_FORECAST`), the per-series scores and the backtest."""

    forecast: pl.DataFrame
    scores: pl.DataFrame
    backtest: BacktestResult
    history: pl.DataFrame

    def summary(self) -> dict[str, dict[str, object]]:
        """Per series: chosen model, held-out MASE, the seasonal naive's, coverage (JSON-ready)."""
        out: dict[str, dict[str, object]] = {}
        for row in self.scores.iter_rows(named=True):
            out[row["id"]] = {
                "model": row["model"],
                "mase": finite(row["mase"]),
                "seasonal_naive_mase": finite(row["seasonal_naive_mase"]),
                "relative_mase": finite(row["relative_mase"]),
                "coverage_80": finite(row["coverage_80"]),
                "coverage_95": finite(row["coverage_95"]),
            }
        return out


def forecast(
    series: pl.DataFrame,
    *,
    horizon: int,
    season_length: int,
    freq: str,
    backtest_windows: int = 3,
    evaluation_windows: int = 1,
    models: Sequence[str] | None = None,
    extra_seasonalities: Sequence[int] | None = None,
    nonnegative: bool = True,
    combine: int = 3,
    n_jobs: int = 1,
    combination: str = "mean",
    members_from: Sequence[str] | None = None,
) -> ForecastResult:
    """Backtest, refit each series' chosen model (or combination's members) on its whole history.

    Returns the `capacity_forecast` table (id, time, forecast, lo_80, hi_80, lo_95, hi_95, model)
    and the per-series held-out scores. The model used is the one whose held-out scores are
    reported, so the figures describe the forecast that is shipped. With `nonnegative` and no
    negative value in `series` (counts), each member's point is clipped at zero with its bounds
    moved along before they are averaged, in the backtest that scores them as in the forecast.
    `members_from` limits the candidates a forecast may be made of (`backtesting.backtest`).
    """
    history = naive_utc(series)
    # Only counts are clipped: a series with negative values keeps its negative forecasts.
    nonnegative = nonnegative and not bool((history.get_column("value") < 0).any())
    result = backtest(
        series,
        horizon=horizon,
        season_length=season_length,
        freq=freq,
        windows=backtest_windows,
        evaluation_windows=evaluation_windows,
        models=models,
        extra_seasonalities=extra_seasonalities,
        combine=combine,
        n_jobs=n_jobs,
        nonnegative=nonnegative,
        combination=combination,
        members_from=members_from,
    )
    extra = (
        default_extra_seasonalities(season_length)
        if extra_seasonalities is None
        else tuple(extra_seasonalities)
    )
    factories = candidate_models(
        season_length=season_length,
        horizon=horizon,
        extra_seasonalities=extra,
        arima="AutoARIMA" in result.models,
    )
    tables = []
    for model, ids in result.scores.group_by("model").agg(pl.col("id")).iter_rows():
        members = result.members[model]
        engine = statsforecast_engine([factories[m]() for m in members], freq=freq, n_jobs=n_jobs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = engine.forecast(
                df=to_statsforecast(history.filter(pl.col("id").is_in(ids))),
                h=horizon,
                level=list(LEVELS),
            )
        # Members clipped and ordered first, as in the backtest that scored them.
        frame = shipped_bands(
            from_statsforecast(pl.DataFrame(raw)), models=members, nonnegative=nonnegative
        )
        tables.append(
            frame.select(
                pl.col("id").cast(pl.String),
                "time",
                *combined_columns(members, how=combination, point="forecast", bound=bound_name),
                pl.lit(model).alias("model"),
            )
        )
    table = pl.concat(tables).with_columns(
        pl.col("time").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    )
    table = schema.conform(table, schema.CAPACITY_FORECAST, name="capacity_forecast").sort(
        "id", "time"
    )
    return ForecastResult(forecast=table, scores=result.scores, backtest=result, history=history)
