"""The pairwise kind: Crowd-BT annotator reliability, majority per pair, preference export."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from annotation_pipelines.aggregation.pairwise import (
    aggregate_pairwise,
    bradley_terry,
    gold_score,
    preference_majority,
    write_preference_pairs,
)


def _comparisons(
    seed: int = 0, n_items: int = 30, n_comparisons: int = 3000
) -> tuple[pl.DataFrame, np.ndarray]:
    """Items with a hidden quality; five honest annotators, two who answer backwards."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(0, 1.0, n_items)
    names = ["h1", "h2", "h3", "h4", "h5", "adv1", "adv2"]
    rows = []
    for index in range(n_comparisons):
        a, b = rng.choice(n_items, size=2, replace=False)
        name = names[index % len(names)]
        a_wins = rng.random() < 1 / (1 + np.exp(-(quality[a] - quality[b])))
        if name.startswith("adv"):
            a_wins = not a_wins
        rows.append((f"t{index}", name, f"i{a}", f"i{b}", "left" if a_wins else "right"))
    frame = pl.DataFrame(
        rows, schema=["task_id", "annotator_id", "left", "right", "winner"], orient="row"
    )
    return frame, quality


def _rank_correlation(result: pl.DataFrame, quality: np.ndarray) -> float:
    truth = [quality[int(item[1:])] for item in result["item"]]
    return float(spearmanr(result["score"].to_numpy(), truth).statistic)


def test_crowd_bt_reads_adversarial_annotators_backwards() -> None:
    judgments, quality = _comparisons()
    crowd = aggregate_pairwise(judgments)
    plain = aggregate_pairwise(judgments, method="bradley_terry")
    assert crowd.converged
    assert crowd.labels.columns == ["item", "score", "lo", "hi", "confidence"]
    assert (
        _rank_correlation(crowd.labels, quality) > _rank_correlation(plain.labels, quality) + 0.05
    )
    assert _rank_correlation(crowd.labels, quality) > 0.9
    eta = dict(zip(crowd.annotators["annotator_id"], crowd.annotators["reliability"], strict=True))
    assert min(eta[f"h{k}"] for k in range(1, 6)) > 0.9
    assert max(eta["adv1"], eta["adv2"]) < 0.2
    assert (crowd.labels["lo"] <= crowd.labels["score"]).all()
    assert (crowd.labels["score"] <= crowd.labels["hi"]).all()


def test_bradley_terry_method_matches_the_existing_fit() -> None:
    judgments, _ = _comparisons(seed=1, n_items=8, n_comparisons=400)
    honest = judgments.filter(pl.col("annotator_id").str.starts_with("h"))
    ours = aggregate_pairwise(honest, method="bradley_terry", regularization=0.01)
    existing = bradley_terry(honest, left_column="left", right_column="right", regularization=0.01)
    joined = ours.labels.join(existing.rename({"item_id": "item"}), on="item", suffix="_old")
    np.testing.assert_allclose(joined["score"], joined["score_old"], atol=1e-7)
    np.testing.assert_allclose(joined["lo"], joined["low"], atol=1e-7)


def test_gold_fixes_the_truth_and_gold_score_is_accuracy() -> None:
    judgments, _ = _comparisons(seed=2, n_items=10, n_comparisons=700)
    gold = judgments.filter(pl.col("annotator_id") == "h1").select(
        "task_id", "left", "right", "winner"
    )
    with_gold = aggregate_pairwise(judgments, gold=gold)
    eta = dict(
        zip(with_gold.annotators["annotator_id"], with_gold.annotators["reliability"], strict=True)
    )
    assert eta["h1"] > 0.95
    scores = gold_score(judgments, gold.select("task_id", "winner"))
    assert scores.to_dicts() == [{"annotator_id": "h1", "n_gold": 100, "accuracy": 1.0}]


