"""Seed the annotation database with a workload: `python -m annotation_pipelines.ingest.seed`.

Loads canonical judgments (and optionally tasks and gold labels) from Parquet files, or a
generated workload of `--judgments N` rows, into Postgres through `seed_database`, in one
transaction: all of it or, on an error, nothing. Judgments are submissions, so seeding one
that the database already holds is refused (rather than skipped) and nothing is written;
tasks, projects and annotators already there are kept as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import numpy as np
import polars as pl

from annotation_pipelines.ingest.connection import DatabaseUnreachable, InvalidDsn, first_line
from annotation_pipelines.ingest.postgres import (
    EXTRACT_COLUMNS,
    MigrationFailed,
    seed_database,
    validate_identifier,
)
from annotation_pipelines.schema import UTC_TIMESTAMP

_COUNT = re.compile(r"[+-]?[0-9]+")
# PostgreSQL's detail of a unique violation: `Key (judgment_id)=(0000000000) already exists.`
_DUPLICATE_KEY = re.compile(r"Key \((?P<columns>[^)]*)\)=\((?P<values>.*?)\) already exists")
_PARQUET_MAGIC = b"PAR1"
_GLOB = re.compile(r"[*?\[]")


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


def _label_sets(
    _ctx: click.Context, _param: click.Parameter, items: tuple[str, ...]
) -> dict[str, Sequence[str]]:
    label_sets: dict[str, Sequence[str]] = {}
    for item in items:
        project, equals, labels = item.partition("=")
        named = [label.strip() for label in labels.split(",") if label.strip()]
        if not equals or not project.strip() or not named:
            raise click.BadParameter(
                f"{item!r}: expected PROJECT=LABEL,LABEL,... e.g. reviews=pos,neg"
            )
        label_sets[project.strip()] = named
    return label_sets


def _read_parquet(source: str, *, option: str, table: str) -> pl.DataFrame:
    """`source` (a Parquet file, a folder or a glob of them) with `table`'s columns, or an error
    naming the option and the file."""
    path = Path(source)
    if not _GLOB.search(source) and not path.exists():
        raise click.ClickException(f"{option} {source}: no such file")
    if path.is_file():
        with path.open("rb") as handle:
            magic = handle.read(4)
        if magic != _PARQUET_MAGIC:
            raise click.ClickException(
                f"{option} {source}: not a Parquet file; the seed reads {table} in the "
                "canonical schema as Parquet"
            )
    try:
        frame = pl.read_parquet(source)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise click.ClickException(f"{option} {source}: unreadable: {first_line(error)}") from error
    missing = [column for column in EXTRACT_COLUMNS[table] if column not in frame.columns]
    if missing:
        raise click.ClickException(
            f"{option} {source}: missing column(s) {', '.join(repr(c) for c in missing)} of "
            f"canonical {table}; the file has {', '.join(repr(c) for c in frame.columns)}"
        )
    return frame


def _judgments(source: str) -> pl.DataFrame:
    if _COUNT.fullmatch(source.strip()):
        count = int(source)
        if count < 1:
            raise click.BadParameter(
                f"a row count must be 1 or more, got {count}", param_hint="--judgments"
            )
        return synthetic_judgments(count)
    frame = _read_parquet(source, option="--judgments", table="judgments")
    if frame.height == 0:
        raise click.ClickException(f"--judgments {source}: no judgments to seed")
    return frame


def _refusal(error: Exception, *, schema: str) -> str:
    """A database's refusal in one line; a judgment already seeded said as such."""
    text = str(error)
    duplicate = _DUPLICATE_KEY.search(text)
    if duplicate and "judgments_pkey" in text:
        return (
            f"{duplicate['columns']} {duplicate['values']!r} is already in {schema}.judgments "
            "(or given twice): a judgment is seeded once, so nothing was written; seed new "
            "judgments, or into another --schema"
        )
    return f"{type(error).__name__}: {first_line(error)}"


@click.command("seed", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dsn",
    envvar="ANNOTATION_DB_DSN",
    show_envvar=True,
    help="postgresql://user@host:port/db; taken from $ANNOTATION_DB_DSN when not given.",
)
@click.option("--schema", default="public", show_default=True, help="Schema of the tables.")
@click.option(
    "--judgments",
    "judgments_source",
    required=True,
    metavar="PATH|N",
    help="Canonical judgments as Parquet (a file, folder or glob), or a count of synthetic "
    "ones to make.",
)
@click.option("--tasks", default=None, metavar="PATH", help="Canonical raw_tasks Parquet.")
@click.option("--gold", default=None, metavar="PATH", help="Canonical gold_labels Parquet.")
@click.option(
    "--label-set",
    "label_sets",
    multiple=True,
    metavar="PROJECT=A,B,C",
    callback=_label_sets,
    help="A project's labels; repeat for more projects.",
)
def seed_command(
    dsn: str | None,
    schema: str,
    judgments_source: str,
    tasks: str | None,
    gold: str | None,
    label_sets: dict[str, Sequence[str]],
) -> None:
    """Seed the annotation database with a workload; print the rows written per table as JSON.

    All or nothing: a judgment the database already holds is refused and nothing is written.
    """
    if not dsn:
        raise click.UsageError("give --dsn or set ANNOTATION_DB_DSN to the annotation DB's DSN")
    try:
        validate_identifier(schema)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--schema") from error
    judgments = _judgments(judgments_source)
    task_frame = None if tasks is None else _read_parquet(tasks, option="--tasks", table="tasks")
    gold_frame = None if gold is None else _read_parquet(gold, option="--gold", table="gold_labels")
    import adbc_driver_manager
    import psycopg

    try:
        counts = seed_database(
            dsn,
            judgments=judgments,
            tasks=task_frame,
            gold=gold_frame,
            label_sets=label_sets,
            schema=schema,
            updated_at=datetime.now(UTC) - timedelta(seconds=1),
        )
    except (DatabaseUnreachable, InvalidDsn, MigrationFailed) as error:
        raise click.ClickException(str(error)) from error
    # seed_database names the row of an answer it refuses; the drivers name the cause.
    except (ValueError, adbc_driver_manager.Error, psycopg.Error) as error:
        raise click.ClickException(_refusal(error, schema=schema)) from error
    click.echo(json.dumps(counts))


def main(argv: list[str] | None = None) -> None:
    """The command as `python -m` runs it; returns (rather than exits) when it succeeds, so a
    caller in Python goes on."""
    try:
        seed_command.main(args=argv, prog_name="python -m annotation_pipelines.ingest.seed")
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise


if __name__ == "__main__":
    main()
