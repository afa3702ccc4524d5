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
from annotation_pipelines.settings import ANNOTATION_DB_DSN

# The live loop reads every few seconds: a re-read of the last 30 s (less the rows `seen`) is
# its second line of defence against a row that became visible late.
LIVE_OVERLAP = timedelta(seconds=30)


class AnnotationDatabase(ConfigurableResource):
    """Connection settings; the DSN comes from the environment (EnvVar) in every profile.

    Without one (the local demo, `make dev` on a laptop) the resource still loads: what needs
    the database says so when used, and the loops that poll it skip (`configured`).
    """

    dsn: str | None = None
    db_schema: str = "public"
    method: str = "adbc"

    @property
    def configured(self) -> bool:
        """Whether a DSN is set."""
        return self.dsn is not None

    @property
    def required_dsn(self) -> str:
        """The DSN, or an error naming the variable that sets it."""
        if self.dsn is None:
            raise RuntimeError(f"no annotation DB configured: set {ANNOTATION_DB_DSN}")
        return self.dsn

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
            self.required_dsn,
            since=since,
            until=until,
            schema=validate_identifier(self.db_schema),
            method=self.method,
            seen=seen,
        )

    # The live loop ------------------------------------------------------------------------

    def safe_upper_bound(self) -> datetime:
        """The latest `updated_at` no open transaction can still commit a row at or below."""
        return safe_upper_bound(self.required_dsn)

    def changed_rows(self, *, since: datetime, until: datetime) -> int:
        """Judgments and gold labels changed in (since, until], counted up to a cap."""
        return changed_rows(self.required_dsn, since=since, until=until, schema=self.db_schema)

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
            self.required_dsn,
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
        apply_schema(self.required_dsn, schema=validate_identifier(self.db_schema))
        return write_requests(
            self.required_dsn,
            task_requests=task_requests,
            annotator_actions=annotator_actions,
            schema=self.db_schema,
        )

    def live_lock(self) -> AbstractContextManager[None]:
        """The advisory lock that serializes live updates (see `loop.writeback.live_lock`)."""
        return live_lock(self.required_dsn)
