"""Krippendorff's alpha against the `krippendorff` package, and the full quality report, at scale.

    .venv/bin/python benchmarks/bench_agreement.py --tasks 200000 --annotators 500 --votes 5

Both sides run in this process on the same seeded judgments and the values are compared to
1e-9. The reference library only accepts a dense coders × units matrix, so it is built for
its side alone and its time is reported without and with that build. Peak memory is the
peak RSS of a fresh subprocess per side (`--side ours|theirs`), so neither side's
allocations inflate the other's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.agreement import krippendorff_alpha  # noqa: E402

LEVELS = ("nominal", "ordinal", "interval", "ratio")


def synthetic_day(
    *, tasks: int, annotators: int, votes: int, labels: int, seed: int, gold_share: float = 0.02
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(judgments, aggregated majority labels, gold) for one project-day, seeded.

    Each task gets `votes` distinct annotators; annotator accuracy is uniform in [0.45, 0.95]
    and 3% of annotators are spammers who always answer the same label.
    """
    generator = np.random.default_rng(seed)
    truth = generator.integers(0, labels, tasks)
    # Distinct annotators per task: a random offset plus a stride coprime with the pool.
    start = generator.integers(0, annotators, tasks)
    stride = generator.choice(np.array([1, 3, 7, 11, 13]), tasks)
    assigned = (start[:, None] + stride[:, None] * np.arange(votes)[None, :]) % annotators
    accuracy = generator.uniform(0.45, 0.95, annotators)
    spammer = generator.random(annotators) < 0.03
    correct = generator.random((tasks, votes)) < accuracy[assigned]
    answers = np.where(correct, truth[:, None], generator.integers(0, labels, (tasks, votes)))
    answers = np.where(spammer[assigned], 0, answers)
    day = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    seconds = generator.integers(0, 86_400, tasks * votes)
    judgments = pl.DataFrame(
        {
            "judgment_id": np.arange(tasks * votes).astype(str),
            "task_id": np.char.add("task-", np.repeat(np.arange(tasks), votes).astype(str)),
            "project": "bench",
            "annotator_id": np.char.add("annotator-", assigned.ravel().astype(str)),
            "label": answers.ravel().astype(str),
            "submitted_at": pl.Series(seconds * 1_000_000).cast(pl.Duration("us")),
            "duration_s": generator.gamma(2.0, 10.0, tasks * votes),
        }
    ).with_columns(
        (pl.lit(day).cast(pl.Datetime("us", "UTC")) + pl.col("submitted_at")).alias("submitted_at")
    )
    judgments = judgments.sample(fraction=1.0, shuffle=True, seed=seed)
    aggregated = (
        judgments.group_by("task_id", "project", "label")
        .agg(pl.len().alias("votes"))
        .sort("task_id", "votes", "label", descending=[False, True, False])
        .group_by("task_id", maintain_order=True)
        .agg(
            pl.col("project").first(),
            pl.col("label").first(),
            (pl.col("votes").first() / pl.col("votes").sum()).alias("confidence"),
            pl.col("votes").sum().cast(pl.UInt32).alias("n_votes"),
            (pl.col("votes").head(2).n_unique() == 1).and_(pl.len() > 1).alias("is_tie"),
        )
        .with_columns(pl.lit("majority_vote").alias("method"))
    )
    gold_tasks = np.flatnonzero(generator.random(tasks) < gold_share)
    gold = pl.DataFrame(
        {
            "task_id": np.char.add("task-", gold_tasks.astype(str)),
            "project": "bench",
            "label": truth[gold_tasks].astype(str),
        }
    )
    return judgments, aggregated, gold


def dense_reliability_matrix(judgments: pl.DataFrame, level: str) -> np.ndarray:
    """The coders × units matrix (NaN = missing) the reference library needs."""
    coded = judgments.select(
        pl.col("annotator_id").cast(pl.Categorical).to_physical().alias("row"),
        pl.col("task_id").cast(pl.Categorical).to_physical().alias("column"),
        pl.col("label").cast(pl.Float64),
    )
    rows = np.unique(coded["row"].to_numpy(), return_inverse=True)[1]
    columns = np.unique(coded["column"].to_numpy(), return_inverse=True)[1]
    matrix = np.full((rows.max() + 1, columns.max() + 1), np.nan)
    matrix[rows, columns] = coded["label"].to_numpy()
    return matrix


