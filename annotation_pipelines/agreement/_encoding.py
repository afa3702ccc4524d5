"""Turn a judgments frame into integer codes and per-(task, value) counts.

Everything downstream (alpha, kappa, percent agreement, their bootstraps) works on the sparse
table of how many judgments each task received for each value — never on the dense
coders × units matrix, whose size is annotators × tasks whatever the data's sparsity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from annotation_pipelines.string_views import string_views

LEVELS = ("nominal", "ordinal", "interval", "ratio")
REQUIRED_COLUMNS = ("task_id", "annotator_id", "label")

# Hash seeds for the two independent 64-bit hashes used to factorize identifiers quickly.
_SEED_PRIMARY = 0
_SEED_CHECK = 0x5EED
# Value codes live in the low bits of a 64-bit sort key; beyond this many distinct values the
# task hash keeps too few bits to be trusted and the exact path is taken directly.
_MAX_VALUE_BITS = 20
# Rows read to guess the few distinct one-character labels before checking every row.
_PREFIX_ROWS = 4096


def pandas_factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`pandas.factorize`: codes in order of first appearance and the uniques, by hashing.

    pandas is imported on the first call, not with this module: every Dagster run process
    imports the whole code location, and pandas alone is about a tenth of that load.
    """
    import pandas as pd

    codes, uniques = pd.factorize(values)
    return codes, np.asarray(uniques)


def check_columns(judgments: pl.DataFrame, columns: tuple[str, ...] = REQUIRED_COLUMNS) -> None:
    missing = [column for column in columns if column not in judgments.columns]
    if missing:
        raise ValueError(
            f"judgments: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"have {', '.join(repr(c) for c in judgments.columns) or 'no columns'}"
        )


def check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")


