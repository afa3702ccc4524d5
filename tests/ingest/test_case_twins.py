"""Project names that differ only in case: on a case-insensitive disk (macOS, Windows) they
would share one folder of the lake and of every export, so the later spelling is quarantined."""

from __future__ import annotations

import io
import json
import threading
import time

import polars as pl
import pytest
from dagster import DagsterInstance

from annotation_pipelines.ingest import ingest_path
from annotation_pipelines.lake import quarantine_key
from assets.definitions import build_definitions
from assets.sources.assets import source_id
from resources.lake import LocalLake
from tests.ingest.conftest import NOW

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _rows(*projects: str) -> pl.DataFrame:
    n = len(projects)
    return pl.DataFrame(
        {
            "task_id": [f"t{i}" for i in range(n)],
            "annotator_id": ["a1"] * n,
            "label": ["pos"] * n,
            "submitted_at": [NOW] * n,
            "project": list(projects),
        }
    )


def test_a_project_spelled_as_an_earlier_one_in_another_case_is_quarantined(tmp_path):
    _rows("Intent", "tags").write_parquet(tmp_path / "a.parquet")
    _rows("intent", "other", "OTHER", "tags").write_parquet(tmp_path / "b.parquet")
    result = ingest_path(tmp_path, format="parquet")
    assert sorted(set(result.judgments["project"])) == ["Intent", "other", "tags"]
    assert sorted(set(result.tasks["project"])) == ["Intent", "other", "tags"]
    bad = result.quarantine.sort("source_line").select(
        "source_file", "source_line", "field", "reason"
    )
    b = str(tmp_path / "b.parquet")
    assert bad.rows() == [
        (b, 1, "project (differs only in case from project 'Intent')", "invalid_project"),
        (b, 3, "project (differs only in case from project 'other')", "invalid_project"),
    ]
    assert result.rows_read == result.rows_loaded + result.rows_quarantined


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    landing = tmp_path / "data" / "landing"
    for project in ("reviews", "Reviews"):
        (landing / "exports" / project / "csv").mkdir(parents=True)
    defs = build_definitions(profile="local")
    # In memory: the same SQL event log the sensors read, without the on-disk one's engine and
    # connection per stored event.
    instance = DagsterInstance.ephemeral()
    yield defs, instance, landing
    instance.dispose()


def _ingest(defs, instance, landing, path: str, text: str):
    (landing / path).write_text(text)
    instance.add_dynamic_partitions("export_files", [path])
    return defs.resolve_job_def("ingest_export_job").execute_in_process(
        partition_key=path, instance=instance, run_config=QUIET, raise_on_error=False
    )


def test_an_export_whose_project_the_lake_holds_in_another_case_is_quarantined(env):
    """`exports/Reviews/` and `exports/reviews/` were two projects, which a case-insensitive
    disk would keep in one folder."""
    defs, instance, landing = env
    header = "task_id,annotator_id,label,submitted_at\n"
    rows = header + "t1,a1,pos,2026-11-02T10:00:00Z\nt2,a1,neg,2026-11-02T11:00:00Z\n"
    first = "exports/reviews/csv/batch-1.csv"
    assert _ingest(defs, instance, landing, first, rows).success

    later = "exports/Reviews/csv/batch-2.csv"
    run = _ingest(defs, instance, landing, later, rows)
    assert run.success
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_loaded"].value == 0 and metadata["rows_quarantined"].value == 2
    lake = landing.parent / "lake"
    quarantine = pl.read_parquet(io.BytesIO((lake / quarantine_key(source_id(later))).read_bytes()))
    assert quarantine.select("source_file", "source_line", "field", "reason").rows() == [
        (later, 2, "project (differs only in case from project 'reviews')", "invalid_project"),
        (later, 3, "project (differs only in case from project 'reviews')", "invalid_project"),
    ]
    assert json.loads(quarantine["raw"][0])["project"] == "Reviews"
    staged = sorted((lake / "staging").rglob("*.parquet"))
    projects = set(pl.concat([pl.read_parquet(p, columns=["project"]) for p in staged])["project"])
    assert projects == {"reviews"}

    # The lake's own spelling is read again as it was: its staged rows are the file's own.
    again = _ingest(defs, instance, landing, first, rows + "t3,a1,pos,2026-11-02T12:00:00Z\n")
    assert again.success
    metadata = again.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_loaded"].value == 3 and metadata["rows_quarantined"].value == 0


