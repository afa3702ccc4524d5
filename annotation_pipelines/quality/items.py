"""Per-task disagreement and the re-annotation queue."""

from __future__ import annotations

import polars as pl

from annotation_pipelines.quality._common import require, with_day
from annotation_pipelines.schema import REANNOTATION_QUEUE

ITEM_DISAGREEMENT: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "task_id": pl.String(),
    "n_votes": pl.UInt32(),
    "n_labels": pl.UInt32(),
    "top_label": pl.String(),
    "top_share": pl.Float64(),
    "entropy": pl.Float64(),
    "normalized_entropy": pl.Float64(),
    "margin": pl.Float64(),
    "contested": pl.Boolean(),
}

# Reason -> why it is queued; the queue's `reason` lists them in this order.
REASONS = {
    "tie": "the aggregated label is a tie",
    "gold_disagreement": "the consensus contradicts the gold label",
    "contested": "votes are split (small margin)",
    "low_confidence": "the aggregated label's confidence is low",
    "flagged_annotators": "most votes come from flagged annotators",
    "too_few_votes": "fewer votes than required",
}

# The order the queue is served in (column, descending): the most urgent reason first, then
# the least certain label by the model, then the label with the least reliable backing, the
# most split votes, the fewest votes; equal evidence goes first in, first out (the task whose
# first judgment is oldest), and the task id makes the order total.
QUEUE_ORDER: tuple[tuple[str, bool], ...] = (
    ("priority", True),
    ("uncertainty", True),
    ("weighted_support", False),
    ("entropy", True),
    ("n_votes", False),
    ("waiting_since", False),
    ("task_id", False),
)


def in_queue_order(queue: pl.DataFrame, *, per_project: bool = False) -> pl.DataFrame:
    """`queue` sorted in QUEUE_ORDER (grouped by project first with `per_project`)."""
    order = ((("project", False),) if per_project else ()) + QUEUE_ORDER
    return queue.sort([c for c, _ in order], descending=[d for _, d in order])


def item_disagreement(judgments: pl.DataFrame, *, contested_margin: float = 0.2) -> pl.DataFrame:
    """Per task: vote distribution entropy, margin between the two top labels, contested flag.

    entropy = −Σ p_c log₂ p_c over the task's vote shares (bits); normalized_entropy divides
    by log₂ of the number of labels seen in the project (0 = unanimous, 1 = uniform);
    margin = share of the top label − share of the runner-up (1 when unanimous); a task with
    ≥ 2 votes is contested when margin ≤ `contested_margin` (0.2 flags 3–2 splits of five
    votes and anything closer). `day` is the day of the task's latest judgment.
    """
    judged = with_day(judgments).filter(pl.col("label").is_not_null())
    label_count = judged.group_by("project").agg(pl.col("label").n_unique().alias("project_labels"))
    keys = ["project", "task_id"]
    counts = (
        judged.group_by("project", "task_id", "label")
        .agg(pl.len().alias("votes"), pl.col("day").max())
        .with_columns((pl.col("votes") * pl.col("votes").log(2)).alias("votes_log"))
    )
    # Only plain aggregations (sum, max, min, len): they take Polars' fast group-by paths,
    # where filters inside an aggregation would be evaluated group by group.
    per_task = counts.group_by(keys).agg(
        pl.col("day").max(),
        pl.col("votes").sum().alias("n_votes"),
        pl.len().alias("n_labels"),
        pl.col("votes").max().alias("top_votes"),
        pl.col("votes_log").sum(),
    )
    ranked = counts.join(per_task.select(*keys, "top_votes"), on=keys)
    top = (
        ranked.filter(pl.col("votes") == pl.col("top_votes"))
        .group_by(keys)
        .agg(pl.col("label").min().alias("top_label"), pl.len().alias("n_top"))
    )
    runner_up = (
        ranked.filter(pl.col("votes") < pl.col("top_votes"))
        .group_by(keys)
        .agg(pl.col("votes").max().alias("runner_up"))
    )
    total = pl.col("n_votes").cast(pl.Float64)
    items = (
        per_task.join(top, on=keys)
        .join(runner_up, on=keys, how="left")
        .with_columns(
            # The runner-up count is the top count again when the top is shared.
            pl.when(pl.col("n_top") > 1)
            .then(pl.col("top_votes"))
            .otherwise(pl.col("runner_up").fill_null(0))
            .alias("second_votes"),
            # H = log2 N − Σ v log2 v / N for vote counts v summing to N.
            (total.log(2) - pl.col("votes_log") / total).alias("entropy"),
        )
    )
    items = items.join(label_count, on="project").with_columns(
        (pl.col("top_votes") / pl.col("n_votes")).alias("top_share"),
        ((pl.col("top_votes") - pl.col("second_votes")) / pl.col("n_votes")).alias("margin"),
        pl.when(pl.col("project_labels") > 1)
        .then(pl.col("entropy") / pl.col("project_labels").cast(pl.Float64).log(2))
        .otherwise(0.0)
        .alias("normalized_entropy"),
    )
    items = items.with_columns(
        ((pl.col("n_votes") >= 2) & (pl.col("margin") <= contested_margin)).alias("contested"),
        # Rounding can leave −1e−16 for unanimous tasks; entropy is never negative.
        pl.col("entropy").clip(lower_bound=0.0),
        pl.col("normalized_entropy").clip(lower_bound=0.0),
    )
    return items.select(
        [pl.col(name).cast(dtype) for name, dtype in ITEM_DISAGREEMENT.items()]
    ).sort("project", "day", "task_id")


