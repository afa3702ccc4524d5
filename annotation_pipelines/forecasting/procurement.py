"""The procurement plan: accelerators to order, by cluster, type and date, per demand scenario.

From the months-ahead demand bands (`scenarios`), each series' workload class and accelerator
type (from telemetry), the current fleet and the planning config (`capacity_config`):

    required_t = demand_t / target_utilization(class)      accelerators to own on day t
    runs_short_on = first day required_t > fleet            (per cluster x type x scenario)
    order_by = runs_short_on - lead time                    late when before today: then the
                                                            hardware arrives today + lead time
    to_order = ceil(max_t required_t - fleet)               over the days from its arrival on
                                                            (a peak that is over before an order
                                                            could land buys nothing)

`required_accelerators` adds up the series' bands of one cluster and type, which for P90 is
conservative (the series do not all peak together); `planning.reconciled_required` (the
default) bands each cluster and type as one sum of reconciled series instead. The cost of a
scenario is what owning its accelerators costs over the horizon at the configured price per
accelerator-hour: whole accelerators, the fleet every day and what it orders from the day that
arrives, in USD to the cent.
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from annotation_pipelines.forecasting.capacity_config import CapacityConfig
from annotation_pipelines.forecasting.scalars import as_date, as_float
from annotation_pipelines.forecasting.scenarios import SCENARIOS, combined_source

HOURS_PER_MONTH = 730.0
# Relative tolerance between accelerators to own and the fleet: far above float noise, far
# below a thousandth of an accelerator on any fleet.
SLACK = 1e-9

PLAN_COLUMNS = (
    "as_of",
    "cluster",
    "accelerator_type",
    "scenario",
    "fleet",
    "peak_required",
    "runs_short_on",
    "to_order",
    "order_by",
    "arrives",
    "status",
    "scenario_cost_usd",
    "order_cost_per_month_usd",
    "spread_source",
)


def series_profiles(usage: pl.DataFrame) -> pl.DataFrame:
    """[id, cluster, workload_class, accelerator_type]: each series' latest reported profile."""
    return (
        usage.sort("time")
        .group_by("series_id")
        .agg(
            pl.col("cluster").last(),
            pl.col("workload_class").drop_nulls().last().fill_null("unknown"),
            pl.col("accelerator_type").drop_nulls().last().fill_null("unknown"),
        )
        .with_columns(
            pl.col("workload_class").fill_null("unknown"),
            pl.col("accelerator_type").fill_null("unknown"),
        )
        .rename({"series_id": "id"})
        .sort("id")
    )


def current_fleet(usage: pl.DataFrame) -> pl.DataFrame:
    """[cluster, accelerator_type, fleet, fleet_unknown]: the accelerators each series may use
    at its latest sample, summed by cluster and type. A series that never reports a total has
    an unknown supply, so its cluster and type's fleet is unknown (null) too, not the others'
    sum: `fleet_unknown` names those series (null when every series reports one)."""
    latest = (
        usage.sort("time")
        .group_by("series_id")
        .agg(
            pl.col("cluster").last(),
            pl.col("accelerator_type").drop_nulls().last(),
            pl.col("total").drop_nulls().last(),
        )
    )
    return (
        latest.with_columns(pl.col("accelerator_type").fill_null("unknown"))
        .group_by("cluster", "accelerator_type")
        .agg(
            pl.when(pl.col("total").is_null().any())
            .then(None)
            .otherwise(pl.col("total").sum())
            .cast(pl.Float64)
            .alias("fleet"),
            pl.col("series_id")
            .filter(pl.col("total").is_null())
            .sort()
            .str.join(", ")
            .alias("fleet_unknown"),
        )
        .with_columns(
            pl.when(pl.col("fleet_unknown") != "")
            .then(pl.col("fleet_unknown"))
            .alias("fleet_unknown")
        )
        .sort("cluster", "accelerator_type")
    )


def unknown_fleet_notes(fleet: pl.DataFrame) -> list[str]:
    """A note per cluster and type whose fleet is unknown (`current_fleet`), naming the series."""
    if "fleet_unknown" not in fleet.columns:
        return []
    return [
        f"fleet of {cluster} {accelerator_type} unknown: series {series} report(s) no total "
        "(supply unknown), so its fleet, order and cost are blank rather than planned on the "
        "other series' accelerators alone"
        for cluster, accelerator_type, series in fleet.filter(pl.col("fleet_unknown").is_not_null())
        .select("cluster", "accelerator_type", "fleet_unknown")
        .iter_rows()
    ]


