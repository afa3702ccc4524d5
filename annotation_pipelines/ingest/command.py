"""`annotation-pipelines ingest`: check an export exactly as the landing-zone sensor would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from annotation_pipelines.ingest.formats import FORMATS, TABLE_FORMATS
from annotation_pipelines.kinds import KINDS
from annotation_pipelines.tabular import (
    InputError,
    PaddedValues,
    padded_values,
    position,
    row_lines,
)

if TYPE_CHECKING:
    import polars as pl

# Quarantined rows shown on stderr; every one is in quarantine.parquet with --output.
SHOWN = 5


@click.command("ingest")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "format_",
    required=True,
    type=click.Choice(FORMATS),
    help="Export format of PATH (a file, or a folder of such files).",
)
@click.option(
    "--project", default=None, help="Project name (default: from the export or file name)."
)
@click.option(
    "--label-set",
    default=None,
    help="Comma-separated labels the project allows; other labels are quarantined.",
)
@click.option(
    "--scale",
    "scale_text",
    default=None,
    metavar="MIN:MAX[:STEP]",
    help="The rating scale of the project's numeric answers; others are quarantined as "
    "outside_scale (overrides the settings' `scale`).",
)
@click.option(
    "--kind",
    type=click.Choice(list(KINDS)),
    default=None,
    help="Tables only: every row's kind (default: each row's `kind` column, else inferred "
    "from the value columns present).",
)
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A project.json as the landing zone holds it (exports/<project>/project.json), read "
    "as the landing asset reads it, for every format: its `label_set` (--label-set overrides "
    "it), its `scale` (--scale overrides it), its column `mapping` (tables only; the column "
    "options override it), its `coordinates` (tables only: the unit, pixel or percent, of "
    "each boxes row that gives none, whose boxes are then checked against the image) and "
    "its `quality_gates` floors, checked as the quality step checks them.",
)
@click.option("--task-col", default=None, help="Tables: the task id column [task_id].")
@click.option("--annotator-col", default=None, help="Tables: the annotator column [annotator_id].")
@click.option("--label-col", default=None, help="Tables: the label column [label].")
@click.option(
    "--submitted-at-col",
    default=None,
    help="Tables: the submission time column [submitted_at]; required, as for the sensor: it "
    "is the day a judgment lands in.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for judgments, quarantine, raw_tasks and gold_labels as Parquet.",
)
def ingest_command(
    path: Path,
    format_: str,
    project: str | None,
    label_set: str | None,
    scale_text: str | None,
    kind: str | None,
    settings_path: Path | None,
    task_col: str | None,
    annotator_col: str | None,
    label_col: str | None,
    submitted_at_col: str | None,
    output: Path | None,
) -> None:
    """Validate and normalize PATH; print the reconciliation as one JSON object, and the
    first quarantined rows (file, row and line, field, reason) on stderr.

    Tables are mapped to the canonical columns (task_id, annotator_id, label, submitted_at,
    and the kind's value column) as the landing sensor maps them: by the project's column
    mapping (--settings) and the column options. Exit code 0 when the export was readable,
    even with quarantined rows; 1 with a message naming the file when it was not.
    """
    from annotation_pipelines.ingest.files import ingest_path
    from annotation_pipelines.ingest.tables import ColumnMapping
    from annotation_pipelines.ingest.validation import (
        PROJECT_NAME_RULE,
        is_safe_project,
        project_coordinates,
        project_label_set,
    )
    from annotation_pipelines.scale import RatingScale, project_scale

    if project is not None and not is_safe_project(project):
        # Every row would be quarantined as invalid_project: the option is wrong, not the data.
        raise click.BadParameter(f"{project!r}: {PROJECT_NAME_RULE}", param_hint="'--project'")
    columns = {
        "task_id": task_col,
        "annotator_id": annotator_col,
        "label": label_col,
        "submitted_at": submitted_at_col,
    }
    given = {name: column for name, column in columns.items() if column is not None}
    if format_ not in TABLE_FORMATS and given:
        raise click.UsageError(
            f"the column options apply to tables ({', '.join(TABLE_FORMATS)}); "
            f"a {format_} export names its own fields"
        )
    settings = _project_settings(settings_path) if settings_path is not None else {}
    labels = (
        [label.strip() for label in label_set.split(",") if label.strip()] if label_set else None
    )
    listed = project_label_set(settings, source=str(settings_path))
    if labels is None:
        labels = listed
    scale = project_scale(settings, source=str(settings_path))
    if scale_text is not None:
        try:
            scale = RatingScale.parse(scale_text)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--scale") from error
    coordinates = project_coordinates(settings, source=str(settings_path))
    mapped = settings.get("mapping")
    try:
        mapping = (
            ColumnMapping.from_dict({**(mapped if isinstance(mapped, dict) else {}), **given})
            if given or mapped
            else None
        )
    except ValueError as error:
        raise click.UsageError(f"{settings_path}: {error}") from error
    try:
        result = ingest_path(
            path,
            format=format_,
            project=project,
            label_set=labels,
            scale=scale,
            kind=kind,
            mapping=mapping,
            coordinates=coordinates,
        )
    except InputError as error:
        raise click.ClickException(str(error)) from error
    if result.rows_quarantined:
        click.echo(
            quarantine_lines(
                result.quarantine,
                format_=format_,
                rows_read=result.rows_read,
                details=result.quarantine_details(),
            ),
            err=True,
        )
    padded = padded_note(result.judgments, format_=format_)
    if padded is not None:
        click.echo(padded, err=True)
    early = _before_start_note(result.judgments)
    if early is not None:
        click.echo(early, err=True)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        result.judgments.write_parquet(output / "judgments.parquet")
        result.quarantine.write_parquet(output / "quarantine.parquet")
        result.tasks.write_parquet(output / "raw_tasks.parquet")
        result.gold.write_parquet(output / "gold_labels.parquet")
    click.echo(json.dumps(result.summary(), sort_keys=True))


def _before_start_note(judgments: pl.DataFrame) -> str | None:
    """A note when judgments are dated before the pipeline's first daily partition, or None.
    The command checks an export for any history, so it loads them; the landing zone would
    quarantine them (`before_start_date`), and the user checking what it will stage is told."""
    from annotation_pipelines.ingest.result import dated_before
    from annotation_pipelines.settings import START_DATE, SettingsError, load_settings

    try:
        start = load_settings().start_date
    except SettingsError:
        return None
    early = judgments.filter(dated_before("submitted_at", start))
    if not early.height:
        return None
    return (
        f"note: {early.height} of {judgments.height} judgment(s) dated before the start date "
        f"{start} ({START_DATE}, the first daily partition), the first on "
        f"{early.get_column('submitted_at').min()!s}: loaded here, but the landing zone "
        "quarantines them as before_start_date"
    )


def _project_settings(path: Path) -> dict[str, object]:
    try:
        # Bytes, as the landing zone reads them: JSON's own detection takes a byte order mark.
        settings = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise click.BadParameter(f"{path}: not a readable JSON file ({error})") from error
    if not isinstance(settings, dict):
        raise click.BadParameter(f"{path}: expected a JSON object", param_hint="--settings")
    # The gate floors are checked by the code the quality step reads them with, so a file this
    # command accepts never fails that step later.
    from annotation_pipelines.ingest.tables import project_mapping
    from annotation_pipelines.ingest.validation import project_coordinates, project_label_set
    from annotation_pipelines.quality.gates import project_gate_floors
    from annotation_pipelines.scale import project_scale

    try:
        project_gate_floors(settings, source=str(path))
        project_scale(settings, source=str(path))
        project_label_set(settings, source=str(path))
        project_coordinates(settings, source=str(path))
        project_mapping(settings, source=str(path))
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    return settings


def padded_note(judgments: pl.DataFrame, *, format_: str) -> str | None:
    """How many ids and categorical labels of the loaded `judgments` have whitespace around
    them, naming the first, in the words the other commands use; None when none has. They
    are stored as written (`tabular.PaddedValues` says why)."""
    fields = ["task_id", "annotator_id", "label"]
    found = padded_values(judgments, fields, order=["source_file", "source_line"])
    if found is None:
        return None
    count, field, value, (source_file, source_line) = found
    where = f"{source_file}: {where_in_export(format_, source_line)}"
    return PaddedValues(count=count, field=field, value=value, where=where).note(
        kept_by="the commands"
    )


def where_in_export(format_: str, source_line: int | None, *, line: int | None = None) -> str:
    """`source_line` as the other commands name a row: ingest stores a CSV row's data row + 1
    (the file line until a quoted cell spans lines; `line`, when known, is the line the row
    really starts on), a Parquet row's number and a JSON source's line."""
    if source_line is None:
        return "no line"
    if format_ in ("csv", "tsv"):
        return position(source_line - 1, source_line if line is None else line)
    if format_ == "parquet":
        return position(source_line)
    return f"line {source_line}"


def quarantine_lines(
    quarantine: pl.DataFrame,
    *,
    format_: str,
    rows_read: int,
    details: pl.DataFrame | None = None,
) -> str:
    """The first quarantined rows, one line each: file, where, field, reason, and the reason
    in words where the parser gave one (`details`: `result.IngestResult.quarantine_details`,
    whose `where` names a row a line cannot, a Label Studio task and annotation)."""
    lines = [f"{quarantine.height} of {rows_read} rows quarantined (all with --output):"]
    shown = quarantine.head(SHOWN)
    if details is not None:
        shown = shown.hstack(details.head(SHOWN))
    # A quoted cell over two lines puts every later row further down the file than its
    # stored number says: the lines an editor shows are counted in the file itself.
    starts: dict[tuple[str, int], int] = {}
    if format_ in ("csv", "tsv"):
        for (source_file,), rows in shown.group_by("source_file"):
            numbers = [n - 1 for n in rows.get_column("source_line").drop_nulls()]
            if source_file is not None:
                for row_number, start in row_lines(str(source_file), numbers).items():
                    starts[(str(source_file), row_number)] = start
    for row in shown.iter_rows(named=True):
        line = None
        if row["source_line"] is not None:
            line = starts.get((str(row["source_file"]), row["source_line"] - 1))
        where = row.get("where") or where_in_export(format_, row["source_line"], line=line)
        field = f", field {row['field']!r}" if row["field"] else ""
        message = f": {row['message']}" if row.get("message") else ""
        lines.append(f"  {row['source_file']}: {where}{field}: {row['reason']}{message}")
    if quarantine.height > SHOWN:
        lines.append(f"  ... and {quarantine.height - SHOWN} more")
    return "\n".join(lines)
