"""Curated datasets: selection, deduplication, stable splits, content versions, privacy."""

from annotation_pipelines.curation.privacy import pseudonymize
from annotation_pipelines.curation.selection import deduplicate, select_tasks
from annotation_pipelines.curation.snapshot import Snapshot, build_snapshot, dataset_card, mask_text
from annotation_pipelines.curation.splits import DEFAULT_RATIOS, assign_split
from annotation_pipelines.curation.versioning import content_version

__all__ = [
    "DEFAULT_RATIOS",
    "Snapshot",
    "assign_split",
    "build_snapshot",
    "content_version",
    "dataset_card",
    "deduplicate",
    "mask_text",
    "pseudonymize",
    "select_tasks",
]
