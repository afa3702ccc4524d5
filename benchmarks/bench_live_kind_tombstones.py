"""What the annotation DB's kind rows and tombstones cost a live run, per kind state held.

    .venv/bin/python benchmarks/bench_live_kind_tombstones.py [--kinds numeric,spans]
                                                              [--history 50000] [--batch 1000]
                                                              [--tombstones 10] [--runs 5]

A project with one state per kind in `--kinds`, each holding `--history` judgments from the
DB (synthetic rows of the kind, `source` null, versioned by `updated_at`), committed to a local
lake. Then, timed in wall seconds (the median of `--runs`):

- "DB batch": a run folding `--batch` new DB rows into one kind state (load, `update_kind`,
  its lake objects built): what a live run pays for DB kind rows, as for a file's.
- "overlap": the same batch read again by the next run (the stream's overlap): `update_kind`
  of the state holding it, which drops every row as held.
- "route": a run carrying `--tombstones` DB tombstones of the project and nothing else finds
  the kind state holding each (a tombstone names no kind: `states_holding` reads the ids of
  every kind state of the project, `held_deletions` matches them) and loads only that one.
  Timed for tombstones of rows no kind state holds (what a categorical tombstone now costs a
  project with kind states) and of rows of one kind state.
- "withdraw": the held tombstones applied (`update_kind` with `deleted=`, objects built).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from statistics import median

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.loop.live_kinds import (
    KindLiveOptions,
    KindState,
    held_deletions,
    kind_state_objects,
    load_kind_state,
    states_holding,
    update_kind,
)
from benchmarks.bench_live_kinds import stream, timed

PROJECT = "bench-db"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="numeric,spans")
    parser.add_argument("--history", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--tombstones", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from resources.lake import LocalLake

    kinds = args.kinds.split(",")
    options = KindLiveOptions(full_fit_every=1_000_000, inline_full_fits=False)
    with tempfile.TemporaryDirectory() as folder:
        lake = LocalLake(base_path=folder)

        def read(key: str) -> bytes | None:
            return lake.get(key) if lake.exists(key) else None

        def commit(state: KindState) -> None:
            writes, deletes = kind_state_objects(state, read)
            lake.commit(writes, deletes=deletes)

        batches: dict[str, pl.DataFrame] = {}
        for kind in kinds:
            rows, _ = stream(kind, args.history + args.batch)
            rows = rows.with_columns(project=pl.lit(PROJECT), source=pl.lit(None, pl.String))
            state, _ = update_kind(
                KindState(project=PROJECT, kind=kind), rows.head(args.history), None, options
            )
            commit(state)
            batches[kind] = rows.tail(args.batch)
        print(
            f"\n{len(kinds)} kind states ({', '.join(kinds)}) of {args.history:,} DB judgments "
            f"each; batch {args.batch:,}; {args.tombstones} tombstones; median of {args.runs}\n"
        )
        print("| step | kind | wall s |\n|---|---|---:|")
        for kind in kinds:
            batch = batches[kind]
            folded, overlap = [], []
            for _ in range(args.runs):
                # Objects built, not committed: each run folds the same new batch.
                _, wall, _ = timed(
                    lambda k=kind, b=batch: kind_state_objects(
                        update_kind(load_kind_state(PROJECT, k, read), b, None, options)[0], read
                    )
                )
                folded.append(wall)
                state, _ = update_kind(load_kind_state(PROJECT, kind, read), batch, None, options)
                _, wall, _ = timed(lambda s=state, b=batch: update_kind(s, b, None, options))
                overlap.append(wall)
            print(f"| DB batch | {kind} | {median(folded):.3f} |")
            print(f"| overlap (read again) | {kind} | {median(overlap):.3f} |")
        held = load_kind_state(PROJECT, kinds[0], read).ledger.head(args.tombstones)
        tombstones = held.select(
            "judgment_id",
            "task_id",
            "annotator_id",
            "submitted_at",
            "updated_at",
            project=pl.lit(PROJECT),
            deleted_at=pl.col("updated_at") + timedelta(minutes=1),
        )
        no_gold = pl.DataFrame(schema={"task_id": pl.String, "project": pl.String})
        others = tombstones.with_columns(judgment_id=pl.lit("categorical-") + pl.col("judgment_id"))
        index = {PROJECT: kinds}
        probed, loaded, withdrawn = [], [], []
        for _ in range(args.runs):
            # Tombstones of rows no kind state holds (the categorical engine's): ids read only.
            _, wall, _ = timed(lambda: states_holding(index, others, no_gold, read))
            probed.append(wall)

            def route() -> tuple[dict[tuple[str, str], KindState], pl.DataFrame]:
                keys = states_holding(index, tombstones, no_gold, read)
                states = {key: load_kind_state(*key, read) for key in sorted(keys)}
                found, _ = held_deletions(states, tombstones, no_gold)
                return states, found

            (states, found), wall, _ = timed(route)
            loaded.append(wall)
            assert set(states) == {(PROJECT, kinds[0])}
            state = states[(PROJECT, kinds[0])]

            def withdraw(s: KindState = state, f: pl.DataFrame = found) -> None:
                after, events = update_kind(s, s.ledger.head(0), None, options, deleted=f)
                assert events.withdrawn_judgments == args.tombstones
                kind_state_objects(after, read)

            _, wall, _ = timed(withdraw)
            withdrawn.append(wall)
        rows = [
            ("route, rows no kind state holds: ids of every kind state read", "all", probed),
            ("route, rows of one kind state: ids read, that state loaded", kinds[0], loaded),
            ("withdraw: update_kind deleted=, objects", kinds[0], withdrawn),
        ]
        for step, kind, walls in rows:
            print(f"| {step} | {kind} | {median(walls):.3f} |")


if __name__ == "__main__":
    main()
