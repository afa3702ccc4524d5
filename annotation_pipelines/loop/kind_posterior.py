"""Per-task confidence of the non-categorical kinds, for the adaptive-redundancy policy.

Each kind's confidence is what its aggregation reports per task (`aggregation.by_kind`); the
policy needs nothing else, so the same `decide` and `replay` serve every kind:

| kind       | task confidence (what "done at 0.9" means)                                        |
|------------|-----------------------------------------------------------------------------------|
| multilabel | probability the whole label set is right, Π_c max(p_c, 1 − p_c)                    |
| numeric    | probability the value is within a tolerance of the truth (below)                  |
| ranking    | reliability-weighted agreement of the judgments with the consensus order          |
| pairwise   | Dawid–Skene posterior of the pair's winner (left / right / tie)                   |
| spans      | probability the whole span set is right: Π over intervals of the MAP posterior     |
| boxes      | mean confidence of the fused boxes (share of reliable annotators who drew them)   |
| text       | 1 − the chosen answer's reliability-weighted edit distance to the others           |

A numeric task's confidence is P(|estimate − truth| ≤ δ) under the aggregation's normal
interval (its 95 % interval read as ±1.96 standard errors), with δ half a step of the rating
scale (the smallest gap between distinct answers) or 5 % of the answers' range, whichever is
larger: on a 1–5 Likert scale, the probability the value rounds to the right point; on a
0–100 slider, that it is within 5 points. The aggregation's own confidence (1 − width / range)
is a relative width, not a probability, and no target reads the same on both scales.

A pairwise task is one comparison: whether it needs another vote is a question about that pair
(which side the annotators prefer), not about the items' global Bradley–Terry scores, so the
winner is aggregated as a categorical label per pair, with annotator confusion matrices — the
scores still come from the kind's own aggregation downstream. A judgment that shows the pair
the other way round has its winner mirrored first.

The label a confidence function returns is the kind's aggregate value (a list of spans, a
number, a ranking …) in the `label` column; `n_votes` counts the task's judgments.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtr, ndtri

from annotation_pipelines.aggregation.numeric import rating_bounds, rating_range
from annotation_pipelines.kinds import KINDS, VALUE_COLUMNS, VALUE_DTYPES
from annotation_pipelines.loop.live import TASK_REQUESTS, decision_id
from annotation_pipelines.scale import RatingScale

# The target confidence each kind's replay and policy default to (`policy.RECOMMENDED` holds the
# categorical one). Measured with `benchmarks/bench_replay_kinds.py` (synthetic projects of
# every kind, 9 judgments per task): at 0.95 the policy matches or beats fixed overlap of 4–5
# at 29–58 % of the judgments on every kind but ranking (whose agreement-based confidence
# buys accuracy with more judgments: Kendall τ 0.842 at 82 % against 0.801 at 56 %); 0.9
# saves 5–25 points of cost and loses 1–7 points of accuracy on spans, boxes, multilabel and
# ranking.
KIND_TARGETS: dict[str, float] = {
    "multilabel": 0.95,
    "numeric": 0.95,
    "ranking": 0.95,
    "pairwise": 0.95,
    "spans": 0.95,
    "boxes": 0.95,
    "text": 0.95,
}


class KindConfidence:
    """Any non-categorical kind through `aggregate_kind` with the kind's registry method."""

    def __init__(
        self,
        *,
        kind: str,
        method: str | None = None,
        gold: pl.DataFrame | None = None,
        **options: Any,
    ) -> None:
        if kind not in KINDS or kind in ("categorical", "pairwise"):
            raise ValueError(f"KindConfidence serves the non-categorical kinds, not {kind!r}")
        from annotation_pipelines.aggregation.registry import kind_method

        self.kind = kind
        self.method = kind_method(kind, method).name
        self.gold = gold
        self.options = options
        (self.value_column,) = VALUE_COLUMNS[kind]
        # The judgments the last fit set aside as gross errors (`KindAggregation.set_aside`:
        # `task_id`, `annotator_id`, `value`), for a replay to report what its labels left out.
        self.set_aside: pl.DataFrame | None = None

    def __call__(self, judgments: pl.DataFrame) -> pl.DataFrame:
        from annotation_pipelines.aggregation.by_kind import aggregate_kind

        result = aggregate_kind(
            judgments, kind=self.kind, method=self.method, gold=self.gold, **self.options
        )
        self.set_aside = result.set_aside
        table = policy_confidence(
            self.kind, result.labels, judgments, scale=self.options.get("scale")
        )
        return with_known(table, self.gold)


