"""`annotation-pipelines --help` imports no data stack; each subcommand loads only its own module.

Each check runs the real command in a fresh interpreter and reports which modules it imported,
so what is asserted is the import graph, not a time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("polars", "numpy", "pandas", "pyarrow", "scipy", "numba", "duckdb", "dagster")
SUBCOMMANDS = (
    "aggregate",
    "agreement",
    "demo",
    "forecast",
    "generate",
    "ingest",
    "migrate",
    "replay",
    "serve",
    "token",
)

# Runs `annotation-pipelines ARGS` as the console script does, then prints the top-level
# packages imported by then (stdout of the command itself goes to stderr).
_PROBE = """
import contextlib, json, sys
from annotation_pipelines.cli import main
with contextlib.redirect_stdout(sys.stderr):
    try:
        main(sys.argv[1:], prog_name="annotation-pipelines")
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def _run(*args: str) -> tuple[int, set[str], str]:
    """Exit code, imported top-level packages and output of `annotation-pipelines ARGS`."""
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.splitlines()[-1])
    return report["code"] or 0, set(report["modules"]), completed.stderr


def _imports(*args: str) -> tuple[set[str], str]:
    code, modules, output = _run(*args)
    assert code == 0, f"exit {code}:\n{output}"
    return modules, output


def test_help_imports_no_data_stack() -> None:
    modules, output = _imports("--help")
    assert not modules & set(HEAVY), f"--help imported {sorted(modules & set(HEAVY))}"
    assert all(name in output for name in SUBCOMMANDS), output


def test_version_imports_no_data_stack() -> None:
    modules, output = _imports("--version")
    assert not modules & set(HEAVY), f"--version imported {sorted(modules & set(HEAVY))}"
    assert "version" in output


def test_help_lists_each_subcommand_with_its_own_summary() -> None:
    """The group's listing, built without importing a subcommand, says what each one says."""
    _, output = _imports("--help")
    listing = dict(
        re.findall(r"^  (\S+)\s{2,}(.+)$", output.split("Commands:", 1)[1], flags=re.MULTILINE)
    )
    context = click.Context(main)
    assert sorted(listing) == sorted(SUBCOMMANDS) == main.list_commands(context)
    for name in SUBCOMMANDS:
        command = main.get_command(context, name)
        assert command is not None
        assert listing[name] == command.get_short_help_str(limit=len(listing[name])), name


@pytest.mark.parametrize("name", [name for name in SUBCOMMANDS if name != "demo"])
def test_engine_subcommand_help_does_not_import_dagster(name: str) -> None:
    """The engine's commands never need the orchestrator; only `demo` drives Dagster."""
    modules, output = _imports(name, "--help")
    assert f"annotation-pipelines {name}" in output
    assert "dagster" not in modules


# What a subcommand's --help must not import: stacks its package's other modules need for the
# work itself (the method fits, the forecasting models), not for declaring the options.
NOT_FOR_HELP = {
    "aggregate": ("scipy",),
    "forecast": ("numpy", "statsforecast"),
    "ingest": ("numpy",),
}


@pytest.mark.parametrize("name", sorted(NOT_FOR_HELP))
def test_subcommand_help_imports_only_its_own_module(name: str) -> None:
    modules, _ = _imports(name, "--help")
    assert not modules & set(NOT_FOR_HELP[name]), sorted(modules & set(NOT_FOR_HELP[name]))


def test_unknown_subcommand_is_a_usage_error() -> None:
    code, modules, output = _run("no-such-command")
    assert code == 2
    assert "No such command 'no-such-command'" in output
    assert not modules & set(HEAVY)


@pytest.mark.parametrize(
    ("args", "env", "variable"),
    [
        (["serve"], {"ANNOTATION_PIPELINES_PROFILE": "bogus"}, "ANNOTATION_PIPELINES_PROFILE"),
        (
            ["token", "--scopes", "labels:read"],
            {"ANNOTATION_PIPELINES_PROFILE": "bogus"},
            "ANNOTATION_PIPELINES_PROFILE",
        ),
        (["demo"], {"ANNOTATION_PIPELINES_PROFILE": "bogus"}, "ANNOTATION_PIPELINES_PROFILE"),
        (
            ["serve"],
            {"ANNOTATION_PIPELINES_PROFILE": "production", "ANNOTATION_PIPELINES_BUCKET": ""},
            "ANNOTATION_PIPELINES_BUCKET",
        ),
        (
            ["serve"],
            {"ANNOTATION_PIPELINES_API_MAX_PAGE_SIZE": "abc"},
            "ANNOTATION_PIPELINES_API_MAX_PAGE_SIZE",
        ),
        (
            ["serve"],
            {"ANNOTATION_PIPELINES_START_DATE": "2026-99-01"},
            "ANNOTATION_PIPELINES_START_DATE",
        ),
    ],
)
def test_a_settings_error_is_one_line_naming_the_variable(
    args: list[str], env: dict[str, str], variable: str
) -> None:
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: "), result.output
    assert variable in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
