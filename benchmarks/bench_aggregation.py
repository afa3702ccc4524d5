"""Label aggregation: our engine against crowd-kit 1.4.2, side by side, one run.

    .venv/bin/python benchmarks/bench_aggregation.py                 # 1M judgments
    .venv/bin/python benchmarks/bench_aggregation.py --tasks 20000   # smaller
    .venv/bin/python benchmarks/bench_aggregation.py --scale         # 100M judgments, ours only
    .venv/bin/python benchmarks/bench_aggregation.py --extras        # numeric, multi-label, BT

The data are seeded synthetic judgments: every task gets `--votes` distinct annotators; each
annotator has a confusion matrix with an accuracy drawn from [0.45, 0.95] and a random bias
over wrong classes. Times are measured in ONE process, the two sides interleaved
(ours, crowd-kit, ours, crowd-kit, ...) `--repeats` times, and the best of each is reported,
so a load spike from other jobs on the box hits both sides alike; the load average is
printed with the figures. Only the aggregation call is timed, after the data are in memory in
the side's native frame (Polars for ours, pandas for crowd-kit). With `--memory`, each side
also runs once in its own subprocess so its peak RSS (ru_maxrss) is honest.
`--shuffle` permutes the rows first (our encoder has a fast path for task-grouped input).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def generate(
    path: Path,
    *,
    tasks: int,
    votes: int,
    annotators: int,
    classes: int,
    seed: int,
    chunk: int = 1_000_000,
    integer_ids: bool = False,
) -> None:
    """Write seeded judgments to `path` in chunks of `chunk` tasks (bounded memory)."""
    rng = np.random.default_rng(seed)
    accuracy = rng.uniform(0.45, 0.95, annotators)
    bias = rng.dirichlet(np.ones(classes), size=annotators)
    prior = rng.dirichlet(np.full(classes, 5.0))
    writer = None
    for start in range(0, tasks, chunk):
        n = min(chunk, tasks - start)
        task = np.repeat(np.arange(start, start + n, dtype=np.int64), votes)
        first = rng.integers(0, annotators, n)
        step = rng.integers(1, max(2, annotators // votes), n)
        annotator = (first[:, None] + np.arange(votes)[None, :] * step[:, None]) % annotators
        annotator = annotator.reshape(-1)
        truth = np.repeat(rng.choice(classes, size=n, p=prior), votes)
        correct = rng.random(n * votes) < accuracy[annotator]
        # Wrong answers follow the annotator's bias, re-drawn away from the truth.
        cumulative = np.cumsum(bias[annotator], axis=1)
        wrong = (rng.random(n * votes)[:, None] > cumulative).sum(axis=1).clip(0, classes - 1)
        wrong = np.where(
            wrong == truth, (wrong + 1 + rng.integers(0, classes - 1, n * votes)) % classes, wrong
        )
        label = np.where(correct, truth, wrong)
        if integer_ids:
            table = pa.table(
                {
                    "task_id": task,
                    "annotator_id": annotator.astype(np.int32),
                    "label": label.astype(np.int8),
                }
            )
        else:
            frame = pl.DataFrame({"task": task, "annotator": annotator, "label": label})
            table = frame.select(
                pl.format("t{}", pl.col("task")).alias("task_id"),
                pl.format("w{}", pl.col("annotator")).alias("annotator_id"),
                pl.format("class_{}", pl.col("label")).alias("label"),
            ).to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def peak_rss_mib() -> float:
    """This process's peak RSS. Linux keeps ru_maxrss across execve, so a child spawned by a
    parent holding the data would report the parent's peak; VmHWM belongs to the new image."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_side(side: str, method: str, data: Path, out: Path, max_iter: int, tol: float) -> dict:
    """Runs in a subprocess: aggregate with one library, save labels, report time and memory."""
    sys.path.insert(0, str(ROOT))
    read_start = time.perf_counter()
    frame = pl.read_parquet(data)
    read_seconds = time.perf_counter() - read_start
    iterations = None
    if side == "ours":
        from annotation_pipelines.aggregation import fit

        start = time.perf_counter()
        result = fit(frame, method, max_iter=max_iter, tol=tol)
        seconds = time.perf_counter() - start
        labels = result.labels.select("task_id", "label")
        iterations = result.iterations
    else:
        from crowdkit.aggregation import DawidSkene, MajorityVote

        pandas_frame = frame.rename({"task_id": "task", "annotator_id": "worker"}).to_pandas()
        del frame
        model = DawidSkene(n_iter=max_iter, tol=tol) if method == "dawid_skene" else MajorityVote()
        start = time.perf_counter()
        predicted = model.fit_predict(pandas_frame)
        seconds = time.perf_counter() - start
        labels = pl.DataFrame(
            {"task_id": predicted.index.to_numpy(), "label": predicted.to_numpy()}
        )
        if method == "dawid_skene":
            iterations = len(model.loss_history_)
    labels.write_parquet(out)
    return {
        "side": side,
        "method": method,
        "seconds": seconds,
        "read_seconds": read_seconds,
        "peak_rss_mib": peak_rss_mib(),
        "iterations": iterations,
    }


