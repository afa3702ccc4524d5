"""One live run of a non-categorical kind project at a held history: load, update, commit.

    .venv/bin/python benchmarks/bench_live_kinds.py [--kind spans|...|all] [--history 100000]
                                                    [--batch 1000] [--runs 8]
                                                    [--full-fit-every 20] [--lake DIR]
                                                    [--deferred]

A synthetic project of the kind (`synthetic.kinds`: its generator's annotator pool, a spammer
included), ordered by submission time. The first `--history` judgments are folded in and
committed to a local lake (`--lake`, default a temporary folder); then each run does what a
live run does for the kind: load the (project, kind) state from the lake, fold `--batch` new
judgments in (`loop.live_kinds.update_kind`), build its objects and `Lake.commit` them, each
timed in wall and CPU seconds. The state's annotator parameters were fitted on the history, so
the runs refit only their touched tasks (`--full-fit-every` at least `--runs` + 2 keeps a full
fit out of them); the last row, "full fit", times one run that refits everything: what every
run would cost without the carried parameters, and what the engine pays once per
`full_fit_growth` of growth. Prints a Markdown table per kind, with how far that full fit moved
the answers the incremental runs had given.

`--deferred` runs the live asset's setting (`inline_full_fits=False`): the last run only records
the full fit as due, and the maintenance job's work is timed after it (`assets.live.kind_fits`):
the snapshot's load and full fit (`fit_snapshot`, without the live lock), one more live run
folding a batch meanwhile, then what the job does under the lock: load the state, adopt the fit
(`adopt_fit`, the batch's tasks refitted with the new parameters), build the objects, commit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.kinds import VALUE_COLUMNS
from annotation_pipelines.loop.live_kinds import (
    LIVE_KINDS,
    KindLiveOptions,
    KindState,
    adopt_fit,
    fit_snapshot,
    kind_state_objects,
    load_kind_state,
    update_kind,
)
from annotation_pipelines.synthetic.kinds import KIND_PROJECTS, draw_project_day

T = TypeVar("T")


def stream(kind: str, judgments: int, *, seed: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """About `judgments` judgments of a synthetic `kind` project in submission order, and gold."""
    spec = next(s for s in KIND_PROJECTS if s.kind == kind)
    count = -(-judgments // spec.overlap)
    day, _ = draw_project_day(kind, day=date(2026, 11, 10), count=count, seed=seed)
    rows = (
        day["judgments"]
        .with_columns(updated_at=pl.col("submitted_at"))
        .sort("submitted_at", "judgment_id")
        .head(judgments)
    )
    return rows, day["gold_labels"]


def timed(step: Callable[[], T]) -> tuple[T, float, float]:
    """(what `step` returns, its wall seconds, its CPU seconds over every thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = step()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench(
    kind: str,
    *,
    history: int,
    batch: int,
    runs: int,
    every: int,
    lake_dir: Path,
    deferred: bool = False,
) -> None:
    from resources.lake import LocalLake

    project = f"bench-{kind}"
    rows, gold = stream(kind, history + (runs + 1 + deferred) * batch)
    rows, gold = (
        rows.with_columns(project=pl.lit(project)),
        gold.with_columns(project=pl.lit(project)),
    )
    lake = LocalLake(base_path=str(lake_dir / kind))

    def read(key: str) -> bytes | None:
        return lake.get(key) if lake.exists(key) else None

    options = KindLiveOptions(full_fit_every=every, inline_full_fits=not deferred)

    def commit(state: KindState) -> None:
        writes, deletes = kind_state_objects(state, read)
        lake.commit(writes, deletes=deletes)

    (state, _), wall, cpu = timed(
        lambda: update_kind(
            KindState(project=project, kind=kind), rows.head(history), gold, options
        )
    )
    commit(state)
    print(
        f"\n### {kind}: {history:,} judgments held ({state.tasks.height:,} tasks), "
        f"{batch:,} a run\n\nhistory folded (one full fit) in {wall:.2f} s wall, {cpu:.2f} s CPU\n"
    )
    print(
        "| run | refit | tasks refitted | load s | update s | objects + commit s | run s (CPU s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    incremental: list[tuple[float, float]] = []
    drift = ""
    for number in range(runs + 1):
        full = number == runs
        chunk = rows.slice(history + number * batch, batch)
        loaded, load_wall, load_cpu = timed(lambda: load_kind_state(project, kind, read))
        (state, events), update_wall, update_cpu = timed(
            lambda s=loaded, c=chunk, f=full: update_kind(s, c, None, options, full_fit=f)
        )
        _, commit_wall, commit_cpu = timed(lambda s=state: commit(s))
        wall = load_wall + update_wall + commit_wall
        cpu = load_cpu + update_cpu + commit_cpu
        if not full:
            incremental.append((wall, cpu))
        else:
            drift = _drift(kind, loaded.tasks, state.tasks, chunk)
        label = "full fit due" if full and deferred else "full fit" if full else number + 1
        refit = (
            "touched (fit recorded)" if full and deferred else "all tasks" if full else "touched"
        )
        print(
            f"| {label} | {refit} | "
            f"{events.refitted_tasks:,} | {load_wall:.3f} | {update_wall:.3f} | "
            f"{commit_wall:.3f} | {wall:.3f} ({cpu:.3f}) |"
        )
    if deferred:
        drift = _maintenance(
            kind, project, read, commit, options, rows.slice(history + (runs + 1) * batch, batch)
        )
    walls = np.array([w for w, _ in incremental])
    cpus = np.array([c for _, c in incremental])
    blocked = state.annotators.filter(pl.col("blocked"))["annotator_id"].to_list()
    print(
        f"\nincremental runs: mean {walls.mean():.3f} s wall (max {walls.max():.3f}), "
        f"{cpus.mean():.3f} s CPU; load average {os.getloadavg()[0]:.1f}; blocked {blocked}; "
        f"incremental answers vs the full fit, on tasks the last batch did not touch: {drift}"
    )


def _maintenance(
    kind: str,
    project: str,
    read: Callable[[str], bytes | None],
    commit: Callable[[KindState], None],
    options: KindLiveOptions,
    chunk: pl.DataFrame,
) -> str:
    """The kind fit job's work on the stored state, a live run folding `chunk` meanwhile;
    prints its timings and returns how far the adopted fit moved the other tasks' answers."""
    snapshot, load_wall, _ = timed(lambda: load_kind_state(project, kind, read))
    fit, fit_wall, fit_cpu = timed(lambda: fit_snapshot(snapshot, options))
    loaded, live_load, _ = timed(lambda: load_kind_state(project, kind, read))
    (live, _), live_update, _ = timed(lambda: update_kind(loaded, chunk, None, options))
    _, live_commit, _ = timed(lambda: commit(live))
    current, lock_load, _ = timed(lambda: load_kind_state(project, kind, read))
    adopted, adopt_wall, _ = timed(lambda: adopt_fit(fit, current, options))
    assert adopted is not None
    state, events = adopted
    _, lock_commit, _ = timed(lambda: commit(state))
    held = lock_load + adopt_wall + lock_commit
    print(
        f"| live run during the fit | touched | {chunk.get_column('task_id').n_unique():,} | "
        f"{live_load:.3f} | {live_update:.3f} | {live_commit:.3f} | "
        f"{live_load + live_update + live_commit:.3f} |"
    )
    print(
        f"\nmaintenance (live_kind_fit_job): snapshot load {load_wall:.3f} s and full fit "
        f"{fit_wall:.3f} s wall ({fit_cpu:.3f} s CPU) without the live lock; under the lock "
        f"{held:.3f} s (load {lock_load:.3f}, adopt {adopt_wall:.3f} with 1 run in between, "
        f"objects + commit {lock_commit:.3f}); {events.task_requests.height:,} request(s)"
    )
    return _drift(kind, current.tasks, state.tasks, chunk)


def _drift(kind: str, before: pl.DataFrame, after: pl.DataFrame, chunk: pl.DataFrame) -> str:
    """How the full fit moved the answers the incremental runs gave (the same tasks, votes)."""
    columns = list(VALUE_COLUMNS[kind])
    if kind == "spans":
        fields = [pl.element().struct.field(f) for f in ("start", "end", "label")]
        plain = [pl.col("spans").list.eval(pl.struct(fields))]
    elif kind == "boxes":
        # Fused coordinates move by fractions of a pixel with any weight: compare whole pixels.
        corners = [
            pl.element().struct.field(f).round(0) for f in ("x_min", "y_min", "x_max", "y_max")
        ]
        plain = [
            pl.col("boxes").list.eval(pl.struct([pl.element().struct.field("label"), *corners]))
        ]
    else:
        plain = [pl.col(c) for c in columns]
    joined = (
        before.select("task_id", *plain)
        .join(after.select("task_id", *plain), on="task_id", suffix="_full")
        .join(chunk.select("task_id").unique(), on="task_id", how="anti")
    )
    if kind == "numeric":
        delta = (joined["value"] - joined["value_full"]).abs()
        return f"mean |value change| {delta.mean():.4f} over {joined.height:,} tasks"
    same = pl.all_horizontal([pl.col(c).eq_missing(pl.col(f"{c}_full")) for c in columns])
    return f"{joined.select(same.mean()).item():.2%} same answer over {joined.height:,} tasks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="spans", choices=[*LIVE_KINDS, "all"])
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--full-fit-every", type=int, default=20)
    parser.add_argument("--lake", type=Path, default=None)
    parser.add_argument(
        "--deferred",
        action="store_true",
        help="the live asset's setting: full fits left to the maintenance job, timed after",
    )
    arguments = parser.parse_args()
    kinds = LIVE_KINDS if arguments.kind == "all" else (arguments.kind,)
    with tempfile.TemporaryDirectory() as scratch:
        lake_dir = arguments.lake or Path(scratch)
        for kind in kinds:
            bench(
                kind,
                history=arguments.history,
                batch=arguments.batch,
                runs=arguments.runs,
                every=max(arguments.full_fit_every, arguments.runs + 2),
                lake_dir=lake_dir,
                deferred=arguments.deferred,
            )


if __name__ == "__main__":
    main()
