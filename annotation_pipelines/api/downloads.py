"""Lake files served as Starlette serves a local file: HEAD, byte ranges, If-Range.

Starlette's FileResponse already answers Range (206 with Content-Range, multipart/byteranges
for several ranges, 416 past the end), If-Range and HEAD, but only for a path on this machine.
`LakeFileResponse` hands it the size and time the lake listing gave and, on an S3 lake, reads
through the lake's file system instead, so a local and an S3 lake answer alike.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio.to_thread
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from annotation_pipelines.lake import FileVersion, LakeReader


class RangeError(ValueError):
    """A Range header the file cannot answer: `status` 416 (it starts past the end, and
    `size` is the file's) or 400 (it is not a byte range)."""

    def __init__(self, status: int, message: str, *, size: int) -> None:
        super().__init__(message)
        self.status = status
        self.size = size


def _stat(version: FileVersion) -> os.stat_result:
    # What FileResponse reads of a stat: the size (Content-Length, ranges) and the time
    # (Last-Modified, which If-Range may carry); the listing's, so no second stat is made.
    seconds = version.mtime_ns // 1_000_000_000
    return os.stat_result((stat.S_IFREG | 0o444, 0, 0, 1, 0, 0, version.size, 0, seconds, seconds))


def range_unit(header: str) -> str | None:
    """The unit of a Range header (`bytes`), None when it has none."""
    unit, found, _ = header.partition("=")
    return unit.strip().lower() if found else None


class _LakeFile:
    """A pyarrow random-access file with the awaitable `read` and `seek` FileResponse uses;
    each call runs in a worker thread (on S3 a read is a network round trip)."""

    def __init__(self, handle: object) -> None:
        self._handle = handle

    async def read(self, size: int) -> bytes:
        return bytes(await anyio.to_thread.run_sync(self._handle.read, size))  # type: ignore[attr-defined]

    async def seek(self, offset: int) -> None:
        await anyio.to_thread.run_sync(self._handle.seek, offset)  # type: ignore[attr-defined]


class LakeFileResponse(FileResponse):
    """The lake file at `version`, whole or in the byte ranges the request asks for."""

    # On S3 every read is a ranged GET: a megabyte a request, not Starlette's 64 kB.
    chunk_size = 1 << 20

    def __init__(
        self,
        reader: LakeReader,
        version: FileVersion,
        *,
        headers: Mapping[str, str],
        media_type: str,
    ) -> None:
        local = reader.local_path(version.key)
        super().__init__(
            local if local is not None else version.key,
            headers=headers,
            media_type=media_type,
            stat_result=_stat(version),
        )
        self._reader = reader
        self._version = version
        self._handle: object | None = None

    def check_range(self, range_header: str | None, if_range: str | None) -> None:
        """Raises RangeError for a byte range the file cannot answer, before the answer is
        started, so the error is a problem body like any other (Starlette's is plain text).
        A range another unit or a stale If-Range leaves out is no error: the whole file is
        served."""
        if range_header is None or range_unit(range_header) not in ("bytes", None):
            return
        if if_range is not None and if_range not in (
            self.headers["etag"],
            self.headers["last-modified"],
        ):
            return
        size = int(self.headers["content-length"])
        try:
            self._parse_range_header(range_header, size)
        except RangeNotSatisfiable:
            raise RangeError(
                416, f"the range starts past the end of the file ({size} bytes)", size=size
            ) from None
        except MalformedRangeHeader as error:
            raise RangeError(400, f"malformed Range header: {error.content}", size=size) from None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HTTP has a server ignore a range unit it does not know; Starlette refuses it (400).
        headers = [
            (name, value)
            for name, value in scope.get("headers", [])
            if name != b"range" or range_unit(value.decode("latin-1")) in ("bytes", None)
        ]
        scope = {**scope, "headers": headers}
        if not self._reader.is_local:
            # A server that sends files by path would be handed the lake key as one.
            extensions = dict(scope.get("extensions") or {})
            extensions.pop("http.response.pathsend", None)
            scope["extensions"] = extensions
        # Opened before the status line is sent: a file gone since the listing is then a
        # LakeFileError the app answers 503, not a 200 cut short.
        self._handle = await anyio.to_thread.run_sync(self._reader.open, self._version)
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._handle.close)  # type: ignore[attr-defined]

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[_LakeFile]:  # type: ignore[override]
        # FileResponse reads every body, whole or ranged, through this one opener.
        # The one handle __call__ opened; ranges seek in it, and __call__ closes it.
        yield _LakeFile(self._handle)
