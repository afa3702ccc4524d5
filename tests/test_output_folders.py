"""An --output that cannot be written is refused before the work, naming the path and why."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main


def _judgments(path: Path) -> Path:
    rows = [(task, worker, "a" if (task + worker) % 4 else "b") for task in range(6)
            for worker in range(3)]  # fmt: skip
    pl.DataFrame(
        {
            "task_id": [str(t) for t, _, _ in rows],
            "annotator_id": [f"w{w}" for _, w, _ in rows],
            "label": [label for _, _, label in rows],
        }
    ).write_csv(path)
    return path


def _hourly(path: Path) -> Path:
    start = dt.datetime(2024, 1, 1)
    hours = 24 * 10
    pl.DataFrame(
        {
            "time": [start + dt.timedelta(hours=h) for h in range(hours)],
            "value": [50 + 10 * math.sin(2 * math.pi * h / 24) for h in range(hours)],
        }
    ).write_csv(path)
    return path


def _arguments(command: str, tmp_path: Path) -> list[str]:
    if command == "forecast":
        source = _hourly(tmp_path / "usage.csv")
        return ["forecast", str(source), "--time-col", "time", "--value-col", "value",
                "--horizon", "24", "--models", "SeasonalNaive"]  # fmt: skip
    source = _judgments(tmp_path / "judgments.csv")
    return [command, str(source)]


@pytest.mark.parametrize("command", ["aggregate", "replay", "forecast"])
def test_an_output_under_a_file_is_refused_before_the_work(tmp_path: Path, command: str) -> None:
    # A path whose folder is a file: the commands ended in a traceback (aggregate, replay,
    # from the quarantine file's clean-up) or, after the whole forecast, in a bare
    # "[Errno 17] File exists".
    (tmp_path / "notes").write_text("a file, not a folder\n")
    output = tmp_path / "notes" / "out.csv"
    run = CliRunner().invoke(main, [*_arguments(command, tmp_path), "--output", str(output)])
    assert run.exit_code == 1, run.output
    assert run.exception is None or isinstance(run.exception, SystemExit), run.exception
    assert f"{output}: cannot write here: {tmp_path / 'notes'} is a file, not a folder" in (
        run.output
    )
    assert "progress" not in run.output and "Traceback" not in run.output
    assert not list(tmp_path.glob("*.quarantine.jsonl"))


@pytest.mark.parametrize("command", ["aggregate", "replay", "forecast"])
def test_an_output_in_a_new_folder_is_still_written(tmp_path: Path, command: str) -> None:
    output = tmp_path / "new" / "deeper" / "out.csv"
    run = CliRunner().invoke(main, [*_arguments(command, tmp_path), "--output", str(output)])
    assert run.exit_code == 0, run.output
    assert output.is_file()
