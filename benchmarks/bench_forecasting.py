"""Helios quality bar and timing: our backtest + forecast beside statsforecast's cross-validation.

    .venv/bin/python benchmarks/bench_forecasting.py [--horizon 168] [--windows 3] [--freq 1h]
        [--combine 3] [--splits]

Prints the per-series table (chosen model, held-out MASE, seasonal naive MASE, relative MASE,
80/95% coverage), the geometric-mean relative MASE and pooled coverage, then the wall time and
peak memory of (a) our `forecast` (backtest of every candidate + choice + refit) and (b) a bare
`StatsForecast.cross_validation` of the same candidates, which is the floor we build on. Both
sides are warmed up first on a two-day slice (numba compiles each model on first use), so the
ratio compares steady-state work, not who paid the compilation.

`--splits` also scores the choice rules (single best vs the mean of the top 2 / 3) on several
ways of splitting the same month into selection and evaluation windows, from one daily-step
cross-validation; the choice always uses only windows whose horizon ends before the evaluated
origin.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.forecasting import (
    forecast,
    load_helios,
    pooled_coverage,
    relative_mase,
    to_series,
)
from annotation_pipelines.forecasting.candidates import (
    candidate_models,
    default_extra_seasonalities,
)
from tests.realdata import CAPACITY_DIR

SPLIT_STEP = 24


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--horizon", type=int, default=168)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--season-length", type=int, default=24)
    parser.add_argument("--freq", default="1h")
    parser.add_argument("--series", default="vc3sl,vc6YE,vcMod")
    parser.add_argument("--combine", type=int, default=3)
    parser.add_argument("--splits", action="store_true")
    args = parser.parse_args()
    usage = pl.concat(
        [load_helios(CAPACITY_DIR / f"helios_earth_{vc}.csv") for vc in args.series.split(",")]
    )
    series = to_series(usage, freq=args.freq)
    import statsforecast  # noqa: F401  (numba compilation at import is not the engine's cost)
    from statsforecast import StatsForecast

    factories = candidate_models(
        season_length=args.season_length,
        horizon=args.horizon,
        extra_seasonalities=default_extra_seasonalities(args.season_length),
    )

    def reference_cv(frame: pl.DataFrame, *, horizon: int, windows: int, step: int):
        return StatsForecast(
            models=[f() for f in factories.values()], freq=args.freq, n_jobs=1
        ).cross_validation(
            df=frame.rename({"id": "unique_id", "time": "ds", "value": "y"}).with_columns(
                pl.col("ds").dt.replace_time_zone(None)
            ),
            h=horizon,
            n_windows=windows,
            step_size=step,
            level=[80, 95],
        )

    # Warm-up: compile every candidate on a small slice, for both sides, before any timing.
    warm = series.group_by("id", maintain_order=True).tail(24 * 14)
    start = time.perf_counter()
    forecast(warm, horizon=24, season_length=args.season_length, freq=args.freq,
             backtest_windows=2, combine=args.combine)  # fmt: skip
    reference_cv(warm, horizon=24, windows=2, step=24)
    print(f"warm-up (both sides, compiles numba) {time.perf_counter() - start:.1f} s")

    tracemalloc.start()
    start = time.perf_counter()
    result = forecast(
        series,
        horizon=args.horizon,
        season_length=args.season_length,
        freq=args.freq,
        backtest_windows=args.windows,
        combine=args.combine,
    )
    ours = time.perf_counter() - start
    _, ours_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    tracemalloc.start()
    start = time.perf_counter()
    reference_cv(series, horizon=args.horizon, windows=args.windows, step=args.horizon)
    reference = time.perf_counter() - start
    _, reference_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(
        "| series | chosen model | MASE | seasonal naive MASE | relative "
        "| coverage 80 | coverage 95 |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in result.scores.iter_rows(named=True):
        print(
            f"| {row['id']} | {row['model']} | {row['mase']:.3f} | "
            f"{row['seasonal_naive_mase']:.3f} | "
            f"{row['relative_mase']:.3f} | {row['coverage_80']:.3f} | {row['coverage_95']:.3f} |"
        )
    coverage_80 = pooled_coverage(result.backtest, level=80)
    coverage_95 = pooled_coverage(result.backtest, level=95)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nrelative MASE (geometric mean) {relative_mase(result.scores):.4f}; "
        f"pooled held-out coverage 80% {coverage_80:.4f}, 95% {coverage_95:.4f}"
    )
    print(
        f"ours (backtest + choice + refit) {ours:.2f} s, peak traced {ours_peak / 2**20:.1f} MiB; "
        f"statsforecast cross_validation alone {reference:.2f} s, "
        f"peak traced {reference_peak / 2**20:.1f} MiB; ratio {ours / reference:.2f}x; "
        f"process max RSS {rss:.0f} MiB"
    )
    if args.splits:
        # Daily-step origins from day 10 (the first weekly origin) to the last full horizon.
        shortest = series.group_by("id").len().get_column("len").min()
        count = (shortest - args.horizon - 10 * SPLIT_STEP) // SPLIT_STEP + 1
        raw = reference_cv(series, horizon=args.horizon, windows=count, step=SPLIT_STEP)
        splits(series, raw, args)


def splits(series: pl.DataFrame, raw, args: argparse.Namespace) -> None:
    """Relative MASE and pooled coverage of each choice rule under several splits."""
    import numpy as np

    cv = pl.DataFrame(raw).rename({"unique_id": "id", "ds": "time", "y": "value"})
    history = series.with_columns(pl.col("time").dt.replace_time_zone(None))
    names = list(candidate_models(
        season_length=args.season_length, horizon=args.horizon,
        extra_seasonalities=default_extra_seasonalities(args.season_length),
    ))  # fmt: skip
    cutoffs = cv.get_column("cutoff").unique().sort().to_list()
    lag = args.horizon // SPLIT_STEP  # origins per horizon: a window ending before an origin
    windows, scale = {}, {}
    for (series_id, cutoff), frame in cv.group_by("id", "cutoff"):
        windows[series_id, cutoff] = frame.sort("time")
        past = history.filter((pl.col("id") == series_id) & (pl.col("time") <= cutoff))
        values = past.get_column("value").to_numpy()
        season = args.season_length
        scale[series_id, cutoff] = np.mean(np.abs(values[season:] - values[:-season]))

    def mae(series_id, cutoff, members, column=""):
        frame = windows[series_id, cutoff]
        predicted = np.mean([frame[f"{m}{column}"].to_numpy() for m in members], axis=0)
        return float(np.mean(np.abs(frame["value"].to_numpy() - predicted)))

    def choose(series_id, selection, k):
        score = {m: np.mean([mae(series_id, c, [m]) / scale[series_id, c] for c in selection])
                 for m in names}  # fmt: skip
        return sorted(names, key=lambda m: (score[m], names.index(m)))[:k]

    configurations = {
        "A: 3 weekly windows, choose on 2, score the last (the issue's bar)": [
            ([cutoffs[0], cutoffs[lag]], [cutoffs[2 * lag]])
        ],
        "B: daily origins, choose on all windows ending before each (8 origins)": [
            ([c for c in cutoffs[: e - lag + 1]], [cutoffs[e]]) for e in range(lag, len(cutoffs))
        ],
        "C: weekly pairs, choose on 1, score the next (8 pairs)": [
            ([cutoffs[k]], [cutoffs[k + lag]]) for k in range(len(cutoffs) - lag)
        ],
        "D: daily origins, choose on the last 2 windows before each (8 origins)": [
            (cutoffs[max(0, e - lag - 1) : e - lag + 1], [cutoffs[e]])
            for e in range(lag, len(cutoffs))
        ],
    }
    print("\n| split | rule | relative MASE | coverage 80 | coverage 95 | per series |")
    print("|---|---|---|---|---|---|")
    ids = sorted({key[0] for key in windows})
    for label, split in configurations.items():
        for k in (1, 2, 3):
            ratios, inside = [], {80: [], 95: []}
            for series_id in ids:
                ours = base = 0.0
                for selection, evaluation in split:
                    members = choose(series_id, selection, k)
                    for cutoff in evaluation:
                        ours += mae(series_id, cutoff, members)
                        base += mae(series_id, cutoff, ["SeasonalNaive"])
                        frame = windows[series_id, cutoff]
                        value = frame["value"].to_numpy()
                        for level in (80, 95):
                            lo = np.mean([frame[f"{m}-lo-{level}"] for m in members], axis=0)
                            hi = np.mean([frame[f"{m}-hi-{level}"] for m in members], axis=0)
                            inside[level].extend(((value >= lo) & (value <= hi)).tolist())
                ratios.append(ours / base)
            rule = "single best" if k == 1 else f"mean of top {k}"
            print(
                f"| {label} | {rule} | {np.exp(np.mean(np.log(ratios))):.4f} | "
                f"{np.mean(inside[80]):.3f} | {np.mean(inside[95]):.3f} | "
                f"{', '.join(f'{r:.3f}' for r in ratios)} |"
            )


if __name__ == "__main__":
    main()
