"""Aggregated answers of every non-categorical kind: one per task (pairwise: per item too).

Each project holds one kind; its judgments go through the kind's default method in the
registry (`aggregation.by_kind.aggregate_kind`), gold tasks anchoring the fit. The day's
aggregates of every kind project land in one table with a `kind` column and each kind's own
typed value columns (the other kinds' columns null).
"""

import datetime as dt
import json

import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, multi_asset
from pydantic import Field

from annotation_pipelines.lake import ANNOTATION_DB_SCALES_KEY
from annotation_pipelines.quality.kinds import (
    KIND_ITEM_SCORES,
    aggregate_kind_day,
    valid_values,
    within_scale,
)
from annotation_pipelines.scale import (
    RatingScale,
    agreed_scale,
    declared_scales,
    project_scale,
)
from assets.common.metadata import markdown_table
from assets.common.outs import table_out
from assets.common.partitions import daily_partitions
from resources.lake import Lake
from resources.landing import LandingZone, project_settings_path

GROUP = "aggregation"
OWNERS = ["team:annotation-quality"]
CATEGORICAL = "categorical"


class KindAggregationConfig(Config):
    """Which method each kind (or project) uses; empty means the kind's registry default."""

    methods_per_kind: dict[str, str] = Field(
        default_factory=dict, description="e.g. {'numeric': 'median', 'boxes': 'majority'}."
    )
    methods_per_project: dict[str, str] = Field(default_factory=dict)


class MixedKindProjectError(ValueError):
    """A project with judgments of more than one kind on a day (e.g. a Label Studio project
    with a choices and a rating control). Every layer keys a project's answers, gates and
    snapshots by the project alone, so such a project cannot be aggregated as one kind."""


def project_kind(rows: pl.DataFrame, *, project: str, day: dt.date) -> str:
    """The one kind of `rows` (one project's judgments of the day); MixedKindProjectError,
    naming each kind with its controls and counts, when there are several."""
    kinds = rows["kind"].fill_null(CATEGORICAL).unique().sort().to_list()
    if len(kinds) == 1:
        return str(kinds[0])
    control = pl.col("control") if "control" in rows.columns else pl.lit(None, pl.String)
    per_kind = (
        rows.group_by(pl.col("kind").fill_null(CATEGORICAL))
        .agg(pl.len().alias("n"), control.drop_nulls().unique().sort().alias("controls"))
        .sort("kind")
    )
    shown = "; ".join(
        f"{kind}: {n:,} judgments" + (f" (control {', '.join(controls)})" if controls else "")
        for kind, n, controls in per_kind.iter_rows()
    )
    raise MixedKindProjectError(
        f"project {project!r} has judgments of {len(kinds)} kinds on {day}: {shown}. A project "
        "holds one kind (its aggregates, gates and curated snapshot are keyed by the project): "
        "give each control its own project (in Label Studio, one project per control, or "
        "one export per control under its own exports/<project>/ folder). The raw layer "
        "keeps one judgment per (task, annotator), so part of these answers is already lost."
    )


def kind_projects(judgments: pl.DataFrame) -> list[str]:
    """Projects with judgments of a non-categorical kind, sorted."""
    rows = judgments.filter(pl.col("kind") != CATEGORICAL)
    return sorted(rows["project"].unique().to_list())


