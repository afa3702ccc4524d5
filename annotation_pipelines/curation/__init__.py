"""Curated datasets: selection, deduplication, stable splits, content versions, privacy."""

from annotation_pipelines.curation.privacy import pseudonymize
from annotation_pipelines.curation.selection import deduplicate, select_tasks
from annotation_pipelines.curation.splits import DEFAULT_RATIOS, assign_split
from annotation_pipelines.curation.versioning import content_version

__all__ = [
    "DEFAULT_RATIOS",
    "assign_split",
    "content_version",
    "deduplicate",
    "pseudonymize",
    "select_tasks",
]
