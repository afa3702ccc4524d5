"""What the EM-style kernels share: the iteration loop, gold clamping and row arithmetic.

`iterate` is the one loop: it runs a method's step until the objective stops improving by
`tol` (crowd-kit 1.4.2's rule: stop as soon as `new − previous < tol`, which also stops on a
numerical decrease), and reports honestly whether that happened. A method with a fixed
schedule (MACE, Zero-Based Skill) runs every step and is reported converged only when its
last step changed the objective by less than `tol`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from annotation_pipelines.aggregation.encoding import Encoded

# Floor on probabilities before a log, as crowd-kit.
EPSILON = 1e-10

State = TypeVar("State")


@dataclass(frozen=True)
class Convergence:
    """How an iterative fit ended: steps run, whether it converged, the last objective."""

    iterations: int
    converged: bool
    objective: float


def iterate(
    step: Callable[[State], tuple[State, float]],
    state: State,
    *,
    max_iter: int,
    tol: float,
    stop_early: bool = True,
) -> tuple[State, Convergence]:
    """Run `step` (state → (next state, objective)) at most `max_iter` times.

    With `stop_early`, stop after the first step whose objective is less than `tol` above
    the previous one; converged then means the objective moved by less than `tol` (a drop
    larger than `tol` stops the loop but is not convergence). Without it, every step runs
    and convergence is judged on the last one.
    """
    previous = -np.inf
    objective = np.nan
    iterations = 0
    converged = False
    for _ in range(max_iter):
        iterations += 1
        state, objective = step(state)
        change = objective - previous
        converged = bool(abs(change) < tol)
        if stop_early and change < tol:
            break
        previous = objective
    return state, Convergence(iterations=iterations, converged=converged, objective=objective)


def clamp_gold(posteriors: np.ndarray, gold_codes: np.ndarray | None) -> np.ndarray:
    """Set gold tasks' posteriors to their known class (in place)."""
    if gold_codes is not None:
        gold_tasks = np.flatnonzero(gold_codes >= 0)
        posteriors[gold_tasks] = 0.0
        posteriors[gold_tasks, gold_codes[gold_tasks]] = 1.0
    return posteriors


def vote_shares(encoded: Encoded) -> np.ndarray:
    """Each task's share of votes per class: the usual first posteriors."""
    votes = encoded.votes()
    totals = row_sum(votes)
    # A task without votes (possible in a subset fitted by `auto`) starts uniform.
    votes[totals == 0] = 1.0
    return votes / np.where(totals == 0, votes.shape[1], totals)[:, None]


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
    """Rows of log scores → rows of probabilities (softmax, shifted by the row maximum)."""
    scores = scores - row_max(scores)[:, None]
    np.exp(scores, out=scores)
    scores /= row_sum(scores)[:, None]
    return scores
