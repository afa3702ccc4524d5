"""Annotation workforce: daily throughput and backlog, and the hours each project needs."""

import datetime as dt
from dataclasses import dataclass

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    Config,
    FreshnessPolicy,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from annotation_pipelines.forecasting import workforce_forecast, workforce_throughput
from annotation_pipelines.forecasting.plot import plot_forecast
from annotation_pipelines.settings import load_settings
from assets.common.automation import REBUILD_ON_UPSTREAM_CHANGE
from assets.common.metadata import figure, markdown_table, png_markdown
from assets.common.partitions import daily_partitions
from resources.lake import Lake
from resources.landing import LandingZone

OWNERS = ["team:annotation-operations"]


@asset(
    partitions_def=daily_partitions,
    group_name="workforce",
    owners=OWNERS,
    kinds={"polars", "parquet"},
    pool="daily_layers",
    # The backlog carried into a day depends on every day before it.
    deps=[
        AssetDep(name, partition_mapping=TimeWindowPartitionMapping(start_offset=-28))
        for name in ("judgments", "raw_tasks")
    ],
    automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
    description="Per project and day: tasks in, judgments, tasks completed at the required "
    "overlap, annotators, annotator-hours from durations, judgments per hour, backlog.",
)
def workforce_throughput_daily(
    context: AssetExecutionContext, lake: Lake, landing: LandingZone
) -> Output[pl.DataFrame]:
    day = dt.date.fromisoformat(context.partition_key)
    end = pl.lit(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)) + pl.duration(days=1)
    # Only the columns throughput uses, so the scan of every earlier day stays narrow.
    judgments = (
        lake.scan_all("judgments")
        .filter(pl.col("submitted_at") < end)
        .select("task_id", "project", "annotator_id", "submitted_at", "duration_s")
        .collect()
    )
    tasks = (
        lake.scan_all("raw_tasks")
        .filter(pl.col("created_at") < end)
        .select("task_id", "project", "created_at")
        .collect()
    )
    # A project whose tasks land before its first judgment needs a plan too, or the whole day
    # fails for every project.
    plans = _plans_for(context, landing, pl.concat([judgments["project"], tasks["project"]]))
    throughput = workforce_throughput(judgments, tasks, plans.table, through=day)
    today = throughput.filter(pl.col("day") == day)
    return Output(
        today,
        metadata={
            "annotator_hours": figure(float(today["annotator_hours"].sum()), digits=1),
            "backlog": MetadataValue.int(int(today["backlog"].sum())),
            "per_project": markdown_table(today),
            "plan_notes": MetadataValue.json(plans.notes),
        },
    )


@dataclass(frozen=True)
class _Plans:
    table: pl.DataFrame  # [project, overlap, sla_days]
    notes: list[str]  # each project.json field that fell back to the default, and why


def _plans_for(context: AssetExecutionContext, landing: LandingZone, projects: pl.Series) -> _Plans:
    """[project, overlap, sla_days] for every project in `projects`.

    Projects that arrive only through the annotation DB have no plan in the landing zone; they
    get the deployment's defaults rather than failing the day. So does a field of a
    project.json that is not a valid plan, with a warning naming the file and the field.
    """
    settings = load_settings()
    configured, notes = landing.project_plans(
        default_overlap=settings.default_overlap, default_sla_days=settings.default_sla_days
    )
    for note in notes:
        context.log.warning(f"workforce plan: {note}")
    wanted = pl.DataFrame({"project": projects.unique().sort()})
    table = wanted.join(configured, on="project", how="left").with_columns(
        pl.col("overlap").fill_null(settings.default_overlap),
        pl.col("sla_days").fill_null(settings.default_sla_days),
    )
    return _Plans(table=table, notes=notes)


class WorkforceForecastConfig(Config):
    horizon_days: int = Field(default=28, ge=7)
    backtest_windows: int = 3
    recent_days: int = Field(default=14, description="Days over which throughput is measured.")
    staffing_hours_per_week: dict[str, float] = Field(
        default_factory=dict, description="Planned hours per project; default: recent hours."
    )


@asset(
    group_name="forecasting",
    owners=OWNERS,
    kinds={"statsforecast", "polars"},
    deps=["workforce_throughput_daily"],
    freshness_policy=FreshnessPolicy.time_window(fail_window=dt.timedelta(days=8)),
    description="Per project: task volume forecast with 80/95% intervals, annotator-hours per "
    "week the SLA needs, the date the backlog clears at current staffing, and risk.",
)
def workforce_capacity_forecast(
    context: AssetExecutionContext,
    config: WorkforceForecastConfig,
    lake: Lake,
    landing: LandingZone,
) -> Output[pl.DataFrame]:
    history = lake.read_days("workforce_throughput_daily", lake.days("workforce_throughput_daily"))
    if history.height == 0:
        raise FileNotFoundError(
            "workforce_throughput_daily has no partitions; materialize it first"
        )
    plans = _plans_for(context, landing, history["project"])
    result = workforce_forecast(
        history,
        plans.table,
        horizon_days=config.horizon_days,
        backtest_windows=config.backtest_windows,
        staffing_hours_per_week=config.staffing_hours_per_week or None,
        recent_days=config.recent_days,
    )
    at_risk = result.plan.filter(pl.col("at_risk"))["project"].to_list()
    context.log.info(f"projects at risk: {at_risk or 'none'}")
    plan_key = lake.write_table("workforce_plan", result.plan)
    return Output(
        result.forecast,
        metadata={
            # The plan is a table of its own beside the forecast this asset stores.
            "plan_table": MetadataValue.path(lake.uri(plan_key)),
            "plan": markdown_table(
                result.plan.select(
                    "project",
                    "backlog",
                    "judgments_per_annotator_hour",
                    "current_hours_per_week",
                    "staffing_reason",
                    "hours_needed_per_week",
                    "hours_gap_per_week",
                    "backlog_clear_date",
                    "at_risk",
                    "risk_reason",
                    "interval_reason",
                )
            ),
            "projects_at_risk": MetadataValue.json(at_risk),
            "plan_notes": MetadataValue.json(plans.notes),
            "scores": markdown_table(result.scores),
            "plot": png_markdown(
                plot_forecast(
                    result.history,
                    result.forecast,
                    last=60,
                    notes=dict(
                        result.plan.select("project", "interval_reason").drop_nulls().rows()
                    ),
                ),
                alt="task volume",
            ),
        },
    )
