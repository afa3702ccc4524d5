"""Calibrated confidence: a probability that the chosen label is right, for every method.

A method's own posterior is overconfident whenever its model says the evidence is stronger
than it is. Dawid–Skene multiplies the likelihoods of all of a task's votes as if annotators
erred independently, with confusion matrices estimated from the very task they are applied to;
on the shared crowd sets it states 0.986 mean confidence where 0.889 of the labels are right
(Duck), and 1.0 on a 2-against-1 vote in a five-task file. Three corrections, one
configuration for every data set, no ground truth needed:

1. **Priors that shrink.** Each annotator's confusion row is shrunk toward the pooled row of
   all annotators (empirical Bayes: e_w(a | c) = (n_w(a, c) + s · m(a | c)) / (n_w(c) + s)),
   and the pooled matrix toward a Dirichlet prior with extra mass on the diagonal (annotators
   beat chance); the class prior gets a symmetric Dirichlet prior. An annotator seen on three
   tasks is not "always right", and a vote for a class no other task has is still evidence
   for that class (a uniform row would make it evidence for nothing, and a unanimous vote on
   a tiny file would fall below 1/K). The strength s is chosen on a grid by the same held-out
   likelihood as τ (below): the strongest s within one standard error of the best, so a
   handful of tasks pools its annotators rather than trusting three tasks each.
2. **Cross-fitting.** A task's calibrated posterior uses confusion matrices (the annotator's
   and the pooled one) estimated with that task left out (its soft labels subtracted from the
   expected counts, exact and O(judgments · K)), so a task never vouches for itself. The class
   prior keeps the task: each task is one of n in it, and leaving it out would bias the prior
   against the task's own class, which on a few tasks outweighs a 2-against-1 vote.
3. **Tempered evidence.** Votes on one task are correlated (hard items fool many annotators),
   so the summed log-likelihoods overcount the evidence. They are scaled by a temperature
   τ ∈ [`MIN_TEMPERATURE`, 1], chosen per fit to maximise the leave-one-judgment-out predictive
   likelihood (for the chosen s): each judgment on a task with two or more votes is predicted
   from the task's other votes, P(answer) = Σ_c P_τ(c | others) · e_w(answer | c). A
   posterior that claims more certainty than the other votes carry predicts the held-out
   answers worse, so τ falls below 1 exactly as far as the crowd's own disagreement
   warrants (the same held-out criterion `auto` uses to choose a method). s and τ are
   estimated on a hash-chosen sample of at most `TEMPERATURE_SAMPLE_TASKS` tasks, so the
   cost stays linear on large inputs. It is still judgments × K per grid point (6 × 62): no
   class's e_w(a | c) is shared with another's (soft labels and per-class totals), so each
   prediction sums over all K classes; with many classes that sum runs compiled
   (`calibration_kernel`).

The method's label is kept (accuracy is unchanged); its confidence becomes the calibrated
probability of that label, reported as is even where the calibrated posterior prefers another
label (a degenerate fit on a few tasks then shows as a confidence below 1/2). Gold tasks
keep confidence 1. The method's own posteriors stay in the result (`posterior`,
`raw_confidence`).

Measured (10 equal-width bins, confidence of the chosen label against correctness, shared
crowd sets, Dawid–Skene labels; `expected_calibration_error`): D_Product .0260, D_PosSent
.0158, Duck .0500, RTE .0317, mean .0309 (raw posterior: mean .0584).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from annotation_pipelines.aggregation.encoding import Encoded

# Pseudo-counts per class of the Dirichlet prior on the class prior: two pseudo-tasks per class,
# so that on a handful of tasks the class frequencies (themselves the method's guesses) do not
# outweigh a 2-against-1 vote; on hundreds of tasks they are immaterial.
PRIOR_PSEUDO_COUNT = 2.0
# Dirichlet prior of each truth column of the pooled confusion matrix (all annotators'
# judgments together), `pooled_prior`: `POOLED_PSEUDO_COUNT` per class plus
# `POOLED_DIAGONAL_EXTRA`, K + 1 pseudo-counts, of which the right answer holds as large a share
# as at K = 2 (2 of 3) and the K − 1 wrong answers share the rest: the prior belief that
# annotators beat chance, right two times in three, whatever K. It only matters where the
# pooled counts are thin (a class few other tasks have); there a vote for c is evidence for c,
# where a uniform row would make it evidence for nothing. One pseudo-count on every wrong answer
# instead made the prior's accuracy 2 / (K + 1): at 2,000 classes its 2,001 pseudo-counts
# drowned a column's few votes, and three unanimous votes read 0.04 where they were right.
POOLED_PSEUDO_COUNT = 1.0
POOLED_DIAGONAL_EXTRA = 1.0
# Candidate strengths of the shrinkage of each annotator's confusion row toward the pooled one,
# in pseudo-judgments per class (a row gets K times as many); chosen per fit with τ. The
# weakest is the mass of a Dirichlet(1) row: an annotator seen on three tasks is not "always
# right" however the held-out likelihood of a small file happens to fall.
SHRINKAGE_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
# The strength used when no task has two votes, so nothing can choose one.
DEFAULT_SHRINKAGE = 2.0
# The evidence is never tempered below this: on a handful of tasks the held-out likelihood is
# flat and would otherwise drive every posterior to the class prior.
MIN_TEMPERATURE = 0.05
TEMPERATURE_SAMPLE_TASKS = 50_000
# Candidate temperatures, log-spaced (about 5 % apart) from MIN_TEMPERATURE to 1.
TEMPERATURE_GRID = np.exp(np.linspace(np.log(MIN_TEMPERATURE), 0.0, 62))
# Judgments processed per block when the per-judgment arrays would be large.
_BLOCK = 1 << 20
# Cells (judgments × classes) per sub-block of the held-out rows: their half-dozen
# temporaries then stay near 100 MB whatever K is, where a whole block of them took
# gigabytes at a thousand classes.
_ROWS_CELLS = 1 << 21
# Cells per block of the temperature search: its four K × block arrays then fit in L2, so the
# 62 passes per shrinkage run from cache instead of streaming K × judgments arrays from memory.
_SEARCH_CELLS = 1 << 17
# From this many cells (held-out judgments × classes) on, the temperature search runs
# compiled (`calibration_kernel`): below it, importing Numba costs more than it saves.
COMPILED_MIN_CELLS = 1 << 21
_FLOOR = 1e-300


@dataclass(frozen=True)
class Calibrated:
    """Calibrated posteriors (n_tasks × K), the temperature and the shrinkage strength used."""

    posteriors: np.ndarray
    temperature: float
    shrinkage: float  # pseudo-judgments per confusion row toward the pooled row (0: none)


@dataclass(frozen=True)
class _Counts:
    """Expected counts from the method's soft labels, from which held-out parameters are cut.

    An annotator's confusion counts n_w(a, ·) are kept only for the answers a that w gave: a
    row (w, a) with no judgment is all zeros and no held-out row ever reads it, so storing
    the dense annotators × K × K array (6 GB at 2,000 classes and 200 annotators) bought
    nothing. The stored rows are at most one per judgment.
    """

    soft: np.ndarray  # (n_tasks, K): the method's posteriors, 0 on the tasks not counted
    answered: np.ndarray  # (n_answered, K truth): n_w(a, ·) per answered (w, a), ascending
    judgment_rows: np.ndarray  # (n_judgments,): each judgment's row of `answered`
    annotator_totals: np.ndarray  # (n_annotators, K truth)
    pooled: np.ndarray  # (K answer, K truth), with the pooled prior's pseudo-counts
    pooled_totals: np.ndarray  # (K truth), with the pooled prior's pseudo-counts
    task_votes: np.ndarray  # (n_tasks, K answer)
    task_sizes: np.ndarray  # (n_tasks,)


def calibrate(
    encoded: Encoded, posteriors: np.ndarray, *, gold_codes: np.ndarray | None = None
) -> Calibrated:
    """Calibrated posteriors from a method's `posteriors` used as soft labels (see module)."""
    k = encoded.n_classes
    if k < 2 or encoded.n_judgments == 0:
        return Calibrated(posteriors=posteriors.copy(), temperature=1.0, shrinkage=0.0)
    soft = np.asarray(posteriors, dtype=np.float64)
    counts = _counts(encoded, soft)
    log_prior = _held_out_log_prior(soft)
    shrinkage, temperature = _choose_shrinkage_and_temperature(encoded, counts, log_prior)
    evidence = np.zeros((encoded.n_tasks, k))
    for block in _blocks(encoded.n_judgments):
        indices = np.arange(block.start, block.stop)
        evidence += _task_sums(
            encoded, indices, _held_out_log_errors_blocked(encoded, counts, indices, shrinkage)
        )
    calibrated = _softmax(temperature * evidence + log_prior)
    if gold_codes is not None:
        gold = np.flatnonzero(gold_codes >= 0)
        calibrated[gold] = 0.0
        calibrated[gold, gold_codes[gold]] = 1.0
    return Calibrated(posteriors=calibrated, temperature=temperature, shrinkage=shrinkage)


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


