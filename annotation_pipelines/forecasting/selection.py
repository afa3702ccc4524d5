"""Choosing each series' model (or combination) on the selection windows, scoring it on the rest.

The `combine` candidates with the lowest mean selection MASE form the forecast (forecast
pooling: Kourentzes, Barrow & Petropoulos, 2019); the reported scores come from the held-out
evaluation windows, which played no part in the choice.
"""

from __future__ import annotations

import polars as pl

from annotation_pipelines import schema
from annotation_pipelines.forecasting.candidates import BASELINE
from annotation_pipelines.forecasting.metrics import LEVELS, coverage

SCORE_COLUMNS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "model": pl.String(),
    "mase": pl.Float64(),
    "seasonal_naive_mase": pl.Float64(),
    "relative_mase": pl.Float64(),
    "coverage_80": pl.Float64(),
    "coverage_95": pl.Float64(),
    "selection_mase": pl.Float64(),
    "selection_windows": pl.UInt32(),
    "evaluation_windows": pl.UInt32(),
    "held_out": pl.Boolean(),
}


def choose_members(
    window_scores: pl.DataFrame, *, names: list[str], combine: int
) -> tuple[pl.DataFrame, dict[str, tuple[str, ...]]]:
    """Per series: the chosen model name and its members, from the selection windows only.

    The `combine` candidates with the lowest mean selection MASE, ties to the candidate listed
    first (the baseline, then the simpler models). Candidates whose MASE is undefined (a series
    constant before the origin has no seasonal-naive error to scale by) are never ranked; when
    none is defined the baseline is chosen alone: there is no evidence for anything else.
    """
    order = {name: rank for rank, name in enumerate(names)}
    ranked = (
        window_scores.filter(pl.col("role") == "selection")
        .group_by("id", "model")
        .agg(pl.col("mase").mean().alias("score"))
        .with_columns(
            pl.col("model").replace_strict(order, return_dtype=pl.Int64).alias("rank"),
            pl.col("score").fill_nan(None),
        )
        .filter(pl.col("score").is_finite())
        .sort("id", "score", "rank")
        .group_by("id", maintain_order=True)
        .agg(pl.col("model").head(combine).alias("members"))
    )
    ids = window_scores.select("id").unique()
    rows, combinations = [], {}
    for series_id, members in ids.join(ranked, on="id", how="left").iter_rows():
        members = sorted(members or [BASELINE], key=order.__getitem__)
        name = members[0] if len(members) == 1 else f"Combination({'+'.join(members)})"
        rows.append((series_id, name))
        combinations[name] = tuple(members)
    chosen = pl.DataFrame(rows, schema={"id": pl.String, "model": pl.String}, orient="row")
    return chosen.sort("id"), combinations


def score_chosen(
    window_scores: pl.DataFrame,
    cross_validation: pl.DataFrame,
    *,
    chosen: pl.DataFrame,
    held_out: bool,
) -> pl.DataFrame:
    selection = window_scores.filter(pl.col("role") == "selection")
    evaluation = window_scores.filter(pl.col("role") == "evaluation") if held_out else selection
    names = chosen.get_column("model").unique().to_list()
    # For a combination this is its score on the windows its members were picked on: optimistic,
    # which is why the reported figures are the held-out ones.
    chosen = chosen.join(
        selection.group_by("id", "model").agg(
            pl.col("mase").mean().fill_nan(None).alias("selection_mase"),
            pl.len().alias("selection_windows"),
        ),
        on=["id", "model"],
        how="left",
    )
    evaluated = evaluation.group_by("id", "model").agg(
        pl.col("mase").mean(), pl.col("mae").mean(), pl.len().alias("evaluation_windows")
    )
    baseline = evaluated.filter(pl.col("model") == BASELINE).select(
        "id", pl.col("mase").alias("seasonal_naive_mase"), pl.col("mae").alias("baseline_mae")
    )
    # Coverage over all held-out points (not a mean of per-window shares) so unequal windows
    # weigh by their size.
    evaluation_cutoffs = evaluation.select("id", "cutoff").unique()
    points = cross_validation.join(evaluation_cutoffs, on=["id", "cutoff"]).join(
        chosen.select("id", "model"), on="id"
    )
    covered = []
    for model in names:
        subset = points.filter(pl.col("model") == model)
        if subset.height:
            covered.append(
                subset.group_by("id").agg(
                    *[
                        coverage(subset, model=model, level=level).alias(f"coverage_{level}")
                        for level in LEVELS
                    ]
                )
            )
    coverage_table = (
        pl.concat(covered)
        if covered
        else pl.DataFrame(
            schema={"id": pl.String, "coverage_80": pl.Float64, "coverage_95": pl.Float64}
        )
    )
    scores = (
        chosen.join(evaluated, on=["id", "model"], how="left")
        .join(baseline, on="id", how="left")
        .join(coverage_table, on="id", how="left")
        .with_columns(
            # MAE ratio equals MASE ratio window by window (same scale); over several windows the
            # ratio of mean MAEs is the stable form.
            (pl.col("mae") / pl.col("baseline_mae")).alias("relative_mase"),
            pl.lit(held_out).alias("held_out"),
        )
    )
    return schema.conform(scores.select(list(SCORE_COLUMNS)), SCORE_COLUMNS, name="scores").sort(
        "id"
    )
