"""Adaptive redundancy against fixed overlap on the shared crowd sets: accuracy vs share used.

    .venv/bin/python benchmarks/bench_replay.py [--budget FRACTION ...] [--orders N] [--sets A,B]

For each data set (../shared/data/crowd), in one run: Dawid–Skene on all judgments; fixed
overlap k = the first k judgments of every task in file order (k in `FIXED`, where the set
has more than k per task), aggregated with Dawid–Skene; the replay
(`annotation_pipelines.loop.replay`) with the default policy; the policy that stops on the
model's confidence combined with the vote split (`label_uncertainty=True`, at 0.97, where it
spends about what the default spends); and the default policy with each `--budget` (0.5 when
none is given). Prints a Markdown table: accuracy @ share of judgments used, and for the
replays the rounds, seconds and whether the target (accuracy of Dawid–Skene on all judgments
with at most half of them) is met. With `--orders N`, each set gets a second row: the replays'
mean accuracy and share over N shuffled arrival orders (seeds 0..N-1), since one file order
is one draw of which judgments arrive first. `--sets` runs only the named sets (default: all,
`d_product,d_sentiment,duck,rte`).

`--paired` prints instead, per set and arrival order (the file's, then `--orders` shuffled
ones), the replay under `--budget` (0.5 by default) against Dawid–Skene on all judgments task
by task: the tasks only one of the two gets right, and the exact McNemar test on them (a
two-sided binomial test of the discordant tasks at 1/2), which says whether a gap of a few
tasks is more than which judgments happened to arrive first.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation import fit
from annotation_pipelines.loop.policy import RECOMMENDED, PolicyOptions
from annotation_pipelines.loop.posterior import CategoricalConfidence
from annotation_pipelines.loop.replay import replay
from tests.realdata import ALL_CROWD, accuracy, load_crowd

FIXED = (1, 2, 3, 4, 5, 10)
LABELS = {"d_product": "D_Product", "d_sentiment": "D_PosSent", "duck": "Duck", "rte": "RTE"}


def _shuffled_row(
    dataset: str, variants: list[tuple[str, PolicyOptions]], orders: int
) -> list[str]:
    judgments, truth = load_crowd(dataset)
    cells = [f"{LABELS.get(dataset, dataset)}, mean of {orders} shuffled orders", ""]
    cells += [""] * len(FIXED)
    for _, options in variants:
        reached, shares = [], []
        for seed in range(orders):
            shuffled = judgments.sample(fraction=1.0, shuffle=True, seed=seed)
            result = replay(shuffled, confidence=CategoricalConfidence(), options=options)
            reached.append(accuracy(result.labels, truth))
            shares.append(result.judgments_used / judgments.height)
        cells.append(
            f"{sum(reached) / orders:.4f} @ {sum(shares) / orders:.2f} "
            f"(min {min(reached):.4f}, max {max(reached):.4f})"
        )
    return cells


def _row(dataset: str, variants: list[tuple[str, PolicyOptions]]) -> list[str]:
    judgments, truth = load_crowd(dataset)
    total = judgments.height
    per_task = int(judgments.group_by("task_id").len().select(pl.col("len").max()).item())
    full = accuracy(fit(judgments, "dawid_skene").labels, truth)
    cells = [f"{LABELS.get(dataset, dataset)} ({per_task}/task)", f"{full:.4f}"]
    for k in FIXED:
        if k >= per_task:
            cells.append("—")
            continue
        subset = judgments.filter(pl.int_range(pl.len()).over("task_id") < k)
        reached = accuracy(fit(subset, "dawid_skene").labels, truth)
        cells.append(f"{reached:.4f} @ {subset.height / total:.2f}")
    for _, options in variants:
        started = time.perf_counter()
        result = replay(judgments, confidence=CategoricalConfidence(), options=options)
        seconds = time.perf_counter() - started
        reached = accuracy(result.labels, truth)
        share = result.judgments_used / total
        verdict = "**met**" if reached >= full - 5e-5 and share <= 0.5 else "not met"
        cells.append(f"{reached:.4f} @ {share:.2f} ({result.rounds} r, {seconds:.0f} s; {verdict})")
    return cells


def _correct(predicted: pl.DataFrame, truth: pl.DataFrame) -> pl.Series:
    joined = truth.join(predicted.select("task_id", "label"), on="task_id", how="left", suffix="_p")
    return (joined["label"] == joined["label_p"]).fill_null(False)


def _paired_rows(dataset: str, options: PolicyOptions, orders: int) -> list[list[str]]:
    """Per arrival order: the replay's and Dawid–Skene-on-all's accuracy, the discordant tasks
    and the exact McNemar p-value."""
    judgments, truth = load_crowd(dataset)
    truth = truth.sort("task_id")
    full = _correct(fit(judgments, "dawid_skene").labels, truth)
    rows = []
    for order in [None, *range(orders)]:
        arrived = (
            judgments if order is None else judgments.sample(fraction=1.0, shuffle=True, seed=order)
        )
        result = replay(arrived, confidence=CategoricalConfidence(), options=options)
        adaptive = _correct(result.labels, truth)
        only_full = int((full & ~adaptive).sum())
        only_adaptive = int((adaptive & ~full).sum())
        discordant = only_full + only_adaptive
        p = binomtest(only_adaptive, discordant, 0.5).pvalue if discordant else 1.0
        rows.append(
            [
                LABELS.get(dataset, dataset),
                "file" if order is None else f"shuffled, seed {order}",
                f"{full.mean():.4f}",
                f"{adaptive.mean():.4f} @ {result.judgments_used / judgments.height:.2f}",
                str(only_full),
                str(only_adaptive),
                f"{p:.2f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, action="append", default=[])
    parser.add_argument("--orders", type=int, default=0)
    parser.add_argument("--sets", default=",".join(ALL_CROWD))
    parser.add_argument("--paired", action="store_true")
    arguments = parser.parse_args()
    sets = [name.strip() for name in arguments.sets.split(",") if name.strip()]
    unknown = [name for name in sets if name not in ALL_CROWD]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(ALL_CROWD)}")
    defaults = RECOMMENDED
    if arguments.paired:
        budget = (arguments.budget or [0.5])[0]
        header = [
            "data set",
            "arrival order",
            "Dawid–Skene, all",
            f"adaptive, --budget {budget:g}",
            "right by Dawid–Skene only",
            "right by adaptive only",
            "McNemar p",
        ]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for dataset in sets:
            for row in _paired_rows(dataset, replace(defaults, budget=budget), arguments.orders):
                print("| " + " | ".join(row) + " |", flush=True)
        return
    variants = [
        (
            f"adaptive default (min {defaults.min_votes}, max {defaults.max_votes}, "
            f"target {defaults.target_confidence:g})",
            defaults,
        ),
        (
            "adaptive, vote split combined (LMU), target 0.97",
            replace(defaults, label_uncertainty=True, target_confidence=0.97),
        ),
        *[
            (f"adaptive, --budget {budget:g}", replace(defaults, budget=budget))
            for budget in arguments.budget or [0.5]
        ],
    ]
    header = [
        "data set",
        "Dawid–Skene, all",
        *[f"fixed {k}" for k in FIXED],
        *[name for name, _ in variants],
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for dataset in sets:
        print("| " + " | ".join(_row(dataset, variants)) + " |", flush=True)
        if arguments.orders > 0:
            row = _shuffled_row(dataset, variants, arguments.orders)
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
