"""Rolling-origin backtest of every candidate, and the per-series choice it leads to.

Model choice (Tashman, 2000, "Out-of-sample tests of forecasting accuracy"): the history is cut
at `windows` origins `horizon` steps apart; every candidate forecasts the `horizon` steps after
each origin. Candidates are ranked by mean MASE (Hyndman & Koehler, 2006: MAE over the in-sample
MAE of the seasonal naive at the same origin) over the first `windows - evaluation_windows`
windows, ties to the simpler model; the forecast is the equal-weight mean of the `combine` best
(default 3; `combine=1` picks the single best), its interval bounds the mean of theirs (forecast
pooling: Kourentzes, Barrow & Petropoulos, 2019, "Another look at forecast selection and
combination: evidence from forecast pooling"; quantile averaging: Lichtendahl, Grushka-Cockayne
& Winkler, 2013). Combining a few top candidates hedges the noise of a choice made on two or
three windows, which is large for level-shifting utilisation series. The chosen forecast's MASE
and interval coverage are then reported on the last `evaluation_windows` windows, which played
no part in the choice. Those held-out figures are what a user can expect; a score on the
windows used to choose would flatter the winner.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

from annotation_pipelines.forecasting.candidates import (
    BASELINE,
    candidate_models,
    check_model_names,
    default_extra_seasonalities,
)
from annotation_pipelines.forecasting.conformal import ordered_bands
from annotation_pipelines.forecasting.metrics import LEVELS, score_windows
from annotation_pipelines.forecasting.selection import choose_members, score_chosen
from annotation_pipelines.forecasting.statsforecast_adapter import (
    from_statsforecast,
    naive_utc,
    statsforecast_engine,
    to_statsforecast,
)


def shipped_bands(frame: pl.DataFrame, *, models: Sequence[str], nonnegative: bool) -> pl.DataFrame:
    """Each model's `<model>` / `<model>-lo-80` ... columns as they are shipped: ordered, and
    for counts clipped at zero with the point."""
    for model in models:
        frame = ordered_bands(frame, nonnegative=nonnegative, point=model, bound=_bound_of(model))
    return frame


COMBINE = ("mean", "median")


def combined_columns(
    members: Sequence[str], *, how: str, point: str, bound: Callable[[str, int], str]
) -> list[pl.Expr]:
    """Per row, the members' mean or median of their points (`<model>`), as `point`, and of
    each bound (`<model>-lo-80` ...), as `bound(side, level)`. Like the mean, the median of
    ordered bands is ordered."""

    def combine(columns: list[str]) -> pl.Expr:
        if how == "median":
            return pl.concat_list(columns).list.median()
        return pl.mean_horizontal(columns)

    return [
        combine(list(members)).alias(point),
        *[
            combine([f"{m}-{side}-{level}" for m in members]).alias(bound(side, level))
            for level in LEVELS
            for side in ("lo", "hi")
        ],
    ]


def _bound_of(model: str) -> Callable[[str, int], str]:
    def name(side: str, level: int) -> str:
        return f"{model}-{side}-{level}"

    return name


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
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def chosen(self) -> dict[str, str]:
        return dict(self.scores.select("id", "model").iter_rows())


def minimum_history(*, windows: int, horizon: int, season_length: int) -> int:
    """Points a series needs: windows x horizon to score on, plus room to fit before the first
    origin."""
    return windows * horizon + max(2 * season_length, horizon + 3 * season_length)


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
            "Use fewer --backtest-windows, a shorter --horizon or a shorter --season-length."
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
    combine: int = 3,
    n_jobs: int = 1,
    nonnegative: bool = False,
    combination: str = "mean",
    members_from: Sequence[str] | None = None,
) -> BacktestResult:
    """Rolling-origin backtest of every candidate over `windows` origins `horizon` steps apart.

    series: [id, time, value] on a regular `freq` grid (see `telemetry.to_series`).
    The choice is made on the first `windows - evaluation_windows` windows and scored on the
    rest. With `windows == 1` there is nothing to hold out: the model is chosen and scored on
    the same window and `held_out` is False in the scores. With `nonnegative` every candidate's
    point and bounds are clipped and ordered as `forecaster.forecast` ships them
    (`conformal.ordered_bands`), so the scores are of the bands that are shipped. A
    combination's point and bounds are its members' `combination` ("mean" or "median").
    With `members_from` only those candidates are ranked for the forecast; the baseline is
    backtested either way, as every relative score needs it.
    """
    if combination not in COMBINE:
        raise ValueError(f"combination {combination!r}: use {' or '.join(COMBINE)}")
    if windows < 1 or horizon < 1 or season_length < 1 or combine < 1:
        raise ValueError("windows, horizon, season_length and combine must be positive")
    evaluation_windows = min(evaluation_windows, windows - 1) if windows > 1 else 0
    extra = (
        default_extra_seasonalities(season_length)
        if extra_seasonalities is None
        else tuple(extra_seasonalities)
    )
    _check_series(
        series,
        minimum=minimum_history(windows=windows, horizon=horizon, season_length=season_length),
    )
    factories = candidate_models(
        season_length=season_length,
        horizon=horizon,
        extra_seasonalities=extra,
        arima=models is not None and "AutoARIMA" in models,
    )
    names = list(factories) if models is None else [BASELINE, *[m for m in models if m != BASELINE]]
    check_model_names(names, factories)
    history = naive_utc(series)
    engine = statsforecast_engine([factories[m]() for m in names], freq=freq, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = engine.cross_validation(
            df=to_statsforecast(history),
            h=horizon,
            n_windows=windows,
            step_size=horizon,
            level=list(LEVELS),
        )
    cross_validation = from_statsforecast(pl.DataFrame(raw)).with_columns(
        pl.col("id").cast(pl.String), pl.col("time", "cutoff").cast(pl.Datetime("us"))
    )
    cross_validation = shipped_bands(cross_validation, models=names, nonnegative=nonnegative)
    # Each series' own latest origins: a series that ends early has earlier ones.
    latest = pl.col("cutoff").rank("dense", descending=True).over("id") <= evaluation_windows
    role = pl.when(latest).then(pl.lit("evaluation")).otherwise(pl.lit("selection")).alias("role")
    window_scores = score_windows(
        cross_validation, history, models=names, season_length=season_length
    ).with_columns(role)
    ranked = (
        window_scores
        if members_from is None
        else window_scores.filter(pl.col("model").is_in(list(members_from)))
    )
    chosen, members = choose_members(ranked, names=names, combine=combine)
    for name, ids in chosen.group_by("model").agg(pl.col("id")).iter_rows():
        parts = members[name]
        if len(parts) == 1:
            continue
        # Quantile averaging (Lichtendahl, Grushka-Cockayne & Winkler, 2013): the combination's
        # bounds are the mean (or median) of its members' bounds at each level.
        combined = cross_validation.filter(pl.col("id").is_in(ids)).select(
            "id",
            "time",
            "cutoff",
            *combined_columns(parts, how=combination, point=name, bound=_bound_of(name)),
        )
        cross_validation = cross_validation.join(combined, on=["id", "time", "cutoff"], how="left")
        window_scores = pl.concat(
            [
                window_scores,
                score_windows(
                    cross_validation.filter(pl.col("id").is_in(ids)),
                    history,
                    models=[name],
                    season_length=season_length,
                ).with_columns(role),
            ]
        )
    window_scores = window_scores.sort("id", "cutoff", "model")
    scores = score_chosen(
        window_scores,
        cross_validation,
        chosen=chosen,
        held_out=evaluation_windows > 0,
    )
    return BacktestResult(
        cross_validation=cross_validation,
        window_scores=window_scores,
        scores=scores,
        horizon=horizon,
        season_length=season_length,
        models=tuple(names),
        members=members,
    )
