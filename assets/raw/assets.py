"""Raw layer: every source lands in the day's canonical tasks, judgments and gold labels.

A judgment (project, judgment_id) counts once across every staged day and source: its newest
version wins (`assets.sources.assets.JUDGMENT_VERSION`), and a day whose copy is older drops it.
Then one judgment per (project, task_id, annotator_id); the latest
`submitted_at` wins (ties: the later source in path order), and the rest are counted. A task
id is unique only within its project (tools number tasks per project), so tasks, judgments
and gold are keyed by (project, task_id) throughout.
"""

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, Output, multi_asset

from annotation_pipelines import schema
from annotation_pipelines.ingest.postgres import SOURCE as DATABASE_SOURCE
from annotation_pipelines.lake import staging_day, staging_prefix
from assets.common.outs import table_out
from assets.common.partitions import daily_partitions
from assets.sources.assets import (
    JUDGMENT_KEY,
    JUDGMENT_VERSION,
    OWNERS,
    STAGED_TABLES,
    judgment_identity,
    shareable,
    staged_judgment_versions,
)
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
    versions: list[pl.DataFrame] = []
    for table, table_schema, _ in STAGED_TABLES:
        folder = {"raw_tasks": "tasks"}.get(table, table)
        parts = [("", landing.read_synthetic(folder, day, table_schema))]
        keys = [k for k in lake.list_keys(staging_prefix(table, day)) if k.endswith(".parquet")]
        parts += [(key, lake.get_frame(key)) for key in keys]
        conformed = [
            (key, part, schema.conform(part, table_schema, name=table).select(list(table_schema)))
            for key, part in parts
        ]
        frames[table] = pl.concat([frame for _, _, frame in conformed])
        if table == "judgments":
            versions = [
                frame.select(
                    *JUDGMENT_KEY,
                    updated_at=(
                        part.get_column("updated_at").cast(schema.UTC_TIMESTAMP)
                        if "updated_at" in part.columns
                        else pl.lit(None, schema.UTC_TIMESTAMP)
                    ),
                    submitted_at=pl.col("submitted_at"),
                    source_file=pl.col("source_file"),
                    key=pl.lit(key),
                )
                for key, part, frame in conformed
            ]
    # Each judgment counts once across every staged day and source: the day keeps its rows
    # only where no newer version of the judgment is staged anywhere.
    own = pl.concat(versions).with_row_index("_row")
    elsewhere = staged_judgment_versions(
        lake,
        [
            key
            for key in lake.list_keys(staging_prefix("judgments"))
            if key.endswith(".parquet") and staging_day(key) != day
        ],
        shareable(own).unique(),
    )
    newest = (
        pl.concat(
            [own, elsewhere.with_columns(_row=pl.lit(None, own.schema["_row"])).select(own.columns)]
        )
        .with_columns(judgment_identity())
        .sort([*JUDGMENT_VERSION, "key"], nulls_last=False)
        .unique(list(JUDGMENT_KEY), keep="last")
        .get_column("_row")
        .drop_nulls()
    )
    current = (
        frames["judgments"].with_row_index("_row").filter(pl.col("_row").is_in(newest.implode()))
    )
    superseded = frames["judgments"].height - current.height
    judgments = current.drop("_row").sort(["submitted_at", "source_file"])
    deduplicated = judgments.unique(
        ["project", "task_id", "annotator_id"], keep="last", maintain_order=True
    )
    duplicates = frames["judgments"].height - deduplicated.height
    # One judgment per (task, annotator) holds one answer: a second control's answer on the
    # same task (a Label Studio project asking two questions) is dropped with the duplicates.
    # Said by name, since a project has to be split per control to keep it.
    controls = (
        judgments.filter(pl.col("control").is_not_null())
        .group_by("project")
        .agg(pl.col("control").unique().sort())
        .filter(pl.col("control").list.len() > 1)
    )
    lost = {
        project: names
        for project, names in controls.iter_rows()
        if judgments.filter(pl.col("project") == project)
        .group_by("task_id", "annotator_id")
        .agg(pl.col("control").n_unique())
        .filter(pl.col("control") > 1)
        .height
    }
    for project, names in lost.items():
        context.log.warning(
            f"project {project!r} answers tasks through several controls ({', '.join(names)}): "
            "the daily layers keep one answer per task and annotator, so the other controls' "
            "answers are dropped; give each control its own project (its own exports/<project>/ "
            "folder or Label Studio project)"
        )
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
    # The annotation DB keys a gold label by its task alone: one moved to another project is
    # staged on the day it moved, and only its newest version across the staged days is the
    # DB's, as for a judgment.
    from_db = pl.col("source") == DATABASE_SOURCE
    gold_all = pl.concat(
        [
            gold_all.filter(~from_db | pl.col("source").is_null()),
            gold_all.filter(from_db)
            .sort("updated_at")
            .unique("task_id", keep="last", maintain_order=True),
        ]
    )
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
            "superseded_versions": MetadataValue.int(superseded),
            "projects_with_several_controls": MetadataValue.json(lost),
            "annotators": MetadataValue.int(deduplicated["annotator_id"].n_unique()),
            "projects": MetadataValue.json(sorted(deduplicated["project"].unique().to_list())),
        },
    )
    yield Output(gold.sort("project", "task_id"), output_name="gold_labels")
