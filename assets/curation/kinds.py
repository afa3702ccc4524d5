"""Curated snapshots of every non-categorical project, in the formats trainers read.

One asset writes every kind project's snapshot under `datasets/<project>/<version>/` (the same
place and manifest as the categorical snapshots, so `dataset_versions` lists them too): Parquet
and JSON Lines (whole and per split), the kind's trainer format (COCO JSON for boxes; JSONL with
offsets and CoNLL BIO for spans; preference pairs for pairwise; whole and per split) and a card
naming the kind and its agreement.
Snapshots are immutable: the same content keeps its version id and its files, with one
exception. The trainer files are derived from the rows, and when how they are written changes
(`TRAINER_FILES_FORMAT`) every version whose manifest names an older format (a manifest without
`trainer_files` was written in format 1), of any project and current or not, has them rewritten
first, from its own `data.parquet`, in one lake commit per version: the rows, the version id,
`created_at` and the `current` pointer stay; the manifest's `trainer_files` gets the format,
the files' SHA-256, which files changed and when (`rewritten_at`), and the materialization's
`trainer_files_rewritten` lists the versions. A version whose rows no longer hash to its id is
left as it is and fails the asset once every other project is written. A version whose span
labels today's CoNLL tags would merge (`a b` and `a_b`, which the first format wrote as two
tags) keeps its old files: its manifest's `trainer_files.not_rewritten` names the labels, the
tag and the format it was not brought to, the materialization's `trainer_files_not_rewritten`
lists it, a warning says it, and the run goes on. A manifest written before manifests named
their `kind` but listing trainer files gets the kind its `data.parquet` columns tell (the one
kind whose value columns they hold; `kind_from` says so) and is rewritten as that kind; where
the columns tell no single kind it is left as it is, with a warning.

Personal data is masked as in the categorical snapshots (`curation.kinds` says how per kind),
and the masked share and counts per kind are recorded in each manifest's `stats` and in the
materialization. A project above `ANNOTATION_PIPELINES_MAX_MASKED_SHARE` gets no snapshot and
fails the asset, as a categorical partition fails; the other projects' snapshots are still
written first, since one asset curates them all and one project's data must not hold back the
others'.
"""

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
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

from annotation_pipelines.curation.formats_bio import ConllTagClash
from annotation_pipelines.curation.kinds import (
    DEFAULT_MIN_CONFIDENCE,
    TRAINER_FILES_FORMAT,
    build_kind_snapshot,
    kind_card,
    kind_of_columns,
    lists_trainer_files,
    rewrite_trainer_files,
    trainer_files_format,
    trainer_files_outdated,
)
from annotation_pipelines.curation.snapshot import (
    MaskedShareError,
    column_schema,
    current_pointer,
)
from annotation_pipelines.curation.splits import DEFAULT_RATIOS
from annotation_pipelines.curation.versioning import content_version
from annotation_pipelines.lake import (
    DATASETS,
    MANIFEST_FILE,
    dataset_current_key,
    dataset_file_key,
    dataset_folder,
    dataset_manifest_keys,
    manifest_created_at,
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
        # Automation rebuilds this asset after every day's kind aggregation, also on days that
        # judged only categorical projects: nothing to curate is a success, not a failed run
        # and an alert each day.
        context.log.info("no non-categorical project is judged: no kind snapshot to write")
        return MaterializeResult(
            metadata={
                "dagster/row_count": 0,
                "snapshots": MetadataValue.md(
                    "No snapshot: no non-categorical project is judged in `kind_aggregated_labels`."
                ),
            }
        )
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
    not_rewritten: dict[str, dict[str, Any]] = {}
    rewritten = _rewrite_outdated_trainer_files(context, lake, unusable, not_rewritten)
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
                **({"trainer_files": snapshot.trainer_files} if snapshot.trainer_files else {}),
                "created_by_run": context.run.run_id,
                "created_at": datetime.now(UTC).isoformat(),
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
        "trainer_files_rewritten": MetadataValue.json(rewritten),
        "trainer_files_not_rewritten": MetadataValue.json(not_rewritten),
    }
    return MaterializeResult(metadata=metadata)