def spawn(side: str, method: str, data: Path, out: Path, max_iter: int, tol: float) -> dict:
    command = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--method",
        method,
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-iter",
        str(max_iter),
        "--tol",
        str(tol),
    ]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def time_side(side: str, method: str, frame, max_iter: int, tol: float):
    """(seconds, labels frame, iterations) of one aggregation call in this process."""
    if side == "ours":
        from annotation_pipelines.aggregation import fit

        start = time.perf_counter()
        result = fit(frame, method, max_iter=max_iter, tol=tol)
        seconds = time.perf_counter() - start
        return seconds, result.labels.select("task_id", "label"), result.iterations
    from crowdkit.aggregation import DawidSkene, MajorityVote

    model = DawidSkene(n_iter=max_iter, tol=tol) if method == "dawid_skene" else MajorityVote()
    start = time.perf_counter()
    predicted = model.fit_predict(frame)
    seconds = time.perf_counter() - start
    labels = pl.DataFrame({"task_id": predicted.index.to_numpy(), "label": predicted.to_numpy()})
    iterations = len(model.loss_history_) if method == "dawid_skene" else None
    return seconds, labels, iterations


def same_label_frames(a: pl.DataFrame, b: pl.DataFrame) -> float:
    b = b.with_columns(
        pl.col("task_id").cast(a.schema["task_id"]), pl.col("label").cast(a.schema["label"])
    )
    joined = a.join(b, on="task_id", how="full", suffix="_reference")
    return float((joined["label"] == joined["label_reference"]).fill_null(False).mean())


