"""Label Studio JSON exports: a JSON array of tasks, each with several annotations.

A file holding one task object (cloud-storage targets write one file per task, and Label
Studio before 1.0 kept one per task in its `completions/` folder) is read as a one-task
export. Before 1.0 the annotations were called `completions`, and a skipped one had
`skipped` instead of `was_cancelled`: both are read. JSON-MIN exports (one flat object per
annotation, result types dropped) are refused with that reason.

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
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from annotation_pipelines.ingest.json_scan import ArrayScan, scan_json_array
from annotation_pipelines.ingest.label_studio_results import ROW_KEYS, expand_results
from annotation_pipelines.ingest.label_studio_tolerant import (
    ANNOTATION_KEYS,
    ANNOTATION_SCHEMA,
    JSON_MIN_KEYS,
    TASK_SCHEMA,
    empty_annotations,
    empty_failures,
    stage_tolerant,
)
from annotation_pipelines.ingest.result import IngestResult, UnreadableFileError, assemble
from annotation_pipelines.ingest.validation import (
    CANCELLED,
    NON_UTF8,
    lone_surrogate,
    quarantine_rows,
)
from annotation_pipelines.kinds import KIND_COLUMNS, VALUE_DTYPES
from annotation_pipelines.scale import RatingScale

SOURCE = "label-studio"
# Polars' reader turns a completed_by of true into 1 beside integer ids (another annotator's
# id): a chunk holding a boolean or a list there is read by the tolerant reader, which
# quarantines that annotation.
_ANNOTATOR_NOT_AN_ID = re.compile(
    rb'"completed_by"\s*:\s*(?:true|false|\[|\{[^{}]*"id"\s*:\s*(?:true|false|\[|\{))'
)

__all__ = ["ArrayScan", "parse_label_studio", "scan_json_array"]


def parse_label_studio(
    data: bytes,
    *,
    source_file: str,
    project: str | None = None,
    label_set: list[str] | None = None,
    scale: RatingScale | None = None,
    now: datetime | None = None,
    max_field_bytes: int = 4096,
) -> IngestResult:
    """Parse one Label Studio JSON export into canonical tables (see the module docstring)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    head = data.lstrip()[:1]
    if head == b"{" and _is_task_object(data):
        # One task per file: a cloud-storage target or a pre-1.0 `completions/` folder.
        data, head = b"[" + data + b"]", b"["
    if head != b"[":
        what = "empty file" if not head else f"expected a JSON array of tasks, found {head!r}"
        raise UnreadableFileError(f"{source_file}: not a Label Studio export: {what}")
    default_project = project
    annotations, staged_tasks, failures, task_starts = _stage_chunks(data, source_file)
    reasons = set(failures.get_column("reason").to_list())
    if (
        annotations.height == 0
        and reasons <= {"not_a_task"}
        and staged_tasks.filter(pl.col("task_id").is_not_null()).height == 0
        and data.strip() != b"[]"
        and data.strip()[1:-1].strip()
    ):
        # An array of arrays or scalars is not an export with no tasks: it is not an export.
        raise UnreadableFileError(
            f"{source_file}: not a Label Studio export: the array holds no task objects "
            '(expected [{"id": ..., "annotations": [...]}, ...])'
        )
    if annotations.height == 0 and failures.height and staged_tasks.height == 0:
        raise UnreadableFileError(
            f"{source_file}: no task could be read ({', '.join(sorted(reasons))})"
        )
    project_expr = (
        pl.lit(default_project, pl.String)
        if default_project
        else pl.coalesce(pl.col("project").cast(pl.String), pl.lit(_stem(source_file)))
    )
    staged_tasks = staged_tasks.with_columns(project=project_expr)
    annotations = annotations.with_columns(
        project=project_expr,
        task_place=_task_places(annotations, task_starts),
        annotation_place=pl.col("position") + 1,
    )
    annotations = _expand_controls(annotations, data, tasks=staged_tasks)
    annotations = annotations.with_columns(
        reason=pl.coalesce(
            pl.when(pl.col("was_cancelled").fill_null(False)).then(pl.lit(CANCELLED)),
            pl.col("reason"),
        ),
        field=pl.coalesce(
            pl.when(pl.col("was_cancelled").fill_null(False)).then(pl.lit("was_cancelled")),
            pl.col("field"),
        ),
    )
    gold_mask = pl.col("ground_truth").fill_null(False) & pl.col("reason").is_null()
    columns = [
        "judgment_id",
        "task_id",
        "project",
        "annotator_id",
        "label",
        "label_error",
        "error_field",
        "submitted_at",
        "duration_s",
        "source_line",
        "reason",
        "field",
        "record",
        "task_place",
        "annotation_place",
        "annotation_id",
        *KIND_COLUMNS,
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
        scale=scale,
        now=now,
        max_field_bytes=max_field_bytes,
        source=SOURCE,
        source_file=source_file,
    )


