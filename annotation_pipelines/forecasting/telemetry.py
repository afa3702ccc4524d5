"""Accelerator telemetry: load, normalise to the canonical `compute_usage` form, summarise.

Canonical form (`schema.COMPUTE_USAGE`), one row per sample:

    time       UTC timestamp of the sample
    cluster    physical cluster (Helios: the cluster in the file name, e.g. "earth")
    series_id  what is forecast: a virtual cluster, team or cluster ("vc6YE")
    running    accelerators allocated to running jobs
    pending    accelerators requested by queued jobs (queueing demand)
    total      accelerators the series may use (its supply)
    workload_class    training / inference / other (null: not reported)
    accelerator_type  e.g. H100, L4 (null: not reported)
    sm_busy, memory_used  share of the allocated accelerators' SM time busy and memory in use
                      (null where only allocation is reported, as in Helios)

Demand is `running + pending`: what the series would use if nothing queued. Helios traces
(Hu et al., "Characterization and Prediction of Deep Learning Workloads in Large-Scale GPU
Datacenters", SC'21) ship per-minute `running_gpu_num`, `pending_gpu_num`, `total_gpu_num`
per virtual cluster, plus a daily GPU count per virtual cluster (`gpu_number`); both are read
into the canonical form here so the rest of the engine never sees a trace's own header.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl

from annotation_pipelines import schema

HELIOS_COLUMNS = {
    "time": "time",
    "running_gpu_num": "running",
    "pending_gpu_num": "pending",
    "total_gpu_num": "total",
}

DETAIL_COLUMNS = ("workload_class", "accelerator_type", "sm_busy", "memory_used")
WORKLOAD_CLASSES = ("training", "inference", "other")

_HELIOS_NAME = re.compile(r"^helios_(?P<cluster>[^_]+)_(?P<series>.+)$")


# Quarantine reasons of a telemetry sample (`validate_usage`).
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
NOT_FINITE = "not_finite"
NEGATIVE = "negative"
OUT_OF_RANGE = "out_of_range"
UNKNOWN_CLASS = "unknown_workload_class"
# The sample columns read as numbers (counts, then utilization shares).
_NUMBERS = ("running", "pending", "total", "sm_busy", "memory_used")
# A class a sample may report: the planned ones, and "unknown" (as a null reads).
USAGE_CLASSES = (*WORKLOAD_CLASSES, "unknown")


def normalize_usage(
    frame: pl.DataFrame,
    *,
    time_column: str = "time",
    running_column: str = "running",
    pending_column: str = "pending",
    total_column: str = "total",
    cluster: str | None = None,
    series_id: str | None = None,
    source: str = "telemetry",
) -> pl.DataFrame:
    """Canonical `compute_usage` from any frame; Helios column names are recognised.

    `cluster` / `series_id` fill those columns when the frame has none (a Helios file holds one
    virtual cluster and names it only in its file name). A missing `pending` column, or a
    blank pending count, is zero (telemetry without a queue), a missing `total` is null (supply
    unknown). A sample `validate_usage` would quarantine is a ValueError naming `source`, its
    row and field.
    """
    usage, quarantine = validate_usage(
        frame, time_column=time_column, running_column=running_column,
        pending_column=pending_column, total_column=total_column, cluster=cluster,
        series_id=series_id, source=source,
    )  # fmt: skip
    if quarantine.height:
        first = quarantine.row(0, named=True)
        raise ValueError(
            f"{source}: {quarantine.height:,} bad sample(s); the first, row "
            f"{first['source_line']}, {first['field']}: {first['reason']} ({first['raw']})"
        )
    return usage


def validate_usage(
    frame: pl.DataFrame,
    *,
    time_column: str = "time",
    running_column: str = "running",
    pending_column: str = "pending",
    total_column: str = "total",
    cluster: str | None = None,
    series_id: str | None = None,
    source: str = "telemetry",
    first_line: int = 1,
    read_errors: pl.Series | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(canonical `compute_usage` of the good samples, the others as `schema.QUARANTINE` rows
    plus their `time` where it parses).

    A sample is quarantined, with the first failing field, when its time is missing or not a
    time, its running count is missing, a number is not a number or not finite, running /
    pending / total is negative, sm_busy / memory_used is outside [0, 1], or its workload class
    is not one of `USAGE_CLASSES` (a "Training " read as a class of its own, planned at the
    unknown class's target). `source_line` is the sample's row counted from `first_line` (2 for
    a CSV with a header: its line in the file). One bad sample costs that sample, not the file.
    `read_errors`: per row, why the reader could not read it whole (`non_utf8`,
    `extra_fields`), null for the others; such a sample is quarantined with that reason.
    """
    frame = _canonical_columns(
        frame, time_column=time_column, running_column=running_column,
        pending_column=pending_column, total_column=total_column, cluster=cluster,
        series_id=series_id, source=source,
    )  # fmt: skip
    raw = frame.columns
    parsed = frame.with_row_index("_row", offset=first_line).with_columns(
        _parse_time(frame.schema["time"]).alias("_time"),
        *(pl.col(c).cast(pl.Float64, strict=False).alias(f"_{c}") for c in _NUMBERS),
        (read_errors if read_errors is not None else pl.lit(None, pl.String)).alias("_read"),
    )
    checks: list[tuple[str, str, pl.Expr]] = [
        ("time", MISSING_FIELD, pl.col("time").is_null()),
        ("time", WRONG_TYPE, pl.col("_time").is_null()),
        ("running", MISSING_FIELD, pl.col("running").is_null()),
    ]
    for column in _NUMBERS:
        value = pl.col(f"_{column}")
        checks += [
            (column, WRONG_TYPE, pl.col(column).is_not_null() & value.is_null()),
            (column, NOT_FINITE, value.is_not_null() & ~value.is_finite()),
        ]
        if column in ("sm_busy", "memory_used"):
            checks.append((column, OUT_OF_RANGE, (value < 0) | (value > 1)))
        else:
            checks.append((column, NEGATIVE, value < 0))
    checks.append(
        (
            "workload_class",
            UNKNOWN_CLASS,
            pl.col("workload_class").is_not_null()
            & ~pl.col("workload_class").cast(pl.String).is_in(USAGE_CLASSES),
        )
    )
    fields = [pl.when(bad.fill_null(False)).then(pl.lit(f)) for f, _, bad in checks]
    reasons = [pl.when(bad.fill_null(False)).then(pl.lit(r)) for _, r, bad in checks]
    judged = parsed.with_columns(
        pl.when(pl.col("_read").is_null()).then(pl.coalesce(fields)).alias("_field"),
        pl.coalesce([pl.col("_read"), *reasons]).alias("_reason"),
    )
    good = (
        judged.filter(pl.col("_reason").is_null())
        .with_columns(
            pl.col("_time").alias("time"),
            *(pl.col(f"_{c}").alias(c) for c in _NUMBERS),
        )
        .with_columns(
            # A blank pending count is no queue, as a missing column is: null made the sample's
            # demand null, left out of every mean, so the queued samples alone were the demand.
            pl.col("pending").fill_null(0.0)
        )
    )
    usage = schema.conform(
        good.select(list(schema.COMPUTE_USAGE)), schema.COMPUTE_USAGE, name="compute_usage"
    ).sort("series_id", "time")
    bad = judged.filter(pl.col("_reason").is_not_null())
    quarantine = bad.select(
        pl.lit("compute_usage").alias("table"),
        pl.lit("telemetry").alias("source"),
        pl.lit(source).alias("source_file"),
        pl.col("_row").cast(pl.Int64).alias("source_line"),
        pl.col("_field").alias("field"),
        pl.col("_reason").alias("reason"),
        pl.concat_str(
            [pl.lit(f"{c}=") + pl.col(c).cast(pl.String).fill_null("") for c in raw],
            separator=", ",
        ).alias("raw"),
        pl.col("_time").alias("time"),
    )
    return usage, quarantine


