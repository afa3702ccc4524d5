"""The text kind: distance-based consensus with reliabilities, the medoid, and ROVER."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation.text import aggregate_text, gold_score

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "ran",
    "on",
    "under",
    "mat",
    "rug",
    "house",
    "tree",
    "quickly",
    "slowly",
    "red",
    "blue",
]


def _crowd(seed: int = 0, n_tasks: int = 40) -> tuple[pl.DataFrame, dict[str, str]]:
    """Three careful annotators (rare one-letter typos) and three who type random words."""
    rng = random.Random(seed)
    rows, truth = [], {}
    for task in range(n_tasks):
        sentence = " ".join(rng.choice(WORDS) for _ in range(6))
        truth[f"t{task}"] = sentence
        for name in ("r1", "r2", "r3"):
            answer = sentence
            if rng.random() < 0.3:
                position = rng.randrange(len(answer))
                answer = answer[:position] + "x" + answer[position + 1 :]
            rows.append((f"t{task}", name, answer))
        for name in ("s1", "s2", "s3"):
            rows.append((f"t{task}", name, " ".join(rng.choice(WORDS) for _ in range(6))))
    return pl.DataFrame(rows, schema=["task_id", "annotator_id", "text"], orient="row"), truth


def test_reliable_annotators_outvote_an_agreeing_clique() -> None:
    judgments, _ = _crowd()
    # One more task: two careful annotators agree; three unreliable ones agree on a wrong answer.
    trap = pl.DataFrame(
        {
            "task_id": ["trap"] * 5,
            "annotator_id": ["r1", "r2", "s1", "s2", "s3"],
            "text": ["the cat sat on the mat"] * 2 + ["a dog ran under a tree"] * 3,
        }
    )
    judgments = pl.concat([judgments, trap])
    medoid = aggregate_text(judgments, method="medoid")
    ours = aggregate_text(judgments)
    pick = lambda result: result.labels.filter(pl.col("task_id") == "trap")["text"][0]  # noqa: E731
    assert pick(medoid) == "a dog ran under a tree"
    assert pick(ours) == "the cat sat on the mat"
    assert ours.converged
    reliability = dict(
        zip(ours.annotators["annotator_id"], ours.annotators["reliability"], strict=True)
    )
    assert min(reliability["r1"], reliability["r2"], reliability["r3"]) > 1.7 * max(
        reliability["s1"], reliability["s2"], reliability["s3"]
    )


def test_consensus_close_to_truth_and_confidence_in_range() -> None:
    judgments, truth = _crowd(seed=1)
    ours = aggregate_text(judgments)
    labels = ours.labels
    assert labels.columns == ["task_id", "text", "confidence", "n_votes"]
    exact = np.mean(
        [text == truth[task] for task, text in zip(labels["task_id"], labels["text"], strict=True)]
    )
    assert exact > 0.6
    assert ((labels["confidence"] >= 0) & (labels["confidence"] <= 1)).all()


def test_rover_fixes_words_no_single_answer_has_right() -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["1"] * 3,
            "annotator_id": ["a", "b", "c"],
            "text": ["the cat sat on mat", "a cat sat on the mat", "the cat sit on the mat"],
        }
    )
    fused = aggregate_text(judgments, method="rover").labels["text"][0]
    assert fused == "the cat sat on the mat"
    chosen = aggregate_text(judgments, method="consensus").labels["text"][0]
    assert chosen in judgments["text"].to_list()


def test_rover_keeps_the_pivot_answers_line_breaks_and_spacing() -> None:
    # Before, words were re-joined with single spaces: three identical letters came back as
    # "Dear Sir, Thank you. Regards" at confidence 0.9, and every transcription lost its lines.
    letter = "Dear Sir,\n\nThank you.  Regards"
    judgments = pl.DataFrame(
        {
            "task_id": ["1"] * 3 + ["2"] * 3,
            "annotator_id": ["a", "b", "c"] * 2,
            "text": [letter] * 3 + ["line one\nline two", "line one\nline two", "line one\nline 2"],
        }
    )
    labels = aggregate_text(judgments, method="rover").labels.sort("task_id")
    assert labels["text"].to_list() == [letter, "line one\nline two"]
    assert labels["confidence"][0] == 1.0
    # A word the pivot lacks, inserted by most annotators, still joins with a space.
    inserted = pl.DataFrame(
        {
            "task_id": ["1"] * 3,
            "annotator_id": ["a", "b", "c"],
            "text": ["the cat\nsat", "the black cat\nsat", "the black cat\nsat"],
        }
    )
    fused = aggregate_text(inserted, method="rover").labels["text"][0]
    assert fused.split() == ["the", "black", "cat", "sat"]
    assert "\n" in fused


def test_single_answer_task_and_gold() -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["1", "2", "2"],
            "annotator_id": ["a", "a", "b"],
            "text": ["hello", "abc", "abd"],
        }
    )
    result = aggregate_text(judgments)
    assert result.labels.filter(pl.col("task_id") == "1")["confidence"][0] == 0.5
    gold = pl.DataFrame({"task_id": ["2"], "text": ["abc"]})
    scores = gold_score(judgments, gold)
    assert scores.to_dicts() == [
        {"annotator_id": "a", "n_gold": 1, "mean_edit_distance": 0.0, "exact_match": 1.0},
        {
            "annotator_id": "b",
            "n_gold": 1,
            "mean_edit_distance": pytest.approx(1 / 3),
            "exact_match": 0.0,
        },
    ]
    with_gold = aggregate_text(judgments, gold=gold)
    error = dict(
        zip(
            with_gold.annotators["annotator_id"], with_gold.annotators["mean_distance"], strict=True
        )
    )
    assert error["a"] < error["b"]


def test_unknown_method_is_named() -> None:
    judgments, _ = _crowd(n_tasks=2)
    with pytest.raises(ValueError, match="unknown method 'vote'"):
        aggregate_text(judgments, method="vote")


# "é" typed as one code point (most keyboards) and as "e" + a combining accent (macOS and other
# NFD input): the same visible text.
COMPOSED, DECOMPOSED = "caf\u00e9 cr\u00e8me", "cafe\u0301 cre\u0300me"


@pytest.mark.parametrize("method", ["consensus", "medoid", "rover"])
def test_answers_equal_under_unicode_normalization_agree(method: str) -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t2", "t2"],
            "annotator_id": ["a", "b", "a", "b"],
            "text": [COMPOSED, DECOMPOSED, DECOMPOSED, DECOMPOSED],
        }
    )
    labels = aggregate_text(judgments, method=method).labels
    assert labels["confidence"].to_list() == [1.0, 1.0]
    # The aggregate is written in one form (NFC) whichever the annotators typed.
    assert labels["text"].to_list() == [COMPOSED, COMPOSED]


def test_gold_and_agreement_compare_text_under_unicode_normalization() -> None:
    from annotation_pipelines.agreement.kinds import agreement

    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t2", "t2"],
            "annotator_id": ["a", "b", "a", "b"],
            "text": [COMPOSED, DECOMPOSED, "x", "x"],
        }
    )
    scores = gold_score(judgments, pl.DataFrame({"task_id": ["t1"], "text": [DECOMPOSED]}))
    assert scores["exact_match"].to_list() == [1.0, 1.0]
    assert agreement(judgments, kind="text")["mean_pairwise_agreement"] == 1.0


@pytest.mark.parametrize("method", ["consensus", "medoid", "rover"])
def test_the_answer_and_its_confidence_do_not_depend_on_row_order(method: str) -> None:
    # t1 has two copies of its answer: the copy chosen leaves its own annotator's weight out
    # of the confidence, and consensus read 0.778 in this order and 0.791 reversed. t3's two
    # answers tie under medoid, which wrote 'abc' in this order and 'abd' reversed.
    judgments = pl.DataFrame(
        [
            ("t1", "a", "hello world"),
            ("t1", "b", "hello world"),
            ("t1", "c", "hello there"),
            ("t2", "a", "good day"),
            ("t2", "b", "good day to you"),
            ("t2", "c", "good day"),
            ("t3", "a", "abc"),
            ("t3", "b", "abd"),
            ("t4", "a", "same"),
            ("t4", "c", "sane"),
            ("t4", "b", "same"),
        ],
        schema=["task_id", "annotator_id", "text"],
        orient="row",
    )
    forward = aggregate_text(judgments, method=method).labels.sort("task_id")
    backward = aggregate_text(judgments.reverse(), method=method).labels.sort("task_id")
    assert forward.equals(backward), (forward, backward)
