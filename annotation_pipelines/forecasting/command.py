"""`annotation-pipelines forecast`: backtest, choose a model per series, forecast with intervals.

Prints one JSON object:

    {"freq": "1h", "horizon": 168, "season_length": 24, "backtest_windows": 3,
     "backtest_windows_chosen": true, "evaluation_windows": 1, "rule": "mean",
     "models": [...], "calibrated": true,
     "relative_mase": 0.93, "relative_mase_excluded": 0, "coverage_80": 0.9,
     "coverage_95": 0.97, "winkler_80": 41.2, "winkler_95": 55.0,
     "series": {"<id>": {"model": "AutoETS", "mase": 0.71, "seasonal_naive_mase": 0.80,
                         "relative_mase": 0.89, "coverage_80": 0.83, "coverage_95": 0.95,
                         "first_exceeds_supply": "2020-06-03T14:00:00" | null}},
     "set_aside": {"<id>": "30 points; a 168-step backtest over 1 window(s) needs ..."},
     "time_zone": "Europe/Berlin" | "UTC" | "offsets as written: +01:00, +02:00" | null,
     "partial_buckets": [{"id": "<id>", "time": "2024-02-14T00:00:00", "periods": 156,
                          "of": 288, "dropped": true}]}

`set_aside` names each series too short for the fewest backtest windows the options allow
(also on stderr): it has no forecast and the others are forecast as usual. When every series
is too short, the backtest's error says what it takes.

`first_exceeds_supply` (only with --supply-col) is the first forecast time whose upper 95%
bound is above the supply column's last value for that series.

`backtest_windows` is the number of backtest origins actually used; `backtest_windows_chosen`
is true when the command chose it (no --backtest-windows): as many as the shortest series
allows, up to 15, or up to as many as the last origin needs for its bands to be calibrated and
scored (28 for a 24-step horizon with origins a step apart). MASE, coverage and Winkler
scores are on the last of them only (`evaluation_windows`: 1); the earlier ones calibrate the
last one's bands (and choose top3's members), so with a fixed rule more windows change the
scored bands, not the MASE. With --no-calibrate the statsforecast members' own intervals are
averaged, the backtest has 2 or 3 windows a horizon apart (a --backtest-windows given is
kept, at least 2), and LightGBM, which has no intervals of its own, is left out of the
candidates.
Coverage and Winkler scores are null when no earlier window's horizon ended before the last
one (too few windows); stderr then says how many are needed (and, for windows chosen, how long
a history they take).

`time_zone` is the zone the buckets and the table's times are in: null for naive input. With
zoned input, a --freq of a day or longer buckets the input's local days (weeks), and the table
gives each local day start with its offset; text with offsets names no zone, so its days are
the days the times were written in and the table's times carry no offset. Shorter steps are
counted in UTC. `partial_buckets` names each series' first or last bucket holding fewer of the
series' own steps than a whole one (`periods` of `of`: per-minute data cut at 13:00 fills 780
of a day's 1,440): it is left out of the fit, so the forecast starts at it from the last whole
bucket (`dropped`; a series with no whole bucket keeps its own).

The top-level `relative_mase` is the geometric mean over series of the MASE ratio to the
seasonal naive. A ratio that is not finite (the naive was exact too) or below 1e-9 (the model
was exact, e.g. on a flat held-out window) has no logarithm worth averaging and would drive
the mean to zero: such series are left out and counted in `relative_mase_excluded` (their own
`relative_mase` is still in `series`). Without calibration the Winkler scores are those of the
models' own intervals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import click
import polars as pl

from annotation_pipelines.forecasting.scalars import as_float, as_int
from annotation_pipelines.tabular import (
    InputError,
    check_output_path,
    check_table_path,
    read_table,
    where,
    write_table,
)

# Below this a MASE ratio means an exact forecast: its log would swamp the geometric mean.
RATIO_TOLERANCE = 1e-9
# What `_span` and the season defaults understand: a count and one of s, m(inute), h, d, w.
_FREQ = re.compile(r"[1-9][0-9]*[smhdw]")
# Beyond about 1e154 a value's square overflows: LightGBM's forecast and the statsforecast
# models' own intervals read NaN. Larger series are fit divided by a power of two, which is
# exact, and every figure in the series' units is multiplied back.
_LARGEST_FIT_AS_GIVEN = 2.0**64
_UNIT_COLUMNS = ("forecast", "lo_80", "hi_80", "lo_95", "hi_95")
_UNIT_SCORES = ("mae", "baseline_mae", "scale", "winkler_80", "winkler_95")
# Every candidate name a season length can produce (SeasonalNaive<N> for extra seasons).
_MODEL = re.compile(r"SeasonalNaive[0-9]*|AutoETS|AutoTheta|MSTL|AutoARIMA|LightGBM")

# Steps of a day or longer: a week's season of daily data, a year's of weekly; four weeks and
# a quarter ahead.
_SEASON_BY_UNIT = {"d": 7, "w": 52}
_HORIZON_BY_UNIT = {"d": 28, "w": 13}
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_HOUR, _DAY, _WEEK = 3_600, 86_400, 604_800
# How much finer than the data's median step a --freq may be before it is refused.
_STEP_TOLERANCE = 0.05


def _median_step(steps: pl.DataFrame) -> int | None:
    """The median over series of each series' median step (`_series_steps`), in seconds; None
    when no series has two times.

    Pooling the times of every series would halve the step of two hourly series sampled half an
    hour apart. Of an even number of series it is the coarser middle one, not their mean: an
    hourly and a two-hourly series were read every 90 minutes, a step neither has."""
    step = steps.get_column("step")
    middle = step.quantile(0.5, interpolation="higher")
    return round(as_float(middle, what="median time step")) if step.len() else None


def _infer_freq(frame: pl.DataFrame) -> str:
    """The data's median step (`_median_step`) as a frequency."""
    return _freq_of_step(_median_step(_series_steps(frame)))


