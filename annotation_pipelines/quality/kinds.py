"""Quality of every non-categorical kind: aggregate, agreement, gold, scorecards, gates, queue.

One project holds one kind. Per project-day, `score_kind_project` aggregates the judgments
with the kind's default method (`aggregation.by_kind.aggregate_kind`), measures agreement with
the kind's distance (`agreement.kinds.agreement`: Krippendorff's alpha, the raw mean pairwise
agreement and a bootstrap interval) and scores the judgments on gold tasks with the kind's own
metric (`gold_score` of the kind's aggregation module). Everything is returned as frames:

- `labels`: one row per task with `project`, `kind`, `method`, `confidence` and the kind's
  value column(s) holding the aggregate (pairwise: `left`, `right`, `winner` of the
  reliability-weighted majority of the task).
- `items` (pairwise only): one row per item with its Bradley-Terry `score`, `lo`, `hi`.
- `report`: one row (columns KIND_QUALITY_REPORT).
- `scorecards`: one row per annotator (columns KIND_SCORECARDS).
- `queue`: the tasks the adaptive-redundancy policy (`loop.policy.decide`, the same code the
  replay and the live layer run) does not call done: another judgment below the kind's target
  confidence, an expert at `max_votes` (columns KIND_QUEUE, `decision` and `reason` its own).

Gold metrics differ by kind (F1 for spans, F1 at IoU 0.5 for boxes, absolute error for
ratings, Kendall tau for rankings, edit distance for text, accuracy for preferences, Jaccard
for tags). `gold_metric` holds the metric in its own units; `gold_accuracy` is the same figure
mapped onto [0, 1], higher is better, so the one gate implementation
(`quality.gates.quality_gates`) applies its gold floor to every kind.

Scorecards flag an annotator (reason in words) whose chance-corrected agreement with the
consensus (`consensus_alpha`, see `consensus_agreement`) is below `min_consensus_alpha`, whose
gold score is below `min_gold_score` over at least
`min_gold_judgments` gold tasks, or (boxes) whose boxes are loose: a mean area over the fused
box above 1 + `max_box_looseness`. The agreement reads only the `n_consensus_compared`
judgments on tasks someone else judged too or on gold tasks; an annotator alone on every task
they judged has it null, and a null raises no flag.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.by_kind import aggregate_kind
from annotation_pipelines.aggregation.kinds_result import KindAggregation
from annotation_pipelines.aggregation.pairwise import preference_majority
from annotation_pipelines.agreement.kinds import DEFAULT_DISTANCE, agreement, resolve_distance
from annotation_pipelines.kinds import (
    BOX_CONTEXT,
    CONTEXT_DTYPES,
    VALUE_COLUMNS,
    boxes_and_gold_in_task_unit,
    check_kind,
    document_texts,
    fit_columns,
    most_common,
)
from annotation_pipelines.loop.kind_posterior import KIND_TARGETS, policy_confidence
from annotation_pipelines.loop.policy import DONE, NEEDS_ANOTHER_JUDGMENT, PolicyOptions, decide
from annotation_pipelines.quality.gates import DEFAULT_MIN_ALPHA, Floor, quality_gates
from annotation_pipelines.quality.scorecards import compared_with_consensus
from annotation_pipelines.scale import RatingScale

# Every kind the per-kind pipeline scores (categorical has its own, richer path).
SCORED_KINDS: tuple[str, ...] = (
    "multilabel",
    "numeric",
    "ranking",
    "pairwise",
    "spans",
    "boxes",
    "text",
)
DEFAULT_MIN_GOLD_SCORE = 0.5
DEFAULT_MIN_CONSENSUS_ALPHA = 0.3
DEFAULT_MAX_BOX_LOOSENESS = 0.3
# Agreement floors per kind: the categorical floor by default, editable per kind and project.
DEFAULT_KIND_MIN_ALPHA: dict[str, float] = dict.fromkeys(SCORED_KINDS, DEFAULT_MIN_ALPHA)


@dataclass(frozen=True)
class GoldMetric:
    """The kind's gold metric: its column in the module's `gold_score`, and how it maps onto a
    [0, 1] score where higher is better (`scale` is the value range for error metrics)."""

    module: str
    column: str
    name: str
    higher_is_better: bool
    bounded: bool  # in [0, 1] already (else an error divided by the value range)
    signed: bool = False  # in [-1, 1] (Kendall tau)


GOLD_METRICS: dict[str, GoldMetric] = {
    "multilabel": GoldMetric("multilabel", "mean_jaccard", "jaccard", True, True),
    "numeric": GoldMetric("numeric", "mean_absolute_error", "mean_absolute_error", False, False),
    "ranking": GoldMetric("ranking", "mean_kendall_tau", "kendall_tau", True, True, signed=True),
    "pairwise": GoldMetric("pairwise", "accuracy", "accuracy", True, True),
    "spans": GoldMetric("spans", "exact_f1", "span_f1", True, True),
    "boxes": GoldMetric("boxes", "f1", "f1_at_iou_0.5", True, True),
    "text": GoldMetric("text", "mean_edit_distance", "edit_distance", False, True),
}

KIND_QUALITY_REPORT: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "kind": pl.String(),
    "method": pl.String(),
    "distance": pl.String(),
    "n_tasks": pl.UInt32(),
    "n_judgments": pl.UInt32(),
    "n_annotators": pl.UInt32(),
    "krippendorff_alpha": pl.Float64(),
    "alpha_low": pl.Float64(),
    "alpha_high": pl.Float64(),
    "mean_pairwise_agreement": pl.Float64(),
    "mean_pairwise_distance": pl.Float64(),
    "raw_measure": pl.String(),
    "gold_metric_name": pl.String(),
    "gold_metric": pl.Float64(),
    "gold_accuracy": pl.Float64(),
    "n_gold_judgments": pl.UInt32(),
    "mean_confidence": pl.Float64(),
    "share_flagged_annotators": pl.Float64(),
}
KIND_SCORECARDS: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "kind": pl.String(),
    "annotator_id": pl.String(),
    "n_judgments": pl.UInt32(),
    "reliability": pl.Float64(),
    "consensus_agreement": pl.Float64(),
    "consensus_alpha": pl.Float64(),
    # The judgments the two figures above read: on tasks someone else judged too, or gold.
    "n_consensus_compared": pl.UInt32(),
    "n_gold": pl.UInt32(),
    "gold_metric_name": pl.String(),
    "gold_metric": pl.Float64(),
    "gold_score": pl.Float64(),
    "box_looseness": pl.Float64(),
    "rating_bias": pl.Float64(),
    "flagged": pl.Boolean(),
    "flag_reason": pl.String(),
}
KIND_QUEUE: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "kind": pl.String(),
    "task_id": pl.String(),
    "confidence": pl.Float64(),
    "n_judgments": pl.UInt32(),
    "decision": pl.String(),
    "reason": pl.String(),
    "priority": pl.Float64(),
}
KIND_ITEM_SCORES: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "kind": pl.String(),
    "method": pl.String(),
    "item": pl.String(),
    "score": pl.Float64(),
    "lo": pl.Float64(),
    "hi": pl.Float64(),
}


@dataclass(frozen=True, kw_only=True)
class KindThresholds:
    """Flags and queue thresholds of the per-kind scorecards."""

    min_consensus_alpha: float = DEFAULT_MIN_CONSENSUS_ALPHA
    min_gold_score: float = DEFAULT_MIN_GOLD_SCORE
    min_gold_judgments: int = 3
    max_box_looseness: float = DEFAULT_MAX_BOX_LOOSENESS
    # The queue's policy: the kind's target confidence, the votes to start with and the most.
    queue_targets: Mapping[str, float] = field(default_factory=lambda: dict(KIND_TARGETS))
    queue_min_votes: int = 3
    queue_max_votes: int = 15


@dataclass(frozen=True)
class KindScores:
    """Everything the quality layer keeps of one kind project-day (see the module docstring)."""

    labels: pl.DataFrame
    items: pl.DataFrame
    annotators: pl.DataFrame
    report: pl.DataFrame
    scorecards: pl.DataFrame
    queue: pl.DataFrame
    method: str
    # Judgments the model set aside as gross errors (`KindAggregation.set_aside`, with the
    # judgment's `judgment_id` when the rows have one); None when the method sets none aside.
    set_aside: pl.DataFrame | None = None


def project_kind(judgments: pl.DataFrame, project: str) -> str:
    """The one kind of a project's judgments; an error naming the project if it mixes kinds."""
    kinds = judgments.filter(pl.col("project") == project)["kind"].unique().sort().to_list()
    if len(kinds) != 1:
        raise ValueError(f"project {project!r}: expected one kind, found {kinds}")
    return str(kinds[0])


