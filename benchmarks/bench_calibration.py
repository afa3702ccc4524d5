"""Calibration of the default method's confidence at every redundancy, on the shared crowd sets.

    .venv/bin/python benchmarks/bench_calibration.py [--votes 1,2,3,5] [--orders 3]
                                                     [--method dawid_skene]
                                                     [--vote-map [--replay-orders N]
                                                      [--map-centre half|prior]]
                                                     [--digamma-rows]

The calibration is measured on the sets as published (3-39 votes per task); the adaptive
policy reads the confidence after a task's first few votes. For each set
(../shared/data/crowd) and each k in `--votes`, the first k judgments of every task are
aggregated alone, then a mix of 1-4 votes per task (a seeded draw per task), then all the
judgments; each cell gives accuracy against the truth file, mean confidence and the expected
calibration error (10 equal-width bins). "First" is in file order (some files are sorted by
annotator, so a task's first votes there come from the same few people), and then the mean
over `--orders` shuffled arrival orders (seeds 0..N-1). Prints a Markdown table and the mean
ECE per column for both.

`--vote-map` measures instead a calibration map per number of votes, fitted on held-out
folds: tasks are split in two by a hash of their id; for each fit and each number of votes
n, a temperature τ_n on the logit of the confidence, conf' = σ(τ_n · logit(conf)), is chosen
on a fixed grid to minimise the cross-entropy against the *other* fold's tasks with n votes,
whose target is the calibrated probability, from a fit on all of the set's judgments, of the
label the n-vote fit chose (a proper target: calibrated on the published sets, and a
conditional expectation of correctness given more votes). No gold is read; the other fold's
full judgments stand for a history of fully-voted tasks, which a first-k fit alone does not
have. Each cell prints ECE before → after, and the mean per column. With
`--replay-orders N`, the default replay at `--replay-budget` (0.5; 1 is the replay without a
budget, which stops each task on the target confidence), in file order and then N shuffled
orders, is also run with the map applied to every round's confidence (the other fold's tasks
at the same number of votes in that round, against their all-judgment probability).
`--map-centre prior` tempers the logit around the chosen label's class share (the other
fold's) instead of around 1/2: a shrinkage of the posterior toward the class prior.

`--digamma-rows` prints the default table with a variational-Bayes reading of the
calibration's confusion rows: each held-out row is a Dirichlet posterior (the annotator's
counts plus s times the pooled row) and a judgment weighs exp E[log θ] = exp(ψ(α_a) - ψ(α_0))
instead of its mean α_a / α_0, so an annotator with few judgments counts less (the
Dirichlet posterior predictive of one vote per annotator and task is the mean itself, which is
what ships). s and τ are re-chosen with it by the same held-out likelihood.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.special import digamma

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation import calibration, fit
from annotation_pipelines.aggregation.calibration import expected_calibration_error
from annotation_pipelines.aggregation.encoding import Encoded
from tests.realdata import ALL_CROWD, accuracy, load_crowd

# Temperatures the per-vote-count map chooses from: log-spaced, 1 (no change) among them.
MAP_TEMPERATURES = np.unique(np.append(np.exp(np.linspace(np.log(0.05), np.log(4.0), 90)), 1.0))
# A vote count with fewer held-out tasks than this keeps its confidence (τ = 1).
MAP_MIN_TASKS = 20
_CLIP = 1e-6


def _figures(judgments: pl.DataFrame, truth: pl.DataFrame, method: str) -> tuple[float, ...]:
    """(accuracy, mean confidence, ECE) of `method` on `judgments` against `truth`."""
    labels = fit(judgments, method).labels
    joined = truth.join(labels, on="task_id", suffix="_predicted")
    correct = (joined["label"] == joined["label_predicted"]).to_numpy()
    confidence = joined["confidence"].to_numpy()
    return (
        float(correct.mean()),
        float(confidence.mean()),
        expected_calibration_error(confidence, correct),
    )


def _mixed(judgments: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Each task's first 1-4 judgments, the number drawn per task."""
    tasks = judgments.get_column("task_id").unique().sort()
    keep = pl.DataFrame(
        {"task_id": tasks, "_k": np.random.default_rng(seed).integers(1, 5, tasks.len())}
    )
    first = pl.int_range(pl.len()).over("task_id") < pl.col("_k")
    return judgments.join(keep, on="task_id", maintain_order="left").filter(first).drop("_k")


def _digamma_log_errors(
    encoded: Encoded, counts: Any, indices: np.ndarray, shrinkage: float
) -> np.ndarray:
    """`calibration._held_out_log_errors` with E[log θ] of the Dirichlet row for log E[θ]."""
    numerator, denominator = calibration._held_out_rows(encoded, counts, indices, shrinkage)
    return digamma(np.maximum(numerator, 1e-12)) - digamma(np.maximum(denominator, 1e-12))


def _fold(tasks: pl.Series) -> np.ndarray:
    """0 or 1 per task, from a hash of its id (so it does not depend on row order)."""
    return (tasks.hash(seed=11).to_numpy() % 2).astype(np.int64)


