"""Frames as markdown tables, for Dagster metadata and dataset cards."""

from __future__ import annotations

import polars as pl


def frame_to_markdown(frame: pl.DataFrame, *, rows: int = 20, text_width: int = 120) -> str:
    """The first `rows` rows of `frame` as a GitHub-flavoured markdown table."""
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_rows=rows,
        tbl_cols=24,
        fmt_str_lengths=text_width,
        # Polars wraps wide tables at the terminal width by default; markdown must not wrap.
        tbl_width_chars=60_000,
        float_precision=4,
    ):
        return str(frame.head(rows))