def _rewrite_outdated_trainer_files(
    context: AssetExecutionContext,
    lake: Lake,
    unusable: list[str],
    kept: dict[str, dict[str, Any]],
) -> dict[str, dict[str, object]]:
    """Bring every kind snapshot whose manifest names an older trainer-file format to the
    current one (`rewrite_trainer_files`), one commit per version with the manifest moved last;
    returns `<project>/<version>` → the formats it went from and to and the files written. A
    version that cannot be rewritten is appended to `unusable` and left as it is; one whose span
    labels today's CoNLL tags would merge keeps its files, and `kept` gets why."""
    done: dict[str, dict[str, object]] = {}
    # A commit killed after its marker is half applied until some commit recovers it: finish
    # it before comparing stored files, or the files it had moved would not be listed as
    # rewritten, and readers would meanwhile see new files under an old manifest.
    lake.recover()
    for key in sorted(dataset_manifest_keys(lake.list_keys(f"{DATASETS}/"))):
        folder = key.removesuffix(MANIFEST_FILE)
        try:
            manifest = json.loads(lake.get(key))
            if "kind" not in manifest and lists_trainer_files(manifest):
                manifest = _with_kind_of_rows(context, lake, key, manifest)
            if not trainer_files_outdated(manifest):
                continue
            project, version_id = manifest["project"], manifest["version_id"]
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            pl.exceptions.PolarsError,
        ) as error:
            # Any project's manifest is listed here, categorical ones too: one that cannot be
            # read is not this asset's to judge and holds back no other version.
            context.log.warning(f"{key}: manifest not read for its trainer files: {error!r}")
            continue
        name = f"{project}/{version_id}"
        # The manifest is written again below: its first write's time is its creation time.
        manifest = {
            **manifest,
            "created_at": manifest_created_at(
                manifest, datetime.fromtimestamp(lake.modified_at(key), UTC)
            ).isoformat(),
        }
        try:
            rows = pl.read_parquet(io.BytesIO(lake.get(folder + "data.parquet")))
            rewrite = rewrite_trainer_files(
                manifest,
                rows,
                stored=_files_of(lake, folder),
                rewritten_at=datetime.now(UTC).isoformat(),
                run_id=context.run.run_id,
            )
        except ConllTagClash as error:
            # The old format wrote each label as it was; today's tags replace whitespace, so
            # two of this version's labels would become one class. Its old files still say
            # what they did, and a newer version of the project is not held back by it.
            kept[name] = _trainer_files_kept(lake, key, manifest, error, context.run.run_id)
            context.log.warning(
                f"{name}: trainer files left in format {kept[name]['format']}, not rewritten "
                f"to {kept[name]['to_format']}: {error}"
            )
            continue
        except (OSError, ValueError, pl.exceptions.PolarsError) as error:
            context.log.error(f"{name}: trainer files not rewritten: {error}")
            unusable.append(f"{name}: trainer files not rewritten: {error}")
            continue
        writes = {folder + file: data for file, data in sorted(rewrite.files.items())}
        writes[key] = json.dumps(rewrite.manifest, indent=2, default=str).encode("utf-8")
        lake.commit(writes)
        done[name] = {
            "from_format": trainer_files_format(manifest),
            "to_format": trainer_files_format(rewrite.manifest),
            "files": sorted(rewrite.files),
        }
        context.log.info(
            f"{name}: trainer files rewritten from format {done[name]['from_format']} to "
            f"{done[name]['to_format']}: {', '.join(sorted(rewrite.files)) or 'no file changed'}"
        )
    return done


def _with_kind_of_rows(
    context: AssetExecutionContext, lake: Lake, key: str, manifest: dict[str, Any]
) -> dict[str, Any]:
    """A manifest that names no kind but lists trainer files, with the kind its version's
    `data.parquet` columns tell (as it was where they tell none or more than one)."""
    folder = key.removesuffix(MANIFEST_FILE)
    columns = pl.read_parquet_schema(io.BytesIO(lake.get(folder + "data.parquet")))
    kind = kind_of_columns(columns)
    if kind is None:
        context.log.warning(
            f"{key}: names no kind and its data.parquet columns ({', '.join(columns)}) tell "
            "none: its trainer files are left as they are"
        )
        return manifest
    return {**manifest, "kind": kind, "kind_from": "data.parquet columns"}


def _trainer_files_kept(
    lake: Lake, key: str, manifest: dict[str, Any], error: ConllTagClash, run_id: str
) -> dict[str, Any]:
    """Record in a version's manifest that its trainer files stay in their format, and why;
    returns the record. The manifest is written only when the record is new."""
    before = manifest.get("trainer_files")
    record = dict(before) if isinstance(before, dict) else {}
    kept = {
        "to_format": TRAINER_FILES_FORMAT[str(manifest["kind"])],
        "reason": str(error),
        "labels": list(error.labels),
        "tag": error.tag,
    }
    previous = record.get("not_rewritten")
    if isinstance(previous, dict) and {k: previous.get(k) for k in kept} == kept:
        return {"format": trainer_files_format(manifest), **previous}
    record.update(
        {
            "format": trainer_files_format(manifest),
            "not_rewritten": {**kept, "recorded_by_run": run_id},
        }
    )
    updated = {**manifest, "trainer_files": record}
    lake.commit({key: json.dumps(updated, indent=2, default=str).encode("utf-8")})
    return {"format": record["format"], **kept, "recorded_by_run": run_id}


def _files_of(lake: Lake, folder: str) -> Callable[[str], bytes | None]:
    """A reader of one version folder's files by name (None: no such file)."""
    return lambda name: lake.get_if_exists(folder + name)


kind_curation_job = define_asset_job(
    "kind_curation_job",
    selection=AssetSelection.assets("kind_curated_dataset"),
    description="Build every non-categorical project's curated dataset snapshot.",
)
