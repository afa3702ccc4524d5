"""Drift of the label distribution and of agreement against the trailing weeks."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl

from annotation_pipelines.quality._common import require, with_day

LABEL_DISTRIBUTION: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "label": pl.String(),
    "n_judgments": pl.UInt32(),
}

DRIFT: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "baseline_days": pl.UInt32(),
    "js_distance": pl.Float64(),
    "chi_square": pl.Float64(),
    "chi_square_p_value": pl.Float64(),
    "krippendorff_alpha": pl.Float64(),
    "baseline_alpha": pl.Float64(),
    "alpha_change": pl.Float64(),
    "label_drift": pl.Boolean(),
    "agreement_drift": pl.Boolean(),
    "flagged": pl.Boolean(),
    "reason": pl.String(),
}


def label_distribution(judgments: pl.DataFrame) -> pl.DataFrame:
    """Judgments per (project, day, label): the small daily table drift is computed from."""
    return (
        with_day(judgments)
        .filter(pl.col("label").is_not_null())
        .group_by("project", "day", "label")
        .agg(pl.len().cast(pl.UInt32).alias("n_judgments"))
        .sort("project", "day", "label")
    )


def drift(
    label_counts: pl.DataFrame,
    *,
    quality: pl.DataFrame | None = None,
    day: dt.date | None = None,
    trailing_days: int = 28,
    min_baseline_days: int = 7,
    max_js_distance: float = 0.1,
    max_alpha_drop: float = 0.1,
) -> pl.DataFrame:
    """Per (project, day): the day against the `trailing_days` before it; columns DRIFT.

    Label drift: the Jensen–Shannon distance (Lin 1991; base 2, so in [0, 1]) between the
    day's label shares and the pooled shares of the baseline days; flagged above
    `max_js_distance`. The chi-square test of homogeneity on the 2 × labels table is
    reported as well but not used to flag: with a day's thousands of judgments it calls
    any trivial shift significant, whereas the distance is a size-free effect size.
    Agreement drift: `quality` (project, day, krippendorff_alpha — e.g. earlier quality
    reports) gives the day's alpha and the mean of the baseline days'; flagged when it fell
    by more than `max_alpha_drop`. Days with fewer than `min_baseline_days` baseline days
    get null statistics and are not flagged. `day` restricts the output to that day.
    """
    require(label_counts, "label_counts", ("project", "day", "label", "n_judgments"))
    counts = label_counts.with_columns(pl.col("day").cast(pl.Date))
    alphas: dict[tuple[str, dt.date], float] = {}
    if quality is not None and quality.height:
        require(quality, "quality", ("project", "day", "krippendorff_alpha"))
        for project, quality_day, alpha in quality.select(
            "project", pl.col("day").cast(pl.Date), "krippendorff_alpha"
        ).iter_rows():
            if alpha is not None and math.isfinite(alpha):
                alphas[(project, quality_day)] = alpha
    rows = []
    for (project,), per_project in counts.group_by(["project"], maintain_order=True):
        # Prefixed so that no label can collide with the `day` index column.
        keyed = per_project.with_columns(pl.concat_str(pl.lit("label:"), pl.col("label")))
        labels = sorted(keyed.get_column("label").unique().to_list())
        wide = keyed.pivot(on="label", index="day", values="n_judgments", aggregate_function="sum")
        wide = wide.fill_null(0).select("day", *[pl.col(c).cast(pl.Float64) for c in labels])
        wide = wide.sort("day")
        days = wide.get_column("day").to_list()
        matrix = wide.drop("day").to_numpy()
        for index, current in enumerate(days):
            if day is not None and current != day:
                continue
            start = current - dt.timedelta(days=trailing_days)
            baseline_rows = [i for i, d in enumerate(days) if start <= d < current]
            rows.append(
                _compare(
                    project,
                    current,
                    matrix[index],
                    matrix[baseline_rows].sum(axis=0) if baseline_rows else None,
                    len(baseline_rows),
                    alpha=alphas.get((project, current)),
                    baseline_alpha=[
                        alphas[(project, days[i])]
                        for i in baseline_rows
                        if (project, days[i]) in alphas
                    ],
                    min_baseline_days=min_baseline_days,
                    max_js_distance=max_js_distance,
                    max_alpha_drop=max_alpha_drop,
                )
            )
    return pl.DataFrame(rows, schema=DRIFT, orient="row")


def _compare(
    project: str,
    current: dt.date,
    today: np.ndarray,
    baseline: np.ndarray | None,
    baseline_days: int,
    *,
    alpha: float | None,
    baseline_alpha: list[float],
    min_baseline_days: int,
    max_js_distance: float,
    max_alpha_drop: float,
) -> tuple:
    enough = baseline is not None and baseline_days >= min_baseline_days
    js: float | None = None
    chi_square: float | None = None
    p_value: float | None = None
    if enough and baseline is not None and today.sum() > 0 and baseline.sum() > 0:
        # Imported here rather than with the module: every Dagster run process imports the
        # code location, and SciPy's statistics are about a tenth of that load.
        from scipy.spatial.distance import jensenshannon
        from scipy.stats import chi2_contingency

        js = float(jensenshannon(today / today.sum(), baseline / baseline.sum(), base=2))
        observed = np.vstack([today, baseline])
        observed = observed[:, observed.sum(axis=0) > 0]
        if observed.shape[1] >= 2:
            statistic, p, _, _ = chi2_contingency(observed, correction=False)
            chi_square, p_value = float(statistic), float(p)
        else:
            chi_square, p_value = 0.0, 1.0
    mean_alpha = float(np.mean(baseline_alpha)) if enough and baseline_alpha else None
    change = alpha - mean_alpha if alpha is not None and mean_alpha is not None else None
    label_drift = js is not None and js > max_js_distance
    agreement_drift = change is not None and change < -max_alpha_drop
    reasons = []
    if label_drift:
        reasons.append(
            f"label distribution moved: JS distance {js:.3f} > {max_js_distance} "
            f"vs trailing {baseline_days} days"
        )
    if agreement_drift and change is not None:
        reasons.append(
            f"agreement fell: alpha {alpha:.3f} vs trailing mean {mean_alpha:.3f} "
            f"(drop {-change:.3f} > {max_alpha_drop})"
        )
    return (
        project,
        current,
        baseline_days,
        js,
        chi_square,
        p_value,
        alpha,
        mean_alpha,
        change,
        label_drift,
        agreement_drift,
        label_drift or agreement_drift,
        "; ".join(reasons) or None,
    )