def _freq_of_step(step: int | None) -> str:
    """A step in seconds as a frequency; "1w" for a step of a week, daily for None (no series
    has two times)."""
    step = step or _DAY
    # Weekly data is read in weeks, as `--freq 1w` reads it: a year's season and a quarter
    # ahead, each time on the Monday of its week. "7d" would give it a daily season (7 and 28)
    # and move its times to 7-day windows counted from 1970-01-01, a Thursday.
    if step == _WEEK:
        return "1w"
    for unit, size in (("d", _DAY), ("h", 3_600), ("m", 60)):
        if step >= size and step % size == 0:
            return f"{step // size}{unit}"
    return f"{max(step, 1)}s"


def _check_not_finer(freq: str, *, data_freq: str, step: int | None) -> None:
    """A --freq finer than the data's own step is refused: resampling would carry each sample
    forward over the steps between (1s on hourly data: 3,600 steps per sample, gigabytes)."""
    # Times logged a second or two late still have the step they were meant to have.
    if step is None or _step_seconds(freq) >= step * (1 - _STEP_TOLERANCE):
        return
    raise click.BadParameter(
        f"{freq!r} is finer than the data's own step of {data_freq}: each sample would be "
        f"carried forward over about {step / _step_seconds(freq):,.0f} steps; give "
        f"{data_freq} or coarser, or leave --freq out",
        param_hint="--freq",
    )


def _unit(freq: str) -> str:
    return freq.lstrip("0123456789")[:1] or "d"


def default_season_and_horizon(freq: str) -> tuple[int, int]:
    """Steps in a day and in a week for steps shorter than a day (24 and 168 hourly, 96 and
    672 quarter-hourly); 7 and 28 for daily data, 52 and 13 for weekly."""
    unit = _unit(freq)
    step = _step_seconds(freq)
    if step < _DAY:
        return max(1, round(_DAY / step)), max(1, round(_WEEK / step))
    whole = "w" if unit == "w" else "d"
    return _SEASON_BY_UNIT[whole], _HORIZON_BY_UNIT[whole]


@click.command("forecast")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--time-col", required=True, help="Timestamp column.")
@click.option(
    "--value-col", required=True, help="Value to forecast (e.g. demand = running + pending)."
)
@click.option("--id-col", default=None, help="Series identifier column (one series when absent).")
@click.option(
    "--freq",
    default=None,
    help="Resample to this frequency: a count and s, m (minutes), h, d or w, e.g. 1h, 1d "
    "(default: the data's).",
)
@click.option(
    "--horizon",
    type=click.IntRange(min=1),
    default=None,
    help="Steps ahead (default: a week of sub-daily steps, 28 daily, 13 weekly).",
)
@click.option(
    "--season-length",
    type=click.IntRange(min=1),
    default=None,
    help="Steps per season (default: a day of sub-daily steps, e.g. 24 hourly or 96 every "
    "15 minutes; 7 daily, 52 weekly).",
)
@click.option(
    "--backtest-windows",
    type=click.IntRange(min=1),
    default=None,
    help="Backtest origins, one season apart (default: as many as the history allows, up to "
    "15, or more when the last origin's bands need them to be scored; the JSON says "
    "backtest_windows_chosen). Scores are on the last origin; the earlier ones calibrate its "
    "bands.",
)
@click.option(
    "--models",
    default=None,
    help="Comma-separated candidates or a rule (mean, median, top3); default: the rule "
    "validated leave-one-cluster-out (the mean of every candidate, LightGBM included).",
)
@click.option(
    "--calibrate/--no-calibrate",
    default=True,
    show_default=True,
    help="Conformal 80/95% bands from backtest residuals (off: the statsforecast models' own "
    "intervals, averaged; LightGBM has none, so it is then left out of the candidates).",
)
@click.option(
    "--supply-col",
    default=None,
    help="Supply column: report when the upper 95% bound first exceeds it.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the forecast table (.csv or .parquet).",
)
def forecast_command(
    input_path: Path,
    time_col: str,
    value_col: str,
    id_col: str | None,
    freq: str | None,
    horizon: int | None,
    season_length: int | None,
    backtest_windows: int | None,
    models: str | None,
    calibrate: bool,
    supply_col: str | None,
    output: Path | None,
) -> None:
    """Forecast INPUT's series with 80/95% intervals; model chosen by rolling-origin backtest."""
    from annotation_pipelines.forecasting.candidates import UnknownModelError
    from annotation_pipelines.forecasting.ensemble import (
        COMBINATIONS,
        DEFAULT_RULE,
        HELD_OUT_WINDOWS,
        backtest_minimum,
        default_step,
        forecast_calibrated,
        set_aside_short,
    )
    from annotation_pipelines.forecasting.learned import LEARNED
    from annotation_pipelines.forecasting.supply import supply_crossing
    from annotation_pipelines.forecasting.telemetry import regularize

    # Options are checked before the input is read: a forecast can take minutes.
    if freq is not None and not _FREQ.fullmatch(freq):
        raise click.BadParameter(
            f"{freq!r}: use a count and one of s, m (minutes), h, d, w, e.g. 1h or 1d",
            param_hint="--freq",
        )
    names = [name.strip() for name in (models or "").split(",") if name.strip()]
    if models is not None and not names:
        # An empty list (`--models ""`, `--models ,`, a shell variable left unset) ran the
        # default rule as if the option had not been given.
        raise click.BadParameter(
            f"{models!r} names no model; give a rule (mean, median, top3) or a comma-separated "
            "list of models, or leave --models out for the default",
            param_hint="--models",
        )
    _check_models(names, combinations=COMBINATIONS, calibrate=calibrate, learned=LEARNED)
    if output is not None:
        try:
            check_table_path(output)
            check_output_path(output, inputs=(input_path,))
        except InputError as error:
            raise click.ClickException(str(error)) from error
    progress = _progress_printer()
    # A missing column is named by the option that gave it (the first, if two gave it).
    options: dict[str, str] = {}
    for option, column in (
        ("--time-col", time_col),
        ("--value-col", value_col),
        ("--id-col", id_col),
        ("--supply-col", supply_col),
    ):
        if column:
            options.setdefault(column, option)
    try:
        table = read_table(
            input_path,
            required_columns=list(options),
            string_columns=[id_col] if id_col else [],
            column_options=options,
            # Supply is often logged only when it changes: its last known value stands (unless
            # the column is also the time, value or id, which every row needs).
            nullable_columns=[supply_col]
            if supply_col and options.get(supply_col) == "--supply-col"
            else [],
        )
        frame, zone = _prepare(
            table,
            path=input_path,
            time_col=time_col,
            value_col=value_col,
            id_col=id_col,
            supply_col=supply_col,
        )
    except InputError as error:
        raise click.ClickException(str(error)) from error
    freq_given = freq is not None
    steps = _series_steps(frame)
    data_step = _median_step(steps)
    data_freq = _freq_of_step(data_step)
    if freq is not None:
        # Finer than every series' own step: a series sampled at the --freq given is not
        # carried forward, however coarse the others are.
        finest = (
            round(as_float(steps.get_column("step").min(), what="finest step"))
            if steps.height
            else None
        )
        _check_not_finer(freq, data_freq=_freq_of_step(finest), step=finest)
    freq = freq or data_freq
    # Buckets of a day or longer are the input's local days (weeks): a UTC day split each
    # local day's demand between two. Shorter steps stay on UTC, whose hours do not repeat or
    # skip at a clock change.
    local_buckets = zone is not None and _step_seconds(freq) >= _DAY
    time_zone = zone if local_buckets else ("UTC" if zone is not None else None)
    frame = frame.with_columns(
        pl.col("local" if local_buckets else "time").alias("time"),
        pl.col("time").alias("instant"),
    ).drop("local")
    if not freq_given:
        try:
            _check_fixed_step(frame, steps=steps, freq=freq, path=input_path, time_col=time_col)
        except InputError as error:
            raise click.ClickException(str(error)) from error
    if output is None:
        # Said once the input is known good and before the work, not after it: a forecast can
        # take minutes, and without a table the scores on stdout are all that is left of it.
        click.echo(
            "note: no --output: the forecast table will not be written, only the scores "
            "printed; --output PATH (.csv or .parquet) writes it",
            err=True,
        )
    horizon_given = horizon is not None
    season_given = season_length is not None
    default_season, default_horizon = default_season_and_horizon(freq)
    season_length = season_length or default_season
    horizon = horizon or default_horizon
    if not freq_given and _step_seconds(freq) < _HOUR:
        # Only what the options left out is a default: a season and horizon given are not.
        season = f"the {'' if season_given else 'default '}season is {season_length} steps"
        ahead = f"the {'' if horizon_given else 'default '}horizon {horizon} steps"
        click.echo(
            f"note: the data's step is {freq}, so {season} and {ahead}; backtesting at that "
            "resolution can take many minutes per model (the stages are shown below); --freq 1h "
            "forecasts the same demand hourly",
            err=True,
        )
    scale = _power_of_two_scale(frame.get_column("value"))
    fitted = frame.with_columns(pl.col("value") / scale) if scale != 1.0 else frame
    try:
        bucketed = (
            fitted.sort("id", "time")
            .group_by_dynamic("time", every=freq, group_by="id")
            .agg(pl.col("value").mean(), pl.col("instant").n_unique().alias("periods"))
        )
        partial = _partial_buckets(
            bucketed, steps=steps, freq=freq, zone=zone if local_buckets else None
        )
        for note in _partial_notes(partial, freq=freq):
            click.echo(note, err=True)
        dropped = partial.filter("dropped").select("id", "time")
        resampled = bucketed.join(dropped, on=["id", "time"], how="anti").drop("periods")
        series = regularize(resampled, freq=freq)
        for note in _filled_notes(resampled, series):
            click.echo(note, err=True)
        series, set_aside = set_aside_short(
            series,
            horizon=horizon,
            season_length=season_length,
            backtest_windows=backtest_windows,
            calibrate=calibrate,
        )
        for series_id, reason in set_aside.items():
            click.echo(f"note: series {series_id!r} set aside: {reason}", err=True)
        lengths = series.group_by("id").len().get_column("len")
        longest = as_int(lengths.max(), what="longest series")
        progress(
            f"read {table.height:,} row{'' if table.height == 1 else 's'}: {lengths.len()} "
            f"series of up to {longest:,} step{'' if longest == 1 else 's'} of {freq}"
        )
        if len(names) == 1 and names[0] in COMBINATIONS:
            rule, candidates = names[0], None
        elif len(names) == 1:
            rule, candidates = names[0], names
        else:
            rule, candidates = DEFAULT_RULE, names or None
        result = forecast_calibrated(
            series,
            horizon=horizon,
            season_length=season_length,
            freq=freq,
            rule=rule,
            models=candidates,
            backtest_windows=backtest_windows,
            calibrate=calibrate,
            progress=progress,
        )
    except UnknownModelError as error:
        raise click.BadParameter(str(error), param_hint="--models") from error
    except (ValueError, pl.exceptions.PolarsError) as error:
        default = "" if horizon_given else f" (the default --horizon is {horizon} steps of {freq})"
        raise click.ClickException(f"{input_path}: {error}{default}") from error
    if scale != 1.0:
        result = dataclasses.replace(
            result,
            forecast=_times(result.forecast, _UNIT_COLUMNS, scale),
            scores=_times(result.scores, _UNIT_SCORES, scale),
        )
    # Per series: series that end at different times have their origins at different times.
    windows = as_int(
        result.cross_validation.group_by("id")
        .agg(pl.col("cutoff").n_unique())
        .get_column("cutoff")
        .max(),
        what="backtest windows",
    )
    if calibrate and result.scores.get_column("coverage_80").is_null().any():
        step = default_step(horizon=horizon, season_length=season_length)
        needed = -(-horizon // step) + 1
        if backtest_windows is None:
            # The windows chosen are already the most the shortest series holds: asking for
            # `needed` of them would fail the backtest.
            least = backtest_minimum(
                windows=needed, step=step, horizon=horizon, season_length=season_length
            )
            shortest = as_int(series.group_by("id").len().get_column("len").min(), what="length")
            advice = (
                f"{needed} windows need at least {least} steps; the shortest series has "
                f"{shortest} (a longer history or a shorter --horizon fills them)"
            )
        else:
            advice = f"use --backtest-windows {needed} or more"
        click.echo(
            f"note: coverage and Winkler scores are null: with {windows} backtest windows "
            f"{step} steps apart, no earlier window's {horizon}-step horizon ends before the "
            f"last one, so there is nothing to calibrate the scored bands on; {advice}",
            err=True,
        )
    summary = _summary(result.scores, result.forecast)
    if supply_col:
        supply = (
            frame.drop_nulls("supply")
            .sort("id", "time")
            .group_by("id")
            .agg(pl.col("time").last(), pl.col("supply").last())
        )
        crossing = supply_crossing(result.forecast, supply, supply_column="supply")
        for series_id in sorted(set(result.forecast.get_column("id")) - set(supply["id"])):
            click.echo(
                f"note: series {series_id!r}: column {supply_col!r} is empty on every row, so "
                "it has no first_exceeds_supply",
                err=True,
            )
        crossing = crossing.with_columns(
            _local_time(pl.col("first_exceeds_hi_95"), zone=zone, local_buckets=local_buckets)
        )
        for series_id, first in crossing.select("id", "first_exceeds_hi_95").iter_rows():
            summary.setdefault(series_id, _unscored(result.forecast, series_id))
            summary[series_id]["first_exceeds_supply"] = (
                first.isoformat() if first is not None else None
            )
    if output:
        try:
            table_out = result.forecast.drop("model").with_columns(
                _local_time(pl.col("time"), zone=zone, local_buckets=local_buckets)
            )
            write_table(table_out, output)
        except InputError as error:
            raise click.ClickException(str(error)) from error
        except OSError as error:
            reason = error.strerror or str(error)
            raise click.ClickException(f"{output}: cannot write: {reason}") from error
    scores = result.scores
    from annotation_pipelines.forecasting.metrics import geometric_mean_ratio

    relative_mase, excluded = geometric_mean_ratio(
        scores.get_column("relative_mase"), minimum=RATIO_TOLERANCE
    )
    report = {
        "freq": freq,
        "horizon": horizon,
        "season_length": season_length,
        "backtest_windows": windows,
        "backtest_windows_chosen": backtest_windows is None,
        "evaluation_windows": HELD_OUT_WINDOWS,
        "rule": result.rule,
        "models": list(result.models),
        "calibrated": calibrate,
        "relative_mase": _json_float(relative_mase),
        "relative_mase_excluded": excluded,
        # Every series has the same number of held-out points: the mean of shares is pooled.
        "coverage_80": _json_float(_mean(scores, "coverage_80")),
        "coverage_95": _json_float(_mean(scores, "coverage_95")),
        "winkler_80": _json_float(_mean(scores, "winkler_80")),
        "winkler_95": _json_float(_mean(scores, "winkler_95")),
        "series": summary,
        "set_aside": set_aside,
        "time_zone": time_zone,
        "partial_buckets": [
            {**row, "time": row["time"].isoformat()} for row in partial.iter_rows(named=True)
        ],
    }
    click.echo(json.dumps(report, indent=2, allow_nan=False))


def _step_seconds(freq: str) -> int:
    count = freq[: len(freq) - len(freq.lstrip("0123456789"))] or "1"
    return int(count) * _UNIT_SECONDS[_unit(freq)]


def _progress_printer() -> Callable[[str], None]:
    """Prints each stage on stderr with the time since the forecast began."""
    started = time.monotonic()

    def progress(message: str) -> None:
        minutes, seconds = divmod(round(time.monotonic() - started), 60)
        click.echo(f"progress [{minutes}:{seconds:02d}] {message}", err=True)

    return progress


def _power_of_two_scale(values: pl.Series) -> float:
    """1 for values a fit takes as given, else the power of two that brings the largest
    magnitude into [0.5, 1)."""
    largest = as_float(values.abs().max(), what="largest value")
    if largest <= _LARGEST_FIT_AS_GIVEN:
        return 1.0
    return 2.0 ** math.frexp(largest)[1]


def _times(frame: pl.DataFrame, columns: tuple[str, ...], scale: float) -> pl.DataFrame:
    return frame.with_columns(pl.col(c) * scale for c in columns if c in frame.columns)


def _check_models(
    names: list[str], *, combinations: tuple[str, ...], calibrate: bool, learned: str
) -> None:
    """`--models` as a usage error naming the option; which candidates a season length has is
    checked again once it is known."""
    # statsforecast refuses a repeated model only after the input is read and the fit begun.
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise click.BadParameter(
            f"{', '.join(repeated)} given twice; name each model once", param_hint="--models"
        )
    rules = [name for name in names if name in combinations]
    if rules and len(names) > 1:
        raise click.BadParameter(
            f"a rule ({', '.join(rules)}) stands alone; give it or a list of models",
            param_hint="--models",
        )
    unknown = [name for name in names if name not in combinations and not _MODEL.fullmatch(name)]
    if unknown:
        raise click.BadParameter(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(combinations)}, "
            f"or one or more of SeasonalNaive, AutoETS, AutoTheta, MSTL, AutoARIMA, {learned}",
            param_hint="--models",
        )
    if not calibrate and learned in names:
        raise click.BadParameter(
            f"{learned} has no intervals of its own, which --no-calibrate uses; drop it or "
            "calibrate",
            param_hint="--models",
        )


