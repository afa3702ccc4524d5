"""`annotation-pipelines replay`: a fixed contract.

    annotation-pipelines replay INPUT [--task-col C] [--annotator-col C] [--label-col C]
        [--kind KIND] [--method NAME] [--min-votes K] [--max-votes K]
        [--target-confidence P] [--budget FRACTION] [--gold PATH] [--output PATH]
        [--scale MIN:MAX[:STEP]] [--coordinates pixel|percent]

INPUT rows are the judgments annotators would give, in arrival order (CSV, TSV, Parquet or
JSON Lines). `--output` receives the final labels (`task_id,label,confidence`, as `aggregate`
writes them); standard output is one JSON object with `judgments_used`,
`judgments_available`, `tasks`, `rounds` and the policy's parameters. A budget below one
judgment per task still writes every task: those it paid nothing for have an empty label and
confidence 0 (`tasks_unlabelled` counts them, `deferred` among the decisions); a budget that
pays no judgment at all is a usage error.

Every kind replays: `--kind` reads INPUT as `aggregate --kind` does (the kind's value column,
which `--label-col` renames for one-column kinds; rows of the wrong shape are quarantined and
reported), and the output holds the kind's value column with the task's confidence. Pairwise
writes `task_id,winner,confidence,left,right`: `winner` is left, right or tie of the pair as
`left`,`right` show it (the task's first row in INPUT); `--label-col` does not apply to it.
With `--method auto` the JSON's `method` is the one the first round chose. Nested values
(spans, boxes, lists) need `.parquet` or `.jsonl`.

`--scale` (numeric only) declares the rating scale as `aggregate --scale` does: values outside it
are quarantined before the replay, and the confidence's tolerance reads the declared range (and
step) instead of the answers'.

`--coordinates pixel|percent` (boxes only) is the unit of the boxes whose row gives none, as for
`aggregate --coordinates`: boxes outside the image are quarantined before the replay.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click
import polars as pl

from annotation_pipelines.aggregation.command import (
    checked_scale,
    repeated_votes_note,
    scale_option,
)
from annotation_pipelines.aggregation.registry import ALL_METHODS, methods_for
from annotation_pipelines.coordinates_option import checked_coordinates, coordinates_option
from annotation_pipelines.kinds import VALUE_COLUMNS, VALUE_DTYPES
from annotation_pipelines.loop.kind_posterior import (
    KIND_TARGETS,
    oriented_winners,
    pairwise_orientation,
)
from annotation_pipelines.loop.policy import RECOMMENDED, budget_judgments
from annotation_pipelines.loop.posterior import KINDS, confidence_function
from annotation_pipelines.loop.replay import replay
from annotation_pipelines.scale import RatingScale
from annotation_pipelines.tabular import (
    GoldCoverage,
    GoldJudgesNothing,
    InputError,
    check_output_path,
    column_options,
    quarantine_path,
    read_kind_inputs,
    write_output,
)

_DEFAULTS = RECOMMENDED


@click.command("replay")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--task-col", default="task_id", show_default=True, help="Task column in INPUT.")
@click.option(
    "--annotator-col", default="annotator_id", show_default=True, help="Annotator column."
)
@click.option(
    "--label-col",
    "--value-col",
    "label_col",
    default=None,
    help="Value column in INPUT (default: the kind's, label for categorical, e.g. value, spans; "
    "not for pairwise).",
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="categorical",
    show_default=True,
    help="Judgment kind.",
)
@click.option(
    "--method",
    type=click.Choice(ALL_METHODS),
    help="Aggregation method, one of the kind's (default: dawid_skene for categorical and "
    "pairwise winners, the kind's default otherwise; auto chooses once, on the first round). "
    "Pairwise replays each pair's winner as a label, so it takes the categorical methods, not "
    "crowd_bt or bradley_terry.",
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
    help="A task is done once its calibrated confidence reaches this "
    f"(default: {_DEFAULTS.target_confidence} for categorical, "
    f"{', '.join(f'{k} {v}' for k, v in KIND_TARGETS.items())}).",
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
    help=(
        "Known labels to anchor the fit: INPUT's task and label columns, or its task "
        "column and one other (a truth file's `truth`)."
    ),
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the final labels here (.parquet, .jsonl or .csv).",
)
@scale_option
@coordinates_option(gold=True)
def replay_command(
    input_path: Path,
    task_col: str,
    annotator_col: str,
    label_col: str | None,
    kind: str,
    method: str | None,
    min_votes: int,
    max_votes: int,
    target_confidence: float | None,
    budget: float,
    gold_path: Path | None,
    output_path: Path | None,
    scale_text: str | None,
    coordinates: str | None,
) -> None:
    """Replay INPUT's judgments through the adaptive-redundancy policy; print the cost as JSON.

    The JSON's decisions count the tasks by the policy's last word: done, needs_another_judgment,
    escalate (at --max-votes, below target) and deferred (wanted another judgment, but the
    budget was spent). exhausted counts the done tasks that ran out of judgments in INPUT
    below the target confidence.
    """
    scale = checked_scale(kind, scale_text)
    coordinates = checked_coordinates(kind, coordinates, input_path, gold_path)
    if method is not None and method not in replay_methods(kind):
        raise click.BadParameter(
            f"{method!r} does not aggregate kind {kind!r} in a replay; its methods are "
            f"{', '.join(replay_methods(kind))}"
            + (" (each pair's winner is replayed as a label)" if kind == "pairwise" else ""),
            param_hint="--method",
        )
    if max_votes < min_votes:
        raise click.BadParameter(
            f"{max_votes} is below --min-votes ({min_votes})", param_hint="--max-votes"
        )
    if label_col is not None and len(VALUE_COLUMNS[kind]) > 1:
        raise click.BadParameter(
            f"does not apply to {kind}, whose columns are {', '.join(VALUE_COLUMNS[kind])}",
            param_hint="--label-col",
        )
    try:
        if output_path is not None:
            check_output_path(
                output_path, inputs=(input_path, gold_path), list_columns=_list_columns(kind)
            )
        try:
            options = replace(
                RECOMMENDED,
                min_votes=min_votes,
                max_votes=max_votes,
                target_confidence=target_confidence
                or KIND_TARGETS.get(kind, _DEFAULTS.target_confidence),
                budget=budget,
                # Smaller rounds were measured on the categorical crowd sets only; the other
                # kinds keep one round per vote, as `benchmarks/bench_replay_kinds.py` measured.
                round_share=RECOMMENDED.round_share if kind == "categorical" else None,
            )
        except ValueError as error:
            raise click.UsageError(str(error)) from error
        coverage: list[GoldCoverage] = []
        judgments, gold = _kind_input(
            input_path,
            gold_path,
            kind=kind,
            output_path=output_path,
            task_col=task_col,
            annotator_col=annotator_col,
            label_col=label_col,
            scale=scale,
            coordinates=coordinates,
            on_gold=coverage.append,
        )
        note = repeated_votes_note(judgments, path=input_path, row_column=_FILE_ROW)
        if note is not None:
            click.echo(note, err=True)
        file_rows = judgments.get_column(_FILE_ROW)
        judgments = judgments.drop(_FILE_ROW)
        if budget_judgments(judgments.height, options) < 1:
            # Nothing was replayed: no quarantine file may describe this run.
            if output_path is not None:
                quarantine_path(output_path).unlink(missing_ok=True)
            raise click.BadParameter(
                f"{budget:g} of {judgments.height} judgment(s) pays none: the smallest budget "
                f"is {_ceil_share(1, judgments.height)}, and "
                f"{_ceil_share(judgments['task_id'].n_unique(), judgments.height)} "
                "pays one judgment per task",
                param_hint="--budget",
            )
        confidence = confidence_function(
            kind,
            method=method,
            gold=gold,
            label_set=_label_set(judgments, kind),
            scale=scale,
        )
        try:
            result = replay(judgments, confidence=confidence, options=options)
        except ValueError as error:
            raise InputError(f"{input_path}: {error}") from error
        if output_path is not None:
            labels = result.labels
            if kind != "categorical":
                value = "winner" if kind == "pairwise" else VALUE_COLUMNS[kind][0]
                labels = labels.rename({"label": value})
            if kind == "pairwise":
                # `winner` is left or right of the pair as the task's first row shows it: the
                # pair itself, so the winner reads without INPUT.
                labels = labels.join(
                    pairwise_orientation(judgments).rename({"_left": "left", "_right": "right"}),
                    on="task_id",
                    how="left",
                    maintain_order="left",
                )
            write_output(labels, output_path)
    except GoldJudgesNothing as error:
        raise click.BadParameter(str(error), param_hint="--gold") from error
    except InputError as error:
        raise click.ClickException(str(error)) from error
    set_aside = getattr(confidence, "set_aside", None)
    if set_aside is not None and set_aside.height:
        note = _set_aside_note(
            set_aside,
            judgments,
            file_rows,
            path=input_path,
            field=label_col or VALUE_COLUMNS[kind][0],
            method=str(getattr(confidence, "method", kind)),
        )
        click.echo(note, err=True)
    if result.tasks_unlabelled:
        click.echo(
            f"{input_path}: --budget {budget:g} pays {result.judgments_used} judgment(s) for "
            f"{result.tasks} tasks: {result.tasks_unlabelled} task(s) have no label "
            f"(--budget {_ceil_share(result.tasks, result.judgments_available)} pays one each)",
            err=True,
        )
    summary = {
        **result.summary(),
        "kind": kind,
        # With auto, the method the first round chose: what the labels came from.
        "method": getattr(confidence, "chosen", None)
        or method
        or ("dawid_skene" if kind in ("categorical", "pairwise") else methods_for(kind)[0]),
        # How much of --gold anchored the fit (null without it): only the tasks INPUT judged.
        "gold_tasks": coverage[0].tasks if coverage else None,
        "gold_tasks_in_input": coverage[0].in_input if coverage else None,
    }
    click.echo(json.dumps(summary))


def _label_set(judgments: pl.DataFrame, kind: str) -> pl.Series | None:
    """Every label INPUT gives a task (pairwise: every winner, in each pair's first row's
    orientation; the fit adds left and right): the first votes revealed may all say one."""
    if kind == "categorical":
        return judgments["label"].unique()
    if kind == "pairwise":
        return oriented_winners(judgments)["label"].unique()
    return None


def _ceil_share(count: int, total: int) -> str:
    """The smallest budget, to 6 decimals rounded up, that pays `count` of `total` rows."""
    return f"{math.ceil(count / total * 1e6) / 1e6:g}"


def replay_methods(kind: str) -> tuple[str, ...]:
    """The `--method` values a replay of `kind` takes: pairwise winners are categorical labels."""
    return methods_for("categorical" if kind == "pairwise" else kind)


def _list_columns(kind: str) -> list[str]:
    return [c for c in VALUE_COLUMNS[kind][:1] if VALUE_DTYPES[c].is_nested()]


def _set_aside_note(
    set_aside: pl.DataFrame,
    judgments: pl.DataFrame,
    file_rows: pl.Series,
    *,
    path: Path,
    field: str,
    method: str,
) -> str:
    """`aggregate`'s note on the answers the final fit set aside, found in `judgments` (whose
    file rows `file_rows` holds) by task, annotator and value."""
    from annotation_pipelines.aggregation.command import set_aside_summary

    keys = ["task_id", "annotator_id", "value"]
    located = (
        set_aside.join(
            judgments.select(*keys[:2], pl.col("value").cast(pl.Float64)).with_row_index("_at"),
            on=keys,
            how="left",
            maintain_order="left",
        )
        .unique("row", keep="first", maintain_order=True)
        .select(pl.col("_at").alias("row"), *keys)
    )
    return set_aside_summary(located, rows=file_rows, path=path, field=field, method=method)


def _kind_input(
    input_path: Path,
    gold_path: Path | None,
    *,
    kind: str,
    output_path: Path | None,
    task_col: str,
    annotator_col: str,
    label_col: str | None,
    scale: RatingScale | None,
    coordinates: str | None,
    on_gold: Callable[[GoldCoverage], None],
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    return read_kind_inputs(
        input_path,
        kind=kind,
        task_column=task_col,
        annotator_column=annotator_col,
        value_column=label_col,
        gold_path=gold_path,
        output_path=output_path,
        warn=lambda summary: click.echo(summary, err=True),
        scale=scale,
        column_options=column_options(
            task=task_col, annotator=annotator_col, value=label_col, value_option="--label-col"
        ),
        row_column=_FILE_ROW,
        on_gold=on_gold,
        coordinates=coordinates,
    )


_FILE_ROW = "__file_row"
