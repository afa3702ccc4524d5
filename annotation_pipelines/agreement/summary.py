"""All agreement statistics of a set of judgments at once, with bootstrap intervals over tasks.

Efron & Tibshirani (1993), "An Introduction to the Bootstrap": the task is the resampling
unit because judgments of one task are not independent. A resample draws as many tasks as
there are pairable tasks, with replacement; each statistic is re-evaluated with every task
weighted by how often it was drawn, and the interval is the percentile interval of those
replicates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import polars as pl

from annotation_pipelines.agreement._encoding import check_columns, check_level, task_value_counts
from annotation_pipelines.agreement.metrics import AlphaKernel, FleissKernel
from annotation_pipelines.numbers import finite

METRICS = ("krippendorff_alpha", "fleiss_kappa", "percent_agreement")


def resample_weights(
    pairable_tasks: np.ndarray, n_tasks: int, *, n_resamples: int, seed: int
) -> Iterator[np.ndarray]:
    """Per-task multiplicities for `n_resamples` bootstrap resamples of the pairable tasks.

    A generator: one weight vector lives at a time, however many resamples are drawn.
    """
    generator = np.random.default_rng(seed)
    size = len(pairable_tasks)
    for _ in range(n_resamples):
        drawn = pairable_tasks[generator.integers(0, size, size=size)] if size else pairable_tasks
        yield np.bincount(drawn, minlength=n_tasks).astype(np.float64)


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def _kernels(judgments: pl.DataFrame, level: str) -> tuple[Any, Any, dict[str, Any]]:
    nominal = task_value_counts(judgments, level="nominal")
    leveled = nominal if level == "nominal" else task_value_counts(judgments, level=level)
    # At a numeric level a label is its number ("1" and "1.0" are one value, as alpha reads
    # them), so Fleiss' kappa and percent agreement count categories by number too.
    fleiss = FleissKernel(leveled)
    statistics: dict[str, Callable[[np.ndarray | None], float]] = {
        "krippendorff_alpha": AlphaKernel(leveled, level),
        "fleiss_kappa": fleiss,
        "percent_agreement": fleiss.percent_agreement,
    }
    return nominal, fleiss, statistics


def agreement_summary(
    judgments: pl.DataFrame,
    *,
    level: str = "nominal",
    n_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float | int | str | None]:
    """Alpha (at `level`), Fleiss' kappa, percent agreement and counts, as one flat dict.

    Keys: krippendorff_alpha, fleiss_kappa, percent_agreement, n_tasks, n_pairable_tasks,
    n_annotators, n_judgments, level; with `n_resamples` > 0 also `<metric>_low` and
    `<metric>_high`, the bootstrap percentile interval at `confidence`. Undefined values
    are None (JSON null), never NaN.
    """
    check_columns(judgments)
    check_level(level)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    labelled = judgments.filter(pl.col("label").is_not_null())
    nominal, fleiss, statistics = _kernels(labelled, level)
    summary: dict[str, float | int | str | None] = {
        name: finite(statistic(None)) for name, statistic in statistics.items()
    }
    summary.update(
        n_tasks=nominal.n_tasks,
        n_pairable_tasks=len(fleiss.pairable_tasks),
        n_annotators=labelled.get_column("annotator_id").n_unique(),
        n_judgments=labelled.height,
        level=level,
    )
    if n_resamples > 0:
        resamples = resample_weights(
            fleiss.pairable_tasks, nominal.n_tasks, n_resamples=n_resamples, seed=seed
        )
        replicates = np.array(
            [[statistic(weights) for statistic in statistics.values()] for weights in resamples]
        )
        for column, name in enumerate(statistics):
            low, high = percentile_interval(replicates[:, column], confidence)
            summary[f"{name}_low"], summary[f"{name}_high"] = finite(low), finite(high)
        summary["n_resamples"] = n_resamples
        summary["confidence"] = confidence
    return summary


def agreement_intervals(
    judgments: pl.DataFrame,
    *,
    level: str = "nominal",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per statistic: metric, value, ci_low, ci_high (bootstrap over tasks)."""
    summary = agreement_summary(
        judgments,
        level=level,
        n_resamples=max(1, n_resamples),
        confidence=confidence,
        seed=seed,
    )
    return pl.DataFrame(
        {
            "metric": list(METRICS),
            "value": [summary[name] for name in METRICS],
            "ci_low": [summary[f"{name}_low"] for name in METRICS],
            "ci_high": [summary[f"{name}_high"] for name in METRICS],
        },
        schema={
            "metric": pl.String,
            "value": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
        },
    )
