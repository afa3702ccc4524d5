"""Seeded synthetic annotation workload that knows its own ground truth."""

from annotation_pipelines.lazy_exports import lazy_exports

# Each name is imported from its module on first use, so importing one submodule (the CLI's
# `command`) does not import its siblings.
__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "compute": ("generate_compute_usage",),
        "kinds": ("KIND_PROJECTS", "KindProjectSpec", "generate_kind_days"),
        "workload": ("DEFAULT_PROJECTS", "ProjectSpec", "WorkloadSummary", "generate_workload"),
    },
)
