"""The end-of-day re-base of every non-categorical kind: agreement with the daily table and
the cost of the re-base step.

    .venv/bin/python benchmarks/bench_kind_rebase.py [--kind spans|...|all] [--tasks 5000]
                                                     [--batches 2]

A synthetic day of the kind's project (`synthetic.kinds`, seed 3, gold kept out of both
layers) is folded into a live state in `--batches` runs (the first a full fit, the rest
refitting touched tasks with carried parameters); the daily layer's aggregation of the same
day (`quality.kinds.aggregate_kind_day`) is the record of truth; `loop.live_kinds.rebase_kind`
re-bases the state on it, timed in wall and CPU seconds. Prints a Markdown row per kind: the
share of the day's tasks whose live answer is the daily answer before and after, and the
requests the re-base emitted.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.kinds import VALUE_COLUMNS
from annotation_pipelines.loop.kind_posterior import comparable_values, winning_item
from annotation_pipelines.loop.live_kinds import (
    LIVE_KINDS,
    KindLiveOptions,
    KindState,
    rebase_kind,
    update_kind,
)
from annotation_pipelines.quality.kinds import aggregate_kind_day
from annotation_pipelines.synthetic.kinds import KIND_PROJECTS, draw_project_day

DAY = date(2026, 11, 1)
NOW = datetime(2026, 11, 2, tzinfo=UTC)


def agreement(state: KindState, daily: pl.DataFrame) -> float:
    """Share of the day's tasks with the same value (pairwise: the same winning item)."""
    joined = comparable_values(state.tasks, state.kind).join(
        comparable_values(daily, state.kind), on="task_id", suffix="_d"
    )
    if state.kind == "pairwise":
        same = winning_item() == winning_item("_d")
    else:
        same = pl.all_horizontal(
            [
                pl.struct(c).struct.json_encode()
                == pl.struct(pl.col(f"{c}_d").alias(c)).struct.json_encode()
                for c in VALUE_COLUMNS[state.kind]
            ]
        )
    return float(joined.select(same.fill_null(False).mean()).item())


def bench(kind: str, *, tasks: int, batches: int) -> None:
    spec = next(s for s in KIND_PROJECTS if s.kind == kind)
    drawn, _ = draw_project_day(kind, day=DAY, count=tasks, seed=3)
    rows = drawn["judgments"].with_columns(updated_at=pl.col("submitted_at")).sort("submitted_at")
    options = KindLiveOptions(full_fit_every=batches + 10)
    state = KindState(project=spec.name, kind=kind)
    for part in np.array_split(np.arange(rows.height), batches):
        batch = rows.slice(int(part[0]), len(part))
        state, _ = update_kind(state, batch, None, options, now=NOW)
    daily = aggregate_kind_day(rows, project=spec.name, day=DAY, kind=kind).labels
    wall, cpu = time.perf_counter(), time.process_time()
    rebased, events = rebase_kind(state, daily, DAY.isoformat(), options, now=NOW)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"| {kind} | {rows.height:,} | {events.rebased_tasks:,} | "
        f"{agreement(state, daily):.2%} → {agreement(rebased, daily):.2%} | "
        f"{wall:.3f} s ({cpu:.3f}) | {events.task_requests.height} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="all", choices=[*LIVE_KINDS, "all"])
    parser.add_argument("--tasks", type=int, default=5_000)
    parser.add_argument("--batches", type=int, default=2)
    arguments = parser.parse_args()
    print("| kind | judgments | re-based | agreement before → after | re-base (CPU) | requests |")
    print("|---|---:|---:|---|---:|---:|")
    for kind in LIVE_KINDS if arguments.kind == "all" else (arguments.kind,):
        bench(kind, tasks=arguments.tasks, batches=arguments.batches)


if __name__ == "__main__":
    main()
