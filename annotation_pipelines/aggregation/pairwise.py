"""Pairwise preferences (side-by-side evaluations) scored with the Bradley–Terry model.

R. A. Bradley and M. E. Terry, "Rank Analysis of Incomplete Block Designs: I. The Method of
Paired Comparisons", Biometrika 39(3/4), 1952, 324–345; D. R. Hunter, "MM algorithms for
generalized Bradley–Terry models", Annals of Statistics 32(1), 2004, 384–406.

Model: item i has a score θ_i and wins a comparison against j with probability
σ(θ_i − θ_j) = e^θ_i / (e^θ_i + e^θ_j). Scores are maximum-likelihood estimates, centred to sum
to zero (only differences are identified). A tie counts as half a win for each side, the usual
convention (it leaves the likelihood's maximiser where the win shares say). The fit is
Newton's method on the concave log-likelihood with a backtracking line search (a few
iterations), or Hunter's MM update `π_i ← W_i / Σ_j n_ij / (π_i + π_j)` (each step raises the
likelihood; slower, but no n × n solve). The interval on each score is the Wald interval from
the observed Fisher information: the Hessian H of the negative log-likelihood at the estimate
(H_ii = Σ_j n_ij p_ij p_ji, H_ij = −n_ij p_ij p_ji) is singular along the all-ones direction,
and its Moore–Penrose pseudo-inverse is the covariance of the centred scores.

The maximum-likelihood estimate exists only when every item has beaten and been beaten by
some path of comparisons (the win graph is strongly connected; Hunter 2004, assumption 1). An
item that never lost would have θ = +∞; then either pass `regularization` > 0 (a Gaussian
prior θ ~ N(0, 1/λ), making the fit a MAP estimate and H + λI the information) or the call
raises and names such an item.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from scipy import sparse
from scipy.sparse import csgraph
from scipy.special import expit, ndtri

from annotation_pipelines.aggregation.encoding import encode_column

_LEFT_WORDS = ("left", "a")
_RIGHT_WORDS = ("right", "b")
_TIE_WORDS = ("tie", "draw", "equal", "both", "neither", "none")


def bradley_terry(
    comparisons: pl.DataFrame,
    *,
    left_column: str = "left_id",
    right_column: str = "right_id",
    winner_column: str = "winner",
    algorithm: Literal["newton", "mm"] = "newton",
    regularization: float = 0.0,
    confidence: float = 0.95,
    max_iter: int = 10_000,
    tol: float = 1e-10,
) -> pl.DataFrame:
    """One row per item: `item_id`, `score` (θ, natural-log scale, centred), `low`, `high`
    (Wald interval at `confidence`), `standard_error`, `rank` (1 = best), `wins`, `losses`,
    `ties`, `n_comparisons`; sorted by score, best first.

    Each row of `comparisons` is one comparison of the item in `left_column` with the one in
    `right_column`. `winner_column` holds `left`/`right` (or `a`/`b`), the winning item's id,
    or `tie` (also `draw`, `equal`, `both`, `neither`, `none`), case-insensitive.
    """
    if algorithm not in ("newton", "mm"):
        raise ValueError(f"unknown algorithm {algorithm!r}; expected 'newton' or 'mm'")
    if regularization < 0:
        raise ValueError(f"regularization must be non-negative, got {regularization}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    left, right, outcome, items = _encode(comparisons, left_column, right_column, winner_column)
    n = items.len()
    # wins[i, j]: how often i beat j (ties count one half to each side).
    wins = np.zeros((n, n))
    np.add.at(wins, (left, right), np.where(outcome == 0, 1.0, np.where(outcome == 2, 0.5, 0.0)))
    np.add.at(wins, (right, left), np.where(outcome == 1, 1.0, np.where(outcome == 2, 0.5, 0.0)))
    if regularization == 0:
        _check_connected(wins, items)
    if algorithm == "newton":
        scores = _newton(wins, regularization, max_iter=max_iter, tol=tol)
    else:
        scores = _minorize_maximize(wins, regularization, max_iter=max_iter, tol=tol)
    covariance = _covariance(wins, scores, regularization)
    standard_error = np.sqrt(np.maximum(np.diag(covariance), 0.0))
    # ndtri is the standard normal quantile (norm.ppf) without importing scipy.stats (~1.4 s).
    z = float(ndtri(1 - (1 - confidence) / 2))
    decisive = np.bincount(left, weights=outcome == 0, minlength=n) + np.bincount(
        right, weights=outcome == 1, minlength=n
    )
    defeats = np.bincount(left, weights=outcome == 1, minlength=n) + np.bincount(
        right, weights=outcome == 0, minlength=n
    )
    tied = np.bincount(left, weights=outcome == 2, minlength=n) + np.bincount(
        right, weights=outcome == 2, minlength=n
    )
    table = pl.DataFrame(
        {
            "item_id": items,
            "score": scores,
            "low": scores - z * standard_error,
            "high": scores + z * standard_error,
            "standard_error": standard_error,
            "wins": pl.Series(decisive, dtype=pl.UInt32),
            "losses": pl.Series(defeats, dtype=pl.UInt32),
            "ties": pl.Series(tied, dtype=pl.UInt32),
            "n_comparisons": pl.Series(decisive + defeats + tied, dtype=pl.UInt32),
        }
    )
    return (
        table.sort("score", descending=True, maintain_order=True)
        .with_columns(pl.int_range(1, n + 1, dtype=pl.UInt32).alias("rank"))
        .select(
            "item_id",
            "score",
            "low",
            "high",
            "standard_error",
            "rank",
            "wins",
            "losses",
            "ties",
            "n_comparisons",
        )
    )


def log_likelihood(wins: np.ndarray, scores: np.ndarray) -> float:
    """Σ_ij wins_ij · log σ(θ_i − θ_j)."""
    difference = scores[:, None] - scores[None, :]
    return float(np.sum(wins * -np.logaddexp(0.0, -difference)))


def _encode(
    comparisons: pl.DataFrame, left_column: str, right_column: str, winner_column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pl.Series]:
    """(left codes, right codes, outcome 0 = left won / 1 = right won / 2 = tie, items)."""
    columns = (left_column, right_column, winner_column)
    missing = [column for column in columns if column not in comparisons.columns]
    if missing:
        raise ValueError(
            f"comparisons: missing column(s) {', '.join(missing)}; "
            f"have {', '.join(comparisons.columns)}"
        )
    frame = comparisons.select(columns)
    for column in columns:
        nulls = frame.get_column(column).null_count()
        if nulls:
            raise ValueError(f"comparisons: column {column!r} has {nulls} empty value(s)")
    if frame.height == 0:
        raise ValueError("comparisons: no rows")
    both = pl.concat([frame.get_column(left_column), frame.get_column(right_column)])
    codes, items = encode_column(both.rename("item_id"), sort=True)
    left, right = codes[: frame.height], codes[frame.height :]
    same = left == right
    if same.any():
        row = int(np.flatnonzero(same)[0])
        raise ValueError(
            f"comparisons: row {row} compares item {items[int(left[row])]!r} with itself"
        )
    winner = frame.get_column(winner_column).cast(pl.String)
    word = winner.str.strip_chars().str.to_lowercase()
    outcome = (
        pl.select(
            pl.when(winner == frame.get_column(left_column).cast(pl.String))
            .then(0)
            .when(winner == frame.get_column(right_column).cast(pl.String))
            .then(1)
            .when(word.is_in(_LEFT_WORDS))
            .then(0)
            .when(word.is_in(_RIGHT_WORDS))
            .then(1)
            .when(word.is_in(_TIE_WORDS))
            .then(2)
            .otherwise(-1)
        )
        .to_series()
        .to_numpy()
    )
    unknown = outcome < 0
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise ValueError(
            f"comparisons: row {row} column {winner_column!r}: {winner[row]!r} is neither side's "
            f"id nor one of left/right/a/b/{'/'.join(_TIE_WORDS)}"
        )
    return left, right, outcome, items


def _check_connected(wins: np.ndarray, items: pl.Series) -> None:
    count, membership = csgraph.connected_components(
        sparse.csr_array(wins > 0), directed=True, connection="strong"
    )
    if count <= 1:
        return
    # Name an item in a component that no other component ever beat (a "source"): its
    # members' scores run off to +infinity relative to the rest.
    beaten_from_outside = np.zeros(count, dtype=bool)
    losers, winners = np.nonzero((wins > 0).T)  # winners beat losers
    outside = membership[winners] != membership[losers]
    beaten_from_outside[membership[losers[outside]]] = True
    source = int(np.flatnonzero(~beaten_from_outside)[0])
    example = items[int(np.flatnonzero(membership == source)[0])]
    raise ValueError(
        f"comparisons: the maximum-likelihood scores do not exist: item {example!r} (with "
        f"{int(np.count_nonzero(membership == source)) - 1} other item(s)) was never beaten "
        "by any item outside its group (Hunter 2004, assumption 1); pass regularization > 0"
    )


def _gradient_hessian(
    wins: np.ndarray, scores: np.ndarray, regularization: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and negative Hessian (the observed information) of the log-likelihood."""
    totals = wins + wins.T
    probability = expit(scores[:, None] - scores[None, :])  # P(i beats j)
    gradient = wins.sum(axis=1) - np.sum(totals * probability, axis=1) - regularization * scores
    weight = totals * probability * probability.T
    information = np.diag(weight.sum(axis=1)) - weight + regularization * np.eye(len(scores))
    return gradient, information


