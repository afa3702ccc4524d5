"""`annotation-pipelines migrate`: bring the annotation tool's database up to date.

The live runs apply the migrations themselves before they write; a deployment whose only
reader of the DB is the daily extract (no live layer) runs this once per release instead, or
its DB never gets the tombstone tables that let the daily layers see hard deletes. So does a
DBA when the pipelines' role may not create triggers on the tool's tables (a live run then
skips migration 6 and says so): here every migration must apply, or the command fails
naming it and the cause. Each waits at most `MIGRATION_LOCK_TIMEOUT` for its table's lock,
so a busy tool is not stalled behind it; try again when it is quieter.
"""

from __future__ import annotations

import json

import click


@click.command("migrate")
@click.option(
    "--dsn",
    envvar="ANNOTATION_DB_DSN",
    show_envvar=True,
    help="The annotation tool's PostgreSQL, e.g. postgresql://user@host:5432/db; taken from "
    "$ANNOTATION_DB_DSN when not given, and one of the two is needed.",
)
@click.option("--schema", default="public", show_default=True, help="Schema of its tables.")
def migrate_command(dsn: str | None, schema: str) -> None:
    """Apply the annotation DB's migrations (idempotent); print the versions applied as JSON."""
    # Not `required=True`: click's "Missing option '--dsn'" would not say that the variable
    # is the other way to give it.
    if not dsn:
        raise click.UsageError("give --dsn or set ANNOTATION_DB_DSN to the annotation DB's DSN")
    from annotation_pipelines.ingest.connection import InvalidDsn
    from annotation_pipelines.ingest.postgres import (
        MigrationFailed,
        applied_migrations,
        migrate_schema,
        validate_identifier,
    )

    try:
        validate_identifier(schema)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--schema") from error
    try:
        # What this run applied, not what the version table gained: the versions an earlier
        # release recorded elsewhere are copied into it, not applied again.
        run = migrate_schema(dsn, schema=schema, strict=True)
        after = applied_migrations(dsn, schema=schema)
    except (MigrationFailed, InvalidDsn) as error:
        raise click.ClickException(str(error)) from error
    except Exception as error:  # psycopg's errors name the host and the cause; a trace would not
        raise click.ClickException(f"{type(error).__name__}: {error}".strip()) from error
    click.echo(json.dumps({"schema": schema, "applied": run.applied, "current": max(after)}))
