"""Calibrated forecasts: statsforecast candidates + LightGBM, a combination rule, conformal bands.

The candidates are the statsforecast models of `candidates` and the learned model of `learned`.
Every candidate is backtested at origins `step` apart (daily for hourly data), each origin fit
only on what precedes it. A *rule* turns the candidates into one forecast:

    mean      equal-weight mean of every candidate (forecast pooling)
    median    their median
    top3      per series, the mean of the 3 candidates with the lowest MASE on backtest windows
              whose horizon ended before the origin (today's per-series rule)
    <model>   one candidate alone (SeasonalNaive is the baseline)

`DEFAULT_RULE` is the rule that wins when chosen leave-one-cluster-out on the shared Helios
virtual clusters (see `evaluation.leave_one_cluster_out` and benchmarks/RESULTS_capacity.md):
it was never chosen on the cluster it is scored on. Intervals are split-conformal on the
rule's own residuals at earlier origins (`conformal`); the held-out score of a forecast uses
only origins whose horizon ended before it, exactly as the shipped forecast does.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from annotation_pipelines import schema
from annotation_pipelines.forecasting.backtesting import minimum_history
from annotation_pipelines.forecasting.candidates import (
    BASELINE,
    candidate_models,
    check_model_names,
    default_extra_seasonalities,
)
from annotation_pipelines.forecasting.conformal import (
    apply_quantiles,
    calibration_quantiles,
    ordered_bands,
    winkler,
    with_step,
)
from annotation_pipelines.forecasting.hierarchy import (
    DEFAULT_METHOD,
    Hierarchy,
    reconciled_backtest,
    reconciled_forecast,
    wide_column,
    wide_ids,
)
from annotation_pipelines.forecasting.learned import (
    LEARNED,
    learned_cross_validation,
    learned_forecast,
)
from annotation_pipelines.forecasting.metrics import LEVELS
from annotation_pipelines.forecasting.scalars import as_float, as_int

if TYPE_CHECKING:
    from statsforecast import StatsForecast

from annotation_pipelines.forecasting.statsforecast_adapter import (
    from_statsforecast,
    naive_utc,
    statsforecast_engine,
    to_statsforecast,
)

COMBINATIONS = ("mean", "median", "top3")
DEFAULT_RULE = "mean"
CALIBRATION_WINDOWS = 4
MAX_WINDOWS = 15
# A split-conformal 95% band needs 19 errors (rank ceil((n + 1) 0.95) <= n): with fewer it is
# the largest error seen, and at a horizon of 1 so is the 80% band (4 windows, 4 errors: the
# two bands were one).
MIN_CALIBRATION_ERRORS = 19


def calibration_windows_for(horizon: int, windows: int = CALIBRATION_WINDOWS) -> int:
    """`windows`, or as many as hold MIN_CALIBRATION_ERRORS errors of a short horizon."""
    return max(windows, -(-MIN_CALIBRATION_ERRORS // max(horizon, 1)))


# Held-out scores are on the last backtest origin; the earlier ones choose and calibrate.
HELD_OUT_WINDOWS = 1


def candidate_names(*, season_length: int, learned: bool = True) -> list[str]:
    """Every candidate, the baseline first: what `--models` accepts besides the combinations."""
    names = list(
        candidate_models(
            season_length=season_length,
            horizon=1,
            extra_seasonalities=default_extra_seasonalities(season_length),
        )
    )
    return [*names, LEARNED] if learned else names


def rule_names(*, season_length: int) -> list[str]:
    return [*COMBINATIONS, *candidate_names(season_length=season_length)]


def fit_length(*, horizon: int, season_length: int) -> int:
    """Points a series needs before its first backtest origin."""
    return max(2 * season_length, horizon + 3 * season_length)


def default_step(*, horizon: int, season_length: int) -> int:
    return max(1, min(horizon, season_length))


def backtest_minimum(*, windows: int, step: int, horizon: int, season_length: int) -> int:
    """Points a series needs for `windows` backtest origins `step` apart and room to fit."""
    return (windows - 1) * step + horizon + fit_length(horizon=horizon, season_length=season_length)


def auto_windows(
    series: pl.DataFrame,
    *,
    horizon: int,
    season_length: int,
    step: int,
    calibration_windows: int = CALIBRATION_WINDOWS,
) -> int:
    """As many origins `step` apart as the shortest series allows, at most MAX_WINDOWS, or
    more when the last origin needs them to have `calibration_windows` ended before it."""
    shortest = as_int(
        series.group_by("id").len().get_column("len").min(), what="shortest series length"
    )
    room = shortest - horizon - fit_length(horizon=horizon, season_length=season_length)
    most = max(MAX_WINDOWS, calibration_windows + -(-horizon // step))
    return max(1, min(most, room // step + 1))


def uncalibrated_windows(windows: int, *, given: bool) -> int:
    """Backtest windows of the models' own intervals, a horizon apart: at least two (one to
    choose on, one to score), and of those chosen by the command at most three; a number given
    is kept."""
    return max(2, windows) if given else max(2, min(windows, 3))


def set_aside_short(
    series: pl.DataFrame,
    *,
    horizon: int,
    season_length: int,
    backtest_windows: int | None,
    calibrate: bool,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """(the series long enough for the fewest backtest windows the options allow, {id: why}
    for the others). One young series stopped the forecast of every other; when none is long
    enough all are kept, and the backtest's own error says what it takes."""
    if calibrate:
        windows = backtest_windows or 1
        step = default_step(horizon=horizon, season_length=season_length)
        minimum = backtest_minimum(
            windows=windows, step=step, horizon=horizon, season_length=season_length
        )
    else:
        windows = uncalibrated_windows(backtest_windows or 2, given=backtest_windows is not None)
        minimum = minimum_history(windows=windows, horizon=horizon, season_length=season_length)
    lengths = series.group_by("id").len()
    short = lengths.filter(pl.col("len") < minimum).sort("id")
    if not short.height or short.height == lengths.height:
        return series, {}
    reasons = {
        str(series_id): f"{length} points; a {horizon}-step backtest over {windows} window(s) "
        f"needs at least {minimum}, so it has no forecast"
        for series_id, length in short.iter_rows()
    }
    return series.filter(~pl.col("id").is_in(short.get_column("id").to_list())), reasons


