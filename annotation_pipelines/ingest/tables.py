"""Plain tables (CSV, TSV, Parquet, JSON Lines) and SageMaker Ground Truth output manifests.

Plain tables are mapped to the canonical columns by a per-project `ColumnMapping`; every
value is read as written (text for CSV/TSV, typed for Parquet) so a wrong type is quarantined
by validation instead of failing the whole file. JSON Lines and manifests are read line by line
so a malformed line or non-UTF-8 bytes quarantine that line only.

SageMaker Ground Truth writes one JSON object per data object: the input manifest's keys, the
label attribute (`<attr>`: the class index) and `<attr>-metadata` (`class-name`, `job-name`,
`human-annotated`, `creation-date`, optionally `class-map`). Ground Truth writes
`creation-date` in UTC without an offset, so for this source a naive timestamp is read as UTC
(documented AWS behaviour, not a guess). Where per-worker answers are present in the metadata
(`worker-responses`: the `answers` of Ground Truth's worker-response files, each with
`workerId`, `answerContent`, `submissionTime`, `timeSpentInSeconds`), each answer is one
judgment; otherwise the consolidated label is one judgment by annotator
`sagemaker:<job-name>`, so it is never mistaken for an individual's vote.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from annotation_pipelines.ingest.result import IngestResult, UnreadableFileError, assemble
from annotation_pipelines.ingest.validation import (
    MALFORMED_JSON,
    MAX_RECORD_BYTES,
    NESTING_TOO_DEEP,
    NON_UTF8,
    OVERSIZED_RECORD,
    TRUNCATED_FILE,
    cap_raw_bytes,
)
from annotation_pipelines.tabular import check_column_count


@dataclass(frozen=True)
class ColumnMapping:
    """Which column of a project's table holds each canonical field (None: absent)."""

    task_id: str = "task_id"
    annotator_id: str = "annotator_id"
    label: str = "label"
    submitted_at: str = "submitted_at"
    duration_s: str | None = "duration_s"
    judgment_id: str | None = "judgment_id"
    project: str | None = "project"
    payload: str | None = "payload"

    @classmethod
    def from_dict(cls, mapping: dict[str, str | None]) -> ColumnMapping:
        unknown = set(mapping) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown canonical field(s) in column mapping: {sorted(unknown)}")
        return cls(**mapping)  # type: ignore[arg-type]


_STAGED: dict[str, pl.DataType] = {
    "judgment_id": pl.String(),
    "task_id": pl.String(),
    "project": pl.String(),
    "annotator_id": pl.String(),
    "label": pl.String(),
    "label_error": pl.String(),
    "submitted_at": pl.String(),
    "duration_s": pl.String(),
    "source_line": pl.Int64(),
    "reason": pl.String(),
    "field": pl.String(),
    "record": pl.String(),
    "payload": pl.String(),
}


def _stem(source_file: str) -> str:
    name = source_file.replace("\\", "/").rsplit("/", 1)[-1]
    return name.split(".", 1)[0] or "default"


def _text(value: Any) -> tuple[str | None, bool]:
    """(text, is_scalar): containers are kept as JSON and flagged so they fail as wrong type."""
    if value is None:
        return None, True
    if isinstance(value, str):
        return value, True
    if isinstance(value, bool):
        return ("true" if value else "false"), True
    if isinstance(value, int | float):
        return repr(value), True
    return json.dumps(value, ensure_ascii=False), False


