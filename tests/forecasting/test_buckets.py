"""`forecast`'s buckets: backtest windows it chooses itself, partial first and last buckets of a
coarser --freq, and day buckets of time-zoned input in the input's own days."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo

import numpy as np
import polars as pl
from click.testing import CliRunner

from annotation_pipelines.forecasting.command import forecast_command

START = dt.datetime(2024, 1, 1)
# A week's season of days, a week ahead, one quick model.
DAILY = ["--freq", "1d", "--horizon", "7", "--season-length", "7", "--models", "SeasonalNaive"]


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


def _five_minute(path, first: dt.datetime, last: dt.datetime) -> list[str]:
    """Demand with a daily shape (low at night, high by day), every 5 minutes."""
    times = pl.datetime_range(first, last, "5m", eager=True, time_unit="us")
    hour = times.dt.hour().cast(pl.Float64) + times.dt.minute().cast(pl.Float64) / 60
    pl.DataFrame(
        {"time": times, "demand": 100 + 50 * np.sin(np.pi * hour.to_numpy() / 24) ** 2}
    ).write_csv(path)
    return [str(path), "--time-col", "time", "--value-col", "demand"]


def test_partial_first_and_last_buckets_are_left_out_of_the_fit_and_named(tmp_path):
    # From 06:00 on the first day to 12:55 on the last: 216 and 156 of a day's 288 periods.
    # Averaged as whole days they read the day's busy hours (the last) or lose the night (the
    # first), and the forecast started from that biased last day.
    source = _five_minute(
        tmp_path / "minutes.csv", dt.datetime(2024, 1, 1, 6), dt.datetime(2024, 2, 14, 12, 55)
    )
    output = tmp_path / "forecast.csv"
    run = CliRunner().invoke(forecast_command, [*source, *DAILY, "--output", str(output)])
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["partial_buckets"] == [
        {"id": "demand", "time": "2024-01-01T00:00:00", "periods": 216, "of": 288,
         "dropped": True},
        {"id": "demand", "time": "2024-02-14T00:00:00", "periods": 156, "of": 288,
         "dropped": True},
    ]  # fmt: skip
    assert "2024-02-14 00:00:00 has 156 of its 288 periods" in run.stderr
    table = pl.read_csv(output, try_parse_dates=True)
    # The forecast starts at the partial day, from the last whole one.
    assert table.get_column("time").dt.replace_time_zone(None).min() == dt.datetime(2024, 2, 14)
    # Every whole day has the same shape, so its mean is the same: the forecast is that mean.
    whole_day = 100 + 50 * float(np.mean(np.sin(np.pi * np.arange(288) / 12 / 24) ** 2))
    assert np.allclose(table.get_column("forecast").to_numpy(), whole_day)


def test_whole_buckets_are_not_reported_partial(tmp_path):
    source = _five_minute(
        tmp_path / "minutes.csv", dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 14, 23, 55)
    )
    run = CliRunner().invoke(forecast_command, [*source, *DAILY])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["partial_buckets"] == []
    assert "periods" not in run.stderr


BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def _columns(source) -> list[str]:
    return [str(source), "--time-col", "time", "--value-col", "demand"]


def _berlin_days(first: dt.date, days: int) -> pl.DataFrame:
    """Hourly demand over Berlin's local days (across the March clock change), the same all day
    and 100 + 10 x the weekday: a UTC day mixes two local days' levels."""
    start = dt.datetime.combine(first, dt.time(), BERLIN).astimezone(dt.UTC)
    end = dt.datetime.combine(first + dt.timedelta(days=days), dt.time(), BERLIN).astimezone(dt.UTC)
    times = pl.datetime_range(start, end, "1h", eager=True, closed="left", time_zone="UTC")
    local = times.dt.convert_time_zone("Europe/Berlin")
    return pl.DataFrame(
        {"time": local, "demand": 100.0 + 10 * (local.dt.weekday() - 1).cast(pl.Float64)}
    )


def _check_local_days(run, output, *, zone: str, first: dt.datetime) -> dict:
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["time_zone"] == zone and report["partial_buckets"] == []
    table = pl.read_csv(output, try_parse_dates=True)
    times = table.get_column("time")
    if zone == "Europe/Berlin":
        # Written with each day start's own offset (+01:00 or +02:00).
        assert times.dtype == pl.Datetime("us", "UTC")
        times = times.dt.convert_time_zone(zone).dt.replace_time_zone(None)
    else:
        # Text gives offsets, not a zone: a future day's offset is not known.
        assert times.dtype == pl.Datetime("us")
    # Local midnights, the day after the last local day of input first.
    assert times.min() == first and (times.dt.hour() == 0).all()
    expected = 100.0 + 10 * (times.dt.weekday() - 1).cast(pl.Float64)
    assert np.allclose(table.get_column("forecast").to_numpy(), expected.to_numpy())
    return report


