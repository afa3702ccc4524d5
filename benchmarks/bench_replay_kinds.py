"""Adaptive redundancy for every kind: accuracy against the share of judgments used.

    .venv/bin/python benchmarks/bench_replay_kinds.py [--tasks N] [--overlap K] [--seed S]

For each non-categorical kind, a synthetic project with known truth (the demo's generator:
careless annotators, a spammer, loose box drawers, biased raters) with `--overlap` judgments
per task, and the real sets with gold in ../shared/data/kinds (Snow et al. affect ratings,
CrowdWSA 2019 translations): the kind's default method on all judgments; fixed overlap k = the
first k judgments of every task in file order; and the replay with the kind's default target
(`KIND_TARGETS`), starting from two votes and never past `--overlap`. Accuracy is the kind's
truth measure (`quality.kinds.truth_accuracy`; pairwise: the share of pairs whose winner is
the truly better item). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation.by_kind import aggregate_kind
from annotation_pipelines.kinds import VALUE_COLUMNS
from annotation_pipelines.loop.kind_posterior import KIND_TARGETS
from annotation_pipelines.loop.policy import PolicyOptions
from annotation_pipelines.loop.posterior import confidence_function
from annotation_pipelines.loop.replay import replay
from annotation_pipelines.quality.kinds import truth_accuracy
from annotation_pipelines.synthetic.kinds import (
    KindProjectSpec,
    draw_kind_day,
    item_qualities,
    make_pool,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "kinds"
# The measure reported per kind, and whether higher is better.
MEASURES: dict[str, tuple[str, bool]] = {
    "multilabel": ("jaccard", True),
    "numeric": ("mae", False),
    "ranking": ("kendall_tau", True),
    "pairwise": ("winner_accuracy", True),
    "spans": ("span_f1", True),
    "boxes": ("f1_at_iou_0.5", True),
    "text": ("edit_distance", False),
}

Scorer = Callable[[pl.DataFrame], float]


def _labels(judgments: pl.DataFrame, kind: str) -> pl.DataFrame:
    """The kind's default aggregate of `judgments` (pairwise: each pair's winner)."""
    if kind == "pairwise":
        return confidence_function("pairwise")(judgments).rename({"label": "winner"})
    return aggregate_kind(judgments, kind=kind).labels


def _scorer(kind: str, truth: pl.DataFrame) -> Scorer:
    measure, _ = MEASURES[kind]
    if kind == "pairwise":

        def pairwise(labels: pl.DataFrame) -> float:
            joined = labels.join(truth.select("task_id", pl.col("winner").alias("t")), "task_id")
            return float(joined.select((pl.col("winner") == pl.col("t")).mean()).item() or 0.0)

        return pairwise

    def score(labels: pl.DataFrame) -> float:
        return float(truth_accuracy(labels, truth, kind=kind)[measure] or 0.0)

    return score


def _row(
    name: str,
    kind: str,
    judgments: pl.DataFrame,
    score: Scorer,
    overlap: int,
    target: float | None = None,
) -> str:
    measure, higher = MEASURES[kind]
    total = judgments.height
    cells = [name, kind, measure, f"{score(_labels(judgments, kind)):.3f}"]
    for k in (2, 3, 4, 5):
        subset = judgments.filter(pl.int_range(pl.len()).over("task_id") < k)
        cells.append(f"{score(_labels(subset, kind)):.3f} @ {subset.height / total:.2f}")
    options = PolicyOptions(
        min_votes=2, max_votes=overlap, target_confidence=target or KIND_TARGETS[kind]
    )
    started = time.perf_counter()
    result = replay(judgments, confidence=confidence_function(kind), options=options)
    seconds = time.perf_counter() - started
    labels = result.labels.rename(
        {"label": "winner" if kind == "pairwise" else _value_column(kind)}
    )
    cells.append(
        f"{score(labels):.3f} @ {result.judgments_used / total:.2f} "
        f"({result.rounds} rounds, {seconds:.1f} s)"
    )
    cells.append("higher" if higher else "lower")
    return "| " + " | ".join(cells) + " |"


def _value_column(kind: str) -> str:
    return VALUE_COLUMNS[kind][0]


def _synthetic(kind: str, *, tasks: int, overlap: int, seed: int) -> tuple[pl.DataFrame, Scorer]:
    spec = KindProjectSpec(f"bench-{kind}", kind, overlap=overlap, annotators=max(20, overlap + 5))
    pool = make_pool(spec, seed=seed)
    items = item_qualities(spec, seed=seed) if kind in ("ranking", "pairwise") else None
    drawn = draw_kind_day(
        spec,
        pool,
        np.random.default_rng(seed + 1),
        day=date(2026, 11, 1),
        count=tasks,
        items=items,
    )
    gold_tasks = drawn["tasks"].filter(pl.col("is_gold")).select("task_id")
    columns = ["task_id", *VALUE_COLUMNS[kind]]
    judgments = (
        drawn["judgments"]
        .join(gold_tasks, on="task_id", how="anti")
        .select("task_id", "annotator_id", *VALUE_COLUMNS[kind])
    )
    truth = drawn["kind_truth"].join(gold_tasks, on="task_id", how="anti").select(columns)
    return judgments, _scorer(kind, truth)


def _snow(emotion: str) -> tuple[pl.DataFrame, Scorer]:
    raw = pl.read_csv(SHARED / f"snow_affect_{emotion}.tsv", separator="\t", infer_schema=False)
    judgments = raw.select(
        pl.col("orig_id").alias("task_id"),
        pl.col("!amt_worker_ids").alias("annotator_id"),
        pl.col("response").cast(pl.Float64).alias("value"),
    )
    truth = raw.select(
        pl.col("orig_id").alias("task_id"), pl.col("gold").cast(pl.Float64).alias("value")
    ).unique("task_id")
    return judgments, _scorer("numeric", truth)


def _crowdwsa(name: str) -> tuple[pl.DataFrame, Scorer]:
    options = {"separator": "\t", "infer_schema": False, "quote_char": None}
    answers = pl.read_csv(SHARED / f"crowdwsa_{name}_answers.tsv", **options)  # type: ignore[arg-type]
    truth = pl.read_csv(SHARED / f"crowdwsa_{name}_truth.tsv", **options)  # type: ignore[arg-type]
    judgments = answers.select(
        pl.col("sentence").alias("task_id"),
        pl.col("worker").alias("annotator_id"),
        pl.col("workeranswer").alias("text"),
    )
    reference = truth.select(
        pl.col("sentence").alias("task_id"), pl.col("trueanswer").alias("text")
    )
    return judgments, _scorer("text", reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--overlap", type=int, default=9)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--target", type=float, help="one target for every kind instead")
    arguments = parser.parse_args()
    print(
        "| data set | kind | measure | all judgments | fixed 2 | fixed 3 | fixed 4 | fixed 5 "
        "| adaptive | better |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in MEASURES:
        judgments, score = _synthetic(
            kind, tasks=arguments.tasks, overlap=arguments.overlap, seed=arguments.seed
        )
        print(
            _row(
                f"synthetic ({arguments.overlap}/task)",
                kind,
                judgments,
                score,
                arguments.overlap,
                arguments.target,
            ),
            flush=True,
        )
    if not SHARED.is_dir():
        print(f"(real sets skipped: {SHARED} is absent)")
        return
    for emotion in ("anger", "disgust", "fear"):
        judgments, score = _snow(emotion)
        print(
            _row(f"Snow affect {emotion}", "numeric", judgments, score, 10, arguments.target),
            flush=True,
        )
    for name in ("J1", "T2"):
        judgments, score = _crowdwsa(name)
        print(_row(f"CrowdWSA {name}", "text", judgments, score, 10, arguments.target), flush=True)


if __name__ == "__main__":
    main()
