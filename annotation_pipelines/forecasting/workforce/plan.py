"""The staffing plan per project: hours an SLA needs, when the backlog clears, and the risk."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from annotation_pipelines import schema
from annotation_pipelines.forecasting.workforce.settings import project_settings, require_columns
from annotation_pipelines.forecasting.workforce.volume import (
    WORKFORCE_SCORE_COLUMNS,
    no_interval_reason,
    volume_forecasts,
)

_NEVER_DAYS = 3650

PLAN_COLUMNS: dict[str, pl.DataType] = {
    # identity and settings
    "project": pl.String(),
    "as_of": pl.Date(),  # last day of history; the plan starts the day after
    "overlap": pl.UInt32(),
    "sla_days": pl.Float64(),
    # the volume forecast used
    "model": pl.String(),
    "model_reason": pl.String(),  # null when the backtest ran as asked
    "interval_reason": pl.String(),  # null when the forecast has 80/95% bounds, else why not
    # where the project stands
    "backlog": pl.UInt32(),  # open tasks at the end of as_of
    "judgments_per_annotator_hour": pl.Float64(),  # over the last `recent_days`
    "current_hours_per_week": pl.Float64(),  # given staffing, or recent annotator-hours
    # null when current staffing is given or measured; else how it was estimated, or why unknown
    "staffing_reason": pl.String(),
    # what the SLA needs
    "forecast_tasks_per_week": pl.Float64(),  # mean weekly volume over the horizon
    "forecast_tasks_per_week_hi_80": pl.Float64(),  # daily upper 80% bounds summed: cautious
    "steady_hours_per_week": pl.Float64(),  # forecast tasks × overlap / rate
    "backlog_hours": pl.Float64(),  # backlog × overlap / rate
    "hours_needed_per_week": pl.Float64(),  # steady + backlog_hours × 7 / sla_days
    "hours_needed_per_week_hi_80": pl.Float64(),
    "hours_gap_per_week": pl.Float64(),  # needed − current (positive: understaffed)
    # when the backlog clears at current staffing
    "sla_deadline": pl.Date(),  # as_of + sla_days
    "backlog_clear_date": pl.Date(),  # null: never at current staffing
    "clear_date_extrapolated": pl.Boolean(),  # beyond the horizon, at the mean forecast rate
    "at_risk": pl.Boolean(),
    "risk_reason": pl.String(),  # "; "-joined reasons, null when not at risk
}


@dataclass(frozen=True)
class WorkforceForecast:
    """Daily task-volume forecasts, the per-project staffing plan, and the forecast scores.

    forecast: `schema.CAPACITY_FORECAST` with id = project, time = UTC midnight of each day,
              values = tasks created that day (80/95% intervals);
    plan:     one row per project, columns `PLAN_COLUMNS` (see the comments there);
    scores:   `selection.SCORE_COLUMNS` per project (held-out MASE, coverage) plus `reason` for a
              reduced backtest or a fallback model (those have no held-out scores);
    history:  [id, time, value] daily tasks created, what was forecast (for `plot_forecast`).
    """

    forecast: pl.DataFrame
    plan: pl.DataFrame
    scores: pl.DataFrame
    history: pl.DataFrame


def _clear_date(
    *,
    as_of: dt.date,
    backlog: float,
    arrivals: list[float],
    capacity_per_day: float,
) -> tuple[dt.date | None, bool]:
    """First day whose end sees the backlog drained; beyond the horizon at the mean arrival rate."""
    if backlog <= 0:
        return as_of, False
    remaining = backlog
    for day, arriving in enumerate(arrivals, start=1):
        remaining += arriving - capacity_per_day
        if remaining <= 1e-9:
            return as_of + dt.timedelta(days=day), False
    drain = capacity_per_day - (sum(arrivals) / len(arrivals) if arrivals else 0.0)
    extra = remaining / drain if drain > 0 else math.inf
    if extra > _NEVER_DAYS:
        # A drain of a hair above zero is "never" for planning (and overflows a date).
        return None, False
    return as_of + dt.timedelta(days=len(arrivals) + math.ceil(extra - 1e-9)), True


def _plan_row(
    project: str,
    days: pl.DataFrame,
    *,
    overlap: int,
    sla_days: float,
    staffed: float | None,
    predicted: pl.DataFrame,
    score: dict[str, object],
    horizon_days: int,
    recent_days: int,
    backtest_windows: int,
) -> dict[str, object]:
    """One project's `PLAN_COLUMNS` row from its history, settings and volume forecast."""
    as_of = days.get_column("day").max()
    if not isinstance(as_of, dt.date):
        raise ValueError(f"throughput: project {project!r} has no day to plan from")
    recent = days.tail(recent_days)
    # A day whose judgments have no duration (null hours) says nothing about the rate or the
    # hours worked: both come from the days that have hours. The caller casts these columns to
    # Float64, so each sum is a float.
    timed = recent.filter(pl.col("annotator_hours").is_not_null())
    all_timed = days.filter(pl.col("annotator_hours").is_not_null())
    hours = float(timed.get_column("annotator_hours").sum())
    all_hours = float(all_timed.get_column("annotator_hours").sum())
    rate: float | None = float(timed.get_column("judgments").sum()) / hours if hours > 0 else None
    if rate is None and all_hours > 0:
        rate = float(all_timed.get_column("judgments").sum()) / all_hours
    # Recent days with judgments but no durations were worked too: their hours are their
    # judgments at the rate (the whole history's when the recent days have none), so a tool
    # that stops sending durations does not read as nobody staffed and a backlog never cleared.
    untimed = recent.filter(pl.col("annotator_hours").is_null())
    untimed_judgments = float(untimed.get_column("judgments").sum())
    staffing_reason: str | None = None
    current: float | None
    if staffed is not None:
        current = float(staffed)
    elif untimed.height == 0:
        current = hours * 7.0 / recent.height
    elif rate is not None:
        current = (hours + untimed_judgments / rate) * 7.0 / recent.height
        measured = f"the last {recent.height} days'" if hours > 0 else "the whole history's"
        staffing_reason = (
            f"{untimed.height} of the last {recent.height} days have no durations: their "
            f"hours are estimated as their {untimed_judgments:.0f} judgments at {measured} "
            f"{rate:.1f} judgments per annotator-hour"
        )
    else:
        current = None
        staffing_reason = "no annotator-hours recorded: current staffing unknown"
    backlog = float(days.get_column("backlog").tail(1).item())
    arrivals = predicted.get_column("forecast").to_list()
    weekly = sum(arrivals) * 7.0 / horizon_days
    upper = predicted.get_column("hi_80")
    weekly_hi_80 = None if upper.null_count() else float(upper.sum()) * 7.0 / horizon_days
    interval_reason = (
        None
        if score["selection_windows"]
        else no_interval_reason(
            length=days.height, windows=min(backtest_windows, 2), horizon=horizon_days
        )
    )
    deadline = as_of + dt.timedelta(days=math.floor(sla_days))
    reasons = []
    # A rate exists only where hours exist, and then so does current staffing.
    if rate is None or current is None:
        steady = backlog_hours = needed = needed_hi_80 = gap = None
        clear, extrapolated = (as_of, False) if backlog <= 0 else (None, False)
        reasons.append("no annotator-hours recorded: judgments per hour unknown")
    else:
        steady = weekly * overlap / rate
        backlog_hours = backlog * overlap / rate
        needed = steady + backlog_hours * 7.0 / sla_days
        needed_hi_80 = (
            None
            if weekly_hi_80 is None
            else weekly_hi_80 * overlap / rate + backlog_hours * 7.0 / sla_days
        )
        gap = needed - current
        clear, extrapolated = _clear_date(
            as_of=as_of,
            backlog=backlog,
            arrivals=arrivals,
            capacity_per_day=current / 7.0 * rate / overlap,
        )
        if needed > current + 1e-9:
            reasons.append(
                f"needs {needed:.1f} annotator-hours/week to meet the {sla_days:g}-day SLA, "
                f"staffed {current:.1f}"
            )
    if backlog > 0 and clear is None and rate is not None:
        reasons.append(f"backlog of {backlog:.0f} tasks does not clear at current staffing")
    elif clear is not None and clear > deadline:
        reasons.append(
            f"backlog of {backlog:.0f} tasks clears {clear.isoformat()}, "
            f"after the SLA deadline {deadline.isoformat()}"
        )
    return {
        "project": project,
        "as_of": as_of,
        "overlap": overlap,
        "sla_days": sla_days,
        "model": score["model"],
        "model_reason": score["reason"],
        "interval_reason": interval_reason,
        "backlog": int(backlog),
        "judgments_per_annotator_hour": rate,
        "current_hours_per_week": current,
        "staffing_reason": staffing_reason,
        "forecast_tasks_per_week": weekly,
        "forecast_tasks_per_week_hi_80": weekly_hi_80,
        "steady_hours_per_week": steady,
        "backlog_hours": backlog_hours,
        "hours_needed_per_week": needed,
        "hours_needed_per_week_hi_80": needed_hi_80,
        "hours_gap_per_week": gap,
        "sla_deadline": deadline,
        "backlog_clear_date": clear,
        "clear_date_extrapolated": extrapolated,
        "at_risk": bool(reasons),
        "risk_reason": "; ".join(reasons) or None,
    }


