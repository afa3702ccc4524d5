"""Helios quality bar and timing: our backtest + forecast beside statsforecast's cross-validation.

    .venv/bin/python benchmarks/bench_forecasting.py [--horizon 168] [--windows 3] [--freq 1h]

Prints the per-series table (chosen model, held-out MASE, seasonal naive MASE, relative MASE,
80/95% coverage), the geometric-mean relative MASE and pooled coverage, then the wall time and
peak memory of (a) our `forecast` (backtest of every candidate + refit) and (b) a bare
`StatsForecast.cross_validation` of the same candidates, which is the floor we build on.
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
from annotation_pipelines.forecasting.models import candidate_models, default_extra_seasonalities
from tests.realdata import CAPACITY_DIR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--horizon", type=int, default=168)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--season-length", type=int, default=24)
    parser.add_argument("--freq", default="1h")
    parser.add_argument("--series", default="vc3sl,vc6YE,vcMod")
    args = parser.parse_args()
    usage = pl.concat(
        [load_helios(CAPACITY_DIR / f"helios_earth_{vc}.csv") for vc in args.series.split(",")]
    )
    series = to_series(usage, freq=args.freq)
    import statsforecast  # noqa: F401  (numba compilation at import is not the engine's cost)

    tracemalloc.start()
    start = time.perf_counter()
    result = forecast(
        series,
        horizon=args.horizon,
        season_length=args.season_length,
        freq=args.freq,
        backtest_windows=args.windows,
    )
    ours = time.perf_counter() - start
    _, ours_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    from statsforecast import StatsForecast

    factories = candidate_models(
        season_length=args.season_length,
        horizon=args.horizon,
        extra_seasonalities=default_extra_seasonalities(args.season_length),
    )
    tracemalloc.start()
    start = time.perf_counter()
    StatsForecast(
        models=[f() for f in factories.values()], freq=args.freq, n_jobs=1
    ).cross_validation(
        df=series.rename({"id": "unique_id", "time": "ds", "value": "y"}).with_columns(
            pl.col("ds").dt.replace_time_zone(None)
        ),
        h=args.horizon,
        n_windows=args.windows,
        step_size=args.horizon,
        level=[80, 95],
    )
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


if __name__ == "__main__":
    main()
