"""`annotation-pipelines replay`: a fixed contract.

    annotation-pipelines replay INPUT [--task-col C] [--annotator-col C] [--label-col C]
        [--kind KIND] [--method NAME] [--min-votes K] [--max-votes K]
        [--target-confidence P] [--budget FRACTION] [--gold PATH] [--output PATH]

INPUT rows are the judgments annotators would give, in arrival order (CSV, TSV, Parquet or
JSON Lines). `--output` receives the final labels (`task_id,label,confidence`, as `aggregate`
writes them); standard output is one JSON object with `judgments_used`,
`judgments_available`, `tasks`, `rounds` and the policy's parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import polars as pl

from annotation_pipelines.aggregation.registry import METHODS
from annotation_pipelines.loop.policy import PolicyOptions
from annotation_pipelines.loop.posterior import KINDS, confidence_function
from annotation_pipelines.loop.replay import replay
from annotation_pipelines.tabular import InputError, read_table, write_table

_DEFAULTS = PolicyOptions()


@click.command("replay")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--task-col", default="task_id", show_default=True, help="Task column in INPUT.")
@click.option(
    "--annotator-col", default="annotator_id", show_default=True, help="Annotator column."
)
@click.option("--label-col", default="label", show_default=True, help="Label column in INPUT.")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="categorical",
    show_default=True,
    help="Judgment kind.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="dawid_skene",
    show_default=True,
    help="Aggregation method (auto chooses once, on the first round).",
)
@click.option(
    "--min-votes",
    type=click.IntRange(min=1),
    default=_DEFAULTS.min_votes,
    show_default=True,
    help="Judgments every task starts with.",
)
@click.option(
    "--max-votes",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_votes,
    show_default=True,
    help="Never more judgments per task than this; below target then, escalate.",
)
@click.option(
    "--target-confidence",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    default=_DEFAULTS.target_confidence,
    show_default=True,
    help="A task is done once its calibrated confidence reaches this.",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    default=_DEFAULTS.budget,
    show_default=True,
    help="Share of INPUT's rows the project may spend.",
)
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
    help="Write the final labels here (.parquet or .csv).",
)
def replay_command(
    input_path: Path,
    task_col: str,
    annotator_col: str,
    label_col: str,
    kind: str,
    method: str,
    min_votes: int,
    max_votes: int,
    target_confidence: float,
    budget: float,
    gold_path: Path | None,
    output_path: Path | None,
) -> None:
    """Replay INPUT's judgments through the adaptive-redundancy policy; print the cost as JSON."""
    columns = (task_col, annotator_col, label_col)
    try:
        if output_path is not None and output_path.suffix.lower() not in (".parquet", ".csv"):
            raise InputError(f"{output_path}: output must end in .parquet or .csv")
        try:
            options = PolicyOptions(
                min_votes=min_votes,
                max_votes=max_votes,
                target_confidence=target_confidence,
                budget=budget,
            )
        except ValueError as error:
            raise click.UsageError(str(error)) from error
        raw = read_table(input_path, required_columns=columns, string_columns=columns)
        judgments = raw.select(
            pl.col(task_col).alias("task_id"),
            pl.col(annotator_col).alias("annotator_id"),
            pl.col(label_col).alias("label"),
        )
        gold = None
        if gold_path is not None:
            gold = read_table(
                gold_path,
                required_columns=(task_col, label_col),
                string_columns=(task_col, label_col),
            ).select(pl.col(task_col).alias("task_id"), pl.col(label_col).alias("label"))
        try:
            result = replay(
                judgments,
                confidence=confidence_function(kind, method=method, gold=gold),
                options=options,
            )
        except ValueError as error:
            raise InputError(f"{input_path}: {error}") from error
        if output_path is not None:
            write_table(result.labels, output_path)
    except InputError as error:
        raise click.ClickException(str(error)) from error
    summary = {**result.summary(), "kind": kind, "method": method}
    click.echo(json.dumps(summary))
