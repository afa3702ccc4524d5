"""Synthetic accelerator telemetry in the canonical compute-usage form (schema.COMPUTE_USAGE).

Per series (a team's virtual cluster on a cluster): demand follows a daily cycle (busier in
working hours), a weekly cycle (quieter at weekends), a slow growth trend and bursty noise
(jobs arrive in batches). Running GPUs are demand capped by the series' supply; the excess
queues as pending. Growth means some series reach their supply inside a forecast horizon,
which is what the capacity forecast must see coming.

Each series has a workload class and an accelerator type (`SERIES_PROFILE`):

- training: gang-scheduled jobs hold whole 8-GPU nodes, so demand moves in steps of 8 and
  queues when a gang does not fit; the SMs of a running job are busy most of the time
  (0.75-0.95: data loading and checkpoints stall them).
- inference: a strong daily cycle that follows users, and launches that lift demand in a step
  on a random day (bursty); replicas are provisioned for the peak, so the SMs are busy only
  ~25-60% of the allocated time, most at the daily peak: allocation hides idle capacity.
- other (research, notebooks): mild cycles, low SM use.
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


# series_id -> (workload class, accelerator type); unknown series are "other" on "A100".
SERIES_PROFILE: dict[str, tuple[str, str]] = {
    "vision-training": ("training", "H100"),
    "llm-inference": ("inference", "L4"),
    "speech-training": ("training", "A100"),
    "research": ("other", "A100"),
}


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
        workload_class, accelerator_type = SERIES_PROFILE.get(series_id, ("other", "A100"))
        amplitude = {"training": 0.15, "inference": 0.4}.get(workload_class, 0.25)
        cycle = np.sin((hour - 9) / 24 * 2 * np.pi)
        daily = 1 + amplitude * cycle
        weekly = np.where(weekday >= 5, 0.7, 1.0)
        trend = 1 + growth * minutes / (7 * 24 * 60)
        # Bursts: an AR(1) process on the log scale, so jobs come and go in batches.
        shocks = rng.normal(0, 0.04, size=steps)
        ar = np.zeros(steps)
        for t in range(1, steps):
            ar[t] = 0.97 * ar[t - 1] + shocks[t]
        level = supply * base * daily * weekly * trend * np.exp(ar)
        if workload_class == "inference":
            # Launches: from a random day on, a model's replicas add 10-20% in one step.
            for _ in range(max(1, days // 21)):
                launch = rng.integers(0, steps)
                level[launch:] *= 1 + rng.uniform(0.1, 0.2)
        # Training gangs hold whole 8-GPU nodes.
        demand = 8 * np.round(level / 8) if workload_class == "training" else np.round(level)
        running = np.minimum(demand, supply)
        if workload_class == "training":
            sm_busy = np.clip(rng.normal(0.85, 0.05, size=steps), 0.75, 0.95)
            memory = np.clip(rng.normal(0.8, 0.05, size=steps), 0.5, 0.95)
        elif workload_class == "inference":
            sm_busy = np.clip(0.42 + 0.15 * cycle + rng.normal(0, 0.03, size=steps), 0.25, 0.6)
            memory = np.clip(rng.normal(0.65, 0.05, size=steps), 0.4, 0.9)
        else:
            sm_busy = np.clip(rng.normal(0.35, 0.08, size=steps), 0.1, 0.7)
            memory = np.clip(rng.normal(0.5, 0.1, size=steps), 0.1, 0.9)
        idle = running == 0
        frames.append(
            pl.DataFrame(
                {
                    "time": [start + timedelta(minutes=int(m)) for m in minutes],
                    "cluster": cluster,
                    "series_id": series_id,
                    "running": running,
                    "pending": demand - running,
                    "total": np.full(steps, float(supply)),
                    "workload_class": workload_class,
                    "accelerator_type": accelerator_type,
                    "sm_busy": np.where(idle, np.nan, sm_busy),
                    "memory_used": np.where(idle, np.nan, memory),
                }
            ).with_columns(pl.col("sm_busy", "memory_used").fill_nan(None))
        )
    return schema.conform(pl.concat(frames), schema.COMPUTE_USAGE, name="compute_usage")
