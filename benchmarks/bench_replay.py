"""Adaptive redundancy against fixed overlap on the shared crowd sets: accuracy vs share used.

    .venv/bin/python benchmarks/bench_replay.py [--budget FRACTION ...]

For each data set (../shared/data/crowd): Dawid–Skene on all judgments; fixed overlap k = the
first k judgments of every task in file order (k = 3, 4, 5), aggregated with Dawid–Skene; and
the replay (`annotation_pipelines.loop.replay`) with the default policy, then with each
`--budget`. Prints a Markdown table (accuracy, share of judgments used, rounds, seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation import fit
from annotation_pipelines.loop.policy import PolicyOptions
from annotation_pipelines.loop.posterior import CategoricalConfidence
from annotation_pipelines.loop.replay import replay
from tests.realdata import ALL_CROWD, accuracy, load_crowd

FIXED = (3, 4, 5)


def _row(dataset: str, budgets: list[float]) -> list[str]:
    judgments, truth = load_crowd(dataset)
    total = judgments.height
    full = accuracy(fit(judgments, "dawid_skene").labels, truth)
    cells = [dataset, f"{full:.4f}"]
    for k in FIXED:
        subset = judgments.filter(pl.int_range(pl.len()).over("task_id") < k)
        reached = accuracy(fit(subset, "dawid_skene").labels, truth)
        cells.append(f"{reached:.4f} @ {subset.height / total:.2f}")
    for budget in [1.0, *budgets]:
        started = time.perf_counter()
        result = replay(
            judgments, confidence=CategoricalConfidence(), options=PolicyOptions(budget=budget)
        )
        seconds = time.perf_counter() - started
        reached = accuracy(result.labels, truth)
        share = result.judgments_used / total
        verdict = "yes" if reached >= full - 5e-5 and share <= 0.5 else "no"
        cells.append(
            f"{reached:.4f} @ {share:.2f} ({result.rounds} rounds, {seconds:.1f} s; "
            f"target {verdict})"
        )
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, action="append", default=[])
    arguments = parser.parse_args()
    options = PolicyOptions()
    header = [
        "data set",
        "Dawid–Skene, all",
        *[f"fixed {k}" for k in FIXED],
        f"adaptive (min {options.min_votes}, max {options.max_votes}, "
        f"target {options.target_confidence:g})",
        *[f"adaptive, budget {budget:g}" for budget in arguments.budget],
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for dataset in ALL_CROWD:
        print("| " + " | ".join(_row(dataset, arguments.budget)) + " |", flush=True)


if __name__ == "__main__":
    main()
