"""Held-out capacity forecasts: leave-one-cluster-out on the shared Helios virtual clusters.

    .venv/bin/python benchmarks/bench_capacity.py [--test-origins 4] [--calibration-windows 4]

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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
