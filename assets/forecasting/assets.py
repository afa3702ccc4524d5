"""Capacity: the weekly accelerator demand forecast and the monthly procurement plan."""

import datetime as dt

import polars as pl
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    FreshnessPolicy,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field, field_validator

from annotation_pipelines import schema
from annotation_pipelines.forecasting import relative_mase, to_series
from annotation_pipelines.forecasting.capacity_config import load_capacity_config
from annotation_pipelines.forecasting.costs import (
    annotation_costs,
    describe_partly_timed,
    describe_unpriced_tiers,
    unpriced_tiers,
)
from annotation_pipelines.forecasting.ensemble import (
    DEFAULT_RULE,
    forecast_calibrated,
    set_aside_short,
)
from annotation_pipelines.forecasting.hierarchy import DEFAULT_METHOD as DEFAULT_RECONCILIATION
from annotation_pipelines.forecasting.hierarchy import METHODS as RECONCILIATIONS
from annotation_pipelines.forecasting.hierarchy import (
    aggregate_history,
    aggregate_supply,
    build_hierarchy,
)
from annotation_pipelines.forecasting.planning import (
    HIERARCHY_LEVELS,
    MIN_HISTORY_DAYS,
    capacity_plan,
    series_spreads,
    spread_note,
)
from annotation_pipelines.forecasting.plot import plot_forecast
from annotation_pipelines.forecasting.procurement import series_profiles, unpriced_types
from annotation_pipelines.forecasting.report import (
    cluster_figure,
    png,
    render_capacity_report,
    type_figure,
    utilization_figure,
)
from annotation_pipelines.forecasting.supply import procurement, supply_crossing
from annotation_pipelines.lake import capacity_report_key
from annotation_pipelines.settings import load_settings
from assets.common.metadata import markdown_table, png_markdown
from assets.common.schedules import SCHEDULE_TIMEZONE
from resources.lake import Lake


class ComputeForecastConfig(Config):
    history_days: int = Field(default=28, ge=14, description="Days of telemetry to learn from.")
    freq: str = "1h"
    horizon: int = Field(default=168, ge=1, description="Steps ahead (168 hours = one week).")
    season_length: int = Field(default=24, ge=1, description="Steps per season (24 hours).")
    backtest_windows: int | None = Field(
        default=None,
        ge=1,
        description="Backtest origins a season apart (default: as many as fit).",
    )
    rule: str = Field(default=DEFAULT_RULE, description="mean, median, top3 or one model.")
    calibrate: bool = Field(default=True, description="Conformal bands from backtest residuals.")
    # A negative lead time dated the rental before the forecast began; a NaN queue blanked every
    # series' headroom as if the horizon were too short.
    lead_time_days: int = Field(
        default=2,
        ge=0,
        description=(
            "Days from a short-term request (a rental, a move between clusters) to usable "
            "accelerators; purchases, months ahead, are the monthly procurement_plan's."
        ),
    )
    queueing_target: float = Field(
        default=0.0, ge=0.0, allow_inf_nan=False, description="Accelerators allowed to queue."
    )
    reconciliation: str | None = Field(
        default=DEFAULT_RECONCILIATION,
        description=(
            "Where series nest (cluster -> accelerator type -> workload class), forecast the "
            "aggregates too and reconcile (bottom_up, ols, wls_struct, mint_shrink); null: "
            "the series alone."
        ),
    )

    @field_validator("reconciliation")
    @classmethod
    def _known_reconciliation(cls, value: str | None) -> str | None:
        # Otherwise a misspelt method failed only after the whole backtest had run.
        if value is not None and value not in RECONCILIATIONS:
            raise ValueError(
                f"unknown reconciliation {value!r}; choose from {', '.join(RECONCILIATIONS)} "
                "or null"
            )
        return value


