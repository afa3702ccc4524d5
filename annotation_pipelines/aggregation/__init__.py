"""Label aggregation (truth inference): from many judgments per task to one label per task.

`aggregate(judgments, method)` is the stable entry point (task_id, label, confidence);
`fit(...)` returns an `AggregationResult` with posteriors, annotator parameters and how the
fit went. Numeric ratings, multi-label tasks and pairwise preferences have their own
functions. Every categorical method is declared once in `registry`. The engine never
imports dagster.
"""

from annotation_pipelines.aggregation.api import aggregate, fit
from annotation_pipelines.aggregation.multilabel import aggregate_multilabel
from annotation_pipelines.aggregation.numeric import aggregate_numeric
from annotation_pipelines.aggregation.pairwise import bradley_terry
from annotation_pipelines.aggregation.registry import (
    AUTO_CANDIDATES,
    CATEGORICAL_METHODS,
    METHODS,
    REGISTRY,
    Method,
)
from annotation_pipelines.aggregation.result import AggregationResult

__all__ = [
    "AUTO_CANDIDATES",
    "CATEGORICAL_METHODS",
    "METHODS",
    "REGISTRY",
    "AggregationResult",
    "Method",
    "aggregate",
    "aggregate_multilabel",
    "aggregate_numeric",
    "bradley_terry",
    "fit",
]
