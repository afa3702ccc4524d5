"""Deterministic train / validation / test splits that never move a task.

A task's split is a function of its id alone: the first 60 bits of MD5(salt + task_id) as a
number in [0, 1), compared against the cumulative ratios. Because nothing else enters, a task
keeps its split when the dataset grows, when its label is re-aggregated, and across library
versions (MD5 is fixed, unlike Polars' or DuckDB's internal hashes). Copies of one item (the
same payload under several task ids) take the split of their smallest task id, so the item
never moves when another copy becomes the one kept. Stratification by label
holds in expectation: every label's tasks meet the same thresholds independently, so each
split's label mix matches the whole within sampling error (tested), without the reshuffling an
exact per-label allocation would force when new tasks arrive.
"""

from __future__ import annotations

import duckdb
import polars as pl

DEFAULT_RATIOS: dict[str, float] = {"train": 0.8, "validation": 0.1, "test": 0.1}


def split_fraction(task_ids: pl.Series, *, salt: str = "") -> pl.Series:
    """A stable uniform number in [0, 1) per task id."""
    frame = pl.DataFrame({"task_id": task_ids.cast(pl.String)}).with_columns(salt=pl.lit(salt))
    # 15 hex digits = 60 bits, ample resolution for any dataset size. The salt travels as a
    # column (DuckDB 2 relations take no bound parameters), so no value is spliced into SQL.
    connection = duckdb.connect()
    connection.register("frame", frame)
    result = connection.sql(
        "select (('0x' || substr(md5(salt || task_id), 1, 15))::ubigint)::double "
        "/ 1152921504606846976.0 as fraction from frame"
    ).pl()
    connection.close()
    return result["fraction"]


def assign_split(
    frame: pl.DataFrame,
    *,
    ratios: dict[str, float] | None = None,
    salt: str = "",
    column: str = "split",
    by: str = "task_id",
) -> pl.DataFrame:
    """Add a `split` column to a frame, by the ratios (in their given order), from the id in
    column `by` (`task_id` unless a group of tasks must share one split)."""
    ratios = dict(DEFAULT_RATIOS if ratios is None else ratios)
    if not ratios or any(value < 0 for value in ratios.values()):
        raise ValueError("split ratios must be non-negative and not empty")
    total = sum(ratios.values())
    if total <= 0:
        raise ValueError("split ratios must not all be zero")
    fraction = split_fraction(frame[by], salt=salt)
    names = list(ratios)
    expression = pl.lit(names[-1])
    upper = 1.0
    # Build the when-chain from the last split backwards so the first split owns [0, r0).
    for name in reversed(names[:-1]):
        upper -= ratios[names[names.index(name) + 1]] / total
        expression = pl.when(pl.col("_fraction") < upper).then(pl.lit(name)).otherwise(expression)
    return (
        frame.with_columns(_fraction=fraction)
        .with_columns(expression.alias(column))
        .drop("_fraction")
    )
