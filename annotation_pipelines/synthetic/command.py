"""`annotation-pipelines generate`: write a seeded synthetic workload to a folder."""

from __future__ import annotations

import math
import time
from datetime import date
from pathlib import Path

import click

from annotation_pipelines.synthetic.workload import generate_workload


def _positive_finite(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    # FloatRange lets NaN through (no comparison with it is true), and a pool of 0 or fewer
    # annotators is no pool: the generator would clamp it to its floor without a word.
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"expected a finite number > 0, got {value}")
    return value


@click.command("generate")
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--judgments",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="About this many.",
)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day.")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="Daily partitions from --start, the judgments spread over them.",
)
@click.option("--seed", default=0, show_default=True, help="Same seed and options, same files.")
@click.option(
    "--annotators-scale",
    type=float,
    default=1.0,
    show_default=True,
    callback=_positive_finite,
    help="Pool size multiplier (> 0).",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=2_000_000,
    show_default=True,
    help="Judgments per part file.",
)
def generate_command(
    output: Path,
    judgments: int,
    start: date,
    days: int,
    seed: int,
    annotators_scale: float,
    chunk: int,
) -> None:
    """Write tasks, judgments, gold labels and ground truth as day-partitioned Parquet.

    Streams in chunks, so 100 million judgments need no more memory than one chunk.
    """
    started = time.perf_counter()
    with click.progressbar(length=judgments, label="generating", show_pos=True) as bar:
        done = 0

        def progress(message: str) -> None:
            nonlocal done
            count = int(message.rsplit(": ", 1)[1].split()[0].replace(",", ""))
            bar.update(max(0, min(count, judgments) - done))
            done = max(done, min(count, judgments))

        summary = generate_workload(
            output,
            judgments=judgments,
            start=start.date() if hasattr(start, "date") else start,
            days=days,
            seed=seed,
            annotators_scale=annotators_scale,
            chunk_judgments=chunk,
            progress=progress,
        )
    click.echo(
        f"{summary.judgments:,} judgments, {summary.tasks:,} tasks, {summary.gold_tasks:,} gold, "
        f"{summary.annotators:,} annotators in {summary.files} files under {summary.out_dir} "
        f"({time.perf_counter() - started:.1f} s)"
    )
