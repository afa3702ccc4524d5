"""Fagin's K^(1/2) Kendall distance spelled out over every pair of items of each pair of
rankings (one row per item pair, so quadratic in the rankings' length): the reference that
`agreement.distances.kendall_pair_distances` must equal to the last bit. Tests only."""

from __future__ import annotations

import numpy as np
import polars as pl


def reference_kendall_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """Fagin's K^(1/2) per pair of rankings (best first), one row per pair of items in the
    union, normalized by the number of item pairs in the union of the two lists."""
    assert values_a.len() == values_b.len()
    n = values_a.len()
    if n == 0:
        return np.zeros(0)

    def positions(values: pl.Series, name: str) -> pl.DataFrame:
        lists = values.cast(pl.List(pl.String)).fill_null([])
        return (
            pl.DataFrame({"pair": np.arange(n, dtype=np.int64), "item": lists})
            .with_columns(
                pl.col("item").list.len().alias(f"length_{name}"),
                pl.int_ranges(0, pl.col("item").list.len()).alias(f"position_{name}"),
            )
            .explode("item", f"position_{name}")
            .drop_nulls("item")
            # A list that names an item twice keeps its best position.
            .group_by("pair", "item")
            .agg(pl.col(f"position_{name}").min(), pl.col(f"length_{name}").first())
        )

    a = positions(values_a, "a")
    b = positions(values_b, "b")
    lengths = pl.DataFrame(
        {
            "pair": np.arange(n, dtype=np.int64),
            "length_a": values_a.cast(pl.List(pl.String)).fill_null([]).list.len(),
            "length_b": values_b.cast(pl.List(pl.String)).fill_null([]).list.len(),
        }
    )
    union = (
        a.drop("length_a")
        .join(b.drop("length_b"), on=["pair", "item"], how="full", coalesce=True)
        .join(lengths, on="pair")
        .select(
            "pair",
            "item",
            # An unnamed item ties below every named one.
            pl.col("position_a").fill_null(pl.col("length_a")).alias("a"),
            pl.col("position_b").fill_null(pl.col("length_b")).alias("b"),
        )
    )
    pairs = (
        union.join(union, on="pair", suffix="_other")
        .filter(pl.col("item") < pl.col("item_other"))
        .select(
            "pair",
            (pl.col("a") - pl.col("a_other")).sign().alias("order_a"),
            (pl.col("b") - pl.col("b_other")).sign().alias("order_b"),
        )
        .select(
            "pair",
            pl.when(pl.col("order_a") * pl.col("order_b") < 0)
            .then(1.0)
            .when((pl.col("order_a") == 0) != (pl.col("order_b") == 0))
            .then(0.5)
            .otherwise(0.0)
            .alias("cost"),
        )
    )
    cost = np.bincount(
        pairs.get_column("pair").to_numpy(),
        weights=pairs.get_column("cost").to_numpy(),
        minlength=n,
    )
    size = np.bincount(union.get_column("pair").to_numpy(), minlength=n).astype(np.float64)
    total = size * (size - 1) / 2
    return np.where(total > 0, cost / np.maximum(total, 1.0), 0.0)
