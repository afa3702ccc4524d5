"""Dawid–Skene's EM as it was with dense A × K × K confusion arrays (each M-step making
several of them, and their logarithm). Kept only to prove that the package's EM, which keeps
the answered rows alone, gives the same bits."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import sparse

from annotation_pipelines.aggregation.em import (
    EPSILON,
    clamp_gold,
    column_mean,
    iterate,
    normalise_log,
    row_sum,
    vote_shares,
)
from annotation_pipelines.aggregation.encoding import Encoded
from annotation_pipelines.aggregation.kernel import DEFAULT_OPTIONS, FitOptions
from annotation_pipelines.aggregation.result import Fitted


def answer_matrix(encoded: Encoded) -> sparse.csr_array:
    """Sparse (n_tasks × n_annotators·K) count of judgments per task and (annotator, answer).

    Both EM steps are products with this matrix and a K-column dense one, which SciPy runs
    as one pass over the judgments (instead of K `bincount` passes with K gathered weights):
    E-step `M @ log_errors` sums each task's log-likelihoods; M-step `Mᵀ @ posteriors` sums
    the posteriors of the tasks each (annotator, answer) was given to. `Mᵀ` is a CSC view,
    whose product walks tasks in order, reading the large posterior array sequentially and
    scattering into the small count table, which stays in cache.
    """
    k = encoded.n_classes
    index_type = np.int32 if max(encoded.n_judgments, encoded.n_tasks) < 2**31 - 1 else np.int64
    rows = encoded.tasks.astype(index_type)
    columns = (encoded.annotators * k + encoded.labels).astype(index_type)
    return sparse.csr_array(
        (np.ones(encoded.n_judgments), (rows, columns)),
        shape=(encoded.n_tasks, encoded.n_annotators * k),
    )


def expected_counts(matrix: sparse.csr_array, posteriors: np.ndarray) -> np.ndarray:
    """counts[w * K + answer, truth] = Σ over w's answers of P(task's truth = truth)."""
    return np.asarray(matrix.T @ posteriors)


def task_log_likelihoods(
    matrix: sparse.csr_array, log_errors: np.ndarray, log_prior: np.ndarray
) -> np.ndarray:
    """log p(z = c) + Σ log e_w[answer, c] per task, shape (n_tasks, K)."""
    scores = np.asarray(matrix @ log_errors)
    scores += log_prior[None, :]
    return scores


def evidence_lower_bound(
    encoded: Encoded,
    posteriors: np.ndarray,
    counts: np.ndarray,
    log_errors: np.ndarray,
    log_prior: np.ndarray,
    votes_per_task: np.ndarray,
) -> float:
    """E_q[log p(answers, z)] + H(q), as crowd-kit computes it (prior counted per judgment).

    `counts` are the M-step's expected counts, so the answer term needs no pass over the
    judgments: Σ_j Σ_c q_jc log e[w_j, y_j, c] = Σ_{w,y,c} counts · log e.
    """
    observed = row_sum(counts) > 0
    joint = float(np.sum(counts[observed] * log_errors[observed]))
    joint += float((votes_per_task @ posteriors) @ log_prior)
    clipped = np.maximum(posteriors, EPSILON).reshape(-1)
    entropy = -float(clipped @ np.log(clipped))
    return joint + entropy


def _confusion_from_counts(encoded: Encoded, counts: np.ndarray) -> np.ndarray:
    # Every (answer, truth) cell gets the 1e-10 floor, including answers an annotator never
    # gave. crowd-kit floors only the answers given; the two agree to ~1e-10 wherever a truth
    # column has mass, but where it has none (an annotator never saw that class) crowd-kit
    # makes the annotator say their one answer with probability 1 under every truth, which
    # lets the prior outvote a unanimous task. Flooring all cells gives that column 1/K.
    errors = np.maximum(counts, EPSILON).reshape(encoded.n_annotators, encoded.n_classes, -1)
    errors /= errors.sum(axis=1, keepdims=True)
    return errors


def fit_dawid_skene(encoded: Encoded, options: FitOptions = DEFAULT_OPTIONS) -> Fitted:
    k = encoded.n_classes
    gold_codes = options.gold_codes
    matrix = answer_matrix(encoded)
    votes_per_task = encoded.votes_per_task().astype(np.float64)

    diagonal = options.diagonal_pseudo_count
    # Rows `w * K + c`, column `c`: annotator w answering the true class c.
    diagonal_cells = (
        np.arange(encoded.n_annotators)[:, None] * k + np.arange(k)[None, :],
        np.arange(k)[None, :],
    )

    def m_step(posteriors: np.ndarray) -> _Parameters:
        prior = column_mean(posteriors)
        counts = expected_counts(matrix, posteriors)
        if diagonal:
            smoothed = counts.copy()
            smoothed[diagonal_cells] += diagonal
            errors = _confusion_from_counts(encoded, smoothed)
        else:
            errors = _confusion_from_counts(encoded, counts)
        with np.errstate(divide="ignore"):
            log_errors = np.log(errors.reshape(-1, k))
        return _Parameters(prior, np.log(np.maximum(prior, EPSILON)), counts, errors, log_errors)

    def step(state: tuple[np.ndarray, _Parameters]) -> tuple[tuple[np.ndarray, _Parameters], float]:
        _, parameters = state
        scores = task_log_likelihoods(matrix, parameters.log_errors, parameters.log_prior)
        posteriors = clamp_gold(normalise_log(scores), gold_codes)
        parameters = m_step(posteriors)
        bound = evidence_lower_bound(
            encoded,
            posteriors,
            parameters.counts,
            parameters.log_errors,
            parameters.log_prior,
            votes_per_task,
        )
        if diagonal:
            # The Dirichlet prior's log density (up to a constant): the MAP objective.
            bound += diagonal * float(parameters.log_errors[diagonal_cells].sum())
        return (posteriors, parameters), bound / encoded.n_judgments

    start = options.initial_posteriors
    posteriors = clamp_gold(vote_shares(encoded) if start is None else start.copy(), gold_codes)
    (posteriors, parameters), convergence = iterate(
        step, (posteriors, m_step(posteriors)), max_iter=options.max_iter, tol=options.tol
    )
    skills = np.einsum("wcc,c->w", parameters.errors, parameters.prior)
    return Fitted(
        posteriors=posteriors,
        skills=skills,
        iterations=convergence.iterations,
        converged=convergence.converged,
        log_likelihood=float(convergence.objective * encoded.n_judgments),
        confusion=parameters.errors,
    )


class _Parameters(NamedTuple):
    """The M-step's output: prior, its log, expected counts, confusion matrices, their log."""

    prior: np.ndarray
    log_prior: np.ndarray
    counts: np.ndarray
    errors: np.ndarray
    log_errors: np.ndarray
