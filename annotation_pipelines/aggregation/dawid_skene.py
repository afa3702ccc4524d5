"""Dawid–Skene: EM over a full confusion matrix per annotator.

A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the
EM Algorithm", Journal of the Royal Statistical Society C 28(1), 1979, 20–28.

Model: each task has a hidden true class z drawn from a prior p; annotator w answers class k
with probability e_w[k, z] (a column-stochastic K×K confusion matrix). EM alternates the
E-step, the posterior of z for every task given all its answers (computed in log space), and
the M-step, confusion matrices and prior re-estimated from the expected counts. Initialisation,
the 1e-10 floor on probabilities, the evidence lower bound used as the stopping criterion
(change per judgment below `tol`) and `max_iter` follow crowd-kit 1.4.2 so that results
and iteration counts match it. With gold labels, gold tasks' posteriors are clamped to their
known class at initialisation and after every E-step, which anchors the confusion matrices.

The kernel never builds a dense tasks × annotators matrix: every sum over judgments is a
product with one sparse tasks × (annotator, answer) count matrix built once per fit.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from annotation_pipelines.aggregation.encoding import Encoded
from annotation_pipelines.aggregation.result import Fitted

EPSILON = 1e-10


def clamp_gold(posteriors: np.ndarray, gold_codes: np.ndarray | None) -> np.ndarray:
    """Set gold tasks' posteriors to their known class (in place)."""
    if gold_codes is not None:
        gold_tasks = np.flatnonzero(gold_codes >= 0)
        posteriors[gold_tasks] = 0.0
        posteriors[gold_tasks, gold_codes[gold_tasks]] = 1.0
    return posteriors


def vote_shares(encoded: Encoded) -> np.ndarray:
    votes = encoded.votes()
    totals = row_sum(votes)
    # A task without votes (possible in a subset fitted by `auto`) starts uniform.
    votes[totals == 0] = 1.0
    return votes / np.where(totals == 0, votes.shape[1], totals)[:, None]


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


def row_max(values: np.ndarray) -> np.ndarray:
    """`values.max(axis=1)`; column by column, which is several times faster for narrow rows."""
    if values.shape[1] > 16:
        return values.max(axis=1)
    result = values[:, 0].copy()
    for column in range(1, values.shape[1]):
        np.maximum(result, values[:, column], out=result)
    return result


def row_sum(values: np.ndarray) -> np.ndarray:
    """`values.sum(axis=1)` as a matrix–vector product (NumPy's narrow-row reduce is slow)."""
    return values @ np.ones(values.shape[1], dtype=values.dtype)


def column_mean(values: np.ndarray) -> np.ndarray:
    return np.ones(values.shape[0], dtype=values.dtype) @ values / max(values.shape[0], 1)


def normalise_log(scores: np.ndarray) -> np.ndarray:
    scores = scores - row_max(scores)[:, None]
    np.exp(scores, out=scores)
    scores /= row_sum(scores)[:, None]
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


def fit_dawid_skene(
    encoded: Encoded,
    *,
    max_iter: int = 100,
    tol: float = 1e-5,
    gold_codes: np.ndarray | None = None,
    initial_posteriors: np.ndarray | None = None,
) -> Fitted:
    k = encoded.n_classes
    matrix = answer_matrix(encoded)
    votes_per_task = encoded.votes_per_task().astype(np.float64)
    posteriors = vote_shares(encoded) if initial_posteriors is None else initial_posteriors.copy()
    clamp_gold(posteriors, gold_codes)

    def m_step(
        posteriors: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(prior, its log, expected counts, confusion matrices, their log)."""
        prior = column_mean(posteriors)
        counts = expected_counts(matrix, posteriors)
        errors = _confusion_from_counts(encoded, counts)
        with np.errstate(divide="ignore"):
            log_errors = np.log(errors.reshape(-1, k))
        return prior, np.log(np.maximum(prior, EPSILON)), counts, errors, log_errors

    prior, log_prior, counts, errors, log_errors = m_step(posteriors)
    loss = -np.inf
    iterations = 0
    converged = False
    for _ in range(max_iter):
        iterations += 1
        posteriors = normalise_log(task_log_likelihoods(matrix, log_errors, log_prior))
        clamp_gold(posteriors, gold_codes)
        prior, log_prior, counts, errors, log_errors = m_step(posteriors)
        new_loss = (
            evidence_lower_bound(encoded, posteriors, counts, log_errors, log_prior, votes_per_task)
            / encoded.n_judgments
        )
        if new_loss - loss < tol:
            converged = True
            break
        loss = new_loss
    skills = np.einsum("wcc,c->w", errors, prior)
    return Fitted(
        posteriors=posteriors,
        skills=skills,
        iterations=iterations,
        converged=converged,
        log_likelihood=float(new_loss * encoded.n_judgments) if iterations else None,
        confusion=errors,
    )
