"""Curated datasets: selection, deduplication, stable splits, content versions, privacy."""

from annotation_pipelines.curation.masking import MASK, MaskCounts, mask_personal_data
from annotation_pipelines.curation.privacy import pseudonymize, safe_for_display
from annotation_pipelines.curation.selection import deduplicate, select_tasks
from annotation_pipelines.curation.snapshot import (
    MaskedShareError,
    Snapshot,
    build_snapshot,
    dataset_card,
)
from annotation_pipelines.curation.splits import DEFAULT_RATIOS, assign_split
from annotation_pipelines.curation.versioning import content_version

__all__ = [
    "DEFAULT_RATIOS",
    "MASK",
    "MaskCounts",
    "MaskedShareError",
    "Snapshot",
    "assign_split",
    "build_snapshot",
    "content_version",
    "dataset_card",
    "deduplicate",
    "mask_personal_data",
    "pseudonymize",
    "safe_for_display",
    "select_tasks",
]
