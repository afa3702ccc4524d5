"""Frames as markdown tables, for Dagster metadata and dataset cards."""

from __future__ import annotations

import re

import polars as pl

# Polars prints a missing value as "null"; a reader of a report expects a dash.
_NULL_CELL = re.compile(r"(?<=\| )null(?= *\|)")


def frame_to_markdown(frame: pl.DataFrame, *, rows: int = 20, text_width: int = 400) -> str:
    """The first `rows` rows of `frame` as a GitHub-flavoured markdown table, every column,
    thousands grouped, missing values as "—", and a note counting the rows left out."""
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_rows=rows,
        tbl_cols=-1,
        fmt_str_lengths=text_width,
        # Polars wraps wide tables at the terminal width by default; markdown must not wrap.
        tbl_width_chars=60_000,
        float_precision=4,
        thousands_separator=",",
    ):
        table = _NULL_CELL.sub("—", str(frame.head(rows)))
    hidden = frame.height - rows
    return table + (f"\n\n_{hidden:,} more rows_" if hidden > 0 else "")
