"""The monthly capacity plan in one call: months-ahead bands, the procurement plan, the charts.

Telemetry in (`compute_usage`), config in (`capacity_config`), everything the procurement
asset and the HTML capacity report show out. The supply line of a cluster is the demand its
current fleet carries at the target utilization of the classes that run on it.

The series nest (cluster -> accelerator type -> workload class -> series), so by default every
node is forecast and the forecasts are reconciled (`hierarchy`, MinTrace with shrunk
covariance): a cluster's P50/P90 are the cluster's own reconciled bands and the accelerators
to own per cluster and type are banded as one weighted sum, instead of adding up the series'
P90s (which assumes they all peak on the same day). A series too young for backtest errors of
its own takes its P90 spread from its peer group's (`peer_groups`) or the fleet's pooled
relative errors; one too short for a fit (under two weeks) is planned flat at its last week's
mean with such a spread (`scenarios.too_short`, source `short_*`). Every band, requirement and
plan row says where its spread came from (`spread_source`), and `series_spreads` /
`spread_note` say it per series.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from annotation_pipelines.forecasting.capacity_config import CapacityConfig
from annotation_pipelines.forecasting.hierarchy import (
    DEFAULT_METHOD,
    METHODS,
    build_hierarchy,
)
from annotation_pipelines.forecasting.procurement import (
    current_fleet,
    procurement_plan,
    required_accelerators,
    runs_short,
    series_profiles,
    target_utilization,
    unknown_fleet_notes,
)
from annotation_pipelines.forecasting.scalars import as_date
from annotation_pipelines.forecasting.scenarios import (
    FLAT_LEVEL_DAYS,
    MIN_FIT_DAYS,
    SCENARIOS,
    SHORT,
    ReconciledScenarios,
    paths_frames,
    reconciled_scenarios,
    scenario_forecast,
)
from annotation_pipelines.forecasting.telemetry import (
    allocation_vs_utilization,
    carry_to_end,
    to_series,
    validate_usage,
    with_detail_columns,
)


@dataclass(frozen=True)
class CapacityPlan:
    # [id, time, mean, p50, p90, spread_source] demand per series per day
    daily: pl.DataFrame
    weekly: pl.DataFrame  # the same per week (Monday)
    required: pl.DataFrame  # [cluster, accelerator_type, time, p50, p90] accelerators to own
    plan: pl.DataFrame  # procurement.PLAN_COLUMNS
    runs_short: pl.DataFrame  # [cluster, scenario, runs_short_on]
    utilization: pl.DataFrame  # allocation vs utilization per cluster and class (whole period)
    history_weekly: pl.DataFrame  # [cluster, time, value] weekly demand per cluster
    cluster_weekly: pl.DataFrame  # [cluster, time, p50, p90] weekly bands per cluster
    supply: pl.DataFrame  # [cluster, time, supply] demand the fleet carries at target
    # [id, level, time, mean, p50, p90, spread_source] weekly bands of every node of the
    # hierarchy (empty without reconciliation)
    hierarchy_weekly: pl.DataFrame
    reconciliation: str | None  # the method (None: series forecast alone, clusters summed)
    # Launches under way (only the rest of the ramp added) and after the horizon (none of it).
    launch_notes: tuple[str, ...] = ()
    # What the plan could not see and how it planned around it (unknown fleets, stale series)
    notes: tuple[str, ...] = ()
    # Workload classes planned at a target the config gives another class (or none gives).
    target_notes: tuple[str, ...] = ()


HIERARCHY_LEVELS = ("cluster", "accelerator_type", "workload_class")
# The bands are calibrated on backtests whose first origin is a month in (day 28), a week
# apart. Up to 35 days leave one origin: one error per step ahead, no spread, so the P90 was
# the P50 again in every row (and one origin's errors give the reconciliation a singular
# covariance). Six weeks leave two origins, the fewest that measure a spread.
MIN_HISTORY_DAYS = 42


def capacity_plan(
    usage: pl.DataFrame,
    *,
    config: CapacityConfig,
    as_of: dt.date,
    reconciliation: str | None = DEFAULT_METHOD,
) -> CapacityPlan:
    """The plan; `reconciliation` is one of `hierarchy.METHODS` or None (each series alone,
    a cluster's band the sum of its series' bands)."""
    if reconciliation is not None and reconciliation not in METHODS:
        raise ValueError(
            f"unknown reconciliation {reconciliation!r}; choose from {', '.join(METHODS)} or None"
        )
    # Samples written before telemetry was validated on the way in (a NaN, a negative count, a
    # misspelt class) are set aside here too: one crashed the plan converting NaN to an order.
    usage, invalid = validate_usage(with_detail_columns(usage), source="compute_usage")
    reported = to_series(usage, freq="1d")
    days = reported.get_column("time").n_unique()
    if days < MIN_HISTORY_DAYS:
        raise ValueError(
            f"the capacity plan needs at least {MIN_HISTORY_DAYS} days of telemetry to "
            f"calibrate its bands; compute_usage has {days}"
        )
    profiles = series_profiles(usage)
    config.check_launches(
        {
            series_id: (workload_class, accelerator_type)
            for series_id, workload_class, accelerator_type in profiles.select(
                "id", "workload_class", "accelerator_type"
            ).iter_rows()
        }
    )
    # The plan starts on the day it is made: telemetry that ends before it (empty trailing
    # partitions) is carried, as a gap is, rather than forecast into days already past.
    last_reported = as_date(reported.get_column("time").dt.date().max(), what="last telemetry day")
    through = max(last_reported, as_of - dt.timedelta(days=1))
    daily_history, stale = carry_to_end(reported, freq="1d", through=through)
    first_day = through + dt.timedelta(days=1)
    fleet = current_fleet(usage)
    by_cluster = profiles.select("id", "cluster")
    hierarchy_weekly = pl.DataFrame(
        schema={"id": pl.String, "level": pl.String, "time": pl.Date, "mean": pl.Float64,
                "p50": pl.Float64, "p90": pl.Float64, "spread_source": pl.String}
    )  # fmt: skip
    peers = peer_groups(profiles)
    if reconciliation is None:
        daily, weekly = scenario_forecast(
            daily_history,
            horizon_days=7 * config.horizon_weeks,
            launches=config.launches,
            peers=peers,
        )
        required = required_accelerators(daily, profiles, config=config)
        cluster_weekly = (
            weekly.join(by_cluster, on="id", how="left")
            .with_columns(pl.col("cluster").fill_null(pl.col("id")))
            .group_by("cluster", "time")
            .agg(pl.col("p50").sum(), pl.col("p90").sum())
            .sort("cluster", "time")
        )
    else:
        hierarchy = build_hierarchy(profiles, levels=HIERARCHY_LEVELS)
        scenarios = reconciled_scenarios(
            daily_history, hierarchy, horizon_days=7 * config.horizon_weeks,
            launches=config.launches, method=reconciliation, peers=peers,
        )  # fmt: skip
        daily, weekly = paths_frames({b: scenarios.paths[b] for b in hierarchy.bottom})
        _, every_weekly = paths_frames(scenarios.paths)
        hierarchy_weekly = every_weekly.join(hierarchy.nodes_frame(), on="id").select(
            "id", "level", "time", "mean", "p50", "p90", "spread_source"
        )
        required = reconciled_required(scenarios, profiles, config=config)
        cluster_weekly = _cluster_bands(every_weekly, by_cluster)
    plan = procurement_plan(required, fleet, config=config, as_of=as_of)
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
    # A series with no class is planned at the "unknown" target, so its quota carries at it
    # too rather than dropping out of the supply line.
    targets = target_utilization(latest.get_column("workload_class"), config=config)
    carried = latest.with_columns((pl.col("total") * targets).alias("carried"))
    # A series with no total leaves its cluster's supply unknown, not the others' alone.
    supply_level = carried.group_by("cluster").agg(
        pl.when(pl.col("carried").is_null().any())
        .then(None)
        .otherwise(pl.col("carried").sum())
        .cast(pl.Float64)
        .alias("supply")
    )
    supply = (
        cluster_weekly.select("cluster", "time")
        .vstack(history_weekly.select("cluster", "time"))
        .unique()
        .join(supply_level, on="cluster", how="left")
        .sort("cluster", "time")
    )
    # One period, the whole history: a mean of monthly means weighed a partial month (14 days
    # of October) as much as a whole one.
    utilization = allocation_vs_utilization(usage, every=None).select(
        "cluster", "workload_class", "accelerator_type",
        "allocated", "busy", "idle_allocated", "unallocated",
    )  # fmt: skip
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
        hierarchy_weekly=hierarchy_weekly,
        reconciliation=reconciliation,
        launch_notes=tuple(
            config.launches_under_way(first_day=first_day)
            + config.launches_after_horizon(first_day=first_day)
        ),
        target_notes=tuple(
            config.unlisted_classes(
                {
                    str(workload_class): [str(s) for s in members]
                    for workload_class, members in profiles.group_by("workload_class")
                    .agg(pl.col("id"))
                    .iter_rows()
                }
            )
        ),
        notes=tuple(
            _invalid_notes(invalid)
            + _ended_notes(last_reported, through=through, as_of=as_of)
            + _stale_notes(stale, last_reported=last_reported, first_day=first_day)
            + unknown_fleet_notes(fleet)
        ),
    )


def _invalid_notes(invalid: pl.DataFrame) -> list[str]:
    """One note on the samples `validate_usage` set aside, by field and reason."""
    if not invalid.height:
        return []
    counts = (
        invalid.group_by("field", "reason")
        .len()
        .sort("field", "reason")
        .select(pl.format("{} {}: {}", "field", "reason", "len"))
        .to_series()
        .to_list()
    )
    return [
        f"{invalid.height:,} telemetry sample(s) set aside as invalid ({', '.join(counts)}); "
        f"the first: {invalid.row(0, named=True)['raw']}"
    ]


def _ended_notes(last_reported: dt.date, *, through: dt.date, as_of: dt.date) -> list[str]:
    """A note when no series reported after `last_reported`, days before the plan's `as_of`."""
    if through <= last_reported:
        return []
    return [
        f"no telemetry after {last_reported.isoformat()}: every series is carried at its last "
        f"day's level through {through.isoformat()} (a gap is no change, not zero), so the "
        f"forecast starts on the plan's day, {as_of.isoformat()}"
    ]


