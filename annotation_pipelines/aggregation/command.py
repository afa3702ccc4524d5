"""`annotation-pipelines aggregate`: a fixed contract that other tools call.

    annotation-pipelines aggregate INPUT --kind KIND [--method NAME] [--task-col C]
        [--annotator-col C] [--value-col C] [--gold PATH] [--output PATH]
        [--scale MIN:MAX[:STEP]] [--coordinates pixel|percent]

KIND is one of `annotation_pipelines.kinds.KINDS`; `categorical` is the default and behaves as
before (`--label-col` still names its value column).

INPUT is JSON Lines or Parquet (CSV and TSV too; there list and object values are JSON text in
the cell), by extension, one judgment per row: `task_id`, `annotator_id` and the kind's value
column (`label`, `labels`, `value`, `ranking`, `left`/`right`/`winner`, `spans`, `boxes`,
`text`). `--value-col` renames the value column of every kind but pairwise, whose three columns
keep their names.

Output, one row per task: `task_id`, the kind's value column holding the aggregate (each span
and box gains its own `confidence`) and the task's `confidence`; numeric adds `lo` and `hi`.
Pairwise: one row per item, `item`, `score`, `lo`, `hi`, `confidence`. `--output` ends in
`.parquet`, `.jsonl` (or `.ndjson`) or `.csv` (kinds without list columns only). Without it the
rows go to stdout: CSV when every column is a scalar (categorical, numeric, pairwise, text),
JSON Lines otherwise (multilabel, ranking, spans, boxes). Categorical tasks and labels are
written exactly as they appear in the input (read as text from CSV/TSV so "007" stays "007").

Rows of a non-categorical kind that are missing an id or a value (a blank text answer, or a
blank label of a span, box or multilabel set, is missing: `missing_field`), whose box has no
width or height (`empty_box`), or whose value has the wrong shape (a span ending before it
starts, a box with x_max < x_min, a ranking naming an item twice, a winner other than
left/right/tie, a value that is not a number), are quarantined: counted on
stderr with the first reasons by row and field, and with `--output` written in full to
`<output>.quarantine.jsonl`. The command succeeds when at least one row is valid. Spans and
boxes take one judgment per task and annotator: a later row by the same annotator on the same
task replaces the earlier one, which is quarantined as `duplicate` naming the later row.

`--scale` (numeric only) declares the rating scale, as a project's `scale` in its project.json
does: a value outside it, or off its step, is quarantined as `outside_scale` (a gold value
outside it is an error), the scale's range replaces the one estimated from the answers in the
confidence, and values and intervals stay inside it.

The numeric default, `bias_noise`, sets aside answers that are gross errors (far off the scale
the answers show and far from their task's median: a pasted id, 55 typed on a 1–5
scale) before its fit; how many, and the first by row and field, are said on stderr. They
are valid rows, so they are not quarantined; `--scale` quarantines the ones off a declared
scale before they reach the model.

`--coordinates pixel|percent` (boxes only) is the unit of the boxes whose row gives none (no
`coordinates` column, or an empty cell); a row's own unit wins. A box outside its image is then
quarantined as `outside_image`, as ingest does for a row that gives its unit; `pixel` needs the
`image_width` and `image_height` columns (see `annotation_pipelines.coordinates_option`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import polars as pl

from annotation_pipelines.aggregation.api import aggregate
from annotation_pipelines.aggregation.registry import ALL_METHODS, methods_for
from annotation_pipelines.coordinates_option import checked_coordinates, coordinates_option
from annotation_pipelines.kinds import DEFAULT_KIND, KINDS, VALUE_COLUMNS, VALUE_DTYPES
from annotation_pipelines.scale import RatingScale
from annotation_pipelines.tabular import (
    GoldJudgesNothing,
    InputError,
    check_output_path,
    column_options,
    position,
    read_categorical_inputs,
    read_kind_inputs,
    row_lines,
    write_output,
)

# Every method of every kind, each name once; `--method` is checked against its kind's own.
CATEGORICAL_DEFAULT_METHOD = "dawid_skene"


def output_columns(kind: str) -> tuple[str, ...]:
    """The columns `aggregate` writes for `kind`, in order."""
    if kind == "pairwise":
        return ("item", "score", "lo", "hi", "confidence")
    bounds = ("lo", "hi") if kind == "numeric" else ()
    return ("task_id", *VALUE_COLUMNS[kind], "confidence", *bounds)


# `aggregate` and `replay` read a numeric project's scale the same way (`checked_scale`).
scale_option = click.option(
    "--scale",
    "scale_text",
    default=None,
    metavar="MIN:MAX[:STEP]",
    help="Numeric only: the rating scale; values outside it (or off its step) are quarantined, "
    "and confidence reads its range instead of the answers'.",
)


@click.command("aggregate")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=DEFAULT_KIND,
    show_default=True,
    help="Kind of annotation in INPUT.",
)
@click.option(
    "--method",
    type=click.Choice(ALL_METHODS),
    default=None,
    help=f"Aggregation method; it must be one of the kind's (default: {CATEGORICAL_DEFAULT_METHOD} "
    "for categorical, else the kind's first method).",
)
@click.option("--task-col", default="task_id", show_default=True, help="Task column in INPUT.")
@click.option(
    "--annotator-col", default="annotator_id", show_default=True, help="Annotator column."
)
@click.option(
    "--value-col",
    "--label-col",
    "value_col",
    default=None,
    help="Value column in INPUT (default: the kind's, e.g. label, spans; not for pairwise).",
)
@click.option(
    "--gold",
    "gold_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=(
        "Known answers to anchor the fit: INPUT's task and value columns, or its task "
        "column and one other (a truth file's `truth`)."
    ),
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (.parquet, .jsonl or .csv) instead of stdout; quarantined rows go to "
    "<output>.quarantine.jsonl.",
)
@scale_option
@coordinates_option(gold=True)
def aggregate_command(
    input_path: Path,
    kind: str,
    method: str | None,
    task_col: str,
    annotator_col: str,
    value_col: str | None,
    gold_path: Path | None,
    output_path: Path | None,
    scale_text: str | None,
    coordinates: str | None,
) -> None:
    """Aggregate the judgments in INPUT into one label per task, with its confidence.

    Every kind of annotation (--kind): one aggregate per task (pairwise: one score per item)
    with its confidence; rows of the wrong shape for the kind are quarantined and reported.
    """
    method = _checked_method(kind, method)
    scale = checked_scale(kind, scale_text)
    coordinates = checked_coordinates(kind, coordinates, input_path, gold_path)
    if kind == "pairwise" and value_col is not None:
        raise click.BadParameter(
            f"does not apply to pairwise, whose columns are {', '.join(VALUE_COLUMNS[kind])}",
            param_hint="--value-col",
        )
    try:
        if output_path is not None:
            nested = [c for c in VALUE_COLUMNS[kind] if VALUE_DTYPES[c].is_nested()]
            check_output_path(output_path, inputs=(input_path, gold_path), list_columns=nested)
        if kind == DEFAULT_KIND:
            result = _aggregate_categorical(
                input_path,
                method=method,
                columns=(task_col, annotator_col, value_col or "label"),
                gold_path=gold_path,
                output_path=output_path,
            )
        else:
            result = _aggregate_kind(
                input_path,
                kind=kind,
                method=method,
                task_col=task_col,
                annotator_col=annotator_col,
                value_col=value_col,
                gold_path=gold_path,
                output_path=output_path,
                scale=scale,
                coordinates=coordinates,
            )
        if output_path is not None:
            write_output(result, output_path)
        elif any(dtype.is_nested() for dtype in result.schema.values()):
            sys.stdout.write(result.write_ndjson())
        else:
            sys.stdout.write(result.write_csv())
    except GoldJudgesNothing as error:
        raise click.BadParameter(str(error), param_hint="--gold") from error
    except InputError as error:
        raise click.ClickException(str(error)) from error


def checked_scale(kind: str, text: str | None) -> RatingScale | None:
    """`--scale` read for `kind`: None when not given; a usage error for a kind other than
    numeric or a text that is not a scale."""
    if text is None:
        return None
    if kind != "numeric":
        raise click.BadParameter(f"applies to numeric ratings, not {kind}", param_hint="--scale")
    try:
        return RatingScale.parse(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--scale") from error


def _checked_method(kind: str, method: str | None) -> str:
    if method is None:
        return CATEGORICAL_DEFAULT_METHOD if kind == DEFAULT_KIND else methods_for(kind)[0]
    known = methods_for(kind)
    if method not in known:
        raise click.BadParameter(
            f"{method!r} does not aggregate kind {kind!r}; its methods are {', '.join(known)}",
            param_hint="--method",
        )
    return method


def _aggregate_categorical(
    input_path: Path,
    *,
    method: str,
    columns: tuple[str, str, str],
    gold_path: Path | None,
    output_path: Path | None,
) -> pl.DataFrame:
    task_col, annotator_col, label_col = columns
    judgments, gold = read_categorical_inputs(
        input_path,
        task_column=task_col,
        annotator_column=annotator_col,
        label_column=label_col,
        gold_path=gold_path,
        output_path=output_path,
        warn=lambda summary: click.echo(summary, err=True),
        row_column=_FILE_ROW,
        column_options=column_options(task=task_col, annotator=annotator_col, value=label_col),
    )
    note = repeated_votes_note(judgments, path=input_path, row_column=_FILE_ROW)
    if note is not None:
        click.echo(note, err=True)
    judgments = judgments.drop(_FILE_ROW)
    try:
        result = aggregate(judgments, method, gold=gold)
    except ValueError as error:
        raise InputError(f"{input_path}: {error}") from error
    note = unvoted_labels_note(judgments, result, gold=gold, path=input_path)
    if note is not None:
        click.echo(note, err=True)
    return result


# The share of tasks above which labels no annotator of the task gave are worth a note. On the
# shared crowd sets Dawid–Skene gives such labels on 0 to 0.3 % of the tasks (D_Product: 27 of
# 8,315, 16 of them right: a confusion matrix that says an annotator answers the other class);
# with 50 classes and 50 judgments per annotator on 12 % (its 30 annotators' 2,500-cell
# matrices are barely identified), with 72 % accuracy where majority vote has 92 %.
UNVOTED_LABELS_NOTE_SHARE = 0.01


def unvoted_labels_note(
    judgments: pl.DataFrame, result: pl.DataFrame, *, gold: pl.DataFrame | None, path: Path
) -> str | None:
    """One line for stderr when more than `UNVOTED_LABELS_NOTE_SHARE` of the tasks (gold tasks
    aside, whose label is known) got a label none of their annotators gave, or None."""
    voted = judgments.select("task_id", "label").unique()
    labelled = result.select("task_id", "label")
    if gold is not None:
        labelled = labelled.join(gold.select("task_id"), on="task_id", how="anti")
    unvoted = labelled.join(voted, on=["task_id", "label"], how="anti").height
    if unvoted <= UNVOTED_LABELS_NOTE_SHARE * labelled.height:
        return None
    classes = judgments.get_column("label").n_unique()
    per_annotator = judgments.height / judgments.get_column("annotator_id").n_unique()
    return (
        f"{path}: {unvoted} of {labelled.height} tasks ({unvoted / labelled.height:.1%}) got a "
        f"label none of their annotators gave. With {classes} classes and "
        f"{per_annotator:.0f} judgments per annotator, a method that fits a confusion matrix "
        "per annotator has too little to fit it from; --method auto chooses by held-out "
        "likelihood (by gold accuracy with --gold), and one_coin_dawid_skene or glad fit one "
        "or two numbers per annotator"
    )


def _aggregate_kind(
    input_path: Path,
    *,
    kind: str,
    method: str,
    task_col: str,
    annotator_col: str,
    value_col: str | None,
    gold_path: Path | None,
    output_path: Path | None,
    scale: RatingScale | None,
    coordinates: str | None,
) -> pl.DataFrame:
    rows, gold = read_kind_inputs(
        input_path,
        kind=kind,
        task_column=task_col,
        annotator_column=annotator_col,
        value_column=value_col,
        gold_path=gold_path,
        output_path=output_path,
        warn=lambda summary: click.echo(summary, err=True),
        scale=scale,
        column_options=column_options(task=task_col, annotator=annotator_col, value=value_col),
        row_column=_FILE_ROW,
        coordinates=coordinates,
    )
    note = repeated_votes_note(rows, path=input_path, row_column=_FILE_ROW)
    if note is not None:
        click.echo(note, err=True)
    # The engine (SciPy, Numba, rapidfuzz) loads only now, never for --help.
    from annotation_pipelines.aggregation.by_kind import aggregate_kind

    try:
        options = {} if scale is None else {"scale": scale}
        result = aggregate_kind(
            rows.drop(_FILE_ROW), kind=kind, method=method, gold=gold, **options
        )
    except ValueError as error:
        raise InputError(f"{input_path}: {error}") from error
    if result.set_aside is not None and result.set_aside.height:
        click.echo(
            set_aside_summary(
                result.set_aside,
                rows=rows.get_column(_FILE_ROW),
                path=input_path,
                field=value_col or VALUE_COLUMNS[kind][0],
                method=result.method,
            ),
            err=True,
        )
    return result.labels.select(output_columns(kind))


_FILE_ROW = "__file_row"


def repeated_votes_note(rows: pl.DataFrame, *, path: Path, row_column: str) -> str | None:
    """One line for stderr when an annotator judged a task more than once in the file, or None.
    Each such row is one more vote, as crowd-kit counts them; `agreement` and the daily layers
    keep an annotator's last instead, so a user comparing them is told why they differ (spans
    and boxes never get here: their repeats are quarantined as re-submissions)."""
    repeat = ~rows.select(pl.struct("task_id", "annotator_id").is_first_distinct()).to_series()
    count = int(repeat.sum())
    if not count:
        return None
    first = rows.filter(repeat).row(0, named=True)
    row = int(first[row_column])
    at = position(row, row_lines(path, [row]).get(row))
    rows_word = "row repeats" if count == 1 else "rows repeat"
    return (
        f"{path}: {count} {rows_word} an annotator's judgment of a task, each counted as one "
        "more vote (as crowd-kit counts them; `agreement` and the daily layers keep an "
        f"annotator's last); first: {at}, task {first['task_id']!r}, annotator "
        f"{first['annotator_id']!r}"
    )


def set_aside_summary(
    set_aside: pl.DataFrame, *, rows: pl.Series, path: Path, field: str, method: str
) -> str:
    """Two lines for stderr: how many answers the model set aside as gross errors, and the
    first by its row in the file (`rows`: the file row of each judgment the model saw)."""
    first = set_aside.row(0, named=True)
    row = int(rows[int(first["row"])])
    at = position(row, row_lines(path, [row]).get(row))
    return (
        f"{path}: {set_aside.height} of {rows.len()} answers set aside by {method} as gross "
        "errors (far off the scale the answers show and from their task's median), "
        f"not fitted; first:\n  {at}, field {field!r}: {first['value']!r} "
        f"(task {first['task_id']!r}, annotator {first['annotator_id']!r})"
    )
