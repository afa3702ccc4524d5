"""Dense integer codes for tasks, annotators and labels, computed once per fit.

Every kernel works on three flat arrays (one entry per judgment) and never on the original
values, so the cost of strings is paid once here and the EM loops are pure NumPy. Codes do
not depend on row order except that text task ids are numbered by first appearance.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType

import numpy as np
import polars as pl

from annotation_pipelines.string_views import string_views

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
    sorts = {"task_id": False, "annotator_id": True, "label": True}
    # A frame of dense integer ids is coded by offset and never needs the kernels (nor Numba).
    text = any(frame.schema[name] not in _INTEGER_DTYPES for name in COLUMNS)
    if text and compiled_kernels(frame.height) is not None:
        # The compiled kernels release the GIL: the task column (the biggest vocabulary) is
        # coded on a second core while this one codes the annotators and labels.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(encode_column, frame.get_column("task_id"), sort=False)
            coded = {
                name: encode_column(frame.get_column(name), sort=sorts[name])
                for name in ("annotator_id", "label")
            }
            coded["task_id"] = pending.result()
    else:
        coded = {
            name: encode_column(frame.get_column(name), sort=sort) for name, sort in sorts.items()
        }
    tasks, task_values = coded["task_id"]
    annotators, annotator_values = coded["annotator_id"]
    labels, label_values = coded["label"]
    if extra_labels is not None and extra_labels.len():
        vocabulary = (
            pl.concat([label_values, extra_labels.cast(label_values.dtype)]).unique().sort()
        )
        if vocabulary.len() != label_values.len():
            labels = _codes(label_values, vocabulary)[labels]
            label_values = vocabulary
    if label_values.len() > np.iinfo(np.int16).max:
        raise ValueError(f"judgments: {label_values.len()} distinct labels; at most 32767")
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
# From this many rows on, the passes over every row run as compiled kernels (`compiled.py`).
COMPILED_MIN_ROWS = 200_000
_SEED_PRIMARY = 0
_SEED_CHECK = 0x5EED
_INTEGER_DTYPES = (
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
)


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
    # Given each group's first row, the permutation that sorts the groups by value.
    order = (lambda rows: values.gather(rows).arg_sort().to_numpy()) if sort else None
    kernels = compiled_kernels(values.len())
    if kernels is not None:
        return _compiled_codes(kernels, values, order=order)
    primary, check = column_hashes(values)
    codes, first_rows = _hash_groups(primary, order=order)
    # Each group's check hash must be every member's: otherwise two values shared a hash.
    expected = np.take(np.take(check, first_rows), codes)
    if not np.array_equal(expected, check):
        # A 64-bit collision (odds ≈ n²/2⁶⁵): the exact, slower join, in the same order.
        vocabulary = values.unique().sort() if sort else values.unique(maintain_order=True)
        return _codes(values, vocabulary), vocabulary
    return codes, values.gather(first_rows)


def _compiled_codes(
    kernels: ModuleType,
    values: pl.Series,
    *,
    order: Callable[[np.ndarray], np.ndarray] | None,
) -> tuple[np.ndarray, pl.Series]:
    """`encode_column` through the compiled kernels: short strings by their Arrow views
    (exact, no hashing), anything else by its pair of hashes."""
    runs = _mostly_runs(values.head(_PREFIX).hash(seed=_SEED_PRIMARY).to_numpy())
    exact = False
    views = string_views(values)
    if views is not None:
        words, rows = views
        codes, first_rows, exact = kernels.factorize_views(words, rows, runs=runs)
    if not exact:
        primary, check = column_hashes(values)
        codes, first_rows, _ = kernels.factorize_hashes(primary, check, runs=runs)
    if order is not None:
        permutation = order(first_rows)
        # In place: no second million-row array to fault in.
        codes = kernels.renumber(codes, _inverse(permutation))
        first_rows = first_rows[permutation]
    return codes, values.gather(first_rows)


def compiled_kernels(n_rows: int) -> ModuleType | None:
    """The compiled kernels module for an input of `n_rows`, or None (small input, or Numba
    unavailable on this platform: the NumPy path gives the same codes)."""
    if n_rows < COMPILED_MIN_ROWS:
        return None
    try:
        from annotation_pipelines.aggregation import compiled
    except ImportError:  # pragma: no cover - Numba is a dependency; guard exotic platforms
        return None
    return compiled


def column_hashes(values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(primary, check): two independently seeded 64-bit hashes of each value."""
    return values.hash(seed=_SEED_PRIMARY).to_numpy(), values.hash(seed=_SEED_CHECK).to_numpy()


def _integer_codes(values: pl.Series) -> tuple[np.ndarray, pl.Series] | None:
    """Ascending codes by offset into the value range, when the range is not much wider and
    has no null (an offset has no slot for one)."""
    if values.null_count():
        return None
    low, high = values.min(), values.max()
    # An integer column without nulls has integer bounds.
    if not isinstance(low, int) or not isinstance(high, int):
        raise TypeError(f"{values.name}: expected integer bounds, got {low!r} and {high!r}")
    span = high - low + 1
    if span > 4 * values.len() + 1024 or high > np.iinfo(np.int64).max:
        return None
    offsets = values.to_numpy().astype(np.int64, copy=False) - low
    present = np.zeros(span, dtype=bool)
    present[offsets] = True
    rank = np.cumsum(present, dtype=np.int64) - 1
    vocabulary = pl.Series(values.name, np.flatnonzero(present) + low).cast(values.dtype)
    return rank[offsets], vocabulary


