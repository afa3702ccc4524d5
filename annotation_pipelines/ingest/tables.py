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
`sagemaker:<job-name>`, so it is never mistaken for an individual's vote. A consolidated label
with `human-annotated: no` came from Ground Truth's automated labeling, not a person, and is
quarantined as `machine_label`.

Kinds: the bounding-box, named-entity and multi-label task types (recognised by the metadata
`type`, else by the label's shape; see `_sagemaker_kind`) become `boxes` (pixel coordinates,
with the image size), `spans` and `multilabel` judgments. Plain tables carry a kind's value in
its canonical column (`labels`, `value`, `ranking`, `left`/`right`/`winner`, `spans`,
`boxes`, `text`), typed in Parquet and JSON Lines and JSON text in CSV cells. A boxes row
keeps where it is measured, as the Label Studio and Ground Truth readers keep it: `coordinates`
("pixel" or "percent") and `image_width`/`image_height`; a unit or size it cannot keep
quarantines the row as ``wrong_type`` on that field. A row that gives no unit is measured in
the one its project declares (project.json `coordinates`), where it declares one.

A spans row whose task text is known (a table's `payload` column, a manifest's data object) is
checked against it as Label Studio's are: a span ending past the end of the text is
``outside_text``, its field naming the end and the text's length. The text is found as the
snapshot finds a span's document (`kinds.document_text`); a payload that names no single
document, or is an address (`s3://...`), is not checked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from annotation_pipelines.ingest.ids import non_finite_text, not_an_id, number_text, typed_text
from annotation_pipelines.ingest.result import IngestResult, UnreadableFileError, assemble
from annotation_pipelines.ingest.validation import (
    EXTRA_FIELDS,
    MACHINE_LABEL,
    MALFORMED_JSON,
    MAX_RECORD_BYTES,
    NESTING_TOO_DEEP,
    NON_UTF8,
    OUTSIDE_TEXT,
    OVERSIZED_RECORD,
    STRICT_JSON,
    TRUNCATED_FILE,
    UNSUPPORTED_KIND,
    KeyGivenTwice,
    cap_raw_bytes,
    lone_surrogate,
)
from annotation_pipelines.ingest.values import (
    ValueShapeError,
    box_context,
    declared_unit,
    image_size,
    normalize,
    span_past_text,
)
from annotation_pipelines.kinds import (
    BOX_CONTEXT,
    CONTEXT_DTYPES,
    COORDINATE_UNITS,
    DEFAULT_KIND,
    KINDS,
    VALUE_COLUMNS,
    VALUE_DTYPES,
    document_and_key,
)
from annotation_pipelines.scale import RatingScale
from annotation_pipelines.tabular import (
    check_column_count,
    check_encoding,
    first_bad_record,
    repeated_column,
)

_REQUIRED_FIELDS = frozenset({"task_id", "annotator_id", "label", "submitted_at"})


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
    # Each row's kind (absent: the `kind` option of the ingest, else inferred from the
    # value columns present) and the value columns of the other kinds.
    kind: str | None = "kind"
    labels: str | None = "labels"
    value: str | None = "value"
    ranking: str | None = "ranking"
    left: str | None = "left"
    right: str | None = "right"
    winner: str | None = "winner"
    spans: str | None = "spans"
    boxes: str | None = "boxes"
    text: str | None = "text"
    # Where a boxes row is measured: its unit ("pixel" or "percent") and the image's size.
    coordinates: str | None = "coordinates"
    image_width: str | None = "image_width"
    image_height: str | None = "image_height"

    @classmethod
    def from_dict(cls, mapping: dict[str, str | None]) -> ColumnMapping:
        unknown = set(mapping) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown canonical field(s) in column mapping: {sorted(unknown)}")
        # Every field is a column name; the four every table needs cannot be absent (None).
        checked: dict[str, Any] = {}
        for name, column in mapping.items():
            if not isinstance(column, str) and (column is not None or name in _REQUIRED_FIELDS):
                raise ValueError(f"column mapping: {name!r} must name a column, got {column!r}")
            checked[name] = column
        return cls(**checked)


def project_mapping(settings: Mapping[str, object], *, source: str) -> ColumnMapping | None:
    """The column mapping a project's settings declare (`mapping`), None without one.
    ValueError naming `source` and the field when it is not an object of canonical field →
    column: read as no mapping, the run would blame the export for the columns it lacks."""
    mapping = settings.get("mapping")
    if mapping is None:
        return None
    if not isinstance(mapping, dict):
        raise ValueError(
            f'{source}: mapping: expected an object like {{"task_id": "question"}}, '
            f"got {type(mapping).__name__}"
        )
    try:
        return ColumnMapping.from_dict(mapping)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error


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
    "error_field": pl.String(),
    "error_reason": pl.String(),
    "kind": pl.String(),
    **{name: VALUE_DTYPES[name] for name in VALUE_DTYPES if name != "label"},
    "coordinates": pl.String(),
    "image_width": pl.Float64(),
    "image_height": pl.Float64(),
}


def named_by_line() -> pl.Expr:
    """Whether a judgment's id is one ingest made for a file without ids: `<file name>:<line>`,
    or `<path>:<line>` once `path_line_ids` named it by its path (its `source_file` beside it).
    Files of one name in two folders (daily drops in dated folders) share the first form
    without sharing a judgment, so such a row is only its own file's: only an id a source gave
    can name one judgment in two sources."""
    source = pl.col("source_file").str.replace_all("\\", "/", literal=True)
    judgment = pl.col("judgment_id")

    def numbered(prefix: pl.Expr) -> pl.Expr:
        return judgment.str.starts_with(prefix) & judgment.str.strip_prefix(prefix).str.contains(
            r"^[0-9]+$"
        )

    named = numbered(source.str.split("/").list.last() + ":")
    return (named | numbered(source + ":")).fill_null(False)


