"""The repository is a dg project: `dg check defs` and `dg list defs` work from its root.

Both run as a user would run them (a subprocess of the project's own `dg`, from the repository
root), on a throwaway DAGSTER_HOME so they neither read nor write the developer's instance.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
DG = VENV / "bin" / "dg"
KNOWN_ASSETS = {"judgments", "aggregated_labels", "quality_report", "curated_dataset"}
KNOWN_JOBS = {"daily_annotation_job"}
KNOWN_SCHEDULES = {"daily_annotation_schedule"}
KNOWN_SENSORS = {"automation_sensor", "landing_zone_sensor"}


@pytest.fixture(scope="module")
def dg_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    # dg runs the project's code in the project's .venv; saying that it is the active one is
    # what `source .venv/bin/activate` would do.
    return {**os.environ, "DAGSTER_HOME": str(home), "VIRTUAL_ENV": str(VENV)}


def _dg(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(DG), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, (
        f"dg {' '.join(args)} exited {completed.returncode}\n"
        f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    )
    return completed


@pytest.fixture(scope="module")
def listed(dg_env: dict[str, str]) -> dict[str, list[dict[str, object]]]:
    return json.loads(_dg("list", "defs", "--json", env=dg_env).stdout)


def test_dg_check_defs_loads_the_definitions(dg_env: dict[str, str]) -> None:
    completed = _dg("check", "defs", env=dg_env)
    assert "All definitions loaded successfully" in completed.stdout + completed.stderr


def test_dg_list_defs_names_the_known_definitions(listed) -> None:
    missing = {
        "assets": KNOWN_ASSETS - {entry["asset_key"] for entry in listed["assets"]},
        "jobs": KNOWN_JOBS - {entry["name"] for entry in listed["jobs"]},
        "schedules": KNOWN_SCHEDULES - {entry["name"] for entry in listed["schedules"]},
        "sensors": KNOWN_SENSORS - {entry["name"] for entry in listed["sensors"]},
    }
    assert not any(missing.values()), f"dg list defs lacks {missing}"


def test_dg_lists_every_asset_of_the_code_location(listed) -> None:
    """dg points at the same Definitions the project loads, not a partial copy of them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    defs = importlib.import_module(project["code_location_target_module"]).defs
    expected = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {entry["asset_key"] for entry in listed["assets"]} == expected
