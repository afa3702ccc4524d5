"""Drift of the label distribution and of agreement against the trailing weeks."""

from __future__ import annotations

import datetime as dt

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
    # The baseline's labels, pooled over its days, sorted by label: with `baseline_days` and
    # `baseline_alpha`, all a day's drift reads of the days before it.
    "baseline_label_counts": pl.List(pl.Struct({"label": pl.String, "n_judgments": pl.Int64})),
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
# The columns of a drift row that earlier days decide (`stale_baselines` compares them).
BASELINE_COLUMNS = ("baseline_days", "baseline_label_counts", "baseline_alpha")
# Fewer baseline days than this give no statistics (a week: one of each weekday).
MIN_BASELINE_DAYS = 7


def label_distribution(judgments: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Judgments per (project, day, label): the small daily table drift is computed from. A
    LazyFrame (a scan of many days) is read for the three columns this needs only."""
    return (
        with_day(judgments.lazy())
        .filter(pl.col("label").is_not_null())
        .group_by("project", "day", "label")
        .agg(pl.len().cast(pl.UInt32).alias("n_judgments"))
        .sort("project", "day", "label")
        .collect()
    )


def drift(
    label_counts: pl.DataFrame,
    *,
    quality: pl.DataFrame | None = None,
    day: dt.date | None = None,
    trailing_days: int = 28,
    min_baseline_days: int = MIN_BASELINE_DAYS,
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
    counts = _counts(label_counts)
    alphas = _alphas(quality)
    keys = counts.select("project", "day").unique()
    if day is not None:
        keys = keys.filter(pl.col("day") == day)
    base = _baselines(counts, alphas, keys, trailing_days, min_baseline_days)
    # (project, day) → {label: judgments}: each row below reads its own day's counts.
    own_counts: dict[tuple[str, dt.date], dict[str, int]] = {}
    for project, current, label, n in (
        counts.join(keys, on=["project", "day"])
        .group_by("project", "day", "label")
        .agg(pl.col("n_judgments").sum())
        .iter_rows()
    ):
        own_counts.setdefault((project, current), {})[label] = n
    own_alphas = {
        (project, current): alpha
        for project, current, alpha in alphas.join(keys, on=["project", "day"]).iter_rows()
    }
    rows = []
    for project, current, baseline_days, pooled, baseline_alpha in base.iter_rows():
        baseline = {entry["label"]: entry["n_judgments"] for entry in pooled}
        own = own_counts.get((project, current), {})
        labels = sorted(set(own) | set(baseline))
        today = np.array([own.get(label, 0) for label in labels], dtype=float)
        rows.append(
            _compare(
                project,
                current,
                today,
                np.array([baseline.get(label, 0) for label in labels], dtype=float),
                baseline_days,
                pooled,
                alpha=own_alphas.get((project, current)),
                mean_alpha=baseline_alpha,
                min_baseline_days=min_baseline_days,
                max_js_distance=max_js_distance,
                max_alpha_drop=max_alpha_drop,
            )
        )
    return pl.DataFrame(rows, schema=DRIFT, orient="row")


def stale_baselines(
    stored: pl.DataFrame,
    label_counts: pl.DataFrame,
    *,
    quality: pl.DataFrame | None,
    trailing_days: int = 28,
    min_baseline_days: int = MIN_BASELINE_DAYS,
    tolerance: float = 1e-9,
) -> pl.DataFrame:
    """The rows of `stored` (drift rows as written, of any days) whose baseline differs from
    the one `label_counts` and `quality` (the earlier days as the lake holds them now) give:
    project, day, the stored BASELINE_COLUMNS and the recomputed ones (suffix `_now`). Empty
    when every row was computed from the baseline there is now, i.e. recomputing it would give
    the same figures. A row written without `baseline_label_counts` has no known baseline and
    is always listed. The baseline reads only earlier days' judgments and alphas, never their
    drift, so a day recomputed after this check stays current however its neighbours move."""
    require(stored, "stored", ("project", "day", "baseline_days", "baseline_alpha"))
    if "baseline_label_counts" not in stored.columns:
        stored = stored.with_columns(
            pl.lit(None, dtype=DRIFT["baseline_label_counts"]).alias("baseline_label_counts")
        )
    stored = stored.select(pl.col("project"), pl.col("day").cast(pl.Date), *BASELINE_COLUMNS)
    counts = _counts(label_counts)
    keys = stored.select("project", "day").unique()
    now = _baselines(counts, _alphas(quality), keys, trailing_days, min_baseline_days)
    joined = stored.join(
        now.rename({c: f"{c}_now" for c in BASELINE_COLUMNS}), on=["project", "day"], how="left"
    )
    alpha, alpha_now = pl.col("baseline_alpha"), pl.col("baseline_alpha_now")
    differs = [
        pl.col("baseline_days").ne_missing(pl.col("baseline_days_now")),
        pl.col("baseline_label_counts").ne_missing(pl.col("baseline_label_counts_now")),
        (alpha.is_null() != alpha_now.is_null()) | ((alpha - alpha_now).abs() > tolerance),
    ]
    return joined.filter(pl.any_horizontal([d.fill_null(False) for d in differs])).sort(
        "project", "day"
    )


def _counts(label_counts: pl.DataFrame) -> pl.DataFrame:
    if not label_counts.columns:  # no earlier day has been read
        return pl.DataFrame(schema={**LABEL_DISTRIBUTION, "n_judgments": pl.Int64()})
    return label_counts.select(
        pl.col("project"),
        pl.col("day").cast(pl.Date),
        pl.col("label"),
        pl.col("n_judgments").cast(pl.Int64),
    )


def _alphas(quality: pl.DataFrame | None) -> pl.DataFrame:
    """(project, day, krippendorff_alpha) of `quality`, finite alphas only, one per day."""
    schema = {"project": pl.String, "day": pl.Date, "krippendorff_alpha": pl.Float64}
    if quality is None or quality.height == 0:
        return pl.DataFrame(schema=schema)
    require(quality, "quality", ("project", "day", "krippendorff_alpha"))
    return (
        quality.select(
            pl.col("project"),
            pl.col("day").cast(pl.Date),
            pl.col("krippendorff_alpha").cast(pl.Float64),
        )
        .filter(pl.col("krippendorff_alpha").is_finite())
        .unique(["project", "day"], keep="last", maintain_order=True)
    )


def _baselines(
    counts: pl.DataFrame,
    alphas: pl.DataFrame,
    keys: pl.DataFrame,
    trailing_days: int,
    min_baseline_days: int,
) -> pl.DataFrame:
    """Per (project, day) of `keys`: BASELINE_COLUMNS, from the days of `counts` among the
    `trailing_days` before it (the days the project has labels on), sorted by project and day.
    The mean alpha is null below `min_baseline_days` baseline days, as the drift it feeds is."""
    window = keys.join(counts.rename({"day": "baseline_day"}), on="project", how="inner").filter(
        (pl.col("baseline_day") < pl.col("day"))
        & (pl.col("baseline_day") >= pl.col("day") - dt.timedelta(days=trailing_days))
    )
    pooled = (
        window.group_by("project", "day", "label")
        .agg(pl.col("n_judgments").sum())
        .group_by("project", "day")
        .agg(pl.struct("label", "n_judgments").sort_by("label").alias("baseline_label_counts"))
    )
    days = window.select("project", "day", "baseline_day").unique()
    mean_alpha = (
        days.join(
            alphas.rename({"day": "baseline_day"}), on=["project", "baseline_day"], how="inner"
        )
        .group_by("project", "day")
        .agg(pl.col("krippendorff_alpha").mean().alias("baseline_alpha"))
    )
    return (
        keys.join(
            days.group_by("project", "day").agg(pl.len().cast(pl.UInt32).alias("baseline_days")),
            on=["project", "day"],
            how="left",
        )
        .join(pooled, on=["project", "day"], how="left")
        .join(mean_alpha, on=["project", "day"], how="left")
        .select(
            "project",
            "day",
            pl.col("baseline_days").fill_null(0),
            pl.coalesce(
                pl.col("baseline_label_counts").cast(DRIFT["baseline_label_counts"]),
                pl.lit([], dtype=DRIFT["baseline_label_counts"]),
            ),
            pl.when(pl.col("baseline_days") >= min_baseline_days).then(pl.col("baseline_alpha")),
        )
        .sort("project", "day")
    )


def _compare(
    project: str,
    current: dt.date,
    today: np.ndarray,
    baseline: np.ndarray,
    baseline_days: int,
    baseline_label_counts: list[dict[str, object]],
    *,
    alpha: float | None,
    mean_alpha: float | None,
    min_baseline_days: int,
    max_js_distance: float,
    max_alpha_drop: float,
) -> tuple:
    enough = baseline_days >= min_baseline_days
    js: float | None = None
    chi_square: float | None = None
    p_value: float | None = None
    if enough and today.sum() > 0 and baseline.sum() > 0:
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
        baseline_label_counts,
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