def target_utilization(classes: pl.Series, *, config: CapacityConfig) -> pl.Series:
    """Each workload class's target utilization; a null class is planned at "unknown"'s."""
    known = classes.fill_null("unknown")
    return known.replace_strict(
        {c: config.utilization(c) for c in known.unique().to_list()}, return_dtype=pl.Float64
    )


def required_accelerators(
    bands: pl.DataFrame, profiles: pl.DataFrame, *, config: CapacityConfig
) -> pl.DataFrame:
    """[cluster, accelerator_type, time, p50, p90, spread_source]: accelerators to own per day
    so each class stays at its target utilization; the P90's spread sources those of its
    series' bands (`scenarios.combined_source`), when `bands` says them."""
    joined = bands.join(profiles, on="id", how="left").with_columns(
        pl.col("cluster").fill_null(pl.col("id")),
        pl.col("workload_class").fill_null("unknown"),
        pl.col("accelerator_type").fill_null("unknown"),
    )
    joined = joined.with_columns(
        target_utilization(joined.get_column("workload_class"), config=config).alias("target")
    )
    required = (
        joined.group_by("cluster", "accelerator_type", "time")
        .agg([(pl.col(s) / pl.col("target")).sum().alias(s) for s in SCENARIOS])
        .sort("cluster", "accelerator_type", "time")
    )
    if "spread_source" not in joined.columns:
        return required
    sources = (
        joined.group_by("cluster", "accelerator_type")
        .agg(pl.col("spread_source").unique())
        .with_columns(pl.col("spread_source").map_elements(combined_source, return_dtype=pl.String))
    )
    return required.join(sources, on=["cluster", "accelerator_type"], how="left")


def procurement_plan(
    required: pl.DataFrame, fleet: pl.DataFrame, *, config: CapacityConfig, as_of: dt.date
) -> pl.DataFrame:
    """One row per (cluster, accelerator type, scenario); columns PLAN_COLUMNS, the first the
    day it was planned on (`as_of`). `spread_source`
    is where the requirement's P90 spread came from (`required`'s, null when it does not say;
    "own" unless a series in it was too young for errors of its own)."""
    lead = dt.timedelta(weeks=config.lead_time_weeks)
    rows = []
    if "fleet_unknown" not in fleet.columns:
        fleet = fleet.with_columns(pl.lit(None, dtype=pl.String).alias("fleet_unknown"))
    # A type missing from the fleet owns none; one whose series' supply is unknown is unknown.
    joined = required.join(fleet, on=["cluster", "accelerator_type"], how="left").with_columns(
        pl.when(pl.col("fleet_unknown").is_null()).then(pl.col("fleet").fill_null(0.0))
    )
    for (cluster, accelerator_type), frame in joined.group_by(
        "cluster", "accelerator_type", maintain_order=True
    ):
        frame = frame.sort("time")
        source = (
            frame.get_column("spread_source").first() if "spread_source" in frame.columns else None
        )
        unknown = frame.get_column("fleet_unknown").first()
        if unknown is not None:
            rows += [
                _unknown_fleet_row(frame, scenario, as_of=as_of, series=str(unknown), source=source)
                for scenario in SCENARIOS
            ]
            continue
        fleet_size = as_float(frame.get_column("fleet").first(), what=f"fleet of {cluster}")
        price = config.accelerator_price(accelerator_type)
        days = frame.get_column("time").cast(pl.Date)
        # Demand / target carries division noise (4.2 / 0.6 = 7.000000000000001): a need equal
        # to the fleet up to it is not short, or the plan dates a shortfall it orders nothing for.
        enough = fleet_size + SLACK * max(1.0, abs(fleet_size))
        for scenario in SCENARIOS:
            need = frame.get_column(scenario)
            short = frame.filter(pl.col(scenario) > enough)
            runs_short_on = (
                as_date(short.get_column("time").min(), what=f"{scenario} demand day")
                if short.height
                else None
            )
            peak = as_float(need.max(), what=f"peak {scenario} demand")
            to_order = 0
            if runs_short_on is None:
                order_by, arrives, status = None, None, "enough"
            else:
                order_by = runs_short_on - lead
                late = order_by < as_of
                arrives = (as_of + lead) if late else runs_short_on
                after = need.filter(days >= arrives)
                if after.len():
                    last = as_float(after.max(), what=f"peak {scenario} demand after arrival")
                    to_order = max(0, math.ceil(last - enough))
                if to_order == 0:
                    # Only a late order can come to nothing: the shortfall ends before it lands.
                    until = as_date(
                        short.get_column("time").max(), what=f"last short {scenario} day"
                    )
                    status = (
                        f"short until {until.isoformat()}, before an order placed now arrives "
                        f"({arrives.isoformat()}): none to order"
                    )
                    order_by, arrives = None, None
                elif late:
                    status = f"late: order now, arrives {arrives.isoformat()}"
                else:
                    status = f"order by {order_by.isoformat()}"
            # Accelerator-hours owned: the fleet every day, the order from its arrival on.
            landed = 0 if arrives is None else int((days >= arrives).sum())
            owned_hours = (fleet_size * days.len() + to_order * landed) * 24
            rows.append(
                {
                    "as_of": as_of,
                    "cluster": cluster,
                    "accelerator_type": accelerator_type,
                    "scenario": scenario,
                    "fleet": fleet_size,
                    "peak_required": peak,
                    "runs_short_on": runs_short_on,
                    "to_order": to_order,
                    "order_by": order_by,
                    "arrives": arrives,
                    "status": status,
                    "scenario_cost_usd": None if price is None else _cents(owned_hours * price),
                    "order_cost_per_month_usd": None
                    if price is None
                    else _cents(to_order * price * HOURS_PER_MONTH),
                    "spread_source": source,
                }
            )
    schema = {
        "as_of": pl.Date, "cluster": pl.String, "accelerator_type": pl.String,
        "scenario": pl.String,
        "fleet": pl.Float64, "peak_required": pl.Float64, "runs_short_on": pl.Date,
        "to_order": pl.Int64, "order_by": pl.Date, "arrives": pl.Date, "status": pl.String,
        "scenario_cost_usd": pl.Float64, "order_cost_per_month_usd": pl.Float64,
        "spread_source": pl.String,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema).sort("cluster", "accelerator_type", "scenario")


