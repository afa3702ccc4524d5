"""A small crowd with known truth: tasks of mixed difficulty, annotators of mixed skill."""

from __future__ import annotations

import numpy as np
import polars as pl


def crowd(
    *, n_tasks: int = 300, votes: int = 9, n_annotators: int = 30, seed: int = 7
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(judgments in arrival order, truth); every task has `votes` judgments."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_tasks)
    skill = rng.uniform(0.6, 0.9, n_annotators)
    rows = []
    for task in range(n_tasks):
        for annotator in rng.choice(n_annotators, size=votes, replace=False):
            right = rng.random() < skill[annotator]
            label = truth[task] if right else 1 - truth[task]
            rows.append((f"t{task:04d}", f"w{annotator:02d}", f"c{label}"))
    rng.shuffle(rows := np.array(rows, dtype=object))
    # Arrival order: shuffled, so each task's judgments arrive interleaved with others'.
    judgments = pl.DataFrame(
        rows.tolist(), schema=["task_id", "annotator_id", "label"], orient="row"
    )
    truth_frame = pl.DataFrame(
        {"task_id": [f"t{task:04d}" for task in range(n_tasks)], "label": [f"c{v}" for v in truth]}
    )
    return judgments, truth_frame
