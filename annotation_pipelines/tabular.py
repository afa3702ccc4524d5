"""Read a user's table (CSV, TSV, Parquet, JSON Lines; the text ones gzipped too) with errors
that name file, row and column.

Shared by every command-line entry point so `aggregate`, `agreement`, `forecast` and `ingest`
accept the same formats and fail the same way.

`read_kind_table` reads judgments (or gold) of any annotation kind: each row's value is checked
and brought to the kind's canonical dtype by the same function ingest uses
(`ingest.values.normalize`), and a row of the wrong shape is quarantined with its row number,
field and reason instead of failing the whole file or vanishing. For the kinds whose models
take one judgment per task and annotator (`kinds.ONE_JUDGMENT_PER_ANNOTATOR`), a judgment made
again is resolved as ingest resolves it: the later row in the file is kept and each earlier one
is quarantined as a `duplicate` naming the row that replaced it.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import polars as pl
from polars.datatypes import DataTypeClass

from annotation_pipelines.ingest.connection import first_line
from annotation_pipelines.ingest.ids import (
    non_finite_text,
    not_an_id,
    number_text,
    spelled_as_text,
    typed_text,
)
from annotation_pipelines.ingest.validation import (
    DUPLICATE,
    MALFORMED_JSON,
    MISSING_ANNOTATOR,
    MISSING_FIELD,
    NESTING_TOO_DEEP,
    NUL_BYTE,
    OUTSIDE_SCALE,
    OVERSIZED_RECORD,
    STRICT_JSON,
    WRONG_TYPE,
    KeyGivenTwice,
    cap_raw,
)
from annotation_pipelines.ingest.values import (
    ValueShapeError,
    box_context,
    declared_unit,
    normalize,
)
from annotation_pipelines.kinds import (
    BOX_CONTEXT,
    CONTEXT_DTYPES,
    COORDINATE_UNITS,
    ONE_JUDGMENT_PER_ANNOTATOR,
    VALUE_COLUMNS,
    VALUE_DTYPES,
    WINNERS,
    blank,
    blank_text,
    box_task_units,
    boxes_in_task_unit,
    check_kind,
)
from annotation_pipelines.scale import RatingScale

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class InputError(ValueError):
    """Bad user input; the message names the file and, where known, the row and column."""


class GoldJudgesNothing(InputError):
    """A `--gold` file none of whose tasks INPUT judged: it would anchor nothing, and the
    results would equal a run without it; a usage error of the option."""


@dataclass(frozen=True)
class GoldCoverage:
    """How much of a `--gold` file a command's INPUT judged: its `tasks`, and of them
    `in_input`, the ones INPUT has a valid judgment of (only those anchor the fit)."""

    tasks: int
    in_input: int


# A text export compressed for transfer (`answers.csv.gz`) is read as what it holds, as ingest
# reads it; Parquet compresses its own columns, so a gzipped one is not taken.
GZIP_SUFFIX = ".gz"


def _gzipped(path: Path) -> bool:
    return path.suffix.lower() == GZIP_SUFFIX


def _format_suffix(path: Path) -> str:
    """The suffix that names `path`'s format: `.csv` for `answers.csv` and `answers.csv.gz`."""
    if _gzipped(path):
        inner = path.with_suffix("").suffix.lower()
        return inner if inner != ".parquet" else path.suffix.lower()
    return path.suffix.lower()


def read_input(path: str | Path) -> bytes:
    """The bytes of the table at `path`, decompressed when it is gzipped; InputError naming the
    file when it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read ({first_line(error)})") from error
    return unpacked(data, name=str(path))


def unpacked(data: bytes, *, name: str) -> bytes:
    """`data` read from the file `name`, decompressed when the name says it is gzipped (as a
    landing zone file is read); InputError naming the file when it is not gzip."""
    if not _gzipped(Path(name)):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise InputError(f"{name}: not a readable gzip file ({first_line(error)})") from error


def _open_input(path: Path) -> IO[bytes]:
    return io.BytesIO(read_input(path)) if _gzipped(path) else path.open("rb")


def _open_text(path: Path) -> IO[str]:
    return io.TextIOWrapper(_open_input(path), encoding="utf-8", errors="replace", newline="")


def _csv_source(path: Path) -> Path | bytes:
    """What Polars reads a delimited file from: the file itself unless it must be unpacked."""
    return read_input(path) if _gzipped(path) else path


def _is_empty(path: Path) -> bool:
    """Whether `path` holds no rows at all; a gzipped file is unpacked only as far as its
    first byte (its readers unpack it once, whole)."""
    if not _gzipped(path):
        return path.stat().st_size == 0
    try:
        with gzip.open(path, "rb") as handle:
            return not handle.read(1)
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise InputError(f"{path}: not a readable gzip file ({first_line(error)})") from error


def _delimited_head(source: Path | bytes) -> bytes:
    """The start of a delimited file (`_csv_source`), as far as its header checks read."""
    if isinstance(source, bytes):
        return source[: _HEADER_BYTES + 1]
    with source.open("rb") as handle:
        return handle.read(_HEADER_BYTES + 1)


# A header wider than this is refused before parsing: a million-column CSV would take minutes
# and gigabytes to read only to be useless; no annotation table is anywhere near this wide.
MAX_COLUMNS = 10_000
# The header is looked for within this many bytes (10,000 columns of long names fit).
_HEADER_BYTES = 4 * 1024 * 1024


def check_encoding(
    data: bytes, *, source: object, error: type[InputError] = InputError, fmt: str = "csv"
) -> None:
    """Raise `error` naming `source` when delimited `data` is not text it can read: a UTF-16
    byte order mark (UTF-32 starts with one too; Excel saves "Unicode Text" so, and read as
    UTF-8 it is a header of garbled names), or a Parquet file under a text name or folder
    (read as text it "ends mid-record", as a file still being written does)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(f"{source}: the file is UTF-16 text; save it as UTF-8 (CSV UTF-8)")
    if data.startswith(b"PAR1"):
        raise error(f"{source}: this is a Parquet file, not {fmt} text; read it as parquet")
    # Lines ended by CR alone (Excel for Mac's "CSV (Macintosh)") read as one line: the header
    # would run into the rows and the file be refused for columns named 'label\rt1'.
    if b"\n" not in data and b"\r" in data.rstrip(b"\r"):
        raise error(
            f"{source}: its lines end in a carriage return alone (CR), as Excel for Mac's "
            '"CSV (Macintosh)" saves them; save it as CSV UTF-8, whose lines end in LF or CRLF'
        )


def check_column_count(
    data: bytes,
    *,
    separator: bytes,
    source: object,
    error: type[InputError] = InputError,
) -> None:
    """Raise `error` naming `source` when the header of delimited `data` is too wide."""
    head = data[:_HEADER_BYTES]
    end = head.find(b"\n")
    header = head if end < 0 else head[:end]
    # Separators inside quotes are counted too: an over-estimate only for absurd headers.
    columns = header.count(separator) + 1
    if columns > MAX_COLUMNS or (end < 0 and len(data) > _HEADER_BYTES):
        shown = f"{columns:,}" if end >= 0 else f"more than {columns:,}"
        raise error(
            f"{source}: line 1 (header): {shown} columns; at most {MAX_COLUMNS:,} are accepted"
        )


def position(row: int, line: int | None = None) -> str:
    """Where a row of an input file is, as every command names it: its 1-based data row (a
    CSV's header not counted, as a spreadsheet shows it) and, in a text file, the line it
    starts on (what an editor shows, and ingest's `source_line`): `row 2 (line 3)`."""
    return f"row {row}" if line is None else f"row {row} (line {line})"


def row_lines(path: str | Path, rows: Iterable[int]) -> dict[int, int]:
    """The line each of the 1-based data `rows` of a CSV, TSV or JSON Lines file starts on
    (none for Parquet, which has no lines). One pass up to the last row asked for, made only
    when a row is reported; quoted cells spanning lines are counted right."""
    path = Path(path)
    wanted = set(rows)
    fmt = FORMATS.get(_format_suffix(path))
    if not wanted or fmt is None or fmt == "parquet" or not path.is_file():
        return {}
    with _open_input(path) as handle:
        return _row_lines_in(handle, fmt, wanted)


def data_row_lines(data: bytes, fmt: str, rows: Iterable[int]) -> dict[int, int]:
    """`row_lines` of an export of format `fmt` held in memory (a landing zone's file)."""
    wanted = set(rows)
    if not wanted or fmt not in ("csv", "tsv", "jsonl"):
        return {}
    return _row_lines_in(io.BytesIO(data), fmt, wanted)


