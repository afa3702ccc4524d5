"""The first live runs after an outage, against a real PostgreSQL DB: the backlog (five times a
run's row cap, `ANNOTATION_PIPELINES_LIVE_MAX_ROWS`) is read in slices, each run reading at most
the cap plus the rows stamped at its slice's last moment, committing its position, and the sensor
launching the next while changes remain; every judgment is folded exactly once, rows sharing
the boundary's `updated_at` are never split, and a tombstone is read in the slice of its
`deleted_at`, after its row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import apply_schema, seed_database, slice_end
from annotation_pipelines.loop.live import load_state
from tests.loop.test_live_writeback import QUIET, _tick
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
CAP = 1000
N = 5 * CAP
PROJECT = "reviews"


def _backlog(start: datetime) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    task = np.repeat(np.arange(N // 10), 10)
    truth = rng.integers(0, 3, task.max() + 1)
    right = rng.random(N) < 0.8
    return pl.DataFrame(
        {
            "judgment_id": [f"j{i:05d}" for i in range(N)],
            "task_id": [f"t{t:04d}" for t in task],
            # Ten different annotators per task: none votes twice on one.
            "annotator_id": [f"w{(t * 7 + i % 10) % 40:02d}" for i, t in enumerate(task)],
            "label": [f"c{x}" for x in np.where(right, truth[task], rng.integers(0, 3, N))],
            "project": PROJECT,
            "duration_s": 4.0,
        }
    ).with_columns(submitted_at=pl.lit(start) + pl.duration(milliseconds=pl.int_range(N) * 100))


def test_a_backlog_is_caught_up_in_bounded_slices_each_judgment_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_LIVE_MAX_ROWS", str(CAP))
    start = datetime.now(UTC) - timedelta(hours=2)
    rows = _backlog(start)
    deleted = ["j00100", "j02500", "j04900"]
    with fresh_database("live_backlog") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        seed_database(
            dsn,
            judgments=rows,
            label_sets={PROJECT: ["c0", "c1", "c2"]},
            assignments=False,
            updated_at=start - timedelta(minutes=1),
        )
        with psycopg.connect(dsn, autocommit=True) as connection:
            # Each judgment stamped as if submitted then; 300 of them (around the first
            # slice's end) share one stamp, which no slice may split.
            connection.execute("UPDATE judgments SET updated_at = submitted_at")
            connection.execute(
                "UPDATE judgments SET updated_at = %s "
                "WHERE judgment_id BETWEEN 'j00400' AND 'j00699'",
                (start + timedelta(seconds=69.9),),
            )
            # Rows deleted during the outage, each 20 s after it was written: tombstones
            # inside the backlog, of rows no run reads (gone before any did).
            connection.execute("DELETE FROM judgments WHERE judgment_id = ANY(%s)", (deleted,))
            for judgment in deleted:
                connection.execute(
                    "UPDATE judgment_deletions SET deleted_at = updated_at + interval '20 seconds' "
                    "WHERE judgment_id = %s",
                    (judgment,),
                )
            stamps = [
                row[0]
                for row in connection.execute(
                    "SELECT updated_at FROM judgments UNION ALL SELECT updated_at FROM tasks "
                    "UNION ALL SELECT updated_at FROM gold_labels "
                    "UNION ALL SELECT deleted_at FROM judgment_deletions"
                ).fetchall()
            ]
        # The slice's end is a stamp: the CAP-th change, ties included after it.
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        far = datetime.now(UTC) + timedelta(days=1)
        first_end = slice_end(dsn, since=epoch, until=far, max_rows=CAP)
        assert first_end == sorted(stamps)[CAP - 1]
        assert slice_end(dsn, since=epoch, until=far, max_rows=len(stamps) + 1) is None

        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        read = lake_reader(tmp_path / "data" / "lake")
        runs = []
        for _ in range(20):
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            metadata = first_metadata(result)
            until = datetime.fromisoformat(metadata["watermark"])
            previous = runs[-1][0] if runs else epoch
            # What this slice reads new: the changes in (previous, until]; at most the cap
            # plus those stamped at `until` itself.
            window = [s for s in stamps if previous < s <= until]
            at_end = sum(s == until for s in stamps)
            assert metadata["db_rows_read"] <= CAP + at_end
            assert len(window) <= CAP + at_end
            runs.append((until, metadata))
            if not metadata["backlog_remains"]:
                break
            # While a backlog remains the sensor asks for the next run at once.
            assert _tick(defs, instance).run_requests
            if len(runs) == 2:
                # The tool deletes a judgment the first slice folded: its tombstone (stamped
                # now, after the whole backlog) is read by the last slice only.
                with psycopg.connect(dsn, autocommit=True) as connection:
                    connection.execute("DELETE FROM judgments WHERE judgment_id = 'j00150'")
                    (stamp,) = connection.execute(
                        "SELECT deleted_at FROM judgment_deletions WHERE judgment_id = 'j00150'"
                    ).fetchone()
                stamps.append(stamp)
        assert len(runs) >= 5
        assert [m["backlog_remains"] for _, m in runs] == [True] * (len(runs) - 1) + [False]
        # The CAP-th change is one of the 300 sharing a stamp: the first slice ends on that
        # stamp and reads all 300 (500 tasks, 400 + 300 judgments, one of them deleted).
        assert runs[0][0] == first_end == start + timedelta(seconds=69.9)
        assert runs[0][1]["db_rows_read"] == 500 + 700 - 1

        state = load_state(PROJECT, read)
        held = state.ledger.get_column("judgment_id")
        expected = set(rows["judgment_id"]) - set(deleted) - {"j00150"}
        assert held.n_unique() == held.len() == len(expected)
        assert set(held) == expected
        assert sum(m["new_judgments"] for _, m in runs) == N - len(deleted)
        assert [m["withdrawn_judgments"] for _, m in runs] == [0] * (len(runs) - 1) + [1]
        assert state.tasks["n_votes"].sum() <= state.ledger.height

        # Caught up: the next run reads nothing new.
        last = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert last["new_judgments"] == 0 and not last["backlog_remains"]