def _logit(confidence: np.ndarray) -> np.ndarray:
    clipped = np.clip(confidence, _CLIP, 1 - _CLIP)
    return np.log(clipped / (1 - clipped))


def _best_temperature(logits: np.ndarray, target: np.ndarray, offset: np.ndarray) -> float:
    """τ on `MAP_TEMPERATURES` minimising the cross-entropy of σ(τ · (logit - offset) + offset)
    against `target`."""
    if logits.size < MAP_MIN_TASKS:
        return 1.0
    scaled = (logits - offset)[None, :] * MAP_TEMPERATURES[:, None] + offset[None, :]
    # -[q log σ(x) + (1 - q) log σ(-x)] = log(1 + e^x) - q x
    losses = (np.logaddexp(0.0, scaled) - target[None, :] * scaled).sum(axis=1)
    return float(MAP_TEMPERATURES[int(np.argmin(losses))])


def vote_count_map(
    labels: pl.DataFrame, reference: pl.DataFrame, *, centre: str = "half"
) -> pl.DataFrame:
    """`labels` (task_id, label, confidence, n_votes) with `confidence` mapped per number of
    votes by a temperature fitted on the other fold (see the module); `reference` is a fit on
    all the judgments (task_id, label, confidence). `centre`: "half" tempers the logit around
    1/2, "prior" around the chosen label's class share in the other fold's targets (two
    classes)."""
    joined = labels.join(
        reference.select(
            "task_id", pl.col("label").alias("_ref"), pl.col("confidence").alias("_q")
        ),
        on="task_id",
        how="left",
        maintain_order="left",
    )
    logits = _logit(joined["confidence"].to_numpy().astype(np.float64))
    agrees = (joined["label"] == joined["_ref"]).fill_null(False).to_numpy()
    q = joined["_q"].fill_null(0.5).to_numpy()
    target = np.where(agrees, q, 1.0 - q)
    votes = joined["n_votes"].to_numpy()
    fold = _fold(joined["task_id"])
    chosen = joined["label"].to_numpy()
    mapped = logits.copy()
    for held_out in (0, 1):
        train_fold = fold != held_out
        offset = np.zeros(logits.size)
        if centre == "prior":
            # P(class = chosen label of task i) averaged over the other fold, per class.
            for label in np.unique(chosen):
                share = np.where(chosen[train_fold] == label, target[train_fold],
                                 1.0 - target[train_fold]).mean()  # fmt: skip
                offset[chosen == label] = _logit(np.array([share]))[0]
        for n in np.unique(votes):
            train = (votes == n) & train_fold
            apply = (votes == n) & ~train_fold
            tau = _best_temperature(logits[train], target[train], offset[train])
            mapped[apply] = tau * (logits[apply] - offset[apply]) + offset[apply]
    confidence = 1.0 / (1.0 + np.exp(-mapped))
    return labels.with_columns(pl.Series("confidence", confidence, dtype=pl.Float64))


def _ece(labels: pl.DataFrame, truth: pl.DataFrame) -> float:
    joined = truth.join(labels, on="task_id", suffix="_predicted")
    correct = (joined["label"] == joined["label_predicted"]).to_numpy()
    return expected_calibration_error(joined["confidence"].to_numpy(), correct)


def _vote_map_study(
    columns: dict[str, int | None],
    orders: int,
    method: str,
    replay_orders: int,
    centre: str,
    budget: float,
) -> None:
    names = list(columns)
    print(f"| data set | arrival order | {' | '.join(names)} |")
    print(f"|---|---|{'---|' * len(names)}")
    regimes = ["file", f"shuffled, mean of {orders}"]
    means: dict[str, dict[str, list[tuple[float, float]]]] = {
        r: {c: [] for c in names} for r in regimes
    }
    replays: list[str] = []
    for name in ALL_CROWD:
        judgments, truth = load_crowd(name)
        reference = fit(judgments, method).labels
        frames = {
            "file": [judgments],
            regimes[-1]: [
                judgments.sample(fraction=1.0, shuffle=True, seed=seed) for seed in range(orders)
            ],
        }
        for regime, arrivals in frames.items():
            cells = []
            for column in names:
                pairs = []
                for frame in arrivals:
                    labels = fit(_sample(frame, columns[column]), method).labels
                    mapped = vote_count_map(labels, reference, centre=centre)
                    pairs.append((_ece(labels, truth), _ece(mapped, truth)))
                before, after = np.array(pairs).mean(axis=0)
                means[regime][column].append((before, after))
                cells.append(f"{before:.3f} → **{after:.3f}**")
            print(f"| {name} | {regime} | {' | '.join(cells)} |", flush=True)
        if replay_orders >= 0:
            replays.append(
                _replay_row(name, judgments, truth, reference, replay_orders, centre, budget)
            )
    for regime in regimes:
        row = " | ".join(
            f"{np.mean([b for b, _ in v]):.3f} → **{np.mean([a for _, a in v]):.3f}**"
            for v in means[regime].values()
        )
        print(f"| mean ECE | {regime} | {row} |")
    print("\ncells: ECE (10 bins) as shipped → with the per-vote-count map")
    if replays:
        print(f"\n| data set | replay `--budget {budget:g}`, as shipped | with the map |")
        print("|---|---|---|")
        for row in replays:
            print(row)


