"""Hierarchical reconciliation: the hierarchy, coherence, hierarchicalforecast's own result,
reconciled backtests and months-ahead bands of nested series."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from annotation_pipelines.forecasting.capacity_config import CapacityConfig, load_capacity_config
from annotation_pipelines.forecasting.hierarchy import (
    METHODS,
    aggregate_history,
    build_hierarchy,
    node_values,
    projection,
    reconcile,
    reconciled_backtest,
    shrunk_covariance,
)
from annotation_pipelines.forecasting.planning import capacity_plan
from annotation_pipelines.forecasting.scenarios import (
    _point_and_errors,
    origin_levels,
    paths_from_errors,
    reconciled_scenarios,
    scenario_paths,
)
from annotation_pipelines.synthetic import generate_compute_usage

PROFILES = pl.DataFrame(
    {
        "id": ["a", "b", "c", "d", "e"],
        "cluster": ["x", "x", "y", "y", "z"],
        "workload_class": ["training", "inference", "training", "training", None],
    }
)


def test_hierarchy_nodes_and_summing_matrix():
    hierarchy = build_hierarchy(PROFILES, levels=["cluster", "workload_class"])
    # y has one class (y/training = y) and z one series: neither adds a node.
    assert hierarchy.nodes == ("total", "x", "y", "b", "a", "c", "d", "e")
    assert hierarchy.levels[:3] == ("total", "cluster", "cluster")
    assert hierarchy.bottom == ("b", "a", "c", "d", "e")
    np.testing.assert_array_equal(
        hierarchy.summing[:3], [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 0]]
    )
    np.testing.assert_array_equal(hierarchy.summing[3:], np.eye(5))
    one_cluster = build_hierarchy(PROFILES.head(2), levels=["cluster"])
    assert one_cluster.nodes == ("x", "a", "b")  # the cluster, not "total"
    with pytest.raises(ValueError, match="lack column"):
        build_hierarchy(PROFILES, levels=["accelerator_type"])


def test_a_hierarchy_without_some_series_is_the_one_built_from_the_others():
    # Series too short for a fit are reconciled without: the nodes they alone set apart go
    # (a cluster left with one series, a class now the same series as its cluster).
    more = {"id": ["f", "g"], "cluster": ["z", "x"], "workload_class": ["other", "training"]}
    profiles = pl.concat([PROFILES, pl.DataFrame(more)])
    levels = ["cluster", "workload_class"]
    hierarchy = build_hierarchy(profiles, levels=levels)
    ids = profiles["id"].to_list()
    for dropped in [[i] for i in ids] + [["a", "g"], ["c", "d"], ["e", "f"], ["a", "b", "g"]]:
        expected = build_hierarchy(profiles.filter(~pl.col("id").is_in(dropped)), levels=levels)
        got = hierarchy.without(dropped)
        assert (got.nodes, got.levels) == (expected.nodes, expected.levels), dropped
        np.testing.assert_array_equal(got.summing, expected.summing)
    assert hierarchy.without(["a", "b", "g"]).nodes == ("total", "y", "z", "c", "d", "f", "e")


def _base(hierarchy, rng, steps=24, observations=300):
    truth = rng.gamma(5.0, 10.0, size=(len(hierarchy.bottom), steps + observations))
    every = hierarchy.children_sum(truth)
    noise = rng.normal(0, 1, size=every.shape) * np.sqrt(every)
    forecasts = every + noise
    return every, forecasts, observations


@pytest.mark.parametrize("method", METHODS)
def test_reconciled_forecasts_are_coherent(method):
    rng = np.random.default_rng(0)
    hierarchy = build_hierarchy(PROFILES, levels=["cluster", "workload_class"])
    actual, forecast, n = _base(hierarchy, rng)
    p = projection(hierarchy, actual[:, :n] - forecast[:, :n], method=method)
    reconciled = reconcile(forecast[:, n:], hierarchy, p)
    bottom = reconciled[len(hierarchy.aggregates) :]
    assert np.abs(hierarchy.children_sum(bottom) - reconciled).max() < 1e-6
    # Forecasts that already add up are left as they are (P is a projection).
    coherent = hierarchy.children_sum(actual[len(hierarchy.aggregates) :, n:])
    assert np.abs(reconcile(coherent, hierarchy, p) - coherent).max() < 1e-6


def test_mint_shrink_equals_hierarchicalforecasts_own_reconciliation():
    from hierarchicalforecast.core import HierarchicalReconciliation
    from hierarchicalforecast.methods import MinTrace

    rng = np.random.default_rng(1)
    hierarchy = build_hierarchy(PROFILES, levels=["cluster", "workload_class"])
    actual, forecast, n = _base(hierarchy, rng)
    ours = reconcile(
        forecast[:, n:], hierarchy, projection(hierarchy, actual[:, :n] - forecast[:, :n])
    )
    nodes = list(hierarchy.nodes)
    summing = pd.DataFrame(hierarchy.summing, columns=list(hierarchy.bottom))
    summing.insert(0, "unique_id", nodes)
    future = pd.date_range("2026-01-01", periods=forecast.shape[1] - n, freq="h")
    past = pd.date_range("2025-01-01", periods=n, freq="h")
    y_hat = pd.DataFrame(
        {"unique_id": np.repeat(nodes, future.size), "ds": np.tile(future, len(nodes)),
         "base": forecast[:, n:].ravel()}
    )  # fmt: skip
    y = pd.DataFrame(
        {"unique_id": np.repeat(nodes, n), "ds": np.tile(past, len(nodes)),
         "y": actual[:, :n].ravel(), "base": forecast[:, :n].ravel()}
    )  # fmt: skip
    tags = {
        level: np.array([node for node, lv in zip(nodes, hierarchy.levels, strict=True)
                         if lv == level])
        for level in dict.fromkeys(hierarchy.levels)
    }  # fmt: skip
    theirs = HierarchicalReconciliation([MinTrace("mint_shrink")]).reconcile(
        Y_hat_df=y_hat, Y_df=y, S_df=summing, tags=tags
    )
    column = next(c for c in theirs.columns if "mint_shrink" in c)
    matrix = theirs.set_index(["unique_id", "ds"])[column].unstack().loc[nodes].to_numpy()
    np.testing.assert_allclose(ours, matrix, atol=1e-6)
    bottom = ours[len(hierarchy.aggregates) :]
    assert np.abs(hierarchy.children_sum(bottom) - ours).max() < 1e-6


def _correlated_errors(hierarchy, rng, observations=200):
    """Base errors whose aggregates are not their series' sums, correlated across nodes."""
    bottom = rng.normal(0, 1, size=(len(hierarchy.bottom), observations)) * rng.uniform(
        1, 5, size=(len(hierarchy.bottom), 1)
    )
    common = rng.normal(0, 2, size=(1, observations))
    return hierarchy.children_sum(bottom + common) + rng.normal(
        0, 3, size=(len(hierarchy.nodes), observations)
    )