def path_line_ids(judgments: pl.DataFrame) -> pl.DataFrame:
    """`judgments` with each id ingest made from its file's name and line made from its path
    (`source_file`) and line: what the landing zone's daily and live layers key a judgment by,
    so that the next day's `labels.csv` in another folder is not this one. The path is the
    file's place in the landing zone, which moving the zone does not change."""
    return judgments.with_columns(
        judgment_id=pl.when(named_by_line())
        .then(
            pl.col("source_file").str.replace_all("\\", "/", literal=True)
            + ":"
            + pl.col("judgment_id").str.extract(r":([0-9]+)$")
        )
        .otherwise(pl.col("judgment_id"))
    )


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
        return number_text(value), True
    return json.dumps(value, ensure_ascii=False), False


def parse_table(
    data: bytes,
    *,
    format: str,
    source_file: str,
    mapping: ColumnMapping | None = None,
    project: str | None = None,
    label_set: list[str] | None = None,
    scale: RatingScale | None = None,
    now: datetime | None = None,
    max_field_bytes: int = 4096,
    kind: str | None = None,
    coordinates: str | None = None,
) -> IngestResult:
    """Parse a CSV, TSV, Parquet or JSON Lines table of judgments.

    `kind`: every row's kind; None reads each row's `kind` column, or, without one, infers
    the kind from the value columns present (`label` → categorical). Values of list and
    struct kinds are typed in Parquet and JSON Lines and JSON text in CSV/TSV cells.

    `coordinates`: the unit the project declares for its boxes (pixel or percent), that of
    each boxes row that gives none (`values.declared_unit`): its boxes are checked against
    the image and stored in it. None: such a row's boxes are not checked.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if coordinates is not None and coordinates not in COORDINATE_UNITS:
        raise ValueError(
            f"unknown unit {coordinates!r}; expected one of {', '.join(COORDINATE_UNITS)}"
        )
    mapping = mapping or ColumnMapping()
    if not data.strip():
        raise UnreadableFileError(f"{source_file}: empty file")
    source = format
    if format in ("csv", "tsv"):
        frame = read_delimited(data, format=format, source_file=source_file)
        frame = frame.with_columns(_line=pl.int_range(2, pl.len() + 2, dtype=pl.Int64))
        # A blank line (or a row of empty cells, as spreadsheets save them) holds no row, as
        # a blank line in JSON Lines holds none; later rows keep their numbers.
        cells = [name for name in frame.columns if not name.startswith("_")]
        if cells:
            frame = frame.filter(~pl.all_horizontal(pl.col(cells).is_null()))
        staged = _stage_frame(frame, mapping, source_file, typed=False, kind=kind, unit=coordinates)
    elif format == "parquet":
        try:
            frame = pl.read_parquet(data)
        except Exception as error:
            raise UnreadableFileError(f"{source_file}: unreadable parquet: {error}") from error
        frame = frame.with_columns(
            _line=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
            _bad_bytes=pl.lit(False),
            _bad_bytes_field=pl.lit(None, pl.String),
            _extra_fields=pl.lit(False),
        )
        staged = _stage_frame(frame, mapping, source_file, typed=True, kind=kind, unit=coordinates)
    elif format == "jsonl":
        records, failures = _read_lines(data, source_file)
        staged = _stage_records(
            records, failures, mapping, kind=kind, source_file=source_file, unit=coordinates
        )
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
    staged = _spans_inside_text(staged)
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
        scale=scale,
        now=now,
        max_field_bytes=max_field_bytes,
        source=source,
        source_file=source_file,
    )


def check_complete(data: bytes, *, separator: bytes, source_file: str) -> None:
    """Raise when delimited `data` ends mid-record: no final newline and either a quote left
    open or a last line shorter than the header. Such a file is being written or was cut, and
    read as it is its last row would be quarantined for a wrong type rather than reported.

    A last record cut exactly after a whole field count cannot be told from a complete one.
    """
    if not data or data.endswith(b"\n"):
        return
    start = data.rfind(b"\n")
    if start < 0:
        return
    line = start + 1
    number = data.count(b"\n", 0, start) + 2
    if data.count(b'"') % 2:
        raise UnreadableFileError(
            f"{source_file}: file ends mid-record (line {number}: a quote left open at the end "
            "of the file); it is still being written or was cut short"
        )
    delimiter = separator.decode()
    header_end = data.find(b"\n")
    try:
        header = next(
            csv.reader([data[:header_end].decode("utf-8", "replace")], delimiter=delimiter)
        )
        last = next(csv.reader([data[line:].decode("utf-8", "replace")], delimiter=delimiter), [])
    except csv.Error:
        # A stray carriage return inside a line: which record is cut cannot be told here, and
        # the reader quarantines what it cannot read row by row.
        return
    if last and len(last) < len(header):
        raise UnreadableFileError(
            f"{source_file}: file ends mid-record (line {number}: {len(last)} of "
            f"{len(header)} fields and no final newline); it is still being written or was "
            "cut short"
        )


def read_delimited(data: bytes, *, format: str, source_file: str) -> pl.DataFrame:
    """The rows of CSV/TSV `data` as text, each with `_bad_bytes` (a byte that is not UTF-8,
    read as U+FFFD) and `_extra_fields` (text past the header's last field, cut off).
    UnreadableFileError naming `source_file` when the file cannot be read as a table."""
    separator = b"\t" if format == "tsv" else b","
    check_encoding(data, source=source_file, error=UnreadableFileError, fmt=format)
    check_column_count(data, separator=separator, source=source_file, error=UnreadableFileError)
    check_complete(data, separator=separator, source_file=source_file)
    ragged = False
    try:
        try:
            frame = pl.read_csv(
                data, separator=separator.decode(), infer_schema=False, encoding="utf8-lossy"
            )
            return _flag_bad_bytes(frame, data, separator=separator, ragged=ragged).with_columns(
                _extra_fields=pl.lit(False)
            )
        except pl.exceptions.ComputeError as error:
            if "more fields" not in str(error):
                raise
        # Only a file with a row wider than its header gets here: it is read a second time,
        # cut to the header, and the rows that lost text are marked.
        ragged = True
        frame = pl.read_csv(
            data,
            separator=separator.decode(),
            infer_schema=False,
            encoding="utf8-lossy",
            truncate_ragged_lines=True,
        )
    except Exception as error:
        text = io.StringIO(data.decode("utf-8", "replace"), newline="")
        found = first_bad_record(text, separator=separator.decode())
        if found is not None:
            raise UnreadableFileError(f"{source_file}: {found}") from error
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnreadableFileError(f"{source_file}: unreadable {format}: {first}") from error
    widths = _extra_field_rows(data, separator=separator.decode())
    if len(widths) != frame.height:
        raise UnreadableFileError(
            f"{source_file}: unreadable {format}: rows with more fields than the header, "
            "which the reader could not match to their records"
        )
    return _flag_bad_bytes(frame, data, separator=separator, ragged=ragged).with_columns(
        _extra_fields=pl.Series(widths, dtype=pl.Boolean)
    )


_REPLACEMENT = "\ufffd"
# What stands for a byte that is not UTF-8 when the file also writes U+FFFD itself: a
# noncharacter, which no export has reason to hold.
_NOT_UTF8_MARK = "\U0010ffff"
# A byte that is not UTF-8, as the `surrogateescape` error handler decodes it.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _flag_bad_bytes(
    frame: pl.DataFrame, data: bytes, *, separator: bytes, ragged: bool
) -> pl.DataFrame:
    """`frame` (`data` read with utf8-lossy decoding, which turns each byte that is not UTF-8
    into U+FFFD) with `_bad_bytes`. A U+FFFD the file writes itself is a valid character (text
    an upstream tool already mangled), not a bad byte: only when the file holds one is it read
    again with the bad bytes, if any, marked apart."""

    def holding(text: str, table: pl.DataFrame) -> pl.DataFrame:
        # The first column, in the file's order, whose cell holds one: the field named.
        names = [name for name, dtype in table.schema.items() if dtype == pl.String]
        first = pl.coalesce(
            pl.lit(None, pl.String),
            *(pl.when(pl.col(n).str.contains(text, literal=True)).then(pl.lit(n)) for n in names),
        )
        return table.select(_bad_bytes=first.is_not_null(), _bad_bytes_field=first)

    flags = holding(_REPLACEMENT, frame)
    if not flags.get_column("_bad_bytes").any() or _REPLACEMENT.encode() not in data:
        return frame.with_columns(flags)
    marked, count = _ESCAPED_BYTE.subn(_NOT_UTF8_MARK, data.decode("utf-8", "surrogateescape"))
    if not count:
        return frame.with_columns(
            _bad_bytes=pl.lit(False), _bad_bytes_field=pl.lit(None, pl.String)
        )
    again = pl.read_csv(
        marked.encode(),
        separator=separator.decode(),
        infer_schema=False,
        truncate_ragged_lines=ragged,
    )
    return frame.with_columns(holding(_NOT_UTF8_MARK, again))


# The column `read_landing_table` gives each row: why the reader could not read it whole.
READ_ERROR = "_read_error"


def read_landing_table(path: str, data: bytes, *, columns: Sequence[str]) -> pl.DataFrame:
    """The rows of a CSV or Parquet table the landing zone holds at `path` (a gold set, a
    telemetry drop) as written, CSV cells as text, each with `READ_ERROR`: `non_utf8` or
    `extra_fields` for a row the reader could not read whole, null for the others. An emptied
    file is no rows (of `columns`, as text), as an emptied export is. UnreadableFileError
    naming the file when it cannot be read as a table or names one of `columns` twice."""
    if path.endswith(".parquet"):
        try:
            frame = pl.read_parquet(data)
        except Exception as error:
            raise UnreadableFileError(f"{path}: unreadable parquet: {error}") from error
        return frame.with_columns(pl.lit(None, pl.String).alias(READ_ERROR))
    if not data.strip():
        return pl.DataFrame(schema=dict.fromkeys([*columns, READ_ERROR], pl.String))
    frame = read_delimited(data, format="csv", source_file=path)
    repeated = repeated_column(frame.columns, columns)
    if repeated is not None:
        raise UnreadableFileError(f"{path}: {repeated}")
    return frame.select(
        pl.exclude("_bad_bytes", "_bad_bytes_field", "_extra_fields"),
        pl.when(pl.col("_bad_bytes"))
        .then(pl.lit(NON_UTF8))
        .when(pl.col("_extra_fields"))
        .then(pl.lit(EXTRA_FIELDS))
        .alias(READ_ERROR),
    )


def _extra_field_rows(data: bytes, *, separator: str) -> list[bool]:
    """For each record after the header of delimited `data`, whether it holds text in a field
    past the header's last (a trailing empty field loses nothing)."""
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    width = len(next(reader, []))
    return [any(field.strip() for field in record[width:]) for record in reader]


def _table_kind(columns: list[str], mapping: ColumnMapping, kind: str | None) -> str | None:
    """The kind of every row, or None when each row's `kind` column says."""
    if kind is not None:
        return kind
    if mapping.kind and mapping.kind in columns:
        return None
    if mapping.label in columns:
        return DEFAULT_KIND
    present = [
        name
        for name, value_columns in VALUE_COLUMNS.items()
        if name != DEFAULT_KIND
        and all(getattr(mapping, c) and getattr(mapping, c) in columns for c in value_columns)
    ]
    return present[0] if len(present) == 1 else DEFAULT_KIND


def _value_rows(
    cells: list[dict[str, Any]], kinds: list[str | None], *, text_cells: bool
) -> pl.DataFrame:
    """The kind columns of each row (canonical names), and the error of a wrong shape."""
    rows: list[dict[str, Any]] = []
    for raw, kind in zip(cells, kinds, strict=True):
        row: dict[str, Any] = {"kind": kind}
        if kind in KINDS and kind != DEFAULT_KIND:
            try:
                row.update(normalize(kind, raw, text_cells=text_cells))
            except ValueShapeError as error:
                row.update(
                    label_error=str(error), error_field=error.field, error_reason=error.reason
                )
        rows.append(row)
    schema = {
        "kind": pl.String(),
        "label_error": pl.String(),
        "error_field": pl.String(),
        "error_reason": pl.String(),
        **{name: dtype for name, dtype in VALUE_DTYPES.items() if name != "label"},
    }
    return pl.DataFrame(rows, schema=schema)


# The staged columns of a boxes row's context, and the error and field of one not kept.
_BOX_CONTEXT: dict[str, pl.DataType] = {
    **{name: CONTEXT_DTYPES[name] for name in BOX_CONTEXT},
    "_context_error": pl.String(),
    "_context_field": pl.String(),
}


def _box_contexts(cells: list[dict[str, Any]], kinds: list[str | None]) -> pl.DataFrame:
    """`_box_context` of each boxes row (the others: nulls), with the error of one not kept."""
    rows: list[dict[str, Any]] = []
    for raw, kind in zip(cells, kinds, strict=True):
        if kind != "boxes":
            rows.append({})
            continue
        try:
            rows.append(box_context(raw))
        except ValueShapeError as error:
            rows.append({"_context_error": str(error), "_context_field": error.field})
    return pl.DataFrame(rows, schema=_BOX_CONTEXT)


def _with_box_context(values: pl.DataFrame, context: pl.DataFrame) -> pl.DataFrame:
    """`values` with the box context columns; a context error stands where the value has none,
    so a row is refused for its value first."""
    refused = pl.col("label_error").is_null() & pl.col("_context_error").is_not_null()
    return (
        pl.concat([values, context], how="horizontal")
        .with_columns(
            label_error=pl.when(refused).then("_context_error").otherwise("label_error"),
            error_field=pl.when(refused).then("_context_field").otherwise("error_field"),
        )
        .drop("_context_error", "_context_field")
    )


def _stage_frame(
    frame: pl.DataFrame,
    mapping: ColumnMapping,
    source_file: str,
    *,
    typed: bool,
    kind: str | None = None,
    unit: str | None = None,
) -> pl.DataFrame:
    read = [column for column in vars(mapping).values() if isinstance(column, str)]
    repeated = repeated_column(frame.columns, read)
    if repeated is not None:
        raise UnreadableFileError(f"{source_file}: {repeated}")
    table_kind = _table_kind(frame.columns, mapping, kind)
    required = [mapping.task_id, mapping.annotator_id, mapping.submitted_at]
    if table_kind == DEFAULT_KIND:
        required.insert(2, mapping.label)
    elif table_kind is not None:
        required.extend(getattr(mapping, c) for c in VALUE_COLUMNS[table_kind])
    missing = [name for name in required if name not in frame.columns]
    if missing:
        # The reader added the columns named with a leading `_`; the file has only the others.
        have = [name for name in frame.columns if not name.startswith("_")]
        raise UnreadableFileError(
            f"{source_file}: missing column(s) {', '.join(map(repr, missing))}; the file has "
            f"{', '.join(map(repr, have)) or 'no columns'}"
        )

    def column(name: str | None, *, keep_type: bool = False) -> pl.Expr:
        if name is None or name not in frame.columns:
            return pl.lit(None, pl.String)
        dtype = frame.schema[name]
        if keep_type or dtype == pl.String:
            return pl.col(name)
        if dtype.is_nested():
            return pl.col(name).cast(pl.String, strict=False)
        return typed_text(pl.col(name))

    label_dtype = frame.schema.get(mapping.label, pl.String())
    original = [c for c in frame.columns if not c.startswith("_")]
    kinds: list[str | None]
    if table_kind is not None or mapping.kind is None:
        kinds = [table_kind] * frame.height
    else:
        # `_table_kind` says None only when the mapped kind column is present.
        kinds = frame.get_column(mapping.kind).cast(pl.String, strict=False).to_list()
    value_sources = {
        canonical: getattr(mapping, canonical)
        for canonical in VALUE_DTYPES
        if canonical != "label"
        and getattr(mapping, canonical)
        and getattr(mapping, canonical) in frame.columns
    }
    context_sources = {
        name: source
        for name in ("coordinates", "image_width", "image_height")
        if (source := getattr(mapping, name)) and source in frame.columns
    }
    context_cells = (
        frame.select(
            [pl.col(source).alias(name) for name, source in context_sources.items()]
        ).to_dicts()
        if context_sources
        else [{}] * frame.height
    )
    if unit is not None:
        context_cells = [declared_unit(context, unit) for context in context_cells]
    if table_kind == DEFAULT_KIND or not value_sources:
        values = _value_rows([{}] * frame.height, kinds, text_cells=not typed)
    else:
        cells = frame.select(
            [pl.col(source).alias(canonical) for canonical, source in value_sources.items()]
        ).to_dicts()
        # A box is checked against the image its row says it is measured on.
        cells = [
            {**cell, **context} if kind == "boxes" else cell
            for cell, context, kind in zip(cells, context_cells, kinds, strict=True)
        ]
        values = _value_rows(cells, kinds, text_cells=not typed)
    values = _with_box_context(values, _box_contexts(context_cells, kinds))
    staged = frame.select(
        judgment_id=column(mapping.judgment_id),
        task_id=column(mapping.task_id),
        project=column(mapping.project),
        annotator_id=column(mapping.annotator_id),
        label=column(mapping.label),
        label_error=_typed_label_error(mapping.label, label_dtype),
        submitted_at=column(mapping.submitted_at, keep_type=typed),
        duration_s=column(mapping.duration_s, keep_type=typed),
        source_line=pl.col("_line"),
        reason=pl.when(pl.col("_bad_bytes"))
        .then(pl.lit(NON_UTF8))
        .when(pl.col("_extra_fields"))
        .then(pl.lit(EXTRA_FIELDS)),
        field=pl.when(pl.col("_bad_bytes")).then(pl.col("_bad_bytes_field")),
        record=pl.struct(original),
        payload=column(mapping.payload),
    )
    label_error = staged.get_column("label_error")
    values = values.with_columns(
        label_error=pl.when(pl.col("kind") == DEFAULT_KIND)
        .then(label_error)
        .otherwise(pl.col("label_error"))
    )
    for canonical in _ID_FIELDS:
        name = getattr(mapping, canonical)
        if name is None or name not in frame.columns:
            continue
        dtype = frame.schema[name]
        expected = f"{canonical}: expected a string or a number, got "
        if dtype.is_float():
            shown = frame.select(non_finite_text(pl.col(name))).to_series()
            bad = shown.is_not_null()
            message = pl.lit(expected) + pl.lit(shown)
        elif dtype.is_nested() or dtype == pl.Boolean:
            bad = frame.get_column(name).is_not_null()
            message = pl.lit(
                expected + ("a boolean" if dtype == pl.Boolean else "an object or a list")
            )
        else:
            continue
        values = values.with_columns(
            label_error=pl.when(bad).then(message).otherwise(pl.col("label_error")),
            error_field=pl.when(bad).then(pl.lit(canonical)).otherwise(pl.col("error_field")),
            error_reason=pl.when(bad).then(None).otherwise(pl.col("error_reason")),
        )
    return pl.concat([staged.drop("label_error"), values], how="horizontal")


def _typed_label_error(name: str, dtype: pl.DataType) -> pl.Expr:
    """Why each categorical label of the typed column `name` is refused, as the commands say
    it (`values.normalize`): a list or struct, or a float that is NaN or infinite (spelled
    "NaN", every such label would be one class). Null for the others."""
    if dtype.is_nested():
        return pl.lit("not a scalar")
    if dtype.is_float():
        return pl.lit("label: expected a scalar, got ") + non_finite_text(pl.col(name))
    return pl.lit(None, pl.String)


def _outside_text(spans: Any, payload: str | None, *, column: str | None) -> dict[str, Any]:
    """The error columns of a spans row one of whose `spans` ends past its task's text (the
    document of `payload`, read from `column`, or from the data object's key when None), else
    nothing."""
    if not spans:
        return {}
    text, key = document_and_key(payload)
    name = ".".join(part for part in (column, key) if part) or "payload"
    past = span_past_text(spans, text, name=name)
    if past is None:
        return {}
    return {"label_error": past[1], "error_field": past[0], "error_reason": OUTSIDE_TEXT}


def _spans_inside_text(staged: pl.DataFrame) -> pl.DataFrame:
    """`staged` with each spans row refused (`_outside_text`) whose spans end past its task's
    text: the row's `payload`, else the first the task has in the file."""
    document = pl.coalesce(
        pl.col("payload"), pl.col("payload").drop_nulls().first().over("task_id")
    )
    end = pl.col("spans").list.eval(pl.element().struct.field("end")).list.max()
    candidates = (
        staged.with_row_index("_row")
        .with_columns(_document=document)
        .filter(
            (pl.col("kind") == "spans")
            & pl.col("reason").is_null()
            & pl.col("label_error").is_null()
            & pl.col("spans").is_not_null()
            & pl.col("_document").is_not_null()
        )
        # Only a data object, or a plain text some span ends past, needs a closer look: the
        # bulk (spans inside their text) is passed here, without a Python step per row.
        .filter(
            pl.col("_document").str.strip_chars_start().str.starts_with("{")
            | (end > pl.col("_document").str.len_chars())
        )
    )
    refused = [
        {"_row": row, **error}
        for row, spans, payload in candidates.select("_row", "spans", "_document").iter_rows()
        if (error := _outside_text(spans, payload, column="payload"))
    ]
    if not refused:
        return staged
    errors = pl.DataFrame(
        refused,
        schema={
            "_row": pl.UInt32,
            "label_error": pl.String,
            "error_field": pl.String,
            "error_reason": pl.String,
        },
    )
    found = staged.with_row_index("_row").join(
        errors, on="_row", how="left", suffix="_text", maintain_order="left"
    )
    return found.with_columns(
        [pl.coalesce(f"{name}_text", name).alias(name) for name in errors.columns[1:]]
    ).select(staged.columns)


def _key_holding_bad_bytes(raw: bytes) -> str | None:
    """The top-level key of JSON line `raw` whose value (or the key itself) holds a byte that
    is not UTF-8, as a CSV row names its column; None when the line is not an object."""
    text = raw.decode("utf-8", "surrogateescape")
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    for key, value in record.items():
        shown = key + json.dumps(value, ensure_ascii=False)
        if _ESCAPED_BYTE.search(shown):
            return key
    return None


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
                    "field": _key_holding_bad_bytes(raw),
                    "record": raw.decode("utf-8", "replace")[:2000],
                }
            )
            continue
        try:
            record = STRICT_JSON.decode(text)
        except KeyGivenTwice as twice:
            failures.append(
                {
                    "source_line": number,
                    "reason": MALFORMED_JSON,
                    "field": twice.key,
                    "error_field": twice.key,
                    "label_error": str(twice),
                    "record": text[:2000],
                }
            )
            continue
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
        if lone_surrogate(text, record):
            failures.append({"source_line": number, "reason": NON_UTF8, "record": text[:2000]})
            continue
        records.append((number, record))
    if not records and failures:
        reasons = ", ".join(sorted({f["reason"] for f in failures}))
        raise UnreadableFileError(f"{source_file}: no line could be read ({reasons})")
    return records, failures


