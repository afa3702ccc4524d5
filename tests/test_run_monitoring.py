"""Run monitoring as shipped in dagster.yaml: a run whose process is SIGKILLed while it holds
`daily_layers` slots is failed by the monitoring daemon, its slots are freed, and a run that
was waiting for them proceeds — and the landing sensor retries an ingest whose run died.

Real pieces only: a SQLite instance from the project's dagster.yaml (timeouts shortened), a real
`dagster-daemon`, runs in their own processes, and SIGKILL.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from tests.services import stop_tree, wait_for

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

JOBS = """
import os, time
from dagster import job, op

@op(pool="daily_layers")
def hold_slot():
    if os.environ.get("HOLD"):
        open(os.environ["HOLD"], "w").close()
        time.sleep(600)

@job(tags={"dagster/max_runtime": os.environ.get("MAX_RUNTIME", "0") or "0"})
def pooled():
    hold_slot()
"""
RUN = """
import sys
sys.path.insert(0, sys.argv[1])
from dagster import DagsterInstance
from jobs import pooled
with DagsterInstance.get() as instance:
    pooled.execute_in_process(instance=instance, raise_on_error=False)
"""


def test_killed_runs_free_their_pool_slots_and_the_next_run_proceeds(tmp_path):
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"] is True
    assert config["concurrency"]["pools"]["default_limit"] == 2
    # The shipped values, shortened so the test takes seconds, not minutes.
    config["run_monitoring"] |= {"poll_interval_seconds": 1, "free_slots_after_run_end_seconds": 1}
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "jobs.py").write_text(JOBS)
    env = {**os.environ, "DAGSTER_HOME": str(home)}

    def start(**extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", RUN, str(tmp_path)],
            cwd=tmp_path,
            env={**env, **extra},
            start_new_session=True,
        )

    # Created first: it creates the SQLite schema, which the daemon and the first run starting
    # at once would race to create (one of them stamping an old revision).
    instance = DagsterInstance.from_config(str(home))
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-f", str(tmp_path / "jobs.py")],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "daemon.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    workers = []
    try:
        # Two runs take both slots of the pool, then their processes are killed.
        for number in range(2):
            marker = tmp_path / f"holding-{number}"
            workers.append(start(HOLD=str(marker), MAX_RUNTIME="3"))
            wait_for(marker.exists, timeout=180, what=f"run {number} to hold a slot")
        for worker in workers:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        # Their processes are gone, so nothing but the monitoring daemon can end these runs.
        killed = instance.get_runs(RunsFilter(job_name="pooled"))
        assert len(killed) == 2 and not any(
            run.status == DagsterRunStatus.SUCCESS for run in killed
        )

        started = time.monotonic()
        waiting = start()
        workers.append(waiting)
        wait_for(
            lambda: waiting.poll() is not None,
            timeout=180,
            what="the third run to get a slot and finish",
        )
        elapsed = time.monotonic() - started

        def statuses() -> list[str]:
            return sorted(
                run.status.value for run in instance.get_runs(RunsFilter(job_name="pooled"))
            )

        # The next run proceeds once one slot is free; the monitor fails the other killed run on
        # its own next poll, so the final state is awaited (bounded) rather than sampled.
        wait_for(
            lambda: statuses() == ["FAILURE", "FAILURE", "SUCCESS"],
            timeout=60,
            what="both killed runs to be marked failed",
        )
        print(f"next run finished {elapsed:.1f} s after two killed runs held the pool")
    finally:
        for process in [*workers, daemon]:
            stop_tree(process, grace=0.0)
        instance.dispose()
