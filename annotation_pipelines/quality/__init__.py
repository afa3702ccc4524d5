"""Quality engine: annotator scorecards, item disagreement, re-annotation queue, drift, reports.

Dagster-free: every function takes and returns Polars frames (options keyword-only); the
asset layer reads the partitions, calls these and attaches `markdown_summary` and the HTML
of `render_html_report` as metadata / a written file.
"""

from annotation_pipelines.quality.drift import DRIFT, LABEL_DISTRIBUTION, drift, label_distribution
from annotation_pipelines.quality.gates import (
    GATE_SPECS,
    GATES,
    GateCheck,
    gate_checks,
    gate_verdicts,
    quality_gates,
)
from annotation_pipelines.quality.held_out import held_out_gold_consensus
from annotation_pipelines.quality.items import (
    ITEM_DISAGREEMENT,
    QUEUE_ORDER,
    REASONS,
    in_queue_order,
    item_disagreement,
    reannotation_queue,
)
from annotation_pipelines.quality.render import markdown_summary, render_html_report
from annotation_pipelines.quality.report import quality_report
from annotation_pipelines.quality.scorecards import annotator_scorecards, spammer_scores

__all__ = [
    "DRIFT",
    "GATES",
    "GATE_SPECS",
    "ITEM_DISAGREEMENT",
    "LABEL_DISTRIBUTION",
    "QUEUE_ORDER",
    "REASONS",
    "GateCheck",
    "annotator_scorecards",
    "drift",
    "gate_checks",
    "gate_verdicts",
    "held_out_gold_consensus",
    "in_queue_order",
    "item_disagreement",
    "label_distribution",
    "markdown_summary",
    "quality_gates",
    "quality_report",
    "reannotation_queue",
    "render_html_report",
    "spammer_scores",
]
