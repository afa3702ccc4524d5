"""One synthetic day of every kind, end to end on real PostgreSQL and a real (temporary) Dagster
instance, twice: once as landing-zone files, once only through the annotation DB (seeded with
`kind` and a JSON `answer`, `annotation_db_changes`, then the daily job). The day's
`kind_aggregated_labels` are the same either way. Then the tool deletes a spans judgment and a
kind gold label (tombstones, migration 6): the next extract and daily run leave them out of the
day and the labels are computed again without them."""

from __future__ import annotations

from datetime import date

import polars as pl
import psycopg
import pytest
from dagster import AssetKey, DagsterInstance
from polars.testing import assert_frame_equal

from annotation_pipelines.ingest.postgres import seed_database
from annotation_pipelines.quality.kinds import aggregate_kind_day
from annotation_pipelines.settings import ANNOTATION_DB_DSN
from annotation_pipelines.synthetic import KIND_PROJECTS
from assets.definitions import build_definitions
from tests.services import fresh_database
from tests.support import LENIENT_GATES, QUIET, local_graph

pytestmark = pytest.mark.services

DAY = "2026-11-16"
SEED = 21
KIND_OF = {spec.name: spec.kind for spec in KIND_PROJECTS}
RUN_CONFIG = {
    **LENIENT_GATES,
    "ops": {
        **LENIENT_GATES["ops"],
        "kind_quality": {"config": {"bootstrap_resamples": 20}},
    },
}


def _table(data, name):
    return pl.read_parquet(data / "lake" / name / f"day={DAY}" / "data.parquet")


def _labels(data):
    """The day's aggregates in one order: the table has no provenance column, and its row order
    is the asset's sort (project, task_id), which ties nowhere."""
    return _table(data, "kind_aggregated_labels").sort("project", "task_id")


def _workload(landing):
    return {
        table: pl.read_parquet(landing / table / f"day={DAY}" / "*.parquet")
        for table in ("judgments", "tasks", "gold_labels")
    }


def _daily(defs, instance):
    daily = defs.resolve_job_def("daily_annotation_job")
    result = daily.execute_in_process(partition_key=DAY, instance=instance, run_config=RUN_CONFIG)
    assert result.success
    return result


def _extract(defs, instance):
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("annotation_db_changes")}
    )
    result = job.execute_in_process(instance=instance, run_config=QUIET)
    assert result.success
    return result.get_asset_materialization_events()[0].materialization.metadata


def _aggregated(judgments, gold, tasks, project):
    """What `kind_aggregated_labels` computes for `project` from these inputs."""
    rows = judgments.filter(pl.col("project") == project)
    return aggregate_kind_day(
        rows,
        project=project,
        day=date.fromisoformat(DAY),
        gold=gold.filter(pl.col("project") == project),
        tasks=tasks.filter(pl.col("project") == project),
        kind=KIND_OF[project],
    ).labels


def test_a_kinds_day_through_the_db_equals_it_through_files_and_follows_deletions(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(ANNOTATION_DB_DSN, raising=False)
    with local_graph(
        tmp_path / "files",
        judgments=300,
        start=date.fromisoformat(DAY),
        days=1,
        seed=SEED,
        kinds=True,
        judgments_per_kind=300,
    ) as (defs, instance, files):
        _daily(defs, instance)
    workload = _workload(files / "landing" / "synthetic")
    from_files = _labels(files)
    assert set(from_files["project"]) == set(KIND_OF)

    data = tmp_path / "db" / "data"
    (tmp_path / "db" / "home").mkdir(parents=True)
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", f"test-key-{SEED}")
    with fresh_database("kinds_daily") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        seed_database(
            dsn,
            judgments=workload["judgments"],
            tasks=workload["tasks"],
            gold=workload["gold_labels"],
        )
        monkeypatch.setenv(ANNOTATION_DB_DSN, dsn)
        defs = build_definitions(profile="local")
        instance = DagsterInstance.local_temp(str(tmp_path / "db" / "home"))
        try:
            metadata = _extract(defs, instance)
            assert metadata["kind_answers"].value is True
            # Every row of the workload passes the extract's validation, as it passes the
            # files path (which reads the generator's Parquet as it is).
            assert metadata["rows_quarantined"].value == 0
            assert metadata["rows_loaded"].value == metadata["rows_read"].value
            _daily(defs, instance)
            judgments = _table(data, "judgments")
            assert set(judgments["source"]) == {"postgres"}
            # The aggregates hold no provenance, so nothing may differ: the judgments' own
            # `source`, `source_file` and `source_line` (and the gold's `updated_at`, the DB's
            # stamp) differ, and feed none of them.
            assert_frame_equal(_labels(data), from_files)
            # The categorical projects of the day too (their rows are seeded with a null kind).
            assert_frame_equal(
                _table(data, "aggregated_labels").sort("task_id"),
                _table(files, "aggregated_labels").sort("task_id"),
            )

            # The tool deletes one spans judgment of a task judged by several annotators and
            # the gold label of one boxes task.
            spans = judgments.filter(pl.col("kind") == "spans")
            voted = spans.group_by("task_id").len().filter(pl.col("len") > 1)["task_id"].min()
            deleted = spans.filter(pl.col("task_id") == voted)["judgment_id"].min()
            gold = _table(data, "gold_labels")
            golden = gold.filter(pl.col("kind") == "boxes")["task_id"].min()
            assert deleted is not None and golden is not None
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute("DELETE FROM judgments WHERE judgment_id = %s", (deleted,))
                connection.execute("DELETE FROM gold_labels WHERE task_id = %s", (golden,))
            before = _labels(data)
            metadata = _extract(defs, instance)
            assert metadata["deletions_applied"].value == 2
            assert metadata["deletions_unknown"].value == 0
            _daily(defs, instance)
        finally:
            instance.dispose()

    judgments_after = _table(data, "judgments")
    gold_after = _table(data, "gold_labels")
    assert judgments_after.height == judgments.height - 1
    assert deleted not in judgments_after["judgment_id"].to_list()
    assert gold_after.height == gold.height - 1
    assert golden not in gold_after["task_id"].to_list()
    after = _labels(data)
    # The spans task lost a vote; the boxes project lost a gold task.
    votes = {
        label: frame.filter(pl.col("task_id") == voted)["n_votes"].item()
        for label, frame in (("before", before), ("after", after))
    }
    assert votes["after"] == votes["before"] - 1
    reports = _table(data, "kind_quality_report").filter(pl.col("kind") == "boxes")
    files_report = _table(files, "kind_quality_report").filter(pl.col("kind") == "boxes")
    assert reports["n_gold_judgments"].item() < files_report["n_gold_judgments"].item()
    # Recomputed: every project's aggregates are what its files' rows give less the deleted
    # ones (the spans and boxes projects changed inputs; the others did not).
    files_judgments = _table(files, "judgments").filter(pl.col("judgment_id") != deleted)
    files_gold = _table(files, "gold_labels").filter(pl.col("task_id") != golden)
    files_tasks = _table(files, "raw_tasks")
    for project in ("entities", "detection"):
        expected = _aggregated(files_judgments, files_gold, files_tasks, project)
        got = after.filter(pl.col("project") == project).select(expected.columns)
        assert_frame_equal(got.sort("task_id"), expected.sort("task_id"), check_dtypes=False)
    unchanged = ~pl.col("project").is_in(["entities", "detection"])
    assert_frame_equal(after.filter(unchanged), before.filter(unchanged))
    assert not after.filter(pl.col("project") == "entities").equals(
        before.filter(pl.col("project") == "entities")
    )