def reannotation_queue(
    items: pl.DataFrame,
    aggregated: pl.DataFrame,
    gold: pl.DataFrame | None = None,
    *,
    scorecards: pl.DataFrame | None = None,
    judgments: pl.DataFrame | None = None,
    min_confidence: float = 0.6,
    max_flagged_share: float = 0.5,
    min_votes: int = 2,
    limit: int | None = None,
) -> pl.DataFrame:
    """Tasks to send back, with every reason and a priority in [0, 1]; schema.REANNOTATION_QUEUE.

    Reasons (see REASONS) and the priority each one gives: tie 1.0; gold_disagreement 0.9;
    contested 0.5 + 0.5·normalized entropy; low_confidence (aggregated confidence below
    `min_confidence`) 1 − confidence; flagged_annotators (share of the task's votes from
    annotators flagged in `scorecards` ≥ `max_flagged_share`; needs `judgments`) that share;
    too_few_votes (< `min_votes`) 0.5. A task's priority is the largest of its reasons',
    so the most urgent reason decides. Whole classes of tasks share a priority (every tie is
    1.0), so the queue is served in QUEUE_ORDER: within a priority, the task whose label the
    aggregation model is least sure of comes first (`uncertainty` = 1 − the posterior
    confidence of its label, 1 without a label); then, since a vote-counting model gives every
    3–2 split the same confidence, the label with the weakest reliable backing
    (`weighted_support`, see below); then the higher vote entropy, then the fewer votes;
    tasks with equal evidence (the same annotators voting the same way) go oldest first
    (`waiting_since`, the task's first judgment; needs `judgments` with `submitted_at`).
    `limit` keeps the top rows. Extras: label, confidence, n_votes, uncertainty,
    weighted_support, waiting_since.

    weighted_support = (R_label + 1) / (R_all + L): R sums the reliability of the annotators
    who voted for the task's label (R_label) or at all (R_all), L is the number of labels seen
    in the project (Laplace smoothing, so a lone vote is not full support). An annotator's
    reliability is their `consensus_agreement` on the day's scorecard (0.5 when unknown);
    without `scorecards` and `judgments` every annotator counts 1.
    """
    require(items, "items", ("project", "day", "task_id", "n_votes", "entropy", "margin"))
    require(aggregated, "aggregated", ("task_id", "project", "label", "confidence", "is_tie"))
    frame = items.join(
        aggregated.select(
            "task_id", "project", "label", pl.col("confidence").cast(pl.Float64), "is_tie"
        ),
        on=["task_id", "project"],
        how="left",
    )
    if gold is not None and gold.height:
        require(gold, "gold", ("task_id", "project", "label"))
        frame = frame.join(
            gold.unique(["task_id", "project"], keep="last").select(
                "task_id", "project", pl.col("label").alias("gold_label")
            ),
            on=["task_id", "project"],
            how="left",
        )
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("gold_label"))
    frame = frame.with_columns(
        _flagged_share(scorecards, judgments, frame).alias("flagged_share"),
        _weighted_support(scorecards, judgments, frame).alias("weighted_support"),
        _waiting_since(judgments, frame).alias("waiting_since"),
    )
    scores = {
        "tie": pl.when(pl.col("is_tie").fill_null(False)).then(1.0),
        # The crowd against gold: the aggregation writes a gold task's gold label whatever the
        # method, so its label cannot disagree; the votes' unique plurality still can.
        "gold_disagreement": pl.when(
            pl.col("gold_label").is_not_null()
            & (
                (pl.col("label").is_not_null() & (pl.col("gold_label") != pl.col("label")))
                | (
                    pl.col("top_label").is_not_null()
                    & (pl.col("margin") > 0)
                    & (pl.col("gold_label") != pl.col("top_label"))
                )
            )
        ).then(0.9),
        "contested": pl.when(pl.col("contested")).then(0.5 + 0.5 * pl.col("normalized_entropy")),
        "low_confidence": pl.when(pl.col("confidence") < min_confidence).then(
            1.0 - pl.col("confidence")
        ),
        "flagged_annotators": pl.when(pl.col("flagged_share") >= max_flagged_share).then(
            pl.col("flagged_share")
        ),
        "too_few_votes": pl.when(pl.col("n_votes") < min_votes).then(0.5),
    }
    frame = frame.with_columns(
        pl.concat_list(
            [pl.when(score.is_not_null()).then(pl.lit(name)) for name, score in scores.items()]
        )
        .list.drop_nulls()
        .list.join(",")
        .alias("reason"),
        pl.max_horizontal(*scores.values()).alias("priority"),
    ).filter(pl.col("priority").is_not_null())
    queue = frame.select(
        [pl.col(name).cast(dtype) for name, dtype in REANNOTATION_QUEUE.items()]
        + ["label", "confidence", pl.col("n_votes").cast(pl.UInt32)]
        + [
            (1.0 - pl.col("confidence").fill_null(0.0)).alias("uncertainty"),
            "weighted_support",
            "waiting_since",
        ]
    )
    queue = in_queue_order(queue)
    return queue if limit is None else queue.head(limit)


