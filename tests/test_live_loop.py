"""The live loop for real: a PostgreSQL annotation DB, `dagster-daemon` and `dagster-webserver`
on a PostgreSQL instance, judgments arriving.

A simulator thread commits judgments at a steady rate for three minutes; a spammer joins
midway; the daemon is restarted in the middle while the webserver stays up. Measured: a
judgment's commit → its effect on the live posteriors (p95), the spammer's 30th judgment → the
block request in the DB. Checked: every judgment counted exactly once, the live labels agree
with a full Dawid–Skene fit (what the daily aggregation runs) on every task with all its votes,
and the webserver shows what happened (the live sensor running, every live run, the newest
materialization naming the state's final version).

`run_live_loop` is the harness; `benchmarks/bench_live_loop.py` runs it longer and faster.
The test runs the target rate, 200 judgments/s, for three minutes; the benchmark runs longer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
import pytest
import yaml

from annotation_pipelines.aggregation.api import fit
from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live import LiveState, load_state
from tests.services import code_loaded, free_port, fresh_database, graphql, stop_tree, wait_for

pytestmark = [pytest.mark.services, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Workload:
    """What the simulator sends: `rate` judgments/s for `seconds`, a spammer from
    `spammer_from` s (one judgment in 20), the daemon restarted at `restart_at` s."""

    rate: int = 200
    seconds: int = 180
    spammer_from: float = 75
    restart_at: float = 120
    votes: int = 5
    annotators: int = 30


@dataclass(frozen=True)
class LoopResult:
    report: dict[str, object]
    state: LiveState
    judgments_in_db: int
    committed_ids: set[str]
    blocked: list[str]
    requests: tuple[int, int]
    ui: dict[str, object]


class Simulator(threading.Thread):
    """Commits judgments in small transactions at `rate`/s; remembers each commit's time."""

    def __init__(self, dsn: str, workload: Workload) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.workload = workload
        self.commits: list[tuple[str, str, float]] = []  # judgment_id, annotator_id, time
        self.error: BaseException | None = None
        self.rng = np.random.default_rng(5)
        self.skill = self.rng.uniform(0.75, 0.95, workload.annotators)

    def rows(self, start: int, count: int, elapsed: float) -> list[tuple]:
        w = self.workload
        rows = []
        now = datetime.now(UTC)
        for n in range(start, start + count):
            task = n // w.votes
            truth = (task * 7919) % 3
            if elapsed >= w.spammer_from and n % 20 == 0:
                annotator, label = "s00", int(self.rng.integers(0, 3))
            else:
                annotator = f"w{(task * 3 + (n % w.votes) * 7) % w.annotators:02d}"
                right = self.rng.random() < self.skill[int(annotator[1:])]
                label = truth if right else int(self.rng.integers(0, 3))
            rows.append((f"j{n:08d}", f"t{task:07d}", "reviews", annotator, f"c{label}", now, 3.0))
        return rows

    def run(self) -> None:
        w = self.workload
        try:
            with psycopg.connect(self.dsn) as connection:
                started, sent = time.monotonic(), 0
                while (elapsed := time.monotonic() - started) < w.seconds:
                    due = int(elapsed * w.rate) - sent
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
        except BaseException as error:  # reported by the caller
            self.error = error


