"""Shared fixtures. Real-data helpers live in tests/realdata.py.

Tests skip, naming what is missing, when the shared data, PostgreSQL or Chromium is absent on
a developer's machine. CI sets ANNOTATION_PIPELINES_NO_SKIPS=1 (`.ci/run`), which turns every
such skip into a failure, so CI cannot pass without running the real thing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import settings

NO_SKIPS = os.environ.get("ANNOTATION_PIPELINES_NO_SKIPS") == "1"

# The tests' instances and lakes live under tmp_path, and both sync to disk on every write:
# Dagster's SQLite storage commits each event, the lake fsyncs each file. That durability is
# what the product needs, but on a disk that others share it made the suite wait on I/O (a
# file of four daily runs: 46 s on disk, 32 s in memory). Where a RAM-backed /dev/shm has room
# (Docker's default 64 MB has not), the temporary folders go there; the code paths are the
# same, only the syncs cost nothing. PYTEST_DEBUG_TEMPROOT or --basetemp, if given, win.
SHM, SHM_MIN_FREE = "/dev/shm", 4 << 30
if (
    "PYTEST_DEBUG_TEMPROOT" not in os.environ
    and os.path.isdir(SHM)
    and os.access(SHM, os.W_OK)
    and shutil.disk_usage(SHM).free >= SHM_MIN_FREE
):
    os.environ["PYTEST_DEBUG_TEMPROOT"] = SHM
# Property tests draw the same examples on every machine and run, so `make test` and CI give
# one verdict for one commit; `HYPOTHESIS_PROFILE=explore` draws new ones to hunt for cases
# (a case found that way is pinned with `@example`).
settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))
# Daily partitions are defined when the code location is imported; the tests' synthetic days
# and telemetry histories reach back to October 2026, so the suite pins where partitions start.
os.environ.setdefault("ANNOTATION_PIPELINES_START_DATE", "2026-09-01")
# Tests drop an export and tick at once; the settle time that holds back a file still being
# written has its own tests, which set it.
os.environ.setdefault("ANNOTATION_PIPELINES_LANDING_SETTLE_SECONDS", "0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under ANNOTATION_PIPELINES_NO_SKIPS=1 (CI): {reason}"


# The files whose runs take minutes (real daemons, webservers, whole-graph runs). Collected
# first, they are the first work the xdist workers take (`--dist loadfile` hands out files in
# collection order only with `--no-loadscope-reorder`, set in pyproject.toml; by default xdist
# hands out the files with the most tests first, which put these last), so the rest runs beside
# them instead of one worker finishing the longest file alone at the end. The first four hold
# the e2e tests (`make test-e2e`), which start together there; in `make test` the whole graph
# and the daily kinds run lead.
LONG_FILES = (
    "test_live_loop.py",
    "test_live_instance.py",
    "test_demo.py",
    "test_backfill.py",
    "test_graph.py",
    "test_kinds_db_daily.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))