@asset(
    group_name="forecasting",
    owners=["team:compute-capacity"],
    kinds={"statsforecast", "lightgbm", "polars"},
    deps=["compute_usage"],
    freshness_policy=FreshnessPolicy.time_window(fail_window=dt.timedelta(days=8)),
    description=(
        "Hourly accelerator demand (running + pending) forecast one week ahead per series, "
        "with conformal 80/95% intervals; statsforecast + LightGBM combined by the rule "
        "validated leave-one-cluster-out; where series nest, clusters and their accelerator "
        "types and workload classes too, reconciled so they add up (MinTrace)."
    ),
)
def compute_capacity_forecast(
    context: AssetExecutionContext, config: ComputeForecastConfig, lake: Lake
) -> Output[pl.DataFrame]:
    days = lake.days("compute_usage")[-config.history_days :]
    if not days:
        raise FileNotFoundError("compute_usage has no partitions in the lake; materialize it first")
    usage = lake.read_days("compute_usage", days)
    context.log.info(f"forecasting from {usage.height:,} telemetry rows over {len(days)} days")
    history = to_series(usage, freq=config.freq)
    supply = to_series(usage, freq=config.freq, value="total")
    hierarchy = None
    if config.reconciliation is not None and config.calibrate:
        hierarchy = build_hierarchy(series_profiles(usage), levels=HIERARCHY_LEVELS)
        if hierarchy.aggregates:
            history = aggregate_history(history, hierarchy)
            supply = aggregate_supply(supply, hierarchy)
        else:
            hierarchy = None
    set_aside: dict[str, str] = {}
    if hierarchy is None:
        # On its own calendar a series younger than the backtest stopped the whole fleet's
        # forecast; the reconciled path lays every series on the fleet's calendar instead.
        history, set_aside = set_aside_short(
            history,
            horizon=config.horizon,
            season_length=config.season_length,
            backtest_windows=config.backtest_windows,
            calibrate=config.calibrate,
        )
        for series_id, reason in set_aside.items():
            context.log.warning(f"series {series_id!r} set aside: {reason}")
    result = forecast_calibrated(
        history,
        horizon=config.horizon,
        season_length=config.season_length,
        freq=config.freq,
        rule=config.rule,
        backtest_windows=config.backtest_windows,
        calibrate=config.calibrate,
        hierarchy=hierarchy,
        reconciliation=config.reconciliation or DEFAULT_RECONCILIATION,
    )
    supply = supply.rename({"value": "supply"})
    # Supply is flat over the horizon unless procurement changes it: carry the last value.
    future_supply = result.forecast.select("id", "time").join(
        supply.sort("time").group_by("id").agg(pl.col("supply").last()), on="id"
    )
    crossing = supply_crossing(result.forecast, future_supply)
    plan = procurement(
        result.forecast,
        future_supply,
        lead_time=dt.timedelta(days=config.lead_time_days),
        queueing_target=config.queueing_target,
    )
    frame = schema.conform(result.forecast, schema.CAPACITY_FORECAST, name="capacity_forecast")
    return Output(
        frame.select(list(schema.CAPACITY_FORECAST)),
        metadata={
            "relative_mase": MetadataValue.float(round(relative_mase(result.scores), 4)),
            "rule": MetadataValue.text(result.rule),
            "reconciliation": MetadataValue.text(
                f"{config.reconciliation} over {', '.join(hierarchy.aggregates)}"
                if hierarchy is not None
                else "none"
            ),
            "held_out_scores": markdown_table(result.scores),
            "supply_crossing": markdown_table(crossing),
            # Named apart from the monthly plan: one week ahead against each series' quota,
            # it answers what to rent or move now, not what to buy, and the two disagree.
            "short_term_headroom": markdown_table(plan),
            "short_term_note": MetadataValue.text(
                f"accelerators to add within {config.lead_time_days} days (rent or move) so "
                "next week's 95% bound fits each series' quota; what to buy, months ahead, "
                "is the monthly procurement_plan's"
            ),
            "plot": png_markdown(
                plot_forecast(result.history, result.forecast, supply=future_supply),
                alt="history, forecast and intervals",
            ),
            "history_days": MetadataValue.int(len(days)),
            "set_aside": MetadataValue.json(set_aside),
        },
    )


class ProcurementConfig(Config):
    history_days: int = Field(
        default=365, ge=MIN_HISTORY_DAYS, description="Days of telemetry to learn from."
    )
    cost_days: int = Field(default=30, ge=1, description="Days of annotation spend to price.")
    reconciliation: str | None = Field(
        default=DEFAULT_RECONCILIATION,
        description=(
            "How nested series are reconciled (bottom_up, ols, wls_struct, mint_shrink); "
            "null: each series alone, a cluster's P90 the sum of its series' P90s."
        ),
    )


def _recent(lake: Lake, table: str, *, days: int) -> pl.DataFrame | None:
    found = lake.days(table)[-days:]
    return lake.read_days(table, found) if found else None


