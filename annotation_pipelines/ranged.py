"""One S3 object read by byte ranges, each range pinned to the version the first one read.

Used by the pipeline's S3 lake (through dagster-aws's boto3 client) and by the REST API's
downloads (through a client made from the settings), so neither ever mixes two versions of an
object that is replaced while it is read.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

# What the first request of a ranged read fetches from the object's end: Parquet readers read
# the footer from there first (pyarrow asks for the last 64 KiB), so one GET gives both the
# object's size and the footer; a small object comes whole in that one request.
TAIL_BYTES = 64 * 1024
# Column chunks closer than this are fetched in one request, gap included: a gap this small
# costs less than a request. Wider ones are left out, since the ranges are fetched in parallel
# and their round trips overlap. Not below pyarrow's own coalescing (8 KiB), so every read it
# makes falls inside one fetched range.
MERGE_GAP = 64 * 1024


class RangedObject(io.RawIOBase):
    """One S3 object as a seekable, read-only file whose reads are ranged GETs.

    Handed to `pyarrow.parquet.ParquetFile`, only the footer and the column chunks read are
    fetched, not the object. Why not `pyarrow.fs.S3FileSystem` or s3fs: both sign and send
    their own requests, so they would need the credentials, endpoint, TLS and retry settings
    of dagster-aws's `S3Resource` translated into theirs (and refreshed credentials, from a
    role or a profile, would not follow); s3fs also pins aiobotocore to an exact botocore.
    In the pipeline it goes through the resource's boto3 client, one configuration for every
    S3 call there; the API, which has no Dagster resource, hands it a client of its settings.
    Neither of the others can make a read conditional on a version.

    Raises FileNotFoundError when the object is gone. An object replaced between two reads
    (a commit moving a new version over it) fails the read rather than mixing versions: every
    range after the first is conditional on the first one's ETag.
    """

    def __init__(self, client: Any, bucket: str, key: str, *, uri: str) -> None:
        super().__init__()
        self._client, self._bucket, self._key, self._uri = client, bucket, key, uri
        self._position = 0
        self._etag = ""
        # The version read: its modification time, as the first response gives it.
        self.modified: datetime | None = None
        tail = self._get(f"bytes=-{TAIL_BYTES}", first=True)
        data = tail["Body"].read()
        # "bytes 0-99/100"; an empty object has no range to give and is read by its size.
        total = str(tail.get("ContentRange") or "").rpartition("/")[2]
        self.size = int(total) if total.isdigit() else len(data)
        # Fetched ranges, (start, bytes): reads inside one are served from memory.
        self._fetched: list[tuple[int, bytes]] = [(self.size - len(data), data)]

    def _get(self, byte_range: str, *, first: bool = False) -> Any:
        client = self._client
        extra = {} if first else {"IfMatch": self._etag}
        try:
            response = client.get_object(
                Bucket=self._bucket, Key=self._key, Range=byte_range, **extra
            )
        except client.exceptions.NoSuchKey as error:
            raise FileNotFoundError(f"{self._uri}: no such object") from error
        except client.exceptions.ClientError as error:
            if first and error.response.get("Error", {}).get("Code") == "InvalidRange":
                # An empty object: there is no last byte to start from.
                response = client.get_object(Bucket=self._bucket, Key=self._key)
            else:
                raise
        if first:
            self._etag = response["ETag"]
            self.modified = response.get("LastModified")
        return response

    def _range(self, start: int, end: int) -> bytes:
        return bytes(self._get(f"bytes={start}-{end - 1}")["Body"].read())

    def prefetch(self, ranges: Iterable[tuple[int, int]], *, parallel: int) -> None:
        """Fetch the byte ranges `[start, end)` a reader is about to read, at once: those
        closer than `MERGE_GAP` in one request, up to `parallel` requests in flight, so
        reading many column chunks costs about one round trip rather than one each."""
        merged: list[list[int]] = []
        for start, end in sorted(ranges):
            if merged and start - merged[-1][1] <= MERGE_GAP:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        wanted = [(a, b) for a, b in merged if self._cached(a, b) is None]
        if len(wanted) <= 1 or parallel <= 1:
            self._fetched.extend((a, self._range(a, b)) for a, b in wanted)
            return
        with ThreadPoolExecutor(min(parallel, len(wanted))) as pool:
            for (a, _), data in zip(
                wanted, pool.map(lambda r: self._range(*r), wanted), strict=True
            ):
                self._fetched.append((a, data))

    def _cached(self, start: int, end: int) -> bytes | None:
        for offset, data in self._fetched:
            if offset <= start and end <= offset + len(data):
                return data[start - offset : end - offset]
        return None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"{self._uri}: seek before the start")
        self._position = base + offset
        return self._position

    def read(self, size: int = -1) -> bytes:
        start = self._position
        end = self.size if size is None or size < 0 else min(self.size, start + size)
        if end <= start:
            return b""
        data = self._cached(start, end)
        if data is None:
            data = self._range(start, end)
        self._position = start + len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
