"""Telemetry drops with Helios column names land in the canonical compute_usage table."""

import polars as pl
from dagster import DagsterInstance

from annotation_pipelines import schema
from assets.definitions import build_definitions

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def test_helios_named_telemetry_becomes_canonical_usage(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
    folder = tmp_path / "landing" / "telemetry" / "earth"
    folder.mkdir(parents=True)
    minutes = pl.datetime_range(
        pl.datetime(2026, 11, 2), pl.datetime(2026, 11, 3, 23, 59), "1m", eager=True
    )
    pl.DataFrame(
        {
            "time": minutes.dt.strftime("%Y-%m-%d %H:%M:%S"),
            "total_gpu_num": 64,
            "running_gpu_num": (minutes.dt.hour() + 40).cast(pl.Int64),
            "pending_gpu_num": (minutes.dt.hour() > 20).cast(pl.Int64) * 3,
            "idle_gpu_num": 0,
        }
    ).write_csv(folder / "vc6YE.csv")
    result = (
        build_definitions(profile="local")
        .resolve_job_def("compute_usage_job")
        .execute_in_process(
            partition_key="2026-11-02", instance=DagsterInstance.ephemeral(), run_config=QUIET
        )
    )
    assert result.success
    usage = pl.read_parquet(tmp_path / "lake" / "compute_usage" / "day=2026-11-02" / "data.parquet")
    assert dict(usage.schema) == schema.COMPUTE_USAGE
    assert usage.height == 1440  # only the partition's day
    assert set(usage["series_id"]) == {"vc6YE"} and set(usage["cluster"]) == {"earth"}
    assert usage["pending"].sum() == 3 * 3 * 60
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert "by_hour_of_day" in metadata