def _row_lines_in(handle: IO[bytes], fmt: str, wanted: set[int]) -> dict[int, int]:
    last = max(wanted)
    found: dict[int, int] = {}
    if fmt == "jsonl":
        row = 0
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                row += 1
                if row in wanted:
                    found[row] = number
                if row >= last:
                    break
        return found
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline="")
    reader = csv.reader(text, delimiter="\t" if fmt == "tsv" else ",")
    row, start = -1, 1  # the header is row 0
    try:
        for _record in reader:
            row += 1  # a blank line too: Polars reads it as a row of nulls
            if row in wanted:
                found[row] = start
            if row >= last:
                break
            start = reader.line_num + 1
    except csv.Error:
        pass  # a cell beyond the csv module's limit: the lines found so far stand
    return found


def where(path: str | Path, row: int) -> str:
    """`position` of data row `row` of the file at `path`."""
    return position(row, row_lines(path, [row]).get(row))


def format_of(path: Path) -> str:
    suffix = _format_suffix(path)
    if suffix not in FORMATS:
        gzipped = ", ".join(s + GZIP_SUFFIX for s in FORMATS if s != ".parquet")
        raise InputError(
            f"{path}: unknown format {suffix!r}; expected one of {', '.join(FORMATS)}, "
            f"or a text one gzipped ({gzipped})"
        )
    return FORMATS[suffix]


def read_table(
    path: str | Path,
    *,
    required_columns: Sequence[str] = (),
    string_columns: Sequence[str] = (),
    column_options: Mapping[str, str] | None = None,
    nullable_columns: Sequence[str] = (),
) -> pl.DataFrame:
    """Read `path` by its extension; `string_columns` are read as text, exactly as written.
    A required column may have empty cells only if it is among `nullable_columns`.

    Row numbers in errors are 1-based data rows (the header of a CSV is not counted), which is
    what a person sees when they open the file in a spreadsheet. `column_options` maps a
    required column to the command-line option that named it, for a missing column's error.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    kind = format_of(path)
    if _is_empty(path):
        raise InputError(f"{path}: empty file")
    if kind in ("csv", "tsv"):
        source = _csv_source(path)
        head = _delimited_head(source)
        check_encoding(head, source=path, fmt=kind)
        check_column_count(head, separator=b"\t" if kind == "tsv" else b",", source=path)
    try:
        if kind in ("csv", "tsv"):
            frame = _typed_csv(source, kind=kind, string_columns=string_columns)
        elif kind == "parquet":
            frame = pl.read_parquet(path)
        else:
            frame = _read_jsonl(path)
    except InputError:
        raise
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as error:
        if kind in ("csv", "tsv") and isinstance(error, pl.exceptions.PolarsError):
            raise unreadable_delimited(path, kind, error) from error
        raise InputError(f"{path}: unreadable {kind}: {first_line(error)}") from error
    repeated = repeated_column(frame.columns, [*required_columns, *string_columns])
    if repeated is not None:
        raise InputError(f"{path}: {repeated}")
    missing = [column for column in required_columns if column not in frame.columns]
    if missing:
        raise InputError(_missing_message(path, missing, frame.columns, column_options or {}))
    if frame.height == 0:
        raise InputError(f"{path}: no data rows")
    for column in required_columns:
        if column in nullable_columns:
            continue
        nulls = frame.get_column(column).is_null()
        if nulls.any():
            row = _first_true(nulls)
            raise InputError(f"{path}: {where(path, row)}, column {column!r}: empty value")
    cast = [pl.col(c).cast(pl.String) for c in string_columns if c in frame.columns]
    frame = frame.with_columns(cast) if cast else frame
    for column in string_columns:
        if column in frame.columns and frame.schema[column] == pl.String:
            nul = frame.get_column(column).str.contains("\x00", literal=True).fill_null(False)
            if nul.any():
                row = _first_true(nul)
                raise InputError(
                    f"{path}: {where(path, row)}, column {column!r}: contains a NUL byte"
                )
    return frame


def _typed_csv(source: Path | bytes, *, kind: str, string_columns: Sequence[str]) -> pl.DataFrame:
    def read(infer: int | None) -> pl.DataFrame:
        return pl.read_csv(
            source,
            separator="\t" if kind == "tsv" else ",",
            schema_overrides={column: pl.String for column in string_columns},
            infer_schema_length=infer,
        )

    try:
        return read(10_000)
    except pl.exceptions.ComputeError:
        # Types come from the first 10,000 rows: whole counts for a week of per-minute
        # telemetry, then one fraction, refused a good file. Read again typed from every row
        # (only a file that failed pays for it); a file that still fails is reported as before.
        return read(None)


def _missing_message(
    path: Path, missing: Sequence[str], have: Sequence[str], options: Mapping[str, str]
) -> str:
    """Missing columns, each by the option that named it when one did: the option is what the
    user typed and will change."""
    has = ", ".join(repr(c) for c in have) or "no columns"
    if all(column in options for column in missing):
        named = ", ".join(f"{options[column]} {column!r}" for column in missing)
        plural = "s" if len(missing) > 1 else ""
        return f"{path}: {named}: no such column{plural}; the file has {has}"
    return f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; the file has {has}"


def _first_true(mask: pl.Series) -> int:
    """1-based row of the first true value of a boolean mask that has one."""
    return int(mask.arg_true()[0]) + 1


def _read_jsonl(path: Path) -> pl.DataFrame:
    # Polars' NDJSON reader reports a byte offset at best; parse line by line so a bad row is
    # reported by its line number and the person can jump straight to it.
    records: list[dict[str, Any]] = []
    with _open_input(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            at = position(len(records) + 1, number)
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise InputError(f"{path}: {at}: not valid JSON ({error})") from error
            except RecursionError as error:
                raise InputError(f"{path}: {at}: JSON nested too deeply to read") from error
            if not isinstance(record, dict):
                raise InputError(f"{path}: {at}: expected a JSON object")
            records.append(record)
    if not records:
        raise InputError(f"{path}: no data rows")
    return pl.from_dicts(records, infer_schema_length=None)


def unreadable_delimited(path: Path, fmt: str, error: BaseException) -> InputError:
    """The error for a CSV/TSV that Polars could not parse, naming the record that broke it.

    Polars names neither the row nor the line, so the file is read again with the csv module
    (only on this path, never for a good file) for the first record with more fields than the
    header or a quote that is never closed.
    """
    separator = "\t" if fmt == "tsv" else ","
    found = _first_non_utf8(path, separator=separator) or _first_bad_record(
        path, separator=separator
    )
    if found is not None:
        return InputError(f"{path}: {found}")
    # Polars' message can quote a whole multi-line field; one line of it, whole words.
    reason = re.sub(r"\s+", " ", str(error)).strip() or type(error).__name__
    if len(reason) > 200:
        reason = reason[:200].rsplit(" ", 1)[0] + " ..."
    return InputError(f"{path}: unreadable {fmt}: {reason}")


def _first_non_utf8(path: Path, *, separator: str) -> str | None:
    """Where the first byte that is not UTF-8 is (a Latin-1 or Windows-1252 export), as the
    row it belongs to and the line it starts on; None when the file is UTF-8."""
    try:
        data = read_input(path)
    except InputError:
        return None
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as error:
        offset = error.start
    line = data.count(b"\n", 0, offset) + 1
    reason = f"not UTF-8 text (byte 0x{data[offset]:02x}); save the file as UTF-8"
    if line == 1:
        return f"line 1 (header): {reason}"
    text = data.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    row, start = -1, 1  # the header is row 0
    try:
        for _record in reader:
            if reader.line_num >= line:
                return f"{position(row + 1, start)}: {reason}"
            row, start = row + 1, reader.line_num + 1
    except csv.Error:
        pass
    return f"line {line}: {reason}"


def _first_bad_record(path: Path, *, separator: str) -> str | None:
    with _open_text(path) as handle:
        return first_bad_record(handle, separator=separator)


def first_bad_record(text: Iterable[str], *, separator: str) -> str | None:
    """Where and why the delimited `text` (lines, as a file opened with newline="" gives
    them) breaks: the first record with more fields than the header, a quote never closed, or
    a quoted field that goes on after its closing quote; None when the csv module reads it."""
    reader = csv.reader(text, delimiter=separator, strict=True)
    row, start = 0, 1
    try:
        header = next(reader, None)
        if header is None:
            return None
        width = len(header)
        start = reader.line_num + 1
        for row, record in enumerate(reader, start=1):
            if len(record) > width:
                return f"{position(row, start)}: {len(record)} fields, the header has {width}"
            start = reader.line_num + 1
    except csv.Error as error:
        row_text = "line 1 (header)" if start == 1 else position(row + 1, start)
        if "unexpected end of data" in str(error) or "EOF" in str(error):
            return f"{row_text}: a quoted field is never closed (the file ends inside it)"
        if "expected after" in str(error):
            # Free text often opens with a quote (`"Stop," he said.`), most of all in TSV,
            # which has no quoting of its own but is read with CSV's.
            return (
                f"{row_text}: a field that starts with a quote is read as quoted, and this one "
                "goes on after its closing quote; quote the whole field and double the quotes "
                "in it"
            )
        return f"{row_text}: {error}"
    return None


TABLE_SUFFIXES = (".parquet", ".csv")


def check_table_path(path: str | Path) -> Path:
    """`path` if `write_table` can write it (by extension), else InputError naming it."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"{path}: output must end in .parquet or .csv")
    return path


