"""The real thing: `dagster-webserver` and `dagster-daemon` on a PostgreSQL-backed instance.

A file dropped in the landing zone is seen by the sensor, which launches the ingest run, which
succeeds; a three-day backfill submitted through the webserver's GraphQL API is run by the
daemon; and headless Chromium loads the asset graph and launches a materialization from the UI.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from annotation_pipelines.synthetic import generate_workload
from tests.services import code_loaded, free_port, fresh_database, graphql, stop_tree, wait_for

pytestmark = [pytest.mark.services, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
BIN = Path(sys.executable).parent
BACKFILL_DAYS = ["2026-11-10", "2026-11-11", "2026-11-12"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    home, data = root / "home", root / "data"
    home.mkdir()
    generate_workload(
        data / "landing" / "synthetic", judgments=3_000, start=date(2026, 11, 10), days=3, seed=9
    )
    (data / "landing" / "exports" / "reviews" / "csv").mkdir(parents=True)
    (data / "landing" / "exports" / "reviews" / "project.json").write_text(
        json.dumps({"label_set": ["pos", "neg"]})
    )
    with fresh_database("dagster_live") as database:
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
            "DAGSTER_PG_DB": database,
            "ANNOTATION_PIPELINES_DATA_DIR": str(data),
            "ANNOTATION_PIPELINES_PSEUDONYM_KEY": "live-test-key",
        }
        port = free_port()
        logs = root / "logs"
        logs.mkdir()
        processes = [
            subprocess.Popen(
                [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
                 "-p", str(port)],
                cwd=ROOT, env=env, stdout=(logs / "webserver.log").open("wb"),
                stderr=subprocess.STDOUT, start_new_session=True,
            ),
            subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                cwd=ROOT, env=env, stdout=(logs / "daemon.log").open("wb"),
                stderr=subprocess.STDOUT, start_new_session=True,
            ),
        ]  # fmt: skip
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        instance = DagsterInstance.get()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: code_loaded(url), timeout=240, what="the webserver to load the code")
            yield url, instance, data, logs
        finally:
            for process in processes:
                stop_tree(process)
            instance.dispose()
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            ARTIFACTS.mkdir(exist_ok=True)
            for log in logs.iterdir():
                shutil.copy(log, ARTIFACTS / f"live-{log.name}")


def _dismiss_welcome(page) -> None:
    """A fresh instance greets its first visitor with a dialog; skip it like a user."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):
        page.get_by_role("button", name="Skip", exact=True).click(timeout=5_000)


def _close_late_dialogs(page) -> None:
    """On a loaded machine the welcome dialog can open after `_dismiss_welcome` gave up and sit
    over the page, its backdrop taking the next click: close any dialog that is open when the
    test acts, as a user would (Skip where offered, else Escape)."""
    skip = page.get_by_role("button", name="Skip", exact=True)

    def close() -> None:
        if skip.is_visible():
            skip.click()
        else:
            page.keyboard.press("Escape")

    page.add_locator_handler(page.locator(".dagster-backdrop").first, close)


def _runs(instance, **filters):
    return instance.get_runs(RunsFilter(**filters))


def test_sensor_sees_a_dropped_file_and_its_run_succeeds(live):
    _, instance, data, logs = live
    (data / "landing" / "exports" / "reviews" / "csv" / "drop.csv").write_text(
        "task_id,annotator_id,label,submitted_at,duration_s\n"
        "r1,a1,pos,2026-11-11T10:00:00Z,3\nr1,a2,neg,2026-11-11T10:05:00Z,4\n"
    )
    run = wait_for(
        lambda: next(
            (
                r
                for r in _runs(instance, job_name="ingest_export_job")
                if r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
            ),
            None,
        ),
        timeout=300,
        what="the landing-zone sensor's ingest run to finish",
    )
    assert run.status == DagsterRunStatus.SUCCESS, (logs / "daemon.log").read_text()[-3000:]
    assert run.tags["dagster/partition"] == "exports/reviews/csv/drop.csv"
    assert (data / "lake" / "staging" / "judgments" / "day=2026-11-11").exists()


def test_three_day_backfill_through_the_daemon(live):
    url, instance, _, _ = live
    mutation = """
    mutation($params: LaunchBackfillParams!) {
      launchPartitionBackfill(backfillParams: $params) {
        __typename
        ... on LaunchBackfillSuccess { backfillId }
        ... on PythonError { message }
      }
    }"""
    params = {
        "assetSelection": [{"path": [name]} for name in ("raw_tasks", "judgments", "gold_labels")],
        "partitionNames": BACKFILL_DAYS,
    }
    reply = graphql(url, mutation, {"params": params})["launchPartitionBackfill"]
    assert reply["__typename"] == "LaunchBackfillSuccess", reply
    backfill_id = reply["backfillId"]

    def finished():
        runs = _runs(instance, tags={"dagster/backfill": backfill_id})
        done = [r for r in runs if r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)]
        return runs if len(done) == len(BACKFILL_DAYS) else None

    runs = wait_for(finished, timeout=420, what="the backfill's three runs")
    assert sorted(r.tags["dagster/partition"] for r in runs) == BACKFILL_DAYS
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)


@pytest.mark.browser
def test_ui_shows_every_layer_and_launches_a_materialization(live):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("no system Chromium (Debian package `chromium`); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    url, instance, _, _ = live
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        _close_late_dialogs(page)
        page.goto(f"{url}/asset-groups", wait_until="networkidle", timeout=120_000)
        _dismiss_welcome(page)
        for group in ("raw", "aggregation", "quality", "curation", "forecasting", "workforce"):
            page.get_by_text(group, exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "asset-graph.png"), full_page=True)

        # gold_sets has no upstream, so the UI launches it without an "are you sure" prompt.
        page.goto(f"{url}/assets/gold_sets", wait_until="networkidle", timeout=120_000)
        _dismiss_welcome(page)
        # The button's accessible name carries its icon's too, so match by contained text.
        page.get_by_role("button", name="Materialize").first.click(timeout=60_000)
        page.get_by_text("Launched run").first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "ui-after-materialize.png"), full_page=True)
        run = wait_for(
            lambda: next(
                (
                    r
                    for r in _runs(instance)
                    if "gold_sets" in str(r.asset_selection)
                    and r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
                ),
                None,
            ),
            timeout=300,
            what="the materialization launched from the UI",
        )
        page.goto(f"{url}/runs/{run.run_id}", wait_until="networkidle", timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "ui-materialization-run.png"), full_page=True)
        browser.close()
    assert run.status == DagsterRunStatus.SUCCESS
