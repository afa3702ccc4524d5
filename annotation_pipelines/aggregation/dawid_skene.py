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
product with one sparse tasks × (annotator, answer) count matrix built once per fit. Nor does
it keep dense A × K × K arrays while it iterates: a confusion row (w, answer) that no judgment
has is ε / column total in every column, so EM stores only the answered rows (see
`ConfusionRows`) and writes each M-step into the same buffers, its column totals summed in
the dense sum's order, so that the fit has the dense EM's bits. Up to
`ANSWERED_ROWS_MIN_CELLS` confusion cells the totals are NumPy's and the dense matrices are
built once, for the result; above it the totals are summed compiled and nothing of
A × K × K size is held at any point: the result carries the stored rows (`SparseConfusion`).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from annotation_pipelines.aggregation.confusion import (
    ANSWERED_ROWS_MIN_CELLS,
    LONG_GAP,
    SparseConfusion,
)
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

# Cells (rows × classes) per block where a per-row gather would otherwise make a temporary as
# large as the stored rows.
_BLOCK_CELLS = 1 << 18


def stored_cells(encoded: Encoded, *, every_row: bool = False) -> np.ndarray:
    """The confusion rows `w * K + answer` that EM keeps, ascending: those some judgment has,
    or with `every_row` all of them (a diagonal prior puts mass in every row)."""
    n_cells = encoded.n_annotators * encoded.n_classes
    if every_row:
        return np.arange(n_cells, dtype=np.int64)
    answered = np.zeros(n_cells, dtype=bool)
    answered[_cells(encoded)] = True
    return np.flatnonzero(answered)


def answer_matrix(encoded: Encoded, cells: np.ndarray) -> sparse.csr_array:
    """Sparse (n_tasks × len(cells)) count of judgments per task and stored (annotator, answer).

    Both EM steps are products with this matrix and a K-column dense one, which SciPy runs
    as one pass over the judgments (instead of K `bincount` passes with K gathered weights):
    E-step `M @ log_errors` sums each task's log-likelihoods; M-step `Mᵀ @ posteriors` sums
    the posteriors of the tasks each (annotator, answer) was given to. `Mᵀ` is a CSC view,
    whose product walks tasks in order, reading the large posterior array sequentially and
    scattering into the small count table, which stays in cache. `cells` is ascending, so a
    task's entries keep the order of the cells and each sum the order of the dense one.
    """
    index_type = np.int32 if max(encoded.n_judgments, encoded.n_tasks) < 2**31 - 1 else np.int64
    rows = encoded.tasks.astype(index_type)
    column_of_cell = np.empty(encoded.n_annotators * encoded.n_classes, dtype=index_type)
    column_of_cell[cells] = np.arange(cells.size, dtype=index_type)
    return sparse.csr_array(
        (np.ones(encoded.n_judgments), (rows, column_of_cell[_cells(encoded)])),
        shape=(encoded.n_tasks, cells.size),
    )


def _cells(encoded: Encoded) -> np.ndarray:
    """Each judgment's confusion row, `annotator * K + answer`."""
    return encoded.annotators.astype(np.int64) * encoded.n_classes + encoded.labels


def expected_counts(matrix: sparse.csr_array, posteriors: np.ndarray) -> np.ndarray:
    """counts[row, truth] = Σ over the row's (annotator, answer) of P(task's truth = truth)."""
    return np.asarray(matrix.T @ posteriors)


def task_log_likelihoods(
    matrix: sparse.csr_array, log_errors: np.ndarray, log_prior: np.ndarray
) -> np.ndarray:
    """log p(z = c) + Σ log e_w[answer, c] per task, shape (n_tasks, K)."""
    scores = np.asarray(matrix @ log_errors)
    scores += log_prior[None, :]
    return scores


