"""Content-derived dataset version ids: the same rows give the same id, on any machine."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

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


def rows_fingerprint(
    frame: pl.DataFrame, *, columns: Sequence[str], sort_by: str | Sequence[str]
) -> str:
    """A short digest of `columns` of `frame`'s rows, in `sort_by` order: what a verdict was
    made from, so a reader can tell whether the rows it holds are still those.

    Values only, not types (a day read back with a relaxed type is the same rows). Flat
    columns are hashed as text joined per column, about 0.4 s per million judgments, five
    times faster than `content_version`'s JSON Lines; nested ones (spans, boxes) as JSON."""
    canonical = frame.select(columns).sort(sort_by, maintain_order=True)
    digest = hashlib.sha256()
    for chunk in canonical.iter_slices(n_rows=1_000_000):
        for name in columns:
            column = chunk.get_column(name)
            if column.dtype.is_nested():
                text = column.to_frame().write_ndjson()
            else:
                if column.dtype.is_temporal():
                    column = column.dt.epoch("us") if column.dtype != pl.Date else column
                joined = column.cast(pl.String).fill_null("\x00").str.join("\x1f")
                text = str(joined.item() or "")
            digest.update(name.encode())
            digest.update(text.encode())
    return digest.hexdigest()[:16]


# What a categorical day's verdict is made from, per judgment.
JUDGED_COLUMNS = ("judgment_id", "task_id", "annotator_id", "label", "submitted_at")


def judged_fingerprints(judgments: pl.DataFrame) -> dict[str, str]:
    """Project → `rows_fingerprint` of its categorical judgments in `judgments` (one day's)."""
    columns = [name for name in JUDGED_COLUMNS if name in judgments.columns]
    # Judgment ids are unique; rows without them are ordered by everything they have.
    order = "judgment_id" if "judgment_id" in columns else columns
    return {
        str(project): rows_fingerprint(rows, columns=columns, sort_by=order)
        for (project,), rows in judgments.group_by("project")
    }


def aggregate_fingerprints(labels: pl.DataFrame) -> dict[tuple[str, str], str]:
    """(project, day) → `rows_fingerprint` of its kind aggregates (`kind_aggregated_labels`
    rows, with `day` when several days are given): what a kind day's verdict is made from."""
    from annotation_pipelines.kinds import VALUE_COLUMNS

    result = {}
    keyed = labels.with_columns(pl.col("day").cast(pl.String))
    for (project, kind, day), rows in keyed.group_by("project", "kind", "day"):
        columns = ["task_id", *VALUE_COLUMNS[str(kind)], "confidence"]
        result[(str(project), str(day))] = rows_fingerprint(
            rows, columns=columns, sort_by="task_id"
        )
    return result