def task_texts(tasks: pl.DataFrame) -> pl.DataFrame:
    """`task_id`, `text`: the document of each task's payload, which spans are offsets into."""
    return document_texts(tasks.select("task_id", "payload").unique("task_id", keep="last"))


def aggregate_project(
    judgments: pl.DataFrame,
    *,
    kind: str,
    gold: pl.DataFrame | None = None,
    tasks: pl.DataFrame | None = None,
    method: str | None = None,
    scale: RatingScale | None = None,
) -> KindAggregation:
    """The kind's aggregation of one project's judgments (spans read the task texts; numeric
    the project's declared `scale`, its range replacing the one estimated from the answers)."""
    check_kind(kind)
    options: dict[str, Any] = {}
    if kind == "spans" and tasks is not None:
        options["texts"] = task_texts(tasks)
    if kind == "numeric" and scale is not None:
        options["scale"] = scale
    anchors = fit_columns(gold, kind, "task_id") if gold is not None and gold.height else None
    return aggregate_kind(
        fit_columns(judgments, kind, "task_id", "annotator_id"),
        kind=kind,
        method=method,
        gold=anchors,
        **options,
    )


def _votes(judgments: pl.DataFrame) -> pl.DataFrame:
    """`task_id`, `n_votes`: the judgments each task has."""
    return judgments.group_by("task_id").agg(n_votes=pl.len().cast(pl.UInt32))


