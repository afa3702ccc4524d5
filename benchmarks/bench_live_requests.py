"""The write-back's fixed costs per live run: relisting open requests, and the migrations check.

Two figures that every live run pays whatever its batch holds:

- relisting a kind's open requests (`relisted_requests`) with 100,000 open and 1,000 of them
  replaced by new decisions, and writing the Label Studio list from the result;
- `apply_schema` on an annotation DB that is already up to date (every migration recorded),
  which the live run calls before each write;
- `write_requests` on a DB holding that many open requests: a live write of 1,000 new
  decisions replacing 1,000 open ones (as the state's next version, which also looks for the
  rows of an attempt that never committed), and a daily write of 1,000 decisions and 10,000
  tasks found settled (each withdrawing the older requests of its tasks in its transaction).

Usage: .venv/bin/python benchmarks/bench_live_requests.py [--open 100000] [--calls 20]
(the second and third parts need PostgreSQL on 127.0.0.1:5432; `bash scripts/start-services.sh`).
"""

from __future__ import annotations

import argparse
import inspect
import io
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live import (
    ANNOTATOR_ACTIONS,
    TASK_REQUESTS,
    label_studio_requests,
    relisted_requests,
)
from annotation_pipelines.loop.writeback import write_requests

try:
    from annotation_pipelines.loop.writeback import StateWrite
except ImportError:  # a tree from before live writes named their state versions
    StateWrite = None  # type: ignore[assignment,misc]
from tests.services import fresh_database


def _open_requests(n: int) -> pl.DataFrame:
    now = datetime.now(UTC)
    return pl.DataFrame(
        {
            "task_id": [f"t{i:07d}" for i in range(n)],
            "project": ["p"] * n,
            "request": ["another_judgment"] * n,
            "reason": ["spans: confidence 0.9 < target 0.95 with 3 vote(s)"] * n,
            "confidence": [0.9] * n,
            "posterior": ['{"kind":"spans"}'] * n,
            "decision_id": [f"{i:064x}" for i in range(n)],
            "created_at": [now] * n,
        },
        schema=TASK_REQUESTS,
    )


def relist(n: int) -> None:
    fresh = _open_requests(n)
    buffer = io.BytesIO()
    fresh.write_parquet(buffer)
    previous = buffer.getvalue()
    moved = fresh.with_columns(decision_id=pl.format("x{}", "decision_id"))
    written = moved["decision_id"].head(1000)
    for _ in range(3):
        started = time.process_time()
        table, closed = relisted_requests(moved, previous, None, project="p", written=written)
        relisted = time.process_time() - started
        started = time.process_time()
        label_studio_requests(table)
        listed = time.process_time() - started
        print(
            f"relisted_requests, {n:,} open: {relisted:.3f} s CPU ({len(closed):,} withdrawn); "
            f"writing the list: {listed:.3f} s CPU"
        )


def migrations(calls: int) -> None:
    with fresh_database("bench_requests") as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        apply_schema(dsn)
        started = time.perf_counter()
        for _ in range(calls):
            apply_schema(dsn)
        each = (time.perf_counter() - started) / calls
        print(f"apply_schema on an up-to-date DB: {1e3 * each:.1f} ms per call ({calls} calls)")


