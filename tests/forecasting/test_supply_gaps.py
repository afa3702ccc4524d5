"""A supply column logged only when it changes (empty cells between) is read as its last known
value: it was refused at its first empty cell, though the crossing takes the last value."""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
from click.testing import CliRunner

from annotation_pipelines.forecasting.command import forecast_command


def test_empty_supply_cells_keep_the_last_known_supply(tmp_path):
    hours = 24 * 10
    start = dt.datetime(2024, 1, 1)
    rows = []
    for series in ("a", "b"):
        for h in range(hours):
            # a: supply written once a day; b: never written.
            supply = 45.0 if series == "a" and h % 24 == 0 else None
            value = 40 + 10 * math.sin(2 * math.pi * h / 24)
            rows.append((series, start + dt.timedelta(hours=h), value, supply))
    source = tmp_path / "usage.csv"
    pl.DataFrame(rows, schema=["id", "time", "value", "supply"], orient="row").write_csv(source)
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--id-col", "id",
         "--supply-col", "supply", "--horizon", "24", "--models", "SeasonalNaive"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    # The daily peak of 50 is above the last supply of 45 within the day ahead.
    assert report["series"]["a"]["first_exceeds_supply"] is not None
    assert report["series"]["b"]["first_exceeds_supply"] is None
    assert "series 'b': column 'supply' is empty on every row" in run.stderr


def test_an_empty_time_or_value_cell_is_still_refused(tmp_path):
    source = tmp_path / "usage.csv"
    source.write_text("time,value,supply\n2024-01-01 00:00:00,,5\n")
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--supply-col", "supply"],
    )
    assert run.exit_code == 1
    assert "row 1 (line 2), column 'value': empty value" in run.output


def test_quoted_empty_supply_cells_are_empty_cells(tmp_path):
    # Polars (and other writers) quote an empty text cell as "": it is as empty as a bare one,
    # but was refused as `not a number: ''`.
    hours = 24 * 10
    start = dt.datetime(2024, 1, 1)
    lines = ["time,value,supply"]
    for h in range(hours):
        supply = "45" if h % 24 == 0 else '""' if h % 2 else " "
        lines.append(
            f"{start + dt.timedelta(hours=h)},{40 + 10 * math.sin(2 * math.pi * h / 24)},{supply}"
        )
    source = tmp_path / "usage.csv"
    source.write_text("\n".join(lines) + "\n")
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--supply-col", "supply",
         "--horizon", "24", "--models", "SeasonalNaive"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["series"]["value"]["first_exceeds_supply"] is not None