def per_task_labels(
    aggregation: KindAggregation, judgments: pl.DataFrame, *, kind: str
) -> pl.DataFrame:
    """One row per judged task: `task_id`, the kind's value column(s), `confidence`, `n_votes`
    (the judgments the fit saw: the live layer re-bases a task on this row only when it holds
    exactly that many, all of the day). Boxes also carry `coordinates`, `image_width` and
    `image_height` (`box_context`), which the COCO export needs to give boxes in pixels.

    Pairwise aggregates score items; the per-task answer is the reliability-weighted majority
    of the task's votes (`winner` left/right/tie of the task's left and right items).
    """
    if kind != "pairwise":
        keep = ["task_id", *VALUE_COLUMNS[kind], "confidence"]
        extra = [c for c in ("lo", "hi", "n_votes") if c in aggregation.labels.columns]
        labels = aggregation.labels.select(*keep, *extra)
        if "n_votes" not in labels.columns:
            labels = labels.join(_votes(judgments), on="task_id", how="left", maintain_order="left")
        if kind == "boxes":
            labels = labels.join(
                box_context(judgments), on="task_id", how="left", maintain_order="left"
            )
        return labels
    # The task's pair as most of its judgments showed it (ties: the first shown), since the
    # payload's left and right texts are of the orientation the task was made with, which a
    # tool randomizing the display shows to only some annotators.
    pairs = (
        judgments.select("task_id", "left", "right")
        .with_row_index("_shown")
        .group_by("task_id", "left", "right")
        .agg(pl.len().alias("_times"), pl.col("_shown").min())
        .sort(["_times", "_shown"], descending=[True, False])
        .unique("task_id", keep="first")
        .select("task_id", "left", "right")
    )
    majority = preference_majority(
        judgments.select("task_id", "annotator_id", "left", "right", "winner"),
        reliability=aggregation.annotators.select("annotator_id", "reliability"),
    )
    return (
        pairs.join(majority, on="task_id", how="left")
        .with_columns(
            winner=pl.when(pl.col("chosen").is_null())
            .then(pl.lit("tie"))
            .when(pl.col("chosen") == pl.col("left"))
            .then(pl.lit("left"))
            .otherwise(pl.lit("right"))
        )
        .join(_votes(judgments), on="task_id", how="left")
        .select("task_id", "left", "right", "winner", "confidence", "n_votes")
        .sort("task_id")
    )


def box_context(judgments: pl.DataFrame) -> pl.DataFrame:
    """`task_id`, `coordinates`, `image_width`, `image_height`: per task the most common
    non-null value of each among its judgments (null where none has one), so the fused boxes
    keep the unit and image size they are measured in."""
    present = [c for c in BOX_CONTEXT if c in judgments.columns]
    context = judgments.group_by("task_id").agg(most_common(c).alias(c) for c in present)
    return context.with_columns(
        pl.lit(None, CONTEXT_DTYPES[c]).alias(c) for c in BOX_CONTEXT if c not in present
    ).select("task_id", *(pl.col(c).cast(CONTEXT_DTYPES[c]) for c in BOX_CONTEXT))