class LoadSampler(threading.Thread):
    """The machine's 1-minute load average every few seconds (other jobs share the cores)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(5.0):
            self.samples.append(os.getloadavg()[0])


def _daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _webserver(env: dict[str, str], log: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
         "-p", str(port)],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _stop(process: subprocess.Popen) -> None:
    stop_tree(process)


_UI_QUERY = """
query {
  sensorOrError(sensorSelector: {repositoryName: "__repository__",
      repositoryLocationName: "annotation_pipelines", sensorName: "live_quality_sensor"}) {
    ... on Sensor { sensorState { status } }
  }
  runsOrError(filter: {pipelineName: "live_quality_job"}) { ... on Runs { count } }
  assetOrError(assetKey: {path: ["live_quality_state"]}) {
    ... on Asset {
      assetMaterializations(limit: 5) {
        metadataEntries { label ... on JsonMetadataEntry { jsonString } }
      }
    }
  }
}
"""


def _what_the_ui_shows(url: str) -> dict[str, object]:
    """The live sensor's status, the live runs and the newest live state version, as the
    webserver serves them to the UI."""
    data = graphql(url, _UI_QUERY)
    # A run that found nothing new once it had the live lock (a second run queued behind the
    # one that folded the last judgments) materializes with no state versions: the newest
    # version is that of the newest materialization that wrote one.
    versions = {}
    for materialization in data["assetOrError"]["assetMaterializations"]:
        entries = {e["label"]: e.get("jsonString") for e in materialization["metadataEntries"]}
        if versions := json.loads(entries["versions"]):
            break
    return {
        "sensor": data["sensorOrError"]["sensorState"]["status"],
        "runs": data["runsOrError"]["count"],
        "versions": versions,
    }


def _state(lake: Path) -> LiveState:
    return load_state(
        "reviews", lambda key: (lake / key).read_bytes() if (lake / key).exists() else None
    )


def _live_runs(instance_db: str) -> list[tuple]:
    """(status, created, started, ended) of every live run in the instance's run storage,
    oldest first (epoch seconds; started and ended null until then)."""
    dsn = f"postgresql://postgres@127.0.0.1:5432/{instance_db}"
    with psycopg.connect(dsn) as connection:
        return connection.execute(
            "SELECT status, extract(epoch FROM create_timestamp AT TIME ZONE 'UTC'), start_time, "
            "end_time FROM runs WHERE pipeline_name = 'live_quality_job' ORDER BY 2"
        ).fetchall()


def _live_runs_in_flight(instance_db: str) -> int:
    """Live runs the instance has not seen end (queued, starting, started or cancelling)."""
    ended = {"SUCCESS", "FAILURE", "CANCELED"}
    return sum(1 for run in _live_runs(instance_db) if run[0] not in ended)


def _live_runs_by_status(instance_db: str) -> dict[str, int]:
    statuses: dict[str, int] = {}
    for run in _live_runs(instance_db):
        statuses[run[0]] = statuses.get(run[0], 0) + 1
    return statuses


def _launched_runs_in_flight(
    instance_db: str, statuses: tuple[str, ...] = ("STARTING", "STARTED", "CANCELING")
) -> list[str]:
    """Ids of the live runs in `statuses` (by default: past the queue, not ended)."""
    dsn = f"postgresql://postgres@127.0.0.1:5432/{instance_db}"
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT run_id FROM runs WHERE pipeline_name = 'live_quality_job' AND status = ANY(%s)",
            (list(statuses),),
        ).fetchall()
    return [row[0] for row in rows]


_FAIL_ORPHANS = """
import sys
from dagster import DagsterInstance, DagsterRunStatus
ENDED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
with DagsterInstance.get() as instance:
    for run_id in sys.argv[1:]:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status not in ENDED:
            instance.report_run_failed(run, message="its run worker died with the daemon")
            print(run_id)
"""


def _fail_orphans(env: dict[str, str], run_ids: list[str]) -> list[str]:
    """Fail the runs whose workers died with the stopped daemon and that have not ended.

    Production's run monitoring does this: the ECS launcher's health check sees the task gone.
    The default launcher this test runs on has no health check, so a run the restart caught
    past its start would show as running for ever, and the UI would never settle.
    """
    if not run_ids:
        return []
    done = subprocess.run(
        [sys.executable, "-c", _FAIL_ORPHANS, *run_ids],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return done.stdout.split()


def _run_timings(instance_db: str) -> dict[str, object]:
    """Per live run: queued → started (launch: a process importing the code location) and
    started → ended (the work), from the instance's run storage."""
    rows = _live_runs(instance_db)
    launch = [r[2] - float(r[1]) for r in rows if r[2] is not None]
    work = [r[3] - r[2] for r in rows if r[2] is not None and r[3] is not None]

    def q(values: list[float], p: float) -> float | None:
        return round(float(np.quantile(values, p)), 1) if values else None

    return {
        "runs": len(rows),
        "runs_failed": sum(1 for r in rows if r[0] == "FAILURE"),
        "run_launch_p50_s": q(launch, 0.5),
        "run_launch_p95_s": q(launch, 0.95),
        "run_work_p50_s": q(work, 0.5),
        "run_work_p95_s": q(work, 0.95),
    }


