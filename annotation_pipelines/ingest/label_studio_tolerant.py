"""The staged row layout of a Label Studio export, and the tolerant reader that fills it.

The native path (`label_studio`) stages a whole chunk of tasks with Polars' JSON reader; when
that reader refuses a chunk (malformed or truncated JSON, non-UTF-8 bytes, inconsistent types,
nesting too deep), `stage_tolerant` reads the chunk task by task with the standard library,
quarantines each unreadable task and keeps the rest, in the same layout.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from annotation_pipelines.ingest.ids import not_an_id
from annotation_pipelines.ingest.json_scan import ArrayScan
from annotation_pipelines.ingest.result import UnreadableFileError
from annotation_pipelines.ingest.validation import (
    MALFORMED_JSON,
    MAX_RECORD_BYTES,
    NESTING_TOO_DEEP,
    NON_UTF8,
    OVERSIZED_RECORD,
    TRUNCATED_FILE,
    WRONG_TYPE,
    cap_raw_bytes,
    lone_surrogate,
)

# Where a task keeps its annotations: `completions` in exports of Label Studio before 1.0.
ANNOTATION_KEYS = ("annotations", "completions")
# The keys JSON-MIN adds to each flattened task (one element per annotation, the result
# types dropped): recognised so such a file is refused, not read as tasks without annotations.
JSON_MIN_KEYS = frozenset({"annotation_id", "annotator"})


def empty_failures() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "source_line": pl.Int64,
            "field": pl.String,
            "reason": pl.String,
            "record": pl.String,
        }
    )


ANNOTATION_SCHEMA: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "position": pl.Int64(),
    "annotation_id": pl.String(),
    "annotator_id": pl.String(),
    "choices": pl.List(pl.String()),
    # The control (`from_name`) of the first result, and whether the annotation needs the
    # per-control expansion (several results, or a result that is not a choice).
    "control": pl.String(),
    "general": pl.Boolean(),
    "submitted_at": pl.String(),
    "duration_s": pl.String(),
    "was_cancelled": pl.Boolean(),
    "ground_truth": pl.Boolean(),
    "source_line": pl.Int64(),
    "record": pl.String(),
    # The task's bytes in the file, where the native reader staged it: Polars coerces a field
    # whose type differs between tasks (an int `start` becomes "21" next to an XPath), so
    # the results are expanded from the task as written, not from the staged record.
    "task_start": pl.Int64(),
    "task_end": pl.Int64(),
    # Where the task starts in the file, on either path: its place among the export's tasks.
    "task_offset": pl.Int64(),
}
TASK_SCHEMA: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "payload": pl.String(),
    "created_at": pl.String(),
    "source_line": pl.Int64(),
}


def empty_annotations() -> pl.DataFrame:
    return pl.DataFrame(schema=ANNOTATION_SCHEMA)


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


def stage_tolerant(
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
        if lone_surrogate(text, task):
            failures.append(
                {"source_line": line, "field": None, "reason": NON_UTF8, "record": text[:2000]}
            )
            continue
        if task.keys() >= JSON_MIN_KEYS and not task.keys() & set(ANNOTATION_KEYS):
            raise UnreadableFileError(
                f"{source_file}: a Label Studio JSON-MIN export (line {line}): it drops the "
                "result types, so a choice and a text answer cannot be told apart; export the "
                "project as JSON instead"
            )
        if not_an_id(task.get("id")) is not None:
            # NaN or infinity (Python's JSON reads them; Polars' does not) names no task: its
            # annotations go with it, one quarantined row, as an unreadable task does.
            failures.append(
                {"source_line": line, "field": "task_id", "reason": WRONG_TYPE, "record": text}
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
        annotations: list[Any] = []
        for key in ANNOTATION_KEYS:
            listed = task.get(key) or []
            annotations.extend(listed if isinstance(listed, list) else [listed])
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
            ids = {"annotator_id": completed_by, "judgment_id": annotation.get("id")}
            field = next((name for name, value in ids.items() if not_an_id(value)), None)
            if field is not None:
                # Its JSON text is no id: one per spelling (or "nan" for every NaN), never
                # the person or the submission.
                failures.append(
                    {
                        "source_line": line,
                        "field": field,
                        "reason": WRONG_TYPE,
                        "record": json.dumps(annotation, ensure_ascii=False),
                    }
                )
                continue
            choices = None
            results = annotation.get("result")
            first = results[0] if isinstance(results, list) and results else None
            control = _text(first.get("from_name")) if isinstance(first, dict) else None
            general = isinstance(results, list) and (
                len(results) > 1
                or (
                    len(results) == 1
                    and (not isinstance(first, dict) or first.get("type") != "choices")
                )
            )
            for result in results if isinstance(results, list) else []:
                if isinstance(result, dict) and result.get("type") == "choices":
                    value = result.get("value") or {}
                    raw_choices = value.get("choices") if isinstance(value, dict) else None
                    if isinstance(raw_choices, list):
                        choices = [_text(choice) for choice in raw_choices]
                    break
            cancelled = annotation.get("was_cancelled")
            if not isinstance(cancelled, bool):
                cancelled = annotation.get("skipped")
            gold = annotation.get("ground_truth")
            annotation_rows.append(
                {
                    "task_id": task_id,
                    "project": task_project,
                    "position": position,
                    "annotation_id": _text(annotation.get("id")),
                    "annotator_id": _text(completed_by),
                    "choices": choices,
                    "control": control,
                    "general": general,
                    "submitted_at": _text(annotation.get("created_at")),
                    "duration_s": _text(annotation.get("lead_time")),
                    "was_cancelled": cancelled if isinstance(cancelled, bool) else None,
                    "ground_truth": gold if isinstance(gold, bool) else None,
                    "source_line": line,
                    "record": json.dumps(annotation, ensure_ascii=False),
                    "task_start": None,
                    "task_end": None,
                    "task_offset": start,
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
        pl.DataFrame(annotation_rows, schema=ANNOTATION_SCHEMA),
        pl.DataFrame(task_rows, schema=TASK_SCHEMA),
        pl.DataFrame(failures, schema=empty_failures().schema),
    )
