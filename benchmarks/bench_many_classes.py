"""Wall time and peak memory of `fit` per method with many classes and annotators.

2,000 classes, 200 annotators, 12,000 judgments (2,400 tasks × 5 votes), each annotator right
with probability 0.7 and otherwise uniform over the other classes; seeded, so every run sees
the same data. Each method runs in its own process under `/usr/bin/time -v`, whose maximum
resident set size is the peak reported; `fit_seconds` is `fit` alone, `wall_seconds` the
whole process (imports and data generation included) and `cpu_seconds` its user + system
time, which a machine shared with other work inflates less than the wall times.

    .venv/bin/python benchmarks/bench_many_classes.py
    .venv/bin/python benchmarks/bench_many_classes.py --methods dawid_skene --diagonal 1.0
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = (
    "majority_vote",
    "wawa",
    "zero_based_skill",
    "dawid_skene",
    "one_coin_dawid_skene",
    "glad",
    "mace",
)


def judgments(classes: int, annotators: int, tasks: int, votes: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, tasks)
    task = np.repeat(np.arange(tasks), votes)
    annotator = np.concatenate([rng.choice(annotators, votes, replace=False) for _ in range(tasks)])
    wrong = (truth[task] + rng.integers(1, classes, task.size)) % classes
    label = np.where(rng.random(task.size) < 0.7, truth[task], wrong)
    return pl.DataFrame(
        {
            "task_id": [f"t{value}" for value in task],
            "annotator_id": [f"a{value}" for value in annotator],
            "label": [f"c{value}" for value in label],
        }
    )


def run_case(args: argparse.Namespace) -> dict[str, object]:
    from annotation_pipelines.aggregation.api import fit

    frame = judgments(args.classes, args.annotators, args.tasks, args.votes, args.seed)
    start = time.perf_counter()
    result = fit(frame, args.case, diagonal_pseudo_count=args.diagonal)
    seconds = time.perf_counter() - start
    return {
        "method": args.case,
        "classes": args.classes,
        "annotators": args.annotators,
        "judgments": frame.height,
        "diagonal": args.diagonal,
        "fit_seconds": round(seconds, 2),
        "iterations": result.iterations,
        "confidence_sum": float(result.labels["confidence"].sum()),
        "raw_confidence_sum": float(result.labels["raw_confidence"].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--classes", type=int, default=2_000)
    parser.add_argument("--annotators", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=2_400)
    parser.add_argument("--votes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--diagonal", type=float, default=0.0, help="diagonal_pseudo_count")
    parser.add_argument("--timeout", type=float, default=1_800.0)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return
    shared = [
        f"--{name}={getattr(args, name)}"
        for name in ("classes", "annotators", "tasks", "votes", "seed", "diagonal")
    ]
    for method in args.methods:
        command = ["/usr/bin/time", "-v", sys.executable, __file__, *shared, "--case", method]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(json.dumps({"method": method, "timeout": args.timeout}), flush=True)
            continue
        if done.returncode != 0:
            print(json.dumps({"method": method, "error": done.stderr[-2_000:]}), flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
        if peak:
            row["peak_rss_mb"] = round(int(peak.group(1)) / 1024)
        cpu = [
            re.search(rf"{kind} time \(seconds\): ([\d.]+)", done.stderr)
            for kind in ("User", "System")
        ]
        if all(cpu):
            row["cpu_seconds"] = round(sum(float(match.group(1)) for match in cpu if match), 2)
        if wall:
            hours, minutes, secs = wall.groups()
            row["wall_seconds"] = round(int(hours or 0) * 3600 + int(minutes) * 60 + float(secs), 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
