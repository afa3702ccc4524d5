"""A toy crowd day (shared/reference/agreement.md) and a helper to build majority labels."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tests.agreement.conftest import TOY_CROWD

DAY = dt.date(2026, 11, 20)


def majority(judgments: pl.DataFrame) -> pl.DataFrame:
    """Majority vote; ties go to the alphabetically first label (so toy t1 → "no")."""
    return (
        judgments.group_by("task_id", "project", "label")
        .agg(pl.len().alias("votes"))
        .sort(["task_id", "votes", "label"], descending=[False, True, False])
        .group_by("task_id", "project", maintain_order=True)
        .agg(
            pl.col("label").first(),
            (pl.col("votes").first() / pl.col("votes").sum()).alias("confidence"),
            pl.col("votes").sum().cast(pl.UInt32).alias("n_votes"),
            ((pl.len() > 1) & (pl.col("votes").get(0) == pl.col("votes").get(1, null_on_oob=True)))
            .fill_null(False)
            .alias("is_tie"),
        )
        .with_columns(pl.lit("majority_vote").alias("method"))
    )


@pytest.fixture
def toy_day() -> pl.DataFrame:
    return pl.DataFrame(
        [
            (task, "toy", worker, label, DAY)
            for worker, row in TOY_CROWD.items()
            for task, label in row.items()
        ],
        schema={
            "task_id": pl.String,
            "project": pl.String,
            "annotator_id": pl.String,
            "label": pl.String,
            "day": pl.Date,
        },
        orient="row",
    )
