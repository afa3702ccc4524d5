"""Dawid–Skene on the answered rows alone (many classes): the dense EM's bits, with no
annotators × K × K array in the fit, the result's `confusion` column or the warm start."""

from __future__ import annotations

import tracemalloc

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation import auto, dawid_skene, result
from annotation_pipelines.aggregation.api import fit
from annotation_pipelines.aggregation.confusion import SparseConfusion
from annotation_pipelines.aggregation.dawid_skene import fit_dawid_skene
from annotation_pipelines.aggregation.encoding import encode
from annotation_pipelines.aggregation.kernel import FitOptions
from annotation_pipelines.aggregation.result import (
    Fitted,
    _confusion_column_from_rows,
    _sparse_confusion_column,
)
from annotation_pipelines.aggregation.warm_start import WarmStart
from tests.aggregation import dawid_skene_reference
from tests.aggregation.test_dawid_skene_rows import (
    OPTIONS,
    SIZES,
    _problem,
    _with_unanswered_class,
    size_and_options,
)
from tests.realdata import load_crowd

TOLERANCE = 1e-12


@pytest.fixture
def answered_rows_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fit takes the answered-rows path, however small."""
    monkeypatch.setattr(dawid_skene, "ANSWERED_ROWS_MIN_CELLS", 0)


def _dense(confusion: np.ndarray | SparseConfusion | None) -> np.ndarray:
    assert confusion is not None
    return confusion.dense() if isinstance(confusion, SparseConfusion) else confusion


def _assert_close_fit(new: Fitted, old: Fitted) -> None:
    np.testing.assert_array_equal(new.posteriors, old.posteriors)
    np.testing.assert_allclose(new.skills, old.skills, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(_dense(new.confusion), _dense(old.confusion))
    assert (new.iterations, new.converged) == (old.iterations, old.converged)
    assert new.log_likelihood == old.log_likelihood


@pytest.mark.usefixtures("answered_rows_only")
# The sizes of `test_dawid_skene_rows` (the 1,000-class one spans several blocks of stored
# rows), but for 3 classes, where every row is answered.
@pytest.mark.parametrize(
    ("classes", "tasks", "annotators", "votes", "options"), size_and_options(SIZES[1:])
)
def test_answered_rows_fit_the_dense_em(
    classes: int, tasks: int, annotators: int, votes: int, options: str
) -> None:
    judgments = _problem(classes, tasks=tasks, annotators=annotators, votes=votes, seed=classes)
    encoded = _with_unanswered_class(judgments, classes)
    chosen = OPTIONS[options](encoded)
    new = fit_dawid_skene(encoded, chosen)
    assert isinstance(new.confusion, SparseConfusion)
    _assert_close_fit(new, dawid_skene_reference.fit_dawid_skene(encoded, chosen))


@pytest.mark.usefixtures("answered_rows_only")
def test_answered_rows_with_repeats_and_an_annotator_who_gave_every_answer() -> None:
    # `a` gives all three answers (no row of theirs is left out), `d` one lone vote.
    judgments = pl.DataFrame(
        {
            "task_id": ["t0", "t0", "t0", "t1", "t1", "t2", "t2", "t3", "t4"],
            "annotator_id": ["a", "a", "b", "a", "b", "b", "c", "d", "a"],
            "label": ["x", "x", "y", "y", "y", "z", "z", "x", "z"],
        }
    )
    encoded = encode(judgments, extra_labels=pl.Series(["w"]))
    for options in (FitOptions(), FitOptions(diagonal_pseudo_count=0.5)):
        _assert_close_fit(
            fit_dawid_skene(encoded, options),
            dawid_skene_reference.fit_dawid_skene(encoded, options),
        )


@pytest.mark.realdata
@pytest.mark.usefixtures("answered_rows_only")
def test_answered_rows_fit_the_dense_em_on_duck() -> None:
    judgments, _ = load_crowd("duck")
    encoded = encode(judgments)
    for options in (FitOptions(), FitOptions(diagonal_pseudo_count=1.0)):
        _assert_close_fit(
            fit_dawid_skene(encoded, options),
            dawid_skene_reference.fit_dawid_skene(encoded, options),
        )


def _labels_and_annotators(
    judgments: pl.DataFrame, diagonal: float, monkeypatch: pytest.MonkeyPatch, minimum: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    monkeypatch.setattr(dawid_skene, "ANSWERED_ROWS_MIN_CELLS", minimum)
    fitted = fit(judgments, "dawid_skene", diagonal_pseudo_count=diagonal)
    return fitted.labels, fitted.annotators


@pytest.mark.parametrize("diagonal", [0.0, 1.0])
@pytest.mark.parametrize("column", ["dense", "sparse"])
def test_fit_labels_confidence_and_confusion_column_match_the_dense_path(
    diagonal: float, column: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if column == "sparse":
        monkeypatch.setattr(result, "DENSE_CONFUSION_CELLS", 0)
    # Both thresholds are set per call, so any size takes each path.
    judgments = _problem(60, tasks=300, annotators=15, votes=4, seed=5)
    dense_labels, dense_annotators = _labels_and_annotators(
        judgments, diagonal, monkeypatch, 1 << 62
    )
    rows_labels, rows_annotators = _labels_and_annotators(judgments, diagonal, monkeypatch, 0)
    assert rows_labels.get_column("label").equals(dense_labels.get_column("label"))
    for name in ("confidence", "raw_confidence"):
        np.testing.assert_allclose(
            rows_labels.get_column(name).to_numpy(),
            dense_labels.get_column(name).to_numpy(),
            rtol=0,
            atol=TOLERANCE,
        )
    np.testing.assert_allclose(
        rows_annotators.get_column("skill").to_numpy(),
        dense_annotators.get_column("skill").to_numpy(),
        rtol=0,
        atol=TOLERANCE,
    )
    new = rows_annotators.get_column("confusion").explode().struct.unnest()
    old = dense_annotators.get_column("confusion").explode().struct.unnest()
    assert new.select("observed", "truth").equals(old.select("observed", "truth"))
    np.testing.assert_allclose(
        new.get_column("probability").to_numpy(),
        old.get_column("probability").to_numpy(),
        rtol=0,
        atol=TOLERANCE,
    )


def _random_sparse(seed: int, *, own_class: bool) -> SparseConfusion:
    """Stored rows of random values above the floor (some exactly at it), one annotator with
    every row stored, one with none."""
    rng = np.random.default_rng(seed)
    n_annotators, k = 6, 5
    answered = rng.random((n_annotators, k)) < 0.4
    answered[1] = True
    answered[4] = False
    cells = np.flatnonzero(answered.reshape(-1))
    floor = rng.uniform(0.01, 0.02, (n_annotators, k))
    rows = floor[cells // k] + rng.uniform(0.0, 0.5, (cells.size, k))
    rows[rng.random(rows.shape) < 0.3] = 0.0
    rows = np.maximum(rows, floor[cells // k])
    own = rng.uniform(0.1, 0.3, (n_annotators, k)) if own_class else None
    return SparseConfusion(cells=cells, rows=rows, floor=floor, own_class=own)


@pytest.mark.parametrize("own_class", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_column_from_rows_is_the_dense_arrays_sparse_column(own_class: bool, seed: int) -> None:
    confusion = _random_sparse(seed, own_class=own_class)
    judgments = pl.DataFrame(
        {
            "task_id": [f"t{i}" for i in range(6)],
            "annotator_id": [f"a{i}" for i in range(6)],
            "label": [f"c{i}" for i in range(5)] + ["c0"],
        }
    )
    encoded = encode(judgments)
    dense = confusion.dense()
    np.testing.assert_array_equal(confusion.column_minimum(), dense.min(axis=1))
    np.testing.assert_array_equal(confusion.diagonal(), np.einsum("wcc->wc", dense))
    assert _confusion_column_from_rows(encoded, confusion).equals(
        _sparse_confusion_column(encoded, dense)
    )


@pytest.mark.parametrize("own_class", [False, True])
def test_warm_start_from_rows_is_the_dense_warm_start(own_class: bool) -> None:
    confusion = _random_sparse(7, own_class=own_class)
    rng = np.random.default_rng(8)
    judgments = pl.DataFrame(
        {
            "task_id": [f"t{i}" for i in rng.integers(0, 20, 80)],
            "annotator_id": [f"a{i}" for i in rng.integers(0, 7, 80)],
            "label": [f"c{i}" for i in rng.integers(0, 5, 80)],
        }
    )
    encoded = encode(judgments)
    previous = {
        "annotator_values": pl.Series([f"a{i}" for i in range(6)]),
        "label_values": encoded.label_values,
        "prior": rng.dirichlet(np.ones(5)),
    }
    from_rows = WarmStart(confusion=confusion, **previous).initial_posteriors(encoded)
    from_dense = WarmStart(confusion=confusion.dense(), **previous).initial_posteriors(encoded)
    assert from_rows is not None and from_dense is not None
    np.testing.assert_array_equal(from_rows, from_dense)


def test_many_classes_fit_without_the_dense_confusion_array() -> None:
    # 120 annotators at ~900 classes answered: the dense A × K × K array is 750 MB, the
    # 3,000 judgments' rows at most 21 MB (counts, floored counts and logs are three such).
    judgments = _problem(1_000, tasks=1_000, annotators=120, votes=3, seed=9)
    encoded = _with_unanswered_class(judgments, 1_000)
    dense = encoded.n_annotators * encoded.n_classes**2 * 8
    assert dense // 8 > dawid_skene.ANSWERED_ROWS_MIN_CELLS
    options = FitOptions(diagonal_pseudo_count=1.0, max_iter=5)
    # Numba's import and the kernel's load are not the fit's memory.
    fit_dawid_skene(encode(_problem(300, tasks=300, annotators=60, votes=3, seed=1)), options)
    tracemalloc.start()
    try:
        fitted = fit_dawid_skene(encoded, options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(fitted.confusion, SparseConfusion)
    assert peak < dense / 4


@pytest.mark.parametrize("long_gap", [1, 3, 1 << 30])
@pytest.mark.parametrize("own_class", [0.0, 0.3, 1.0])
def test_compiled_totals_are_the_dense_sum_in_answer_order(long_gap: int, own_class: float) -> None:
    # Runs of rows not stored of every length, added row by row or in closed form.
    from annotation_pipelines.aggregation.compiled import column_totals_in_answer_order

    rng = np.random.default_rng(int(own_class * 10) + long_gap % 7)
    for _ in range(20):
        n_annotators, k = int(rng.integers(1, 6)), int(rng.integers(1, 300))
        answered = rng.random((n_annotators, k)) < rng.random() * 0.3
        cells = np.flatnonzero(answered.reshape(-1))
        rows = rng.random((cells.size, k)) * (rng.random((cells.size, k)) < 0.3)
        rows = np.maximum(rows, 1e-10)
        dense = np.full((n_annotators, k, k), 1e-10)
        if own_class:
            dense[:, np.arange(k), np.arange(k)] = own_class
        dense.reshape(-1, k)[cells] = rows
        expected = np.sum(dense, axis=1)
        totals = np.empty((n_annotators, k))
        bounds = np.searchsorted(cells // k, np.arange(n_annotators + 1))
        column_totals_in_answer_order(rows, cells % k, bounds, 1e-10, own_class, long_gap, totals)
        np.testing.assert_array_equal(totals, expected)


def test_auto_held_out_likelihoods_from_answered_rows_are_the_dense_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full = encode(_problem(60, tasks=600, annotators=20, votes=5, seed=3))
    held_out = auto.hold_out_mask(full)
    visible = auto._subset(full, ~held_out)
    seen = np.unique(visible.annotators.astype(np.int64) * full.n_classes + visible.labels)
    hidden = full.annotators[held_out].astype(np.int64) * full.n_classes + full.labels[held_out]
    assert held_out.any() and not np.isin(hidden, seen).all()
    posteriors = np.random.default_rng(4).dirichlet(np.ones(full.n_classes), full.n_tasks)
    dense = auto.held_out_log_likelihoods(visible, posteriors, full, held_out)
    monkeypatch.setattr(auto, "ANSWERED_ROWS_MIN_CELLS", 0)
    rows = auto.held_out_log_likelihoods(visible, posteriors, full, held_out)
    np.testing.assert_array_equal(rows, dense)
