"""Per-kind pair distances against hand-computed values and nltk's MASI."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.agreement.distances import (
    edit_pair_distances,
    interval_pair_distances,
    jaccard_pair_distances,
    kendall_pair_distances,
    masi_pair_distances,
    pairwise_pair_distances,
)

SETS_A = [["a", "b"], ["a", "b"], ["a"], ["a", "b"], [], [], ["a", "a"]]
SETS_B = [["a", "b"], ["b", "a", "c"], ["b"], ["b", "c"], [], ["x"], ["a"]]


def _lists(values: list[list[str]]) -> pl.Series:
    return pl.Series(values, dtype=pl.List(pl.String))


def test_jaccard_by_hand() -> None:
    got = jaccard_pair_distances(_lists(SETS_A), _lists(SETS_B))
    np.testing.assert_allclose(got, [0.0, 1 - 2 / 3, 1.0, 1 - 1 / 3, 0.0, 1.0, 0.0])


def test_masi_by_hand_and_against_nltk() -> None:
    got = masi_pair_distances(_lists(SETS_A), _lists(SETS_B))
    np.testing.assert_allclose(got, [0.0, 1 - 2 / 3 * 2 / 3, 1.0, 1 - 1 / 3 * 1 / 3, 0.0, 1.0, 0.0])
    distance = pytest.importorskip("nltk.metrics.distance")
    for index, (a, b) in enumerate(zip(SETS_A, SETS_B, strict=True)):
        if not a and not b:
            continue  # nltk divides by the empty union
        assert got[index] == pytest.approx(distance.masi_distance(set(a), set(b))), (a, b)


def test_interval_is_squared_difference() -> None:
    got = interval_pair_distances(pl.Series([1.0, 2.0, 5.0]), pl.Series([1.0, 4.0, 2.0]))
    np.testing.assert_allclose(got, [0.0, 4.0, 9.0])


def test_edit_normalized_levenshtein() -> None:
    got = edit_pair_distances(
        pl.Series(["kitten", "abc", "", None, "same"]),
        pl.Series(["sitting", "abc", "", "xy", "same"]),
    )
    np.testing.assert_allclose(got, [3 / 7, 0.0, 0.0, 1.0, 0.0])


def test_kendall_full_rankings() -> None:
    got = kendall_pair_distances(
        _lists([["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"], ["a"]]),
        _lists([["a", "b", "c"], ["c", "b", "a"], ["b", "a", "c"], ["a"]]),
    )
    np.testing.assert_allclose(got, [0.0, 1.0, 1 / 3, 0.0])


def test_kendall_different_item_sets() -> None:
    # Union {a, b, c}: a is [a, b], b is [a, c].
    # (a,b): a<b in A; in B b is unnamed, so a above b: agree, 0.
    # (a,c): A: c unnamed, a above; B: a above c: 0.
    # (b,c): A: b above c (c unnamed); B: c above b (b unnamed): opposite, 1.
    got = kendall_pair_distances(_lists([["a", "b"], ["a", "b"]]), _lists([["a", "c"], ["c"]]))
    # Second: A = [a, b], B = [c]; union {a, b, c}.
    # (a,b): A orders, B ties both below c: 1/2. (a,c): A a above c; B c above a: 1.
    # (b,c): A b above c; B c above b: 1. Total 2.5 / 3.
    np.testing.assert_allclose(got, [1 / 3, 2.5 / 3])


def test_pairwise_aligns_swapped_order() -> None:
    pair = pl.Struct({"left": pl.String, "right": pl.String, "winner": pl.String})
    a = pl.Series(
        [
            {"left": "x", "right": "y", "winner": "left"},
            {"left": "x", "right": "y", "winner": "left"},
            {"left": "x", "right": "y", "winner": "tie"},
            {"left": "x", "right": "y", "winner": "right"},
        ],
        dtype=pair,
    )
    b = pl.Series(
        [
            {"left": "y", "right": "x", "winner": "right"},
            {"left": "x", "right": "y", "winner": "right"},
            {"left": "y", "right": "x", "winner": "tie"},
            {"left": "y", "right": "x", "winner": "right"},
        ],
        dtype=pair,
    )
    np.testing.assert_allclose(pairwise_pair_distances(a, b), [0.0, 1.0, 0.0, 1.0])


def _span_lists(rng: np.random.Generator, n: int) -> pl.Series:
    from annotation_pipelines.kinds import SPAN

    values = []
    for _ in range(n):
        spans = []
        for _ in range(int(rng.integers(0, 6))):
            start = int(rng.integers(0, 40))
            label = [None, "PER", "ORG"][int(rng.integers(0, 3))]
            spans.append({"start": start, "end": start + int(rng.integers(1, 8)), "label": label})
        values.append(spans)
    return pl.Series(values, dtype=pl.List(SPAN))


def _brute_overlap_f1(a: list[dict], b: list[dict]) -> float:
    if not a and not b:
        return 1.0

    def hits(xs: list[dict], ys: list[dict]) -> int:
        return sum(
            any(
                x["label"] == y["label"] and x["start"] < y["end"] and y["start"] < x["end"]
                for y in ys
            )
            for x in xs
        )

    precision = hits(a, b) / len(a) if a else 0.0
    recall = hits(b, a) / len(b) if b else 0.0
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0


def test_overlap_span_f1_matches_a_brute_force_count():
    from annotation_pipelines.agreement.spans import span_f1

    rng = np.random.default_rng(3)
    a, b = _span_lists(rng, 400), _span_lists(rng, 400)
    expected = [_brute_overlap_f1(x, y) for x, y in zip(a.to_list(), b.to_list(), strict=True)]
    np.testing.assert_allclose(span_f1(a, b, match="overlap"), expected, rtol=0, atol=1e-15)


def test_overlap_span_f1_of_long_documents_is_not_quadratic():
    # Every span of one list was joined with every span of the same label in the other:
    # 6,000 spans a side took 7.8 GB and 13 s in `agreement --kind spans`, 10,000 more
    # memory than the machine has.
    import time

    from annotation_pipelines.agreement.spans import span_f1
    from annotation_pipelines.kinds import SPAN

    n = 40_000
    spans = [{"start": 10 * i, "end": 10 * i + 5, "label": "PER"} for i in range(n)]
    shifted = [{"start": 10 * i + 4, "end": 10 * i + 9, "label": "PER"} for i in range(n)]
    a = pl.Series([spans], dtype=pl.List(SPAN))
    b = pl.Series([shifted], dtype=pl.List(SPAN))
    started = time.perf_counter()
    assert span_f1(a, b, match="overlap").tolist() == [1.0]
    assert time.perf_counter() - started < 5.0
