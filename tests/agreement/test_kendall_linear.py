"""The Kendall distance without per-pair item matrices: bit-identical to the definition spelled
out over every pair of items (`kendall_reference`), and linear in the rankings' length."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.agreement.distances import kendall_pair_distances
from annotation_pipelines.agreement.kinds import agreement
from tests.agreement.kendall_reference import reference_kendall_pair_distances

RANKINGS = pl.List(pl.String)


def _random_list(
    rng: np.random.Generator, pool: list[str], longest: int
) -> list[str | None] | None:
    """A ranking drawn from `pool`: sometimes null, empty, naming an item twice or holding a
    null item, as raw rows can."""
    if rng.random() < 0.05:
        return None
    repeats = bool(rng.random() < 0.2)
    size = int(rng.integers(0, longest + 1))
    if not repeats:
        size = min(size, len(pool))
    items: list[str | None] = [str(item) for item in rng.choice(pool, size=size, replace=repeats)]
    if items and rng.random() < 0.1:
        items[int(rng.integers(len(items)))] = None
    return items


def _random_batch(seed: int) -> tuple[pl.Series, pl.Series]:
    rng = np.random.default_rng(seed)
    pool = [f"i{k}" for k in range(int(rng.integers(1, 30)))]
    if rng.random() < 0.2:
        pool.append("")
    longest = int(rng.integers(0, 35))
    n = int(rng.integers(0, 40))
    return (
        pl.Series([_random_list(rng, pool, longest) for _ in range(n)], dtype=RANKINGS),
        pl.Series([_random_list(rng, pool, longest) for _ in range(n)], dtype=RANKINGS),
    )


def _same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == expected.dtype == np.float64
    assert got.shape == expected.shape
    mismatched = np.flatnonzero(got.view(np.int64) != expected.view(np.int64))
    assert mismatched.size == 0, [(int(k), got[k], expected[k]) for k in mismatched[:5]]


@pytest.mark.parametrize("seed", range(40))
def test_equals_the_item_pair_definition_bit_for_bit(seed: int) -> None:
    a, b = _random_batch(seed)
    _same_bits(kendall_pair_distances(a, b), reference_kendall_pair_distances(a, b))


def test_edge_cases_equal_the_definition() -> None:
    a = pl.Series(
        [None, [], [], ["a"], ["a", "a", "b"], [None, "b", "a"], ["x", "y"], ["a", "b", "c"]],
        dtype=RANKINGS,
    )
    b = pl.Series(
        [None, [], ["a", "b"], ["a"], ["b", "a"], ["a", None, None, "c"], ["p", "q"], []],
        dtype=RANKINGS,
    )
    got = kendall_pair_distances(a, b)
    _same_bits(got, reference_kendall_pair_distances(a, b))
    # Disjoint [x, y] and [p, q]: four opposite pairs, two pairs tied on one side, of six.
    assert got[6] == pytest.approx(5 / 6)
    empty = pl.Series([], dtype=RANKINGS)
    assert kendall_pair_distances(empty, empty).shape == (0,)


def test_long_permutations_equal_the_definition() -> None:
    rng = np.random.default_rng(5)
    items = np.array([f"item-{k}" for k in range(300)])
    a = pl.Series([list(items[rng.permutation(300)]) for _ in range(3)], dtype=RANKINGS)
    # Reversed, shuffled, and a prefix of another order: every branch of the count.
    b = pl.Series(
        [
            a[0].to_list()[::-1],
            list(items[rng.permutation(300)]),
            list(items[rng.permutation(300)][:120]),
        ],
        dtype=RANKINGS,
    )
    got = kendall_pair_distances(a, b)
    _same_bits(got, reference_kendall_pair_distances(a, b))
    assert got[0] == 1.0


def test_agreement_of_rankings_unchanged() -> None:
    rng = np.random.default_rng(9)
    items = [f"r{k}" for k in range(6)]
    rows = [
        {
            "task_id": f"t{task}",
            "annotator_id": f"a{annotator}",
            "ranking": [str(item) for item in rng.permutation(items)[: int(rng.integers(2, 7))]],
        }
        for task in range(25)
        for annotator in range(int(rng.integers(1, 5)))
    ]
    judgments = pl.DataFrame(
        rows, schema={"task_id": pl.String, "annotator_id": pl.String, "ranking": RANKINGS}
    )
    got = agreement(judgments, kind="ranking", n_resamples=50)
    expected = agreement(
        judgments, kind="ranking", distance=reference_kendall_pair_distances, n_resamples=50
    )
    expected["distance"] = got["distance"]
    assert got == expected


def test_long_rankings_stay_in_bounded_memory() -> None:
    """Nine 2,000-item rankings (three tasks × three annotators) in a fresh process: peak
    resident memory stays within a few hundred MiB above the imports (the item-pair form holds
    2,000² rows per pair of rankings, about 15 GB). Memory only: the speed is a benchmark's."""
    script = textwrap.dedent(
        """
        import resource, sys
        import numpy as np, polars as pl
        from annotation_pipelines.agreement.kinds import agreement
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rng = np.random.default_rng(0)
        items = np.array([f"item-{k}" for k in range(2000)])
        judgments = pl.DataFrame(
            {
                "task_id": [f"t{t}" for t in range(3) for _ in range(3)],
                "annotator_id": [f"a{a}" for _ in range(3) for a in range(3)],
                "ranking": [list(items[rng.permutation(2000)]) for _ in range(9)],
            }
        )
        result = agreement(judgments, kind="ranking", n_resamples=10)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(after - before, result["krippendorff_alpha"])
        """
    )
    # Address space capped well under the quadratic form's need, so it fails fast, not by
    # exhausting the machine.
    limit = 6 * 1024**3

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, preexec_fn=cap, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    grown_kib, alpha = done.stdout.split()
    assert int(grown_kib) < 400 * 1024
    assert abs(float(alpha)) < 0.05