def factorize(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes int64 0..k-1 in order of first appearance, index of each code's first row).

    Factorizing 64-bit hashes is several times faster than factorizing strings. A second,
    independently seeded hash proves there was no collision; if there was one (odds about
    k²/2⁶⁵), fall back to exact factorization of the values themselves. Missing values get
    code -1 only on the exact path, so callers drop them first.
    """
    hashes = series.to_frame("value").select(
        pl.col("value").hash(seed=_SEED_PRIMARY).alias("primary"),
        pl.col("value").hash(seed=_SEED_CHECK).alias("check"),
    )
    codes, _ = pandas_factorize(hashes.get_column("primary").to_numpy())
    codes = codes.astype(np.int64, copy=False)
    first = first_rows(codes)
    # Equal secondary hashes on every row of a code ⇔ the primary hash merged nothing.
    check = hashes.get_column("check").to_numpy()
    if not np.array_equal(check[first][codes], check):
        codes, _ = pandas_factorize(series.to_numpy())
        codes = codes.astype(np.int64, copy=False)
        first = first_rows(codes)
    return codes, first


def first_rows(codes: np.ndarray) -> np.ndarray:
    """Per code, the index of its first row."""
    first = np.empty(int(codes.max()) + 1 if len(codes) else 0, dtype=np.int64)
    # Reversed scatter: the last write wins, so each code keeps its first occurrence.
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1, dtype=np.int64)
    return first


def _as_numbers(labels: pl.Series) -> pl.Series:
    """Labels as Float64, null where one is not a finite number: 'nan' and 'inf' parse as
    numbers, but no distance between answers is defined on them (alpha came out NaN)."""
    if labels.dtype.is_numeric():
        values = labels.cast(pl.Float64)
    else:
        values = labels.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.Series(
        labels.name,
        values.to_frame().select(pl.when(pl.first().is_finite()).then(pl.first())).to_series(),
        dtype=pl.Float64,
    )


def non_numbers(labels: pl.Series) -> pl.Series:
    """True where a label is not a finite number as `numeric_labels` reads it."""
    return _as_numbers(labels).is_null() & labels.is_not_null()


def numeric_labels(labels: pl.Series, level: str) -> pl.Series:
    """Labels as Float64; a clear error naming the first label that is not a finite number."""
    values = _as_numbers(labels)
    bad = values.is_null() & labels.is_not_null()
    if bad.any():
        offending = labels.filter(bad)
        examples = ", ".join(repr(v) for v in offending.unique(maintain_order=True).head(3))
        raise ValueError(
            f"level {level!r} treats labels as numbers, but label {offending[0]!r} is not a "
            f"finite number ({int(bad.sum())} such distinct label(s), e.g. {examples}); "
            f"use level='nominal' for categorical labels"
        )
    return values


@dataclass(frozen=True)
class TaskValueCounts:
    """How many judgments each task received for each value, sorted by task code.

    `domain[value]` is the value itself: sorted numbers for ordinal/interval/ratio, labels in
    order of appearance for nominal. Task codes are dense (0..n_tasks-1) but their order is
    arbitrary: every statistic here is invariant to the order of tasks.
    """

    task: np.ndarray  # int64, task code per row, non-decreasing
    value: np.ndarray  # int64, value code per row
    count: np.ndarray  # float64, number of judgments
    n_tasks: int
    domain: np.ndarray

    @property
    def n_values(self) -> int:
        return len(self.domain)


def label_codes(labels: pl.Series, level: str) -> tuple[np.ndarray, np.ndarray]:
    """(code per judgment, domain); numeric levels sort the domain by value.

    Text labels are factorized first and only the distinct ones parsed as numbers: parsing
    a million strings costs more than the whole statistic. Texts that parse to the same
    number ("1", "1.0") become one value.
    """
    if level != "nominal" and labels.dtype.is_numeric():
        codes, uniques = pandas_factorize(labels.cast(pl.Float64).to_numpy())
        numbers = np.asarray(uniques, dtype=np.float64)
    else:
        if level == "nominal":
            short = _short_text_codes(labels)
            if short is not None:
                return short[0], np.asarray(short[1], dtype=object)
            codes, first = factorize(labels)
            return codes, labels.gather(first).to_numpy()
        domains: list[np.ndarray] = []

        def by_number(texts: list[str]) -> np.ndarray:
            numbers = numeric_labels(pl.Series(texts, dtype=pl.String), level).to_numpy()
            domain, inverse = np.unique(numbers, return_inverse=True)
            domains.append(domain)
            return inverse.astype(np.int64)

        short = _short_text_codes(labels, by_number)
        if short is not None:
            return short[0], domains[-1]
        codes, first = factorize(labels)
        numbers = numeric_labels(labels.gather(first), level).to_numpy()
    domain, inverse = np.unique(numbers, return_inverse=True)
    return inverse.astype(np.int64)[codes], domain


def _short_text_codes(
    labels: pl.Series, relabel: Callable[[list[str]], np.ndarray] | None = None
) -> tuple[np.ndarray, list[str]] | None:
    """(codes, text of each code) when every label is at most 4 bytes long, else None.

    Polars stores strings as Arrow string views: 16 bytes per row whose first 8 hold the
    length and, up to 4 bytes, the whole zero-padded string. So the first 8 bytes of the
    view identify a short label exactly, with no hashing and no collision to check, and one
    byte identifies a one-character label ("0"–"9", "a", "y"/"n"): a lookup by that byte is
    a few passes over a million small integers. Should the padding ever hold anything but
    zeros, two codes would decode to the same text, which is checked (then None).
    `relabel(texts)`, if given, maps the codes to new ones (folded into the lookup table).
    """
    views = string_views(labels)
    if views is None:
        return None
    words, rows = views
    # Contiguous copies first: the strided views make every later pass several times slower.
    lengths = np.ascontiguousarray(words.view(np.uint32).reshape(-1, 4)[rows, 0])
    shortest, longest = int(lengths.min()), int(lengths.max())
    if longest > 4:
        return None
    if shortest == longest == 1:
        characters = np.ascontiguousarray(words.view(np.uint8).reshape(-1, 16)[rows, 4])
        # The characters of a prefix usually are all of them; a code of -1 says otherwise.
        for every_row in (False, True):
            present = (
                np.flatnonzero(np.bincount(characters, minlength=256))
                if every_row
                else np.unique(characters[:_PREFIX_ROWS])
            )
            texts = _decode_heads((present.astype(np.uint64) << np.uint64(32)) | np.uint64(1))
            table = np.full(256, -1, dtype=np.int64)
            table[present] = np.arange(len(present)) if relabel is None else relabel(texts)
            codes = np.take(table, characters)
            if int(codes.min()) >= 0:
                return codes, texts
        raise AssertionError("every character present is in the table")  # pragma: no cover
    codes, heads = pandas_factorize(np.ascontiguousarray(words[rows, 0]))
    codes = codes.astype(np.int64, copy=False)
    texts = _decode_heads(heads)
    if len(set(texts)) != len(texts):
        return None
    return (codes if relabel is None else relabel(texts)[codes]), texts


def _decode_heads(heads: np.ndarray) -> list[str]:
    """The texts of short string views from their first 8 bytes (length, then the bytes)."""
    return [
        int(head >> 32).to_bytes(4, "little")[: int(head) & 0xFFFFFFFF].decode("utf-8")
        for head in heads.tolist()
    ]


def task_value_counts(judgments: pl.DataFrame, *, level: str = "nominal") -> TaskValueCounts:
    """Group judgments by (task, value); rows with a missing label are dropped (unit missing).

    One sort of 64-bit keys (task hash with its low bits replaced by the value code) does
    the group-by: on a million judgments that is several times faster than a hash-table
    group-by. A collision of two tasks' truncated hashes would merge them, so the number of
    distinct tasks is checked against an independently seeded full 64-bit hash; on a
    mismatch (odds about tasks²/2^(65 − value bits), ≈ 1e-8 for 200,000 tasks and 5 values)
    the exact, slower factorization of the ids is used. A wrong answer needs both hashes to
    collide at once.
    """
    check_columns(judgments, ("task_id", "label"))
    check_level(level)
    frame = judgments.select("task_id", "label")
    if frame.get_column("label").null_count():
        frame = frame.filter(pl.col("label").is_not_null())
    if frame.get_column("task_id").null_count():
        raise ValueError("judgments: task_id has missing values")
    values, domain = label_codes(frame.get_column("label"), level)
    bits = max(1, int(max(len(domain) - 1, 1)).bit_length())
    if frame.height and bits <= _MAX_VALUE_BITS:
        keys = _exact_task_keys(frame.get_column("task_id"), bits)
        if keys is not None:
            keys |= values.view(np.uint64)
            return _sorted_counts(keys, bits, domain)
        hashes = frame.select(
            pl.col("task_id").hash(seed=_SEED_PRIMARY).alias("primary"),
            pl.col("task_id").hash(seed=_SEED_CHECK).alias("check"),
        )
        shift = np.uint64(bits)
        keys = hashes.get_column("primary").to_numpy() >> shift
        keys <<= shift
        keys |= values.view(np.uint64)
        counts = _sorted_counts(keys, bits, domain)
        check = hashes.get_column("check").to_numpy().copy()
        check.sort()
        if counts.n_tasks == 1 + int(np.count_nonzero(check[1:] != check[:-1])):
            return counts
    task_codes, _ = pandas_factorize(frame.get_column("task_id").to_numpy())
    keys = task_codes.astype(np.uint64) << np.uint64(bits)
    keys |= values.view(np.uint64)
    return _sorted_counts(keys, bits, domain)


def _exact_task_keys(tasks: pl.Series, bits: int) -> np.ndarray | None:
    """Sort keys holding each task id exactly, with the low `bits` bits free; else None.

    When every id fits in its string view (at most 12 bytes), the bits that differ between
    ids usually number far fewer than 64 ("task-000001" … "task-199999" differ in the length
    and six digits). Keeping only those bits of the two view words, shifted so they do not
    overlap, is injective on the ids: the key is the id itself, so the sort needs neither a
    hash nor a collision check.
    """
    views = string_views(tasks)
    if views is None:
        return None
    words, rows = views
    # XOR with the first id zeroes the bits every id shares and keeps the rest as they are
    # (a bijection), so each id is then just its varying bits. One column at a time: NumPy
    # is several times slower on the (rows, 2) array than on two contiguous columns.
    first = words[rows.start]
    head = words[rows, 0] ^ first[0]
    tail = words[rows, 1] ^ first[1]
    head_mask = int(np.bitwise_or.reduce(head))
    tail_mask = int(np.bitwise_or.reduce(tail))
    length_bound = (int(first[0]) | head_mask) & 0xFFFFFFFF
    if length_bound > 12:
        lengths = words.view(np.uint32).reshape(-1, 4)[rows, 0]
        if int(lengths.max()) > 12:
            return None  # a longer id's view points into a data buffer: not its identity
    full = (1 << 64) - 1
    # Where tail's varying bits go: shifted left (+) or right (−), clear of head's.
    for tail_shift in sorted(range(-63, 64), key=abs):
        if tail_shift >= 0:
            moved = tail_mask << tail_shift
            lost = moved > full
        else:
            moved = tail_mask >> -tail_shift
            lost = moved << -tail_shift != tail_mask
        if not lost and not moved & head_mask:
            break
    else:
        return None
    combined = head_mask | moved
    lowest = (combined & -combined).bit_length() - 1 if combined else 0
    shift = bits - lowest  # make the low `bits` bits free for the value code
    if (combined << shift if shift >= 0 else combined >> -shift) > full:
        return None
    keys = _shifted(head, shift)
    if tail_mask:
        keys |= _shifted(tail, tail_shift + shift)
    return keys


def _shifted(array: np.ndarray, shift: int) -> np.ndarray:
    """`array` shifted left (+) or right (−) in place."""
    if shift > 0:
        array <<= np.uint64(shift)
    elif shift < 0:
        array >>= np.uint64(-shift)
    return array


def _sorted_counts(keys: np.ndarray, bits: int, domain: np.ndarray) -> TaskValueCounts:
    if len(keys) == 0:
        empty = np.empty(0, dtype=np.int64)
        return TaskValueCounts(empty, empty, np.empty(0), 0, domain)
    keys.sort()  # in place: callers pass a fresh array
    changes = np.empty(len(keys), dtype=bool)
    changes[0] = True
    np.not_equal(keys[1:], keys[:-1], out=changes[1:])
    starts = np.flatnonzero(changes)
    counts = np.empty(len(starts), dtype=np.float64)
    counts[:-1] = np.diff(starts)
    counts[-1] = len(keys) - starts[-1]
    group_keys = keys[starts]
    tasks = group_keys >> np.uint64(bits)
    new_task = np.empty(len(tasks), dtype=np.int64)
    new_task[0] = 0
    np.not_equal(tasks[1:], tasks[:-1], out=new_task[1:], casting="unsafe")
    task = np.cumsum(new_task, out=new_task)
    value = (group_keys & np.uint64((1 << bits) - 1)).view(np.int64)
    return TaskValueCounts(task, value, counts, int(task[-1]) + 1, domain)


def pairs_within_groups(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of rows sharing a group value; `group` must be sorted."""
    n_rows = len(group)
    if n_rows == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, n_rows])
    row_start = np.repeat(starts, sizes)
    row_size = np.repeat(sizes, sizes)
    partners = row_size - (np.arange(n_rows) - row_start) - 1
    left = np.repeat(np.arange(n_rows), partners)
    right = left + 1 + (np.arange(len(left)) - np.repeat(np.cumsum(partners) - partners, partners))
    return left, right
