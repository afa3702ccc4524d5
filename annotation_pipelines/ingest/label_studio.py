"""Label Studio JSON exports: a JSON array of tasks, each with several annotations.

Model: each task carries `data` (the payload) and `annotations`; an annotation is one
annotator's submission with `completed_by` (user id, or `{id, email}` in older exports),
`lead_time` (seconds), `was_cancelled`, `ground_truth`, `created_at` and a `result` list whose
`choices` entry holds the label. One annotation is one row: a ground-truth annotation becomes
the task's gold label, a cancelled one is quarantined with reason ``cancelled``, the others
are judgments with `submitted_at` = the annotation's `created_at`.

Speed: the export is parsed by Polars' native JSON reader in one call; a structural scan in
NumPy (`json_scan`) finds where each task starts (its line number for provenance). Only when
that fails (malformed or truncated JSON, non-UTF-8 bytes, inconsistent types) is the file
re-read task by task with the standard library, so the bad tasks are quarantined and the good
ones still load.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from annotation_pipelines.ingest.json_scan import ArrayScan, scan_json_array
from annotation_pipelines.ingest.result import IngestResult, UnreadableFileError, assemble
from annotation_pipelines.ingest.validation import (
    CANCELLED,
    MALFORMED_JSON,
    MAX_RECORD_BYTES,
    NESTING_TOO_DEEP,
    NON_UTF8,
    OVERSIZED_RECORD,
    TRUNCATED_FILE,
    cap_raw_bytes,
    quarantine_rows,
)

SOURCE = "label-studio"

__all__ = ["ArrayScan", "parse_label_studio", "scan_json_array"]


def parse_label_studio(
    data: bytes,
    *,
    source_file: str,
    project: str | None = None,
    label_set: list[str] | None = None,
    now: datetime | None = None,
    max_field_bytes: int = 4096,
) -> IngestResult:
    """Parse one Label Studio JSON export into canonical tables (see the module docstring)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    head = data.lstrip()[:1]
    if head != b"[":
        what = "empty file" if not head else f"expected a JSON array of tasks, found {head!r}"
        raise UnreadableFileError(f"{source_file}: not a Label Studio export: {what}")
    default_project = project
    annotations, staged_tasks, failures = _stage_chunks(data, source_file)
    if annotations.height == 0 and failures.height and staged_tasks.height == 0:
        reasons = ", ".join(sorted(set(failures.get_column("reason").to_list())))
        raise UnreadableFileError(f"{source_file}: no task could be read ({reasons})")
    if (
        annotations.height == 0
        and failures.height == 0
        and staged_tasks.filter(pl.col("task_id").is_not_null()).height == 0
        and data.strip() != b"[]"
        and data.strip()[1:-1].strip()
    ):
        # An array of arrays or scalars is not an export with no tasks: it is not an export.
        raise UnreadableFileError(
            f"{source_file}: not a Label Studio export: the array holds no task objects "
            '(expected [{"id": ..., "annotations": [...]}, ...])'
        )
    project_expr = (
        pl.lit(default_project, pl.String)
        if default_project
        else pl.coalesce(pl.col("project").cast(pl.String), pl.lit(_stem(source_file)))
    )
    staged_tasks = staged_tasks.with_columns(project=project_expr)
    annotations = annotations.with_columns(project=project_expr)
    choices = pl.col("choices")
    annotations = annotations.with_columns(
        label=pl.when(choices.list.len() == 1).then(choices.list.first()),
        label_error=pl.when(choices.list.len() > 1).then(pl.lit("several choices")),
        judgment_id=pl.lit("label-studio:")
        + pl.coalesce(
            pl.col("annotation_id"),
            pl.col("task_id") + pl.lit("/") + pl.col("position").cast(pl.String),
        ),
        reason=pl.when(pl.col("was_cancelled").fill_null(False)).then(pl.lit(CANCELLED)),
        field=pl.when(pl.col("was_cancelled").fill_null(False)).then(pl.lit("was_cancelled")),
    )
    gold_mask = pl.col("ground_truth").fill_null(False) & pl.col("reason").is_null()
    columns = [
        "judgment_id",
        "task_id",
        "project",
        "annotator_id",
        "label",
        "label_error",
        "submitted_at",
        "duration_s",
        "source_line",
        "reason",
        "field",
        "record",
    ]
    staged_gold = annotations.filter(gold_mask).select(columns)
    staged_judgments = annotations.filter(~gold_mask).select(columns)
    preset = quarantine_rows(failures, table="judgments", source=SOURCE, source_file=source_file)
    return assemble(
        staged_judgments=staged_judgments,
        staged_gold=staged_gold,
        staged_tasks=staged_tasks,
        preset_quarantine=preset,
        label_set=label_set,
        now=now,
        max_field_bytes=max_field_bytes,
        source=SOURCE,
        source_file=source_file,
    )


