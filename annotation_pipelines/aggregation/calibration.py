"""Calibrated confidence: a probability that the chosen label is right, for every method.

A method's own posterior is overconfident whenever its model says the evidence is stronger
than it is. Dawid–Skene multiplies the likelihoods of all of a task's votes as if annotators
erred independently, with confusion matrices estimated from the very task they are applied to;
on the shared crowd sets it states 0.986 mean confidence where 0.889 of the labels are right
(Duck), and 1.0 on a 2-against-1 vote in a five-task file. Three corrections, one
configuration for every data set, no ground truth needed:

1. **Dirichlet priors.** Each annotator's confusion column gets one pseudo-count per cell (a
   uniform Dirichlet(1) prior, Laplace smoothing), the class prior likewise: an annotator seen
   on three tasks is not "always right".
2. **Cross-fitting.** A task's calibrated posterior uses confusion matrices and a class prior
   estimated with that task left out (its soft labels subtracted from the expected counts,
   exact and O(judgments · K)), so a task never vouches for itself.
3. **Tempered evidence.** Votes on one task are correlated (hard items fool many annotators),
   so the summed log-likelihoods overcount the evidence. They are scaled by a temperature
   τ ∈ [`MIN_TEMPERATURE`, 1], chosen per fit to maximise the leave-one-judgment-out predictive
   likelihood: each judgment on a task with two or more votes is predicted from the task's
   other votes, P(answer) = Σ_c P_τ(c | others) · e_w(answer | c). A posterior that claims
   more certainty than the other votes carry predicts the held-out answers worse, so τ falls
   below 1 exactly as far as the crowd's own disagreement warrants (the same held-out
   criterion `auto` uses to choose a method). τ is estimated on a hash-chosen sample of at
   most `TEMPERATURE_SAMPLE_TASKS` tasks, so the cost stays linear on large inputs.

The method's label is kept (accuracy is unchanged); its confidence becomes the calibrated
probability of that label. Gold tasks keep confidence 1. The method's own posteriors stay in
the result (`posterior`, `raw_confidence`).

Measured (10 equal-width bins, confidence of the chosen label against correctness, shared
crowd sets, Dawid–Skene labels): see `expected_calibration_error` and the README table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotation_pipelines.aggregation.encoding import Encoded

# Pseudo-counts of the Dirichlet priors on every confusion cell and on every class.
CONFUSION_PSEUDO_COUNT = 1.0
PRIOR_PSEUDO_COUNT = 1.0
# The evidence is never tempered below this: on a handful of tasks the held-out likelihood is
# flat and would otherwise drive every posterior to the class prior.
MIN_TEMPERATURE = 0.05
TEMPERATURE_SAMPLE_TASKS = 50_000
# Candidate temperatures, log-spaced (about 5 % apart) from MIN_TEMPERATURE to 1.
TEMPERATURE_GRID = np.exp(np.linspace(np.log(MIN_TEMPERATURE), 0.0, 62))
# Judgments processed per block when the per-judgment arrays would be large.
_BLOCK = 1 << 20
_FLOOR = 1e-300


@dataclass(frozen=True)
class Calibrated:
    """Calibrated posteriors (n_tasks × K) and the temperature that tempered the evidence."""

    posteriors: np.ndarray
    temperature: float


def calibrate(
    encoded: Encoded, posteriors: np.ndarray, *, gold_codes: np.ndarray | None = None
) -> Calibrated:
    """Calibrated posteriors from a method's `posteriors` used as soft labels (see module)."""
    k = encoded.n_classes
    if k < 2 or encoded.n_judgments == 0:
        return Calibrated(posteriors=posteriors.copy(), temperature=1.0)
    soft = np.asarray(posteriors, dtype=np.float64)
    counts = _expected_counts(encoded, soft)
    column_totals = counts.sum(axis=1)  # (n_annotators, K): judgments of w on truth c
    log_prior = _held_out_log_prior(soft)
    evidence = np.zeros((encoded.n_tasks, k))
    for block in _blocks(encoded.n_judgments):
        tasks = encoded.tasks[block]
        evidence_block = _held_out_log_errors(encoded, soft, counts, column_totals, block)
        for truth in range(k):
            evidence[:, truth] += np.bincount(
                tasks, weights=evidence_block[:, truth], minlength=encoded.n_tasks
            )
    temperature = _choose_temperature(encoded, soft, counts, column_totals, evidence, log_prior)
    calibrated = _softmax(temperature * evidence + log_prior)
    if gold_codes is not None:
        gold = np.flatnonzero(gold_codes >= 0)
        calibrated[gold] = 0.0
        calibrated[gold, gold_codes[gold]] = 1.0
    return Calibrated(posteriors=calibrated, temperature=temperature)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, *, bins: int = 10
) -> float:
    """Σ_b (n_b / n) · |mean confidence_b − accuracy_b| over `bins` equal-width bins of [0, 1].

    `confidence` is the probability given to the chosen label, `correct` whether it was right.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.shape != correct.shape:
        raise ValueError(f"confidence {confidence.shape} and correct {correct.shape} differ")
    if confidence.size == 0:
        return 0.0
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    index = np.maximum(index, 0)
    confidence_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct, minlength=bins)
    return float(np.abs(confidence_sum - correct_sum).sum() / confidence.size)


def _expected_counts(encoded: Encoded, soft: np.ndarray) -> np.ndarray:
    """counts[w, answer, truth] = Σ over w's answers of the soft label of the task's truth."""
    k = encoded.n_classes
    cell = encoded.annotators * k + encoded.labels
    counts = np.empty((encoded.n_annotators * k, k))
    for truth in range(k):
        counts[:, truth] = np.bincount(
            cell, weights=soft[encoded.tasks, truth], minlength=encoded.n_annotators * k
        )
    return counts.reshape(encoded.n_annotators, k, k)


def _held_out_log_prior(soft: np.ndarray) -> np.ndarray:
    """log P(class) per task from the other tasks' soft labels plus the Dirichlet prior."""
    k = soft.shape[1]
    pseudo = soft.sum(axis=0)[None, :] - soft + PRIOR_PSEUDO_COUNT
    return np.log(pseudo / (soft.shape[0] - 1 + k * PRIOR_PSEUDO_COUNT))


