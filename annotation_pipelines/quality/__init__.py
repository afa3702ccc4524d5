"""Quality engine: annotator scorecards, item disagreement, re-annotation queue, drift, reports.

Dagster-free: every function takes and returns Polars frames (options keyword-only); the
asset layer reads the partitions, calls these and attaches `markdown_summary` and the HTML
of `render_html_report` as metadata / a written file.
"""

from annotation_pipelines.lazy_exports import lazy_exports

# Each name is imported from its module on first use: a code location that needs the gates
# does not pay for SciPy's statistics (drift) and pandas (the report's agreement) at import.
__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        # `drift` itself is imported from `quality.drift`: the function shares its module's
        # name, and whichever import ran last would decide what the package attribute holds.
        "drift": ("DRIFT", "LABEL_DISTRIBUTION", "label_distribution"),
        "gates": (
            "GATE_SPECS",
            "GATES",
            "GateCheck",
            "gate_checks",
            "gate_verdicts",
            "quality_gates",
        ),
        "held_out": ("held_out_gold_consensus",),
        "items": (
            "ITEM_DISAGREEMENT",
            "QUEUE_ORDER",
            "REASONS",
            "in_queue_order",
            "item_disagreement",
            "reannotation_queue",
        ),
        "render": ("markdown_summary", "render_html_report"),
        "report": ("quality_report",),
        "scorecards": ("annotator_scorecards", "spammer_scores"),
    },
)
