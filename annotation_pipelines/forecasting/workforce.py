"""Annotation workforce: throughput and backlog per project and day, and the hours an SLA needs.

Model (a fluid approximation of the annotation queue, the staffing-from-forecast framing of
Gans, Koole & Mandelbaum, 2003, "Telephone call centers: tutorial, review and research
prospects"): tasks arrive per project per day; a task is done when `overlap` distinct annotators
have judged it; annotators produce judgments at a measured rate (judgments per annotator-hour,
from the judgments' own `duration_s`). The daily task volume is forecast with the backtested
`models.forecast` (daily, weekly season; Hyndman & Athanasopoulos, "Forecasting: principles and
practice", 3rd ed., ch. 5 for the naive fallbacks). Meeting an SLA of `sla_days` then needs,
per week, the hours for the forecast arrivals (`tasks × overlap / rate`) plus the hours that
clear today's backlog within `sla_days`; the backlog clears at current staffing on the first
day that arrivals-to-date minus capacity-to-date drain it to zero.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from annotation_pipelines import schema
from annotation_pipelines.forecasting.models import (
    LEVELS,
    SCORE_COLUMNS,
    _from_statsforecast,
    _statsforecast,
    _to_statsforecast,
    forecast,
)

SEASON_LENGTH = 7
_NEVER_DAYS = 3650
# A fallback model's interval is its in-sample residuals' spread; with none it is zero-width
# and with one it is a single difference, so below two there is no interval to report.
MIN_RESIDUALS = 2

THROUGHPUT_COLUMNS: dict[str, pl.DataType] = {
    **schema.WORKFORCE_THROUGHPUT,
    "backlog": pl.UInt32(),
}

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

WORKFORCE_SCORE_COLUMNS: dict[str, pl.DataType] = {**SCORE_COLUMNS, "reason": pl.String()}


def _require(frame: pl.DataFrame, columns: tuple[str, ...], *, name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {', '.join(missing)}; have {', '.join(frame.columns)}"
        )


def project_settings(projects: pl.DataFrame) -> pl.DataFrame:
    """Validate per-project settings: [project, overlap (>= 1 judgments per task), sla_days > 0]."""
    _require(projects, ("project", "overlap", "sla_days"), name="projects")
    settings = projects.select(
        pl.col("project").cast(pl.String),
        pl.col("overlap").cast(pl.Int64),
        pl.col("sla_days").cast(pl.Float64),
    )
    duplicated = settings.filter(pl.col("project").is_duplicated())
    if duplicated.height:
        raise ValueError(f"projects: duplicate project {duplicated['project'][0]!r}")
    bad = settings.filter(
        pl.col("project").is_null()
        | pl.col("overlap").is_null()
        | (pl.col("overlap") < 1)
        | pl.col("sla_days").is_null()
        | (pl.col("sla_days") <= 0)
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"projects: project {row['project']!r} needs overlap >= 1 and sla_days > 0; "
            f"got overlap={row['overlap']}, sla_days={row['sla_days']}"
        )
    return settings


def workforce_throughput(
    judgments: pl.DataFrame,
    tasks: pl.DataFrame,
    projects: pl.DataFrame,
    *,
    through: dt.date | None = None,
) -> pl.DataFrame:
    """Per project and UTC day: volume, judgments, completions, annotators, hours, rate, backlog.

    judgments: `schema.JUDGMENTS` (task_id, project, annotator_id, submitted_at, duration_s are
    used); tasks: `schema.RAW_TASKS` (task_id, project, created_at); projects: [project,
    overlap, sla_days]. Returns `schema.WORKFORCE_THROUGHPUT` columns plus `backlog`, one row
    per project per day from the project's first activity to `through` (default: the last day
    with any task or judgment in the inputs; later rows are ignored), days without activity as
    zeros. Definitions:

    - a task exists from the earlier of its `created_at` and its first judgment (a task seen
      only in judgments, or judged before its recorded creation, exists from that judgment);
    - it is completed when its `overlap`-th distinct annotator first judges it (repeat
      judgments by one annotator count as judgments and hours, not toward overlap);
    - `annotator_hours` = sum(duration_s) / 3600 (null durations count as 0);
      `judgments_per_annotator_hour` = judgments / annotator_hours (null when no hours);
    - `backlog` = tasks existing and not completed at the end of the day, so
      backlog[d] = backlog[d-1] + tasks_created[d] - tasks_completed[d] exactly.
    """
    _require(
        judgments,
        ("task_id", "project", "annotator_id", "submitted_at", "duration_s"),
        name="judgments",
    )
    _require(tasks, ("task_id", "project", "created_at"), name="tasks")
    settings = project_settings(projects)
    judged = judgments.select(
        pl.col("project").cast(pl.String),
        pl.col("task_id").cast(pl.String),
        pl.col("annotator_id").cast(pl.String),
        schema.to_utc(pl.col("submitted_at"), judgments.schema["submitted_at"]).alias(
            "submitted_at"
        ),
        pl.col("duration_s").cast(pl.Float64).fill_null(0.0),
    ).drop_nulls(["project", "task_id", "submitted_at"])
    negative = judged.filter(pl.col("duration_s") < 0)
    if negative.height:
        row = negative.row(0, named=True)
        raise ValueError(
            f"judgments: negative duration_s {row['duration_s']} for task {row['task_id']!r} "
            f"by annotator {row['annotator_id']!r}"
        )
    created = (
        tasks.select(
            pl.col("project").cast(pl.String),
            pl.col("task_id").cast(pl.String),
            schema.to_utc(pl.col("created_at"), tasks.schema["created_at"]).alias("created_at"),
        )
        .drop_nulls(["project", "task_id"])
        .group_by("project", "task_id")
        .agg(pl.col("created_at").min())
    )
    known = set(created.get_column("project").unique().to_list()) | set(
        judged.get_column("project").unique().to_list()
    )
    unconfigured = sorted(known - set(settings.get_column("project").to_list()))
    if unconfigured:
        raise ValueError(
            f"projects: no overlap/sla_days for project(s) {', '.join(map(repr, unconfigured))}"
        )
    if through is None:
        last = pl.concat(
            [
                judged.select(pl.col("submitted_at").max().alias("time")),
                created.select(pl.col("created_at").max().alias("time")),
            ]
        ).get_column("time")
        if last.drop_nulls().is_empty():
            return schema.empty(THROUGHPUT_COLUMNS)
        through = last.max().date()
    judged = judged.with_columns(pl.col("submitted_at").dt.date().alias("day")).filter(
        pl.col("day") <= through
    )
    # The overlap-th distinct annotator completes the task; ties on time break by annotator.
    completed = (
        judged.sort("submitted_at", "annotator_id")
        .unique(["project", "task_id", "annotator_id"], keep="first", maintain_order=True)
        .join(settings.select("project", "overlap"), on="project")
        .with_columns(pl.int_range(1, pl.len() + 1).over("project", "task_id").alias("ordinal"))
        .filter(pl.col("ordinal") == pl.col("overlap"))
        .select("project", "task_id", pl.col("day").alias("completed_day"))
    )
    first_judged = judged.group_by("project", "task_id").agg(
        pl.col("submitted_at").min().alias("first_judged_at")
    )
    lifetimes = (
        created.join(first_judged, on=["project", "task_id"], how="full", coalesce=True)
        .select(
            "project",
            "task_id",
            pl.min_horizontal("created_at", "first_judged_at").dt.date().alias("created_day"),
        )
        .filter(pl.col("created_day") <= through)
        .join(completed, on=["project", "task_id"], how="left")
    )
    per_day_created = lifetimes.group_by("project", pl.col("created_day").alias("day")).agg(
        pl.len().alias("tasks_created")
    )
    per_day_completed = (
        lifetimes.drop_nulls("completed_day")
        .group_by("project", pl.col("completed_day").alias("day"))
        .agg(pl.len().alias("tasks_completed"))
    )
    per_day_work = judged.group_by("project", "day").agg(
        pl.len().alias("judgments"),
        pl.col("annotator_id").n_unique().alias("annotators"),
        (pl.col("duration_s").sum() / 3600.0).alias("annotator_hours"),
    )
    starts = pl.concat(
        [
            per_day_created.group_by("project").agg(pl.col("day").min()),
            per_day_work.group_by("project").agg(pl.col("day").min()),
        ]
    )
    if starts.is_empty():
        return schema.empty(THROUGHPUT_COLUMNS)
    grid = (
        starts.group_by("project")
        .agg(pl.col("day").min().alias("start"))
        .select("project", pl.date_ranges("start", pl.lit(through), interval="1d").alias("day"))
        .explode("day")
    )
    table = (
        grid.join(per_day_created, on=["project", "day"], how="left")
        .join(per_day_completed, on=["project", "day"], how="left")
        .join(per_day_work, on=["project", "day"], how="left")
        .with_columns(
            pl.col("tasks_created", "tasks_completed", "judgments", "annotators").fill_null(0),
            pl.col("annotator_hours").fill_null(0.0),
        )
        .sort("project", "day")
        .with_columns(
            pl.when(pl.col("annotator_hours") > 0)
            .then(pl.col("judgments") / pl.col("annotator_hours"))
            .alias("judgments_per_annotator_hour"),
            (
                pl.col("tasks_created").cast(pl.Int64).cum_sum()
                - pl.col("tasks_completed").cast(pl.Int64).cum_sum()
            )
            .over("project")
            .alias("backlog"),
        )
    )
    return schema.conform(table, THROUGHPUT_COLUMNS, name="workforce_throughput")


@dataclass(frozen=True)
class WorkforceForecast:
    """Daily task-volume forecasts, the per-project staffing plan, and the forecast scores.

    forecast: `schema.CAPACITY_FORECAST` with id = project, time = UTC midnight of each day,
              values = tasks created that day (80/95% intervals);
    plan:     one row per project, columns `PLAN_COLUMNS` (see the comments there);
    scores:   `models.SCORE_COLUMNS` per project (held-out MASE, coverage) plus `reason` for a
              reduced backtest or a fallback model (those have no held-out scores);
    history:  [id, time, value] daily tasks created, what was forecast (for `plot_forecast`).
    """

    forecast: pl.DataFrame
    plan: pl.DataFrame
    scores: pl.DataFrame
    history: pl.DataFrame


def _minimum_history(*, windows: int, horizon: int) -> int:
    # As models.backtest: windows x horizon to score on, plus room to fit before the first origin.
    return windows * horizon + max(2 * SEASON_LENGTH, horizon + 3 * SEASON_LENGTH)


def _fallback_model(length: int) -> str:
    return "SeasonalNaive" if length >= SEASON_LENGTH else "Naive"


def _interval_reason(*, length: int, windows: int, horizon: int) -> str | None:
    """Why a history of `length` days gets no 80/95% interval (None: it gets one).

    A backtested forecast always has one. A fallback has one when its model leaves at least
    `MIN_RESIDUALS` in-sample residuals: one per day after the first (naive) or the first week
    (seasonal naive).
    """
    model = _fallback_model(length)
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
    engine = _statsforecast([instance], freq="1d", n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = engine.forecast(df=_to_statsforecast(history), h=horizon, level=list(LEVELS))
    frame = _from_statsforecast(pl.DataFrame(raw))
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


def _volume_forecasts(
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
            fallback = _fallback_model(length)
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
            model = _fallback_model(lengths[project])
            table = _fallback_forecast(
                subset.filter(pl.col("id") == project), model=model, horizon=horizon
            ).with_columns(pl.col("forecast", "lo_80", "hi_80", "lo_95", "hi_95").clip(0.0))
            minimum_windows = min(backtest_windows, 2)
            if _interval_reason(length=lengths[project], windows=minimum_windows, horizon=horizon):
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

    - volume: `models.forecast` on daily `tasks_created` (season 7, `backtest_windows` windows
      of `horizon_days`); a history too short for that uses fewer windows (at least 2), then the
      seasonal naive (>= 7 days) or the naive forecast without a backtest, and says why in
      `model_reason` / `scores.reason`;
    - rate = sum(judgments) / sum(annotator_hours) over the last `recent_days` days (the whole
      history when those have no hours); current staffing = `staffing_hours_per_week[project]`
      or the annotator-hours of the last `recent_days` days scaled to a week;
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
    _require(
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
        pl.col("annotator_hours").cast(pl.Float64),
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
    gaps = history_table.group_by("project").agg(
        ((pl.col("day").max() - pl.col("day").min()).dt.total_days() + 1 - pl.len()).alias("gap")
    )
    if gaps.filter(pl.col("gap") != 0).height:
        raise ValueError("throughput: each project needs one row per day (no gaps, no repeats)")
    history = history_table.select(
        pl.col("project").alias("id"),
        pl.col("day").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("time"),
        pl.col("tasks_created").alias("value"),
    )
    table, scores = _volume_forecasts(
        history,
        horizon=horizon_days,
        backtest_windows=backtest_windows,
        models=models,
        n_jobs=n_jobs,
    )
    staffing = dict(staffing_hours_per_week or {})
    rows = []
    for project, days in history_table.group_by("project", maintain_order=True):
        project = project[0]
        settings_row = settings.filter(pl.col("project") == project).row(0, named=True)
        overlap, sla_days = settings_row["overlap"], settings_row["sla_days"]
        as_of = days.get_column("day").max()
        recent = days.tail(recent_days)
        hours = recent.get_column("annotator_hours").sum()
        rate = recent.get_column("judgments").sum() / hours if hours > 0 else None
        if rate is None and days.get_column("annotator_hours").sum() > 0:
            rate = days.get_column("judgments").sum() / days.get_column("annotator_hours").sum()
        current = float(staffing[project]) if project in staffing else hours * 7.0 / recent.height
        backlog = float(days.get_column("backlog").tail(1).item())
        predicted = table.filter(pl.col("id") == project).sort("time")
        arrivals = predicted.get_column("forecast").to_list()
        weekly = sum(arrivals) * 7.0 / horizon_days
        upper = predicted.get_column("hi_80")
        weekly_hi_80 = None if upper.null_count() else float(upper.sum()) * 7.0 / horizon_days
        score = scores.filter(pl.col("id") == project).row(0, named=True)
        interval_reason = (
            None
            if score["selection_windows"]
            else _interval_reason(
                length=days.height, windows=min(backtest_windows, 2), horizon=horizon_days
            )
        )
        deadline = as_of + dt.timedelta(days=math.floor(sla_days))
        reasons = []
        if rate is None:
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
        rows.append(
            {
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
        )
    plan = pl.DataFrame(rows, schema=PLAN_COLUMNS).sort("project")
    return WorkforceForecast(forecast=table, plan=plan, scores=scores, history=history)