# Tasks are parsed in chunks of about this many bytes: Polars builds a document tape for what it
# parses, so one call on a 1 GB export would hold several GB at once; a bad task also only
# sends its own chunk down the tolerant path.
CHUNK_BYTES = 64 * 1024 * 1024


def _stage_chunks(data: bytes, source_file: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Stage every task: native per chunk, tolerant for a chunk the native reader refuses."""
    one_line = data.count(b"\n", 0, max(len(data) - 1, 0)) == 0
    if one_line and len(data) <= CHUNK_BYTES:
        # A small minified export: every task is on line 1, no structural scan needed.
        try:
            tasks = pl.read_json(io.BytesIO(data), infer_schema_length=None)
            annotations, staged_tasks = _stage_native(tasks, np.ones(tasks.height, np.int64))
            return annotations, staged_tasks, _empty_failures()
        except Exception:
            pass
    scan = scan_json_array(data)
    chunks: list[ArrayScan] = []
    count = scan.starts.size
    first = 0
    while True:
        last = first
        budget = int(scan.starts[first]) + CHUNK_BYTES if first < count else 0
        while last < count and (last == first or int(scan.starts[last]) < budget):
            last += 1
        chunks.append(
            ArrayScan(
                starts=scan.starts[first:last],
                ends=scan.ends[first:last],
                lines=scan.lines[first:last],
                closed=scan.closed or last < count,
            )
        )
        first = last
        if first >= count:
            break
    # Polars parses with the GIL released: chunks on separate threads use every core.
    workers = max(1, min(len(chunks), os.cpu_count() or 1, 4))
    if workers == 1:
        parts = [_stage_chunk(data, chunk, source_file) for chunk in chunks]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(lambda chunk: _stage_chunk(data, chunk, source_file), chunks))
    return (
        pl.concat([p[0] for p in parts]),
        pl.concat([p[1] for p in parts]),
        pl.concat([p[2] for p in parts]),
    )


def _stage_chunk(
    data: bytes, chunk: ArrayScan, source_file: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    try:
        if not chunk.closed or (chunk.ends < 0).any():
            raise ValueError("truncated")
        body = (
            b"["
            + b",".join(
                data[start:end]
                for start, end in zip(chunk.starts.tolist(), chunk.ends.tolist(), strict=True)
            )
            + b"]"
        )
        tasks = pl.read_json(io.BytesIO(body), infer_schema_length=None)
        del body
        if tasks.height != chunk.starts.size:
            raise ValueError("task count differs from the structural scan")
        annotations, staged_tasks = _stage_native(tasks, chunk.lines)
        return annotations, staged_tasks, _empty_failures()
    except Exception:
        return _stage_tolerant(data, chunk, source_file)


def _stem(source_file: str) -> str:
    name = source_file.replace("\\", "/").rsplit("/", 1)[-1]
    return name.split(".", 1)[0] or "default"


def _empty_failures() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "source_line": pl.Int64,
            "field": pl.String,
            "reason": pl.String,
            "record": pl.String,
        }
    )


def _field(frame_schema: pl.Schema, column: str, name: str, dtype: pl.DataType) -> pl.Expr:
    struct = frame_schema[column]
    if isinstance(struct, pl.Struct) and name in {f.name for f in struct.fields}:
        return pl.col(column).struct.field(name)
    return pl.lit(None, dtype)


def _stage_native(tasks: pl.DataFrame, lines: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stage tasks and annotations from the frame Polars' JSON reader produced."""
    schema = tasks.schema
    tasks = tasks.with_columns(
        _line=pl.Series(lines, dtype=pl.Int64),
        task_id=pl.col("id").cast(pl.String) if "id" in schema else pl.lit(None, pl.String),
        project=pl.col("project").cast(pl.String)
        if "project" in schema
        else pl.lit(None, pl.String),
    )
    data = schema.get("data")
    payload = (
        pl.col("data").struct.json_encode()
        if isinstance(data, pl.Struct)
        else (pl.col("data").cast(pl.String) if data is not None else pl.lit(None, pl.String))
    )
    staged_tasks = tasks.select(
        "task_id",
        "project",
        payload=payload,
        created_at=pl.col("created_at").cast(pl.String)
        if "created_at" in schema
        else pl.lit(None, pl.String),
        source_line=pl.col("_line"),
    )
    if "annotations" not in schema or not isinstance(schema["annotations"], pl.List):
        return _empty_annotations(), staged_tasks.cast(_TASK_SCHEMA)  # type: ignore[arg-type]
    flat = (
        tasks.select("task_id", "project", "_line", "annotations")
        .with_columns(position=pl.int_ranges(pl.col("annotations").list.len()))
        .explode("annotations", "position")
        .filter(pl.col("annotations").is_not_null())
        .rename({"annotations": "a"})
    )
    fs = flat.schema
    completed_by_type = fs["a"].fields  # type: ignore[union-attr]
    completed = next((f.dtype for f in completed_by_type if f.name == "completed_by"), None)
    if isinstance(completed, pl.Struct):
        annotator = pl.col("a").struct.field("completed_by").struct.field("id").cast(pl.String)
    elif completed is None:
        annotator = pl.lit(None, pl.String)
    else:
        annotator = pl.col("a").struct.field("completed_by").cast(pl.String)
    result_type = next((f.dtype for f in completed_by_type if f.name == "result"), None)
    choices = pl.lit(None, pl.List(pl.String))
    if _has_choices(result_type):
        choices = (
            pl.col("a")
            .struct.field("result")
            .list.eval(
                pl.element()
                .filter(pl.element().struct.field("type") == "choices")
                .struct.field("value")
                .struct.field("choices")
            )
            .list.first()
            .cast(pl.List(pl.String))
        )
    lead_time = _field(fs, "a", "lead_time", pl.Float64)
    return (
        flat.select(
            "task_id",
            "project",
            "position",
            annotation_id=_field(fs, "a", "id", pl.String).cast(pl.String),
            annotator_id=annotator,
            choices=choices,
            submitted_at=_field(fs, "a", "created_at", pl.String).cast(pl.String),
            duration_s=lead_time.cast(pl.String),
            was_cancelled=_field(fs, "a", "was_cancelled", pl.Boolean).cast(
                pl.Boolean, strict=False
            ),
            ground_truth=_field(fs, "a", "ground_truth", pl.Boolean).cast(pl.Boolean, strict=False),
            source_line=pl.col("_line"),
            # Encoded now, per chunk, so chunks with different inferred shapes stack.
            record=pl.col("a").struct.json_encode(),
        ).cast(_ANNOTATION_SCHEMA),  # type: ignore[arg-type]
        staged_tasks.cast(_TASK_SCHEMA),  # type: ignore[arg-type]
    )


def _has_choices(result_type: pl.DataType | None) -> bool:
    if not isinstance(result_type, pl.List) or not isinstance(result_type.inner, pl.Struct):
        return False
    fields = {f.name: f.dtype for f in result_type.inner.fields}
    value = fields.get("value")
    if "type" not in fields or not isinstance(value, pl.Struct):
        return False
    return any(f.name == "choices" and isinstance(f.dtype, pl.List) for f in value.fields)


_ANNOTATION_SCHEMA: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "position": pl.Int64(),
    "annotation_id": pl.String(),
    "annotator_id": pl.String(),
    "choices": pl.List(pl.String()),
    "submitted_at": pl.String(),
    "duration_s": pl.String(),
    "was_cancelled": pl.Boolean(),
    "ground_truth": pl.Boolean(),
    "source_line": pl.Int64(),
    "record": pl.String(),
}
_TASK_SCHEMA: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "payload": pl.String(),
    "created_at": pl.String(),
    "source_line": pl.Int64(),
}


