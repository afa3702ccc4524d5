"""How the layers declare the tables a multi-asset writes."""

from typing import Any

from dagster import AssetOut

from assets.common.automation import REBUILD_ON_UPSTREAM_CHANGE


def table_out(
    description: str, *, group: str, owners: list[str], rebuild: bool = True, **options: Any
) -> AssetOut:
    """A Polars table stored as Parquet in `group`; rebuilt when an upstream partition changes
    unless `rebuild` is off (the raw layer, which sources and sensors drive)."""
    return AssetOut(
        description=description,
        group_name=group,
        owners=owners,
        kinds={"polars", "parquet"},
        automation_condition=REBUILD_ON_UPSTREAM_CHANGE if rebuild else None,
        **options,
    )