@pytest.mark.parametrize("method", METHODS)
def test_projection_equals_hierarchicalforecasts_p(method):
    """`projection` computes P itself; it is hierarchicalforecast's, method by method."""
    from hierarchicalforecast.methods import BottomUp, MinTrace

    rng = np.random.default_rng(5)
    hierarchy = build_hierarchy(PROFILES, levels=["cluster", "workload_class"])
    errors = _correlated_errors(hierarchy, rng)
    errors[:, :3] = np.nan  # unobserved steps are dropped, as before the library sees them
    summing = hierarchy.summing
    y_hat = np.zeros((summing.shape[0], 1))
    if method == "bottom_up":
        theirs = BottomUp().fit(S=summing, y_hat=y_hat).P
    else:
        usable = errors[:, 3:]
        insample = {"y_insample": usable, "y_hat_insample": np.zeros_like(usable)}
        theirs = (
            MinTrace(method=method)
            .fit(S=summing, y_hat=y_hat, **(insample if method == "mint_shrink" else {}))
            .P
        )
    np.testing.assert_allclose(projection(hierarchy, errors, method=method), theirs, atol=1e-12)


def test_shrunk_covariance_equals_hierarchicalforecasts_w():
    from hierarchicalforecast.methods import MinTrace

    rng = np.random.default_rng(6)
    hierarchy = build_hierarchy(PROFILES, levels=["cluster", "workload_class"])
    for observations in (5, 300):
        errors = _correlated_errors(hierarchy, rng, observations=observations)
        theirs = MinTrace(method="mint_shrink").fit(
            S=hierarchy.summing, y_hat=np.zeros((len(hierarchy.nodes), 1)),
            y_insample=errors, y_hat_insample=np.zeros_like(errors),
        ).W  # fmt: skip
        ours = shrunk_covariance(errors)
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
        # Shrunk: the off-diagonal is a fraction of the sample covariance's.
        sample = np.cov(errors)
        off = ~np.eye(len(hierarchy.nodes), dtype=bool)
        ratio = ours[off] / sample[off]
        assert np.allclose(ratio, ratio[0]) and 0.0 <= ratio[0] <= 1.0


