"""`annotation-pipelines agreement`: agreement statistics of a judgments table as JSON."""

from __future__ import annotations

import json

import click

from annotation_pipelines.agreement._encoding import LEVELS


@click.command("agreement")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option("--task-col", default="task_id", show_default=True, help="Column naming the task.")
@click.option(
    "--annotator-col",
    default="annotator_id",
    show_default=True,
    help="Column naming the annotator.",
)
@click.option("--label-col", default="label", show_default=True, help="Column holding the label.")
@click.option(
    "--level",
    type=click.Choice(LEVELS),
    default="nominal",
    show_default=True,
    help="Level of measurement for Krippendorff's alpha; all but nominal read labels as numbers.",
)
@click.option(
    "--bootstrap",
    "n_resamples",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Bootstrap resamples over tasks for confidence intervals (0: none).",
)
@click.option(
    "--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95
)
@click.option("--seed", type=int, default=0, show_default=True)
def agreement_command(
    input_path: str,
    task_col: str,
    annotator_col: str,
    label_col: str,
    level: str,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> None:
    """Agreement of the judgments in INPUT (CSV, TSV, Parquet or JSON Lines).

    Prints one JSON object with krippendorff_alpha, fleiss_kappa, percent_agreement,
    n_tasks, n_annotators and n_judgments (null when a statistic is undefined).
    """
    import polars as pl

    from annotation_pipelines.agreement.summary import agreement_summary
    from annotation_pipelines.tabular import InputError, read_table

    columns = {task_col: "task_id", annotator_col: "annotator_id", label_col: "label"}
    if len(columns) < 3:
        raise click.UsageError("--task-col, --annotator-col and --label-col must be different")
    try:
        table = read_table(input_path, required_columns=list(columns), string_columns=list(columns))
    except InputError as error:
        raise click.ClickException(str(error)) from error
    judgments = table.select(pl.col(source).alias(target) for source, target in columns.items())
    try:
        summary = agreement_summary(
            judgments, level=level, n_resamples=n_resamples, confidence=confidence, seed=seed
        )
    except ValueError as error:
        raise click.ClickException(f"{input_path}: column {label_col!r}: {error}") from error
    click.echo(json.dumps(summary))
