"""Label aggregation (truth inference): from many judgments per task to one label per task.

`aggregate(judgments, method)` is the stable entry point (task_id, label, confidence);
`fit(...)` returns an `AggregationResult` with posteriors, annotator parameters and how the
fit went. Numeric ratings, multi-label tasks and pairwise preferences have their own
functions. Every categorical method is declared once in `registry`. The engine never
imports dagster.
"""

from annotation_pipelines.lazy_exports import lazy_exports

# Each name is imported from its module on first use, so importing one submodule (the CLI's
# `command`) does not import its siblings.
__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "api": ("aggregate", "fit"),
        "multilabel": ("aggregate_multilabel",),
        "numeric": ("aggregate_numeric",),
        "pairwise": ("bradley_terry",),
        "registry": ("AUTO_CANDIDATES", "CATEGORICAL_METHODS", "METHODS", "REGISTRY", "Method"),
        "result": ("AggregationResult",),
    },
)