class ConfusionRows:
    """Every annotator's confusion matrix, e_w[a, c] = max(n_w[a, c], ε) / Σ_a' max(n_w[a', c], ε),
    kept as the stored rows `cells` and the column totals; each M-step rewrites it in place.
    With `pseudo_count` (a diagonal prior) n_w[a, a] gains that many pseudo-judgments.

    A row that is not stored has no counts, so it is ε / total in every column (the prior's
    max(pseudo-count, ε) / total in its own class's column) and needs no storage: at 1,000
    classes and 50 annotators the dense A × K × K array is 400 MB, the answered rows of 30,000
    judgments less than half of it.

    The totals are summed in answer order, adding ε for each row not stored, as a sum over
    the dense array's answer axis adds its rows, so the matrices and their logs are the bits
    the dense arrays would hold. With `answer_order` that is NumPy's A × K² additions per
    M-step, in one A × K buffer. Without it a compiled pass adds the stored rows and, for each
    run of rows not stored, either ε row by row in registers or, for a run of `LONG_GAP` rows
    or more, the run's rounded sum in a few steps per column (`compiled`): no A × K × K
    memory anywhere (`into_sparse`), and time between (stored rows + A) × K and A × K² cheap
    additions. When every row is stored (few classes, or a diagonal prior in answer order)
    the rows are the dense array and are used as one.
    """

    def __init__(
        self,
        encoded: Encoded,
        cells: np.ndarray,
        *,
        pseudo_count: float = 0.0,
        answer_order: bool = True,
    ) -> None:
        k, n_annotators = encoded.n_classes, encoded.n_annotators
        self.cells = cells
        self.annotators = cells // k
        self.answers = cells % k
        self.every_row = cells.size == n_annotators * k
        self.pseudo_count = pseudo_count
        self.answer_order = answer_order or self.every_row
        if pseudo_count and self.answer_order and not self.every_row:
            raise ValueError("a diagonal prior summed in answer order needs every row stored")
        # The stored rows' own-class cells: the diagonal prior's pseudo-counts go there.
        self.diagonal_cells = (np.arange(cells.size), self.answers)
        # The floored counts, and after them one row of ε that stands for every row not stored.
        self.floored = np.empty((cells.size + 1, k))
        self.floored[-1] = EPSILON
        self.log_errors = np.empty((cells.size, k))
        self.totals = np.empty((n_annotators, k))
        if self.answer_order:
            # Per answer, the floored row each annotator adds to the totals.
            self._rows_by_answer = np.full((k, n_annotators), cells.size, dtype=np.int64)
            self._rows_by_answer[self.answers, self.annotators] = np.arange(cells.size)
            self._addend = np.empty((n_annotators, k))
            return
        # The compiled sum (Numba's import is paid only by fits this large).
        from annotation_pipelines.aggregation.compiled import column_totals_in_answer_order

        self._column_totals = column_totals_in_answer_order
        self._bounds = np.searchsorted(self.annotators, np.arange(n_annotators + 1))
        self._unstored = np.ones((n_annotators, k), dtype=bool)
        self._unstored[self.annotators, self.answers] = False

    def update(self, counts: np.ndarray) -> None:
        """Re-estimate from expected counts (stored rows × K), the prior's pseudo-counts
        added first."""
        floored = self.floored[:-1]
        if not self.pseudo_count:
            np.maximum(counts, EPSILON, out=floored)
        else:
            floored[...] = counts
            floored[self.diagonal_cells] += self.pseudo_count
            np.maximum(floored, EPSILON, out=floored)
        n_annotators, k = self.totals.shape
        if self.every_row:
            by_annotator = floored.reshape(n_annotators, k, k)
            np.sum(by_annotator, axis=1, out=self.totals)
            log_errors = self.log_errors.reshape(n_annotators, k, k)
            np.divide(by_annotator, self.totals[:, None, :], out=log_errors)
            with np.errstate(divide="ignore"):
                np.log(log_errors, out=log_errors)
            return
        if self.answer_order:
            self.totals.fill(0.0)
            for rows in self._rows_by_answer:
                np.take(self.floored, rows, axis=0, out=self._addend, mode="clip")
                self.totals += self._addend
        else:
            own = max(self.pseudo_count, EPSILON) if self.pseudo_count else 0.0
            self._column_totals(
                floored, self.answers, self._bounds, EPSILON, own, LONG_GAP, self.totals
            )
        for block in self._blocks():
            log_errors = self.log_errors[block]
            np.divide(floored[block], self.totals[self.annotators[block]], out=log_errors)
            with np.errstate(divide="ignore"):
                np.log(log_errors, out=log_errors)

    def diagonal_log_sum(self) -> float:
        """Σ_{w,c} log e_w[c, c]: the diagonal prior's log density, up to its constant, summed
        over the (annotator, class) array as the dense arrays' diagonal is."""
        if self.every_row:
            return float(self.log_errors[self.diagonal_cells].sum())
        diagonal = np.log(max(self.pseudo_count, EPSILON) / self.totals)
        diagonal[self.annotators, self.answers] = self.log_errors[self.diagonal_cells]
        return float(diagonal.sum())

    def into_dense(self) -> np.ndarray:
        """The (n_annotators, K answer, K truth) matrices, once EM is over: the logs' buffer
        is released and the floored rows become the stored rows' matrices in place, so that
        neither is held a second time beside the dense array."""
        n_annotators, k = self.totals.shape
        self.log_errors = np.empty((0, k))
        if self.every_row:
            errors = self.floored[:-1].reshape(n_annotators, k, k)
            errors /= self.totals[:, None, :]
            return errors
        errors = np.empty((n_annotators, k, k))
        errors[...] = (EPSILON / self.totals)[:, None, :]
        flat, rows = errors.reshape(-1, k), self.floored[:-1]
        for block in self._blocks():
            np.divide(rows[block], self.totals[self.annotators[block]], out=rows[block])
            flat[self.cells[block]] = rows[block]
        return errors

    def into_sparse(self) -> SparseConfusion:
        """The matrices as their stored rows (see `SparseConfusion`), once EM is over; the
        floored rows become the matrices' rows in place."""
        k = self.totals.shape[1]
        self.log_errors = np.empty((0, k))
        rows = self.floored[:-1]
        for block in self._blocks():
            np.divide(rows[block], self.totals[self.annotators[block]], out=rows[block])
        own = max(self.pseudo_count, EPSILON) / self.totals if self.pseudo_count else None
        return SparseConfusion(
            cells=self.cells, rows=rows, floor=EPSILON / self.totals, own_class=own
        )

    def _blocks(self) -> list[slice]:
        rows = max(1, _BLOCK_CELLS // self.totals.shape[1])
        return [slice(start, start + rows) for start in range(0, self.cells.size, rows)]


def evidence_lower_bound(
    posteriors: np.ndarray,
    counts: np.ndarray,
    log_errors: np.ndarray,
    log_prior: np.ndarray,
    votes_per_task: np.ndarray,
) -> float:
    """E_q[log p(answers, z)] + H(q), as crowd-kit computes it (prior counted per judgment).

    `counts` are the M-step's expected counts, so the answer term needs no pass over the
    judgments: Σ_j Σ_c q_jc log e[w_j, y_j, c] = Σ_{w,y,c} counts · log e. They are
    overwritten (with that product): the M-step has used them, and a fresh product would be
    another array of their size.
    """
    observed = row_sum(counts) > 0
    if observed.all():
        joint = float(np.sum(np.multiply(counts, log_errors, out=counts)))
    else:
        joint = float(np.sum(counts[observed] * log_errors[observed]))
    joint += float((votes_per_task @ posteriors) @ log_prior)
    clipped = np.maximum(posteriors, EPSILON).reshape(-1)
    entropy = -float(clipped @ np.log(clipped))
    return joint + entropy


def fit_dawid_skene(encoded: Encoded, options: FitOptions = DEFAULT_OPTIONS) -> Fitted:
    k = encoded.n_classes
    gold_codes = options.gold_codes
    diagonal = options.diagonal_pseudo_count
    answered_only = encoded.n_annotators * k * k > ANSWERED_ROWS_MIN_CELLS
    cells = stored_cells(encoded, every_row=bool(diagonal) and not answered_only)
    matrix = answer_matrix(encoded, cells)
    confusion = ConfusionRows(encoded, cells, pseudo_count=diagonal, answer_order=not answered_only)
    votes_per_task = encoded.votes_per_task().astype(np.float64)

    def m_step(posteriors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class prior, expected counts); the confusion matrices are re-estimated in place."""
        counts = expected_counts(matrix, posteriors)
        confusion.update(counts)
        return column_mean(posteriors), counts

    # The state is (posteriors, prior): the counts are used up by the bound within a step, so
    # the loop never holds two iterations' counts.
    def step(state: tuple[np.ndarray, np.ndarray]) -> tuple[tuple[np.ndarray, np.ndarray], float]:
        _, prior = state
        scores = task_log_likelihoods(matrix, confusion.log_errors, _log_prior(prior))
        posteriors = clamp_gold(normalise_log(scores), gold_codes)
        prior, counts = m_step(posteriors)
        bound = evidence_lower_bound(
            posteriors, counts, confusion.log_errors, _log_prior(prior), votes_per_task
        )
        if diagonal:
            # The Dirichlet prior's log density (up to a constant): the MAP objective.
            bound += diagonal * confusion.diagonal_log_sum()
        return (posteriors, prior), bound / encoded.n_judgments

    start = options.initial_posteriors
    posteriors = clamp_gold(vote_shares(encoded) if start is None else start.copy(), gold_codes)
    (posteriors, prior), convergence = iterate(
        step, (posteriors, m_step(posteriors)[0]), max_iter=options.max_iter, tol=options.tol
    )
    errors: np.ndarray | SparseConfusion
    if confusion.answer_order:
        errors = confusion.into_dense()
        skills = np.einsum("wcc,c->w", errors, prior)
    else:
        errors = confusion.into_sparse()
        skills = np.einsum("wc,c->w", errors.diagonal(), prior)
    return Fitted(
        posteriors=posteriors,
        skills=skills,
        iterations=convergence.iterations,
        converged=convergence.converged,
        log_likelihood=float(convergence.objective * encoded.n_judgments),
        confusion=errors,
    )


def _log_prior(prior: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(prior, EPSILON))
