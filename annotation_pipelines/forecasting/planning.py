"""The monthly capacity plan in one call: months-ahead bands, the procurement plan, the charts.

Telemetry in (`compute_usage`), config in (`capacity_config`), everything the procurement
asset and the HTML capacity report show out. The supply line of a cluster is the demand its
current fleet carries at the target utilization of the classes that run on it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from annotation_pipelines.forecasting.capacity_config import CapacityConfig
from annotation_pipelines.forecasting.procurement import (
    current_fleet,
    procurement_plan,
    required_accelerators,
    runs_short,
    series_profiles,
)
from annotation_pipelines.forecasting.scenarios import scenario_forecast
from annotation_pipelines.forecasting.telemetry import (
    allocation_vs_utilization,
    to_series,
    with_detail_columns,
)


@dataclass(frozen=True)
class CapacityPlan:
    daily: pl.DataFrame  # [id, time, mean, p50, p90] demand per series per day
    weekly: pl.DataFrame  # the same per week (Monday)
    required: pl.DataFrame  # [cluster, accelerator_type, time, p50, p90] accelerators to own
    plan: pl.DataFrame  # procurement.PLAN_COLUMNS
    runs_short: pl.DataFrame  # [cluster, scenario, runs_short_on]
    utilization: pl.DataFrame  # allocation vs utilization per cluster and class (whole period)
    history_weekly: pl.DataFrame  # [cluster, time, value] weekly demand per cluster
    cluster_weekly: pl.DataFrame  # [cluster, time, p50, p90] weekly bands per cluster
    supply: pl.DataFrame  # [cluster, time, supply] demand the fleet carries at target


def capacity_plan(usage: pl.DataFrame, *, config: CapacityConfig, as_of: dt.date) -> CapacityPlan:
    usage = with_detail_columns(usage)
    daily_history = to_series(usage, freq="1d")
    daily, weekly = scenario_forecast(
        daily_history, horizon_days=7 * config.horizon_weeks, launches=config.launches
    )
    profiles = series_profiles(usage)
    fleet = current_fleet(usage)
    required = required_accelerators(daily, profiles, config=config)
    plan = procurement_plan(required, fleet, config=config, as_of=as_of)
    by_cluster = profiles.select("id", "cluster")
    cluster_weekly = (
        weekly.join(by_cluster, on="id", how="left")
        .with_columns(pl.col("cluster").fill_null(pl.col("id")))
        .group_by("cluster", "time")
        .agg(pl.col("p50").sum(), pl.col("p90").sum())
        .sort("cluster", "time")
    )
    history_weekly = (
        daily_history.join(by_cluster, on="id", how="left")
        .with_columns(pl.col("cluster").fill_null(pl.col("id")))
        .group_by("cluster", "time")
        .agg(pl.col("value").sum())
        .sort("time")
        .group_by_dynamic("time", every="1w", group_by="cluster")
        .agg(pl.col("value").mean())
        .with_columns(pl.col("time").dt.date())
        .sort("cluster", "time")
    )
    # What the current fleet carries: each series' quota x its class's target utilization.
    latest = (
        usage.sort("time")
        .group_by("series_id")
        .agg(
            pl.col("cluster").last(),
            pl.col("total").drop_nulls().last(),
            pl.col("workload_class").drop_nulls().last(),
        )
    )
    carried = latest.with_columns(
        (
            pl.col("total")
            * pl.col("workload_class").map_elements(config.utilization, return_dtype=pl.Float64)
        ).alias("carried")
    )
    supply_level = carried.group_by("cluster").agg(pl.col("carried").sum().alias("supply"))
    supply = (
        cluster_weekly.select("cluster", "time")
        .vstack(history_weekly.select("cluster", "time"))
        .unique()
        .join(supply_level, on="cluster", how="left")
        .sort("cluster", "time")
    )
    utilization = (
        allocation_vs_utilization(usage, every="1mo")
        .group_by("cluster", "workload_class", "accelerator_type")
        .agg(pl.col("allocated", "busy", "idle_allocated", "unallocated").mean())
        .sort("cluster", "workload_class", "accelerator_type")
    )
    return CapacityPlan(
        daily=daily,
        weekly=weekly,
        required=required,
        plan=plan,
        runs_short=runs_short(plan),
        utilization=utilization,
        history_weekly=history_weekly,
        cluster_weekly=cluster_weekly,
        supply=supply,
    )