def run_live_loop(root: Path, workload: Workload, *, name: str = "live-loop") -> LoopResult:
    """The whole loop once: instance and annotation DB in fresh databases, a daemon, the
    simulator; returns the measurements (also in test-artifacts/<name>.json)."""
    home, data = root / "home", root / "data"
    home.mkdir()
    lake = data / "lake"
    logs = root / "logs"
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
        url = f"http://127.0.0.1:{(port := free_port())}"
        webserver = _webserver(env, logs / "webserver.log", port)
        simulator = Simulator(dsn, workload)
        load = LoadSampler()
        try:
            # Warm: the first rows reach the live state through the sensor and a run.
            with psycopg.connect(dsn) as connection:
                connection.execute(
                    "INSERT INTO judgments VALUES "
                    "('warm', 'warm', 'reviews', 'w00', 'c0', now(), 1)"
                )
                connection.commit()
            wait_for(
                lambda: (lake / "live" / "reviews" / "state.json").exists(),
                timeout=180,
                what=f"the first live run; daemon log:\n{log.read_text()[-3000:]}",
            )
            load.start()
            simulator.start()
            time.sleep(workload.restart_at)
            # Restart while a run is launching: its worker dies with the daemon before it can
            # record anything, its rows go to the next runs, and it is left for run monitoring.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if _launched_runs_in_flight(instance_db, ("STARTING",)):
                    break
                time.sleep(0.1)
            restart = (time.time(), None)
            _stop(daemon)
            orphans = _launched_runs_in_flight(instance_db)
            daemon = _daemon(env, log)
            restart = (restart[0], time.time())
            simulator.join(timeout=workload.seconds + 30)
            assert simulator.error is None, simulator.error
            ids = {row[0] for row in simulator.commits} | {"warm"}

            def caught_up() -> LiveState | None:
                # Read straight from the folder while runs may commit: a segment the state
                # names can be merged away under the reader, and the next poll reads again.
                try:
                    state = _state(lake)
                except FileNotFoundError:
                    return None
                return state if set(state.ledger["judgment_id"]) >= ids else None

            wait_for(
                caught_up, timeout=180, what="the live state to hold every judgment", interval=2.0
            )
            # The run that folded the last judgments may still be recording its materialization
            # after its lake commit (seen at load 7); the UI is read once every run has ended.
            # No run is launched after this, so the UI and the run storage read the same runs.
            orphans = _fail_orphans(env, orphans)
            wait_for(
                lambda: _live_runs_in_flight(instance_db) == 0,
                timeout=180,
                what=f"the last live runs to end: {_live_runs_by_status(instance_db)}",
                interval=1.0,
            )
            state = _state(lake)
            _stop(daemon)
            wait_for(lambda: code_loaded(url), timeout=120, what="the webserver to load the code")
            ui = _what_the_ui_shows(url)
        finally:
            load.stopped.set()
            _stop(daemon)
            _stop(webserver)
            ARTIFACTS.mkdir(exist_ok=True)
            for path in logs.iterdir():
                (ARTIFACTS / f"{name}-{path.name}").write_bytes(path.read_bytes())
        timings = _run_timings(instance_db)
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

    commits = pl.DataFrame(
        simulator.commits, schema=["judgment_id", "annotator_id", "committed"], orient="row"
    )
    applied = state.ledger.join(state.versions, on="version").select(
        "judgment_id", applied=pl.col("applied_at").dt.epoch("us") / 1e6
    )
    latency = commits.join(applied, on="judgment_id").with_columns(
        seconds=pl.col("applied") - pl.col("committed")
    )
    # The restart kills the runs on their way with the daemon: the commits no run folded
    # before it (after the last watermark applied before the restart) wait for the new daemon,
    # as do those of its first minute. The rest is the steady state.
    before = state.versions.filter(pl.col("applied_at").dt.epoch("us") / 1e6 < restart[0])
    folded_until = before["watermark"].max()
    cut = folded_until.timestamp() if isinstance(folded_until, datetime) else restart[0]
    outside = latency.filter((pl.col("committed") < cut) | (pl.col("committed") > restart[1] + 60))
    spam = commits.filter(pl.col("annotator_id") == "s00").sort("committed")
    block_seconds = (
        float(blocks[0][1]) - float(spam["committed"][29]) if blocks and spam.height >= 30 else None
    )
    report: dict[str, object] = {
        "judgments": in_db,
        "rate_per_s": workload.rate,
        "seconds": workload.seconds,
        "latency_p50_s": round(float(latency["seconds"].median()), 1),
        "latency_p95_s": round(float(latency["seconds"].quantile(0.95)), 1),
        "latency_p95_outside_restart_s": round(float(outside["seconds"].quantile(0.95)), 1),
        "judgments_outside_restart": outside.height,
        "restart_down_s": round(restart[1] - restart[0], 1),
        "latency_max_s": round(float(latency["seconds"].max()), 1),
        "spammer_30th_to_block_s": None if block_seconds is None else round(block_seconds, 1),
        "spammer_from_s": workload.spammer_from,
        "restart_at_s": workload.restart_at,
        "task_requests": requests[0],
        "versions": state.version,
        "agreement_with_full_fit": round(_agreement_with_full_fit(state, database, workload), 4),
        **timings,
        "runs_orphaned_by_restart": len(orphans),
        "load_average_1m_mean": round(float(np.mean(load.samples)), 2) if load.samples else None,
        "load_average_1m_max": round(float(np.max(load.samples)), 2) if load.samples else None,
        "cores": os.cpu_count(),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(report, indent=1))
    return LoopResult(
        report=report,
        state=state,
        judgments_in_db=in_db,
        committed_ids=ids,
        blocked=[b[0] for b in blocks],
        requests=(requests[0], requests[1]),
        ui=ui,
    )


