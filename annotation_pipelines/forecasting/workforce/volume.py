"""The daily task-volume forecast per project: backtested when the history allows, else a naive
fallback that says why, and says "no interval" when it has none."""

from __future__ import annotations

import warnings

import polars as pl

from annotation_pipelines import schema
from annotation_pipelines.forecasting.backtesting import minimum_history
from annotation_pipelines.forecasting.forecaster import forecast
from annotation_pipelines.forecasting.metrics import LEVELS
from annotation_pipelines.forecasting.selection import SCORE_COLUMNS
from annotation_pipelines.forecasting.statsforecast_adapter import (
    from_statsforecast,
    statsforecast_engine,
    to_statsforecast,
)

SEASON_LENGTH = 7
# A fallback model's interval is its in-sample residuals' spread; with none it is zero-width
# and with one it is a single difference, so below two there is no interval to report.
MIN_RESIDUALS = 2

WORKFORCE_SCORE_COLUMNS: dict[str, pl.DataType] = {**SCORE_COLUMNS, "reason": pl.String()}


def _minimum_history(*, windows: int, horizon: int) -> int:
    return minimum_history(windows=windows, horizon=horizon, season_length=SEASON_LENGTH)


def fallback_model(length: int) -> str:
    return "SeasonalNaive" if length >= SEASON_LENGTH else "Naive"


def no_interval_reason(*, length: int, windows: int, horizon: int) -> str | None:
    """Why a history of `length` days gets no 80/95% interval (None: it gets one).

    A backtested forecast always has one. A fallback has one when its model leaves at least
    `MIN_RESIDUALS` in-sample residuals: one per day after the first (naive) or the first week
    (seasonal naive).
    """
    model = fallback_model(length)
    residuals = max(0, length - (SEASON_LENGTH if model == "SeasonalNaive" else 1))
    if residuals >= MIN_RESIDUALS:
        return None
    history = "1 day of history leaves" if length == 1 else f"{length} days of history leave"
    plural = "" if residuals == 1 else "s"
    return (
        f"no interval: {history} {residuals} {model} residual{plural} to measure spread on, "
        f"fewer than {MIN_RESIDUALS}; a backtested interval needs "
        f"{_minimum_history(windows=windows, horizon=horizon)} days"
    )


def _fallback_forecast(history: pl.DataFrame, *, model: str, horizon: int) -> pl.DataFrame:
    from statsforecast.models import Naive, SeasonalNaive

    instance = (
        SeasonalNaive(season_length=SEASON_LENGTH, alias=model)
        if model == "SeasonalNaive"
        else Naive(alias=model)
    )
    engine = statsforecast_engine([instance], freq="1d", n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = engine.forecast(df=to_statsforecast(history), h=horizon, level=list(LEVELS))
    frame = from_statsforecast(pl.DataFrame(raw))
    return frame.select(
        pl.col("id").cast(pl.String),
        pl.col("time").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.col(model).alias("forecast"),
        *[
            pl.col(f"{model}-{side}-{level}").fill_nan(None).alias(f"{side}_{level}")
            for level in LEVELS
            for side in ("lo", "hi")
        ],
        pl.lit(model).alias("model"),
    )


def volume_forecasts(
    history: pl.DataFrame,
    *,
    horizon: int,
    backtest_windows: int,
    models: list[str] | None,
    n_jobs: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Forecast table and scores (with reasons); each project gets the most backtest it can."""
    lengths = dict(history.group_by("id").len().iter_rows())
    plan: dict[str, tuple[int, str | None]] = {}
    for project, length in lengths.items():
        for windows in range(backtest_windows, min(backtest_windows, 2) - 1, -1):
            if length >= _minimum_history(windows=windows, horizon=horizon):
                reason = (
                    None
                    if windows == backtest_windows
                    else f"{length} days of history: backtest on {windows} windows, "
                    f"not {backtest_windows}"
                )
                plan[project] = (windows, reason)
                break
        else:
            needed = _minimum_history(windows=min(backtest_windows, 2), horizon=horizon)
            fallback = fallback_model(length)
            plan[project] = (
                0,
                f"{length} days of history, fewer than the {needed} a backtest of "
                f"{min(backtest_windows, 2)} x {horizon} days needs: {fallback} without a backtest",
            )
    tables, scores = [], []
    for windows in sorted({windows for windows, _ in plan.values()}):
        ids = [project for project, (w, _) in plan.items() if w == windows]
        subset = history.filter(pl.col("id").is_in(ids))
        reasons = pl.DataFrame(
            {"id": ids, "reason": [plan[project][1] for project in ids]},
            schema={"id": pl.String, "reason": pl.String},
        )
        if windows:
            result = forecast(
                subset,
                horizon=horizon,
                season_length=SEASON_LENGTH,
                freq="1d",
                backtest_windows=windows,
                models=models,
                n_jobs=n_jobs,
            )
            tables.append(result.forecast)
            scores.append(result.scores.join(reasons, on="id", how="left"))
            continue
        for project in ids:
            model = fallback_model(lengths[project])
            table = _fallback_forecast(
                subset.filter(pl.col("id") == project), model=model, horizon=horizon
            ).with_columns(pl.col("forecast", "lo_80", "hi_80", "lo_95", "hi_95").clip(0.0))
            minimum_windows = min(backtest_windows, 2)
            if no_interval_reason(
                length=lengths[project], windows=minimum_windows, horizon=horizon
            ):
                # statsforecast reports zero width here; null says there is no interval.
                table = table.with_columns(
                    pl.lit(None, dtype=pl.Float64).alias(bound)
                    for bound in ("lo_80", "hi_80", "lo_95", "hi_95")
                )
            tables.append(schema.conform(table, schema.CAPACITY_FORECAST, name="capacity_forecast"))
            scores.append(
                pl.DataFrame(
                    {
                        "id": [project],
                        "model": [model],
                        "selection_windows": [0],
                        "evaluation_windows": [0],
                        "held_out": [False],
                        "reason": [plan[project][1]],
                    }
                )
            )
    table = pl.concat(tables).sort("id", "time")
    score_table = pl.concat(
        [
            frame.with_columns(
                [
                    pl.lit(None, dtype=dtype).alias(column)
                    for column, dtype in WORKFORCE_SCORE_COLUMNS.items()
                    if column not in frame.columns
                ]
            ).select(
                [pl.col(column).cast(dtype) for column, dtype in WORKFORCE_SCORE_COLUMNS.items()]
            )
            for frame in scores
        ]
    ).sort("id")
    return table, score_table
