"""Majority vote, the baseline every other method is measured against.

Model: each task's label is the class with the most votes; the posterior is the share of votes
per class. It assumes every annotator is equally reliable and says nothing about who is.

Tie rule (deterministic, documented because it moves accuracy by points on data with many
ties, e.g. RTE where 65 of 800 tasks tie): among the tied classes, take the one whose label
sorts first (by the label column's own order: numeric for numbers, lexicographic for text).
This is crowd-kit's behaviour, so published majority-vote figures are reproduced exactly.
(Breaking by the globally most frequent class was measured and loses 4.4 points on RTE.)
Tied tasks are reported with `is_tie = True`.
The annotator `skill` is the share of an annotator's judgments that match the decided label.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from annotation_pipelines.aggregation.encoding import Encoded, compiled_kernels
from annotation_pipelines.aggregation.kernel import DEFAULT_OPTIONS, FitOptions
from annotation_pipelines.aggregation.result import Fitted

_RELATIVE_TIE = 1e-12


def class_preference(encoded: Encoded) -> np.ndarray:
    """Rank of each class for breaking ties: 0 is preferred. Codes follow sorted label order."""
    return np.arange(encoded.n_classes, dtype=np.int64)


def decide(scores: np.ndarray, preference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decided class, is_tie) per row of `scores` under the tie rule."""
    best = scores.max(axis=1, keepdims=True)
    at_best = scores >= best - _RELATIVE_TIE * np.abs(best)
    ties = at_best.sum(axis=1) > 1
    decided = np.argmax(np.where(at_best, -preference[None, :], np.iinfo(np.int64).min), axis=1)
    return decided, ties


def weighted_vote(
    encoded: Encoded, weights: np.ndarray | None, preference: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(posteriors, decided, ties) of a vote where judgment i counts `weights[i]`."""
    k = encoded.n_classes
    scores = np.bincount(
        encoded.answer_cells(), weights=weights, minlength=encoded.n_tasks * k
    ).reshape(encoded.n_tasks, k)
    if weights is None:
        # Integer counts: the first (lowest-code, i.e. first-sorting) class reaching the top
        # count wins, which is the tie rule with no tolerance needed. Column by column,
        # because NumPy's reductions along a 4-wide axis are several times slower.
        best = scores[:, 0].copy()
        decided = np.zeros(encoded.n_tasks, dtype=np.int64)
        for column in range(1, k):
            better = scores[:, column] > best
            decided[better] = column
            np.maximum(best, scores[:, column], out=best)
        at_best = np.zeros(encoded.n_tasks, dtype=np.int64)
        for column in range(k):
            at_best += scores[:, column] == best
        ties = at_best > 1
        totals = np.maximum(encoded.votes_per_task(), 1).astype(np.float64)
        posteriors = scores / totals[:, None]
        return posteriors, decided, ties
    decided, ties = decide(scores, preference)
    totals = scores.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        posteriors = np.where(totals > 0, scores / np.where(totals > 0, totals, 1.0), 1.0 / k)
    return posteriors, decided, ties


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting: NumPy 2's hash-based unique is ~50× slower on 1M int64 keys."""
    ordered = np.sort(values)
    keep = np.empty(ordered.shape[0], dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def distinct_answers(encoded: Encoded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(annotators, tasks, labels) with repeated identical answers to one task kept once."""
    k = encoded.n_classes
    key = (encoded.annotators * encoded.n_tasks + encoded.tasks) * k + encoded.labels
    if not _has_repeats(key, encoded):
        # The usual case: no repeated answer, so the judgments themselves are distinct.
        return encoded.annotators, encoded.tasks, encoded.labels
    unique = sorted_unique(key)
    return unique // (k * encoded.n_tasks), (unique // k) % encoded.n_tasks, unique % k


_MAX_LAG = 16


def _has_repeats(key: np.ndarray, encoded: Encoded) -> bool:
    """Whether some (annotator, task, label) key occurs twice.

    When judgments arrive grouped by task (task codes never decrease) with few votes per
    task, equal keys can only sit within `max votes` rows of each other, so comparing each row
    with the few rows before it decides, without the sort of a million keys.
    """
    tasks = encoded.tasks
    most_votes = int(encoded.votes_per_task().max(initial=0))
    if most_votes <= _MAX_LAG and not np.any(tasks[1:] < tasks[:-1]):
        return any(bool(np.any(key[lag:] == key[:-lag])) for lag in range(1, most_votes))
    ordered = np.sort(key)
    return bool(np.any(ordered[1:] == ordered[:-1]))


def agreement_with(
    encoded: Encoded,
    decided: np.ndarray,
    distinct: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Share of each annotator's distinct (task, label) answers that equal `decided`.

    Repeated identical answers by one annotator to one task count once, as in crowd-kit, so
    a double submission does not inflate a skill.
    """
    kernels = compiled_kernels(encoded.n_judgments) if distinct is None else None
    if kernels is not None:
        correct, total = kernels.agreement_counts(
            encoded.tasks,
            encoded.annotators,
            encoded.labels,
            decided,
            encoded.n_tasks,
            encoded.n_annotators,
            encoded.n_classes,
        )
        return correct / np.maximum(total, 1)
    annotators, tasks, labels = distinct if distinct is not None else distinct_answers(encoded)
    correct = np.bincount(annotators[labels == decided[tasks]], minlength=encoded.n_annotators)
    total = np.bincount(annotators, minlength=encoded.n_annotators)
    return correct / np.maximum(total, 1)


def fit_majority_vote(encoded: Encoded, options: FitOptions = DEFAULT_OPTIONS) -> Fitted:
    """One pass, no options apply."""
    kernels = compiled_kernels(encoded.n_judgments)
    if kernels is not None:
        # Putting the rows in task order (for the skills) does not need the votes: it runs on
        # a second core (the kernels release the GIL) while this one counts them.
        with ThreadPoolExecutor(max_workers=1) as pool:
            ordered = pool.submit(
                kernels.task_order,
                encoded.tasks,
                encoded.annotators,
                encoded.labels,
                encoded.n_tasks,
            )
            votes, totals, decided, ties = kernels.count_votes(
                encoded.tasks, encoded.labels, encoded.n_tasks, encoded.n_classes
            )
            posteriors = np.divide(votes, np.maximum(totals, 1)[:, None], dtype=np.float64)
            correct, total = kernels.agreement_in_task_order(
                ordered.result(), decided, encoded.n_annotators, encoded.n_classes
            )
        return Fitted(
            posteriors=posteriors,
            skills=correct / np.maximum(total, 1),
            decided=decided,
            ties=ties,
        )
    preference = class_preference(encoded)
    posteriors, decided, ties = weighted_vote(encoded, None, preference)
    return Fitted(
        posteriors=posteriors,
        skills=agreement_with(encoded, decided),
        decided=decided,
        ties=ties,
    )
