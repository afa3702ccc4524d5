"""Per project and UTC day: tasks in, judgments, completions, annotator-hours, rate, backlog."""

from __future__ import annotations

import datetime as dt

import polars as pl

from annotation_pipelines import schema
from annotation_pipelines.forecasting.scalars import as_datetime
from annotation_pipelines.forecasting.workforce.settings import project_settings, require_columns

THROUGHPUT_COLUMNS: dict[str, pl.DataType] = {
    **schema.WORKFORCE_THROUGHPUT,
    "backlog": pl.UInt32(),
}


def workforce_throughput(
    judgments: pl.DataFrame,
    tasks: pl.DataFrame,
    projects: pl.DataFrame,
    *,
    through: dt.date | None = None,
) -> pl.DataFrame:
    """Per project and UTC day: volume, judgments, completions, annotators, hours, rate, backlog.

    judgments: `schema.JUDGMENTS` (task_id, project, annotator_id, submitted_at, duration_s are
    used); tasks: `schema.RAW_TASKS` (task_id, project, created_at); projects: [project,
    overlap, sla_days]. Returns `schema.WORKFORCE_THROUGHPUT` columns plus `backlog`, one row
    per project per day from the project's first activity to `through` (default: the last day
    with any task or judgment in the inputs; later rows are ignored), days without activity as
    zeros. Definitions:

    - a task exists from the earlier of its `created_at` and its first judgment (a task seen
      only in judgments, or judged before its recorded creation, exists from that judgment);
    - it is completed when its `overlap`-th distinct annotator first judges it (repeat
      judgments by one annotator count as judgments and hours, not toward overlap);
    - `annotator_hours` = the day's judgments × the mean of their known `duration_s` / 3600
      (a judgment with no duration is taken to have the mean; null when none of the day's
      judgments has one, 0 on a day without judgments);
      `judgments_per_annotator_hour` = judgments / annotator_hours (null when no hours);
    - `backlog` = tasks existing and not completed at the end of the day, so
      backlog[d] = backlog[d-1] + tasks_created[d] - tasks_completed[d] exactly.
    """
    require_columns(
        judgments,
        ("task_id", "project", "annotator_id", "submitted_at", "duration_s"),
        name="judgments",
    )
    require_columns(tasks, ("task_id", "project", "created_at"), name="tasks")
    settings = project_settings(projects)
    judged = judgments.select(
        pl.col("project").cast(pl.String),
        pl.col("task_id").cast(pl.String),
        pl.col("annotator_id").cast(pl.String),
        schema.to_utc(pl.col("submitted_at"), judgments.schema["submitted_at"]).alias(
            "submitted_at"
        ),
        # A NaN or infinite duration (ingest quarantines them, older lakes may hold them) is
        # no measurement: it counts as unknown, as in annotation costs, instead of making the
        # day's hours NaN or infinite.
        pl.when(pl.col("duration_s").cast(pl.Float64).is_finite())
        .then(pl.col("duration_s").cast(pl.Float64))
        .alias("duration_s"),
    ).drop_nulls(["project", "task_id", "submitted_at"])
    negative = judged.filter(pl.col("duration_s") < 0)
    if negative.height:
        row = negative.row(0, named=True)
        raise ValueError(
            f"judgments: negative duration_s {row['duration_s']} for task {row['task_id']!r} "
            f"by annotator {row['annotator_id']!r}"
        )
    created = (
        tasks.select(
            pl.col("project").cast(pl.String),
            pl.col("task_id").cast(pl.String),
            schema.to_utc(pl.col("created_at"), tasks.schema["created_at"]).alias("created_at"),
        )
        .drop_nulls(["project", "task_id"])
        .group_by("project", "task_id")
        .agg(pl.col("created_at").min())
    )
    known = set(created.get_column("project").unique().to_list()) | set(
        judged.get_column("project").unique().to_list()
    )
    unconfigured = sorted(known - set(settings.get_column("project").to_list()))
    if unconfigured:
        raise ValueError(
            f"projects: no overlap/sla_days for project(s) {', '.join(map(repr, unconfigured))}"
        )
    if through is None:
        last = pl.concat(
            [
                judged.select(pl.col("submitted_at").max().alias("time")),
                created.select(pl.col("created_at").max().alias("time")),
            ]
        ).get_column("time")
        if last.drop_nulls().is_empty():
            return schema.empty(THROUGHPUT_COLUMNS)
        through = as_datetime(last.max(), what="latest submission or creation").date()
    judged = judged.with_columns(pl.col("submitted_at").dt.date().alias("day")).filter(
        pl.col("day") <= through
    )
    # The overlap-th distinct annotator completes the task; ties on time break by annotator.
    completed = (
        judged.sort("submitted_at", "annotator_id")
        .unique(["project", "task_id", "annotator_id"], keep="first", maintain_order=True)
        .join(settings.select("project", "overlap"), on="project")
        .with_columns(pl.int_range(1, pl.len() + 1).over("project", "task_id").alias("ordinal"))
        .filter(pl.col("ordinal") == pl.col("overlap"))
        .select("project", "task_id", pl.col("day").alias("completed_day"))
    )
    first_judged = judged.group_by("project", "task_id").agg(
        pl.col("submitted_at").min().alias("first_judged_at")
    )
    lifetimes = (
        created.join(first_judged, on=["project", "task_id"], how="full", coalesce=True)
        .select(
            "project",
            "task_id",
            pl.min_horizontal("created_at", "first_judged_at").dt.date().alias("created_day"),
        )
        .filter(pl.col("created_day") <= through)
        .join(completed, on=["project", "task_id"], how="left")
    )
    per_day_created = lifetimes.group_by("project", pl.col("created_day").alias("day")).agg(
        pl.len().alias("tasks_created")
    )
    per_day_completed = (
        lifetimes.drop_nulls("completed_day")
        .group_by("project", pl.col("completed_day").alias("day"))
        .agg(pl.len().alias("tasks_completed"))
    )
    per_day_work = judged.group_by("project", "day").agg(
        pl.len().alias("judgments"),
        pl.col("annotator_id").n_unique().alias("annotators"),
        # A judgment with no duration took time too: the day's timed judgments' mean stands
        # for it (counted as zero, it made the hours short and the rate per hour high).
        (pl.col("duration_s").mean() * pl.len() / 3600.0).alias("annotator_hours"),
    )
    starts = pl.concat(
        [
            per_day_created.group_by("project").agg(pl.col("day").min()),
            per_day_work.group_by("project").agg(pl.col("day").min()),
        ]
    )
    if starts.is_empty():
        return schema.empty(THROUGHPUT_COLUMNS)
    grid = (
        starts.group_by("project")
        .agg(pl.col("day").min().alias("start"))
        .select("project", pl.date_ranges("start", pl.lit(through), interval="1d").alias("day"))
        .explode("day")
    )
    table = (
        grid.join(per_day_created, on=["project", "day"], how="left")
        .join(per_day_completed, on=["project", "day"], how="left")
        .join(per_day_work, on=["project", "day"], how="left")
        .with_columns(
            pl.col("tasks_created", "tasks_completed", "judgments", "annotators").fill_null(0),
            # Null only where the day has judgments and none of them has a duration.
            pl.when(pl.col("judgments").is_null())
            .then(0.0)
            .otherwise(pl.col("annotator_hours"))
            .alias("annotator_hours"),
        )
        .sort("project", "day")
        .with_columns(
            pl.when(pl.col("annotator_hours") > 0)
            .then(pl.col("judgments") / pl.col("annotator_hours"))
            .alias("judgments_per_annotator_hour"),
            (
                pl.col("tasks_created").cast(pl.Int64).cum_sum()
                - pl.col("tasks_completed").cast(pl.Int64).cum_sum()
            )
            .over("project")
            .alias("backlog"),
        )
    )
    return schema.conform(table, THROUGHPUT_COLUMNS, name="workforce_throughput")
