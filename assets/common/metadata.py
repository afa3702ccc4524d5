"""Metadata helpers shared by the asset layers: markdown tables, inline images, figures."""

import base64

import polars as pl
from dagster import MetadataValue

from annotation_pipelines.markdown import frame_to_markdown, markdown_text


def markdown_table(frame: pl.DataFrame, *, rows: int = 20) -> MetadataValue:
    """A frame as a markdown table for the UI (the first `rows` rows)."""
    return MetadataValue.md(frame_to_markdown(frame, rows=rows))


def png_markdown(png: bytes, *, alt: str) -> MetadataValue:
    """An inline PNG the Dagster UI renders in the metadata panel; `alt` (a cluster's name,
    from telemetry) is its text only."""
    encoded = base64.b64encode(png).decode("ascii")
    return MetadataValue.md(f"![{markdown_text(alt)}](data:image/png;base64,{encoded})")


def figure(value: float, *, digits: int = 4) -> MetadataValue:
    """A headline figure rounded for reading (the UI prints every digit of a float)."""
    return MetadataValue.float(round(value, digits))


def per_subject_figures(
    figures: dict[str, float | None], thresholds: dict[str, float]
) -> dict[str, MetadataValue]:
    """`<subject>/value` and `<subject>/floor` as numbers (a check's Plots panel draws numeric
    entries over its partitions); an undefined figure is left out."""
    entries = {
        f"{subject}/value": figure(value) for subject, value in figures.items() if value is not None
    }
    entries.update({f"{subject}/floor": figure(value) for subject, value in thresholds.items()})
    return entries


def mean_or(series: pl.Series, default: float) -> float:
    """A numeric column's mean, or `default` when it has none (no rows, or only nulls)."""
    # Polars types `Series.mean` as any Python literal; a numeric column's mean is a number.
    value = series.mean()
    return float(value) if isinstance(value, int | float) else default