def test_zoned_offsets_are_bucketed_in_the_local_days_they_were_written_in(tmp_path):
    frame = _berlin_days(dt.date(2024, 2, 20), 50)
    source = tmp_path / "berlin.csv"
    frame.with_columns(pl.col("time").dt.strftime("%Y-%m-%dT%H:%M:%S%:z")).write_csv(source)
    output = tmp_path / "forecast.csv"
    run = CliRunner().invoke(forecast_command, [*_columns(source), *DAILY, "--output", str(output)])
    zone = "offsets as written: +01:00, +02:00"
    _check_local_days(run, output, zone=zone, first=dt.datetime(2024, 4, 10))


def test_a_named_zone_is_bucketed_in_its_local_days(tmp_path):
    # From the day the clocks go forward: its 23 hours are the whole day, not a partial one.
    frame = _berlin_days(dt.date(2024, 3, 31), 45).with_columns(supply=pl.lit(155.0))
    source = tmp_path / "berlin.parquet"
    frame.write_parquet(source)
    output = tmp_path / "forecast.csv"
    run = CliRunner().invoke(
        forecast_command,
        [*_columns(source), *DAILY, "--supply-col", "supply", "--output", str(output)],
    )
    report = _check_local_days(run, output, zone="Europe/Berlin", first=dt.datetime(2024, 5, 15))
    # Sunday's 160 is the first day above 155, at Berlin's midnight.
    assert report["series"]["demand"]["first_exceeds_supply"] == "2024-05-19T00:00:00+02:00"


def test_hourly_steps_of_zoned_input_are_said_to_be_utc(tmp_path):
    source = tmp_path / "berlin.parquet"
    _berlin_days(dt.date(2024, 2, 20), 12).write_parquet(source)
    run = CliRunner().invoke(
        forecast_command,
        [*_columns(source), "--horizon", "24", "--models", "SeasonalNaive"],
    )
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["time_zone"] == "UTC"


def test_naive_times_have_no_zone(tmp_path):
    common = [*_hourly(tmp_path / "hourly.csv", 24 * 12), "--horizon", "24",
              "--models", "SeasonalNaive"]  # fmt: skip
    run = CliRunner().invoke(forecast_command, common)
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["time_zone"] is None


def test_naive_times_are_written_naive(tmp_path):
    # Naive input says nothing of a zone (Helios' times are Beijing's wall clock), but the table
    # read `2024-01-13T00:00:00.000000+0000` and the supply date `+00:00`: UTC, asserted.
    source = tmp_path / "hourly.csv"
    _hourly(source, 24 * 12)
    pl.read_csv(source).with_columns(supply=pl.lit(1.0)).write_csv(source)
    output = tmp_path / "forecast.csv"
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "demand", "--supply-col", "supply",
         "--horizon", "24", "--models", "SeasonalNaive", "--output", str(output)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["series"]["demand"]["first_exceeds_supply"] == "2024-01-13T00:00:00"
    times = pl.read_csv(output, try_parse_dates=True).get_column("time")
    assert times.dtype == pl.Datetime("us") and times.min() == dt.datetime(2024, 1, 13)


def test_times_that_are_not_a_fixed_step_apart_are_refused_not_averaged(tmp_path):
    # Calendar months: the median step is 31 days, so 31-day buckets put two months in one
    # bucket (their mean) and shift every later time, with a daily season of 7 and no word.
    months = pl.date_range(dt.date(2018, 1, 1), dt.date(2024, 12, 1), "1mo", eager=True)
    source = tmp_path / "monthly.csv"
    pl.DataFrame({"time": months, "demand": np.arange(len(months), dtype=float) + 100}).write_csv(
        source
    )
    common = [str(source), "--time-col", "time", "--value-col", "demand", "--horizon", "6"]
    run = CliRunner().invoke(forecast_command, [*common, "--models", "SeasonalNaive"])
    assert run.exit_code == 1, run.output
    assert "monthly.csv: row " in run.output and "column 'time'" in run.output
    assert "not a fixed step apart" in run.output and "31d" in run.output
    # Data at a fixed step, some steps missing, is still read at its step.
    fixed = tmp_path / "fixed.csv"
    days = [START + dt.timedelta(days=k) for k in range(120) if k not in range(40, 45)]
    pl.DataFrame({"time": days, "demand": [float(k % 7) for k in range(len(days))]}).write_csv(
        fixed
    )
    kept = CliRunner().invoke(
        forecast_command,
        [str(fixed), "--time-col", "time", "--value-col", "demand", *DAILY[2:]],
    )
    assert kept.exit_code == 0, kept.output


def test_a_time_logged_a_second_early_is_read_at_the_series_step(tmp_path):
    # Times a second or two off the step are a logger's jitter, not another step: the reading
    # logged at 03:59:59 falls in the 03:00 step, which the fixed-step check must not take for
    # calendar months.
    hours = [dt.datetime(2024, 1, 1) + dt.timedelta(hours=k) for k in range(336)]
    hours[100] -= dt.timedelta(seconds=1)
    source = tmp_path / "jitter.csv"
    pl.DataFrame({"time": hours, "demand": [float(k % 24) for k in range(336)]}).write_csv(source)
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "demand", "--horizon", "24"],
    )
    assert run.exit_code == 0, run.output