@multi_asset(
    outs={
        "kind_aggregated_labels": table_out(
            "Per task of every non-categorical project: the aggregate in the kind's "
            "typed column(s) (spans and boxes each with a confidence), task confidence, method.",
            group=GROUP,
            owners=OWNERS,
        ),
        "kind_item_scores": table_out(
            "Per item of every pairwise project: Bradley-Terry score and interval.",
            group=GROUP,
            owners=OWNERS,
        ),
        "kind_annotator_reliability": table_out(
            "Per annotator of every non-categorical project: the model's reliability "
            "and the kind's own figures (box looseness, rating bias and noise).",
            group=GROUP,
            owners=OWNERS,
        ),
    },
    partitions_def=daily_partitions,
    pool="daily_layers",
)
def kind_aggregated_labels(  # noqa: ANN201
    context: AssetExecutionContext,
    config: KindAggregationConfig,
    judgments: pl.DataFrame,
    gold_labels: pl.DataFrame,
    raw_tasks: pl.DataFrame,
    landing: LandingZone,
    lake: Lake,
):
    """Aggregate each non-categorical project of the day with its kind's method; a numeric
    project with a declared scale (its project.json, or the annotation DB's `projects.scale`
    as the daily extract last read it; both alike when both declare one) is aggregated on that
    scale."""
    day = dt.date.fromisoformat(context.partition_key)
    db_scales = annotation_db_scales(lake)
    labels, items, annotators, summary = [], [], [], []
    set_aside: dict[str, dict[str, object]] = {}
    refused: dict[str, dict[str, object]] = {}
    gross_errors: dict[str, dict[str, object]] = {}
    for project in kind_projects(judgments):
        rows = judgments.filter(pl.col("project") == project)
        gold = gold_labels.filter(pl.col("project") == project)
        kind = project_kind(rows, project=project, day=day)
        method = config.methods_per_project.get(project, config.methods_per_kind.get(kind))
        rows, refused_here = valid_values(rows, kind)
        if refused_here is not None:
            refused[project] = refused_here
            context.log.warning(f"{project}: answers ingest refuses: {refused_here}")
            if rows.height == 0:
                continue
        scale = None
        if kind == "numeric":
            # A malformed scale fails the run naming the file and field, as at ingest, and so
            # does one the annotation DB declares otherwise.
            source = project_settings_path(project)
            scale = agreed_scale(
                project_scale(landing.project_settings(project), source=source),
                db_scales.get(project),
                source=source,
                project=project,
            )
            rows, gold, off_scale = within_scale(rows, gold, scale)
            if off_scale is not None:
                set_aside[project] = off_scale
                context.log.warning(f"{project}: answers off its declared scale: {off_scale}")
            if rows.height == 0:
                continue
        result = aggregate_kind_day(
            rows,
            project=project,
            day=day,
            gold=gold,
            tasks=raw_tasks.filter(pl.col("project") == project),
            kind=kind,
            method=method,
            scale=scale,
        )
        context.log.info(f"{project} ({kind}): {result.method} on {rows.height:,} judgments")
        if result.set_aside is not None and result.set_aside.height:
            gross_errors[project] = _gross_errors(result.set_aside, method=result.method)
            context.log.warning(
                f"{project}: answers set aside as gross errors (far off the scale the answers "
                f"show and from their task's median): {gross_errors[project]}"
            )
        labels.append(result.labels)
        items.append(result.items)
        annotators.append(result.annotators)
        summary.append(
            {
                "project": project,
                "kind": kind,
                "method": result.method,
                "tasks": result.labels.height,
                "mean_confidence": round(float(result.labels["confidence"].mean() or 0.0), 4),  # type: ignore[arg-type]
            }
        )
    label_frame = _stack(labels, _EMPTY_LABELS).sort("project", "task_id")
    item_frame = _stack(items, KIND_ITEM_SCORES).sort("project", "item")
    annotator_frame = _stack(annotators, _EMPTY_ANNOTATORS).sort("project", "annotator_id")
    yield Output(
        label_frame,
        output_name="kind_aggregated_labels",
        metadata={
            "methods": markdown_table(pl.DataFrame(summary) if summary else pl.DataFrame()),
            "projects": MetadataValue.json([row["project"] for row in summary]),
            # Numeric answers off their project's declared scale that no ingest checked (the
            # annotation DB's, the generator's): counted per project, never aggregated.
            "outside_scale": MetadataValue.json(set_aside),
            # Answers the shared value check refuses (a box with no area, a blank answer) that
            # no ingest checked: the generator's, or staged before the check. Never aggregated.
            "refused_values": MetadataValue.json(refused),
            # Answers the model left out of its fit as gross errors (a pasted id, 55 typed on
            # a 1-5 scale): counted per project with the first judgment ids.
            "gross_errors": MetadataValue.json(gross_errors),
        },
    )
    yield Output(item_frame, output_name="kind_item_scores")
    yield Output(annotator_frame, output_name="kind_annotator_reliability")


def _gross_errors(set_aside: pl.DataFrame, *, method: str) -> dict[str, object]:
    """The method, how many judgments it set aside and the first three (judgment ids where the
    rows have them, else task and annotator)."""
    first: list[object] = (
        set_aside.get_column("judgment_id").head(3).to_list()
        if "judgment_id" in set_aside.columns
        else [list(row) for row in set_aside.select("task_id", "annotator_id").head(3).rows()]
    )
    return {"method": method, "judgments": set_aside.height, "first": first}


def annotation_db_scales(lake: Lake) -> dict[str, RatingScale]:
    """Project -> the scale the annotation DB declares for it, as the daily extract recorded
    it (none before the first extract of a database with `projects.scale`)."""
    raw = lake.get_if_exists(ANNOTATION_DB_SCALES_KEY)
    if raw is None:
        return {}
    return declared_scales(
        json.loads(raw).items(),
        source=lambda project: f"{ANNOTATION_DB_SCALES_KEY} (project {project!r})",
    )


_EMPTY_LABELS: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "confidence": pl.Float64(),
    "project": pl.String(),
    "day": pl.Date(),
    "kind": pl.String(),
    "method": pl.String(),
}
_EMPTY_ANNOTATORS: dict[str, pl.DataType] = {
    "annotator_id": pl.String(),
    "reliability": pl.Float64(),
    "n_judgments": pl.UInt32(),
    "project": pl.String(),
    "day": pl.Date(),
    "kind": pl.String(),
    "method": pl.String(),
}


def _stack(frames: list[pl.DataFrame], empty: dict[str, pl.DataType]) -> pl.DataFrame:
    # Each kind brings its own columns; the day's table holds them all, null for other kinds.
    frames = [frame for frame in frames if frame.height]
    if not frames:
        return pl.DataFrame(schema=empty)
    return pl.concat(frames, how="diagonal_relaxed")