def writes(n: int, rounds: int) -> None:
    with fresh_database("bench_requests") as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        apply_schema(dsn)
        held = _open_requests(n)
        none = pl.DataFrame(schema=ANNOTATOR_ACTIONS)

        def version(base: int) -> dict[str, object]:
            if StateWrite is None:
                return {}
            return {"states": [StateWrite("live/p", "p", base, base + 1, keeps=lambda: set())]}

        def stamped(frame: pl.DataFrame) -> pl.DataFrame:
            return frame.with_columns(state=pl.lit("live/p")) if StateWrite else frame

        write_requests(dsn, task_requests=stamped(held), annotator_actions=none, **version(0))
        live, daily = [], []
        for round_ in range(rounds):
            # Each round asks again about a different 1,000 tasks, decided later than before.
            chosen = held.slice(round_ * 2_000, 1_000)
            later = datetime.now(UTC) + timedelta(seconds=round_ + 1)
            new = chosen.with_columns(
                decision_id=pl.format("live{}-{}", pl.lit(round_), "decision_id"),
                created_at=pl.lit(later),
            )
            started = time.perf_counter()
            done = write_requests(
                dsn,
                task_requests=stamped(new),
                annotator_actions=none,
                withdrawn=chosen["decision_id"].to_list(),
                **version(round_ + 1),
            )
            live.append(time.perf_counter() - started)
            assert done["withdrawn"] == 1_000, done
            # The same script times a tree from before the daily write's withdrawals.
            if "settled" not in inspect.signature(write_requests).parameters:
                continue
            asked = held.slice(round_ * 2_000 + 1_000, 1_000).with_columns(
                decision_id=pl.format("daily{}-{}", pl.lit(round_), "decision_id"),
                created_at=pl.lit(later),
            )
            settled = held.slice(n // 2 + round_ * 10_000, 10_000).select("project", "task_id")
            started = time.perf_counter()
            done = write_requests(
                dsn,
                task_requests=asked,
                annotator_actions=none,
                settled=settled,
                decided_at=later,
            )
            daily.append(time.perf_counter() - started)
            assert done["withdrawn"] == 11_000, done
        if StateWrite is not None:
            retry_ms = ", ".join(f"{1e3 * t:.0f}" for t in retries(dsn, held, rounds))
            print(
                f"live retry deciding otherwise, 500 of the first attempt's 1,000 decisions "
                f"withdrawn, {n:,} listed: {retry_ms} ms"
            )
        live_ms = ", ".join(f"{1e3 * t:.0f}" for t in live)
        print(f"live write, 1,000 decisions replacing 1,000 of {n:,} open: {live_ms} ms")
        if daily:
            daily_ms = ", ".join(f"{1e3 * t:.0f}" for t in daily)
            print(
                f"daily write, 1,000 decisions and 10,000 settled tasks of {n:,} open: "
                f"{daily_ms} ms"
            )


def _decided(frame: pl.DataFrame, tag: str) -> pl.DataFrame:
    return frame.with_columns(
        decision_id=pl.format("{}-{}", pl.lit(tag), "decision_id"),
        created_at=pl.lit(datetime.now(UTC)),
        state=pl.lit("live/p"),
    )


def retries(dsn: str, held: pl.DataFrame, rounds: int) -> list[float]:
    """A first attempt of a state version writes 1,000 decisions and never commits; its retry
    decides 500 of them again and 500 others, and lists every open request: the write that
    withdraws the first attempt's other 500 (`_supersede_attempts`), per round."""
    none = pl.DataFrame(schema=ANNOTATOR_ACTIONS)
    times = []
    for round_ in range(rounds):
        base = 100 + 2 * round_
        tasks = held.slice(held.height // 2 + round_ * 2_000, 1_500)
        first = _decided(tasks.head(1_000), f"attempt{round_}")
        retry = pl.concat([first.slice(500), _decided(tasks.tail(500), f"retry{round_}")])
        listed = set(held["decision_id"]) | set(retry["decision_id"])
        write_requests(
            dsn,
            task_requests=first,
            annotator_actions=none,
            states=[StateWrite("live/p", "p", base, base + 1, keeps=lambda: set())],
        )
        started = time.perf_counter()
        done = write_requests(
            dsn,
            task_requests=retry,
            annotator_actions=none,
            states=[StateWrite("live/p", "p", base, base + 1, keeps=lambda ids=listed: ids)],
        )
        times.append(time.perf_counter() - started)
        assert done["task_requests"] == 500 and done["withdrawn"] >= 500, done
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=100_000, help="open requests held")
    parser.add_argument("--calls", type=int, default=20, help="apply_schema calls timed")
    parser.add_argument("--rounds", type=int, default=5, help="request writes timed")
    args = parser.parse_args()
    relist(args.open)
    migrations(args.calls)
    writes(args.open, args.rounds)


if __name__ == "__main__":
    main()
