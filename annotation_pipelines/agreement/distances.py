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


def _item_codes(lists_a: pl.Series, lists_b: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Every item of both sides' lists, flattened in list order, as one integer code per
    distinct id shared by both sides (−1 for a null item)."""
    flat = pl.concat(
        [
            lists_a.explode(empty_as_null=False, keep_nulls=False),
            lists_b.explode(empty_as_null=False, keep_nulls=False),
        ]
    )
    # A local Enum, not a Categorical: its ids do not stay in a process-wide cache.
    codes = (
        flat.cast(pl.Enum(flat.drop_nulls().unique()))
        .to_physical()
        .cast(pl.Int64)
        .fill_null(-1)
        .to_numpy()
    )
    size_a = int(lists_a.list.len().sum())
    return codes[:size_a], codes[size_a:]


def _best_positions(
    codes: np.ndarray, lengths: np.ndarray, n_codes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(key, pair, position, by_key) of each item the lists name, in list order: the list's
    index is its pair, key = pair × n_codes + code, an item a list names twice keeps its best
    position, and `by_key` orders the entries by key."""
    pair = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    position = np.arange(codes.size, dtype=np.int64) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )
    named = codes >= 0
    key, pair, position = pair[named] * n_codes + codes[named], pair[named], position[named]
    # Stable, so of an item's repeats the best-placed (first in its list) leads.
    order = np.argsort(key, kind="stable")
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[order[1:]] != key[order[:-1]]
    kept = np.zeros(key.size, dtype=bool)
    kept[order[first]] = True
    by_key = (np.cumsum(kept) - 1)[order[first]]
    return key[kept], pair[kept], position[kept], by_key


def _match(
    keys: np.ndarray,
    by_key: np.ndarray,
    other_keys: np.ndarray,
    other_by_key: np.ndarray,
    other_positions: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(whether each of `keys` is among `other_keys`, its position on that side where it is,
    else 0). Both sides are searched in key order, which keeps the binary searches in cache."""
    found = np.zeros(keys.size, dtype=bool)
    positions = np.zeros(keys.size, dtype=np.int64)
    if other_keys.size == 0 or keys.size == 0:
        return found, positions
    table = other_keys[other_by_key]
    index = np.minimum(np.searchsorted(table, keys[by_key]), table.size - 1)
    found[by_key] = table[index] == keys[by_key]
    positions[by_key] = other_positions[other_by_key[index]]
    return found, positions


def _index_in_pair(pair: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each entry's index among the entries of its pair (`pair` non-decreasing)."""
    return np.arange(pair.size, dtype=np.int64) - (np.cumsum(counts) - counts)[pair]


def _segment_inversions(segment: np.ndarray, values: np.ndarray, n_segments: int) -> np.ndarray:
    """Per segment (a run of equal, non-decreasing `segment` ids), the number of index pairs
    i < j inside it with values[i] > values[j] (ties are not inversions).

    A bottom-up merge sort run on every segment at once: at width w each block of 2w places
    holds a sorted left half and a sorted right half, and a stable sort of the block moves
    each right-half value left past exactly the left-half values above it. Memory stays
    linear in the number of values; segments too short for the current width leave the
    arrays, so short rankings cost a level or two."""
    counts = np.zeros(n_segments, dtype=np.float64)
    if segment.size == 0:
        return counts
    sizes = np.bincount(segment, minlength=n_segments)
    rank = np.arange(segment.size, dtype=np.int64) - (np.cumsum(sizes) - sizes)[segment]
    values = values.astype(np.int64)
    # Block start × scale + value orders by block, then by value within it.
    scale = int(values.max()) + 1
    width = 1
    while True:
        kept = sizes[segment] > width
        if not kept.any():
            return counts
        if not kept.all():
            segment, rank, values = segment[kept], rank[kept], values[kept]
        place = np.arange(segment.size, dtype=np.int64)
        block = (place - (rank & (2 * width - 1))) * scale
        # The halves are sorted runs, which the stable sort merges in about linear time.
        order = np.argsort(block + values, kind="stable")
        moved_to = np.empty_like(place)
        moved_to[order] = place
        right = (rank & width) != 0
        counts += np.bincount(
            segment[right], weights=(place - moved_to)[right], minlength=n_segments
        )
        values = values[order]
        width *= 2


def kendall_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """Fagin's K^(1/2) Kendall distance per pair of rankings (lists of item ids, best first),
    normalized by the number of item pairs in the union of the two lists.

    Computed without enumerating the pairs of items, so memory is linear in the rankings'
    length: each item of the union gets its position in either list (an unnamed item the
    list's length, tied below everything the list names). Sorted by the first list's position
    and then the second's, the pairs ordered oppositely are the inversions of the second
    list's positions (Knight's algorithm; ties are never inversions). Only unnamed items tie,
    and never in both lists, so the pairs tied in exactly one list, costing 1/2 each, are the
    pairs of items only one of the lists names."""
    _check_lengths(values_a, values_b)
    n = values_a.len()
    if n == 0:
        return np.zeros(0)
    lists_a = values_a.cast(pl.List(pl.String)).fill_null([])
    lists_b = values_b.cast(pl.List(pl.String)).fill_null([])
    length_a = lists_a.list.len().to_numpy().astype(np.int64)
    length_b = lists_b.list.len().to_numpy().astype(np.int64)
    codes_a, codes_b = _item_codes(lists_a, lists_b)
    n_codes = int(max(codes_a.max(initial=0), codes_b.max(initial=0))) + 1
    key_a, pair_a, position_a, by_key_a = _best_positions(codes_a, length_a, n_codes)
    key_b, pair_b, position_b, by_key_b = _best_positions(codes_b, length_b, n_codes)
    in_b, position_in_b = _match(key_a, by_key_a, key_b, by_key_b, position_b)
    only_b = ~_match(key_b, by_key_b, key_a, by_key_a, position_a)[0]
    b_of_a = np.where(in_b, position_in_b, length_b[pair_a])
    # The union, per pair in the first list's order: the items it names, then those only the
    # second names (tied at the first list's length), which keep the second list's order.
    pair_only_b = pair_b[only_b]
    count_a = np.bincount(pair_a, minlength=n)
    count_only_b = np.bincount(pair_only_b, minlength=n)
    size = count_a + count_only_b
    start = np.cumsum(size) - size
    into_union_a = start[pair_a] + _index_in_pair(pair_a, count_a)
    into_union_b = (
        start[pair_only_b] + count_a[pair_only_b] + _index_in_pair(pair_only_b, count_only_b)
    )
    b = np.empty(int(size.sum()), dtype=np.int64)
    b[into_union_a] = b_of_a
    b[into_union_b] = position_b[only_b]
    discordant = _segment_inversions(np.repeat(np.arange(n, dtype=np.int64), size), b, n)
    only_a = (count_a - np.bincount(pair_a[in_b], minlength=n)).astype(np.float64)
    only_b_count = count_only_b.astype(np.float64)
    # Integers and halves far below 2^53: every sum here is exact, whatever its order.
    cost = discordant + 0.5 * (only_a * (only_a - 1) / 2 + only_b_count * (only_b_count - 1) / 2)
    union_size = size.astype(np.float64)
    total = union_size * (union_size - 1) / 2
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
