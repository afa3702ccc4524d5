"""`auto`: choose the aggregation method per project, and say why.

With gold tasks, every candidate is fitted without gold and the one with the highest accuracy
on the gold tasks wins (the final fit then uses the gold). Without gold, the criterion is
held-out predictive likelihood: about one judgment in ten (only on tasks that keep at least
two other votes) is hidden, every candidate is fitted on the rest, and each hidden answer is
scored by log Σ_c P(task = c) · ê_w(answer | c), where P is the candidate's posterior and ê_w
the annotator's confusion re-estimated from the candidate's posteriors on the visible
judgments (add-one/K smoothing). A method that explains the crowd better predicts its unseen
answers better; no ground truth is needed. Ties go to the earlier, simpler candidate.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from annotation_pipelines.aggregation.encoding import Encoded

CANDIDATES = (
    "majority_vote",
    "wawa",
    "zero_based_skill",
    "one_coin_dawid_skene",
    "dawid_skene",
    "glad",
    "mace",
)
HOLD_OUT_ONE_IN = 10
_SMOOTHING = 1.0


def choose_method(
    encoded: Encoded,
    *,
    gold_codes: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-5,
    candidates: tuple[str, ...] = CANDIDATES,
) -> tuple[str, str]:
    """(method, explanation)."""
    from annotation_pipelines.aggregation.api import run_kernel

    if gold_codes is not None:
        gold_tasks = np.flatnonzero(gold_codes >= 0)
        scores = {}
        for method in candidates:
            posteriors = run_kernel(encoded, method, max_iter=max_iter, tol=tol).posteriors
            scores[method] = float(
                np.mean(np.argmax(posteriors[gold_tasks], axis=1) == gold_codes[gold_tasks])
            )
        best = max(candidates, key=lambda method: scores[method])
        listing = ", ".join(f"{method} {scores[method]:.4f}" for method in candidates)
        return best, (
            f"chose {best}: highest accuracy on {gold_tasks.shape[0]} gold task(s) when fitted "
            f"without gold ({listing}); the final fit clamps the gold tasks"
        )
    held_out = hold_out_mask(encoded)
    if not held_out.any():
        return "dawid_skene", (
            "chose dawid_skene: no task has three or more votes, so nothing can be held out; "
            "Dawid–Skene is the best default on the published benchmarks"
        )
    visible = _subset(encoded, ~held_out)
    scores = {}
    for method in candidates:
        posteriors = run_kernel(visible, method, max_iter=max_iter, tol=tol).posteriors
        scores[method] = held_out_log_likelihood(visible, posteriors, encoded, held_out)
    best = max(candidates, key=lambda method: scores[method])
    listing = ", ".join(f"{method} {scores[method]:.4f}" for method in candidates)
    return best, (
        f"chose {best}: best mean log-likelihood of {int(held_out.sum())} held-out judgments "
        f"(no gold available; {listing})"
    )


def hold_out_mask(encoded: Encoded) -> np.ndarray:
    """Deterministic ~1/10 of judgments, only where the task keeps two or more other votes."""
    mix = (encoded.tasks * 2_654_435_761 + encoded.annotators * 40_503) % 1_000_003
    candidate = mix % HOLD_OUT_ONE_IN == 0
    hidden_per_task = np.bincount(encoded.tasks[candidate], minlength=encoded.n_tasks)
    keeps = encoded.votes_per_task() - hidden_per_task >= 2
    return candidate & keeps[encoded.tasks]


def _subset(encoded: Encoded, mask: np.ndarray) -> Encoded:
    return replace(
        encoded,
        tasks=encoded.tasks[mask],
        annotators=encoded.annotators[mask],
        labels=encoded.labels[mask],
    )


def held_out_log_likelihood(
    visible: Encoded, posteriors: np.ndarray, full: Encoded, held_out: np.ndarray
) -> float:
    k = visible.n_classes
    answer_index = visible.annotators * k + visible.labels
    counts = np.empty((visible.n_annotators * k, k))
    for truth in range(k):
        counts[:, truth] = np.bincount(
            answer_index,
            weights=posteriors[visible.tasks, truth],
            minlength=visible.n_annotators * k,
        )
    confusion = counts.reshape(visible.n_annotators, k, k) + _SMOOTHING / k
    confusion /= confusion.sum(axis=1, keepdims=True)
    tasks = full.tasks[held_out]
    annotators = full.annotators[held_out]
    answers = full.labels[held_out]
    predicted = np.einsum("jc,jc->j", posteriors[tasks], confusion[annotators, answers, :])
    return float(np.mean(np.log(np.maximum(predicted, 1e-300))))