def test_a_twin_row_holding_a_list_value_is_quarantined_whole():
    # A ranking (or labels, spans, boxes) is a list no cast to text holds: the set-aside row
    # keeps it as JSON rather than failing the whole ingest.
    from datetime import UTC, datetime

    from annotation_pipelines import schema
    from annotation_pipelines.ingest.result import IngestResult, set_aside_case_twins

    judgments = schema.conform(
        pl.DataFrame(
            {
                "judgment_id": ["j1", "j2"],
                "task_id": ["t1", "t2"],
                "project": ["foo", "bar"],
                "annotator_id": ["a1", "a1"],
                "label": [None, None],
                "submitted_at": [datetime(2026, 11, 20, tzinfo=UTC)] * 2,
                "duration_s": [None, None],
                "source": ["annotation_db"] * 2,
                "source_file": [None, None],
                "source_line": [None, None],
                "kind": ["ranking", "ranking"],
                "ranking": [["a", "b"], ["b", "a"]],
            },
            schema_overrides={"label": pl.String, "source_file": pl.String},
        ),
        schema.JUDGMENTS,
        name="judgments",
    )
    result = IngestResult(
        judgments, schema.empty(schema.RAW_TASKS), schema.empty(schema.GOLD_LABELS),
        schema.empty(schema.QUARANTINE), 2,
    )  # fmt: skip
    checked = set_aside_case_twins(result, {"Foo"})
    assert checked.judgments["project"].to_list() == ["bar"]
    [raw] = checked.quarantine["raw"].to_list()
    assert json.loads(raw)["ranking"] == ["a", "b"]
    # Both spellings first seen in one extract, whose rows carry no line: the name decides.
    for order in (["Baz", "baz"], ["baz", "Baz"]):
        rows = judgments.head(2).with_columns(project=pl.Series(order))
        empty = [schema.empty(t) for t in (schema.RAW_TASKS, schema.GOLD_LABELS, schema.QUARANTINE)]
        once = set_aside_case_twins(IngestResult(rows, *empty, 2))
        assert once.judgments["project"].to_list() == ["Baz"], order


def test_two_exports_staging_twin_spellings_at_once_stage_one(env, tmp_path):
    """Two runs at the same moment each checked the other's spelling against a staging that
    did not hold it yet, and both were staged. The staging lock makes the second run's check
    read the first run's commit."""
    defs, _, landing = env
    # On disk: two runs writing one in-memory SQLite at once fail with "database table is
    # locked" (it does not wait), where the on-disk one waits for its lock.
    (tmp_path / "home").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "home"))
    header = "task_id,annotator_id,label,submitted_at\n"
    rows = header + "t1,a1,pos,2026-11-02T10:00:00Z\n"
    paths = ["exports/reviews/csv/batch-1.csv", "exports/Reviews/csv/batch-2.csv"]
    for path in paths:
        (landing / path).write_text(rows)
    instance.add_dynamic_partitions("export_files", paths)
    lake = LocalLake(base_path=str(landing.parent / "lake"))
    runs: dict[str, bool] = {}

    def ingest(path: str) -> None:
        result = defs.resolve_job_def("ingest_export_job").execute_in_process(
            partition_key=path, instance=instance, run_config=QUIET, raise_on_error=False
        )
        runs[path] = result.success

    # Both runs read and validate their file while the lock is held here, then stage as
    # soon as it is released: the moment the two checks used to overlap.
    with lake.staging_lock():
        threads = [threading.Thread(target=ingest, args=(path,)) for path in paths]
        for thread in threads:
            thread.start()
        time.sleep(3)
    for thread in threads:
        thread.join(timeout=120)
    assert runs == {path: True for path in paths}
    staged = sorted((landing.parent / "lake" / "staging").rglob("*.parquet"))
    projects = set(pl.concat([pl.read_parquet(p, columns=["project"]) for p in staged])["project"])
    assert len(projects) == 1, projects
