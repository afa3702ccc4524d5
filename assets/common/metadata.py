"""Metadata helpers shared by the asset layers: markdown tables and inline images."""

import base64

import polars as pl
from dagster import MetadataValue

from annotation_pipelines.markdown import frame_to_markdown


def markdown_table(frame: pl.DataFrame, *, rows: int = 20) -> MetadataValue:
    """A frame as a markdown table for the UI (the first `rows` rows)."""
    return MetadataValue.md(frame_to_markdown(frame, rows=rows))


def png_markdown(png: bytes, *, alt: str) -> MetadataValue:
    """An inline PNG the Dagster UI renders in the metadata panel."""
    encoded = base64.b64encode(png).decode("ascii")
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")
