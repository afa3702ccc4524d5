"""Every encoding path gives `vocabulary[code] == value`, and the documented order."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation.encoding import encode, encode_column
from annotation_pipelines.aggregation.majority_vote import distinct_answers


def _roundtrip(values: pl.Series, *, sort: bool) -> tuple[np.ndarray, pl.Series]:
    codes, vocabulary = encode_column(values, sort=sort)
    assert codes.dtype == np.int64
    assert vocabulary.gather(codes).to_list() == values.to_list()
    assert vocabulary.n_unique() == vocabulary.len()
    return codes, vocabulary


rng = np.random.default_rng(0)
CASES = {
    "runs": pl.Series([f"t{i // 3}" for i in range(3000)]),
    "small vocabulary": pl.Series([f"w{i}" for i in rng.integers(0, 300, 5000)]),
    "large shuffled vocabulary": pl.Series([f"t{i}" for i in rng.permutation(6000) % 4000]),
    "integers": pl.Series(rng.integers(-50, 5000, 5000)),
    "sparse integers": pl.Series(rng.integers(0, 2**40, 3000)),
    "floats": pl.Series(rng.integers(0, 5, 2000) / 2),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("sort", [True, False])
def test_paths_roundtrip(name: str, sort: bool) -> None:
    values = CASES[name]
    _, vocabulary = _roundtrip(values, sort=sort)
    if sort or values.dtype.is_integer():
        assert vocabulary.to_list() == sorted(vocabulary.to_list())
    else:
        assert vocabulary.to_list() == values.unique(maintain_order=True).to_list()


def test_collision_falls_back_to_the_exact_join(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the first hash collides everywhere: the second hash must catch it.
    values = pl.Series(["b", "a", "c", "a"])
    original = pl.Series.hash

    def colliding(self: pl.Series, seed: int = 0, *args: object) -> pl.Series:
        if seed == 0:
            return pl.Series(np.zeros(self.len(), dtype=np.uint64))
        return original(self, seed, *args)

    monkeypatch.setattr(pl.Series, "hash", colliding)
    codes, vocabulary = encode_column(values, sort=True)
    assert vocabulary.to_list() == ["a", "b", "c"]
    assert codes.tolist() == [1, 0, 2, 0]
    # Unsorted, the exact path keeps the documented order of first appearance.
    codes, vocabulary = encode_column(values, sort=False)
    assert vocabulary.to_list() == ["b", "a", "c"]
    assert codes.tolist() == [0, 1, 2, 1]


def test_unsigned_64_bit_ids_are_integers() -> None:
    # UInt64 ids are coded ascending like the other integer types, also above 2**63.
    for values in ([30, 10, 20, 10], [2**64 - 1, 5, 2**63, 5]):
        series = pl.Series(values, dtype=pl.UInt64)
        codes, vocabulary = encode_column(series, sort=False)
        assert vocabulary.to_list() == sorted(set(values))
        assert vocabulary.gather(codes).to_list() == values


@pytest.mark.parametrize("grouped", [True, False])
def test_repeated_answers_are_found_on_both_paths(grouped: bool) -> None:
    rows = [("t1", "w1", "x"), ("t1", "w2", "y"), ("t1", "w1", "x"), ("t2", "w1", "y")]
    frame = pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")
    if not grouped:
        frame = frame.select(pl.all().gather([0, 3, 1, 2]))
    annotators, _, _ = distinct_answers(encode(frame))
    assert annotators.shape[0] == 3


@pytest.mark.parametrize("sort", [True, False])
def test_integers_with_a_null_are_coded_like_any_other_value(sort: bool) -> None:
    # The dense offset coding has no slot for a null; the column must take the general path.
    values = pl.Series("task_id", [7, None, 3, 7, None, 5], dtype=pl.Int64)
    codes, vocabulary = _roundtrip(values, sort=sort)
    assert codes[1] == codes[4]
    assert vocabulary.drop_nulls().to_list() == [3, 5, 7]


def test_all_null_integers_are_one_value() -> None:
    codes, vocabulary = _roundtrip(pl.Series("task_id", [None, None], dtype=pl.Int64), sort=False)
    assert codes.tolist() == [0, 0]
    assert vocabulary.to_list() == [None]
