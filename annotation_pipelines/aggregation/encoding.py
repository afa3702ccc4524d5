"""Dense integer codes for tasks, annotators and labels, computed once per fit.

Every kernel works on three flat arrays (one entry per judgment) and never on the original
values, so the cost of strings is paid once here and the EM loops are pure NumPy. Codes follow
the sorted order of the values, which makes every method independent of row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

COLUMNS = ("task_id", "annotator_id", "label")


@dataclass(frozen=True)
class Encoded:
    """Judgments as codes: `tasks[i]`, `annotators[i]`, `labels[i]` describe judgment `i`."""

    tasks: np.ndarray
    annotators: np.ndarray
    labels: np.ndarray
    task_values: pl.Series
    annotator_values: pl.Series
    label_values: pl.Series

    @property
    def n_judgments(self) -> int:
        return int(self.tasks.shape[0])

    @property
    def n_tasks(self) -> int:
        return self.task_values.len()

    @property
    def n_annotators(self) -> int:
        return self.annotator_values.len()

    @property
    def n_classes(self) -> int:
        return self.label_values.len()

    def votes(self) -> np.ndarray:
        """Vote counts per task and class, shape (n_tasks, n_classes)."""
        k = self.n_classes
        flat = np.bincount(self.tasks * k + self.labels, minlength=self.n_tasks * k)
        return flat.reshape(self.n_tasks, k).astype(np.float64)

    def votes_per_task(self) -> np.ndarray:
        return np.bincount(self.tasks, minlength=self.n_tasks)

    def judgments_per_annotator(self) -> np.ndarray:
        return np.bincount(self.annotators, minlength=self.n_annotators)

    def label_codes(self, values: pl.Series) -> np.ndarray:
        """Codes of `values` (which must all be known labels)."""
        return _codes(values.cast(self.label_values.dtype), self.label_values)

    def task_codes(self, values: pl.Series) -> np.ndarray:
        """Codes of `values`; -1 for a task that has no judgment."""
        return _codes(values.cast(self.task_values.dtype), self.task_values)


def validate(judgments: pl.DataFrame) -> None:
    missing = [column for column in COLUMNS if column not in judgments.columns]
    if missing:
        raise ValueError(
            f"judgments: missing column(s) {', '.join(missing)}; "
            f"have {', '.join(judgments.columns)}"
        )
    for column in COLUMNS:
        nulls = judgments.get_column(column).null_count()
        if nulls:
            raise ValueError(f"judgments: column {column!r} has {nulls} empty value(s)")


def encode(judgments: pl.DataFrame, *, extra_labels: pl.Series | None = None) -> Encoded:
    """Codes for `judgments`; `extra_labels` (gold answers) join the label vocabulary."""
    validate(judgments)
    frame = judgments.select(COLUMNS)
    if extra_labels is not None and extra_labels.len():
        vocabulary_source = pl.concat(
            [frame.get_column("label"), extra_labels.cast(frame.schema["label"])]
        )
    else:
        vocabulary_source = frame.get_column("label")
    label_values = vocabulary_source.unique().sort()
    if label_values.len() > np.iinfo(np.int16).max:
        raise ValueError(f"judgments: {label_values.len()} distinct labels; at most 32767")
    task_values = frame.get_column("task_id").unique().sort()
    annotator_values = frame.get_column("annotator_id").unique().sort()
    return Encoded(
        tasks=_codes(frame.get_column("task_id"), task_values),
        annotators=_codes(frame.get_column("annotator_id"), annotator_values),
        labels=_codes(frame.get_column("label"), label_values),
        task_values=task_values,
        annotator_values=annotator_values,
        label_values=label_values,
    )


def _codes(values: pl.Series, vocabulary: pl.Series) -> np.ndarray:
    """Position of each value in the sorted `vocabulary` (which must contain it).

    A hash join against the numbered vocabulary: measured faster than a binary search or a
    dense rank (which is pathological on low-cardinality text columns in Polars 2.1). int64
    keeps `task * n_classes + label` style flat indices free of overflow at 100M judgments.
    """
    numbered = vocabulary.to_frame("value").with_row_index("code")
    codes = (
        values.to_frame("value")
        .join(numbered, on="value", how="left", maintain_order="left")
        .get_column("code")
        .cast(pl.Int64)
        .fill_null(-1)
    )
    return codes.to_numpy().astype(np.int64, copy=False)
