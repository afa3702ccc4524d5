"""Replay recorded judgments as if they were arriving, through the policy the pipeline runs.

Rows are the judgments annotators would give, in arrival order. Every task starts with its
first `min_votes` rows; after each round the policy (`policy.decide`) reads the confidence
function's per-task confidence, and each request reveals that task's next unseen row. A task
with no rows left is done. The replay ends when the policy asks for nothing or the budget (a
share of the rows) is spent. When the first `min_votes` rows of every task exceed the budget,
tasks start with fewer (`_initial_reveal`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from annotation_pipelines.loop.policy import (
    DEFERRED,
    DONE,
    NEEDS_ANOTHER_JUDGMENT,
    RECOMMENDED,
    ConfidenceFunction,
    PolicyOptions,
    budget_judgments,
    decide,
)


@dataclass(frozen=True)
class ReplayResult:
    """Final labels (`task_id`, `label`, `confidence`), what was spent, and how it went."""

    labels: pl.DataFrame
    judgments_used: int
    judgments_available: int
    tasks: int
    rounds: int
    options: PolicyOptions
    decisions: dict[str, int] = field(default_factory=dict)
    # Of the tasks `done`, those that ran out of recorded judgments below the target confidence.
    exhausted: int = 0
    # The revealed judgments, in file order: what a live project would have paid for.
    revealed: pl.DataFrame | None = None
    # Tasks the budget paid no judgment for (empty label, confidence 0, counted `deferred`).
    tasks_unlabelled: int = 0

    def summary(self) -> dict[str, object]:
        """The standard-output JSON of `annotation-pipelines replay`."""
        return {
            "judgments_used": self.judgments_used,
            "judgments_available": self.judgments_available,
            "share_used": self.judgments_used / max(self.judgments_available, 1),
            "tasks": self.tasks,
            "rounds": self.rounds,
            **self.options.as_dict(),
            "decisions": self.decisions,
            "exhausted": self.exhausted,
            "tasks_unlabelled": self.tasks_unlabelled,
        }


def replay(
    judgments: pl.DataFrame,
    *,
    confidence: ConfidenceFunction,
    options: PolicyOptions | None = None,
) -> ReplayResult:
    """Replay `judgments` (`task_id` plus the kind's columns, in arrival order) under
    `options` (default: `policy.RECOMMENDED`)."""
    options = options or RECOMMENDED
    if "task_id" not in judgments.columns:
        raise ValueError(f"judgments: missing column task_id; have {', '.join(judgments.columns)}")
    if judgments.height == 0:
        raise ValueError("judgments: no rows to replay")
    ordered = judgments.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).over("task_id").alias("_rank"),
        pl.col("task_id").rank("dense").cast(pl.Int64).sub(1).alias("_task"),
    )
    rank = ordered.get_column("_rank").to_numpy()
    task = ordered.get_column("_task").to_numpy()
    n_tasks = int(task.max()) + 1
    available = np.bincount(task, minlength=n_tasks)
    budget = budget_judgments(judgments.height, options)
    if budget < 1:
        raise ValueError(
            f"budget {options.budget:g} pays no judgment of {judgments.height} "
            f"(at least {1 / judgments.height:.6g} pays one)"
        )
    revealed = _initial_reveal(rank, task, n_tasks, options.min_votes, budget)
    rounds = 0
    content = judgments.columns
    while True:
        visible_mask = rank < revealed[task]
        visible = ordered.filter(pl.Series(visible_mask))
        used = int(visible_mask.sum())
        per_task = confidence(visible.select(content))
        rounds += 1
        codes = (
            per_task.select("task_id")
            .join(
                visible.select("task_id", "_task").unique("task_id"),
                on="task_id",
                how="left",
                maintain_order="left",
            )
            .get_column("_task")
            .to_numpy()
        )
        exhausted = revealed[codes] >= available[codes]
        decided = decide(
            per_task.with_columns(exhausted=pl.Series(exhausted)),
            options,
            budget_left=budget - used,
        )
        wanted = decided.get_column("decision").to_numpy() == NEEDS_ANOTHER_JUDGMENT
        if not wanted.any():
            break
        revealed[codes[wanted]] += 1
    below_target = decided.get_column("confidence").to_numpy() < options.target_confidence
    done = decided.get_column("decision").to_numpy() == DONE
    labels = per_task.select("task_id", "label", "confidence")
    # A budget below one judgment per task leaves tasks unseen: they are still written, with
    # no label and no confidence, so the output covers every task the JSON counts.
    unseen = (
        ordered.filter(pl.Series(revealed[task] == 0))
        .select("task_id")
        .unique(maintain_order=True)
        .with_columns(
            label=pl.lit(None, labels.schema["label"]), confidence=pl.lit(0.0, pl.Float64)
        )
    )
    decisions = Counter(decided.get_column("decision").to_list())
    if unseen.height:
        labels = pl.concat([labels, unseen.cast(labels.schema)], how="vertical")
        decisions[DEFERRED] += unseen.height
    return ReplayResult(
        labels=labels,
        judgments_used=used,
        judgments_available=judgments.height,
        tasks=n_tasks,
        rounds=rounds,
        options=options,
        decisions=dict(sorted(decisions.items())),
        revealed=visible.select(content),
        exhausted=int((done & exhausted & below_target).sum()),
        tasks_unlabelled=unseen.height,
    )


def _initial_reveal(
    rank: np.ndarray, task: np.ndarray, n_tasks: int, min_votes: int, budget: int
) -> np.ndarray:
    """Rows revealed per task before the first round: `min_votes` each (all its rows when it
    has fewer), within the budget.

    When the budget cannot pay that, every task starts with as many as it can pay evenly (at
    least one), and the policy places the rest: on a budget, a second vote is worth more on a
    task whose first votes disagree than on one whose votes agree (Sheng, Provost and
    Ipeirotis, "Get another label?", KDD 2008). When even one vote per task exceeds the
    budget, first votes are revealed in file order until it is spent.
    """
    first = rank < min_votes
    if int(first.sum()) <= budget:
        return np.bincount(task[first], minlength=n_tasks)
    start = max(1, min(min_votes, budget // max(n_tasks, 1)))
    first = rank < start
    if int(first.sum()) > budget:
        rows = np.flatnonzero(first)
        order = rows[np.lexsort((rows, rank[rows]))][:budget]
        first = np.zeros_like(first)
        first[order] = True
    return np.bincount(task[first], minlength=n_tasks)