def _stale_notes(stale: pl.DataFrame, *, last_reported: dt.date, first_day: dt.date) -> list[str]:
    """A note per series that stopped reporting before the fleet's last day (`carry_to_end`)."""
    last_day = first_day - dt.timedelta(days=1)
    stale = stale.filter(pl.col("last").cast(pl.Date) < last_reported)
    return [
        f"series {series_id} has reported nothing since {as_date(last, what='last day'):%Y-%m-%d}"
        f": its demand is carried at that day's level to {last_day.isoformat()} (a gap is no "
        "change, not zero) and forecast from there with the rest of the fleet"
        for series_id, last in stale.iter_rows()
    ]


def peer_groups(profiles: pl.DataFrame) -> dict[str, str]:
    """Each series' peer group for a pooled P90 spread: its workload class and accelerator type
    ("training/H100"): bursts are shares of demand alike within a class on one kind of
    hardware."""
    return {
        str(series_id): f"{workload_class}/{accelerator_type}"
        for series_id, workload_class, accelerator_type in profiles.select(
            "id", "workload_class", "accelerator_type"
        ).iter_rows()
    }


def series_spreads(weekly: pl.DataFrame) -> pl.DataFrame:
    """[id, spread_source, p90_spread]: each series' widest weekly P90 distance above its P50
    and where that spread came from (`scenarios.SPREAD_SOURCES`), widest first."""
    return (
        weekly.group_by("id")
        .agg(
            pl.col("spread_source").first(),
            (pl.col("p90") - pl.col("p50")).max().alias("p90_spread"),
        )
        .sort("p90_spread", "id", descending=[True, False])
    )


