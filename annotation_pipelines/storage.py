"""Local file writes that never leave a half-written file where a reader could see it."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import polars as pl

# A temporary file this old in a folder being written to belongs to a writer that died (a write
# takes seconds); younger ones may belong to a writer still at work, so they are left alone.
STALE_TEMPORARY_SECONDS = 3600.0


def temporary_prefix(target: Path) -> str:
    """The name prefix of every temporary file written on the way to `target`."""
    return f".{target.name}."


def remove_stale_temporaries(
    folder: str | Path, *, older_than_seconds: float = STALE_TEMPORARY_SECONDS
) -> list[Path]:
    """Delete hidden temporaries (`.<name>.*`) older than the age in `folder`; return them.

    A writer killed between creating its temporary and the rename leaves the temporary behind;
    nothing else ever removes it, so each write sweeps the folder it writes to.
    """
    base = Path(folder)
    if not base.is_dir():
        return []
    cutoff = time.time() - older_than_seconds
    removed = []
    for candidate in base.iterdir():
        if not candidate.name.startswith(".") or candidate.name.count(".") < 2:
            continue
        try:
            if candidate.is_file() and candidate.stat().st_mtime < cutoff:
                candidate.unlink()
                removed.append(candidate)
        except FileNotFoundError:  # another writer's sweep or rename got there first
            continue
    return removed


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target.

    A rename within one file system is atomic on POSIX, so a crash leaves either the previous
    version or the new one, never a truncated file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(target), dir=target.parent)
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
    remove_stale_temporaries(target.parent)
    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(target), dir=target.parent)
    os.close(handle)
    try:
        frame.write_parquet(temporary, compression="zstd", statistics=True)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
