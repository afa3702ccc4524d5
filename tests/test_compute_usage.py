"""Telemetry drops with Helios column names land in the canonical compute_usage table."""

import os
import time

import polars as pl
import pytest
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
    result, usage = _usage_day(tmp_path, "2026-11-02")
    assert dict(usage.schema) == schema.COMPUTE_USAGE
    assert usage.height == 1440  # only the partition's day
    assert set(usage["series_id"]) == {"vc6YE"} and set(usage["cluster"]) == {"earth"}
    assert usage["pending"].sum() == 3 * 3 * 60
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert "by_hour_of_day" in metadata


def test_a_telemetry_drop_is_read_only_once_it_has_settled(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ANNOTATION_PIPELINES_LANDING_SETTLE_SECONDS", "60")
    folder = tmp_path / "landing" / "telemetry" / "earth"
    folder.mkdir(parents=True)
    header = "time,total_gpu_num,running_gpu_num,pending_gpu_num\n"
    rows = "".join(f"2026-11-02 {hour:02d}:00:00,8,{hour % 8},0\n" for hour in range(24))
    # A copy in progress: half the day so far, cut mid-row.
    (folder / "a.csv").write_text(header + rows[: len(rows) // 2])
    # Under an upload's temporary name it is never read, however long it rests.
    (folder / "b.csv.part").write_text(header + "2026-11-02 00:00:00,8,")
    _age(folder / "b.csv.part", 3600)
    job = build_definitions(profile="local").resolve_job_def("compute_usage_job")

    def usage():
        result = job.execute_in_process(
            partition_key="2026-11-02", instance=DagsterInstance.ephemeral(), run_config=QUIET
        )
        assert result.success
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        path = tmp_path / "lake" / "compute_usage" / "day=2026-11-02" / "data.parquet"
        return pl.read_parquet(path), metadata

    frame, metadata = usage()
    assert frame.height == 0
    assert metadata["unsettled_files"].value == ["telemetry/earth/a.csv"]
    (folder / "a.csv").write_text(header + rows)
    _age(folder / "a.csv", 61)
    frame, metadata = usage()
    assert frame.height == 24 and metadata["unsettled_files"].value == []
    assert set(frame["series_id"]) == {"a"}


def _usage_day(lake_root, day: str):
    """`compute_usage_job` run in process for `day`, and the partition it wrote."""
    result = (
        build_definitions(profile="local")
        .resolve_job_def("compute_usage_job")
        .execute_in_process(
            partition_key=day, instance=DagsterInstance.ephemeral(), run_config=QUIET
        )
    )
    assert result.success
    return result, pl.read_parquet(
        lake_root / "lake" / "compute_usage" / f"day={day}" / "data.parquet"
    )


def _age(path, seconds):
    written = time.time() - seconds
    os.utime(path, (written, written))


def test_allocation_vs_utilization_by_hand():
    import datetime as dt

    from annotation_pipelines.forecasting.telemetry import (
        allocation_vs_utilization,
        class_shares,
        normalize_usage,
    )

    t0 = dt.datetime(2026, 11, 2)
    frame = normalize_usage(
        pl.DataFrame(
            {
                "time": [t0, t0, t0 + dt.timedelta(hours=1), t0 + dt.timedelta(hours=1)],
                "series_id": ["a", "b", "a", "b"],
                "running": [8.0, 4.0, 16.0, 4.0],
                "pending": [0.0, 0.0, 8.0, 0.0],
                "total": [16.0, 8.0, 16.0, 8.0],
                "workload_class": ["training", "inference"] * 2,
                "accelerator_type": ["H100", "L4"] * 2,
                "sm_busy": [0.9, 0.25, 0.8, 0.5],
                "memory_used": [0.5, 0.5, 0.7, 0.3],
            }
        ),
        cluster="earth",
    )
    report = {row["workload_class"]: row for row in allocation_vs_utilization(frame).to_dicts()}
    training = report["training"]
    # allocated (8 + 16) / 2 = 12; busy (8*0.9 + 16*0.8) / 2 = 10; idle 2; unallocated 16 - 12.
    assert training["allocated"] == 12.0 and training["busy"] == pytest.approx(10.0)
    assert training["idle_allocated"] == pytest.approx(2.0) and training["unallocated"] == 4.0
    inference = report["inference"]
    assert inference["busy"] == pytest.approx((4 * 0.25 + 4 * 0.5) / 2)
    shares = dict(class_shares(frame).select("workload_class", "share").iter_rows())
    assert shares["training"] == pytest.approx(32 / 40) and shares["inference"] == pytest.approx(
        8 / 40
    )
    # Allocation-only telemetry (Helios) reports no SM activity: busy is unknown, not zero.
    helios = normalize_usage(frame.drop("sm_busy", "memory_used"), cluster="earth")
    assert allocation_vs_utilization(helios).get_column("busy").is_null().all()


def test_busy_counts_the_samples_that_report_sm_activity_only():
    # An exporter started halfway through: the samples before it say nothing of SM activity,
    # but counted as idle they halved busy (4 of 10 running, 80 % busy) and doubled the idle
    # capacity the report shows.
    import datetime as dt

    from annotation_pipelines.forecasting.telemetry import (
        allocation_vs_utilization,
        normalize_usage,
    )

    t0 = dt.datetime(2026, 11, 2)
    frame = normalize_usage(
        pl.DataFrame(
            {
                "time": [t0 + dt.timedelta(hours=h) for h in range(4)],
                "series_id": "a",
                "running": 10.0,
                "total": 16.0,
                "sm_busy": [None, None, 0.8, 0.8],
                "memory_used": [None, None, 0.5, 0.5],
            },
            schema_overrides={"sm_busy": pl.Float64, "memory_used": pl.Float64},
        ),
        cluster="earth",
    )
    for every in (None, "1d"):
        row = allocation_vs_utilization(frame, every=every).row(0, named=True)
        assert row["allocated"] == 10.0 and row["busy"] == pytest.approx(8.0)
        assert row["idle_allocated"] == pytest.approx(2.0) and row["sm_busy"] == pytest.approx(0.8)
        assert row["memory_used"] == pytest.approx(0.5)


def test_a_blank_pending_count_is_no_queue_not_a_sample_left_out():
    # An exporter that writes pending only when something queues: blank, the sample's demand
    # was null and left out of the mean, so the one queued hour (10 running + 50 pending) read
    # as the day's demand, 60 instead of 18.3, and hours without a queue were null.
    import datetime as dt

    from annotation_pipelines.forecasting.telemetry import normalize_usage, to_series

    t0 = dt.datetime(2026, 11, 2)
    usage = normalize_usage(
        pl.DataFrame(
            {
                "time": [t0 + dt.timedelta(hours=h) for h in range(6)],
                "running": 10.0,
                "pending": [None] * 5 + [50.0],
                "total": 64.0,
            },
            schema_overrides={"pending": pl.Float64},
        ),
        cluster="earth",
        series_id="a",
    )
    assert usage.get_column("pending").to_list() == [0.0] * 5 + [50.0]
    assert to_series(usage, freq="1d").get_column("value").to_list() == [pytest.approx(110 / 6)]
    assert to_series(usage, freq="1h").get_column("value").null_count() == 0


def test_synthetic_classes_behave_like_their_workloads():
    from datetime import date

    from annotation_pipelines.synthetic import generate_compute_usage

    usage = generate_compute_usage(end=date(2026, 11, 20), days=14, seed=1)
    training = usage.filter(pl.col("workload_class") == "training")
    inference = usage.filter(pl.col("workload_class") == "inference")
    assert ((training["running"] + training["pending"]) % 8 == 0).all()  # whole-node gangs
    assert training["sm_busy"].mean() > 0.75 > 0.5 > inference["sm_busy"].mean()
    assert set(usage["accelerator_type"]) == {"H100", "L4", "A100"}


def test_a_bad_telemetry_sample_is_quarantined_not_the_partition(tmp_path, monkeypatch):
    # "n/a" failed the partition with a Polars cast error naming no file or row; NaN, a
    # negative count and a class with a trailing space were accepted and crashed the plan.
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
    folder = tmp_path / "landing" / "telemetry" / "earth"
    folder.mkdir(parents=True)
    header = "time,running,pending,total,workload_class,accelerator_type\n"
    rows = [f"2026-11-02T{hour:02d}:00:00Z,10,0,64,training,H100\n" for hour in range(24)]
    rows[3] = "2026-11-02T03:00:00Z,n/a,0,64,training,H100\n"
    rows[5] = "2026-11-02T05:00:00Z,-500,0,64,training,H100\n"
    rows[7] = "2026-11-02T07:00:00Z,10,NaN,64,training,H100\n"
    rows[9] = "2026-11-02T09:00:00Z,10,0,64,Training ,H100\n"
    (folder / "team-a.csv").write_text(header + "".join(rows))
    _age(folder / "team-a.csv", 3600)
    result, usage = _usage_day(tmp_path, "2026-11-02")
    assert usage.height == 20 and usage["running"].is_finite().all()
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_quarantined"].value == 4
    assert metadata["quarantine_reasons"].value == {
        "wrong_type": 1, "negative": 1, "not_finite": 1, "unknown_workload_class": 1
    }  # fmt: skip
    quarantine = pl.read_parquet(
        tmp_path / "lake" / "quarantine" / "source=telemetry" / "2026-11-02.parquet"
    ).sort("source_line")
    assert quarantine.select("source_file", "source_line", "field", "reason").rows() == [
        ("telemetry/earth/team-a.csv", 5, "running", "wrong_type"),
        ("telemetry/earth/team-a.csv", 7, "running", "negative"),
        ("telemetry/earth/team-a.csv", 9, "pending", "not_finite"),
        ("telemetry/earth/team-a.csv", 11, "workload_class", "unknown_workload_class"),
    ]
    assert "team-a.csv" in metadata["quarantine_preview"].value


def test_an_empty_or_awkward_telemetry_drop_costs_its_rows_not_every_day(tmp_path, monkeypatch):
    """Every day reads every drop, so one file polars could not read (empty, a row wider than
    the header, a byte that is not UTF-8) failed compute_usage for every day with polars'
    words, naming no file."""
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
    folder = tmp_path / "landing" / "telemetry" / "earth"
    folder.mkdir(parents=True)
    header = "time,running,pending,total,workload_class\n"
    (folder / "good.csv").write_text(header + "2026-11-02T01:00:00Z,10,0,64,training\n")
    (folder / "empty.csv").write_bytes(b"")
    (folder / "odd.csv").write_bytes(
        (
            header
            + "2026-11-02T02:00:00Z,10,0,64,training,extra\n"
            + "2026-11-02T03:00:00Z,10,0,64,tr\xe4ining\n"
            + "2026-11-02T04:00:00Z,10,0,64,inference\n"
        ).encode("latin-1")
    )
    for name in ("good.csv", "empty.csv", "odd.csv"):
        _age(folder / name, 3600)
    result, usage = _usage_day(tmp_path, "2026-11-02")
    assert sorted(usage["series_id"].to_list()) == ["good", "odd"]
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["quarantine_reasons"].value == {"extra_fields": 1, "non_utf8": 1}
    quarantine = pl.read_parquet(
        tmp_path / "lake" / "quarantine" / "source=telemetry" / "2026-11-02.parquet"
    ).sort("source_line")
    assert quarantine.select("source_file", "source_line", "reason").rows() == [
        ("telemetry/earth/odd.csv", 2, "extra_fields"),
        ("telemetry/earth/odd.csv", 3, "non_utf8"),
    ]
    # A file without the columns fails the run naming it.
    (folder / "odd.csv").write_text("when,gpus\n2026-11-02T04:00:00Z,3\n")
    _age(folder / "odd.csv", 3600)
    failed = (
        build_definitions(profile="local")
        .resolve_job_def("compute_usage_job")
        .execute_in_process(
            partition_key="2026-11-02",
            instance=DagsterInstance.ephemeral(),
            run_config=QUIET,
            raise_on_error=False,
        )
    )
    failure = next(e for e in failed.all_events if e.is_step_failure)
    assert "telemetry/earth/odd.csv: missing column 'time'" in str(failure.step_failure_data.error)


def test_a_file_under_telemetry_that_is_not_a_drop_is_named_not_silently_skipped(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
    folder = tmp_path / "landing" / "telemetry" / "earth"
    (folder / "2026-11").mkdir(parents=True)
    sample = "time,running\n2026-11-02T01:00:00Z,10\n"
    (folder / "good.csv").write_text(sample)
    (folder / "late.tsv").write_text(sample.replace(",", "\t"))
    (folder / "2026-11" / "deeper.csv").write_text(sample)
    (tmp_path / "landing" / "telemetry" / "loose.csv").write_text(sample)
    for path in (tmp_path / "landing" / "telemetry").rglob("*.*"):
        _age(path, 3600)
    result, usage = _usage_day(tmp_path, "2026-11-02")
    assert usage["series_id"].to_list() == ["good"]
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["ignored_files"].value == [
        "telemetry/earth/2026-11/deeper.csv",
        "telemetry/earth/late.tsv",
        "telemetry/loose.csv",
    ]
