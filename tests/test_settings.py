"""Settings: every variable read in one place, typed, with clear errors and stable keys."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from annotation_pipelines.curation.privacy import pseudonymize, safe_for_display
from annotation_pipelines.settings import (
    DEFAULT_START_DATE,
    PSEUDONYM_KEY,
    SettingsError,
    load_settings,
    write_start_date,
)

ROOT = Path(__file__).resolve().parents[1]


def test_production_without_a_pseudonym_key_names_the_variable(tmp_path):
    env = {"ANNOTATION_PIPELINES_BUCKET": "b", "DAGSTER_HOME": str(tmp_path)}
    with pytest.raises(SettingsError, match=PSEUDONYM_KEY):
        load_settings(env, profile="production")
    assert not (tmp_path / "pseudonym.key").exists()


def test_production_without_a_bucket_names_the_variable():
    with pytest.raises(SettingsError, match="ANNOTATION_PIPELINES_BUCKET"):
        load_settings({PSEUDONYM_KEY: "k"}, profile="production")


def test_unknown_profile_and_malformed_values_are_errors():
    with pytest.raises(SettingsError, match="ANNOTATION_PIPELINES_PROFILE"):
        load_settings({"ANNOTATION_PIPELINES_PROFILE": "staging"})
    # Python reads 20261101 and 2026-W44-1 as dates too; Dagster's daily partitions do not,
    # and failed to load naming no variable.
    for day in ("yesterday", "20261101", "2026-W44-1"):
        with pytest.raises(SettingsError, match="ANNOTATION_PIPELINES_START_DATE"):
            load_settings({"ANNOTATION_PIPELINES_START_DATE": day})
    for share in ("MAX_MASKED_SHARE", "MAX_QUARANTINED_SHARE"):
        for value in ("2", "-0.1", "five percent"):
            with pytest.raises(SettingsError, match=f"ANNOTATION_PIPELINES_{share}"):
                load_settings({f"ANNOTATION_PIPELINES_{share}": value})
    assert load_settings({}).max_quarantined_share == 0.05
    assert (
        load_settings({"ANNOTATION_PIPELINES_MAX_QUARANTINED_SHARE": "1"}).max_quarantined_share
        == 1.0
    )
    for days in ("0", "a month"):
        with pytest.raises(SettingsError, match="ANNOTATION_PIPELINES_FLOOR_RECHECK_DAYS"):
            load_settings({"ANNOTATION_PIPELINES_FLOOR_RECHECK_DAYS": days})
    assert load_settings({}).floor_recheck_days == 30
    # Named here, not by Dagster's "Invalid execution timezone ... for weekly_forecast_schedule"
    # when the code location loads.
    for zone in ("Mars/Olympus", "CET+1", "../etc/passwd"):
        with pytest.raises(SettingsError, match="ANNOTATION_PIPELINES_TIMEZONE"):
            load_settings({"ANNOTATION_PIPELINES_TIMEZONE": zone})
    assert load_settings({"ANNOTATION_PIPELINES_TIMEZONE": "Europe/Berlin"}).timezone == (
        "Europe/Berlin"
    )
    assert load_settings({"ANNOTATION_PIPELINES_FLOOR_RECHECK_DAYS": "7"}).floor_recheck_days == 7


def _key_in_subprocess(home: Path) -> str:
    code = "from annotation_pipelines.settings import load_settings; " + (
        f"print(load_settings({{'DAGSTER_HOME': {str(home)!r}}}).pseudonym_key.decode())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_local_key_is_made_once_and_is_the_same_in_every_process(tmp_path):
    first = _key_in_subprocess(tmp_path)
    second = _key_in_subprocess(tmp_path)
    assert first == second
    assert len(first) == 64
    assert load_settings({"DAGSTER_HOME": str(tmp_path)}).pseudonym_key == first.encode()


def test_local_key_file_is_readable_by_its_owner_only(tmp_path):
    load_settings({"DAGSTER_HOME": str(tmp_path)})
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600


def test_display_pseudonyms_are_the_export_pseudonyms(tmp_path):
    key = load_settings({"DAGSTER_HOME": str(tmp_path)}).pseudonym_key
    frame = pl.DataFrame({"annotator_id": ["alice", "bob"], "annotator_a": ["bob", "alice"]})
    shown = safe_for_display(frame, key=key)
    exported = pseudonymize(frame, key=key)
    assert shown["annotator_id"].to_list() == exported["annotator_id"].to_list()
    assert shown["annotator_a"].to_list() == exported["annotator_id"].to_list()[::-1]


def test_partitions_start_where_the_data_starts(tmp_path):
    env = {"ANNOTATION_PIPELINES_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    assert load_settings(env).start_date == DEFAULT_START_DATE
    write_start_date(tmp_path, dt.date(2026, 11, 2))
    assert load_settings(env).start_date == "2026-11-02"
    write_start_date(tmp_path, dt.date(2026, 11, 9))  # later data never hides earlier days
    assert load_settings(env).start_date == "2026-11-02"
    write_start_date(tmp_path, dt.date(2026, 10, 30))
    assert load_settings(env).start_date == "2026-10-30"
    explicit = {**env, "ANNOTATION_PIPELINES_START_DATE": "2026-01-01"}
    assert load_settings(explicit).start_date == "2026-01-01"


def test_environment_variables_are_read_only_in_the_settings_module():
    readers = []
    for folder in ("annotation_pipelines", "assets", "resources"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            if "os.environ" in text or "getenv(" in text:
                readers.append(str(path.relative_to(ROOT)))
    assert readers == ["annotation_pipelines/settings.py"]
