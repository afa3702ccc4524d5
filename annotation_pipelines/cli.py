"""The `annotation-pipelines` command.

Each subcommand lives beside its engine (`aggregation/command.py`, ...) and is imported only when
invoked, so `annotation-pipelines --help` stays fast and one broken optional stack cannot break
the others.
"""

from __future__ import annotations

import importlib

import click

# name -> (module, attribute); the modules define plain click commands.
_COMMANDS: dict[str, tuple[str, str]] = {
    "aggregate": ("annotation_pipelines.aggregation.command", "aggregate_command"),
    "agreement": ("annotation_pipelines.agreement.command", "agreement_command"),
    "ingest": ("annotation_pipelines.ingest.command", "ingest_command"),
    "forecast": ("annotation_pipelines.forecasting.command", "forecast_command"),
    "generate": ("annotation_pipelines.synthetic.command", "generate_command"),
    "demo": ("annotation_pipelines.demo", "demo_command"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module_name, attribute = _COMMANDS[cmd_name]
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="annotation-pipelines")
def main() -> None:
    """Turn raw annotations into aggregated labels, quality reports, datasets and forecasts."""
