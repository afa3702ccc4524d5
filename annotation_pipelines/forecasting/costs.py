"""Annotation spend in money: cost per curated label and per point of agreement, by project.

Annotator hours are the judgments' own durations (`duration_s`), priced at the configured
hourly rate of the project's tier (`capacity_config`). A judgment with no duration is not
free: a project's hours are its timed judgments' mean duration times all its judgments, and
`duration_share` says what share of them had a duration (hours and cost are null when none
did). A curated label is a task whose newest aggregated label is not a tie, or a task with an
aggregated item of any other kind (its boxes, spans, ranking...), each counted once over the
period however many days it was aggregated on. A point of agreement is one percentage point of
the project's mean percent agreement over the period, so
cost_per_agreement_point = cost / (100 x percent_agreement): what one point of consensus costs
at today's spend (a comparison across projects, not a marginal price).
"""

from __future__ import annotations

import math

import polars as pl

from annotation_pipelines.forecasting.capacity_config import CapacityConfig

COST_COLUMNS = (
    "project",
    "tier",
    "annotator_hours",
    "duration_share",
    "cost_usd",
    "curated_labels",
    "cost_per_curated_label",
    "percent_agreement",
    "cost_per_agreement_point",
)


def annotation_costs(
    judgments: pl.DataFrame,
    aggregated: pl.DataFrame,
    quality: pl.DataFrame | None,
    *,
    config: CapacityConfig,
    kind_aggregated: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per project; columns COST_COLUMNS (null where a price or count is missing).
    `kind_aggregated`: the other kinds' aggregated items (`kind_aggregated_labels`)."""
    timed = pl.col("duration_s").is_not_null() & pl.col("duration_s").is_finite()
    hours = (
        judgments.group_by("project")
        .agg(
            (pl.col("duration_s").filter(timed).mean() * pl.len() / 3600).alias("annotator_hours"),
            timed.mean().alias("duration_share"),
        )
        .with_columns(pl.col("annotator_hours").cast(pl.Float64))
    )
    curated = [
        _newest_per_task(aggregated).filter(~pl.col("is_tie").fill_null(False)).select("project")
    ]
    if kind_aggregated is not None:
        curated.append(_newest_per_task(kind_aggregated).select("project"))
    labels = (
        pl.concat(curated).group_by("project").agg(pl.len().cast(pl.Int64).alias("curated_labels"))
    )
    agreement = (
        quality.group_by("project").agg(pl.col("percent_agreement").mean())
        if quality is not None and quality.height
        else pl.DataFrame(schema={"project": pl.String, "percent_agreement": pl.Float64})
    )
    projects = hours.get_column("project").to_list()
    prices = pl.DataFrame(
        {
            "project": projects,
            "tier": [config.project_tier.get(p, "standard") for p in projects],
            "price": [config.annotator_price(p) for p in projects],
        },
        schema={"project": pl.String, "tier": pl.String, "price": pl.Float64},
    )
    return (
        hours.join(prices, on="project", how="left")
        .join(labels, on="project", how="left")
        .join(agreement, on="project", how="left")
        .with_columns((pl.col("annotator_hours") * pl.col("price")).alias("cost_usd"))
        .with_columns(
            (pl.col("cost_usd") / pl.col("curated_labels")).alias("cost_per_curated_label"),
            # No agreement has no cost per point (it read inf); the plan's notes name them.
            pl.when(pl.col("percent_agreement") > 0)
            .then(pl.col("cost_usd") / (100 * pl.col("percent_agreement")))
            .alias("cost_per_agreement_point"),
        )
        .select(COST_COLUMNS)
        .sort("project")
    )


def _newest_per_task(aggregated: pl.DataFrame) -> pl.DataFrame:
    """A task's newest aggregate only: the daily layers aggregate each day's judgments, so a
    task judged across UTC midnight has a row on each day but is one curated label, as in a
    curated snapshot. Rows come in day order (`day` sorts them when present)."""
    if "task_id" not in aggregated.columns:
        return aggregated
    ordered = (
        aggregated.sort("day", maintain_order=True) if "day" in aggregated.columns else aggregated
    )
    return ordered.unique(["project", "task_id"], keep="last", maintain_order=True)


def unpriced_tiers(costs: pl.DataFrame, config: CapacityConfig) -> dict[str, list[str]]:
    """{tier: its projects} of `costs` (`annotation_costs` rows) whose tier has no price in
    [annotator_hour_price]: their costs are blank, and the plan names them."""
    unpriced = costs.filter(~pl.col("tier").is_in(list(config.annotator_hour_price)))
    return {
        str(tier): sorted(projects)
        for tier, projects in unpriced.group_by("tier")
        .agg(pl.col("project"))
        .sort("tier")
        .iter_rows()
    }


def describe_unpriced_tiers(unpriced: dict[str, list[str]], *, source: str) -> str:
    """The plan's one line on annotator prices: each unpriced tier with its projects."""
    if not unpriced:
        return "every project's tier priced"
    named = "; ".join(f"{tier} ({', '.join(projects)})" for tier, projects in unpriced.items())
    return (
        f"no price for tier(s) {named} in [annotator_hour_price] of {source}: "
        "their annotation costs are blank"
    )


def describe_partly_timed(costs: pl.DataFrame) -> str | None:
    """The plan's note on projects (`annotation_costs` rows) whose judgments are not all timed,
    each with its share floored to a tenth of a percent: rounded, 99.6 % read "100%" in a list
    of those below 100 %. None when every judgment has a duration."""
    partly = costs.filter(pl.col("duration_share") < 1.0)
    if not partly.height:
        return None
    named = ", ".join(
        f"{project} ({math.floor(round(share * 1000, 6)) / 10:g}%)"
        for project, share in partly.select("project", "duration_share").iter_rows()
    )
    return (
        "Annotation cost: a project's hours are its timed judgments' mean duration times all "
        f"its judgments; share of judgments with a duration below 100% for {named} (none "
        "timed: hours and cost blank)."
    )
