"""`annotation-pipelines agreement`: agreement statistics of a judgments table as JSON.

    annotation-pipelines agreement INPUT --kind KIND [--task-col C] [--annotator-col C]
        [--value-col C] [--coordinates pixel|percent]

Every kind prints `krippendorff_alpha` over the kind's distance (named in `distance`), the raw
`mean_pairwise_agreement` (a share in [0, 1], higher is better) and `mean_pairwise_distance`
(the mean distance between two annotators' answers to a task, lower is better; 1 − the share),
`n_tasks`, `n_annotators`, `n_judgments` and the bootstrap interval `ci_low`/`ci_high` (1000
resamples over tasks unless `--bootstrap` says otherwise). For numeric the distance is interval,
which has no share: `mean_pairwise_agreement` is null and `mean_pairwise_distance` is the mean
absolute difference in the answers' unit (`raw_measure`), also printed as
`mean_absolute_difference`.

`categorical` (the default) keeps its statistics (`fleiss_kappa`, `percent_agreement`, `--level`,
no bootstrap unless asked, each statistic's interval as `<statistic>_low`/`_high`) and adds
`distance` (the level), `mean_pairwise_agreement` (the share of agreeing pairs of labels within
tasks), `mean_pairwise_distance` (1 − that share) and `ci_low`/`ci_high`: alpha's interval,
null without `--bootstrap`.

Agreement pairs different annotators only: an annotator's repeated rows on one task are set
aside but the last (one value per coder per unit, as Krippendorff's reliability data hold
it), counted in `repeated_rows_set_aside` and reported on stderr; `n_judgments` counts the
rows kept.

Rows of a non-categorical kind with a missing id or value, or a value of the wrong shape, are
left out and reported on stderr by row and field (see `aggregate`); the command fails only when
no row is valid. `--coordinates pixel|percent` (boxes only) is the unit of the boxes whose row
gives none, as for `aggregate --coordinates`: boxes outside the image are left out so too.
"""

from __future__ import annotations

import json
import math
from typing import Any

import click
import polars as pl

from annotation_pipelines.agreement._encoding import LEVELS, non_numbers, numeric_labels
from annotation_pipelines.coordinates_option import checked_coordinates, coordinates_option
from annotation_pipelines.kinds import DEFAULT_KIND, KINDS, VALUE_COLUMNS

# Resamples of the bootstrap when --bootstrap is not given: categorical keeps its historical
# "none"; every other kind reports an interval, as its contract says.
KIND_RESAMPLES = 1000


