"""Pseudonymize annotator ids with a keyed hash before anything leaves the platform."""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

# Columns that hold an annotator's identity anywhere in the platform's tables.
IDENTITY_COLUMNS: tuple[str, ...] = ("annotator_id", "annotator_a", "annotator_b")
# Columns whose values may be built from an annotator's id (the synthetic source and some
# exports write `judgment_id` as task id + "/" + annotator id): shown as keyed hashes too.
IDENTITY_DERIVED_COLUMNS: tuple[str, ...] = ("judgment_id",)


def safe_for_display(frame: pl.DataFrame, *, key: bytes) -> pl.DataFrame:
    """`frame` with every identity column pseudonymized: for metadata previews and reports.

    Uses the same key as the exports, so a pseudonym in a report is the one in the lake's
    scorecards and in every snapshot. Columns derived from identities become keyed hashes
    (`judgment-` + 16 hex digits): one judgment keeps one display id, and no part of the
    annotator's id shows.
    """
    shown = pseudonymize(frame, key=key, columns=IDENTITY_COLUMNS)
    return pseudonymize(shown, key=key, columns=IDENTITY_DERIVED_COLUMNS, prefix="judgment-")


def pseudonymize(
    frame: pl.DataFrame,
    *,
    key: bytes,
    columns: tuple[str, ...] = ("annotator_id",),
    prefix: str = "anon-",
) -> pl.DataFrame:
    """Replace each id with `prefix` + 16 hex digits of HMAC-SHA256(key, id).

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
                    prefix + hmac.new(key, str(v).encode(), hashlib.sha256).hexdigest()[:16]
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
