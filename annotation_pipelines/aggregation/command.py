"""`annotation-pipelines aggregate`: a fixed contract that other tools call.

    annotation-pipelines aggregate INPUT [--method NAME] [--task-col C] [--annotator-col C]
        [--label-col C] [--gold PATH] [--output PATH]

INPUT is CSV, TSV, Parquet or JSON Lines (by extension). Output columns are `task_id`, `label`,
`confidence`, with task and label written exactly as they appear in the input (read as text
from CSV/TSV so "007" stays "007"). Without `--output`, CSV goes to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import polars as pl

from annotation_pipelines.aggregation.api import aggregate
from annotation_pipelines.aggregation.registry import METHODS
from annotation_pipelines.tabular import InputError, read_table, write_table


@click.command("aggregate")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="dawid_skene",
    show_default=True,
    help="Aggregation method.",
)
@click.option("--task-col", default="task_id", show_default=True, help="Task column in INPUT.")
@click.option(
    "--annotator-col", default="annotator_id", show_default=True, help="Annotator column."
)
@click.option("--label-col", default="label", show_default=True, help="Label column in INPUT.")
@click.option(
    "--gold",
    "gold_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Known labels (task and label columns, same names as INPUT) to anchor the fit.",
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (.parquet or .csv) instead of CSV on stdout.",
)
def aggregate_command(
    input_path: Path,
    method: str,
    task_col: str,
    annotator_col: str,
    label_col: str,
    gold_path: Path | None,
    output_path: Path | None,
) -> None:
    """Aggregate the judgments in INPUT into one label per task, with its confidence."""
    columns = (task_col, annotator_col, label_col)
    try:
        if output_path is not None and output_path.suffix.lower() not in (".parquet", ".csv"):
            raise InputError(f"{output_path}: output must end in .parquet or .csv")
        raw = read_table(input_path, required_columns=columns, string_columns=columns)
        judgments = raw.select(
            pl.col(task_col).alias("task_id"),
            pl.col(annotator_col).alias("annotator_id"),
            pl.col(label_col).alias("label"),
        )
        gold = None
        if gold_path is not None:
            gold_raw = read_table(
                gold_path,
                required_columns=(task_col, label_col),
                string_columns=(task_col, label_col),
            )
            gold = gold_raw.select(
                pl.col(task_col).alias("task_id"), pl.col(label_col).alias("label")
            )
        try:
            result = aggregate(judgments, method, gold=gold)
        except ValueError as error:
            raise InputError(f"{input_path}: {error}") from error
        if output_path is None:
            sys.stdout.write(result.write_csv())
        else:
            write_table(result, output_path)
    except InputError as error:
        raise click.ClickException(str(error)) from error
