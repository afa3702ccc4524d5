"""Metadata helpers shared by the asset layers: markdown tables and inline images."""

import base64

import polars as pl
from dagster import MetadataValue


def markdown_table(frame: pl.DataFrame, *, rows: int = 20) -> MetadataValue:
    """A frame as a markdown table for the UI (the first `rows` rows)."""
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_rows=rows,
        tbl_cols=20,
        fmt_str_lengths=120,
        tbl_width_chars=60_000,
        float_precision=4,
    ):
        return MetadataValue.md(str(frame.head(rows)))


def png_markdown(png: bytes, *, alt: str) -> MetadataValue:
    """An inline PNG the Dagster UI renders in the metadata panel."""
    encoded = base64.b64encode(png).decode("ascii")
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")
