"""A local code location on a temporary instance and data folder, shared by graph-level tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, Definitions, JobDefinition

from annotation_pipelines.synthetic import generate_workload
from assets.definitions import build_definitions
from resources.lake import LocalLake

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Small test days are noisy; the gates themselves are tested in test_orchestration.py.
LENIENT_GATES = {
    **QUIET,
    "ops": {
        "quality": {
            "config": {"min_alpha": 0.0, "min_gold_accuracy": 0.0, "bootstrap_resamples": 20}
        }
    },
}


@contextmanager
def local_graph(
    root: Path,
    *,
    judgments: int,
    start: date,
    days: int,
    seed: int,
    kinds: bool = False,
    judgments_per_kind: int = 3_000,
    persistent: bool = False,
) -> Iterator[tuple[Definitions, DagsterInstance, Path]]:
    """(definitions, instance, data folder) with a synthetic workload in the landing zone.

    The instance is in memory unless `persistent` (a SQLite instance in `root / "home"`, for a
    caller that copies or reopens it): the sensors and assets query the same SQL event log
    either way, and the on-disk event log opens an engine and a connection per stored event,
    a third of an in-process run's CPU."""
    data, home = root / "data", root / "home"
    home.mkdir(parents=True)
    patch = pytest.MonkeyPatch()
    patch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
    patch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", f"test-key-{seed}")
    generate_workload(
        data / "landing" / "synthetic",
        judgments=judgments,
        start=start,
        days=days,
        seed=seed,
        kinds=kinds,
        judgments_per_kind=judgments_per_kind,
    )
    instance = DagsterInstance.local_temp(str(home)) if persistent else DagsterInstance.ephemeral()
    try:
        yield build_definitions(profile="local"), instance, data
    finally:
        instance.dispose()
        patch.undo()


def live_quality_job(
    monkeypatch: pytest.MonkeyPatch, *, dsn: str, data: Path
) -> tuple[Definitions, JobDefinition, DagsterInstance]:
    """(definitions, the live job, an ephemeral instance) of the local code location, reading
    the database at `dsn` and the data folder `data`."""
    monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
    defs = build_definitions(profile="local")
    return defs, defs.resolve_job_def("live_quality_job"), DagsterInstance.ephemeral()


def lake_reader(root: Path) -> Callable[[str], bytes | None]:
    """The `read` the state loaders take, over a local lake folder (None: no such object)."""
    return LocalLake(base_path=str(root)).get_if_exists


def retried_after_the_db_write(
    data: Path,
    dsn: str,
    run: Callable[[], bool],
    *,
    scratch: Path,
    between: Callable[[], None] | None = None,
) -> dict[str, datetime]:
    """`run` (a run that writes the annotation DB at `dsn`, then commits the lake in `data`)
    once, its lake commit then lost (`data` put back as it was, kept in `scratch` meanwhile),
    and run again a moment later, after `between` (what changed meanwhile, new judgments say):
    a retry after the DB write. The `created_at` the DB held per `decision_id` after the first
    attempt (some)."""
    import psycopg

    if data.exists():
        shutil.copytree(data, scratch)
    assert run()
    with psycopg.connect(dsn, autocommit=True) as connection:
        query = "SELECT decision_id, created_at FROM task_requests"
        stamped = dict(connection.execute(query).fetchall())
    assert stamped
    shutil.rmtree(data)
    if scratch.exists():
        shutil.copytree(scratch, data)
    time.sleep(0.05)  # the retry's clock is past the first attempt's
    if between is not None:
        between()
    assert run()
    return stamped


def first_metadata(result) -> dict[str, object]:
    """The values of the first asset materialization's metadata of an in-process run."""
    event = result.get_asset_materialization_events()[0].materialization
    return {key: value.value for key, value in event.metadata.items()}


@contextmanager
def state_commit_lost(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside the block, every lake commit that writes a live state fails, as an object
    store's 503 would: the attempt's DB writes are made, its lake commit is not."""
    real = LocalLake.commit
    with monkeypatch.context() as patched:

        def lost(self: LocalLake, writes, *, deletes=()):
            if any(key.endswith("state.json") for key in writes):
                raise OSError("object store: 503 Slow Down")
            return real(self, writes, deletes=deletes)

        patched.setattr(LocalLake, "commit", lost)
        yield


def quick_queue_home(tmp_path: Path, *, root: Path) -> tuple[Path, Path]:
    """A DAGSTER_HOME with the shipped `dagster.yaml` but a 1-s dequeue instead of 5 s, so a
    test whose runs go through the daemon's queue takes seconds; and the data folder beside it."""
    config = yaml.safe_load((root / "dagster.yaml").read_text())
    config["run_coordinator"] = {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {"dequeue_interval_seconds": 1},
    }
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home, data
