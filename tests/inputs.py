"""Write a frame as an input file in any format the command line reads, chosen by extension."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl

from annotation_pipelines.tabular import format_of


def write_input(frame: pl.DataFrame, path: Path) -> Path:
    """`frame` written to `path` as CSV, TSV, Parquet or JSON Lines (by its extension), gzipped
    when the name ends in `.gz` (`judgments.csv.gz`)."""
    if path.suffix.lower() == ".gz":
        inner = write_input(frame, path.with_suffix(""))
        path.write_bytes(gzip.compress(inner.read_bytes()))
        inner.unlink()
        return path
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
