"""Raw layer: the day's tasks, judgments and gold labels in the canonical schema."""

from dagster import AssetExecutionContext, AssetOut, MetadataValue, Output, multi_asset

from annotation_pipelines import schema
from assets.partitions import daily_partitions
from resources.landing import LandingZone

RAW_GROUP = "raw"


@multi_asset(
    outs={
        "raw_tasks": AssetOut(
            description="Tasks created on the day, one row per task, with provenance.",
            group_name=RAW_GROUP,
            kinds={"polars", "parquet"},
        ),
        "judgments": AssetOut(
            description="Judgments submitted on the day: who labelled what, when, how long.",
            group_name=RAW_GROUP,
            kinds={"polars", "parquet"},
        ),
        "gold_labels": AssetOut(
            description="Known-correct labels for honeypot tasks created on the day.",
            group_name=RAW_GROUP,
            kinds={"polars", "parquet"},
        ),
    },
    partitions_def=daily_partitions,
)
def raw_annotations(context: AssetExecutionContext, landing: LandingZone):  # noqa: ANN201
    """Load the day's drops from the landing zone into the canonical tables."""
    day = context.partition_key
    tables = {
        "raw_tasks": ("tasks", schema.RAW_TASKS),
        "judgments": ("judgments", schema.JUDGMENTS),
        "gold_labels": ("gold_labels", schema.GOLD_LABELS),
    }
    for output, (folder, table) in tables.items():
        frame = schema.conform(
            landing.read_synthetic(folder, day, table), table, name=f"{output} {day}"
        )
        headline: dict[str, object] = {"rows_read": MetadataValue.int(frame.height)}
        if output == "judgments" and frame.height:
            headline["annotators"] = MetadataValue.int(frame["annotator_id"].n_unique())
            headline["projects"] = MetadataValue.text(", ".join(sorted(frame["project"].unique())))
        yield Output(frame, output_name=output, metadata=headline)