def _flagged_share(
    scorecards: pl.DataFrame | None, judgments: pl.DataFrame | None, frame: pl.DataFrame
) -> pl.Series:
    if scorecards is None or judgments is None or scorecards.height == 0:
        return pl.Series("flagged_share", [None] * frame.height, dtype=pl.Float64)
    flagged = scorecards.filter(pl.col("flagged")).select("project", "day", "annotator_id")
    if flagged.height == 0:
        return pl.Series("flagged_share", [0.0] * frame.height, dtype=pl.Float64)
    shares = (
        with_day(judgments)
        .join(
            flagged.with_columns(pl.lit(True).alias("by_flagged")),
            on=["project", "day", "annotator_id"],
            how="left",
        )
        .group_by("project", "task_id")
        .agg(pl.col("by_flagged").fill_null(False).mean().alias("flagged_share"))
    )
    return (
        frame.select("project", "task_id")
        .join(shares, on=["project", "task_id"], how="left", maintain_order="left")
        .get_column("flagged_share")
    )


def _weighted_support(
    scorecards: pl.DataFrame | None, judgments: pl.DataFrame | None, frame: pl.DataFrame
) -> pl.Series:
    if judgments is None or judgments.height == 0:
        return pl.Series("weighted_support", [None] * frame.height, dtype=pl.Float64)
    judged = with_day(judgments).filter(pl.col("label").is_not_null())
    if scorecards is not None and scorecards.height and "consensus_agreement" in scorecards.columns:
        reliability = scorecards.select(
            "project",
            pl.col("day").cast(pl.Date),
            "annotator_id",
            pl.col("consensus_agreement").clip(0.0, 1.0).alias("reliability"),
        )
        judged = judged.join(
            reliability, on=["project", "day", "annotator_id"], how="left"
        ).with_columns(pl.col("reliability").fill_null(0.5))
    else:
        judged = judged.with_columns(reliability=pl.lit(1.0))
    labels = judged.group_by("project").agg(pl.col("label").n_unique().alias("n_project_labels"))
    per_task = (
        judged.join(
            frame.select("project", "task_id", pl.col("label").alias("task_label")),
            on=["project", "task_id"],
        )
        .group_by("project", "task_id")
        .agg(
            pl.col("reliability")
            .filter(pl.col("label") == pl.col("task_label"))
            .sum()
            .alias("r_label"),
            pl.col("reliability").sum().alias("r_all"),
        )
        .join(labels, on="project")
        .with_columns(
            ((pl.col("r_label") + 1.0) / (pl.col("r_all") + pl.col("n_project_labels"))).alias(
                "weighted_support"
            )
        )
    )
    return (
        frame.select("project", "task_id")
        .join(per_task, on=["project", "task_id"], how="left", maintain_order="left")
        .get_column("weighted_support")
    )


def _waiting_since(judgments: pl.DataFrame | None, frame: pl.DataFrame) -> pl.Series:
    if judgments is None or "submitted_at" not in judgments.columns:
        return pl.Series("waiting_since", [None] * frame.height, dtype=pl.Datetime("us", "UTC"))
    first = judgments.group_by("project", "task_id").agg(
        pl.col("submitted_at").min().alias("waiting_since")
    )
    return (
        frame.select("project", "task_id")
        .join(first, on=["project", "task_id"], how="left", maintain_order="left")
        .get_column("waiting_since")
    )
