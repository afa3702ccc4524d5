"""Aggregated labels: one label per task from its judgments, by the method set per project."""

import polars as pl
from dagster import AssetExecutionContext, Config, Output, multi_asset
from pydantic import Field

from annotation_pipelines import schema
from annotation_pipelines.aggregation import fit
from annotation_pipelines.kinds import of_kind
from assets.common.metadata import figure, markdown_table, mean_or
from assets.common.outs import table_out
from assets.common.partitions import daily_partitions
from resources.lake import Lake

# How many earlier days `auto` looks back for the method a project was last aggregated with.
INCUMBENT_LOOKBACK_DAYS = 31


class AggregationConfig(Config):
    """Which truth-inference method each project uses (launchpad-editable)."""

    method: str = Field(default="auto", description="Default method for every project.")
    methods_per_project: dict[str, str] = Field(
        default_factory=dict, description="Per-project override, e.g. {'toxicity': 'glad'}."
    )
    max_iter: int = 100
    tol: float = 1e-5


@multi_asset(
    outs={
        "aggregated_labels": table_out(
            "One label per task with its posterior confidence, votes and tie flag.",
            group="aggregation",
            owners=["team:annotation-quality"],
        ),
        "annotator_skill": table_out(
            "Per-annotator parameters estimated by the aggregation model.",
            group="aggregation",
            owners=["team:annotation-quality"],
        ),
    },
    partitions_def=daily_partitions,
    pool="daily_layers",
)
def aggregated_labels(  # noqa: ANN201
    context: AssetExecutionContext,
    config: AggregationConfig,
    judgments: pl.DataFrame,
    gold_labels: pl.DataFrame,
    lake: Lake,
):
    """Run the configured truth-inference method per project on the day's judgments.

    With `auto`, the method the project was last aggregated with (an earlier day's
    `aggregated_labels`) is the incumbent: it is kept unless another method is better beyond
    the selection noise, so a day's noise does not flip the project's method.
    """
    # Other kinds have their own aggregation (assets/aggregation/kinds.py).
    judgments = of_kind(judgments)
    gold_labels = of_kind(gold_labels)
    labels, skills, summary = [], [], []
    projects = sorted(judgments["project"].unique().to_list()) if judgments.height else []
    incumbents = previous_methods(lake, before=context.partition_key, projects=projects)
    for project in projects:
        method = config.methods_per_project.get(project, config.method)
        rows = judgments.filter(pl.col("project") == project)
        gold = gold_labels.filter(pl.col("project") == project).select("task_id", "label")
        result = fit(
            rows.select("task_id", "annotator_id", "label"),
            method=method,
            gold=gold if gold.height else None,
            max_iter=config.max_iter,
            tol=config.tol,
            incumbent=incumbents.get(project),
        )
        context.log.info(
            f"{project}: {result.method} on {rows.height:,} judgments, "
            f"{result.iterations} iterations, converged={result.converged}. {result.explanation}"
        )
        labels.append(
            result.labels.select(
                "task_id", "label", "confidence", "n_votes", "is_tie"
            ).with_columns(project=pl.lit(project), method=pl.lit(result.method))
        )
        skills.append(
            result.annotators.select("annotator_id", "skill", "n_judgments").with_columns(
                project=pl.lit(project), method=pl.lit(result.method)
            )
        )
        summary.append(
            {
                "project": project,
                "method": result.method,
                "incumbent": incumbents.get(project),
                "iterations": result.iterations,
                "converged": result.converged,
                "tie_share": round(result.tie_share, 4),
                "mean_confidence": round(float(result.labels["confidence"].mean()), 4),
                "why": result.explanation,
            }
        )
    label_frame = _stack(labels, schema.AGGREGATED_LABELS, "aggregated_labels")
    skill_frame = _stack(skills, schema.ANNOTATOR_PARAMETERS, "annotator_skill")
    summary_frame = pl.DataFrame(summary) if summary else pl.DataFrame({"project": []})
    yield Output(
        label_frame,
        output_name="aggregated_labels",
        metadata={
            "methods": markdown_table(summary_frame),
            "tie_share": figure(mean_or(label_frame["is_tie"], 0.0)),
            "mean_confidence": figure(mean_or(label_frame["confidence"], 0.0)),
        },
    )
    yield Output(skill_frame, output_name="annotator_skill")


def previous_methods(lake: Lake, *, before: str, projects: list[str]) -> dict[str, str]:
    """Per project, the method of its latest `aggregated_labels` day before `before`."""
    earlier = [day for day in lake.days("aggregated_labels") if day < before]
    found: dict[str, str] = {}
    for day in reversed(earlier[-INCUMBENT_LOOKBACK_DAYS:]):
        if all(project in found for project in projects):
            break
        frame = lake.read_table("aggregated_labels", day=day)
        if not {"project", "method"} <= set(frame.columns):
            continue
        for project, method in frame.select("project", "method").unique("project").iter_rows():
            found.setdefault(project, method)
    return {project: found[project] for project in projects if project in found}


def _stack(frames: list[pl.DataFrame], table: dict[str, pl.DataType], name: str) -> pl.DataFrame:
    if not frames:
        return schema.empty(table)
    stacked = pl.concat(frames, how="diagonal_relaxed")
    return schema.conform(stacked, table, name=name).select(list(table))
