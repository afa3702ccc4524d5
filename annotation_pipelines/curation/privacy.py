"""Pseudonymize annotator ids with a keyed hash before anything leaves the platform."""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

# Columns that hold an annotator's identity anywhere in the platform's tables.
IDENTITY_COLUMNS: tuple[str, ...] = ("annotator_id", "annotator_a", "annotator_b")


def safe_for_display(frame: pl.DataFrame, *, key: bytes) -> pl.DataFrame:
    """`frame` with every identity column pseudonymized: for metadata previews and reports.

    Uses the same key as the exports, so a pseudonym in a report is the one in the lake's
    scorecards and in every snapshot.
    """
    return pseudonymize(frame, key=key, columns=IDENTITY_COLUMNS)


def pseudonymize(
    frame: pl.DataFrame, *, key: bytes, columns: tuple[str, ...] = ("annotator_id",)
) -> pl.DataFrame:
    """Replace each id with `anon-` + 16 hex digits of HMAC-SHA256(key, id).

    Keyed, so ids cannot be recovered by hashing a list of known ids; deterministic per key,
    so one annotator keeps one pseudonym across exports made with the same key.
    """
    if not key:
        raise ValueError("a non-empty pseudonymization key is required")
    out = frame
    for column in columns:
        if column not in frame.columns:
            continue
        values = frame[column].unique().drop_nulls()
        mapping = pl.DataFrame(
            {
                column: values,
                "_pseudonym": [
                    "anon-" + hmac.new(key, str(v).encode(), hashlib.sha256).hexdigest()[:16]
                    for v in values.to_list()
                ],
            }
        )
        out = (
            out.join(mapping, on=column, how="left", maintain_order="left")
            .with_columns(pl.col("_pseudonym").alias(column))
            .drop("_pseudonym")
        )
    return out
