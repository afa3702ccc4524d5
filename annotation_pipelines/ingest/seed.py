"""Seed the annotation database with a workload: `python -m annotation_pipelines.ingest.seed`.

Loads canonical judgments (and optionally tasks and gold labels) from Parquet files, or a
generated workload of `--judgments N` rows, into Postgres through `seed_database`.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from annotation_pipelines.ingest.postgres import seed_database
from annotation_pipelines.schema import UTC_TIMESTAMP


def synthetic_judgments(
    n_judgments: int,
    *,
    n_projects: int = 4,
    labels: tuple[str, ...] = ("cat", "dog", "bird"),
    judgments_per_task: int = 5,
    n_annotators: int = 500,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    days: int = 30,
    seed: int = 0,
) -> pl.DataFrame:
    """A canonical judgments frame of `n_judgments` rows (vectorized; 10M rows in seconds).

    Each task gets `judgments_per_task` votes from distinct annotators; the label is the task's
    true class 70% of the time, otherwise uniform. Only for load and benchmarks: the synthetic
    generator of the project models annotators properly.
    """
    rng = np.random.default_rng(seed)
    n_tasks = max(1, n_judgments // judgments_per_task)
    task = np.arange(n_judgments) // judgments_per_task
    task = np.minimum(task, n_tasks - 1)
    slot = np.arange(n_judgments) % judgments_per_task
    offset = rng.integers(0, n_annotators, n_tasks)[task]
    annotator = (offset + slot * 7919) % n_annotators
    truth = rng.integers(0, len(labels), n_tasks)[task]
    noisy = rng.random(n_judgments) >= 0.7
    label = np.where(noisy, rng.integers(0, len(labels), n_judgments), truth)
    created = rng.integers(0, days * 86_400_000_000, n_tasks)[task]
    submitted = created + rng.integers(1_000_000, 3_600_000_000, n_judgments)
    epoch = int(start.timestamp() * 1_000_000)
    return pl.DataFrame(
        {
            "judgment_id": pl.Series(np.arange(n_judgments)).cast(pl.String).str.pad_start(10, "0"),
            "task_id": pl.Series(task).cast(pl.String),
            "project": pl.Series(task % n_projects).cast(pl.String).str.replace(r"^", "project-"),
            "annotator_id": pl.Series(annotator).cast(pl.String).str.replace(r"^", "annotator-"),
            "label": pl.Series(np.asarray(labels)[label]),
            "submitted_at": pl.Series(submitted + epoch)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC"),
            "duration_s": pl.Series(rng.gamma(2.0, 6.0, n_judgments)),
        }
    ).with_columns(pl.col("submitted_at").cast(UTC_TIMESTAMP))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True, help="postgresql://user@host:port/db")
    parser.add_argument("--schema", default="public")
    parser.add_argument("--judgments", help="canonical judgments Parquet, or a row count")
    parser.add_argument("--tasks", help="canonical raw_tasks Parquet")
    parser.add_argument("--gold", help="canonical gold_labels Parquet")
    parser.add_argument("--label-set", action="append", default=[], help="project=a,b,c")
    args = parser.parse_args(argv)
    if args.judgments and args.judgments.isdigit():
        judgments = synthetic_judgments(int(args.judgments))
    elif args.judgments:
        judgments = pl.read_parquet(args.judgments)
    else:
        parser.error("--judgments is required")
    label_sets = {}
    for item in args.label_set:
        project, _, labels = item.partition("=")
        label_sets[project] = labels.split(",")
    counts = seed_database(
        args.dsn,
        judgments=judgments,
        tasks=pl.read_parquet(args.tasks) if args.tasks else None,
        gold=pl.read_parquet(args.gold) if args.gold else None,
        label_sets=label_sets,
        schema=args.schema,
        updated_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
