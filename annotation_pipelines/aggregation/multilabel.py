"""Multi-label tasks: every class is its own yes/no question, aggregated by any method.

Model (binary relevance; G. Tsoumakas and I. Katakis, "Multi-Label Classification: An
Overview", International Journal of Data Warehousing and Mining 3(3), 2007, 1–13; applied to
crowd labels as in L. Duan, S. Oyama, H. Sato and M. Kurihara, "Separate or joint? Estimation
of multiple labels from crowdsourced annotations", Expert Systems with Applications 41(13),
2014, 5723–5732): a judgment that lists classes {a, c} is read, for every class seen in the
project, as "a: yes, b: no, c: yes". Each class's yes/no judgments are aggregated
independently with the chosen categorical method (so Dawid–Skene learns, per annotator and per
class, how often they miss it and how often they add it wrongly), giving P(class applies) per
task; the task's label set is every class whose probability reaches `threshold`. Correlations
between classes are not modelled — the price of being able to use every single-label method.

Labels arrive as lists (a Polars List column) or as text joined by `delimiter`; an empty list
or empty text means "none of the classes" and still counts as a judgment.

`aggregate_multilabel_kind` is the same model behind the `KindAggregation` surface: a task's
confidence is the model's probability that its whole set is right, Π_c max(p_c, 1 − p_c)
(classes independent, as the model assumes), and 0.5 for a task judged once (one set agrees
with itself: no evidence either way); an annotator's reliability is their mean Jaccard
similarity to the aggregated sets. Distances for agreement are MASI and Jaccard
(`agreement.distances`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.auto import choose_method
from annotation_pipelines.aggregation.encoding import Encoded, encode_column, validate
from annotation_pipelines.aggregation.kinds_result import KindAggregation
from annotation_pipelines.aggregation.registry import AUTO, CATEGORICAL_METHODS, run_kernel
from annotation_pipelines.agreement.distances import jaccard_pair_distances, masi_pair_distances

# The confidence of a task judged once (outside gold): no evidence either way.
LONE_CONFIDENCE = 0.5


def aggregate_multilabel(
    judgments: pl.DataFrame,
    method: str = "dawid_skene",
    *,
    delimiter: str = ",",
    threshold: float = 0.5,
    max_iter: int = 100,
    tol: float = 1e-5,
) -> pl.DataFrame:
    """One row per task: `task_id`, `labels` (sorted list of classes with probability at
    least `threshold`), `probability` (a struct with P(class applies) per class, one field per
    class) and `n_votes`.

    `judgments` has `task_id`, `annotator_id` and `label`, a list of classes or text joined by
    `delimiter` (whitespace around classes is ignored). `method` is any categorical method or
    `auto` (chosen per class). Tasks appear in order of first appearance (ascending for
    integer ids).
    """
    table, _, _ = _fit(
        judgments, method, delimiter=delimiter, threshold=threshold, max_iter=max_iter, tol=tol
    )
    return table


def _fit(
    judgments: pl.DataFrame,
    method: str,
    *,
    delimiter: str,
    threshold: float,
    max_iter: int,
    tol: float,
) -> tuple[pl.DataFrame, int, bool]:
    """(the table `aggregate_multilabel` returns, most iterations of any class, all converged)."""
    if method not in (*CATEGORICAL_METHODS, AUTO):
        raise ValueError(
            f"unknown method {method!r}; expected one of {', '.join(CATEGORICAL_METHODS)}, {AUTO}"
        )
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    validate(judgments)
    per_row = _class_lists(judgments.get_column("label"), delimiter)
    tasks, task_values = encode_column(judgments.get_column("task_id"), sort=False)
    annotators, annotator_values = encode_column(judgments.get_column("annotator_id"), sort=True)
    exploded = (
        pl.DataFrame({"row": np.arange(judgments.height), "class": per_row})
        .explode("class")
        .drop_nulls("class")
        .unique(["row", "class"])
    )
    class_codes, classes = encode_column(exploded.get_column("class"), sort=True)
    positive_rows = exploded.get_column("row").to_numpy()
    base = Encoded(
        tasks=tasks,
        annotators=annotators,
        labels=np.zeros(judgments.height, dtype=np.int64),
        task_values=task_values,
        annotator_values=annotator_values,
        label_values=pl.Series("label", [False, True]),
    )
    probabilities = np.zeros((task_values.len(), classes.len()))
    iterations, converged = 0, True
    for code in range(classes.len()):
        labels = np.zeros(judgments.height, dtype=np.int64)
        labels[positive_rows[class_codes == code]] = 1
        encoded = replace(base, labels=labels)
        chosen = method
        if method == AUTO:
            chosen, _ = choose_method(encoded, max_iter=max_iter, tol=tol)
        fitted = run_kernel(encoded, chosen, max_iter=max_iter, tol=tol)
        probabilities[:, code] = fitted.posteriors[:, 1]
        iterations = max(iterations, fitted.iterations)
        converged = converged and fitted.converged
    names = [str(value) for value in classes.to_list()]
    n_votes = pl.Series(np.bincount(tasks, minlength=task_values.len()), dtype=pl.UInt32)
    if not names:
        # Nobody chose any class: every task's set is empty and there is nothing to score.
        empty = pl.DataFrame(
            {
                "task_id": task_values,
                "labels": pl.Series(
                    [[] for _ in range(task_values.len())], dtype=pl.List(pl.String)
                ),
                "n_votes": n_votes,
                "probability": pl.Series([None] * task_values.len(), dtype=pl.Struct([])),
            }
        )
        return empty, iterations, converged
    chosen_mask = probabilities >= threshold
    label_sets = pl.Series(
        "labels",
        [[names[index] for index in np.flatnonzero(row)] for row in chosen_mask],
        dtype=pl.List(pl.String),
    )
    probability = pl.struct(
        [
            pl.Series(name, probabilities[:, index], dtype=pl.Float64)
            for index, name in enumerate(names)
        ],
        eager=True,
    ).alias("probability")
    table = pl.DataFrame(
        {
            "task_id": task_values,
            "labels": label_sets,
            "n_votes": n_votes,
        }
    ).with_columns(probability)
    return table, iterations, converged


def aggregate_multilabel_kind(
    judgments: pl.DataFrame,
    *,
    method: str = "dawid_skene",
    gold: pl.DataFrame | None = None,
    threshold: float = 0.5,
    max_iter: int = 100,
    tol: float = 1e-5,
) -> KindAggregation:
    """Label sets (`task_id`, `annotator_id`, `labels`: list of classes) to one set per task.

    `labels`: `task_id`, `labels`, `confidence`, `n_votes`, `probability` (P(class applies)
    per class). `annotators`: `annotator_id`, `reliability` (mean Jaccard similarity to the
    aggregate), `n_judgments`, `mean_masi_distance`. `gold` (`task_id`, `labels`) replaces
    the aggregate on gold tasks before annotators are scored (the per-class fits do not take
    gold). `method` is any categorical method or `auto`.
    """
    missing = [c for c in ("task_id", "annotator_id", "labels") if c not in judgments.columns]
    if missing:
        raise ValueError(
            f"judgments: missing column(s) {', '.join(missing)}; "
            f"have {', '.join(judgments.columns)}"
        )
    table, iterations, converged = _fit(
        judgments.select("task_id", "annotator_id", pl.col("labels").alias("label")),
        method,
        delimiter=",",
        threshold=threshold,
        max_iter=max_iter,
        tol=tol,
    )
    fields = table["probability"].struct.fields
    if not fields:
        confidence = pl.lit(1.0)
    else:
        confidence = pl.reduce(
            lambda left, right: left * right,
            [
                pl.max_horizontal(
                    pl.col("probability").struct.field(name),
                    1 - pl.col("probability").struct.field(name),
                )
                for name in fields
            ],
        )
    # One judgment is no evidence of agreement: 0.5, as for every kind, not the near-certainty
    # a per-class fit of one vote gives it.
    lone = pl.col("n_votes") == 1
    labels = table.select(
        "task_id",
        "labels",
        pl.when(lone)
        .then(LONE_CONFIDENCE)
        .otherwise(confidence)
        .cast(pl.Float64)
        .alias("confidence"),
        "n_votes",
        "probability",
    )
    reference = labels.select("task_id", pl.col("labels").alias("reference"))
    if gold is not None and gold.height:
        reference = reference.join(
            gold.select("task_id", pl.col("labels").cast(pl.List(pl.String)).alias("gold")),
            on="task_id",
            how="left",
        ).select("task_id", pl.coalesce("gold", "reference").alias("reference"))
    scored = judgments.select("task_id", "annotator_id", "labels").join(
        reference, on="task_id", how="left", maintain_order="left"
    )
    annotators = (
        scored.with_columns(
            pl.Series(
                "jaccard",
                jaccard_pair_distances(scored.get_column("labels"), scored.get_column("reference")),
            ),
            pl.Series(
                "masi",
                masi_pair_distances(scored.get_column("labels"), scored.get_column("reference")),
            ),
        )
        .group_by("annotator_id")
        .agg(
            (1 - pl.col("jaccard").mean()).alias("reliability"),
            pl.len().cast(pl.UInt32).alias("n_judgments"),
            pl.col("masi").mean().alias("mean_masi_distance"),
        )
        .sort("annotator_id")
    )
    return KindAggregation(
        labels=labels,
        annotators=annotators,
        method=method,
        converged=converged,
        iterations=iterations,
    )


def gold_score(judgments: pl.DataFrame, gold: pl.DataFrame) -> pl.DataFrame:
    """Per annotator on gold tasks: `annotator_id`, `n_gold`, `mean_jaccard` (similarity to
    the gold set), `exact_match` (share of sets equal to gold)."""
    joined = judgments.select("task_id", "annotator_id", "labels").join(
        gold.select("task_id", pl.col("labels").alias("gold")), on="task_id"
    )
    distance = jaccard_pair_distances(joined.get_column("labels"), joined.get_column("gold"))
    return (
        joined.with_columns(pl.Series("distance", distance))
        .group_by("annotator_id")
        .agg(
            pl.len().cast(pl.UInt32).alias("n_gold"),
            (1 - pl.col("distance").mean()).alias("mean_jaccard"),
            (pl.col("distance") == 0).mean().alias("exact_match"),
        )
        .sort("annotator_id")
    )


def _class_lists(column: pl.Series, delimiter: str) -> pl.Series:
    """The classes of every judgment as a list of stripped, non-empty strings."""
    if isinstance(column.dtype, pl.List | pl.Array):
        lists = column.cast(pl.List(pl.String))
    else:
        lists = column.cast(pl.String).str.split(delimiter)
    return (
        lists.list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
        .alias("class")
    )
