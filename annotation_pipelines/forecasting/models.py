"""Demand forecasts with intervals, the model chosen per series by a nested rolling-origin backtest.

Candidates (statsforecast; Garza et al., "StatsForecast: lightning fast forecasting with
statistical and econometric models", 2022): the seasonal naive (the baseline: tomorrow's hour
repeats today's), a weekly seasonal naive, AutoETS (Hyndman et al., 2002, exponential
smoothing state space, model picked by AICc), AutoTheta (Assimakopoulos & Nikolopoulos,
2000), MSTL (Bandara et al., 2021: loess decomposition with several seasonalities, ETS on the
trend) and a window average (the mean of the last few days; a level-shift series is often best
forecast by its recent level). AutoARIMA is available on request; it is ~50x slower.

Model choice (Tashman, 2000, "Out-of-sample tests of forecasting accuracy"): the history is cut
at `windows` origins `horizon` steps apart; every candidate forecasts the `horizon` steps after
each origin. The model with the lowest mean MASE (Hyndman & Koehler, 2006: MAE over the
in-sample MAE of the seasonal naive at the same origin) over the first `windows -
evaluation_windows` windows is chosen; its MASE and interval coverage are then reported on the
last `evaluation_windows` windows, which played no part in the choice. Those held-out figures
are what a user can expect; a score on the windows used to choose would flatter the winner.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from annotation_pipelines import schema

BASELINE = "SeasonalNaive"
LEVELS = (80, 95)
_BOUNDS = [f"{side}_{level}" for level in LEVELS for side in ("lo", "hi")]

SCORE_COLUMNS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "model": pl.String(),
    "mase": pl.Float64(),
    "seasonal_naive_mase": pl.Float64(),
    "relative_mase": pl.Float64(),
    "coverage_80": pl.Float64(),
    "coverage_95": pl.Float64(),
    "selection_mase": pl.Float64(),
    "selection_windows": pl.UInt32(),
    "evaluation_windows": pl.UInt32(),
    "held_out": pl.Boolean(),
}


def candidate_models(
    *,
    season_length: int,
    horizon: int,
    extra_seasonalities: Sequence[int] = (),
    arima: bool = False,
) -> dict[str, Callable[[], object]]:
    """Name -> factory of the statsforecast candidates; the baseline is always first.

    Factories, not instances: statsforecast models keep fitted state, and each group of series
    gets fresh ones.
    """
    from statsforecast.models import (
        MSTL,
        AutoARIMA,
        AutoETS,
        AutoTheta,
        SeasonalNaive,
    )

    models: dict[str, Callable[[], object]] = {
        BASELINE: lambda: SeasonalNaive(season_length=season_length, alias=BASELINE),
    }
    for extra in extra_seasonalities:
        models[f"SeasonalNaive{extra}"] = lambda extra=extra: SeasonalNaive(
            season_length=extra, alias=f"SeasonalNaive{extra}"
        )
    models["AutoETS"] = lambda: AutoETS(season_length=season_length, alias="AutoETS")
    models["AutoTheta"] = lambda: AutoTheta(season_length=season_length, alias="AutoTheta")
    seasons = (
        [season_length, *extra_seasonalities] if season_length > 1 else list(extra_seasonalities)
    )
    if seasons:
        models["MSTL"] = lambda: MSTL(season_length=seasons, alias="MSTL")
    if arima:
        models["AutoARIMA"] = lambda: AutoARIMA(season_length=season_length, alias="AutoARIMA")
    return models


def default_extra_seasonalities(season_length: int) -> tuple[int, ...]:
    """Hourly data (a daily season of 24) also has a weekly season of 168."""
    return (7 * season_length,) if season_length == 24 else ()


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


@dataclass(frozen=True)
class BacktestResult:
    """Every candidate's forecasts at every origin, per-window scores, and the per-series choice.

    cross_validation: [id, time, cutoff, value, <model>, <model>-lo-80, ...]
    window_scores:    [id, cutoff, model, mae, mase, coverage_80, coverage_95, role]
                      role is "selection" or "evaluation"
    scores:           one row per series, columns SCORE_COLUMNS
    """

    cross_validation: pl.DataFrame
    window_scores: pl.DataFrame
    scores: pl.DataFrame
    horizon: int
    season_length: int
    models: tuple[str, ...] = field(default_factory=tuple)

    def chosen(self) -> dict[str, str]:
        return dict(self.scores.select("id", "model").iter_rows())


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
                "mase": _finite(row["mase"]),
                "seasonal_naive_mase": _finite(row["seasonal_naive_mase"]),
                "relative_mase": _finite(row["relative_mase"]),
                "coverage_80": _finite(row["coverage_80"]),
                "coverage_95": _finite(row["coverage_95"]),
            }
        return out


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _naive_utc(series: pl.DataFrame) -> pl.DataFrame:
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


def _to_statsforecast(series: pl.DataFrame) -> pl.DataFrame:
    return series.select(
        pl.col("id").cast(pl.String).alias("unique_id"),
        pl.col("time").alias("ds"),
        pl.col("value").cast(pl.Float64).alias("y"),
    )


def _from_statsforecast(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.rename(
        {"unique_id": "id", "ds": "time", **({"y": "value"} if "y" in frame.columns else {})}
    )


def _statsforecast(models: list[object], *, freq: str, n_jobs: int):
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    return StatsForecast(models=models, freq=freq, n_jobs=n_jobs, fallback_model=SeasonalNaive(1))


def _check_series(series: pl.DataFrame, *, minimum: int) -> None:
    missing = [c for c in ("id", "time", "value") if c not in series.columns]
    if missing:
        raise ValueError(
            f"series: missing column(s) {', '.join(missing)}; have {', '.join(series.columns)}"
        )
    if series.get_column("value").is_null().any():
        raise ValueError("series: null values; resample with to_series/regularize first")
    lengths = series.group_by("id").len()
    short = lengths.filter(pl.col("len") < minimum)
    if short.height:
        worst = short.sort("len").row(0)
        raise ValueError(
            f"series {worst[0]!r} has {worst[1]} points; the backtest needs at least {minimum} "
            "(windows x horizon + one season to fit on). "
            "Use fewer --backtest-windows or a shorter --horizon."
        )


def backtest(
    series: pl.DataFrame,
    *,
    horizon: int,
    season_length: int,
    freq: str,
    windows: int = 3,
    evaluation_windows: int = 1,
    models: Sequence[str] | None = None,
    extra_seasonalities: Sequence[int] | None = None,
    n_jobs: int = 1,
) -> BacktestResult:
    """Rolling-origin backtest of every candidate over `windows` origins `horizon` steps apart.

    series: [id, time, value] on a regular `freq` grid (see `telemetry.to_series`).
    The choice is made on the first `windows - evaluation_windows` windows and scored on the
    rest. With `windows == 1` there is nothing to hold out: the model is chosen and scored on
    the same window and `held_out` is False in the scores.
    """
    if windows < 1 or horizon < 1 or season_length < 1:
        raise ValueError("windows, horizon and season_length must be positive")
    evaluation_windows = min(evaluation_windows, windows - 1) if windows > 1 else 0
    extra = (
        default_extra_seasonalities(season_length)
        if extra_seasonalities is None
        else tuple(extra_seasonalities)
    )
    _check_series(
        series, minimum=windows * horizon + max(2 * season_length, horizon + 3 * season_length)
    )
    factories = candidate_models(
        season_length=season_length,
        horizon=horizon,
        extra_seasonalities=extra,
        arima=models is not None and "AutoARIMA" in models,
    )
    names = list(factories) if models is None else [BASELINE, *[m for m in models if m != BASELINE]]
    unknown = [m for m in names if m not in factories]
    if unknown:
        raise ValueError(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(factories)}"
        )
    history = _naive_utc(series)
    engine = _statsforecast([factories[m]() for m in names], freq=freq, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = engine.cross_validation(
            df=_to_statsforecast(history),
            h=horizon,
            n_windows=windows,
            step_size=horizon,
            level=list(LEVELS),
        )
    cross_validation = _from_statsforecast(pl.DataFrame(raw)).with_columns(
        pl.col("id").cast(pl.String), pl.col("time", "cutoff").cast(pl.Datetime("us"))
    )
    cutoffs = cross_validation.get_column("cutoff").unique().sort()
    evaluation_cutoffs = cutoffs.tail(evaluation_windows) if evaluation_windows else cutoffs.head(0)
    per_window = mase(cross_validation, history, models=names, seasonality=season_length)
    coverages = cross_validation.group_by("id", "cutoff").agg(
        [
            coverage(cross_validation, model=m, level=level).alias(f"{m}|{level}")
            for m in names
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
    window_scores = (
        per_window.join(coverage_long, on=["id", "cutoff", "model"])
        .with_columns(
            pl.when(pl.col("cutoff").is_in(evaluation_cutoffs.implode()))
            .then(pl.lit("evaluation"))
            .otherwise(pl.lit("selection"))
            .alias("role")
        )
        .sort("id", "cutoff", "model")
    )
    scores = _choose(window_scores, cross_validation, names=names, held_out=evaluation_windows > 0)
    return BacktestResult(
        cross_validation=cross_validation,
        window_scores=window_scores,
        scores=scores,
        horizon=horizon,
        season_length=season_length,
        models=tuple(names),
    )


def _choose(
    window_scores: pl.DataFrame, cross_validation: pl.DataFrame, *, names: list[str], held_out: bool
) -> pl.DataFrame:
    order = {name: rank for rank, name in enumerate(names)}
    selection = window_scores.filter(pl.col("role") == "selection")
    evaluation = window_scores.filter(pl.col("role") == "evaluation") if held_out else selection
    # Ties (a constant series) go to the baseline: it is listed first and the sort is stable.
    chosen = (
        selection.group_by("id", "model")
        .agg(pl.col("mase").mean().alias("selection_mase"), pl.len().alias("selection_windows"))
        .with_columns(
            pl.col("model").replace_strict(order, return_dtype=pl.Int64).alias("rank"),
            pl.col("selection_mase").fill_nan(None),
        )
        .sort("id", pl.col("selection_mase").fill_null(float("inf")), "rank")
        .group_by("id", maintain_order=True)
        .first()
        .drop("rank")
    )
    evaluated = evaluation.group_by("id", "model").agg(
        pl.col("mase").mean(), pl.col("mae").mean(), pl.len().alias("evaluation_windows")
    )
    baseline = evaluated.filter(pl.col("model") == BASELINE).select(
        "id", pl.col("mase").alias("seasonal_naive_mase"), pl.col("mae").alias("baseline_mae")
    )
    # Coverage over all held-out points (not a mean of per-window shares) so unequal windows
    # weigh by their size.
    evaluation_cutoffs = evaluation.select("id", "cutoff").unique()
    points = cross_validation.join(evaluation_cutoffs, on=["id", "cutoff"]).join(
        chosen.select("id", "model"), on="id"
    )
    covered = []
    for model in names:
        subset = points.filter(pl.col("model") == model)
        if subset.height:
            covered.append(
                subset.group_by("id").agg(
                    *[
                        coverage(subset, model=model, level=level).alias(f"coverage_{level}")
                        for level in LEVELS
                    ]
                )
            )
    coverage_table = (
        pl.concat(covered)
        if covered
        else pl.DataFrame(
            schema={"id": pl.String, "coverage_80": pl.Float64, "coverage_95": pl.Float64}
        )
    )
    scores = (
        chosen.join(evaluated, on=["id", "model"], how="left")
        .join(baseline, on="id", how="left")
        .join(coverage_table, on="id", how="left")
        .with_columns(
            # MAE ratio equals MASE ratio window by window (same scale); over several windows the
            # ratio of mean MAEs is the stable form.
            (pl.col("mae") / pl.col("baseline_mae")).alias("relative_mase"),
            pl.lit(held_out).alias("held_out"),
        )
    )
    return schema.conform(scores.select(list(SCORE_COLUMNS)), SCORE_COLUMNS, name="scores").sort(
        "id"
    )


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
    n_jobs: int = 1,
) -> ForecastResult:
    """Backtest, refit each series' chosen model on its whole history, forecast `horizon` steps.

    Returns the `capacity_forecast` table (id, time, forecast, lo_80, hi_80, lo_95, hi_95, model)
    and the per-series held-out scores. The model used is the one whose held-out scores are
    reported, so the figures describe the forecast that is shipped.
    """
    result = backtest(
        series,
        horizon=horizon,
        season_length=season_length,
        freq=freq,
        windows=backtest_windows,
        evaluation_windows=evaluation_windows,
        models=models,
        extra_seasonalities=extra_seasonalities,
        n_jobs=n_jobs,
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
    history = _naive_utc(series)
    tables = []
    for model, ids in result.scores.group_by("model").agg(pl.col("id")).iter_rows():
        engine = _statsforecast([factories[model]()], freq=freq, n_jobs=n_jobs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = engine.forecast(
                df=_to_statsforecast(history.filter(pl.col("id").is_in(ids))),
                h=horizon,
                level=list(LEVELS),
            )
        frame = _from_statsforecast(pl.DataFrame(raw))
        tables.append(
            frame.select(
                pl.col("id").cast(pl.String),
                "time",
                pl.col(model).alias("forecast"),
                *[
                    pl.col(f"{model}-{side}-{level}").alias(f"{side}_{level}")
                    for level in LEVELS
                    for side in ("lo", "hi")
                ],
                pl.lit(model).alias("model"),
            )
        )
    table = pl.concat(tables).with_columns(
        pl.col("time").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    )
    if nonnegative:
        # Accelerator counts and task volumes cannot be negative; a Gaussian interval around a
        # low level can. Clipping changes no coverage figure (every observed value is >= 0).
        table = table.with_columns(pl.col("forecast", *_BOUNDS).clip(lower_bound=0.0))
    table = schema.conform(table, schema.CAPACITY_FORECAST, name="capacity_forecast").sort(
        "id", "time"
    )
    return ForecastResult(forecast=table, scores=result.scores, backtest=result, history=history)


def relative_mase(scores: pl.DataFrame) -> float:
    """Geometric mean over series of chosen MASE ÷ seasonal naive MASE (Hyndman & Koehler, 2006)."""
    values = scores.get_column("relative_mase").drop_nulls().to_numpy()
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.exp(np.mean(np.log(values)))) if values.size else float("nan")


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
    return float(pl.concat(inside).mean()) if inside else float("nan")
