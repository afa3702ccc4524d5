"""`annotation-pipelines demo` end to end, small: what `make demo` runs, on a temporary home."""

from datetime import date

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main
from annotation_pipelines.synthetic import KIND_PROJECTS, generate_compute_usage
from assets.demo import COMPUTE_HISTORY_DAYS, build_procurement_plan


def test_demo_materializes_everything_and_says_where(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "demo-test-key")
    result = CliRunner().invoke(
        main,
        [
            "demo",
            "--judgments",
            "20000",
            "--days",
            "2",
            "--judgments-per-kind",
            "700",
            "--telemetry-days",
            "17",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    lake = tmp_path / "data" / "lake"
    for table in (
        "judgments",
        "aggregated_labels",
        "quality_report",
        "annotator_scorecards",
        "workforce_throughput_daily",
        "compute_usage",
    ):
        assert any((lake / table).glob("day=*/data.parquet")), table
    # Seventeen days keep this test short; the procurement plan needs six weeks (below).
    assert "procurement plan skipped: it needs at least 42 days" in result.output
    for table in ("compute_capacity_forecast", "workforce_capacity_forecast", "dataset_versions"):
        assert (lake / table / "data.parquet").exists(), table
    assert len(list((lake / "datasets").glob("*/*/card.md"))) == 3 + len(KIND_PROJECTS)
    assert "Quality (mean over the days)" in result.output
    # Every non-categorical kind is scored against its synthetic truth next to its baseline.
    assert "Per-kind accuracy against the synthetic truth" in result.output
    for spec in KIND_PROJECTS:
        assert f"  {spec.name:<12} {spec.kind:<10}" in result.output, spec.name
    assert "Curated datasets" in result.output and "make dev" in result.output


def test_demo_builds_the_procurement_plan_from_six_weeks_of_telemetry(tmp_path, monkeypatch):
    from dagster import DagsterInstance

    from assets.definitions import build_definitions
    from resources.lake import LocalLake

    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "demo-test-key")
    lake = LocalLake(base_path=str(tmp_path / "data" / "lake"))
    usage = generate_compute_usage(end=date(2026, 11, 28), days=COMPUTE_HISTORY_DAYS, seed=7)
    for (day,), frame in usage.group_by(pl.col("time").dt.date(), maintain_order=True):
        lake.write_table("compute_usage", frame, day=day.isoformat())
    lines: list[str] = []
    defs, instance = build_definitions(profile="local"), DagsterInstance.ephemeral()
    build_procurement_plan(defs, instance, telemetry_days=COMPUTE_HISTORY_DAYS, echo=lines.append)
    assert lines == ["  materialized the procurement plan"]
    assert lake.read_table("procurement_plan").height > 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("--judgments", "0"), ("--days", "0"), ("--days", "-3"), ("--judgments-per-kind", "-1")],
)
def test_demo_refuses_counts_it_cannot_use_before_any_work(tmp_path, monkeypatch, option, value):
    # --days 0 ended in an IndexError traceback and --judgments 0 in a ValueError one, after
    # the instance and data folder were set up; -1 judgments per kind ran as 0.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(main, ["demo", option, value])
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert not (tmp_path / "data").exists()
