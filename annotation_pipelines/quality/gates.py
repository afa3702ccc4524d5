"""Quality gates as data: the asset layer turns each row into a Dagster asset check result.

Kept here, Dagster-free, so the thresholds and their meaning are tested without an
orchestrator and the same gates can run from the command line or a notebook.
"""

from __future__ import annotations

import math

import polars as pl

from annotation_pipelines.quality._common import require

GATES: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "gate": pl.String(),
    "passed": pl.Boolean(),
    "severity": pl.String(),
    "value": pl.Float64(),
    "threshold": pl.Float64(),
    "description": pl.String(),
}


def quality_gates(
    report: pl.DataFrame,
    *,
    min_krippendorff_alpha: float = 0.4,
    min_gold_accuracy: float = 0.7,
    max_share_flagged_annotators: float = 0.2,
    min_judgments: int = 1,
    blocking: tuple[str, ...] = ("agreement_floor", "gold_accuracy_floor", "row_count"),
) -> pl.DataFrame:
    """One row per (project, day, gate) of a quality report; columns GATES.

    Gates: agreement_floor (Krippendorff's alpha ≥ `min_krippendorff_alpha`),
    gold_accuracy_floor (gold accuracy ≥ `min_gold_accuracy`; passes when the day had no
    gold judgments, with that said in the description), flagged_share_ceiling (share of
    flagged annotators ≤ `max_share_flagged_annotators`), row_count (≥ `min_judgments`
    judgments). Gates in `blocking` have severity "ERROR" (a failure should stop the
    curated dataset from being rebuilt on the day), the others "WARN". An undefined alpha
    (no pairable task, a single label) fails the agreement floor: nothing was shown to
    agree.
    """
    require(
        report,
        "report",
        ("project", "day", "n_judgments", "krippendorff_alpha", "gold_accuracy"),
    )
    rows = []
    for row in report.iter_rows(named=True):
        alpha, gold = row["krippendorff_alpha"], row["gold_accuracy"]
        flagged = row.get("share_flagged_annotators")
        checks = [
            (
                "agreement_floor",
                alpha is not None and not math.isnan(alpha) and alpha >= min_krippendorff_alpha,
                alpha,
                min_krippendorff_alpha,
                f"Krippendorff's alpha {_show(alpha)} (floor {min_krippendorff_alpha})",
            ),
            (
                "gold_accuracy_floor",
                gold is None or gold >= min_gold_accuracy,
                gold,
                min_gold_accuracy,
                "no gold judgments this day"
                if gold is None
                else f"gold accuracy {gold:.3f} (floor {min_gold_accuracy})",
            ),
            (
                "flagged_share_ceiling",
                flagged is None or flagged <= max_share_flagged_annotators,
                flagged,
                max_share_flagged_annotators,
                "no scorecards"
                if flagged is None
                else f"{flagged:.1%} of annotators flagged (ceiling "
                f"{max_share_flagged_annotators:.0%})",
            ),
            (
                "row_count",
                (row["n_judgments"] or 0) >= min_judgments,
                float(row["n_judgments"] or 0),
                float(min_judgments),
                f"{row['n_judgments'] or 0:,} judgments (minimum {min_judgments:,})",
            ),
        ]
        for gate, passed, value, threshold, description in checks:
            rows.append(
                (
                    row["project"],
                    row["day"],
                    gate,
                    bool(passed),
                    "ERROR" if gate in blocking else "WARN",
                    None
                    if value is None or (isinstance(value, float) and math.isnan(value))
                    else float(value),
                    float(threshold),
                    description,
                )
            )
    return pl.DataFrame(rows, schema=GATES, orient="row")


def _show(value: float | None) -> str:
    return "undefined" if value is None or math.isnan(value) else f"{value:.3f}"
