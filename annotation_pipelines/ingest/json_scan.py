"""Where the top-level objects of a JSON array start and end, found without parsing it.

Used to split a large Label Studio export into tasks (for chunked parsing, line numbers in
provenance, and re-reading one bad task at a time) at NumPy speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArrayScan:
    """Byte offsets of the top-level objects of a JSON array and the line each starts on."""

    starts: np.ndarray
    ends: np.ndarray  # exclusive end offset; -1 for an object cut off by a truncated file
    lines: np.ndarray
    closed: bool


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
    return ArrayScan(starts=starts, ends=ends, lines=lines.astype(np.int64), closed=closed)
