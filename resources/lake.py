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
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from annotation_pipelines.curation.privacy import safe_for_display
from annotation_pipelines.markdown import frame_to_markdown
from annotation_pipelines.settings import load_settings
from annotation_pipelines.storage import atomic_write_bytes

DATA_FILE = "data.parquet"


def partition_key(table: str, day: str | None) -> str:
    """The object key (relative to the lake root) of one table partition."""
    return f"{table}/day={day}/{DATA_FILE}" if day else f"{table}/{DATA_FILE}"


def _to_bytes(frame: pl.DataFrame) -> bytes:
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

    def list_keys(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def uri(self, key: str) -> str:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def local_path(self, key: str) -> Path | None:
        """A path a reader can open directly, when the lake is on this machine."""
        return None

    # Tables ---------------------------------------------------------------------------------

    def write_table(self, table: str, frame: pl.DataFrame, *, day: str | None = None) -> str:
        key = partition_key(table, day)
        self.put(key, _to_bytes(frame))
        return key

    def put_frame(self, key: str, frame: pl.DataFrame) -> None:
        self.put(key, _to_bytes(frame))

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
        if all(path is not None for path in paths):
            return pl.scan_parquet(paths, missing_columns="insert", extra_columns="ignore")
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

    def _path(self, key: str) -> Path:
        return Path(self.base_path) / key

    def put(self, key: str, data: bytes) -> None:
        atomic_write_bytes(data, self._path(key))

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        root = Path(self.base_path)
        base = root / prefix
        if not base.exists():
            return []
        return sorted(
            str(path.relative_to(root))
            for path in base.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )

    def uri(self, key: str) -> str:
        return str(self._path(key).resolve())

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


class S3Lake(Lake):
    """The lake under an S3 prefix, through dagster-aws's S3 resource (one PUT is atomic)."""

    s3: S3Resource
    bucket: str
    prefix: str = "lake"
    _client: object = PrivateAttr(default=None)

    def _s3(self) -> Any:  # boto3 clients are untyped
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix.strip('/')}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self._s3().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        return self._s3().get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        response = self._s3().list_objects_v2(Bucket=self.bucket, Prefix=self._key(key), MaxKeys=1)
        return any(item["Key"] == self._key(key) for item in response.get("Contents", []))

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._s3().get_paginator("list_objects_v2")
        root = self._key("")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(item["Key"][len(root) :] for item in page.get("Contents", []))
        return sorted(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def delete(self, key: str) -> None:
        self._s3().delete_object(Bucket=self.bucket, Key=self._key(key))


def table_metadata(frame: pl.DataFrame, *, preview_rows: int = 10) -> dict[str, object]:
    """Row count, column schema and a markdown preview: the metadata every table gets."""
    # Previews never show raw annotator ids (they are personal data); the lake table does.
    preview = frame_to_markdown(
        safe_for_display(frame.head(preview_rows), key=load_settings().pseudonym_key),
        rows=preview_rows,
        text_width=40,
    )
    return {
        "dagster/row_count": MetadataValue.int(frame.height),
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
        ),
        "preview": MetadataValue.md(preview),
    }


class LakeIOManager(ConfigurableIOManager):
    """Stores Polars frames in the lake; an input spanning several days is concatenated."""

    lake: Lake

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