@pytest.mark.parametrize("level_scaled", [False, True])
def test_months_ahead_bands_equal_one_node_at_a_time_and_the_librarys_mint(level_scaled):
    """`reconciled_scenarios` fits every node at once and computes P itself; its numbers are
    those of fitting each node alone and reconciling with hierarchicalforecast's MinTrace.
    `level_scaled` errors are not linear in the data, so the base errors do not add up and P
    changes them."""
    from hierarchicalforecast.methods import MinTrace

    _, daily, profiles = _daily_usage()
    hierarchy = build_hierarchy(profiles, levels=["cluster", "accelerator_type", "workload_class"])
    horizon = 56
    scenarios = reconciled_scenarios(daily, hierarchy, horizon_days=horizon,
                                     level_scaled=level_scaled)  # fmt: skip
    values, times = node_values(daily.with_columns(pl.col("time").cast(pl.Date)), hierarchy)
    days = times.to_list()
    options = {"horizon_days": horizon, "changepoint_every": 28, "ridge": 50.0,
               "damping": 0.99, "origin_step": 7, "level_scaled": level_scaled}  # fmt: skip
    alone = [_point_and_errors(values[[row]], days, **options) for row in range(len(values))]
    points = np.concatenate([point for point, _ in alone])
    errors = np.concatenate([error for _, error in alone])
    flat = errors.reshape(len(values), -1)
    usable = flat[:, np.all(np.isfinite(flat), axis=0)]
    p = (
        MinTrace(method="mint_shrink")
        .fit(S=hierarchy.summing, y_hat=np.zeros((len(values), 1)), y_insample=usable,
             y_hat_insample=np.zeros_like(usable))
        .P
    )  # fmt: skip
    projector = hierarchy.summing @ p
    expected_points = projector @ points
    expected_errors = np.einsum("nm,moh->noh", projector, errors)
    scale = np.abs(points).max()
    np.testing.assert_allclose(scenarios.points, expected_points, atol=1e-9 * scale)
    np.testing.assert_allclose(scenarios.errors, expected_errors, atol=1e-9 * scale)
    if level_scaled:
        # The base errors did not add up: reconciliation moved them onto coherent ones.
        assert np.nanmax(np.abs(expected_errors - errors)) > 1e-3 * scale
    first = days[-1] + dt.timedelta(days=1)
    for row, node in enumerate(hierarchy.nodes):
        ratios = None
        if not level_scaled:
            levels, today = origin_levels(values[row], changepoint_every=28, origin_step=7)
            ratios = max(1.0, float(today)) / np.maximum(1.0, levels)
        band = paths_from_errors(expected_points[row], expected_errors[row], first=first,
                                 ratios=ratios).bands  # fmt: skip
        for key in ("p50", "p90", "weekly_p50", "weekly_p90"):
            np.testing.assert_allclose(
                scenarios.paths[node].bands[key], band[key], atol=1e-9 * scale
            )


def _hourly_ruled(hierarchy, rng, origins=6, horizon=12):
    start = dt.datetime(2026, 1, 1)
    rows = []
    level = rng.gamma(5.0, 10.0, size=len(hierarchy.bottom))
    for origin in range(origins):
        cutoff = start + dt.timedelta(hours=6 * origin)
        times = [cutoff + dt.timedelta(hours=h + 1) for h in range(horizon)]
        truth = level[:, None] + rng.normal(0, 3, size=(len(hierarchy.bottom), horizon))
        every = hierarchy.children_sum(truth)
        forecast = every + rng.normal(0, 4, size=every.shape)
        for row, node in enumerate(hierarchy.nodes):
            rows.append(
                pl.DataFrame({"id": node, "time": times, "cutoff": cutoff,
                              "value": every[row], "forecast": forecast[row]})
            )  # fmt: skip
    return pl.concat(rows)


