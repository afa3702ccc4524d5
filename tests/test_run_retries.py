"""Run retries as shipped in dagster.yaml: a failed live-layer run is launched again by the
daemon, without the live sensor, and a retry after the fault is gone succeeds.

Real pieces only: a SQLite instance from the project's dagster.yaml (daemon intervals
shortened), a real `dagster-daemon` on the project's code location (workspace.yaml), a
`live_kind_fit_job` run launched through the instance with `dagster job launch`, and a kind
state whose `state.json` is corrupt in the lake until the test repairs it.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from annotation_pipelines.loop.live_kinds import kind_prefix
from assets.live.compaction import live_compaction_job
from assets.live.jobs import LIVE_MAX_RETRIES, live_quality_job
from assets.live.kind_fits import live_kind_fit_job
from tests.services import stop_tree, wait_for
from tests.support import quick_queue_home

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DONE = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def test_both_instances_retry_only_the_live_jobs():
    for name in ("dagster.yaml", "dagster.production.yaml"):
        config = yaml.safe_load((ROOT / name).read_text())
        # Enabled for the daemon, but no job is retried unless its tags ask for it.
        assert config["run_retries"] == {"enabled": True, "max_retries": 0}, name
    for job in (live_quality_job, live_compaction_job, live_kind_fit_job):
        assert job.tags["dagster/max_retries"] == str(LIVE_MAX_RETRIES) == "2", job.name
        assert job.tags["dagster/retry_on_asset_or_op_failure"] == "true", job.name


def test_the_daemon_retries_a_failed_kind_fit_run_until_it_succeeds(tmp_path):
    home, data = quick_queue_home(tmp_path, root=ROOT)
    state = data / "lake" / kind_prefix("reviews", "text") / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    env = {
        **{k: v for k, v in os.environ.items() if k != "ANNOTATION_DB_DSN"},
        "DAGSTER_HOME": str(home),
        "ANNOTATION_PIPELINES_DATA_DIR": str(data),
        "ANNOTATION_PIPELINES_PSEUDONYM_KEY": "retry-test-key",
        # The run-retry daemon polls the event log every 5 s by default.
        "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",
    }
    # Created first: it creates the SQLite schema, which the daemon and the CLI starting at
    # once would race to create (one of them stamping an old revision).
    instance = DagsterInstance.from_config(str(home))
    started = time.monotonic()
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "daemon.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        run_config = {"ops": {"fit_kind_states": {"config": {"states": ["reviews/text"]}}}}
        launch = [str(BIN / "dagster"), "job", "launch", "-w", "workspace.yaml"]
        launch += ["-j", live_kind_fit_job.name, "--config-json", json.dumps(run_config)]
        launched = subprocess.run(launch, cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert launched.returncode == 0, launched.stderr.decode()[-3000:]
        # The launched run, not a retry of it: on a loaded machine the daemon can already have
        # failed and retried it while the launch command was still shutting down.
        runs = instance.get_runs(RunsFilter(job_name=live_kind_fit_job.name))
        roots = [run for run in runs if "dagster/parent_run_id" not in run.tags]
        assert len(roots) == 1, [(run.run_id, run.status, run.tags) for run in runs]
        [first] = roots

        failed = wait_for(
            lambda: (run := instance.get_run_by_id(first.run_id)) and run.status in DONE and run,
            timeout=120,
            what="the launched run to fail",
        )
        assert failed.status == DagsterRunStatus.FAILURE
        # An op that raised, which the jobs' tags ask to retry whatever the instance default.
        assert failed.tags["dagster/failure_reason"] == "STEP_FAILURE"
        # The fault passes; nothing but the run-retry daemon can launch the job again.
        state.unlink()

        def retried() -> list:
            return instance.get_runs(RunsFilter(tags={"dagster/root_run_id": first.run_id}))

        try:
            wait_for(
                lambda: any(run.status == DagsterRunStatus.SUCCESS for run in retried()),
                timeout=120,
                what=f"a retry of {first.run_id} to succeed (see {tmp_path / 'daemon.log'})",
            )
        except AssertionError as error:
            # What the daemon decided lives in the instance, which pytest's temporary folder
            # does not keep for long: the failure says it.
            original = instance.get_run_by_id(first.run_id)
            tags = {k: v for k, v in (original.tags if original else {}).items() if "retr" in k}
            events = [
                record.event_log_entry.user_message
                for record in instance.get_records_for_run(
                    first.run_id, of_type=DagsterEventType.ENGINE_EVENT
                ).records
            ]
            runs = [(run.run_id, run.status.value) for run in retried()]
            detail = f"retry tags {tags}; runs {runs}; engine events {events}"
            raise AssertionError(f"{error}; {detail}") from None
        elapsed = time.monotonic() - started
        retries = sorted(retried(), key=lambda run: int(run.tags["dagster/retry_number"]))
        retry = retries[0]
        assert retry.job_name == live_kind_fit_job.name
        assert retry.tags["dagster/parent_run_id"] == first.run_id
        assert retry.tags["dagster/retry_number"] == "1"
        assert retry.run_config == failed.run_config
        original = instance.get_run_by_id(first.run_id)
        assert original.tags["dagster/will_retry"] == "true"
        assert original.tags["dagster/auto_retry_run_id"] == retry.run_id
        # The state is repaired as soon as the run is seen failed, normally before its retry
        # starts; a retry that started first fails too, and the budget leaves a second one.
        assert len(retries) <= LIVE_MAX_RETRIES
        assert retries[-1].status == DagsterRunStatus.SUCCESS
        print(f"{len(retries)} retry run(s), the last one succeeded at {elapsed:.1f} s")
    finally:
        stop_tree(daemon, grace=0.0)
        instance.dispose()