def _statsforecast_names(models: Sequence[str]) -> list[str]:
    return [m for m in models if m != LEARNED]


def candidate_cross_validation(
    history: pl.DataFrame,
    *,
    horizon: int,
    season_length: int,
    freq: str,
    windows: int,
    step: int,
    models: Sequence[str],
    n_jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """[id, time, cutoff, value, <model>...] at `windows` origins `step` apart (naive UTC).

    `progress` is told each candidate as its backtest starts."""
    # One engine per candidate: each model's fit is independent of the others', so the columns
    # are those of one engine over all of them, and a long backtest can say where it is.
    frame: pl.DataFrame | None = None
    members = _statsforecast_names(models)
    for number, name in enumerate(members, start=1):
        if progress is not None:
            progress(f"backtest {number}/{len(models)}: {name} at {windows} origins")
        engine = _engine([name], season_length=season_length, horizon=horizon, freq=freq,
                         n_jobs=n_jobs)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = engine.cross_validation(
                df=to_statsforecast(history), h=horizon, n_windows=windows, step_size=step
            )
        one = from_statsforecast(pl.DataFrame(raw)).with_columns(
            pl.col("id").cast(pl.String), pl.col("time", "cutoff").cast(pl.Datetime("us"))
        )
        frame = (
            one
            if frame is None
            else frame.join(one.select("id", "time", "cutoff", name), on=["id", "time", "cutoff"])
        )
    if frame is None:
        raise ValueError("no statsforecast candidate to backtest: the baseline is always one")
    if LEARNED in models:
        if progress is not None:
            progress(f"backtest {len(models)}/{len(models)}: {LEARNED} at {windows} origins")
        cutoffs = frame.get_column("cutoff").unique().sort().to_list()
        learned = learned_cross_validation(
            history, horizon=horizon, freq=freq, season_length=season_length, cutoffs=cutoffs
        )
        frame = frame.join(learned, on=["id", "time", "cutoff"], how="left")
    return frame.select("id", "time", "cutoff", "value", *models).sort("id", "cutoff", "time")


def _engine(
    models: Sequence[str], *, season_length: int, horizon: int, freq: str, n_jobs: int
) -> StatsForecast:
    """The statsforecast engine over the statsforecast members of `models`."""
    factories = candidate_models(
        season_length=season_length,
        horizon=horizon,
        extra_seasonalities=default_extra_seasonalities(season_length),
        arima="AutoARIMA" in models,
    )
    return statsforecast_engine(
        [factories[m]() for m in _statsforecast_names(models)], freq=freq, n_jobs=n_jobs
    )


def candidate_forecasts(
    history: pl.DataFrame,
    *,
    horizon: int,
    season_length: int,
    freq: str,
    models: Sequence[str],
    n_jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """[id, time, <model>...] for the `horizon` steps after each series' last point."""
    if progress is not None:
        progress(f"forecast: {len(models)} candidates on the whole history")
    engine = _engine(models, season_length=season_length, horizon=horizon, freq=freq, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = engine.forecast(df=to_statsforecast(history), h=horizon)
    frame = from_statsforecast(pl.DataFrame(raw)).with_columns(
        pl.col("id").cast(pl.String), pl.col("time").cast(pl.Datetime("us"))
    )
    if LEARNED in models:
        learned = learned_forecast(history, horizon=horizon, freq=freq, season_length=season_length)
        frame = frame.join(learned, on=["id", "time"], how="left")
    return frame.select("id", "time", *models).sort("id", "time")


def window_mase(cross_validation: pl.DataFrame, history: pl.DataFrame, *, models: Sequence[str],
                season_length: int) -> pl.DataFrame:  # fmt: skip
    """[id, cutoff, <model>...]: each candidate's MASE per backtest window."""
    scales = []
    for cutoff in cross_validation.get_column("cutoff").unique().sort():
        scales.append(
            history.filter(pl.col("time") <= cutoff)
            .sort("id", "time")
            .group_by("id")
            .agg(
                (pl.col("value") - pl.col("value").shift(season_length)).abs().mean().alias("scale")
            )
            .with_columns(pl.lit(cutoff).cast(pl.Datetime("us")).alias("cutoff"))
        )
    errors = cross_validation.group_by("id", "cutoff").agg(
        [(pl.col("value") - pl.col(m)).abs().mean().alias(m) for m in models]
    )
    return (
        errors.join(pl.concat(scales), on=["id", "cutoff"])
        .with_columns([(pl.col(m) / pl.col("scale")).alias(m) for m in models])
        .drop("scale")
        .sort("id", "cutoff")
    )


def apply_rule(
    cross_validation: pl.DataFrame,
    *,
    rule: str,
    models: Sequence[str],
    window_scores: pl.DataFrame | None = None,
    horizon_span: dt.timedelta | None = None,
    top: int = 3,
) -> pl.DataFrame:
    """[id, time, cutoff, value, forecast, members]: the rule's forecast at every origin.

    For `top3`, an origin's members are ranked on windows whose horizon ended at or before it
    (cutoff + `horizon_span` <= origin); with none yet, the baseline alone.
    """
    models = list(models)
    base = cross_validation.select("id", "time", "cutoff", "value")
    if rule == "mean":
        return base.with_columns(
            cross_validation.select(pl.mean_horizontal(models).alias("forecast")).to_series(),
            pl.lit("+".join(models)).alias("members"),
        )
    if rule == "median":
        values = cross_validation.select(models).to_numpy()
        return base.with_columns(
            pl.Series("forecast", np.median(values, axis=1)),
            pl.lit("+".join(models)).alias("members"),
        )
    if rule in models:
        return base.with_columns(
            cross_validation.get_column(rule).alias("forecast"), pl.lit(rule).alias("members")
        )
    if rule != "top3":
        raise ValueError(
            f"unknown rule {rule!r}; choose from {', '.join([*COMBINATIONS, *models])}"
        )
    if window_scores is None or horizon_span is None:
        raise ValueError("top3 needs the window scores and the horizon span")
    chosen = _top_members(window_scores, models=models, horizon_span=horizon_span, top=top)
    joined = cross_validation.join(chosen, on=["id", "cutoff"], how="left")
    forecast = np.array(
        [
            np.mean([row[m] for m in members.split("+")])
            for row, members in zip(
                joined.select(models).iter_rows(named=True),
                joined.get_column("members").fill_null(BASELINE),
                strict=True,
            )
        ]
    )
    return joined.select(
        "id", "time", "cutoff", "value", pl.Series("forecast", forecast),
        pl.col("members").fill_null(BASELINE),
    )  # fmt: skip


def _top_members(
    window_scores: pl.DataFrame, *, models: list[str], horizon_span: dt.timedelta, top: int
) -> pl.DataFrame:
    rows = []
    for (series_id,), frame in window_scores.group_by("id", maintain_order=True):
        frame = frame.sort("cutoff")
        cutoffs = frame.get_column("cutoff").to_list()
        for origin in cutoffs:
            past = frame.filter(pl.col("cutoff") + horizon_span <= origin)
            if past.height == 0:
                rows.append((series_id, origin, BASELINE))
                continue
            finite: dict[str, float] = {}
            for m in models:
                mean = past.get_column(m).fill_nan(None).mean()
                if mean is not None and np.isfinite(value := as_float(mean, what=f"{m} MASE")):
                    finite[m] = value
            ranked = sorted(finite, key=lambda m: (finite[m], models.index(m)))[:top] or [BASELINE]
            rows.append((series_id, origin, "+".join(sorted(ranked, key=models.index))))
    return pl.DataFrame(
        rows,
        schema={"id": pl.String, "cutoff": pl.Datetime("us"), "members": pl.String},
        orient="row",
    )


def calibrated_backtest(
    rule_frame: pl.DataFrame,
    *,
    horizon_span: dt.timedelta,
    calibration_windows: int,
    nonnegative: bool = True,
) -> pl.DataFrame:
    """Per origin, the rule's forecast with conformal bands from origins whose horizon ended
    at or before it: [id, time, cutoff, value, forecast, lo_80, hi_80, lo_95, hi_95]. Origins
    with no such earlier origin get null bounds. For counts (`nonnegative`) the point and the
    bands are clipped as the shipped forecast's are, so the scores are of what is shipped."""
    residuals = _residuals(rule_frame)
    frames = []
    for origin in rule_frame.get_column("cutoff").unique().sort():
        window = rule_frame.filter(pl.col("cutoff") == origin)
        past = residuals.filter(pl.col("cutoff") + horizon_span <= origin)
        quantiles = calibration_quantiles(past, windows=calibration_windows)
        frames.append(apply_quantiles(window, quantiles, nonnegative=nonnegative))
    return pl.concat(frames, how="diagonal_relaxed")


def _residuals(rule_frame: pl.DataFrame) -> pl.DataFrame:
    """[id, cutoff, step, residual] of a rule's backtest (step 1 = first hour after the cutoff)."""
    return with_step(rule_frame, over=["id", "cutoff"]).select(
        "id", "cutoff", "step", (pl.col("value") - pl.col("forecast")).alias("residual")
    )


def score_points(points: pl.DataFrame) -> list[pl.Expr]:
    """Aggregations over scored points: coverage and mean Winkler score at each level."""
    del points
    return [
        expression
        for level in LEVELS
        for expression in (
            pl.col("value")
            .is_between(pl.col(f"lo_{level}"), pl.col(f"hi_{level}"))
            .mean()
            .alias(f"coverage_{level}"),
            winkler(
                value=pl.col("value"),
                lo=pl.col(f"lo_{level}"),
                hi=pl.col(f"hi_{level}"),
                level=level,
            )
            .mean()
            .alias(f"winkler_{level}"),
        )
    ]


@dataclass(frozen=True)
class CalibratedForecast:
    """The forecast table, the held-out scores per series, and the backtest behind them."""

    forecast: pl.DataFrame
    scores: pl.DataFrame
    cross_validation: pl.DataFrame
    history: pl.DataFrame
    rule: str
    models: tuple[str, ...]


def forecast_calibrated(
    series: pl.DataFrame,
    *,
    horizon: int,
    season_length: int,
    freq: str,
    rule: str = DEFAULT_RULE,
    models: Sequence[str] | None = None,
    backtest_windows: int | None = None,
    calibration_windows: int = CALIBRATION_WINDOWS,
    calibrate: bool = True,
    nonnegative: bool = True,
    n_jobs: int = 1,
    hierarchy: Hierarchy | None = None,
    reconciliation: str = DEFAULT_METHOD,
    progress: Callable[[str], None] | None = None,
) -> CalibratedForecast:
    """Backtest every candidate, score the rule on the last origin, forecast with bands.

    `progress`, when given, is told each stage as it starts (a backtest can take minutes).

    With a `hierarchy`, `series` holds every node of it (`hierarchy.aggregate_history`): the
    rule's forecasts of all nodes are reconciled with `reconciliation` at every origin and in
    the shipped forecast, and each node's bands are the conformal quantiles of its reconciled
    errors (`hierarchy.reconciled_backtest`), so clusters get their own bands and the point
    forecasts add up.

    Held-out scores (per series: MASE ratio to the seasonal naive, coverage and Winkler score
    at 80/95%) are on the last backtest origin, calibrated only on origins whose horizon ended
    before it. The shipped forecast is calibrated on the `calibration_windows` latest origins.
    With `calibrate=False` the bounds come from the statsforecast members' own intervals (mean
    of theirs); the learned model has none, so it is then left out.
    """
    history = naive_utc(series)
    # A series that goes negative (a net flow, a difference) is not a count: clipping it at
    # zero would move its forecast and bands away from every value it has.
    nonnegative = nonnegative and not bool((history.get_column("value") < 0).any())
    names = candidate_names(season_length=season_length)
    # What the rule combines: the models asked for, or every candidate. The seasonal naive is
    # backtested beside them whatever they are (every score is relative to it), but averaged
    # in only when asked for.
    members = list(models) if models else list(names)
    if not calibrate:
        members = [m for m in members if m != LEARNED]
    chosen_models = _with_baseline(members)
    check_model_names([m for m in chosen_models if m != "AutoARIMA"], names)
    if rule not in (*COMBINATIONS, *chosen_models):
        raise ValueError(
            f"unknown rule {rule!r}; choose from {', '.join([*COMBINATIONS, *chosen_models])}"
        )
    step = default_step(horizon=horizon, season_length=season_length)
    calibration_windows = calibration_windows_for(horizon, calibration_windows)
    windows = backtest_windows or auto_windows(
        history, horizon=horizon, season_length=season_length, step=step,
        calibration_windows=calibration_windows,
    )  # fmt: skip
    minimum = backtest_minimum(
        windows=windows, step=step, horizon=horizon, season_length=season_length
    )
    lengths = history.group_by("id").len().sort("len")
    if lengths.height and lengths.item(0, "len") < minimum:
        series_id, length = lengths.row(0)
        # Without --backtest-windows the windows are already the fewest the options allow.
        fewer = "fewer --backtest-windows, " if backtest_windows else ""
        raise ValueError(
            f"series {series_id!r} has {length} points; the backtest needs at least {minimum} "
            f"({windows} window(s) x step + horizon + room to fit). "
            f"Use {fewer}a shorter --horizon or a shorter --season-length, or a longer history."
        )
    span = _span(freq, steps=horizon)
    shortest = as_int(lengths.get_column("len").min(), what="shortest series length")
    if not calibrate:
        if backtest_windows is None:
            # The models' own intervals are scored on origins a whole horizon apart, not a
            # season: as many of those as the shortest series holds, or 28 hourly days failed
            # asking for three weeks' origins where two fit.
            fitting = (
                shortest - fit_length(horizon=horizon, season_length=season_length)
            ) // horizon
            windows = min(windows, max(fitting, 2))
        windows = uncalibrated_windows(windows, given=backtest_windows is not None)
        first = shortest - windows * horizon
        members = _repeatable(members, season_length=season_length, points=first, given=models)
        return _uncalibrated(history, horizon=horizon, season_length=season_length, freq=freq,
                             rule=rule, models=members, windows=windows,
                             nonnegative=nonnegative, n_jobs=n_jobs)  # fmt: skip
    first = shortest - horizon - (windows - 1) * step
    members = _repeatable(members, season_length=season_length, points=first, given=models)
    chosen_models = _with_baseline(members)
    cross_validation = candidate_cross_validation(
        history, horizon=horizon, season_length=season_length, freq=freq, windows=windows,
        step=step, models=chosen_models, n_jobs=n_jobs, progress=progress,
    )  # fmt: skip
    scores_by_window = window_mase(
        cross_validation, history, models=chosen_models, season_length=season_length
    )
    ruled = apply_rule(
        cross_validation, rule=rule, models=members, window_scores=scores_by_window,
        horizon_span=span,
    )  # fmt: skip
    if hierarchy is None:
        backtested = calibrated_backtest(
            ruled, horizon_span=span, calibration_windows=calibration_windows,
            nonnegative=nonnegative,
        )  # fmt: skip
    else:
        backtested = reconciled_backtest(
            ruled, hierarchy, horizon_span=span, calibration_windows=calibration_windows,
            method=reconciliation,
        )  # fmt: skip
        backtested = _coherent_bands(
            backtested, hierarchy, nonnegative=nonnegative, over=["cutoff", "time"]
        )
    backtested = backtested.join(
        cross_validation.select("id", "time", "cutoff", BASELINE), on=["id", "time", "cutoff"]
    )
    scores = _held_out_scores(backtested, history, rule=rule, season_length=season_length)
    future = candidate_forecasts(
        history, horizon=horizon, season_length=season_length, freq=freq, models=chosen_models,
        n_jobs=n_jobs, progress=progress,
    )  # fmt: skip
    last_members = (
        ruled.sort("cutoff").group_by("id").agg(pl.col("members").last())
        if rule == "top3"
        else None
    )
    point = _final_point(future, rule=rule, models=members, members=last_members)
    residuals = _residuals(ruled)
    if hierarchy is None:
        quantiles = calibration_quantiles(residuals, windows=calibration_windows)
        table = apply_quantiles(point, quantiles, nonnegative=nonnegative)
    else:
        table = reconciled_forecast(
            point.select("id", "time", "forecast"), ruled, hierarchy,
            calibration_windows=calibration_windows, method=reconciliation,
        ).join(point.select("id", "time", "model"), on=["id", "time"])  # fmt: skip
        table = _coherent_bands(table, hierarchy, nonnegative=nonnegative, over=["time"])
        table = table.with_columns(
            pl.format("{} reconciled ({})", "model", pl.lit(reconciliation)).alias("model")
        )
    return _finish(table, scores=scores, cross_validation=backtested, history=history,
                   rule=rule, models=members)  # fmt: skip


def _repeatable(
    members: list[str], *, season_length: int, points: int, given: Sequence[str] | None
) -> list[str]:
    """`members` without the seasonal naive of each extra season longer than `points`, the
    history at the first backtest origin: it has no season to repeat there and forecasts NaN,
    which made the mean of every candidate NaN in every row of the table. One the caller
    asked for by name (`given`) is an error instead."""
    longer = {f"{BASELINE}{extra}": extra for extra in default_extra_seasonalities(season_length)
              if extra > points}  # fmt: skip
    asked = sorted(set(longer) & set(given or ()))
    if asked:
        raise ValueError(
            f"{asked[0]} repeats a season of {longer[asked[0]]} steps, but the first backtest "
            f"origin has only {max(points, 0)} steps of history; leave it out of --models, or "
            "give a longer history or a shorter --horizon"
        )
    return [m for m in members if m not in longer]


def _coherent_bands(
    frame: pl.DataFrame, hierarchy: Hierarchy, *, nonnegative: bool, over: list[str]
) -> pl.DataFrame:
    """Reconciled forecasts with ordered bands; for counts every leaf's negative point is
    raised to zero and every aggregate by the sum of what its leaves were raised, so the
    points still add up (clipping each node on its own would break the sums)."""
    if not nonnegative:
        return ordered_bands(frame, nonnegative=False)
    bottom = list(hierarchy.bottom)
    raised = (
        frame.filter(pl.col("id").is_in(bottom))
        .select(
            *over,
            wide_ids(),
            (-pl.col("forecast")).clip(lower_bound=0.0).fill_null(0.0),
        )
        .pivot("id", index=over, values="forecast")
    )
    columns = [wide_column(leaf) for leaf in bottom]
    for column in columns:
        if column not in raised.columns:
            raised = raised.with_columns(pl.lit(0.0).alias(column))
    leaves = raised.select(columns).fill_null(0.0).to_numpy()
    by_node = hierarchy.children_sum(leaves.T)  # [nodes, rows]
    shifts = pl.concat(
        raised.select(*over, pl.lit(node).alias("id"), pl.Series("shift", by_node[row]))
        for row, node in enumerate(hierarchy.nodes)
    )
    joined = frame.join(shifts, on=["id", *over], how="left")
    return ordered_bands(joined, nonnegative=True, shift=pl.col("shift")).drop("shift")


def _final_point(
    future: pl.DataFrame, *, rule: str, models: list[str], members: pl.DataFrame | None
) -> pl.DataFrame:
    if rule == "mean":
        point = pl.mean_horizontal(models)
    elif rule == "median":
        return future.select(
            "id", "time",
            pl.Series("forecast", np.median(future.select(models).to_numpy(), axis=1)),
            pl.lit(f"median({'+'.join(models)})").alias("model"),
        )  # fmt: skip
    elif rule == "top3":
        assert members is not None
        joined = future.join(members, on="id", how="left")
        values = [
            float(np.mean([row[m] for m in chosen.split("+")]))
            for row, chosen in zip(
                joined.select(models).iter_rows(named=True),
                joined.get_column("members").fill_null(BASELINE),
                strict=True,
            )
        ]
        return joined.select(
            "id", "time", pl.Series("forecast", values),
            pl.format("mean({})", pl.col("members").fill_null(BASELINE)).alias("model"),
        )  # fmt: skip
    else:
        return future.select(
            "id", "time", pl.col(rule).alias("forecast"), pl.lit(rule).alias("model")
        )
    return future.select(
        "id", "time", point.alias("forecast"), pl.lit(f"mean({'+'.join(models)})").alias("model")
    )


def _held_out_scores(
    backtested: pl.DataFrame, history: pl.DataFrame, *, rule: str, season_length: int
) -> pl.DataFrame:
    """Per series on its own last origin: MASE (Hyndman & Koehler, 2006) of the rule and of the
    seasonal naive, their ratio, and coverage / Winkler score at 80 and 95%.

    Series that end at different times have different last origins (statsforecast cuts each
    series back from its own end): scoring only the latest origin overall left the others
    without scores."""
    points = _at_last_origin(backtested)
    last = points.group_by("id").agg(pl.col("cutoff").max())
    scale = (
        history.join(last, on="id")
        .filter(pl.col("time") <= pl.col("cutoff"))
        .sort("id", "time")
        .group_by("id")
        .agg((pl.col("value") - pl.col("value").shift(season_length)).abs().mean().alias("scale"))
    )
    return (
        points.group_by("id")
        .agg(
            (pl.col("value") - pl.col("forecast")).abs().mean().alias("mae"),
            (pl.col("value") - pl.col(BASELINE)).abs().mean().alias("baseline_mae"),
            *score_points(points),
        )
        .with_columns(
            (pl.col("mae") / pl.col("baseline_mae")).alias("relative_mase"),
            pl.lit(rule).alias("rule"),
        )
        .join(scale, on="id", how="left")
        .with_columns(
            (pl.col("mae") / pl.col("scale")).alias("mase"),
            (pl.col("baseline_mae") / pl.col("scale")).alias("seasonal_naive_mase"),
        )
        .sort("id")
    )


def _at_last_origin(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of each series' own last backtest origin."""
    return frame.filter(pl.col("cutoff") == pl.col("cutoff").max().over("id"))


def _span(freq: str, *, steps: int) -> dt.timedelta:
    count = int(freq.rstrip("abcdefghijklmnopqrstuvwxyz") or 1)
    unit = freq[len(str(count)) :] if freq[0].isdigit() else freq
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}.get(unit)
    if seconds is None:
        raise ValueError(f"freq {freq!r}: use s, m, h, d or w units")
    return dt.timedelta(seconds=seconds * count * steps)


def _uncalibrated(
    history: pl.DataFrame,
    *,
    horizon: int,
    season_length: int,
    freq: str,
    rule: str,
    models: list[str],
    windows: int,
    nonnegative: bool,
    n_jobs: int,
) -> CalibratedForecast:
    """The rule with the statsforecast members' own interval bounds averaged (no conformal)."""
    from annotation_pipelines.forecasting.forecaster import forecast

    members = models if rule in COMBINATIONS else [rule]
    combine = len(members) if rule in ("mean", "median") else 3 if rule == "top3" else 1
    result = forecast(
        history, horizon=horizon, season_length=season_length, freq=freq,
        backtest_windows=windows, evaluation_windows=HELD_OUT_WINDOWS,
        models=members, combine=combine, nonnegative=nonnegative, n_jobs=n_jobs,
        combination="median" if rule == "median" else "mean", members_from=members,
    )  # fmt: skip
    scores = result.scores.select(
        "id", "mase", "seasonal_naive_mase", "relative_mase", "coverage_80", "coverage_95",
        pl.lit(rule).alias("rule"),
    ).join(
        _own_interval_winkler(result.backtest.cross_validation, chosen=result.scores),
        on="id", how="left",
    )  # fmt: skip
    # One name per combination whichever path made it: the members' mean is `mean(a+b)`, their
    # median `median(a+b)`.
    combined = "median" if rule == "median" else "mean"
    table = result.forecast.with_columns(
        pl.col("model").str.replace(r"^Combination\((.*)\)$", f"{combined}($1)")
    )
    return CalibratedForecast(
        forecast=table, scores=scores, cross_validation=result.backtest.cross_validation,
        history=result.history, rule=rule, models=tuple(members),
    )  # fmt: skip


def _own_interval_winkler(cross_validation: pl.DataFrame, *, chosen: pl.DataFrame) -> pl.DataFrame:
    """[id, winkler_80, winkler_95] of each series' chosen model's own intervals on its last
    origin, the one its coverage is scored on."""
    points = _at_last_origin(cross_validation).join(chosen.select("id", "model"), on="id")
    frames = [
        points.filter(pl.col("model") == model)
        .group_by("id")
        .agg(
            winkler(
                value=pl.col("value"),
                lo=pl.col(f"{model}-lo-{level}"),
                hi=pl.col(f"{model}-hi-{level}"),
                level=level,
            )
            .mean()
            .alias(f"winkler_{level}")
            for level in LEVELS
        )
        for model in points.get_column("model").unique().sort()
    ]
    empty = pl.DataFrame(
        schema={"id": pl.String, **{f"winkler_{level}": pl.Float64 for level in LEVELS}}
    )
    return pl.concat([empty, *frames], how="vertical_relaxed")


def _finish(
    table: pl.DataFrame,
    *,
    scores: pl.DataFrame,
    cross_validation: pl.DataFrame,
    history: pl.DataFrame,
    rule: str,
    models: list[str],
) -> CalibratedForecast:
    table = table.with_columns(pl.col("time").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    table = schema.conform(
        table.select(list(schema.CAPACITY_FORECAST)), schema.CAPACITY_FORECAST,
        name="capacity_forecast",
    ).sort("id", "time")  # fmt: skip
    return CalibratedForecast(
        forecast=table, scores=scores, cross_validation=cross_validation, history=history,
        rule=rule, models=tuple(models),
    )  # fmt: skip


def _with_baseline(members: list[str]) -> list[str]:
    """`members` and the seasonal naive, which every score is relative to."""
    return members if BASELINE in members else [BASELINE, *members]
