"""Above `DENSE_CONFUSION_CELLS` the `confusion` column lists the cells above their truth
column's floor plus one null-observed entry per truth, and the dense matrices follow from it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation import dawid_skene, result
from annotation_pipelines.aggregation.api import fit
from annotation_pipelines.aggregation.encoding import encode
from annotation_pipelines.aggregation.registry import run_kernel
from annotation_pipelines.aggregation.result import _confusion_column


def _judgments(*, tasks: int, classes: int, annotators: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for task in range(tasks):
        truth = int(rng.integers(classes))
        for _ in range(int(rng.integers(2, 6))):
            label = truth if rng.random() < 0.6 else int(rng.integers(classes))
            rows.append((f"t{task}", f"a{int(rng.integers(annotators))}", f"c{label}"))
    return pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")


def _dense(column: pl.Series, labels: list[str]) -> np.ndarray:
    """The (annotator, observed, truth) matrices a reader rebuilds from the sparse column."""
    code = {label: index for index, label in enumerate(labels)}
    k = len(labels)
    matrices = np.empty((column.len(), k, k))
    for annotator, entries in enumerate(column.to_list()):
        for entry in entries:
            if entry["observed"] is None:
                matrices[annotator, :, code[entry["truth"]]] = entry["probability"]
        for entry in entries:
            if entry["observed"] is not None:
                cell = code[entry["observed"]], code[entry["truth"]]
                matrices[(annotator, *cell)] = entry["probability"]
    return matrices


# The threshold is set to 0, so the listing's path does not depend on size.
@pytest.mark.parametrize(("classes", "annotators", "seed"), [(5, 6, 0), (40, 15, 1), (150, 20, 2)])
def test_sparse_column_rebuilds_the_dense_matrices(
    classes: int, annotators: int, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(result, "DENSE_CONFUSION_CELLS", 0)
    encoded = encode(_judgments(tasks=400, classes=classes, annotators=annotators, seed=seed))
    confusion = run_kernel(encoded, "dawid_skene").confusion
    assert confusion is not None
    column = _confusion_column(encoded, confusion)
    assert column.name == "confusion"
    assert column.len() == encoded.n_annotators
    labels = [str(label) for label in encoded.label_values.to_list()]
    assert np.array_equal(_dense(column, labels), confusion)
    listed = sum(len(entries) for entries in column.to_list())
    assert listed <= encoded.n_judgments * encoded.n_classes + encoded.n_annotators * classes


def test_many_classes_list_the_observed_cells_not_annotators_times_classes_squared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """60 annotators at 200 classes: 2.4 million dense entries; the fit's matrices are ε over
    the column total nearly everywhere, so the column lists one floor per truth and a few
    cells per judgment. Both size switches are lowered together below that size (they are
    equal in the package), so the fit keeps only the answered rows and the column is listed
    from them, as at 4 million cells and more."""
    assert dawid_skene.ANSWERED_ROWS_MIN_CELLS == result.DENSE_CONFUSION_CELLS
    monkeypatch.setattr(dawid_skene, "ANSWERED_ROWS_MIN_CELLS", 1 << 20)
    monkeypatch.setattr(result, "DENSE_CONFUSION_CELLS", 1 << 20)
    judgments = _judgments(tasks=300, classes=200, annotators=60, seed=3)
    annotators = fit(judgments, "dawid_skene").annotators
    encoded = encode(judgments)
    assert encoded.n_annotators * encoded.n_classes**2 > result.DENSE_CONFUSION_CELLS
    entries = annotators.get_column("confusion").explode().struct.unnest()
    floors = entries.filter(pl.col("observed").is_null())
    assert floors.height == encoded.n_annotators * encoded.n_classes
    assert entries.height - floors.height < 4 * encoded.n_judgments * 3
