"""Where the top-level objects of a JSON array start and end, found without parsing it.

Used to split a large Label Studio export into tasks (for chunked parsing, line numbers in
provenance, and re-reading one bad task at a time) at NumPy speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ArrayScan:
    """Byte offsets of the top-level objects of a JSON array and the line each starts on."""

    starts: np.ndarray
    ends: np.ndarray  # exclusive end offset; -1 for an object cut off by a truncated file
    lines: np.ndarray
    closed: bool
    # Lines of top-level elements that are not objects (a number, a string, a nested array):
    # not tasks, but rows read, so they are quarantined rather than dropped without a trace.
    stray_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def scan_json_array(data: bytes) -> ArrayScan:
    """Find the top-level objects of a JSON array without parsing it.

    A byte is inside a string when an odd number of unescaped quotes precede it; brackets
    outside strings give the nesting depth; an object opening at depth 1 is a task. Raw
    newlines never occur inside JSON strings, so counting them gives exact line numbers.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(raw == 34)
    escaped_candidates = quotes[(quotes > 0) & (raw[np.maximum(quotes - 1, 0)] == 92)]
    if escaped_candidates.size:
        escaped = []
        for position in escaped_candidates.tolist():
            back = position - 1
            while back >= 0 and data[back] == 92:
                back -= 1
            if (position - 1 - back) % 2 == 1:
                escaped.append(position)
        quotes = np.setdiff1d(quotes, np.asarray(escaped, dtype=quotes.dtype), assume_unique=True)
    # `[`/`{` and `]`/`}` differ only in bit 0x20: two comparisons find all four.
    folded = raw | 0x20
    brackets = np.flatnonzero((folded == 123) | (folded == 125))
    del folded
    outside = np.searchsorted(quotes, brackets, side="right") % 2 == 0
    brackets = brackets[outside]
    kinds = raw[brackets]
    opening = (kinds == 123) | (kinds == 91)
    delta = np.where(opening, 1, -1)
    depth_after = np.cumsum(delta)
    depth_before = depth_after - delta
    starts = brackets[(kinds == 123) & (depth_before == 1)]
    end_positions = brackets[(kinds == 125) & (depth_after == 1)] + 1
    ends = np.full(starts.shape, -1, dtype=np.int64)
    ends[: end_positions.size] = end_positions[: starts.size]
    newlines = np.flatnonzero(raw == 10)
    lines = np.searchsorted(newlines, starts, side="left") + 1
    closed = bool(brackets.size) and int(depth_after[-1]) == 0 and bool(raw[brackets[0]] == 91)
    return ArrayScan(
        starts=starts,
        ends=ends,
        lines=lines.astype(np.int64),
        closed=closed,
        stray_lines=_stray_lines(data, raw, quotes, brackets, depth_after, starts.size, newlines),
    )


def _stray_lines(
    data: bytes,
    raw: np.ndarray,
    quotes: np.ndarray,
    brackets: np.ndarray,
    depth_after: np.ndarray,
    objects: int,
    newlines: np.ndarray,
) -> np.ndarray:
    """Lines of the top-level elements that are not objects.

    Elements are separated by commas at depth 1 outside strings; when their count equals the
    objects found (every export Label Studio writes) nothing more is done, so the common case
    costs one vectorised pass over the commas.
    """
    if not brackets.size or raw[brackets[0]] != 91:
        return np.zeros(0, np.int64)
    commas = np.flatnonzero(raw == 44)
    commas = commas[np.searchsorted(quotes, commas, side="right") % 2 == 0]
    before = np.searchsorted(brackets, commas, side="left")
    depth = np.where(before > 0, depth_after[np.maximum(before - 1, 0)], 0)
    separators = commas[depth == 1]
    opening = int(brackets[0])
    inner = data[opening + 1 : int(brackets[-1])] if depth_after[-1] == 0 else data[opening + 1 :]
    elements = separators.size + 1 if inner.strip() else 0
    if elements == objects:
        return np.zeros(0, np.int64)
    # Rare: find each element's first byte and keep those that do not open an object.
    found = []
    for start in [opening, *separators.tolist()]:
        position = start + 1
        while position < len(data) and data[position] in b" \t\r\n":
            position += 1
        if position < len(data) and data[position] not in b"{]":
            found.append(position)
    positions = np.asarray(found, dtype=np.int64)
    return (np.searchsorted(newlines, positions, side="left") + 1).astype(np.int64)
