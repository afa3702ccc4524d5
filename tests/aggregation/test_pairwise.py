"""Bradley–Terry: hand-computed cases, a direct scipy.optimize fit and a statsmodels GLM."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from scipy import optimize

from annotation_pipelines.aggregation.pairwise import bradley_terry


def _frame(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["left_id", "right_id", "winner"], orient="row")


def test_two_items_by_hand() -> None:
    # A beats B 3 times of 4: θ_A − θ_B = log 3; centred θ_A = log(3)/2. Information on the
    # difference is n p (1 − p) = 4 · 3/4 · 1/4 = 3/4, so var(θ_A) = var(d)/4 = 1/3.
    frame = _frame([("A", "B", "left"), ("A", "B", "A"), ("B", "A", "right"), ("B", "A", "left")])
    result = bradley_terry(frame)
    a = result.row(0, named=True)
    assert a["item_id"] == "A" and a["rank"] == 1
    assert a["score"] == pytest.approx(math.log(3) / 2, abs=1e-9)
    assert a["standard_error"] == pytest.approx(math.sqrt(1 / 3), abs=1e-9)
    assert a["low"] == pytest.approx(math.log(3) / 2 - 1.959963984540054 * math.sqrt(1 / 3))
    assert (a["wins"], a["losses"], a["ties"], a["n_comparisons"]) == (3, 1, 0, 4)


def test_ties_count_half() -> None:
    # 1 win, 1 loss, 2 ties: 2 wins each -> equal scores.
    frame = _frame([("A", "B", "A"), ("A", "B", "B"), ("A", "B", "tie"), ("B", "A", "draw")])
    result = bradley_terry(frame)
    assert result["score"].to_list() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert result["ties"].to_list() == [2, 2]


def _random_comparisons(seed: int) -> tuple[pl.DataFrame, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    names = [f"model_{i}" for i in range(6)]
    truth = rng.normal(0, 1, len(names))
    rows = []
    for _ in range(400):
        i, j = rng.choice(len(names), 2, replace=False)
        u = rng.random()
        p = 1 / (1 + math.exp(truth[j] - truth[i]))
        winner = "tie" if u < 0.1 else ("left" if rng.random() < p else "right")
        rows.append((names[i], names[j], winner))
    return _frame(rows), truth, names


def _scipy_fit(frame: pl.DataFrame, names: list[str]) -> np.ndarray:
    index = {name: k for k, name in enumerate(names)}
    left = np.array([index[v] for v in frame["left_id"]])
    right = np.array([index[v] for v in frame["right_id"]])
    left_share = np.array([{"left": 1.0, "right": 0.0, "tie": 0.5}[w] for w in frame["winner"]])

    def negative(free: np.ndarray) -> float:
        theta = np.concatenate(([0.0], free))
        d = theta[left] - theta[right]
        return float(
            np.sum(left_share * np.logaddexp(0, -d) + (1 - left_share) * np.logaddexp(0, d))
        )

    fitted = optimize.minimize(
        negative, np.zeros(len(names) - 1), method="BFGS", options={"gtol": 1e-10}
    )
    theta = np.concatenate(([0.0], fitted.x))
    return theta - theta.mean()


@pytest.mark.parametrize("algorithm", ["newton", "mm"])
def test_matches_direct_scipy_maximum_likelihood(algorithm: str) -> None:
    frame, _, names = _random_comparisons(11)
    ours = bradley_terry(frame, algorithm=algorithm)  # type: ignore[arg-type]
    scores = dict(zip(ours["item_id"], ours["score"], strict=True))
    reference = _scipy_fit(frame, names)
    assert [scores[name] for name in names] == pytest.approx(list(reference), abs=1e-5)


def test_interval_covers_and_matches_statsmodels_fisher_information() -> None:
    # The reference is an independent fit of the same model: a binomial GLM with logit link
    # on the difference design (+1 for the left item, −1 for the right; a tie is a response of
    # one half), with the first item's score fixed at 0 to identify it. Its covariance is the
    # inverse Fisher information, which is exact and well conditioned, unlike a pseudo-inverse
    # of a finite-difference Hessian whose null eigenvalue comes out as noise of either sign.
    # Centring is linear (θ − mean θ), so the covariance of the centred scores is
    # C L Σ Lᵀ Cᵀ, with L putting the fixed 0 back and C = I − 11ᵀ/n.
    frame, truth, names = _random_comparisons(5)
    result = bradley_terry(frame)
    index = {name: k for k, name in enumerate(names)}
    left = np.array([index[v] for v in frame["left_id"]])
    right = np.array([index[v] for v in frame["right_id"]])
    share = np.array([{"left": 1.0, "right": 0.0, "tie": 0.5}[w] for w in frame["winner"]])
    n = len(names)
    design = np.zeros((left.shape[0], n))
    design[np.arange(left.shape[0]), left] += 1.0
    design[np.arange(left.shape[0]), right] -= 1.0
    reference = sm.GLM(share, design[:, 1:], family=sm.families.Binomial()).fit(tol=1e-12)
    lift = np.vstack([np.zeros((1, n - 1)), np.eye(n - 1)])
    centre = np.eye(n) - 1.0 / n
    covariance = centre @ lift @ reference.cov_params() @ lift.T @ centre.T
    theta = np.concatenate(([0.0], reference.params))
    scores = dict(zip(result["item_id"], result["score"], strict=True))
    assert [scores[name] for name in names] == pytest.approx(list(theta - theta.mean()), abs=1e-6)
    expected = np.sqrt(np.diag(covariance))
    errors = dict(zip(result["item_id"], result["standard_error"], strict=True))
    assert [errors[name] for name in names] == pytest.approx(list(expected), rel=1e-6)
    centred = truth - truth.mean()
    covered = [
        row["low"] <= centred[index[row["item_id"]]] <= row["high"]
        for row in result.iter_rows(named=True)
    ]
    assert sum(covered) >= 5


def test_never_beaten_item_needs_regularization() -> None:
    frame = _frame([("A", "B", "A"), ("A", "C", "A"), ("B", "C", "B"), ("C", "B", "C")])
    with pytest.raises(ValueError, match=r"'A'.*regularization"):
        bradley_terry(frame)
    result = bradley_terry(frame, regularization=0.1)
    assert result["item_id"][0] == "A"
    assert result["score"].is_finite().all()


def test_bad_winner_and_self_comparison() -> None:
    with pytest.raises(ValueError, match="row 1 column 'winner'"):
        bradley_terry(_frame([("A", "B", "A"), ("A", "B", "C")]))
    with pytest.raises(ValueError, match="with itself"):
        bradley_terry(_frame([("A", "A", "tie")]))
