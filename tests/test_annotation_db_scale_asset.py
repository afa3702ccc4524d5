"""A project's scale declared in the annotation DB (`projects.scale`) through the daily layers,
on a real Postgres and real Dagster runs: the daily extract quarantines the DB's numeric rows
off it, an edit that moves a staged row off it withdraws the staged version, and a scale
declared later names the days to rebuild, on which the daily kind aggregation sets the rows
staged before it aside."""

import json

import polars as pl
import psycopg
import pytest
from dagster import AssetKey, DagsterInstance

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.lake import ANNOTATION_DB_SCALES_KEY
from assets.definitions import build_definitions
from tests.services import fresh_database

pytestmark = pytest.mark.services
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
DAY = "2026-11-02"
INSERT = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, kind, answer, "
    "submitted_at) VALUES (%s, %s, %s, %s, 'numeric', %s::jsonb, '2026-11-02T10:00:00+00:00')"
)
DECLARE = (
    "INSERT INTO projects (project, scale) VALUES (%s, %s::jsonb) "
    "ON CONFLICT (project) DO UPDATE SET scale = excluded.scale, updated_at = now()"
)


def _ratings(project: str, answers: dict[str, tuple[float, ...]]) -> list[tuple[str, tuple]]:
    return [
        (INSERT, (f"{project}-{task}-{rater}", f"{project}-{task}", project, rater, str(value)))
        for task, values in answers.items()
        for rater, value in zip(("a0", "a1", "a2"), values, strict=True)
    ]


def _run(dsn: str, *statements: tuple[str, tuple]) -> None:
    with psycopg.connect(dsn) as connection:
        for statement, parameters in statements:
            connection.execute(statement, parameters)


def _metadata(result) -> dict:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] in ("annotation_db_changes", "kind_aggregated_labels")
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_daily_layers_keep_the_db_rows_off_their_projects_scale_out(tmp_path, monkeypatch):
    lake = tmp_path / "data" / "lake"
    with fresh_database("annotation_db_scale") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            (DECLARE, ("rated", json.dumps({"min": 1, "max": 5, "step": 1}))),
            (DECLARE, ("later", None)),
            *_ratings("rated", {"t1": (3, 4, 3), "t2": (5, 5, 50)}),
            *_ratings("later", {"t1": (3, 4, 9), "t2": (2, 2, 3)}),
        )
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
        defs = build_definitions(profile="local")
        every = defs.resolve_implicit_global_asset_job_def()
        extract = every.get_subset(asset_selection={AssetKey("annotation_db_changes")})
        kinds = every.get_subset(
            asset_selection={
                AssetKey(name)
                for name in (
                    "kind_aggregated_labels",
                    "kind_item_scores",
                    "kind_annotator_reliability",
                )
            }
        )
        instance = DagsterInstance.ephemeral()

        def rebuild() -> dict:
            for job in (defs.resolve_job_def("raw_job"), kinds):
                result = job.execute_in_process(
                    partition_key=DAY, instance=instance, run_config=QUIET
                )
                assert result.success
            return _metadata(result)

        first = _metadata(extract.execute_in_process(instance=instance, run_config=QUIET))
        assert first["rows_quarantined"] == 1
        [quarantine] = (lake / "quarantine" / "source=annotation_db").rglob("*.parquet")
        [row] = pl.read_parquet(quarantine).to_dicts()
        assert (row["table"], row["reason"], row["field"]) == (
            "judgments",
            "outside_scale",
            "answer (scale [1, 5] step 1)",
        )
        assert '"judgment_id":"rated-t2-a2"' in row["raw"]
        assert first["days"] == [DAY]
        assert json.loads((lake / ANNOTATION_DB_SCALES_KEY).read_text()) == {
            "rated": {"min": 1.0, "max": 5.0, "step": 1.0}
        }
        assert rebuild()["outside_scale"] == {}

        # An edit moves a staged answer off the scale, and the other project declares a scale
        # refusing an answer staged before it: the first leaves staging, the day is named.
        _run(
            dsn,
            ("UPDATE judgments SET answer = '0' WHERE judgment_id = 'rated-t1-a1'", ()),
            (DECLARE, ("later", json.dumps({"min": 1, "max": 5}))),
        )
        second = _metadata(extract.execute_in_process(instance=instance, run_config=QUIET))
        assert second["outside_scale_withdrawn"] == 1 and second["rows_quarantined"] == 1
        assert second["days"] == [DAY]
        staged = pl.concat(
            pl.read_parquet(p) for p in (lake / "staging" / "judgments").rglob("*.parquet")
        )
        assert "rated-t1-a1" not in staged["judgment_id"].to_list()
        assert staged.height == 10
        # The day rebuilt: the answer staged before the scale is set aside there and counted.
        assert rebuild()["outside_scale"] == {
            "later": {"scale": "scale [1, 5]", "judgments": 1, "gold": 0, "first": ["later-t1-a2"]}
        }
        labels = pl.read_parquet(lake / "kind_aggregated_labels" / f"day={DAY}" / "*.parquet")
        assert labels.filter(pl.col("project") == "later")["value"].max() <= 5

        # Nothing changed since: nothing withdrawn, no day named.
        quiet = _metadata(extract.execute_in_process(instance=instance, run_config=QUIET))
        assert quiet["outside_scale_withdrawn"] == 0 and quiet["days"] == []
