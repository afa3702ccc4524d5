"""Aggregate any kind of annotation through one call: the registry picks the method.

Categorical judgments go through `fit` (every categorical method, `auto` by default, calibrated
confidence); every other kind through the method `registry.KIND_REGISTRY` declares for it.
Both return a `KindAggregation`, so assets, the CLI and the replay read one shape.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from annotation_pipelines.aggregation.kinds_result import KindAggregation
from annotation_pipelines.aggregation.registry import AUTO, kind_method
from annotation_pipelines.kinds import check_kind


def aggregate_kind(
    judgments: pl.DataFrame,
    *,
    kind: str,
    method: str | None = None,
    gold: pl.DataFrame | None = None,
    **options: Any,
) -> KindAggregation:
    """One aggregate per task (pairwise: per item) with its confidence, and annotator weights.

    `judgments` has `task_id`, `annotator_id` and the kind's value column(s)
    (`annotation_pipelines.kinds.VALUE_COLUMNS`); `gold` the same for known answers. `options`
    reach the kind's aggregator (e.g. `iou_threshold` for boxes, `texts` for spans).
    """
    check_kind(kind)
    if kind == "categorical":
        from annotation_pipelines.aggregation.api import fit

        result = fit(judgments, method or AUTO, gold=gold, **options)
        annotators = result.annotators.rename({"skill": "reliability"}, strict=False)
        return KindAggregation(
            labels=result.labels.select("task_id", "label", "confidence"),
            annotators=annotators,
            method=result.method,
            converged=result.converged,
            iterations=result.iterations,
        )
    declared = kind_method(kind, method)
    return declared.aggregate(judgments, method=declared.name, gold=gold, **options)
