"""Raw layer: every source lands in the day's canonical tasks, judgments and gold labels.

Duplicate rule across sources: one judgment per (project, task_id, annotator_id); the latest
`submitted_at` wins (ties: the later source in path order), and the rest are counted. A task
id is unique only within its project (tools number tasks per project), so tasks, judgments
and gold are keyed by (project, task_id) throughout.
"""

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, Output, multi_asset

from annotation_pipelines import schema
from annotation_pipelines.lake import staging_day, staging_prefix
from assets.common.outs import table_out
from assets.common.partitions import daily_partitions
from assets.sources.assets import OWNERS, STAGED_TABLES
from resources.lake import Lake
from resources.landing import LandingZone

RAW_GROUP = "raw"


@multi_asset(
    outs={
        "raw_tasks": table_out(
            "Tasks created on the day, one row per task, with provenance.",
            group=RAW_GROUP,
            owners=OWNERS,
            rebuild=False,
        ),
        "judgments": table_out(
            "Judgments submitted on the day: who labelled what, when, how long.",
            group=RAW_GROUP,
            owners=OWNERS,
            rebuild=False,
        ),
        "gold_labels": table_out(
            "Known-correct labels for the honeypot tasks judged on the day.",
            group=RAW_GROUP,
            owners=OWNERS,
            rebuild=False,
        ),
    },
    partitions_def=daily_partitions,
    pool="daily_layers",
)
def raw_annotations(context: AssetExecutionContext, landing: LandingZone, lake: Lake):  # noqa: ANN201
    """Union the day's staged rows from every source with the synthetic parts."""
    day = context.partition_key
    frames: dict[str, pl.DataFrame] = {}
    for table, table_schema, _ in STAGED_TABLES:
        folder = {"raw_tasks": "tasks"}.get(table, table)
        parts = [landing.read_synthetic(folder, day, table_schema)]
        keys = [k for k in lake.list_keys(staging_prefix(table, day)) if k.endswith(".parquet")]
        parts += [lake.get_frame(key) for key in keys]
        stacked = pl.concat(
            [schema.conform(p, table_schema, name=table).select(list(table_schema)) for p in parts]
        )
        frames[table] = stacked
    judgments = frames["judgments"].sort(["submitted_at", "source_file"])
    deduplicated = judgments.unique(
        ["project", "task_id", "annotator_id"], keep="last", maintain_order=True
    )
    duplicates = judgments.height - deduplicated.height
    tasks = (
        frames["raw_tasks"]
        .sort("created_at")
        .unique(["project", "task_id"], keep="last", maintain_order=True)
    )
    # Gold labels are keyed to the day's judged tasks, whatever day the gold itself was set.
    gold_all = frames["gold_labels"]
    for key in lake.list_keys(staging_prefix("gold_labels")):
        if staging_day(key) != day and key.endswith(".parquet"):
            gold_all = pl.concat([gold_all, lake.get_frame(key).select(list(schema.GOLD_LABELS))])
    gold = (
        gold_all.join(
            deduplicated.select("project", "task_id").unique(),
            on=["project", "task_id"],
            how="semi",
        )
        .sort("updated_at")
        .unique(["project", "task_id"], keep="last", maintain_order=True)
    )
    yield Output(
        tasks,
        output_name="raw_tasks",
        metadata={"sources": MetadataValue.json(sorted(tasks["source"].unique().to_list()))},
    )
    yield Output(
        deduplicated.sort("judgment_id"),
        output_name="judgments",
        metadata={
            "duplicates_resolved": MetadataValue.int(duplicates),
            "annotators": MetadataValue.int(deduplicated["annotator_id"].n_unique()),
            "projects": MetadataValue.json(sorted(deduplicated["project"].unique().to_list())),
        },
    )
    yield Output(gold.sort("project", "task_id"), output_name="gold_labels")
