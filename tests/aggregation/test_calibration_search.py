"""The blocked grid search of the calibration chooses exactly what the dense one did."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation import calibration
from annotation_pipelines.aggregation.calibration import (
    TEMPERATURE_GRID,
    _choose_shrinkage_and_temperature,
    _counts,
    _held_out_log_errors,
    _held_out_log_likelihoods_on_grid,
    _held_out_log_prior,
    _selection_judgments,
    _task_sums,
)
from annotation_pipelines.aggregation.encoding import Encoded, encode
from annotation_pipelines.aggregation.registry import run_kernel
from tests.aggregation import calibration_reference
from tests.realdata import load_crowd


def _problem(classes: int, seed: int) -> pl.DataFrame:
    """Tasks with 1–6 votes (lone votes too, which the search leaves out) by 12 annotators of
    mixed accuracy; some classes never answered."""
    rng = np.random.default_rng(seed)
    tasks = int(rng.integers(20, 200))
    truth = rng.integers(0, classes, tasks)
    accuracy = rng.uniform(0.3, 0.95, 12)
    rows = []
    for task in range(tasks):
        for annotator in rng.choice(12, int(rng.integers(1, 7)), replace=False):
            right = rng.random() < accuracy[annotator]
            label = truth[task] if right else int(rng.integers(0, classes))
            rows.append((f"t{task}", f"a{annotator}", f"c{label}"))
    return pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")


def _both(encoded: Encoded, soft: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    counts = _counts(encoded, soft)
    log_prior = _held_out_log_prior(soft)
    return (
        _choose_shrinkage_and_temperature(encoded, counts, log_prior),
        calibration_reference.choose_shrinkage_and_temperature(encoded, counts, log_prior),
    )


def _compiled(monkeypatch: pytest.MonkeyPatch, compiled: bool) -> None:
    """Force the compiled search (or the NumPy one) whatever the input's size."""
    monkeypatch.setattr(calibration, "COMPILED_MIN_CELLS", 0 if compiled else 1 << 62)


@pytest.mark.parametrize("classes", [2, 5, 50, 80])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["majority_vote", "dawid_skene"])
@pytest.mark.parametrize("compiled", [False, True])
def test_search_equals_the_dense_reference(
    classes: int, seed: int, method: str, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compiled(monkeypatch, compiled)
    # Blocks of 2^14 cells: at 50 and 80 classes (330–575 judgments searched, 204–327 a
    # block) the NumPy search runs several blocks, a ragged last one included, as 2^17 cells
    # did only at 300 classes, whose Dawid–Skene fit and dense reference search cost several
    # times as much.
    monkeypatch.setattr(calibration, "_SEARCH_CELLS", 1 << 14)
    encoded = encode(_problem(classes, seed))
    soft = run_kernel(encoded, method).posteriors
    new, old = _both(encoded, soft)
    assert new == old


@pytest.mark.parametrize("classes", [2, 50, 300])
def test_scores_are_the_same_bits(classes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    _compiled(monkeypatch, False)
    encoded = encode(_problem(classes, 5))
    k = encoded.n_classes
    # Small blocks so that several blocks, and a ragged last one, are exercised.
    monkeypatch.setattr(calibration, "_SEARCH_CELLS", 7 * k)
    monkeypatch.setattr(calibration, "_ROWS_CELLS", 13 * k)
    soft = np.random.default_rng(5).dirichlet(np.ones(k), encoded.n_tasks)
    counts = _counts(encoded, soft)
    log_prior = _held_out_log_prior(soft)
    chosen = _selection_judgments(encoded)
    tasks = encoded.tasks[chosen]
    shrinkage = 4.0 * k
    log_errors = _held_out_log_errors(encoded, counts, chosen, shrinkage)
    blocked = calibration._held_out_log_errors_blocked(encoded, counts, chosen, shrinkage)
    assert np.array_equal(blocked, log_errors)
    sums = _task_sums(encoded, chosen, log_errors)
    scores = _held_out_log_likelihoods_on_grid(tasks, log_errors, sums, log_prior)
    others = np.ascontiguousarray((sums[tasks] - log_errors).T)
    prior = np.ascontiguousarray(log_prior[tasks].T)
    answers = np.exp(log_errors.T)
    for row, temperature in enumerate(TEMPERATURE_GRID):
        dense = calibration_reference.held_out_log_likelihoods(temperature, others, prior, answers)
        assert np.array_equal(scores[row], dense), row


@pytest.mark.parametrize("classes", [2, 50, 300])
def test_compiled_scores_are_within_rounding(classes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = encode(_problem(classes, 7))
    k = encoded.n_classes
    soft = np.random.default_rng(7).dirichlet(np.ones(k), encoded.n_tasks)
    counts = _counts(encoded, soft)
    log_prior = _held_out_log_prior(soft)
    chosen = _selection_judgments(encoded)
    tasks = encoded.tasks[chosen]
    log_errors = _held_out_log_errors(encoded, counts, chosen, 2.0 * k)
    sums = _task_sums(encoded, chosen, log_errors)
    _compiled(monkeypatch, False)
    dense = _held_out_log_likelihoods_on_grid(tasks, log_errors, sums, log_prior)
    _compiled(monkeypatch, True)
    compiled = _held_out_log_likelihoods_on_grid(tasks, log_errors, sums, log_prior)
    assert np.max(np.abs(compiled - dense)) < 1e-12


@pytest.mark.realdata
@pytest.mark.parametrize("compiled", [False, True])
def test_search_equals_the_dense_reference_on_a_shared_set(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compiled(monkeypatch, compiled)
    judgments, _ = load_crowd("duck")
    encoded = encode(judgments)
    soft = run_kernel(encoded, "dawid_skene").posteriors
    new, old = _both(encoded, soft)
    assert new == old
