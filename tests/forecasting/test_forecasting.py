"""Forecasting engine and CLI: helpers vs utilsforecast, synthetic CLI runs, Helios quality bar."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import math

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines import schema
from annotation_pipelines.forecasting import (
    backtest,
    forecast,
    load_helios,
    normalize_usage,
    pooled_coverage,
    relative_mase,
    summarize_usage,
    to_series,
)
from annotation_pipelines.forecasting.command import forecast_command
from annotation_pipelines.forecasting.metrics import mase
from annotation_pipelines.forecasting.plot import plot_forecast
from annotation_pipelines.forecasting.supply import procurement, supply_crossing
from tests.realdata import CAPACITY_DIR, require_shared

START = dt.datetime(2024, 1, 1)


def _synthetic(ids=("a", "b"), hours=24 * 12, seed=0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for number, series_id in enumerate(ids):
        t = np.arange(hours)
        value = 50 + 10 * number + 8 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1.5, hours)
        frames.append(
            pl.DataFrame(
                {
                    "id": [series_id] * hours,
                    "time": [START + dt.timedelta(hours=int(h)) for h in t],
                    "value": value,
                }
            )
        )
    return pl.concat(frames)


def test_mase_matches_utilsforecast_per_cutoff():
    from utilsforecast.losses import mase as reference_mase

    series = _synthetic(hours=24 * 8)
    result = backtest(
        series, horizon=24, season_length=24, freq="1h", windows=3, models=["AutoTheta"]
    )
    cv = result.cross_validation
    ours = mase(cv, series, models=list(result.models), seasonality=24)
    for cutoff in cv.get_column("cutoff").unique():
        window = cv.filter(pl.col("cutoff") == cutoff)
        train = series.filter(pl.col("time") <= cutoff)
        reference = reference_mase(
            window.drop("cutoff").to_pandas(),
            models=list(result.models),
            seasonality=24,
            train_df=train.to_pandas(),
            id_col="id",
            target_col="value",
            time_col="time",
        )
        for row in reference.to_dict("records"):
            for model in result.models:
                expected = row[model]
                got = ours.filter(
                    (pl.col("id") == row["id"])
                    & (pl.col("cutoff") == cutoff)
                    & (pl.col("model") == model)
                )["mase"].item()
                assert got == pytest.approx(expected, rel=1e-12)


def test_coverage_matches_utilsforecast():
    from utilsforecast.losses import coverage as reference_coverage

    series = _synthetic(hours=24 * 6)
    result = backtest(
        series, horizon=24, season_length=24, freq="1h", windows=2, models=["AutoTheta"]
    )
    window_scores = result.window_scores
    cv = result.cross_validation
    for cutoff in cv.get_column("cutoff").unique():
        window = cv.filter(pl.col("cutoff") == cutoff).drop("cutoff")
        for level in (80, 95):
            reference = reference_coverage(
                window.to_pandas(),
                models=list(result.models),
                level=level,
                id_col="id",
                target_col="value",
            )
            for row in reference.to_dict("records"):
                for model in result.models:
                    got = window_scores.filter(
                        (pl.col("id") == row["id"])
                        & (pl.col("cutoff") == cutoff)
                        & (pl.col("model") == model)
                    )[f"coverage_{level}"].item()
                    assert got == pytest.approx(row[model], abs=1e-12)


def test_choice_is_made_on_selection_windows_and_scored_on_held_out():
    # Eight days: three origins after the history they fit on, as in the MASE test above; which
    # windows choose and which score does not depend on how long each fit is.
    series = _synthetic(hours=24 * 8)
    result = backtest(
        series, horizon=24, season_length=24, freq="1h", windows=3, evaluation_windows=1, combine=1
    )
    scores = result.scores
    assert scores.get_column("held_out").all()
    assert scores.get_column("selection_windows").to_list() == [2, 2]
    assert scores.get_column("evaluation_windows").to_list() == [1, 1]
    selection = result.window_scores.filter(pl.col("role") == "selection")
    for series_id, model in result.chosen().items():
        means = (
            selection.filter(pl.col("id") == series_id).group_by("model").agg(pl.col("mase").mean())
        )
        assert model == means.sort("mase")["model"][0]
        held_out = result.window_scores.filter(
            (pl.col("role") == "evaluation")
            & (pl.col("id") == series_id)
            & (pl.col("model") == model)
        )["mase"].item()
        assert scores.filter(pl.col("id") == series_id)["mase"].item() == pytest.approx(held_out)


def test_combination_is_the_mean_of_the_best_on_selection_windows():
    series = _synthetic(hours=24 * 8)  # three origins, as above
    result = backtest(series, horizon=24, season_length=24, freq="1h", windows=3, combine=2)
    selection = result.window_scores.filter(pl.col("role") == "selection")
    cv = result.cross_validation
    for series_id, model in result.chosen().items():
        members = result.members[model]
        ranked = (
            selection.filter(pl.col("id") == series_id, pl.col("model").is_in(result.models))
            .group_by("model")
            .agg(pl.col("mase").mean())
            .sort("mase")["model"]
            .head(2)
            .to_list()
        )
        assert sorted(members) == sorted(ranked)
        assert model == f"Combination({'+'.join(members)})"
        rows = cv.filter(pl.col("id") == series_id)
        for column in ("", "-lo-80", "-hi-95"):
            expected = (rows[f"{members[0]}{column}"] + rows[f"{members[1]}{column}"]) / 2
            assert np.allclose(rows[f"{model}{column}"].to_numpy(), expected.to_numpy())
        # The held-out score is the combination's own on the evaluation window.
        held_out = result.window_scores.filter(
            (pl.col("role") == "evaluation")
            & (pl.col("id") == series_id)
            & (pl.col("model") == model)
        )["mase"].item()
        assert result.scores.filter(pl.col("id") == series_id)["mase"].item() == pytest.approx(
            held_out
        )


def test_forecast_table_is_canonical_and_intervals_nest():
    series = _synthetic(hours=24 * 6)
    result = forecast(series, horizon=24, season_length=24, freq="1h", backtest_windows=2)
    table = result.forecast
    assert table.schema == pl.Schema(schema.CAPACITY_FORECAST)
    assert table.height == 2 * 24
    assert table.filter(
        ~(
            (pl.col("lo_95") <= pl.col("lo_80"))
            & (pl.col("lo_80") <= pl.col("forecast"))
            & (pl.col("forecast") <= pl.col("hi_80"))
            & (pl.col("hi_80") <= pl.col("hi_95"))
        )
    ).is_empty()
    first = table.group_by("id").agg(pl.col("time").min())["time"].to_list()
    assert all(t == dt.datetime(2024, 1, 7, tzinfo=dt.UTC) for t in first)
    # A clean daily sine is far better than its own seasonal naive is bad: the model beats or ties.
    assert relative_mase(result.scores) <= 1.0 + 1e-9
    assert 0.0 <= pooled_coverage(result.backtest, level=95) <= 1.0


def test_too_short_series_is_a_clear_error():
    with pytest.raises(ValueError, match="needs at least"):
        backtest(_synthetic(hours=60), horizon=24, season_length=24, freq="1h", windows=3)


def test_supply_crossing_and_procurement():
    times = [dt.datetime(2024, 1, 1, h, tzinfo=dt.UTC) for h in range(6)]
    table = pl.DataFrame(
        {
            "id": ["a"] * 6,
            "time": times,
            "forecast": [8.0, 9, 10, 11, 12, 13],
            "lo_80": [7.0, 8, 9, 10, 11, 12],
            "hi_80": [9.0, 10, 11, 12, 13, 14],
            "lo_95": [6.0, 7, 8, 9, 10, 11],
            "hi_95": [10.0, 11, 12, 13, 14, 15],
        }
    )
    supply = pl.DataFrame(
        {"id": ["a"], "time": [dt.datetime(2023, 12, 31, tzinfo=dt.UTC)], "supply": [10.0]}
    )
    crossing = supply_crossing(table, supply).row(0, named=True)
    assert crossing["first_exceeds_hi_95"] == times[1]
    assert crossing["first_exceeds_hi_80"] == times[2]
    assert crossing["first_exceeds_forecast"] == times[3]
    assert crossing["first_exceeds_lo_95"] == times[5]
    needed = procurement(table, supply, lead_time=dt.timedelta(hours=3), queueing_target=1.0).row(
        0, named=True
    )
    # origin 2023-12-31 23:00, arrival 02:00: max hi_95 after = 15; 15 - 1 - 10 = 4
    assert needed["to_procure"] == 4 and needed["covered"]
    # Whole accelerators: the forecast's metadata showed 26.0000 of them.
    assert isinstance(needed["to_procure"], int)
    late = procurement(table, supply, lead_time=dt.timedelta(hours=30)).row(0, named=True)
    assert late["to_procure"] is None and late["covered"] is False
    assert "horizon ends" in late["reason"]


def test_headroom_of_a_series_with_unknown_supply_is_unknown_not_uncovered():
    # `covered: false` means the horizon ends before an order arrives; a series that never
    # reports its total has a horizon that covers the arrival and a supply nobody knows.
    times = [dt.datetime(2024, 1, 1, h, tzinfo=dt.UTC) for h in range(6)]
    bounds = {"forecast": 8.0, "lo_80": 7.0, "hi_80": 9.0, "lo_95": 6.0, "hi_95": 10.0}
    table = pl.DataFrame({"id": ["a"] * 6 + ["b"] * 6, "time": times * 2, **{
        name: [value] * 12 for name, value in bounds.items()}})  # fmt: skip
    supply = pl.DataFrame(
        {"id": ["a", "b"], "time": [dt.datetime(2023, 12, 31, tzinfo=dt.UTC)] * 2,
         "supply": [None, 5.0]},
        schema_overrides={"supply": pl.Float64},
    )  # fmt: skip
    rows = {
        row["id"]: row
        for row in procurement(table, supply, lead_time=dt.timedelta(hours=3)).iter_rows(named=True)
    }
    assert rows["a"]["covered"] is None and rows["a"]["to_procure"] is None
    assert rows["a"]["reason"] == "supply unknown: the series reports no total"
    assert rows["b"]["covered"] is True and rows["b"]["to_procure"] == 5
    assert rows["b"]["reason"] is None


def test_normalize_and_summaries():
    raw = pl.DataFrame(
        {
            "time": ["2024-01-01 00:00:00", "2024-01-01 00:30:00", "2024-01-01 01:00:00"],
            "running_gpu_num": [2, 4, 6],
            "pending_gpu_num": [0, 2, 0],
            "total_gpu_num": [8, 8, 8],
        }
    )
    usage = normalize_usage(raw, cluster="earth", series_id="vcX")
    assert usage.schema == pl.Schema(schema.COMPUTE_USAGE)
    hourly = to_series(usage, freq="1h")
    assert hourly["value"].to_list() == [4.0, 6.0]
    daily = summarize_usage(usage, every="1d").row(0, named=True)
    assert daily["utilization"] == pytest.approx(4 / 8)
    assert daily["queued_share"] == pytest.approx(1 / 3)
    assert daily["pending_peak"] == 2.0


def test_plot_is_png():
    series = _synthetic(ids=("a",), hours=24 * 6)
    result = forecast(
        series, horizon=24, season_length=24, freq="1h", backtest_windows=2, models=["AutoTheta"]
    )
    image = plot_forecast(result.history, result.forecast)
    assert image[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_contract(tmp_path, suffix):
    # Seven days: the 144 hours two 24-step origins take after their 96 hours of fit, and a day
    # to spare; the contract is the report's and the table's shape.
    frame = (
        _synthetic(hours=24 * 7)
        .rename({"id": "team", "time": "ts", "value": "gpus"})
        .with_columns(pl.lit(60.0).alias("capacity"))
    )
    source = tmp_path / f"usage{suffix}"
    frame.write_csv(source) if suffix == ".csv" else frame.write_parquet(source)
    output = tmp_path / "forecast.csv"
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "ts", "--value-col", "gpus", "--id-col", "team", "--freq", "1h",
         "--horizon", "24", "--season-length", "24", "--backtest-windows", "2",
         "--supply-col", "capacity", "--output", str(output)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert set(report["series"]) == {"a", "b"}
    for entry in report["series"].values():
        assert set(entry) == {
            "model", "mase", "seasonal_naive_mase", "relative_mase", "coverage_80", "coverage_95",
            "first_exceeds_supply",
        }  # fmt: skip
    # series b runs around 60 +- 8: its upper 95% bound crosses 60 within the day.
    assert report["series"]["b"]["first_exceeds_supply"] is not None
    written = pl.read_csv(output)
    assert written.columns == ["id", "time", "forecast", "lo_80", "hi_80", "lo_95", "hi_95"]
    assert written.height == 48


def test_cli_without_id_or_supply_and_bad_input(tmp_path):
    source = tmp_path / "one.csv"
    _synthetic(ids=("a",), hours=24 * 6).drop("id").write_csv(source)
    run = CliRunner().invoke(
        forecast_command,
        [
            str(source),
            "--time-col",
            "time",
            "--value-col",
            "value",
            "--horizon",
            "24",
            "--backtest-windows",
            "2",
        ],  # fmt: skip,
    )
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["freq"] == "1h" and report["season_length"] == 24
    assert list(report["series"]) == ["value"]
    assert "first_exceeds_supply" not in report["series"]["value"]
    bad = tmp_path / "bad.csv"
    bad.write_text("time,value\n2024-01-01 00:00:00,1\nnot-a-time,2\n")
    run = CliRunner().invoke(
        forecast_command, [str(bad), "--time-col", "time", "--value-col", "value"]
    )
    assert run.exit_code == 1
    assert "row 2 (line 3), column 'time'" in run.output
    gzipped = tmp_path / "bad.csv.gz"
    gzipped.write_bytes(gzip.compress(bad.read_bytes()))
    run = CliRunner().invoke(
        forecast_command, [str(gzipped), "--time-col", "time", "--value-col", "value"]
    )
    assert run.exit_code == 1
    assert f"{gzipped}: row 2 (line 3), column 'time'" in " ".join(run.output.split())
    run = CliRunner().invoke(
        forecast_command, [str(source), "--time-col", "nope", "--value-col", "value"]
    )
    assert run.exit_code == 1 and "--time-col 'nope': no such column" in run.output


def test_cli_says_the_forecast_table_is_not_written_without_output(tmp_path):
    source = tmp_path / "one.csv"
    _synthetic(ids=("a",), hours=24 * 6).drop("id").write_csv(source)
    common = [str(source), "--time-col", "time", "--value-col", "value", "--horizon", "24",
              "--backtest-windows", "2", "--models", "SeasonalNaive"]  # fmt: skip
    run = CliRunner().invoke(forecast_command, common)
    assert run.exit_code == 0, run.output
    # The scores stay the whole of stdout: that is what scripts parse.
    assert set(json.loads(run.stdout)["series"]) == {"value"}
    note = " ".join(line for line in run.stderr.splitlines() if line.startswith("note:"))
    assert "forecast table" in note and "--output PATH" in note, run.stderr
    output = tmp_path / "forecast.csv"
    written = CliRunner().invoke(forecast_command, [*common, "--output", str(output)])
    assert written.exit_code == 0 and "note:" not in written.stderr, written.stderr
    assert pl.read_csv(output).height == 24


def test_cli_refuses_a_freq_finer_than_the_data(tmp_path):
    source = tmp_path / "hourly.csv"
    _synthetic(ids=("a",), hours=24 * 6).drop("id").write_csv(source)
    common = [str(source), "--time-col", "time", "--value-col", "value"]
    run = CliRunner().invoke(forecast_command, [*common, "--freq", "1s"])
    assert run.exit_code == 2, run.output
    message = " ".join(run.output.split())
    assert "--freq" in message and "'1s'" in message and "1h" in message, message
    # As fine as the data, or coarser, is what resampling is for.
    coarser = CliRunner().invoke(
        forecast_command,
        [*common, "--freq", "2h", "--horizon", "12", "--backtest-windows", "2",
         "--models", "SeasonalNaive", "--output", str(tmp_path / "f.csv")],
    )  # fmt: skip
    assert coarser.exit_code == 0, coarser.output
    assert json.loads(coarser.stdout)["freq"] == "2h"


def test_cli_series_at_two_steps_are_read_at_a_step_one_of_them_has(tmp_path):
    # An hourly and a two-hourly series: the mean of the two middle steps, 90 minutes, was
    # the default (a step neither has, a "day" of 16 steps, b carried over a quarter of them)
    # and `--freq 1h`, series a's own step, was refused as finer than "the data's" 90m.
    hourly = _synthetic(ids=("a",), hours=24 * 8)
    two_hourly = _synthetic(ids=("b",), hours=24 * 8).gather_every(2)
    source = tmp_path / "mixed.csv"
    pl.concat([hourly, two_hourly]).write_csv(source)
    common = [str(source), "--time-col", "time", "--value-col", "value", "--id-col", "id",
              "--models", "SeasonalNaive"]  # fmt: skip
    run = CliRunner().invoke(forecast_command, [*common, "--horizon", "12"])
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert (report["freq"], report["season_length"]) == ("2h", 12)
    assert "carry the previous value" not in run.stderr
    given = CliRunner().invoke(forecast_command, [*common, "--freq", "1h", "--horizon", "24"])
    assert given.exit_code == 0, given.output
    assert json.loads(given.stdout)["freq"] == "1h"
    finer = CliRunner().invoke(forecast_command, [*common, "--freq", "30m"])
    assert finer.exit_code == 2 and "step of 1h" in " ".join(finer.output.split())


@pytest.mark.parametrize("option", ["--time-col", "--value-col", "--id-col", "--supply-col"])
def test_cli_names_the_option_of_a_missing_column(tmp_path, option):
    source = tmp_path / "usage.csv"
    _synthetic(ids=("a",), hours=48).write_csv(source)
    columns = {"--time-col": "time", "--value-col": "value", "--id-col": "id"}
    args = [str(source), *itertools.chain.from_iterable(columns.items())]
    given = dict(zip(args[1::2], args[2::2], strict=True))
    given[option] = "nope"
    run = CliRunner().invoke(
        forecast_command, [str(source), *itertools.chain.from_iterable(given.items())]
    )
    assert run.exit_code == 1, run.output
    message = " ".join(run.output.split())
    assert f"{option} 'nope': no such column; the file has 'id', 'time', 'value'" in message, (
        message
    )


def _helios_series(days: int | None = None) -> pl.DataFrame:
    require_shared("capacity", "helios_earth_vc6YE.csv")
    usage = pl.concat(
        [load_helios(CAPACITY_DIR / f"helios_earth_{vc}.csv") for vc in ("vc3sl", "vc6YE", "vcMod")]
    )
    series = to_series(usage, freq="1h")
    if days:
        series = series.group_by("id", maintain_order=True).tail(24 * days)
    return series


@pytest.mark.realdata
def test_helios_backtest_fast_variant():
    # Daily horizon on the last two weeks: checks the real pipeline end to end in seconds.
    series = _helios_series(days=14)
    result = backtest(
        series, horizon=24, season_length=24, freq="1h", windows=4, evaluation_windows=2
    )
    assert result.scores.height == 3
    assert pooled_coverage(result, level=95) >= 0.8
    assert relative_mase(result.scores) < 1.5


@pytest.mark.realdata
@pytest.mark.scale
def test_helios_quality_bar():
    # The bar: hourly, one-week horizon, chosen on earlier windows, scored on the last.
    result = forecast(
        _helios_series(), horizon=168, season_length=24, freq="1h", backtest_windows=3
    )
    assert result.scores.get_column("held_out").all()
    assert pooled_coverage(result.backtest, level=95) >= 0.90
    assert relative_mase(result.scores) < 0.9


def test_cli_names_a_value_that_is_not_finite(tmp_path):
    # "nan" and "inf" parse as floats: taken as demand they made the scores null and printed
    # `Infinity`, which no JSON reader accepts.
    for text in ("nan", "inf", "-inf"):
        bad = tmp_path / "bad.csv"
        bad.write_text(f"time,value\n2024-01-01 00:00:00,1\n2024-01-01 01:00:00,{text}\n")
        run = CliRunner().invoke(
            forecast_command, [str(bad), "--time-col", "time", "--value-col", "value"]
        )
        assert run.exit_code == 1, run.output
        assert f"row 2 (line 3), column 'value': not a finite number: '{text}'" in run.output


def test_cli_reads_a_fraction_after_ten_thousand_whole_numbers(tmp_path):
    # Per-minute telemetry whose first week of counts is whole: the column was typed from its
    # first 10,000 rows, and the first fraction after them refused the whole file with Polars'
    # advice to raise `infer_schema_length`, naming no row.
    minutes = 12_000
    values = [str(10 + (m // 60) % 5) for m in range(minutes)]
    values[11_000] = "12.5"
    source = tmp_path / "usage.csv"
    pl.DataFrame(
        {
            "time": [dt.datetime(2024, 1, 1) + dt.timedelta(minutes=m) for m in range(minutes)],
            "value": values,
        }
    ).write_csv(source)
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--freq", "1h",
         "--horizon", "24", "--models", "SeasonalNaive"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    # A word there still names its row and column.
    values[11_000] = "n/a"
    pl.DataFrame({"time": ["2024-01-01 00:00:00"] * minutes, "value": values}).write_csv(source)
    run = CliRunner().invoke(
        forecast_command, [str(source), "--time-col", "time", "--value-col", "value"]
    )
    assert run.exit_code == 1, run.output
    assert "row 11001 (line 11002), column 'value': not a number: 'n/a'" in run.output


def test_cli_names_a_timestamp_given_twice_with_different_values(tmp_path):
    bad = tmp_path / "twice.csv"
    bad.write_text(
        "team,time,value\na,2024-01-01 00:00:00,1\nb,2024-01-01 00:00:00,7\n"
        "a,2024-01-01 01:00:00,2\na,2024-01-01 00:00:00,999\n"
    )
    run = CliRunner().invoke(
        forecast_command,
        [str(bad), "--time-col", "time", "--value-col", "value", "--id-col", "team"],
    )
    assert run.exit_code == 1, run.output
    assert (
        "row 4 (line 5), column 'time': series 'a' already has 2024-01-01 00:00:00 "
        "(row 1 (line 2)) with another value" in run.output
    )


def test_cli_counts_a_row_given_twice_once_in_a_coarser_step(tmp_path):
    # Two overlapping exports put together: the afternoons of the last week are in the file
    # twice. Each day is 10 in the morning and 30 in the afternoon, a mean of 20; the daily
    # mean counted the repeated afternoons twice and read 23.33.
    hours = [START + dt.timedelta(hours=h) for h in range(24 * 35)]
    frame = pl.DataFrame({"time": hours, "value": [10.0 if t.hour < 12 else 30.0 for t in hours]})
    overlap = frame.filter((pl.col("time") >= hours[-24 * 7]) & (pl.col("time").dt.hour() >= 12))
    source = tmp_path / "overlap.csv"
    pl.concat([frame, overlap]).write_csv(source)
    output = tmp_path / "forecast.csv"
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--freq", "1d",
         "--horizon", "7", "--season-length", "7", "--models", "SeasonalNaive",
         "--output", str(output)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert pl.read_csv(output).get_column("forecast").to_list() == [20.0] * 7
    # The copy kept has the supply either copy gives: 100 at first, 15 on the last row's
    # repeat or on the last row itself (its repeat giving none).
    for last, repeat in ((None, 15.0), (15.0, None)):
        supplied = pl.concat([frame, frame.tail(1)]).with_columns(
            pl.Series("supply", [100.0] + [None] * (frame.height - 2) + [last, repeat])
        )
        supplied.write_csv(source)
        run = CliRunner().invoke(
            forecast_command,
            [str(source), "--time-col", "time", "--value-col", "value", "--supply-col",
             "supply", "--freq", "1d", "--horizon", "7", "--season-length", "7", "--models",
             "SeasonalNaive"],
        )  # fmt: skip
        assert run.exit_code == 0, run.output
        assert json.loads(run.stdout)["series"]["value"]["first_exceeds_supply"] is not None


def test_cli_says_how_many_missing_steps_it_filled(tmp_path):
    frame = _synthetic(ids=("a",), hours=24 * 6).drop("id")
    source = tmp_path / "gap.csv"
    frame.filter((pl.col("time") < START + dt.timedelta(hours=30)) |
                 (pl.col("time") >= START + dt.timedelta(hours=40))).write_csv(source)  # fmt: skip
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--freq", "1h",
         "--horizon", "24", "--backtest-windows", "2", "--models", "SeasonalNaive"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert (
        "note: series 'value': 10 of 144 steps had no sample and carry the previous value "
        "forward (longest gap 10 steps, from 2024-01-02 06:00:00)" in run.stderr
    )


@pytest.mark.parametrize("calibrate", ["--calibrate", "--no-calibrate"])
def test_cli_scores_a_series_that_ends_early_at_its_own_last_origin(tmp_path, calibrate):
    hours = 24 * 14
    frame = (
        _synthetic(hours=hours)
        .filter((pl.col("id") == "a") | (pl.col("time") < START + dt.timedelta(hours=hours - 100)))
        .with_columns(pl.lit(60.0).alias("supply"))
    )
    source = tmp_path / "ends.csv"
    frame.write_csv(source)
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--id-col", "id",
         "--horizon", "24", "--models", "SeasonalNaive", "--supply-col", "supply", calibrate],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert set(report["series"]) == {"a", "b"}
    for entry in report["series"].values():
        assert entry["mase"] is not None and entry["coverage_95"] is not None
        assert "first_exceeds_supply" in entry


@pytest.mark.parametrize(
    ("freq", "season", "horizon"),
    [("1h", 24, 168), ("1d", 7, 28), ("1w", 52, 13), ("15m", 96, 672), ("2h", 12, 84),
     ("30m", 48, 336), ("90m", 16, 112), ("1m", 1440, 10080), ("1440m", 7, 28), ("2d", 7, 28),
     ("7d", 7, 28)],
)  # fmt: skip
def test_default_season_is_a_day_and_horizon_a_week_of_sub_daily_steps(freq, season, horizon):
    from annotation_pipelines.forecasting.command import default_season_and_horizon

    assert default_season_and_horizon(freq) == (season, horizon)


def test_frequency_is_inferred_per_series():
    from annotation_pipelines.forecasting.command import _infer_freq

    hourly = _synthetic(hours=48)
    # Series b sampled on the half hour: pooled, the times are 30 minutes apart.
    offset = hourly.with_columns(
        pl.when(pl.col("id") == "b")
        .then(pl.col("time") + dt.timedelta(minutes=30))
        .otherwise(pl.col("time"))
    )
    assert _infer_freq(offset) == "1h"
    # Each series' own step, the median over series: one 15-minute series among hourly ones.
    quarter = pl.DataFrame(
        {"id": "q", "time": [START + dt.timedelta(minutes=15 * k) for k in range(192)],
         "value": 1.0}
    )  # fmt: skip
    assert _infer_freq(pl.concat([hourly, quarter.head(10)])) == "1h"
    assert _infer_freq(quarter) == "15m"
    assert _infer_freq(hourly.head(1)) == "1d"
    weekly = pl.DataFrame({"id": "w", "time": [START + dt.timedelta(weeks=k) for k in range(9)]})
    assert _infer_freq(weekly) == "1w"
    fortnightly = weekly.gather_every(2)
    assert _infer_freq(fortnightly) == "14d"


def test_cli_reads_weekly_data_in_weeks_a_year_a_season_and_a_quarter_ahead(tmp_path):
    # Four years of weekly demand on Mondays with a yearly cycle: read as "7d" it got a
    # seven-week season, 28 weeks ahead, and every time moved to a Thursday.
    weeks = np.arange(208)
    mondays = [dt.datetime(2020, 1, 6) + dt.timedelta(weeks=int(k)) for k in weeks]
    source = tmp_path / "weekly.csv"
    pl.DataFrame(
        {"time": mondays, "demand": 100 + 10 * np.sin(2 * np.pi * weeks / 52)}
    ).write_csv(source)  # fmt: skip
    output = tmp_path / "forecast.csv"
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "demand", "--models",
         "SeasonalNaive", "--output", str(output)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert (report["freq"], report["season_length"], report["horizon"]) == ("1w", 52, 13)
    times = pl.read_csv(output, try_parse_dates=True)["time"].dt.replace_time_zone(None)
    assert times.to_list() == [mondays[-1] + dt.timedelta(weeks=k) for k in range(1, 14)]
    # As given with --freq 1w.
    given = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "demand", "--models",
         "SeasonalNaive", "--freq", "1w"],
    )  # fmt: skip
    assert json.loads(given.stdout) == report


@pytest.mark.parametrize(
    ("freq", "step"),
    [("1h", dt.timedelta(hours=1)), ("15m", dt.timedelta(minutes=15)),
     ("1d", dt.timedelta(days=1)), ("1w", dt.timedelta(weeks=1))],
)  # fmt: skip
def test_lightgbm_forecasts_the_steps_after_the_history_at_any_step(freq, step):
    # The step reached mlforecast in pandas' spelling ("1D", "15min", "1W"), which the polars
    # frames' continuity check refused: the default rule failed on all but hourly data.
    from annotation_pipelines.forecasting.learned import LEARNED, learned_forecast

    t = np.arange(300)
    history = pl.DataFrame(
        {"id": "a", "time": [START + int(k) * step for k in t],
         "value": 100 + 10 * np.sin(2 * np.pi * t / 7)}
    )  # fmt: skip
    result = learned_forecast(history, horizon=3, freq=freq, season_length=7)
    assert result["time"].to_list() == [START + (299 + k) * step for k in (1, 2, 3)]
    assert result[LEARNED].is_finite().all()


def test_cli_defaults_for_quarter_hourly_data_are_a_day_long_season(tmp_path):
    t = np.arange(96 * 10)
    source = tmp_path / "q15.csv"
    pl.DataFrame(
        {"time": [START + dt.timedelta(minutes=15 * int(k)) for k in t],
         "value": 50 + 10 * np.sin(2 * np.pi * t / 96)}
    ).write_csv(source)  # fmt: skip
    args = [str(source), "--time-col", "time", "--value-col", "value", "--models", "SeasonalNaive"]
    run = CliRunner().invoke(forecast_command, [*args, "--horizon", "96"])
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert (report["freq"], report["season_length"], report["horizon"]) == ("15m", 96, 96)
    # Ten days are too few for the default week ahead (672 steps): a clear error, not 15 hours.
    run = CliRunner().invoke(forecast_command, args)
    assert run.exit_code == 1 and "shorter --horizon" in run.output


def _strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_cli_prints_null_for_a_score_that_is_not_finite(tmp_path):
    # Flat at 10 until the last day, then a step to 30: the seasonal naive's in-sample scale is
    # zero before the step, so its MASE (and the ratio) are infinite on the held-out window.
    hours = 24 * 20
    source = tmp_path / "step.csv"
    pl.DataFrame(
        {"time": [START + dt.timedelta(hours=h) for h in range(hours)],
         "value": [10.0] * (hours - 24) + [30.0] * 24}
    ).write_csv(source)  # fmt: skip
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--models", "SeasonalNaive",
         "--horizon", "24"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = _strict_json(run.stdout)
    assert report["series"]["value"]["mase"] is None


def test_cli_refuses_to_write_the_forecast_over_its_input(tmp_path, monkeypatch):
    source = tmp_path / "usage.csv"
    _synthetic(ids=("a",), hours=24 * 6).drop("id").write_csv(source)
    before = source.read_bytes()
    monkeypatch.chdir(tmp_path)
    # Any spelling of the same file: the telemetry was replaced by 24 forecast rows.
    for output in ("usage.csv", "./usage.csv", str(source)):
        run = CliRunner().invoke(
            forecast_command,
            ["usage.csv", "--time-col", "time", "--value-col", "value", "--horizon", "24",
             "--backtest-windows", "2", "--models", "SeasonalNaive", "--output", output],
        )  # fmt: skip
        # As `aggregate` and `replay` refuse theirs: before any work, the input untouched.
        assert run.exit_code == 1, run.output
        assert "would overwrite the input usage.csv; write elsewhere" in run.output
        assert source.read_bytes() == before


def test_cli_names_a_model_given_twice_before_reading_the_input(tmp_path):
    run = CliRunner().invoke(
        forecast_command,
        [str(tmp_path / "absent.csv"), "--time-col", "time", "--value-col", "value",
         "--models", "AutoETS,SeasonalNaive,AutoETS"],
    )  # fmt: skip
    assert run.exit_code == 2, run.output
    assert "--models" in run.output and "AutoETS given twice" in run.output


@pytest.mark.parametrize("calibrate", ["--calibrate", "--no-calibrate"])
def test_cli_history_shorter_than_a_week_leaves_the_weekly_naive_out(tmp_path, calibrate):
    # A weekly seasonal naive has nothing to repeat on less than a week of hourly history: it
    # forecast NaN, and so did the default mean of every candidate, in every row of the table,
    # exit 0 with coverage 0.0.
    source = tmp_path / "hourly.csv"
    _synthetic(ids=("a",), hours=100).drop("id").write_csv(source)
    output = tmp_path / "forecast.csv"
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--horizon", "4",
         calibrate, "--output", str(output)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert "SeasonalNaive168" not in report["models"] and "AutoETS" in report["models"]
    table = pl.read_csv(output)
    assert table.height == 4
    for column in ("forecast", "lo_80", "hi_80", "lo_95", "hi_95"):
        assert table[column].is_finite().all(), column
    assert report["series"]["value"]["mase"] is not None
    # Asked for by name, it is an error rather than a table of NaN.
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--horizon", "4",
         calibrate, "--models", "SeasonalNaive,SeasonalNaive168"],
    )  # fmt: skip
    assert run.exit_code == 1
    assert "SeasonalNaive168 repeats a season of 168 steps" in run.output


@pytest.mark.parametrize("calibrate", ["--calibrate", "--no-calibrate"])
def test_cli_models_listed_are_the_members_of_the_mean(tmp_path, calibrate):
    # The seasonal naive, kept to score the others against, was also averaged in:
    # `--models AutoTheta,MSTL` shipped mean(SeasonalNaive+AutoTheta+MSTL).
    from annotation_pipelines.forecasting.ensemble import candidate_forecasts

    history = _synthetic(ids=("a",), hours=24 * 9)
    source = tmp_path / "hourly.csv"
    history.drop("id").write_csv(source)
    output = tmp_path / "forecast.csv"
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--horizon", "24",
         "--models", "AutoTheta,MSTL", calibrate, "--output", str(output)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["models"] == ["AutoTheta", "MSTL"]
    assert report["series"]["value"]["model"] == "mean(AutoTheta+MSTL)"
    assert report["series"]["value"]["seasonal_naive_mase"] is not None
    if calibrate == "--calibrate":
        members = candidate_forecasts(
            history.with_columns(pl.lit("value").alias("id")), horizon=24, season_length=24,
            freq="1h", models=["AutoTheta", "MSTL"],
        )  # fmt: skip
        expected = ((members["AutoTheta"] + members["MSTL"]) / 2).clip(lower_bound=0.0)
        assert np.allclose(pl.read_csv(output)["forecast"].to_numpy(), expected.to_numpy())


@pytest.mark.parametrize("calibrate", ["--calibrate", "--no-calibrate"])
def test_cli_forecasts_huge_values_without_nan(tmp_path, calibrate):
    # Finite, but squares overflow: LightGBM's forecast and the models' own intervals were NaN
    # at 1e300, shipped with exit 0 and coverage figures.
    frame = _synthetic(ids=("a",), hours=24 * 12).drop("id")
    # Below 1 at most, so that 2**1000 times it is fit as these very values, scaled back.
    frame = frame.with_columns(pl.col("value") / 2.0 ** math.frexp(frame["value"].max())[1])
    rows = {}
    for scale in (1.0, 2.0**1000):
        source = tmp_path / "usage.csv"
        output = tmp_path / "forecast.csv"
        frame.with_columns(pl.col("value") * scale).write_csv(source)
        run = CliRunner().invoke(
            forecast_command,
            [str(source), "--time-col", "time", "--value-col", "value", "--horizon", "24",
             "--backtest-windows", "2" if calibrate == "--no-calibrate" else "5", calibrate,
             "--output", str(output)],
        )  # fmt: skip
        assert run.exit_code == 0, run.output
        report = _strict_json(run.stdout)
        written = pl.read_csv(output)
        bounds = ["lo_95", "lo_80", "forecast", "hi_80", "hi_95"]
        assert written.select(pl.all_horizontal(pl.col(bounds).is_finite())).to_series().all()
        for low, high in itertools.pairwise(bounds):
            assert (written[low] <= written[high]).all()
        rows[scale] = (written.select(bounds) / scale, report)
    (small, small_report), (huge, huge_report) = rows.values()
    # A power of two scales every figure exactly; the scores are the same figures.
    assert np.array_equal(small.to_numpy(), huge.to_numpy())
    assert (
        huge_report["series"]["value"]["coverage_95"]
        == (small_report["series"]["value"]["coverage_95"])
    )
    assert huge_report["winkler_95"] == pytest.approx(small_report["winkler_95"] * 2.0**1000)


def test_cli_without_calibration_backtests_on_as_many_horizons_as_fit(tmp_path):
    # 28 hourly days hold two week-long origins after the fit's 240 hours, not three: the
    # default asked for three and stopped ("needs at least 744") on input two fit.
    source = tmp_path / "four_weeks.csv"
    _synthetic(ids=("a",), hours=24 * 28).drop("id").write_csv(source)
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--no-calibrate",
         "--models", "SeasonalNaive"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = _strict_json(run.stdout)
    assert report["horizon"] == 168 and report["backtest_windows"] == 2


@pytest.mark.parametrize("calibrate", ["--calibrate", "--no-calibrate"])
def test_cli_sets_a_series_too_short_aside_and_forecasts_the_others(tmp_path, calibrate):
    # A series that joined a day ago stopped the forecast of every other series.
    frame = pl.concat([_synthetic(ids=("a", "b"), hours=24 * 12),
                       _synthetic(ids=("young",), hours=30)])  # fmt: skip
    source = tmp_path / "fleet.csv"
    frame.write_csv(source)
    output = tmp_path / "forecast.csv"
    args = [
        str(source),
        "--time-col",
        "time",
        "--value-col",
        "value",
        "--id-col",
        "id",
        "--horizon",
        "24",
        "--models",
        "SeasonalNaive",
        calibrate,
        "--output",
        str(output),
    ]
    run = CliRunner().invoke(forecast_command, args)  # fmt: skip
    assert run.exit_code == 0, run.output
    report = _strict_json(run.stdout)
    assert set(report["series"]) == {"a", "b"}
    assert list(report["set_aside"]) == ["young"]
    assert report["set_aside"]["young"].startswith("30 points; a 24-step backtest over")
    assert "note: series 'young' set aside: 30 points" in run.stderr
    assert set(pl.read_csv(output)["id"]) == {"a", "b"}
    # With every series too short, the backtest's own error as before.
    alone = tmp_path / "young.csv"
    _synthetic(ids=("young",), hours=30).write_csv(alone)
    run = CliRunner().invoke(forecast_command, [str(alone), *args[1:]])
    assert run.exit_code == 1 and "series 'young' has 30 points" in run.output


def test_cli_names_a_time_zone_given_for_some_times_only(tmp_path):
    # "2024-01-01T01:00:00" was called "not a timestamp" because the first time had a zone.
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("time,value\n2024-01-01T00:00:00Z,1\n2024-01-01T01:00:00,2\n")
    run = CliRunner().invoke(
        forecast_command, [str(mixed), "--time-col", "time", "--value-col", "value"]
    )
    assert run.exit_code == 1, run.output
    assert (
        "row 2 (line 3), column 'time': a time in another form than the column's first (with or "
        "without a time zone); give every time the same way: '2024-01-01T01:00:00'"
    ) in run.output


def test_cli_names_the_season_length_among_what_makes_the_history_short(tmp_path):
    source = tmp_path / "usage.csv"
    _synthetic(ids=("a",), hours=24 * 12).drop("id").write_csv(source)
    run = CliRunner().invoke(
        forecast_command,
        [str(source), "--time-col", "time", "--value-col", "value", "--season-length", "1000"],
    )
    assert run.exit_code == 1 and "a shorter --season-length" in run.output


def test_set_aside_short_keeps_a_series_the_calibrated_backtest_can_take():
    # The series set aside and the backtest's own refusal read one minimum.
    from annotation_pipelines.forecasting.ensemble import (
        backtest_minimum,
        default_step,
        set_aside_short,
    )

    step = default_step(horizon=24, season_length=24)
    minimum = backtest_minimum(windows=2, step=step, horizon=24, season_length=24)
    assert minimum == step + 24 + 3 * 24 + 24
    frame = pl.concat(
        [_synthetic(ids=("enough",), hours=minimum), _synthetic(ids=("short",), hours=minimum - 1)]
    )
    kept, reasons = set_aside_short(
        frame, horizon=24, season_length=24, backtest_windows=2, calibrate=True
    )
    assert kept["id"].unique().to_list() == ["enough"] and list(reasons) == ["short"]


def test_too_short_a_series_is_not_told_to_use_fewer_windows_it_did_not_ask_for(tmp_path):
    # Without --backtest-windows the command already takes the fewest windows the options
    # allow, so advising fewer sent users to an option that could not help.
    rows = [f"2024-01-01T{hour:02d}:00:00,{hour}" for hour in range(10)]
    (tmp_path / "short.csv").write_text("time,value\n" + "\n".join(rows) + "\n")
    base = [str(tmp_path / "short.csv"), "--time-col", "time", "--value-col", "value"]
    default = CliRunner().invoke(forecast_command, base)
    assert default.exit_code != 0
    assert "needs at least" in default.output and "1 window(s)" in default.output
    assert "--backtest-windows" not in default.output
    asked = CliRunner().invoke(forecast_command, [*base, "--backtest-windows", "3"])
    assert "3 window(s)" in asked.output and "fewer --backtest-windows" in asked.output
