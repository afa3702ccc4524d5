"""Curated dataset: confident, deduplicated, split, versioned rows an ML engineer trains on."""

import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from annotation_pipelines import schema
from annotation_pipelines.curation import (
    DEFAULT_RATIOS,
    assign_split,
    content_version,
    deduplicate,
    select_tasks,
)
from assets.partitions import daily_partitions


class CurationConfig(Config):
    min_confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    min_votes: int = Field(default=2, ge=1)
    include_gold: bool = False
    split_ratios: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_RATIOS))


@asset(
    partitions_def=daily_partitions,
    group_name="curation",
    kinds={"polars", "parquet"},
    description="The day's slice of the curated dataset: confident labels with a stable split.",
)
def curated_dataset(
    context: AssetExecutionContext,
    config: CurationConfig,
    aggregated_labels: pl.DataFrame,
    raw_tasks: pl.DataFrame,
    gold_labels: pl.DataFrame,
) -> Output[pl.DataFrame]:
    selected = select_tasks(
        aggregated_labels,
        min_confidence=config.min_confidence,
        min_votes=config.min_votes,
        gold=gold_labels,
        include_gold=config.include_gold,
    )
    items = raw_tasks.select("task_id", "payload", "payload_hash")
    joined = selected.join(items, on="task_id", how="inner")
    deduplicated = deduplicate(joined)
    split = assign_split(deduplicated, ratios=config.split_ratios)
    frame = schema.conform(
        split.with_columns(day=pl.lit(context.partition_key).str.to_date()),
        schema.CURATED_DATASET,
        name="curated_dataset",
    ).select(list(schema.CURATED_DATASET))
    version = content_version(frame)
    counts = frame.group_by("split").len().sort("split")
    return Output(
        frame,
        metadata={
            "version_id": MetadataValue.text(version),
            "kept_share": MetadataValue.float(
                frame.height / aggregated_labels.height if aggregated_labels.height else 0.0
            ),
            "duplicates_collapsed": MetadataValue.int(joined.height - deduplicated.height),
            "rows_per_split": MetadataValue.json(dict(counts.iter_rows())),
        },
    )