def _parse_time(dtype: pl.DataType) -> pl.Expr:
    """The time column as UTC; text that is not a time is null (`schema.to_utc` raises)."""
    if isinstance(dtype, pl.Datetime | pl.Date):
        return schema.to_utc(pl.col("time"), dtype)
    return (
        pl.col("time")
        .cast(pl.String)
        .str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    )


def _canonical_columns(
    frame: pl.DataFrame,
    *,
    time_column: str,
    running_column: str,
    pending_column: str,
    total_column: str,
    cluster: str | None,
    series_id: str | None,
    source: str = "telemetry",
) -> pl.DataFrame:
    """`frame` with the canonical column names (Helios' recognised), the absent ones filled,
    values as read; ValueError naming `source` when a column every sample needs is absent."""
    renames = {
        k: v for k, v in HELIOS_COLUMNS.items() if k in frame.columns and v not in frame.columns
    }
    frame = frame.rename(renames)
    names = {
        time_column: "time",
        running_column: "running",
        pending_column: "pending",
        total_column: "total",
    }
    frame = frame.rename({k: v for k, v in names.items() if k in frame.columns and k != v})
    for required in ("time", "running"):
        if required not in frame.columns:
            raise ValueError(
                f"{source}: missing column {required!r}; have {', '.join(frame.columns)}"
            )
    fill = []
    if "pending" not in frame.columns:
        fill.append(pl.lit(0.0).alias("pending"))
    if "total" not in frame.columns:
        fill.append(pl.lit(None, dtype=pl.Float64).alias("total"))
    if "cluster" not in frame.columns:
        fill.append(pl.lit(cluster or "default", dtype=pl.String).alias("cluster"))
    if "series_id" not in frame.columns:
        fill.append(pl.lit(series_id or cluster or "default", dtype=pl.String).alias("series_id"))
    for column in DETAIL_COLUMNS:
        if column not in frame.columns:
            fill.append(pl.lit(None, dtype=schema.COMPUTE_USAGE[column]).alias(column))
    frame = frame.with_columns(fill) if fill else frame
    return frame.select(list(schema.COMPUTE_USAGE))


