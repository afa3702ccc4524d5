"""The whole asset graph, in process, on a real (temporary) Dagster instance."""

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, FloatMetadataValue

from annotation_pipelines.curation import content_version
from annotation_pipelines.schema import COLUMN_DOCS as CANONICAL_COLUMNS
from annotation_pipelines.synthetic import generate_compute_usage
from assets.demo import write_compute_landing
from resources.lake import LocalLake
from tests.support import LENIENT_GATES, QUIET, local_graph

DAYS = ["2026-11-16", "2026-11-17"]
RUN_CONFIG = LENIENT_GATES


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    with local_graph(root, judgments=12_000, start=date(2026, 11, 16), days=2, seed=4) as env:
        write_compute_landing(env[2] / "landing", end=date(2026, 11, 17), days=14, seed=4)
        yield env


@pytest.fixture(scope="module")
def daily(graph):
    """Both days through the daily job once; the results are checked by several tests."""
    defs, instance, _ = graph
    job = defs.resolve_job_def("daily_annotation_job")
    return {
        day: job.execute_in_process(partition_key=day, instance=instance, run_config=RUN_CONFIG)
        for day in DAYS
    }


def _lake_hashes(lake: Path, day: str) -> dict[str, str]:
    return {
        path.parts[-3]: content_version(pl.read_parquet(path), sort_by="__none__")
        for path in sorted(lake.glob(f"*/day={day}/data.parquet"))
    }


def test_whole_graph_then_identical_rematerialization(graph, daily):
    defs, instance, data = graph
    assert all(result.success for result in daily.values())
    lake = data / "lake"
    job = defs.resolve_job_def("daily_annotation_job")
    expected = {key.path[-1] for key in job.asset_layer.executable_asset_keys}
    for day in DAYS:
        present = {p.parts[-3] for p in lake.glob(f"*/day={day}/data.parquet")}
        assert expected <= present, expected - present
    judgments = pl.read_parquet(lake / "judgments" / f"day={DAYS[0]}" / "data.parquet")
    labels = pl.read_parquet(lake / "aggregated_labels" / f"day={DAYS[0]}" / "data.parquet")
    assert labels["task_id"].n_unique() == labels.height == judgments["task_id"].n_unique()

    # Per-project snapshot, the versions table, and both forecasts.
    instance.add_dynamic_partitions("projects", ["toxicity"])
    curation = defs.resolve_job_def("curation_job")
    first = curation.execute_in_process(
        partition_key="toxicity", instance=instance, run_config=QUIET
    )
    version = first.get_asset_materialization_events()[0].materialization.metadata["version_id"]
    # The telemetry asset materializes the last day from the landing zone on this instance;
    # the thirteen days before it, which the forecasts only read back from the lake, are
    # written there directly (a run per day cost ~5 s CPU; test_compute_usage.py runs the asset).
    usage = generate_compute_usage(end=date(2026, 11, 17), days=14, seed=4)
    for (day,), frame in usage.group_by(pl.col("time").dt.date(), maintain_order=True):
        if day < date(2026, 11, 17):
            LocalLake(base_path=str(lake)).write_table("compute_usage", frame, day=str(day))
    history = defs.resolve_job_def("compute_usage_job")
    assert history.execute_in_process(
        partition_key=DAYS[1], instance=instance, run_config=QUIET
    ).success
    forecasts = defs.resolve_job_def("forecast_job").execute_in_process(
        instance=instance,
        run_config={
            **QUIET,
            "ops": {
                # Two weeks (the least it takes) and one backtest origin: this test asks that
                # the forecast layer materializes on the graph's instance. The calibrated rule
                # (five origins, each a full statsforecast backtest: 28 s of this test) is
                # tested on the same asset in test_procurement.py.
                "compute_capacity_forecast": {
                    "config": {"horizon": 24, "history_days": 14, "backtest_windows": 1}
                },
                "workforce_capacity_forecast": {"config": {"horizon_days": 7}},
            },
        },
    )
    assert forecasts.success
    materialized = {e.asset_key for e in forecasts.get_asset_materialization_events()}
    assert {AssetKey("compute_capacity_forecast"), AssetKey("workforce_capacity_forecast")} <= (
        materialized
    )
    # Every table an asset writes is one click away from its page.
    [workforce] = [
        e.materialization.metadata
        for e in forecasts.get_asset_materialization_events()
        if e.asset_key == AssetKey("workforce_capacity_forecast")
    ]
    assert workforce["plan_table"].value == str(
        (lake / "workforce_plan" / "data.parquet").resolve()
    )
    versions = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("dataset_versions")}
    )
    listed = versions.execute_in_process(instance=instance, run_config=QUIET)
    assert listed.success
    [event] = listed.get_asset_materialization_events()
    table_path = lake / "dataset_versions" / "data.parquet"
    assert event.materialization.metadata["dagster/uri"].value == str(table_path.resolve())
    table = pl.read_parquet(table_path)
    assert table["version_id"].to_list() == [version.value]
    # Which version is each project's current one, and when each was made.
    assert table["current"].to_list() == [True]
    assert table["created_at"].null_count() == 0

    # Re-materializing a day gives byte-for-byte the same content, and the same snapshot id.
    before = _lake_hashes(lake, DAYS[0])
    assert job.execute_in_process(
        partition_key=DAYS[0], instance=instance, run_config=RUN_CONFIG
    ).success
    assert _lake_hashes(lake, DAYS[0]) == before
    again = curation.execute_in_process(
        partition_key="toxicity", instance=instance, run_config=QUIET
    )
    assert (
        again.get_asset_materialization_events()[0].materialization.metadata["version_id"]
        == version
    )


def test_every_materialization_has_table_metadata_and_no_raw_annotator_id(graph, daily):
    _, _, data = graph
    result = daily[DAYS[1]]
    assert result.success
    seen = 0
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        assert "dagster/row_count" in metadata, event.asset_key
        assert "dagster/column_schema" in metadata, event.asset_key
        # The catalog's Columns panel explains every canonical column.
        for column in metadata["dagster/column_schema"].value.columns:
            if column.name in CANONICAL_COLUMNS:
                assert column.description, (event.asset_key, column.name)
        assert "preview" in metadata, event.asset_key
        # The UI prints every digit of a float: headline figures come rounded.
        for label, value in metadata.items():
            if isinstance(value, FloatMetadataValue) and value.value == value.value:
                assert value.value == round(value.value, 4), (event.asset_key, label, value)
        seen += 1
    assert seen >= 9
    # Annotator ids are personal data: metadata and the mailed HTML reports show pseudonyms.
    raw_ids = set(
        pl.read_parquet(data / "landing" / "synthetic" / "annotators.parquet")["annotator_id"]
    )
    shown = " ".join(
        str(event.materialization.metadata) for event in result.get_asset_materialization_events()
    )
    shown += " ".join(str(c.metadata) for c in result.get_asset_check_evaluations())
    shown += " ".join(p.read_text() for p in (data / "lake" / "reports").rglob("*.html"))
    assert not [i for i in raw_ids if i in shown]
    cards = pl.read_parquet(
        data / "lake" / "annotator_scorecards" / f"day={DAYS[1]}" / "data.parquet"
    )
    assert cards["annotator_pseudonym"].str.starts_with("anon-").all()
