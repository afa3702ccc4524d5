"""Inter-annotator agreement: Krippendorff's alpha, Fleiss' kappa, Cohen's kappa, percent agreement.

All statistics take a Polars frame with `task_id`, `annotator_id`, `label` and work from
per-(task, value) counts, never from a dense annotators × tasks matrix.
"""

from annotation_pipelines.agreement.cohen import (
    COHEN_KAPPA_MATRIX,
    cohen_kappa_matrix,
    kappa_square,
)
from annotation_pipelines.agreement.metrics import (
    fleiss_kappa,
    krippendorff_alpha,
    percent_agreement,
)
from annotation_pipelines.agreement.summary import agreement_intervals, agreement_summary

__all__ = [
    "COHEN_KAPPA_MATRIX",
    "agreement_intervals",
    "agreement_summary",
    "cohen_kappa_matrix",
    "fleiss_kappa",
    "kappa_square",
    "krippendorff_alpha",
    "percent_agreement",
]
