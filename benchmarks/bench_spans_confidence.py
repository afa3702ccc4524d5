"""Spans: is a task's confidence the probability that its span set is right?

    .venv/bin/python benchmarks/bench_spans_confidence.py [--tasks N] [--seeds 7,8,9]

On the demo's synthetic entities projects (`bench_replay_kinds._synthetic`: careless
annotators, a spammer, 9 judgments per task, gold tasks left out), for the first k judgments of
every task (k = 2, 3, 4, 5, 9) and the default method: exact span F1, the share of tasks whose
span set equals the truth exactly, the mean task confidence and its expected calibration error
against that exact match (10 equal-width bins); then the adaptive replay at the kind's default
target (span F1 @ share of judgments used). A seed's tasks are one project; rows pool the seeds.
Then the demo's own `entities` project as the daily graph fits it (`--days` days of 1,000 tasks,
3 judgments each, gold clamped, token mode over the payload text, each day one fit), where
"below 0.5" is what the kind snapshots leave out (their default `min_confidence`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_replay_kinds import _synthetic

from annotation_pipelines.aggregation.by_kind import aggregate_kind
from annotation_pipelines.aggregation.calibration import expected_calibration_error
from annotation_pipelines.aggregation.spans import aggregate_spans
from annotation_pipelines.loop.kind_posterior import KIND_TARGETS
from annotation_pipelines.loop.policy import PolicyOptions
from annotation_pipelines.loop.posterior import confidence_function
from annotation_pipelines.loop.replay import replay
from annotation_pipelines.synthetic.kinds import (
    KindProjectSpec,
    draw_kind_day,
    draw_project_day,
    make_pool,
)

_KEY = (
    pl.col("spans")
    .list.eval(
        pl.concat_str(
            pl.element().struct.field("start").cast(pl.String),
            pl.element().struct.field("end").cast(pl.String),
            pl.element().struct.field("label"),
            separator=":",
        )
    )
    .list.sort()
)


def _truth(*, tasks: int, seed: int) -> pl.DataFrame:
    """The same draw as `_synthetic`'s, for its truth spans per task."""
    from datetime import date

    spec = KindProjectSpec("bench-spans", "spans", overlap=9, annotators=20)
    drawn = draw_kind_day(
        spec,
        make_pool(spec, seed=seed),
        np.random.default_rng(seed + 1),
        day=date(2026, 11, 1),
        count=tasks,
    )
    return drawn["kind_truth"].select("task_id", _KEY.alias("truth"))


def _scored(labels: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Per task: `confidence`, `exact` (the set equals the truth), true/false positives."""
    joined = labels.select("task_id", "confidence", _KEY.alias("got")).join(truth, on="task_id")
    return joined.select(
        "confidence",
        (pl.col("got") == pl.col("truth")).alias("exact"),
        pl.col("got").list.set_intersection("truth").list.len().alias("tp"),
        pl.col("got").list.len().alias("predicted"),
        pl.col("truth").list.len().alias("gold"),
    )


def _demo_day(day: int) -> pl.DataFrame:
    """One day of the demo's `entities` project, aggregated as the daily graph does, scored."""
    from datetime import date, timedelta

    drawn, _ = draw_project_day(
        "spans", day=date(2026, 11, 20) + timedelta(days=day), count=1000, seed=day
    )
    gold_tasks = drawn["tasks"].filter(pl.col("is_gold")).select("task_id")
    gold = drawn["kind_truth"].join(gold_tasks, on="task_id", how="semi").select("task_id", "spans")
    labels = aggregate_spans(
        drawn["judgments"].select("task_id", "annotator_id", "spans"),
        gold=gold,
        texts=drawn["tasks"].select("task_id", pl.col("payload").alias("text")),
    ).labels.join(gold_tasks, on="task_id", how="anti")
    truth = drawn["kind_truth"].select("task_id", _KEY.alias("truth"))
    return _scored(labels, truth)


def _summary(name: str, scored: pl.DataFrame, share: float | None = None) -> str:
    tp, predicted, gold = (int(scored[c].sum()) for c in ("tp", "predicted", "gold"))
    f1 = 2 * tp / (predicted + gold) if predicted + gold else 1.0
    confidence = scored["confidence"].to_numpy()
    exact = scored["exact"].to_numpy()
    ece = expected_calibration_error(confidence, exact)
    used = "" if share is None else f" @ {share:.2f}"
    return (
        f"| {name} | {f1:.3f}{used} | {exact.mean():.3f} | {confidence.mean():.3f} | {ece:.3f} "
        f"| {int((confidence < 0.5).sum())} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--days", type=int, default=7)
    arguments = parser.parse_args()
    seeds = [int(s) for s in arguments.seeds.split(",")]
    data = []
    for seed in seeds:
        judgments, _ = _synthetic("spans", tasks=arguments.tasks, overlap=9, seed=seed)
        data.append((judgments, _truth(tasks=arguments.tasks, seed=seed)))
    print("| judgments per task | span F1 | exact sets | mean confidence | ECE | below 0.5 |")
    print("|---|---|---|---|---|---|")
    for k in (2, 3, 4, 5, 9):
        scored = pl.concat(
            _scored(
                aggregate_kind(
                    judgments.filter(pl.int_range(pl.len()).over("task_id") < k), kind="spans"
                ).labels,
                truth,
            )
            for judgments, truth in data
        )
        print(_summary(f"first {k}", scored), flush=True)
    options = PolicyOptions(min_votes=2, max_votes=9, target_confidence=KIND_TARGETS["spans"])
    replays, used, total = [], 0, 0
    for judgments, truth in data:
        result = replay(judgments, confidence=confidence_function("spans"), options=options)
        replays.append(_scored(result.labels.rename({"label": "spans"}), truth))
        used += result.judgments_used
        total += judgments.height
    print(
        _summary(f"adaptive (target {options.target_confidence})", pl.concat(replays), used / total)
    )
    demo = pl.concat(_demo_day(day) for day in range(arguments.days))
    print(_summary(f"demo entities, {arguments.days} days × 1,000 tasks, 3 each", demo))
    kept = demo.filter(pl.col("confidence") >= 0.5)
    left_out = demo.filter(pl.col("confidence") < 0.5)
    print(
        f"\nsnapshot (confidence ≥ 0.5): {kept.height:,} of {demo.height:,} tasks, "
        f"{int(kept['predicted'].sum()):,} spans, exact sets {kept['exact'].mean():.3f}; "
        f"left out: {left_out.height:,}, exact sets "
        + (f"{left_out['exact'].mean():.3f}" if left_out.height else "—")
    )


if __name__ == "__main__":
    main()