def test_gold_fixes_the_truth_for_the_bradley_terry_baseline_too() -> None:
    # Before, `--method bradley_terry --gold` wrote the same scores and reliabilities as
    # without gold: the gold outcomes were read and then not used.
    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t1", "t2", "t3"],
            "annotator_id": ["w1", "w2", "w3", "w1", "w2"],
            "left": ["a", "a", "a", "a", "b"],
            "right": ["b", "b", "b", "b", "c"],
            "winner": ["right", "right", "right", "left", "left"],
        }
    )
    gold = pl.DataFrame({"task_id": ["t1"], "left": ["b"], "right": ["a"], "winner": ["right"]})
    plain = aggregate_pairwise(judgments, method="bradley_terry")
    anchored = aggregate_pairwise(judgments, method="bradley_terry", gold=gold)
    assert plain.labels["item"][0] == "b"
    assert anchored.labels["item"][0] == "a"
    eta = dict(
        zip(anchored.annotators["annotator_id"], anchored.annotators["reliability"], strict=True)
    )
    # w3 judged only the gold task, against the gold answer.
    assert eta["w3"] == 0.0


def test_majority_per_pair_aligns_order_and_handles_ties() -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["1", "1", "1", "2", "2", "3"],
            "annotator_id": ["a", "b", "c", "a", "b", "a"],
            "left": ["x", "y", "x", "p", "p", "u"],
            "right": ["y", "x", "y", "q", "q", "v"],
            "winner": ["left", "right", "right", "left", "right", "tie"],
        }
    )
    majority = preference_majority(judgments)
    assert majority.to_dicts() == [
        {"task_id": "1", "chosen": "x", "rejected": "y", "confidence": pytest.approx(2 / 3)},
        {"task_id": "2", "chosen": None, "rejected": None, "confidence": 0.5},
        {"task_id": "3", "chosen": None, "rejected": None, "confidence": 0.5},
    ]
    weighted = preference_majority(
        judgments, reliability=pl.DataFrame({"annotator_id": ["a", "b"], "reliability": [0.9, 0.1]})
    )
    assert weighted.filter(pl.col("task_id") == "2")["chosen"][0] == "p"


def test_write_preference_pairs(tmp_path) -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["1", "1", "2", "2"],
            "annotator_id": ["a", "b", "a", "b"],
            "left": ["x", "y", "p", "p"],
            "right": ["y", "x", "q", "q"],
            "winner": ["right", "left", "left", "right"],
        }
    )
    tasks = pl.DataFrame(
        {
            "task_id": ["1", "2"],
            "prompt": ["Say hi", "Count"],
            "left": ["x", "p"],
            "right": ["y", "q"],
            "left_text": ["hello", "1 2 3"],
            "right_text": ["go away", "3 2 1"],
        }
    )
    path = tmp_path / "pairs.jsonl"
    assert write_preference_pairs(judgments, tasks, path) == 1
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [
        {"prompt": "Say hi", "chosen": "go away", "rejected": "hello", "confidence": 1.0}
    ]
    with pytest.raises(ValueError, match="no row for task '1'"):
        write_preference_pairs(judgments, tasks.filter(pl.col("task_id") == "2"), path)


def test_intervals_are_those_of_the_centred_scores_not_of_the_prior_on_their_level() -> None:
    # The Gaussian prior that keeps scores finite also puts a variance of 1/λ on the level the
    # comparisons do not identify (every score shifted alike); the scores are centred, so that
    # direction is not theirs. At λ = 0.01 it made every interval about ±8 wide on 400
    # comparisons of 8 items, where the unregularised fit's are about ±0.5.
    judgments, _ = _comparisons(seed=1, n_items=8, n_comparisons=400)
    honest = judgments.filter(pl.col("annotator_id").str.starts_with("h"))
    unregularised = bradley_terry(honest, left_column="left", right_column="right")
    ours = aggregate_pairwise(honest, method="bradley_terry", regularization=0.01)
    joined = ours.labels.join(unregularised.rename({"item_id": "item"}), on="item")
    np.testing.assert_allclose(
        joined["hi"] - joined["lo"], joined["high"] - joined["low"], rtol=0.02
    )
    # Crowd-BT's soft wins carry less than the plain ones, so its intervals are wider, but of
    # the same order.
    crowd = aggregate_pairwise(honest, regularization=0.01).labels
    assert (
        (crowd["hi"] - crowd["lo"]) < 2 * (unregularised["high"] - unregularised["low"]).max()
    ).all()
    regularised = bradley_terry(
        honest, left_column="left", right_column="right", regularization=0.01
    )
    joined = regularised.join(unregularised, on="item_id", suffix="_plain")
    np.testing.assert_allclose(joined["standard_error"], joined["standard_error_plain"], rtol=0.02)
