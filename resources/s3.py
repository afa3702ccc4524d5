"""The lake and the landing zone under S3 prefixes, through dagster-aws's S3 resource.

Kept apart from `lake` and `landing` because importing dagster-aws costs every process that
loads the code location about 2.5 s (its package imports Dagster's test utilities); only the
S3 profile imports this module.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from annotation_pipelines.ranged import RangedObject
from resources.lake import STAGING_LOCK, Lake, check_key, columns_of
from resources.landing import LandingZone

# A staging lock older than this was left by a run that died holding it (a staging step ends
# well within the ingest runs' 30-minute limit): the next run takes it over.
STAGING_LOCK_STALE_SECONDS = 1800
# How often a run waiting for the staging lock asks for it again.
STAGING_LOCK_POLL_SECONDS = 0.5

# Requests in flight at once, over the ranges of one object or several objects: S3 serves each
# connection at a fraction of what a host can take, and botocore's pool holds 10 connections.
PARALLEL_REQUESTS = 8


def chunk_ranges(
    metadata: pq.FileMetaData, columns: Iterable[str], groups: Iterable[int] | None = None
) -> list[tuple[int, int]]:
    """The byte ranges `[start, end)` of the column chunks of `columns` (top-level names; a
    nested column has one chunk per leaf) in row groups `groups` (default: all)."""
    wanted = set(columns)
    leaves = [
        number
        for number in range(metadata.num_columns)
        if metadata.schema.column(number).path.split(".")[0] in wanted
    ]
    ranges = []
    for group in range(metadata.num_row_groups) if groups is None else groups:
        row_group = metadata.row_group(group)
        for number in leaves:
            chunk = row_group.column(number)
            start = chunk.data_page_offset
            if chunk.has_dictionary_page and chunk.dictionary_page_offset:
                start = min(start, chunk.dictionary_page_offset)
            ranges.append((start, start + chunk.total_compressed_size))
    return ranges


class RangedParquetFile(pq.ParquetFile):
    """A Parquet object read by byte ranges (`RangedObject`): each read first fetches, at once,
    every column chunk it will decode; pyarrow would ask for them one after another."""

    def __init__(self, source: RangedObject, *, parallel: int = PARALLEL_REQUESTS) -> None:
        super().__init__(source)
        self._ranged, self._parallel = source, parallel

    def _prefetch(self, columns: Iterable[str] | None, groups: Iterable[int] | None) -> None:
        names = self.schema_arrow.names if columns is None else columns
        self._ranged.prefetch(chunk_ranges(self.metadata, names, groups), parallel=self._parallel)

    def read(self, columns: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._prefetch(columns, None)
        return super().read(columns, *args, **kwargs)

    def read_row_group(self, i: int, columns: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._prefetch(columns, [i])
        return super().read_row_group(i, columns, *args, **kwargs)

    def read_row_groups(
        self, row_groups: Any, columns: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        self._prefetch(columns, row_groups)
        return super().read_row_groups(row_groups, columns, *args, **kwargs)


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

    def _key(self, key: str, *, allow_empty: bool = False) -> str:
        check_key(key, allow_empty=allow_empty)
        return f"{self.prefix.strip('/')}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self._s3().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def move(self, source: str, target: str) -> bool:
        # S3 has no rename: a server-side copy (atomic for the target) then a delete.
        client = self._s3()
        try:
            client.copy_object(
                Bucket=self.bucket,
                Key=self._key(target),
                CopySource={"Bucket": self.bucket, "Key": self._key(source)},
            )
        except client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise
        client.delete_object(Bucket=self.bucket, Key=self._key(source))
        return True

    def modified_at(self, key: str) -> float:
        head = self._s3().head_object(Bucket=self.bucket, Key=self._key(key))
        return float(head["LastModified"].timestamp())

    def get(self, key: str) -> bytes:
        client = self._s3()
        try:
            response = client.get_object(Bucket=self.bucket, Key=self._key(key))
        except client.exceptions.NoSuchKey as error:
            raise FileNotFoundError(f"{self.uri(key)}: no such object") from error
        return response["Body"].read()

    def exists(self, key: str) -> bool:
        response = self._s3().list_objects_v2(Bucket=self.bucket, Prefix=self._key(key), MaxKeys=1)
        return any(item["Key"] == self._key(key) for item in response.get("Contents", []))

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._s3().get_paginator("list_objects_v2")
        root = self._key("", allow_empty=True)
        for page in paginator.paginate(
            Bucket=self.bucket, Prefix=self._key(prefix, allow_empty=True)
        ):
            keys.extend(item["Key"][len(root) :] for item in page.get("Contents", []))
        return sorted(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def delete(self, key: str) -> None:
        self._s3().delete_object(Bucket=self.bucket, Key=self._key(key))

    @contextlib.contextmanager
    def staging_lock(self, *, log: Callable[[str], None] | None = None) -> Iterator[None]:
        """`_locks/staging.lock` created with a conditional PUT (`If-None-Match: *`), which S3
        lets only one writer win, and deleted on release. A lock older than
        `STAGING_LOCK_STALE_SECONDS` is a dead run's and is taken over."""
        client = self._s3()
        key = self._key(STAGING_LOCK)
        owner = uuid.uuid4().hex
        body = json.dumps({"owner": owner, "taken_at": time.time()}).encode()
        told = False
        while True:
            try:
                client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
                break
            except client.exceptions.ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise
            try:
                held_since = client.head_object(Bucket=self.bucket, Key=key)["LastModified"]
            except client.exceptions.ClientError:
                continue  # released between the two requests
            if time.time() - held_since.timestamp() > STAGING_LOCK_STALE_SECONDS:
                with contextlib.suppress(client.exceptions.ClientError):
                    client.delete_object(Bucket=self.bucket, Key=key)
                continue
            if log is not None and not told:
                log("waiting for another run to finish staging")
                told = True
            time.sleep(STAGING_LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            # Deleted only while it is still this run's: a run that held it past the stale
            # age may have lost it to another.
            with contextlib.suppress(client.exceptions.ClientError):
                held = json.loads(client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
                if held.get("owner") == owner:
                    client.delete_object(Bucket=self.bucket, Key=key)

    def open_parquet(self, key: str) -> pq.ParquetFile:
        """The object read by byte ranges (`RangedParquetFile`): its footer, then only the
        row groups and columns asked for, each read's chunks fetched at once."""
        return self._ranged(key, parallel=PARALLEL_REQUESTS)

    def read_columns(self, key: str, columns: Sequence[str]) -> pl.DataFrame:
        return self._read_columns(key, columns, parallel=PARALLEL_REQUESTS)

    def read_columns_each(
        self, keys: Sequence[str], columns: Sequence[str]
    ) -> Iterator[pl.DataFrame]:
        """Several objects read at once (`PARALLEL_REQUESTS` requests in flight, shared by the
        objects and their ranges): each object's reads wait on round trips, not on this host.
        At most that many objects' columns are held ahead of the caller."""
        keys = list(keys)
        if len(keys) <= 1:
            yield from (self.read_columns(key, columns) for key in keys)
            return
        self._s3()  # one client for every thread, made before them
        workers = min(PARALLEL_REQUESTS, len(keys))
        each = max(1, PARALLEL_REQUESTS // workers)
        with ThreadPoolExecutor(workers) as pool:
            ahead: deque[Future[pl.DataFrame]] = deque()
            for key in keys:
                ahead.append(pool.submit(self._read_columns, key, columns, parallel=each))
                if len(ahead) >= workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()

    def _read_columns(self, key: str, columns: Sequence[str], *, parallel: int) -> pl.DataFrame:
        client = self._s3()
        try:
            return self._read_columns_once(key, columns, parallel=parallel)
        except client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") != "PreconditionFailed":
                raise
        # A commit moved a new version over the object between two of its ranges: read that.
        return self._read_columns_once(key, columns, parallel=parallel)

    def _read_columns_once(
        self, key: str, columns: Sequence[str], *, parallel: int
    ) -> pl.DataFrame:
        return columns_of(self._ranged(key, parallel=parallel), columns)

    def _ranged(self, key: str, *, parallel: int) -> RangedParquetFile:
        source = RangedObject(self._s3(), self.bucket, self._key(key), uri=self.uri(key))
        return RangedParquetFile(source, parallel=parallel)


class S3LandingZone(LandingZone):
    """An S3 prefix, through dagster-aws's S3 resource; the fingerprint is the object's ETag.

    An object becomes visible only once its upload (a multipart one too) is complete, so no
    settle time is needed unless a tool rewrites an object in several steps.
    """

    s3: S3Resource
    bucket: str
    prefix: str = "landing"
    _client: object = PrivateAttr(default=None)

    def _s3(self) -> Any:  # boto3 clients are untyped
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def _key(self, path: str) -> str:
        return f"{self.prefix.strip('/')}/{path}" if self.prefix else path

    def list_entries(self, prefix: str) -> list[tuple[str, str, float]]:
        root = self._key("")
        out = []
        paginator = self._s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                out.append(
                    (
                        item["Key"][len(root) :],
                        item["ETag"].strip('"'),
                        item["LastModified"].timestamp(),
                    )
                )
        return sorted(out)

    def read_bytes(self, path: str) -> bytes:
        return self._s3().get_object(Bucket=self.bucket, Key=self._key(path))["Body"].read()