# Tasks are parsed in chunks of about this many bytes: Polars builds a document tape for what it
# parses, so one call on a 1 GB export would hold several GB at once; a bad task also only
# sends its own chunk down the tolerant path.
CHUNK_BYTES = 64 * 1024 * 1024


def _task_places(annotations: pl.DataFrame, task_starts: np.ndarray) -> pl.Series:
    """Each annotation's task by its place among the export's tasks (1-based; null where the
    reader did not say where the task starts): with the task's id and line and the
    annotation's place and id, what names a row of a Label Studio export (`result._details`),
    where a line alone cannot: a task holds many annotations, and a minified export has every
    task on line 1."""
    offsets = annotations.get_column("task_offset").fill_null(-1).to_numpy()
    places = np.searchsorted(task_starts, offsets) + 1
    known = (offsets >= 0) & (places <= task_starts.size)
    return pl.Series(np.where(known, places, 0), dtype=pl.Int64).replace(0, None)


def _stage_chunks(
    data: bytes, source_file: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, np.ndarray]:
    """Stage every task: native per chunk, tolerant for a chunk the native reader refuses;
    and the byte offset where each task starts.

    Top-level elements that are not objects are quarantined (`not_a_task`), so every element
    read is accounted for.
    """
    annotations, staged_tasks, failures, stray, starts = _stage_objects(data, source_file)
    if not stray.size:
        return annotations, staged_tasks, failures, starts
    strays = pl.DataFrame(
        {
            "source_line": stray,
            "field": ["task"] * stray.size,
            "reason": ["not_a_task"] * stray.size,
            "record": ["a top-level element of the export that is not a task object"] * stray.size,
        },
        schema=failures.schema,
    )
    return annotations, staged_tasks, pl.concat([failures, strays]), starts


def _stage_objects(
    data: bytes, source_file: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, np.ndarray, np.ndarray]:
    """The staged objects, the lines of the elements that are not objects and the byte offset
    where each object starts."""
    one_line = data.count(b"\n", 0, max(len(data) - 1, 0)) == 0
    if one_line and len(data) <= CHUNK_BYTES:
        # A small minified export: every task is on line 1, no structural scan needed.
        try:
            if _ANNOTATOR_NOT_AN_ID.search(data):
                raise ValueError("completed_by is not an id")
            tasks = pl.read_json(io.BytesIO(data), infer_schema_length=None)
            scan = scan_json_array(data)
            if scan.starts.size != tasks.height:
                raise ValueError("task count differs from the structural scan")
            annotations, staged_tasks = _stage_native(
                tasks, np.ones(tasks.height, np.int64), scan.starts, scan.ends
            )
            # Polars reads an array only when every element is an object: nothing stray.
            return (
                annotations,
                staged_tasks,
                empty_failures(),
                np.zeros(0, np.int64),
                scan.starts,
            )
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
        scan.stray_lines,
        scan.starts,
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
        if _ANNOTATOR_NOT_AN_ID.search(body):
            raise ValueError("completed_by is not an id")
        tasks = pl.read_json(io.BytesIO(body), infer_schema_length=None)
        del body
        if tasks.height != chunk.starts.size:
            raise ValueError("task count differs from the structural scan")
        annotations, staged_tasks = _stage_native(tasks, chunk.lines, chunk.starts, chunk.ends)
        return annotations, staged_tasks, empty_failures()
    except Exception:
        return stage_tolerant(data, chunk, source_file)


