"""Export folders whose project differs only in case from a known project, in the live layer,
against a real PostgreSQL annotation DB and a real Dagster materialization of
`live_quality_state`: as the daily ingest does (`set_aside_case_twins`), their rows are set
aside, counted in the run's metadata and logged naming the file and the other spelling, and
never folded into a state; the known spelling is a staged project's or a live state's."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.lake import staging_key
from annotation_pipelines.loop.live import load_projects, load_state
from assets.live.assets import ProjectSpellings, _fold_files
from resources.lake import LocalLake
from resources.landing import LocalLandingZone
from tests.loop.test_live_writeback import QUIET
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

TWIN = "project (differs only in case from project {!r})"


def _export(landing: Path, project: str, name: str) -> str:
    path = f"exports/{project}/csv/{name}.csv"
    (landing / path).parent.mkdir(parents=True, exist_ok=True)
    start = datetime.now(UTC) - timedelta(hours=1)
    rows = [
        f"{name}-t{task},{rater},pos,{(start + timedelta(seconds=task)).isoformat()}"
        for task in range(3)
        for rater in ("a1", "a2")
    ]
    (landing / path).write_text("task_id,annotator_id,label,submitted_at\n" + "\n".join(rows))
    return path


@pytest.mark.services
def test_an_export_folder_spelled_as_a_known_project_in_another_case_is_not_folded(
    tmp_path, monkeypatch
):
    data = tmp_path / "data"
    landing, lake = data / "landing", data / "lake"
    # The daily ingest staged `reviews`; the live layer has no state of it.
    LocalLake(base_path=str(lake)).put_frame(
        staging_key("judgments", "2026-11-02", "daily"), pl.DataFrame({"project": ["reviews"]})
    )
    refused = _export(landing, "Reviews", "batch")
    tags = _export(landing, "tags", "batch")
    with fresh_database("live_case_twins") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        first = job.execute_in_process(instance=instance, run_config=QUIET)
        metadata = first_metadata(first)
        assert metadata["files_read"] == sorted([refused, tags])
        assert metadata["files_case_twins"] == {refused: 6}
        assert metadata["files_quarantine_reasons"] == {"invalid_project": 6}
        assert load_projects(lake_reader(lake)) == ["tags"]
        assert load_state("tags", lake_reader(lake)).ledger.height == 6
        logged = [entry.user_message for entry in instance.all_logs(first.run_id)]
        assert any(
            f"live: {refused}: 6 row(s) not folded" in line and TWIN.format("reviews") in line
            for line in logged
        ), logged

        # A live state's spelling is known as well; its own files fold as before.
        later = _export(landing, "TAGS", "later")
        more = _export(landing, "tags", "more")
        second = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert second["files_read"] == sorted([later, more])
        assert second["files_case_twins"] == {later: 6}
        assert load_projects(lake_reader(lake)) == ["tags"]
        assert load_state("tags", lake_reader(lake)).ledger.height == 12

        # Recorded as read: not read, nor counted, again.
        quiet = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert quiet["files_read"] == [] and quiet["files_case_twins"] == {}


def test_the_staged_projects_are_read_only_for_a_project_no_state_holds(tmp_path):
    landing = tmp_path / "landing"
    zone = LocalLandingZone(path=str(landing), settle_seconds=0)
    asked: list[str] = []

    def staged() -> list[str]:
        asked.append("staged")
        return ["reviews"]

    def fold(*names: str) -> dict[str, int]:
        for name in names:
            project, _, batch = name.partition("/")
            _export(landing, project, batch)
        spellings = ProjectSpellings(lambda: ["tags"], staged)
        now = datetime.now(UTC)
        return _fold_files(
            zone, {}, read_at=now, log=logging.getLogger("t"), spellings=spellings
        ).case_twins

    assert fold("tags/a") == {} and asked == []
    assert fold("Reviews/b") == {"exports/Reviews/csv/b.csv": 6} and asked == ["staged"]
    # Two new spellings in one run, neither known: the first listed (by path) holds the name.
    assert fold("Intent/c", "intent/d") == {
        "exports/Reviews/csv/b.csv": 6,
        "exports/intent/csv/d.csv": 6,
    }
