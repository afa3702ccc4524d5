"""Dense integer codes for tasks, annotators and labels, computed once per fit.

Every kernel works on three flat arrays (one entry per judgment) and never on the original
values, so the cost of strings is paid once here and the EM loops are pure NumPy. Codes do
not depend on row order except that text task ids are numbered by first appearance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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

    def answer_cells(self) -> np.ndarray:
        """`task * n_classes + label` per judgment: the flat (task, class) cell it votes for."""
        cells = self.tasks * self.n_classes
        cells += self.labels
        return cells

    def votes(self) -> np.ndarray:
        """Vote counts per task and class, shape (n_tasks, n_classes)."""
        k = self.n_classes
        flat = np.bincount(self.answer_cells(), minlength=self.n_tasks * k)
        return flat.reshape(self.n_tasks, k).astype(np.float64)

    def votes_per_task(self) -> np.ndarray:
        """Judgments per task (computed once; callers must not modify it)."""
        return self._votes_per_task

    @cached_property
    def _votes_per_task(self) -> np.ndarray:
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
    """Codes for `judgments`; `extra_labels` (gold answers) join the label vocabulary.

    Label and annotator codes follow the sorted order of their values (the tie rules and the
    annotator table depend on it). Task codes follow ascending order for integer ids and
    order of first appearance otherwise: sorting hundreds of thousands of strings costs more
    than a whole majority vote, and no method depends on the order of tasks.
    """
    validate(judgments)
    frame = judgments.select(COLUMNS)
    labels, label_values = encode_column(frame.get_column("label"), sort=True)
    if extra_labels is not None and extra_labels.len():
        vocabulary = (
            pl.concat([label_values, extra_labels.cast(label_values.dtype)]).unique().sort()
        )
        if vocabulary.len() != label_values.len():
            labels = _codes(label_values, vocabulary)[labels]
            label_values = vocabulary
    if label_values.len() > np.iinfo(np.int16).max:
        raise ValueError(f"judgments: {label_values.len()} distinct labels; at most 32767")
    tasks, task_values = encode_column(frame.get_column("task_id"), sort=False)
    annotators, annotator_values = encode_column(frame.get_column("annotator_id"), sort=True)
    return Encoded(
        tasks=tasks,
        annotators=annotators,
        labels=labels,
        task_values=task_values,
        annotator_values=annotator_values,
        label_values=label_values,
    )


# A column whose values each form one contiguous run (an export ordered by task) is coded by
# its runs; with more runs than this share of rows the check is not worth its sort.
_RUN_SHARE = 0.5
# Up to this many distinct values, codes come from a perfect hash of the distinct hashes (a
# table that fits in cache); above it, from one sort of the hashes.
_SMALL_VOCABULARY = 2048
_PREFIX = 4096
_INTEGER_DTYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)


def encode_column(values: pl.Series, *, sort: bool) -> tuple[np.ndarray, pl.Series]:
    """(int64 code per row, vocabulary) with `vocabulary[code] == value`.

    With `sort`, the vocabulary is sorted; otherwise it is ascending for integers and in order
    of first appearance for everything else. Text is grouped by its 64-bit hash (no string
    comparison in the hot path) and the grouping is verified with a second, independently
    seeded hash: a row whose second hash differs from its group's would reveal a collision,
    and then the exact (slower) join is used instead.
    """
    if values.len() == 0:
        return np.empty(0, dtype=np.int64), values.unique()
    if values.dtype in _INTEGER_DTYPES:
        dense = _integer_codes(values)
        if dense is not None:
            return dense
        sort = True  # integers sort cheaply, and ascending ids are the documented order
    hashes = values.hash(seed=0).to_numpy()
    codes, first_rows = _hash_groups(values, hashes, by_appearance=not sort)
    check = values.hash(seed=0x5EED).to_numpy()
    if not np.array_equal(check, check[first_rows][codes]):
        vocabulary = values.unique().sort()
        return _codes(values, vocabulary), vocabulary
    vocabulary = values.gather(first_rows)
    if sort:
        order = vocabulary.arg_sort().to_numpy()
        rank = np.empty(order.shape[0], dtype=np.int64)
        rank[order] = np.arange(order.shape[0])
        codes = rank[codes]
        vocabulary = vocabulary.gather(order)
    return codes, vocabulary


def _integer_codes(values: pl.Series) -> tuple[np.ndarray, pl.Series] | None:
    """Ascending codes by offset into the value range, when the range is not much wider."""
    low, high = values.min(), values.max()
    span = int(high) - int(low) + 1
    if span > 4 * values.len() + 1024:
        return None
    offsets = values.to_numpy().astype(np.int64, copy=False) - int(low)
    present = np.zeros(span, dtype=bool)
    present[offsets] = True
    rank = np.cumsum(present, dtype=np.int64) - 1
    vocabulary = pl.Series(values.name, np.flatnonzero(present) + int(low)).cast(values.dtype)
    return rank[offsets], vocabulary


def _hash_groups(
    values: pl.Series, hashes: np.ndarray, *, by_appearance: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, first row of each code); codes in order of first appearance when
    `by_appearance` (otherwise in an arbitrary order the caller will replace)."""
    n = hashes.shape[0]
    starts = np.empty(n, dtype=bool)
    sample = hashes[: min(n, 4096)]
    if np.count_nonzero(sample[1:] != sample[:-1]) < _RUN_SHARE * sample.shape[0]:
        starts[0] = True
        np.not_equal(hashes[1:], hashes[:-1], out=starts[1:])
        run_heads = np.flatnonzero(starts)
        if run_heads.shape[0] <= _RUN_SHARE * n:
            head_hashes = np.sort(hashes[run_heads])
            if not np.any(head_hashes[1:] == head_hashes[:-1]):
                return np.cumsum(starts, dtype=np.int64) - 1, run_heads
    small = _small_vocabulary_groups(hashes, by_appearance=by_appearance)
    if small is not None:
        return small
    order = np.argsort(hashes)
    ordered = hashes[order]
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    group_starts = np.flatnonzero(starts)
    # Renumber groups (hash order) by their first row, so codes follow first appearance.
    group_first = np.minimum.reduceat(order, group_starts)
    by_appearance = np.argsort(group_first)
    renumber = np.empty(group_first.shape[0], dtype=np.int64)
    renumber[by_appearance] = np.arange(group_first.shape[0])
    codes = np.empty(n, dtype=np.int64)
    codes[order] = renumber[np.cumsum(starts) - 1]
    return codes, group_first[by_appearance]


