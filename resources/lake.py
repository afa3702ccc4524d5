"""The Parquet lake: day-partitioned tables on a local path or an S3 prefix, and its IO manager.

Why not dagster-polars' `PolarsParquetIOManager` or dagster-duckdb-polars: with Polars 2 and
DuckDB 2 (pinned in uv.lock) both fail to load inputs — Polars 2 removed `scan_parquet(rechunk=)`
and DuckDB 2 dropped `.arrow()` — and pinning Polars/DuckDB back a major version to keep them
would cost us Polars 2's streaming engine everywhere else. What we need from an IO manager is
small: one key per (asset, day), atomic writes, and inputs that span several days concatenated.
Dagster's `UPathIOManager` would route S3 through s3fs, which pins aiobotocore to an exact
botocore and fights the boto3 that dagster-aws needs; so storage goes through the same boto3
client as dagster-aws's `S3Resource` instead, and the IO manager is ~100 lines on top.

Layout: `<table>/day=YYYY-MM-DD/data.parquet` for daily partitions, `<table>/data.parquet`
otherwise, so DuckDB, Polars, Spark or Athena read the lake with hive partitioning as it is.

Keys come from project names and file paths that users choose, so every key is checked before
it touches storage: a key that is absolute, has a `..` segment, a backslash or a NUL, or (on
disk) resolves outside the root through a symlink is refused with `UnsafeKeyError`.

Steps that write several objects which only make sense together (a quality report, its HTML and
the scorecards that resolve its pseudonyms; a file's staged rows across days) go through
`Lake.commit`, a roll-forward commit: every object is first written under `_commits/<id>/`,
then one marker `_commits/<id>.json` is written atomically, then the objects are moved into
place and the marker removed. A step killed before the marker leaves the previous versions
untouched (its staged objects are swept later as orphans); a step killed after it is finished by
the next `recover()` (run by the next commit, the IO manager's first load and `maintain()`).
Rolling forward was chosen over readers picking "the newest complete set" because every reader
(Dagster inputs, DuckDB, the API, analysts' notebooks) keeps reading plain keys unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)
from pydantic import PrivateAttr

from annotation_pipelines.curation.privacy import safe_for_display
from annotation_pipelines.lake import UnsafeKeyError, partition_key
from annotation_pipelines.markdown import frame_to_markdown
from annotation_pipelines.schema import COLUMN_DOCS
from annotation_pipelines.settings import CRASH_IN_COMMIT, crash_point, load_settings
from annotation_pipelines.storage import (
    STALE_TEMPORARY_SECONDS,
    atomic_write_bytes,
    remove_stale_temporaries,
)

COMMITS = "_commits"
# The lock that staging runs hold while they check project names against the staged ones and
# commit their own (`Lake.staging_lock`).
STAGING_LOCK = "_locks/staging.lock"
CRASH_POINT_ENV = CRASH_IN_COMMIT


def check_key(key: str, *, allow_empty: bool = False) -> str:
    """`key` if it is a relative, forward-slash path with no `..` segment; else raise."""
    problem = None
    if not key and not allow_empty:
        problem = "it is empty"
    elif "\x00" in key:
        problem = "it contains a NUL byte"
    elif "\\" in key:
        problem = "it contains a backslash"
    elif key.startswith("/") or (len(key) > 1 and key[1] == ":"):
        problem = "it is absolute"
    elif ".." in key.split("/"):
        problem = "it has a '..' segment"
    if problem:
        raise UnsafeKeyError(f"lake key {key!r} refused: {problem}")
    return key


def _crash_if_asked(point: str) -> None:
    if crash_point() == point:
        os.kill(os.getpid(), signal.SIGKILL)


def columns_of(parquet: pq.ParquetFile, columns: Sequence[str]) -> pl.DataFrame:
    """`Lake.read_columns` over an opened Parquet file: the asked columns it has."""
    names = set(parquet.schema_arrow.names)
    present = [c for c in columns if c in names]
    if not present:
        return pl.DataFrame()
    frame = pl.from_arrow(parquet.read(columns=present))
    assert isinstance(frame, pl.DataFrame)
    return frame


def columns_from_bytes(
    read: Callable[[str], bytes],
) -> Callable[[Sequence[str], Sequence[str]], Iterator[pl.DataFrame]]:
    """`Lake.read_columns_each` for a store that only reads whole objects (`read`)."""

    def read_columns_each(keys: Sequence[str], columns: Sequence[str]) -> Iterator[pl.DataFrame]:
        return (columns_of(pq.ParquetFile(io.BytesIO(read(key))), columns) for key in keys)

    return read_columns_each


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


class Lake(ConfigurableResource):
    """Where the lake lives. Subclasses implement bytes in / bytes out and listing."""

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def get_if_exists(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none (the engines' `read` callables)."""
        return self.get(key) if self.exists(key) else None

    def list_keys(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def uri(self, key: str) -> str:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def local_path(self, key: str) -> Path | None:
        """A path a reader can open directly, when the lake is on this machine."""
        return None

    def staging_lock(
        self, *, log: Callable[[str], None] | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Held by a run from reading the staged projects to committing its own staging.

        Two runs that stage at the same moment (two export files of one sensor tick, an export
        beside the DB extract) would otherwise each check a new project's name against staging
        without the other's rows, and both spellings of a case twin would be staged. `log` is
        told once when the run has to wait. A lake that cannot lock stages without one."""
        return contextlib.nullcontext()

    def read_columns(self, key: str, columns: Sequence[str]) -> pl.DataFrame:
        """The `columns` of the Parquet object `key`, in the order asked, but for those it
        lacks (a file staged before the column existed): those are left out, for the caller to
        say what their absence means. With none of them present, an empty frame.

        Only the footer and the asked columns' chunks are read: a local lake opens the file in
        place; an object store reads byte ranges (`open_parquet`), so the bytes fetched follow
        the columns asked, not the object's size. Raises FileNotFoundError if `key` is gone."""
        path = self.local_path(key)
        if path is None:
            return columns_of(self.open_parquet(key), columns)
        present = [c for c in columns if c in pl.read_parquet_schema(path)]
        return pl.read_parquet(path, columns=present) if present else pl.DataFrame()

    def read_columns_each(
        self, keys: Sequence[str], columns: Sequence[str]
    ) -> Iterator[pl.DataFrame]:
        """`read_columns` of each of `keys`, in their order (an object store reads several
        at once)."""
        return (self.read_columns(key, columns) for key in keys)

    def open_parquet(self, key: str) -> pq.ParquetFile:
        """The Parquet object `key` opened for reading its footer, then the row groups and
        columns asked for. Here: opened in place on a local lake, else fetched whole; an
        object store that reads byte ranges overrides it."""
        path = self.local_path(key)
        return pq.ParquetFile(path if path is not None else io.BytesIO(self.get(key)))

    def move(self, source: str, target: str) -> bool:
        """Move `source` over `target`; False if `source` is gone (someone moved it already)."""
        raise NotImplementedError

    def modified_at(self, key: str) -> float:
        """When `key` was last written, in seconds since the epoch."""
        raise NotImplementedError

    def age_seconds(self, key: str) -> float:
        """Seconds since `key` was last written."""
        return time.time() - self.modified_at(key)

    # Commits --------------------------------------------------------------------------------

    def commit(self, writes: Mapping[str, bytes], *, deletes: Sequence[str] = ()) -> None:
        """Write every object in `writes` and remove every key in `deletes`, all or nothing.

        See the module docstring: staged objects, one atomic marker, then moves. A reader may
        see some objects new and some old only while a live commit is moving (milliseconds).
        """
        for key in [*writes, *deletes]:
            check_key(key)
        self.recover()
        commit_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        marker = f"{COMMITS}/{commit_id}.json"
        # Each move is listed before its object is staged, so a failure mid-put is cleaned too.
        moves: list[list[str]] = []
        writing = ""
        try:
            for number, (key, data) in enumerate(writes.items()):
                staged = f"{COMMITS}/{commit_id}/{number:05d}"
                moves.append([staged, key])
                writing = f"{staged} (staged for {key})"
                self.put(staged, data)
            _crash_if_asked("staged")
            writing = f"{marker} (the commit's marker)"
            self.put(marker, json.dumps({"moves": moves, "deletes": list(deletes)}).encode())
        except BaseException as error:
            outcome = self._discard_staging(commit_id, [s for s, _ in moves], marker=marker)
            error.add_note(f"lake commit {commit_id}: writing {writing} failed; {outcome}")
            raise
        self._apply(marker)

    def _discard_staging(self, commit_id: str, staged: Sequence[str], *, marker: str) -> str:
        """Remove what a commit that failed before its marker staged, best effort: a failure
        here must not hide the commit's own error, and `maintain()` sweeps what is left. The
        marker may have landed after all (an object store's reply lost after the write): then
        the commit stands and `recover()` finishes it. Says which happened."""
        try:
            if self.exists(marker):
                return "its marker was written after all, so the next commit finishes it"
        except Exception:
            return "its marker could not be checked; the next commit or maintain() settles it"
        left = 0
        for key in staged:
            try:
                self.delete(key)
            except Exception:
                left += 1
        with contextlib.suppress(Exception):
            self._forget_commit(f"{COMMITS}/{commit_id}")
        if left:
            return f"nothing of it was applied; {left} staged object(s) are left for maintain()"
        return "nothing of it was applied"

    def _apply(self, marker: str) -> None:
        plan = json.loads(self.get(marker))
        for done, (staged, target) in enumerate(plan["moves"], start=1):
            self.move(staged, target)
            _crash_if_asked(f"moved:{done}")
        written = {target for _, target in plan["moves"]}
        for key in plan["deletes"]:
            if key not in written:
                self.delete(key)
        self.delete(marker)
        self._forget_commit(marker.removesuffix(".json"))

    def _forget_commit(self, folder: str) -> None:
        """Drop what is left of a finished commit's staging folder (object stores have none)."""

    def pending_commits(self) -> list[str]:
        """Markers of commits whose moves have not all happened (their writer died)."""
        return [
            key
            for key in self.list_keys(f"{COMMITS}/")
            if key.endswith(".json") and key.count("/") == 1
        ]

    def recover(self) -> int:
        """Finish every commit whose writer died after its marker; return how many."""
        markers = self.pending_commits()
        for marker in markers:
            try:
                self._apply(marker)
            except FileNotFoundError:  # another process finished it meanwhile
                continue
        return len(markers)

    def maintain(self, *, older_than_seconds: float = STALE_TEMPORARY_SECONDS) -> list[str]:
        """Finish interrupted commits, then remove staged objects of commits that never got a
        marker and are older than the age (younger ones may be a live writer's); return them."""
        self.recover()
        markers = {key.removesuffix(".json") for key in self.pending_commits()}
        removed = []
        for key in self.list_keys(f"{COMMITS}/"):
            commit = key.rsplit("/", 1)[0]
            if key.count("/") < 2 or commit in markers:
                continue
            if self.age_seconds(key) > older_than_seconds:
                self.delete(key)
                removed.append(key)
        return removed

    # Tables ---------------------------------------------------------------------------------

    def write_table(self, table: str, frame: pl.DataFrame, *, day: str | None = None) -> str:
        key = partition_key(table, day)
        self.put(key, parquet_bytes(frame))
        return key

    def put_frame(self, key: str, frame: pl.DataFrame) -> None:
        self.put(key, parquet_bytes(frame))

    def get_frame(self, key: str) -> pl.DataFrame:
        path = self.local_path(key)
        if path is not None:
            return pl.read_parquet(path)
        return pl.read_parquet(io.BytesIO(self.get(key)))

    def read_table(self, table: str, *, day: str | None = None) -> pl.DataFrame:
        key = partition_key(table, day)
        path = self.local_path(key)
        if path is not None:
            return pl.read_parquet(path)
        return pl.read_parquet(io.BytesIO(self.get(key)))

    def has_table(self, table: str, *, day: str | None = None) -> bool:
        return self.exists(partition_key(table, day))

    def days(self, table: str) -> list[str]:
        """The days for which `table` has a partition, sorted."""
        found = set()
        for key in self.list_keys(f"{table}/"):
            part = key[len(table) + 1 :].split("/", 1)[0]
            if part.startswith("day="):
                found.add(part[4:])
        return sorted(found)

    def scan_all(self, table: str) -> pl.LazyFrame:
        """Every day of `table` as one lazy frame (filters push down into the Parquet scan)."""
        return self.scan_days(table, self.days(table))

    def scan_days(self, table: str, days: list[str]) -> pl.LazyFrame:
        """The given days of `table`, lazily: a local lake is scanned in place (projections and
        filters reach the Parquet reader); an object-store lake is fetched day by day."""
        days = [day for day in days if self.has_table(table, day=day)]
        if not days:
            return pl.LazyFrame()
        paths = [self.local_path(partition_key(table, day)) for day in days]
        local = [path for path in paths if path is not None]
        if len(local) == len(paths):
            # One scan per file, each with its own schema: a single scan takes the first
            # (oldest) file's and drops a column newer files added (a new report field).
            return pl.concat([pl.scan_parquet(path) for path in local], how="diagonal_relaxed")
        return self.read_days(table, days).lazy()

    def read_days(self, table: str, days: Iterable[str]) -> pl.DataFrame:
        """Concatenate the given days of `table` (days with no partition are skipped)."""
        frames = [self.read_table(table, day=day) for day in days if self.has_table(table, day=day)]
        if not frames:
            return pl.DataFrame()
        return pl.concat(frames, how="diagonal_relaxed")


class LocalLake(Lake):
    """The lake on a local folder (the embedded default)."""

    base_path: str

    def _path(self, key: str, *, allow_empty: bool = False) -> Path:
        root = Path(self.base_path).resolve()
        path = root / check_key(key, allow_empty=allow_empty)
        # Symlinks inside the lake could still lead out of it: check where the path really is.
        if not path.resolve().is_relative_to(root):
            raise UnsafeKeyError(f"lake key {key!r} refused: it resolves outside {root}")
        return path

    def put(self, key: str, data: bytes) -> None:
        atomic_write_bytes(data, self._path(key))

    def move(self, source: str, target: str) -> bool:
        destination = self._path(target)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self._path(source), destination)
        except FileNotFoundError:
            return False
        return True

    def modified_at(self, key: str) -> float:
        return self._path(key).stat().st_mtime

    def _forget_commit(self, folder: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self._path(folder).rmdir()

    def maintain(self, *, older_than_seconds: float = STALE_TEMPORARY_SECONDS) -> list[str]:
        removed = super().maintain(older_than_seconds=older_than_seconds)
        root = Path(self.base_path).resolve()
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            for path in remove_stale_temporaries(folder, older_than_seconds=older_than_seconds):
                removed.append(path.relative_to(root).as_posix())
        cutoff = time.time() - older_than_seconds
        for folder in root.joinpath(COMMITS).glob("*"):
            if folder.is_dir() and folder.stat().st_mtime < cutoff and not any(folder.iterdir()):
                folder.rmdir()
        return removed

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    @contextlib.contextmanager
    def staging_lock(self, *, log: Callable[[str], None] | None = None) -> Iterator[None]:
        """An exclusive `flock` on `_locks/staging.lock`: every process on this machine sees
        it, and the kernel releases it when its holder dies, so a killed run blocks no one."""
        path = self._path(STAGING_LOCK)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if log is not None:
                    log("waiting for another run to finish staging")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        root = Path(self.base_path).resolve()
        base = self._path(prefix, allow_empty=True)
        if not base.exists():
            return []
        return sorted(
            path.relative_to(root).as_posix()
            for path in base.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )

    def uri(self, key: str) -> str:
        return str(self._path(key).resolve())

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


def table_metadata(
    frame: pl.DataFrame, *, preview_rows: int = 10
) -> dict[str, MetadataValue | TableSchema]:
    """Row count, column schema and a markdown preview: the metadata every table gets."""
    # Previews never show raw annotator ids (they are personal data); the lake table does.
    preview = frame_to_markdown(
        safe_for_display(frame.head(preview_rows), key=load_settings().pseudonym_key),
        rows=preview_rows,
        text_width=40,
    )
    return {
        "dagster/row_count": MetadataValue.int(frame.height),
        "dagster/column_schema": column_schema(frame),
        "preview": MetadataValue.md(preview),
    }


def column_schema(frame: pl.DataFrame) -> TableSchema:
    """The frame's columns and types as the UI's column schema, each canonical column with
    its description (`schema.COLUMN_DOCS`)."""
    return TableSchema(
        columns=[
            TableColumn(name, str(dtype), description=COLUMN_DOCS.get(name))
            for name, dtype in frame.schema.items()
        ]
    )


class LakeIOManager(ConfigurableIOManager):
    """Stores Polars frames in the lake; an input spanning several days is concatenated."""

    lake: Lake
    _recovered: bool = PrivateAttr(default=False)

    def _table(self, context: OutputContext | InputContext) -> str:
        return "/".join(context.asset_key.path)

    def handle_output(self, context: OutputContext, obj: pl.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a Polars DataFrame")
        day = context.partition_key if context.has_partition_key else None
        key = self.lake.write_table(self._table(context), obj, day=day)
        context.add_output_metadata(
            {**table_metadata(obj), "dagster/uri": MetadataValue.path(self.lake.uri(key))}
        )

    def load_input(self, context: InputContext) -> pl.DataFrame:
        if not self._recovered:
            # A step killed mid-commit must not leave its downstream reading half of its outputs.
            self.lake.recover()
            self._recovered = True
        table = self._table(context)
        if not context.has_asset_partitions:
            return self.lake.read_table(table)
        days = list(context.asset_partition_keys)
        missing = [day for day in days if not self.lake.has_table(table, day=day)]
        if len(days) == 1 and missing:
            raise FileNotFoundError(
                f"{table} has no partition for {days[0]} in the lake; materialize it first"
            )
        if missing:
            context.log.warning(f"{table}: {len(missing)} of {len(days)} days absent: {missing}")
        return self.lake.read_days(table, days)
