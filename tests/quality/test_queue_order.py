"""The re-annotation queue on demo-like synthetic data: its top is ordered by signal, not by id."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from annotation_pipelines.aggregation import fit
from annotation_pipelines.quality import (
    annotator_scorecards,
    in_queue_order,
    item_disagreement,
    reannotation_queue,
)
from annotation_pipelines.synthetic import generate_workload

DAY = date(2026, 11, 16)
TOP = 100
# What orders the queue before the task id: the reason's priority, then the second signals.
SERVED = ["priority", "uncertainty", "weighted_support", "entropy", "n_votes", "waiting_since"]


@pytest.fixture(scope="module")
def demo_day(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    out = tmp_path_factory.mktemp("workload")
    generate_workload(out, judgments=20_000, start=DAY, days=1, seed=3)
    judgments = pl.read_parquet(out / "judgments" / f"day={DAY}" / "*.parquet")
    gold = pl.read_parquet(out / "gold_labels" / f"day={DAY}" / "*.parquet")
    labels = []
    for (project,), rows in judgments.group_by("project", maintain_order=True):
        project_gold = gold.filter(pl.col("project") == project).select("task_id", "label")
        result = fit(rows.select("task_id", "annotator_id", "label"), "auto", gold=project_gold)
        labels.append(
            result.labels.select(
                "task_id", "label", "confidence", "n_votes", "is_tie"
            ).with_columns(project=pl.lit(project), method=pl.lit(result.method))
        )
    return judgments, pl.concat(labels), gold.select("task_id", "project", "label")


def _sort_key_ties(queue: pl.DataFrame, key: list[str]) -> float:
    """Largest share, over projects, of the top rows that share their whole `key` with another."""
    shares = []
    for _, rows in queue.group_by("project"):
        top = in_queue_order(rows).head(TOP)
        shares.append(top.select(key).is_duplicated().mean())
    return max(shares)


def test_the_top_of_the_queue_rarely_ties(demo_day):
    judgments, aggregated, gold = demo_day
    cards = annotator_scorecards(judgments, aggregated, gold)
    queue = reannotation_queue(
        item_disagreement(judgments), aggregated, gold, scorecards=cards, judgments=judgments
    )
    assert queue.height > 3 * TOP
    # The reason's priority alone ties heavily (a whole class of tasks gets 1.0 or 0.9) ...
    assert _sort_key_ties(queue, ["priority"]) > 0.3
    # ... the order the queue is served in (priority, then the second signal) almost never.
    assert _sort_key_ties(queue, SERVED) < 0.05
    # The queue comes in that order; an asset's per-project order keeps it within a project.
    assert queue.equals(in_queue_order(queue))
    by_project = in_queue_order(queue, per_project=True)
    for (project,), rows in by_project.group_by("project", maintain_order=True):
        assert rows.equals(queue.filter(pl.col("project") == project))
