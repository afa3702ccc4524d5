"""`annotation-pipelines ingest`: check an export exactly as the landing-zone sensor would."""

from __future__ import annotations

import json
from pathlib import Path

import click

from annotation_pipelines.kinds import KINDS
from annotation_pipelines.tabular import InputError


@click.command("ingest")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "format_",
    required=True,
    type=click.Choice(["label-studio", "sagemaker-gt", "csv", "tsv", "parquet", "jsonl"]),
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
    "--kind",
    type=click.Choice(list(KINDS)),
    default=None,
    help="Tables only: every row's kind (default: each row's `kind` column, else inferred "
    "from the value columns present).",
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
    kind: str | None,
    output: Path | None,
) -> None:
    """Validate and normalize PATH; print the reconciliation as one JSON object.

    Exit code 0 when the export was readable, even with quarantined rows; 1 with a message
    naming the file when it was not.
    """
    from annotation_pipelines.ingest.files import ingest_path

    labels = (
        [label.strip() for label in label_set.split(",") if label.strip()] if label_set else None
    )
    try:
        result = ingest_path(path, format=format_, project=project, label_set=labels, kind=kind)
    except InputError as error:
        raise click.ClickException(str(error)) from error
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        result.judgments.write_parquet(output / "judgments.parquet")
        result.quarantine.write_parquet(output / "quarantine.parquet")
        result.tasks.write_parquet(output / "raw_tasks.parquet")
        result.gold.write_parquet(output / "gold_labels.parquet")
    click.echo(json.dumps(result.summary(), sort_keys=True))
