"""Dense integer codes for the id columns of non-categorical kinds.

A Polars hash join against the distinct values: linear in the rows at any vocabulary size
(the categorical encoder's perfect-hash path allocates a table quadratic in the vocabulary,
which dominates on small inputs with many annotators).
"""

from __future__ import annotations

import numpy as np
import polars as pl


def encode_values(values: pl.Series, *, sort: bool) -> tuple[np.ndarray, pl.Series]:
    """(code per row, distinct values): codes index the distinct values, which are sorted
    when `sort` is true, else in order of first appearance. Empty values are an error."""
    if values.null_count():
        raise ValueError(
            f"judgments: column {values.name!r} has {values.null_count()} empty value(s)"
        )
    distinct = values.unique(maintain_order=True)
    if sort:
        distinct = distinct.sort()
    numbered = distinct.to_frame("value").with_row_index("code")
    codes = (
        values.to_frame("value")
        .join(numbered, on="value", how="left", maintain_order="left")
        .get_column("code")
        .to_numpy()
        .astype(np.int64, copy=False)
    )
    return codes, distinct.alias(values.name)


def fixed_weights(
    annotators: pl.Series, reliability: pl.DataFrame, *, medoid: bool = False
) -> np.ndarray:
    """The weights `reliability` gives `annotators` (in their order); the median weight for an
    annotator it does not name (1 for all under `medoid`, the unweighted baseline)."""
    if medoid:
        return np.ones(annotators.len())
    known = reliability.select(
        pl.col("annotator_id").cast(pl.String), pl.col("reliability").cast(pl.Float64)
    ).filter(pl.col("reliability").is_finite())
    default = float(np.median(known["reliability"].to_numpy())) if known.height else 1.0
    weights = (
        annotators.cast(pl.String)
        .to_frame("annotator_id")
        .join(known, on="annotator_id", how="left", maintain_order="left")
        .get_column("reliability")
        .fill_null(default)
        .to_numpy()
    )
    return np.asarray(weights, dtype=np.float64)
