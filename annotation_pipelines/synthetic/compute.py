"""Synthetic accelerator telemetry in the canonical compute-usage form (schema.COMPUTE_USAGE).

Per series (a team's virtual cluster on a cluster): demand follows a daily cycle (busier in
working hours), a weekly cycle (quieter at weekends), a slow growth trend and bursty noise
(jobs arrive in batches). Running GPUs are demand capped by the series' supply; the excess
queues as pending. Growth means some series reach their supply inside a forecast horizon,
which is what the capacity forecast must see coming.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from annotation_pipelines import schema

# (cluster, series_id, supply in GPUs, base demand share of supply, weekly growth)
DEFAULT_SERIES: tuple[tuple[str, str, int, float, float], ...] = (
    ("earth", "vision-training", 256, 0.70, 0.030),
    ("earth", "llm-inference", 128, 0.55, 0.015),
    ("mars", "speech-training", 64, 0.80, 0.040),
    ("mars", "research", 96, 0.45, 0.005),
)


def generate_compute_usage(
    *,
    end: date,
    days: int = 56,
    step_minutes: int = 5,
    seed: int = 0,
    series: tuple[tuple[str, str, int, float, float], ...] = DEFAULT_SERIES,
) -> pl.DataFrame:
    """Telemetry for the `days` days ending on `end` (inclusive), one row per series per step."""
    start = datetime(end.year, end.month, end.day, tzinfo=UTC) - timedelta(days=days - 1)
    steps = days * 24 * 60 // step_minutes
    minutes = np.arange(steps) * step_minutes
    hour = (minutes / 60.0) % 24
    weekday = ((minutes // (24 * 60)) + start.weekday()) % 7
    frames = []
    for index, (cluster, series_id, supply, base, growth) in enumerate(series):
        rng = np.random.default_rng([seed, index])
        daily = 1 + 0.25 * np.sin((hour - 9) / 24 * 2 * np.pi)
        weekly = np.where(weekday >= 5, 0.7, 1.0)
        trend = 1 + growth * minutes / (7 * 24 * 60)
        # Bursts: an AR(1) process on the log scale, so jobs come and go in batches.
        shocks = rng.normal(0, 0.04, size=steps)
        ar = np.zeros(steps)
        for t in range(1, steps):
            ar[t] = 0.97 * ar[t - 1] + shocks[t]
        demand = np.round(supply * base * daily * weekly * trend * np.exp(ar))
        running = np.minimum(demand, supply)
        frames.append(
            pl.DataFrame(
                {
                    "time": [start + timedelta(minutes=int(m)) for m in minutes],
                    "cluster": cluster,
                    "series_id": series_id,
                    "running": running,
                    "pending": demand - running,
                    "total": np.full(steps, float(supply)),
                }
            )
        )
    return schema.conform(pl.concat(frames), schema.COMPUTE_USAGE, name="compute_usage")
