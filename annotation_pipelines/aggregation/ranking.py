"""Rankings (ordered lists of item ids, best first): one consensus ranking per task.

Borda count (J.-C. de Borda, 1781; as a rank aggregation rule, C. Dwork, R. Kumar, M. Naor and
D. Sivakumar, "Rank aggregation methods for the Web", WWW 2001): an item at position p
(0-based) of a list of m items earns m − 1 − p points, weighted by the annotator's
reliability; items are ordered by total points, ties by mean position then item id. An item a
list does not name earns nothing from it.

Plackett–Luce (R. L. Plackett, "The analysis of permutations", Applied Statistics 24(2), 1975,
193–202; R. D. Luce, "Individual Choice Behavior", Wiley, 1959): a ranking is built by
choosing the best of the remaining items with probability γ_i / Σ_{k remaining} γ_k, stage by
stage. Strengths are fitted per task with Hunter's MM algorithm (D. R. Hunter, "MM algorithms
for generalized Bradley–Terry models", Annals of Statistics 32(1), 2004, 384–406, §5):

    γ_i ← (a − 1 + w_i) / (b + Σ_r Σ_{stages s of r with i still remaining} 1 / Σ_{k remaining} γ_k)

where w_i counts (reliability-weighted) stages where i was chosen. The Gamma(a = 2, b = 1)
prior (F. Caron and A. Doucet, "Efficient Bayesian inference for generalized Bradley–Terry
models", J. Comput. Graph. Statist. 21(1), 2012) keeps an item that is always last at a finite
strength and makes the update a MAP step. Every task is fitted at once: strengths live in one
flat array indexed by (task, item) and the stage sums are segmented cumulative sums.

Reliability: after a consensus is found, annotator j's agreement is the mean over their
rankings of 1 − the Fagin Kendall distance to the consensus (`agreement.distances`), i.e.
(τ + 1) / 2, shrunk toward the crowd's mean with `prior_strength` pseudo-rankings; the
weight is max(2 · agreement − 1, 0.05) (Kendall τ floored), and the consensus is recomputed
with those weights for `n_rounds` rounds. Confidence per task: the reliability-weighted mean
of (τ + 1) / 2 between the task's rankings and its consensus; 0.5 for a task ranked once, or
whose rankings name no item in common (outside gold), as for free text: one ranking agrees with
itself, which is no evidence.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.kinds_codes import encode_values, fixed_weights
from annotation_pipelines.aggregation.kinds_result import KindAggregation
from annotation_pipelines.agreement.distances import kendall_pair_distances

RANKING_METHODS = ("plackett_luce", "borda")
_PRIOR_SHAPE = 2.0
_PRIOR_RATE = 1.0
_WEIGHT_FLOOR = 0.05
LONE_CONFIDENCE = 0.5


def aggregate_ranking(
    judgments: pl.DataFrame,
    *,
    method: str = "plackett_luce",
    gold: pl.DataFrame | None = None,
    n_rounds: int = 3,
    prior_strength: float = 2.0,
    max_iter: int = 1000,
    tol: float = 1e-8,
    reliability: pl.DataFrame | None = None,
) -> KindAggregation:
    """Rankings (`task_id`, `annotator_id`, `ranking`: list of item ids, best first) to one
    consensus ranking per task.

    `labels`: `task_id`, `ranking` (every item any annotator ranked in the task), `confidence`,
    `n_votes`. `annotators`: `annotator_id`, `reliability` (the weight), `n_judgments`,
    `mean_kendall_tau` (unshrunk, against the consensus). `gold` (`task_id`, `ranking`):
    annotators' agreement on gold tasks is measured against the gold ranking. `n_rounds = 0`
    gives the unweighted consensus. `reliability` (`annotator_id`, `reliability`: the weights of
    an earlier fit) fixes the weights: one consensus with them, no re-estimation (an annotator
    it does not name weighs the median weight), as an incremental caller refits a few tasks.
    """
    if method not in RANKING_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(RANKING_METHODS)}")
    missing = [c for c in ("task_id", "annotator_id", "ranking") if c not in judgments.columns]
    if missing:
        raise ValueError(
            f"judgments: missing column(s) {', '.join(missing)}; "
            f"have {', '.join(judgments.columns)}"
        )
    rankings = judgments.get_column("ranking").cast(pl.List(pl.String)).fill_null([])
    tasks, task_values = encode_values(judgments.get_column("task_id"), sort=False)
    annotators, annotator_values = encode_values(judgments.get_column("annotator_id"), sort=True)
    n_tasks, n_annotators = task_values.len(), annotator_values.len()
    stages = _stages(tasks, rankings)
    gold_rankings = _gold_rankings(judgments, gold)
    weights = np.ones(n_annotators)
    if reliability is not None:
        weights, n_rounds = fixed_weights(annotator_values, reliability), 0
    iterations, converged = 0, True
    tau = np.zeros(n_annotators)
    agreement = np.ones(judgments.height)
    for round_index in range(n_rounds + 1):
        row_weights = weights[annotators]
        if method == "borda":
            strength = _borda(stages, row_weights)
        else:
            strength, used, done = _plackett_luce(stages, row_weights, max_iter=max_iter, tol=tol)
            iterations += used
            converged = converged and done
        consensus = _consensus(stages, strength, task_values)
        reference = consensus.gather(tasks)
        if gold_rankings is not None:
            reference = pl.select(
                pl.when(gold_rankings.is_not_null()).then(gold_rankings).otherwise(reference)
            ).to_series()
        # Agreement of each ranking with the consensus, over the items that ranking names.
        restricted = _restrict(reference, rankings)
        agreement = 1.0 - kendall_pair_distances(rankings, restricted)
        n_by_annotator = np.bincount(annotators, minlength=n_annotators).astype(np.float64)
        total = np.bincount(annotators, weights=agreement, minlength=n_annotators)
        crowd = float(agreement.mean()) if agreement.size else 1.0
        shrunk = (total + prior_strength * crowd) / (n_by_annotator + prior_strength)
        tau = 2 * total / np.maximum(n_by_annotator, 1) - 1
        if round_index == n_rounds:
            break
        weights = np.maximum(2 * shrunk - 1, _WEIGHT_FLOOR)
    row_weights = weights[annotators]
    confidence = np.bincount(tasks, weights=row_weights * agreement, minlength=n_tasks) / (
        np.bincount(tasks, weights=row_weights, minlength=n_tasks)
    )
    # A lone ranking agrees with the consensus it alone made: no evidence either way, as for
    # free text (on a gold task the agreement is with the gold ranking, which is evidence).
    # So do rankings that name no item in common: each is compared with the consensus over
    # its own items only, which it alone ordered.
    lone = (np.bincount(tasks, minlength=n_tasks) == 1) | ~_share_an_item(tasks, rankings, n_tasks)
    if gold_rankings is not None:
        lone &= ~np.bincount(
            tasks, weights=gold_rankings.is_not_null().to_numpy(), minlength=n_tasks
        ).astype(bool)
    confidence[lone] = LONE_CONFIDENCE
    return KindAggregation(
        labels=pl.DataFrame(
            {
                "task_id": task_values,
                "ranking": consensus,
                "confidence": pl.Series(np.clip(confidence, 0.0, 1.0), dtype=pl.Float64),
                "n_votes": pl.Series(np.bincount(tasks, minlength=n_tasks), dtype=pl.UInt32),
            }
        ),
        annotators=pl.DataFrame(
            {
                "annotator_id": annotator_values,
                "reliability": pl.Series(weights, dtype=pl.Float64),
                "n_judgments": pl.Series(
                    np.bincount(annotators, minlength=n_annotators), dtype=pl.UInt32
                ),
                "mean_kendall_tau": pl.Series(tau, dtype=pl.Float64),
            }
        ),
        method=method,
        converged=converged,
        iterations=iterations,
    )


def gold_score(judgments: pl.DataFrame, gold: pl.DataFrame) -> pl.DataFrame:
    """Per annotator on gold tasks: `annotator_id`, `n_gold`, `mean_kendall_tau` (Kendall τ =
    1 − 2 · Fagin distance against the gold ranking, over the union of both lists)."""
    joined = judgments.select("task_id", "annotator_id", "ranking").join(
        gold.select("task_id", pl.col("ranking").alias("gold")), on="task_id"
    )
    distance = kendall_pair_distances(joined.get_column("ranking"), joined.get_column("gold"))
    return (
        joined.with_columns(pl.Series("tau", 1.0 - 2.0 * distance))
        .group_by("annotator_id")
        .agg(
            pl.len().cast(pl.UInt32).alias("n_gold"), pl.col("tau").mean().alias("mean_kendall_tau")
        )
        .sort("annotator_id")
    )


def _share_an_item(tasks: np.ndarray, rankings: pl.Series, n_tasks: int) -> np.ndarray:
    """Per task, whether some item is named by two of its rankings (a ranking naming an item
    twice names it once)."""
    named = (
        pl.DataFrame({"task": tasks, "ranking": rankings})
        .with_row_index("row")
        .explode("ranking")
        .drop_nulls("ranking")
        .group_by("task", "ranking")
        .agg(pl.col("row").n_unique().alias("rankings"))
        .filter(pl.col("rankings") > 1)
        .get_column("task")
        .unique()
        .to_numpy()
    )
    shared = np.zeros(n_tasks, dtype=bool)
    shared[named] = True
    return shared


def _stages(tasks: np.ndarray, rankings: pl.Series) -> pl.DataFrame:
    """One row per (ranking, position): `row`, `task`, `item` (task-local code), `position`,
    `length`, sorted by row then position. A ranking naming an item twice keeps its first."""
    frame = (
        pl.DataFrame(
            {"row": np.arange(tasks.shape[0], dtype=np.int64), "task": tasks, "name": rankings}
        )
        .with_columns(pl.int_ranges(0, pl.col("name").list.len()).alias("position"))
        .explode("name", "position")
        .drop_nulls("name")
        .unique(["row", "name"], keep="first", maintain_order=True)
        .sort("row", "position")
        .with_columns(
            pl.int_range(pl.len()).over("row").alias("position"),
            pl.len().over("row").alias("length"),
        )
    )
    items = frame.select("task", "name").unique().sort("task", "name").with_row_index("item")
    return frame.join(items, on=["task", "name"], maintain_order="left")


def _borda(stages: pl.DataFrame, row_weights: np.ndarray) -> np.ndarray:
    """Points per (task, item) code, with a tiny mean-position term that breaks ties."""
    item = stages.get_column("item").to_numpy().astype(np.int64)
    n_items = int(item.max()) + 1 if item.size else 0
    position = stages.get_column("position").to_numpy().astype(np.float64)
    length = stages.get_column("length").to_numpy().astype(np.float64)
    weight = row_weights[stages.get_column("row").to_numpy()]
    points = np.bincount(item, weights=weight * (length - 1 - position), minlength=n_items)
    seen = np.bincount(item, minlength=n_items)
    mean_position = np.bincount(item, weights=position, minlength=n_items) / np.maximum(seen, 1)
    scale = float(np.max(np.abs(points))) + 1.0 if points.size else 1.0
    return points - 1e-9 * scale * mean_position


def _plackett_luce(
    stages: pl.DataFrame, row_weights: np.ndarray, *, max_iter: int, tol: float
) -> tuple[np.ndarray, int, bool]:
    """Hunter's MM with a Gamma prior, for every task's items at once (log strengths)."""
    item = stages.get_column("item").to_numpy().astype(np.int64)
    n_items = int(item.max()) + 1 if item.size else 0
    row = stages.get_column("row").to_numpy()
    position = stages.get_column("position").to_numpy()
    length = stages.get_column("length").to_numpy()
    weight = row_weights[row]
    # A stage is a choice unless it is a ranking's last position (a choice from one item).
    chooses = position < length - 1
    wins = np.bincount(item, weights=weight * chooses, minlength=n_items)
    starts = np.flatnonzero(position == 0)
    # ends[k]: index one past the last stage of the ranking that row k belongs to.
    ends = np.repeat(starts + length[starts], length[starts])
    strength = np.ones(n_items)
    for iteration in range(1, max_iter + 1):
        gamma = strength[item]
        reverse = np.concatenate((np.cumsum(gamma[::-1])[::-1], [0.0]))
        remaining = reverse[:-1] - reverse[ends]  # Σ γ over this stage's remaining items
        inverse = np.where(chooses, weight / remaining, 0.0)
        forward = np.concatenate(([0.0], np.cumsum(inverse)))
        # Σ over the ranking's stages up to and including this position.
        exposure = forward[1:] - forward[np.repeat(starts, length[starts])]
        denominator = np.bincount(item, weights=exposure, minlength=n_items)
        updated = (_PRIOR_SHAPE - 1 + wins) / (_PRIOR_RATE + denominator)
        change = float(np.max(np.abs(np.log(updated) - np.log(strength)))) if n_items else 0.0
        strength = updated
        if change < tol:
            return np.log(strength), iteration, True
    return np.log(strength), max_iter, False


def _consensus(stages: pl.DataFrame, strength: np.ndarray, task_values: pl.Series) -> pl.Series:
    """Every task's items sorted by strength (best first; ties by item id)."""
    items = stages.select("task", "item", "name").unique("item")
    ordered = (
        items.with_columns(pl.Series("strength", strength[items.get_column("item").to_numpy()]))
        .sort(["task", "strength", "name"], descending=[False, True, False])
        .group_by("task", maintain_order=True)
        .agg(pl.col("name"))
    )
    full = pl.DataFrame(
        {"task": pl.Series(np.arange(task_values.len())).cast(ordered["task"].dtype)}
    ).join(ordered, on="task", how="left", maintain_order="left")
    return full.get_column("name").fill_null([]).cast(pl.List(pl.String)).alias("ranking")


