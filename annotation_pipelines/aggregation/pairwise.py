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

Annotator reliability (`aggregate_pairwise(..., method="crowd_bt")`): Crowd-BT, X. Chen, P. N.
Bennett, K. Collins-Thompson and E. Horvitz, "Pairwise ranking aggregation in a crowdsourced
setting", WSDM 2013, 193–202. Annotator j reports the true preference with probability η_j
and the reverse with probability 1 − η_j, so P(j reports i ≻ k) = η_j σ(θ_i − θ_k) + (1 − η_j)
σ(θ_k − θ_i). The fit here is EM (the paper fits the same likelihood by online moment
matching): the E-step gives each comparison the posterior probability q that the item the
annotator preferred is truly better; the M-step sets η_j to its MAP under a
Beta(`prior_wins`, `prior_losses`) prior — a newcomer is trusted like a fairly good annotator
until their comparisons say otherwise — and moves the scores up the Bradley–Terry likelihood
of the soft wins (q to the preferred item, 1 − q to the other; the Gaussian prior
`regularization` keeps them finite) by one step on a fixed quadratic bound (a generalized EM:
each step raises the objective, and the bound is factorized once, so a step costs O(N + n²)).
A tie says nothing about η and counts half to each side. Intervals are the Wald intervals of
the final soft-win fit (they treat η as known). An annotator with η < 1/2 is adversarial:
their preferences are read reversed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from scipy import linalg, sparse
from scipy.sparse import csgraph
from scipy.special import expit, ndtri

