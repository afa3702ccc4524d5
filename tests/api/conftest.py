"""A small lake made by the demo graph, served by uvicorn on 127.0.0.1 for the API tests."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import uvicorn
from dagster import AssetKey, DagsterInstance

from annotation_pipelines.api import create_app
from annotation_pipelines.api.tokens import issue_token
from annotation_pipelines.settings import Settings, load_settings
from assets.definitions import build_definitions
from assets.demo import write_compute_landing
from tests.support import LENIENT_GATES, QUIET, local_graph

DAYS = ["2026-11-16", "2026-11-17"]
# Generated but not materialized at first: the day that "lands" while a client pages.
LATE_DAY = "2026-11-18"
PROJECT = "sentiment"
# Every other kind has its own project in the workload; these are served like the categorical.
KIND_PROJECTS = {"detection": "boxes", "entities": "spans", "ratings": "numeric"}
SEED = 17


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Served:
    url: str
    settings: Settings
    data: Path
    defs: object
    instance: object
    tokens: dict[str, str]

    def materialize_day(self, day: str) -> None:
        job = self.defs.resolve_job_def("daily_annotation_job")  # type: ignore[attr-defined]
        result = job.execute_in_process(
            partition_key=day, instance=self.instance, run_config=LENIENT_GATES
        )
        assert result.success


@dataclass
class Server:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(settings: Settings, **app_options: float) -> Server:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, **app_options),
        host="127.0.0.1",
        port=port,
        log_level="critical",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return Server(f"http://127.0.0.1:{port}", server, thread)


@contextmanager
def make_lake(root: Path) -> Iterator[tuple[object, object, Path]]:
    with local_graph(
        root,
        judgments=6_000,
        start=date(2026, 11, 16),
        days=3,
        seed=SEED,
        kinds=True,
        persistent=True,
        judgments_per_kind=600,
    ) as env:
        defs, instance, data = env
        daily = defs.resolve_job_def("daily_annotation_job")
        for day in DAYS:
            assert daily.execute_in_process(
                partition_key=day, instance=instance, run_config=LENIENT_GATES
            ).success
        instance.add_dynamic_partitions("projects", [PROJECT])
        assert (
            defs.resolve_job_def("curation_job")
            .execute_in_process(partition_key=PROJECT, instance=instance, run_config=QUIET)
            .success
        )
        assert (
            defs.resolve_implicit_global_asset_job_def()
            .get_subset(asset_selection={AssetKey("dataset_versions")})
            .execute_in_process(instance=instance, run_config=QUIET)
            .success
        )
        # A week of telemetry: the API serves whatever forecast the lake holds, and a week is
        # room for the one backtest origin below (96 hours of fit before it, 24 after), each
        # day one more Dagster run.
        write_compute_landing(data / "landing", end=date(2026, 11, 17), days=7, seed=17)
        history = defs.resolve_job_def("compute_usage_job")
        for offset in range(7):
            day = date.fromordinal(date(2026, 11, 17).toordinal() - offset).isoformat()
            history.execute_in_process(partition_key=day, instance=instance, run_config=QUIET)
        forecasts = defs.resolve_job_def("forecast_job").execute_in_process(
            instance=instance,
            run_config={
                **QUIET,
                "ops": {
                    "compute_capacity_forecast": {
                        "config": {"horizon": 24, "history_days": 14, "backtest_windows": 1}
                    },
                    "workforce_capacity_forecast": {"config": {"horizon_days": 7}},
                },
            },
        )
        assert forecasts.success
        yield env


def built_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with make_lake's data and instance, built once per test session.

    The API files each need this lake (half a minute of Dagster runs), and `--dist loadfile`
    often hands them to different xdist workers, each of which built it again. Under xdist it
    is built once, under a lock, in the folder the session's workers share; every user copies
    it before it changes anything.
    """
    # Without xdist a second caller in the session (a test that needs a lake of its own) finds
    # it under the session's folder, as workers find theirs in the folder they share.
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        shared = tmp_path_factory.getbasetemp() / "api-lake"
    else:
        shared = tmp_path_factory.getbasetemp().parent / "api-lake"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "built"
        if not done.exists():
            shutil.rmtree(shared, ignore_errors=True)
            with make_lake(shared):
                pass
            done.touch()
    return shared


@contextmanager
def lake_copy(source: Path, root: Path) -> Iterator[tuple[object, object, Path]]:
    """(definitions, instance, data folder) on a copy of the lake and instance in `source`,
    with the environment make_lake built them in."""
    for name in ("data", "home"):
        shutil.copytree(source / name, root / name)
    patch = pytest.MonkeyPatch()
    patch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(root / "data"))
    patch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", f"test-key-{SEED}")
    # The same persistent instance make_lake ran on, in its copied folder.
    instance = DagsterInstance.local_temp(str(root / "home"))
    try:
        yield build_definitions(profile="local"), instance, root / "data"
    finally:
        instance.dispose()
        patch.undo()


@pytest.fixture(scope="package")
def served(tmp_path_factory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("api")
    with lake_copy(built_lake(tmp_path_factory), root) as (defs, instance, data):
        settings = dataclasses.replace(
            load_settings(), api_token_store=root / "tokens.json", api_max_days=31
        )
        tokens = {
            "all": issue_token(
                settings.api_token_store,
                scopes=["labels:read", "quality:read", "datasets:read", "capacity:read"],
            ),
            "raw": issue_token(settings.api_token_store, scopes=["quality:read", "annotators:raw"]),
            "quality": issue_token(settings.api_token_store, scopes=["quality:read"]),
        }
        server = start_server(settings)
        try:
            yield Served(server.url, settings, data, defs, instance, tokens)
        finally:
            server.stop()
