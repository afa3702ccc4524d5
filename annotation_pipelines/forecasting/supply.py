"""Demand against supply: when each forecast bound first exceeds supply, and what to procure.

Supply is a step function per series (a GPU count that changes on the day hardware is added);
the supply at a forecast time is the last known value at or before it, and the first known
value for times before any record. Queueing is demand above supply: a job that asks for more
accelerators than are free waits, so `pending = max(0, demand - supply)`.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

BOUNDS = ("forecast", "lo_80", "hi_80", "lo_95", "hi_95")


def _supply_at(forecast: pl.DataFrame, supply: pl.DataFrame, *, supply_column: str) -> pl.DataFrame:
    missing = [c for c in ("id", "time", supply_column) if c not in supply.columns]
    if missing:
        raise ValueError(
            f"supply: missing column(s) {', '.join(missing)}; have {', '.join(supply.columns)}"
        )
    steps = (
        supply.select(
            pl.col("id").cast(pl.String),
            pl.col("time").cast(forecast.schema["time"]),
            pl.col(supply_column).cast(pl.Float64).alias("supply"),
        )
        .drop_nulls()
        .sort("id", "time")
    )
    joined = forecast.sort("id", "time").join_asof(
        steps, on="time", by="id", strategy="backward", check_sortedness=False
    )
    first = steps.group_by("id").agg(pl.col("supply").first().alias("first_supply"))
    return (
        joined.join(first, on="id", how="left")
        .with_columns(pl.col("supply").fill_null(pl.col("first_supply")))
        .drop("first_supply")
    )


def supply_crossing(
    forecast: pl.DataFrame, supply: pl.DataFrame, *, supply_column: str = "supply"
) -> pl.DataFrame:
    """Per series, the first forecast time each bound exceeds supply (null: never in the horizon).

    forecast: `capacity_forecast` [id, time, forecast, lo_80, hi_80, lo_95, hi_95, ...];
    supply: [id, time, <supply_column>]. Columns: id, supply (at the last forecast time), and
    first_exceeds_<bound> for bound in forecast, lo_80, hi_80, lo_95, hi_95. The hi_95 date is
    the cautious planning date ("1 in 40 chance demand is above this bound by then").
    """
    joined = _supply_at(forecast, supply, supply_column=supply_column)
    return (
        joined.group_by("id")
        .agg(
            pl.col("supply").last(),
            *[
                pl.col("time")
                .filter(pl.col(bound) > pl.col("supply"))
                .min()
                .alias(f"first_exceeds_{bound}")
                for bound in BOUNDS
            ],
        )
        .sort("id")
    )


def procurement(
    forecast: pl.DataFrame,
    supply: pl.DataFrame,
    *,
    lead_time: dt.timedelta,
    queueing_target: float = 0.0,
    level: int = 95,
    as_of: dt.datetime | None = None,
    supply_column: str = "supply",
) -> pl.DataFrame:
    """Accelerators to order now, per series, so queueing stays under target once they arrive.

    Hardware ordered at `as_of` (default: the forecast origin, one step before the first forecast
    time) arrives after `lead_time`; until then nothing can be done, so only forecast times at or
    after arrival count. Over those, the upper `level`% bound of demand minus the queue that is
    tolerated (`queueing_target` accelerators waiting) must fit in supply:
    to_procure = ceil(max(0, max_t(hi_level_t - queueing_target - supply_t))).
    When the horizon ends before arrival the need is unknown (null) and `covered` is False:
    forecast further ahead or shorten the lead time. When the series never reports its supply
    the need is unknown too, and so is `covered` (null). `reason` says why a need is unknown
    (null when it is known).
    """
    bound = f"hi_{level}"
    if bound not in forecast.columns:
        raise ValueError(f"forecast: no column {bound!r}; levels available are 80 and 95")
    joined = _supply_at(forecast, supply, supply_column=supply_column)
    if as_of is None:
        step = joined.group_by("id").agg(
            (
                pl.col("time").min()
                - (pl.col("time").sort().diff().min().fill_null(pl.duration(days=0)))
            ).alias("origin")
        )
    else:
        step = (
            joined.select("id")
            .unique()
            .with_columns(pl.lit(as_of).cast(joined.schema["time"]).alias("origin"))
        )
    joined = joined.join(step, on="id").with_columns(
        (pl.col("origin") + lead_time).alias("arrival")
    )
    after = joined.filter(pl.col("time") >= pl.col("arrival"))
    needs = after.group_by("id").agg(
        (pl.col(bound) - queueing_target - pl.col("supply")).max().alias("shortfall"),
        pl.col(bound).max().alias("peak_demand"),
        pl.col("supply").last(),
    )
    result = (
        joined.group_by("id")
        .agg(pl.col("arrival").first(), pl.col("supply").is_not_null().any().alias("known"))
        .join(needs, on="id", how="left")
        .with_columns(
            # Whether the horizon reaches the arrival says nothing of a supply nobody knows.
            pl.when(pl.col("known")).then(pl.col("shortfall").is_not_null()).alias("covered"),
            pl.when(~pl.col("known"))
            .then(pl.lit("supply unknown: the series reports no total"))
            .when(pl.col("shortfall").is_null())
            .then(pl.lit("the horizon ends before an order placed now arrives"))
            .alias("reason"),
            (pl.col("shortfall") - 1e-9)
            .ceil()
            .clip(lower_bound=0)
            .cast(pl.Int64)
            .alias("to_procure"),
            pl.lit(level).alias("level"),
            pl.lit(float(queueing_target)).alias("queueing_target"),
        )
    )
    return result.select(
        "id",
        "arrival",
        "supply",
        "peak_demand",
        "queueing_target",
        "level",
        "to_procure",
        "covered",
        "reason",
    ).sort("id")