def _counts(encoded: Encoded, soft: np.ndarray) -> _Counts:
    """Expected confusion counts from the soft labels of the tasks with two or more votes.

    A task with one vote is left out: its soft label is that vote's own echo (a method's
    posterior of a lone vote follows its annotator), so counting it makes an annotator who
    works alone look always right, and a lone vote read 0.999 on D_PosSent cut to one vote per
    task, where 57 % of them are right. Only tasks with other votes measure an annotator.
    """
    k = encoded.n_classes
    cell = encoded.annotators.astype(np.int64) * k + encoded.labels
    # With few classes the dense table is no larger than the judgments, and finding the
    # answered rows (a sort of the judgments) would cost more than the zeros it saves.
    dense = encoded.n_annotators * k <= encoded.n_judgments
    if dense:
        cells, judgment_rows = np.arange(encoded.n_annotators * k), cell
    else:
        cells, judgment_rows = np.unique(cell, return_inverse=True)
        judgment_rows = judgment_rows.reshape(-1)
    sizes = encoded.votes_per_task()
    weights = np.where((sizes >= 2)[:, None], soft, 0.0)
    # Class-major, so that each class's pass gathers from one contiguous row.
    by_class = np.ascontiguousarray(weights.T)
    answered = np.empty((cells.size, k))
    for truth in range(k):
        # One ordered pass over the judgments per class, as the dense table's bincount made:
        # each stored count is the same sum in the same order.
        answered[:, truth] = np.bincount(
            judgment_rows, weights=by_class[truth][encoded.tasks], minlength=cells.size
        )
    del by_class
    if dense:
        table = answered.reshape(encoded.n_annotators, k, k)
        annotator_totals, pooled = table.sum(axis=1), table.sum(axis=0)
    else:
        annotator_totals = np.zeros((encoded.n_annotators, k))
        pooled = np.zeros((k, k))
        # The dense table summed its answer axis (and its annotator axis) one row at a time
        # in ascending order, and a row of zeros adds nothing: adding the stored rows in
        # ascending (w, a) order gives every total the same bits.
        np.add.at(annotator_totals, cells // k, answered)
        np.add.at(pooled, cells % k, answered)
    pooled += pooled_prior(k)
    return _Counts(
        soft=weights,
        answered=answered,
        judgment_rows=judgment_rows,
        annotator_totals=annotator_totals,
        pooled=pooled,
        pooled_totals=pooled.sum(axis=0),
        task_votes=encoded.votes(),
        task_sizes=sizes.astype(np.float64),
    )


def pooled_prior(k: int) -> np.ndarray:
    """The pooled confusion matrix's Dirichlet pseudo-counts (K answer × K truth), see
    `POOLED_PSEUDO_COUNT`; at K = 2 one per cell plus one on the diagonal."""
    wrong, right = beat_chance_pseudo_counts(
        k, per_cell=POOLED_PSEUDO_COUNT, diagonal_extra=POOLED_DIAGONAL_EXTRA
    )
    prior = np.full((k, k), wrong)
    np.fill_diagonal(prior, right)
    return prior


def beat_chance_pseudo_counts(
    k: int, *, per_cell: float, diagonal_extra: float
) -> tuple[float, float]:
    """(each wrong answer's, the right answer's) pseudo-count in a truth column of a confusion
    prior over K classes: `per_cell` per class plus `diagonal_extra`, K·per_cell +
    diagonal_extra in all, the right answer holding the share it holds at K = 2 ((per_cell +
    diagonal_extra) / (2·per_cell + diagonal_extra): 2/3 for one and one) whatever K, the K − 1
    wrong answers the rest. At K = 2 it is `per_cell` and `per_cell + diagonal_extra`."""
    total = k * per_cell + diagonal_extra
    right = total * (per_cell + diagonal_extra) / (2 * per_cell + diagonal_extra)
    return (total - right) / max(k - 1, 1), right


def _held_out_log_prior(soft: np.ndarray) -> np.ndarray:
    """log P(class) per task from the other tasks' soft labels plus the Dirichlet prior."""
    k = soft.shape[1]
    pseudo = soft.sum(axis=0)[None, :] + PRIOR_PSEUDO_COUNT
    return np.repeat(
        np.log(pseudo / (soft.shape[0] + k * PRIOR_PSEUDO_COUNT)), soft.shape[0], axis=0
    )


def _held_out_log_errors(
    encoded: Encoded, counts: _Counts, indices: np.ndarray, shrinkage: float
) -> np.ndarray:
    """log e_w(answer | c) per judgment in `indices`, estimated without the judgment's task.

    e_w(a | c) = (n_w(a, c) + s · m(a | c)) / (n_w(c) + s): annotator w's counts shrunk with
    strength s toward the pooled row m, itself the pooled counts plus its prior. Both leave
    the task out, so where w (or everyone) has no other evidence on class c the row falls
    back to the pooled row (or the prior), never to a uniform row.
    """
    numerator, denominator = _held_out_rows(encoded, counts, indices, shrinkage)
    return np.log(np.maximum(numerator, _FLOOR) / denominator)


def _held_out_log_errors_blocked(
    encoded: Encoded, counts: _Counts, indices: np.ndarray, shrinkage: float
) -> np.ndarray:
    """`_held_out_log_errors`, computed `_ROWS_CELLS` cells at a time.

    Every step is elementwise, so the values are the same bits as in one pass; only the
    temporaries shrink to one sub-block.
    """
    k = encoded.n_classes
    log_errors = np.empty((indices.size, k))
    rows = max(1, _ROWS_CELLS // k)
    for start in range(0, indices.size, rows):
        stop = min(start + rows, indices.size)
        log_errors[start:stop] = _held_out_log_errors(
            encoded, counts, indices[start:stop], shrinkage
        )
    return log_errors


def _held_out_rows(
    encoded: Encoded, counts: _Counts, indices: np.ndarray, shrinkage: float
) -> tuple[np.ndarray, np.ndarray]:
    """The shrunk counts n_w(a, c) + s · m(a | c) and totals n_w(c) + s of
    `_held_out_log_errors`, per judgment in `indices`, its task left out."""
    tasks = encoded.tasks[indices]
    annotators = encoded.annotators[indices]
    answers = encoded.labels[indices]
    own = counts.soft[tasks]
    pooled = counts.pooled[answers, :] - counts.task_votes[tasks, answers][:, None] * own
    pooled_totals = counts.pooled_totals[None, :] - counts.task_sizes[tasks][:, None] * own
    numerator = counts.answered[counts.judgment_rows[indices]] - own
    numerator += shrinkage * np.maximum(pooled, _FLOOR) / pooled_totals
    denominator = counts.annotator_totals[annotators] - own + shrinkage
    return numerator, denominator


def _task_sums(encoded: Encoded, indices: np.ndarray, per_judgment: np.ndarray) -> np.ndarray:
    """Per-judgment rows summed per task, shape (n_tasks, K)."""
    tasks = encoded.tasks[indices]
    sums = np.zeros((encoded.n_tasks, per_judgment.shape[1]))
    for truth in range(per_judgment.shape[1]):
        sums[:, truth] = np.bincount(
            tasks, weights=per_judgment[:, truth], minlength=encoded.n_tasks
        )
    return sums


def _choose_shrinkage_and_temperature(
    encoded: Encoded, counts: _Counts, log_prior: np.ndarray
) -> tuple[float, float]:
    """(s, τ) on their grids by the leave-one-judgment-out predictive likelihood.

    s is the strongest shrinkage whose likelihood (each s at its best τ) is within one
    standard error, paired over tasks, of the best s: telling annotators apart must be worth
    more than the noise of the held-out estimate, which on a handful of tasks is large, so
    small files pool their annotators instead of trusting three tasks each. τ is then the
    maximiser for that s (tempering is sensitive: any slack there costs calibration).
    """
    chosen = _selection_judgments(encoded)
    if chosen.size == 0:
        return DEFAULT_SHRINKAGE * encoded.n_classes, 1.0
    tasks = encoded.tasks[chosen]
    sampled = np.unique(tasks)
    temperatures: list[float] = []
    totals: list[float] = []
    per_task: list[np.ndarray] = []  # Σ log P(held-out answer) per sampled task, at the best τ
    strengths = [per_class * encoded.n_classes for per_class in SHRINKAGE_GRID]
    for shrinkage in strengths:
        log_errors = _held_out_log_errors_blocked(encoded, counts, chosen, shrinkage)
        task_sums = _task_sums(encoded, chosen, log_errors)
        scores = _held_out_log_likelihoods_on_grid(tasks, log_errors, task_sums, log_prior)
        column = _largest_near_best([float(score.sum()) for score in scores])
        temperatures.append(float(TEMPERATURE_GRID[column]))
        totals.append(float(scores[column].sum()))
        task_scores = np.bincount(tasks, weights=scores[column], minlength=encoded.n_tasks)
        per_task.append(task_scores[sampled])
    best = per_task[_largest_near_best(totals)]
    # On two tasks, one of them tied, the mean difference is minus its standard error exactly,
    # and the last bits of the sums (row order) would decide: a relative 1e-9 of slack, as in
    # `_largest_near_best`, makes the tie hold whatever the order.
    tolerance = 1e-9 * max(float(np.abs(best).sum()), 1.0)
    row = len(strengths) - 1
    while row > 0:
        difference = per_task[row] - best
        if difference.mean() >= -_standard_error(difference) - tolerance:
            break
        row -= 1
    return float(strengths[row]), temperatures[row]


def _held_out_log_likelihoods_on_grid(
    tasks: np.ndarray, log_errors: np.ndarray, task_sums: np.ndarray, log_prior: np.ndarray
) -> np.ndarray:
    """log Σ_c P_τ(c | the task's other votes) · e_w(answer | c) per held-out judgment, for
    every τ of `TEMPERATURE_GRID` (rows) and judgment (columns).

    There is no sparse form to exploit: soft labels, the held-out corrections and the class
    totals in each row's denominator make every class's log e_w(a | c) its own number, so
    each (τ, judgment) needs its full K-term sum. What the search can avoid is memory
    traffic: judgments go in blocks whose class-major (K × block) arrays stay in cache across
    the whole τ grid. Each column is summed over classes in class order, as one dense
    class-major pass would, so the scores are the same bits as that pass.
    """
    k = log_errors.shape[1]
    scores = np.empty((TEMPERATURE_GRID.size, tasks.size))
    if tasks.size * k >= COMPILED_MIN_CELLS:
        kernel = _compiled_search()
        if kernel is not None:
            kernel(tasks, log_errors, task_sums, log_prior, TEMPERATURE_GRID, scores)
            return scores
    # NumPy sums a single column pairwise, not in class order: no block is one column wide.
    width = max(2, _SEARCH_CELLS // k)
    start = 0
    while start < tasks.size:
        stop = tasks.size if tasks.size - start <= width + 1 else start + width
        block_tasks = tasks[start:stop]
        block_errors = log_errors[start:stop]
        others = np.ascontiguousarray((task_sums[block_tasks] - block_errors).T)
        prior = np.ascontiguousarray(log_prior[block_tasks].T)
        answer_probabilities = np.ascontiguousarray(np.exp(block_errors.T))
        weights = np.empty_like(others)
        products = np.empty_like(others)
        for row, temperature in enumerate(TEMPERATURE_GRID):
            np.multiply(temperature, others, out=weights)
            weights += prior
            weights -= weights.max(axis=0)
            np.exp(weights, out=weights)
            np.multiply(weights, answer_probabilities, out=products)
            predicted = products.sum(axis=0) / weights.sum(axis=0)
            scores[row, start:stop] = np.log(np.maximum(predicted, _FLOOR))
        start = stop
    return scores


def _selection_judgments(encoded: Encoded) -> np.ndarray:
    """Judgments of the tasks with two or more votes (at most a hash-chosen sample of them)."""
    sampled_task = encoded.votes_per_task() >= 2
    if int(sampled_task.sum()) > TEMPERATURE_SAMPLE_TASKS:
        # A sample of tasks drawn from their values' hashes, so it does not depend on row order.
        hashes = encoded.task_values.hash(seed=3).to_numpy()
        threshold = np.sort(hashes[sampled_task])[TEMPERATURE_SAMPLE_TASKS - 1]
        sampled_task &= hashes <= threshold
    return np.flatnonzero(sampled_task[encoded.tasks])


def _compiled_search() -> Callable[..., None] | None:
    try:
        from annotation_pipelines.aggregation.calibration_kernel import (
            held_out_log_likelihoods_on_grid,
        )
    except ImportError:  # pragma: no cover - Numba is a dependency; guard exotic platforms
        return None
    return held_out_log_likelihoods_on_grid


def _largest_near_best(scores: list[float]) -> int:
    """The last index within a relative 1e-9 of the best score.

    Fixed grids, and the last (largest) candidate among the near-best: a continuous optimiser
    on a flat objective lands on points that move with the last bits of the sums, i.e. with
    row order; this choice does not, and it tempers only as far as the evidence asks.
    """
    best = max(scores)
    tolerance = 1e-9 * max(abs(best), 1.0)
    return max(index for index, score in enumerate(scores) if score >= best - tolerance)


def _standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of `values`; infinite for fewer than two."""
    if values.size < 2:
        return float("inf")
    return float(values.std(ddof=1) / np.sqrt(values.size))


def _blocks(n: int) -> list[slice]:
    return [slice(start, min(start + _BLOCK, n)) for start in range(0, n, _BLOCK)]


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores
