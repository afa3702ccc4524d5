"""Months ahead: daily and weekly demand with P50/P90 scenario bands, planned launches included.

Hardware is ordered months before it is needed, so the question is not next week's hour but
the level and the growth in half a year. Per series, a Prophet-style trend (Taylor & Letham,
"Forecasting at scale", 2018) is fit by ridge least squares on daily demand:

    demand_t = level + slope * t + sum_k delta_k * max(0, t - c_k) + weekday effect + noise

with candidate changepoints c_k every `changepoint_every` days over the first 80% of the history
(the slope may bend; the ridge penalty keeps the bends small unless the data insist), optionally
damped. The bands are empirical: the same model is refit at origins a week apart inside the
history, and its errors at each step ahead give the P50 / P90 offsets (backtest-calibrated, so
a series whose level wanders gets wide bands). The P90's spread above the P50 is taken at
today's level (each error times today's level over its origin's): bursts scale with demand, so
errors made when a growing series was smaller understate today's spread; the P50 offset is not
rescaled. Steps further ahead than the history can check grow the last checked offset with the
square root of the horizon. A series with fewer than two backtest origins of its own (it joined
the fleet less than about a month before the last one) has no errors to measure a spread on: its
P90's spread is the pooled relative errors' (error over the level at its origin, per step ahead)
of the series that have them, of its peers (same workload class and accelerator type) when at
least `MIN_PEER_SERIES` of them do, else of the whole fleet, times its own level today; its P50
stays its point forecast. Those errors are of the donors' fits on only as many days before each
origin as the young series has (`truncated_errors`, its age to the week): a fit on three weeks
errs more than one on two years. A series' fit, level and weekday effects start at its first
observed day, never at an earlier start of the calendar it shares (zeros before a series
existed are not its demand), and a sum is fit as its part there from its start plus the series
that joined it later. A series' first day is that of its first nonzero value: an export that
lists every series on the fleet's calendar has zeros before a series existed, and a series of
such rows is the series of its rows from that value on (`started`); zeros after it are demand.
A series zero on every day has not started: no fit, no spread, its planned launches its only
demand. A series with fewer than `MIN_FIT_DAYS` days from its first nonzero value (launched
last week) has no fit either (`too_short`): a trend from ten days carried half a year ahead is
that week's noise times 18. It is planned flat at its current level, the mean of its last
`FLAT_LEVEL_DAYS` days (all of them if fewer; `flat_level`), its launches added, and its P90
spread is the q90 of the pooled relative errors of that same flat rule on the other series
(`flat_errors`: the spread of a trend fit's errors over-covered, 0.99 of test days at or
below P90 for 0.90), peers else fleet as a young series' is (source `short_` + the pool's).
In a sum it is added to the rest, fit and reconciled without it. Each
band says where its spread came from (`SPREAD_SOURCES`). Planned
launches (a config file; known future events) add their accelerators on their start day, ramped
linearly over `ramp_days`. Weekly bands come from the errors of weekly means.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import polars as pl

from annotation_pipelines.forecasting.hierarchy import (
    DEFAULT_METHOD,
    Hierarchy,
    node_values,
    projection,
)
from annotation_pipelines.forecasting.scalars import as_date, as_int

SCENARIOS = ("p50", "p90")
LEVEL_SCALED = False
SPREAD_SCALED = True
# Where a band's P90 spread came from: the series' own backtest errors, the pooled relative
# errors of its peers or of the whole fleet, nowhere (no series had errors to pool), or nowhere
# because the series has not started (zero on every day, `started`). A series too short for a
# fit (`too_short`) pools as a young one does, and its source says that too (`SHORT`).
NOT_STARTED = "not_started"
SHORT = "short_"
SPREAD_SOURCES = ("own", "pooled_class", "pooled_fleet", f"{SHORT}pooled_class",
                  f"{SHORT}pooled_fleet", "none", f"{SHORT}none", NOT_STARTED)  # fmt: skip
# `_quantiles_by_step` measures a spread from two origins' errors at a step, not from one.
MIN_OWN_ORIGINS = 2
# A peer group of fewer series is a few series' luck; the fleet's pool is then the broader one.
MIN_PEER_SERIES = 5
# The fewest days a series is fit on, from its first day; one with fewer is planned flat
# (`too_short`).
MIN_FIT_DAYS = 14
# A series too short for a fit is planned at the mean of its last week: a whole weekday cycle.
FLAT_LEVEL_DAYS = 7


@dataclass(frozen=True)
class SeriesPaths:
    """One series' future: its days, its weeks (each a Monday) and the bands over them.

    bands: "mean", "p50", "p90" per day and "weekly_mean", "weekly_p50", "weekly_p90" per week.
    """

    days: list[dt.date]
    weeks: list[dt.date]
    bands: dict[str, np.ndarray]
    spread_source: str = "own"


@dataclass(frozen=True)
class Spread:
    """A P90 spread above the P50 not measured on a series' own errors: per day and per week
    (each week of the forecast, as `paths_from_errors` groups them) and its source
    (`SPREAD_SOURCES`)."""

    daily: np.ndarray
    weekly: np.ndarray
    source: str

    def times(self, factor: float) -> Spread:
        return Spread(daily=self.daily * factor, weekly=self.weekly * factor, source=self.source)


@dataclass(frozen=True, kw_only=True)
class Launch:
    """A planned launch: `accelerators` more on `series_id` from `start`, over `ramp_days`."""

    name: str
    series_id: str
    start: dt.date
    accelerators: float
    ramp_days: int = 14
    workload_class: str | None = None
    accelerator_type: str | None = None


def _design(t: np.ndarray, weekday: np.ndarray, changepoints: np.ndarray) -> np.ndarray:
    hinge = np.maximum(0.0, t[:, None] - changepoints[None, :])
    dummies = (weekday[:, None] == np.arange(1, 7)[None, :]).astype(float)
    return np.column_stack([np.ones_like(t), t, hinge, dummies])


def _fit(
    values: np.ndarray, weekday: np.ndarray, *, changepoint_every: int, ridge: float
) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients [columns, series], changepoints) of every row of `values` ([series, days],
    one calendar; t in days from its start). The design and its Gram matrix depend on the
    calendar alone, so one solve with a right-hand side per series fits them all: for the
    511 nodes of the 500-series fleet's two years, 98 solves (the final fit and 97 backtest
    origins) instead of 50,078 one-series fits, which took about 8 of a pass's 21 s (cProfile)."""
    n = values.shape[1]
    t = np.arange(n, dtype=float)
    changepoints = np.arange(changepoint_every, int(0.8 * n), changepoint_every, dtype=float)
    design = _design(t, weekday, changepoints)
    # Ridge on the slope changes only (columns 2 .. 2 + k): bends must be earned.
    penalty = np.zeros(design.shape[1])
    penalty[2 : 2 + changepoints.size] = ridge * n
    gram = design.T @ design + np.diag(penalty)
    coefficients = np.linalg.solve(gram + 1e-9 * np.eye(gram.shape[0]), design.T @ values.T)
    return coefficients, changepoints