def _plain_values(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """The aggregate's value columns without the per-span / per-box `confidence` fields."""
    fields: tuple[str, ...]
    if kind == "spans":
        fields = ("start", "end", "label")
    elif kind == "boxes":
        fields = ("label", "x_min", "y_min", "x_max", "y_max")
    else:
        return frame
    column = VALUE_COLUMNS[kind][0]
    return frame.with_columns(
        pl.col(column).list.eval(pl.struct([pl.element().struct.field(name) for name in fields]))
    )


def consensus_agreement(
    judgments: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    kind: str,
    seed: int = 0,
    gold: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per annotator: `consensus_agreement`, 1 − the mean distance D_a of their judgments to
    the task's aggregate (the kind's distance; numeric: absolute error over the value range),
    `consensus_alpha` = 1 − D_a / D_e, the same figure corrected for chance, and
    `n_consensus_compared`, the judgments D_a is read from.

    Only judgments on tasks whose aggregate is more than their own answer are compared: tasks
    another annotator judged too (in `judgments`), or tasks in `gold` (`task_id`; their
    aggregate is the gold answer). A lone answer's aggregate is that answer, so comparing the
    two would only count it as agreeing with itself. Without any, both figures are null.

    D_e is the distance expected by chance: to the aggregate of a random other task (tasks
    permuted with `seed`); for rankings 1/2 (a random order of the same items), for pairwise
    judgments 1 − Σ p_w² over the shares p_w of left, right and tie. It reads every judgment,
    the lone ones too: how far an answer falls from another task's aggregate does not depend
    on who else judged its own. A spammer's `consensus_alpha` is near 0 whatever the kind, a
    careful annotator's near 1.
    """
    columns = list(VALUE_COLUMNS[kind])
    consensus = _plain_values(labels, kind).select(
        "task_id", *[pl.col(c).alias(f"{c}_consensus") for c in columns]
    )
    joined = (
        judgments.select("task_id", "annotator_id", *columns)
        .with_columns(_compared=compared_with_consensus(gold, task=("task_id",)))
        .join(consensus, on="task_id")
    )
    if joined.height == 0:
        return pl.DataFrame(
            schema={
                "annotator_id": pl.String,
                "consensus_agreement": pl.Float64,
                "consensus_alpha": pl.Float64,
                "n_consensus_compared": pl.UInt32,
            }
        )
    spread = _spread(judgments["value"]) if kind == "numeric" else 1.0
    distance = _consensus_distances(joined, kind=kind, spread=spread)
    if kind == "ranking":
        expected = 0.5
    elif kind == "pairwise":
        shares = joined["winner"].value_counts(normalize=True)["proportion"].to_numpy()
        expected = float(1.0 - np.sum(shares**2))
    else:
        order = np.random.default_rng(seed).permutation(joined.height)
        shuffled = joined.select(columns).hstack(
            joined.select([f"{c}_consensus" for c in columns])[order]
        )
        expected = float(np.mean(_consensus_distances(shuffled, kind=kind, spread=spread)))
    return (
        joined.select("annotator_id", "_compared")
        .with_columns(distance=pl.Series(distance))
        .group_by("annotator_id")
        .agg(
            (1.0 - pl.col("distance").filter(pl.col("_compared")).mean()).alias(
                "consensus_agreement"
            ),
            pl.col("_compared").sum().cast(pl.UInt32).alias("n_consensus_compared"),
        )
        .with_columns(
            consensus_alpha=(1.0 - (1.0 - pl.col("consensus_agreement")) / expected)
            if expected > 0
            else pl.lit(None, pl.Float64)
        )
    )


def judgment_distances(judgments: pl.DataFrame, labels: pl.DataFrame, *, kind: str) -> np.ndarray:
    """The kind's distance of each judgment (in `judgments`' order; every task must be in
    `labels`) to its task's aggregate, in the kind's own units (numeric: absolute error), as
    `consensus_agreement` measures it, for callers that carry per-annotator sums."""
    columns = list(VALUE_COLUMNS[kind])
    consensus = _plain_values(labels, kind).select(
        "task_id", *[pl.col(c).alias(f"{c}_consensus") for c in columns]
    )
    joined = judgments.select("task_id", *columns).join(
        consensus, on="task_id", how="left", maintain_order="left"
    )
    if joined.height == 0:
        return np.zeros(0)
    return _consensus_distances(joined, kind=kind, spread=1.0)


def _consensus_distances(joined: pl.DataFrame, *, kind: str, spread: float) -> np.ndarray:
    """The kind's distance of each judgment (value columns) to its `<column>_consensus`."""
    if kind == "numeric":
        difference = (
            joined["value"].cast(pl.Float64).to_numpy()
            - joined["value_consensus"].cast(pl.Float64).to_numpy()
        )
        return np.abs(difference) / spread
    if kind == "pairwise":
        differs = (joined["winner"] != joined["winner_consensus"]).fill_null(True)
        return differs.to_numpy().astype(np.float64)
    column = VALUE_COLUMNS[kind][0]
    _, function = resolve_distance(DEFAULT_DISTANCE[kind])
    return np.asarray(function(joined[column], joined[f"{column}_consensus"]), dtype=np.float64)


def gold_scores(
    judgments: pl.DataFrame, gold: pl.DataFrame, *, kind: str
) -> tuple[pl.DataFrame, float | None, float | None, int]:
    """(per annotator: `n_gold`, `gold_metric`, `gold_score`; pooled metric; pooled score;
    gold judgments). Pooled: every gold judgment scored as one annotator's (micro average)."""
    metric = GOLD_METRICS[kind]
    columns = list(VALUE_COLUMNS[kind])
    empty = pl.DataFrame(
        schema={
            "annotator_id": pl.String,
            "n_gold": pl.UInt32,
            "gold_metric": pl.Float64,
            "gold_score": pl.Float64,
        }
    )
    # Only gold the day judged is evidence: a numeric gold value of another task would still
    # stretch the spread every annotator's error is scored against.
    gold = gold.select("task_id", *columns).join(
        judgments.select("task_id").unique(), on="task_id", how="semi"
    )
    judged = judgments.select("task_id", "annotator_id", *columns).join(
        gold.select("task_id"), on="task_id", how="semi"
    )
    if gold.height == 0 or judged.height == 0:
        return empty, None, None, 0
    score_of = importlib.import_module(f"annotation_pipelines.aggregation.{metric.module}")
    per_annotator = score_of.gold_score(judged, gold)
    pooled = score_of.gold_score(judged.with_columns(annotator_id=pl.lit("__all__")), gold)
    spread = 1.0
    if not metric.bounded:
        spread = _spread(pl.concat([judgments["value"], gold["value"]]))
    n_gold = "n_gold_tasks" if "n_gold_tasks" in per_annotator.columns else "n_gold"
    frame = per_annotator.select(
        "annotator_id",
        pl.col(n_gold).cast(pl.UInt32).alias("n_gold"),
        pl.col(metric.column).cast(pl.Float64).alias("gold_metric"),
    ).with_columns(gold_score=_normalized(pl.col("gold_metric"), metric, spread))
    value = pooled[metric.column].cast(pl.Float64).item()
    score = pooled.select(_normalized(pl.col(metric.column).cast(pl.Float64), metric, spread))
    return frame, value, score.item(), judged.height


