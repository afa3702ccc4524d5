"""The daily quality report: one row per project and day (schema.QUALITY_REPORT)."""

from __future__ import annotations

import polars as pl

from annotation_pipelines.agreement import agreement_summary
from annotation_pipelines.quality._common import require, with_day
from annotation_pipelines.schema import QUALITY_REPORT

INTERVAL_COLUMNS = [
    f"{metric}_{bound}"
    for metric in ("krippendorff_alpha", "fleiss_kappa", "percent_agreement")
    for bound in ("low", "high")
]


def quality_report(
    judgments: pl.DataFrame,
    aggregated: pl.DataFrame,
    gold: pl.DataFrame,
    *,
    scorecards: pl.DataFrame | None = None,
    held_out_consensus: pl.DataFrame | None = None,
    level: str = "nominal",
    n_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """Per (project, day): counts, agreement, gold accuracy and the share of flagged annotators.

    Agreement is Krippendorff's alpha at `level`, Fleiss' kappa and percent agreement over
    the day's judgments (see annotation_pipelines.agreement); with `n_resamples` > 0 the
    extras `<metric>_low/_high` hold a bootstrap interval over tasks. gold_accuracy is the
    share of judgments on gold tasks that match the gold label (n_gold_judgments of them);
    consensus_accuracy_on_gold the share of the day's gold tasks whose consensus label
    matches: taken from `held_out_consensus` (task_id, project, label; see
    `held_out_gold_consensus`) when given, else from `aggregated` — which is only honest when
    the aggregation did not use the gold (a gold-aware fit clamps gold tasks to their label
    and scores 1.0 by construction). share_flagged_annotators comes from `scorecards` (null
    without them). Extras: n_gold_tasks, n_pairable_tasks (tasks with two or more judgments;
    0 means alpha is undefined), n_flagged_annotators, and the interval columns.
    """
    judged = with_day(judgments)
    require(aggregated, "aggregated", ("task_id", "project", "label"))
    require(gold, "gold", ("task_id", "project", "label"))
    gold_labels = gold.unique(["task_id", "project"], keep="last").select(
        "task_id", "project", pl.col("label").alias("gold_label")
    )
    scored = aggregated if held_out_consensus is None else held_out_consensus
    require(scored, "held_out_consensus", ("task_id", "project", "label"))
    consensus = scored.select("task_id", "project", pl.col("label").alias("consensus"))
    rows = []
    for (project, day), partition in judged.group_by(["project", "day"], maintain_order=True):
        summary = agreement_summary(
            partition,
            level=level,
            n_resamples=n_resamples,
            confidence=confidence,
            seed=seed,
        )
        on_gold = partition.join(gold_labels, on=["task_id", "project"], how="inner")
        gold_tasks = (
            on_gold.select("task_id", "project", "gold_label")
            .unique(["task_id", "project"])
            .join(consensus, on=["task_id", "project"], how="left")
        )
        row = {
            "project": project,
            "day": day,
            "n_tasks": summary["n_tasks"],
            "n_judgments": summary["n_judgments"],
            "n_annotators": summary["n_annotators"],
            "percent_agreement": summary["percent_agreement"],
            "krippendorff_alpha": summary["krippendorff_alpha"],
            "fleiss_kappa": summary["fleiss_kappa"],
            "gold_accuracy": (on_gold["label"] == on_gold["gold_label"]).mean()
            if on_gold.height
            else None,
            "n_gold_judgments": on_gold.height,
            "consensus_accuracy_on_gold": (gold_tasks["consensus"] == gold_tasks["gold_label"])
            .fill_null(False)
            .mean()
            if gold_tasks.height
            else None,
            "n_gold_tasks": gold_tasks.height,
            "n_pairable_tasks": summary["n_pairable_tasks"],
        }
        row.update({column: summary.get(column) for column in INTERVAL_COLUMNS})
        rows.append(row)
    schema = {
        **QUALITY_REPORT,
        "n_gold_tasks": pl.UInt32(),
        "n_pairable_tasks": pl.UInt32(),
        **dict.fromkeys(INTERVAL_COLUMNS, pl.Float64()),
    }
    report = pl.DataFrame(
        [{k: v for k, v in row.items() if k in schema} for row in rows],
        schema={k: v for k, v in schema.items() if k != "share_flagged_annotators"},
    )
    if scorecards is not None and scorecards.height:
        require(scorecards, "scorecards", ("project", "day", "flagged"))
        flagged = scorecards.group_by("project", pl.col("day").cast(pl.Date)).agg(
            pl.col("flagged").mean().alias("share_flagged_annotators"),
            pl.col("flagged").sum().cast(pl.UInt32).alias("n_flagged_annotators"),
        )
        report = report.join(flagged, on=["project", "day"], how="left")
    else:
        report = report.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("share_flagged_annotators"),
            pl.lit(None, dtype=pl.UInt32).alias("n_flagged_annotators"),
        )
    return report.select(
        [pl.col(name).cast(dtype) for name, dtype in QUALITY_REPORT.items()]
        + ["n_gold_tasks", "n_pairable_tasks", "n_flagged_annotators", *INTERVAL_COLUMNS]
    ).sort("project", "day")
