"""Held-out capacity forecasts: leave-one-cluster-out on the shared Helios virtual clusters.

    .venv/bin/python benchmarks/bench_capacity.py [--test-origins 4] [--calibration-windows 4]
    .venv/bin/python benchmarks/bench_capacity.py --scale 500   # months ahead, 500 series

`--scale N` times the months-ahead path instead: N synthetic series of two years of daily
demand, a 26-week forecast with its backtest-calibrated P50/P90 bands (the model refit at
weekly origins inside each history) plus a two-window 26-week rolling-origin backtest, and
prints the wall time, the load average and the backtest's calibration figures.

Data: Helios traces (Hu et al., "Characterization and Prediction of Deep Learning Workloads in
Large-Scale GPU Datacenters", SC'21), `shared/data/capacity/helios_earth_{vc3sl,vc6YE,vcMod}.csv`;
hourly demand = running + pending GPUs (per-minute samples averaged), 168 h ahead. Every
candidate is backtested at 15 daily origins (2020-05-10 23:00 ... 05-24 23:00); the last
`--test-origins` are test origins in turn (the last one forecasts the month's last week). Side by
side on identical origins, each calibrated the same split-conformal way: the seasonal naive,
statsforecast's best single model and our rule (both chosen leave-one-cluster-out) and the
Helios recipe (LightGBM on calendar and lag features). Prints per series and pooled relative
MASE, 80/95% coverage and Winkler score, the wall times and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.forecasting import load_helios, to_series
from annotation_pipelines.forecasting.ensemble import (
    candidate_cross_validation,
    candidate_names,
)
from annotation_pipelines.forecasting.evaluation import leave_one_cluster_out
from annotation_pipelines.forecasting.statsforecast_adapter import naive_utc
from tests.realdata import CAPACITY_DIR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", default="vc3sl,vc6YE,vcMod")
    parser.add_argument("--test-origins", type=int, default=4)
    parser.add_argument("--calibration-windows", type=int, default=4)
    parser.add_argument("--scale", type=int, default=0)
    args = parser.parse_args()
    if args.scale:
        scale(args.scale)
        return
    usage = pl.concat(
        [load_helios(CAPACITY_DIR / f"helios_earth_{vc}.csv") for vc in args.series.split(",")]
    )
    history = naive_utc(to_series(usage, freq="1h"))
    print(f"load average before: {os.getloadavg()}")
    start = time.perf_counter()
    cross_validation = candidate_cross_validation(
        history, horizon=168, season_length=24, freq="1h", windows=15, step=24,
        models=candidate_names(season_length=24),
    )  # fmt: skip
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


def scale(count: int) -> None:
    import datetime as dt

    from annotation_pipelines.forecasting.scenarios import scenario_backtest, scenario_forecast
    from annotation_pipelines.synthetic import generate_compute_usage

    rng = np.random.default_rng(0)
    series = tuple(
        (f"cluster{k % 10}", f"team{k:03d}", int(rng.choice([64, 128, 256])),
         float(rng.uniform(0.4, 0.8)), float(rng.uniform(-0.002, 0.03)))
        for k in range(count)
    )  # fmt: skip
    usage = generate_compute_usage(
        end=dt.date(2026, 11, 28), days=730, step_minutes=360, seed=0, series=series
    )
    daily = to_series(usage, freq="1d")
    print(f"{count} series x {daily.height // count} days; load average {os.getloadavg()}")
    start = time.perf_counter()
    bands, weekly = scenario_forecast(daily, horizon_days=182)
    forecast_seconds = time.perf_counter() - start
    start = time.perf_counter()
    backtest = scenario_backtest(daily, horizon_days=182, windows=2)
    backtest_seconds = time.perf_counter() - start
    ratios = backtest["relative_mae"].to_numpy()
    print(
        f"26-week forecast with calibrated bands: {forecast_seconds:.1f} s; "
        f"2-window 26-week backtest: {backtest_seconds:.1f} s; total "
        f"{forecast_seconds + backtest_seconds:.1f} s; load average after {os.getloadavg()}"
    )
    print(
        f"backtest: P50 MAE / weekly-naive MAE (geometric mean) "
        f"{np.exp(np.mean(np.log(ratios[ratios > 0]))):.3f}; share of days <= P90 "
        f"{backtest['share_below_p90'].mean():.3f}; <= P50 {backtest['share_below_p50'].mean():.3f}"
    )
    del bands, weekly


if __name__ == "__main__":
    main()