def _agreement_with_full_fit(state: LiveState, database: pl.DataFrame, workload: Workload) -> float:
    """Share of tasks with all their votes where the live label is the full fit's label."""
    full = fit(database, "dawid_skene").labels.select("task_id", full=pl.col("label"))
    complete = database.group_by("task_id").agg(n=pl.len()).filter(pl.col("n") >= workload.votes)
    both = state.tasks.join(full, on="task_id").join(complete, on="task_id")
    return float((both["label"] == both["full"]).mean())


def test_judgments_reach_the_live_state_within_a_minute_and_a_spammer_is_blocked(tmp_path):
    result = run_live_loop(tmp_path, Workload())
    state, report = result.state, result.report
    print(json.dumps(report))
    # Exactly once: every committed judgment in the ledger once, no other, none counted twice.
    assert state.ledger.height == result.judgments_in_db == len(result.committed_ids)
    assert state.ledger["judgment_id"].n_unique() == result.judgments_in_db
    flagged = int(state.ledger["flagged"].sum())
    assert int(state.tasks["n_votes"].sum()) + flagged == result.judgments_in_db
    assert result.blocked == ["s00"], result.blocked
    assert result.requests[0] == result.requests[1]
    assert report["latency_p95_outside_restart_s"] <= 60, report
    assert report["spammer_30th_to_block_s"] <= 120, report
    assert report["agreement_with_full_fit"] >= 0.97, report
    # The UI saw it too: the sensor running, every live run, the state's final version.
    assert result.ui == {
        "sensor": "RUNNING",
        "runs": report["runs"],
        "versions": {"reviews": state.version},
    }, (result.ui, report)