def parse_table(
    data: bytes,
    *,
    format: str,
    source_file: str,
    mapping: ColumnMapping | None = None,
    project: str | None = None,
    label_set: list[str] | None = None,
    now: datetime | None = None,
    max_field_bytes: int = 4096,
) -> IngestResult:
    """Parse a CSV, TSV, Parquet or JSON Lines table of judgments."""
    mapping = mapping or ColumnMapping()
    if not data.strip():
        raise UnreadableFileError(f"{source_file}: empty file")
    source = format
    if format in ("csv", "tsv"):
        frame = _read_delimited(data, format=format, source_file=source_file)
        frame = frame.with_columns(
            _line=pl.int_range(2, pl.len() + 2, dtype=pl.Int64),
            # utf8-lossy decoding turned each invalid byte into U+FFFD: flag the row.
            _bad_bytes=pl.any_horizontal(pl.col(pl.String).str.contains("\ufffd", literal=True))
            if frame.width
            else pl.lit(False),
        )
        staged = _stage_frame(frame, mapping, source_file, typed=False)
    elif format == "parquet":
        try:
            frame = pl.read_parquet(data)
        except Exception as error:
            raise UnreadableFileError(f"{source_file}: unreadable parquet: {error}") from error
        frame = frame.with_columns(
            _line=pl.int_range(1, pl.len() + 1, dtype=pl.Int64), _bad_bytes=pl.lit(False)
        )
        staged = _stage_frame(frame, mapping, source_file, typed=True)
    elif format == "jsonl":
        records, failures = _read_lines(data, source_file)
        staged = _stage_records(records, failures, mapping)
    else:  # pragma: no cover - guarded by the dispatcher
        raise ValueError(format)
    staged = staged.with_columns(
        project=pl.coalesce(
            pl.lit(project, pl.String), pl.col("project"), pl.lit(_stem(source_file))
        )
        if project
        else pl.coalesce(pl.col("project"), pl.lit(_stem(source_file))),
        judgment_id=pl.coalesce(
            pl.col("judgment_id"),
            # The file's name, not its path: the id must not change when the landing zone moves.
            pl.lit(f"{source_file.replace(chr(92), '/').rsplit('/', 1)[-1]}:")
            + pl.col("source_line").cast(pl.String),
        ),
    )
    if project:
        staged = staged.with_columns(project=pl.lit(project, pl.String))
    tasks = staged.filter(pl.col("reason").is_null()).select(
        "task_id",
        "project",
        "payload",
        created_at=pl.lit(None, pl.String),
        source_line="source_line",
    )
    return assemble(
        staged_judgments=staged.drop("payload"),
        staged_tasks=tasks if mapping.payload else None,
        label_set=label_set,
        now=now,
        max_field_bytes=max_field_bytes,
        source=source,
        source_file=source_file,
    )


def _read_delimited(data: bytes, *, format: str, source_file: str) -> pl.DataFrame:
    check_column_count(
        data,
        separator=b"\t" if format == "tsv" else b",",
        source=source_file,
        error=UnreadableFileError,
    )
    try:
        return pl.read_csv(
            data,
            separator="\t" if format == "tsv" else ",",
            infer_schema=False,
            encoding="utf8-lossy",
            truncate_ragged_lines=True,
        )
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnreadableFileError(f"{source_file}: unreadable {format}: {first}") from error


def _stage_frame(
    frame: pl.DataFrame, mapping: ColumnMapping, source_file: str, *, typed: bool
) -> pl.DataFrame:
    required = [mapping.task_id, mapping.annotator_id, mapping.label, mapping.submitted_at]
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise UnreadableFileError(
            f"{source_file}: missing column(s) {', '.join(map(repr, missing))}; the file has "
            f"{', '.join(map(repr, frame.columns)) or 'no columns'}"
        )

    def column(name: str | None, *, keep_type: bool = False) -> pl.Expr:
        if name is None or name not in frame.columns:
            return pl.lit(None, pl.String)
        dtype = frame.schema[name]
        if keep_type or dtype == pl.String:
            return pl.col(name)
        if dtype.is_nested():
            return pl.col(name).cast(pl.String, strict=False)
        return pl.col(name).cast(pl.String)

    label_dtype = frame.schema[mapping.label]
    original = [c for c in frame.columns if not c.startswith("_")]
    staged = frame.select(
        judgment_id=column(mapping.judgment_id),
        task_id=column(mapping.task_id),
        project=column(mapping.project),
        annotator_id=column(mapping.annotator_id),
        label=column(mapping.label),
        label_error=pl.lit("not a scalar") if label_dtype.is_nested() else pl.lit(None, pl.String),
        submitted_at=column(mapping.submitted_at, keep_type=typed),
        duration_s=column(mapping.duration_s, keep_type=typed),
        source_line=pl.col("_line"),
        reason=pl.when(pl.col("_bad_bytes")).then(pl.lit(NON_UTF8)),
        field=pl.lit(None, pl.String),
        record=pl.struct(original),
        payload=column(mapping.payload),
    )
    return staged


