"""Curated datasets: one versioned, immutable, exported snapshot per project.

`curated_dataset` (partitioned by project) reads every judged day of the project from the lake
in one pass, so it rebuilds whole when any day changes; `dataset_versions` lists every snapshot
ever written with its lineage and the filters that selected its rows.
"""

import json
from datetime import UTC, datetime, timedelta

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    Config,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from annotation_pipelines.curation import DEFAULT_RATIOS, build_snapshot, content_version
from annotation_pipelines.curation.snapshot import (
    column_schema,
    current_pointer,
    dataset_card,
    held_back_reasons,
    source_days,
)
from annotation_pipelines.curation.versioning import judged_fingerprints
from annotation_pipelines.kinds import of_kind
from annotation_pipelines.lake import (
    DATASET_SPLIT_FORMATS,
    DATASETS,
    MANIFEST_FILE,
    dataset_current_key,
    dataset_folder,
    dataset_manifest_keys,
    manifest_created_at,
)
from annotation_pipelines.settings import load_settings
from assets.common.automation import REBUILD_ON_UPSTREAM_CHANGE
from assets.common.metadata import figure, markdown_table
from assets.common.partitions import project_partitions
from resources.lake import Lake, parquet_bytes, table_metadata
from resources.lake import column_schema as table_schema

GROUP = "curation"
OWNERS = ["team:ml-data"]


class CurationConfig(Config):
    """What enters a snapshot (launchpad-editable)."""

    min_confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    min_votes: int = Field(default=2, ge=1)
    include_gold: bool = Field(default=False, description="Keep gold tasks in the splits.")
    method: str = Field(default="auto", description="Re-aggregation method.")
    split_ratios: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_RATIOS))
    drop_fields: list[str] = Field(default_factory=list, description="Columns never exported.")
    mask_patterns: list[str] = Field(
        default_factory=list,
        description=(
            "Extra regular expressions masked in payload text; e-mail addresses and phone "
            "numbers are always masked."
        ),
    )


