"""Held-out capacity forecasts: leave-one-cluster-out on the shared Helios virtual clusters.

    .venv/bin/python benchmarks/bench_capacity.py [--test-origins 4] [--calibration-windows 4]
    .venv/bin/python benchmarks/bench_capacity.py --scale 500   # months ahead, 500 series

`--scale N` times the months-ahead path instead: N synthetic series of two years of daily
demand, a 26-week forecast with its backtest-calibrated P50/P90 bands (the model refit at
weekly origins inside each history) plus a two-window 26-week rolling-origin backtest, and
prints the wall time, the load average and the backtest's calibration figures. `--seed N` builds
another synthetic fleet (0 is the one the months-ahead settings were chosen on);
`--spread-check` scores the P90 with and without its spread at today's level from one backtest
pass, by the series' growth rate; `--no-spread-scaled` times the fixed spread. `--young K` makes
K of the series (every N/K-th) join `--young-days` days before each backtest origin and scores
their P90 with the spread pooled from the other series (by peer group, and from the whole fleet)
against none, in the series path and (with `--hierarchy`) the reconciled one.

Data: Helios traces (Hu et al., "Characterization and Prediction of Deep Learning Workloads in
Large-Scale GPU Datacenters", SC'21), `shared/data/capacity/helios_earth_{vc3sl,vc6YE,vcMod}.csv`;
hourly demand = running + pending GPUs (per-minute samples averaged), 168 h ahead. Every
candidate is backtested at 15 daily origins (2020-05-10 23:00 ... 05-24 23:00); the last
`--test-origins` are test origins in turn (the last one forecasts the month's last week). Side by
side on identical origins, each calibrated the same split-conformal way: the seasonal naive,
statsforecast's best single model and our rule (both chosen leave-one-cluster-out) and the
Helios recipe (LightGBM on calendar and lag features). Prints per series and pooled relative
MASE, 80/95% coverage and Winkler score, the wall times and the load average.

`--interval-study` then compares ways of calibrating the same point forecasts (the rule chosen
leave-one-cluster-out for each held-out series, so MASE is unchanged) on the four test weeks,
each variant fixed before it was run (`interval_study` below names them and their sources). It ends
with a hindsight oracle: how many series-weeks one band per series, its level set on the test
weeks themselves, would put in 0.92-0.98.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.forecasting import load_helios, to_series
from annotation_pipelines.forecasting.conformal import conformal_quantile, horizon_shape
from annotation_pipelines.forecasting.ensemble import (
    apply_rule,
    candidate_cross_validation,
    candidate_names,
    score_points,
    window_mase,
)
from annotation_pipelines.forecasting.evaluation import OURS, leave_one_cluster_out
from annotation_pipelines.forecasting.scalars import as_float
from annotation_pipelines.forecasting.statsforecast_adapter import naive_utc
from tests.realdata import CAPACITY_DIR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", default="vc3sl,vc6YE,vcMod")
    parser.add_argument("--test-origins", type=int, default=4)
    parser.add_argument("--calibration-windows", type=int, default=4)
    parser.add_argument("--scale", type=int, default=0)
    parser.add_argument("--interval-study", action="store_true")
    parser.add_argument("--hierarchy", action="store_true")
    # Months ahead: past errors rescaled to today's level (scenarios._empirical_errors).
    parser.add_argument("--level-scaled", action="store_true")
    # Months ahead: the P90's spread above the P50 at today's level (the default) or not.
    parser.add_argument("--no-spread-scaled", action="store_true")
    # Months ahead: the synthetic fleet's seed (0: the fleet the settings were chosen on).
    parser.add_argument("--seed", type=int, default=0)
    # Months ahead: both P90 variants from one backtest pass (no forecast, no timing bar).
    parser.add_argument("--spread-check", action="store_true")
    # Reuse (or write) the candidates' backtest at this Parquet path.
    parser.add_argument("--cache", type=Path, default=None)
    # Months ahead: series too young for backtest errors of their own (`young_check`).
    parser.add_argument("--young", type=int, default=0)
    parser.add_argument("--young-days", type=int, default=20)
    args = parser.parse_args()
    if args.scale:
        options = {"level_scaled": args.level_scaled, "spread_scaled": not args.no_spread_scaled,
                   "seed": args.seed}  # fmt: skip
        if args.young:
            young_check(args.scale, young=args.young, young_days=args.young_days,
                        seed=args.seed, hierarchy=args.hierarchy)  # fmt: skip
        elif args.spread_check:
            spread_check(args.scale, seed=args.seed)
        elif args.hierarchy:
            scale_hierarchy(args.scale, **options)
        else:
            scale(args.scale, **options)
        return
    usage = pl.concat(
        [load_helios(CAPACITY_DIR / f"helios_earth_{vc}.csv") for vc in args.series.split(",")]
    )
    history = naive_utc(to_series(usage, freq="1h"))
    if args.hierarchy:
        hierarchy_study(usage, history, test_origins=args.test_origins,
                        calibration_windows=args.calibration_windows, cache=args.cache)  # fmt: skip
        return
    print(f"load average before: {os.getloadavg()}")
    start = time.perf_counter()
    if args.cache is not None and args.cache.exists():
        cross_validation = pl.read_parquet(args.cache)
    else:
        cross_validation = candidate_cross_validation(
            history, horizon=168, season_length=24, freq="1h", windows=15, step=24,
            models=candidate_names(season_length=24),
        )  # fmt: skip
        if args.cache is not None:
            cross_validation.write_parquet(args.cache)
    backtest_seconds = time.perf_counter() - start
    start = time.perf_counter()
    evaluation = leave_one_cluster_out(
        history, horizon=168, season_length=24, freq="1h", windows=15, step=24,
        test_origins=args.test_origins, calibration_windows=args.calibration_windows,
        cross_validation=cross_validation,
    )  # fmt: skip
    evaluation_seconds = time.perf_counter() - start
    print("\n| test origin | method | rule per held-out series | relative MASE (geo. mean) | "
          "per series rel. MASE | coverage 80 pooled | coverage 95 pooled | per series cov. 95 "
          "| Winkler 80 | Winkler 95 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (origin, method), frame in evaluation.group_by("origin", "method", maintain_order=True):
        frame = frame.sort("id")
        ratios = frame.get_column("relative_mase").to_numpy()
        print(
            f"| {origin:%m-%d %H:%M} | {method} | {', '.join(frame['rule'])} | "
            f"{np.exp(np.mean(np.log(ratios))):.3f} | {', '.join(f'{r:.3f}' for r in ratios)} | "
            f"{frame['coverage_80'].mean():.3f} | {frame['coverage_95'].mean():.3f} | "
            f"{', '.join(f'{c:.3f}' for c in frame['coverage_95'])} | "
            f"{frame['winkler_80'].mean():.1f} | {frame['winkler_95'].mean():.1f} |"
        )
    print(f"\nseries: {', '.join(sorted(history['id'].unique()))} (per-series columns in order)")
    print(
        f"backtest of {len(candidate_names(season_length=24))} candidates x 15 origins x "
        f"{history['id'].n_unique()} series {backtest_seconds:.1f} s; leave-one-cluster-out "
        f"choice, calibration and scoring {evaluation_seconds:.1f} s; "
        f"load average after: {os.getloadavg()}"
    )
    if args.interval_study:
        supply = naive_utc(to_series(usage, freq="1h", value="total"))
        interval_study(history, cross_validation, evaluation, supply=supply)


SPAN = dt.timedelta(hours=168)


def _recent_scale(history: pl.DataFrame, cutoff: dt.datetime) -> dict[str, float]:
    """Per series, the mean absolute 24-h seasonal difference over the week before `cutoff`
    (at least 1 GPU, so an idle week does not divide by zero)."""
    recent = (
        history.filter(pl.col("time") <= cutoff)
        .sort("id", "time")
        .group_by("id", maintain_order=True)
        .tail(168 + 24)
        .group_by("id")
        .agg((pl.col("value") - pl.col("value").shift(24)).abs().mean().alias("scale"))
    )
    return {i: max(1.0, float(s)) for i, s in recent.iter_rows()}


def _supply_at(supply: pl.DataFrame, cutoff: dt.datetime) -> dict[str, float]:
    """Per series, its supply (GPU quota) at `cutoff`, at least 1 GPU."""
    latest = (
        supply.filter(pl.col("time") <= cutoff)
        .sort("time")
        .group_by("id")
        .agg(pl.col("value").last())
    )
    return {i: max(1.0, float(v)) for i, v in latest.iter_rows()}


def _latest(frame: pl.DataFrame, windows: int) -> pl.DataFrame:
    """The rows of `frame`'s `windows` latest cutoffs."""
    latest = frame["cutoff"].unique().sort().tail(windows).to_list()
    return frame.filter(pl.col("cutoff").is_in(latest))