from annotation_pipelines.aggregation.encoding import encode_column
from annotation_pipelines.aggregation.kinds_codes import encode_values
from annotation_pipelines.aggregation.kinds_result import KindAggregation

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
    # Only the graph's structure counts; SciPy's stubs take numeric sparse arrays, not boolean.
    count, membership = csgraph.connected_components(
        sparse.csr_array((wins > 0).astype(np.int8)), directed=True, connection="strong"
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
        # The prior's 1/λ variance along the all-ones direction is the level the comparisons
        # do not identify; the scores are centred, so it is no part of their uncertainty.
        centre = np.eye(scores.size) - 1.0 / scores.size
        return centre @ np.linalg.inv(information) @ centre
    return np.linalg.pinv(information, hermitian=True)


PAIRWISE_METHODS = ("crowd_bt", "bradley_terry")


def aggregate_pairwise(
    judgments: pl.DataFrame,
    *,
    method: str = "crowd_bt",
    gold: pl.DataFrame | None = None,
    confidence: float = 0.95,
    regularization: float = 0.01,
    prior_wins: float = 4.0,
    prior_losses: float = 1.0,
    max_iter: int = 2000,
    tol: float = 1e-7,
) -> KindAggregation:
    """Comparisons (`task_id`, `annotator_id`, `left`, `right`, `winner` in left/right/tie) to
    a score per item.

    `labels`: one row per item: `item`, `score` (log-strength, centred), `lo`, `hi` (Wald
    interval at `confidence`), `confidence` (P(the item beats an average item) = σ(score)),
    sorted best first. `annotators`: `annotator_id`, `reliability` (η, the probability of
    reporting the true preference; for `bradley_terry` the share of decisive comparisons
    that agree with the fitted scores), `n_judgments`, `n_ties`. `gold` (`task_id`, `winner`)
    fixes the true outcome of gold comparisons, so η is measured against it there.
    """
    if method not in PAIRWISE_METHODS:
        raise ValueError(
            f"unknown method {method!r}; expected one of {', '.join(PAIRWISE_METHODS)}"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if regularization < 0:
        raise ValueError(f"regularization must be non-negative, got {regularization}")
    missing = [
        c
        for c in ("task_id", "annotator_id", "left", "right", "winner")
        if c not in judgments.columns
    ]
    if missing:
        raise ValueError(
            f"judgments: missing column(s) {', '.join(missing)}; "
            f"have {', '.join(judgments.columns)}"
        )
    left, right, outcome, items = _encode(judgments, "left", "right", "winner")
    annotators, annotator_values = encode_values(judgments.get_column("annotator_id"), sort=True)
    n_items, n_annotators = items.len(), annotator_values.len()
    decisive = outcome != 2
    # preferred/other: the item the annotator chose and the one they did not (ties: left/right).
    preferred = np.where(outcome == 1, right, left)
    other = np.where(outcome == 1, left, right)
    fixed = _gold_outcomes(judgments, gold, preferred, items)
    n_by_annotator = np.bincount(annotators, weights=decisive, minlength=n_annotators)
    eta = np.full(n_annotators, prior_wins / (prior_wins + prior_losses))
    scores = np.zeros(n_items)
    iterations, converged = 0, method == "bradley_terry"
    truly_preferred = np.where(decisive, 1.0, 0.5)
    if method == "bradley_terry":
        # A gold comparison's outcome is known: it is fit and scored as gold says.
        known = ~np.isnan(fixed)
        truly_preferred = np.where(decisive & known, fixed, truly_preferred)
        scores = _fit_soft(preferred, other, truly_preferred, n_items, regularization, scores)
        agrees = np.where(known, fixed, expit(scores[preferred] - scores[other]))
        eta = np.bincount(annotators, weights=decisive * agrees, minlength=n_annotators) / (
            np.maximum(n_by_annotator, 1)
        )
    else:
        bound = _curvature_bound(preferred, other, n_items, regularization)
        previous = -np.inf
        for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is reported
            # E-step: P(the preferred item is truly better | the report, θ, η).
            p = expit(scores[preferred] - scores[other])
            trust = eta[annotators]
            reported = trust * p + (1 - trust) * (1 - p)
            posterior = np.where(np.isnan(fixed), trust * p / reported, fixed)
            truly_preferred = np.where(decisive, posterior, 0.5)
            # The observed-data log-posterior, whose relative gain decides convergence (EM
            # creeps along the ridge where a larger η and a wider score scale trade off).
            objective = float(
                np.sum(np.log(reported[decisive]))
                + np.sum((prior_wins - 1) * np.log(eta) + (prior_losses - 1) * np.log1p(-eta))
                - 0.5 * regularization * float(scores @ scores)
            )
            if objective - previous < tol * abs(objective):
                converged = True
                break
            previous = objective
            # M-step.
            updated_eta = (
                prior_wins
                - 1
                + np.bincount(
                    annotators, weights=decisive * truly_preferred, minlength=n_annotators
                )
            ) / (prior_wins + prior_losses - 2 + n_by_annotator)
            # One bound step per iteration (generalized EM: it raises the M-step objective
            # without solving it; the curvature bound is factorized once, so a step is O(N + n²)).
            residual = truly_preferred - expit(scores[preferred] - scores[other])
            gradient = (
                np.bincount(preferred, weights=residual, minlength=n_items)
                - np.bincount(other, weights=residual, minlength=n_items)
                - regularization * scores
            )
            scores = scores + linalg.cho_solve(bound, gradient)
            scores -= scores.mean()
            eta = np.clip(updated_eta, 1e-6, 1 - 1e-6)
    wins = _soft_wins(preferred, other, truly_preferred, n_items)
    covariance = _covariance(wins, scores, regularization)
    standard_error = np.sqrt(np.maximum(np.diag(covariance), 0.0))
    z = float(ndtri(1 - (1 - confidence) / 2))
    labels = pl.DataFrame(
        {
            "item": items.cast(pl.String),
            "score": scores,
            "lo": scores - z * standard_error,
            "hi": scores + z * standard_error,
            "confidence": expit(scores),
        }
    ).sort("score", descending=True, maintain_order=True)
    return KindAggregation(
        labels=labels,
        annotators=pl.DataFrame(
            {
                "annotator_id": annotator_values,
                "reliability": pl.Series(eta, dtype=pl.Float64),
                "n_judgments": pl.Series(
                    np.bincount(annotators, minlength=n_annotators), dtype=pl.UInt32
                ),
                "n_ties": pl.Series(
                    np.bincount(annotators, weights=~decisive, minlength=n_annotators),
                    dtype=pl.UInt32,
                ),
            }
        ),
        method=method,
        converged=converged,
        iterations=iterations,
    )


def gold_score(judgments: pl.DataFrame, gold: pl.DataFrame) -> pl.DataFrame:
    """Per annotator on gold comparisons: `annotator_id`, `n_gold`, `accuracy` (share whose
    winner — left, right or tie — equals the gold winner of the task)."""
    joined = judgments.select("task_id", "annotator_id", pl.col("winner").str.to_lowercase()).join(
        gold.select("task_id", pl.col("winner").str.to_lowercase().alias("gold")), on="task_id"
    )
    return (
        joined.group_by("annotator_id")
        .agg(
            pl.len().cast(pl.UInt32).alias("n_gold"),
            (pl.col("winner") == pl.col("gold")).mean().alias("accuracy"),
        )
        .sort("annotator_id")
    )


def preference_majority(
    judgments: pl.DataFrame, *, reliability: pl.DataFrame | None = None
) -> pl.DataFrame:
    """One row per task: `task_id`, `chosen`, `rejected` (item ids; null on a tie),
    `confidence` (the winning side's share of the weight, a tie counting half to each side).

    Judgments of one task may show the pair in either order; votes are counted per item. The
    weight of a vote is the annotator's `reliability` (from `aggregate_pairwise(...)
    .annotators`) when given, else 1. Equal weights on both sides make the task a tie.
    """
    missing = [
        c
        for c in ("task_id", "annotator_id", "left", "right", "winner")
        if c not in judgments.columns
    ]
    if missing:
        raise ValueError(
            f"judgments: missing column(s) {', '.join(missing)}; "
            f"have {', '.join(judgments.columns)}"
        )
    frame = judgments.select(
        "task_id",
        "annotator_id",
        pl.col("left").cast(pl.String),
        pl.col("right").cast(pl.String),
        pl.col("winner").cast(pl.String).str.strip_chars().str.to_lowercase(),
    )
    bad = frame.with_row_index("row").filter(~pl.col("winner").is_in(["left", "right", "tie"]))
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"judgments: row {row['row']} column 'winner': {row['winner']!r} is not left/right/tie"
        )
    if reliability is not None:
        frame = frame.join(
            reliability.select("annotator_id", pl.col("reliability").alias("weight")),
            on="annotator_id",
            how="left",
        ).with_columns(pl.col("weight").fill_null(1.0))
    else:
        frame = frame.with_columns(pl.lit(1.0).alias("weight"))
    # Canonical order per pair: first = the smaller item id.
    first = pl.min_horizontal("left", "right")
    second = pl.max_horizontal("left", "right")
    swapped = pl.col("left") != first
    first_won = (
        pl.when(pl.col("winner") == "tie")
        .then(0.5)
        .when((pl.col("winner") == "left") != swapped)
        .then(1.0)
        .otherwise(0.0)
    )
    votes = (
        frame.with_columns(first.alias("first"), second.alias("second"), first_won.alias("won"))
        .group_by("task_id", maintain_order=True)
        .agg(
            pl.col("first").first(),
            pl.col("second").first(),
            pl.col("first").n_unique().alias("n_pairs"),
            (pl.col("won") * pl.col("weight")).sum().alias("for_first"),
            pl.col("weight").sum().alias("total"),
        )
    )
    mixed = votes.filter(pl.col("n_pairs") > 1)
    if mixed.height:
        raise ValueError(
            f"judgments: task {mixed['task_id'][0]!r} compares more than one pair of items"
        )
    share = pl.col("for_first") / pl.col("total")
    return votes.select(
        "task_id",
        pl.when(share > 0.5)
        .then(pl.col("first"))
        .when(share < 0.5)
        .then(pl.col("second"))
        .alias("chosen"),
        pl.when(share > 0.5)
        .then(pl.col("second"))
        .when(share < 0.5)
        .then(pl.col("first"))
        .alias("rejected"),
        pl.max_horizontal(share, 1 - share).alias("confidence"),
    )


def write_preference_pairs(
    judgments: pl.DataFrame,
    tasks: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    reliability: pl.DataFrame | None = None,
    min_confidence: float = 0.0,
) -> int:
    """Write JSON Lines `{"prompt", "chosen", "rejected", "confidence"}` (the preference-pairs
    format DPO/reward-model trainers read) and return the number of rows written.

    `tasks` has `task_id`, `prompt`, `left`, `right` (item ids) and `left_text`, `right_text`
    (the responses). Ties and tasks under `min_confidence` are left out; a task without a
    `tasks` row is an error naming it.
    """
    needed = ("task_id", "prompt", "left", "right", "left_text", "right_text")
    missing = [c for c in needed if c not in tasks.columns]
    if missing:
        raise ValueError(
            f"tasks: missing column(s) {', '.join(missing)}; have {', '.join(tasks.columns)}"
        )
    decided = preference_majority(judgments, reliability=reliability).filter(
        pl.col("chosen").is_not_null() & (pl.col("confidence") >= min_confidence)
    )
    texts = pl.concat(
        [
            tasks.select(
                "task_id",
                pl.col("left").cast(pl.String).alias("item"),
                pl.col("left_text").alias("text"),
            ),
            tasks.select(
                "task_id",
                pl.col("right").cast(pl.String).alias("item"),
                pl.col("right_text").alias("text"),
            ),
        ]
    ).unique(["task_id", "item"], keep="first")
    prompts = tasks.select("task_id", "prompt").unique("task_id", keep="first")
    absent = decided.join(prompts, on="task_id", how="anti")
    if absent.height:
        raise ValueError(f"tasks: no row for task {absent['task_id'][0]!r}")
    rows = (
        decided.join(prompts, on="task_id", how="left", maintain_order="left")
        .join(
            texts.rename({"item": "chosen", "text": "chosen_text"}),
            on=["task_id", "chosen"],
            how="left",
            maintain_order="left",
        )
        .join(
            texts.rename({"item": "rejected", "text": "rejected_text"}),
            on=["task_id", "rejected"],
            how="left",
            maintain_order="left",
        )
        .select(
            "prompt",
            pl.col("chosen_text").alias("chosen"),
            pl.col("rejected_text").alias("rejected"),
            "confidence",
        )
    )
    rows.write_ndjson(Path(path))
    return rows.height


def _fit_soft(
    preferred: np.ndarray,
    other: np.ndarray,
    weight: np.ndarray,
    n_items: int,
    regularization: float,
    start: np.ndarray,
    *,
    max_steps: int = 50,
    tol: float = 1e-10,
) -> np.ndarray:
    """Bradley–Terry MAP scores on soft wins (weight to `preferred`, 1 − weight to `other`),
    Newton from `start`."""
    wins = _soft_wins(preferred, other, weight, n_items)
    scores = start.copy()
    ones = np.ones((n_items, n_items)) / n_items
    current = _objective(wins, scores, regularization)
    for _ in range(max_steps):
        gradient, information = _gradient_hessian(wins, scores, regularization)
        if np.max(np.abs(gradient)) < tol:
            break
        step = np.linalg.solve(information + (ones if regularization == 0 else 0.0), gradient)
        length = 1.0
        while True:
            candidate = scores + length * step
            value = _objective(wins, candidate, regularization)
            if value >= current - 1e-12 * abs(current) or length < 1e-8:
                break
            length /= 2
        scores, current = candidate - candidate.mean(), value
        if length * np.max(np.abs(step)) < tol:
            break
    return scores


def _curvature_bound(
    preferred: np.ndarray, other: np.ndarray, n_items: int, regularization: float
) -> tuple[np.ndarray, bool]:
    """Cholesky factor of a fixed matrix above the Bradley–Terry information everywhere.

    σ'(x) ≤ 1/4, so L/4 + λI (L the Laplacian of the comparison counts) bounds the negative
    Hessian; a step θ + B⁻¹∇ on that quadratic bound never lowers the objective (D. Böhning and
    B. G. Lindsay, "Monotonicity of quadratic-approximation algorithms", Annals of the
    Institute of Statistical Mathematics 40(4), 1988, 641–663). 11ᵀ/n fills the direction of
    a common shift, which the likelihood does not see and the centring removes.
    """
    counts = _soft_wins(preferred, other, np.ones(preferred.shape[0]), n_items)
    counts = counts + counts.T
    laplacian = np.diag(counts.sum(axis=1)) - counts
    matrix = (
        laplacian / 4 + regularization * np.eye(n_items) + np.ones((n_items, n_items)) / n_items
    )
    return linalg.cho_factor(matrix)


def _soft_wins(
    preferred: np.ndarray, other: np.ndarray, weight: np.ndarray, n_items: int
) -> np.ndarray:
    """wins[i, k]: the (soft) number of times i beat k."""
    size = n_items * n_items
    flat = np.bincount(preferred * n_items + other, weights=weight, minlength=size)
    flat += np.bincount(other * n_items + preferred, weights=1 - weight, minlength=size)
    return flat.reshape(n_items, n_items)


def _gold_outcomes(
    judgments: pl.DataFrame, gold: pl.DataFrame | None, preferred: np.ndarray, items: pl.Series
) -> np.ndarray:
    """Per comparison: 1 when gold says the preferred item is better, 0 when worse, NaN when
    the task has no gold (or gold says tie)."""
    result = np.full(judgments.height, np.nan)
    if gold is None or gold.height == 0:
        return result
    for column in ("task_id", "winner"):
        if column not in gold.columns:
            raise ValueError(f"gold: missing column {column!r}; have {', '.join(gold.columns)}")
    joined = judgments.select(
        pl.col("task_id").cast(pl.String),
        pl.col("left").cast(pl.String),
        pl.col("right").cast(pl.String),
    ).join(
        gold.select(
            pl.col("task_id").cast(pl.String),
            pl.col("winner").cast(pl.String).str.to_lowercase().alias("gold"),
            *[
                pl.col(c).cast(pl.String).alias(f"gold_{c}")
                for c in ("left", "right")
                if c in gold.columns
            ],
        ),
        on="task_id",
        how="left",
        maintain_order="left",
    )
    if "gold_left" not in joined.columns:
        joined = joined.with_columns(
            pl.col("left").alias("gold_left"), pl.col("right").alias("gold_right")
        )
    best = joined.select(
        pl.when(pl.col("gold") == "left")
        .then(pl.col("gold_left"))
        .when(pl.col("gold") == "right")
        .then(pl.col("gold_right"))
    ).to_series()
    preferred_names = items.cast(pl.String).gather(preferred)
    known = best.is_not_null().to_numpy()
    result[known] = (best == preferred_names).to_numpy()[known].astype(np.float64)
    return result
