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
