"""Inter-annotator agreement: Krippendorff's alpha, Fleiss' kappa, Cohen's kappa, percent agreement.

All statistics take a Polars frame with `task_id`, `annotator_id`, `label` and work from
per-(task, value) counts, never from a dense annotators × tasks matrix.
"""

from annotation_pipelines.lazy_exports import lazy_exports

# Each name is imported from its module on first use, so importing one submodule (the CLI's
# `command`) does not import its siblings.
__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cohen": ("COHEN_KAPPA_MATRIX", "cohen_kappa_matrix", "kappa_square"),
        "metrics": ("fleiss_kappa", "krippendorff_alpha", "percent_agreement"),
        "summary": ("agreement_intervals", "agreement_summary"),
    },
)