def load_helios(
    path: str | Path, *, cluster: str | None = None, series_id: str | None = None
) -> pl.DataFrame:
    """Read one Helios virtual-cluster trace (`helios_<cluster>_<vc>.csv`) as `compute_usage`."""
    path = Path(path)
    match = _HELIOS_NAME.match(path.stem)
    cluster = cluster or (match["cluster"] if match else "default")
    series_id = series_id or (match["series"] if match else path.stem)
    frame = pl.read_csv(path, columns=list(HELIOS_COLUMNS), try_parse_dates=False)
    return normalize_usage(frame, cluster=cluster, series_id=series_id)


def load_helios_supply(path: str | Path, *, cluster: str = "earth") -> pl.DataFrame:
    """Helios daily GPUs per virtual cluster (`gpu_number`) as [time, cluster, series_id, total].

    The wide file (one column per virtual cluster plus `total`) becomes long, so it joins with
    forecasts on `series_id`; the cluster-wide `total` column becomes series `total`.
    """
    wide = pl.read_csv(path, try_parse_dates=False)
    long = wide.unpivot(index="date", variable_name="series_id", value_name="total")
    return long.select(
        pl.col("date").str.to_datetime("%Y-%m-%d", time_unit="us", time_zone="UTC").alias("time"),
        pl.lit(cluster).alias("cluster"),
        pl.col("series_id"),
        pl.col("total").cast(pl.Float64),
    ).sort("series_id", "time")


def to_series(usage: pl.DataFrame, *, freq: str, value: str = "demand") -> pl.DataFrame:
    """Resample canonical usage to `freq` as [id, time, value]: the mean over each bucket.

    `value` is "demand" (running + pending), "running", "pending" or "total". The mean (not the
    sum) keeps the unit "accelerators", so hourly and per-minute telemetry are comparable.
    Buckets with no sample are filled by carrying the last value forward: statsforecast needs a
    regular grid, and a telemetry gap means "no change reported", not zero use.
    """
    expressions = {
        "demand": pl.col("running") + pl.col("pending"),
        "running": pl.col("running"),
        "pending": pl.col("pending"),
        "total": pl.col("total"),
    }
    if value not in expressions:
        raise ValueError(f"value must be one of {', '.join(expressions)}; got {value!r}")
    resampled = (
        usage.sort("series_id", "time")
        .group_by_dynamic("time", every=freq, group_by="series_id")
        .agg(expressions[value].mean().alias("value"))
        .rename({"series_id": "id"})
    )
    return regularize(resampled, freq=freq)