def _failure_rows(failures: list[dict]) -> list[dict]:
    return [{**dict.fromkeys(_STAGED), **failure} for failure in failures]


def _stage_records(
    records: list[tuple[int, dict]],
    failures: list[dict],
    mapping: ColumnMapping,
    *,
    kind: str | None = None,
    source_file: str = "",
    unit: str | None = None,
) -> pl.DataFrame:
    rows = _failure_rows(failures)
    columns = sorted({key for _, record in records for key in record})
    table_kind = _table_kind(columns, mapping, kind)
    if table_kind is not None and table_kind != DEFAULT_KIND:
        missing = [
            getattr(mapping, c) or c
            for c in VALUE_COLUMNS[table_kind]
            if not getattr(mapping, c) or getattr(mapping, c) not in columns
        ]
        if missing:
            raise UnreadableFileError(
                f"{source_file}: missing column(s) {', '.join(map(repr, missing))} for kind "
                f"{table_kind!r}; the file has {', '.join(map(repr, columns)) or 'no columns'}"
            )
    for number, record in records:
        row: dict[str, Any] = {
            "source_line": number,
            "record": json.dumps(record, ensure_ascii=False),
        }
        id_error: tuple[str, str] | None = None
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
            raw_value = record.get(name) if name else None
            row[canonical] = _text(raw_value)[0]
            refused = not_an_id(raw_value) if canonical in _ID_FIELDS else None
            if refused is not None and id_error is None:
                id_error = (canonical, f"{canonical}: {refused}")
        row_kind = table_kind
        if row_kind is None:
            row_kind = _text(record.get(mapping.kind))[0] if mapping.kind else None
        row["kind"] = row_kind
        context: dict[str, Any] = {}
        if row_kind == "boxes":
            context = {
                name: record.get(source)
                for name in ("coordinates", "image_width", "image_height")
                if (source := getattr(mapping, name))
            }
            context = declared_unit(context, unit)
            try:
                row.update(box_context(context))
            except ValueShapeError as error:
                row["label_error"], row["error_field"] = str(error), error.field
        if row_kind == DEFAULT_KIND or row_kind is None:
            row.update(_label_cell(record.get(mapping.label)))
        elif row_kind in KINDS:
            raw = {
                canonical: record.get(getattr(mapping, canonical))
                for canonical in VALUE_COLUMNS[row_kind]
                if getattr(mapping, canonical)
            }
            try:
                row.update(normalize(row_kind, {**raw, **context}))
            except ValueShapeError as error:
                row["label_error"] = str(error)
                row["error_field"] = error.field
                row["error_reason"] = error.reason
        if id_error is not None:
            row["error_field"], row["label_error"] = id_error
            row["error_reason"] = None
        rows.append(row)
    return pl.DataFrame(rows, schema=_STAGED)