def _held_out_log_errors(
    encoded: Encoded,
    soft: np.ndarray,
    counts: np.ndarray,
    column_totals: np.ndarray,
    block: slice | np.ndarray,
) -> np.ndarray:
    """log e_w(answer | c) per judgment in `block`, from counts without the judgment's task."""
    k = encoded.n_classes
    tasks = encoded.tasks[block]
    annotators = encoded.annotators[block]
    own = soft[tasks]
    numerator = counts[annotators, encoded.labels[block], :] - own + CONFUSION_PSEUDO_COUNT
    denominator = column_totals[annotators] - own + k * CONFUSION_PSEUDO_COUNT
    return np.log(np.maximum(numerator, _FLOOR) / denominator)


def _choose_temperature(
    encoded: Encoded,
    soft: np.ndarray,
    counts: np.ndarray,
    column_totals: np.ndarray,
    evidence: np.ndarray,
    log_prior: np.ndarray,
) -> float:
    votes = encoded.votes_per_task()
    sampled_task = votes >= 2
    if int(sampled_task.sum()) > TEMPERATURE_SAMPLE_TASKS:
        # A sample of tasks drawn from their values' hashes, so it does not depend on row order.
        hashes = encoded.task_values.hash(seed=3).to_numpy()
        threshold = np.sort(hashes[sampled_task])[TEMPERATURE_SAMPLE_TASKS - 1]
        sampled_task &= hashes <= threshold
    chosen = np.flatnonzero(sampled_task[encoded.tasks])
    if chosen.size == 0:
        return 1.0
    log_errors = _held_out_log_errors(encoded, soft, counts, column_totals, chosen)
    tasks = encoded.tasks[chosen]
    others = evidence[tasks] - log_errors
    answer_probabilities = np.exp(log_errors)
    prior = log_prior[tasks]

    def log_likelihood(temperature: float) -> float:
        predictive = _softmax(temperature * others + prior)
        predicted = np.einsum("jc,jc->j", predictive, answer_probabilities)
        return float(np.log(np.maximum(predicted, _FLOOR)).mean())

    # A fixed grid, and the largest temperature within a relative 1e-9 of the best: a
    # continuous optimiser on a flat objective lands on points that move with the last bits
    # of the sums, i.e. with row order; this choice does not, and it tempers only as far as
    # the evidence asks.
    scores = np.array([log_likelihood(value) for value in TEMPERATURE_GRID])
    best = scores.max()
    near_best = scores >= best - 1e-9 * max(abs(best), 1.0)
    return float(TEMPERATURE_GRID[np.flatnonzero(near_best)[-1]])


def _blocks(n: int) -> list[slice]:
    return [slice(start, min(start + _BLOCK, n)) for start in range(0, n, _BLOCK)]


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores
