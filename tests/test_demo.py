"""`annotation-pipelines demo` end to end, small: what `make demo` runs, on a temporary home."""

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import click
import polars as pl
import pytest
from click.testing import CliRunner, Result

from annotation_pipelines.cli import main
from annotation_pipelines.synthetic import KIND_PROJECTS, generate_compute_usage
from assets.demo import (
    COMPUTE_HISTORY_DAYS,
    DEMO_RECORD,
    build_procurement_plan,
    prepare_data_folder,
    workload_identity,
)


@dataclass(frozen=True)
class Demo:
    home: Path
    data: Path
    result: Result


@pytest.fixture(scope="module")
def full_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo of every layer on a fresh home, read by the test of its output and copied as
    the earlier workload that the test of a second demo starts from: a demo costs ~20 s CPU."""
    root = tmp_path_factory.mktemp("demo")
    home, data = root / "home", root / "data"
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        patch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
        patch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "demo-test-key")
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
                "--until",
                "2026-11-30",
            ],
        )
    yield Demo(home=home, data=data, result=result)


@pytest.mark.e2e
def test_demo_materializes_everything_and_says_where(full_demo: Demo):
    result, tmp_path = full_demo.result, full_demo.data.parent
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


SMALL = ["--judgments", "500", "--judgments-per-kind", "0", "--telemetry-days", "17"]


def _demo(*options: str) -> Result:
    return CliRunner().invoke(main, ["demo", *SMALL, "--until", "2026-11-30", *options])


def _days(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("day=*"))


@pytest.mark.e2e
def test_demo_over_another_workload_refuses_or_starts_fresh_and_reports_only_its_own(
    full_demo: Demo, tmp_path, monkeypatch
):
    # A second demo with other options re-read the first one's landing days and lake tables
    # as one workload, and its summary counted them. The first demo is the full one above,
    # copied (instance and data folder) because this test deletes and rebuilds it.
    assert full_demo.result.exit_code == 0, full_demo.result.output
    shutil.copytree(full_demo.home, tmp_path / "home")
    shutil.copytree(full_demo.data, tmp_path / "data")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "demo-test-key")
    lake, landing = data / "lake", data / "landing" / "synthetic"
    assert _days(lake / "judgments") == ["day=2026-11-29", "day=2026-11-30"]
    before = {path: path.stat().st_mtime_ns for path in data.rglob("*") if path.is_file()}

    refused = _demo("--days", "1")
    assert refused.exit_code == 1, refused.output
    assert "make clean" in refused.output and "--fresh" in refused.output
    assert "20,000 judgments over 2026-11-29 … 2026-11-30" in refused.output
    after = {path: path.stat().st_mtime_ns for path in data.rglob("*") if path.is_file()}
    assert after == before

    fresh = _demo("--days", "1", "--fresh")
    assert fresh.exit_code == 0, fresh.output + repr(fresh.exception)
    assert "--fresh: deleted the earlier demo's landing files and lake" in fresh.output
    assert _days(lake / "judgments") == ["day=2026-11-30"]
    assert _days(landing / "judgments") == ["day=2026-11-30"]
    rows = pl.read_parquet(lake / "judgments" / "day=2026-11-30" / "data.parquet").height
    generated = pl.read_parquet(landing / "judgments" / "**" / "*.parquet").height
    assert rows == generated
    assert f"  {'judgments':<32} {rows:>10,}" in fresh.output
    assert (data / "start_date").read_text().strip() == "2026-11-14"
    # The instance forgets the deleted partitions too, so the UI does not show them as built.
    from dagster import AssetKey, DagsterInstance

    materialized = DagsterInstance.get().get_materialized_partitions(AssetKey("judgments"))
    assert materialized == {"2026-11-30"}

    # The same workload again (what a second `make demo` on the same day is) rebuilds it in place.
    again = _demo("--days", "1", "--fresh")
    assert again.exit_code == 0, again.output + repr(again.exception)
    assert "Rebuilding the same demo workload" in again.output
    assert _days(lake / "judgments") == ["day=2026-11-30"]
    assert pl.read_parquet(lake / "judgments" / "day=2026-11-30" / "data.parquet").height == rows


def _earlier_demo(root: Path, *, record: dict[str, object] | None) -> None:
    for relative in (
        "landing/synthetic/judgments/day=2026-11-29/part-00000.parquet",
        "landing/synthetic/compute_usage/day=2026-11-29/part-00000.parquet",
        "landing/synthetic/projects.parquet",
        "lake/judgments/day=2026-11-29/data.parquet",
        "lake/procurement_plan/data.parquet",
    ):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"x")
    (root / "start_date").write_text("2026-10-19\n")
    if record is not None:
        (root / DEMO_RECORD).write_text(json.dumps(record))


WORKLOAD = workload_identity(
    judgments=500,
    days=[date(2026, 11, 30)],
    seed=7,
    judgments_per_kind=0,
    compute_days=[date(2026, 11, 14), date(2026, 11, 30)],
)


def test_fresh_never_deletes_landing_files_the_demo_did_not_write(tmp_path):
    _earlier_demo(tmp_path, record=None)
    own = tmp_path / "landing" / "exports" / "sentiment" / "batch.csv"
    own.parent.mkdir(parents=True)
    own.write_text("task_id,annotator_id,label\n")
    stray = tmp_path / "landing" / "synthetic" / "notes.txt"
    stray.write_text("mine")
    with pytest.raises(click.ClickException) as refused:
        prepare_data_folder(tmp_path, WORKLOAD, fresh=True, echo=lambda _: None)
    assert "landing/exports" in refused.value.message
    assert "landing/synthetic/notes.txt" in refused.value.message
    assert own.exists() and stray.exists()
    assert (tmp_path / "lake" / "judgments" / "day=2026-11-29" / "data.parquet").exists()


def test_fresh_clears_an_unrecorded_earlier_demo_and_the_same_workload_stays(tmp_path):
    # A data folder filled by a demo that kept no record holds no one else's files either.
    _earlier_demo(tmp_path, record=None)
    lines: list[str] = []
    assert prepare_data_folder(tmp_path, WORKLOAD, fresh=True, echo=lines.append)
    assert not (tmp_path / "lake").exists()
    assert list((tmp_path / "landing" / "synthetic").iterdir()) == []
    assert not (tmp_path / "start_date").exists()
    assert "a workload no demo recorded" in lines[0]

    _earlier_demo(tmp_path, record=WORKLOAD)
    assert not prepare_data_folder(tmp_path, WORKLOAD, fresh=True, echo=lines.append)
    assert (tmp_path / "lake" / "procurement_plan" / "data.parquet").exists()
    assert lines[-1].startswith("Rebuilding the same demo workload")