@click.command("agreement")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=DEFAULT_KIND,
    show_default=True,
    help="Kind of annotation in INPUT; it chooses the distance.",
)
@click.option("--task-col", default="task_id", show_default=True, help="Column naming the task.")
@click.option(
    "--annotator-col",
    default="annotator_id",
    show_default=True,
    help="Column naming the annotator.",
)
@click.option(
    "--value-col",
    "--label-col",
    "value_col",
    default=None,
    help="Column holding the value (default: the kind's, e.g. label, spans; not for pairwise).",
)
@click.option(
    "--level",
    type=click.Choice(LEVELS),
    default=None,
    help="Categorical only: level of measurement for Krippendorff's alpha (default nominal); "
    "all but nominal read labels as numbers.",
)
@click.option(
    "--bootstrap",
    "n_resamples",
    type=click.IntRange(min=0),
    default=None,
    help=f"Bootstrap resamples over tasks for confidence intervals (0: none; default "
    f"{KIND_RESAMPLES}, categorical 0).",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Coverage of the bootstrap intervals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@coordinates_option(gold=False)
def agreement_command(
    input_path: str,
    kind: str,
    task_col: str,
    annotator_col: str,
    value_col: str | None,
    level: str | None,
    n_resamples: int | None,
    confidence: float,
    seed: int,
    coordinates: str | None,
) -> None:
    """Agreement of the judgments in INPUT (CSV, TSV, Parquet or JSON Lines).

    Prints one JSON object with krippendorff_alpha over the kind's distance (named in
    distance), mean_pairwise_agreement (a share, higher is better; null for numeric),
    mean_pairwise_distance (lower is better), n_tasks, n_annotators, n_judgments and the
    bootstrap interval ci_low, ci_high (null when a statistic is undefined).
    """
    coordinates = checked_coordinates(kind, coordinates, input_path)
    if kind == DEFAULT_KIND:
        summary = _categorical(
            input_path,
            columns=(task_col, annotator_col, value_col or "label"),
            level=level or "nominal",
            n_resamples=n_resamples or 0,
            confidence=confidence,
            seed=seed,
        )
    else:
        if level is not None:
            raise click.BadParameter(
                f"applies to categorical labels only; kind {kind!r} has its own distance",
                param_hint="--level",
            )
        if kind == "pairwise" and value_col is not None:
            raise click.BadParameter(
                f"does not apply to pairwise, whose columns are {', '.join(VALUE_COLUMNS[kind])}",
                param_hint="--value-col",
            )
        summary = _kind(
            input_path,
            kind=kind,
            task_col=task_col,
            annotator_col=annotator_col,
            value_col=value_col,
            n_resamples=KIND_RESAMPLES if n_resamples is None else n_resamples,
            confidence=confidence,
            seed=seed,
            coordinates=coordinates,
        )
    click.echo(json.dumps(_json_safe(summary), allow_nan=False))


def _categorical(
    input_path: str,
    *,
    columns: tuple[str, str, str],
    level: str,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:

    from annotation_pipelines.agreement.kinds import agreement
    from annotation_pipelines.agreement.summary import agreement_summary
    from annotation_pipelines.tabular import (
        InputError,
        column_options,
        read_categorical_inputs,
        where,
    )

    task_col, annotator_col, label_col = columns
    if len(set(columns)) < 3:
        raise click.UsageError("--task-col, --annotator-col and --label-col must be different")
    try:
        rows, _ = read_categorical_inputs(
            input_path,
            task_column=task_col,
            annotator_column=annotator_col,
            label_column=label_col,
            warn=lambda summary: click.echo(summary, err=True),
            row_column="row",
            column_options=column_options(task=task_col, annotator=annotator_col, value=label_col),
        )
    except InputError as error:
        raise click.ClickException(str(error)) from error
    rows, repeated = last_per_annotator(rows, input_path=input_path)
    judgments = rows.drop("row")
    try:
        summary = agreement_summary(
            judgments, level=level, n_resamples=n_resamples, confidence=confidence, seed=seed
        )
    except ValueError as error:
        at = f"column {label_col!r}"
        if level != "nominal":
            bad = non_numbers(judgments.get_column("label"))
            if bad.any():
                row = int(rows.get_column("row")[int(bad.arg_true()[0])])
                at = f"{where(input_path, row)}, {at}"
        raise click.ClickException(f"{input_path}: {at}: {error}") from error
    if level != "nominal":
        # The labels are numbers at this level (alpha read them so): the share of agreeing
        # pairs compares numbers too, not their spellings ("1" against "1.0").
        numbers = numeric_labels(judgments.get_column("label"), level)
        # -0.0 is the 0.0 it equals, which its text ("-0.0") would not be.
        number = pl.when(numbers == 0).then(0.0).otherwise(numbers)
        judgments = judgments.with_columns(number.cast(pl.String).alias("label"))
    raw = agreement(judgments, kind=DEFAULT_KIND, n_resamples=0)
    return {
        **summary,
        "distance": level,
        "mean_pairwise_agreement": raw["mean_pairwise_agreement"],
        "mean_pairwise_distance": raw["mean_pairwise_distance"],
        # Every kind's JSON has the same interval keys: here alpha's, as for the other kinds.
        "ci_low": summary.get("krippendorff_alpha_low"),
        "ci_high": summary.get("krippendorff_alpha_high"),
        "repeated_rows_set_aside": repeated,
    }


def _kind(
    input_path: str,
    *,
    kind: str,
    task_col: str,
    annotator_col: str,
    value_col: str | None,
    n_resamples: int,
    confidence: float,
    seed: int,
    coordinates: str | None,
) -> dict[str, Any]:
    from annotation_pipelines.agreement.kinds import agreement
    from annotation_pipelines.tabular import InputError, column_options, read_kind_inputs

    try:
        rows, _ = read_kind_inputs(
            input_path,
            kind=kind,
            task_column=task_col,
            annotator_column=annotator_col,
            value_column=value_col,
            warn=lambda summary: click.echo(summary, err=True),
            column_options=column_options(task=task_col, annotator=annotator_col, value=value_col),
            coordinates=coordinates,
        )
        rows, repeated = last_per_annotator(rows, input_path=input_path)
        result = agreement(
            rows, kind=kind, n_resamples=n_resamples, seed=seed, confidence=confidence
        )
        result["repeated_rows_set_aside"] = repeated
    except (InputError, ValueError) as error:
        message = str(error) if isinstance(error, InputError) else f"{input_path}: {error}"
        raise click.ClickException(message) from error
    if result.get("raw_measure") == "mean_absolute_difference":
        # The metric's own name, which earlier releases printed beside the figure.
        result["mean_absolute_difference"] = result["mean_pairwise_distance"]
    return result


def _json_safe(summary: dict[str, Any]) -> dict[str, Any]:
    """A figure that is not a finite number (NaN, ±inf) is null, as the contract says for an
    undefined statistic: bare NaN and Infinity are not JSON."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in summary.items()
    }


def last_per_annotator(rows: pl.DataFrame, *, input_path: str) -> tuple[pl.DataFrame, int]:
    """(`rows` with one judgment per task and annotator, the last in the file; how many earlier
    ones were set aside, reported on stderr). Agreement is between annotators: one value per
    coder per unit, as Krippendorff's reliability data hold it. A repeated row would be paired
    with its own annotator and count as agreement; the last is kept, as ingest keeps the latest
    submission and `aggregate` keeps the last span or box judgment."""
    last = rows.select(pl.struct("task_id", "annotator_id").is_last_distinct()).to_series()
    repeated = int((~last).sum())
    if repeated:
        click.echo(
            f"{input_path}: {repeated} repeated row(s) of an annotator on a task set aside "
            "(the last of each is kept): agreement pairs different annotators only",
            err=True,
        )
        rows = rows.filter(last)
    return rows, repeated
