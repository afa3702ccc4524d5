"""The aggregated_labels asset reads the method each project had before and keeps it on noise."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from dagster import AssetSpec, DagsterInstance, materialize

from annotation_pipelines import schema
from assets.aggregation.assets import aggregated_labels
from assets.common.partitions import daily_partitions
from resources.lake import LakeIOManager, LocalLake
from tests.realdata import load_crowd

pytestmark = pytest.mark.realdata

DAY, PREVIOUS = "2026-11-17", "2026-11-16"


def _run(lake: LocalLake) -> pl.DataFrame:
    sources = [
        AssetSpec(name, partitions_def=daily_partitions) for name in ("judgments", "gold_labels")
    ]
    result = materialize(
        [*sources, aggregated_labels],
        partition_key=DAY,
        resources={"lake": lake, "io_manager": LakeIOManager(lake=lake)},
        instance=DagsterInstance.ephemeral(),
        run_config={"ops": {"aggregated_labels": {"config": {"method": "auto"}}}},
    )
    assert result.success
    return lake.read_table("aggregated_labels", day=DAY)


def test_auto_keeps_the_method_of_the_previous_day(tmp_path: Path) -> None:
    lake = LocalLake(base_path=str(tmp_path))
    judgments, _ = load_crowd("duck")
    lake.write_table("judgments", judgments.with_columns(project=pl.lit("duck")), day=DAY)
    lake.write_table("gold_labels", schema.empty(schema.GOLD_LABELS), day=DAY)
    # No history: the default, Dawid–Skene (MACE is ahead by 0.4 standard errors: noise).
    assert _run(lake)["method"].unique().to_list() == ["dawid_skene"]
    previous = pl.DataFrame({"task_id": ["t"], "project": ["duck"], "method": ["mace"]})
    lake.write_table("aggregated_labels", previous, day=PREVIOUS)
    assert _run(lake)["method"].unique().to_list() == ["mace"]
