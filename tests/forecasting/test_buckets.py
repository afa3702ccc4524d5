"""`forecast`'s buckets: backtest windows it chooses itself."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
from click.testing import CliRunner

from annotation_pipelines.forecasting.command import forecast_command

START = dt.datetime(2024, 1, 1)


def _hourly(path, hours: int) -> list[str]:
    rng = np.random.default_rng(0)
    t = np.arange(hours)
    pl.DataFrame(
        {
            "time": [START + dt.timedelta(hours=int(h)) for h in t],
            "demand": 50 + 8 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1.5, hours),
        }
    ).write_csv(path)
    return [str(path), "--time-col", "time", "--value-col", "demand"]


def test_without_backtest_windows_a_season_of_one_gets_enough_windows_to_score(tmp_path):
    # Origins a step apart and a 24-step horizon: the last origin's bands are calibrated only
    # once 25 windows are there, so 15 left coverage and Winkler null.
    common = [*_hourly(tmp_path / "hourly.csv", 24 * 20), "--season-length", "1",
              "--horizon", "24", "--models", "SeasonalNaive"]  # fmt: skip
    run = CliRunner().invoke(forecast_command, common)
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["backtest_windows"] >= 25 and report["backtest_windows_chosen"] is True
    assert None not in (report["coverage_80"], report["coverage_95"], report["winkler_95"])
    assert "coverage and Winkler scores are null" not in run.stderr
    # A number given is kept, with the note saying what it takes.
    given = CliRunner().invoke(forecast_command, [*common, "--backtest-windows", "15"])
    assert given.exit_code == 0, given.output
    report = json.loads(given.stdout)
    assert report["backtest_windows"] == 15 and report["backtest_windows_chosen"] is False
    assert report["coverage_80"] is None and report["winkler_95"] is None
    assert "--backtest-windows 25 or more" in given.stderr


def test_a_history_too_short_to_score_is_not_told_to_ask_for_windows_it_cannot_hold(tmp_path):
    # 70 hours hold 20 origins after 27 hours of fit and a 24-hour horizon; 25 need 75 hours,
    # so advising --backtest-windows 25 sent the user to a "needs at least 75" error.
    common = [*_hourly(tmp_path / "short.csv", 70), "--season-length", "1", "--horizon", "24",
              "--models", "SeasonalNaive"]  # fmt: skip
    run = CliRunner().invoke(forecast_command, common)
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["backtest_windows"] == 20 and report["backtest_windows_chosen"] is True
    assert report["coverage_80"] is None
    assert "--backtest-windows 25" not in run.stderr
    assert "25 windows need at least 75 steps; the shortest series has 70" in run.stderr
