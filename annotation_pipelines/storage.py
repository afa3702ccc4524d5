"""Local file writes that never leave a half-written file where a reader could see it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target.

    A rename within one file system is atomic on POSIX, so a crash leaves either the previous
    version or the new one, never a truncated file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_parquet(frame: pl.DataFrame, path: str | Path) -> None:
    """Write a Parquet file atomically (see `atomic_write_bytes`)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        frame.write_parquet(temporary, compression="zstd", statistics=True)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
