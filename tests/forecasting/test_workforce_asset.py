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
        result = defs.resolve_job_def("daily_annotation_job").execute_in_process(
            partition_key="2026-11-16", instance=instance, run_config=LENIENT_GATES
        )
        assert result.success
        throughput = pl.read_parquet(
            data / "lake" / "workforce_throughput_daily" / "day=2026-11-16" / "data.parquet"
        )
        judged = pl.read_parquet(data / "lake" / "judgments" / "day=2026-11-16" / "data.parquet")
        assert set(throughput["project"]) == set(judged["project"])
        assert len(set(throughput["project"])) == 3
