"""Calibration of the default method's confidence at every redundancy, on the shared crowd sets.

    .venv/bin/python benchmarks/bench_calibration.py [--votes 1,2,3,5] [--orders 3]
                                                     [--method dawid_skene]

The calibration is measured on the sets as published (3-39 votes per task); the adaptive
policy reads the confidence after a task's first few votes. For each set
(../shared/data/crowd) and each k in `--votes`, the first k judgments of every task are
aggregated alone, then a mix of 1-4 votes per task (a seeded draw per task), then all the
judgments; each cell gives accuracy against the truth file, mean confidence and the expected
calibration error (10 equal-width bins). "First" is in file order (some files are sorted by
annotator, so a task's first votes there come from the same few people), and then the mean
over `--orders` shuffled arrival orders (seeds 0..N-1). Prints a Markdown table and the mean
ECE per column for both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation import fit
from annotation_pipelines.aggregation.calibration import expected_calibration_error
from tests.realdata import ALL_CROWD, load_crowd


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", default="1,2,3,5", help="comma-separated votes per task")
    parser.add_argument("--orders", type=int, default=3, help="shuffled arrival orders")
    parser.add_argument("--method", default="dawid_skene")
    arguments = parser.parse_args()
    # Column header -> each task's first k judgments (None: the 1-4 mix; 0: all of them).
    samples: dict[str, int | None] = {
        f"{k} vote{'s' if k > 1 else ''}": k for k in map(int, arguments.votes.split(","))
    }
    samples |= {"1-4 votes": None, "all": 0}
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
