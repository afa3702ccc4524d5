"""Time and peak memory of `fit` as the number of classes grows (the calibration's grid search).

30,000 judgments by 50 annotators on 6,000 tasks (5 votes each), each annotator right with
probability 0.7 and otherwise uniform over the other classes; seeded, so every run sees the
same data. Each (classes, method) case runs in its own process, so its peak RSS is its own.

    .venv/bin/python benchmarks/bench_calibration_classes.py --classes 10 200 1000
    .venv/bin/python benchmarks/bench_calibration_classes.py --classes 1000 --methods majority_vote
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_many_classes import judgments as many_class_judgments

JUDGMENTS = 30_000
ANNOTATORS = 50
VOTES_PER_TASK = 5


def judgments(classes: int, seed: int = 0) -> pl.DataFrame:
    return many_class_judgments(
        classes, ANNOTATORS, JUDGMENTS // VOTES_PER_TASK, VOTES_PER_TASK, seed
    )


def run_case(classes: int, method: str) -> dict[str, object]:
    from annotation_pipelines.aggregation.api import fit

    frame = judgments(classes)
    start = time.perf_counter()
    result = fit(frame, method)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "classes": classes,
        "method": method,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak),
        "temperature": result.temperature,
        "confidence_sum": float(result.labels["confidence"].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 200, 1000])
    parser.add_argument("--methods", nargs="+", default=["majority_vote", "dawid_skene"])
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--case", nargs=2, metavar=("CLASSES", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(int(args.case[0]), args.case[1])))
        return
    for classes in args.classes:
        for method in args.methods:
            command = [sys.executable, __file__, "--case", str(classes), method]
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=args.timeout, check=True
                )
                print(done.stdout.strip().splitlines()[-1], flush=True)
            except subprocess.TimeoutExpired:
                print(json.dumps({"classes": classes, "method": method, "timeout": args.timeout}))


if __name__ == "__main__":
    main()
