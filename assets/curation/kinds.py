"""Curated snapshots of every non-categorical project, in the formats trainers read.

One asset writes every kind project's snapshot under `datasets/<project>/<version>/` (the same
place and manifest as the categorical snapshots, so `dataset_versions` lists them too): Parquet
and JSON Lines (whole and per split), the kind's trainer format (COCO JSON for boxes; JSONL with
offsets and CoNLL BIO for spans; preference pairs for pairwise; whole and per split) and a card
naming the kind and its agreement.
Snapshots are immutable: the same content keeps its version id and its files.

Personal data is masked as in the categorical snapshots (`curation.kinds` says how per kind),
and the masked share and counts per kind are recorded in each manifest's `stats` and in the
materialization. A project above `ANNOTATION_PIPELINES_MAX_MASKED_SHARE` gets no snapshot and
fails the asset, as a categorical partition fails; the other projects' snapshots are still
written first, since one asset curates them all and one project's data must not hold back the
others'.
"""

import json
from typing import Any

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetSelection,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)
from pydantic import Field

from annotation_pipelines.curation.kinds import (
    DEFAULT_MIN_CONFIDENCE,
    build_kind_snapshot,
    kind_card,
)
from annotation_pipelines.curation.snapshot import (
    MaskedShareError,
    column_schema,
    current_pointer,
)
from annotation_pipelines.curation.splits import DEFAULT_RATIOS
from annotation_pipelines.curation.versioning import content_version
from annotation_pipelines.lake import (
    MANIFEST_FILE,
    dataset_current_key,
    dataset_file_key,
    dataset_folder,
)
from annotation_pipelines.settings import load_settings
from assets.common.automation import REBUILD_ON_UPSTREAM_CHANGE
from assets.common.metadata import markdown_table
from resources.lake import Lake, table_metadata

GROUP = "curation"
OWNERS = ["team:ml-data"]


