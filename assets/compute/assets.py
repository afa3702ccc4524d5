"""Accelerator telemetry: per-day usage in canonical form, from every telemetry drop.

Sources in the landing zone: the generator's canonical parts (`synthetic/compute_usage/`) and
telemetry drops `telemetry/<cluster>/<series>.{csv,parquet}` in the canonical form
(time, cluster, series_id, running, pending, total) or with Helios' column names
(`running_gpu_num`, `pending_gpu_num`, `total_gpu_num`), one series per file when the file
names none. A drop is read once it has settled (`LandingZone.scan_settled`): one written to
within the settle time, or under an upload's temporary name, is left for a later run.
"""

import datetime as dt

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from annotation_pipelines import schema
from annotation_pipelines.forecasting import hour_of_day_profile, summarize_usage
from annotation_pipelines.forecasting.telemetry import allocation_vs_utilization, validate_usage
from annotation_pipelines.ingest.tables import READ_ERROR, read_landing_table
from annotation_pipelines.lake import quarantine_key
from assets.common.metadata import figure, markdown_table
from assets.common.partitions import daily_partitions
from resources.lake import Lake
from resources.landing import LandingZone


def _is_telemetry(path: str) -> bool:
    return len(path.split("/")) == 3 and path.endswith((".csv", ".parquet"))


def _telemetry_drops(
    landing: LandingZone, day: dt.date
) -> tuple[list[pl.DataFrame], pl.DataFrame, list[str], list[str]]:
    """(the day's rows of every settled telemetry drop, the day's samples of them that
    `validate_usage` quarantined, the drops not read because they were written to within the
    landing zone's settle time, the settled files under `telemetry/` that are no drop).

    A quarantined sample belongs to its day; one whose time is not a time has none and is
    reported with every partition that reads its file."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    in_day = (pl.col("time") >= start) & (pl.col("time") < start + dt.timedelta(days=1))
    frames = []
    quarantined = [schema.empty(schema.QUARANTINE)]
    settled, waiting = landing.scan_settled("telemetry/")
    for path, _ in settled:
        parts = path.split("/")
        if not _is_telemetry(path):
            continue
        parquet = path.endswith(".parquet")
        # Read as text, so a cell that is not a number is that sample's problem, not the file's.
        raw = read_landing_table(path, landing.read_bytes(path), columns=("time", "running"))
        usage, quarantine = validate_usage(
            raw.drop(READ_ERROR), cluster=parts[1], series_id=parts[2].rsplit(".", 1)[0],
            source=path, first_line=1 if parquet else 2, read_errors=raw.get_column(READ_ERROR),
        )  # fmt: skip
        frames.append(usage.filter(in_day))
        quarantined.append(
            quarantine.filter(in_day | pl.col("time").is_null()).select(list(schema.QUARANTINE))
        )
    ignored = sorted(path for path, _ in settled if not _is_telemetry(path))
    waiting = [path for path in waiting if _is_telemetry(path)]
    return frames, pl.concat(quarantined), waiting, ignored


@asset(
    partitions_def=daily_partitions,
    group_name="compute",
    owners=["team:compute-capacity"],
    kinds={"polars", "parquet"},
    description="Accelerator telemetry for the day: running, pending and total GPUs per series.",
)
def compute_usage(
    context: AssetExecutionContext, landing: LandingZone, lake: Lake
) -> Output[pl.DataFrame]:
    day = context.partition_key
    parts = [landing.read_synthetic("compute_usage", day, schema.COMPUTE_USAGE)]
    drops, quarantine, waiting, ignored = _telemetry_drops(landing, dt.date.fromisoformat(day))
    parts += drops
    if ignored:
        # Dropped where no telemetry goes: said, or its samples are missed without a word.
        context.log.warning(
            f"{len(ignored)} file(s) under telemetry/ not read: a drop is "
            f"telemetry/<cluster>/<series>.csv or .parquet: {', '.join(ignored[:5])}"
        )
    if waiting:
        # A half-written drop would land truncated rows; the next materialization reads it.
        context.log.warning(
            landing.unsettled_note(waiting, what="telemetry file(s)", then="not read yet")
        )
    # The day's quarantine replaces the previous run's, empty or not, so a fixed drop clears it.
    lake.put_frame(quarantine_key("telemetry", day), quarantine)
    if quarantine.height:
        context.log.warning(
            f"compute_usage {day}: {quarantine.height:,} telemetry sample(s) quarantined "
            f"(first: {quarantine['source_file'][0]} row {quarantine['source_line'][0]}, "
            f"{quarantine['field'][0]}: {quarantine['reason'][0]})"
        )
    reasons = dict(quarantine.group_by("reason").len().sort("reason").iter_rows())
    unsettled = {
        "unsettled_files": MetadataValue.json(waiting),
        "ignored_files": MetadataValue.json(ignored),
        "rows_quarantined": MetadataValue.int(quarantine.height),
        "quarantine_reasons": MetadataValue.json(reasons),
        "quarantine_preview": markdown_table(quarantine.drop("raw")),
    }
    frame = schema.conform(
        pl.concat(
            [schema.conform(p, schema.COMPUTE_USAGE, name="compute_usage") for p in parts],
            how="vertical_relaxed",
        ),
        schema.COMPUTE_USAGE,
        name=f"compute_usage {day}",
    ).sort("cluster", "series_id", "time")
    if frame.height == 0:
        return Output(frame, metadata={"series": MetadataValue.int(0), **unsettled})
    daily = summarize_usage(frame, every="1d")
    peak = (frame["running"] + frame["pending"]).max()
    return Output(
        frame,
        metadata={
            "series": MetadataValue.int(frame["series_id"].n_unique()),
            **unsettled,
            "utilization_and_queueing": markdown_table(daily),
            "by_hour_of_day": markdown_table(hour_of_day_profile(frame), rows=24 * 8),
            # Allocation vs what the SMs did, per class: idle_allocated is what allocation hides.
            "allocation_vs_utilization": markdown_table(allocation_vs_utilization(frame)),
            # A numeric column's max is a number, or None when every value is null.
            "peak_demand_gpus": figure(float(peak) if isinstance(peak, int | float) else 0.0),
        },
    )