def _json_float(value: float | None) -> float | None:
    """Null for NaN and for +-inf (an infinite MASE when the naive's in-sample error is zero):
    json.dumps would print them as NaN / Infinity, which no strict JSON parser reads."""
    return None if value is None or not math.isfinite(value) else round(value, 6)


def _mean(scores: pl.DataFrame, column: str) -> float | None:
    values = scores.get_column(column).drop_nulls()
    return as_float(values.mean(), what=f"mean {column}") if values.len() else None


def _summary(scores: pl.DataFrame, forecast: pl.DataFrame) -> dict[str, dict[str, object]]:
    """Per series: the model shipped and its held-out MASE, the seasonal naive's, coverage."""
    models = dict(forecast.group_by("id").agg(pl.col("model").first()).iter_rows())
    out: dict[str, dict[str, object]] = {}
    for row in scores.iter_rows(named=True):
        out[row["id"]] = {
            "model": models.get(row["id"]),
            **{
                key: _json_float(row.get(key))
                for key in (
                    "mase",
                    "seasonal_naive_mase",
                    "relative_mase",
                    "coverage_80",
                    "coverage_95",
                )
            },
        }
    return out


def _unscored(forecast: pl.DataFrame, series_id: str) -> dict[str, object]:
    """The summary entry of a series without held-out scores: its model, null scores."""
    models = forecast.filter(pl.col("id") == series_id).get_column("model")
    return {
        "model": models.item(0) if models.len() else None,
        **dict.fromkeys(
            ("mase", "seasonal_naive_mase", "relative_mase", "coverage_80", "coverage_95")
        ),
    }