def _point_from(values: np.ndarray, weekday: np.ndarray, starts: np.ndarray | None, *,
                horizon: int, first_weekday: int, changepoint_every: int, ridge: float,
                damping: float, late: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """`_point` of each row fit from its start (`starts` [series], its first day on the
    calendar) once it has `MIN_FIT_DAYS` there: on one calendar a series that joined later
    counts zero before, and a fit over those zeros reads its arrival as a jump the trend bends
    at. Rows starting with the calendar share one solve; each later start is one more.

    `late` ([rows, rows]: row r sums the rows marked, series that joined after r's start) makes
    a sum's point that of its part there from its start plus theirs, each fit from its own
    start: a sum fit whole reads a member's arrival as the same jump, and reconciliation hands
    the misfit down to the members. The rows `late` marks must not be split sums themselves:
    a member adds its whole fit. A split sum's established part stands in its row of the
    solves, so no row is solved twice."""
    fit = partial(_point, horizon=horizon, first_weekday=first_weekday, ridge=ridge,
                  changepoint_every=changepoint_every, damping=damping)  # fmt: skip
    rows, joined = np.zeros(0, dtype=int), np.zeros((0, values.shape[0]))
    if late is not None and starts is not None:
        # Rows whose late members have no point of their own yet (too few days) keep theirs.
        settled = starts + MIN_FIT_DAYS <= values.shape[1]
        rows = np.flatnonzero((late & settled[None, :]).any(axis=1))
        joined = (late[rows] & settled[None, :]).astype(float)
    if rows.size:
        values = values.copy()
        values[rows] -= joined @ values
    point = fit(values, weekday)
    if starts is not None:
        for start in _late_starts(starts, values.shape[1]):
            at = starts == start
            point[at] = fit(values[at, start:], weekday[start:])
    if rows.size:
        point[rows] += joined @ point
    return point


def _point(values: np.ndarray, weekday: np.ndarray, *, horizon: int, first_weekday: int,
           changepoint_every: int, ridge: float, damping: float) -> np.ndarray:  # fmt: skip
    """[series, horizon]: each row's fitted trend and weekday effect carried `horizon` days past
    the history (`values` [series, days], one calendar)."""
    coefficients, changepoints = _fit(
        values, weekday, changepoint_every=changepoint_every, ridge=ridge
    )
    n, k = values.shape[1], changepoints.size
    deltas = coefficients[2 : 2 + k]
    slope_now = coefficients[1] + deltas.sum(axis=0)
    level_now = (
        coefficients[0]
        + coefficients[1] * (n - 1)
        + np.sum(deltas * np.maximum(0.0, (n - 1) - changepoints)[:, None], axis=0)
    )
    days = np.arange(1, horizon + 1, dtype=float)
    # Damped trend (Gardner & McKenzie, 1985): the slope's effect fades by `damping` per day, so a
    # recent bend is not extrapolated at full strength for half a year.
    damped = days if damping >= 1 else damping * (1 - damping**days) / (1 - damping)
    future_weekday = (first_weekday + np.arange(horizon)) % 7
    effects = np.vstack([np.zeros((1, values.shape[0])), coefficients[2 + k : 2 + k + 6]])
    seasonal = effects[future_weekday].T
    return level_now[:, None] + slope_now[:, None] * damped[None, :] + seasonal


def _levels(values: np.ndarray, end: int) -> np.ndarray:
    """Each row's level before index `end`: the mean of its last 28 days, at least 1."""
    return np.maximum(1.0, _raw_levels(values, end))


def _raw_levels(values: np.ndarray, end: int, starts: np.ndarray | None = None) -> np.ndarray:
    """The mean of the 28 days before index `end` along the last axis (a sum of series has the
    sum of levels); with `starts` ([rows], each row's first day), of a row's days from its
    start only: the days before a series existed are not part of its level."""
    levels = np.asarray(values[..., max(0, end - 28) : end].mean(axis=-1))
    if starts is None:
        return levels
    for start in _late_starts(starts, end, minimum=1):
        rows = starts == start
        levels[rows] = values[rows, max(start, end - 28) : end].mean(axis=-1)
    return levels


def _late_starts(starts: np.ndarray, end: int, *, minimum: int = MIN_FIT_DAYS) -> list[int]:
    """The distinct first days after the calendar's start of rows with at least `minimum`
    days by index `end`."""
    return [int(s) for s in np.unique(starts) if s > 0 and end - s >= minimum]


def _origins(n: int, *, changepoint_every: int, origin_step: int) -> range:
    """The backtest origins inside a history of `n` days: from a month in (or half the
    history, for short ones: enough to fit a trend), `origin_step` days apart."""
    return range(max(28, min(2 * changepoint_every, n // 2)), n - 1, origin_step)


def origin_levels(
    values: np.ndarray,
    *,
    changepoint_every: int,
    origin_step: int,
    starts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The raw level at each backtest origin of `_empirical_errors` ([..., origins]) and
    today's ([...]), of one series (`values` [days]) or of each row of [series, days]
    (`starts`: each row's first day, `_raw_levels`)."""
    n = values.shape[-1]
    origins = _origins(n, changepoint_every=changepoint_every, origin_step=origin_step)
    levels = [_raw_levels(values, o, starts) for o in origins]
    # A history shorter than a month has no origin: [..., 0] levels, not a failed stack.
    at_origins = np.stack(levels, axis=-1) if levels else np.zeros((*values.shape[:-1], 0))
    return at_origins, _raw_levels(values, n, starts)


def level_ratios(levels: np.ndarray, today: float | np.ndarray) -> np.ndarray:
    """Today's level over each origin's, both at least 1 (`levels` [..., origins], `today`
    [...])."""
    return np.maximum(1.0, np.asarray(today))[..., None] / np.maximum(1.0, levels)


def _empirical_errors(values: np.ndarray, weekday: np.ndarray, *, horizon: int,
                      changepoint_every: int, ridge: float, damping: float,
                      origin_step: int, level_scaled: bool = False,
                      starts: np.ndarray | None = None,
                      late: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """[series, origins, horizon] errors (actual - point) of the same model refit at earlier
    origins `origin_step` days apart inside each row's history (`values` [series, days], one
    calendar); NaN where the horizon runs past the data.

    `level_scaled`: each origin's errors times today's level over the level at that origin
    (`_levels`), i.e. relative errors expressed at today's level: demand's bursts and its growth
    are proportions of the level (multiplicative errors, Hyndman et al., "Forecasting with
    exponential smoothing", 2008; a locally weighted conformal score, Lei et al., 2018), so an
    error made when a growing series was half as large understates today's.

    `starts`: each row's first day; a row is refit from it, a sum as its parts (`late`,
    `_point_from`)."""

    def forecast(origin: int) -> np.ndarray:
        return _point_from(values[:, :origin], weekday[:origin], starts, horizon=horizon,
                           first_weekday=int(weekday[origin]),
                           changepoint_every=changepoint_every, ridge=ridge,
                           damping=damping, late=late)  # fmt: skip

    errors = _backtest_errors(values, forecast, horizon=horizon, origin_step=origin_step,
                              changepoint_every=changepoint_every)  # fmt: skip
    if level_scaled:
        n = values.shape[1]
        origins = _origins(n, changepoint_every=changepoint_every, origin_step=origin_step)
        for column, origin in enumerate(origins):
            errors[:, column] *= (_levels(values, n) / _levels(values, origin))[:, None]
    return errors


def _backtest_errors(values: np.ndarray, forecast: Callable[[int], np.ndarray | None], *,
                     horizon: int, changepoint_every: int, origin_step: int,
                     ) -> np.ndarray:  # fmt: skip
    """[rows, origins, horizon] errors (actual - forecast) at each backtest origin (`_origins`)
    of `values` [rows, days]: `forecast(origin)` is every row's [rows, horizon] from the days
    before `origin` only, None where it has none. NaN there and where the horizon runs past
    the data."""
    n = values.shape[1]
    origins = _origins(n, changepoint_every=changepoint_every, origin_step=origin_step)
    errors = np.full((values.shape[0], len(origins), horizon), np.nan)
    for column, origin in enumerate(origins):
        point = forecast(origin)
        if point is None:
            continue
        seen = min(horizon, n - origin)
        errors[:, column, :seen] = values[:, origin : origin + seen] - point[:, :seen]
    return errors


def _quantiles_by_step(
    errors: np.ndarray, qs: Sequence[float], *, minimum: int = 5, window: int = 7
) -> list[np.ndarray]:
    """Per step ahead, each q-quantile in `qs` of the errors; steps with fewer than `minimum`
    errors (or as many as there are origins, for a short history, but at least 2) take the
    last well-estimated step's quantile grown with the square root of the horizon. Each step
    pools the errors of the `window` steps around it (odd)."""
    horizon = errors.shape[1]
    minimum = max(2, min(minimum, errors.shape[0]))
    counts = np.sum(np.isfinite(errors), axis=0)
    # A week around each step (3 before, 3 after): more errors, smoother quantiles. All steps
    # at once: the NaN-padded [steps, origins x window] windows, NaN (unobserved) ignored.
    half = window // 2
    padded = np.full((errors.shape[0], horizon + 2 * half), np.nan)
    padded[:, half : half + horizon] = errors
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)[:, :horizon]
    flat = windows.transpose(1, 0, 2).reshape(horizon, -1)
    found = []
    for out in _row_quantiles(flat, qs):
        out[counts < minimum] = np.nan
        known = np.flatnonzero(np.isfinite(out))
        if known.size == 0:
            found.append(np.zeros(horizon))
            continue
        last = known[-1]
        steps = np.arange(last + 1, horizon)
        out[last + 1 :] = out[last] * np.sqrt((steps + 1) / (last + 1))
        found.append(out)
    return found


def _row_quantiles(values: np.ndarray, qs: Sequence[float]) -> list[np.ndarray]:
    """Each row's q-quantiles over its finite values, numpy's default (linear) rule; NaN for a
    row with none. Vectorized (`np.nanquantile` goes row by row when rows hold NaN), and one
    sort serves every q."""
    if values.shape[1] == 0:
        return [np.full(values.shape[0], np.nan) for _ in qs]
    n = np.isfinite(values).sum(axis=1)
    ordered = np.sort(values, axis=1)  # NaN last
    found = []
    for q in qs:
        position = q * np.maximum(n - 1, 0)
        below = np.floor(position).astype(int)
        above = np.minimum(below + 1, np.maximum(n - 1, 0))
        low = np.take_along_axis(ordered, below[:, None], axis=1)[:, 0]
        high = np.take_along_axis(ordered, above[:, None], axis=1)[:, 0]
        result = low + (position - below) * (high - low)
        found.append(np.where(n > 0, result, np.nan))
    return found


def _launch_profile(launch: Launch, *, first_day: dt.date, horizon: int) -> np.ndarray:
    """The launch's demand on each forecast day, less what it had reached the day before the
    first: a launch under way is in the telemetry as far as it ramped."""
    offset = (launch.start - first_day).days
    days = np.arange(-1, horizon) - offset
    ramp = max(1, launch.ramp_days)
    level = launch.accelerators * np.clip((days + 1) / ramp, 0.0, 1.0) * (days >= 0)
    return level[1:] - level[0]


def scenario_paths(
    daily: pl.DataFrame,
    *,
    horizon_days: int = 182,
    launches: Sequence[Launch] = (),
    changepoint_every: int = 28,
    ridge: float = 50.0,
    damping: float = 0.99,
    origin_step: int = 7,
    level_scaled: bool = LEVEL_SCALED,
    spread_scaled: bool = SPREAD_SCALED,
    peers: Mapping[str, str] | None = None,
    pool_spreads: bool = True,
) -> dict[str, SeriesPaths]:
    """Per series: its future days and weeks and the bands over them, launches included.

    P50 / P90 are the point forecast plus the 0.5 / 0.9 quantile of the model's own errors at
    the same step ahead, refit at origins `origin_step` days apart inside the history (an
    empirical, backtest-calibrated band: Williams & Goodman, 1971; conformal in spirit).
    Weekly bands use the errors of weekly means, so a P90 week is a P90 week. With
    `spread_scaled` the P90's spread above the P50 is taken at today's level
    (`paths_from_errors`). A series with fewer than `MIN_OWN_ORIGINS` origins takes its P90
    spread from the other series' pooled relative errors (`pooled_spreads`; `peers` maps a
    series to its peer group), unless `pool_spreads` is off (then it has none, and says so).
    Each series starts at its first nonzero value (`started`); one zero on every day has not
    started (`not_started_paths`), one with fewer than `MIN_FIT_DAYS` days is planned flat
    (`short_series_paths`), its spread pooled from the flat rule's errors on the others.
    """
    history, idle = started(daily)
    short = too_short(history)
    # Series on one calendar (the same days) are fit together (`_fit`).
    calendars: dict[tuple[dt.date, ...], list[tuple[str, np.ndarray]]] = {}
    fitted_rows = ~pl.col("id").is_in(short)
    fitted = history.filter(fitted_rows)
    for (series_id,), frame in fitted.sort("id", "time").group_by("id", maintain_order=True):
        days = tuple(frame.get_column("time").cast(pl.Date).to_list())
        values = frame.get_column("value").cast(pl.Float64).to_numpy()
        calendars.setdefault(days, []).append((str(series_id), values))
    order = [str(s) for s in daily.get_column("id").unique().sort()]
    fits = []
    for days, members in calendars.items():
        values = np.stack([v for _, v in members])
        points, errors = _point_and_errors(
            values, list(days), horizon_days=horizon_days, changepoint_every=changepoint_every,
            ridge=ridge, damping=damping, origin_step=origin_step, level_scaled=level_scaled,
        )  # fmt: skip
        at_origins, today = origin_levels(
            values, changepoint_every=changepoint_every, origin_step=origin_step
        )
        fits.append(_CalendarFit(first=days[-1] + dt.timedelta(days=1),
                                 ids=[s for s, _ in members], points=points, errors=errors,
                                 at_origins=at_origins, today=today, values=values,
                                 weekday=np.array([d.weekday() for d in days])))  # fmt: skip
    young = _young_series(fits)
    truncated = partial(truncated_errors, horizon_days=horizon_days, ridge=ridge,
                        changepoint_every=changepoint_every, damping=damping,
                        origin_step=origin_step)  # fmt: skip
    # A young series' spread is pooled from the others' errors when fit on as many days as it
    # has (`truncated_errors`), one pool per age in weeks.
    ages = {f.ids[0]: age_bucket(f.values.shape[1]) for f in fits if f.ids[0] in young}
    donors: dict[int, dict[str, np.ndarray]] = {}
    for age in set(ages.values()) if pool_spreads else ():
        donors[age] = {}
        for fit in fits:
            if fit.ids[0] not in young:
                cut = truncated(fit.values, fit.weekday, length=age)
                donors[age].update(zip(fit.ids, relative_errors(*cut), strict=True))
    found: dict[str, SeriesPaths] = {}
    last_days = (
        daily.filter(pl.col("id").is_in(idle))
        .group_by("id")
        .agg(pl.col("time").cast(pl.Date).max())
    )
    for series_id, last in last_days.iter_rows():
        first = as_date(last, what=f"last day of series {series_id!r}") + dt.timedelta(days=1)
        extra = _launches(launches, str(series_id), first=first, horizon_days=horizon_days)
        found[str(series_id)] = not_started_paths(extra, first=first)
    # Series too short for a fit that end on the same day share one pool.
    short_rows = history.filter(~fitted_rows).with_columns(
        pl.col("time").cast(pl.Date).max().over("id").alias("last")
    )
    for (last,), rows in short_rows.partition_by("last", as_dict=True).items():
        first = as_date(last, what="last day of a series") + dt.timedelta(days=1)
        flat = partial(_series_flat_donors, [f for f in fits if f.ids[0] not in young],
                       first=first, horizon_days=horizon_days,
                       pool_spreads=pool_spreads)  # fmt: skip
        bands = short_series_paths(rows, launches=launches, first=first,
                                   horizon_days=horizon_days, peers=peers, donors=flat)  # fmt: skip
        found.update({series_id: paths for series_id, (paths, _) in bands.items()})
    for fit in fits:
        spreads = {}
        if fit.ids[0] in young:
            spreads = _young_spreads(
                donors.get(ages[fit.ids[0]], {}),
                {s: float(fit.today[row]) for row, s in enumerate(fit.ids)},
                peers=peers, first=fit.first, horizon_days=horizon_days,
            )  # fmt: skip
        ratios = (
            level_ratios(fit.at_origins, fit.today) if spread_scaled and not level_scaled else None
        )
        for row, series_id in enumerate(fit.ids):
            extra = _launches(launches, series_id, first=fit.first, horizon_days=horizon_days)
            found[series_id] = paths_from_errors(
                fit.points[row] + extra, fit.errors[row], first=fit.first,
                ratios=None if ratios is None else ratios[row], spread=spreads.get(series_id),
            )  # fmt: skip
    return {series_id: found[series_id] for series_id in order}


@dataclass(frozen=True)
class _CalendarFit:
    """The series of one calendar fit together: ids, points [series, horizon], backtest errors
    [series, origins, horizon], raw levels at the origins [series, origins] and today
    [series]."""

    first: dt.date
    ids: list[str]
    points: np.ndarray
    errors: np.ndarray
    at_origins: np.ndarray
    today: np.ndarray
    values: np.ndarray
    weekday: np.ndarray


def _series_flat_donors(fits: Sequence[_CalendarFit], window: int, *, first: dt.date,
                        horizon_days: int, pool_spreads: bool,
                        ) -> dict[str, np.ndarray]:  # fmt: skip
    """`flat_donors` of the series of `fits` (each calendar's rows from their first day); none
    with `pool_spreads` off."""
    found: dict[str, np.ndarray] = {}
    for fit in fits if pool_spreads else ():
        found.update(flat_donors(fit.values, fit.weekday, fit.ids, window, first=first,
                                 horizon_days=horizon_days))  # fmt: skip
    return found


def _young_series(fits: Sequence[_CalendarFit]) -> set[str]:
    """The series whose calendar leaves fewer than `MIN_OWN_ORIGINS` backtest origins."""
    return {s for fit in fits if fit.errors.shape[1] < MIN_OWN_ORIGINS for s in fit.ids}


def age_bucket(days: int) -> int:
    """A young series' days of history to the nearest week, at least `MIN_FIT_DAYS`: the
    length its donors' fits are cut to (`truncated_errors`), so that young series of about the
    same age share one pool."""
    return max(MIN_FIT_DAYS, 7 * round(days / 7))


def too_short(history: pl.DataFrame) -> list[str]:
    """The ids of the series of `history` (`started`'s rows) with fewer than `MIN_FIT_DAYS`
    days, sorted: too few to fit a trend on, none to backtest it at."""
    lengths = history.group_by("id").len().filter(pl.col("len") < MIN_FIT_DAYS)
    return sorted(str(s) for s in lengths.get_column("id"))


def flat_level(values: np.ndarray) -> float:
    """A series' current level from its days so far (`values`, oldest first): the mean of its
    last `FLAT_LEVEL_DAYS`, or of all of them if it has fewer.

    A week is one whole weekday cycle, so a training series idle at weekends is neither over-
    nor under-planned by the day it was launched on; the last week, not every day since launch,
    because a new service ramps up and its demand today is what it will keep needing. The mean,
    not a median: a median of a week of weekday-shaped demand is a weekday's, the mean is the
    week's load, as the 28-day levels of the fitted series are."""
    return float(np.mean(values[-FLAT_LEVEL_DAYS:]))


def flat_errors(values: np.ndarray, weekday: np.ndarray, *, window: int, first_weekday: int,
                horizon_days: int, starts: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """([rows, origins, horizon] errors, [rows, origins] levels) of the flat rule of a series
    too short for a fit (`flat_level`: the mean of the `window` days before an origin, carried
    flat) at every origin of `values` ([rows, days], one calendar, `weekday` its days') that
    falls on `first_weekday` with a month of history before it (what `_backtestable` asks);
    NaN before a row's first day plus that month (`starts`) and where the horizon runs past
    the data. The level is the flat forecast itself: errors over it are the flat rule's
    relative errors.

    The origins fall on the short series' first forecast weekday, so each step ahead is the
    same weekday for donors and for it: a flat level misses a weekday-shaped series by its
    weekday's effect, and a pool over mixed weekdays would spread that across every step."""
    n = values.shape[1]
    day = np.arange(n)
    origins = np.flatnonzero((weekday == first_weekday) & (day >= 28) & (day < n - 1))
    windows = np.lib.stride_tricks.sliding_window_view(values, window, axis=1)
    levels = windows[:, origins - window].mean(axis=-1)
    ahead = origins[:, None] + np.arange(horizon_days)[None, :]
    errors = values[:, np.minimum(ahead, n - 1)] - levels[..., None]
    errors[:, ahead >= n] = np.nan
    if starts is not None:
        early = origins[None, :] < starts[:, None] + 28
        errors[early], levels[early] = np.nan, np.nan
    return errors, levels


FlatDonors = Callable[[int], Mapping[str, np.ndarray]]


def flat_donors(values: np.ndarray, weekday: np.ndarray, ids: Sequence[str], window: int, *,
                first: dt.date, horizon_days: int,
                starts: np.ndarray | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Per row of `values` (its id in `ids`), the relative errors of the flat rule on `window`
    days (`flat_errors`) at origins on `first`'s weekday: a donor's errors as a series too
    short for a fit, planned flat from `first`, makes them."""
    errors, levels = flat_errors(values, weekday, window=window, first_weekday=first.weekday(),
                                 horizon_days=horizon_days, starts=starts)  # fmt: skip
    return dict(zip(ids, relative_errors(errors, levels), strict=True))


def short_spread(spread: Spread) -> Spread:
    """`spread` as a series too short for a fit carries it: its source prefixed `SHORT`."""
    return Spread(daily=spread.daily, weekly=spread.weekly, source=f"{SHORT}{spread.source}")


def short_series_paths(rows: pl.DataFrame, *, launches: Sequence[Launch], first: dt.date,
                       horizon_days: int, donors: FlatDonors,
                       peers: Mapping[str, str] | None,
                       ) -> dict[str, tuple[SeriesPaths, Spread]]:  # fmt: skip
    """Per series of `rows` ([id, time, value], each too short for a fit, `too_short`), its
    bands from `first` and their spread: its `flat_level` plus its launches, and above that P50
    the pooled spread (`_young_spreads`) at that level of `donors(window)`: the relative errors
    of the flat rule on `window` days (`flat_donors`), the days its level is the mean of. The
    rule depends on a series' age only through that window, so series of a week or more (up to
    `MIN_FIT_DAYS`) share one pool, and a younger one takes the pool of its own few days. One
    pool per window serves every series of `rows`.

    The spread is the pool's q90, not q90 - q50: the P50 is the flat level itself, without the
    pool's median offset (a growing fleet's flat level is low; a fitted series' P50 takes its
    median error, and q90 - q50 above it is q90 above its point). Above the level, q90 - q50
    left the P90 short of a growth it cannot see: 0.86 / 0.80 of test days at or below it for
    0.90 on the bench's 10-day series (seeds 0 / 1), 0.94 / 0.91 with q90."""
    history = {
        str(series_id): frame.sort("time").get_column("value").to_numpy()
        for (series_id,), frame in rows.partition_by("id", as_dict=True).items()
    }
    levels = {series_id: flat_level(values) for series_id, values in history.items()}
    spreads: dict[str, Spread] = {}
    for window in sorted({min(FLAT_LEVEL_DAYS, v.size) for v in history.values()}):
        of_window = {s: levels[s] for s, v in history.items()
                     if min(FLAT_LEVEL_DAYS, v.size) == window}  # fmt: skip
        spreads.update(_young_spreads(donors(window), of_window, peers=peers, first=first,
                                      horizon_days=horizon_days, centered=False))  # fmt: skip
    found = {}
    for series_id, level in levels.items():
        point = np.full(horizon_days, level) + _launches(
            launches, series_id, first=first, horizon_days=horizon_days
        )
        spread = short_spread(spreads[series_id])
        paths = paths_from_errors(point, np.zeros((0, horizon_days)), first=first, spread=spread)
        found[series_id] = (paths, spread)
    return found


def plus_paths(base: SeriesPaths | None, added: Sequence[SeriesPaths]) -> SeriesPaths:
    """`base`'s bands (None: zero) with each of `added` (same days) added band by band, its
    spread on top of the rest's as if it peaked with them: a sum's bands with members that
    were not fit with it (`too_short`). The source joins theirs (`combined_source`)."""
    every = ([] if base is None else [base]) + list(added)
    bands = {key: sum((p.bands[key] for p in every), np.zeros_like(band))
             for key, band in every[0].bands.items()}  # fmt: skip
    return SeriesPaths(days=every[0].days, weeks=every[0].weeks, bands=bands,
                       spread_source=combined_source([p.spread_source for p in every]))  # fmt: skip


def truncated_errors(values: np.ndarray, weekday: np.ndarray, *, length: int,
                     horizon_days: int, changepoint_every: int, ridge: float, damping: float,
                     origin_step: int, starts: np.ndarray | None = None,
                     ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """([rows, origins, horizon] errors, [rows, origins] levels) of each row's forecast at the
    backtest origins of `_empirical_errors` from only the `length` days before each origin, and
    its level then (the mean of those days' last 28): what a series with `length` days of
    history errs by. NaN where the calendar or the row (`starts`, its first day) had not
    `length` days before the origin, or the horizon runs past the data.

    A series fit on three weeks errs more than one fit on two years: pooled from the latter,
    the spread of 20 young series of the 500-series bench covered 0.51-0.74 of their test days
    for a 0.9 target. One solve per origin for every row (`_fit`)."""

    def forecast(origin: int) -> np.ndarray | None:
        begin = origin - length
        if begin < 0:
            return None
        return _point(values[:, begin:origin], weekday[begin:origin], horizon=horizon_days,
                      first_weekday=int(weekday[origin]), changepoint_every=changepoint_every,
                      ridge=ridge, damping=damping)  # fmt: skip

    errors = _backtest_errors(values, forecast, horizon=horizon_days, origin_step=origin_step,
                              changepoint_every=changepoint_every)  # fmt: skip
    origins = _origins(values.shape[1], changepoint_every=changepoint_every,
                       origin_step=origin_step)  # fmt: skip
    levels = np.full((values.shape[0], len(origins)), np.nan)
    for column, origin in enumerate(origins):
        begin = origin - length
        if begin < 0:
            continue
        levels[:, column] = values[:, max(begin, origin - 28) : origin].mean(axis=1)
        if starts is not None:
            errors[starts > begin, column] = np.nan
            levels[starts > begin, column] = np.nan
    return errors, levels


def _point_and_errors(values: np.ndarray, days: list[dt.date], *, horizon_days: int,
                      changepoint_every: int, ridge: float, damping: float, origin_step: int,
                      level_scaled: bool = False, starts: np.ndarray | None = None,
                      late: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each row's point forecast after the last day ([series, horizon]) and its backtest errors
    ([series, origins, step]); `values` is [series, days] on the calendar `days`, each row fit
    from its first day in `starts` (None: the calendar's)."""
    weekday = np.array([d.weekday() for d in days])
    first = days[-1] + dt.timedelta(days=1)
    point = _point_from(values, weekday, starts, horizon=horizon_days,
                        first_weekday=first.weekday(), changepoint_every=changepoint_every,
                        ridge=ridge, damping=damping, late=late)  # fmt: skip
    errors = _empirical_errors(values, weekday, horizon=horizon_days, origin_step=origin_step,
                               changepoint_every=changepoint_every, ridge=ridge,
                               damping=damping, level_scaled=level_scaled,
                               starts=starts, late=late)  # fmt: skip
    return point, errors


def _launches(
    launches: Sequence[Launch], series_id: str, *, first: dt.date, horizon_days: int
) -> np.ndarray:
    extra = np.zeros(horizon_days)
    for launch in launches:
        if launch.series_id == series_id:
            extra += _launch_profile(launch, first_day=first, horizon=horizon_days)
    return extra


def paths_from_errors(
    point: np.ndarray,
    errors: np.ndarray,
    *,
    first: dt.date,
    ratios: np.ndarray | None = None,
    spread: Spread | None = None,
) -> SeriesPaths:
    """Daily and weekly P50/P90 from a point path (launches included) and the errors the same
    model made at each step ahead at earlier origins ([origins, step], NaN: not observed).

    With `ratios` (today's level over each origin's, `level_ratios`), the P90's distance
    above the P50 is the spread of the errors expressed at today's level: P90 = P50 +
    q90(r e) - q50(r e). The P50 stays the median of the absolute errors. Demand's bursts are
    proportions of its level (multiplicative errors, Hyndman et al., "Forecasting with
    exponential smoothing", 2008; a locally weighted conformal score, Lei et al., 2018), so
    the spread of errors made when a growing series was smaller understates today's; its
    median offset (the trend's bias) is not a burst and is not rescaled, which is what kept
    rescaling every error (`level_scaled`) from being adopted: it moved the P50.

    `spread` (a series too young for errors of its own, or the young members of a sum) is
    added to the P90's distance above the P50, and its source is the bands'.
    """
    horizon_days = point.size
    future, week_of, weeks = _forecast_weeks(first, horizon_days)
    weekly_errors = _weekly_means(errors, week_of, weeks)
    weekly_point = np.array([point[week_of == w].mean() for w in weeks])
    extra = {"": 0.0, "weekly_": 0.0} if spread is None else {"": spread.daily,
                                                              "weekly_": spread.weekly}  # fmt: skip
    bands = {"mean": point}
    for prefix, path, past in (("", point, errors), ("weekly_", weekly_point, weekly_errors)):
        if ratios is None or past.shape[0] == 0:
            median, upper = _quantiles_by_step(past, (0.5, 0.9))
        else:
            (median,) = _quantiles_by_step(past, (0.5,))
            high, middle = _quantiles_by_step(past * ratios[:, None], (0.9, 0.5))
            upper = median + (high - middle)
        bands[f"{prefix}p50"] = np.maximum(0.0, path + median)
        bands[f"{prefix}p90"] = np.maximum(0.0, path + upper + extra[prefix])
    bands["weekly_mean"] = weekly_point
    return SeriesPaths(
        days=future,
        weeks=[dt.date.fromordinal(int(w)) for w in weeks],
        bands=bands,
        spread_source="own" if spread is None else spread.source,
    )


def not_started_paths(point: np.ndarray, *, first: dt.date) -> SeriesPaths:
    """The bands of a series that has not started (zero on every day, `started`) from `first`:
    its planned launches (`point`, [horizon]) and no spread. No fit: a trend of zeros would be
    one, and the pooled spread of a series at level zero would widen nothing but its P90."""
    return paths_from_errors(point, np.zeros((0, point.size)), first=first,
                             spread=_no_spread(first, point.size))  # fmt: skip


def _no_spread(first: dt.date, horizon_days: int) -> Spread:
    """A zero spread saying that its series has not started (`NOT_STARTED`)."""
    _, _, weeks = _forecast_weeks(first, horizon_days)
    return Spread(daily=np.zeros(horizon_days), weekly=np.zeros(weeks.size), source=NOT_STARTED)


def _forecast_weeks(first: dt.date, horizon_days: int) -> tuple[list[dt.date], np.ndarray,
                                                                  np.ndarray]:  # fmt: skip
    """The forecast's days from `first`, each day's week (its Monday's ordinal) and the
    weeks."""
    future = [first + dt.timedelta(days=d) for d in range(horizon_days)]
    week_of = np.array([(d - dt.timedelta(days=d.weekday())).toordinal() for d in future])
    return future, week_of, np.unique(week_of)


def _weekly_means(errors: np.ndarray, week_of: np.ndarray, weeks: np.ndarray) -> np.ndarray:
    """[rows, weeks]: each row's mean error over the days of each forecast week (NaN when a
    day of it was not observed)."""
    if not errors.size:
        return np.zeros((errors.shape[0], weeks.size))
    return np.column_stack([errors[:, week_of == w].mean(axis=1) for w in weeks])


def relative_errors(errors: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """[..., origins, horizon] errors over the level at their origin (`levels` [..., origins],
    at least 1, as in `level_ratios`): errors as shares of the demand they were made on,
    comparable across series of any size."""
    return errors / np.maximum(1.0, levels)[..., None]


def pooled_spreads(
    relative: Mapping[str, np.ndarray],
    wanting: Sequence[str],
    *,
    peers: Mapping[str, str] | None,
    first: dt.date,
    horizon_days: int,
    centered: bool = True,
) -> dict[str, Spread]:
    """Per series in `wanting`, the P90 spread of a series at level 1 from the pooled relative
    errors ([origins, horizon] each, `relative_errors`) of the series in `relative`: of its
    peers (the same `peers` value) when at least `MIN_PEER_SERIES` of them have errors, else
    of all of them ("pooled_class" / "pooled_fleet"); none when no series has errors.

    The spread is q90 - q50 per step ahead of the pool, as a series' own is of its errors
    (`paths_from_errors`): a new series' errors are taken to be one more draw from those of
    the series like it. Every origin of every donor is one error, so each step has many and
    is not widened to the week around it. Not `centered`: q90 alone, the P90 offset above a P50
    that took no median offset from the pool (`short_series_paths`)."""
    peers = peers or {}
    _, week_of, weeks = _forecast_weeks(first, horizon_days)
    found: dict[tuple[str, str | None], Spread] = {}
    spreads = {}
    for series_id in wanting:
        group = peers.get(series_id)
        donors = [d for d in relative if group is not None and peers.get(d) == group]
        if len(donors) >= MIN_PEER_SERIES:
            key: tuple[str, str | None] = ("pooled_class", group)
        else:
            donors = list(relative)
            key = ("pooled_fleet", None) if donors else ("none", None)
        if key not in found:
            found[key] = _pool_spread([relative[d] for d in donors], source=key[0],
                                      week_of=week_of, weeks=weeks, centered=centered)  # fmt: skip
        spreads[series_id] = found[key]
    return spreads


def _pool_spread(pool: Sequence[np.ndarray], *, source: str, week_of: np.ndarray,
                 weeks: np.ndarray, centered: bool = True) -> Spread:  # fmt: skip
    """q90 - q50 (not `centered`: q90) per step (and per week, of weekly means) of the stacked
    errors in `pool`, at least 0."""
    if not pool:
        return Spread(daily=np.zeros(week_of.size), weekly=np.zeros(weeks.size), source=source)
    stacked = np.concatenate(pool, axis=0)
    spread = {}
    for name, errors in (("daily", stacked), ("weekly", _weekly_means(stacked, week_of, weeks))):
        high, middle = _quantiles_by_step(errors, (0.9, 0.5), window=1)
        spread[name] = np.maximum(0.0, high - middle if centered else high)
    return Spread(daily=spread["daily"], weekly=spread["weekly"], source=source)


def _young_spreads(
    relative: Mapping[str, np.ndarray],
    today: Mapping[str, float],
    *,
    peers: Mapping[str, str] | None,
    first: dt.date,
    horizon_days: int,
    centered: bool = True,
) -> dict[str, Spread]:
    """Per series in `today` (the young ones and their raw level today), its pooled spread
    (`pooled_spreads`, `centered` as there) at its own level today (at least 1, as in
    `level_ratios`)."""
    if not today:
        return {}
    pooled = pooled_spreads(relative, list(today), peers=peers, first=first,
                            horizon_days=horizon_days, centered=centered)  # fmt: skip
    return {s: pooled[s].times(max(1.0, level)) for s, level in today.items()}


def combined_source(sources: Sequence[str]) -> str:
    """The sources of a sum's spreads, in `SPREAD_SOURCES` order joined with "+" ("own": every
    member's spread is its own)."""
    present = set(sources)
    return "+".join(s for s in SPREAD_SOURCES if s in present) or "none"


@dataclass(frozen=True)
class ReconciledScenarios:
    """Months-ahead bands of every node of a hierarchy, from reconciled point forecasts and
    reconciled backtest errors, and the means to band any weighted sum of the series.

    points: [nodes, horizon] reconciled points, launches included; errors: [nodes, origins,
    horizon] reconciled errors (coherent: each aggregate's errors are its series' sum).
    """

    hierarchy: Hierarchy
    first: dt.date
    points: np.ndarray
    errors: np.ndarray
    paths: dict[str, SeriesPaths]
    # [nodes, origins] raw levels at the backtest origins and [nodes] today's, for the P90
    # spread at today's level (None: not spread-scaled).
    levels: np.ndarray | None = None
    levels_today: np.ndarray | None = None
    # Series too young for a spread of their own: their pooled spread at their level today
    # (`pooled_spreads`; source "none" when there was nothing to pool); series that have not
    # started (`started`): a zero one, `NOT_STARTED`.
    spreads: dict[str, Spread] = field(default_factory=dict)

    def combination(self, weights: dict[str, float]) -> SeriesPaths:
        """Bands of sum_i weights[i] x series_i (e.g. accelerators to own = demand / target
        utilization of each series' class): the quantiles of the same weighted sum of the
        reconciled errors, so the P90 of a sum is not the sum of P90s.

        Young members (`spreads`) have no errors at most origins, so the sum's errors are its
        other members' at every origin they were there for, and each young member's pooled
        spread is added to theirs, as if it peaked with them: no joint history says how it
        moves with them, and added spreads do not understate the sum's."""
        offset = len(self.hierarchy.aggregates)
        # The series in the sum only: its bands do not depend on which others the fleet has.
        rows = [k for k, b in enumerate(self.hierarchy.bottom) if weights.get(b, 0.0) != 0]
        names = [self.hierarchy.bottom[k] for k in rows]
        at = [offset + k for k in rows]
        vector = np.array([weights[b] for b in names])
        point = vector @ self.points[at] if rows else np.zeros(self.points.shape[1])
        young = np.array([b in self.spreads for b in names], dtype=bool)
        own = np.where(young, 0.0, vector)
        # A series out of the sum must not carry its unobserved origins (NaN) into it.
        members = np.where(own[:, None, None] != 0, self.errors[at], 0.0)
        errors = np.einsum("b,boh->oh", own, members)
        ratios = None
        if self.levels is not None and self.levels_today is not None:
            # A weighted sum's level is the same weighted sum of its series' levels.
            ratios = level_ratios(own @ self.levels[at], float(own @ self.levels_today[at]))
        pooled = [
            (weight, self.spreads[b])
            for b, weight in zip(names, vector, strict=True)
            if b in self.spreads
        ]
        if not pooled:
            return paths_from_errors(point, errors, first=self.first, ratios=ratios)
        sources = [s.source for _, s in pooled] + (["own"] if np.any(own != 0) else [])
        spread = Spread(
            daily=sum((w * s.daily for w, s in pooled), np.zeros(point.size)),
            weekly=sum((w * s.weekly for w, s in pooled), np.zeros(pooled[0][1].weekly.size)),
            source=combined_source(sources),
        )
        return paths_from_errors(point, errors, first=self.first, ratios=ratios, spread=spread)


def reconciled_scenarios(
    daily: pl.DataFrame,
    hierarchy: Hierarchy,
    *,
    horizon_days: int = 182,
    launches: Sequence[Launch] = (),
    method: str = DEFAULT_METHOD,
    changepoint_every: int = 28,
    ridge: float = 50.0,
    damping: float = 0.99,
    origin_step: int = 7,
    level_scaled: bool = LEVEL_SCALED,
    spread_scaled: bool = SPREAD_SCALED,
    peers: Mapping[str, str] | None = None,
    pool_spreads: bool = True,
) -> ReconciledScenarios:
    """`scenario_paths` for every node of `hierarchy`, reconciled (MinTrace, `hierarchy`).

    Every node (aggregates summed from the series, a series missing on a day counting zero) is
    fit and backtested at the same origins; W comes from those errors pooled over origins and
    steps (W_h taken proportional to one W, as in Wickramasuriya et al., 2019), the reconciled
    points are S P y^ and the reconciled errors S P e (exact for actuals that add up). Planned
    launches add to their series after reconciliation and so to every node above it. With
    `spread_scaled` each node's P90 spread is its reconciled errors' at its own level today.
    A series there for fewer than `MIN_OWN_ORIGINS` origins (`_backtestable`) takes its spread
    from the others' pooled relative reconciled errors (`pooled_spreads`, `peers` its peer
    group; none with `pool_spreads` off), and so does an aggregate of such series only.
    Each series starts at its first nonzero value (`started`); one zero on every day (or with
    no row) has not started: no spread, and "not_started" says so.

    A series too short for a fit (`too_short`) is left out of the fit and the reconciliation
    (with it every node only it set apart, `Hierarchy.without`): it has no errors to weigh and
    no trend to reconcile. It is planned flat (`short_series_paths`, its spread pooled from the
    errors of the flat rule on the series with errors of their own, not reconciled as it is
    not) and added to each node above it (`plus_paths`); every other node's bands are those of
    the fleet without it.
    """
    history, _ = started(daily)
    history = history.with_columns(pl.col("time").cast(pl.Date))
    short = [s for s in too_short(history) if s in hierarchy.bottom]
    fitted = ~pl.col("id").is_in(short)
    rest = hierarchy.without(short)
    reconcile = partial(
        _reconciled, launches=launches, method=method, horizon_days=horizon_days,
        changepoint_every=changepoint_every, ridge=ridge, damping=damping,
        origin_step=origin_step, level_scaled=level_scaled, spread_scaled=spread_scaled,
        peers=peers, pool_spreads=pool_spreads,
    )  # fmt: skip
    if not short:
        scenarios, _ = reconcile(history, daily, hierarchy)
        return scenarios
    base: ReconciledScenarios | None = None
    donors: FlatDonors = _no_donors
    if rest.bottom:
        base, donors = reconcile(history.filter(fitted), daily.filter(fitted), rest)
    first = (
        base.first
        if base is not None
        else as_date(history.get_column("time").max(), what="last day") + dt.timedelta(days=1)
    )
    found = short_series_paths(history.filter(~fitted), launches=launches, first=first,
                               horizon_days=horizon_days, donors=donors, peers=peers)  # fmt: skip
    return _with_short(base, hierarchy, {s: paths for s, (paths, _) in found.items()},
                       {s: spread for s, (_, spread) in found.items()})  # fmt: skip


def _reconciled(history: pl.DataFrame, daily: pl.DataFrame, hierarchy: Hierarchy, *,
                horizon_days: int, launches: Sequence[Launch], method: str,
                changepoint_every: int, ridge: float, damping: float, origin_step: int,
                level_scaled: bool, spread_scaled: bool, peers: Mapping[str, str] | None,
                pool_spreads: bool,
                ) -> tuple[ReconciledScenarios, FlatDonors]:  # fmt: skip
    """`reconciled_scenarios` of a hierarchy of series fit long enough (`history`, `started`'s
    rows of `daily`), and the donors of a series too short for a fit planned flat from the day
    after its calendar (`flat_donors` of its series with errors of their own; none with
    `pool_spreads` off).

    A short series is not reconciled (`reconciled_scenarios`), so its donors' errors are
    those of the flat rule on their own demand, not reconciled ones."""
    # A fleet none of whose series has started keeps its calendar, every node zero on it.
    values, times = node_values(
        history if history.height else daily.with_columns(pl.col("time").cast(pl.Date)),
        hierarchy,
    )
    calendar = times.to_list()
    first = calendar[-1] + dt.timedelta(days=1)
    starts = node_starts(history, hierarchy, calendar)
    offset = len(hierarchy.aggregates)
    # Every node is on one calendar, so all are fit at once (`_fit`), each from its first day
    # and an aggregate as its part there from the start plus the series that joined it later.
    late = np.zeros((len(hierarchy.nodes), len(hierarchy.nodes)), dtype=bool)
    late[:offset, offset:] = (hierarchy.summing[:offset] > 0) & (
        starts[None, offset:] > starts[:offset, None]
    )
    base_points, base_errors = _point_and_errors(
        values, calendar, horizon_days=horizon_days, changepoint_every=changepoint_every,
        ridge=ridge, damping=damping, origin_step=origin_step, level_scaled=level_scaled,
        starts=starts, late=late if late.any() else None,
    )  # fmt: skip
    spread = spread_scaled and not level_scaled
    all_levels, all_today = origin_levels(
        values, changepoint_every=changepoint_every, origin_step=origin_step, starts=starts
    )
    node_levels, node_today = (all_levels, all_today) if spread else (None, None)
    p = projection(hierarchy, base_errors.reshape(len(hierarchy.nodes), -1), method=method)
    projector = hierarchy.summing @ p
    extra_bottom = np.stack(
        [_launches(launches, b, first=first, horizon_days=horizon_days) for b in hierarchy.bottom]
    )
    reconciled_points = projector @ base_points + hierarchy.children_sum(extra_bottom)
    reconciled_errors = _project_errors(projector, base_errors)
    backtestable = _backtestable(starts, n=len(calendar), changepoint_every=changepoint_every,
                                 origin_step=origin_step)  # fmt: skip
    reconciled_errors[~backtestable] = np.nan
    own = backtestable.sum(axis=1) >= MIN_OWN_ORIGINS
    idle = [b for k, b in enumerate(hierarchy.bottom) if starts[offset + k] >= len(calendar)]
    young = {b: float(all_today[offset + k]) for k, b in enumerate(hierarchy.bottom)
             if not own[offset + k] and b not in idle}  # fmt: skip
    ages = {b: age_bucket(len(calendar) - int(starts[offset + hierarchy.bottom.index(b)]))
            for b in young}  # fmt: skip
    spreads = {b: _no_spread(first, horizon_days) for b in idle}
    for age in set(ages.values()):
        donors = _truncated_donors(
            values, calendar, hierarchy, projector, base_errors, backtestable & own[:, None],
            starts=starts, length=age, horizon_days=horizon_days, origin_step=origin_step,
            changepoint_every=changepoint_every, ridge=ridge, damping=damping,
        ) if pool_spreads else {}  # fmt: skip
        of_age = {b: today for b, today in young.items() if ages[b] == age}
        spreads.update(_young_spreads(donors, of_age, peers=peers, first=first,
                                      horizon_days=horizon_days))  # fmt: skip
    ratios = [
        None
        if node_levels is None or node_today is None
        else level_ratios(node_levels[row], float(node_today[row]))
        for row in range(len(hierarchy.nodes))
    ]
    paths = {
        node: paths_from_errors(
            reconciled_points[row],
            reconciled_errors[row],
            first=first,
            ratios=ratios[row],
            spread=spreads.get(node),
        )
        for row, node in enumerate(hierarchy.nodes)
    }
    scenarios = ReconciledScenarios(hierarchy=hierarchy, first=first, points=reconciled_points,
                                    errors=reconciled_errors, paths=paths, levels=node_levels,
                                    levels_today=node_today, spreads=spreads)  # fmt: skip
    # An aggregate of young series only has too few origins of its own as well: it is banded
    # as the sum of its series, their pooled spreads added.
    for row, node in enumerate(hierarchy.aggregates):
        if spreads and not own[row]:
            members = np.flatnonzero(hierarchy.summing[row])
            paths[node] = scenarios.combination({hierarchy.bottom[m]: 1.0 for m in members})
    weekday = np.array([d.weekday() for d in calendar])
    rows = [offset + k for k in range(len(hierarchy.bottom)) if own[offset + k]]
    short_donors = partial(flat_donors, values[rows], weekday,
                           [hierarchy.bottom[row - offset] for row in rows], first=first,
                           horizon_days=horizon_days, starts=starts[rows])  # fmt: skip
    return scenarios, short_donors if pool_spreads else _no_donors


def _no_donors(window: int) -> dict[str, np.ndarray]:
    """No donor for a series too short for a fit, whatever its window: nothing to pool."""
    return {}


def _with_short(base: ReconciledScenarios | None, hierarchy: Hierarchy,
                short: Mapping[str, SeriesPaths], short_spreads: Mapping[str, Spread],
                ) -> ReconciledScenarios:  # fmt: skip
    """The scenarios of every node of `hierarchy` from `base`'s (those of `hierarchy` without
    the series of `short`, None: no other series) and the bands of the series too short for a
    fit (`short`, their spreads `short_spreads`): each node is its part in `base` (the node of
    its other series) plus its short series (`plus_paths`). A short series has no errors; its
    spread is among `ReconciledScenarios.spreads`, so a requirement adds it as a young
    series'."""
    template = next(iter(short.values()))
    horizon, count = template.bands["mean"].size, len(hierarchy.nodes)
    origins = 0 if base is None else base.errors.shape[1]
    parts: dict[frozenset[str], int] = {}
    if base is not None:
        for row, members in enumerate(base.hierarchy.summing):
            parts[frozenset(base.hierarchy.bottom[k] for k in np.flatnonzero(members))] = row
    points = np.zeros((count, horizon))
    paths, rows, taken = {}, [], []
    for row, node in enumerate(hierarchy.nodes):
        members = [hierarchy.bottom[k] for k in np.flatnonzero(hierarchy.summing[row])]
        added = [short[m] for m in members if m in short]
        part = parts.get(frozenset(m for m in members if m not in short))
        kept = None
        if base is not None and part is not None:
            kept = base.paths[base.hierarchy.nodes[part]]
            rows.append(row)
            taken.append(part)
        for path in added:
            points[row] += path.bands["mean"]
        paths[node] = kept if kept is not None and not added else plus_paths(kept, added)
    errors = np.full((count, origins, horizon), np.nan)
    levels = today = None
    spreads = dict(short_spreads)
    if base is not None:
        points[rows] += base.points[taken]
        errors[rows] = base.errors[taken]
        spreads.update(base.spreads)
        if base.levels is not None and base.levels_today is not None:
            levels, today = np.zeros((count, origins)), np.zeros(count)
            levels[rows], today[rows] = base.levels[taken], base.levels_today[taken]
    return ReconciledScenarios(hierarchy=hierarchy, first=template.days[0], points=points,
                               errors=errors, paths=paths, levels=levels, levels_today=today,
                               spreads=spreads)  # fmt: skip


def _truncated_donors(values: np.ndarray, calendar: list[dt.date], hierarchy: Hierarchy,
                      projector: np.ndarray, base_errors: np.ndarray, usable: np.ndarray, *,
                      starts: np.ndarray, length: int, horizon_days: int,
                      changepoint_every: int, ridge: float, damping: float, origin_step: int,
                      ) -> dict[str, np.ndarray]:  # fmt: skip
    """Per series with errors of its own (`usable` [nodes, origins]: the origins it counts),
    its reconciled relative errors had it been fit on only `length` days before each origin
    (`truncated_errors`), the aggregates' base forecasts as they were: the reconciled errors a
    young series of that age makes, as its own would have been."""
    offset = len(hierarchy.aggregates)
    weekday = np.array([d.weekday() for d in calendar])
    errors, levels = truncated_errors(
        values[offset:], weekday, length=length, starts=starts[offset:],
        horizon_days=horizon_days, changepoint_every=changepoint_every, ridge=ridge,
        damping=damping, origin_step=origin_step,
    )  # fmt: skip
    missing = ~np.isfinite(errors)
    mixed = base_errors.copy()
    # An origin a series had not `length` days for keeps its own base error, so that no
    # other series loses that origin in the projection (`_project_errors`); it counts for none.
    mixed[offset:] = np.where(missing, base_errors[offset:], errors)
    reconciled = _project_errors(projector[offset:], mixed)
    reconciled[missing | ~usable[offset:, :, None]] = np.nan
    relative = relative_errors(reconciled, levels)
    return {b: relative[k] for k, b in enumerate(hierarchy.bottom) if usable[offset + k].any()}


def node_starts(daily: pl.DataFrame, hierarchy: Hierarchy, calendar: list[dt.date]) -> np.ndarray:
    """[nodes]: the index on `calendar` of each node's first observed day (a series' first row
    in `daily`, `started`'s rows; an aggregate's earliest series'). A series without a row has
    not started: the index after the calendar's end."""
    index = {day: k for k, day in enumerate(calendar)}
    first: dict[str, dt.date] = dict(daily.group_by("id").agg(pl.col("time").min()).iter_rows())
    bottom = np.array([index[first[b]] if b in first else len(calendar) for b in hierarchy.bottom])
    return np.array([bottom[row > 0].min() for row in hierarchy.summing])


def _backtestable(starts: np.ndarray, *, n: int, changepoint_every: int, origin_step: int
                  ) -> np.ndarray:  # fmt: skip
    """[nodes, origins]: whether each node (`starts`, its first day, `node_starts`) had a month
    of history (what `_origins` asks of any origin) before each backtest origin of a calendar
    of `n` days. A node's first day is the one its fits start at.

    On one calendar a node that appeared later counts zero before it existed. Its errors at
    origins before then are its arrival, not a forecast's miss, and the spread at today's level
    multiplies them by today's level over a zero one: a 30-day series among three of 63 days
    had a P90 49,325 accelerators above its P50, and its type's requirement 146,344 against a
    P50 of 786. Such a node's errors count only from origins it was there for; with fewer than
    `MIN_OWN_ORIGINS` of them its spread is pooled from the other series' (`pooled_spreads`).
    """
    origins = np.array(list(_origins(n, changepoint_every=changepoint_every,
                                     origin_step=origin_step)))  # fmt: skip
    return origins[None, :] >= starts[:, None] + 28


def _project_errors(projector: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """projector @ errors per (origin, step): [nodes, origins, horizon]. An unobserved step (NaN:
    all nodes or none, on one calendar) stays NaN in every node; one BLAS product over the
    observed ones (numpy's einsum does not use BLAS: it took 6.5 s over the 500-series
    benchmark's three passes)."""
    flat = errors.reshape(errors.shape[0], -1)
    observed = np.all(np.isfinite(flat), axis=0)
    out = np.full((projector.shape[0], flat.shape[1]), np.nan)
    out[:, observed] = projector @ flat[:, observed]
    return out.reshape(projector.shape[0], *errors.shape[1:])


def paths_frames(paths: dict[str, SeriesPaths]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(daily, weekly) [id, time, mean, p50, p90, spread_source] tables of per-id paths."""
    daily_rows, weekly_rows = [], []
    for series_id, path in paths.items():
        band = path.bands
        daily_rows.append(
            pl.DataFrame({"id": series_id, "time": path.days, "mean": band["mean"],
                          "p50": band["p50"], "p90": band["p90"],
                          "spread_source": path.spread_source})
        )  # fmt: skip
        weekly_rows.append(
            pl.DataFrame({"id": series_id, "time": path.weeks, "mean": band["weekly_mean"],
                          "p50": band["weekly_p50"], "p90": band["weekly_p90"],
                          "spread_source": path.spread_source})
        )  # fmt: skip
    daily_table = pl.concat(daily_rows).with_columns(pl.col("time").cast(pl.Date))
    weekly_table = pl.concat(weekly_rows).with_columns(pl.col("time").cast(pl.Date))
    return daily_table.sort("id", "time"), weekly_table.sort("id", "time")


def scenario_forecast(
    daily: pl.DataFrame,
    *,
    horizon_days: int = 182,
    launches: Sequence[Launch] = (),
    changepoint_every: int = 28,
    ridge: float = 50.0,
    damping: float = 0.99,
    level_scaled: bool = LEVEL_SCALED,
    spread_scaled: bool = SPREAD_SCALED,
    peers: Mapping[str, str] | None = None,
    pool_spreads: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(daily, weekly) bands: [id, time, mean, p50, p90, spread_source] per day and per week
    (its Monday); `spread_source` as in `SPREAD_SOURCES` (`scenario_paths`)."""
    bands = scenario_paths(
        daily, horizon_days=horizon_days, launches=launches, changepoint_every=changepoint_every,
        ridge=ridge, damping=damping, level_scaled=level_scaled, spread_scaled=spread_scaled,
        peers=peers, pool_spreads=pool_spreads,
    )  # fmt: skip
    return paths_frames(bands)


def scenario_backtest(
    daily: pl.DataFrame,
    *,
    horizon_days: int,
    windows: int = 2,
    changepoint_every: int = 28,
    ridge: float = 50.0,
    damping: float = 0.99,
    level_scaled: bool = LEVEL_SCALED,
    spread_scaled: bool = SPREAD_SCALED,
) -> pl.DataFrame:
    """Rolling origin, `windows` origins `horizon_days` apart: per series and window, the MAE of
    P50 over that of the weekly seasonal naive (the last week repeated), and the shares of days
    at or below P90 (calibrated: ~0.9) and at or below P50 (~0.5). Each series' days count from
    its first nonzero value (`started`); one zero on every day, or too short for a fit
    (`too_short`), has no origin to score from and no row."""
    daily, _ = started(daily)
    daily = daily.filter(~pl.col("id").is_in(too_short(daily)))
    rows = []
    lengths = daily.group_by("id").len()
    needed = horizon_days * windows + 4 * changepoint_every
    if lengths.height:
        shortest = as_int(lengths.get_column("len").min(), what="shortest series length")
        if shortest < needed:
            raise ValueError(
                f"scenario backtest: the shortest series has {shortest} days from its first "
                f"nonzero value; {windows} windows of {horizon_days} days need at least {needed}"
            )
    for window in range(windows, 0, -1) if lengths.height else ():
        train = (
            daily.sort("id", "time")
            .group_by("id", maintain_order=True)
            .map_groups(partial(_head_before, days_back=window * horizon_days))
        )
        test = (
            daily.sort("id", "time")
            .group_by("id", maintain_order=True)
            .map_groups(partial(_slice_from, days_back=window * horizon_days, length=horizon_days))
        )
        bands = scenario_paths(
            train, horizon_days=horizon_days, changepoint_every=changepoint_every, ridge=ridge,
            damping=damping, level_scaled=level_scaled, spread_scaled=spread_scaled,
        )  # fmt: skip
        # One pass over each frame, not a filter per series (the filters took 10 of the 15 s
        # of the 500-series backtest, wall at load 4).
        tests = {k[0]: f for k, f in test.partition_by("id", as_dict=True).items()}
        trains = {k[0]: f for k, f in train.partition_by("id", as_dict=True).items()}
        for series_id, paths in bands.items():
            band = paths.bands
            actual = tests[series_id].get_column("value").to_numpy()
            past = trains[series_id].get_column("value").to_numpy()
            naive = np.resize(past[-7:], horizon_days)
            p50, p90 = band["p50"], band["p90"]
            rows.append(
                (series_id, window, float(np.mean(np.abs(actual - p50)) /
                 max(np.mean(np.abs(actual - naive)), 1e-9)),
                 float(np.mean(actual <= p90)), float(np.mean(actual <= p50)))
            )  # fmt: skip
    return pl.DataFrame(
        rows,
        schema={"id": pl.String, "window": pl.Int64, "relative_mae": pl.Float64,
                "share_below_p90": pl.Float64, "share_below_p50": pl.Float64},
        orient="row",
    )  # fmt: skip


def _head_before(group: pl.DataFrame, *, days_back: int) -> pl.DataFrame:
    """The group's rows except its last `days_back`: the history before a backtest origin."""
    return group.head(group.height - days_back)


def _slice_from(group: pl.DataFrame, *, days_back: int, length: int) -> pl.DataFrame:
    """`length` rows starting `days_back` rows before the group's end: a backtest window."""
    return group.slice(group.height - days_back, length)


def started(daily: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """(the rows of `daily` [id, time, value] from each series' first nonzero value on, in
    their order; the ids of the series zero on every day, sorted).

    An export that lists every series on the fleet's calendar has zeros on the days before a
    series existed. Read as its history, a series 20 days old looked old enough for errors of
    its own: those from the zero days, times today's level over a level of about zero, made its
    P90 13,839 against a P50 of 728 on its 182nd day, at a level of 212. A series of such rows
    is the series of its rows from its first nonzero value on; zeros after that value are
    observed demand. Its days count from there (`too_short`)."""
    missing = [c for c in ("id", "time", "value") if c not in daily.columns]
    if missing:
        raise ValueError(f"daily demand: missing column(s) {', '.join(missing)}")
    first = pl.col("time").filter(pl.col("value") != 0).min().over("id")
    history = daily.filter(pl.col("time") >= first)
    idle = set(daily.get_column("id").unique()) - set(history.get_column("id").unique())
    return history, sorted(str(s) for s in idle)