class KindCurationConfig(Config):
    """What enters a kind snapshot (launchpad-editable)."""

    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0.0, le=1.0)
    include_gold: bool = Field(default=False, description="Keep gold tasks in the splits.")
    split_ratios: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_RATIOS))
    mask_patterns: list[str] = Field(
        default_factory=list,
        description=(
            "Extra regular expressions masked in payload text (and text answers); e-mail "
            "addresses and phone numbers are always masked."
        ),
    )


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"polars", "parquet", "json"},
    deps=[
        AssetDep(name, partition_mapping=AllPartitionMapping())
        for name in ("kind_aggregated_labels", "kind_quality_report", "raw_tasks")
    ],
    automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
    description=(
        "Every non-categorical project's curated snapshot: confident aggregates of the days "
        "that passed their gates (a day without a quality report is held back), split by "
        "task hash, versioned by content, exported as Parquet, "
        "JSON Lines and the kind's trainer format (COCO, CoNLL/BIO, preference pairs)."
    ),
)
def kind_curated_dataset(
    context: AssetExecutionContext, config: KindCurationConfig, lake: Lake
) -> MaterializeResult:
    labels = lake.read_days("kind_aggregated_labels", lake.days("kind_aggregated_labels"))
    if labels.height == 0:
        raise ValueError("kind_aggregated_labels is empty: no non-categorical project is judged")
    quality = lake.read_days("kind_quality_report", lake.days("kind_quality_report"))
    projects = labels.select("project", "kind").unique().sort("project").rows()
    tasks = (
        lake.scan_all("raw_tasks")
        .filter(pl.col("project").is_in([project for project, _ in projects]))
        .collect()
    )
    settings = load_settings()
    summary = []
    refused: list[MaskedShareError] = []
    unusable: list[str] = []
    stats_of: dict[str, dict[str, object]] = {}
    for project, kind in projects:
        try:
            snapshot = build_kind_snapshot(
                labels,
                tasks,
                project=project,
                kind=kind,
                quality=quality,
                min_confidence=config.min_confidence,
                include_gold=config.include_gold,
                ratios=config.split_ratios,
                phone_region=settings.phone_region,
                max_masked_share=settings.max_masked_share,
                mask_patterns=config.mask_patterns,
            )
        except MaskedShareError as error:
            context.log.error(str(error))
            refused.append(error)
            continue
        except ValueError as error:
            # One project's unusable tasks (a pairwise payload without its texts) must not
            # hold back the other projects' snapshots: they are written, then the asset fails.
            context.log.error(f"{project}: no snapshot: {error}")
            unusable.append(f"{project}: {error}")
            continue
        folder = dataset_folder(project, snapshot.version_id)
        manifest_key = dataset_file_key(project, snapshot.version_id, MANIFEST_FILE)
        if not lake.exists(manifest_key):
            card = kind_card(snapshot, quality=quality, location=lake.uri(folder))
            writes = {
                dataset_file_key(project, snapshot.version_id, name): data
                for name, data in sorted(snapshot.files.items())
            }
            writes[dataset_file_key(project, snapshot.version_id, "card.md")] = card.encode()
            own = labels.filter(pl.col("project") == project)
            lineage = {
                str(day): content_version(part.drop("day")) for (day,), part in own.group_by("day")
            }
            # Every configured split, empty or not, as the categorical manifests list them.
            splits = {
                name: snapshot.rows.filter(pl.col("split") == name).height
                for name in config.split_ratios
            }
            manifest = {
                "project": project,
                "kind": kind,
                "version_id": snapshot.version_id,
                "method": snapshot.method,
                "rows": snapshot.rows.height,
                "splits": splits,
                "files": sorted([*snapshot.files, "card.md", MANIFEST_FILE]),
                "label_set": snapshot.stats["label_set"],
                "schema": column_schema(snapshot.rows),
                "filters": {
                    "min_confidence": config.min_confidence,
                    "include_gold": config.include_gold,
                    "split_ratios": config.split_ratios,
                },
                "held_back_days": snapshot.held_back_days,
                "held_back_reasons": snapshot.held_back_reasons,
                "source_days": snapshot.source_days,
                "input_judgment_versions": dict(sorted(lineage.items())),
                "stats": snapshot.stats,
                "created_by_run": context.run.run_id,
            }
            # One commit, the manifest moved last: no reader sees a version folder half written.
            writes[manifest_key] = json.dumps(manifest, indent=2, default=str).encode("utf-8")
            lake.commit(writes)
            context.log.info(f"{project} ({kind}): wrote snapshot {snapshot.version_id}")
        lake.put(
            dataset_current_key(project),
            current_pointer(snapshot.version_id, context.run.run_id),
        )
        stats_of[project] = snapshot.stats
        summary.append(
            {
                "project": project,
                "kind": kind,
                "version_id": snapshot.version_id,
                "method": snapshot.method,
                "rows": snapshot.rows.height,
                "masked_share": snapshot.stats["masked_share"],
                "files": ", ".join(sorted(snapshot.files)),
                "location": lake.uri(folder),
            }
        )
    if refused:
        raise MaskedShareError(
            "\n".join([*(str(error) for error in refused), *unusable])
            + f"\n{len(summary)} other project(s)' snapshots were written."
        )
    if unusable:
        raise ValueError(
            "\n".join(unusable) + f"\n{len(summary)} other project(s)' snapshots were written."
        )
    frame = pl.DataFrame(summary)
    metadata: dict[str, Any] = {
        **table_metadata(frame),
        "snapshots": markdown_table(frame),
        "versions": MetadataValue.json({row["project"]: row["version_id"] for row in summary}),
        "masked_share": MetadataValue.json(
            {project: stats["masked_share"] for project, stats in stats_of.items()}
        ),
        "masked": MetadataValue.json(
            {project: stats["masked"] for project, stats in stats_of.items()}
        ),
    }
    return MaterializeResult(metadata=metadata)


kind_curation_job = define_asset_job(
    "kind_curation_job",
    selection=AssetSelection.assets("kind_curated_dataset"),
    description="Build every non-categorical project's curated dataset snapshot.",
)
