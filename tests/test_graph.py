"""The whole asset graph, in process, on a real (temporary) Dagster instance."""

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance

from annotation_pipelines.curation import content_version
from annotation_pipelines.definitions import build_definitions
from annotation_pipelines.demo import write_compute_landing
from annotation_pipelines.synthetic import generate_workload

DAYS = ["2026-11-16", "2026-11-17"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    home = tmp_path_factory.mktemp("dagster_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
    generate_workload(
        data / "landing" / "synthetic", judgments=12_000, start=date(2026, 11, 16), days=2, seed=4
    )
    write_compute_landing(data / "landing", end=date(2026, 11, 17), days=21, seed=4)
    defs = build_definitions("local")
    instance = DagsterInstance.local_temp(str(home))
    yield defs, instance, data
    instance.dispose()
    mp.undo()


def _lake_hashes(lake: Path, day: str) -> dict[str, str]:
    return {
        path.parts[-3]: content_version(pl.read_parquet(path), sort_by="__none__")
        for path in sorted(lake.glob(f"*/day={day}/data.parquet"))
    }


def test_whole_graph_for_two_partitions_then_identical_rematerialization(graph):
    defs, instance, data = graph
    job = defs.resolve_job_def("daily_annotation_job")
    for day in DAYS:
        assert job.execute_in_process(partition_key=day, instance=instance).success
    lake = data / "lake"
    expected = {key.path[-1] for key in job.asset_layer.executable_asset_keys}
    for day in DAYS:
        present = {p.parts[-3] for p in lake.glob(f"*/day={day}/data.parquet")}
        assert expected <= present, expected - present
    judgments = pl.read_parquet(lake / "judgments" / f"day={DAYS[0]}" / "data.parquet")
    labels = pl.read_parquet(lake / "aggregated_labels" / f"day={DAYS[0]}" / "data.parquet")
    assert labels["task_id"].n_unique() == labels.height == judgments["task_id"].n_unique()
    before = _lake_hashes(lake, DAYS[0])
    assert job.execute_in_process(partition_key=DAYS[0], instance=instance).success
    assert _lake_hashes(lake, DAYS[0]) == before


def test_every_materialization_has_table_metadata(graph):
    defs, instance, _ = graph
    job = defs.resolve_job_def("daily_annotation_job")
    result = job.execute_in_process(partition_key=DAYS[1], instance=instance)
    materializations = result.asset_materializations_for_node
    seen = 0
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        assert "dagster/row_count" in metadata, event.asset_key
        assert "dagster/column_schema" in metadata, event.asset_key
        assert "preview" in metadata, event.asset_key
        seen += 1
    assert seen >= 5
    assert materializations
