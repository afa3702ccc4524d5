"""One day of the daily kind aggregation as a real Dagster materialization over a local lake."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from dagster import AssetSpec, DagsterInstance, ExecuteInProcessResult, materialize

from annotation_pipelines import schema
from assets.aggregation.kinds import kind_aggregated_labels
from assets.common.partitions import daily_partitions
from resources.lake import LakeIOManager, LocalLake
from resources.landing import LocalLandingZone


def materialize_kind_day(
    lake: LocalLake,
    judgments: pl.DataFrame,
    *,
    day: str,
    landing: Path,
    tasks: pl.DataFrame | None = None,
    instance: DagsterInstance | None = None,
    raise_on_error: bool = True,
) -> ExecuteInProcessResult:
    """Stage `judgments` and `tasks` (none by default; never gold) for `day` and run the day's
    kind aggregation, on `instance` or an ephemeral one."""
    lake.write_table("judgments", judgments, day=day)
    lake.write_table("gold_labels", schema.empty(schema.GOLD_LABELS), day=day)
    lake.write_table(
        "raw_tasks", schema.empty(schema.RAW_TASKS) if tasks is None else tasks, day=day
    )
    sources = [
        AssetSpec(name, partitions_def=daily_partitions)
        for name in ("judgments", "gold_labels", "raw_tasks")
    ]
    return materialize(
        [*sources, kind_aggregated_labels],
        partition_key=day,
        resources={
            "lake": lake,
            "io_manager": LakeIOManager(lake=lake),
            "landing": LocalLandingZone(path=str(landing)),
        },
        instance=instance or DagsterInstance.ephemeral(),
        selection=["kind_aggregated_labels", "kind_item_scores", "kind_annotator_reliability"],
        raise_on_error=raise_on_error,
    )
