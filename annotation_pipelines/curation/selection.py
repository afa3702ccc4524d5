"""Which aggregated tasks enter a curated dataset, and how duplicates collapse."""

from __future__ import annotations

import polars as pl


def select_tasks(
    aggregated: pl.DataFrame,
    *,
    min_confidence: float = 0.7,
    min_votes: int = 2,
    gold: pl.DataFrame | None = None,
    include_gold: bool = False,
) -> pl.DataFrame:
    """Keep tasks whose aggregated label is confident and well supported.

    `aggregated` has `task_id`, `label`, `confidence`, `n_votes`. Gold (honeypot) tasks are kept
    out unless `include_gold`: they are what annotators are measured on, and training on them
    leaks the evaluation. Returns the kept rows with a `selected_reason` column for the card.
    """
    kept = aggregated.filter(
        (pl.col("confidence") >= min_confidence) & (pl.col("n_votes") >= min_votes)
    )
    if gold is not None and not include_gold and gold.height:
        kept = kept.join(gold.select("task_id").unique(), on="task_id", how="anti")
    return kept


def deduplicate(frame: pl.DataFrame, *, key: str = "payload_hash") -> pl.DataFrame:
    """Collapse rows with the same item content to one, keeping every task id as provenance.

    The survivor is the most confident row (ties: smallest task id, so the result is
    deterministic); `duplicate_task_ids` lists all task ids that carried the same content.
    Rows without a content hash (tasks without a payload) are not duplicates of each other:
    each stays, with itself as its only provenance.
    """
    hashed = frame.filter(pl.col(key).is_not_null())
    ordered = hashed.sort([key, "confidence", "task_id"], descending=[False, True, False])
    provenance = ordered.group_by(key, maintain_order=True).agg(
        pl.col("task_id").sort().alias("duplicate_task_ids")
    )
    survivors = ordered.unique(key, keep="first", maintain_order=True).join(
        provenance, on=key, how="left"
    )
    unhashed = frame.filter(pl.col(key).is_null()).with_columns(
        duplicate_task_ids=pl.concat_list(pl.col("task_id"))
    )
    return pl.concat([survivors, unhashed.select(survivors.columns)])