def _half_widths(
    past: pl.DataFrame, *, variant: str, target: str, level: float, scales: dict
) -> np.ndarray:
    """The 168 half-widths of one held-out week's `level`% band under the variants measured
    before the horizon shape (flat bands), from `past` ([id, cutoff, step, residual] of origins
    whose horizon had ended)."""
    windows = 8 if variant == "own, 8 windows" else 4
    if variant.startswith("pooled"):
        rows = past.group_by("id").map_groups(lambda f: _latest(f, windows))
        scaled = rows["residual"].to_numpy() / np.array(
            [scales[c][i] for i, c in zip(rows["id"], rows["cutoff"], strict=True)]
        )
        return np.full(168, conformal_quantile(scaled, level=level) * scales["origin"][target])
    own = past.filter(pl.col("id") == target)
    own = _latest(own, windows)
    if variant == "per 24-h horizon band":
        return np.repeat(
            [
                conformal_quantile(own.filter(pl.col("step") // 24 == b)["residual"].to_numpy(),
                                   level=level)
                for b in range(7)
            ],
            24,
        )  # fmt: skip
    return np.full(168, conformal_quantile(own["residual"].to_numpy(), level=level))


STEPS = np.arange(1, 169)
Band = tuple[np.ndarray, np.ndarray, np.ndarray]
# Barber, Candes, Ramdas & Tibshirani (2023) weigh calibration point i by 0.99^(n + 1 - i);
# here per hour of age.
RHO = 0.99


def _weighted_quantile(scores: np.ndarray, weights: np.ndarray, level: float) -> float:
    """Non-exchangeable conformal quantile (Barber et al. 2023): the smallest score whose
    normalized cumulative weight reaches `level`, the test point carrying weight 1 at +inf."""
    order = np.argsort(scores)
    cumulative = np.cumsum(weights[order]) / (weights.sum() + 1.0)
    index = int(np.searchsorted(cumulative, level))
    return float(scores[order][min(index, scores.size - 1)])


def _growth(residuals: np.ndarray) -> np.ndarray:
    """s(h) = a + b sqrt(h) fitted to the mean |residual| per step of `residuals` (windows x
    168), as `conformal.horizon_shape`."""
    a, b = horizon_shape(STEPS, np.abs(residuals).mean(axis=0))
    return a + b * np.sqrt(STEPS)


def _band(
    matrices: dict[str, dict[dt.datetime, np.ndarray]],
    *,
    variant: str,
    target: str,
    origin: dt.datetime,
    level: float,
) -> Band:
    """(lower offset, upper offset, point shift) over the 168 steps for the variants measured
    with the horizon shape, from every origin's residuals (`matrices[id][cutoff]`, 168 each);
    only what was observed by `origin` is used."""
    own = matrices[target]
    ended = [c for c in sorted(own) if c + SPAN <= origin]
    recent = np.array([own[c] for c in ended[-4:]])
    every = np.array([own[c] for c in ended])
    zero = np.zeros(168)
    p = level / 100

    def symmetric(half: np.ndarray) -> Band:
        return -half, half, zero

    def shaped(scores: np.ndarray, scale: np.ndarray) -> Band:
        return symmetric(conformal_quantile((np.abs(scores) / scale).ravel(), level=level) * scale)

    if variant == "shipped: shape on all ended, level on 4 latest":
        return shaped(recent, _growth(every))
    if variant == "flat (before)":
        return shaped(recent, np.ones(168))
    if variant == "sqrt(h) imposed":
        return shaped(recent, np.sqrt(STEPS))
    if variant == "shape fitted on the 4 latest":
        return shaped(recent, _growth(recent))
    if variant == "shape pooled over clusters":
        profiles = []
        for series in matrices:
            windows = [c for c in sorted(matrices[series]) if c + SPAN <= origin][-4:]
            mean = np.abs(np.array([matrices[series][c] for c in windows])).mean(axis=0)
            profiles.append(mean / mean.mean())
        return shaped(recent, _growth(np.array(profiles)))
    if variant.startswith("nexCP, all ended"):
        ages = np.array([(ended[-1] - c).total_seconds() / 3600 for c in ended])
        scale = _growth(recent) if variant.endswith("shape on 4 latest") else np.ones(168)
        q = _weighted_quantile((np.abs(every) / scale).ravel(), np.repeat(RHO**ages, 168), p)
        return symmetric(q * scale)
    if variant == "nexCP, every observed residual, shape on 4 latest":
        scale = _growth(recent)
        observed: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        for cutoff in sorted(own):
            if cutoff >= origin:
                continue
            seen = np.array([cutoff + dt.timedelta(hours=int(h)) <= origin for h in STEPS])
            age = np.array([(origin - cutoff).total_seconds() / 3600 - h for h in STEPS])
            observed.append(np.abs(own[cutoff][seen]) / scale[seen])
            weights.append(RHO ** age[seen])
        q = _weighted_quantile(np.concatenate(observed), np.concatenate(weights), p)
        return symmetric(q * scale)
    if variant.startswith("freshest per step"):
        # Step h: the residuals at h of the 4 latest origins whose step h was observed.
        fresh = np.array(
            [[own[c][h - 1] for c in sorted(own) if c + dt.timedelta(hours=int(h)) <= origin][-4:]
             for h in STEPS]
        ).T  # fmt: skip
        return shaped(fresh, _growth(fresh) if variant.endswith("+ shape") else np.ones(168))
    if variant == "signed (asymmetric)":
        signed, tail = recent.ravel(), 100 * (1 - (1 - p) / 2)
        upper = conformal_quantile(np.clip(signed, 0, None), level=tail)
        lower = conformal_quantile(np.clip(-signed, 0, None), level=tail)
        return -lower + zero, upper + zero, zero
    if variant == "tail pooled over clusters, own median":
        pooled = []
        for series in matrices:
            windows = [c for c in sorted(matrices[series]) if c + SPAN <= origin][-4:]
            errors = np.abs(np.array([matrices[series][c] for c in windows])).ravel()
            pooled.append(errors / max(float(np.median(errors)), 1e-9))
        q = conformal_quantile(np.concatenate(pooled), level=level)
        return symmetric(q * float(np.median(np.abs(recent))) + zero)
    if variant == "point shifted by the recent median error":
        shift = float(np.median(recent))
        lo, hi, _ = shaped(recent - shift, np.ones(168))
        return lo, hi, zero + shift
    raise ValueError(variant)


def _score_band(
    value: np.ndarray, point: np.ndarray, band: Band, level: int
) -> tuple[float, float, float]:
    """Coverage, mean Winkler score and the MAE of the (possibly shifted) point."""
    lower, upper, shift = band
    point = point + shift
    lo, hi, alpha = np.clip(point + lower, 0.0, None), point + upper, 1 - level / 100
    covered = float(np.mean((value >= lo) & (value <= hi)))
    miss = np.clip(lo - value, 0.0, None) + np.clip(value - hi, 0.0, None)
    return covered, float(np.mean(hi - lo + 2 / alpha * miss)), float(np.abs(value - point).sum())


FLAT_VARIANTS = ("per 24-h horizon band", "own, 8 windows", "pooled over clusters",
                 "pooled, by supply", "ACI")  # fmt: skip
SHAPED_VARIANTS = (
    "shipped: shape on all ended, level on 4 latest", "flat (before)", "sqrt(h) imposed",
    "shape fitted on the 4 latest", "nexCP, all ended", "nexCP, all ended, shape on 4 latest",
    "signed (asymmetric)", "tail pooled over clusters, own median",
    "point shifted by the recent median error",
    "nexCP, every observed residual, shape on 4 latest", "freshest per step",
    "freshest per step + shape", "shape pooled over clusters",
)  # fmt: skip


def interval_study(
    history: pl.DataFrame,
    cross_validation: pl.DataFrame,
    evaluation: pl.DataFrame,
    *,
    supply: pl.DataFrame,
) -> None:
    """Calibration variants on the held-out weeks, the point forecasts fixed (the rule chosen
    leave-one-cluster-out for each series), each variant fixed before it was run.

    shipped                the series' |residual| / s(h), s(h) = a + b sqrt(h) fitted on every
                           ended window, quantile over its 4 latest ended windows
                           (`conformal.calibration_quantiles`)
    flat (before)          s = 1: split conformal on the 4 latest, pooled over the 168 steps
    per 24-h horizon band  flat, one quantile per day of the horizon (Stankeviciute et al. 2021)
    own, 8 windows         flat with twice the calibration windows
    pooled over clusters   normalized conformal (Papadopoulos et al. 2008; Lei et al. 2018):
                           residual / the series' recent seasonal MAE, pooled over every
                           series' 4 latest ended origins, rescaled by the target's scale
    pooled, by supply      the same with the series' GPU quota at the origin as the scale
    ACI                    adaptive conformal inference (Gibbs & Candes 2021), gamma = 0.005,
                           on the flat band
    sqrt(h) imposed        s(h) = sqrt(h), the random walk's growth, not fitted
    shape fitted on the 4 latest  s(h) fitted on the 4 calibration windows themselves
    nexCP, all ended       non-exchangeable conformal (Barber et al. 2023): every ended window,
                           weight 0.99 per hour of the window's age (0.79 a day); also with s(h)
    signed (asymmetric)    upper / lower bounds from the quantiles of the signed errors, each
                           at level 1 - alpha / 2 (bias-aware, asymmetric)
    tail pooled over clusters, own median  |e| / the series' median |e|, pooled over the three
                           clusters' 4 latest windows, times the target's median |e|
    point shifted by the recent median error  the point plus the median signed error of the 4
                           latest windows, flat band on the shifted errors (changes MASE)
    nexCP, every observed residual  every residual observed by the origin, partly ended
                           windows included, weight 0.99 per hour since it was observed
    freshest per step      step h from the 4 latest origins whose step h was observed
    shape pooled over clusters  s(h) fitted on the three clusters' normalized error profiles

    The shipped calibration is the one the rule below picks on the three earlier test weeks
    (fixed before any variant was run): among variants whose pooled 95% coverage over those
    nine series-weeks is in 0.92-0.98, the lowest mean Winkler-95. Also printed: the same rule
    leave-one-cluster-out (chosen on the other two clusters).
    """
    models = candidate_names(season_length=24)
    scores = window_mase(cross_validation, history, models=models, season_length=24)
    ours = evaluation.filter(pl.col("method") == OURS)
    origins = sorted(ours["origin"].unique().to_list())
    cutoffs = cross_validation["cutoff"].unique().sort().to_list()
    scales = {c: _recent_scale(history, c) for c in cutoffs}
    quotas = {c: _supply_at(supply, c) for c in cutoffs}
    ruled = {
        rule: apply_rule(cross_validation, rule=rule, models=models, window_scores=scores,
                         horizon_span=SPAN).with_columns(
            (pl.col("value") - pl.col("forecast")).alias("residual"),
            ((pl.col("time") - pl.col("cutoff")).dt.total_hours() - 1).alias("step"),
        ).sort("id", "cutoff", "time")
        for rule in ours["rule"].unique()
    }  # fmt: skip
    # A series' rule is chosen again at every origin (on the other clusters), so it can change
    # from one test week to the next: each origin reads every series' residuals under the rule
    # that series had there.
    residuals = {
        (series, rule): {
            cutoff: part["residual"].to_numpy()
            for (cutoff,), part in ruled[rule].filter(pl.col("id") == series).group_by("cutoff")
        }
        for series, rule in ours.select("id", "rule").unique().iter_rows()
    }
    at_origin = {
        origin: {series: residuals[(series, rule)] for _, series, rule in group.iter_rows()}
        for (origin,), group in ours.select("origin", "id", "rule").group_by("origin")
    }
    naive_error = {
        (i, c): float(part.select((pl.col("value") - pl.col("SeasonalNaive")).abs().sum()).item())
        for (i, c), part in cross_validation.group_by("id", "cutoff")
    }
    rows = []
    shipped_hits: dict[tuple[str, dt.datetime], np.ndarray] = {}
    for origin, series_id, rule in ours.select("origin", "id", "rule").iter_rows():
        frame = ruled[rule]
        week = frame.filter((pl.col("id") == series_id) & (pl.col("cutoff") == origin)).sort("time")
        # Counts: the shipped point is clipped at zero and its band built around the clipped
        # point, as the pipeline ships it.
        value, point = week["value"].to_numpy(), np.clip(week["forecast"].to_numpy(), 0.0, None)
        matrices = at_origin[origin]
        for variant in (*SHAPED_VARIANTS, *FLAT_VARIANTS):
            figures: dict[str, float] = {}
            for level in (80, 95):
                if variant in SHAPED_VARIANTS:
                    band = _band(matrices, variant=variant, target=series_id, origin=origin,
                                 level=level)  # fmt: skip
                elif variant == "ACI":
                    half = _aci_half_widths(frame, target=series_id, origin=origin, level=level,
                                            cutoffs=cutoffs)  # fmt: skip
                    band = (-half, half, np.zeros(168))
                else:
                    by = quotas if variant == "pooled, by supply" else scales
                    half = _half_widths(frame.filter(pl.col("cutoff") + SPAN <= origin),
                                        variant=variant, target=series_id, level=level,
                                        scales={**by, "origin": by[origin]})  # fmt: skip
                    band = (-half, half, np.zeros(168))
                figures[f"coverage_{level}"], figures[f"winkler_{level}"], error = _score_band(
                    value, point, band, level
                )
                if variant == SHAPED_VARIANTS[0] and level == 95:
                    lower, upper, shift = band
                    shipped_hits[(series_id, origin)] = (
                        value >= np.clip(point + shift + lower, 0.0, None)
                    ) & (value <= point + shift + upper)
            figures["relative_mase"] = error / naive_error[(series_id, origin)]
            rows.append({"origin": origin, "id": series_id, "variant": variant, **figures})
    study = pl.DataFrame(rows)
    variants = [*SHAPED_VARIANTS, *FLAT_VARIANTS]
    print("\n| variant | test origin | rel. MASE | cov. 80 pooled | cov. 95 pooled | cov. 95 per "
          "series | Winkler 80 | Winkler 95 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    earlier = pl.col("origin") < origins[-1]
    for variant in variants:
        every = study.filter(pl.col("variant") == variant)
        for origin in origins:
            frame = every.filter(pl.col("origin") == origin).sort("id")
            print(
                f"| {variant} | {origin:%m-%d} | "
                f"{np.exp(np.log(frame['relative_mase']).mean()):.3f} | "
                f"{frame['coverage_80'].mean():.3f} | {frame['coverage_95'].mean():.3f} | "
                f"{', '.join(f'{c:.3f}' for c in frame['coverage_95'])} | "
                f"{frame['winkler_80'].mean():.1f} | {frame['winkler_95'].mean():.1f} |"
            )
        for label, part in (("earlier three", every.filter(earlier)), ("all four", every)):
            inside = part.filter(pl.col("coverage_95").is_between(0.92, 0.98)).height
            print(
                f"| {variant} | {label} | | {part['coverage_80'].mean():.3f} | "
                f"{part['coverage_95'].mean():.3f} | {inside} of {part.height} in 0.92-0.98 | "
                f"{part['winkler_80'].mean():.1f} | {part['winkler_95'].mean():.1f} |"
            )
    ids = sorted(study["id"].unique())

    def chosen(among: list[str]) -> str:
        def key(variant: str) -> tuple[bool, float, int]:
            part = study.filter(
                (pl.col("variant") == variant) & pl.col("id").is_in(among) & earlier
            )
            coverage = as_float(part["coverage_95"].mean(), what="coverage")
            winkler = as_float(part["winkler_95"].mean(), what="Winkler score")
            return (not 0.92 <= coverage <= 0.98, winkler, variants.index(variant))

        return min(variants, key=key)

    print(f"\nchosen on the three earlier weeks, every cluster: {chosen(ids)}")
    for held_out in ids:
        print(f"chosen on the earlier weeks of the other clusters, for {held_out}: "
              f"{chosen([i for i in ids if i != held_out])}")  # fmt: skip
    _hindsight_oracle(at_origin, origins)
    _coverage_noise(shipped_hits)


def _run_lengths(flags: np.ndarray) -> list[int]:
    """Lengths of the runs of consecutive True values."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist()


def _coverage_noise(
    hits: dict[tuple[str, dt.datetime], np.ndarray], *, draws: int = 100_000
) -> None:
    """How far one series-week's 95 % coverage strays by chance alone. The shipped band's
    misses come in runs of consecutive hours (a surge is missed for hours at a time), so a
    week of 168 hours holds only a few independent misses. Per series-week: the hours missed,
    the runs they form, and a day-block bootstrap 95 % interval of the week's coverage (its 7
    days drawn with replacement). Then a band that is exactly calibrated, missing 5 % of hours
    on average, with its misses in runs drawn from the lengths seen here (a run starts in any
    hour with probability 5 % / mean run length; a run that would pass the week's end is cut
    there): the share of its weeks whose coverage lands in 0.92-0.98, and of 12 such weeks
    how many, on average."""
    rng = np.random.default_rng(0)
    print("\n| shipped band, 95 % | week | coverage | hours missed | miss runs (longest) | "
          "day-block bootstrap 95 % interval |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    lengths: list[int] = []
    for (series, origin), covered in sorted(hits.items()):
        runs = _run_lengths(~covered)
        lengths += runs
        days = covered.reshape(7, 24).mean(axis=1)
        resampled = days[rng.integers(0, 7, size=(draws, 7))].mean(axis=1)
        low, high = np.quantile(resampled, [0.025, 0.975])
        print(f"| {series} | {origin:%m-%d} | {covered.mean():.3f} | {int((~covered).sum())} | "
              f"{len(runs)} ({max(runs, default=0)}) | {low:.3f}-{high:.3f} |")  # fmt: skip
    if not lengths:
        return
    observed = np.array(lengths)
    # Overlapping and cut runs miss a little less than rate x length: one correction to 5 %.
    rate = 0.05 / observed.mean()
    coverage = _simulated_coverage(observed, rate=rate, rng=rng, draws=draws)
    rate *= 0.05 / (1.0 - coverage.mean())
    coverage = _simulated_coverage(observed, rate=rate, rng=rng, draws=draws)
    inside = float(np.mean((coverage >= 0.92) & (coverage <= 0.98)))
    print(f"\nmiss runs pooled over the {len(hits)} series-weeks: {observed.size}, mean "
          f"{observed.mean():.1f} h, median {np.median(observed):.0f} h, "
          f"longest {observed.max()} h")  # fmt: skip
    print(f"an exactly calibrated band with such runs: mean coverage {coverage.mean():.3f}; "
          f"{inside:.2f} of its series-weeks in 0.92-0.98 (of 12: {12 * inside:.1f} expected; "
          f"5-95 % of weeks between {np.quantile(coverage, 0.05):.3f} and "
          f"{np.quantile(coverage, 0.95):.3f})")  # fmt: skip


def _hindsight_oracle(
    at_origin: dict[dt.datetime, dict[str, dict[dt.datetime, np.ndarray]]],
    origins: list[dt.datetime],
) -> None:
    """How many series-weeks a band fixed per series can put in 0.92-0.98 at all: the shipped
    shape, its level chosen in hindsight on the series' test weeks themselves (95 % of their
    pooled hours covered). The shipped band sets its level from the 4 windows before each
    origin instead; the gap between the two is what the past weeks did not tell."""
    print("\n| hindsight oracle: one band per series, set on its test weeks | 95 % per week |")
    print("|---|---|")
    inside = total = 0
    for series in sorted(at_origin[origins[-1]]):
        # The shape from the last origin's rule; each test week's errors under its own rule.
        own = at_origin[origins[-1]][series]
        every = np.array([own[c] for c in sorted(own)])
        scale = _growth(every)
        scores = np.abs(np.array([at_origin[o][series][o] for o in origins])) / scale
        covered = (scores <= conformal_quantile(scores.ravel(), level=95)).mean(axis=1)
        inside += int(((covered >= 0.92) & (covered <= 0.98)).sum())
        total += covered.size
        print(f"| {series} | {', '.join(f'{c:.3f}' for c in covered)} |")
    print(f"| series-weeks in 0.92-0.98 | {inside} of {total} |")


def _simulated_coverage(
    lengths: np.ndarray, *, rate: float, rng: np.random.Generator, draws: int, hours: int = 168
) -> np.ndarray:
    """Coverage of `draws` weeks whose misses are runs starting in each hour with probability
    `rate`, of lengths drawn from `lengths`, cut at the week's end."""
    starts = rng.random((draws, hours)) < rate
    run = lengths[rng.integers(0, lengths.size, size=(draws, hours))]
    missed = np.zeros((draws, hours), dtype=bool)
    span = np.arange(hours)[None, :]
    for hour in range(hours):
        begins = starts[:, hour]
        if begins.any():
            missed[begins] |= (span >= hour) & (span < hour + run[begins, hour][:, None])
    return 1.0 - missed.mean(axis=1)


