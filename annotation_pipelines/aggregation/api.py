"""`aggregate` (the fixed contract) and `fit` (the full result); the methods are in `registry`."""

from __future__ import annotations

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.auto import choose_method
from annotation_pipelines.aggregation.calibration import calibrate
from annotation_pipelines.aggregation.encoding import Encoded, encode
from annotation_pipelines.aggregation.registry import AUTO, METHODS, run_kernel
from annotation_pipelines.aggregation.result import AggregationResult, build_result
from annotation_pipelines.aggregation.warm_start import WarmStart, warm_start_from


def aggregate(
    judgments: pl.DataFrame,
    method: str = "dawid_skene",
    *,
    max_iter: int = 100,
    tol: float = 1e-5,
    gold: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per task: `task_id`, `label` (both as in the input) and `confidence`.

    `judgments` has `task_id`, `annotator_id`, `label`; `gold` (optional) has `task_id`,
    `label`. `method` is one of `METHODS`. See `fit` for the full result.
    """
    result = fit(judgments, method, max_iter=max_iter, tol=tol, gold=gold)
    return result.labels.select("task_id", "label", "confidence")


def fit(
    judgments: pl.DataFrame,
    method: str = "dawid_skene",
    *,
    max_iter: int = 100,
    tol: float = 1e-5,
    gold: pl.DataFrame | None = None,
    incumbent: str | None = None,
    warm_start: WarmStart | None = None,
    diagonal_pseudo_count: float = 0.0,
    label_set: pl.Series | None = None,
) -> AggregationResult:
    """Aggregate with `method` and return labels, posteriors, annotator parameters and fit facts.

    `max_iter` and `tol` apply to the iterative methods (for `mace`, `max_iter` caps its
    fixed 50 variational iterations; `zero_based_skill` runs a fixed `max_iter` schedule).
    With `gold`, gold-aware methods clamp gold tasks to their known label and the annotator
    table gains `gold_skill` (accuracy on gold) beside the unsupervised `skill`.
    With `auto`, `incumbent` (e.g. the method chosen for the same project before) is kept
    unless another method is better beyond the selection noise; other methods ignore it.
    Every method's `confidence` is calibrated (`calibration`); its own posterior stays in
    `posterior` and `raw_confidence`.
    `warm_start` (a previous result's `warm_start`) starts Dawid–Skene's EM from that fit's
    annotator model instead of vote shares, for refits on a little more data;
    `diagonal_pseudo_count` makes Dawid–Skene a MAP fit (see `FitOptions`).
    `label_set` names every label the task could have, answered or not (a project's label set):
    a file whose judgments all say one label is then not certain of it.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    gold = _check_gold(gold, judgments)
    extra = [] if gold is None else [gold.get_column("label")]
    if label_set is not None:
        extra.append(label_set.cast(judgments.schema["label"]))
    encoded = encode(judgments, extra_labels=pl.concat(extra) if extra else None)
    gold_codes = gold_task_codes(encoded, gold)
    if method == AUTO:
        method, explanation = choose_method(
            encoded, gold_codes=gold_codes, max_iter=max_iter, tol=tol, incumbent=incumbent
        )
    else:
        explanation = ""
    initial = None if warm_start is None else warm_start.initial_posteriors(encoded)
    fitted = run_kernel(
        encoded,
        method,
        max_iter=max_iter,
        tol=tol,
        gold_codes=gold_codes,
        initial_posteriors=initial,
        diagonal_pseudo_count=diagonal_pseudo_count,
    )
    calibrated = calibrate(encoded, fitted.posteriors, gold_codes=gold_codes)
    return build_result(
        encoded,
        fitted,
        method=method,
        gold_codes=gold_codes,
        explanation=explanation,
        calibrated=calibrated.posteriors,
        temperature=calibrated.temperature,
        warm_start=warm_start_from(encoded, fitted.posteriors, fitted.confusion),
    )


def _check_gold(gold: pl.DataFrame | None, judgments: pl.DataFrame) -> pl.DataFrame | None:
    if gold is None:
        return None
    missing = [column for column in ("task_id", "label") if column not in gold.columns]
    if missing:
        raise ValueError(
            f"gold: missing column(s) {', '.join(missing)}; have {', '.join(gold.columns)}"
        )
    gold = gold.select("task_id", "label").drop_nulls()
    if "task_id" in judgments.columns:
        gold = gold.with_columns(pl.col("task_id").cast(judgments.schema["task_id"]))
    if "label" in judgments.columns:
        gold = gold.with_columns(pl.col("label").cast(judgments.schema["label"]))
    conflicting = (
        gold.group_by("task_id").agg(pl.col("label").n_unique()).filter(pl.col("label") > 1)
    )
    if conflicting.height:
        first = conflicting.get_column("task_id")[0]
        raise ValueError(f"gold: task {first!r} has more than one gold label")
    # Only a judged task's gold anchors anything; the others' labels would still be classes of
    # the model (a label no annotator gave, of a task nobody judged, reshaping every task's fit).
    if "task_id" in judgments.columns:
        gold = gold.filter(pl.col("task_id").is_in(judgments.get_column("task_id").implode()))
    return gold.unique("task_id")


def gold_task_codes(encoded: Encoded, gold: pl.DataFrame | None) -> np.ndarray | None:
    """Per task code, the gold class code or -1; None when there is no usable gold."""
    if gold is None or gold.height == 0:
        return None
    tasks = encoded.task_codes(gold.get_column("task_id"))
    known = tasks >= 0
    if not known.any():
        return None
    codes = np.full(encoded.n_tasks, -1, dtype=np.int64)
    codes[tasks[known]] = encoded.label_codes(gold.get_column("label"))[known]
    return codes