def _spread(values: pl.Series) -> float:
    """The range of numeric values (1 when they are all equal or absent)."""
    numbers = values.cast(pl.Float64).drop_nulls().to_numpy()
    if numbers.size == 0:
        return 1.0
    return float(numbers.max() - numbers.min()) or 1.0


def _normalized(column: pl.Expr, metric: GoldMetric, spread: float) -> pl.Expr:
    if metric.signed:
        return (column + 1.0) / 2.0
    if not metric.bounded:
        return (1.0 - column / spread).clip(0.0, 1.0)
    return column if metric.higher_is_better else 1.0 - column


def _project_gold(gold: pl.DataFrame | None, rows: pl.DataFrame, *, project: str, kind: str):  # noqa: ANN202
    columns = VALUE_COLUMNS[kind]
    if gold is not None and gold.height:
        # As the categorical fit: gold of a task the day did not judge anchors nothing of it.
        own = fit_columns(gold.filter(pl.col("project") == project), kind, "task_id")
        return own.join(rows.select("task_id").unique(), on="task_id", how="semi")
    return pl.DataFrame(schema=rows.select("task_id", *columns).schema)


def _project_rows(judgments: pl.DataFrame, *, project: str, day: date) -> pl.DataFrame:
    rows = judgments.filter(pl.col("project") == project)
    if rows.height == 0:
        raise ValueError(f"project {project!r}: no judgments on {day}")
    return rows


def aggregate_kind_day(
    judgments: pl.DataFrame,
    *,
    project: str,
    day: date,
    gold: pl.DataFrame | None = None,
    tasks: pl.DataFrame | None = None,
    kind: str | None = None,
    method: str | None = None,
    scale: RatingScale | None = None,
) -> KindScores:
    """The aggregate of one kind project on one day: `labels`, `items` (pairwise) and
    `annotators` (reliability and the kind's own columns); the quality frames are empty.
    `scale`: a numeric project's declared scale (`outside_scale` sets its rows off it aside)."""
    rows = _project_rows(judgments, project=project, day=day)
    kind = kind or project_kind(rows, project)
    gold_rows = _project_gold(gold, rows, project=project, kind=kind)
    aggregation = aggregate_project(
        rows, kind=kind, gold=gold_rows, tasks=tasks, method=method, scale=scale
    )
    labels = per_task_labels(aggregation, rows, kind=kind)
    stamp = {
        "project": pl.lit(project),
        "day": pl.lit(day),
        "kind": pl.lit(kind),
        "method": pl.lit(aggregation.method),
    }
    items = (
        aggregation.labels.select("item", "score", "lo", "hi").with_columns(**stamp)
        if kind == "pairwise"
        else pl.DataFrame(schema=KIND_ITEM_SCORES)
    )
    return KindScores(
        labels=labels.with_columns(**stamp),
        items=_conform(items, KIND_ITEM_SCORES),
        annotators=aggregation.annotators.with_columns(**stamp),
        report=pl.DataFrame(schema=KIND_QUALITY_REPORT),
        scorecards=pl.DataFrame(schema=KIND_SCORECARDS),
        queue=pl.DataFrame(schema=KIND_QUEUE),
        method=aggregation.method,
        set_aside=_set_aside_judgments(aggregation.set_aside, rows),
    )


def valid_values(
    judgments: pl.DataFrame, kind: str
) -> tuple[pl.DataFrame, dict[str, object] | None]:
    """(a kind project's judgments whose value ingest accepts, what was set aside: how many per
    reason and field, the first judgment ids; None when nothing was). Exports and the
    annotation DB are checked when they are staged; the generator's rows, and rows staged
    before a check existed (a box with no area, a blank answer), reach the day unchecked."""
    from annotation_pipelines.tabular import refused_values

    refused = refused_values(judgments, kind)
    if refused.height == 0:
        return judgments, None
    bad = np.zeros(judgments.height, dtype=bool)
    bad[refused.get_column("row").to_numpy()] = True
    mask = pl.Series(bad)
    reasons = refused.group_by("reason", "field").len().sort("reason", "field")
    first = (
        judgments.filter(mask).head(3).get_column("judgment_id").to_list()
        if "judgment_id" in judgments.columns
        else []
    )
    return judgments.filter(~mask), {
        "judgments": refused.height,
        "reasons": {f"{r}:{f}": n for r, f, n in reasons.iter_rows()},
        "first": first,
    }


def _set_aside_judgments(set_aside: pl.DataFrame | None, rows: pl.DataFrame) -> pl.DataFrame | None:
    """`set_aside` (rows by position in `rows`) with each judgment's `judgment_id`, if any."""
    if set_aside is None or "judgment_id" not in rows.columns:
        return set_aside
    ids = rows.get_column("judgment_id").gather(set_aside.get_column("row"))
    return set_aside.with_columns(judgment_id=ids)