# The fields that name a judgment, task, project or annotator: a string or a number. An
# object's or a list's JSON text is no id (`{"id": 5, "email": ...}` would put the address
# in every judgment's annotator id, and change with it), nor is true or false.
_ID_FIELDS = ("judgment_id", "task_id", "project", "annotator_id")


def _label_cell(value: Any) -> dict[str, Any]:
    """The staged `label` and `label_error` of a categorical label as JSON gives it: refused
    when it is a container, or a number that is NaN or infinite (as `values.normalize`
    refuses it for the commands: "nan" would be one class of every such label)."""
    label, scalar = _text(value)
    if not scalar:
        return {"label": label, "label_error": "not a scalar"}
    if isinstance(value, float) and not math.isfinite(value):
        return {"label": label, "label_error": f"label: expected a scalar, got {value!r:.80}"}
    return {"label": label, "label_error": None}


def _label_attribute(record: dict) -> str | None:
    for key in record:
        if key.endswith("-metadata") and key[: -len("-metadata")] in record:
            return key[: -len("-metadata")]
    return None


def _answer_label(content: Any) -> Any:
    """The label inside a worker's `answerContent` (`{"crowd-...": {"label": ...}}`), as
    the JSON gives it."""
    if isinstance(content, dict):
        if "label" in content:
            return content["label"]
        for value in content.values():
            label = _answer_label(value)
            if label is not None:
                return label
    return None