def test_reconciled_backtest_is_coherent_with_bands_per_node():
    rng = np.random.default_rng(2)
    hierarchy = build_hierarchy(PROFILES, levels=["cluster"])
    ruled = _hourly_ruled(hierarchy, rng)
    span = dt.timedelta(hours=12)
    result = reconciled_backtest(ruled, hierarchy, horizon_span=span, calibration_windows=2)
    wide = result.pivot(on="id", index=["cutoff", "time"], values="forecast")
    matrix = wide.select(list(hierarchy.nodes)).to_numpy().T
    bottom = matrix[len(hierarchy.aggregates) :]
    assert np.abs(hierarchy.children_sum(bottom) - matrix).max() < 1e-6
    # The first two origins have no ended origin (6 h apart, 12 h horizon): no bands yet.
    cutoffs = sorted(result["cutoff"].unique())
    assert result.filter(pl.col("cutoff") <= cutoffs[1])["hi_95"].null_count() > 0
    later = result.filter(pl.col("cutoff") >= cutoffs[2])
    assert later["hi_95"].null_count() == 0
    assert (later["hi_95"] >= later["hi_80"]).all() and (later["hi_80"] >= later["forecast"]).all()
    # A cluster's band is its own, not the sum of its series' half-widths.
    last = later.filter(pl.col("cutoff") == cutoffs[-1]).with_columns(
        (pl.col("hi_95") - pl.col("forecast")).alias("half")
    )
    half = dict(last.group_by("id").agg(pl.col("half").first()).iter_rows())
    assert half["total"] < half["a"] + half["b"] + half["c"] + half["d"] + half["e"]


def test_aggregate_history_counts_missing_series_as_zero():
    hierarchy = build_hierarchy(PROFILES.head(2), levels=["cluster"])
    history = pl.DataFrame(
        {"id": ["a", "a", "b"], "time": [dt.date(2026, 1, 1), dt.date(2026, 1, 2),
                                         dt.date(2026, 1, 2)], "value": [1.0, 2.0, 5.0]}
    )  # fmt: skip
    nodes = aggregate_history(history, hierarchy).sort("id", "time")
    assert nodes.filter(pl.col("id") == "x")["value"].to_list() == [1.0, 7.0]
    assert nodes.filter(pl.col("id") == "b")["value"].to_list() == [0.0, 5.0]


def _daily_usage(days=120):
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=days, step_minutes=120, seed=4)
    from annotation_pipelines.forecasting.procurement import series_profiles
    from annotation_pipelines.forecasting.telemetry import to_series

    return usage, to_series(usage, freq="1d"), series_profiles(usage)


def test_months_ahead_bands_are_coherent_and_a_sums_p90_is_its_own():
    _, daily, profiles = _daily_usage()
    hierarchy = build_hierarchy(profiles, levels=["cluster", "accelerator_type", "workload_class"])
    scenarios = reconciled_scenarios(daily, hierarchy, horizon_days=56)
    offset = len(hierarchy.aggregates)
    points, errors = scenarios.points, scenarios.errors
    assert np.abs(hierarchy.children_sum(points[offset:]) - points).max() < 1e-6
    finite = np.isfinite(errors[0])
    coherent = np.einsum("nb,boh->noh", hierarchy.summing, errors[offset:])
    assert np.abs((coherent - errors)[:, finite]).max() < 1e-6
    # The trend model is linear in the data, so the base forecasts already add up and
    # reconciliation leaves the series' bands as the series alone would have them.
    alone = scenario_paths(daily, horizon_days=56)
    for series_id in hierarchy.bottom:
        np.testing.assert_allclose(
            scenarios.paths[series_id].bands["p90"], alone[series_id].bands["p90"], atol=1e-6
        )
    # A cluster's P90 is the quantile of its own errors: at most the sum of its series' P90s.
    for cluster in ("earth", "mars"):
        members = profiles.filter(pl.col("cluster") == cluster)["id"].to_list()
        summed = sum(scenarios.paths[m].bands["p90"] for m in members)
        assert np.all(scenarios.paths[cluster].bands["p90"] <= summed + 1e-6)
        combined = scenarios.combination(dict.fromkeys(members, 1.0))
        np.testing.assert_allclose(
            combined.bands["p90"], scenarios.paths[cluster].bands["p90"], atol=1e-6
        )