def within_scale(
    judgments: pl.DataFrame, gold: pl.DataFrame, scale: RatingScale | None
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, object] | None]:
    """(a numeric project's judgments and gold whose `value` is on `scale`, what was set aside:
    the scale, how many judgments and gold values, the first judgment ids; None when nothing
    was). Exports are checked at ingest; the annotation DB's and the generator's rows reach the
    day unchecked."""
    if scale is None:
        return judgments, gold, None

    def split(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        if frame.height == 0 or "value" not in frame.columns:
            return frame, frame.head(0)
        off = frame.select(scale.outside(pl.col("value")).fill_null(False)).to_series()
        return frame.filter(~off), frame.filter(off)

    (kept, off_judgments), (kept_gold, off_gold) = split(judgments), split(gold)
    if off_judgments.height == 0 and off_gold.height == 0:
        return kept, kept_gold, None
    first = (
        off_judgments.head(3).get_column("judgment_id").to_list() if off_judgments.height else []
    )
    return (
        kept,
        kept_gold,
        {
            "scale": scale.describe(),
            "judgments": off_judgments.height,
            "gold": off_gold.height,
            "first": first,
        },
    )


def assess_kind_day(
    judgments: pl.DataFrame,
    labels: pl.DataFrame,
    annotators: pl.DataFrame,
    *,
    project: str,
    day: date,
    gold: pl.DataFrame | None = None,
    kind: str | None = None,
    thresholds: KindThresholds | None = None,
    n_resamples: int = 200,
) -> KindScores:
    """Agreement, gold, scorecards and queue of one kind project on one day, from its
    aggregate (`labels` and `annotators` as `aggregate_kind_day` returns them, or as the lake
    holds them: rows of other projects and other kinds' columns are ignored)."""
    rows = _project_rows(judgments, project=project, day=day)
    kind = kind or project_kind(rows, project)
    limits = thresholds or KindThresholds()
    gold_rows = _project_gold(gold, rows, project=project, kind=kind)
    if kind == "boxes":
        # Scored against the day's fused boxes, which are in each task's most common unit.
        rows, gold_rows = boxes_and_gold_in_task_unit(rows, gold_rows)
    own_labels = labels.filter(pl.col("project") == project)
    own_annotators = annotators.filter(pl.col("project") == project)
    method = str(own_labels["method"][0]) if own_labels.height else ""
    stamp = {"project": pl.lit(project), "day": pl.lit(day), "kind": pl.lit(kind)}
    measured = agreement(rows, kind=kind, n_resamples=n_resamples)
    per_gold, gold_value, gold_score, n_gold = gold_scores(rows, gold_rows, kind=kind)
    cards = _scorecards(
        rows, own_labels, own_annotators, per_gold, gold_rows, kind=kind, limits=limits
    )
    cards = cards.with_columns(**stamp, gold_metric_name=pl.lit(GOLD_METRICS[kind].name))
    flagged = cards["flagged"].cast(pl.Float64).mean() if cards.height else None
    report = pl.DataFrame(
        [
            {
                "project": project,
                "day": day,
                "kind": kind,
                "method": method,
                "distance": measured["distance"],
                "n_tasks": rows["task_id"].n_unique(),
                "n_judgments": rows.height,
                "n_annotators": rows["annotator_id"].n_unique(),
                "krippendorff_alpha": measured["krippendorff_alpha"],
                "alpha_low": measured["ci_low"],
                "alpha_high": measured["ci_high"],
                "mean_pairwise_agreement": measured["mean_pairwise_agreement"],
                "mean_pairwise_distance": measured["mean_pairwise_distance"],
                "raw_measure": measured.get("raw_measure"),
                "gold_metric_name": GOLD_METRICS[kind].name,
                "gold_metric": gold_value,
                "gold_accuracy": gold_score,
                "n_gold_judgments": n_gold,
                "mean_confidence": own_labels["confidence"].mean() if own_labels.height else None,
                "share_flagged_annotators": flagged,
            }
        ],
        schema=KIND_QUALITY_REPORT,
    )
    queue = policy_queue(
        rows,
        own_labels,
        kind=kind,
        options=PolicyOptions(
            min_votes=limits.queue_min_votes,
            max_votes=limits.queue_max_votes,
            target_confidence=limits.queue_targets.get(kind, KIND_TARGETS[kind]),
        ),
    ).with_columns(**stamp)
    return KindScores(
        labels=own_labels,
        items=pl.DataFrame(schema=KIND_ITEM_SCORES),
        annotators=own_annotators,
        report=report,
        scorecards=_conform(cards, KIND_SCORECARDS),
        queue=_conform(queue, KIND_QUEUE),
        method=method,
    )


def score_kind_project(
    judgments: pl.DataFrame,
    *,
    project: str,
    day: date,
    gold: pl.DataFrame | None = None,
    tasks: pl.DataFrame | None = None,
    kind: str | None = None,
    method: str | None = None,
    thresholds: KindThresholds | None = None,
    n_resamples: int = 200,
) -> KindScores:
    """Aggregate, agreement, gold, scorecards and queue of one kind project on one day."""
    aggregate = aggregate_kind_day(
        judgments, project=project, day=day, gold=gold, tasks=tasks, kind=kind, method=method
    )
    assessed = assess_kind_day(
        judgments,
        aggregate.labels,
        aggregate.annotators,
        project=project,
        day=day,
        gold=gold,
        kind=kind,
        thresholds=thresholds,
        n_resamples=n_resamples,
    )
    return KindScores(
        labels=aggregate.labels,
        items=aggregate.items,
        annotators=aggregate.annotators,
        report=assessed.report,
        scorecards=assessed.scorecards,
        queue=assessed.queue,
        method=aggregate.method,
    )


def _scorecards(
    rows: pl.DataFrame,
    labels: pl.DataFrame,
    annotators: pl.DataFrame,
    per_gold: pl.DataFrame,
    gold: pl.DataFrame,
    *,
    kind: str,
    limits: KindThresholds,
) -> pl.DataFrame:
    extra = [
        pl.col(source).cast(pl.Float64).alias(target)
        if source in annotators.columns
        else pl.lit(None, pl.Float64).alias(target)
        for source, target in (("looseness", "box_looseness"), ("bias", "rating_bias"))
    ]
    counts = rows.group_by("annotator_id").agg(pl.len().cast(pl.UInt32).alias("n_judgments"))
    cards = (
        counts.join(
            annotators.select("annotator_id", pl.col("reliability").cast(pl.Float64), *extra),
            on="annotator_id",
            how="left",
        )
        .join(
            consensus_agreement(rows, labels, kind=kind, gold=gold),
            on="annotator_id",
            how="left",
        )
        .join(per_gold, on="annotator_id", how="left")
        .with_columns(pl.col("n_gold", "n_consensus_compared").fill_null(0))
    )
    # A null agreement (nothing compared) holds no flag: `when` on a null is not taken.
    reasons = [
        pl.when(pl.col("consensus_alpha") < limits.min_consensus_alpha).then(
            pl.format("chance-corrected consensus agreement {}", pl.col("consensus_alpha").round(3))
        ),
        pl.when(
            (pl.col("n_gold") >= limits.min_gold_judgments)
            & (pl.col("gold_score") < limits.min_gold_score)
        ).then(pl.format("gold score {}", pl.col("gold_score").round(3))),
        pl.when(pl.col("box_looseness") > limits.max_box_looseness).then(
            pl.format("loose boxes (area +{})", pl.col("box_looseness").round(2))
        ),
    ]
    return (
        cards.with_columns(flag_reason=pl.concat_str(reasons, separator="; ", ignore_nulls=True))
        .with_columns(
            flag_reason=pl.when(pl.col("flag_reason") == "")
            .then(pl.lit(None, pl.String))
            .otherwise(pl.col("flag_reason"))
        )
        .with_columns(flagged=pl.col("flag_reason").is_not_null())
        .sort("annotator_id")
    )


def _conform(frame: pl.DataFrame, table: Mapping[str, pl.DataType]) -> pl.DataFrame:
    missing = {c: pl.lit(None, dtype) for c, dtype in table.items() if c not in frame.columns}
    return frame.with_columns(**missing).select(
        [pl.col(c).cast(dtype) for c, dtype in table.items()]
    )


def kind_gates(
    report: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    min_alpha_per_kind: Mapping[str, float] | None = None,
    min_alpha_per_project: Mapping[str, float | Floor] | None = None,
    min_gold_score: float = DEFAULT_MIN_GOLD_SCORE,
    min_gold_score_per_project: Mapping[str, float | Floor] | None = None,
    max_flagged_share: float = 0.25,
    gold_projects: set[str] | None = None,
) -> pl.DataFrame:
    """The gates of `quality.gates.quality_gates` over the kind reports: the agreement floor
    of each project is its kind's (overridable per project), the gold floor applies to the
    kind's [0, 1] gold score, and every judged task must have an aggregate."""
    floors = {**DEFAULT_KIND_MIN_ALPHA, **(min_alpha_per_kind or {})}
    # The kind's floor is the project's default: no source shown after it.
    per_project: dict[str, float | Floor] = {
        project: Floor(floors.get(kind, DEFAULT_MIN_ALPHA), "")
        for project, kind in report.select("project", "kind").iter_rows()
    }
    per_project.update(min_alpha_per_project or {})
    return quality_gates(
        report,
        min_alpha_per_project=per_project,
        min_gold_accuracy=min_gold_score,
        min_gold_accuracy_per_project=min_gold_score_per_project,
        max_flagged_share=max_flagged_share,
        gold_projects=gold_projects or set(),
        aggregated=labels.select("task_id", "project"),
    )


def render_kind_report(
    report: pl.DataFrame, *, scorecards: pl.DataFrame, queue: pl.DataFrame, title: str
) -> str:
    """A self-contained HTML page: one section per kind project (report figures, the flagged
    annotators, the top of the queue). Deterministic bytes for the same inputs."""
    from html import escape

    def table(frame: pl.DataFrame) -> str:
        if frame.height == 0:
            return "<p>none</p>"
        head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(_shown(value))}</td>" for value in row) + "</tr>"
            for row in frame.iter_rows()
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    sections = []
    for row in report.sort("project").iter_rows(named=True):
        project = row["project"]
        figures = pl.DataFrame(
            {
                "measure": [k for k in row if k not in ("project", "day")],
                "value": [_shown(v) for k, v in row.items() if k not in ("project", "day")],
            }
        )
        flagged = scorecards.filter((pl.col("project") == project) & pl.col("flagged")).select(
            "annotator_id",
            "n_judgments",
            "n_consensus_compared",
            "consensus_alpha",
            "gold_score",
            "flag_reason",
        )
        waiting = queue.filter(pl.col("project") == project)
        sections.append(
            f"<h2>{escape(project)} ({escape(row['kind'])})</h2>"
            f"{table(figures)}"
            f"<h3>Flagged annotators</h3>{table(flagged)}"
            f"<h3>Re-annotation queue (top 20 of {waiting.height})</h3>"
            f"{table(waiting.head(20).select('task_id', 'confidence', 'reason'))}"
        )
    style = "body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{escape(title)}</h1>"
        + "".join(sections)
        + "</body></html>"
    )


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def truth_accuracy(
    labels: pl.DataFrame, truth: pl.DataFrame, *, kind: str, items: pl.DataFrame | None = None
) -> dict[str, float | None]:
    """How close aggregates are to a known truth, with the kind's measures.

    `labels`: one row per task (`task_id` and the kind's value column(s)); for pairwise, item
    scores (`item`, `score`; an item scored on several days counts with its mean score).
    `truth`: `task_id` and the kind's value column(s); for pairwise, `items` holds `item` and
    its hidden `quality`. Measures: spans exact-match span F1; boxes F1 at IoU 0.5 and mean
    IoU; numeric MAE and Pearson r; ranking Kendall tau; pairwise Spearman rho of item scores
    against quality; multilabel Jaccard; text exact match and mean normalized edit distance.
    """
    check_kind(kind)
    if kind == "pairwise":
        if items is None:
            raise ValueError("pairwise accuracy needs the items' hidden quality")
        scores = labels.group_by("item").agg(pl.col("score").mean())
        joined = scores.join(items.select("item", "quality"), on="item")
        rho = joined.select(pl.corr("score", "quality", method="spearman")).item()
        return {"spearman": rho, "items": float(joined.height)}
    columns = list(VALUE_COLUMNS[kind])
    predicted = _plain_values(labels.select("task_id", *columns), kind).with_columns(
        annotator_id=pl.lit("aggregate")
    )
    reference = truth.join(predicted.select("task_id"), on="task_id", how="semi")
    scored = importlib.import_module(
        f"annotation_pipelines.aggregation.{GOLD_METRICS[kind].module}"
    ).gold_score(predicted, reference.select("task_id", *columns))
    row = scored.row(0, named=True) if scored.height else {}
    if kind == "spans":
        return {"span_f1": row.get("exact_f1")}
    if kind == "boxes":
        return {"f1_at_iou_0.5": row.get("f1"), "mean_iou": row.get("mean_iou")}
    if kind == "numeric":
        joined = predicted.join(
            reference.select("task_id", pl.col("value").alias("true")), "task_id"
        )
        pearson = joined.select(pl.corr("value", "true")).item()
        return {"mae": row.get("mean_absolute_error"), "pearson": pearson}
    if kind == "ranking":
        return {"kendall_tau": row.get("mean_kendall_tau")}
    if kind == "multilabel":
        return {"jaccard": row.get("mean_jaccard")}
    return {"exact_match": row.get("exact_match"), "edit_distance": row.get("mean_edit_distance")}