def with_known(table: pl.DataFrame, gold: pl.DataFrame | None) -> pl.DataFrame:
    """`table` (one row per task) with `known`: whether gold holds the task's answer, which the
    policy reads as done for good (`policy.decide`). Unchanged without gold."""
    if gold is None:
        return table
    ids = gold.get_column("task_id").cast(table.schema["task_id"]).drop_nulls().unique()
    return table.with_columns(known=pl.col("task_id").is_in(ids.implode()))


def policy_confidence(
    kind: str,
    labels: pl.DataFrame,
    judgments: pl.DataFrame,
    *,
    scale: RatingScale | None = None,
) -> pl.DataFrame:
    """What the policy reads — `task_id`, `label`, `confidence`, `n_votes` — from a kind's
    aggregate (`labels`, one row per task as `aggregate_kind` returns it) and the judgments
    behind it. Pairwise refits the pairs' winners (its aggregate is per item, not per pair).
    `scale` (numeric): the declared rating scale the tolerance reads (`numeric_tolerance`)."""
    if kind == "pairwise":
        return PairwiseConfidence()(judgments)
    (value_column,) = VALUE_COLUMNS[kind]
    votes = judgments.group_by("task_id").agg(pl.len().cast(pl.Int64).alias("n_votes"))
    if kind == "numeric":
        lo, hi = labels.get_column("lo").to_numpy(), labels.get_column("hi").to_numpy()
        confidence = numeric_confidence(
            lo, hi, tolerance=numeric_tolerance(judgments.get_column("value"), scale=scale)
        )
        # A lone rating is no evidence of agreement, as the aggregate says: its interval (none
        # for a bootstrap, its annotator's noise for the model) read as certainty would end
        # every task after its first judgment.
        alone = (
            labels.select("task_id")
            .join(votes, on="task_id", how="left", maintain_order="left")
            .get_column("n_votes")
            .fill_null(0)
            .to_numpy()
            == 1
        )
        confidence = np.where(alone, 0.5, confidence)
        labels = labels.with_columns(confidence=pl.Series(confidence, dtype=pl.Float64))
    return labels.select("task_id", pl.col(value_column).alias("label"), "confidence").join(
        votes, on="task_id", how="left", maintain_order="left"
    )


def numeric_tolerance(values: pl.Series, *, scale: RatingScale | None = None) -> float:
    """Half a step of the rating scale or 5 % of its range, whichever is larger, both read
    inside `rating_bounds` (one answer far off the scale cannot widen them). A declared `scale`
    gives the range, and the step when it declares one (whole numbers: a step of 1); else the
    step is read from the answers inside it."""
    answers = values.drop_nulls().drop_nans().cast(pl.Float64).to_numpy()
    if scale is not None:
        step = scale.step if scale.step is not None else (1.0 if scale.integer else None)
        if step is None:
            inside = np.unique(answers[(answers >= scale.low) & (answers <= scale.high)])
            step = float(np.diff(inside).min()) if inside.size >= 2 else 0.0
        return max(step / 2.0, 0.05 * scale.width)
    distinct = np.unique(answers)
    bounds = rating_bounds(answers)
    if bounds is None or distinct.size < 2:
        return 0.5
    inside = distinct[(distinct >= bounds[0]) & (distinct <= bounds[1])]
    step = float(np.diff(inside if inside.size >= 2 else distinct).min())
    return max(step / 2.0, 0.05 * rating_range(answers))


