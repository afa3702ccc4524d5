"""The live engine step at a sustained arrival rate: per-tick time and the lag it adds.

    .venv/bin/python benchmarks/bench_live.py [--rate 200] [--seconds 60] [--tick 15]
                                               [--history 0] [--lake DIR [--maintain]]
                                               [--revisit 0.0 [--window 0]]
                                               [--history-parts 1]
                                               [--other-projects 0 [--random-ids]
                                                [--gold-every 20] [--other-kinds 0]
                                                [--deleted-every 0]]

Synthetic arrivals (3 classes, 60 annotators of mixed skill, 5 votes per task, a spammer from
the middle) at `--rate` judgments/s, folded into one project's `LiveState` every `--tick`
seconds of simulated time; `--history` judgments are folded in first (a state already holding
part of a day). For each tick: the wall time of `update`, and the lag a judgment sees from the
engine alone (tick wait + update time). Compared side by side with what the incremental step
replaces: a cold Dawid–Skene fit (`aggregation.fit`) of the whole history each tick.
Prints a Markdown table.

With `--lake DIR`, each tick is what a live run does with the lake instead: load the part of
the state its batch touches from a local lake folder, update it, and commit its objects
(`Lake.commit`), each timed, with the rows read and the bytes written; the cold fit is left
out. `--maintain` does the merges left for maintenance between ticks and times them apart.
`--other-projects N` stores N more projects holding a history as large (other judgment ids)
and times, per tick, the look-up a live run makes for judgments and gold the DB moved from one
of them, to another project or kind (`loop.moves.moved`: the tick's ids new to its project, in
each other project's id fingerprints and every kind state's; DB gold on as many tasks as one
in `--gold-every` of the tick's, of task ids the other projects hold too, in each other
project's tasks segments); `--other-kinds N` stores a numeric kind state of N judgments in
each of them as well, which the tick's judgments and gold are looked up in too;
`--random-ids` gives every judgment a hashed id, so new ids fall inside every segment's id
range (sequential ids skip them by their fences); `--deleted-every N` adds, as the DB's
tombstones of the bench project, one in N of the judgments its history holds (as many as one
in N of the tick's), which the look-up follows into every other state (a row moved and then
deleted before the run: `loop.moves.departures`).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation import fit
from annotation_pipelines.loop.live import (
    LIVE_COMPACTION,
    LiveState,
    due_merges,
    load_state,
    load_touched,
    merge_objects,
    plan_merge,
    state_objects,
    update,
)
from annotation_pipelines.loop.moves import DEPARTING, moved

START = datetime(2026, 11, 10, 9, tzinfo=UTC)


def arrivals(n: int, *, seed: int = 3, annotators: int = 60) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    index = np.arange(n)
    task = index // 5
    truth = (task * 7919) % 3
    who = rng.integers(0, annotators, n)
    skill = rng.uniform(0.7, 0.95, annotators)
    right = rng.random(n) < skill[who]
    label = np.where(right, truth, rng.integers(0, 3, n))
    spam = (index > n // 2) & (index % 25 == 0)
    label = np.where(spam, rng.integers(0, 3, n), label)
    frame = pl.DataFrame(
        {
            "judgment_id": [f"j{i:08d}" for i in index],
            "task_id": [f"t{t:07d}" for t in task],
            "annotator_id": np.where(spam, "s00", np.char.add("w", who.astype(str))),
            "label": np.char.add("c", label.astype(str)),
            "duration_s": rng.uniform(1, 10, n),
        }
    )
    return frame.with_columns(
        submitted_at=pl.lit(START) + pl.duration(microseconds=pl.int_range(n) * 5000),
    ).with_columns(updated_at=pl.col("submitted_at"))


def gold_of(batch: pl.DataFrame, *, held_tasks: int, every: int) -> pl.DataFrame:
    """The DB's gold on as many tasks as one in `every` of a batch's (none at 0), spread over
    the first `held_tasks` task ids, which the other projects hold too (tools number tasks
    alike): the gold a run's look-up checks in the other projects' tasks segments, whose
    fences admit those ids."""
    tasks = batch.select("task_id").unique(maintain_order=True)
    tasks = tasks.gather_every(every) if every > 0 else tasks.head(0)
    number = (tasks["task_id"].str.slice(1).cast(pl.Int64) * 7919) % max(held_tasks, 1)
    return pl.DataFrame(
        {
            "task_id": number.map_elements(lambda t: f"t{t:07d}", return_dtype=pl.String),
            "project": "bench",
            "label": ((number * 7919) % 3).map_elements(lambda c: f"c{c}", return_dtype=pl.String),
            "source": pl.Series([None] * number.len(), dtype=pl.String),
        }
    )


def hashed_ids(frame: pl.DataFrame, salt: str = "") -> pl.DataFrame:
    """`frame` with each judgment id replaced by a hash of it (and `salt`): ids in no order."""
    ids = [hashlib.sha1(f"{i}{salt}".encode()).hexdigest()[:16] for i in frame["judgment_id"]]
    return frame.with_columns(judgment_id=pl.Series(ids, dtype=pl.String))


def revisited(
    frame: pl.DataFrame, *, history: int, fraction: float, window: int, seed: int = 5
) -> pl.DataFrame:
    """`frame` with a `fraction` of the judgments after `history` moved to an earlier task (a
    late vote, or one the policy asked for): drawn from the `window` tasks before it (0: from
    all of them, the worst case for the segments' row-group statistics)."""
    if fraction <= 0:
        return frame
    rng = np.random.default_rng(seed)
    n = frame.height
    index = np.arange(n)
    current = index // 5
    low = np.zeros(n, dtype=np.int64) if window <= 0 else np.maximum(current - window, 0)
    earlier = low + (rng.random(n) * np.maximum(current - low, 1)).astype(np.int64)
    moved = (index >= history) & (rng.random(n) < fraction) & (current > 0)
    task = np.where(moved, earlier, current)
    return frame.with_columns(task_id=pl.Series([f"t{t:07d}" for t in task]))


def persisted(
    lake_dir: Path,
    frame: pl.DataFrame,
    *,
    history: int,
    per_tick: int,
    maintain: bool,
    parts: int = 1,
    others: int = 0,
    random_ids: bool = False,
    gold_every: int = 20,
    other_kinds: int = 0,
    deleted_every: int = 0,
) -> None:
    """Per tick what a live run does: load the touched part of the state from the lake
    (`load_touched`, scanning the local segments in place), update, build its objects (merges
    above `LIVE_COMPACTION.max_inline_rows` left for maintenance), commit them. With
    `maintain`, the deferred merges are done between ticks, as the maintenance job does
    (timed apart: they are not on a live run's path). The history is committed in `parts`
    runs, each timed: with 8, the last one makes a merge of the whole history due."""
    from resources.lake import LocalLake

    lake = LocalLake(base_path=str(lake_dir))

    def read(key: str) -> bytes | None:
        return lake.get(key) if lake.exists(key) else None

    def open_segment(key: str) -> pq.ParquetFile:
        path = lake.local_path(key)
        assert path is not None
        return pq.ParquetFile(path)

    others_began = time.perf_counter()
    projects = [f"other{o}" for o in range(others)]
    for o, project in enumerate(projects):
        rows = frame.head(history).with_columns(judgment_id=pl.col("judgment_id") + f"-p{o}")
        if random_ids:
            rows = hashed_ids(frame.head(history), f"-p{o}")
        state = load_touched(project, read, judgments=rows, open_segment=open_segment)
        state, _ = update(state, rows)
        objects = state_objects(state, read, compaction=LIVE_COMPACTION)
        lake.commit(objects.writes, deletes=objects.deletes)
    if other_kinds:
        from bench_live_kinds import stream

        from annotation_pipelines.loop.live_kinds import KindState, kind_state_objects, update_kind

        ratings, _ = stream("numeric", other_kinds)
        for o, project in enumerate(projects):
            rows = ratings.with_columns(
                project=pl.lit(project), judgment_id=pl.col("judgment_id") + f"-p{o}"
            )
            numeric, _ = update_kind(KindState(project=project, kind="numeric"), rows)
            writes, deletes = kind_state_objects(numeric, read)
            lake.commit(writes, deletes=deletes)
    index = {project: ["numeric"] for project in projects} if other_kinds else {}
    if others:
        print(f"{others} other project(s) stored in {time.perf_counter() - others_began:.1f} s")
    began = time.perf_counter()
    size = -(-history // parts)
    for part in range(parts):
        rows = frame.slice(part * size, min(size, history - part * size))
        state = load_touched("bench", read, judgments=rows, open_segment=open_segment)
        state, _ = update(state, rows)
        marks = [time.perf_counter()]
        objects = state_objects(state, read, compaction=LIVE_COMPACTION)
        lake.commit(objects.writes, deletes=objects.deletes)
        if parts > 1:
            print(
                f"history part {part + 1}: {rows.height:,} judgments, objects and commit "
                f"{time.perf_counter() - marks[0]:.2f} s"
            )
    print(f"history of {history:,} folded and committed in {time.perf_counter() - began:.1f} s\n")
    print(
        "| tick | judgments | rows read (ledger + tasks) | load s | update s | objects s "
        "| commit s | run s | run CPU s | MB written | maintenance s | move check s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals, cpu, written, maintenance, checks = [], [], [], [], []
    for number, start in enumerate(range(history, frame.height, per_tick), start=1):
        batch = frame.slice(start, per_tick)
        cpu_began = time.process_time()
        marks = [time.perf_counter()]
        state = load_touched("bench", read, judgments=batch, open_segment=open_segment)
        loaded = state.ledger.height + state.tasks.height
        marks.append(time.perf_counter())
        loaded_state = state
        state, _ = update(state, batch)
        marks.append(time.perf_counter())
        objects = state_objects(state, read, compaction=LIVE_COMPACTION)
        marks.append(time.perf_counter())
        lake.commit(objects.writes, deletes=objects.deletes)
        marks.append(time.perf_counter())
        steps = np.diff(marks)
        totals.append(marks[-1] - marks[0])
        cpu.append(time.process_time() - cpu_began)
        written.append(sum(len(data) for data in objects.writes.values()) / 1e6)
        check = 0.0
        if others:
            # Timed apart (and added to no other column): the look-up a run makes with the
            # state as loaded, before its update; no judgment moved, so it loads nothing more.
            # The median of five, as the machine's other work moves single calls a lot.
            gold = gold_of(batch, held_tasks=history // 5, every=gold_every)
            departing = {}
            if deleted_every > 0:
                gone = frame.head(history).gather_every(deleted_every, offset=number)
                gone = gone.head(-(-per_tick // deleted_every))
                tombstones = gone.select(
                    "judgment_id", "updated_at", project=pl.lit("bench")
                ).with_columns(own_categorical=pl.lit(False))
                departing = {"departing": tombstones.cast(pl.Schema(DEPARTING))}
            samples = []
            for _ in range(5):
                check_began = time.perf_counter()
                found = moved(
                    {"bench": loaded_state},
                    batch.with_columns(project=pl.lit("bench")),
                    gold,
                    {},
                    pl.DataFrame(),
                    pl.DataFrame(),
                    projects=projects,
                    index=index,
                    read=read,
                    open_segment=open_segment,
                    **departing,
                )
                samples.append(time.perf_counter() - check_began)
            assert found.judgments.height == 0 and found.gold.height == 0
            assert found.kind_judgments.height == 0 and found.kind_gold.height == 0
            check = float(np.median(samples))
            checks.append(check)
        merged = 0.0
        if maintain:
            began = time.perf_counter()
            while (merge := plan_merge("bench", read, LIVE_COMPACTION)) is not None:
                found = merge_objects(read, merge)
                if found is not None:
                    lake.commit(found.writes, deletes=found.deletes)
            merged = time.perf_counter() - began
            maintenance.append(merged)
        cells = " | ".join(f"{s:.3f}" for s in steps)
        print(
            f"| {number} | {batch.height:,} | {loaded:,} | {cells} | {totals[-1]:.3f} | "
            f"{cpu[-1]:.3f} | {written[-1]:.2f} | {merged:.3f} | {check:.3f} |"
        )
    final = load_state("bench", read)
    print(
        f"\nrun mean {np.mean(totals):.3f} s, p95 {np.percentile(totals, 95):.3f} s, "
        f"max {np.max(totals):.3f} s; CPU mean {np.mean(cpu):.3f} s; "
        f"{np.mean(written):.2f} MB written per run; "
        f"{final.ledger.height:,} judgments and {final.tasks.height:,} tasks held in "
        f"{len(final.segments)} ledger and {len(final.task_segments)} tasks segment(s); "
        f"merges due for maintenance: {due_merges('bench', read, LIVE_COMPACTION)}"
        + (f"; maintenance {np.sum(maintenance):.3f} s in all" if maintain else "")
        + (
            f"; move check over {others} other project(s) mean {np.mean(checks):.3f} s, "
            f"max {np.max(checks):.3f} s per run"
            if checks
            else ""
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--tick", type=int, default=15)
    parser.add_argument("--history", type=int, default=0)
    parser.add_argument("--lake", type=Path, default=None, help="time load/update/commit")
    parser.add_argument(
        "--maintain", action="store_true", help="with --lake: do deferred merges between ticks"
    )
    parser.add_argument(
        "--history-parts", type=int, default=1, help="with --lake: commit the history in N runs"
    )
    parser.add_argument(
        "--other-projects", type=int, default=0, help="with --lake: time the move look-up"
    )
    parser.add_argument("--random-ids", action="store_true", help="hashed judgment ids")
    parser.add_argument(
        "--gold-every",
        type=int,
        default=20,
        help="with --other-projects: the look-up checks DB gold on 1 in N tick tasks (0: none)",
    )
    parser.add_argument(
        "--other-kinds",
        type=int,
        default=0,
        help="with --other-projects: each also holds a numeric kind state of N judgments",
    )
    parser.add_argument(
        "--deleted-every",
        type=int,
        default=0,
        help="with --other-projects: 1 in N of a tick's count as DB tombstones looked up too",
    )
    parser.add_argument(
        "--revisit", type=float, default=0.0, help="share of new judgments on earlier tasks"
    )
    parser.add_argument(
        "--window", type=int, default=0, help="--revisit draws from the last N tasks (0: all)"
    )
    arguments = parser.parse_args()
    per_tick = arguments.rate * arguments.tick
    total = arguments.history + arguments.rate * arguments.seconds
    frame = arrivals(total)
    if arguments.random_ids:
        frame = hashed_ids(frame)
    frame = revisited(
        frame,
        history=arguments.history,
        fraction=arguments.revisit,
        window=arguments.window,
    )
    if arguments.lake is not None:
        persisted(
            arguments.lake,
            frame,
            history=arguments.history,
            per_tick=per_tick,
            maintain=arguments.maintain,
            parts=arguments.history_parts,
            others=arguments.other_projects,
            random_ids=arguments.random_ids,
            gold_every=arguments.gold_every,
            other_kinds=arguments.other_kinds,
            deleted_every=arguments.deleted_every,
        )
        return
    state = LiveState(project="bench")
    if arguments.history:
        state, _ = update(state, frame.head(arguments.history))
    print(f"rate {arguments.rate}/s, tick {arguments.tick} s, history {arguments.history:,}\n")
    print("| tick | judgments | state size | update s | cold full fit s | lag p100 s |")
    print("|---:|---:|---:|---:|---:|---:|")
    seconds = []
    for number, start in enumerate(range(arguments.history, total, per_tick), start=1):
        batch = frame.slice(start, per_tick)
        began = time.perf_counter()
        state, _ = update(state, batch)
        elapsed = time.perf_counter() - began
        seconds.append(elapsed)
        history = frame.head(start + batch.height).select("task_id", "annotator_id", "label")
        began = time.perf_counter()
        fit(history, "dawid_skene")
        cold = time.perf_counter() - began
        print(
            f"| {number} | {batch.height:,} | {state.ledger.height:,} | {elapsed:.3f} | "
            f"{cold:.3f} | {arguments.tick + elapsed:.1f} |"
        )
    print(
        f"\nmean update {np.mean(seconds):.3f} s per {per_tick:,}-judgment tick "
        f"({per_tick / np.mean(seconds):,.0f} judgments/s of engine throughput); "
        f"blocked: {state.annotators.filter(pl.col('blocked'))['annotator_id'].to_list()}"
    )


if __name__ == "__main__":
    main()