def _filled_notes(resampled: pl.DataFrame, series: pl.DataFrame) -> list[str]:
    """One note per series whose grid had steps without a sample: the model sees the previous
    value carried over them, so a long outage reads as a flat stretch of demand."""
    observed = resampled.select("id", "time").with_columns(pl.lit(True).alias("observed"))
    steps = (
        series.select("id", "time")
        .join(observed, on=["id", "time"], how="left")
        .with_columns(pl.col("observed").fill_null(False))
        .sort("id", "time")
        .with_columns(pl.col("observed").rle_id().over("id").alias("run"))
    )
    runs = (
        steps.filter(~pl.col("observed"))
        .group_by("id", "run")
        .agg(pl.len().alias("length"), pl.col("time").min().alias("start"))
        .sort(["id", "length", "start"], descending=[False, True, False])
    )
    totals = dict(steps.group_by("id").len().iter_rows())
    notes = []
    for (series_id,), gaps in runs.group_by("id", maintain_order=True):
        longest = gaps.row(0, named=True)
        notes.append(
            f"note: series {series_id!r}: {gaps['length'].sum()} of {totals[series_id]} steps had "
            "no sample and carry the previous value forward (longest gap "
            f"{longest['length']} steps, from {longest['start']})"
        )
    return notes


def _local_time(time: pl.Expr, *, zone: str | None, local_buckets: bool) -> pl.Expr:
    """A forecast time (naive, labelled UTC by the engine) in the zone its buckets are in.

    Local day starts are given in their zone; text with offsets names no zone, so its day
    starts are left without one (a future day's offset is not known). Naive input stays naive:
    its times may be any wall clock, and labelling them UTC would assert one."""
    if zone is None:
        return time.dt.replace_time_zone(None)
    if not local_buckets:
        return time
    naive = time.dt.replace_time_zone(None)
    if zone.startswith(_AS_WRITTEN):
        return naive

    def zoned(expr: pl.Expr) -> pl.Expr:
        return expr.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")

    # Where a clock change skips midnight (America/Santiago) the day starts an hour later.
    return pl.coalesce(zoned(naive), zoned(naive + dt.timedelta(hours=1))).alias(
        time.meta.output_name()
    )


