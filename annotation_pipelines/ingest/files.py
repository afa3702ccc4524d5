"""Ingest one export file, raw bytes (an S3 object) or every file of a folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TypedDict

from annotation_pipelines.ingest.formats import FORMATS, TABLE_FORMATS
from annotation_pipelines.ingest.label_studio import parse_label_studio
from annotation_pipelines.ingest.result import (
    IngestResult,
    UnreadableFileError,
    combine,
    set_aside_case_twins,
)
from annotation_pipelines.ingest.tables import ColumnMapping, parse_sagemaker, parse_table
from annotation_pipelines.ingest.validation import DEFAULT_MAX_FIELD_BYTES
from annotation_pipelines.scale import RatingScale
from annotation_pipelines.tabular import GZIP_SUFFIX, read_input

# Which files of a folder belong to a format; anything else in the folder is ignored.
SUFFIXES: dict[str, tuple[str, ...]] = {
    "label-studio": (".json",),
    "sagemaker-gt": (".manifest", ".jsonl", ".json"),
    "csv": (".csv",),
    "tsv": (".tsv", ".tab"),
    "parquet": (".parquet",),
    "jsonl": (".jsonl", ".ndjson"),
}


def _listed_suffixes(format: str) -> tuple[str, ...]:
    """The names a folder's files of `format` end in: gzipped too, as a file named alone and
    the landing zone's are unpacked by name."""
    return SUFFIXES[format] + tuple(suffix + GZIP_SUFFIX for suffix in SUFFIXES[format])


class _ParseOptions(TypedDict):
    """The options every parser takes, passed through by `ingest_bytes`."""

    project: str | None
    label_set: list[str] | None
    scale: RatingScale | None
    now: datetime | None
    max_field_bytes: int


# Names that upload tools give a file until it is complete, then rename it from.
UPLOAD_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", "._COPYING_")


def is_upload_in_progress(name: str) -> bool:
    """Whether a file name is not an export to read: one that a copy or download gives a file
    still being written (a leading dot, `UPLOAD_SUFFIXES`), or an office lock file (`~$`
    before the name of a file open in Excel or LibreOffice), which holds no rows."""
    return name.startswith((".", "~$")) or name.lower().endswith(
        tuple(s.lower() for s in UPLOAD_SUFFIXES)
    )


def ingest_bytes(
    data: bytes,
    *,
    format: str,
    source_file: str,
    project: str | None = None,
    label_set: Sequence[str] | None = None,
    scale: RatingScale | None = None,
    mapping: ColumnMapping | None = None,
    now: datetime | None = None,
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
    kind: str | None = None,
    allow_empty: bool = True,
    coordinates: str | None = None,
) -> IngestResult:
    """Validate and normalize one export held in memory; `source_file` names it in provenance.

    `kind` (tables only): every row's kind; None reads a `kind` column or infers it from the
    value columns present. Label Studio and SageMaker exports say their kinds themselves.

    `coordinates` (tables only): the unit the project declares for its boxes
    (`validation.project_coordinates`), that of each boxes row that gives none. Label Studio
    and SageMaker exports say their units themselves (percent; pixels with the image size).

    `allow_empty`: an empty file (nothing but whitespace), in any format, is zero rows. In the
    landing zone emptying a file is how its rows are taken back, so that is the default; a
    caller given a file by hand passes False and gets `UnreadableFileError`.

    Raises `UnreadableFileError` (an `InputError`) naming `source_file` when nothing in it can
    be read; otherwise bad rows are in `result.quarantine` and good rows still load.
    """
    if not data.strip():
        if not allow_empty:
            raise UnreadableFileError(f"{source_file}: empty file")
        return replace(combine([]), files=(source_file,))
    labels = list(label_set) if label_set is not None else None
    options: _ParseOptions = {
        "project": project,
        "label_set": labels,
        "scale": scale,
        "now": now,
        "max_field_bytes": max_field_bytes,
    }
    if format == "label-studio":
        return parse_label_studio(data, source_file=source_file, **options)
    if format == "sagemaker-gt":
        return parse_sagemaker(data, source_file=source_file, **options)
    if format in TABLE_FORMATS:
        return parse_table(
            data,
            format=format,
            source_file=source_file,
            mapping=mapping,
            kind=kind,
            coordinates=coordinates,
            **options,
        )
    raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")


def ingest_path(
    path: str | Path,
    *,
    format: str,
    project: str | None = None,
    label_set: Sequence[str] | None = None,
    scale: RatingScale | None = None,
    mapping: ColumnMapping | None = None,
    now: datetime | None = None,
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
    kind: str | None = None,
    allow_empty: bool = False,
    coordinates: str | None = None,
) -> IngestResult:
    """Ingest a file, or every file of `format` in a folder (sorted by name, not recursive).
    An empty file given alone is an `UnreadableFileError` unless `allow_empty` (see
    `ingest_bytes`); in a folder it is zero rows, as the landing zone reads the same folder.
    `coordinates`: as for `ingest_bytes`."""
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError(f"{path}: no such file or folder")
    if path.is_dir():
        # As the landing zone lists a folder: never a file still being written or a lock file.
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file()
            and p.name.lower().endswith(_listed_suffixes(format))
            and not is_upload_in_progress(p.name)
        )
        if not files:
            suffixes = ", ".join(_listed_suffixes(format))
            raise UnreadableFileError(f"{path}: no {format} files ({suffixes})")
        allow_empty = True
    else:
        files = [path]
    results = []
    for file in files:
        # Unpacked here, not by the parsers: their checks (a cut-short file, the encoding)
        # read the bytes, and Polars would otherwise unpack a gzipped CSV but not JSON Lines.
        data = read_input(file)
        results.append(
            ingest_bytes(
                data,
                format=format,
                source_file=str(file),
                project=project,
                label_set=label_set,
                scale=scale,
                mapping=mapping,
                now=now,
                max_field_bytes=max_field_bytes,
                kind=kind,
                allow_empty=allow_empty,
                coordinates=coordinates,
            )
        )
    return set_aside_case_twins(combine(results))