def _read_lines(data: bytes, source_file: str) -> tuple[list[tuple[int, dict]], list[dict]]:
    """Decode JSON Lines; a bad line is kept as a failure with its line number."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    records: list[tuple[int, dict]] = []
    failures: list[dict] = []
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if len(raw) > MAX_RECORD_BYTES:
            failures.append(
                {"source_line": number, "reason": OVERSIZED_RECORD, "record": cap_raw_bytes(raw)}
            )
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            failures.append(
                {
                    "source_line": number,
                    "reason": NON_UTF8,
                    "record": raw.decode("utf-8", "replace")[:2000],
                }
            )
            continue
        try:
            record = json.loads(text)
        except RecursionError:
            failures.append(
                {"source_line": number, "reason": NESTING_TOO_DEEP, "record": text[:2000]}
            )
            continue
        except json.JSONDecodeError:
            # The last line cut mid-object is a truncated file, not a malformed line.
            last = number == len(lines) or (number == len(lines) - 1 and not lines[-1].strip())
            reason = TRUNCATED_FILE if last and not data.endswith(b"\n") else MALFORMED_JSON
            failures.append({"source_line": number, "reason": reason, "record": text[:2000]})
            continue
        if not isinstance(record, dict):
            failures.append(
                {"source_line": number, "reason": MALFORMED_JSON, "record": text[:2000]}
            )
            continue
        records.append((number, record))
    if not records and failures:
        reasons = ", ".join(sorted({f["reason"] for f in failures}))
        raise UnreadableFileError(f"{source_file}: no line could be read ({reasons})")
    return records, failures


def _failure_rows(failures: list[dict]) -> list[dict]:
    return [{**dict.fromkeys(_STAGED), **failure} for failure in failures]


def _stage_records(
    records: list[tuple[int, dict]], failures: list[dict], mapping: ColumnMapping
) -> pl.DataFrame:
    rows = _failure_rows(failures)
    for number, record in records:
        row: dict[str, Any] = {
            "source_line": number,
            "record": json.dumps(record, ensure_ascii=False),
        }
        for canonical in (
            "judgment_id",
            "task_id",
            "project",
            "annotator_id",
            "submitted_at",
            "duration_s",
            "payload",
        ):
            name = getattr(mapping, canonical)
            value, _ = _text(record.get(name)) if name else (None, True)
            row[canonical] = value
        label, scalar = _text(record.get(mapping.label))
        row["label"] = label
        row["label_error"] = None if scalar else "not a scalar"
        rows.append(row)
    return pl.DataFrame(rows, schema=_STAGED)


def _label_attribute(record: dict) -> str | None:
    for key in record:
        if key.endswith("-metadata") and key[: -len("-metadata")] in record:
            return key[: -len("-metadata")]
    return None


def _answer_label(content: Any) -> tuple[str | None, bool]:
    """The label inside a worker's `answerContent` (`{"crowd-...": {"label": ...}}`)."""
    if isinstance(content, dict):
        if "label" in content:
            return _text(content["label"])
        for value in content.values():
            label, scalar = _answer_label(value)
            if label is not None:
                return label, scalar
    return None, True