# Ground Truth's built-in task types this ingest reads; another `type` (semantic
# segmentation, video and point-cloud tasks, `groundtruth/custom` workflows) is quarantined
# as ``unsupported_kind`` naming it.
_SAGEMAKER_TYPES = frozenset(
    {
        "groundtruth/image-classification",
        "groundtruth/text-classification",
        "groundtruth/image-classification-multilabel",
        "groundtruth/text-classification-multilabel",
        "groundtruth/object-detection",
        "groundtruth/text-span",
    }
)


def _sagemaker_kind(metadata: dict, value: Any) -> str | None:
    """The kind of a Ground Truth label attribute, from the metadata `type` or the shape.

    Bounding box (`groundtruth/object-detection`): `{"annotations": [{"class_id", "left",
    "top", "width", "height"}], "image_size": [{"width", "height", "depth"}]}` with the
    class names in the metadata `class-map`. Named entities (`groundtruth/text-span`):
    `{"annotations": {"entities": [{"startOffset", "endOffset", "label"}], "labels": [...]}}`.
    Multi-label classification (`...-classification-multilabel`): a list of class ids with
    `class-map`. Without a `type`, single-label classification unless the shape says
    otherwise; a `type` outside `_SAGEMAKER_TYPES` is None (not supported).
    """
    task_type = str(metadata.get("type") or "")
    if task_type and task_type not in _SAGEMAKER_TYPES:
        return None
    annotations = value.get("annotations") if isinstance(value, dict) else None
    if task_type.endswith("object-detection") or isinstance(annotations, list):
        return "boxes"
    if task_type.endswith("text-span") or isinstance(annotations, dict):
        return "spans"
    if task_type.endswith("multilabel") or isinstance(value, list):
        return "multilabel"
    return DEFAULT_KIND


