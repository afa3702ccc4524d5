"""Consensus labels for gold tasks fitted without their own gold (K-fold cross-fitting).

Gold-aware aggregation clamps each gold task to its known label, so scoring the aggregated
labels against gold measures nothing (1.0 by construction). Here the gold tasks are split
into K folds; each fold's consensus comes from a fit that sees the judgments of every task
and the gold of the other folds only. The model keeps what gold teaches it about annotators,
and no gold task is scored by a fit that knew its answer.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from annotation_pipelines.aggregation import aggregate
from annotation_pipelines.quality._common import require

HELD_OUT_CONSENSUS: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "label": pl.String(),
}


def held_out_gold_consensus(
    judgments: pl.DataFrame,
    gold: pl.DataFrame,
    *,
    methods: Mapping[str, str],
    default_method: str = "majority_vote",
    folds: int = 5,
    max_iter: int = 100,
    tol: float = 1e-5,
) -> pl.DataFrame:
    """Per gold task judged: the consensus label of a fit that did not see its gold.

    `methods` maps a project to the aggregation method its labels were made with (a concrete
    method, e.g. the one `auto` chose); other projects use `default_method`. Folds are fixed
    by the sorted task ids (task i goes to fold i mod K), so the result does not depend on
    row order or process. Columns HELD_OUT_CONSENSUS.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    require(judgments, "judgments", ("task_id", "project", "annotator_id", "label"))
    require(gold, "gold", ("task_id", "project", "label"))
    frames = []
    for (project,), rows in judgments.group_by("project", maintain_order=True):
        votes = rows.select("task_id", "annotator_id", "label").filter(
            pl.col("label").is_not_null()
        )
        known = (
            gold.filter(pl.col("project") == project)
            .unique("task_id", keep="last")
            .select("task_id", "label")
            .join(votes.select("task_id").unique(), on="task_id", how="semi")
            .sort("task_id")
            .with_row_index("position")
            .with_columns(fold=pl.col("position") % folds)
        )
        if known.height == 0:
            continue
        method = methods.get(str(project), default_method)
        for fold in range(min(folds, known.height)):
            held = known.filter(pl.col("fold") == fold)
            kept = known.filter(pl.col("fold") != fold).select("task_id", "label")
            labels = aggregate(
                votes,
                method,
                max_iter=max_iter,
                tol=tol,
                gold=kept if kept.height else None,
            )
            frames.append(
                labels.join(held.select("task_id"), on="task_id", how="semi")
                .select("task_id", "label")
                .with_columns(project=pl.lit(project, dtype=pl.String))
            )
    if not frames:
        return pl.DataFrame(schema=HELD_OUT_CONSENSUS)
    return (
        pl.concat(frames)
        .select([pl.col(name).cast(dtype) for name, dtype in HELD_OUT_CONSENSUS.items()])
        .sort("project", "task_id")
    )