def _aci_half_widths(
    frame: pl.DataFrame, *, target: str, origin: dt.datetime, level: int, cutoffs: list
) -> np.ndarray:
    """Gibbs & Candes (2021): alpha_{t+1} = alpha_t + gamma (alpha - err_t), one step per ended
    week of the series (err_t its share of missed hours), the band the split-conformal
    quantile of the 4 latest ended origins at level 1 - alpha_t."""
    gamma, target_alpha = 0.005, 1 - level / 100
    own = frame.filter(pl.col("id") == target)

    def half_width(at: dt.datetime, alpha: float) -> float:
        ended = own.filter(pl.col("cutoff") + SPAN <= at)
        ended = _latest(ended, 4)
        residuals = ended["residual"].to_numpy()
        if alpha <= 0:
            return float(np.abs(residuals).max()) if residuals.size else float("nan")
        return conformal_quantile(residuals, level=100 * (1 - min(alpha, 1.0)))

    alpha = target_alpha
    for cutoff in [c for c in cutoffs if c + SPAN <= origin]:
        q = half_width(cutoff, alpha)
        if np.isfinite(q):
            errors = own.filter(pl.col("cutoff") == cutoff)["residual"].abs().to_numpy()
            alpha += gamma * (target_alpha - float(np.mean(errors > q)))
    return np.full(168, half_width(origin, alpha))