def test_capacity_plan_takes_cluster_bands_from_the_reconciled_hierarchy():
    usage, _, _ = _daily_usage()
    config = load_capacity_config()
    as_of = dt.date(2026, 11, 29)
    reconciled = capacity_plan(usage, config=config, as_of=as_of)
    summed = capacity_plan(usage, config=config, as_of=as_of, reconciliation=None)
    assert reconciled.reconciliation == "mint_shrink" and summed.reconciliation is None
    nodes = reconciled.hierarchy_weekly
    earth = nodes.filter(pl.col("id") == "earth").select("time", "p90")
    assert (
        reconciled.cluster_weekly.filter(pl.col("cluster") == "earth")
        .select("time", "p90")
        .equals(earth)
    )
    joined = reconciled.cluster_weekly.join(summed.cluster_weekly, on=["cluster", "time"])
    assert (joined["p90"] <= joined["p90_right"] + 1e-6).all()
    assert (joined["p90"] < joined["p90_right"] - 1e-6).any()
    with pytest.raises(ValueError, match="unknown reconciliation"):
        capacity_plan(usage, config=CapacityConfig(), as_of=as_of, reconciliation="topdown")


def test_calibrated_forecast_of_a_hierarchy_adds_up_with_bands_per_node():
    from annotation_pipelines.forecasting.ensemble import forecast_calibrated

    rng = np.random.default_rng(3)
    # Eight days: the 192 hours four 24-step origins a day apart take after their 96 hours of
    # fit; adding up and per-node bands are structural, whatever the length fit.
    hours = 24 * 8
    t = np.arange(hours)
    start = dt.datetime(2026, 1, 1)
    series = pl.concat(
        pl.DataFrame(
            {
                "id": series_id,
                "time": [start + dt.timedelta(hours=int(h)) for h in t],
                "value": level + 6 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 2, hours),
            }
        )
        for series_id, level in (("a", 40.0), ("b", 60.0), ("c", 30.0))
    )
    hierarchy = build_hierarchy(PROFILES.head(3), levels=["cluster"])
    nodes = aggregate_history(series, hierarchy)
    result = forecast_calibrated(
        nodes, horizon=24, season_length=24, freq="1h", models=["SeasonalNaive", "AutoETS"],
        backtest_windows=4, calibration_windows=2, hierarchy=hierarchy,
    )  # fmt: skip
    wide = result.forecast.pivot(on="id", index="time", values="forecast")
    assert (wide["total"] - wide["x"] - wide["c"]).abs().max() < 1e-6
    assert (wide["x"] - wide["a"] - wide["b"]).abs().max() < 1e-6
    forecast = result.forecast
    assert forecast["hi_95"].null_count() == 0 and (forecast["hi_95"] >= forecast["hi_80"]).all()
    assert forecast["model"].str.ends_with("reconciled (mint_shrink)").all()
    assert set(result.scores["id"]) == set(hierarchy.nodes)


def test_projection_without_usable_errors_falls_back_to_structural_weights():
    hierarchy = build_hierarchy(PROFILES, levels=["cluster"])
    structural = projection(hierarchy, None, method="wls_struct")
    idle = np.zeros((len(hierarchy.nodes), 50))
    np.testing.assert_allclose(projection(hierarchy, None), structural)
    np.testing.assert_allclose(projection(hierarchy, idle), structural)
    with pytest.raises(ValueError, match="unknown reconciliation"):
        projection(hierarchy, None, method="topdown")