def regularize(series: pl.DataFrame, *, freq: str) -> pl.DataFrame:
    """[id, time, value] on a complete grid of `freq` per id, gaps filled forward."""
    series = series.sort("id", "time")
    return (
        series.upsample("time", every=freq, group_by="id")
        .with_columns(pl.col("id").fill_null(strategy="forward"))
        .with_columns(pl.col("value").fill_null(strategy="forward").over("id"))
        .select("id", "time", pl.col("value").cast(pl.Float64))
    )


def carry_to_end(
    series: pl.DataFrame, *, freq: str, through: dt.date | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`series` [id, time, value] with every id that stopped before the last time of any id
    (or `through`, when later) carried forward at its last value to that time, [id, last] of
    the ids carried).

    As `to_series` reads a gap inside a series, a series that stopped reporting has had no
    change reported, not zero use: read as zero, three missing days dropped a cluster's demand
    by that series' and turned an order into "enough"."""
    if series.height == 0:
        return series, pl.DataFrame(schema={"id": pl.String, "last": series.schema["time"]})
    end = series.get_column("time").max()
    if through is not None:
        later = pl.select(pl.lit(through).cast(series.schema["time"])).item()
        end = max(end, later)
    stale = (
        series.group_by("id")
        .agg(pl.col("time").max().alias("last"))
        .filter(pl.col("last") < end)
        .sort("id")
    )
    if stale.height == 0:
        return series, stale
    ends = stale.select(
        "id", pl.lit(end, dtype=series.schema["time"]).alias("time"), pl.lit(None).alias("value")
    ).cast({"id": series.schema["id"], "value": series.schema["value"]})
    return regularize(pl.concat([series, ends.select(series.columns)]), freq=freq), stale


def summarize_usage(usage: pl.DataFrame, *, every: str = "1d") -> pl.DataFrame:
    """Utilization and queueing per series per period (`every`: "1d" by day, "1h" by hour).

    utilization = mean running / mean total; queued_share = share of samples with anything
    pending; pending_mean / pending_peak describe how deep the queue got.
    """
    return (
        usage.sort("series_id", "time")
        .group_by_dynamic("time", every=every, group_by=["cluster", "series_id"])
        .agg(
            pl.len().alias("samples"),
            pl.col("running").mean().alias("running_mean"),
            pl.col("pending").mean().alias("pending_mean"),
            pl.col("pending").max().alias("pending_peak"),
            pl.col("total").mean().alias("total_mean"),
            (pl.col("pending") > 0).mean().alias("queued_share"),
            (pl.col("running") + pl.col("pending")).max().alias("demand_peak"),
        )
        .with_columns((pl.col("running_mean") / pl.col("total_mean")).alias("utilization"))
        .rename({"time": "period"})
        .sort("cluster", "series_id", "period")
    )


def hour_of_day_profile(usage: pl.DataFrame) -> pl.DataFrame:
    """Mean utilization and queueing per series by hour of day (0–23, UTC)."""
    return (
        usage.with_columns(pl.col("time").dt.hour().alias("hour"))
        .group_by("cluster", "series_id", "hour")
        .agg(
            (pl.col("running").mean() / pl.col("total").mean()).alias("utilization"),
            pl.col("pending").mean().alias("pending_mean"),
            (pl.col("pending") > 0).mean().alias("queued_share"),
        )
        .sort("cluster", "series_id", "hour")
    )


def with_detail_columns(usage: pl.DataFrame) -> pl.DataFrame:
    """`usage` with the class / type / utilization columns, null where absent (partitions
    written before telemetry carried them)."""
    missing = [c for c in DETAIL_COLUMNS if c not in usage.columns]
    return usage.with_columns(
        [pl.lit(None, dtype=schema.COMPUTE_USAGE[c]).alias(c) for c in missing]
    )