# The staged columns one control's value adds to an annotation row.
_CONTROL_SCHEMA: dict[str, pl.DataType] = {
    **{name: dtype for name, dtype in KIND_COLUMNS.items()},
    "label": VALUE_DTYPES["label"],
    "choices": pl.List(pl.String()),
    "reason": pl.String(),
    "field": pl.String(),
    "record": pl.String(),
    "label_error": pl.String(),
    "error_field": pl.String(),
}


def _written_annotation(
    data: bytes, row: dict, cache: dict[tuple[int, int], dict], payloads: _Payloads
) -> tuple[dict[str, Any], str | bytes, Any]:
    """The annotation as written in the file (see `task_start` in ANNOTATION_SCHEMA), the
    JSON text it was read from (its task's, or its own), and its task's data object."""
    start, end = row["task_start"], row["task_end"]
    if start is None or end is None:
        parsed = json.loads(row["record"])
        return (parsed if isinstance(parsed, dict) else {}), row["record"], payloads.data(row)
    key = (start, end)
    if key not in cache:
        cache.clear()  # tasks arrive in order: one parsed task at a time
        cache[key] = json.loads(data[start:end])
    task = cache[key]
    listed: list[Any] = next(
        (task[k] for k in ANNOTATION_KEYS if isinstance(task.get(k), list)), []
    )
    annotation = listed[row["position"]] if row["position"] < len(listed) else None
    return (annotation if isinstance(annotation, dict) else {}), data[start:end], task.get("data")


class _Payloads:
    """The staged tasks' data objects by project and task id, read only when an annotation
    the tolerant reader staged (which keeps no task text) needs its task's."""

    def __init__(self, tasks: pl.DataFrame | None) -> None:
        self._tasks = tasks
        self._by_task: dict[tuple[str | None, str | None], str | None] | None = None

    def data(self, row: dict[str, Any]) -> Any:
        if self._tasks is None:
            return None
        if self._by_task is None:
            frame = self._tasks.select("project", "task_id", "payload")
            self._by_task = {(p, t): payload for p, t, payload in frame.iter_rows()}
        payload = self._by_task.get((row["project"], row["task_id"]))
        try:
            return None if payload is None else json.loads(payload)
        except (ValueError, RecursionError):
            return None


def _expand_controls(
    annotations: pl.DataFrame, data: bytes, *, tasks: pl.DataFrame | None = None
) -> pl.DataFrame:
    """One row per annotation and control, with the control's kind and typed value.

    Annotations holding one `choices` result keep their row (the common, fast case); the
    others are expanded from their JSON by `expand_results`. A choices control is
    multilabel when any of its annotations in the file picked several choices. An
    annotation that yields several controls gets judgment ids `<annotation>/<control>`.
    """
    base_id = pl.lit("label-studio:") + pl.coalesce(
        pl.col("annotation_id"),
        pl.col("task_id") + pl.lit("/") + pl.col("position").cast(pl.String),
    )
    expand = pl.col("general").fill_null(False) & ~pl.col("was_cancelled").fill_null(False)
    simple = annotations.filter(~expand).with_columns(
        judgment_id=base_id,
        kind=pl.lit("categorical"),
        reason=pl.lit(None, pl.String),
        field=pl.lit(None, pl.String),
        **{
            name: pl.lit(None, dtype)
            for name, dtype in _CONTROL_SCHEMA.items()
            if name not in ("kind", "control", "choices", "reason", "field", "record")
        },
    )
    general = annotations.filter(expand).with_columns(judgment_id=base_id)
    rows: list[dict] = []
    keep = [c for c in general.columns if c not in ("choices", "control", "task_start", "task_end")]
    cache: dict[tuple[int, int], dict] = {}
    payloads = _Payloads(tasks)
    for annotation in general.iter_rows(named=True):
        parsed, text, task_data = _written_annotation(data, annotation, cache, payloads)
        if lone_surrogate(text, parsed):
            controls = [_unwritable(parsed)]
        else:
            controls = expand_results(
                parsed.get("result"),
                annotation_id=parsed.get("id"),
                task_id=annotation["task_id"],
                data=task_data,
            )
        for position, control in enumerate(controls):
            row = {name: annotation[name] for name in keep}
            row.update({key: control[key] for key in ROW_KEYS if key != "record"})
            if control["record"] is not None:
                row["record"] = control["record"]
            if len(controls) > 1:
                suffix = control["control"] if control["control"] is not None else f"#{position}"
                row["judgment_id"] = f"{annotation['judgment_id']}/{suffix}"
            rows.append(row)
    schema = {**{name: general.schema[name] for name in keep}, **_CONTROL_SCHEMA}
    schema["record"] = pl.String()
    expanded = pl.DataFrame(rows, schema=schema)
    staged = pl.concat([simple.select(list(schema)), expanded], how="vertical_relaxed")
    choices = pl.col("choices")
    multiple = (choices.list.len().max().over("project", "control") > 1).fill_null(False)
    is_choice = choices.is_not_null() & pl.col("reason").is_null()
    return staged.with_columns(
        kind=pl.when(is_choice & multiple).then(pl.lit("multilabel")).otherwise(pl.col("kind")),
        labels=pl.when(is_choice & multiple).then(choices).otherwise(pl.col("labels")),
        label=pl.when(is_choice & ~multiple & (choices.list.len() == 1))
        .then(choices.list.first())
        .otherwise(pl.col("label")),
    )