def timed(function, repeat: int):
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def run_side(arguments) -> None:
    """Child process: one side, one level; prints JSON with its time and peak RSS."""
    judgments, _, _ = synthetic_day(
        tasks=arguments.tasks,
        annotators=arguments.annotators,
        votes=arguments.votes,
        labels=arguments.labels,
        seed=arguments.seed,
    )
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if arguments.side == "ours":
        seconds, value = timed(lambda: krippendorff_alpha(judgments, arguments.levels[0]), 1)
    else:
        import krippendorff

        start = time.perf_counter()
        matrix = dense_reliability_matrix(judgments, arguments.levels[0])
        value = krippendorff.alpha(
            reliability_data=matrix, level_of_measurement=arguments.levels[0]
        )
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "value": float(value),
                "rss_baseline_kib": baseline,
                "rss_peak_kib": peak,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--annotators", type=int, default=500)
    parser.add_argument("--votes", type=int, default=5, help="judgments per task")
    parser.add_argument("--labels", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for our side")
    parser.add_argument("--levels", type=lambda text: text.split(","), default=list(LEVELS))
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess RSS runs")
    parser.add_argument("--no-report", action="store_true", help="skip the quality report")
    parser.add_argument("--side", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.side:
        run_side(arguments)
        return
    import krippendorff

    start = time.perf_counter()
    judgments, aggregated, gold = synthetic_day(
        tasks=arguments.tasks,
        annotators=arguments.annotators,
        votes=arguments.votes,
        labels=arguments.labels,
        seed=arguments.seed,
    )
    print(
        f"data: {judgments.height:,} judgments, {arguments.tasks:,} tasks, "
        f"{arguments.annotators} annotators, {arguments.labels} labels "
        f"(generated in {time.perf_counter() - start:.1f} s)"
    )
    for level in arguments.levels:
        ours_seconds, ours = timed(
            lambda level=level: krippendorff_alpha(judgments, level), arguments.repeat
        )
        build_seconds, matrix = timed(
            lambda level=level: dense_reliability_matrix(judgments, level), 1
        )
        theirs_seconds, theirs = timed(
            lambda level=level, matrix=matrix: krippendorff.alpha(
                reliability_data=matrix, level_of_measurement=level
            ),
            1,
        )
        del matrix
        difference = abs(ours - float(theirs))
        print(
            f"alpha {level:8s} ours {ours_seconds * 1000:8.1f} ms | krippendorff "
            f"{theirs_seconds * 1000:8.1f} ms (+ build {build_seconds * 1000:.0f} ms = "
            f"{(theirs_seconds + build_seconds) * 1000:.0f} ms) | ratio "
            f"{theirs_seconds / ours_seconds:6.1f}x excl. build, "
            f"{(theirs_seconds + build_seconds) / ours_seconds:6.1f}x incl. | "
            f"alpha {ours:.12f} |diff| {difference:.1e}"
        )
        if difference > 1e-9:
            raise SystemExit(f"alpha differs from krippendorff by {difference:.3e} at {level}")
    if not arguments.no_memory:
        for side in ("ours", "theirs"):
            command = [sys.executable, __file__, "--side", side, "--levels", arguments.levels[0]]
            command += [
                f"--{flag}={getattr(arguments, flag)}"
                for flag in ("tasks", "annotators", "votes", "labels", "seed")
            ]
            result = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout
            )
            print(
                f"peak RSS {side:6s} ({arguments.levels[0]}, fresh process, incl. data): "
                f"{result['rss_peak_kib'] / 1024:7.0f} MiB; above the data: "
                f"{(result['rss_peak_kib'] - result['rss_baseline_kib']) / 1024:7.0f} MiB"
            )
    if not arguments.no_report:
        report_benchmark(judgments, aggregated, gold)


def report_benchmark(judgments: pl.DataFrame, aggregated: pl.DataFrame, gold: pl.DataFrame) -> None:
    from annotation_pipelines import quality

    start = time.perf_counter()
    scorecards = quality.annotator_scorecards(judgments, aggregated, gold)
    after_scorecards = time.perf_counter()
    items = quality.item_disagreement(judgments)
    queue = quality.reannotation_queue(
        items, aggregated, gold, scorecards=scorecards, judgments=judgments
    )
    after_items = time.perf_counter()
    report = quality.quality_report(judgments, aggregated, gold, scorecards=scorecards)
    after_report = time.perf_counter()
    html = quality.render_html_report(
        report, scorecards=scorecards, items=items, queue=queue, judgments=judgments
    )
    end = time.perf_counter()
    print(
        f"quality report: total {end - start:.2f} s = scorecards {after_scorecards - start:.2f} s "
        f"+ items & queue {after_items - after_scorecards:.2f} s + report "
        f"{after_report - after_items:.2f} s + HTML {end - after_report:.2f} s "
        f"({scorecards.height} annotators, {queue.height:,} queued tasks, HTML {len(html) / 1024:.0f} KiB)"
    )


if __name__ == "__main__":
    main()
