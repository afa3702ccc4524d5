"""`make backfill`: a multi-day backfill from the command line, run by the daemon.

Real pieces only: a SQLite instance from the project's dagster.yaml (dequeue interval
shortened), a small synthetic workload in the landing zone, the Makefile target, and a real
`dagster-daemon` on the project's code location (workspace.yaml) that runs the queued runs.
"""

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from annotation_pipelines.synthetic import generate_workload
from tests.services import stop_tree, wait_for
from tests.support import quick_queue_home

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DONE = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
# Two days are enough to tell one run per day from one run for the range.
DAYS = ["2026-11-29", "2026-11-30"]


def _all_done(instance: DagsterInstance) -> list | None:
    runs = instance.get_runs()
    return runs if all(run.status in DONE for run in runs) else None


@pytest.mark.e2e
def test_make_backfill_queues_one_run_per_day_and_the_daemon_builds_them(tmp_path):
    # `dagster asset materialize --partition-range` refuses per-day backfill policies, so the
    # Makefile's target is the command-line way to backfill several days.
    home, data = quick_queue_home(tmp_path, root=ROOT)
    generate_workload(
        data / "landing" / "synthetic",
        judgments=600,
        start=date(2026, 11, 29),
        days=2,
        seed=7,
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "ANNOTATION_DB_DSN"},
        "ANNOTATION_PIPELINES_DATA_DIR": str(data),
        "ANNOTATION_PIPELINES_START_DATE": DAYS[0],
        "ANNOTATION_PIPELINES_PSEUDONYM_KEY": "backfill-test-key",
    }
    instance = DagsterInstance.from_config(str(home))
    usage = subprocess.run(
        ["make", "--no-print-directory", "backfill", f"DAGSTER_HOME={home}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert usage.returncode == 2 and b"usage: make backfill FROM=" in usage.stderr
    days = [f"FROM={DAYS[0]}", f"TO={DAYS[-1]}"]
    queued = subprocess.run(
        ["make", "--no-print-directory", "backfill", *days, f"DAGSTER_HOME={home}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=180,
    )
    assert queued.returncode == 0, queued.stderr.decode()[-3000:]
    runs = instance.get_runs()
    assert sorted(run.tags["dagster/partition"] for run in runs) == DAYS
    assert {run.job_name for run in runs} == {"daily_annotation_job"}
    assert len({run.tags["dagster/backfill"] for run in runs}) == 1

    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env={**env, "DAGSTER_HOME": str(home)},
        stdout=(tmp_path / "daemon.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        finished = wait_for(
            lambda: _all_done(instance),
            timeout=600,
            what="the backfill's runs to finish",
            interval=2,
        )
    finally:
        stop_tree(daemon)
    assert {run.status for run in finished} == {DagsterRunStatus.SUCCESS}, (
        tmp_path / "daemon.log"
    ).read_text()[-3000:]
    for day in DAYS:
        judged = pl.read_parquet(data / "lake" / "judgments" / f"day={day}" / "data.parquet")
        assert judged.height > 0, day
        assert (data / "lake" / "quality_report" / f"day={day}" / "data.parquet").exists(), day


def test_make_backfill_refuses_a_range_that_is_not_one_of_daily_partitions_naming_why(tmp_path):
    """Dagster's own answers named neither the range's rule nor the setting behind it: a
    reversed range ended in `ValueError: max() arg is an empty sequence`, a day before the
    start date or not yet ended in `invalid value 2026-08-01 for from`."""
    home, data = quick_queue_home(tmp_path, root=ROOT)
    env = {
        **{k: v for k, v in os.environ.items() if k != "ANNOTATION_DB_DSN"},
        "ANNOTATION_PIPELINES_DATA_DIR": str(data),
        "ANNOTATION_PIPELINES_START_DATE": "2026-09-01",
    }
    cases = {
        ("2026-11-05", "2026-11-02"): "FROM=2026-11-05 is after TO=2026-11-02",
        ("2026-08-31", "2026-09-02"): (
            "FROM=2026-08-31 is before the first daily partition, 2026-09-01 "
            "(ANNOTATION_PIPELINES_START_DATE)"
        ),
        ("2026-11-02", "2999-01-01"): "TO=2999-01-01 is after the last daily partition",
        ("2026-11-2", "2026-11-03"): "FROM=2026-11-2: expected YYYY-MM-DD",
    }
    for (start, end), message in cases.items():
        command = ["make", "--no-print-directory", "backfill", f"FROM={start}", f"TO={end}"]
        refused = subprocess.run(
            [*command, f"DAGSTER_HOME={home}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert refused.returncode == 2, refused.stderr.decode()[-2000:]
        assert message in refused.stderr.decode(), refused.stderr.decode()[-2000:]
    assert DagsterInstance.from_config(str(home)).get_runs() == []
