"""Result of aggregating one kind of annotation."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class KindAggregation:
    """What every kind's aggregation returns.

    `labels`: one row per task — `task_id`, the kind's value column(s) holding the aggregate,
    and `confidence` in [0, 1]; numeric adds `lo` and `hi`; each span and box struct gains its
    own `confidence`. For pairwise, one row per item: `item`, `score`, `lo`, `hi`.
    `annotators`: one row per annotator — `annotator_id`, `reliability` (the model's weight or
    skill), `n_judgments`, plus the kind's own columns (a box drawer's looseness, a rater's
    bias and noise).
    `set_aside`: judgments the model left out of its fit as gross errors (numeric
    `bias_noise`: `row`, the judgment's 0-based position in the input, `task_id`,
    `annotator_id`, `value`), empty when none was; None for methods that set nothing aside.
    """

    labels: pl.DataFrame
    annotators: pl.DataFrame
    method: str
    converged: bool
    iterations: int
    set_aside: pl.DataFrame | None = None
