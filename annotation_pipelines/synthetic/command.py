"""`annotation-pipelines generate`: write a seeded synthetic workload to a folder."""

from __future__ import annotations

import math
import shutil
import time
from datetime import date
from pathlib import Path

import click

from annotation_pipelines.synthetic.workload import (
    DEFAULT_PROJECTS,
    GENERATED_ENTRIES,
    generate_workload,
    judgments_floor,
)

_PER_DAY = judgments_floor(1, DEFAULT_PROJECTS)


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
    help=f"About this many, and at least about {_PER_DAY} a day: every project gets a task "
    f"each day, so --days D writes at least about {_PER_DAY} x D.",
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
    "--overwrite",
    is_flag=True,
    help="Delete what an earlier run wrote in OUTPUT first (its tables, projects.parquet, "
    "annotators.parquet); other files are kept. Without it OUTPUT must be new or empty.",
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
    overwrite: bool,
) -> None:
    """Write tasks, judgments, gold labels and ground truth as day-partitioned Parquet.

    Streams in chunks, so 100 million judgments need no more memory than one chunk.
    """
    _clear_or_refuse(output, overwrite=overwrite)
    floor = judgments_floor(days, DEFAULT_PROJECTS)
    if judgments < floor:
        click.echo(
            f"note: --judgments {judgments:,} is below the floor of {floor:,} for {days:,} "
            f"day{'' if days == 1 else 's'} (every project gets a task each day, about "
            f"{_PER_DAY} judgments a day); writing about {floor:,}",
            err=True,
        )
    # Sized by what will be written, not what was asked: below the floor a bar sized by
    # --judgments would be full after the first day, and the other days would show nothing.
    expected = max(judgments, floor)
    started = time.perf_counter()
    with click.progressbar(
        length=expected,
        label="generating",
        show_pos=True,
        item_show_func=lambda day: day,
    ) as bar:
        done = 0

        def progress(message: str) -> None:
            nonlocal done
            count = int(message.rsplit(": ", 1)[1].split()[0].replace(",", ""))
            bar.update(max(0, min(count, expected) - done), current_item=message.split()[0])
            done = max(done, min(count, expected))

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


def _clear_or_refuse(output: Path, *, overwrite: bool) -> None:
    """OUTPUT new or empty, or with --overwrite cleared of what generate writes.

    Every file of an earlier run that this run does not rewrite (its other days, another seed's
    parts) would otherwise be read back with this one as one workload."""
    if not output.is_dir():
        return
    present = sorted(entry.name for entry in output.iterdir())
    if not present:
        return
    if not overwrite:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise click.BadParameter(
            f"{output} is not empty ({shown}): this run's files would mix with what is "
            "there; give a new or empty folder, or --overwrite to delete an earlier run's "
            "files there first",
            param_hint="OUTPUT",
        )
    removed = [name for name in GENERATED_ENTRIES if name in present]
    for name in removed:
        entry = output / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if removed:
        click.echo(f"note: --overwrite: deleted {', '.join(removed)} in {output}", err=True)