def _require_one_row_per_day(history: pl.DataFrame) -> None:
    """ValueError naming each project whose days are not one row each from its first to its
    last, with the missing and repeated days, so the operator knows which partitions to rebuild."""
    problems = []
    for (project,), days in history.group_by("project", maintain_order=True):
        seen = days.get_column("day")
        first, last = seen.min(), seen.max()
        if not isinstance(first, dt.date) or not isinstance(last, dt.date):
            continue
        expected = {first + dt.timedelta(days=n) for n in range((last - first).days + 1)}
        missing = sorted(expected - set(seen.to_list()))
        repeated = sorted(seen.filter(seen.is_duplicated()).unique().to_list())
        if missing or repeated:
            parts = []
            if missing:
                parts.append(f"missing {_day_list(missing)}")
            if repeated:
                parts.append(f"repeated {_day_list(repeated)}")
            problems.append(f"project {project!r}: {', '.join(parts)}")
    if problems:
        raise ValueError(
            "throughput: each project needs one row per day (no gaps, no repeats); "
            + "; ".join(problems)
        )


def _day_list(days: list[dt.date], *, most: int = 10) -> str:
    shown = ", ".join(day.isoformat() for day in days[:most])
    return shown if len(days) <= most else f"{shown} and {len(days) - most} more"