def numeric_confidence(
    lo: np.ndarray, hi: np.ndarray, *, tolerance: float, level: float = 0.95
) -> np.ndarray:
    """P(|estimate − truth| ≤ tolerance) when [lo, hi] is a normal interval at `level`."""
    # Halved before the subtraction (exact), so an interval wider than the largest float has
    # a finite standard error; the same figure, bit for bit, as (hi − lo) / (2 z).
    standard_error = (hi / 2.0 - lo / 2.0) / float(ndtri(0.5 + level / 2.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(standard_error > 0, tolerance / standard_error, np.inf)
    # An interval the fit could not compute (NaN) is no confidence, never certainty.
    return np.where(np.isnan(standard_error), 0.0, np.clip(2.0 * ndtr(z) - 1.0, 0.0, 1.0))


class PairwiseConfidence:
    """The winner of each compared pair as a categorical label with annotator confusions."""

    kind = "pairwise"

    def __init__(
        self,
        *,
        method: str = "dawid_skene",
        gold: pl.DataFrame | None = None,
        label_set: pl.Series | None = None,
        **_: Any,
    ) -> None:
        from annotation_pipelines.loop.posterior import CategoricalConfidence

        self._gold = gold
        # Every winner a pair could have: left and right always, and `label_set` (a replay's
        # whole file's, oriented). A fit whose pairs' votes all name one side is then not
        # certain of it, as a categorical fit that knows the project's labels is not.
        sides = pl.Series("label", ["left", "right"], dtype=pl.String)
        self._categorical = CategoricalConfidence(
            method=method if method not in (None, "bradley_terry") else "dawid_skene",
            label_set=sides
            if label_set is None
            else pl.concat([sides, label_set.cast(pl.String).rename("label")]).unique().sort(),
        )

    def __call__(self, judgments: pl.DataFrame) -> pl.DataFrame:
        if self._gold is not None:
            # A gold winner is a label in the judgments' orientation of its pair: a gold row
            # that shows the pair the other way round must clamp the same item, not the
            # same side. Set on the one fit, which keeps the method `auto` chose.
            self._categorical.gold = oriented_winners(self._gold, like=judgments)
        return self._categorical(oriented_winners(judgments))

    @property
    def chosen(self) -> str | None:
        """The method the winners are fitted with (with `auto`, the one the first call chose)."""
        return self._categorical.chosen

    @property
    def posterior(self) -> pl.DataFrame | None:
        """The last call's Dawid–Skene posterior per pair (`task_id`, `posterior`: a struct
        with P(left) and P(right) always, and P(tie) when a tie was seen), as the first row
        shows the pair."""
        return self._categorical.posterior


def oriented_winners(judgments: pl.DataFrame, *, like: pl.DataFrame | None = None) -> pl.DataFrame:
    """`task_id`, (`annotator_id`,) `label` = the winner as seen from the task's first row's
    orientation: a judgment that shows the pair swapped has left and right exchanged.

    With `like` (the judgments, when orienting gold), a task's orientation is its first row
    in `like`, so the labels of both frames read alike; a task `like` lacks keeps its own."""
    first = pairwise_orientation(judgments)
    if like is not None:
        first = pl.concat(
            [pairwise_orientation(like).cast(first.schema, strict=False), first],
            how="vertical",
        ).unique("task_id", keep="first", maintain_order=True)
    swapped = pl.col("left") != pl.col("_left")
    winner = (
        pl.when(swapped & (pl.col("winner") == "left"))
        .then(pl.lit("right"))
        .when(swapped & (pl.col("winner") == "right"))
        .then(pl.lit("left"))
        .otherwise(pl.col("winner"))
    )
    keep = [c for c in ("task_id", "annotator_id") if c in judgments.columns]
    return (
        judgments.join(first, on="task_id", how="left", maintain_order="left")
        .select(*keep, winner.alias("label"))
        .filter(pl.col("label").is_not_null())
    )


def pairwise_orientation(judgments: pl.DataFrame) -> pl.DataFrame:
    """`task_id`, `_left`, `_right`: each pair as the task's first row shows it."""
    return judgments.group_by("task_id", maintain_order=True).agg(
        pl.col("left").first().alias("_left"), pl.col("right").first().alias("_right")
    )


def comparable_values(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """`task_id` and the value column(s) in the live types (spans and boxes without their
    per-item confidence), comparable across the live and the daily tables."""
    values = []
    for name in VALUE_COLUMNS[kind]:
        dtype = VALUE_DTYPES[name]
        column = pl.col(name)
        if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
            fields = [f.name for f in dtype.inner.fields]
            column = column.list.eval(pl.struct([pl.element().struct.field(f) for f in fields]))
        values.append(column.cast(dtype))
    return frame.select(pl.col("task_id").cast(pl.String), *values)


def winning_item(suffix: str = "") -> pl.Expr:
    """The item a pairwise answer (columns `winner`, `left`, `right` + `suffix`) prefers, or
    "tie": two tables may show a pair in opposite orders, the item they prefer is the same."""
    winner, left, right = (pl.col(f"{c}{suffix}") for c in ("winner", "left", "right"))
    return (
        pl.when(winner == "left").then(left).when(winner == "right").then(right)
        .otherwise(pl.lit("tie"))
    )  # fmt: skip


# What the annotation tool is asked for, by the policy's decision.
_REQUESTS = {"needs_another_judgment": "another_judgment", "escalate": "expert_review"}


def decision_time(day: date, *, now: datetime) -> datetime:
    """When a day's decisions were made, as the write-back orders them against the live
    layer's: the end of the day (UTC), when its evidence was complete; `now` for a day not
    yet over. The same on every run of the day, so a retry or a backfill orders alike."""
    return min(datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC), now)


def settled_tasks(labels: pl.DataFrame, queue: pl.DataFrame) -> pl.DataFrame:
    """`project`, `task_id` of the day's aggregated tasks (`kind_aggregated_labels`) that
    its policy queue does not hold: the ones the day calls done."""
    return (
        labels.select(pl.col("project").cast(pl.String), pl.col("task_id").cast(pl.String))
        .join(
            queue.select(pl.col("project").cast(pl.String), pl.col("task_id").cast(pl.String)),
            on=["project", "task_id"],
            how="anti",
        )
        .unique()
        .sort("project", "task_id")
    )


def _json_number(value: float | None) -> float | None:
    """`value` as JSON can hold it: PostgreSQL's jsonb refuses NaN and Infinity, and one such
    number would fail the whole write of the day's requests."""
    return value if value is None or np.isfinite(value) else None


def queue_requests(queue: pl.DataFrame, *, created_at: datetime) -> pl.DataFrame:
    """The annotation DB's `task_requests` rows (`loop.live.TASK_REQUESTS`) for a day's
    policy queue (`quality.kinds.policy_queue` rows with `project` and `day`).

    One decision per task, day, request and number of judgments seen: `decision_id` hashes
    them, so re-running a day on the same evidence writes nothing new, while a later day, or
    the day rebuilt on more judgments, that asks again about the same task is a new request.
    `created_at` is the day's `decision_time`: the write-back keeps the newer of two requests
    for one task by it.
    """
    wanted = queue.filter(pl.col("decision").is_in(list(_REQUESTS)))
    rows = [
        {
            "task_id": row["task_id"],
            "project": row["project"],
            "request": _REQUESTS[row["decision"]],
            "reason": f"{row['kind']}: {row['reason']}",
            "confidence": row["confidence"],
            "posterior": json.dumps(
                {"confidence": _json_number(row["confidence"]), "n_judgments": row["n_judgments"]},
                allow_nan=False,
            ),
            # The task's judgment count is its evidence's version, as a live state's version
            # is for a live decision: a day rebuilt on more judgments decides anew.
            "decision_id": decision_id(
                f"daily_{_REQUESTS[row['decision']]}",
                row["project"],
                f"{row['task_id']}\x1f{row['day']:%Y%m%d}",
                row["n_judgments"],
            ),
            "created_at": created_at,
        }
        for row in wanted.iter_rows(named=True)
    ]
    return pl.DataFrame(rows, schema=TASK_REQUESTS)