@asset(
    group_name="procurement",
    owners=["team:compute-capacity"],
    kinds={"polars", "html"},
    deps=["compute_usage"],
    # Monthly: on the 1st (the automation sensor evaluates it); the weekly forecast job is
    # the "forecasting" group only.
    # In the schedules' zone: in UTC, a zone west of it would plan on the last evening of the
    # month, before that day's compute_usage partition closes.
    automation_condition=AutomationCondition.cron_tick_passed(
        "0 7 1 * *", cron_timezone=SCHEDULE_TIMEZONE
    )
    & ~AutomationCondition.in_progress(),
    description=(
        "Months ahead: daily/weekly demand 26 weeks ahead with P50/P90 bands and planned "
        "launches, accelerators to order by cluster, type and date (lead time, target "
        "utilization per class, current fleet), the cost of each scenario and annotation cost "
        "per curated label; with a self-contained HTML capacity report."
    ),
)
def procurement_plan(
    context: AssetExecutionContext, config: ProcurementConfig, lake: Lake
) -> Output[pl.DataFrame]:
    days = lake.days("compute_usage")[-config.history_days :]
    if not days:
        raise FileNotFoundError("compute_usage has no partitions in the lake; materialize it first")
    settings = load_settings()
    planning = load_capacity_config(settings.capacity_config)
    usage = lake.read_days("compute_usage", days)
    as_of = dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)
    plan = capacity_plan(usage, config=planning, as_of=as_of, reconciliation=config.reconciliation)
    # At the least history the plan accepts, the backtest can leave no spread between the bands:
    # then the p90 rows are the p50 rows again, which the plan must say rather than show.
    widest = plan.cluster_weekly.select((pl.col("p90") - pl.col("p50")).abs().max()).item()
    if widest is None or float(widest) < 1e-9:
        spread = (
            f"none: the backtest over {len(days)} days of telemetry measured no spread, so every "
            "p90 row repeats its p50 row; a longer history gives a P90"
        )
        context.log.warning(f"procurement plan: P90 spread {spread}")
    else:
        spread = f"up to {float(widest):,.1f} accelerators above the P50 (weekly bands)"
    # Which series' spreads are not their own backtest's: a young series' is pooled from the
    # others', and the plan must say so rather than pass it off as measured.
    per_series = series_spreads(plan.weekly)
    pooled = spread_note(per_series)
    spread = f"{spread}; {pooled}"
    for note in plan.notes:
        context.log.warning(f"procurement plan: {note}")
    for note in plan.target_notes:
        context.log.warning(f"procurement plan: {note}")
    unpriced = unpriced_types(plan.plan, planning)
    prices = (
        f"no price for {', '.join(unpriced)} in [accelerator_hour_price] of "
        f"{settings.capacity_config.name}: their scenario costs are blank"
        if unpriced
        else "every accelerator type priced"
    )
    if unpriced:
        context.log.warning(f"procurement plan: {prices}")
    judgments = _recent(lake, "judgments", days=config.cost_days)
    aggregated = _recent(lake, "aggregated_labels", days=config.cost_days)
    quality = _recent(lake, "quality_report", days=config.cost_days)
    kind_aggregated = _recent(lake, "kind_aggregated_labels", days=config.cost_days)
    costs = (
        annotation_costs(
            judgments, aggregated, quality, config=planning, kind_aggregated=kind_aggregated
        )
        if judgments is not None and aggregated is not None and judgments.height
        else None
    )
    cost_notes = []
    annotator_prices = None
    if costs is not None:
        partly = describe_partly_timed(costs)
        if partly is not None:
            cost_notes.append(partly)
        disagreeing = costs.filter(pl.col("percent_agreement") <= 0)["project"].to_list()
        if disagreeing:
            cost_notes.append(
                "Annotation cost: no cost per agreement point for "
                f"{', '.join(disagreeing)}: their percent agreement is 0."
            )
        # As with an unpriced accelerator type: blank costs, named in the report, the
        # metadata and the log (a project not in [project_tier] is `standard`, which may
        # have no price).
        unpriced_tier = unpriced_tiers(costs, planning)
        annotator_prices = describe_unpriced_tiers(
            unpriced_tier, source=settings.capacity_config.name
        )
        if unpriced_tier:
            context.log.warning(f"annotation cost: {annotator_prices}")
            cost_notes.append(f"Annotator prices (USD per annotator-hour): {annotator_prices}.")
    clusters = plan.cluster_weekly.get_column("cluster").unique().sort().to_list()
    figures = [
        (
            cluster,
            cluster_figure(
                plan.history_weekly.filter(pl.col("cluster") == cluster),
                plan.cluster_weekly.filter(pl.col("cluster") == cluster),
                plan.supply.filter(pl.col("cluster") == cluster),
                cluster=cluster,
                runs_short=dict(
                    plan.runs_short.filter(pl.col("cluster") == cluster)
                    .select("scenario", "runs_short_on")
                    .iter_rows()
                ),
            ),
        )
        for cluster in clusters
    ]
    # Beside each cluster's overview, its types on the plan's own daily figures.
    figures += [
        (
            f"{cluster} by accelerator type",
            type_figure(
                plan.required.filter(pl.col("cluster") == cluster),
                plan.plan.filter(pl.col("cluster") == cluster),
                cluster=cluster,
            ),
        )
        for cluster in clusters
    ]
    figures.append(("allocation vs utilization", utilization_figure(plan.utilization)))
    sections = [
        ("Procurement plan", plan.plan),
        ("Date each cluster runs short", plan.runs_short),
        ("Allocation vs utilization (idle capacity allocation hides)", plan.utilization),
        ("Weekly demand bands per cluster", plan.cluster_weekly),
        ("P90 spread per series (widest week) and where it came from", per_series),
    ]
    if plan.hierarchy_weekly.height:
        first_weeks = plan.hierarchy_weekly.filter(
            pl.col("time") == plan.hierarchy_weekly.get_column("time").min()
        )
        sections.append(("Reconciled bands of every node, first forecast week", first_weeks))
    if costs is not None:
        sections.append(("Annotation cost", costs))
    document = render_capacity_report(
        title="Accelerator capacity plan",
        as_of=as_of.isoformat(),
        charts=figures,
        sections=sections,
        notes=[
            f"Lead time {planning.lead_time_weeks} weeks; horizon {planning.horizon_weeks} "
            "weeks; target utilization "
            + ", ".join(f"{c} {u:.2f}" for c, u in planning.target_utilization.items())
            + "; "
            f"{len(planning.launches)} planned launch(es) from {settings.capacity_config.name}.",
            (
                f"Forecasts reconciled over cluster -> accelerator type -> workload class -> "
                f"series ({plan.reconciliation}): a cluster's P50/P90 are its own bands, not "
                "the sum of its series' bands."
                if plan.reconciliation
                else "P90 of a cluster is the sum of its series' P90s (conservative)."
            ),
            f"P90 spread: {spread}.",
            f"Prices (USD per accelerator-hour): {prices}.",
            *(f"Launch {note}." for note in plan.launch_notes),
            *(f"Target utilization: {note}." for note in plan.target_notes),
            *(f"Telemetry: {note}." for note in plan.notes),
            *cost_notes,
        ],
    )
    key = capacity_report_key(as_of.isoformat())
    lake.put(key, document.encode("utf-8"))
    metadata = {
        "as_of": MetadataValue.text(as_of.isoformat()),
        "plan": markdown_table(plan.plan, rows=60),
        "reconciliation": MetadataValue.text(plan.reconciliation or "none (series summed)"),
        "p90_spread": MetadataValue.text(spread),
        "p90_spread_by_series": markdown_table(per_series, rows=60),
        "prices": MetadataValue.text(prices),
        "telemetry_notes": MetadataValue.json(list(plan.notes)),
        "target_utilization_notes": MetadataValue.json(list(plan.target_notes)),
        "runs_short": markdown_table(plan.runs_short),
        "allocation_vs_utilization": markdown_table(plan.utilization),
        "html_report": MetadataValue.path(lake.uri(key)),
        **{
            f"plot_{name.replace(' ', '_')}": png_markdown(png(figure), alt=name)
            for name, figure in figures
        },
    }
    if costs is not None:
        metadata["annotation_cost"] = markdown_table(costs)
    if annotator_prices is not None:
        metadata["annotator_prices"] = MetadataValue.text(annotator_prices)
    if cost_notes:
        metadata["annotation_cost_note"] = MetadataValue.text(" ".join(cost_notes))
    context.log.info(f"capacity report at {lake.uri(key)}")
    return Output(plan.plan, metadata=metadata)
