"""The live loop for real: a PostgreSQL annotation DB, `dagster-daemon`, judgments arriving.

A simulator thread commits judgments at a steady rate for two minutes; a spammer joins
midway; the daemon is restarted in the middle. Measured: a judgment's commit → its effect on
the live posteriors (p95), the spammer's 30th judgment → the block request in the DB. Checked:
every judgment counted exactly once, and the live labels agree with a full Dawid–Skene fit
(what the daily aggregation runs) on every task with all its votes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
import pytest
import yaml

from annotation_pipelines.aggregation.api import fit
from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live import load_state
from tests.services import fresh_database

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
BIN = Path(sys.executable).parent
RATE = 100  # judgments per second
SECONDS = 120
SPAMMER_FROM = 45  # seconds into the stream
RESTART_AT = 60
VOTES = 5
N_ANNOTATORS = 30


class Simulator(threading.Thread):
    """Commits judgments in small transactions at `RATE`/s; remembers each commit's time."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.commits: list[tuple[str, str, float]] = []  # judgment_id, annotator_id, time
        self.error: BaseException | None = None
        self.rng = np.random.default_rng(5)
        self.skill = self.rng.uniform(0.75, 0.95, N_ANNOTATORS)

    def rows(self, start: int, count: int, elapsed: float) -> list[tuple]:
        rows = []
        for n in range(start, start + count):
            task = n // VOTES
            truth = (task * 7919) % 3
            if elapsed >= SPAMMER_FROM and n % 20 == 0:
                annotator, label = "s00", int(self.rng.integers(0, 3))
            else:
                annotator = f"w{(task * 3 + (n % VOTES) * 7) % N_ANNOTATORS:02d}"
                right = self.rng.random() < self.skill[int(annotator[1:])]
                label = truth if right else int(self.rng.integers(0, 3))
            now = datetime.now(UTC)
            rows.append((f"j{n:07d}", f"t{task:06d}", "reviews", annotator, f"c{label}", now, 3.0))
        return rows

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn) as connection:
                started, sent = time.monotonic(), 0
                while (elapsed := time.monotonic() - started) < SECONDS:
                    due = int(elapsed * RATE) - sent
                    if due <= 0:
                        time.sleep(0.05)
                        continue
                    rows = self.rows(sent, due, elapsed)
                    with connection.cursor() as cursor:
                        cursor.executemany(
                            "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, "
                            "label, submitted_at, duration_s) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            rows,
                        )
                    connection.commit()
                    committed = time.time()
                    self.commits.extend((r[0], r[3], committed) for r in rows)
                    sent += due
        except BaseException as error:  # reported by the test
            self.error = error