def _class_name(class_map: Any, class_id: Any) -> str | None:
    if isinstance(class_map, dict) and str(class_id) in class_map:
        return _text(class_map[str(class_id)])[0]
    return _text(class_id)[0]


def _shape_error(kind: str, error: ValueShapeError | None = None) -> dict[str, Any]:
    field = error.field if error else VALUE_COLUMNS[kind][0]
    message = str(error) if error else f"{field}: not a {kind} value"
    reason = error.reason if error else None
    return {"kind": kind, "label_error": message, "error_field": field, "error_reason": reason}


def _boxes_from(items: Any, class_map: Any, *, label_key: str) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise ValueShapeError("boxes", "boxes: expected a list of boxes")
    boxes = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueShapeError("boxes", f"boxes: expected an object, got {item!r:.80}")
        try:
            left, top = float(item["left"]), float(item["top"])
            width, height = float(item["width"]), float(item["height"])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ValueShapeError(
                "boxes", f"boxes: need left, top, width, height: {item!r:.120}"
            ) from None
        label = (
            _class_name(class_map, item.get("class_id"))
            if label_key == "class_id"
            else _text(item.get("label"))[0]
        )
        boxes.append(
            {
                "label": label,
                "x_min": left,
                "y_min": top,
                "x_max": left + width,
                "y_max": top + height,
            }
        )
    return boxes


