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
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.auto import choose_method
from annotation_pipelines.aggregation.encoding import Encoded, encode_column, validate
from annotation_pipelines.aggregation.registry import AUTO, CATEGORICAL_METHODS, run_kernel


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
    for code in range(classes.len()):
        labels = np.zeros(judgments.height, dtype=np.int64)
        labels[positive_rows[class_codes == code]] = 1
        encoded = replace(base, labels=labels)
        chosen = method
        if method == AUTO:
            chosen, _ = choose_method(encoded, max_iter=max_iter, tol=tol)
        fitted = run_kernel(encoded, chosen, max_iter=max_iter, tol=tol)
        probabilities[:, code] = fitted.posteriors[:, 1]
    names = [str(value) for value in classes.to_list()]
    n_votes = pl.Series(np.bincount(tasks, minlength=task_values.len()), dtype=pl.UInt32)
    if not names:
        # Nobody chose any class: every task's set is empty and there is nothing to score.
        return pl.DataFrame(
            {
                "task_id": task_values,
                "labels": pl.Series(
                    [[] for _ in range(task_values.len())], dtype=pl.List(pl.String)
                ),
                "n_votes": n_votes,
                "probability": pl.Series([None] * task_values.len(), dtype=pl.Struct([])),
            }
        )
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
    return pl.DataFrame(
        {
            "task_id": task_values,
            "labels": label_sets,
            "n_votes": n_votes,
        }
    ).with_columns(probability)


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