def policy_queue(
    rows: pl.DataFrame, labels: pl.DataFrame, *, kind: str, options: PolicyOptions
) -> pl.DataFrame:
    """The tasks of one project-day the policy does not call done, least confident first:
    `task_id`, `confidence` (the policy's, see `loop.kind_posterior`), `n_judgments`,
    `decision`, `reason`, `priority`. A task with fewer than `min_votes` judgments needs
    another whatever its confidence (one careful vote is not yet a consensus)."""
    if rows.height == 0 or labels.height == 0:
        return pl.DataFrame(schema={k: v for k, v in KIND_QUEUE.items() if k in _QUEUE_OWN})
    if kind != "pairwise":  # pairwise reads the pairs' winners from `rows` alone
        labels = labels.filter(pl.col("task_id").is_in(rows["task_id"].implode()))
    frame = policy_confidence(kind, labels, rows)
    decided = decide(frame, options)
    few = (pl.col("n_votes") < options.min_votes) & (pl.col("decision") == DONE)
    return (
        decided.with_columns(
            decision=pl.when(few).then(pl.lit(NEEDS_ANOTHER_JUDGMENT)).otherwise("decision"),
            reason=pl.when(few)
            .then(pl.format("{} vote(s) < min_votes {}", "n_votes", pl.lit(options.min_votes)))
            .otherwise("reason"),
        )
        .filter(pl.col("decision") != DONE)
        .select(
            "task_id",
            "confidence",
            pl.col("n_votes").cast(pl.UInt32).alias("n_judgments"),
            "decision",
            "reason",
            (1.0 - pl.col("confidence").fill_null(0.0)).alias("priority"),
        )
        .sort(["priority", "task_id"], descending=[True, False])
    )


_QUEUE_OWN = ("task_id", "confidence", "n_judgments", "decision", "reason", "priority")