def _series_steps(frame: pl.DataFrame) -> pl.DataFrame:
    """[id, step]: each series' median step between its own times (instants), in seconds;
    series with one time are left out."""
    return (
        frame.select("id", "time")
        .unique()
        .sort("id", "time")
        .group_by("id")
        .agg(pl.col("time").diff().dt.total_seconds().median().alias("step"))
        .drop_nulls("step")
    )


def _partial_buckets(
    bucketed: pl.DataFrame, *, steps: pl.DataFrame, freq: str, zone: str | None
) -> pl.DataFrame:
    """[id, time, periods, of, dropped]: each series' first and last buckets holding fewer of
    its own steps (`periods`) than a whole bucket does (`of`).

    Such a bucket's mean reads the part of the day it has as the whole day (a day cut at noon
    is its busy hours), and the last one is the level the forecast starts from: it is dropped,
    and the forecast starts at it. A series whose every bucket is partial keeps them.

    A local day (`zone`, a zone's name) is as long as its clocks make it: 23 hours on the day
    they go forward are a whole day."""
    length: pl.Expr = pl.lit(_step_seconds(freq))
    if zone is not None and not zone.startswith(_AS_WRITTEN):
        start = pl.col("time").dt.replace_time_zone("UTC")
        end = pl.col("time").dt.offset_by(freq).dt.replace_time_zone("UTC")
        local = functools.partial(_local_time, zone=zone, local_buckets=True)
        length = (local(end) - local(start)).dt.total_seconds()
    ends = (
        bucketed.sort("id", "time")
        .with_columns(
            (pl.int_range(pl.len()).over("id") == 0).alias("first"),
            (pl.int_range(pl.len()).over("id") == pl.len().over("id") - 1).alias("last"),
        )
        .filter(pl.col("first") | pl.col("last"))
        .join(steps, on="id")
        .with_columns((length // pl.col("step")).cast(pl.Int64).alias("of"))
        .with_columns(partial=pl.col("periods") < pl.col("of"))
    )
    partial = ends.filter("partial")
    counts = (
        bucketed.group_by("id").len("buckets").join(partial.group_by("id").len("partial"), on="id")
    )
    return (
        partial.join(counts, on="id")
        .with_columns(dropped=pl.col("buckets") > pl.col("partial"))
        .select(
            pl.col("id").cast(pl.String),
            "time",
            pl.col("periods").cast(pl.Int64),
            "of",
            "dropped",
        )
        .sort("id", "time")
    )


def _partial_notes(partial: pl.DataFrame, *, freq: str) -> list[str]:
    notes = []
    for row in partial.iter_rows(named=True):
        what = (
            "left out of the fit (as a whole bucket its mean would bias the level)"
            if row["dropped"]
            else "kept: the series has no whole bucket"
        )
        notes.append(
            f"note: series {row['id']!r}: the {freq} bucket {row['time']} has {row['periods']} "
            f"of its {row['of']} periods; {what}"
        )
    return notes


def _first_true_row(flags: pl.Series) -> int:
    """The 1-based row of the first True in `flags`, which has one."""
    index = flags.arg_max()
    if index is None:
        raise ValueError("no row is flagged")
    return index + 1


def _prepare(
    table: pl.DataFrame,
    *,
    path: Path,
    time_col: str,
    value_col: str,
    id_col: str | None,
    supply_col: str | None,
) -> tuple[pl.DataFrame, str | None]:
    """[row, id, time (naive UTC), local (the wall clock the times were given in), value,
    supply?], one row per reading, and the zone of `local` (`_instants_and_local`)."""
    time = table.get_column(time_col)
    if time.dtype == pl.String:
        parsed = time.str.to_datetime(time_unit="us", strict=False)
        bad = parsed.is_null() & time.is_not_null()
        if bad.any():
            row = _first_true_row(bad)
            value = time[row - 1]
            # The column's format is inferred from its first times, so a time given with a
            # zone among times given without one (or the reverse) fails to parse on its own.
            try:
                alone = pl.Series([value]).str.to_datetime(time_unit="us", strict=False)
                parses = alone.null_count() == 0
            except pl.exceptions.PolarsError:  # no format found for it either
                parses = False
            why = (
                "a time in another form than the column's first (with or without a time zone); "
                "give every time the same way"
                if parses
                else "not a timestamp"
            )
            raise InputError(f"{path}: {where(path, row)}, column {time_col!r}: {why}: {value!r}")
        time = parsed
    elif time.dtype == pl.Date:
        time = time.cast(pl.Datetime("us"))
    elif not isinstance(time.dtype, pl.Datetime):
        raise InputError(f"{path}: column {time_col!r}: expected timestamps, found {time.dtype}")
    time, local, zone = _instants_and_local(time, written=table.get_column(time_col))
    columns = {"time": time, "local": local}
    for name, source in (("value", value_col), ("supply", supply_col)):
        if source is None:
            continue
        values = table.get_column(source)
        if name == "supply" and values.dtype == pl.String:
            # A quoted empty cell ("", as Polars writes an empty text) or a blank one is as
            # empty as a bare one: no new supply, not a value that is not a number.
            values = pl.select(
                pl.when(values.str.strip_chars() != "").then(values).alias(source)
            ).to_series()
        cast = values.cast(pl.Float64, strict=False)
        bad = cast.is_null() & values.is_not_null()
        if bad.any():
            row = _first_true_row(bad)
            raise InputError(
                f"{path}: {where(path, row)}, column {source!r}: not a number: {values[row - 1]!r}"
            )
        # "nan" and "inf" parse as floats, but no accelerator count is either: taken in, they
        # would turn the scores null and the JSON's Winkler score into `Infinity`.
        infinite = cast.is_not_null() & ~cast.is_finite()
        if infinite.any():
            row = _first_true_row(infinite)
            raise InputError(
                f"{path}: {where(path, row)}, column {source!r}: not a finite number: "
                f"{str(values[row - 1])!r}"
            )
        columns[name] = cast
    columns["id"] = (
        table.get_column(id_col).cast(pl.String)
        if id_col
        else pl.Series([value_col] * table.height)
    )
    frame = pl.DataFrame(columns).select(
        "id", "time", "local", "value", *(["supply"] if supply_col else [])
    )
    _check_repeated_times(frame, path=path, time_col=time_col)
    # A reading given twice (overlapping exports put together) is one reading: a coarser
    # step's mean counted it twice, weighting the part of the step it fell in.
    # `row` keeps each reading's place in the input for the errors that name it.
    numbered = frame.with_row_index("row", offset=1)
    if supply_col:
        # The reading kept has the supply any of its copies gives (the last, in input order).
        numbered = numbered.with_columns(
            pl.col("supply").drop_nulls().last().over("id", "time").alias("supply")
        )
    return numbered.unique(["id", "time"], keep="first", maintain_order=True), zone


_AS_WRITTEN = "offsets as written: "
# A time's own UTC offset as written: "Z", "+01:00" or "+0100" at its end.
_OFFSET = r"(Z|[+-][0-9]{2}:?[0-9]{2})\s*$"


def _instants_and_local(
    time: pl.Series, *, written: pl.Series
) -> tuple[pl.Series, pl.Series, str | None]:
    """(naive-UTC instants, the wall-clock times they were given in, the zone those are in).

    The zone is None for naive times, the zone's name for a zoned column, "UTC", or for text
    with offsets "offsets as written: +01:00, +02:00": text carries no zone name, only each
    time's offset, so its local days are the days it was written in."""
    dtype = time.dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        naive = time.cast(pl.Datetime("us"))
        return naive, naive, None
    instants = time.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.Datetime("us"))
    if written.dtype != pl.String:
        zone = dtype.time_zone
        if zone == "UTC":
            return instants, instants, "UTC"
        local = time.dt.convert_time_zone(zone).dt.replace_time_zone(None).cast(pl.Datetime("us"))
        return instants, local, zone
    offsets = (
        written.str.extract(_OFFSET, 1)
        .str.replace("Z", "+00:00")
        .str.replace(r"^([+-][0-9]{2})([0-9]{2})$", "$1:$2")
    )
    if offsets.null_count():
        # An offset in a form not read here (a zone name, say): the times stay in UTC.
        return instants, instants, "UTC"
    seconds = offsets.str.slice(0, 1).replace_strict({"+": 1, "-": -1}, return_dtype=pl.Int64) * (
        offsets.str.slice(1, 2).cast(pl.Int64) * 3_600 + offsets.str.slice(4, 2).cast(pl.Int64) * 60
    )
    distinct = sorted(set(offsets.to_list()))
    if distinct == ["+00:00"]:
        return instants, instants, "UTC"
    local = instants + pl.Series(seconds * 1_000_000).cast(pl.Duration("us"))
    return instants, local, f"{_AS_WRITTEN}{', '.join(distinct)}"


def _check_fixed_step(
    frame: pl.DataFrame, *, steps: pl.DataFrame, freq: str, path: Path, time_col: str
) -> None:
    """Without --freq each series is read at the step inferred from its times: two of its
    samples a gap apart that is not a whole number of steps means its times are not a fixed
    step apart (calendar months: 28 to 31 days, read every 31 days), and they would be
    averaged into one step and every later time moved, silently. A time logged a second early
    or late is within `_STEP_TOLERANCE` of the step and passes. Series of a finer step than
    `freq` are averaged by design."""
    length = _step_seconds(freq)
    own = steps.filter(pl.col("step") >= length * (1 - _STEP_TOLERANCE)).get_column("id")
    steps_apart = (pl.col("instant").diff().over("id").dt.total_microseconds() / 1e6) / length
    gaps = (
        frame.filter(pl.col("id").is_in(own.implode()))
        .sort("id", "instant")
        .with_columns(
            steps_apart.alias("steps_apart"),
            pl.col("time").shift().over("id").alias("previous_time"),
            pl.col("row").shift().over("id").alias("previous_row"),
        )
        .filter((pl.col("steps_apart") - pl.col("steps_apart").round()).abs() > _STEP_TOLERANCE)
    )
    if not gaps.height:
        return
    gap = gaps.row(0, named=True)
    earlier = where(path, gap["previous_row"])
    raise InputError(
        f"{path}: {where(path, gap['row'])}, column {time_col!r}: the times of series "
        f"{gap['id']!r} are not a fixed step apart: {gap['previous_time']} ({earlier}) and "
        f"{gap['time']} are {gap['steps_apart']:.3g} steps of {freq}, its median step, apart, "
        "so steps would average two samples and every later time would move (calendar "
        "months, 28 to 31 days, have no fixed step); resample it to a fixed step, or give "
        "--freq to average the samples of each step"
    )


def _check_repeated_times(frame: pl.DataFrame, *, path: Path, time_col: str) -> None:
    """A time a series gives twice with different values is an error naming both rows.

    Resampling averages the samples in a step, so two readings of one instant became a value
    neither row holds (60 and a repeated 999 would become 529.5). The same reading given twice
    changes nothing and is let through."""
    numbered = frame.with_row_index("row", offset=1)
    first = numbered.group_by("id", "time").agg(
        pl.col("row").first().alias("first_row"), pl.col("value").first().alias("first_value")
    )
    clash = (
        numbered.join(first, on=["id", "time"])
        .filter(
            (pl.col("row") != pl.col("first_row"))
            & pl.col("value").ne_missing(pl.col("first_value"))
        )
        .sort("row")
    )
    if clash.height:
        found = clash.row(0, named=True)
        raise InputError(
            f"{path}: {where(path, found['row'])}, column {time_col!r}: series {found['id']!r} "
            f"already has {found['time']} ({where(path, found['first_row'])}) with another value"
        )
