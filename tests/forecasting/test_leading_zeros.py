"""Months-ahead bands of a series whose history starts with zeros: an export that lists every
series on the fleet's calendar, zero before a series existed, is read as the series starting at
its first nonzero value, in the series path and the reconciled path alike."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.forecasting.hierarchy import Hierarchy, build_hierarchy
from annotation_pipelines.forecasting.planning import spread_note
from annotation_pipelines.forecasting.scenarios import (
    MIN_FIT_DAYS,
    Launch,
    SeriesPaths,
    pooled_spreads,
    reconciled_scenarios,
    scenario_backtest,
    scenario_paths,
)

START = dt.date(2026, 1, 5)  # a Monday


def _series(series_id: str, first: int, last: int, level: float, *, seed: int) -> pl.DataFrame:
    """Days `first` .. `last` - 1 after START of a noisy, slowly growing series."""
    rng = np.random.default_rng(seed)
    t = np.arange(first, last)
    return pl.DataFrame(
        {"id": series_id, "time": [START + dt.timedelta(days=int(d)) for d in t],
         "value": level * (1 + 0.002 * (t - first)) * (1 + 0.1 * rng.standard_normal(t.size))}
    )  # fmt: skip


def _fleet(days: int = 140) -> pl.DataFrame:
    """Five series with the whole calendar, one that started 60 days before its end (`late`)
    and one 20 days before (`young`): the rows of each only from its first day."""
    frames = [_series(f"s{k}", 0, days, 20.0 * (k + 1), seed=k) for k in range(5)]
    frames.append(_series("late", days - 60, days, 50.0, seed=10))
    frames.append(_series("young", days - 20, days, 80.0, seed=11))
    return pl.concat(frames)


def _zero_filled(daily: pl.DataFrame, ids: list[str]) -> pl.DataFrame:
    """`daily` with each of `ids` given a zero on every day of the calendar before its first."""
    calendar = daily.select(pl.col("time").unique()).sort("time")
    padding = []
    for series_id in ids:
        first = daily.filter(pl.col("id") == series_id)["time"].min()
        padding.append(
            calendar.filter(pl.col("time") < first).select(
                pl.lit(series_id).alias("id"), "time", pl.lit(0.0).alias("value")
            )
        )
    return pl.concat([daily, *padding]).sort("id", "time")


def _hierarchy(daily: pl.DataFrame) -> Hierarchy:
    ids = sorted(daily["id"].unique())
    groups = ["x" if i in ("s0", "s1", "late", "young") else "y" for i in ids]
    return build_hierarchy(pl.DataFrame({"id": ids, "group": groups}), levels=["group"])


def _assert_same(got: dict[str, SeriesPaths], expected: dict[str, SeriesPaths]) -> None:
    assert list(got) == list(expected)
    for node, path in expected.items():
        assert got[node].spread_source == path.spread_source, node
        assert got[node].days == path.days and got[node].weeks == path.weeks, node
        assert got[node].bands.keys() == path.bands.keys()
        for key, band in path.bands.items():
            np.testing.assert_array_equal(got[node].bands[key], band, err_msg=f"{node} {key}")


def test_a_series_zero_before_it_started_gets_the_bands_of_its_rows_from_its_first_value():
    # Zero-filled, an old-looking series' errors from its zero days, times today's level over
    # a level of about zero, made a P90 14 times its P50. Its zeros are its absence: it is the
    # series of its rows from its first nonzero value, in both paths, to the last bit.
    rows = _fleet()
    filled = _zero_filled(rows, ["late", "young"])
    assert filled.group_by("id").len()["len"].unique().to_list() == [140]
    peers = {**{f"s{k}": "x" for k in range(5)}, "late": "x", "young": "x"}
    launch = Launch(name="l", series_id="late", start=START + dt.timedelta(days=150),
                    accelerators=10)  # fmt: skip
    options = {"horizon_days": 56, "peers": peers, "launches": [launch]}
    expected = scenario_paths(rows, **options)
    _assert_same(scenario_paths(filled, **options), expected)
    assert expected["late"].spread_source == "own"
    assert expected["young"].spread_source == "pooled_class"
    hierarchy = _hierarchy(rows)
    reconciled = reconciled_scenarios(rows, hierarchy, **options)
    _assert_same(reconciled_scenarios(filled, hierarchy, **options).paths, reconciled.paths)
    assert reconciled.paths["young"].spread_source == "pooled_class"
    # The fleet's calendar itself zero before every series began: the same again.
    early = pl.concat([filled, *(
        pl.DataFrame({"id": i, "time": [START - dt.timedelta(days=d) for d in range(1, 8)],
                      "value": 0.0})
        for i in sorted(rows["id"].unique())
    )])  # fmt: skip
    _assert_same(scenario_paths(early, **options), expected)
    _assert_same(reconciled_scenarios(early, hierarchy, **options).paths, reconciled.paths)
    # A P90 of a sensible size: no more than its P50 again (zero-filled and read as history,
    # 2.6 and 5.0 times it on the last day in the series path).
    for paths in (expected, reconciled.paths):
        for node in ("late", "young"):
            band = paths[node].bands
            assert np.all(band["p90"] <= 2 * band["p50"]), (node, band)


def test_zeros_after_a_series_first_value_are_demand():
    # A series idle for three weeks after it started is observed at zero then: those days stay
    # its history (it is not read as starting again after them).
    rows = _fleet()
    idle = (pl.col("id") == "s2") & pl.col("time").is_between(
        START + dt.timedelta(days=50), START + dt.timedelta(days=70)
    )
    gapped = rows.with_columns(pl.when(idle).then(0.0).otherwise(pl.col("value")).alias("value"))
    cut = gapped.filter((pl.col("id") != "s2") | (pl.col("time") > START + dt.timedelta(days=70)))
    with_gap = scenario_paths(gapped, horizon_days=28)["s2"]
    restarted = scenario_paths(cut, horizon_days=28)["s2"]
    assert with_gap.spread_source == restarted.spread_source == "own"
    assert not np.array_equal(with_gap.bands["p90"], restarted.bands["p90"])
    # Zeros inside the history are the same observations filled or not.
    filled = _zero_filled(gapped, ["late"])
    np.testing.assert_array_equal(scenario_paths(filled, horizon_days=28)["s2"].bands["p90"],
                                  with_gap.bands["p90"])  # fmt: skip


def test_a_series_zero_on_every_day_has_not_started_and_has_no_spread():
    rows = _fleet()
    calendar = rows.filter(pl.col("id") == "s0").select("time")
    idle = calendar.select(pl.lit("idle").alias("id"), "time", pl.lit(0.0).alias("value"))
    daily = pl.concat([rows, idle])
    # A planned launch on it is its only demand.
    launch = Launch(name="new", series_id="idle", start=START + dt.timedelta(days=147),
                    accelerators=30, ramp_days=7)  # fmt: skip
    alone = scenario_paths(rows, horizon_days=56)
    paths = scenario_paths(daily, horizon_days=56, launches=[launch])
    _assert_same({k: v for k, v in paths.items() if k != "idle"}, alone)
    band = paths["idle"].bands
    assert paths["idle"].spread_source == "not_started"
    assert paths["idle"].days == alone["s0"].days
    np.testing.assert_array_equal(band["p90"], band["p50"])
    np.testing.assert_array_equal(band["p50"], band["mean"])
    assert band["p50"][:7].tolist() == [0.0] * 7 and band["p50"][-1] == 30.0
    # Reconciled: in a sum it adds nothing, and the sum says a member has not started.
    hierarchy = build_hierarchy(
        pl.DataFrame({"id": [*sorted(rows["id"].unique()), "idle"],
                      "group": ["x", "x", "x", "x", "y", "y", "y", "x"]}),
        levels=["group"],
    )  # fmt: skip
    reconciled = reconciled_scenarios(daily, hierarchy, horizon_days=56, launches=[launch])
    band = reconciled.paths["idle"].bands
    assert reconciled.paths["idle"].spread_source == "not_started"
    np.testing.assert_array_equal(band["p90"], band["p50"])
    np.testing.assert_allclose(band["p50"], paths["idle"].bands["p50"], atol=1e-6)
    assert reconciled.spreads["idle"].source == "not_started"
    # A requirement summing it is that of the others plus its launch, and says it has a member
    # not started.
    summed, others = (
        reconciled.combination({"s0": 1.0, "idle": 1.0}),
        reconciled.combination({"s0": 1.0}),
    )
    assert (summed.spread_source, others.spread_source) == ("own+not_started", "own")
    launched = reconciled.paths["idle"].bands
    for key, band in others.bands.items():
        extra = launched["weekly_mean" if key.startswith("weekly") else "mean"]
        np.testing.assert_allclose(summed.bands[key], band + extra, atol=1e-9)
    note = spread_note(
        pl.DataFrame({"id": ["idle"], "spread_source": ["not_started"], "p90_spread": [0.0]})
    )
    assert "idle (not_started, 0.0)" in note and "not_started: zero on every day" in note
    # A fleet of which no series has started: nothing to fit, no crash, every band zero.
    nothing = idle.with_columns(pl.lit("other").alias("id"))
    for paths in (
        scenario_paths(pl.concat([idle, nothing]), horizon_days=28),
        reconciled_scenarios(pl.concat([idle, nothing]), build_hierarchy(
            pl.DataFrame({"id": ["idle", "other"], "group": ["x", "x"]}), levels=["group"]
        ), horizon_days=28).paths,
    ):  # fmt: skip
        assert {p.spread_source for p in paths.values()} == {"not_started"}
        assert all(np.all(b == 0) for p in paths.values() for b in p.bands.values())


def _short_fleet() -> pl.DataFrame:
    """`_fleet` with `young` there for its last 10 days only (fewer than `MIN_FIT_DAYS`) and a
    series of exactly `MIN_FIT_DAYS` days (`y14`), the youngest that is fit."""
    rows = _fleet().filter(
        (pl.col("id") != "young") | (pl.col("time") >= START + dt.timedelta(days=130))
    )
    return pl.concat([rows, _series("y14", 140 - MIN_FIT_DAYS, 140, 40.0, seed=12)])


def _last_week_mean(daily: pl.DataFrame, series_id: str) -> float:
    values = daily.filter(pl.col("id") == series_id).sort("time")["value"].to_numpy()
    return float(values[-7:].mean())


def _relative_spread(path: SeriesPaths, level: float) -> np.ndarray:
    return (path.bands["weekly_p90"] - path.bands["weekly_p50"]) / level


def _flat_rule_pool(daily: pl.DataFrame, donors: list[str], *, window: int,
                    horizon_days: int) -> np.ndarray:  # fmt: skip
    """The weekly pooled q90 at level 1 of the flat rule's relative errors of `donors`: at
    every day of a donor a month or more after its first that is the weekday the forecast
    starts on, the mean of its `window` days before, carried flat `horizon_days` ahead."""
    first = daily["time"].max() + dt.timedelta(days=1)
    relative = {}
    for donor in donors:
        rows = daily.filter(pl.col("id") == donor).sort("time")
        values, days = rows["value"].to_numpy(), rows["time"].to_list()
        errors = []
        for origin in range(28, values.size - 1):
            if days[origin].weekday() != first.weekday():
                continue
            level = values[origin - window : origin].mean()
            ahead = np.full(horizon_days, np.nan)
            seen = values[origin : origin + horizon_days]
            ahead[: seen.size] = (seen - level) / max(1.0, level)
            errors.append(ahead)
        relative[donor] = np.array(errors)
    (spread,) = pooled_spreads(relative, ["new"], peers=None, first=first,
                               horizon_days=horizon_days, centered=False).values()  # fmt: skip
    return spread.weekly


SHORT_OPTIONS = {
    "horizon_days": 56,
    "peers": {**{f"s{k}": "x" for k in range(5)}, "late": "x", "young": "x", "y14": "x"},
    "launches": [Launch(name="n", series_id="young", start=START + dt.timedelta(days=150),
                        accelerators=10, ramp_days=7)],
}  # fmt: skip


def test_a_series_too_short_for_a_fit_is_planned_flat_at_its_last_weeks_mean():
    # A series 10 days old stopped the months-ahead plan of the whole fleet. It is planned at
    # its current level, flat, its launch added; its P90 spread is pooled from the errors of
    # that flat rule on the other series, and its source says both. The others keep their
    # bands to the last bit, and a zero-filled export is the same fleet.
    rows = _short_fleet()
    without = rows.filter(pl.col("id") != "young")
    paths = scenario_paths(rows, **SHORT_OPTIONS)
    _assert_same({k: v for k, v in paths.items() if k != "young"},
                 scenario_paths(without, **SHORT_OPTIONS))  # fmt: skip
    _assert_same(scenario_paths(_zero_filled(rows, ["young", "y14"]), **SHORT_OPTIONS), paths)
    short = paths["young"]
    assert short.spread_source == "short_pooled_class"
    assert paths["y14"].spread_source == "pooled_class"
    level = _last_week_mean(rows, "young")
    band = short.bands
    assert short.days == paths["s0"].days
    # Flat at the level until the launch starts (day 150, the forecast's 11th), then the ramp.
    np.testing.assert_array_equal(band["p50"][:10], np.full(10, level))
    np.testing.assert_allclose(band["p50"][-1], level + 10, rtol=1e-12)
    np.testing.assert_array_equal(band["mean"], band["p50"])
    assert np.all(band["p90"] > band["p50"])
    # Its spread relative to its level is the pool of the errors the flat rule itself makes on
    # the series with errors of their own (the 14-day `y14` is not one of them).
    donors = [f"s{k}" for k in range(5)] + ["late"]
    pool = _flat_rule_pool(rows, donors, window=7, horizon_days=56)
    np.testing.assert_allclose(_relative_spread(short, level), pool, rtol=1e-10)
    # Narrower than the pool of trend fits on `MIN_FIT_DAYS` days (the 14-day series'), which
    # miss by more than a flat level does and over-covered (0.99 of test days at or below P90).
    y14_level = float(rows.filter(pl.col("id") == "y14")["value"].mean())
    assert np.mean(pool) < 0.8 * np.mean(_relative_spread(paths["y14"], y14_level))


@pytest.mark.parametrize("path", ["series", "reconciled"])
def test_a_series_younger_than_a_week_pools_the_flat_rule_on_as_many_days(path):
    # Planned at the mean of its 3 days, its spread is that rule's on the donors: the mean of
    # their 3 days before each origin. The 10-day series keeps the pool of the week's mean.
    rows = pl.concat([_short_fleet(), _series("baby", 137, 140, 60.0, seed=13)])
    options = {**SHORT_OPTIONS, "peers": {**SHORT_OPTIONS["peers"], "baby": "x"}}
    paths = (
        scenario_paths(rows, **options)
        if path == "series"
        else reconciled_scenarios(rows, _hierarchy(rows), **options).paths
    )
    donors = [f"s{k}" for k in range(5)] + ["late"]
    for series_id, window in (("baby", 3), ("young", 7)):
        assert paths[series_id].spread_source == "short_pooled_class"
        level = _last_week_mean(rows, series_id)
        np.testing.assert_allclose(_relative_spread(paths[series_id], level),
                                   _flat_rule_pool(rows, donors, window=window, horizon_days=56),
                                   rtol=1e-10)  # fmt: skip


def test_a_series_too_short_for_a_fit_is_summed_into_the_reconciled_nodes_above_it():
    rows = _short_fleet()
    without = rows.filter(pl.col("id") != "young")
    hierarchy, fewer = _hierarchy(rows), _hierarchy(without)
    reconciled = reconciled_scenarios(rows, hierarchy, **SHORT_OPTIONS)
    alone = reconciled_scenarios(without, fewer, **SHORT_OPTIONS)
    _assert_same(reconciled_scenarios(_zero_filled(rows, ["young", "y14"]), hierarchy,
                                      **SHORT_OPTIONS).paths, reconciled.paths)  # fmt: skip
    short = reconciled.paths["young"]
    assert short.spread_source == "short_pooled_class"
    # Its P50 is the series path's (no fit to reconcile), and so is its spread: it is not
    # reconciled, so its donors' errors are the flat rule's on their own demand.
    series = scenario_paths(rows, **SHORT_OPTIONS)["young"]
    np.testing.assert_array_equal(short.bands["p50"], series.bands["p50"])
    assert np.all(short.bands["p90"] > short.bands["p50"])
    np.testing.assert_allclose(short.bands["p90"], series.bands["p90"], rtol=1e-12)
    np.testing.assert_allclose(short.bands["weekly_p90"], series.bands["weekly_p90"], rtol=1e-12)
    # Every node without it is the fleet's without it, to the last bit; a node with it is that
    # node's bands plus its own (its spread added, as if it peaked with them).
    above = {"x", "total"}
    _assert_same({n: reconciled.paths[n] for n in fewer.nodes if n not in above},
                 {n: alone.paths[n] for n in fewer.nodes if n not in above})  # fmt: skip
    for node in above:
        assert reconciled.paths[node].spread_source == "own+short_pooled_class", node
        for key, band in alone.paths[node].bands.items():
            np.testing.assert_allclose(reconciled.paths[node].bands[key],
                                       band + short.bands[key], rtol=1e-12)  # fmt: skip
    # A requirement with it is the others' plus its path; one without it is the same sum.
    others = {"s0": 1.0, "late": 1.0}
    np.testing.assert_array_equal(reconciled.combination(others).bands["p90"],
                                  alone.combination(others).bands["p90"])  # fmt: skip
    summed = reconciled.combination({**others, "young": 1.0})
    assert summed.spread_source == "own+short_pooled_class"
    for key, band in alone.combination(others).bands.items():
        np.testing.assert_allclose(summed.bands[key], band + short.bands[key], rtol=1e-12)
    note = spread_note(
        pl.DataFrame({"id": ["young"], "spread_source": ["short_pooled_class"],
                      "p90_spread": [3.0]})
    )  # fmt: skip
    assert "young (short_pooled_class, 3.0)" in note
    assert f"fewer than {MIN_FIT_DAYS} days" in note and "last 7 days" in note


@pytest.mark.parametrize("path", ["series", "reconciled"])
def test_a_fleet_of_short_series_only_is_planned_flat_and_says_nothing_was_pooled(path):
    # Days 3 and 12 of two series, nothing with a history to pool from: flat at the mean of the
    # days there are (fewer than a week: all of them), no spread.
    daily = pl.concat([_series("a", 128, 140, 30.0, seed=1), _series("b", 137, 140, 5.0, seed=2)])
    hierarchy = build_hierarchy(pl.DataFrame({"id": ["a", "b"], "group": ["x", "x"]}),
                                levels=["group"])  # fmt: skip
    paths = (
        scenario_paths(daily, horizon_days=28)
        if path == "series"
        else reconciled_scenarios(daily, hierarchy, horizon_days=28).paths
    )
    for series_id in ("a", "b"):
        band = paths[series_id].bands
        assert paths[series_id].spread_source == "short_none"
        np.testing.assert_allclose(band["p50"], _last_week_mean(daily, series_id), rtol=1e-12)
        np.testing.assert_array_equal(band["p90"], band["p50"])
    assert paths["b"].bands["p50"][0] == pytest.approx(
        float(daily.filter(pl.col("id") == "b")["value"].mean())
    )
    if path == "reconciled":
        total = paths["x"].bands["p50"]
        np.testing.assert_allclose(total, paths["a"].bands["p50"] + paths["b"].bands["p50"])


def test_scenario_backtest_counts_a_series_days_from_its_first_value():
    rows = pl.concat([_series(f"s{k}", 0, 300, 20.0 * (k + 1), seed=k) for k in range(3)])
    late = _series("late", 40, 300, 50.0, seed=9)
    # 260 days: enough for two windows of 42 days (at least 196); as enough zero-filled.
    daily = pl.concat([rows, late])
    scores = scenario_backtest(daily, horizon_days=42, windows=2)
    filled = scenario_backtest(_zero_filled(daily, ["late"]), horizon_days=42, windows=2)
    assert filled.equals(scores)
    # 130 days from its first value, 300 rows: too few for two windows of 42 days.
    short = _zero_filled(pl.concat([rows, _series("late", 170, 300, 50.0, seed=9)]), ["late"])
    with pytest.raises(ValueError, match="shortest series has 130 days"):
        scenario_backtest(short, horizon_days=42, windows=2)
    # A series that never started has nothing to score and does not shorten the others.
    idle = rows.filter(pl.col("id") == "s0").with_columns(id=pl.lit("idle"), value=pl.lit(0.0))
    with_idle = scenario_backtest(pl.concat([daily, idle]), horizon_days=42, windows=2)
    assert with_idle.equals(scores)
    # Nor does one too short for a fit: it has no origin to score from.
    short = _zero_filled(pl.concat([daily, _series("new", 290, 300, 50.0, seed=3)]), ["new"])
    assert scenario_backtest(short, horizon_days=42, windows=2).equals(scores)
