"""Ingest engine: parse exports and database extracts into the canonical tables, no Dagster.

Public entry points (the asset/sensor layer and the CLI call these):
`ingest_path`, `ingest_bytes` (files / S3 objects), `extract_judgments_since` (the annotation
database), `seed_database` and `apply_schema` (DDL + synthetic workload into Postgres).
"""

from annotation_pipelines.lazy_exports import lazy_exports

# Each name is imported from its module on first use, so importing one submodule (the CLI's
# `command`) does not import its siblings.
__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "files": ("ingest_bytes", "ingest_path"),
        "formats": ("FORMATS",),
        "result": ("IngestResult", "UnreadableFileError", "combine"),
        "tables": ("ColumnMapping",),
        "validation": ("REASONS",),
    },
)