def _objective(wins: np.ndarray, scores: np.ndarray, regularization: float) -> float:
    return log_likelihood(wins, scores) - 0.5 * regularization * float(scores @ scores)


def _newton(wins: np.ndarray, regularization: float, *, max_iter: int, tol: float) -> np.ndarray:
    n = wins.shape[0]
    scores = np.zeros(n)
    ones = np.ones((n, n)) / n
    current = _objective(wins, scores, regularization)
    for _ in range(max_iter):
        gradient, information = _gradient_hessian(wins, scores, regularization)
        if np.max(np.abs(gradient)) < tol:
            break
        # Adding 11ᵀ/n fixes the direction the likelihood cannot see (a common shift) without
        # changing the step within the sum-zero plane.
        step = np.linalg.solve(information + (ones if regularization == 0 else 0.0), gradient)
        length = 1.0
        while True:
            candidate = scores + length * step
            value = _objective(wins, candidate, regularization)
            if value >= current - 1e-12 * abs(current) or length < 1e-8:
                break
            length /= 2
        scores, current = candidate - candidate.mean(), value
        if length * np.max(np.abs(step)) < tol or length < 1e-8:
            break
    return scores - scores.mean()


def _minorize_maximize(
    wins: np.ndarray, regularization: float, *, max_iter: int, tol: float
) -> np.ndarray:
    if regularization > 0:
        # MM with a Gaussian prior has no closed-form step; Newton handles the MAP fit.
        return _newton(wins, regularization, max_iter=max_iter, tol=tol)
    totals = wins + wins.T
    won = wins.sum(axis=1)
    strength = np.ones(wins.shape[0])
    for _ in range(max_iter):
        denominator = np.sum(totals / (strength[:, None] + strength[None, :]), axis=1)
        updated = won / denominator
        updated /= np.exp(np.mean(np.log(updated)))
        if np.max(np.abs(np.log(updated) - np.log(strength))) < tol:
            strength = updated
            break
        strength = updated
    scores = np.log(strength)
    return scores - scores.mean()


def _covariance(wins: np.ndarray, scores: np.ndarray, regularization: float) -> np.ndarray:
    _, information = _gradient_hessian(wins, scores, regularization)
    if regularization > 0:
        return np.linalg.inv(information)
    return np.linalg.pinv(information, hermitian=True)
