"""The annotation tool's database (PostgreSQL / Aurora), read in bulk as Arrow."""

from datetime import datetime

import polars as pl
from dagster import ConfigurableResource

from annotation_pipelines.ingest.postgres import DatabaseExtract, extract_since, validate_identifier


class AnnotationDatabase(ConfigurableResource):
    """Connection settings; the DSN comes from the environment (EnvVar) in every profile."""

    dsn: str
    db_schema: str = "public"
    method: str = "adbc"

    def extract(
        self,
        *,
        since: datetime,
        until: datetime | None = None,
        seen: pl.DataFrame | None = None,
    ) -> DatabaseExtract:
        """Rows changed in (since, until], validated like an export file.

        `until` defaults to just before the oldest open transaction; `seen` is the previous
        extract's `seen`, so the overlap it re-reads skips rows already read.
        """
        return extract_since(
            self.dsn,
            since=since,
            until=until,
            schema=validate_identifier(self.db_schema),
            method=self.method,
            seen=seen,
        )
