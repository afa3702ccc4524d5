"""Direct access to Polars' Arrow string views, for exact fast paths on short strings.

Polars stores text as Arrow string views: 16 bytes per row, the first 4 the length; a string
of at most 12 bytes lives whole, zero-padded, in the remaining 12, so two such views are equal
exactly when the strings are. Callers use this to group or key short identifiers without
hashing, and must fall back to their general path when this returns None.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def string_views(column: pl.Series) -> tuple[np.ndarray, slice] | None:
    """(the 16-byte string views of `column` as uint64 pairs, its rows) or None.

    Polars stores strings as Arrow string views; a string of at most 12 bytes lives whole,
    zero-padded, in its view after its 4-byte length, so its view identifies it exactly.
    """
    if column.dtype != pl.String or column.null_count() or len(column) == 0:
        return None
    try:
        array = column.to_arrow(compat_level=pl.CompatLevel.newest())
        if str(array.type) != "string_view":
            return None
        words = np.frombuffer(array.buffers()[1], dtype=np.uint64).reshape(-1, 2)
    except (AttributeError, TypeError, ValueError, IndexError):  # older Arrow: general path
        return None
    return words, slice(array.offset, array.offset + len(array))
