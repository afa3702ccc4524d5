"""Write a frame as an input file in any format the command line reads, chosen by extension."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from annotation_pipelines.tabular import format_of


def write_input(frame: pl.DataFrame, path: Path) -> Path:
    """`frame` written to `path` as CSV, TSV, Parquet or JSON Lines (by its extension)."""
    fmt = format_of(path)
    if fmt == "csv":
        frame.write_csv(path)
    elif fmt == "tsv":
        frame.write_csv(path, separator="\t")
    elif fmt == "parquet":
        frame.write_parquet(path)
    else:
        frame.write_ndjson(path)
    return path
