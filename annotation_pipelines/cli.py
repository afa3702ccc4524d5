"""The `annotation-pipelines` command.

Each subcommand lives beside its engine (`aggregation/command.py`, ...) and is imported only when
invoked, so `annotation-pipelines --help` imports no data stack (Polars, NumPy, Dagster) and one
broken optional stack cannot break the others.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click

from annotation_pipelines.settings import SettingsError


@dataclass(frozen=True)
class _Subcommand:
    module: str
    attribute: str
    # The first paragraph of the command's docstring, for the group's listing without an import
    # (tests/test_cli_startup.py checks that the two agree).
    summary: str


_SUBCOMMANDS: dict[str, _Subcommand] = {
    "aggregate": _Subcommand(
        "annotation_pipelines.aggregation.command",
        "aggregate_command",
        "Aggregate the judgments in INPUT into one label per task, with its confidence.",
    ),
    "agreement": _Subcommand(
        "annotation_pipelines.agreement.command",
        "agreement_command",
        "Agreement of the judgments in INPUT (CSV, TSV, Parquet or JSON Lines).",
    ),
    "demo": _Subcommand(
        "assets.demo",
        "demo_command",
        "Generate a synthetic workload and materialize the whole asset graph on it.",
    ),
    "forecast": _Subcommand(
        "annotation_pipelines.forecasting.command",
        "forecast_command",
        "Forecast INPUT's series with 80/95% intervals; model chosen by rolling-origin backtest.",
    ),
    "generate": _Subcommand(
        "annotation_pipelines.synthetic.command",
        "generate_command",
        "Write tasks, judgments, gold labels and ground truth as day-partitioned Parquet.",
    ),
    "ingest": _Subcommand(
        "annotation_pipelines.ingest.command",
        "ingest_command",
        "Validate and normalize PATH; print the reconciliation as one JSON object.",
    ),
    "migrate": _Subcommand(
        "annotation_pipelines.ingest.migrate",
        "migrate_command",
        "Apply the annotation DB's migrations (idempotent); print the versions applied as JSON.",
    ),
    "replay": _Subcommand(
        "annotation_pipelines.loop.command",
        "replay_command",
        "Replay INPUT's judgments through the adaptive-redundancy policy; print the cost as JSON.",
    ),
    "serve": _Subcommand(
        "annotation_pipelines.api.command",
        "serve_command",
        "Serve the lake read-only over HTTP: the REST API under /v1, docs at /docs.",
    ),
    "token": _Subcommand(
        "annotation_pipelines.api.command",
        "token_command",
        "Make a bearer token with SCOPES for the API; prints it once, stores only its hash.",
    ),
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported when one is invoked, never to list them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        subcommand = _SUBCOMMANDS.get(cmd_name)
        if subcommand is None:
            return None
        return getattr(importlib.import_module(subcommand.module), subcommand.attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing loads every command for its short help; the summaries are here,
        # shortened by click's rule through a stand-in command that only carries the summary.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [
            (name, click.Command(name, help=_SUBCOMMANDS[name].summary).get_short_help_str(limit))
            for name in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        # A malformed or missing variable is the operator's to fix, and its message names the
        # variable: a traceback would only bury it, whichever command read the settings.
        try:
            return super().invoke(ctx)
        except SettingsError as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=_LazyGroup)
@click.version_option(package_name="annotation-pipelines")
def main() -> None:
    """Turn raw annotations into aggregated labels, quality reports, datasets and forecasts."""