def _empty_annotations() -> pl.DataFrame:
    return pl.DataFrame(schema=_ANNOTATION_SCHEMA)


def _text(value: Any) -> str | None:
    """Scalars as text; containers as JSON so a wrong type is visible, not silently coerced."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _stage_tolerant(
    data: bytes, scan: ArrayScan, source_file: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Task-by-task parse that quarantines each unreadable task and keeps the rest."""
    annotation_rows: list[dict[str, Any]] = []
    task_rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for start, end, line in zip(
        scan.starts.tolist(), scan.ends.tolist(), scan.lines.tolist(), strict=True
    ):
        if end < 0:
            snippet = data[start : start + 2000].decode("utf-8", "replace")
            failures.append(
                {"source_line": line, "field": None, "reason": TRUNCATED_FILE, "record": snippet}
            )
            continue
        chunk = data[start:end]
        if len(chunk) > MAX_RECORD_BYTES:
            failures.append(
                {
                    "source_line": line,
                    "field": None,
                    "reason": OVERSIZED_RECORD,
                    "record": cap_raw_bytes(chunk),
                }
            )
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as error:
            failures.append(
                {
                    "source_line": line + chunk[: error.start].count(b"\n"),
                    "field": None,
                    "reason": NON_UTF8,
                    "record": chunk.decode("utf-8", "replace")[:2000],
                }
            )
            continue
        try:
            task = json.loads(text)
        except RecursionError:
            failures.append(
                {
                    "source_line": line,
                    "field": None,
                    "reason": NESTING_TOO_DEEP,
                    "record": cap_raw_bytes(chunk[:2000]),
                }
            )
            continue
        except json.JSONDecodeError as error:
            failures.append(
                {
                    "source_line": line + error.lineno - 1,
                    "field": None,
                    "reason": MALFORMED_JSON,
                    "record": text[:2000],
                }
            )
            continue
        if not isinstance(task, dict):
            failures.append(
                {
                    "source_line": line,
                    "field": None,
                    "reason": MALFORMED_JSON,
                    "record": text[:2000],
                }
            )
            continue
        task_id = _text(task.get("id"))
        task_project = _text(task.get("project"))
        task_rows.append(
            {
                "task_id": task_id,
                "project": task_project,
                # Compact separators: the same text (and hash) as the native path's encoder.
                "payload": None
                if task.get("data") is None
                else json.dumps(task["data"], ensure_ascii=False, separators=(",", ":")),
                "created_at": _text(task.get("created_at")),
                "source_line": line,
            }
        )
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            annotations = [annotations]
        for position, annotation in enumerate(annotations):
            if not isinstance(annotation, dict):
                failures.append(
                    {
                        "source_line": line,
                        "field": "annotations",
                        "reason": MALFORMED_JSON,
                        "record": _text(annotation),
                    }
                )
                continue
            completed_by = annotation.get("completed_by")
            if isinstance(completed_by, dict):
                completed_by = completed_by.get("id")
            choices = None
            for result in annotation.get("result") or []:
                if isinstance(result, dict) and result.get("type") == "choices":
                    value = result.get("value") or {}
                    raw_choices = value.get("choices") if isinstance(value, dict) else None
                    if isinstance(raw_choices, list):
                        choices = [_text(choice) for choice in raw_choices]
                    break
            cancelled = annotation.get("was_cancelled")
            gold = annotation.get("ground_truth")
            annotation_rows.append(
                {
                    "task_id": task_id,
                    "project": task_project,
                    "position": position,
                    "annotation_id": _text(annotation.get("id")),
                    "annotator_id": _text(completed_by),
                    "choices": choices,
                    "submitted_at": _text(annotation.get("created_at")),
                    "duration_s": _text(annotation.get("lead_time")),
                    "was_cancelled": cancelled if isinstance(cancelled, bool) else None,
                    "ground_truth": gold if isinstance(gold, bool) else None,
                    "source_line": line,
                    "record": json.dumps(annotation, ensure_ascii=False),
                }
            )
    if not scan.closed and (not failures or failures[-1]["reason"] != TRUNCATED_FILE):
        # The array never closed after its last complete task: record the cut so it is seen.
        tail_line = int(data.count(b"\n")) + 1
        failures.append(
            {
                "source_line": tail_line,
                "field": None,
                "reason": TRUNCATED_FILE,
                "record": data[-200:].decode("utf-8", "replace"),
            }
        )
    return (
        pl.DataFrame(annotation_rows, schema=_ANNOTATION_SCHEMA),
        pl.DataFrame(task_rows, schema=_TASK_SCHEMA),
        pl.DataFrame(failures, schema=_empty_failures().schema),
    )