def _restrict(reference: pl.Series, rankings: pl.Series) -> pl.Series:
    """Each `reference` list keeping only the items its `rankings` list names, in order."""
    n = reference.len()
    rows = np.arange(n, dtype=np.int64)
    ordered = pl.DataFrame({"row": rows, "item": reference}).explode("item").drop_nulls("item")
    named = pl.DataFrame({"row": rows, "item": rankings}).explode("item").drop_nulls("item")
    kept = (
        ordered.join(named.unique(), on=["row", "item"], how="semi", maintain_order="left")
        .group_by("row", maintain_order=True)
        .agg(pl.col("item"))
    )
    return (
        pl.DataFrame({"row": rows})
        .join(kept, on="row", how="left", maintain_order="left")
        .get_column("item")
        .fill_null([])
        .cast(pl.List(pl.String))
    )


def _gold_rankings(judgments: pl.DataFrame, gold: pl.DataFrame | None) -> pl.Series | None:
    if gold is None or gold.height == 0:
        return None
    for column in ("task_id", "ranking"):
        if column not in gold.columns:
            raise ValueError(f"gold: missing column {column!r}; have {', '.join(gold.columns)}")
    return (
        judgments.select(pl.col("task_id").cast(pl.String))
        .join(
            gold.select(
                pl.col("task_id").cast(pl.String), pl.col("ranking").cast(pl.List(pl.String))
            ),
            on="task_id",
            how="left",
            maintain_order="left",
        )
        .get_column("ranking")
    )
