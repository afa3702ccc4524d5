"""The compiled kernels (large inputs) give exactly what the NumPy path gives (small inputs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation_pipelines.aggregation import encoding, fit
from annotation_pipelines.aggregation.encoding import encode_column


@contextmanager
def compiled(enabled: bool) -> Iterator[None]:
    saved = encoding.COMPILED_MIN_ROWS
    encoding.COMPILED_MIN_ROWS = 0 if enabled else 1 << 62
    try:
        yield
    finally:
        encoding.COMPILED_MIN_ROWS = saved


def both_paths(values: pl.Series, *, sort: bool) -> None:
    with compiled(False):
        expected_codes, expected_vocabulary = encode_column(values, sort=sort)
    with compiled(True):
        codes, vocabulary = encode_column(values, sort=sort)
    assert codes.dtype == np.int64
    assert vocabulary.to_list() == expected_vocabulary.to_list()
    np.testing.assert_array_equal(codes, expected_codes)
    assert vocabulary.gather(codes).to_list() == values.to_list()


rng = np.random.default_rng(3)
SHUFFLED_TASKS = [f"task-{i}" for i in rng.permutation(30_000) % 20_000]
CASES = {
    # grouped runs (the run kernel), also with a value that comes back in a later run
    "runs": [f"t{i // 3}" for i in range(3000)],
    "runs with a repeat": [f"t{i // 3}" for i in range(3000)] + ["t0", "t0"],
    # small vocabulary (one small table)
    "small vocabulary": [f"w{i}" for i in rng.integers(0, 300, 5000)],
    # many shuffled values (the partitioned kernel: more than 16,384 rows, prefix mostly new)
    "shuffled large vocabulary": SHUFFLED_TASKS,
    # longer than 12 bytes: not held in the view, so the hashed kernel runs
    "long strings": [f"a-much-longer-identifier-{i}" for i in rng.integers(0, 500, 4000)],
    "long strings shuffled": [f"a-much-longer-identifier-{i}" for i in rng.permutation(20_000)],
    # mixed: short and long, empty, non-ASCII, embedded NUL, exactly 4 and 12 bytes
    "edge texts": ["", "a", "a\x00", "abcd", "abcdefghijkl", "abcdefghijklm", "é", "日本語"] * 50,
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("sort", [True, False])
def test_encode_column_matches_numpy(name: str, sort: bool) -> None:
    both_paths(pl.Series(CASES[name], dtype=pl.String), sort=sort)


def test_sliced_column_uses_its_own_rows() -> None:
    # A slice shares the Arrow buffers of its parent: views must start at the slice's offset.
    values = pl.Series([f"t{i % 700}" for i in range(5000)]).slice(1234, 3000)
    both_paths(values, sort=True)
    both_paths(values, sort=False)


@pytest.mark.parametrize("values", [[5, 10**12, 7, 5, 10**12], [0.5, 1.0, 0.5, -2.0]])
def test_non_text_columns_match(values: list[object]) -> None:
    both_paths(pl.Series(values * 100), sort=True)


def assert_fits_match(frame: pl.DataFrame, method: str) -> None:
    with compiled(False):
        expected = fit(frame, method)
    with compiled(True):
        result = fit(frame, method)
    assert result.labels.equals(expected.labels)
    assert result.annotators.equals(expected.annotators)
    assert result.tie_share == expected.tie_share


def _judgments(seed: int, *, n_tasks: int, grouped: bool, duplicates: bool) -> pl.DataFrame:
    generator = np.random.default_rng(seed)
    votes = generator.integers(1, 7, n_tasks)
    tasks = np.repeat(np.arange(n_tasks), votes)
    annotators = generator.integers(0, 40, tasks.shape[0])
    labels = generator.integers(0, 4, tasks.shape[0])
    frame = pl.DataFrame(
        {
            "task_id": [f"item-{t}" for t in tasks],
            "annotator_id": [f"w{a}" for a in annotators],
            "label": [f"class-{c}" for c in labels],
        }
    )
    if duplicates:
        frame = pl.concat([frame, frame.head(50), frame.slice(10, 30)])
    if not grouped:
        frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    elif duplicates:
        frame = frame.sort("task_id", maintain_order=True)
    return frame


@pytest.mark.parametrize("method", ["majority_vote", "wawa", "zero_based_skill"])
@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("duplicates", [False, True])
def test_vote_methods_match_numpy(method: str, grouped: bool, duplicates: bool) -> None:
    # About 3,500 rows: like 3,000 tasks' 10,500 below the partitioned kernel's 16,384, and
    # the compiled path is forced whatever the size.
    frame = _judgments(11, n_tasks=1000, grouped=grouped, duplicates=duplicates)
    assert_fits_match(frame, method)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["t1", "t2", "t3", "a-task-with-a-long-id", ""]),
            st.sampled_from(["w1", "w2", "w3", "w4"]),
            st.sampled_from(["x", "y", "z"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_majority_vote_matches_numpy_on_any_input(rows: list[tuple[str, str, str]]) -> None:
    frame = pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")
    assert_fits_match(frame, "majority_vote")


def test_partitioned_kernel_matches_single_table() -> None:
    from annotation_pipelines.aggregation import compiled as kernels
    from annotation_pipelines.string_views import string_views

    views = string_views(pl.Series(SHUFFLED_TASKS))
    assert views is not None
    words, rows = views
    high, low = words[rows, 0], words[rows, 1]
    n = high.shape[0]
    single = kernels._factorize_pairs(
        high, low, False, True, np.empty(n, dtype=np.int64), np.empty(0, dtype=np.int64)
    )
    partitioned = kernels._factorize_partitioned(
        high,
        low,
        True,
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.uint64),
        np.empty(n, dtype=np.uint64),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.uint64),
        np.empty(n, dtype=np.uint64),
        np.empty(n, dtype=np.int64),
    )
    assert single[2] and partitioned[2]
    np.testing.assert_array_equal(partitioned[0], single[0])
    np.testing.assert_array_equal(partitioned[1], single[1])


@pytest.mark.parametrize("runs", [True, False])
def test_views_that_do_not_hold_their_string_are_refused(runs: bool) -> None:
    from annotation_pipelines.aggregation import compiled as kernels

    # Length 3 but a byte after the string: not a zero-padded inline view, so the kernel
    # must not treat the view as the value (the caller then hashes the strings).
    words = np.zeros((20_000, 2), dtype=np.uint64)
    words[:, 0] = np.uint64(3) | (np.arange(20_000, dtype=np.uint64) << np.uint64(32))
    words[5, 1] = np.uint64(1)
    _, _, exact = kernels.factorize_views(words, slice(0, 20_000), runs=runs)
    assert not exact
    words[5, 1] = np.uint64(0)
    words[7, 0] = np.uint64(13)  # longer than 12 bytes: lives in a data buffer
    _, _, exact = kernels.factorize_views(words, slice(0, 20_000), runs=runs)
    assert not exact


@pytest.mark.parametrize("grouped", [True, False])
def test_big_task_with_repeated_answers_matches_numpy(grouped: bool) -> None:
    # One task answered many times by each annotator (a gold item): the kernel de-duplicates
    # it by sorting, not by searching back row by row (which was quadratic).
    generator = np.random.default_rng(5)
    rows = 4000
    frame = pl.DataFrame(
        {
            "task_id": ["gold"] * rows + [f"t{i // 3}" for i in range(600)],
            "annotator_id": [f"w{a}" for a in generator.integers(0, 50, rows + 600)],
            "label": [f"c{c}" for c in generator.integers(0, 3, rows + 600)],
        }
    )
    if not grouped:
        frame = frame.sample(fraction=1.0, shuffle=True, seed=2)
    assert_fits_match(frame, "majority_vote")
