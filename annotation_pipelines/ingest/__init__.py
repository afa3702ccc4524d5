"""Ingest engine: parse exports and database extracts into the canonical tables, no Dagster.

Public entry points (the asset/sensor layer and the CLI call these):
`ingest_path`, `ingest_bytes` (files / S3 objects), `extract_judgments_since` (the annotation
database), `seed_database` and `apply_schema` (DDL + synthetic workload into Postgres).
"""

from annotation_pipelines.ingest.files import FORMATS, ingest_bytes, ingest_path
from annotation_pipelines.ingest.result import IngestResult, UnreadableFileError, combine
from annotation_pipelines.ingest.tables import ColumnMapping
from annotation_pipelines.ingest.validation import REASONS

__all__ = [
    "FORMATS",
    "REASONS",
    "ColumnMapping",
    "IngestResult",
    "UnreadableFileError",
    "combine",
    "ingest_bytes",
    "ingest_path",
]
