"""Seeded synthetic annotation workload that knows its own ground truth."""

from annotation_pipelines.synthetic.compute import generate_compute_usage
from annotation_pipelines.synthetic.workload import (
    DEFAULT_PROJECTS,
    ProjectSpec,
    WorkloadSummary,
    generate_workload,
)

__all__ = [
    "DEFAULT_PROJECTS",
    "ProjectSpec",
    "WorkloadSummary",
    "generate_compute_usage",
    "generate_workload",
]