def _unknown_fleet_row(
    frame: pl.DataFrame, scenario: str, *, as_of: dt.date, series: str, source: object
) -> dict[str, object]:
    """A plan row of a cluster and type whose fleet is unknown: the need, and nothing that
    would compare it with a fleet."""
    return {
        "as_of": as_of,
        "cluster": frame.get_column("cluster").first(),
        "accelerator_type": frame.get_column("accelerator_type").first(),
        "scenario": scenario,
        "fleet": None,
        "peak_required": as_float(frame.get_column(scenario).max(), what=f"peak {scenario}"),
        "runs_short_on": None,
        "to_order": None,
        "order_by": None,
        "arrives": None,
        "status": f"fleet unknown: series {series} report(s) no total, so no order is computed",
        "scenario_cost_usd": None,
        "order_cost_per_month_usd": None,
        "spread_source": source,
    }


def _cents(amount: float) -> float:
    return round(amount, 2)


def unpriced_types(plan: pl.DataFrame, config: CapacityConfig) -> list[str]:
    """The accelerator types of `plan` with no price in `config` (their costs are null).

    Asked of the config, not read off blank costs: a type whose fleet is unknown has blank
    costs too, and its price may well be there."""
    types = plan.get_column("accelerator_type").unique().sort().to_list()
    return [t for t in types if config.accelerator_price(t) is None]


def runs_short(plan: pl.DataFrame) -> pl.DataFrame:
    """[cluster, scenario, runs_short_on, status]: the first day any accelerator type of the
    cluster with a known fleet runs short under each scenario, and what that date means.

    A type whose fleet is unknown has no date: a null date then does not mean "not within the
    horizon", and a date is only the latest the cluster runs short, so `status` says which."""
    frame = (
        plan.group_by("cluster", "scenario")
        .agg(
            pl.col("runs_short_on").min(),
            pl.col("accelerator_type")
            .filter(pl.col("fleet").is_null())
            .unique()
            .sort()
            .str.join(", ")
            .alias("unknown"),
        )
        .sort("cluster", "scenario")
    )
    unknown = pl.lit("fleet of ") + pl.col("unknown") + pl.lit(" unknown")
    day = pl.col("runs_short_on").dt.to_string("%Y-%m-%d")
    return frame.select(
        "cluster",
        "scenario",
        "runs_short_on",
        pl.when(pl.col("unknown") == "")
        .then(
            pl.when(pl.col("runs_short_on").is_null())
            .then(pl.lit("not within the horizon"))
            .otherwise(pl.lit("short from ") + day)
        )
        .when(pl.col("runs_short_on").is_null())
        .then(pl.lit("unknown: ") + unknown)
        .otherwise(day + pl.lit(" at the latest: ") + unknown)
        .alias("status"),
    )
