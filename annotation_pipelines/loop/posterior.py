"""Per-task confidence functions the policy reads, one per judgment kind.

A confidence function takes the judgments seen so far and returns one row per task with
`task_id`, `label`, `confidence` (calibrated) and `n_votes`, and, where answers split into
votes, `top_votes` and `runner_up_votes` (the counts of the two most frequent answers, which
the policy reads as label uncertainty). The categorical one refits the aggregation on all
the judgments seen each time it is called, so every round's annotator reliabilities are
learnt from everything revealed so far.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import polars as pl

from annotation_pipelines.aggregation.api import fit
from annotation_pipelines.aggregation.registry import AUTO, METHODS
from annotation_pipelines.aggregation.warm_start import WarmStart
from annotation_pipelines.kinds import KINDS as ALL_KINDS
from annotation_pipelines.loop.kind_posterior import (
    KindConfidence,
    PairwiseConfidence,
    with_known,
)
from annotation_pipelines.loop.policy import ConfidenceFunction
from annotation_pipelines.scale import RatingScale

DIAGONAL_PSEUDO_COUNT = 1.0


class CategoricalConfidence:
    """Categorical labels through `aggregation.fit`, a full refit on every call.

    With `auto`, the method is chosen on the first call and kept (as the incumbent) after it:
    re-running the selection every round would cost more than the rounds themselves.

    Each call starts EM from vote shares (a cold start) unless `warm_start` is set. EM finds a
    local optimum (Dempster, Laird and Rubin 1977), and which one depends on where it starts:
    started from the previous round's model, round after round, the fit is path-dependent.
    Measured on Duck (39 votes a task, few of them reliable) at target 0.96 with the vote-split
    check, the warm-started chain settled by the third round in an optimum that gives one
    class to 87 % of the tasks, the policy stopped tasks on that model's confidence, and the
    replay ended at 0.53 accuracy; started cold every round it ends at 0.84
    (`tests/loop/test_replay.py`), and at the recommended settings the cold replays stay at
    0.85–0.87 on file order and two shuffled arrival orders (`benchmarks/bench_replay.py
    --orders 2`). A cold fit costs its full iterations every round; the replays still take
    seconds.

    Dawid–Skene runs as a MAP fit with `DIAGONAL_PSEUDO_COUNT` (annotators better than chance):
    on a few votes per task maximum-likelihood EM can land in the label-swapped optimum
    (measured on D_PosSent with warm starts: accuracy 0.137); the prior keeps it out. One
    pseudo-judgment per annotator and class, not more: with `policy.RECOMMENDED` at `--budget
    0.5`, two gained a task or two on RTE (mean of file order and two shuffled orders 0.9225
    against 0.9217) and one on D_PosSent's file order, but cost D_Product 0.0014 on all its
    judgments (0.9376 against 0.9390; maximum likelihood: 0.9397) and Duck a task without a
    budget; 4 and 8 were no better on RTE (0.9217, 0.9208), and 0 (maximum likelihood) was
    worse (0.9162).
    """

    kind = "categorical"

    def __init__(
        self,
        *,
        method: str = "dawid_skene",
        gold: pl.DataFrame | None = None,
        max_iter: int = 100,
        tol: float = 1e-5,
        warm_start: bool = False,
        label_set: pl.Series | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        self.method = method
        self.gold = gold
        self.max_iter = max_iter
        self.tol = tol
        self.chosen: str | None = None
        self.explanation = ""
        self.warm_start = warm_start
        # Every label a task could get (the whole replayed file's, or the project's): the
        # judgments revealed so far may all say one of them.
        self.label_set = label_set
        self.iterations: list[int] = []
        self._warm_start: WarmStart | None = None
        # The last fit's own posterior per task (`task_id`, `posterior`: one field per class),
        # for callers that carry soft counts (`loop.live_kinds`).
        self.posterior: pl.DataFrame | None = None

    def __call__(self, judgments: pl.DataFrame) -> pl.DataFrame:
        method = self.chosen or self.method
        result = fit(
            judgments.select("task_id", "annotator_id", "label"),
            method,
            max_iter=self.max_iter,
            tol=self.tol,
            gold=self.gold,
            warm_start=self._warm_start if self.warm_start else None,
            diagonal_pseudo_count=DIAGONAL_PSEUDO_COUNT,
            label_set=self.label_set,
        )
        if self.chosen is None:
            self.chosen = result.method if self.method == AUTO else self.method
            self.explanation = result.explanation
        self._warm_start = result.warm_start
        self.iterations.append(result.iterations)
        self.posterior = result.labels.select("task_id", "posterior")
        table = result.labels.select("task_id", "label", "confidence", "n_votes").join(
            vote_split(judgments), on="task_id", how="left", maintain_order="left"
        )
        return with_known(table, self.gold)


def vote_split(judgments: pl.DataFrame) -> pl.DataFrame:
    """Per task, `top_votes` and `runner_up_votes`: the counts of its two most frequent answers
    (0 when it has a single distinct answer)."""
    ranked = pl.col("len").sort(descending=True)
    return (
        judgments.group_by("task_id", "label")
        .len()
        .group_by("task_id")
        .agg(
            ranked.first().cast(pl.Int64).alias("top_votes"),
            ranked.get(1, null_on_oob=True).fill_null(0).cast(pl.Int64).alias("runner_up_votes"),
        )
    )


# kind -> factory(method, gold) of its confidence function.
CONFIDENCE_FUNCTIONS: dict[str, Callable[..., ConfidenceFunction]] = {
    "categorical": CategoricalConfidence,
    "pairwise": PairwiseConfidence,
    **{
        kind: partial(KindConfidence, kind=kind)
        for kind in ALL_KINDS
        if kind not in ("categorical", "pairwise")
    },
}
KINDS: tuple[str, ...] = tuple(CONFIDENCE_FUNCTIONS)


def confidence_function(
    kind: str,
    *,
    method: str | None = None,
    gold: pl.DataFrame | None = None,
    label_set: pl.Series | None = None,
    scale: RatingScale | None = None,
) -> ConfidenceFunction:
    """The confidence function for `kind` with `method` (default: the kind's default method);
    a ValueError naming the supported kinds otherwise. `label_set` (categorical, and pairwise
    winners as `oriented_winners` reads them): every label a task could get. `scale` (numeric
    only): the declared rating scale."""
    try:
        factory = CONFIDENCE_FUNCTIONS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; supported: {', '.join(KINDS)}") from None
    options: dict[str, object] = {"gold": gold}
    if method is not None:
        options["method"] = method
    if kind in (CategoricalConfidence.kind, PairwiseConfidence.kind) and label_set is not None:
        options["label_set"] = label_set
    if kind == "numeric" and scale is not None:
        options["scale"] = scale
    return factory(**options)
