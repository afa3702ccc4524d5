"""What reading the tool's block reversals adds to every live run.

Each live run calls `apply_schema` (a no-op on an up-to-date DB) and reads the revoked blocks
changed in the change stream's window on `annotator_actions_updated_at`. Measured on a table of
`--blocks` block rows of which a tenth are revoked: a quiet window (no reversal in it, the
usual run) and a first run, whose window starts at the epoch and reads every reversal. And
the sensor's probe of a quiet window (`changed_rows`), which now asks for revoked blocks too
when no judgment or gold label changed, against its judgments and gold query alone.

Usage: .venv/bin/python benchmarks/bench_live_reversals.py [--blocks 10000] [--calls 50]
(needs PostgreSQL on 127.0.0.1:5432; `bash scripts/start-services.sh`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.ingest.connection import connect
from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.writeback import changed_rows, read_reversals
from tests.services import fresh_database

OVERLAP = timedelta(seconds=30)


def _judgments_gold(dsn: str, since: datetime, until: datetime) -> None:
    # The probe as it was before reversals: one connection, one query.
    with connect(dsn, autocommit=True) as connection:
        connection.execute(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM judgments WHERE updated_at > %(s)s "
            "AND updated_at <= %(u)s LIMIT 10000) j) + (SELECT count(*) FROM (SELECT 1 FROM "
            "gold_labels WHERE updated_at > %(s)s AND updated_at <= %(u)s LIMIT 10000) g)",
            {"s": since, "u": until},
        ).fetchone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with fresh_database("bench_reversals") as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        apply_schema(dsn)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO annotator_actions (annotator_id, project, action, reason, evidence, "
                "decision_id) SELECT 'a' || i, 'p', 'block', 'r', '{}'::jsonb, 'd' || i "
                "FROM generate_series(1, %s) i",
                (args.blocks,),
            )
            connection.execute(
                "UPDATE annotator_actions SET status = 'revoked', revoked_at = now(), "
                "revoked_by = 'lead' WHERE action_id % 10 = 0"
            )
            connection.execute("ANALYZE annotator_actions")
        # A quiet window starts after every change and its overlap.
        later = datetime.now(UTC) + OVERLAP + timedelta(seconds=5)
        windows = {
            "quiet window": (later, later + timedelta(seconds=5)),
            "first run": (datetime(1970, 1, 1, tzinfo=UTC), later),
        }
        for label, (since, until) in windows.items():
            walls = []
            for _ in range(args.calls):
                start = time.perf_counter()
                apply_schema(dsn)
                rows = read_reversals(dsn, since=since, until=until, overlap=OVERLAP)
                walls.append(time.perf_counter() - start)
            walls.sort()
            p95 = walls[max(0, round(0.95 * len(walls)) - 1)]
            print(
                f"{label}: {rows.height} reversal(s) read; apply_schema + read_reversals "
                f"mean {statistics.mean(walls) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"
            )
        since, until = windows["quiet window"]
        probes = {
            "changed_rows (with revoked blocks)": lambda: changed_rows(
                dsn, since=since, until=until
            ),
            "judgments and gold query alone": lambda: _judgments_gold(dsn, since, until),
        }
        for label, probe in probes.items():
            walls = []
            for _ in range(args.calls):
                start = time.perf_counter()
                probe()
                walls.append(time.perf_counter() - start)
            print(f"quiet probe, {label}: mean {statistics.mean(walls) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
