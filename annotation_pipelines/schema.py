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
    "n_consensus_compared": pl.UInt32(),
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


# One sentence per canonical column, shown in the Dagster catalog's Columns panel. A name means
# one concept in every table it appears in; columns an asset adds of its own are shown
# without a description.
COLUMN_DOCS: dict[str, str] = {
    "kind": "The annotation kind (categorical, multilabel, numeric, ranking, pairwise, spans, "
    "boxes, text).",
    "labels": "Multilabel answer: the labels chosen.",
    "value": "Numeric answer (a rating or score).",
    "ranking": "Ranking answer: item ids, best first.",
    "left": "Pairwise: the left item's id.",
    "right": "Pairwise: the right item's id.",
    "winner": "Pairwise answer: left, right or tie.",
    "spans": "Spans answer: labelled character ranges of the task's text.",
    "boxes": "Boxes answer: labelled rectangles in the image (see coordinates).",
    "text": "Free-text answer (a transcription or short answer).",
    "polygons": "The polygon outlines behind polygon boxes.",
    "coordinates": "How the boxes are measured: pixel, or percent of the image (Label Studio).",
    "image_width": "Width of the annotated image in pixels.",
    "image_height": "Height of the annotated image in pixels.",
    "control": "The annotation tool's control (tag) that produced the answer.",
    "source": "Where the row came from (annotation DB, export format).",
    "source_file": "The export file the row was read from.",
    "source_line": "The line of that file the row was read from.",
    "task_id": "The item being annotated.",
    "project": "The annotation project.",
    "payload": "What was annotated (text, or a JSON reference to the item), personal data "
    "masked in curated datasets.",
    "payload_hash": "SHA-256 of the payload: equal payloads are copies of one item.",
    "created_at": "When the task was created (UTC).",
    "is_gold": "True for a task with a known answer, used to score annotators.",
    "judgment_id": "One annotator's answer to one task.",
    "annotator_id": "The annotator (a keyed pseudonym wherever the data leaves the lake).",
    "label": "The categorical label: an annotator's answer, a gold answer, or the aggregate.",
    "submitted_at": "When the judgment was submitted (UTC); its day is the partition.",
    "duration_s": "Seconds the annotator spent on the judgment.",
    "updated_at": "When the row last changed in the annotation DB (UTC).",
    "table": "The table the quarantined row was meant for.",
    "field": "The field that failed validation.",
    "reason": "Why: the validation error, or the policy's reason for a request.",
    "raw": "The quarantined row as it was read.",
    "confidence": "Calibrated probability that the label is right.",
    "n_votes": "Judgments aggregated for the task.",
    "is_tie": "True when the method's posterior tied between labels (the tie rule decided).",
    "method": "The aggregation method that produced the label.",
    "skill": "The method's one-number annotator quality (higher is better).",
    "n_judgments": "Judgments counted.",
    "day": "The UTC day (the partition).",
    "n_tasks": "Tasks judged that day.",
    "n_annotators": "Annotators active that day.",
    "percent_agreement": "Share of pairs of judgments on a task that agree.",
    "krippendorff_alpha": "Krippendorff's alpha (nominal): agreement beyond chance, 1 = perfect.",
    "fleiss_kappa": "Fleiss' kappa: agreement beyond chance for a fixed number of raters.",
    "gold_accuracy": "Share of judgments on gold tasks that match the gold answer.",
    "n_gold_judgments": "Judgments on gold tasks.",
    "consensus_accuracy_on_gold": "Accuracy of the aggregated labels on gold, scored held out.",
    "share_flagged_annotators": "Share of the day's annotators flagged.",
    "n_gold": "Gold tasks the annotator answered.",
    "gold_accuracy_low": "Lower end of the Wilson 95 % interval of the gold accuracy.",
    "gold_accuracy_high": "Upper end of the Wilson 95 % interval of the gold accuracy.",
    "consensus_agreement": "Agreement of the annotator's judgments with the consensus "
    "(categorical: the share that match; other kinds: 1 - the kind's mean distance). Only tasks "
    "someone else judged too, or with gold, count; null without any (a lone answer's consensus "
    "is itself).",
    "n_consensus_compared": "The annotator's judgments compared with the consensus: on tasks "
    "someone else judged too, or on gold tasks.",
    "median_duration_s": "Median seconds per judgment.",
    "spammer_score": "Raykar-Yu spammer score: 0 answers by the item, 1 answers at random; "
    "over the same tasks as consensus_agreement, null with fewer than two consensus classes.",
    "flagged": "True when the annotator is flagged (see flag_reason).",
    "flag_reason": "Why the annotator was flagged.",
    "priority": "Re-annotation priority (higher first).",
    "entropy": "Entropy of the task's posterior over labels.",
    "margin": "Posterior gap between the best and second-best label.",
    "split": "Dataset split: train, validation or test (stable per task across versions).",
    "time": "Start of the period (UTC).",
    "cluster": "The compute cluster.",
    "series_id": "One workload series within a cluster.",
    "running": "Accelerators allocated to running jobs.",
    "pending": "Accelerators requested by queued jobs.",
    "total": "Accelerators in the series' quota.",
    "workload_class": "Training, inference or other.",
    "accelerator_type": "The accelerator model (e.g. H100).",
    "sm_busy": "Share of the allocated accelerators' streaming multiprocessors busy.",
    "memory_used": "Share of the allocated accelerators' memory in use.",
    "tasks_created": "Tasks created that day.",
    "judgments": "Judgments submitted that day.",
    "tasks_completed": "Tasks that reached their votes that day.",
    "annotators": "Annotators: how many (throughput), or their pseudonyms (curated rows).",
    "annotator_hours": "Hours annotators spent, from judgment durations.",
    "judgments_per_annotator_hour": "Judgments per annotator-hour.",
    "id": "The forecast series (a series, an accelerator type, a cluster, or total).",
    "forecast": "Point forecast.",
    "lo_80": "Lower end of the 80 % interval.",
    "hi_80": "Upper end of the 80 % interval.",
    "lo_95": "Lower end of the 95 % interval.",
    "hi_95": "Upper end of the 95 % interval.",
    "model": "The model or combination that produced the forecast.",
}