def _daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _wait(predicate, *, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _state(lake: Path):
    return load_state(
        "reviews", lambda key: (lake / key).read_bytes() if (lake / key).exists() else None
    )


def test_judgments_reach_the_live_state_within_a_minute_and_a_spammer_is_blocked(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    lake = data / "lake"
    logs = tmp_path / "logs"
    logs.mkdir()
    with fresh_database("live_loop_dagster") as instance_db, fresh_database("live_loop_db") as db:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{db}"
        apply_schema(dsn)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO projects (project, label_set) VALUES ('reviews', '{c0,c1,c2}')"
            )
        config = yaml.safe_load((ROOT / "dagster.production.yaml").read_text())
        config["run_launcher"] = {"module": "dagster.core.launcher", "class": "DefaultRunLauncher"}
        config.pop("compute_logs")
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": "5432",
            "DAGSTER_PG_USERNAME": "postgres",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": instance_db,
            "ANNOTATION_PIPELINES_DATA_DIR": str(data),
            "ANNOTATION_PIPELINES_PSEUDONYM_KEY": "live-loop-key",
            "ANNOTATION_DB_DSN": dsn,
        }
        log = logs / "daemon.log"
        daemon = _daemon(env, log)
        simulator = Simulator(dsn)
        try:
            # Warm: the first rows reach the live state through the sensor and a run.
            with psycopg.connect(dsn) as connection:
                connection.execute(
                    "INSERT INTO judgments VALUES "
                    "('warm', 'warm', 'reviews', 'w00', 'c0', now(), 1)"
                )
                connection.commit()
            _wait(
                lambda: (lake / "live" / "reviews" / "state.json").exists(),
                timeout=180,
                what=f"the first live run; daemon log:\n{log.read_text()[-3000:]}",
            )
            simulator.start()
            time.sleep(RESTART_AT)
            restart = (time.time(), None)
            _stop(daemon)
            daemon = _daemon(env, log)
            restart = (restart[0], time.time())
            simulator.join(timeout=SECONDS + 30)
            assert simulator.error is None, simulator.error
            ids = {row[0] for row in simulator.commits} | {"warm"}

            def caught_up():
                state = _state(lake)
                return state if set(state.ledger["judgment_id"]) >= ids else None

            state = _wait(caught_up, timeout=120, what="the live state to hold every judgment")
        finally:
            _stop(daemon)
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "live-loop-daemon.log").write_bytes(log.read_bytes())
        with psycopg.connect(dsn) as connection:
            in_db = connection.execute("SELECT count(*) FROM judgments").fetchone()[0]
            blocks = connection.execute(
                "SELECT annotator_id, extract(epoch FROM updated_at) FROM annotator_actions"
            ).fetchall()
            requests = connection.execute(
                "SELECT count(*), count(DISTINCT decision_id) FROM task_requests"
            ).fetchone()
            database = pl.DataFrame(
                connection.execute("SELECT task_id, annotator_id, label FROM judgments").fetchall(),
                schema=["task_id", "annotator_id", "label"],
                orient="row",
            )

    # Exactly once: every committed judgment in the ledger once, no other, none counted twice.
    assert state.ledger.height == in_db == len(ids)
    assert state.ledger["judgment_id"].n_unique() == in_db
    flagged = int(state.ledger["flagged"].sum())
    assert int(state.tasks["n_votes"].sum()) + flagged == in_db

    commits = pl.DataFrame(
        simulator.commits, schema=["judgment_id", "annotator_id", "committed"], orient="row"
    )
    applied = state.ledger.join(state.versions, on="version").select(
        "judgment_id", applied=pl.col("applied_at").dt.epoch("us") / 1e6
    )
    latency = commits.join(applied, on="judgment_id").with_columns(
        seconds=pl.col("applied") - pl.col("committed")
    )
    outside = latency.filter(
        (pl.col("committed") < restart[0]) | (pl.col("committed") > restart[1] + 60)
    )
    p95_all = float(latency["seconds"].quantile(0.95))
    p95_outside = float(outside["seconds"].quantile(0.95))

    spam = commits.filter(pl.col("annotator_id") == "s00").sort("committed")
    assert [b[0] for b in blocks] == ["s00"], blocks
    block_seconds = float(blocks[0][1]) - float(spam["committed"][29])
    agreement = _agreement_with_full_fit(state, database)
    report = {
        "judgments": in_db,
        "rate_per_s": RATE,
        "latency_p50_s": round(float(latency["seconds"].median()), 1),
        "latency_p95_s": round(p95_all, 1),
        "latency_p95_outside_restart_s": round(p95_outside, 1),
        "latency_max_s": round(float(latency["seconds"].max()), 1),
        "spammer_30th_to_block_s": round(block_seconds, 1),
        "task_requests": requests[0],
        "versions": state.version,
        "agreement_with_full_fit": round(agreement, 4),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "live-loop.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    assert requests[0] == requests[1]
    assert p95_outside <= 60, report
    assert block_seconds <= 120, report
    assert agreement >= 0.97, report


def _agreement_with_full_fit(state, database: pl.DataFrame) -> float:
    """Share of tasks with all their votes where the live label is the full fit's label."""
    full = fit(database, "dawid_skene").labels.select("task_id", full=pl.col("label"))
    complete = database.group_by("task_id").agg(n=pl.len()).filter(pl.col("n") >= VOTES)
    both = state.tasks.join(full, on="task_id").join(complete, on="task_id")
    return float((both["label"] == both["full"]).mean())