def _small_vocabulary_groups(
    hashes: np.ndarray, *, by_appearance: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes through a perfect hash table of the distinct hashes, or None for a large vocabulary.

    The distinct hashes are gathered from a prefix of the rows and completed from the rows the
    table does not recognise, so no pass over all rows is spent on finding them; `first` holds
    each distinct hash's first row (a value unseen in the prefix is first seen at its first
    unrecognised row).
    """
    distinct, first = np.unique(hashes[:_PREFIX], return_index=True)
    for _ in range(3):
        if distinct.shape[0] > _SMALL_VOCABULARY:
            return None
        found = _perfect_hash(distinct)
        if found is None:
            return None
        table, shift, mask = found
        codes = table[_slots(hashes, shift, mask)]
        unrecognised = np.flatnonzero(distinct[codes] != hashes)
        if unrecognised.shape[0] == 0:
            codes = codes.astype(np.int64)
            if not by_appearance:
                return codes, first
            appearance = np.argsort(first)
            rank = np.empty(appearance.shape[0], dtype=np.int64)
            rank[appearance] = np.arange(appearance.shape[0])
            return rank[codes], first[appearance]
        new, index = np.unique(hashes[unrecognised], return_index=True)
        distinct = np.concatenate([distinct, new])
        first = np.concatenate([first, unrecognised[index]])
        order = np.argsort(distinct)
        distinct, first = distinct[order], first[order]
    return None


def _slots(hashes: np.ndarray, shift: int, mask: int) -> np.ndarray:
    window = hashes if shift == 0 else hashes >> np.uint64(shift)
    return window.view(np.int64) & mask


def _perfect_hash(distinct: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """A slot table indexed by some bits of the hash in which no two distinct hashes meet.

    With n keys in n² slots a random bit window is collision-free with probability ~0.6, so
    a few windows are tried; the table (int32, at most 4M slots) stays cache-friendly.
    """
    n = distinct.shape[0]
    size = 1 << max(4, int(n * n).bit_length())
    mask = size - 1
    for shift in range(0, 64 - size.bit_length() + 1, 3):
        slots = _slots(distinct, shift, mask)
        if np.unique(slots).shape[0] == n:
            table = np.zeros(size, dtype=np.int32)
            table[slots] = np.arange(n, dtype=np.int32)
            return table, shift, mask
    return None


def _codes(values: pl.Series, vocabulary: pl.Series) -> np.ndarray:
    """Position of each value in `vocabulary` (-1 when absent), by an exact hash join."""
    numbered = vocabulary.to_frame("value").with_row_index("code")
    codes = (
        values.to_frame("value")
        .join(numbered, on="value", how="left", maintain_order="left")
        .get_column("code")
        .cast(pl.Int64)
        .fill_null(-1)
    )
    return codes.to_numpy().astype(np.int64, copy=False)