def _replay_row(
    name: str,
    judgments: pl.DataFrame,
    truth: pl.DataFrame,
    reference: pl.DataFrame,
    orders: int,
    centre: str,
    budget: float,
) -> str:
    """Replay accuracy @ share at `budget`, shipped and mapped: file order / shuffled."""
    from dataclasses import replace

    from annotation_pipelines.loop.policy import RECOMMENDED
    from annotation_pipelines.loop.posterior import CategoricalConfidence
    from annotation_pipelines.loop.replay import replay

    class Mapped(CategoricalConfidence):
        def __call__(self, judgments: pl.DataFrame) -> pl.DataFrame:
            return vote_count_map(super().__call__(judgments), reference, centre=centre)

    options = replace(RECOMMENDED, budget=budget)
    cells = []
    for factory in (CategoricalConfidence, Mapped):
        figures = []
        for seed in [None, *range(orders)]:
            frame = (
                judgments
                if seed is None
                else judgments.sample(fraction=1.0, shuffle=True, seed=seed)
            )
            result = replay(frame, confidence=factory(), options=options)
            share = result.judgments_used / judgments.height
            figures.append(f"{accuracy(result.labels, truth):.4f} @ {share:.2f}")
        cells.append(" / ".join(figures))
    return f"| {name} | {cells[0]} | {cells[1]} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", default="1,2,3,5", help="comma-separated votes per task")
    parser.add_argument("--orders", type=int, default=3, help="shuffled arrival orders")
    parser.add_argument("--method", default="dawid_skene")
    parser.add_argument("--vote-map", action="store_true", help="the per-vote-count map study")
    parser.add_argument(
        "--replay-orders", type=int, default=-1, help="with --vote-map: replays (file + N shuffled)"
    )
    parser.add_argument(
        "--map-centre", choices=("half", "prior"), default="half", help="with --vote-map"
    )
    parser.add_argument("--replay-budget", type=float, default=0.5, help="with --replay-orders")
    parser.add_argument("--digamma-rows", action="store_true", help="VB confusion rows")
    arguments = parser.parse_args()
    if arguments.digamma_rows:
        # A study of a variant, not a second implementation: the engine's function is swapped
        # for this process only.
        calibration._held_out_log_errors = _digamma_log_errors
    # Column header -> each task's first k judgments (None: the 1-4 mix; 0: all of them).
    samples: dict[str, int | None] = {
        f"{k} vote{'s' if k > 1 else ''}": k for k in map(int, arguments.votes.split(","))
    }
    samples |= {"1-4 votes": None, "all": 0}
    if arguments.vote_map:
        _vote_map_study(
            samples,
            arguments.orders,
            arguments.method,
            arguments.replay_orders,
            arguments.map_centre,
            arguments.replay_budget,
        )
        return
    columns = list(samples)
    print(f"| data set | arrival order | {' | '.join(columns)} |")
    print(f"|---|---|{'---|' * len(columns)}")
    orders = ["file", f"shuffled, mean of {arguments.orders}"]
    eces: dict[str, dict[str, list[float]]] = {o: {c: [] for c in columns} for o in orders}
    for name in ALL_CROWD:
        judgments, truth = load_crowd(name)
        arrivals = {
            "file": [judgments],
            orders[-1]: [
                judgments.sample(fraction=1.0, shuffle=True, seed=seed)
                for seed in range(arguments.orders)
            ],
        }
        for order, frames in arrivals.items():
            cells = []
            for column in columns:
                figures = np.array(
                    [_figures(_sample(frame, samples[column]), truth, arguments.method)
                     for frame in frames]
                ).mean(axis=0)  # fmt: skip
                eces[order][column].append(float(figures[2]))
                cells.append(f"{figures[0]:.3f} / {figures[1]:.3f} / **{figures[2]:.3f}**")
            print(f"| {name} | {order} | {' | '.join(cells)} |", flush=True)
    for order in orders:
        means = " | ".join(f"**{np.mean(values):.3f}**" for values in eces[order].values())
        print(f"| mean ECE | {order} | {means} |")
    print("\ncells: accuracy / mean confidence / ECE (10 bins)")


def _sample(judgments: pl.DataFrame, k: int | None) -> pl.DataFrame:
    """Each task's first `k` judgments; None: the 1-4 mix; 0: all of them."""
    if k == 0:
        return judgments
    if k is None:
        return _mixed(judgments)
    return judgments.filter(pl.int_range(pl.len()).over("task_id") < k)


if __name__ == "__main__":
    main()