def allocation_vs_utilization(usage: pl.DataFrame, *, every: str | None = "1d") -> pl.DataFrame:
    """Per cluster, workload class and accelerator type per period (`every`; None: one period,
    the whole frame): what allocation shows and what the accelerators actually did.

    allocated = the sum over the group's series of each one's mean running accelerators (over
    its own samples in the period); busy = mean running x SM-busy share (weighted by running,
    over the samples that report it: accelerators' worth of SM time actually used);
    idle_allocated = allocated - busy (capacity allocation hides: reserved, not computing);
    unallocated = mean total - allocated (free; null where a
    series of the group never reports its total). busy and idle_allocated are null where SM
    activity is not reported.
    """
    keys = ["cluster", "workload_class", "accelerator_type"]
    detail = with_detail_columns(usage).with_columns(
        pl.col("workload_class").fill_null("unknown"),
        pl.col("accelerator_type").fill_null("unknown"),
    )
    # Each series' mean over its own samples, then the sum over the group's series: series
    # sampled at different rates (one per minute, one per five) weigh the same, where the
    # group's summed samples over its distinct timestamps undercounted the sparser series.
    means = [
        pl.col("running").mean().alias("_running"),
        pl.col("total").mean().alias("_total"),
        _running_times("sm_busy").alias("_busy"),
        pl.col("sm_busy").is_not_null().any().alias("_reported"),
        _running_times("memory_used").alias("_memory"),
    ]
    if every:
        per_series = (
            detail.sort("time")
            .group_by_dynamic("time", every=every, group_by=[*keys, "series_id"])
            .agg(means)
        )
    else:
        # One period, the whole frame, labelled by its first sample.
        per_series = (
            detail.group_by(*keys, "series_id")
            .agg(means)
            .with_columns(
                pl.lit(detail.get_column("time").min(), dtype=detail.schema["time"]).alias("time")
            )
        )
    return (
        per_series.group_by("time", *keys)
        .agg(
            pl.col("_running").sum(),
            # A series that never reports its total leaves the group's unknown (as its fleet
            # is in the plan): the others' sum read as the whole, and unallocated went negative.
            pl.when(pl.col("_total").is_null().any())
            .then(None)
            .otherwise(pl.col("_total").sum())
            .cast(pl.Float64)
            .alias("_total"),
            pl.col("_busy").sum(),
            pl.col("_reported").any(),
            pl.col("_memory").sum(),
        )
        .select(
            pl.col("time").alias("period"),
            *keys,
            pl.col("_running").alias("allocated"),
            pl.when(pl.col("_reported")).then(pl.col("_busy")).alias("busy"),
            pl.col("_total").alias("total"),
            pl.when(pl.col("_reported") & (pl.col("_running") > 0))
            .then(pl.col("_memory") / pl.col("_running"))
            .alias("memory_used"),
        )
        .with_columns(
            (pl.col("allocated") - pl.col("busy")).alias("idle_allocated"),
            (pl.col("total") - pl.col("allocated")).alias("unallocated"),
            (pl.col("busy") / pl.col("allocated")).alias("sm_busy"),
        )
        .sort(*keys, "period")
    )


def _running_times(share: str) -> pl.Expr:
    """Mean running accelerators x `share` (an aggregation): the share's running-weighted mean
    over the samples that report it, times the mean running over all. A sample without it
    says nothing of it: counted as zero, an exporter started halfway through halved busy."""
    weighted = (pl.col("running") * pl.col(share)).sum()
    reported = pl.col("running").filter(pl.col(share).is_not_null()).sum()
    # Nothing running while it was reported (or never reported: `_reported` says which): 0.
    return pl.when(reported > 0).then(pl.col("running").mean() * weighted / reported).otherwise(0.0)


def class_shares(usage: pl.DataFrame) -> pl.DataFrame:
    """[cluster, workload_class, accelerator_type, share]: each class's share of the cluster's
    demand (running + pending) over the whole frame; unreported classes are "unknown"."""
    demand = usage.with_columns(
        pl.col("workload_class").fill_null("unknown"),
        pl.col("accelerator_type").fill_null("unknown"),
        (pl.col("running") + pl.col("pending")).alias("demand"),
    )
    per_class = demand.group_by("cluster", "workload_class", "accelerator_type").agg(
        pl.col("demand").sum()
    )
    return (
        per_class.with_columns(
            (pl.col("demand") / pl.col("demand").sum().over("cluster")).fill_nan(0.0).alias("share")
        )
        .drop("demand")
        .sort("cluster", "workload_class", "accelerator_type")
    )
