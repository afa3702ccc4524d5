"""The lake's layout, named once, and a read-only reader for it (no Dagster).

Every table is Parquet: `<table>/day=YYYY-MM-DD/data.parquet` when partitioned by day,
`<table>/data.parquet` otherwise, so DuckDB, Polars, Spark or Athena read it with hive
partitioning as it is. Next to the tables live the HTML quality reports, the versioned dataset
snapshots, and the ingest's staging, quarantine, alerts and state objects; their keys are built
here and nowhere else, so the writers (the Dagster resources and assets) and the readers (the
API, analysts) cannot drift apart.

`LakeReader` reads a local folder or an S3 prefix through one pyarrow file system, lists
partitions with their size and modification time (the content version an ETag is made from),
and keeps parsed partitions in a small cache keyed by that version, so a file rewritten by a new
materialization is read again on the next request and an unchanged one is not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

if TYPE_CHECKING:  # the layout names import nothing heavy; the reader imports pyarrow/polars
    import polars as pl
    from pyarrow import fs as pafs

    from annotation_pipelines.settings import Settings

DATA_FILE = "data.parquet"
Partitioning = Literal["day"]


@dataclass(frozen=True, kw_only=True)
class Table:
    """One lake table: its name (the asset's name) and how it is partitioned."""

    name: str
    partitioned_by: Partitioning | None
    description: str


def _tables(*tables: Table) -> dict[str, Table]:
    return {table.name: table for table in tables}


TABLES: dict[str, Table] = _tables(
    Table(name="raw_tasks", partitioned_by="day", description="Tasks as the source gave them."),
    Table(name="judgments", partitioned_by="day", description="One row per submitted judgment."),
    Table(name="gold_labels", partitioned_by="day", description="Known answers for gold tasks."),
    Table(
        name="aggregated_labels",
        partitioned_by="day",
        description="One label per task, with its confidence and the method.",
    ),
    Table(name="annotator_skill", partitioned_by="day", description="Skill per annotator."),
    Table(
        name="quality_report",
        partitioned_by="day",
        description="Agreement, gold accuracy and gate verdicts per project and day.",
    ),
    Table(
        name="annotator_scorecards",
        partitioned_by="day",
        description="Per annotator and day: accuracy, agreement, flags.",
    ),
    Table(
        name="reannotation_queue",
        partitioned_by="day",
        description="Tasks to send back for more judgments.",
    ),
    Table(
        name="annotator_pair_agreement",
        partitioned_by="day",
        description="Cohen's kappa per annotator pair.",
    ),
    Table(name="label_drift", partitioned_by="day", description="Drift against trailing weeks."),
    Table(
        name="kind_aggregated_labels",
        partitioned_by="day",
        description="One aggregate per task of a non-categorical project, in its kind's columns.",
    ),
    Table(
        name="kind_quality_report",
        partitioned_by="day",
        description="Agreement, gold metric and gate verdicts per non-categorical project and day.",
    ),
    Table(
        name="kind_scorecards",
        partitioned_by="day",
        description="Per annotator of a non-categorical project and day: reliability, flags.",
    ),
    Table(
        name="kind_reannotation_queue",
        partitioned_by="day",
        description="Tasks of non-categorical projects to send back for more judgments.",
    ),
    Table(name="compute_usage", partitioned_by="day", description="Accelerator telemetry."),
    Table(
        name="workforce_throughput_daily",
        partitioned_by="day",
        description="Per project and day: throughput, hours and backlog.",
    ),
    Table(
        name="compute_capacity_forecast",
        partitioned_by=None,
        description="Accelerator demand forecast with 80/95% intervals.",
    ),
    Table(
        name="workforce_capacity_forecast",
        partitioned_by=None,
        description="Task volume forecast per project with intervals.",
    ),
    Table(
        name="workforce_plan",
        partitioned_by=None,
        description="Per project: hours needed, the gap, the backlog clear date, risk.",
    ),
    Table(
        name="procurement_plan",
        partitioned_by=None,
        description="Accelerators to order, per series (written by the procurement asset).",
    ),
    Table(
        name="dataset_versions",
        partitioned_by=None,
        description="Every dataset snapshot ever written, with its lineage and filters.",
    ),
)

QUALITY_REPORTS = "reports/quality"
CAPACITY_REPORTS = "reports/capacity"
KIND_QUALITY_REPORTS = "reports/quality_kinds"
RUN_SUMMARIES = "run_summaries"
DATASETS = "datasets"
STAGING = "staging"
QUARANTINE = "quarantine"
ALERTS = "alerts"
STATE = "state"
ANNOTATION_DB_WATERMARK_KEY = f"{STATE}/annotation_db_watermark.json"
ANNOTATION_DB_SEEN_KEY = f"{STATE}/annotation_db_seen.parquet"
# The keys the daily extract's tombstones removed from staging, with the window's start: a
# retry of the window counts those an attempt that failed already removed.
ANNOTATION_DB_WITHDRAWN_KEY = f"{STATE}/annotation_db_withdrawn.json"
# The rating scales the annotation DB's projects declare (`projects.scale`), as the daily
# extract last read them: project -> its scale as settings declare one. The daily kind
# aggregation reads them beside each project.json.
ANNOTATION_DB_SCALES_KEY = f"{STATE}/annotation_db_scales.json"
DATASET_SPLIT_FORMATS = ("parquet", "jsonl")
MANIFEST_FILE = "manifest.json"
CARD_FILE = "card.md"
# Beside a project's version folders: the version its curation produced last. Versions are
# immutable and named by content, so a rebuild that gives an older content again writes no
# new folder; this pointer is what says that version is current again.
CURRENT_FILE = "current.json"

# One path segment: what a project, version, source or table name may be inside a key, so a
# value taken from a request can never climb out of its folder.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class UnsafeKeyError(ValueError):
    """A name or key that could reach outside the lake's root."""


def segment(value: str, *, field: str) -> str:
    """`value` when it is one safe key segment; else UnsafeKeyError naming `field`."""
    if not _SEGMENT.match(value) or ".." in value:
        raise UnsafeKeyError(f"{field}={value!r}: not a valid name (letters, digits, _ . = + -)")
    return value


def _table_name(name: str) -> str:
    # A table is named by its asset key, whose parts join with "/": each part is one segment.
    return "/".join(segment(part, field="table") for part in name.split("/"))


def _day(day: str | dt.date) -> str:
    text = day.isoformat() if isinstance(day, dt.date) else day
    if not _DAY.match(text):
        raise ValueError(f"day={text!r}: expected YYYY-MM-DD")
    return text


def table(name: str) -> Table:
    """The table named `name`; KeyError names the known tables."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown lake table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def table_prefix(name: str) -> str:
    return f"{_table_name(name)}/"


def partition_key(name: str, day: str | dt.date | None = None) -> str:
    """The key (relative to the lake root) of one table partition, or of an unpartitioned table."""
    if day is None:
        return f"{_table_name(name)}/{DATA_FILE}"
    return f"{_table_name(name)}/day={_day(day)}/{DATA_FILE}"


def day_of(name: str, key: str) -> str | None:
    """The day of a partition key of table `name` (None: not one of its partitions)."""
    prefix = f"{name}/day="
    if not key.startswith(prefix) or not key.endswith(f"/{DATA_FILE}"):
        return None
    day = key[len(prefix) : -len(DATA_FILE) - 1]
    return day if _DAY.match(day) else None


def quality_report_html_key(day: str | dt.date, project: str) -> str:
    return f"{QUALITY_REPORTS}/day={_day(day)}/{segment(project, field='project')}.html"


def dataset_prefix(project: str, version: str | None = None) -> str:
    base = f"{DATASETS}/{segment(project, field='project')}/"
    return base if version is None else f"{base}{segment(version, field='version')}/"


def dataset_current_key(project: str) -> str:
    return dataset_prefix(project) + CURRENT_FILE


def dataset_manifest_key(project: str, version: str) -> str:
    return dataset_prefix(project, version) + MANIFEST_FILE


def dataset_card_key(project: str, version: str) -> str:
    return dataset_prefix(project, version) + CARD_FILE


def dataset_split_key(project: str, version: str, split: str, *, file_format: str) -> str:
    if file_format not in DATASET_SPLIT_FORMATS:
        raise ValueError(f"format={file_format!r}: use one of {', '.join(DATASET_SPLIT_FORMATS)}")
    return dataset_prefix(project, version) + f"{segment(split, field='split')}.{file_format}"


def staging_prefix(name: str, day: str | dt.date | None = None) -> str:
    """The folder of one staged table (every day), or of one of its days."""
    base = f"{STAGING}/{_table_name(name)}/"
    return base if day is None else f"{base}day={_day(day)}/"


def staging_key(name: str, day: str | dt.date, source: str) -> str:
    """One source's staged rows of table `name` for `day`."""
    return f"{staging_prefix(name, day)}{segment(source, field='source')}.parquet"


def staging_source(key: str) -> str:
    """The source a staged key belongs to (the inverse of `staging_key`)."""
    return key.rsplit("/", 1)[-1].removesuffix(".parquet")


def staging_day(key: str) -> str:
    """The day a staged key belongs to (the inverse of `staging_key`)."""
    return key.split("/")[2].removeprefix("day=")


def quarantine_key(source: str, batch: str = "data") -> str:
    """The rows quarantined from one source (one batch of it, for incremental sources)."""
    source, batch = segment(source, field="source"), segment(batch, field="batch")
    return f"{QUARANTINE}/source={source}/{batch}.parquet"


def kind_report_key(day: str | dt.date) -> str:
    """The HTML quality report of every non-categorical project for one day."""
    return f"{KIND_QUALITY_REPORTS}/day={_day(day)}/kinds.html"


def kind_requests_key(day: str | dt.date) -> str:
    """The day's requests of every non-categorical project as a Label Studio task list."""
    return f"{KIND_QUALITY_REPORTS}/day={_day(day)}/requests.json"


def dataset_file_key(project: str, version: str, name: str) -> str:
    """One file of a curated-dataset snapshot."""
    return dataset_prefix(project, version) + segment(name, field="file")


def capacity_report_key(as_of: str | dt.date) -> str:
    """The HTML capacity report of one planning date."""
    return f"{CAPACITY_REPORTS}/as_of={_day(as_of)}/capacity.html"


def dataset_folder(project: str, version: str) -> str:
    """The folder of one immutable curated-dataset snapshot (no trailing slash)."""
    return dataset_prefix(project, version).rstrip("/")


def dataset_manifest_keys(keys: Iterable[str]) -> list[str]:
    """The snapshot manifests among `keys` (a listing of the `DATASETS` folder)."""
    return [key for key in keys if key.endswith(f"/{MANIFEST_FILE}")]


def manifest_created_at(manifest: dict[str, object], modified: dt.datetime) -> dt.datetime:
    """When a snapshot version was made: its manifest's `created_at`, which a manifest rewritten
    after the version was made (its trainer files brought to a newer format) carries, else the
    time the manifest was written (`modified`), once, with its version."""
    stamp = manifest.get("created_at")
    return dt.datetime.fromisoformat(stamp) if isinstance(stamp, str) else modified


def alert_key(stamp: dt.datetime) -> str:
    """One batch of alerts, named by when it was raised (sorts in time order)."""
    return f"{ALERTS}/{stamp:%Y%m%dT%H%M%S%f}.parquet"


def alert_record_key(identity: str) -> str:
    """One alert a sensor raised, named by what it says (`assets.common.alerts.alert_identity`),
    so that evaluating the sensor again from the same cursor writes the same object."""
    return f"{ALERTS}/alert-{identity}.parquet"


def run_summary_key(run_id: str) -> str:
    """The summary table of one successful run."""
    return f"{RUN_SUMMARIES}/{segment(run_id, field='run_id')}.parquet"


# The reader -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileVersion:
    """One object in the lake and the version of its content (size and modification time)."""

    key: str
    size: int
    mtime_ns: int

    @property
    def token(self) -> str:
        return f"{self.key}:{self.size}:{self.mtime_ns}"

    @property
    def modified(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.mtime_ns / 1e9, tz=dt.UTC)


def content_tag(parts: Iterable[str]) -> str:
    """A short, stable digest of the given version tokens (for ETags)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


T = TypeVar("T")


class LakeFileError(Exception):
    """A lake file that is listed but cannot be read: truncated, corrupt, not Parquet, or gone
    between the listing and the read. Names the file by its key, never by a local path."""

    def __init__(self, key: str, cause: str) -> None:
        super().__init__(f"{key} cannot be read: {cause}")
        self.key = key
        self.cause = cause

    @property
    def table(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def partition(self) -> str | None:
        """The day of a partition file (None: an unpartitioned table's file)."""
        return day_of(self.table, self.key)


class LakeFileChanged(LakeFileError):
    """A lake file replaced between its listing and its read, or one S3 would not give this
    time (throttled, timed out): the request fails, but the file is not broken, so the lake
    is not unready for it."""


class _VersionedCache:
    """A bounded LRU of values derived from lake files, keyed by the files' versions."""

    def __init__(self, *, entries: int) -> None:
        self._entries = entries
        self._values: OrderedDict[tuple[object, ...], object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...], build: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                # Values are stored untyped; a key is only ever built by one `build`, so its
                # value has that build's type.
                return cast(T, self._values[key])
        value = build()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self._entries:
                self._values.popitem(last=False)
        return value


def s3_root(settings: Settings) -> str:
    """`bucket/prefix` of the settings' S3 lake, without a trailing slash."""
    return f"{settings.bucket}/{settings.lake_prefix.strip('/')}".rstrip("/")


class LakeReader:
    """Read-only access to the lake on a pyarrow file system (local folder or S3 prefix)."""

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        root: str,
        *,
        cache_entries: int = 256,
        s3_client: Any = None,
    ) -> None:
        self._fs = filesystem
        self._root = root.rstrip("/")
        self._cache = _VersionedCache(entries=cache_entries)
        self._local = type(filesystem).__name__ == "LocalFileSystem"
        # Files streamed whole (downloads) are read through it, each range pinned to the
        # version the first range read; pyarrow's S3 reads cannot be made conditional.
        self._s3 = s3_client

    @classmethod
    def from_settings(cls, settings: Settings, *, cache_entries: int = 256) -> LakeReader:
        """The lake of the settings' profile: `<data dir>/lake`, or the bucket's lake prefix."""
        from pyarrow import fs as pafs

        if settings.bucket is None:
            return cls(pafs.LocalFileSystem(), str(settings.lake_dir), cache_entries=cache_entries)
        options: dict[str, object] = {}
        if settings.s3_endpoint:
            scheme, _, host = settings.s3_endpoint.partition("://")
            options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        if settings.aws_region:
            options["region"] = settings.aws_region
        import boto3
        from botocore.config import Config

        endpoint = settings.s3_endpoint
        if endpoint and "://" not in endpoint:
            endpoint = f"https://{endpoint}"  # as pyarrow reads an endpoint without a scheme
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=settings.aws_region,
            # One connection per thread that may stream a download (anyio's default pool is 40);
            # botocore's default of 10 would drop and reopen connections above 10 at once.
            config=Config(max_pool_connections=40, retries={"mode": "standard"}),
        )
        return cls(
            pafs.S3FileSystem(**options),
            s3_root(settings),
            cache_entries=cache_entries,
            s3_client=client,
        )

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}" if key else self._root

    @property
    def is_local(self) -> bool:
        """The lake is a folder on this machine: listing it costs stat calls, not round trips."""
        return self._local

    def local_path(self, key: str) -> Path | None:
        """A path a reader can open directly, when the lake is on this machine."""
        return Path(self._path(key)) if self._local else None

    def reachable(self) -> bool:
        """The lake's folder exists; on S3 its bucket does. A prefix with no object under it
        yet is an empty lake there, as an empty folder is here, but a mistyped bucket is no
        lake at all."""
        from pyarrow import fs as pafs

        where = self._root if self._local else self._root.split("/", 1)[0]
        try:
            info = self._fs.get_file_info(where)
        except OSError:
            return False
        return info.type == pafs.FileType.Directory

    def files(self, prefix: str) -> dict[str, FileVersion]:
        """Every object under `prefix` (recursive) with its version, by key; hidden files and
        in-progress writes (dot-files) are left out."""
        from pyarrow import fs as pafs

        selector = pafs.FileSelector(self._path(prefix.rstrip("/")), recursive=True)
        selector.allow_not_found = True
        found: dict[str, FileVersion] = {}
        for info in self._fs.get_file_info(selector):
            if info.type != pafs.FileType.File or info.base_name.startswith("."):
                continue
            key = info.path[len(self._root) + 1 :]
            found[key] = FileVersion(key, int(info.size or 0), int(info.mtime_ns or 0))
        return found

    def stat(self, key: str) -> FileVersion | None:
        from pyarrow import fs as pafs

        info = self._fs.get_file_info(self._path(key))
        if info.type != pafs.FileType.File:
            return None
        return FileVersion(key, int(info.size or 0), int(info.mtime_ns or 0))

    def partitions(self, name: str) -> dict[str, FileVersion]:
        """The day partitions of table `name`, by day, sorted by day."""
        found = {
            day: version
            for key, version in self.files(table_prefix(name)).items()
            if (day := day_of(name, key)) is not None
        }
        return dict(sorted(found.items()))

    def freshest(self) -> dict[str, dict[str, object]]:
        """Per table present in the lake: its newest day (partitioned) and last write time."""
        freshest: dict[str, dict[str, object]] = {}
        for name, spec in TABLES.items():
            if spec.partitioned_by == "day":
                parts = self.partitions(name)
                if parts:
                    newest = max(parts.values(), key=lambda version: version.mtime_ns)
                    freshest[name] = {
                        "freshest_partition": next(reversed(parts)),
                        "partitions": len(parts),
                        "updated_at": newest.modified.isoformat(),
                    }
            elif (version := self.stat(partition_key(name))) is not None:
                freshest[name] = {"updated_at": version.modified.isoformat()}
        return freshest

    def read_bytes(self, key: str) -> bytes:
        """The file at `key`; LakeFileError when it cannot be read (gone since it was listed)."""
        try:
            with self._fs.open_input_file(self._path(key)) as handle:
                return handle.read()
        except OSError as error:
            raise self._file_error(key, error) from error

    def open(self, version: FileVersion):  # noqa: ANN201 - a file object: seek, read in chunks
        """The file at `version` for random access; LakeFileError when it cannot be opened (gone
        or replaced since it was listed). On S3 each read is a ranged GET on the version the
        first one read, so a file replaced while it is streamed fails the read instead of
        sending bytes of both versions; a local file, replaced by a rename, stays the one
        opened."""
        if self._s3 is None:
            try:
                return self._fs.open_input_file(self._path(version.key))
            except OSError as error:
                raise self._file_error(version.key, error) from error
        from annotation_pipelines.ranged import RangedObject

        bucket, _, key = self._path(version.key).partition("/")
        try:
            handle = RangedObject(self._s3, bucket, key, uri=version.key)
        except FileNotFoundError as error:
            raise self._file_error(version.key, error) from error
        except Exception as error:  # botocore's: throttled, timed out, credentials expired
            raise LakeFileChanged(
                version.key, self._file_error(version.key, error).cause
            ) from error
        # S3 keeps modification times to the second; the listing's may carry milliseconds.
        listed = version.mtime_ns // 1_000_000_000
        if handle.size != version.size or (
            handle.modified is not None and int(handle.modified.timestamp()) != listed
        ):
            handle.close()
            raise LakeFileChanged(version.key, "replaced since it was listed")
        return handle

    def frame(self, version: FileVersion) -> pl.DataFrame:
        """The Parquet file at `version`, parsed once per version; LakeFileError when it
        cannot be."""
        return self.cached(("frame", version.token), lambda: self._read_parquet(version.key))

    def distinct(self, version: FileVersion, column: str) -> frozenset[str]:
        """The values of `column` in the Parquet file at `version`, reading that column alone
        (on S3 its byte ranges, not the file), once per version; LakeFileError when it cannot
        be read."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        def build() -> frozenset[str]:
            try:
                with self._fs.open_input_file(self._path(version.key)) as handle:
                    # Read as a dictionary: the distinct values are its entries that are used,
                    # found without hashing every row's string.
                    table = pq.ParquetFile(handle, read_dictionary=[column]).read(columns=[column])
            except (OSError, ValueError) as error:  # pyarrow's IO and ArrowInvalid errors
                raise self._file_error(version.key, error) from error
            return frozenset(
                str(value)
                for chunk in table[column].chunks
                for value in chunk.dictionary.take(pc.unique(chunk.indices)).to_pylist()
                if value is not None
            )

        return self.cached(("distinct", column, version.token), build)

    def check_footer(self, version: FileVersion) -> None:
        """Read the Parquet footer of `version` (its last few kB: schema and row groups), the
        cheap proof that a file was written whole; LakeFileError when it cannot be read."""
        import pyarrow.parquet as pq

        try:
            with self._fs.open_input_file(self._path(version.key)) as handle:
                pq.read_metadata(handle)
        except (OSError, ValueError) as error:  # pyarrow's IO and ArrowInvalid errors
            raise self._file_error(version.key, error) from error

    def _file_error(self, key: str, error: BaseException) -> LakeFileError:
        # The lake's own location (a local path, a bucket) stays out of the message.
        return LakeFileError(key, str(error).replace(f"{self._root}/", "").replace(self._root, ""))

    def frames(self, versions: Iterable[FileVersion]) -> pl.DataFrame:
        """Several Parquet files as one frame (columns missing in some are null there)."""
        import polars as pl

        parts = [self.frame(version) for version in versions]
        if not parts:
            return pl.DataFrame()
        return pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]

    def cached(self, key: tuple[object, ...], build: Callable[[], T]) -> T:
        """`build()`, memoized under `key`; include the versions it reads in `key`."""
        return self._cache.get(key, build)

    def _read_parquet(self, key: str) -> pl.DataFrame:
        import polars as pl

        try:
            path = self.local_path(key)
            if path is not None:
                return pl.read_parquet(path)
            return pl.read_parquet(io.BytesIO(self.read_bytes(key)))
        except (pl.exceptions.PolarsError, OSError, ValueError) as error:
            raise self._file_error(key, error) from error