@asset(
    partitions_def=project_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"polars", "parquet"},
    deps=[
        AssetDep(name, partition_mapping=AllPartitionMapping())
        for name in (
            "judgments",
            "raw_tasks",
            "gold_labels",
            "quality_report",
            "annotator_scorecards",
        )
    ],
    automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
    freshness_policy=FreshnessPolicy.time_window(fail_window=timedelta(hours=36)),
    description=(
        "A project's curated dataset: confident labels re-aggregated without flagged annotators, "
        "failed or ungated days held back, deduplicated, split train/validation/test by task hash, "
        "versioned by content and exported as Parquet and JSON Lines with a dataset card."
    ),
)
def curated_dataset(
    context: AssetExecutionContext, config: CurationConfig, lake: Lake
) -> MaterializeResult:
    project = context.partition_key

    def of_project(table: str) -> pl.DataFrame:
        scan = lake.scan_all(table)
        # Without the quality layer's verdicts no failed day could be held back: refuse, saying
        # what to build, rather than publish a snapshot that ignores the gates.
        if not scan.collect_schema():
            raise ValueError(
                f"curated_dataset {project!r}: the lake has no {table} on any day; "
                "materialize the daily layers (daily_annotation_job) first"
            )
        return scan.filter(pl.col("project") == project).collect()

    # Other kinds are curated by assets/curation/kinds.py.
    judgments = of_kind(of_project("judgments"))
    if judgments.height == 0:
        raise ValueError(f"project {project!r} has no judgments in the lake")
    report = of_project("quality_report")
    cards = of_project("annotator_scorecards")
    by_day = judgments.with_columns(day=pl.col("submitted_at").dt.date().cast(pl.String))
    # Each day's rows as its verdict would have read them: a day whose judgments changed
    # since (late rows, a correction) is held back until its report is rebuilt.
    fingerprints = {
        str(day): judged_fingerprints(rows.drop("day"))[project]
        for (day,), rows in by_day.group_by("day")
    }
    verdicts = source_days(list(fingerprints), report, project=project, fingerprints=fingerprints)
    # Every judged day without a passing verdict: failed, not gated at all (no report), or
    # gated on other rows.
    reasons = held_back_reasons(verdicts)
    flagged = cards.filter(pl.col("flagged"))["annotator_id"].unique().to_list()
    settings = load_settings()
    snapshot = build_snapshot(
        judgments,
        of_project("raw_tasks"),
        gold=of_project("gold_labels"),
        flagged_annotators=flagged,
        held_back_reasons=reasons,
        method=config.method,
        min_confidence=config.min_confidence,
        min_votes=config.min_votes,
        include_gold=config.include_gold,
        ratios=config.split_ratios,
        pseudonym_key=settings.pseudonym_key,
        phone_region=settings.phone_region,
        max_masked_share=settings.max_masked_share,
        mask_patterns=config.mask_patterns,
        drop_fields=config.drop_fields,
    )
    folder = dataset_folder(project, snapshot.version_id)
    location = lake.uri(folder)
    filters = {
        "min_confidence": config.min_confidence,
        "min_votes": config.min_votes,
        "include_gold": config.include_gold,
        "split_ratios": config.split_ratios,
        "excluded_flagged_annotators": len(flagged),
    }
    card = dataset_card(
        snapshot, project=project, quality=report, location=location, filters=filters
    )
    # Snapshots are immutable: the same content has the same id, so an existing one is kept.
    manifest_key = f"{folder}/{MANIFEST_FILE}"
    # Every configured split gets its files, empty or not, so loaders never miss a file.
    rows_per_split = {
        name: snapshot.rows.filter(pl.col("split") == name).height for name in config.split_ratios
    }
    if not lake.exists(manifest_key):
        writes: dict[str, bytes] = {}
        for split in config.split_ratios:
            part = snapshot.rows.filter(pl.col("split") == split)
            writes[f"{folder}/{split}.parquet"] = parquet_bytes(part)
            writes[f"{folder}/{split}.jsonl"] = part.write_ndjson().encode("utf-8")
        writes[f"{folder}/card.md"] = card.encode("utf-8")
        lineage = {
            day: content_version(part.drop("day"))
            for (day,), part in judgments.with_columns(
                day=pl.col("submitted_at").dt.date().cast(pl.String)
            ).group_by("day")
        }
        files = [
            *(
                f"{split}.{suffix}"
                for split in config.split_ratios
                for suffix in DATASET_SPLIT_FORMATS
            ),
            "card.md",
            MANIFEST_FILE,
        ]
        manifest = {
            "project": project,
            "kind": "categorical",
            "version_id": snapshot.version_id,
            "method": snapshot.method,
            "rows": snapshot.rows.height,
            "splits": rows_per_split,
            "files": sorted(files),
            "label_set": sorted(judgments["label"].drop_nulls().unique().to_list()),
            "schema": column_schema(snapshot.rows),
            "filters": filters,
            "held_back_days": snapshot.held_back_days,
            "held_back_reasons": snapshot.held_back_reasons,
            "source_days": verdicts,
            "input_judgment_versions": dict(sorted(lineage.items())),
            "stats": snapshot.stats,
            "created_by_run": context.run.run_id,
            # The version's date wherever its files are copied: a copy's write time is not it.
            "created_at": datetime.now(UTC).isoformat(),
        }
        # One commit, the manifest moved last: a reader never finds a version folder with some
        # of its files missing, and one that finds the manifest finds every file.
        writes[manifest_key] = json.dumps(manifest, indent=2, default=str).encode("utf-8")
        lake.commit(writes)
        context.log.info(f"{project}: wrote snapshot {snapshot.version_id} to {location}")
    else:
        context.log.info(f"{project}: snapshot {snapshot.version_id} already exists; unchanged")
    lake.put(dataset_current_key(project), current_pointer(snapshot.version_id, context.run.run_id))
    # The list columns make the preview unreadable; the schema is still every exported column.
    preview = snapshot.rows.drop("annotators", "duplicate_task_ids")
    return MaterializeResult(
        metadata={
            **table_metadata(preview),
            "dagster/row_count": MetadataValue.int(snapshot.rows.height),
            "dagster/column_schema": table_schema(snapshot.rows),
            "version_id": MetadataValue.text(snapshot.version_id),
            "location": MetadataValue.path(location),
            "card": MetadataValue.md(card),
            "rows_per_split": MetadataValue.json(rows_per_split),
            "method": MetadataValue.text(snapshot.method),
            "held_back_days": MetadataValue.json(snapshot.held_back_days),
            "held_back_reasons": MetadataValue.text(
                "; ".join(f"{day}: {why}" for day, why in snapshot.held_back_reasons.items())
                or "none"
            ),
            "masked_share": figure(float(snapshot.stats["masked_share"])),
            "masked": MetadataValue.json(snapshot.stats["masked"]),
            **(
                {"empty_reason": MetadataValue.text(str(snapshot.stats["empty_reason"]))}
                if "empty_reason" in snapshot.stats
                else {}
            ),
        }
    )


@asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"polars", "parquet"},
    deps=[AssetDep("curated_dataset", partition_mapping=AllPartitionMapping())],
    automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
    description=(
        "Every dataset snapshot ever written, with its inputs' versions, method and the filters "
        "that selected its rows."
    ),
)
def dataset_versions(lake: Lake) -> MaterializeResult:
    keys = dataset_manifest_keys(lake.list_keys(f"{DATASETS}/"))
    manifests = [json.loads(lake.get(key)) for key in keys]
    # A manifest is written with its version: its write time is when the version was made,
    # unless it says otherwise (one rewritten with its trainer files keeps its first time). A
    # version made again later (the same content) keeps its first time, and `current` says
    # which version each project's last curation produced.
    created = [
        manifest_created_at(m, datetime.fromtimestamp(lake.modified_at(key), UTC))
        for m, key in zip(manifests, keys, strict=True)
    ]
    current: dict[str, str] = {}
    for project in {m["project"] for m in manifests}:
        pointer = lake.get_if_exists(dataset_current_key(project))
        if pointer:
            current[project] = json.loads(pointer)["version_id"]
    frame = pl.DataFrame(
        [
            {
                "project": m["project"],
                # Manifests written before the field existed are categorical ones.
                "kind": m.get("kind", "categorical"),
                "version_id": m["version_id"],
                "method": m["method"],
                "rows": m["rows"],
                "splits": json.dumps(m["splits"]),
                # What selected the rows (two versions of the same days can differ only
                # here), as JSON; null for a manifest written before it named its filters.
                "filters": json.dumps(m["filters"]) if m.get("filters") is not None else None,
                "held_back_days": ",".join(m["held_back_days"]),
                "input_days": len(m["input_judgment_versions"]),
                "input_judgment_versions": json.dumps(m["input_judgment_versions"]),
                "created_by_run": m["created_by_run"],
                "created_at": made,
                "current": current.get(m["project"]) == m["version_id"],
            }
            for m, made in zip(manifests, created, strict=True)
        ],
        schema_overrides={
            "rows": pl.Int64,
            "filters": pl.String,
            "created_at": pl.Datetime("us", "UTC"),
        },
    )
    if frame.height:
        frame = frame.sort("project", "created_at", "version_id")
    key = lake.write_table("dataset_versions", frame)
    return MaterializeResult(
        metadata={
            **table_metadata(frame),
            "dagster/uri": MetadataValue.path(lake.uri(key)),
            "versions": markdown_table(frame.drop("input_judgment_versions", strict=False)),
        }
    )
