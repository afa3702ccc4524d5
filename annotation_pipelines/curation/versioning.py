"""Content-derived dataset version ids: the same rows give the same id, on any machine."""

from __future__ import annotations

import hashlib

import polars as pl


def content_version(frame: pl.DataFrame, *, sort_by: str = "task_id", length: int = 16) -> str:
    """SHA-256 over a canonical text form of the rows (columns sorted by name, rows by key).

    The text form is JSON Lines (it carries nested list columns, which CSV cannot). Parquet
    bytes are not used: they change with writer version and compression settings although the
    data does not.
    """
    columns = sorted(frame.columns)
    canonical = frame.select(columns).sort(sort_by) if sort_by in columns else frame.select(columns)
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{canonical.schema[c]}" for c in columns).encode())
    for chunk in canonical.iter_slices(n_rows=100_000):
        digest.update(chunk.write_ndjson().encode())
    return digest.hexdigest()[:length]
