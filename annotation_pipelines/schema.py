"""The canonical tables: one name and one type per concept, shared by engine, assets and CLI.

Every timestamp is UTC with microsecond precision. Every row that came from outside carries
provenance (`source`, `source_file`, `source_line`) so an error or a quarantined row can be
traced back to the exact line of the export it came from.
"""

from __future__ import annotations

import polars as pl

from annotation_pipelines.kinds import DEFAULT_KIND, KIND_COLUMNS

UTC_TIMESTAMP = pl.Datetime("us", "UTC")

PROVENANCE: dict[str, pl.DataType] = {
    "source": pl.String(),
    "source_file": pl.String(),
    "source_line": pl.Int64(),
}

RAW_TASKS: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "payload": pl.String(),
    "payload_hash": pl.String(),
    "created_at": UTC_TIMESTAMP,
    "is_gold": pl.Boolean(),
    **PROVENANCE,
}

JUDGMENTS: dict[str, pl.DataType] = {
    "judgment_id": pl.String(),
    "task_id": pl.String(),
    "project": pl.String(),
    "annotator_id": pl.String(),
    "label": pl.String(),
    "submitted_at": UTC_TIMESTAMP,
    "duration_s": pl.Float64(),
    **PROVENANCE,
    # The kind of the judgment and its typed value (see `annotation_pipelines.kinds`); a
    # categorical judgment keeps its value in `label` and leaves these null.
    **KIND_COLUMNS,
}

GOLD_LABELS: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "label": pl.String(),
    "updated_at": UTC_TIMESTAMP,
    **PROVENANCE,
    **KIND_COLUMNS,
}

QUARANTINE: dict[str, pl.DataType] = {
    "table": pl.String(),
    "source": pl.String(),
    "source_file": pl.String(),
    "source_line": pl.Int64(),
    "field": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
}

AGGREGATED_LABELS: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "label": pl.String(),
    "confidence": pl.Float64(),
    "n_votes": pl.UInt32(),
    "is_tie": pl.Boolean(),
    "method": pl.String(),
}

ANNOTATOR_PARAMETERS: dict[str, pl.DataType] = {
    "annotator_id": pl.String(),
    "project": pl.String(),
    "method": pl.String(),
    "skill": pl.Float64(),
    "n_judgments": pl.UInt32(),
}

QUALITY_REPORT: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "n_tasks": pl.UInt32(),
    "n_judgments": pl.UInt32(),
    "n_annotators": pl.UInt32(),
    "percent_agreement": pl.Float64(),
    "krippendorff_alpha": pl.Float64(),
    "fleiss_kappa": pl.Float64(),
    "gold_accuracy": pl.Float64(),
    "n_gold_judgments": pl.UInt32(),
    "consensus_accuracy_on_gold": pl.Float64(),
    "share_flagged_annotators": pl.Float64(),
}

ANNOTATOR_SCORECARDS: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "annotator_id": pl.String(),
    "n_judgments": pl.UInt32(),
    "n_gold": pl.UInt32(),
    "gold_accuracy": pl.Float64(),
    "gold_accuracy_low": pl.Float64(),
    "gold_accuracy_high": pl.Float64(),
    "consensus_agreement": pl.Float64(),
    "skill": pl.Float64(),
    "median_duration_s": pl.Float64(),
    "spammer_score": pl.Float64(),
    "flagged": pl.Boolean(),
    "flag_reason": pl.String(),
}

REANNOTATION_QUEUE: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "task_id": pl.String(),
    "reason": pl.String(),
    "priority": pl.Float64(),
    "entropy": pl.Float64(),
    "margin": pl.Float64(),
}

CURATED_DATASET: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "payload": pl.String(),
    "payload_hash": pl.String(),
    "label": pl.String(),
    "confidence": pl.Float64(),
    "n_votes": pl.UInt32(),
    "split": pl.String(),
    "day": pl.Date(),
}

COMPUTE_USAGE: dict[str, pl.DataType] = {
    "time": UTC_TIMESTAMP,
    "cluster": pl.String(),
    "series_id": pl.String(),
    "running": pl.Float64(),
    "pending": pl.Float64(),
    "total": pl.Float64(),
    # training / inference / other; null when the telemetry does not say.
    "workload_class": pl.String(),
    "accelerator_type": pl.String(),
    # Share of the allocated accelerators' SM time busy, and of their memory in use (0-1);
    # null when only allocation is reported (Helios).
    "sm_busy": pl.Float64(),
    "memory_used": pl.Float64(),
}

WORKFORCE_THROUGHPUT: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "tasks_created": pl.UInt32(),
    "judgments": pl.UInt32(),
    "tasks_completed": pl.UInt32(),
    "annotators": pl.UInt32(),
    "annotator_hours": pl.Float64(),
    "judgments_per_annotator_hour": pl.Float64(),
}

CAPACITY_FORECAST: dict[str, pl.DataType] = {
    "id": pl.String(),
    "time": UTC_TIMESTAMP,
    "forecast": pl.Float64(),
    "lo_80": pl.Float64(),
    "hi_80": pl.Float64(),
    "lo_95": pl.Float64(),
    "hi_95": pl.Float64(),
    "model": pl.String(),
}


def to_utc(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """`column` (of `dtype`) as UTC_TIMESTAMP: naive datetimes and dates are taken as UTC,
    zoned ones converted, text parsed."""
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return column.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        return column.dt.convert_time_zone("UTC").cast(UTC_TIMESTAMP)
    if isinstance(dtype, pl.Date):
        return column.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return column.cast(pl.String).str.to_datetime(time_unit="us", time_zone="UTC")


def empty(table: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with exactly the table's columns and types."""
    return pl.DataFrame(schema=table)


def conform(frame: pl.DataFrame, table: dict[str, pl.DataType], *, name: str) -> pl.DataFrame:
    """Select the table's columns in order, cast to their types; raise naming missing columns.

    The kind columns are optional: a frame without them (every categorical source, every
    table written before kinds existed) gets nulls, and a missing or null `kind` is
    "categorical". Extra columns are kept after the canonical ones: engines may add
    method-specific columns (per-class posteriors, for example) without a schema change.
    """
    fill = {
        column: pl.lit(None, dtype)
        for column, dtype in table.items()
        if column in KIND_COLUMNS and column not in frame.columns
    }
    if fill:
        frame = frame.with_columns(**fill)
    if "kind" in table:
        frame = frame.with_columns(pl.col("kind").cast(pl.String).fill_null(DEFAULT_KIND))
    missing = [column for column in table if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {', '.join(missing)}; have {', '.join(frame.columns)}"
        )
    extra = [column for column in frame.columns if column not in table]
    return frame.select(
        *(pl.col(column).cast(dtype, strict=True) for column, dtype in table.items()), *extra
    )
