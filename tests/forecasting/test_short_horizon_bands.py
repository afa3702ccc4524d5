"""A short horizon's 95% band is calibrated on enough backtest errors to differ from its 80%
band: with the four calibration windows of a one-step horizon both were the largest of four
errors, one band printed twice."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.forecasting.command import forecast_command
from annotation_pipelines.forecasting.ensemble import (
    MIN_CALIBRATION_ERRORS,
    calibration_windows_for,
)


def _noisy_hourly(path, hours: int = 24 * 20) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(hours)
    pl.DataFrame(
        {
            "time": [dt.datetime(2024, 1, 1) + dt.timedelta(hours=int(h)) for h in t],
            "value": 50 + 20 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 3, hours),
        }
    ).write_csv(path)


@pytest.mark.parametrize("horizon", [1, 2])
def test_a_short_horizon_ships_a_95_band_wider_than_its_80_band(tmp_path, horizon):
    source, output = tmp_path / "usage.csv", tmp_path / "forecast.csv"
    _noisy_hourly(source)
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--horizon", str(horizon),
         "--models", "SeasonalNaive", "--output", str(output)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    # The last origin has enough ended windows before it for its own calibration.
    assert report["backtest_windows"] >= calibration_windows_for(horizon) + 1
    table = pl.read_csv(output)
    assert table.height == horizon
    assert (table["hi_95"] > table["hi_80"]).all() and (table["lo_95"] < table["lo_80"]).all()


def test_calibration_windows_hold_enough_errors_and_long_horizons_keep_four():
    for horizon in (1, 2, 3, 4, 5, 24, 168):
        assert calibration_windows_for(horizon) * horizon >= MIN_CALIBRATION_ERRORS
    assert calibration_windows_for(24) == calibration_windows_for(168) == 4