def workforce_forecast(
    throughput: pl.DataFrame,
    projects: pl.DataFrame,
    *,
    horizon_days: int = 28,
    backtest_windows: int = 3,
    staffing_hours_per_week: Mapping[str, float] | None = None,
    recent_days: int = 14,
    models: list[str] | None = None,
    n_jobs: int = 1,
) -> WorkforceForecast:
    """Forecast daily task volume per project and plan the annotator-hours its SLA needs.

    throughput: `workforce_throughput` output (needs project, day, tasks_created, judgments,
    annotator_hours, backlog); projects: [project, overlap, sla_days]. Per project:

    - volume: `forecaster.forecast` on daily `tasks_created` (season 7, `backtest_windows` windows
      of `horizon_days`); a history too short for that uses fewer windows (at least 2), then the
      seasonal naive (>= 7 days) or the naive forecast without a backtest, and says why in
      `model_reason` / `scores.reason`;
    - a fallback that leaves its model fewer than two residuals has no interval: null bounds
      in the forecast and the `hi_80` plan columns, and `interval_reason` says why;
    - rate = sum(judgments) / sum(annotator_hours) over the last `recent_days` days (the whole
      history when those have no hours); current staffing = `staffing_hours_per_week[project]`
      or the annotator-hours of the last `recent_days` days scaled to a week, where a day
      whose judgments have no durations counts its judgments ÷ rate (`staffing_reason` says
      so; null staffing, with the reason, when no rate can be measured either);
    - hours_needed_per_week = (forecast_tasks_per_week × overlap + backlog × overlap × 7 /
      sla_days) / rate: the arrivals plus clearing today's backlog within the SLA (after the
      backlog is cleared, steady_hours_per_week suffices);
    - backlog_clear_date: the first day the backlog, growing by forecast arrivals and shrinking
      by current capacity (hours/7 × rate / overlap tasks a day), reaches zero;
    - at_risk when hours needed exceed current staffing, the backlog does not clear by
      as_of + sla_days, or no rate can be measured; risk_reason lists why.
    """
    if horizon_days < 1 or backtest_windows < 1 or recent_days < 1:
        raise ValueError("horizon_days, backtest_windows and recent_days must be positive")
    require_columns(
        throughput,
        ("project", "day", "tasks_created", "judgments", "annotator_hours", "backlog"),
        name="throughput",
    )
    settings = project_settings(projects)
    history_table = throughput.select(
        pl.col("project").cast(pl.String),
        pl.col("day").cast(pl.Date),
        pl.col("tasks_created").cast(pl.Float64),
        pl.col("judgments").cast(pl.Float64),
        # Hours that are NaN or infinite (a partition written before durations were checked)
        # are no measurement: such a day counts as one without hours.
        pl.when(pl.col("annotator_hours").cast(pl.Float64).is_finite())
        .then(pl.col("annotator_hours").cast(pl.Float64))
        .alias("annotator_hours"),
        pl.col("backlog").cast(pl.Float64),
    ).sort("project", "day")
    unconfigured = sorted(
        set(history_table.get_column("project").unique().to_list())
        - set(settings.get_column("project").to_list())
    )
    if unconfigured:
        raise ValueError(
            f"projects: no overlap/sla_days for project(s) {', '.join(map(repr, unconfigured))}"
        )
    if history_table.is_empty():
        empty_scores = schema.empty(WORKFORCE_SCORE_COLUMNS)
        return WorkforceForecast(
            forecast=schema.empty(schema.CAPACITY_FORECAST),
            plan=schema.empty(PLAN_COLUMNS),
            scores=empty_scores,
            history=pl.DataFrame(
                schema={"id": pl.String, "time": schema.UTC_TIMESTAMP, "value": pl.Float64}
            ),
        )
    _require_one_row_per_day(history_table)
    history = history_table.select(
        pl.col("project").alias("id"),
        pl.col("day").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("time"),
        pl.col("tasks_created").alias("value"),
    )
    table, scores = volume_forecasts(
        history,
        horizon=horizon_days,
        backtest_windows=backtest_windows,
        models=models,
        n_jobs=n_jobs,
    )
    staffing = dict(staffing_hours_per_week or {})
    rows = []
    for (project,), days in history_table.group_by("project", maintain_order=True):
        settings_row = settings.filter(pl.col("project") == project).row(0, named=True)
        rows.append(
            _plan_row(
                project,
                days,
                overlap=settings_row["overlap"],
                sla_days=settings_row["sla_days"],
                staffed=staffing.get(project),
                predicted=table.filter(pl.col("id") == project).sort("time"),
                score=scores.filter(pl.col("id") == project).row(0, named=True),
                horizon_days=horizon_days,
                recent_days=recent_days,
                backtest_windows=backtest_windows,
            )
        )
    plan = pl.DataFrame(rows, schema=PLAN_COLUMNS).sort("project")
    return WorkforceForecast(forecast=table, plan=plan, scores=scores, history=history)
