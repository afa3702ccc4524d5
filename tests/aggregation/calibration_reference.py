"""The calibration as it was before it was blocked and stored sparsely: dense arrays over every
sampled judgment and class, one pass per (shrinkage, temperature), and the dense annotators ×
K × K count table. Kept only to prove the package's blocked search chooses exactly the same
(s, τ) and its answered rows hold exactly the dense table's counts."""

from __future__ import annotations

import numpy as np

from annotation_pipelines.aggregation.calibration import (
    _FLOOR,
    DEFAULT_SHRINKAGE,
    SHRINKAGE_GRID,
    TEMPERATURE_GRID,
    _Counts,
    _held_out_log_errors,
    _largest_near_best,
    _selection_judgments,
    _standard_error,
    _task_sums,
    pooled_prior,
)
from annotation_pipelines.aggregation.encoding import Encoded


def choose_shrinkage_and_temperature(
    encoded: Encoded, counts: _Counts, log_prior: np.ndarray
) -> tuple[float, float]:
    chosen = _selection_judgments(encoded)
    if chosen.size == 0:
        return DEFAULT_SHRINKAGE * encoded.n_classes, 1.0
    tasks = encoded.tasks[chosen]
    sampled = np.unique(tasks)
    prior = np.ascontiguousarray(log_prior[tasks].T)
    temperatures: list[float] = []
    totals: list[float] = []
    per_task: list[np.ndarray] = []
    strengths = [per_class * encoded.n_classes for per_class in SHRINKAGE_GRID]
    for shrinkage in strengths:
        log_errors = _held_out_log_errors(encoded, counts, chosen, shrinkage)
        others = np.ascontiguousarray(
            (_task_sums(encoded, chosen, log_errors)[tasks] - log_errors).T
        )
        answer_probabilities = np.exp(log_errors.T)
        scores = [
            held_out_log_likelihoods(temperature, others, prior, answer_probabilities)
            for temperature in TEMPERATURE_GRID
        ]
        column = _largest_near_best([float(score.sum()) for score in scores])
        temperatures.append(float(TEMPERATURE_GRID[column]))
        totals.append(float(scores[column].sum()))
        task_scores = np.bincount(tasks, weights=scores[column], minlength=encoded.n_tasks)
        per_task.append(task_scores[sampled])
    best = per_task[_largest_near_best(totals)]
    tolerance = 1e-9 * max(float(np.abs(best).sum()), 1.0)
    row = len(strengths) - 1
    while row > 0:
        difference = per_task[row] - best
        if difference.mean() >= -_standard_error(difference) - tolerance:
            break
        row -= 1
    return float(strengths[row]), temperatures[row]


def held_out_log_likelihoods(
    temperature: float,
    others: np.ndarray,
    prior: np.ndarray,
    answer_probabilities: np.ndarray,
) -> np.ndarray:
    weights = temperature * others + prior
    weights -= weights.max(axis=0)
    np.exp(weights, out=weights)
    predicted = (weights * answer_probabilities).sum(axis=0) / weights.sum(axis=0)
    return np.log(np.maximum(predicted, _FLOOR))


def dense_counts(encoded: Encoded, soft: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(annotator table (n_annotators, K answer, K truth), its totals over answers, the pooled
    table with its prior) as the calibration built them densely, one bincount per class."""
    k = encoded.n_classes
    cell = encoded.annotators * k + encoded.labels
    flat = np.empty((encoded.n_annotators * k, k))
    weights = np.where((encoded.votes_per_task() >= 2)[:, None], soft, 0.0)
    for truth in range(k):
        flat[:, truth] = np.bincount(
            cell, weights=weights[encoded.tasks, truth], minlength=encoded.n_annotators * k
        )
    annotator = flat.reshape(encoded.n_annotators, k, k)
    return annotator, annotator.sum(axis=1), annotator.sum(axis=0) + pooled_prior(k)


def dense_held_out_rows(
    encoded: Encoded, counts: _Counts, annotator: np.ndarray, shrinkage: float
) -> tuple[np.ndarray, np.ndarray]:
    """`calibration._held_out_rows` for every judgment, reading the dense annotator table."""
    tasks, annotators, answers = encoded.tasks, encoded.annotators, encoded.labels
    own = counts.soft[tasks]
    pooled = counts.pooled[answers, :] - counts.task_votes[tasks, answers][:, None] * own
    pooled_totals = counts.pooled_totals[None, :] - counts.task_sizes[tasks][:, None] * own
    numerator = annotator[annotators, answers, :] - own
    numerator += shrinkage * np.maximum(pooled, _FLOOR) / pooled_totals
    denominator = annotator.sum(axis=1)[annotators] - own + shrinkage
    return numerator, denominator