def _spans_from(entities: Any) -> list[dict[str, Any]]:
    if not isinstance(entities, list):
        raise ValueShapeError("spans", "spans: expected a list of entities")
    return [
        {
            "start": e.get("startOffset"),
            "end": e.get("endOffset"),
            "label": e.get("label"),
        }
        if isinstance(e, dict)
        else e
        for e in entities
    ]


def _pixel_boxes(boxes: list[dict[str, Any]], width: Any, height: Any) -> dict[str, Any]:
    """The kind columns of Ground Truth boxes: pixels of an image of `width` x `height`."""
    given = {"coordinates": "pixel", "image_width": width, "image_height": height}
    value = normalize("boxes", {"boxes": boxes, **given})
    return {
        "kind": "boxes",
        **value,
        "coordinates": "pixel",
        "image_width": image_size("image_width", width),
        "image_height": image_size("image_height", height),
    }


def _consolidated_value(kind: str, value: Any, metadata: dict) -> dict[str, Any]:
    """The kind columns of Ground Truth's consolidated label (boxes in pixels)."""
    class_map = metadata.get("class-map")
    try:
        if kind == "boxes":
            if not isinstance(value, dict):
                return _shape_error(kind)
            boxes = _boxes_from(value.get("annotations"), class_map, label_key="class_id")
            size = value.get("image_size")
            size = size[0] if isinstance(size, list) and size else size
            size = size if isinstance(size, dict) else {}
            return _pixel_boxes(boxes, size.get("width"), size.get("height"))
        if kind == "spans":
            annotations = value.get("annotations") if isinstance(value, dict) else None
            entities = annotations.get("entities") if isinstance(annotations, dict) else None
            return {"kind": kind, **normalize(kind, {"spans": _spans_from(entities)})}
        if not isinstance(value, list):
            return _shape_error(kind)
        labels = [_class_name(class_map, class_id) for class_id in value]
        return {"kind": kind, **normalize(kind, {"labels": labels})}
    except ValueShapeError as error:
        return _shape_error(kind, error)