def _hash_groups(
    hashes: np.ndarray, *, order: Callable[[np.ndarray], np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, first row of each code).

    Codes follow `order(first_rows)` (the permutation that sorts the groups, given each one's
    first row) when given, and order of first appearance otherwise.
    """
    n = hashes.shape[0]
    if _mostly_runs(hashes[:_PREFIX]):
        runs = _run_groups(hashes)
        if runs is not None:
            codes, run_heads = runs
            if order is None:
                return codes, run_heads
            return _renumber(codes, run_heads, order(run_heads))
    small = _small_vocabulary_groups(hashes, order=order)
    if small is not None:
        return small
    sorter = np.argsort(hashes)
    ordered = hashes[sorter]
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    group_starts = np.flatnonzero(starts)
    group_first = np.minimum.reduceat(sorter, group_starts)
    codes = np.empty(n, dtype=np.int64)
    codes[sorter] = np.cumsum(starts) - 1
    # Groups are numbered in hash order so far; renumber them by first row or by `order`.
    permutation = np.argsort(group_first) if order is None else order(group_first)
    return _renumber(codes, group_first, permutation)


def _mostly_runs(sample: np.ndarray) -> bool:
    """Whether equal neighbours dominate a prefix of hashes: input grouped by this column."""
    return np.count_nonzero(sample[1:] != sample[:-1]) < _RUN_SHARE * sample.shape[0]


def _renumber(
    codes: np.ndarray, first_rows: np.ndarray, permutation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Codes and first rows with group `permutation[i]` becoming group i."""
    return np.take(_inverse(permutation), codes), first_rows[permutation]


def _inverse(permutation: np.ndarray) -> np.ndarray:
    """`rank` with `rank[permutation[i]] == i`: the new code of each old one."""
    rank = np.empty(permutation.shape[0], dtype=np.int64)
    rank[permutation] = np.arange(permutation.shape[0])
    return rank


def _run_groups(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes by runs of equal hashes (an export ordered by task), if no value has two runs."""
    n = hashes.shape[0]
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(hashes[1:], hashes[:-1], out=starts[1:])
    run_heads = np.flatnonzero(starts)
    if run_heads.shape[0] > _RUN_SHARE * n or not _all_distinct(hashes[run_heads]):
        return None
    codes = np.cumsum(starts, dtype=np.int64)
    codes -= 1
    return codes, run_heads


def _all_distinct(keys: np.ndarray, shift: int = 0) -> bool:
    """Whether the uint64 `keys` are pairwise distinct, without sorting them.

    Each key is scattered into a table of about 4× as many slots by some of its bits; a key
    that lost its slot to another is compared with the winner. Two equal keys share a slot,
    so either one of them won (and the comparison finds the pair) or both lost, and the
    losers — about an eighth of the keys — are checked the same way on the next bits. On
    200,000 run heads this is ~1 ms, against ~8 ms for sorting them.
    """
    m = keys.shape[0]
    bits = max(4, (4 * m).bit_length())
    if m < 256 or shift + bits > 64:
        ordered = np.sort(keys)
        return not np.any(ordered[1:] == ordered[:-1])
    slots = _slots(keys, shift, (1 << bits) - 1)
    table = np.empty(1 << bits, dtype=np.int64)
    index = np.arange(m, dtype=np.int64)
    table[slots] = index
    winners = np.take(table, slots)
    lost = np.flatnonzero(winners != index)
    if lost.shape[0] == 0:
        return True
    if np.any(keys[lost] == keys[winners[lost]]):
        return False
    return _all_distinct(keys[lost], shift + bits)


def _small_vocabulary_groups(
    hashes: np.ndarray, *, order: Callable[[np.ndarray], np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes through a perfect hash table of the distinct hashes, or None for a large vocabulary.

    The distinct hashes are gathered from a prefix of the rows and completed from the rows the
    table does not recognise, so no pass over all rows is spent on finding them; `first` holds
    each distinct hash's first row (a value unseen in the prefix is first seen at its first
    unrecognised row). The final numbering is folded into the table, so the rows are looked
    up once.
    """
    distinct, first = np.unique(hashes[:_PREFIX], return_index=True)
    for _ in range(3):
        if distinct.shape[0] > _SMALL_VOCABULARY:
            return None
        found = _perfect_hash(distinct)
        if found is None:
            return None
        table, shift, mask = found
        permutation = np.argsort(first) if order is None else order(first)
        rank = _inverse(permutation)
        # Slot → final code and slot → the hash it holds. An unoccupied slot points at
        # distinct[0], so a row landing there matches only if it is that very hash.
        code_of_slot = np.take(rank, table)
        hash_of_slot = np.take(distinct[permutation], code_of_slot)
        codes = _slots(hashes, shift, mask)
        looked_up = np.take(hash_of_slot, codes)
        np.take(code_of_slot, codes, out=codes)
        unrecognised = looked_up != hashes
        if not unrecognised.any():
            return codes, first[permutation]
        rows = np.flatnonzero(unrecognised)
        new, index = np.unique(hashes[rows], return_index=True)
        distinct = np.concatenate([distinct, new])
        first = np.concatenate([first, rows[index]])
        ascending = np.argsort(distinct)
        distinct, first = distinct[ascending], first[ascending]
    return None


def _slots(hashes: np.ndarray, shift: int, mask: int) -> np.ndarray:
    """Bits `shift`… of each hash under `mask`, as int64 (a fresh array, changed in place)."""
    slots = np.right_shift(hashes, np.uint64(shift)).view(np.int64)
    np.bitwise_and(slots, mask, out=slots)
    return slots


def _perfect_hash(distinct: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """A slot table indexed by some bits of the hash in which no two distinct hashes meet.

    With n keys in n² slots a random bit window is collision-free with probability ~0.6, so
    a few windows are tried; the table (int32, at most 4M slots) stays cache-friendly.
    """
    n = distinct.shape[0]
    size = 1 << max(4, int(n * n - 1).bit_length())
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