def hierarchy_study(
    usage: pl.DataFrame,
    history: pl.DataFrame,
    *,
    test_origins: int,
    calibration_windows: int,
    cache: Path | None,
) -> None:
    """Reconciliation on the Helios hierarchy: the cluster (earth, here the sum of the three
    virtual clusters with per-minute traces) over its virtual clusters.

    Every node is forecast by the shipped rule (the mean of the candidates), backtested at the
    same 15 daily origins. Compared on the test origins, per level: the base forecasts
    (incoherent), bottom-up, and MinTrace with OLS, structural (wls_struct) and shrunk-covariance
    (mint_shrink) weights, W from the base errors of origins whose horizon had ended; bands are
    split conformal on each node's own (reconciled) errors at its 4 latest ended origins. For the
    cluster also "sum of series bands": the cluster's band as the sum of its virtual clusters'
    bounds, what the procurement plan did before reconciliation.
    """
    from annotation_pipelines.forecasting.candidates import BASELINE
    from annotation_pipelines.forecasting.ensemble import DEFAULT_RULE, calibrated_backtest
    from annotation_pipelines.forecasting.hierarchy import (
        METHODS,
        aggregate_history,
        build_hierarchy,
        reconciled_backtest,
    )
    from annotation_pipelines.forecasting.planning import series_profiles

    profiles = series_profiles(usage)
    hierarchy = build_hierarchy(profiles, levels=["cluster"], total="total")
    nodes = naive_utc(aggregate_history(history, hierarchy))
    named = zip(hierarchy.nodes, hierarchy.levels, strict=True)
    print(f"hierarchy: {', '.join(f'{n} ({lv})' for n, lv in named)}")
    models = candidate_names(season_length=24)
    start = time.perf_counter()
    if cache is not None and cache.exists():
        cross_validation = pl.read_parquet(cache)
    else:
        cross_validation = candidate_cross_validation(
            nodes, horizon=168, season_length=24, freq="1h", windows=15, step=24, models=models,
        )  # fmt: skip
        if cache is not None:
            cross_validation.write_parquet(cache)
    print(f"backtest of {len(models)} candidates x 15 origins x {len(hierarchy.nodes)} nodes: "
          f"{time.perf_counter() - start:.1f} s; load average {os.getloadavg()}")  # fmt: skip
    scores = window_mase(cross_validation, nodes, models=models, season_length=24)
    ruled = apply_rule(cross_validation, rule=DEFAULT_RULE, models=models, window_scores=scores,
                       horizon_span=SPAN)  # fmt: skip
    naive = cross_validation.select("id", "time", "cutoff", BASELINE)
    start = time.perf_counter()
    results = {"base": calibrated_backtest(ruled, horizon_span=SPAN,
                                           calibration_windows=calibration_windows)}  # fmt: skip
    for method in METHODS:
        results[method] = reconciled_backtest(ruled, hierarchy, horizon_span=SPAN,
                                              calibration_windows=calibration_windows,
                                              method=method)  # fmt: skip
    bottom = list(hierarchy.bottom)
    summed = (
        results["base"]
        .filter(pl.col("id").is_in(bottom))
        .group_by("time", "cutoff")
        .agg(pl.col("value", "forecast", "lo_80", "hi_80", "lo_95", "hi_95").sum())
        .with_columns(pl.lit(hierarchy.aggregates[0]).alias("id"))
    )
    results["sum of series bands"] = summed
    print(f"reconciliation and calibration of {len(results)} variants: "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    cutoffs = cross_validation["cutoff"].unique().sort().to_list()
    tests = cutoffs[-test_origins:]
    level_of = dict(zip(hierarchy.nodes, hierarchy.levels, strict=True))
    rows = []
    for variant, frame in results.items():
        scored = (
            frame.filter(pl.col("cutoff").is_in(tests))
            .join(naive, on=["id", "time", "cutoff"])
            .with_columns(pl.col("lo_80", "lo_95").clip(lower_bound=0.0))
        )
        for (series_id, cutoff), points in scored.group_by("id", "cutoff"):
            figures = points.select(score_points(points)).row(0, named=True)
            error = (points["value"] - points["forecast"]).abs().sum()
            base_error = (points["value"] - points[BASELINE]).abs().sum()
            rows.append({"variant": variant, "id": series_id, "level": level_of[series_id],
                         "origin": cutoff, "relative_mase": error / base_error,
                         **figures})  # fmt: skip
    study = pl.DataFrame(rows)
    coherence = max(
        float(np.abs(hierarchy.summing @ m[len(hierarchy.aggregates) :] - m).max())
        for variant in METHODS
        for m in [_node_matrix(results[variant], hierarchy)]
    )
    print(f"largest incoherence of the reconciled forecasts (GPUs): {coherence:.2e}")
    print("\n| level | variant | test origin | rel. MASE | cov. 80 | cov. 95 | Winkler 80 | "
          "Winkler 95 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    order = ["base", *METHODS, "sum of series bands"]
    for level in ("cluster", "series"):
        for variant in order:
            frame = study.filter((pl.col("level") == level) & (pl.col("variant") == variant))
            if frame.height == 0:
                continue
            for origin in [*tests, None]:
                part = frame if origin is None else frame.filter(pl.col("origin") == origin)
                label = "all four" if origin is None else f"{origin:%m-%d}"
                ratios = part["relative_mase"].to_numpy()
                print(
                    f"| {level} | {variant} | {label} | {np.exp(np.mean(np.log(ratios))):.3f} | "
                    f"{part['coverage_80'].mean():.3f} | {part['coverage_95'].mean():.3f} | "
                    f"{part['winkler_80'].mean():.1f} | {part['winkler_95'].mean():.1f} |"
                )
    per_series = study.filter(pl.col("level") == "series").sort("variant", "origin", "id")
    print("\nper series, 95% coverage (vc3sl, vc6YE, vcMod order):")
    for (variant, origin), part in per_series.group_by("variant", "origin", maintain_order=True):
        print(f"  {variant:>20} {origin:%m-%d}: "
              f"{', '.join(f'{c:.3f}' for c in part.sort('id')['coverage_95'])}")  # fmt: skip


def _node_matrix(frame: pl.DataFrame, hierarchy) -> np.ndarray:  # type: ignore[no-untyped-def]
    """[nodes, points] of the reconciled forecasts, every origin side by side."""
    wide = frame.pivot(on="id", index=["cutoff", "time"], values="forecast").sort("cutoff", "time")
    return wide.select(list(hierarchy.nodes)).to_numpy().T


def _fleet(count: int, *, seed: int = 0) -> tuple[tuple[str, str, int, float, float], ...]:
    """(cluster, team, supply, utilization, weekly growth) of each synthetic series."""
    rng = np.random.default_rng(seed)
    return tuple(
        (f"cluster{k % 10}", f"team{k:03d}", int(rng.choice([64, 128, 256])),
         float(rng.uniform(0.4, 0.8)), float(rng.uniform(-0.002, 0.03)))
        for k in range(count)
    )  # fmt: skip


def _synthetic_usage(count: int, *, seed: int = 0) -> pl.DataFrame:
    from annotation_pipelines.synthetic import generate_compute_usage

    return generate_compute_usage(
        end=dt.date(2026, 11, 28), days=730, step_minutes=360, seed=seed,
        series=_fleet(count, seed=seed),
    )  # fmt: skip


def scale_hierarchy(
    count: int,
    *,
    horizon_days: int = 182,
    windows: int = 2,
    level_scaled: bool = False,
    spread_scaled: bool = True,
    seed: int = 0,
) -> None:
    """Months ahead, per cluster: is the cluster's P90 band right when it is the cluster's own
    (reconciled, `planning` default) or the sum of its series' P90s (before)? The same synthetic
    fleet as `--scale`, the same rolling origins as `scenario_backtest`; per cluster and window
    the share of days at or below each P90 (calibrated: 0.9) and at or below P50, and the
    P50's MAE over the weekly naive's."""
    from functools import partial

    from annotation_pipelines.forecasting.hierarchy import aggregate_history, build_hierarchy
    from annotation_pipelines.forecasting.planning import HIERARCHY_LEVELS
    from annotation_pipelines.forecasting.procurement import series_profiles
    from annotation_pipelines.forecasting.scenarios import (
        _head_before,
        _slice_from,
        reconciled_scenarios,
    )

    usage = _synthetic_usage(count, seed=seed)
    daily = to_series(usage, freq="1d").with_columns(pl.col("time").cast(pl.Date))
    hierarchy = build_hierarchy(series_profiles(usage), levels=list(HIERARCHY_LEVELS))
    clusters = [n for n in hierarchy.aggregates if hierarchy.level_of(n) == "cluster"]
    print(f"{count} series, {len(hierarchy.nodes)} nodes ({len(clusters)} clusters); "
          f"load average {os.getloadavg()}")  # fmt: skip
    # CPU seconds (every thread of this process) beside the wall: other jobs share the cores.
    start, cpu = time.perf_counter(), time.process_time()
    options = {"level_scaled": level_scaled, "spread_scaled": spread_scaled}
    reconciled_scenarios(daily, hierarchy, horizon_days=horizon_days, **options)
    print(f"26-week reconciled bands of every node from the whole history: "
          f"{time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU; "
          f"load average {os.getloadavg()}")  # fmt: skip
    rows = []
    seconds = cpu_seconds = 0.0
    for window in range(windows, 0, -1):
        back = window * horizon_days
        ordered = daily.sort("id", "time").group_by("id", maintain_order=True)
        train = ordered.map_groups(partial(_head_before, days_back=back))
        test = (
            daily.sort("id", "time")
            .group_by("id", maintain_order=True)
            .map_groups(partial(_slice_from, days_back=back, length=horizon_days))
        )
        start, cpu = time.perf_counter(), time.process_time()
        scenarios = reconciled_scenarios(train, hierarchy, horizon_days=horizon_days, **options)
        seconds += time.perf_counter() - start
        cpu_seconds += time.process_time() - cpu
        actual = aggregate_history(test, hierarchy)
        past = aggregate_history(train, hierarchy)
        for node in hierarchy.nodes:
            level = hierarchy.level_of(node)
            if level not in ("cluster", "series"):
                continue
            values = actual.filter(pl.col("id") == node).sort("time")["value"].to_numpy()
            history = past.filter(pl.col("id") == node).sort("time")["value"].to_numpy()
            naive = np.resize(history[-7:], horizon_days)
            band = scenarios.paths[node].bands
            row = {
                "window": window, "node": node, "level": level,
                "own_p90": float(np.mean(values <= band["p90"])),
                "own_p50": float(np.mean(values <= band["p50"])),
                "relative_mae": float(np.mean(np.abs(values - band["p50"]))
                                      / max(np.mean(np.abs(values - naive)), 1e-9)),
            }  # fmt: skip
            if level == "cluster":
                members = [b for b in hierarchy.bottom if hierarchy.summing[
                    hierarchy.nodes.index(node), hierarchy.bottom.index(b)]]  # fmt: skip
                summed = sum(scenarios.paths[m].bands["p90"] for m in members)
                row["summed_p90"] = float(np.mean(values <= summed))
                row["p90_ratio"] = float(np.mean(summed / np.maximum(band["p90"], 1e-9)))
            rows.append(row)
    table = pl.DataFrame(rows)
    print(f"reconciled 26-week bands of every node, {windows} windows: {seconds:.1f} s wall, "
          f"{cpu_seconds:.1f} s CPU; load average {os.getloadavg()}")  # fmt: skip
    for level in ("cluster", "series"):
        part = table.filter(pl.col("level") == level)
        ratios = part["relative_mae"].to_numpy()
        line = (f"{level}: {part.height} node-windows; P50 MAE / weekly-naive MAE (geo. mean) "
                f"{np.exp(np.mean(np.log(ratios[ratios > 0]))):.3f}; share <= own P90 "
                f"{part['own_p90'].mean():.3f}; <= own P50 "
                f"{part['own_p50'].mean():.3f}")  # fmt: skip
        if level == "cluster":
            line += (f"; share <= sum of series P90s {part['summed_p90'].mean():.3f}; "
                     f"sum of P90s / own P90 {part['p90_ratio'].mean():.3f}")  # fmt: skip
        print(line)


def scale(
    count: int, *, level_scaled: bool = False, spread_scaled: bool = True, seed: int = 0
) -> None:
    from annotation_pipelines.forecasting.scenarios import scenario_backtest, scenario_forecast

    usage = _synthetic_usage(count, seed=seed)
    daily = to_series(usage, freq="1d")
    options = {"level_scaled": level_scaled, "spread_scaled": spread_scaled}
    print(f"{count} series x {daily.height // count} days; load average {os.getloadavg()}")
    start, cpu = time.perf_counter(), time.process_time()
    bands, weekly = scenario_forecast(daily, horizon_days=182, **options)
    forecast_seconds = time.perf_counter() - start
    middle = time.perf_counter()
    backtest = scenario_backtest(daily, horizon_days=182, windows=2, **options)
    backtest_seconds = time.perf_counter() - middle
    ratios = backtest["relative_mae"].to_numpy()
    print(
        f"26-week forecast with calibrated bands: {forecast_seconds:.1f} s; "
        f"2-window 26-week backtest: {backtest_seconds:.1f} s; total "
        f"{forecast_seconds + backtest_seconds:.1f} s wall, {time.process_time() - cpu:.1f} s CPU; "
        f"load average after {os.getloadavg()}"
    )
    print(
        f"backtest: P50 MAE / weekly-naive MAE (geometric mean) "
        f"{np.exp(np.mean(np.log(ratios[ratios > 0]))):.3f}; share of days <= P90 "
        f"{backtest['share_below_p90'].mean():.3f}; <= P50 {backtest['share_below_p50'].mean():.3f}"
    )
    del bands, weekly


def spread_check(count: int, *, seed: int, horizon_days: int = 182, windows: int = 2) -> None:
    """The `--scale` backtest of the months-ahead bands with the P90 spread at today's level
    and without, from one fit per series and window (the P50 is the same by construction):
    P50 MAE over the weekly naive's, shares of days at or below P90 and P50, and the P90 share
    by the series' weekly growth rate."""
    from functools import partial

    from annotation_pipelines.forecasting.scenarios import (
        _head_before,
        _point_and_errors,
        _slice_from,
        level_ratios,
        origin_levels,
        paths_from_errors,
    )

    usage = _synthetic_usage(count, seed=seed)
    rate_of = {team: growth for _, team, _, _, growth in _fleet(count, seed=seed)}
    daily = to_series(usage, freq="1d")
    print(f"{count} series (seed {seed}); load average {os.getloadavg()}")
    start = time.perf_counter()
    rows = []
    for window in range(windows, 0, -1):
        back = window * horizon_days
        ordered = daily.sort("id", "time").group_by("id", maintain_order=True)
        train = ordered.map_groups(partial(_head_before, days_back=back))
        test = ordered.map_groups(partial(_slice_from, days_back=back, length=horizon_days))
        for (series_id,), frame in train.group_by("id", maintain_order=True):
            days = frame.get_column("time").cast(pl.Date).to_list()
            values = frame.get_column("value").cast(pl.Float64).to_numpy()
            points, all_errors = _point_and_errors(values[None, :], days,
                                                   horizon_days=horizon_days,
                                                   changepoint_every=28, ridge=50.0,
                                                   damping=0.99, origin_step=7)  # fmt: skip
            point, errors = points[0], all_errors[0]
            first = days[-1] + dt.timedelta(days=1)
            ratios = level_ratios(*origin_levels(values, changepoint_every=28, origin_step=7))
            actual = test.filter(pl.col("id") == series_id).get_column("value").to_numpy()
            naive_error = max(float(np.mean(np.abs(actual - np.resize(values[-7:], horizon_days)))),
                              1e-9)  # fmt: skip
            for variant, r in (("fixed spread", None), ("spread at today's level", ratios)):
                band = paths_from_errors(point, errors, first=first, ratios=r).bands
                rows.append({"variant": variant, "id": series_id, "window": window,
                             "relative_mae": float(np.mean(np.abs(actual - band["p50"])))
                             / naive_error,
                             "p90": float(np.mean(actual <= band["p90"])),
                             "p50": float(np.mean(actual <= band["p50"]))})  # fmt: skip
    table = pl.DataFrame(rows)
    print(f"{windows}-window 26-week backtest, both variants: {time.perf_counter() - start:.1f} s;"
          f" load average {os.getloadavg()}")  # fmt: skip
    table = table.with_columns(
        pl.col("id").replace_strict(rate_of, default=None, return_dtype=pl.Float64)
        .alias("weekly_growth")
    )  # fmt: skip
    for (variant,), part in table.group_by("variant", maintain_order=True):
        ratios = part["relative_mae"].to_numpy()
        print(f"{variant}: P50 MAE / weekly-naive MAE (geo. mean) "
              f"{np.exp(np.mean(np.log(ratios[ratios > 0]))):.3f}; share <= P90 "
              f"{part['p90'].mean():.3f}; <= P50 {part['p50'].mean():.3f}")  # fmt: skip
        bins = part.with_columns(
            pl.col("weekly_growth").cut([0.005, 0.01, 0.02], labels=["<=0.5%", "0.5-1%", "1-2%",
                                                                      ">2%"]).alias("growth")
        ).group_by("growth").agg(pl.col("p90").mean(), pl.len()).sort("growth")  # fmt: skip
        print("   P90 share by weekly growth: " + "; ".join(
            f"{g} {p:.3f} (n={n})" for g, p, n in bins.iter_rows()))  # fmt: skip


def young_check(
    count: int,
    *,
    young: int,
    young_days: int,
    seed: int,
    hierarchy: bool,
    horizon_days: int = 182,
    windows: int = 2,
) -> None:
    """The `--scale` rolling-origin backtest with `young` series cut to their last `young_days`
    days before each origin (joined then): per variant (spread pooled from the series' peer
    group, from the whole fleet, or none), the share of test days at or below P90 of the young
    series and of the others, the P90's mean distance above the P50 over the young series'
    level, and the CPU time of the bands."""
    from functools import partial

    from annotation_pipelines.forecasting.hierarchy import build_hierarchy
    from annotation_pipelines.forecasting.planning import HIERARCHY_LEVELS, peer_groups
    from annotation_pipelines.forecasting.procurement import series_profiles
    from annotation_pipelines.forecasting.scenarios import (
        _head_before,
        _slice_from,
        reconciled_scenarios,
        scenario_paths,
    )

    usage = _synthetic_usage(count, seed=seed)
    daily = to_series(usage, freq="1d").with_columns(pl.col("time").cast(pl.Date))
    ids = sorted(daily.get_column("id").unique().to_list())
    joined = set(ids[:: max(1, len(ids) // young)][:young])
    profiles = series_profiles(usage)
    peers = peer_groups(profiles)
    tree = build_hierarchy(profiles, levels=list(HIERARCHY_LEVELS)) if hierarchy else None
    path = "reconciled" if hierarchy else "series"
    print(f"{count} series (seed {seed}), {len(joined)} of them joined {young_days} days before "
          f"each origin; {path} path; load average {os.getloadavg()}")  # fmt: skip
    variants = {"pooled by peer group": {"peers": peers}, "pooled from the fleet": {},
                "none": {"pool_spreads": False}}  # fmt: skip
    rows = []
    cpu_of = dict.fromkeys(variants, 0.0)
    for window in range(windows, 0, -1):
        back = window * horizon_days
        ordered = daily.sort("id", "time").group_by("id", maintain_order=True)
        train = ordered.map_groups(partial(_head_before, days_back=back))
        train = train.filter(
            ~pl.col("id").is_in(list(joined))
            | (pl.col("time") > pl.col("time").max() - dt.timedelta(days=young_days))
        )
        test = ordered.map_groups(partial(_slice_from, days_back=back, length=horizon_days))
        tests = {k[0]: f.sort("time")["value"].to_numpy()
                 for k, f in test.partition_by("id", as_dict=True).items()}  # fmt: skip
        levels = dict(train.sort("time").group_by("id").agg(pl.col("value").tail(28).mean())
                      .iter_rows())  # fmt: skip
        for variant, options in variants.items():
            cpu = time.process_time()
            if tree is None:
                bands = scenario_paths(train, horizon_days=horizon_days, **options)
            else:
                bands = reconciled_scenarios(train, tree, horizon_days=horizon_days,
                                             **options).paths  # fmt: skip
            cpu_of[variant] += time.process_time() - cpu
            for series_id in ids:
                band = bands[series_id].bands
                rows.append({"variant": variant, "window": window, "young": series_id in joined,
                             "source": bands[series_id].spread_source,
                             "p90": float(np.mean(tests[series_id] <= band["p90"])),
                             "p50": float(np.mean(tests[series_id] <= band["p50"])),
                             "relative_spread": float(np.mean(band["p90"] - band["p50"]))
                             / max(levels[series_id], 1.0)})  # fmt: skip
    table = pl.DataFrame(rows)
    for variant in variants:
        part = table.filter(pl.col("variant") == variant)
        for is_young, label in ((True, "young"), (False, "others")):
            group = part.filter(pl.col("young") == is_young)
            sources = ", ".join(sorted(set(group["source"])))
            print(f"{variant}: {label} {group.height} series-windows ({sources}): share <= P90 "
                  f"{group['p90'].mean():.3f}; <= P50 {group['p50'].mean():.3f}; mean P90 "
                  f"spread / level {group['relative_spread'].mean():.3f}")  # fmt: skip
        print(f"   bands of {windows} windows: {cpu_of[variant]:.1f} s CPU")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