def _unwritable(annotation: dict[str, Any]) -> dict[str, Any]:
    """The quarantined row of an annotation holding half a surrogate pair, which no UTF-8
    table can hold: its record keeps the escape as written."""
    return {
        **dict.fromkeys(ROW_KEYS),
        "reason": NON_UTF8,
        "record": json.dumps(annotation, ensure_ascii=True, default=str),
    }


def _is_task_object(data: bytes) -> bool:
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(parsed, dict) and any(key in parsed for key in ANNOTATION_KEYS)


def _stem(source_file: str) -> str:
    name = source_file.replace("\\", "/").rsplit("/", 1)[-1]
    return name.split(".", 1)[0] or "default"


def _field(frame_schema: pl.Schema, column: str, name: str, dtype: pl.DataType) -> pl.Expr:
    struct = frame_schema[column]
    if isinstance(struct, pl.Struct) and name in {f.name for f in struct.fields}:
        return pl.col(column).struct.field(name)
    return pl.lit(None, dtype)


def _stage_native(
    tasks: pl.DataFrame, lines: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stage tasks and annotations from the frame Polars' JSON reader produced."""
    schema = tasks.schema
    tasks = tasks.with_columns(
        _line=pl.Series(lines, dtype=pl.Int64),
        _start=pl.Series(starts, dtype=pl.Int64),
        _end=pl.Series(ends, dtype=pl.Int64),
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
    if ANNOTATION_KEYS[0] in schema and ANNOTATION_KEYS[1] in schema:
        raise ValueError("both annotations and completions: merged by the tolerant reader")
    if set(schema.names()) >= JSON_MIN_KEYS and not set(ANNOTATION_KEYS) & set(schema.names()):
        raise ValueError("a JSON-MIN export: refused by the tolerant reader")
    key = next((k for k in ANNOTATION_KEYS if k in schema), None)
    if key is None or not isinstance(schema[key], pl.List):
        return empty_annotations(), staged_tasks.cast(pl.Schema(TASK_SCHEMA))
    flat = (
        tasks.rename({key: "annotations"})
        .select("task_id", "project", "_line", "_start", "_end", "annotations")
        .with_columns(position=pl.int_ranges(pl.col("annotations").list.len()))
        .explode("annotations", "position")
        .filter(pl.col("annotations").is_not_null())
        .rename({"annotations": "a"})
    )
    fs = flat.schema
    annotation_type = fs["a"]
    if not isinstance(annotation_type, pl.Struct):
        # Every task of the chunk has an empty annotation list (Polars reads it as a list of
        # nulls): there is nothing to stage, which is no reason to leave the native path.
        return empty_annotations(), staged_tasks.cast(pl.Schema(TASK_SCHEMA))
    completed = _field_type(annotation_type, "completed_by")
    identity = _field_type(completed, "id") if isinstance(completed, pl.Struct) else completed
    if identity is not None and (identity.is_nested() or identity == pl.Boolean):
        # An annotator given as a list, an object or true/false: the tolerant reader
        # quarantines those annotations one by one.
        raise ValueError("completed_by is not an id")
    if isinstance(completed, pl.Struct):
        annotator = pl.col("a").struct.field("completed_by").struct.field("id").cast(pl.String)
    elif completed is None:
        annotator = pl.lit(None, pl.String)
    else:
        annotator = pl.col("a").struct.field("completed_by").cast(pl.String)
    result_type = _field_type(annotation_type, "result")
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
    control, general = _result_shape(result_type)
    lead_time = _field(fs, "a", "lead_time", pl.Float64())
    return (
        flat.select(
            "task_id",
            "project",
            "position",
            annotation_id=_field(fs, "a", "id", pl.String()).cast(pl.String),
            annotator_id=annotator,
            choices=choices,
            control=control,
            general=general,
            submitted_at=_field(fs, "a", "created_at", pl.String()).cast(pl.String),
            duration_s=lead_time.cast(pl.String),
            was_cancelled=pl.coalesce(
                _field(fs, "a", "was_cancelled", pl.Boolean()).cast(pl.Boolean, strict=False),
                _field(fs, "a", "skipped", pl.Boolean()).cast(pl.Boolean, strict=False),
            ),
            ground_truth=_field(fs, "a", "ground_truth", pl.Boolean()).cast(
                pl.Boolean, strict=False
            ),
            source_line=pl.col("_line"),
            # Encoded now, per chunk, so chunks with different inferred shapes stack.
            record=pl.col("a").struct.json_encode(),
            task_start=pl.col("_start"),
            task_end=pl.col("_end"),
            task_offset=pl.col("_start"),
        ).cast(pl.Schema(ANNOTATION_SCHEMA)),
        staged_tasks.cast(pl.Schema(TASK_SCHEMA)),
    )


def _field_type(struct: pl.Struct, name: str) -> pl.DataType | None:
    """The dtype of the field `name`, if `struct` has one (inferred schemas hold instances)."""
    dtype = next((f.dtype for f in struct.fields if f.name == name), None)
    return dtype if isinstance(dtype, pl.DataType) else None


def _has_choices(result_type: pl.DataType | None) -> bool:
    if not isinstance(result_type, pl.List) or not isinstance(result_type.inner, pl.Struct):
        return False
    fields = {f.name: f.dtype for f in result_type.inner.fields}
    value = fields.get("value")
    if "type" not in fields or not isinstance(value, pl.Struct):
        return False
    return any(f.name == "choices" and isinstance(f.dtype, pl.List) for f in value.fields)


def _result_shape(result_type: pl.DataType | None) -> tuple[pl.Expr, pl.Expr]:
    """(the first result's control, whether the annotation needs the per-control expansion).

    Only an annotation whose result is one `choices` entry (or nothing) stays on the native
    path; anything else is expanded control by control from its JSON.
    """
    if not isinstance(result_type, pl.List):
        return pl.lit(None, pl.String), pl.lit(False)
    results = pl.col("a").struct.field("result")
    count = results.list.len().fill_null(0)
    if not isinstance(result_type.inner, pl.Struct):
        return pl.lit(None, pl.String), count > 0
    names = {f.name for f in result_type.inner.fields}
    first = results.list.first()
    control = (
        first.struct.field("from_name").cast(pl.String)
        if "from_name" in names
        else pl.lit(None, pl.String)
    )
    first_type = (
        first.struct.field("type").cast(pl.String) if "type" in names else pl.lit(None, pl.String)
    )
    general = (count > 1) | ((count == 1) & (first_type != "choices").fill_null(True))
    return control, general