def compare(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "judgments.parquet"
        start = time.perf_counter()
        generate(
            data,
            tasks=args.tasks,
            votes=args.votes,
            annotators=args.annotators,
            classes=args.classes,
            seed=args.seed,
        )
        if args.shuffle:
            pl.read_parquet(data).sample(fraction=1.0, shuffle=True, seed=1).write_parquet(data)
        n = args.tasks * args.votes
        print(
            f"data: {args.tasks:,} tasks × {args.votes} votes = {n:,} judgments, "
            f"{args.annotators} annotators, {args.classes} classes, seed {args.seed}"
            f"{', rows shuffled' if args.shuffle else ''} "
            f"(generated in {time.perf_counter() - start:.1f} s)"
        )
        ours_frame = pl.read_parquet(data)
        theirs_frame = ours_frame.rename({"task_id": "task", "annotator_id": "worker"}).to_pandas()
        for method in args.methods:
            ours_times, theirs_times, loads = [], [], [os.getloadavg()[0]]
            for _ in range(args.repeats):
                seconds, ours_labels, ours_iterations = time_side(
                    "ours", method, ours_frame, args.max_iter, args.tol
                )
                ours_times.append(seconds)
                seconds, theirs_labels, theirs_iterations = time_side(
                    "crowdkit", method, theirs_frame, args.max_iter, args.tol
                )
                theirs_times.append(seconds)
                loads.append(os.getloadavg()[0])
            share = same_label_frames(ours_labels, theirs_labels)
            ours_best, theirs_best = min(ours_times), min(theirs_times)
            print(
                f"{method:14s} ours best {ours_best:8.3f} s of "
                f"[{', '.join(f'{t:.3f}' for t in ours_times)}] (iter {ours_iterations}) | "
                f"crowd-kit best {theirs_best:8.3f} s of "
                f"[{', '.join(f'{t:.3f}' for t in theirs_times)}] (iter {theirs_iterations}) | "
                f"speed-up {theirs_best / ours_best:6.1f}× | same label {share:.4%} | "
                f"1-min load average {min(loads):.2f}–{max(loads):.2f} on {os.cpu_count()} cores",
                flush=True,
            )
            if args.memory:
                ours_out = Path(folder) / "ours.parquet"
                theirs_out = Path(folder) / "theirs.parquet"
                ours = spawn("ours", method, data, ours_out, args.max_iter, args.tol)
                theirs = spawn("crowdkit", method, data, theirs_out, args.max_iter, args.tol)
                print(
                    f"{method:14s} peak RSS (own subprocess, incl. Parquet read) ours "
                    f"{ours['peak_rss_mib']:,.0f} MiB | "
                    f"crowd-kit {theirs['peak_rss_mib']:,.0f} MiB",
                    flush=True,
                )
                # The one call a fresh process makes, after importing the library: ours then
                # also pays the one-off Numba import and kernel load (large inputs only).
                print(
                    f"{method:14s} first call in a fresh process: ours "
                    f"{ours['seconds']:.3f} s | crowd-kit {theirs['seconds']:.3f} s",
                    flush=True,
                )


def scale(args: argparse.Namespace) -> None:
    folder = Path(args.scale_dir or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "judgments_scale.parquet"
    tasks, votes, annotators = args.scale_tasks, args.votes, args.scale_annotators
    if not data.exists():
        start = time.perf_counter()
        generate(
            data,
            tasks=tasks,
            votes=votes,
            annotators=annotators,
            classes=args.classes,
            seed=args.seed,
            integer_ids=True,
        )
        print(
            f"generated {tasks * votes:,} judgments in "
            f"{time.perf_counter() - start:.0f} s -> {data}"
        )
    out = folder / "labels_scale.parquet"
    report = spawn("ours", "dawid_skene", data, out, args.max_iter, args.tol)
    print(
        f"dawid_skene on {tasks * votes:,} judgments ({tasks:,} tasks, {annotators:,} annotators): "
        f"read {report['read_seconds']:.1f} s, aggregate {report['seconds']:.1f} s "
        f"({report['iterations']} iterations), peak RSS {report['peak_rss_mib']:,.0f} MiB",
        flush=True,
    )


def extras(args: argparse.Namespace) -> None:
    """Our numeric, multi-label and pairwise functions on seeded data (no reference library
    does these vectorised; their tests check them against SciPy instead)."""
    sys.path.insert(0, str(ROOT))
    from annotation_pipelines.aggregation import (
        aggregate_multilabel,
        aggregate_numeric,
        bradley_terry,
    )

    rng = np.random.default_rng(args.seed)
    n = args.tasks
    ratings = pl.DataFrame(
        {
            "task_id": np.repeat(np.arange(n), args.votes),
            "annotator_id": rng.integers(0, args.annotators, n * args.votes),
            "label": rng.integers(1, 6, n * args.votes),
        }
    )
    for statistic in ("mean", "median", "trimmed_mean"):
        start = time.perf_counter()
        aggregate_numeric(ratings, statistic=statistic)  # type: ignore[arg-type]
        print(
            f"aggregate_numeric {statistic}: {time.perf_counter() - start:.2f} s "
            f"({ratings.height:,} ratings, {n:,} tasks, 1000 resamples)"
        )
    classes = np.array(["cat", "dog", "bird", "car", "tree"])
    tasks = n // 5
    chosen = rng.random((tasks * args.votes, classes.shape[0])) < 0.3
    multi = pl.DataFrame(
        {
            "task_id": np.repeat(np.arange(tasks), args.votes),
            "annotator_id": rng.integers(0, args.annotators, tasks * args.votes),
            "label": [",".join(classes[row]) for row in chosen],
        }
    )
    start = time.perf_counter()
    aggregate_multilabel(multi, "dawid_skene")
    print(
        f"aggregate_multilabel dawid_skene: {time.perf_counter() - start:.2f} s "
        f"({multi.height:,} judgments, {tasks:,} tasks, {classes.shape[0]} classes)"
    )
    items, comparisons = 50, 100_000
    left = rng.integers(0, items, comparisons)
    right = (left + rng.integers(1, items, comparisons)) % items
    strength = rng.normal(0, 1, items)
    left_wins = rng.random(comparisons) < 1 / (1 + np.exp(strength[right] - strength[left]))
    winner = np.where(rng.random(comparisons) < 0.05, "tie", np.where(left_wins, "left", "right"))
    pairs = pl.DataFrame(
        {
            "left_id": [f"model_{i}" for i in left],
            "right_id": [f"model_{i}" for i in right],
            "winner": winner,
        }
    )
    for algorithm in ("newton", "mm"):
        start = time.perf_counter()
        bradley_terry(pairs, algorithm=algorithm)  # type: ignore[arg-type]
        print(
            f"bradley_terry {algorithm}: {time.perf_counter() - start:.2f} s "
            f"({comparisons:,} comparisons, {items} items)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--votes", type=int, default=5)
    parser.add_argument("--annotators", type=int, default=500)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--methods", nargs="+", default=["majority_vote", "dawid_skene"])
    # Seven, because our sub-0.1 s times swing with the cost of faulting in fresh pages
    # (4–40 ms of system time per call measured in this process), crowd-kit's far less.
    parser.add_argument("--repeats", type=int, default=7, help="interleaved runs per side")
    parser.add_argument("--memory", action="store_true", help="also peak RSS per subprocess")
    parser.add_argument("--shuffle", action="store_true", help="permute the rows first")
    parser.add_argument("--scale", action="store_true", help="100M judgments, ours only")
    parser.add_argument(
        "--extras", action="store_true", help="numeric, multi-label and pairwise, ours only"
    )
    parser.add_argument("--scale-tasks", type=int, default=20_000_000)
    parser.add_argument("--scale-annotators", type=int, default=10_000)
    parser.add_argument("--scale-dir", help="keep the generated scale data here")
    # internal: one side in a subprocess
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        report = run_side(
            args.side, args.method, Path(args.data), Path(args.out), args.max_iter, args.tol
        )
        print(json.dumps(report))
    elif args.scale:
        scale(args)
    elif args.extras:
        extras(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
