"""Turn a judgments frame into integer codes and per-(task, value) counts.

Everything downstream (alpha, kappa, percent agreement, their bootstraps) works on the sparse
table of how many judgments each task received for each value — never on the dense
coders × units matrix, whose size is annotators × tasks whatever the data's sparsity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

LEVELS = ("nominal", "ordinal", "interval", "ratio")
REQUIRED_COLUMNS = ("task_id", "annotator_id", "label")

# Hash seeds for the two independent 64-bit hashes used to factorize identifiers quickly.
_SEED_PRIMARY = 0
_SEED_CHECK = 0x5EED


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
    k²/2⁶⁵), fall back to exact factorization of the values themselves.
    """
    primary = series.hash(seed=_SEED_PRIMARY).to_numpy()
    codes, uniques = pd.factorize(primary)
    codes = codes.astype(np.int64, copy=False)
    first = np.empty(len(uniques), dtype=np.int64)
    # Reversed scatter: the last write wins, so each code keeps its first occurrence.
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1, dtype=np.int64)
    check = series.hash(seed=_SEED_CHECK).to_numpy()
    if not np.array_equal(check[first[codes]], check):
        codes, uniques = pd.factorize(series.to_numpy())
        codes = codes.astype(np.int64, copy=False)
        first = np.empty(len(uniques), dtype=np.int64)
        first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1, dtype=np.int64)
    return codes, first


def numeric_labels(labels: pl.Series, level: str) -> pl.Series:
    """Labels as Float64; a clear error naming the first label that is not a number."""
    if labels.dtype.is_numeric():
        return labels.cast(pl.Float64)
    values = labels.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    bad = values.is_null() & labels.is_not_null()
    if bad.any():
        offending = labels.filter(bad)
        examples = ", ".join(repr(v) for v in offending.unique(maintain_order=True).head(3))
        raise ValueError(
            f"level {level!r} treats labels as numbers, but label {offending[0]!r} is not a "
            f"number ({int(bad.sum())} such judgment(s), e.g. {examples}); "
            f"use level='nominal' for categorical labels"
        )
    return values


@dataclass(frozen=True)
class TaskValueCounts:
    """How many judgments each task received for each value, sorted by task.

    `domain[value]` is the value itself: sorted numbers for ordinal/interval/ratio, labels in
    order of appearance for nominal.
    """

    task: np.ndarray  # int64, task code per row, non-decreasing
    value: np.ndarray  # int64, value code per row
    count: np.ndarray  # float64, number of judgments
    n_tasks: int
    domain: np.ndarray
    task_ids: pl.Series  # task_id of each task code

    @property
    def n_values(self) -> int:
        return len(self.domain)


def label_codes(labels: pl.Series, level: str) -> tuple[np.ndarray, np.ndarray]:
    """(code per judgment, domain); numeric levels sort the domain by value."""
    if level == "nominal":
        codes, first = factorize(labels)
        return codes, labels.gather(first).to_numpy()
    values = numeric_labels(labels, level).to_numpy()
    codes, uniques = pd.factorize(values)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank[codes], np.asarray(uniques, dtype=np.float64)[order]


def task_value_counts(judgments: pl.DataFrame, *, level: str = "nominal") -> TaskValueCounts:
    """Group judgments by (task, value); rows with a missing label are dropped (unit missing)."""
    check_columns(judgments, ("task_id", "label"))
    check_level(level)
    frame = judgments.select("task_id", "label")
    if frame.get_column("label").null_count():
        frame = frame.filter(pl.col("label").is_not_null())
    if frame.get_column("task_id").null_count():
        raise ValueError("judgments: task_id has missing values")
    task_codes, task_first = factorize(frame.get_column("task_id"))
    values, domain = label_codes(frame.get_column("label"), level)
    n_tasks, n_values = len(task_first), len(domain)
    task_ids = frame.get_column("task_id").gather(task_first)
    if n_tasks * n_values <= max(4 * len(values), 1 << 20):
        # Few values: a dense tasks × values count table is the fastest exact group-by.
        dense = np.bincount(task_codes * n_values + values, minlength=n_tasks * n_values)
        flat = np.flatnonzero(dense)
        return TaskValueCounts(
            task=flat // n_values,
            value=flat % n_values,
            count=dense[flat].astype(np.float64),
            n_tasks=n_tasks,
            domain=domain,
            task_ids=task_ids,
        )
    keys, unique_keys = pd.factorize(task_codes * n_values + values)
    counts = np.bincount(keys, minlength=len(unique_keys)).astype(np.float64)
    unique_keys = np.asarray(unique_keys, dtype=np.int64)
    order = np.argsort(unique_keys, kind="stable")
    unique_keys = unique_keys[order]
    return TaskValueCounts(
        task=unique_keys // n_values,
        value=unique_keys % n_values,
        count=counts[order],
        n_tasks=n_tasks,
        domain=domain,
        task_ids=task_ids,
    )


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