def _find(content: Any, key: str) -> Any:
    """The first value under `key` anywhere in a worker's answer content."""
    if isinstance(content, dict):
        if key in content:
            return content[key]
        for value in content.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def _answer_value(kind: str, content: Any) -> dict[str, Any]:
    """The kind columns of one worker's answer (`answerContent` of the worker responses):
    `boundingBoxes` [{label, left, top, width, height}] with `inputImageProperties`,
    `entities` [{startOffset, endOffset, label}], or `labels` [names]."""
    try:
        if kind == "boxes":
            boxes = _boxes_from(_find(content, "boundingBoxes"), None, label_key="label")
            size = _find(content, "inputImageProperties") or {}
            width = size.get("width") if isinstance(size, dict) else None
            height = size.get("height") if isinstance(size, dict) else None
            return _pixel_boxes(boxes, width, height)
        if kind == "spans":
            return {
                "kind": kind,
                **normalize(kind, {"spans": _spans_from(_find(content, "entities"))}),
            }
        return {"kind": kind, **normalize(kind, {"labels": _find(content, "labels")})}
    except ValueShapeError as error:
        return _shape_error(kind, error)


def parse_sagemaker(
    data: bytes,
    *,
    source_file: str,
    project: str | None = None,
    label_attribute: str | None = None,
    label_set: list[str] | None = None,
    scale: RatingScale | None = None,
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
        refused_id = not_an_id(record.get("id"))
        task_error = (
            {}
            if refused_id is None
            else {
                "label_error": f"task_id: {refused_id}",
                "error_field": "task_id",
                "error_reason": None,
            }
        )
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
        task_payload = json.dumps(payload, ensure_ascii=False)
        task_rows.append(
            {
                "task_id": task_id,
                "project": default_project,
                "payload": task_payload,
                "created_at": None,
                "source_line": number,
            }
        )
        kind = _sagemaker_kind(metadata, record.get(attribute))
        if kind is None:
            rows.append(
                {
                    **base,
                    "judgment_id": f"sagemaker:{metadata.get('job-name')}:{task_id}",
                    "reason": UNSUPPORTED_KIND,
                    "field": f"type={metadata.get('type')}",
                }
            )
            continue
        responses = metadata.get("worker-responses")
        if isinstance(responses, list) and responses:
            for position, answer in enumerate(responses):
                answer = answer if isinstance(answer, dict) else {}
                row = {
                    **base,
                    "judgment_id": f"sagemaker:{metadata.get('job-name')}:{task_id}:{position}",
                    "annotator_id": _text(answer.get("workerId"))[0],
                    "submitted_at": _text(answer.get("submissionTime"))[0],
                    "duration_s": _text(answer.get("timeSpentInSeconds"))[0],
                    "record": json.dumps(answer, ensure_ascii=False),
                }
                if kind == DEFAULT_KIND:
                    row.update(_label_cell(_answer_label(answer.get("answerContent", answer))))
                else:
                    row.update(_answer_value(kind, answer.get("answerContent", answer)))
                    if kind == "spans" and row["label_error"] is None:
                        row.update(_outside_text(row["spans"], task_payload, column=None))
                worker = not_an_id(answer.get("workerId"))
                if worker is not None:
                    row.update(
                        error_field="annotator_id",
                        label_error=f"annotator_id: {worker}",
                        error_reason=None,
                    )
                rows.append({**row, **task_error})
            continue
        job = metadata.get("job-name")
        if str(metadata.get("human-annotated")).strip().lower() in ("no", "false"):
            rows.append(
                {
                    **base,
                    "judgment_id": f"sagemaker:{job}:{task_id}",
                    "reason": MACHINE_LABEL,
                    "field": f"{attribute}-metadata.human-annotated",
                }
            )
            continue
        value_columns: dict[str, Any] = {}
        label_cell: dict[str, Any] = {"label": None, "label_error": None}
        if kind == DEFAULT_KIND:
            class_name = metadata.get("class-name")
            if class_name is None and isinstance(metadata.get("class-map"), dict):
                class_name = metadata["class-map"].get(str(record.get(attribute)))
            label_cell = _label_cell(class_name)
        else:
            value_columns = _consolidated_value(kind, record.get(attribute), metadata)
            if kind == "spans" and value_columns.get("label_error") is None:
                value_columns.update(
                    _outside_text(value_columns.get("spans"), task_payload, column=None)
                )
        created, _ = _text(metadata.get("creation-date"))
        if (
            created is not None
            and not any(created.endswith(s) for s in ("Z", "z"))
            and "+" not in created[10:]
            and "-" not in created[10:]
        ):
            created = created + "+00:00"
        rows.append(
            {
                **base,
                "judgment_id": f"sagemaker:{job}:{task_id}",
                "annotator_id": f"sagemaker:{job}" if job else None,
                **label_cell,
                "submitted_at": created,
                **value_columns,
                **task_error,
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
        scale=scale,
        now=now,
        max_field_bytes=max_field_bytes,
        source="sagemaker-gt",
        source_file=source_file,
    )