def write_table(frame: pl.DataFrame, path: str | Path) -> None:
    """Write by extension (`.parquet` or `.csv`)."""
    path = check_table_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)


OUTPUT_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".csv")


def check_output_path(
    path: str | Path,
    *,
    list_columns: Sequence[str] = (),
    inputs: Sequence[str | Path | None] = (),
) -> Path:
    """`path` if `write_rows` can write it (by extension) with `list_columns` among its
    columns, and neither it nor its quarantine file is one of the command's `inputs`, else
    InputError naming it: called before the work, which can take minutes."""
    path = Path(path)
    for source in inputs:
        if source is None:
            continue
        for written in (path, quarantine_path(path)):
            if _same_file(written, Path(source)):
                raise InputError(f"{written}: would overwrite the input {source}; write elsewhere")
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"{path}: output must end in .parquet or .csv, or .jsonl/.ndjson")
    check_output_folder(path)
    return check_list_output(path, list_columns)


def check_output_folder(path: str | Path) -> None:
    """InputError naming `path` when its folder cannot be made or written: a file where a
    folder of the path should be, or a folder that is not writable. Missing folders are fine
    (the writers make them). Checked up front, or the failure came after the work, as a bare
    OS error or a traceback."""
    path = Path(path)
    folder = path.parent
    while not folder.exists():
        if folder.parent == folder:
            return
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{path}: cannot write here: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write here: the folder {folder} is not writable")


def check_list_output(path: str | Path, list_columns: Sequence[str]) -> Path:
    """`path` if its format holds `list_columns`, else InputError naming the formats that do.
    The commands check it with the rest of `--output`, before INPUT is read: the options alone
    decide it, and a read of a large file (with its quarantine file) would come first for
    nothing."""
    path = Path(path)
    if list_columns and path.suffix.lower() == ".csv":
        raise InputError(
            f"{path}: CSV cannot hold the list column(s) {', '.join(map(repr, list_columns))}; "
            "write JSON Lines (.jsonl) or Parquet (.parquet), which hold lists"
        )
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def write_rows(frame: pl.DataFrame, path: str | Path) -> None:
    """Write by extension: `.parquet`, `.jsonl`/`.ndjson`, or `.csv` (scalar columns only)."""
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    path = check_output_path(path, list_columns=nested)
    suffix = path.suffix.lower()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix in (".jsonl", ".ndjson"):
            frame.write_ndjson(path)
        else:
            write_table(frame, path)
    except (OSError, pl.exceptions.PolarsError) as error:
        reason = getattr(error, "strerror", None) or first_line(error)
        raise InputError(f"{path}: cannot write: {reason}") from error


def write_output(frame: pl.DataFrame, path: str | Path) -> None:
    """`write_rows` for a command's `--output`: when the write fails, the quarantine file
    beside it goes too, as it would describe a run that wrote nothing."""
    try:
        write_rows(frame, path)
    except InputError:
        quarantine_path(path).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class QuarantinedRow:
    """One input row set aside: `row` is its 1-based data row, `line` the line it starts on
    (None in Parquet; see `position`); `field` is None when the whole row is bad."""

    row: int
    field: str | None
    reason: str
    message: str
    record: str
    line: int | None = None

    def describe(self) -> str:
        at = position(self.row, self.line)
        where = at if self.field is None else f"{at}, field {self.field!r}"
        return f"{where}: {self.reason}: {self.message}"


# Whitespace around an id or a categorical label (`" cat"`) is almost always an export
# artifact ("a, b" CSVs), yet it is kept as written, by ingest and so by the commands, which
# say how many values have it. Ingest cannot strip it: a judgment is keyed by its
# `judgment_id` or its file and line, so an old export read again would give the same judgment
# with another task, annotator or label, a newer version that replaces the staged one and
# changes the fingerprint of the day its verdicts were made from, as an edit does (and a
# padded `judgment_id` stripped would be a second judgment beside the staged one). A command
# that stripped where ingest does not would give labels and ids that do not join back to the
# lake's rows.


@dataclass(frozen=True)
class PaddedValues:
    """How many ids and categorical labels of a table have whitespace around them (what
    `str.strip_chars` removes), and the first: its field (as the file names it), value and
    where it is (`row 2 (line 3)`)."""

    count: int
    field: str
    value: str
    where: str

    def note(self, *, kept_by: str) -> str:
        """One line for stderr; `kept_by`: who keeps them so too ("ingest", "the commands")."""
        one = self.count == 1
        values = "id or label has" if one else "ids or labels have"
        them = "it" if one else "them"
        keeps = "keeps" if kept_by == "ingest" else "keep"
        return (
            f"{self.count} {values} whitespace around {them}, kept as written as {kept_by} "
            f"{keeps} {them} (' cat' and 'cat' are two labels); first: {self.where}, "
            f"field {self.field!r}: {self.value!r}"
        )


def padded_values(
    frame: pl.DataFrame, fields: Sequence[str], *, order: Sequence[str]
) -> tuple[int, str, str, tuple[Any, ...]] | None:
    """(how many values of the text columns `fields` of `frame` have whitespace around them,
    and the first in `order`: its column, value and `order` values); None when none has."""
    masks = _padded_masks(fields)
    counts = frame.select(**{name: mask.sum() for name, mask in masks.items()}).row(0)
    total = int(sum(counts))
    if not total:
        return None
    first: tuple[tuple[Any, ...], str, str] | None = None
    for (name, mask), count in zip(masks.items(), counts, strict=True):
        if not count:
            continue
        hit = frame.filter(mask).sort(order, maintain_order=True).row(0, named=True)
        key = tuple(hit[column] for column in order)
        if first is None or key < first[0]:  # a tie keeps the earlier field
            first = (key, name, hit[name])
    assert first is not None
    return total, first[1], first[2], first[0]


def _padded_masks(fields: Sequence[str]) -> dict[str, pl.Expr]:
    # Comparing lengths is twice as fast as a regular expression (0.06 s for three columns of
    # a million rows).
    return {
        name: (
            pl.col(name).str.strip_chars().str.len_bytes() != pl.col(name).str.len_bytes()
        ).fill_null(False)
        for name in fields
    }


def padded_count(frame: pl.DataFrame, fields: Sequence[str]) -> int:
    """How many values of the text columns `fields` of `frame` have whitespace around them."""
    masks = _padded_masks([name for name in fields if name in frame.columns])
    if not masks:
        return 0
    return int(sum(frame.select(mask.sum() for mask in masks.values()).row(0)))


@dataclass(frozen=True)
class KindTable:
    """What `read_kind_table` read: `rows` is in canonical columns and dtypes, `quarantined`
    holds every row set aside, so `rows_read == rows.height + len(quarantined)`; `padded`:
    its ids and categorical labels with whitespace around them, if any; `box_units` (boxes): each
    task's unit, as `kinds.box_task_units` gives it, that its boxes were put in."""

    path: Path
    rows: pl.DataFrame
    quarantined: tuple[QuarantinedRow, ...]
    rows_read: int
    padded: PaddedValues | None = None
    box_units: pl.DataFrame | None = None