@pytest.mark.realdata
@pytest.mark.scale
def test_helios_cluster_band_is_its_own_not_the_sum_of_its_virtual_clusters():
    """The Helios figures of `bench_capacity.py --hierarchy` (benchmarks/RESULTS_capacity.md):
    over the four test weeks the cluster's own reconciled band scores a lower Winkler-95 than
    the sum of its virtual clusters' bands and still covers >= 0.95; forecasts add up."""
    from tests.realdata import CAPACITY_DIR, require_shared

    require_shared("capacity", "helios_earth_vc6YE.csv")
    from annotation_pipelines.forecasting import load_helios, to_series
    from annotation_pipelines.forecasting.ensemble import (
        apply_rule,
        calibrated_backtest,
        candidate_cross_validation,
        candidate_names,
        score_points,
    )
    from annotation_pipelines.forecasting.procurement import series_profiles
    from annotation_pipelines.forecasting.statsforecast_adapter import naive_utc

    usage = pl.concat(
        [load_helios(CAPACITY_DIR / f"helios_earth_{vc}.csv") for vc in ("vc3sl", "vc6YE", "vcMod")]
    )
    hierarchy = build_hierarchy(series_profiles(usage), levels=["cluster"])
    assert hierarchy.nodes == ("earth", "vc3sl", "vc6YE", "vcMod")
    nodes = naive_utc(aggregate_history(naive_utc(to_series(usage, freq="1h")), hierarchy))
    models = candidate_names(season_length=24)
    cross_validation = candidate_cross_validation(
        nodes, horizon=168, season_length=24, freq="1h", windows=15, step=24, models=models
    )
    ruled = apply_rule(cross_validation, rule="mean", models=models)
    span = dt.timedelta(hours=168)
    tests = sorted(cross_validation["cutoff"].unique())[-4:]
    reconciled = reconciled_backtest(ruled, hierarchy, horizon_span=span, calibration_windows=4)
    matrix = (
        reconciled.pivot(on="id", index=["cutoff", "time"], values="forecast")
        .select(list(hierarchy.nodes))
        .to_numpy()
        .T
    )
    assert np.abs(hierarchy.children_sum(matrix[1:]) - matrix).max() < 1e-6
    base = calibrated_backtest(ruled, horizon_span=span, calibration_windows=4)
    summed = (
        base.filter(pl.col("id") != "earth")
        .group_by("time", "cutoff")
        .agg(pl.col("value", "forecast", "lo_80", "hi_80", "lo_95", "hi_95").sum())
    )
    own = reconciled.filter(pl.col("id") == "earth").with_columns(
        pl.col("lo_80", "lo_95").clip(lower_bound=0.0)
    )
    scores = {
        name: frame.filter(pl.col("cutoff").is_in(tests))
        .select(score_points(frame))
        .row(0, named=True)
        for name, frame in (("own", own), ("summed", summed))
    }
    assert scores["own"]["winkler_95"] < 0.9 * scores["summed"]["winkler_95"]
    assert 0.95 <= scores["own"]["coverage_95"] < scores["summed"]["coverage_95"]


def test_aggregate_history_carries_a_series_that_stopped_reporting():
    # Zero before a series starts is demand that did not exist yet; after its last report it
    # is a telemetry gap, "no change", and read as zero it dropped the cluster by its demand.
    hierarchy = build_hierarchy(PROFILES.head(2), levels=["cluster"])
    days = [dt.date(2026, 1, d) for d in (1, 2, 3)]
    history = pl.DataFrame(
        {"id": ["a", "a", "a", "b", "b"], "time": days + days[:2],
         "value": [1.0, 2.0, 3.0, 5.0, 6.0]}
    )  # fmt: skip
    nodes = aggregate_history(history, hierarchy).sort("id", "time")
    assert nodes.filter(pl.col("id") == "b")["value"].to_list() == [5.0, 6.0, 6.0]
    assert nodes.filter(pl.col("id") == "x")["value"].to_list() == [6.0, 8.0, 9.0]


@pytest.mark.parametrize(
    ("first", "second", "cluster"),
    [("time", "cutoff", "x"), ("a", "b", "time"), ("id", "value", "cutoff")],
)
def test_series_and_clusters_named_like_a_column_forecast_as_any_other(first, second, cluster):
    """Series and clusters are named by telemetry (a Helios file `helios_earth_time.csv` is
    series `time`): one named like a column of the long frames failed the pivots, and with them
    the forecast and plan of every series."""
    from annotation_pipelines.forecasting.ensemble import forecast_calibrated

    rng = np.random.default_rng(5)
    hours = 24 * 8
    start = dt.datetime(2026, 1, 1)
    values = [level + rng.normal(0, 2, hours) for level in (40.0, 60.0, 30.0)]

    def run(ids, group):
        times = [start + dt.timedelta(hours=h) for h in range(hours)]
        series = pl.concat(
            pl.DataFrame({"id": i, "time": times, "value": v})
            for i, v in zip(ids, values, strict=True)
        )
        profiles = pl.DataFrame({"id": list(ids), "cluster": [group, group, "y"]})
        hierarchy = build_hierarchy(profiles, levels=["cluster"])
        nodes = aggregate_history(series, hierarchy)
        result = forecast_calibrated(
            nodes, horizon=24, season_length=24, freq="1h", models=["SeasonalNaive"],
            backtest_windows=3, calibration_windows=2, hierarchy=hierarchy,
        )  # fmt: skip
        return nodes, result.forecast

    plain = run(("a", "b", "c"), "x")
    named = run((first, second, "c"), cluster)
    rename = {"a": first, "b": second, "x": cluster}
    for before, after in zip(plain, named, strict=True):
        expected = before.with_columns(pl.col("id").replace_strict(rename, default=pl.col("id")))
        # Equal up to float summation order: the series sort differently by name.
        assert_frame_equal(after.sort("id", "time"), expected.sort("id", "time"), rel_tol=1e-9)
