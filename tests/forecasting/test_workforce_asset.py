"""Workforce assets on a real instance: projects that arrive with no plan get the defaults."""

from datetime import date

import polars as pl

from tests.support import LENIENT_GATES, local_graph


def test_projects_without_a_plan_get_the_settings_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_DEFAULT_OVERLAP", "4")
    with local_graph(tmp_path, judgments=3_000, start=date(2026, 11, 16), days=1, seed=5) as env:
        defs, instance, data = env
        # Without the generator's catalogue the projects are known only from their judgments,
        # as every project that arrives through the annotation DB is.
        (data / "landing" / "synthetic" / "projects.parquet").unlink()
        # A new project whose tasks land before its first judgment: known only from its tasks.
        day_dir = data / "landing" / "synthetic" / "tasks" / "day=2026-11-16"
        tasks = pl.read_parquet(sorted(day_dir.glob("*.parquet"))[0])
        tasks.head(3).with_columns(
            project=pl.lit("newproj"), task_id=pl.format("new-{}", pl.col("task_id"))
        ).write_parquet(day_dir / "part-99999.parquet")
        result = defs.resolve_job_def("daily_annotation_job").execute_in_process(
            partition_key="2026-11-16", instance=instance, run_config=LENIENT_GATES
        )
        assert result.success
        throughput = pl.read_parquet(
            data / "lake" / "workforce_throughput_daily" / "day=2026-11-16" / "data.parquet"
        )
        judged = pl.read_parquet(data / "lake" / "judgments" / "day=2026-11-16" / "data.parquet")
        assert set(throughput["project"]) == set(judged["project"]) | {"newproj"}
        assert len(set(judged["project"])) == 3
        [new] = throughput.filter(pl.col("project") == "newproj").iter_rows(named=True)
        assert (new["tasks_created"], new["judgments"], new["backlog"]) == (3, 0, 3)
