"""Dawid–Skene on the answered confusion rows: the dense EM's bits, a fraction of its memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation import dawid_skene
from annotation_pipelines.aggregation.dawid_skene import (
    ConfusionRows,
    fit_dawid_skene,
    stored_cells,
)
from annotation_pipelines.aggregation.encoding import Encoded, encode
from annotation_pipelines.aggregation.kernel import FitOptions
from annotation_pipelines.aggregation.result import Fitted
from tests.aggregation import dawid_skene_reference
from tests.realdata import ALL_CROWD, load_crowd


def _problem(classes: int, *, tasks: int, annotators: int, votes: int, seed: int) -> pl.DataFrame:
    """Annotators of mixed accuracy, wrong answers uniform, so many (annotator, answer) rows
    of the confusion matrices are never answered; at least one class is never answered."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes - 1, tasks)
    accuracy = rng.uniform(0.3, 0.95, annotators)
    task = np.repeat(np.arange(tasks), votes)
    annotator = np.concatenate([rng.choice(annotators, votes, replace=False) for _ in range(tasks)])
    wrong = (truth[task] + rng.integers(1, classes - 1, task.size)) % (classes - 1)
    label = np.where(rng.random(task.size) < accuracy[annotator], truth[task], wrong)
    return pl.DataFrame(
        {
            "task_id": [f"t{value}" for value in task],
            "annotator_id": [f"a{value}" for value in annotator],
            "label": [f"c{value}" for value in label],
        }
    )


def _with_unanswered_class(judgments: pl.DataFrame, classes: int) -> Encoded:
    return encode(judgments, extra_labels=pl.Series([f"c{classes - 1}"]))


def _assert_same_fit(new: Fitted, old: Fitted) -> None:
    np.testing.assert_array_equal(new.posteriors, old.posteriors)
    np.testing.assert_array_equal(new.skills, old.skills)
    assert new.confusion is not None and old.confusion is not None
    np.testing.assert_array_equal(new.confusion, old.confusion)
    assert (new.iterations, new.converged) == (old.iterations, old.converged)
    assert new.log_likelihood == old.log_likelihood


def _gold(encoded: Encoded, share: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, encoded.n_classes, encoded.n_tasks)
    return np.where(rng.random(encoded.n_tasks) < share, codes, -1)


OPTIONS = {
    "plain": lambda encoded: FitOptions(),
    "map": lambda encoded: FitOptions(diagonal_pseudo_count=1.0),
    "gold": lambda encoded: FitOptions(gold_codes=_gold(encoded, 0.1, 3)),
    "warm": lambda encoded: FitOptions(
        initial_posteriors=np.random.default_rng(4).dirichlet(
            np.ones(encoded.n_classes), encoded.n_tasks
        )
    ),
    "few_iterations": lambda encoded: FitOptions(max_iter=3, tol=0.0),
}


# The 1,000-class instance (about 580 classes answered, 1,400 stored rows) is the one whose
# stored rows span several of `dawid_skene._BLOCK_CELLS`' blocks; the smaller ones fit in one
# block, so the middle one is kept cheap (60 classes) rather than near that boundary.
SIZES = [(3, 300, 9, 3), (10, 600, 50, 5), (60, 300, 15, 4), (1_000, 300, 10, 5)]


def size_and_options(sizes: list[tuple[int, int, int, int]]) -> list[tuple[object, ...]]:
    """Every option at every size but the largest, which runs the two options whose blocked
    updates differ (with and without the diagonal prior's pseudo-counts): gold, a warm start
    and an iteration cap change the EM's inputs and stopping, not the blocked code, and are
    checked at the other sizes."""
    return [
        (*size, options)
        for size in sizes
        for options in OPTIONS
        if size != sizes[-1] or options in ("plain", "map")
    ]


@pytest.mark.parametrize(
    ("classes", "tasks", "annotators", "votes", "options"), size_and_options(SIZES)
)
def test_same_bits_as_the_dense_em(
    classes: int, tasks: int, annotators: int, votes: int, options: str
) -> None:
    judgments = _problem(classes, tasks=tasks, annotators=annotators, votes=votes, seed=classes)
    encoded = _with_unanswered_class(judgments, classes)
    assert not ConfusionRows(encoded, stored_cells(encoded)).every_row
    chosen = OPTIONS[options](encoded)
    _assert_same_fit(
        fit_dawid_skene(encoded, chosen), dawid_skene_reference.fit_dawid_skene(encoded, chosen)
    )


def test_the_largest_size_spans_several_blocks_of_stored_rows() -> None:
    classes, tasks, annotators, votes = SIZES[-1]
    judgments = _problem(classes, tasks=tasks, annotators=annotators, votes=votes, seed=classes)
    encoded = _with_unanswered_class(judgments, classes)
    assert stored_cells(encoded).size * encoded.n_classes > 2 * dawid_skene._BLOCK_CELLS


@pytest.mark.parametrize("options", list(OPTIONS))
def test_same_bits_when_every_row_is_answered(options: str) -> None:
    # Few classes, every annotator has given every answer: the rows are the dense array.
    encoded = encode(_problem(3, tasks=400, annotators=6, votes=3, seed=11))
    assert ConfusionRows(encoded, stored_cells(encoded)).every_row
    chosen = OPTIONS[options](encoded)
    _assert_same_fit(
        fit_dawid_skene(encoded, chosen), dawid_skene_reference.fit_dawid_skene(encoded, chosen)
    )


def test_same_bits_with_repeated_answers_and_a_silent_annotator() -> None:
    # One annotator answers a task twice alike (a count of 2 in the answer matrix); another
    # exists only through a lone vote.
    judgments = pl.DataFrame(
        {
            "task_id": ["t0", "t0", "t0", "t1", "t1", "t2", "t2", "t3"],
            "annotator_id": ["a", "a", "b", "a", "b", "b", "c", "d"],
            "label": ["x", "x", "y", "y", "y", "z", "z", "x"],
        }
    )
    encoded = encode(judgments)
    for options in (FitOptions(), FitOptions(diagonal_pseudo_count=0.5)):
        _assert_same_fit(
            fit_dawid_skene(encoded, options),
            dawid_skene_reference.fit_dawid_skene(encoded, options),
        )


@pytest.mark.realdata
@pytest.mark.parametrize("name", ALL_CROWD)
def test_same_bits_on_the_shared_crowd_sets(name: str) -> None:
    judgments, _ = load_crowd(name)
    encoded = encode(judgments)
    for options in (FitOptions(), FitOptions(diagonal_pseudo_count=1.0)):
        _assert_same_fit(
            fit_dawid_skene(encoded, options),
            dawid_skene_reference.fit_dawid_skene(encoded, options),
        )


def test_peak_memory_stays_near_one_dense_confusion_array() -> None:
    # 300 classes, 20 annotators: the dense A × K × K array (the result's `confusion`) is
    # 14.4 MB, while the 2,400 judgments answer at most 2,400 of its 6,000 rows. The dense
    # reference, holding two M-steps' counts, floored matrices and logs at once, peaks at
    # 104 MB here; the stored rows' EM at 26 MB.
    judgments = _problem(300, tasks=800, annotators=20, votes=3, seed=7)
    encoded = _with_unanswered_class(judgments, 300)
    dense = encoded.n_annotators * encoded.n_classes**2 * 8
    tracemalloc.start()
    try:
        fit_dawid_skene(encoded, FitOptions())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2.0 * dense
