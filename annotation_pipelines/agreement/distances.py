"""Distances between two annotations of the same kind, one per aligned pair of values.

Every function has the signature `pair_distances(values_a, values_b) -> np.ndarray`: element
k is the distance between `values_a[k]` and `values_b[k]` (0 = identical). The generic
Krippendorff alpha (K. Krippendorff, "Content Analysis: An Introduction to Its Methodology",
4th ed., Sage, 2019, ch. 12; alpha = 1 − D_o / D_e) takes any of them.

- `masi`: R. Passonneau, "Measuring Agreement on Set-valued Items (MASI) for Semantic and
  Pragmatic Annotation", LREC 2006: d = 1 − J · M with J the Jaccard index and M = 1 for
  equal sets, 2/3 when one contains the other, 1/3 when they only overlap, 0 when disjoint
  (the values `nltk.metrics.distance.masi_distance` uses). Two empty sets are identical.
- `jaccard`: 1 − |A ∩ B| / |A ∪ B| (0 for two empty sets).
- `kendall`: the normalized Kendall tau distance between rankings (best first) that may list
  different items — R. Fagin, R. Kumar and D. Sivakumar, "Comparing top k lists", SIAM J.
  Discrete Math. 17(1), 2003, 134–160, K^(p) with p = 1/2: over the union of both lists,
  an item a list does not name is tied below everything it names; a pair ordered oppositely
  costs 1, a pair tied in one list and ordered in the other costs 1/2; divided by the number
  of pairs in the union, so it lies in [0, 1] (two lists with under two items in their union
  are at distance 0).
- `edit`: normalized Levenshtein distance (edits / length of the longer string) via
  rapidfuzz; an empty value is the empty string.
- `interval`: (a − b)², Krippendorff's interval metric (not bounded by 1; alpha only uses
  ratios of distances).
- `pairwise`: nominal on the winner of one comparison, after reading both judgments in the
  same left/right order (a judgment that shows the pair swapped has its winner swapped).

Krippendorff's ordinal metric depends on the whole sample's value frequencies, so it is not a
function of one pair and is not offered here.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein


def _check_lengths(values_a: pl.Series, values_b: pl.Series) -> None:
    if values_a.len() != values_b.len():
        raise ValueError(
            f"pair distances: {values_a.len()} values on one side and {values_b.len()} on the other"
        )


def _sets(values_a: pl.Series, values_b: pl.Series) -> pl.DataFrame:
    """Per pair: sizes of the intersection, the union and both sets (lists made unique)."""
    _check_lengths(values_a, values_b)
    frame = pl.DataFrame(
        {
            "a": values_a.cast(pl.List(pl.String)).fill_null([]).list.unique(),
            "b": values_b.cast(pl.List(pl.String)).fill_null([]).list.unique(),
        }
    )
    return frame.select(
        pl.col("a").list.set_intersection("b").list.len().alias("both"),
        pl.col("a").list.set_union("b").list.len().alias("either"),
        pl.col("a").list.len().alias("size_a"),
        pl.col("b").list.len().alias("size_b"),
    )


def jaccard_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """1 − |A ∩ B| / |A ∪ B| per pair of label lists (0 when both are empty)."""
    sizes = _sets(values_a, values_b)
    both = sizes.get_column("both").to_numpy().astype(np.float64)
    either = sizes.get_column("either").to_numpy().astype(np.float64)
    return np.where(either > 0, 1.0 - both / np.maximum(either, 1.0), 0.0)


def masi_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """MASI distance 1 − J · M per pair of label lists (0 when both are empty)."""
    sizes = _sets(values_a, values_b)
    both = sizes.get_column("both").to_numpy().astype(np.float64)
    either = sizes.get_column("either").to_numpy().astype(np.float64)
    size_a = sizes.get_column("size_a").to_numpy()
    size_b = sizes.get_column("size_b").to_numpy()
    monotonicity = np.select(
        [
            (size_a == size_b) & (both == size_a),
            (both == np.minimum(size_a, size_b)) & (both > 0),
            both > 0,
        ],
        [1.0, 2 / 3, 1 / 3],
        default=0.0,
    )
    jaccard = np.where(either > 0, both / np.maximum(either, 1.0), 1.0)
    return np.where(either > 0, 1.0 - jaccard * monotonicity, 0.0)


def edit_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """Normalized Levenshtein distance per pair of strings, in [0, 1], compared in Unicode
    NFC: "é" as one code point and as "e" + a combining accent (what NFD input such as macOS
    produces) are the same text, not two edits apart."""
    _check_lengths(values_a, values_b)
    if values_a.len() == 0:
        return np.zeros(0)
    left = values_a.cast(pl.String).fill_null("").str.normalize("NFC").to_list()
    right = values_b.cast(pl.String).fill_null("").str.normalize("NFC").to_list()
    return np.asarray(
        process.cpdist(left, right, scorer=Levenshtein.normalized_distance, workers=-1),
        dtype=np.float64,
    )


def interval_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """(a − b)² per pair of numbers."""
    _check_lengths(values_a, values_b)
    a = values_a.cast(pl.Float64).to_numpy()
    b = values_b.cast(pl.Float64).to_numpy()
    return (a - b) ** 2


def kendall_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """Fagin's K^(1/2) Kendall distance per pair of rankings (lists of item ids, best first),
    normalized by the number of item pairs in the union of the two lists."""
    _check_lengths(values_a, values_b)
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


def pairwise_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """Nominal distance on the winner of one comparison: 0 when both judgments prefer the same
    item (or both call a tie), else 1. Values are structs with `left`, `right`, `winner`
    (`left`/`right`/`tie`); a pair shown in swapped order is read in the first one's order."""
    _check_lengths(values_a, values_b)
    a = values_a.struct.unnest()
    b = values_b.struct.unnest()
    swapped = (a.get_column("left") == b.get_column("right")) & (
        a.get_column("right") == b.get_column("left")
    )
    winner_a = a.get_column("winner").str.to_lowercase()
    winner_b = b.get_column("winner").str.to_lowercase()
    aligned = (
        pl.DataFrame({"winner": winner_b, "swapped": swapped})
        .select(
            pl.when(pl.col("swapped") & (pl.col("winner") == "left"))
            .then(pl.lit("right"))
            .when(pl.col("swapped") & (pl.col("winner") == "right"))
            .then(pl.lit("left"))
            .otherwise(pl.col("winner"))
        )
        .to_series()
    )
    return (winner_a != aligned).fill_null(True).cast(pl.Float64).to_numpy()


PAIR_DISTANCES = {
    "masi": masi_pair_distances,
    "jaccard": jaccard_pair_distances,
    "kendall": kendall_pair_distances,
    "edit": edit_pair_distances,
    "interval": interval_pair_distances,
    "pairwise": pairwise_pair_distances,
}
