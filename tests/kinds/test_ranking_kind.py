"""The ranking kind: Borda and Plackett–Luce consensus, reliabilities, gold Kendall tau."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation.ranking import aggregate_ranking, gold_score
from annotation_pipelines.agreement.distances import kendall_pair_distances


def _plackett_luce_reference(
    rankings: list[list[str]], *, iterations: int = 5000
) -> dict[str, float]:
    """Hunter's MM for one task, loop by loop, with the same Gamma(2, 1) prior."""
    items = sorted({item for ranking in rankings for item in ranking})
    gamma = dict.fromkeys(items, 1.0)
    for _ in range(iterations):
        wins = dict.fromkeys(items, 0.0)
        denominator = dict.fromkeys(items, 0.0)
        for ranking in rankings:
            for stage in range(len(ranking) - 1):
                remaining = ranking[stage:]
                total = sum(gamma[item] for item in remaining)
                wins[ranking[stage]] += 1
                for item in remaining:
                    denominator[item] += 1 / total
        gamma = {item: (1 + wins[item]) / (1 + denominator[item]) for item in items}
    return gamma


def test_plackett_luce_matches_a_loop_reference() -> None:
    rankings = [
        ["a", "b", "c", "d"],
        ["b", "a", "d"],
        ["a", "c", "b", "d"],
        ["d", "a"],
        ["c", "b", "a", "d"],
    ]
    judgments = pl.DataFrame(
        {"task_id": ["1"] * 5, "annotator_id": list("vwxyz"), "ranking": rankings}
    )
    fitted = aggregate_ranking(judgments, n_rounds=0, tol=1e-12)
    reference = _plackett_luce_reference(rankings)
    expected = sorted(reference, key=lambda item: -reference[item])
    assert fitted.labels["ranking"][0].to_list() == expected
    assert fitted.converged


def _generated(seed: int = 0, n_tasks: int = 60) -> tuple[pl.DataFrame, dict[str, list[str]]]:
    """Plackett–Luce rankings of 6 items from four careful annotators and two random ones."""
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for task in range(n_tasks):
        items = [f"i{k}" for k in range(6)]
        strength = np.exp(rng.normal(0, 1.5, 6))
        truth[f"t{task}"] = [items[k] for k in np.argsort(-strength)]
        for name in ("c1", "c2", "c3", "c4", "r1", "r2"):
            weights = strength if name.startswith("c") else np.ones(6)
            order = []
            left = list(range(6))
            while left:
                p = weights[left] / weights[left].sum()
                order.append(left.pop(int(rng.choice(len(left), p=p))))
            rows.append((f"t{task}", name, [items[k] for k in order]))
    return pl.DataFrame(rows, schema=["task_id", "annotator_id", "ranking"], orient="row"), truth


def _distance_to_truth(result: pl.DataFrame, truth: dict[str, list[str]]) -> float:
    expected = pl.Series([truth[task] for task in result["task_id"]], dtype=pl.List(pl.String))
    return float(kendall_pair_distances(result["ranking"], expected).mean())


@pytest.mark.parametrize("method", ["borda", "plackett_luce"])
def test_consensus_recovers_truth_and_downweights_random_rankers(method: str) -> None:
    judgments, truth = _generated()
    weighted = aggregate_ranking(judgments, method=method)
    unweighted = aggregate_ranking(judgments, method=method, n_rounds=0)
    assert _distance_to_truth(weighted.labels, truth) < 0.15
    assert _distance_to_truth(weighted.labels, truth) <= _distance_to_truth(
        unweighted.labels, truth
    )
    reliability = dict(
        zip(weighted.annotators["annotator_id"], weighted.annotators["reliability"], strict=True)
    )
    assert min(reliability[f"c{k}"] for k in range(1, 5)) > 3 * max(
        reliability["r1"], reliability["r2"]
    )
    confidence = weighted.labels["confidence"]
    assert ((confidence >= 0) & (confidence <= 1)).all()


def test_partial_rankings_and_gold_score() -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["1", "1", "1"],
            "annotator_id": ["a", "b", "c"],
            "ranking": [["x", "y", "z"], ["x", "z"], ["z", "y", "x"]],
        }
    )
    result = aggregate_ranking(judgments, method="borda", n_rounds=0)
    # Borda points: x 2+1+0, y 1+0+1, z 0+0+2 -> x 3, y 2, z 2; y before z on mean position.
    assert result.labels["ranking"][0].to_list() == ["x", "y", "z"]
    gold = pl.DataFrame({"task_id": ["1"], "ranking": [["x", "y", "z"]]})
    scores = gold_score(judgments, gold)
    # b omits y, so y sits below z in b while gold has y above z: distance 1/3, tau 1/3.
    assert scores["mean_kendall_tau"].to_list() == pytest.approx([1.0, 1 / 3, -1.0])


def test_unknown_method_is_named() -> None:
    judgments, _ = _generated(n_tasks=1)
    with pytest.raises(ValueError, match="unknown method 'kemeny'"):
        aggregate_ranking(judgments, method="kemeny")


@pytest.mark.parametrize("method", ["plackett_luce", "borda"])
def test_rankings_that_name_no_item_in_common_are_no_evidence(method: str) -> None:
    # Task 1: two annotators' top-2 lists name different items, so each list agrees with the
    # consensus over its own items only because it alone ordered them, as a lone ranking
    # agrees with itself. It read 1.0 (where `agreement` gives the two lists a Kendall
    # distance of 5/6), and a replay stopped asking. Task 2 shares items and keeps its figure.
    judgments = pl.DataFrame(
        {
            "task_id": ["1", "1", "1", "2", "2", "3", "3"],
            "annotator_id": ["a", "b", "c", "a", "b", "a", "b"],
            "ranking": [
                ["A", "B"],
                ["C", "D"],
                ["E"],
                ["A", "B", "C"],
                ["A", "B"],
                # An item named twice in one ranking is still named by one ranking only.
                ["A", "A", "B"],
                ["C", "D"],
            ],
        }
    )
    labels = aggregate_ranking(judgments, method=method).labels
    confidence = dict(zip(labels["task_id"], labels["confidence"], strict=True))
    assert confidence == {"1": 0.5, "2": 1.0, "3": 0.5}
