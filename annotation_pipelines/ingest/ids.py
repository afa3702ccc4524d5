"""How an id (judgment, task, project, annotator) or a categorical label given as a number is
spelled as text.

The lake keys judgments, tasks and gold labels by these strings and holds labels so, and
every reader of an export spells a number the way ingest stores it, the command line's readers
included: a number from JSON (a Python number) as Python's `repr` (`1.0` stays "1.0",
`1e-07`), a typed column (Parquet) as Polars casts it to text (`1.0`, `1e-7`, a Float32 `0.1`
as "0.1"). A whole-number float is not shortened to "1": that would rename every id and label
already staged from such a file, and a command's result would no longer join back to the
lake's rows. The one exception is a categorical label checked against a project's label set:
one equal as a number to a label of the set is stored as the set spells it
(`validation.label_set_spellings`), since it was quarantined before.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
from polars.datatypes import DataTypeClass


def number_text(value: int | float) -> str:
    """A number read from JSON, as ingest stores it in a text column."""
    return repr(value)


def spelled_as_text(dtype: pl.DataType | DataTypeClass) -> bool:
    """Whether ingest stores a typed column of `dtype` that holds an id or a categorical label
    as its cast to text: numbers and times. Text is kept as it is; a boolean label is spelled
    `true`/`false` by `values.normalize`; a boolean id, a list or a struct is refused."""
    return dtype.is_numeric() or dtype.is_temporal()


def typed_text(column: pl.Expr) -> pl.Expr:
    """A typed (Parquet) column as ingest stores it in a text column."""
    return column.cast(pl.String)


def not_an_id(value: Any) -> str | None:
    """Why `value`, as JSON or a typed cell gives it, names no judgment, task, project or
    annotator; None when it does (text, a finite number, or nothing: a missing id is the
    caller's to report). NaN and infinity are numbers to a parser but name nothing: spelled
    "nan", every NaN id would be one task or one annotator."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool):
        shown = "a boolean"
    elif isinstance(value, dict):
        shown = "an object"
    elif isinstance(value, list | tuple):
        shown = "a list"
    elif isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return None
    else:
        shown = f"{value!r:.80}"
    return f"expected a string or a number, got {shown}"


def non_finite_text(column: pl.Expr) -> pl.Expr:
    """`repr` of each NaN or infinite float of `column` ("nan", "inf", "-inf"), null for every
    other value: a typed column's values that `not_an_id` refuses, as it names them."""
    return pl.when(column.is_nan() | column.is_infinite()).then(
        column.cast(pl.String).str.to_lowercase()
    )
