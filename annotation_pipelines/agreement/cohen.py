"""Cohen's kappa for every pair of annotators that share enough tasks, plain or weighted.

Cohen (1960), "A coefficient of agreement for nominal scales"; Cohen (1968), "Weighted
kappa". For annotators a and b on their n shared tasks, with o_ij the share of tasks a
labelled i and b labelled j, r and c their label marginals and w_ij a disagreement weight
(nominal 1 − [i = j], linear |i − j|, quadratic (i − j)² over label positions),
kappa = 1 − Σ w_ij o_ij / Σ w_ij r_i c_j. Label positions are the labels' places in
`label_order` when the caller gives one (a project's declared ordinal scale), else their ranks
over the whole input (numeric order when every label is a number, else text order), so a
weighted kappa of one pair means the same scale as every other pair's — this equals
scikit-learn's `cohen_kappa_score(..., labels=<label_order, or all labels sorted>)`. A
weighted kappa means something only where the positions are an order the labels have: for
nominal labels (cat, dog, bird) text order is arbitrary, so callers should weight only
labels with a declared order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from annotation_pipelines.agreement._encoding import (
    check_columns,
    factorize,
    first_rows,
    pairs_within_groups,
    pandas_factorize,
)
from annotation_pipelines.agreement.summary import percentile_interval, resample_weights

WEIGHTS = (None, "linear", "quadratic")

COHEN_KAPPA_MATRIX = {
    "annotator_a": pl.String(),
    "annotator_b": pl.String(),
    "n_shared": pl.UInt32(),
    "kappa": pl.Float64(),
    "kappa_low": pl.Float64(),
    "kappa_high": pl.Float64(),
}


def _sorted_label_positions(labels: pl.Series) -> tuple[np.ndarray, int]:
    codes, first = factorize(labels)
    uniques = labels.gather(first)
    numbers = uniques.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    order = (
        np.argsort(numbers.to_numpy(), kind="stable")
        if numbers.null_count() == 0
        else np.argsort(uniques.cast(pl.String).to_numpy(), kind="stable")
    )
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank[codes], len(order)


def _declared_label_positions(
    labels: pl.Series, label_order: Sequence[str]
) -> tuple[np.ndarray, int]:
    position: dict[str, int] = {}
    for index, label in enumerate(label_order):
        if label in position:
            raise ValueError(f"label_order lists {label!r} twice; an order ranks each label once")
        position[label] = index
    text = labels.cast(pl.String)
    outside = text.filter(~text.is_in(list(position))).unique(maintain_order=True)
    if outside.len():
        raise ValueError(
            f"label {outside[0]!r} is not in label_order ({', '.join(label_order)}): "
            "a weighted kappa needs every label's place on the scale"
        )
    codes = text.replace_strict(position, return_dtype=pl.Int64).to_numpy()
    return codes.astype(np.int64), len(position)


def cohen_kappa_matrix(
    judgments: pl.DataFrame,
    *,
    weights: str | None = None,
    label_order: Sequence[str] | None = None,
    min_overlap: int = 10,
    n_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """Cohen's kappa of each annotator pair (a < b) with at least `min_overlap` shared tasks.

    Returns the columns of COHEN_KAPPA_MATRIX, one row per pair (use `kappa_square` for a
    square annotators × annotators table). With `n_resamples` > 0, kappa_low/kappa_high are
    a percentile bootstrap interval over tasks; otherwise they are null. A pair whose
    expected disagreement is zero (both always gave the same single label) has kappa null.
    If an annotator judged a task more than once, their first judgment counts.
    `label_order` lists every label lowest first and places them for the linear and quadratic
    weights (a label outside it is a ValueError); without it they go in numeric or text order.
    """
    check_columns(judgments)
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic'; got {weights!r}")
    frame = judgments.select("task_id", "annotator_id", "label").filter(
        pl.col("label").is_not_null()
    )
    if frame.height == 0:
        return pl.DataFrame(schema=COHEN_KAPPA_MATRIX)
    task, _ = factorize(frame.get_column("task_id"))
    annotator, annotator_first = factorize(frame.get_column("annotator_id"))
    # Code annotators by their sorted id so every pair reads (a, b) with a < b.
    annotator_ids = frame.get_column("annotator_id").gather(annotator_first)
    by_id = np.argsort(annotator_ids.cast(pl.String).to_numpy(), kind="stable")
    annotator_rank = np.empty(len(by_id), dtype=np.int64)
    annotator_rank[by_id] = np.arange(len(by_id), dtype=np.int64)
    annotator = annotator_rank[annotator]
    annotator_ids = annotator_ids.gather(by_id)
    label, n_labels = (
        _sorted_label_positions(frame.get_column("label"))
        if label_order is None
        else _declared_label_positions(frame.get_column("label"), label_order)
    )
    n_annotators = len(annotator_first)
    codes, _ = pandas_factorize(task * n_annotators + annotator)
    keep = np.zeros(len(codes), dtype=bool)
    keep[first_rows(codes)] = True
    task, annotator, label = task[keep], annotator[keep], label[keep]

    order = np.argsort(task, kind="stable")
    task, annotator, label = task[order], annotator[order], label[order]
    left, right = pairs_within_groups(task)
    swap = annotator[left] > annotator[right]
    left, right = np.where(swap, right, left), np.where(swap, left, right)
    pair_key = annotator[left] * n_annotators + annotator[right]
    pair, pair_keys = pandas_factorize(pair_key)
    shared = np.bincount(pair, minlength=len(pair_keys))
    enough = shared >= min_overlap
    if not enough.any():
        return pl.DataFrame(schema=COHEN_KAPPA_MATRIX)
    # Re-index the surviving pairs densely.
    new_index = np.cumsum(enough) - 1
    rows = enough[pair]
    pair = new_index[pair[rows]]
    pair_keys = np.asarray(pair_keys, dtype=np.int64)[enough]
    pair_task = task[left[rows]]
    label_a, label_b = label[left[rows]], label[right[rows]]

    positions = np.arange(n_labels, dtype=np.float64)
    difference = positions[:, None] - positions[None, :]
    weight_matrix = {
        None: (difference != 0).astype(np.float64),
        "linear": np.abs(difference),
        "quadratic": difference**2,
    }[weights]
    n_pairs = len(pair_keys)

    def kappa(task_weights: np.ndarray | None) -> np.ndarray:
        row_weights = np.ones(len(pair)) if task_weights is None else task_weights[pair_task]
        totals = np.bincount(pair, weights=row_weights, minlength=n_pairs)
        observed = np.bincount(
            pair, weights=row_weights * weight_matrix[label_a, label_b], minlength=n_pairs
        )
        margin_a = np.bincount(
            pair * n_labels + label_a, weights=row_weights, minlength=n_pairs * n_labels
        ).reshape(n_pairs, n_labels)
        margin_b = np.bincount(
            pair * n_labels + label_b, weights=row_weights, minlength=n_pairs * n_labels
        ).reshape(n_pairs, n_labels)
        expected = np.einsum("pi,ij,pj->p", margin_a, weight_matrix, margin_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            # observed/totals over expected/totals²: the shares' ratio without dividing twice.
            value = 1.0 - observed * totals / expected
        value[~(expected > 0)] = np.nan
        return value

    point = kappa(None)
    low = high = np.full(n_pairs, np.nan)
    if n_resamples > 0:
        present = np.unique(pair_task)
        replicates = np.stack(
            [
                kappa(w)
                for w in resample_weights(
                    present, int(task.max()) + 1, n_resamples=n_resamples, seed=seed
                )
            ]
        )
        bounds = np.array(
            [percentile_interval(replicates[:, i], confidence) for i in range(n_pairs)]
        )
        low, high = bounds[:, 0], bounds[:, 1]
    return (
        pl.DataFrame(
            {
                "annotator_a": annotator_ids.gather(pair_keys // n_annotators),
                "annotator_b": annotator_ids.gather(pair_keys % n_annotators),
                "n_shared": shared[enough].astype(np.uint32),
                "kappa": point,
                "kappa_low": low,
                "kappa_high": high,
            }
        )
        .with_columns(pl.col("kappa", "kappa_low", "kappa_high").fill_nan(None))
        .sort("annotator_a", "annotator_b")
    )


def kappa_square(pairs: pl.DataFrame) -> pl.DataFrame:
    """A symmetric annotators × annotators table of kappa (diagonal 1, no overlap null)."""
    both = pl.concat(
        [
            pairs.select("annotator_a", "annotator_b", "kappa"),
            pairs.select(
                pl.col("annotator_b").alias("annotator_a"),
                pl.col("annotator_a").alias("annotator_b"),
                "kappa",
            ),
        ]
    )
    annotators = sorted(set(both.get_column("annotator_a").to_list()))
    if "annotator_id" in annotators:
        raise ValueError(
            "kappa_square: an annotator named 'annotator_id' cannot be a column beside the "
            "annotator_id column; use the pairs (cohen_kappa_matrix) as they are"
        )
    diagonal = pl.DataFrame(
        {"annotator_a": annotators, "annotator_b": annotators, "kappa": [1.0] * len(annotators)},
        schema={"annotator_a": pl.String, "annotator_b": pl.String, "kappa": pl.Float64},
    )
    # Pivoted on prefixed ids: an annotator named like the index column (`annotator_a`) would
    # otherwise be a second column of that name.
    square = (
        pl.concat([both, diagonal])
        .with_columns((pl.lit("annotator:") + pl.col("annotator_b")).alias("annotator_b"))
        .pivot(on="annotator_b", index="annotator_a", values="kappa")
    )
    return (
        square.rename({"annotator_a": "annotator_id"})
        .sort("annotator_id")
        .select("annotator_id", *[pl.col(f"annotator:{a}").alias(a) for a in annotators])
    )
