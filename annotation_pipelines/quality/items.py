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
    counts = (
        judged.group_by("project", "task_id", "label")
        .agg(pl.len().alias("votes"), pl.col("day").max())
        .sort(["project", "task_id", "votes", "label"], descending=[False, False, True, False])
    )
    items = counts.group_by(["project", "task_id"], maintain_order=True).agg(
        pl.col("day").max(),
        pl.col("votes").sum().alias("n_votes"),
        pl.len().alias("n_labels"),
        pl.col("label").first().alias("top_label"),
        pl.col("votes").first().alias("top_votes"),
        pl.col("votes").get(1, null_on_oob=True).fill_null(0).alias("second_votes"),
        (
            -(pl.col("votes") / pl.col("votes").sum())
            * (pl.col("votes") / pl.col("votes").sum()).log(2)
        )
        .sum()
        .alias("entropy"),
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
        # −0.0 for unanimous tasks reads oddly in a report.
        pl.col("entropy").abs(),
        pl.col("normalized_entropy").abs(),
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
    so the most urgent reason decides; ties go to the higher entropy. `limit` keeps the top
    rows. Extras: label, confidence, n_votes.
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
    frame = frame.with_columns(_flagged_share(scorecards, judgments, frame).alias("flagged_share"))
    scores = {
        "tie": pl.when(pl.col("is_tie").fill_null(False)).then(1.0),
        "gold_disagreement": pl.when(
            pl.col("gold_label").is_not_null()
            & pl.col("label").is_not_null()
            & (pl.col("gold_label") != pl.col("label"))
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
    ).sort(["priority", "entropy", "task_id"], descending=[True, True, False])
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
