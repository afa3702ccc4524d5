"""Helpers shared by the quality engine: the day of a judgment, Wilson intervals, input checks."""

from __future__ import annotations

from statistics import NormalDist
from typing import TypeVar

import polars as pl

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def require(frame: pl.DataFrame | pl.LazyFrame, name: str, columns: tuple[str, ...]) -> None:
    names = frame.collect_schema().names()
    missing = [column for column in columns if column not in names]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"have {', '.join(repr(c) for c in names) or 'no columns'}"
        )


def with_day(judgments: FrameT) -> FrameT:
    """Judgments with a `day` (pl.Date): kept if present, else the UTC date of submitted_at."""
    require(judgments, "judgments", ("task_id", "project", "annotator_id", "label"))
    schema = judgments.collect_schema()
    if "day" in schema:
        return judgments.with_columns(pl.col("day").cast(pl.Date))
    if "submitted_at" not in schema:
        raise ValueError("judgments: need a 'day' or a 'submitted_at' column to assign days")
    submitted = pl.col("submitted_at")
    dtype = schema["submitted_at"]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC"):
        submitted = submitted.dt.convert_time_zone("UTC")
    return judgments.with_columns(submitted.dt.date().alias("day"))


def z_value(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_bounds(
    successes: pl.Expr, trials: pl.Expr, *, confidence: float
) -> tuple[pl.Expr, pl.Expr]:
    """Wilson (1927) score interval for a binomial proportion; null when there are no trials.

    Unlike the normal approximation it stays inside [0, 1] and is sensible for the handful of
    gold questions one annotator answers in a day.

    The bounds are the roots of (1 + z²/n)·P² − (2p + z²/n)·P + p² = 0. `center ∓ half`
    cancels at the ends (0 of 5 right gave a lower bound of 2.8e-17, 5 of 5 an upper bound of
    0.9999999999999999); the inner root taken as the product of the roots over the outer one,
    p² / (p + z²/2n + z·√(pq/n + z²/4n²)), is exactly 0 for p = 0, and the upper bound, the
    same for the failures subtracted from 1, exactly 1 for q = 0.
    """
    z = z_value(confidence)
    n = trials.cast(pl.Float64)
    p = successes.cast(pl.Float64) / n
    q = (trials - successes).cast(pl.Float64) / n
    shift = z * z / (2.0 * n)
    spread = z * (p * q / n + z * z / (4.0 * n * n)).sqrt()
    valid = trials > 0
    return (
        pl.when(valid).then((p * p / (p + shift + spread)).clip(0.0, 1.0)),
        pl.when(valid).then((1.0 - q * q / (q + shift + spread)).clip(0.0, 1.0)),
    )


def join_reasons(*reasons: pl.Expr) -> pl.Expr:
    """'; '-joined non-null reasons, or null when there are none."""
    joined = pl.concat_list(*reasons).list.drop_nulls().list.join("; ")
    return pl.when(joined.str.len_chars() > 0).then(joined)
