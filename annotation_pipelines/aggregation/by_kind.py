"""Aggregate any kind of annotation through one call: the registry picks the method.

Categorical judgments go through `fit` (every categorical method, `auto` by default, calibrated
confidence); every other kind through the method `registry.KIND_REGISTRY` declares for it.
Both return a `KindAggregation`, so assets, the CLI and the replay read one shape.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import polars as pl

from annotation_pipelines.aggregation.kinds_result import KindAggregation
from annotation_pipelines.aggregation.registry import AUTO, kind_method
from annotation_pipelines.kinds import (
    VALUE_COLUMNS,
    boxes_and_gold_in_task_unit,
    check_kind,
)


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
    if kind == "boxes":
        judgments, gold = boxes_and_gold_in_task_unit(judgments, gold)
    aggregated = declared.aggregate(judgments, method=declared.name, gold=gold, **options)
    if kind in _GOLD_REPLACES_AGGREGATE and gold is not None and gold.height:
        aggregated = replace(aggregated, labels=gold_answers(kind, aggregated.labels, gold))
    return aggregated


# The kinds whose own fit does not already return a gold task's answer at confidence 1: their
# methods use gold to judge annotators, or anchor it with a finite weight (boxes) or cut it at
# the crowd's span boundaries (spans); numeric's plain statistics ignore it, and bias-and-noise
# clips it to the answers' range. Pairwise aggregates items, not tasks.
_GOLD_REPLACES_AGGREGATE = frozenset({"numeric", "multilabel", "ranking", "spans", "boxes", "text"})


def gold_answers(kind: str, labels: pl.DataFrame, gold: pl.DataFrame) -> pl.DataFrame:
    """`labels` (one row per task, as the kind's method returns them) with each gold task's
    value replaced by its gold answer at confidence 1: a gold task's value is known, so the
    crowd's consensus, however confident, is not its answer, and the policy asks nothing more
    for it. Spans and boxes get confidence 1 on each gold item; a multilabel task's class
    probabilities are 1 for the gold classes and 0 for the others."""
    (column,) = VALUE_COLUMNS[kind]
    dtype = labels.schema[column]
    answer = pl.col(column)
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        names = [f.name for f in dtype.inner.fields]
        fields = [
            (pl.element().struct.field(name) if name != "confidence" else pl.lit(1.0)).alias(name)
            for name in names
        ]
        answer = answer.list.eval(pl.struct(*fields))
    known = (
        gold.select(pl.col("task_id").cast(labels.schema["task_id"]), answer.alias("_gold"))
        .filter(pl.col("_gold").is_not_null())
        .unique("task_id", keep="first", maintain_order=True)
        .with_columns(pl.col("_gold").cast(dtype), _is_gold=pl.lit(True))
    )
    joined = labels.join(known, on="task_id", how="left", maintain_order="left")
    is_gold = pl.col("_is_gold").fill_null(False)
    replaced = [
        pl.when(is_gold).then(pl.col("_gold")).otherwise(pl.col(column)).alias(column),
        pl.when(is_gold).then(1.0).otherwise(pl.col("confidence")).alias("confidence"),
    ]
    # A known value has no interval around it.
    replaced += [
        pl.when(is_gold).then(pl.col("_gold")).otherwise(pl.col(bound)).alias(bound)
        for bound in ("lo", "hi")
        if kind == "numeric" and bound in labels.columns
    ]
    probability = labels.schema.get("probability")
    if kind == "multilabel" and isinstance(probability, pl.Struct):
        classes = [f.name for f in probability.fields]
        if classes:
            replaced.append(
                pl.when(is_gold)
                .then(
                    pl.struct(
                        pl.col("_gold").list.contains(pl.lit(name)).cast(pl.Float64).alias(name)
                        for name in classes
                    )
                )
                .otherwise(pl.col("probability"))
                .alias("probability")
            )
    return joined.with_columns(replaced).select(labels.columns).cast(labels.schema)