def parse_sagemaker(
    data: bytes,
    *,
    source_file: str,
    project: str | None = None,
    label_attribute: str | None = None,
    label_set: list[str] | None = None,
    now: datetime | None = None,
    max_field_bytes: int = 4096,
) -> IngestResult:
    """Parse a SageMaker Ground Truth output manifest (see the module docstring)."""
    if not data.strip():
        raise UnreadableFileError(f"{source_file}: empty file")
    records, failures = _read_lines(data, source_file)
    rows = _failure_rows(failures)
    task_rows: list[dict[str, Any]] = []
    default_project = project or _stem(source_file)
    for number, record in records:
        attribute = label_attribute or _label_attribute(record)
        metadata = record.get(f"{attribute}-metadata") if attribute else None
        source = record.get("source-ref") or record.get("source")
        task_id = _text(record.get("id"))[0] if record.get("id") is not None else None
        if task_id is None and isinstance(source, str):
            task_id = (
                source
                if "source-ref" in record
                else "sha256:" + hashlib.sha256(source.encode()).hexdigest()[:32]
            )
        payload = {k: v for k, v in record.items() if k not in (attribute, f"{attribute}-metadata")}
        base = {
            **dict.fromkeys(_STAGED),
            "task_id": task_id,
            "project": default_project,
            "source_line": number,
            "record": json.dumps(record, ensure_ascii=False),
        }
        if not isinstance(metadata, dict):
            rows.append(
                {**base, "reason": MALFORMED_JSON, "field": f"{attribute or '<label>'}-metadata"}
            )
            continue
        task_rows.append(
            {
                "task_id": task_id,
                "project": default_project,
                "payload": json.dumps(payload, ensure_ascii=False),
                "created_at": None,
                "source_line": number,
            }
        )
        responses = metadata.get("worker-responses")
        if isinstance(responses, list) and responses:
            for position, answer in enumerate(responses):
                answer = answer if isinstance(answer, dict) else {}
                label, scalar = _answer_label(answer.get("answerContent", answer))
                rows.append(
                    {
                        **base,
                        "judgment_id": f"sagemaker:{metadata.get('job-name')}:{task_id}:{position}",
                        "annotator_id": _text(answer.get("workerId"))[0],
                        "label": label,
                        "label_error": None if scalar else "not a scalar",
                        "submitted_at": _text(answer.get("submissionTime"))[0],
                        "duration_s": _text(answer.get("timeSpentInSeconds"))[0],
                        "record": json.dumps(answer, ensure_ascii=False),
                    }
                )
            continue
        label, scalar = _text(metadata.get("class-name"))
        if label is None and isinstance(metadata.get("class-map"), dict):
            label, scalar = _text(metadata["class-map"].get(str(record.get(attribute))))
        created, _ = _text(metadata.get("creation-date"))
        if (
            created is not None
            and not any(created.endswith(s) for s in ("Z", "z"))
            and "+" not in created[10:]
            and "-" not in created[10:]
        ):
            created = created + "+00:00"
        job = metadata.get("job-name")
        rows.append(
            {
                **base,
                "judgment_id": f"sagemaker:{job}:{task_id}",
                "annotator_id": f"sagemaker:{job}" if job else None,
                "label": label,
                "label_error": None if scalar else "not a scalar",
                "submitted_at": created,
            }
        )
    staged = pl.DataFrame(rows, schema=_STAGED).with_columns(
        project=pl.coalesce(pl.col("project"), pl.lit(default_project))
    )
    tasks = pl.DataFrame(
        task_rows,
        schema={
            "task_id": pl.String,
            "project": pl.String,
            "payload": pl.String,
            "created_at": pl.String,
            "source_line": pl.Int64,
        },
    )
    return assemble(
        staged_judgments=staged.drop("payload"),
        staged_tasks=tasks,
        label_set=label_set,
        now=now,
        max_field_bytes=max_field_bytes,
        source="sagemaker-gt",
        source_file=source_file,
    )
