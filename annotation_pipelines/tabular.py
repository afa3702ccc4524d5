"""Read a user's table (CSV, TSV, Parquet, JSON Lines) with errors that name file, row and column.

Shared by every command-line entry point so `aggregate`, `agreement`, `forecast` and `ingest`
accept the same formats and fail the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class InputError(ValueError):
    """Bad user input; the message names the file and, where known, the row and column."""


# A header wider than this is refused before parsing: a million-column CSV would take minutes
# and gigabytes to read only to be useless; no annotation table is anywhere near this wide.
MAX_COLUMNS = 10_000
# The header is looked for within this many bytes (10,000 columns of long names fit).
_HEADER_BYTES = 4 * 1024 * 1024


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
            f"{source}: row 1 (header): {shown} columns; at most {MAX_COLUMNS:,} are accepted"
        )


def format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown format {suffix!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def read_table(
    path: str | Path,
    *,
    required_columns: Sequence[str] = (),
    string_columns: Sequence[str] = (),
) -> pl.DataFrame:
    """Read `path` by its extension; `string_columns` are read as text, exactly as written.

    Row numbers in errors are 1-based data rows (the header of a CSV is not counted), which is
    what a person sees when they open the file in a spreadsheet.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    kind = format_of(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    if kind in ("csv", "tsv"):
        with path.open("rb") as handle:
            head = handle.read(_HEADER_BYTES + 1)
        check_column_count(head, separator=b"\t" if kind == "tsv" else b",", source=path)
    try:
        if kind in ("csv", "tsv"):
            frame = pl.read_csv(
                path,
                separator="\t" if kind == "tsv" else ",",
                schema_overrides={column: pl.String for column in string_columns},
                infer_schema_length=10_000,
            )
        elif kind == "parquet":
            frame = pl.read_parquet(path)
        else:
            frame = _read_jsonl(path)
    except InputError:
        raise
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: unreadable {kind}: {_first_line(error)}") from error
    missing = [column for column in required_columns if column not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"the file has {', '.join(repr(c) for c in frame.columns) or 'no columns'}"
        )
    if frame.height == 0:
        raise InputError(f"{path}: no data rows")
    for column in required_columns:
        nulls = frame.get_column(column).is_null()
        first = nulls.arg_max() if nulls.any() else None
        if first is not None:
            raise InputError(f"{path}: row {first + 1}, column {column!r}: empty value")
    cast = [pl.col(c).cast(pl.String) for c in string_columns if c in frame.columns]
    frame = frame.with_columns(cast) if cast else frame
    for column in string_columns:
        if column in frame.columns and frame.schema[column] == pl.String:
            nul = frame.get_column(column).str.contains("\x00", literal=True).fill_null(False)
            first = nul.arg_max() if nul.any() else None
            if first is not None:
                raise InputError(f"{path}: row {first + 1}, column {column!r}: contains a NUL byte")
    return frame


def _read_jsonl(path: Path) -> pl.DataFrame:
    # Polars' NDJSON reader reports a byte offset at best; parse line by line so a bad row is
    # reported by its line number and the person can jump straight to it.
    records = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise InputError(f"{path}: row {number}: not valid JSON ({error})") from error
            except RecursionError as error:
                raise InputError(f"{path}: row {number}: JSON nested too deeply to read") from error
            if not isinstance(record, dict):
                raise InputError(f"{path}: row {number}: expected a JSON object")
            records.append(record)
    if not records:
        raise InputError(f"{path}: no data rows")
    return pl.from_dicts(records, infer_schema_length=None)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def write_table(frame: pl.DataFrame, path: str | Path) -> None:
    """Write by extension (`.parquet` or `.csv`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.write_parquet(path)
    elif suffix == ".csv":
        frame.write_csv(path)
    else:
        raise InputError(f"{path}: output must end in .parquet or .csv")
