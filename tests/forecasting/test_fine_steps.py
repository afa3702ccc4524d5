"""A forecast that says where it is, and says when the data's step makes it slow.

On a per-minute Helios trace (a season of 1,440 steps, a horizon of 10,080) the command
printed nothing for more than ten minutes."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import polars as pl
from click.testing import CliRunner

from annotation_pipelines.forecasting.candidates import candidate_models
from annotation_pipelines.forecasting.command import forecast_command
from annotation_pipelines.forecasting.ensemble import candidate_cross_validation
from annotation_pipelines.forecasting.statsforecast_adapter import (
    from_statsforecast,
    statsforecast_engine,
    to_statsforecast,
)

START = dt.datetime(2024, 1, 1)


def _series(*, steps: int, season: int, every: dt.timedelta, ids=("a",), seed=0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    return pl.concat(
        pl.DataFrame(
            {
                "id": [series_id] * steps,
                "time": [START + every * int(i) for i in t],
                "value": 40
                + 5 * k
                + 6 * np.sin(2 * np.pi * t / season)
                + 0.01 * t
                + rng.normal(0, 1.0, steps),
            }
        )
        for k, series_id in enumerate(ids)
    )


def test_ets_searches_seasonal_models_up_to_a_week_of_hourly_steps():
    from annotation_pipelines.forecasting.candidates import ETS_LONGEST_SEASON

    assert ETS_LONGEST_SEASON == 168
    for season, model in ((24, "ZZZ"), (96, "ZZZ"), (168, "ZZZ"), (169, "ZZN"), (1440, "ZZN")):
        assert candidate_models(season_length=season, horizon=24)["AutoETS"]().model == model


def test_one_backtest_per_candidate_equals_one_engine_over_all():
    # Seven days: the 168 hours three 24-step origins take after their 96 hours of fit; two
    # ways of running the same fits agree at any length.
    history = _series(steps=24 * 7, season=24, every=dt.timedelta(hours=1), ids=("a", "b"))
    models = ["SeasonalNaive", "AutoETS", "AutoTheta"]
    told: list[str] = []
    ours = candidate_cross_validation(
        history, horizon=24, season_length=24, freq="1h", windows=3, step=24, models=models,
        progress=told.append,
    )  # fmt: skip
    factories = candidate_models(season_length=24, horizon=24, extra_seasonalities=(168,))
    engine = statsforecast_engine([factories[m]() for m in models], freq="1h", n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = engine.cross_validation(df=to_statsforecast(history), h=24, n_windows=3, step_size=24)
    joint = (
        from_statsforecast(pl.DataFrame(raw))
        .with_columns(
            pl.col("id").cast(pl.String), pl.col("time", "cutoff").cast(pl.Datetime("us"))
        )
        .select("id", "time", "cutoff", "value", *models)
        .sort("id", "cutoff", "time")
    )
    assert ours.equals(joint)
    assert told == [f"backtest {n}/3: {m} at 3 origins" for n, m in enumerate(models, start=1)]


def test_cli_names_each_stage_and_says_when_the_data_is_finer_than_hourly(tmp_path):
    source = tmp_path / "usage.csv"
    # Three days: the fifteen origins (the most there are) need 84 steps of 15 minutes, and the
    # 72 hours they resample to below hold the 48 a calibrated 8-hour horizon takes; six days
    # only lengthened each of the thirty AutoETS fits.
    _series(steps=4 * 24 * 3, season=96, every=dt.timedelta(minutes=15)).write_csv(source)
    common = [str(source), "--time-col", "time", "--value-col", "value"]
    options = ["--models", "AutoETS", "--horizon", "8", "--season-length", "4"]
    run = CliRunner().invoke(forecast_command, [*common, *options])
    assert run.exit_code == 0, run.output
    assert "note: the data's step is 15m" in run.stderr and "--freq 1h" in run.stderr
    # The season and horizon given are not called the defaults (those are 96 and 672).
    assert "the season is 4 steps and the horizon 8 steps;" in run.stderr
    assert "default" not in run.stderr
    stages = [line for line in run.stderr.splitlines() if line.startswith("progress [")]
    assert [line.split("] ", 1)[1] for line in stages] == [
        "read 288 rows: 1 series of up to 288 steps of 15m",
        "backtest 1/2: SeasonalNaive at 15 origins",
        "backtest 2/2: AutoETS at 15 origins",
        "forecast: 2 candidates on the whole history",
    ]
    # Resampled by request, the table written: nothing to suggest.
    output = ["--output", str(tmp_path / "forecast.csv")]
    hourly = CliRunner().invoke(forecast_command, [*common, "--freq", "1h", *options, *output])
    assert hourly.exit_code == 0, hourly.output
    assert "note:" not in hourly.stderr and "progress [" in hourly.stderr
