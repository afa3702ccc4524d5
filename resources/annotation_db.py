"""The annotation tool's database (PostgreSQL / Aurora), read in bulk as Arrow."""

from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import polars as pl
from dagster import ConfigurableResource, get_dagster_logger
from pydantic import PrivateAttr

from annotation_pipelines.ingest.connection import Timeouts, conninfo
from annotation_pipelines.ingest.postgres import (
    DatabaseExtract,
    SkippedMigration,
    apply_schema,
    extract_since,
    safe_upper_bound,
    validate_identifier,
)
from annotation_pipelines.loop.writeback import (
    LiveLock,
    StateWrite,
    changed_rows,
    live_lock,
    read_reversals,
    revoked_attempts,
    write_requests_recorded,
)
from annotation_pipelines.settings import ANNOTATION_DB_DSN

# The live loop reads every few seconds: a re-read of the last 30 s (less the rows `seen`) is
# its second line of defence against a row that became visible late.
LIVE_OVERLAP = timedelta(seconds=30)


class AnnotationDatabase(ConfigurableResource):
    """Connection settings; the DSN comes from the environment (EnvVar) in every profile.

    Without one (the local demo, `make dev` on a laptop) the resource still loads: what needs
    the database says so when used, and the loops that poll it skip (`configured`).

    Every connection is bounded (`ingest.connection`): opening one, each statement, and the
    wait for the live lock, with limits per use: a sensor's probes must answer well inside a
    tick's 60 s, an extract may read for minutes, a live run waits minutes for the lock and
    then fails (the daemon retries it).
    """

    dsn: str | None = None
    db_schema: str = "public"
    method: str = "adbc"
    connect_timeout_seconds: int = 10
    probe_timeout_seconds: int = 5
    statement_timeout_seconds: int = 600
    lock_timeout_seconds: int = 180
    # The most rows one live extract reads (`extract_live`), ties at its end aside.
    live_max_rows: int = 500_000
    # Dagster gives each run its own copy of a resource, so these are per run.
    _schema_current: bool = PrivateAttr(default=False)
    _skipped: list[SkippedMigration] = PrivateAttr(default_factory=list)

    def _ensure_schema(self) -> None:
        """Bring the tool DB's schema up to date (`apply_schema`) on this instance's first read
        or write that needs it, and not again: even with nothing to migrate it is a connection
        and a few statements, and a run reads reversals and writes requests. An optional
        migration this role may not apply, or whose lock does not come in time, is logged as a
        warning and left to the next run (`skipped_migrations`); a required one fails the run."""
        if not self._schema_current:
            self._skipped = apply_schema(self.work_dsn, schema=validate_identifier(self.db_schema))
            for skipped in self._skipped:
                get_dagster_logger().warning(f"annotation DB: {skipped.message()}")
            self._schema_current = True

    @property
    def skipped_migrations(self) -> list[SkippedMigration]:
        """The optional migrations this run could not apply (after its first read or write)."""
        return list(self._skipped)

    def _bounded(self, *, statement: float, lock: float | None = None) -> str:
        timeouts = Timeouts(connect=self.connect_timeout_seconds, statement=statement, lock=lock)
        return conninfo(self.required_dsn, timeouts)

    @property
    def probe_dsn(self) -> str:
        """The DSN with the connect timeout and the short statement timeout of a probe."""
        return self._bounded(statement=self.probe_timeout_seconds)

    @property
    def work_dsn(self) -> str:
        """The DSN with the connect timeout and the statement timeout of an extract or write."""
        return self._bounded(
            statement=self.statement_timeout_seconds, lock=self.statement_timeout_seconds
        )

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
            self.work_dsn,
            since=since,
            until=until,
            schema=validate_identifier(self.db_schema),
            method=self.method,
            seen=seen,
        )

    # The live loop ------------------------------------------------------------------------

    def safe_upper_bound(self) -> datetime:
        """The latest `updated_at` no open transaction can still commit a row at or below."""
        return safe_upper_bound(self.probe_dsn)

    def changed_rows(self, *, since: datetime, until: datetime) -> int:
        """Judgments and gold labels changed (or else deleted) in (since, until], counted up
        to a cap."""
        return changed_rows(self.probe_dsn, since=since, until=until, schema=self.db_schema)

    def extract_live(
        self,
        *,
        since: datetime,
        until: datetime | None = None,
        seen: pl.DataFrame | None = None,
        overlap: timedelta = LIVE_OVERLAP,
    ) -> DatabaseExtract:
        """`extract` with the short overlap a tick every few seconds wants, bounded to about
        `live_max_rows` rows (`extract_since`'s `max_rows`): after an outage the backlog is
        read in slices, one per run, each committing its position."""
        return extract_since(
            self.work_dsn,
            since=since,
            until=until,
            schema=validate_identifier(self.db_schema),
            method=self.method,
            seen=seen,
            overlap=overlap,
            max_rows=self.live_max_rows,
        )

    def write_requests_recorded(
        self,
        *,
        task_requests: pl.DataFrame,
        annotator_actions: pl.DataFrame,
        withdrawn: Collection[str] = (),
        settled: pl.DataFrame | None = None,
        decided_at: datetime | None = None,
        states: Collection[StateWrite] = (),
        lock: LiveLock | None = None,
    ) -> tuple[dict[str, int], dict[str, datetime]]:
        """Insert task requests and annotator actions once per `decision_id` and withdraw the
        requests no longer wanted: the counts, and the `created_at` the DB already held for
        requests written before at another time (`loop.writeback.write_requests_recorded`)."""
        self._ensure_schema()
        return write_requests_recorded(
            self.work_dsn,
            task_requests=task_requests,
            annotator_actions=annotator_actions,
            schema=self.db_schema,
            withdrawn=withdrawn,
            settled=settled,
            decided_at=decided_at,
            states=states,
            lock=lock,
        )

    def read_reversals(
        self, *, since: datetime, until: datetime, overlap: timedelta = LIVE_OVERLAP
    ) -> pl.DataFrame:
        """The blocks the tool revoked in the live extract's window (`since`, `until`], with
        its overlap (see `loop.writeback.read_reversals`)."""
        # The reversal columns come with migration 4: bring an older tool DB up first.
        self._ensure_schema()
        return read_reversals(
            self.work_dsn, since=since, until=until, overlap=overlap, schema=self.db_schema
        )

    def revoked_attempts(self, states: Mapping[str, int]) -> pl.DataFrame:
        """The blocks uncommitted attempts of the live `states` (prefix → committed version)
        wrote and the tool revoked since (see `loop.writeback.revoked_attempts`)."""
        self._ensure_schema()
        return revoked_attempts(self.work_dsn, states, schema=self.db_schema)

    def live_lock(self) -> AbstractContextManager[LiveLock]:
        """The advisory lock that serializes live updates (see `loop.writeback.live_lock`),
        waited for at most `lock_timeout_seconds`; verify it before committing."""
        return live_lock(
            self._bounded(
                statement=self.lock_timeout_seconds + self.probe_timeout_seconds,
                lock=self.lock_timeout_seconds,
            )
        )
