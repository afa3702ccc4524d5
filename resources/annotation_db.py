"""The annotation tool's database (PostgreSQL / Aurora), read in bulk as Arrow."""

from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import polars as pl
from dagster import ConfigurableResource

from annotation_pipelines.ingest.postgres import (
    DatabaseExtract,
    apply_schema,
    extract_since,
    safe_upper_bound,
    validate_identifier,
)
from annotation_pipelines.loop.writeback import changed_rows, live_lock, write_requests

# The live loop reads every few seconds: a re-read of the last 30 s (less the rows `seen`) is
# its second line of defence against a row that became visible late.
LIVE_OVERLAP = timedelta(seconds=30)


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

    # The live loop ------------------------------------------------------------------------

    def safe_upper_bound(self) -> datetime:
        """The latest `updated_at` no open transaction can still commit a row at or below."""
        return safe_upper_bound(self.dsn)

    def changed_rows(self, *, since: datetime, until: datetime) -> int:
        """Judgments and gold labels changed in (since, until], counted up to a cap."""
        return changed_rows(self.dsn, since=since, until=until, schema=self.db_schema)

    def extract_live(
        self,
        *,
        since: datetime,
        until: datetime | None = None,
        seen: pl.DataFrame | None = None,
        overlap: timedelta = LIVE_OVERLAP,
    ) -> DatabaseExtract:
        """`extract` with the short overlap a tick every few seconds wants."""
        return extract_since(
            self.dsn,
            since=since,
            until=until,
            schema=validate_identifier(self.db_schema),
            method=self.method,
            seen=seen,
            overlap=overlap,
        )

    def write_requests(
        self, *, task_requests: pl.DataFrame, annotator_actions: pl.DataFrame
    ) -> dict[str, int]:
        """Insert task requests and annotator actions once per `decision_id`."""
        apply_schema(self.dsn, schema=validate_identifier(self.db_schema))
        return write_requests(
            self.dsn,
            task_requests=task_requests,
            annotator_actions=annotator_actions,
            schema=self.db_schema,
        )

    def live_lock(self) -> AbstractContextManager[None]:
        """The advisory lock that serializes live updates (see `loop.writeback.live_lock`)."""
        return live_lock(self.dsn)
