"""Result of aggregating one kind of annotation."""

# ruff: noqa: E501

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class KindAggregation:
    labels: pl.DataFrame  # one row per task: task_id, <value column(s)> holding the aggregate, confidence (Float64 in [0,1]); numeric adds lo, hi; spans/boxes: each struct gains `confidence`
    annotators: pl.DataFrame  # one row per annotator: annotator_id, reliability (Float64; the model's skill/weight), n_judgments, plus kind-specific columns (e.g. box looseness, bias, noise)
    method: str
    converged: bool
    iterations: int
