"""Calibration of the default method's confidence at every redundancy, on the shared crowd sets.

    .venv/bin/python benchmarks/bench_calibration.py [--votes 1,2,3,5] [--method dawid_skene]

The calibration is measured on the sets as published (3-39 votes per task); the adaptive
policy reads the confidence after a task's first few votes. For each set
(../shared/data/crowd) and each k in `--votes`, the first k judgments of every task in file
order are aggregated alone, then a mix of 1-4 votes per task (a seeded draw per task), then
all the judgments; each row gives accuracy against the truth file, mean confidence and the
expected calibration error (10 equal-width bins). Prints a Markdown table and the mean ECE per
column.
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
    parser.add_argument("--method", default="dawid_skene")
    arguments = parser.parse_args()
    votes = [int(k) for k in arguments.votes.split(",")]
    columns = [f"{k} vote{'s' if k > 1 else ''}" for k in votes] + ["1-4 votes", "all"]
    print(f"| data set | {' | '.join(columns)} |")
    print(f"|---|{'---|' * len(columns)}")
    eces: dict[str, list[float]] = {column: [] for column in columns}
    for name in ALL_CROWD:
        judgments, truth = load_crowd(name)
        first = pl.int_range(pl.len()).over("task_id")
        samples = [judgments.filter(first < k) for k in votes]
        samples += [_mixed(judgments), judgments]
        cells = []
        for column, sample in zip(columns, samples, strict=True):
            accuracy, confidence, ece = _figures(sample, truth, arguments.method)
            eces[column].append(ece)
            cells.append(f"{accuracy:.3f} / {confidence:.3f} / **{ece:.3f}**")
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
    means = " | ".join(f"**{np.mean(values):.3f}**" for values in eces.values())
    print(f"| mean ECE | {means} |")
    print("\ncells: accuracy / mean confidence / ECE (10 bins)")


if __name__ == "__main__":
    main()