class _Refused(Exception):
    def __init__(self, field: str | None, reason: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.message = message


# A JSON line longer than this is set aside unparsed (the ingest limit): parsing it would cost
# many times its size in memory and no real judgment is anywhere near it.
_MAX_LINE_BYTES = 16 * 1024 * 1024
# Rows converted per step when a Parquet file is read row by row.
_BATCH_ROWS = 65_536


def read_kind_table(
    path: str | Path,
    *,
    kind: str,
    task_column: str = "task_id",
    annotator_column: str | None = "annotator_id",
    value_column: str | None = None,
    row_column: str | None = None,
    scale: RatingScale | None = None,
    column_options: Mapping[str, str] | None = None,
    coordinates: str | None = None,
    box_units: pl.DataFrame | None = None,
) -> KindTable:
    """Judgments (or, with `annotator_column=None`, gold) of `kind` from `path`.

    The result has `task_id`, `annotator_id` (unless None) and the kind's value columns
    (`kinds.VALUE_COLUMNS`) in their canonical dtypes. `value_column` renames the value column
    of a single-column kind. A missing column, an unreadable file or an empty one raises
    InputError naming the file; a row whose task or annotator is missing, or whose value is
    missing or of the wrong shape for `kind`, is quarantined with its row and field. In CSV and
    TSV, list and object values are JSON text in the cell. `row_column` keeps each row's data
    row number (see `position`) in a column of that name. `column_options` maps a column to the
    command-line option that named it, for a missing column's error.

    Judgments of a kind in `kinds.ONE_JUDGMENT_PER_ANNOTATOR` keep one row per task and
    annotator: the last valid one in the file, as ingest keeps the latest submission; each
    earlier one is quarantined as `duplicate` (field: the task and annotator columns) naming the
    row that replaced it.

    `scale` (numeric only): the declared rating scale; a value outside it (or off its step) is
    quarantined as `outside_scale`, the message naming the scale, before duplicates are
    resolved, as ingest checks it.

    `coordinates` (boxes only): the unit of a row that gives none (no `coordinates` column, or
    an empty cell); a row's own unit wins. Its boxes are then checked against the image as a
    row that gives the unit is. Each task's boxes are put in one unit: `box_units` (the
    judgments' `KindTable.box_units`, for their gold) or else the one most of its rows give.
    """
    path = Path(path)
    check_kind(kind)
    if coordinates is not None and (kind != "boxes" or coordinates not in COORDINATE_UNITS):
        raise ValueError(f"a unit ({coordinates!r}) applies to boxes in pixel or percent only")
    canonical = VALUE_COLUMNS[kind]
    if value_column is not None and len(canonical) > 1:
        raise InputError(
            f"a value column name applies to one-column kinds; {kind} reads {', '.join(canonical)}"
        )
    sources: dict[str, str] = {
        name: value_column if value_column is not None else name for name in canonical
    }
    ids: dict[str, str] = {"task_id": task_column}
    if annotator_column is not None:
        ids["annotator_id"] = annotator_column
    needed = [*ids.values(), *sources.values()]
    if len(set(needed)) < len(needed):
        raise InputError(f"{path}: the task, annotator and value columns must be different")
    fmt = _checked_format(path)
    schema: dict[str, pl.DataType] = {name: pl.String() for name in ids}
    schema.update({name: VALUE_DTYPES[name] for name in canonical})
    if kind == "boxes":
        # Carried through the read so each task's boxes can be put in one unit at its end.
        schema.update({name: CONTEXT_DTYPES[name] for name in BOX_CONTEXT})
    plain = pl.DataFrame(schema={**schema, _ROW: pl.Int64()})
    if fmt == "jsonl":
        records = _jsonl_records(path, columns=needed, options=column_options)
    else:
        # Text cells of a CSV are checked the same vectorised way as a typed Parquet file when
        # the kind's values are text (categorical, text): a million labels load at CSV speed.
        read = _read_delimited if fmt in ("csv", "tsv") else _read_parquet
        context = _box_context_columns(path, kind=kind, taken=needed)
        frame = read(
            path, fmt=fmt, columns=[*needed, *context], options=column_options
        ).with_row_index(_ROW, offset=1)
        label = [sources["label"]] if kind == "categorical" else []
        frame, non_finite = _split_non_finite(frame, [*ids.values(), *label])
        frame = _typed_as_text(frame, [*ids.values(), *label])
        split = _plain_rows(
            frame, kind=kind, ids=ids, sources=sources, context=context, unit=coordinates
        )
        if split is not None:
            good, frame = split
            plain = good.with_columns(
                pl.lit(None, plain.schema[name]).alias(name)
                for name in plain.columns
                if name not in good.columns
            ).select(plain.columns)
            if kind == "boxes" and coordinates is not None:
                plain = plain.with_columns(pl.col("coordinates").fill_null(coordinates))
        # The rows cast to text would spell a NaN id "NaN": they go through the per-row
        # check with their floats, which refuses them as it refuses a JSON NaN.
        records = itertools.chain(_frame_records(non_finite), _frame_records(frame))
    rows: list[dict[str, Any]] = []
    quarantined: list[QuarantinedRow] = []
    text_cells = fmt in ("csv", "tsv")
    rows_read = plain.height
    for number, record in records:
        rows_read += 1
        try:
            if isinstance(record, _Refused):
                raise record
            row: dict[str, Any] = {
                name: _identifier(record, source) for name, source in ids.items()
            }
            row.update(
                _value(record, kind=kind, sources=sources, text_cells=text_cells, unit=coordinates)
            )
        except _Refused as refused:
            if refused.reason == MISSING_FIELD and refused.field == annotator_column:
                refused.reason = MISSING_ANNOTATOR
            quarantined.append(
                QuarantinedRow(
                    row=number,
                    field=refused.field,
                    reason=refused.reason,
                    message=refused.message,
                    record=_record_text(record),
                )
            )
            continue
        row[_ROW] = number
        rows.append(row)
    if rows_read == 0:
        raise InputError(f"{path}: no data rows")
    checked = pl.DataFrame(rows, schema=plain.schema)
    result = (pl.concat([plain, checked]) if plain.height else checked).sort(_ROW)
    if scale is not None and kind == "numeric":
        result, off_scale = _on_scale(result, scale, ids=ids, sources=sources)
        quarantined += off_scale
    replaced = pl.DataFrame()
    if annotator_column is not None and kind in ONE_JUDGMENT_PER_ANNOTATOR:
        result, replaced = _latest_judgments(result)
    units = None
    if kind == "boxes":
        units = box_task_units(result) if box_units is None else box_units
        result = boxes_in_task_unit(result, units=units).drop(BOX_CONTEXT)
        replaced = replaced.drop(BOX_CONTEXT, strict=False)
    shown = {**ids, **({"label": sources["label"]} if kind == "categorical" else {})}
    padded = padded_values(result, list(shown), order=[_ROW])
    lines = row_lines(
        path,
        [
            *(entry.row for entry in quarantined),
            *(replaced.get_column(_ROW) if replaced.height else ()),
            *(replaced.get_column(_KEPT) if replaced.height else ()),
            *((padded[3][0],) if padded is not None else ()),
        ],
    )
    if replaced.height:
        quarantined += _duplicates(replaced, ids=ids, sources=sources, lines=lines)
    return KindTable(
        path=path,
        rows=result.rename({_ROW: row_column}) if row_column else result.drop(_ROW),
        quarantined=tuple(
            replace(entry, line=lines.get(entry.row))
            for entry in sorted(quarantined, key=lambda entry: entry.row)
        ),
        rows_read=rows_read,
        box_units=units,
        padded=None
        if padded is None
        else PaddedValues(
            count=padded[0],
            field=shown[padded[1]],
            value=padded[2],
            where=position(padded[3][0], lines.get(padded[3][0])),
        ),
    )


# The row number a row was read at, carried while rows are checked in two ways.
_ROW = "__row"
# Beside a judgment made again: the row number of the later one that replaces it.
_KEPT = "__kept"


def _latest_judgments(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`rows`, in row order, with the last judgment of each task and annotator; the earlier
    judgments, each with `_KEPT`, the row of the one that replaces it)."""
    # Equal keys hash equally, so distinct hashes rule a repeat out at a quarter of the exact
    # check's cost; only a real repeat (or a collision) takes the exact way.
    key_hash = pl.col("task_id").hash(seed=0).xor(pl.col("annotator_id").hash(seed=1))
    if rows.select(key_hash.n_unique()).item() == rows.height:
        return rows, pl.DataFrame()
    last = rows.select(pl.struct("task_id", "annotator_id").is_last_distinct()).to_series()
    if last.all():
        return rows, pl.DataFrame()
    kept = rows.filter(last)
    earlier = rows.filter(~last).join(
        kept.select("task_id", "annotator_id", pl.col(_ROW).alias(_KEPT)),
        on=["task_id", "annotator_id"],
        how="left",
        maintain_order="left",
    )
    return kept, earlier


def _duplicates(
    replaced: pl.DataFrame,
    *,
    ids: Mapping[str, str],
    sources: Mapping[str, str],
    lines: Mapping[int, int],
) -> list[QuarantinedRow]:
    """A `duplicate` quarantine entry for each judgment in `replaced` (see
    `_latest_judgments`), in the file's column names."""
    task, annotator = ids["task_id"], ids["annotator_id"]
    entries = []
    for row in replaced.iter_rows(named=True):
        number, kept = int(row.pop(_ROW)), int(row.pop(_KEPT))
        record = {ids.get(name, sources.get(name, name)): value for name, value in row.items()}
        entries.append(
            QuarantinedRow(
                row=number,
                field=f"{task},{annotator}",
                reason=DUPLICATE,
                message=(
                    f"{annotator} {row['annotator_id']!r} judged {task} {row['task_id']!r} "
                    f"again at {position(kept, lines.get(kept))}, which replaces this judgment"
                ),
                record=_record_text(record),
            )
        )
    return entries


def _on_scale(
    rows: pl.DataFrame,
    scale: RatingScale,
    *,
    ids: Mapping[str, str],
    sources: Mapping[str, str],
) -> tuple[pl.DataFrame, list[QuarantinedRow]]:
    """(`rows` whose value is on `scale`, an `outside_scale` entry for each of the others, in
    the file's column names)."""
    off = rows.select(scale.outside(pl.col("value")).fill_null(False)).to_series()
    if not off.any():
        return rows, []
    entries = []
    for row in rows.filter(off).iter_rows(named=True):
        number = int(row.pop(_ROW))
        record = {ids.get(name, sources.get(name, name)): value for name, value in row.items()}
        entries.append(
            QuarantinedRow(
                row=number,
                field=sources["value"],
                reason=OUTSIDE_SCALE,
                message=f"{row['value']!r} is outside the declared {scale.describe()}",
                record=_record_text(record),
            )
        )
    return rows.filter(~off), entries


def _read_parquet(
    path: Path, *, fmt: str, columns: Sequence[str], options: Mapping[str, str] | None = None
) -> pl.DataFrame:
    try:
        _missing_columns(path, list(pl.read_parquet_schema(path)), columns, options)
        return pl.read_parquet(path, columns=list(columns))
    except (pl.exceptions.PolarsError, OSError) as error:
        raise InputError(f"{path}: unreadable parquet: {first_line(error)}") from error


def _typed_as_text(frame: pl.DataFrame, columns: Iterable[str]) -> pl.DataFrame:
    """`frame` with its typed id and categorical label `columns` (a Parquet file's float ids,
    say) cast to text as ingest casts them: `1.0` is "1.0" and a Float32 0.1 is "0.1" here as
    in the lake."""
    cast = [typed_text(pl.col(name)) for name in columns if spelled_as_text(frame.schema[name])]
    return frame.with_columns(cast) if cast else frame


def _split_non_finite(
    frame: pl.DataFrame, columns: Iterable[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`frame` without the rows whose float id or label `columns` hold a NaN or an infinity;
    those rows, as read)."""
    floats = [name for name in columns if frame.schema[name].is_float()]
    if not floats:
        return frame, frame.clear()
    bad = pl.any_horizontal(non_finite_text(pl.col(name)).is_not_null() for name in floats)
    mask = frame.select(bad.fill_null(False)).to_series()
    if not mask.any():
        return frame, frame.clear()
    return frame.filter(~mask), frame.filter(mask)


def _frame_records(frame: pl.DataFrame) -> Iterator[tuple[int, dict[str, Any] | _Refused]]:
    for offset in range(0, frame.height, _BATCH_ROWS):
        for record in frame.slice(offset, _BATCH_ROWS).iter_rows(named=True):
            yield int(record.pop(_ROW)), record


# What a pixel box is checked against: the image's size, given beside it.
IMAGE_SIZE_COLUMNS: tuple[str, ...] = ("image_width", "image_height")


def missing_image_size(path: str | Path) -> tuple[list[str], list[str]]:
    """(the `IMAGE_SIZE_COLUMNS` the table at `path` lacks, the columns it has); nothing lacks
    in a file that cannot be read, for its reader to say why."""
    have = _header(Path(path))
    if have is None:
        return [], []
    return [name for name in IMAGE_SIZE_COLUMNS if name not in have], have


def _box_context_columns(path: Path, *, kind: str, taken: Sequence[str]) -> list[str]:
    """The columns of a boxes table at `path` that say what image its boxes measure
    (`kinds.BOX_CONTEXT`, the names ingest reads), each read when the file has it."""
    if kind != "boxes":
        return []
    header = _header(path) or []
    return [name for name in BOX_CONTEXT if name in header and name not in taken]


def _plain_rows(
    frame: pl.DataFrame,
    *,
    kind: str,
    ids: Mapping[str, str],
    sources: Mapping[str, str],
    context: Sequence[str] = (),
    unit: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """(rows that are plainly valid, in canonical columns; the other rows as read), or None
    when the file's dtypes are not the kind's. `unit`: the boxes' unit where a row gives none.

    A typed Parquet file is checked in a few vectorised expressions, so a million spans load in
    a fraction of a second; only the rows these expressions doubt go through the per-row check,
    which names the reason. The expressions accept a subset of what the per-row check accepts,
    so both ways load the same rows.
    """
    identifiers = (pl.String(), pl.Int64(), pl.Int32(), pl.UInt32(), pl.UInt64())
    if any(frame.schema[source] not in identifiers for source in ids.values()):
        return None
    if not all(
        _compatible(frame.schema[source], VALUE_DTYPES[name]) for name, source in sources.items()
    ):
        return None
    columns = [pl.col(source).cast(pl.String).alias(name) for name, source in ids.items()]
    columns += [
        pl.col(source).cast(VALUE_DTYPES[name]).alias(name) for name, source in sources.items()
    ]
    # A context column that does not cast to the lake's dtype (a size given as text) sends
    # every row to the per-row check.
    columns += [pl.col(name).cast(CONTEXT_DTYPES[name]) for name in context]
    try:
        typed = frame.select(*columns, _ROW)
    except pl.exceptions.PolarsError:
        return None
    plain = pl.all_horizontal(
        *(pl.col(name).is_not_null() for name in [*ids, *sources]),
        *(
            (pl.col(name).str.strip_chars() != "")
            & ~pl.col(name).str.contains("\x00", literal=True)
            for name in ids
        ),
        *_plain_value(kind),
        *(_plain_context(typed, unit) if context or unit else ()),
    ).fill_null(False)
    good = typed.filter(plain)
    doubtful = frame.join(good.select(_ROW), on=_ROW, how="anti", maintain_order="left")
    return good, doubtful


# A dtype as Polars hands it out: an instance, or a class for the parameterless ones.
_Dtype = pl.DataType | DataTypeClass


def _compatible(source: _Dtype, target: _Dtype) -> bool:
    """Whether values of dtype `source` cast to `target` exactly as the per-row check reads
    them (integers to floats, narrower integers to Int64; never booleans or text to numbers)."""
    if source == target:
        return True
    if isinstance(target, pl.List):
        return isinstance(source, pl.List) and _compatible(source.inner, target.inner)
    if isinstance(target, pl.Struct):
        if not isinstance(source, pl.Struct):
            return False
        have = {field.name: field.dtype for field in source.fields}
        want = {field.name: field.dtype for field in target.fields}
        return set(have) == set(want) and all(_compatible(have[n], want[n]) for n in want)
    if target == pl.Int64():
        return source.is_integer()
    if target == pl.Float64():
        return source.is_numeric()
    return False


def _plain_value(kind: str) -> list[pl.Expr]:
    """Conditions under which a value of `kind` (already cast, not null) is certainly valid.
    What they leave out goes through `normalize`, which says why it is refused."""
    if kind in ("categorical", "text"):
        return [~blank_text(pl.col("label" if kind == "categorical" else "text"))]
    if kind in ("multilabel", "ranking"):
        column = pl.col("labels" if kind == "multilabel" else "ranking")
        unclear = pl.element().is_null() | blank_text(pl.element())
        conditions = [column.list.eval(unclear.any()).list.first().not_()]
        if kind == "ranking":
            conditions.append(column.list.n_unique() == column.list.len())
        return conditions
    if kind == "numeric":
        return [pl.col("value").is_finite()]
    if kind == "pairwise":
        return [pl.col("winner").is_in(list(WINNERS)), pl.col("left") != pl.col("right")]
    element = pl.element().struct
    blank_label = blank_text(element.field("label")).fill_null(False)
    if kind == "spans":
        bad = (
            element.field("start").is_null()
            | element.field("end").is_null()
            | (element.field("start") < 0)
            | (element.field("end") <= element.field("start"))
            | blank_label
        )
        return [pl.col("spans").list.eval(bad.fill_null(True).any()).list.first().not_()]
    if kind == "boxes":
        coordinates = [element.field(name) for name in ("x_min", "y_min", "x_max", "y_max")]
        bad = pl.any_horizontal(*(c.is_null() | ~c.is_finite() for c in coordinates)) | (
            (element.field("x_max") <= element.field("x_min"))
            | (element.field("y_max") <= element.field("y_min"))
            | blank_label
        )
        return [pl.col("boxes").list.eval(bad.fill_null(True).any()).list.first().not_()]
    return []


def _plain_context(frame: pl.DataFrame, unit: str | None = None) -> list[pl.Expr]:
    """Conditions under which each row's unit and image size (the `BOX_CONTEXT` columns
    `frame` has; `unit` where a row gives none) are certainly valid and its boxes inside the
    image; `box_context` and `values.inside_image` decide the others, and say why."""
    conditions = _inside_image(frame, unit)
    if "coordinates" in frame.columns:
        given = pl.col("coordinates")
        conditions.append(given.is_null() | given.is_in(list(COORDINATE_UNITS)))
    for name in ("image_width", "image_height"):
        if name in frame.columns:
            size = pl.col(name)
            conditions.append(size.is_null() | (size.is_finite() & (size > 0)))
    return conditions


def _inside_image(frame: pl.DataFrame, default_unit: str | None = None) -> list[pl.Expr]:
    """Conditions under which each row's boxes certainly lie inside the image its
    `coordinates` (`default_unit` where it gives none), `image_width` and `image_height` (those
    `frame` has) say; `values.inside_image` decides the others."""

    def given(name: str) -> pl.Expr:
        return pl.col(name) if name in frame.columns else pl.lit(None)

    # A blank unit is not filled here: it is no plain row, and `_value` reads it as none.
    unit = given("coordinates").cast(pl.String).fill_null(pl.lit(default_unit, pl.String))
    element = pl.element().struct
    boxes = pl.col("boxes")

    def extreme(names: tuple[str, ...], *, low: bool) -> pl.Expr:
        fields = [element.field(name) for name in names]
        reduced = pl.min_horizontal(*fields) if low else pl.max_horizontal(*fields)
        found = boxes.list.eval(reduced)
        return found.list.min() if low else found.list.max()

    def limit(size: str) -> pl.Expr:
        pixels = given(size).cast(pl.Float64, strict=False)
        return pl.when(unit == "percent").then(pl.lit(100.0)).otherwise(pixels)

    unchecked = ~unit.is_in(list(COORDINATE_UNITS)).fill_null(False)
    inside = (
        (extreme(("x_min", "y_min", "x_max", "y_max"), low=True) >= 0)
        & (extreme(("x_min", "x_max"), low=False) <= limit("image_width")).fill_null(True)
        & (extreme(("y_min", "y_max"), low=False) <= limit("image_height")).fill_null(True)
    )
    return [unchecked | (boxes.list.len() == 0) | inside.fill_null(False)]


def refused_values(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """The rows of `frame` (canonical value columns of `kind`, as the lake holds them) whose
    value ingest would refuse today: `row` (index in `frame`), `field`, `reason`, `message`.
    Rows staged before a check existed, or written by no ingest, are checked by the same
    function (`normalize`); the vectorized test of `read_kind_table` passes the plain ones."""
    columns = VALUE_COLUMNS[check_kind(kind)]
    empty = pl.DataFrame(
        schema={"row": pl.Int64, "field": pl.String, "reason": pl.String, "message": pl.String}
    )
    if frame.height == 0 or kind == "categorical" or not set(columns) <= set(frame.columns):
        return empty
    # Boxes are checked against the image their row says they are measured on.
    context = [c for c in BOX_CONTEXT if kind == "boxes" and c in frame.columns]
    plain = frame.select(
        pl.all_horizontal(
            *(pl.col(c).is_not_null() for c in columns),
            *_plain_value(kind),
            *(_inside_image(frame) if context else ()),
        )
        .fill_null(False)
        .alias("plain")
    ).to_series()
    if plain.all():
        return empty
    found = []
    doubtful = frame.with_row_index("_row").filter(~plain).select("_row", *columns, *context)
    for row in doubtful.iter_rows(named=True):
        try:
            value = normalize(kind, {c: row[c] for c in (*columns, *context)})
        except ValueShapeError as error:
            found.append((row["_row"], error.field, error.reason, str(error)))
            continue
        missing = [c for c in columns if value.get(c) is None]
        if missing:  # a blank answer reads as none
            found.append((row["_row"], missing[0], MISSING_FIELD, "empty value"))
    return pl.DataFrame(found, schema=empty.schema, orient="row")


def _checked_format(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    fmt = format_of(path)
    if _is_empty(path):
        raise InputError(f"{path}: empty file")
    return fmt


def repeated_column(have: Sequence[str], columns: Iterable[str]) -> str | None:
    """Why a header that names one of `columns` more than once cannot be read, or None.
    Polars reads the second `label` as `label_duplicated_0`: which of the two holds the
    answers is not known, so neither is taken."""
    for column in columns:
        copies = sum(1 for name in have if name.startswith(f"{column}_duplicated_"))
        if copies and column in have:
            return (
                f"line 1 (header): column {column!r} appears {copies + 1} times; "
                "rename or remove all but one"
            )
    return None


def _missing_columns(
    path: Path,
    have: Sequence[str],
    columns: Sequence[str],
    options: Mapping[str, str] | None = None,
) -> None:
    repeated = repeated_column(have, columns)
    if repeated is not None:
        raise InputError(f"{path}: {repeated}")
    missing = [column for column in columns if column not in have]
    if missing:
        raise InputError(_missing_message(path, missing, have, options or {}))


def column_options(
    *, task: str, annotator: str, value: str | None, value_option: str = "--value-col"
) -> dict[str, str]:
    """The judgment columns a command reads, each mapped to the option that names it (for
    `read_kind_inputs`' `column_options`)."""
    options = {task: "--task-col", annotator: "--annotator-col"}
    if value is not None:
        options[value] = value_option
    return options


def _read_delimited(
    path: Path, *, fmt: str, columns: Sequence[str], options: Mapping[str, str] | None = None
) -> pl.DataFrame:
    """`columns` of a CSV or TSV file, every cell as text exactly as written."""
    separator = "\t" if fmt == "tsv" else ","
    source = _csv_source(path)
    head = _delimited_head(source)
    check_encoding(head, source=path, fmt=fmt)
    check_column_count(head, separator=separator.encode(), source=path)
    try:
        frame = pl.read_csv(source, separator=separator, infer_schema=False)
    except pl.exceptions.PolarsError as error:
        raise unreadable_delimited(path, fmt, error) from error
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: unreadable {fmt}: {first_line(error)}") from error
    _missing_columns(path, frame.columns, columns, options)
    return frame.select(columns)


def _jsonl_records(
    path: Path, *, columns: Sequence[str], options: Mapping[str, str] | None = None
) -> Iterator[tuple[int, dict[str, Any] | _Refused]]:
    # Parsed line by line so a bad line is quarantined by its line number and the others load;
    # the whole file is read first so a column no line has is an error, not N quarantined rows.
    records: list[tuple[int, dict[str, Any] | _Refused]] = []
    seen: set[str] = set()
    with _open_input(path) as handle:
        for raw in handle:
            if not raw.strip():
                continue
            records.append((len(records) + 1, _json_record(raw)))
            last = records[-1][1]
            if isinstance(last, dict):
                seen.update(last)
    if records and seen:
        _missing_columns(path, sorted(seen), columns, options)
    yield from records


def _json_record(raw: bytes) -> dict[str, Any] | _Refused:
    if len(raw) > _MAX_LINE_BYTES:
        return _Refused(None, OVERSIZED_RECORD, f"line of {len(raw):,} bytes")
    try:
        # Decoded as `json.loads` decodes bytes, then read as ingest reads a line.
        record = STRICT_JSON.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except KeyGivenTwice as twice:
        return _Refused(twice.key, MALFORMED_JSON, str(twice))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return _Refused(None, MALFORMED_JSON, f"not valid JSON ({error})")
    except RecursionError:
        return _Refused(None, NESTING_TOO_DEEP, "JSON nested too deeply to read")
    if not isinstance(record, dict):
        return _Refused(None, WRONG_TYPE, f"expected a JSON object, got {type(record).__name__}")
    return record


def _identifier(record: Mapping[str, Any], column: str) -> str:
    value = record.get(column)
    if isinstance(value, str):
        if not value.strip():
            raise _Refused(column, MISSING_FIELD, "empty value")
        if "\x00" in value:
            raise _Refused(column, NUL_BYTE, "contains a NUL byte")
        return value
    if value is None:
        raise _Refused(column, MISSING_FIELD, "empty value")
    refused = not_an_id(value)
    if refused is not None:
        raise _Refused(column, WRONG_TYPE, refused)
    # As ingest stores it (`1.0` stays "1.0"), so a result joins back to the lake's rows.
    return number_text(value)


def _value(
    record: Mapping[str, Any],
    *,
    kind: str,
    sources: Mapping[str, str],
    text_cells: bool,
    unit: str | None = None,
) -> dict[str, Any]:
    raw = {name: record.get(source) for name, source in sources.items()}
    try:
        if kind == "boxes":
            # Checked against the image the row says its boxes measure, as ingest checks; the
            # declared `unit` measures a row that says none.
            given = {name: record.get(name) for name in BOX_CONTEXT}
            raw.update(box_context(declared_unit(given, unit)))
        value = normalize(kind, raw, text_cells=text_cells)
        if kind == "boxes":
            value.update({name: raw[name] for name in BOX_CONTEXT})
    except ValueShapeError as error:
        raise _Refused(sources.get(error.field, error.field), error.reason, str(error)) from None
    for name, source in sources.items():
        if value.get(name) is None:
            raise _Refused(source, MISSING_FIELD, "empty value")
    if kind == "categorical" and blank(str(value["label"])):
        raise _Refused(sources["label"], MISSING_FIELD, "empty value")
    return value


def _record_text(record: Mapping[str, Any] | _Refused) -> str:
    if isinstance(record, _Refused):
        return ""
    return cap_raw(json.dumps(record, default=str, ensure_ascii=False))


def quarantine_path(output: str | Path) -> Path:
    """Where the quarantined rows of a run writing `output` go: `<output>.quarantine.jsonl`."""
    output = Path(output)
    return output.with_name(f"{output.name}.quarantine.jsonl")


def write_quarantine(table: KindTable, path: str | Path) -> None:
    """The quarantined rows of `table` as JSON Lines: file, row, line, field, reason, message,
    record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for entry in table.quarantined:
            line = {
                "file": str(table.path),
                "row": entry.row,
                "line": entry.line,
                "field": entry.field,
                "reason": entry.reason,
                "message": entry.message,
                "record": entry.record,
            }
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")


def quarantine_summary(
    table: KindTable, *, written_to: Path | None = None, shown: int = 5
) -> str | None:
    """A few lines for stderr: how many rows were set aside and the first reasons; None when
    no row was."""
    if not table.quarantined:
        return None
    count = len(table.quarantined)
    where = f" (all in {written_to})" if written_to is not None else ""
    lines = [f"{table.path}: {count} of {table.rows_read} rows quarantined{where}:"]
    lines.extend(f"  {entry.describe()}" for entry in table.quarantined[:shown])
    if count > shown:
        lines.append(f"  ... and {count - shown} more")
    return "\n".join(lines)


def no_valid_rows(table: KindTable) -> InputError:
    """The error when every row of `table` was quarantined: the first reasons, row by row."""
    first = "; ".join(entry.describe() for entry in table.quarantined[:3])
    return InputError(
        f"{table.path}: no valid rows: all {table.rows_read} were quarantined (first: {first})"
    )


def read_categorical_inputs(
    input_path: str | Path,
    *,
    task_column: str,
    annotator_column: str,
    label_column: str,
    gold_path: str | Path | None = None,
    output_path: str | Path | None = None,
    warn: Callable[[str], None],
    row_column: str | None = None,
    column_options: Mapping[str, str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """A categorical command's judgments (`task_id`, `annotator_id`, `label`) and its gold
    (`task_id`, `label`), if any, from the user's column names: `read_kind_inputs` of the
    categorical kind, so a row with an empty task, annotator or label is quarantined."""
    return read_kind_inputs(
        input_path,
        kind="categorical",
        task_column=task_column,
        annotator_column=annotator_column,
        value_column=label_column,
        gold_path=gold_path,
        output_path=output_path,
        warn=warn,
        row_column=row_column,
        column_options=column_options,
    )


def read_kind_inputs(
    input_path: str | Path,
    *,
    kind: str,
    task_column: str,
    annotator_column: str,
    value_column: str | None,
    gold_path: str | Path | None = None,
    output_path: str | Path | None = None,
    warn: Callable[[str], None],
    row_column: str | None = None,
    scale: RatingScale | None = None,
    column_options: Mapping[str, str] | None = None,
    on_gold: Callable[[GoldCoverage], None] | None = None,
    coordinates: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """A command's judgments of `kind` (quarantine summary to `warn`, quarantined rows beside
    `output_path`; `row_column`, `scale` and `column_options`, for the judgments: see
    `read_kind_table`) and its gold, if any: the rows of the tasks the judgments hold, with the
    others named to `warn` and the count given to `on_gold`. `coordinates` (boxes): the unit of
    the rows that give none, in the judgments and the gold alike (see `read_kind_table`).
    InputError when no judgment is valid or a gold row is bad: gold is the yardstick, a bad gold
    row is an error to fix, not a row to skip; GoldJudgesNothing when no gold task is judged."""
    table = read_kind_table(
        input_path,
        kind=kind,
        task_column=task_column,
        annotator_column=annotator_column,
        value_column=value_column,
        row_column=row_column,
        scale=scale,
        column_options=column_options,
        coordinates=coordinates,
    )
    summary = report_quarantine(table, output_path=output_path)
    if summary is not None:
        warn(summary)
    if table.padded is not None:
        warn(f"{table.path}: {table.padded.note(kept_by='ingest')}")
    if table.rows.height == 0:
        raise no_valid_rows(table)
    if kind == "categorical":
        note = _unicode_twins_note(table.rows.get_column("label"))
        if note is not None:
            warn(f"{table.path}: {note}")
    if gold_path is None:
        return table.rows, None
    gold = read_kind_table(
        gold_path,
        kind=kind,
        task_column=task_column,
        annotator_column=None,
        value_column=_gold_value_column(
            Path(gold_path), kind=kind, task_column=task_column, value_column=value_column
        ),
        scale=scale,
        row_column=_ROW,
        coordinates=coordinates,
        box_units=table.box_units,
    )
    if gold.quarantined:
        raise InputError(f"{gold_path}: {gold.quarantined[0].describe()}")
    if gold.padded is not None:
        warn(f"{gold.path}: {gold.padded.note(kept_by='ingest')}")
    answers = _one_gold_answer(gold.rows, kind=kind, path=gold_path)
    judged = _judged_gold(
        answers, table.rows, gold_path=gold_path, input_path=input_path, task_column=task_column
    )
    if judged.height < answers.height:
        warn(_unjudged_note(answers, judged, gold_path=gold_path, input_path=input_path))
    if kind == "pairwise":
        _check_gold_pairs(judged, table.rows, gold_path=gold_path, input_path=input_path)
    if kind == "categorical":
        note = _unanswered_label_note(judged, table.rows, gold_path=gold_path, input=input_path)
        if note is not None:
            warn(note)
    if on_gold is not None:
        on_gold(GoldCoverage(tasks=answers.height, in_input=judged.height))
    return table.rows, judged.drop(_ROW)


def _unicode_twins_note(labels: pl.Series) -> str | None:
    """A note when two categorical labels are one text in two Unicode forms ("é" typed as
    U+00E9 and as "e" + U+0301, as macOS input gives it), or None. They stay two classes, as
    ingest keeps them (a label set names one spelling and refuses the other), but nothing
    else would tell the user why one answer split in two."""
    distinct = labels.drop_nulls().unique()
    composed = distinct.str.normalize("NFC")
    if composed.n_unique() == distinct.len():
        return None
    twins = (
        pl.DataFrame({"label": distinct, "composed": composed})
        .filter(pl.len().over("composed") > 1)
        .sort("composed", "label")
    )
    first = twins.filter(pl.col("composed") == twins.get_column("composed").first())
    spelled = " and ".join(ascii(value) for value in first.get_column("label").to_list())
    groups = twins.get_column("composed").n_unique()
    return (
        f"{groups} label(s) given in more than one Unicode form, kept as separate classes; "
        f"first: {spelled} (the same text in NFC)"
    )


def _shown_ids(ids: Sequence[object], *, shown: int = 3) -> str:
    text = ", ".join(repr(str(value)) for value in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _judged_gold(
    gold: pl.DataFrame,
    rows: pl.DataFrame,
    *,
    gold_path: str | Path,
    input_path: str | Path,
    task_column: str,
) -> pl.DataFrame:
    """The rows of `gold` whose task `rows` judges. A gold answer of another task anchors
    nothing, and must not shape the fit either (a label only it names would be a class of the
    model); GoldJudgesNothing when none is judged, naming a few of each file's task ids, as ids
    written another way (`7` for `007`, another column) are the usual cause."""
    tasks = rows.get_column("task_id").unique()
    judged = gold.filter(pl.col("task_id").is_in(tasks.implode()))
    if judged.height or gold.height == 0:
        return judged
    one = gold.height == 1
    raise GoldJudgesNothing(
        f"{gold_path}: none of its {gold.height} gold task{'' if one else 's'} is judged in "
        f"{input_path} (both read from column {task_column!r}): "
        f"{_shown_ids(gold.get_column('task_id').to_list())}; INPUT's tasks are like "
        f"{_shown_ids(rows.get_column('task_id').unique(maintain_order=True).to_list())}. "
        "Gold anchors only tasks INPUT judged: name tasks the same way in both (the column, "
        "zero padding, a prefix)"
    )


def _check_gold_pairs(
    gold: pl.DataFrame, rows: pl.DataFrame, *, gold_path: str | Path, input_path: str | Path
) -> None:
    """InputError naming the first gold row whose pair (either way round) is not a pair INPUT
    compares on that task: its winner names neither item compared there, so read as a side
    it would anchor the task on an answer nobody gave."""
    items = [pl.col("left").cast(pl.String), pl.col("right").cast(pl.String)]
    pair = pl.concat_list(pl.min_horizontal(items), pl.max_horizontal(items)).alias("pair")
    compared = rows.select("task_id", pair).unique()
    other = gold.with_columns(pair).join(compared, on=["task_id", "pair"], how="anti")
    if other.height == 0:
        return
    record = other.sort(_ROW).row(0, named=True)
    row, task = int(record[_ROW]), str(record["task_id"])
    shown = rows.filter(pl.col("task_id") == task).row(0, named=True)
    line = row_lines(gold_path, [row]).get(row)
    raise InputError(
        f"{gold_path}: {position(row, line)}: task {task!r} compares {record['left']!r} and "
        f"{record['right']!r}, but {input_path} compares {shown['left']!r} and "
        f"{shown['right']!r} on it; gold answers the pair its task shows"
    )


def _unjudged_note(
    gold: pl.DataFrame, judged: pl.DataFrame, *, gold_path: str | Path, input_path: str | Path
) -> str:
    """One line for stderr: how many gold tasks INPUT judged, and the first it did not."""
    others = gold.filter(~pl.col("task_id").is_in(judged.get_column("task_id").implode()))
    verb = "is" if judged.height == 1 else "are"
    anchors = "anchors" if others.height == 1 else "anchor"
    return (
        f"{gold_path}: {judged.height} of {gold.height} gold tasks {verb} judged in "
        f"{input_path}; the other {others.height} {anchors} nothing: "
        f"{_shown_ids(others.get_column('task_id').to_list())}"
    )


def _unanswered_label_note(
    gold: pl.DataFrame, rows: pl.DataFrame, *, gold_path: str | Path, input: str | Path
) -> str | None:
    """A note for stderr naming, by row, the gold labels no judgment in `rows` gave; None when
    there is none. Gold is the truth, so such a label is its task's answer; but it is more
    often a typo or another coding (`7` on a 0/1 task), which the user should see."""
    given = rows.get_column("label").unique().implode()
    unanswered = gold.filter(~pl.col("label").is_in(given)).sort(_ROW)
    if unanswered.height == 0:
        return None
    first = [int(row) for row in unanswered.get_column(_ROW).head(3)]
    lines = row_lines(gold_path, first)
    count = unanswered.height
    shown = "; ".join(
        f"{position(row, lines.get(row))}: task {task!r}, label {label!r}"
        for row, task, label in unanswered.select(_ROW, "task_id", "label").head(3).iter_rows()
    )
    more = f"; and {count - 3} more" if count > 3 else ""
    return (
        f"{gold_path}: {count} gold label{'' if count == 1 else 's'} no annotator gave in "
        f"{input}, kept as {'its' if count == 1 else 'their'} task's answer (the fit counts "
        f"{'it' if count == 1 else 'each'} as a class): {shown}{more}"
    )


def _gold_value_column(
    path: Path, *, kind: str, task_column: str, value_column: str | None
) -> str | None:
    """The column of the gold file at `path` that holds the answers: INPUT's value column when
    the file has it, else the one column beside `task_column` in a file of exactly two (truth
    files name it their own way, `truth` say). InputError naming the columns expected and
    found when neither holds; kinds with several value columns must use INPUT's names."""
    wanted = value_column if value_column is not None else VALUE_COLUMNS[kind][0]
    if value_column is None and len(VALUE_COLUMNS[kind]) > 1:
        return value_column
    have = _header(path)
    if have is None or (task_column in have and wanted in have):
        return value_column  # the reader says what is wrong with an unreadable file
    others = [name for name in have if name != task_column]
    if task_column in have and len(others) == 1:
        return others[0]
    raise InputError(
        f"{path}: gold needs INPUT's task column {task_column!r} and value column {wanted!r}, "
        f"or {task_column!r} and exactly one other column; "
        f"the file has {', '.join(repr(name) for name in have) or 'no columns'}"
    )


def _header(path: Path) -> list[str] | None:
    """The column names of the table at `path` (every key any JSON line has, in order of first
    appearance); None when it cannot be read, for the reader to report why."""
    try:
        fmt = format_of(path)
        if fmt == "parquet":
            return list(pl.read_parquet_schema(path))
        if fmt == "jsonl":
            names: dict[str, None] = {}
            with _open_input(path) as handle:
                for raw in handle:
                    record = json.loads(raw) if raw.strip() else None
                    if isinstance(record, dict):
                        names.update(dict.fromkeys(record))
            return list(names)
        separator = "\t" if fmt == "tsv" else ","
        return pl.read_csv(
            _csv_source(path), separator=separator, n_rows=0, infer_schema=False
        ).columns
    except (InputError, OSError, ValueError, pl.exceptions.PolarsError):
        return None


def _one_gold_answer(gold: pl.DataFrame, *, kind: str, path: str | Path) -> pl.DataFrame:
    """`gold` (with its `_ROW` numbers, kept) with each task once: the same answer given twice is
    one answer, and two different answers are an InputError naming the file and both rows.
    A fit anchored on either of two answers would be wrong for one of them, so this is not
    settled by taking the last."""
    if gold.get_column("task_id").n_unique() == gold.height:
        return gold
    seen: dict[str, tuple[int, str]] = {}
    keep: list[int] = []
    for record in gold.iter_rows(named=True):
        row = int(record[_ROW])
        values = {name: record[name] for name in VALUE_COLUMNS[kind]}
        if kind == "pairwise":
            # A pair may be shown either way round: its answer is the item that won.
            winner = values["winner"]
            named = values.get(winner) if winner in ("left", "right") else winner
            values = {"pair": sorted((values["left"], values["right"])), "winner": named}
        answer = json.dumps(values, sort_keys=True, default=str)
        task = str(record["task_id"])
        if task not in seen:
            seen[task] = (row, answer)
            keep.append(row)
        elif seen[task][1] != answer:
            first = seen[task][0]
            lines = row_lines(path, [first, row])
            raise InputError(
                f"{path}: {position(row, lines.get(row))}: task {task!r} already has another "
                f"gold answer at {position(first, lines.get(first))}; give each task one"
            )
    return gold.filter(pl.col(_ROW).is_in(keep))


def report_quarantine(table: KindTable, *, output_path: str | Path | None) -> str | None:
    """Write `table`'s quarantined rows beside `output_path` (if any) and return the summary
    for stderr (None when no row was quarantined)."""
    written_to = None
    if output_path is not None:
        written_to = quarantine_path(output_path)
        if table.quarantined:
            write_quarantine(table, written_to)
        else:
            # A quarantine file beside the output always describes the run that wrote it.
            written_to.unlink(missing_ok=True)
    return quarantine_summary(table, written_to=written_to)