def spread_note(spreads: pl.DataFrame) -> str:
    """One line on which series' P90 spreads are not their own (`series_spreads`)."""
    borrowed = spreads.filter(pl.col("spread_source") != "own").sort("id")
    if not borrowed.height:
        return "every series' P90 spread is its own backtest's"
    named = ", ".join(
        f"{series_id} ({source}, {spread:,.1f})"
        for series_id, source, spread in borrowed.iter_rows()
    )
    note = (
        f"{borrowed.height} of {spreads.height} series joined too recently for a P90 spread of "
        "their own (or have not started); pooled_*: the other series' relative backtest errors "
        "(their class and type's, or the fleet's) at the series' level, none: no series had "
        "errors to pool, not_started: zero on every day so far, no spread "
        f"(weekly spread above the P50 in accelerators): {named}"
    )
    short = (
        borrowed.filter(pl.col("spread_source").str.starts_with(SHORT)).get_column("id").to_list()
    )
    if not short:
        return note
    return (
        f"{note}; {SHORT}*: fewer than {MIN_FIT_DAYS} days since the first nonzero value, too "
        f"few for a trend, so planned flat at the mean of its last {FLAT_LEVEL_DAYS} days: "
        f"{', '.join(short)} (spread pooled as pooled_* from that flat rule's errors on the "
        "others)"
    )


def _cluster_bands(node_weekly: pl.DataFrame, by_cluster: pl.DataFrame) -> pl.DataFrame:
    """[cluster, time, p50, p90]: each cluster's own reconciled weekly bands (a cluster of one
    series has no node of its own: its series' bands)."""
    frames = []
    for (cluster,), members in by_cluster.group_by("cluster", maintain_order=True):
        ids = members.get_column("id").to_list()
        node = str(cluster) if len(ids) > 1 else str(ids[0])
        frames.append(
            node_weekly.filter(pl.col("id") == node).select(
                pl.lit(str(cluster)).alias("cluster"), "time", "p50", "p90"
            )
        )
    return pl.concat(frames).sort("cluster", "time")


def reconciled_required(
    scenarios: ReconciledScenarios, profiles: pl.DataFrame, *, config: CapacityConfig
) -> pl.DataFrame:
    """[cluster, accelerator_type, time, p50, p90, spread_source]: accelerators to own per day,
    each cluster and type banded as one sum of its series' reconciled demand / their class's
    target utilization (`ReconciledScenarios.combination`, which says where its spread came
    from)."""
    frames = []
    for (cluster, accelerator_type), members in profiles.group_by(
        "cluster", "accelerator_type", maintain_order=True
    ):
        weights = {
            str(series_id): 1.0 / config.utilization(workload_class)
            for series_id, workload_class in members.select("id", "workload_class").iter_rows()
        }
        path = scenarios.combination(weights)
        frames.append(
            pl.DataFrame(
                {
                    "cluster": str(cluster),
                    "accelerator_type": str(accelerator_type),
                    "time": path.days,
                    **{s: path.bands[s] for s in SCENARIOS},
                    "spread_source": path.spread_source,
                }
            )
        )
    return (
        pl.concat(frames)
        .with_columns(pl.col("time").cast(pl.Date))
        .sort("cluster", "accelerator_type", "time")
    )
