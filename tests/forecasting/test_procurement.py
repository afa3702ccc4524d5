"""Months-ahead bands, the procurement plan, annotation costs, the capacity report and the
monthly `procurement_plan` asset."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from functools import partial
from typing import Any

import numpy as np
import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from annotation_pipelines.forecasting.capacity_config import (
    EXAMPLE,
    CapacityConfig,
    CapacityConfigError,
    load_capacity_config,
)
from annotation_pipelines.forecasting.costs import (
    annotation_costs,
    describe_partly_timed,
    unpriced_tiers,
)
from annotation_pipelines.forecasting.hierarchy import (
    aggregate_supply,
    build_hierarchy,
    node_values,
)
from annotation_pipelines.forecasting.planning import (
    HIERARCHY_LEVELS,
    capacity_plan,
    peer_groups,
    series_spreads,
    spread_note,
)
from annotation_pipelines.forecasting.procurement import (
    PLAN_COLUMNS,
    current_fleet,
    procurement_plan,
    required_accelerators,
    runs_short,
    series_profiles,
    unpriced_types,
)
from annotation_pipelines.forecasting.report import (
    cluster_figure,
    html_table,
    render_capacity_report,
    type_figure,
    utilization_figure,
)
from annotation_pipelines.forecasting.scenarios import (
    MIN_FIT_DAYS,
    Launch,
    _point_and_errors,
    _point_from,
    level_ratios,
    node_starts,
    origin_levels,
    paths_from_errors,
    pooled_spreads,
    reconciled_scenarios,
    relative_errors,
    scenario_backtest,
    scenario_forecast,
    scenario_paths,
    truncated_errors,
)
from annotation_pipelines.forecasting.telemetry import (
    allocation_vs_utilization,
    normalize_usage,
    to_series,
    with_detail_columns,
)
from annotation_pipelines.quality.render import is_self_contained
from annotation_pipelines.synthetic import generate_compute_usage

START = dt.date(2026, 1, 5)  # a Monday


def _daily(days: int = 140, *, slope: float = 0.5, noise: float = 2.0) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(days)
    return pl.DataFrame(
        {
            "id": "a",
            "time": [START + dt.timedelta(days=int(d)) for d in t],
            "value": 100 + slope * t + rng.normal(0, noise, days),
        }
    )


def test_bands_follow_the_trend_and_add_planned_launches():
    daily = _daily()
    launch = Launch(name="x", series_id="a", start=START + dt.timedelta(days=150), accelerators=40,
                    ramp_days=10)  # fmt: skip
    plain, _ = scenario_forecast(daily, horizon_days=56)
    with_launch, weekly = scenario_forecast(daily, horizon_days=56, launches=[launch])
    # The trend goes on (~ +0.5 a day, damped a little): four weeks out is above today.
    assert plain["p50"][27] > 100 + 0.5 * 140
    assert (plain["p90"] >= plain["p50"]).all()
    difference = (with_launch["p50"] - plain["p50"]).to_numpy()
    # History ends on day 139; the launch starts on day 150 = forecast step 10, full by step 19.
    assert np.allclose(difference[:10], 0) and difference[10] == pytest.approx(4.0)
    assert np.allclose(difference[19:], 40.0)
    assert weekly.height == 8 and (weekly["p90"] >= weekly["p50"]).all()


def test_p90_spread_is_taken_at_todays_level_and_the_p50_is_not_moved():
    # Ten origins, each with the same error at every step: -4.5 ... 4.5. Median 0; the 0.9
    # quantile (numpy's linear rule) 3.6. Today's level twice every origin's: spread 7.2.
    errors = np.tile(np.arange(10.0)[:, None] - 4.5, (1, 14))
    point = np.full(14, 100.0)
    plain = paths_from_errors(point, errors, first=START)
    ratios = level_ratios(np.full(10, 50.0), 100.0)
    scaled = paths_from_errors(point, errors, first=START, ratios=ratios)
    np.testing.assert_allclose(plain.bands["p50"], 100.0)
    np.testing.assert_allclose(scaled.bands["p50"], plain.bands["p50"])
    np.testing.assert_allclose(plain.bands["p90"], 103.6)
    np.testing.assert_allclose(scaled.bands["p90"], 107.2)
    np.testing.assert_allclose(scaled.bands["weekly_p90"], 107.2)
    # Levels are floored at 1: an idle origin does not blow the spread up.
    assert level_ratios(np.array([0.0, 4.0]), 2.0).tolist() == [2.0, 0.5]


def test_growing_series_gets_a_wider_p90_at_the_same_p50():
    rng = np.random.default_rng(1)
    t = np.arange(300)
    level = 50 * 1.006**t  # about 6x over the history; bursts in proportion to the level
    daily = pl.DataFrame(
        {"id": "a", "time": [START + dt.timedelta(days=int(d)) for d in t],
         "value": level * (1 + 0.2 * rng.standard_normal(t.size))}
    )  # fmt: skip
    fixed, _ = scenario_forecast(daily, horizon_days=28, spread_scaled=False)
    scaled, _ = scenario_forecast(daily, horizon_days=28)
    np.testing.assert_allclose(scaled["p50"].to_numpy(), fixed["p50"].to_numpy())
    assert (scaled["p90"] - scaled["p50"]).mean() > 1.2 * (fixed["p90"] - fixed["p50"]).mean()


def _fleet(days: int = 200) -> pl.DataFrame:
    """Three series: two on one calendar, one starting 40 days later (another calendar)."""
    rng = np.random.default_rng(2)
    frames = []
    for series_id, first, level, slope in (("a", 0, 100.0, 0.4), ("b", 0, 60.0, -0.1),
                                           ("c", 40, 30.0, 0.2)):  # fmt: skip
        t = np.arange(first, days)
        times = [START + dt.timedelta(days=int(d)) for d in t]
        values = level + slope * t + rng.normal(0, 3.0, t.size)
        frames.append(pl.DataFrame({"id": series_id, "time": times, "value": values}))
    return pl.concat(frames)


def test_series_fit_together_get_the_bands_they_get_alone():
    """Series on one calendar share one solve per origin; each keeps the bands of its own fit,
    whatever it is fit with, and a series on another calendar is fit on its own days."""
    daily = _fleet()
    launch = Launch(name="x", series_id="b", start=START + dt.timedelta(days=210), accelerators=9)
    together = scenario_paths(daily, horizon_days=42, launches=[launch])
    assert list(together) == ["a", "b", "c"]
    for series_id in ("a", "b", "c"):
        alone = scenario_paths(daily.filter(pl.col("id") == series_id), horizon_days=42,
                               launches=[launch])[series_id]  # fmt: skip
        assert together[series_id].days == alone.days
        for key, band in alone.bands.items():
            np.testing.assert_allclose(together[series_id].bands[key], band, rtol=1e-9, atol=1e-9)
    assert together["c"].days[0] == together["a"].days[0]  # all end on the same day


def test_scenario_backtest_scores_each_series_own_window():
    daily = _fleet(days=260)
    horizon = 42
    scores = scenario_backtest(daily, horizon_days=horizon, windows=2)
    assert scores.height == 6 and set(scores["id"]) == {"a", "b", "c"}
    for window in (2, 1):
        back = window * horizon
        ordered = daily.sort("id", "time")
        train = ordered.group_by("id", maintain_order=True).map_groups(
            lambda g, back=back: g.head(g.height - back)
        )
        bands = scenario_paths(train, horizon_days=horizon)
        for series_id in ("a", "b", "c"):
            values = ordered.filter(pl.col("id") == series_id)["value"].to_numpy()
            actual = values[values.size - back : values.size - back + horizon]
            past = values[: values.size - back]
            naive = np.resize(past[-7:], horizon)
            band = bands[series_id].bands
            row = scores.filter((pl.col("id") == series_id) & (pl.col("window") == window)).row(
                0, named=True
            )
            assert row["relative_mae"] == pytest.approx(
                np.mean(np.abs(actual - band["p50"])) / np.mean(np.abs(actual - naive))
            )
            assert row["share_below_p90"] == pytest.approx(np.mean(actual <= band["p90"]))
            assert row["share_below_p50"] == pytest.approx(np.mean(actual <= band["p50"]))


def test_procurement_plan_by_hand():
    config = CapacityConfig(lead_time_weeks=2, target_utilization={"unknown": 0.5},
                            accelerator_hour_price={"H100": 2.0})  # fmt: skip
    days = [dt.date(2027, 1, 1) + dt.timedelta(days=d) for d in range(30)]
    required = pl.DataFrame(
        {
            "cluster": "earth",
            "accelerator_type": "H100",
            "time": days,
            "p50": [10.0] * 30,
            "p90": [10.0] * 20 + [25.5] * 10,
        }
    )
    fleet = pl.DataFrame({"cluster": ["earth"], "accelerator_type": ["H100"], "fleet": [20.0]})
    plan = procurement_plan(required, fleet, config=config, as_of=dt.date(2027, 1, 1))
    p50, p90 = plan.sort("scenario").iter_rows(named=True)
    assert p50["status"] == "enough" and p50["to_order"] == 0
    # Every row says the day it was planned on: an order-by date means nothing without it to
    # a reader of the table alone (the API serves the table).
    assert plan.columns == list(PLAN_COLUMNS) and set(plan["as_of"]) == {dt.date(2027, 1, 1)}
    # A scenario costs the whole accelerators owned under it: the fleet every day, and what
    # it orders from the day that arrives (before, the fractional demand at target, which
    # priced 10 of the 20 owned on every day and 25.5 before any order could land).
    assert p50["scenario_cost_usd"] == 20 * 30 * 24 * 2.0
    assert p90["runs_short_on"] == dt.date(2027, 1, 21) and p90["to_order"] == 6
    assert p90["order_by"] == dt.date(2027, 1, 7) and p90["status"] == "order by 2027-01-07"
    assert p90["scenario_cost_usd"] == (20 * 30 + 6 * 10) * 24 * 2.0
    late = procurement_plan(required, fleet, config=config, as_of=dt.date(2027, 1, 10))
    late_p90 = late.filter(pl.col("scenario") == "p90").row(0, named=True)
    assert late_p90["status"] == "late: order now, arrives 2027-01-24"
    assert late_p90["scenario_cost_usd"] == (20 * 30 + 6 * 7) * 24 * 2.0
    assert runs_short(plan).filter(pl.col("scenario") == "p90")["runs_short_on"].item() == (
        dt.date(2027, 1, 21)
    )


def test_config_example_loads_and_errors_name_file_and_field(tmp_path):
    config = load_capacity_config(EXAMPLE)
    assert config.lead_time_weeks == 16 and config.utilization("inference") == 0.6
    assert config.launches[0].start == dt.date(2027, 2, 1)
    bad = tmp_path / "bad.toml"
    bad.write_text("[target_utilization]\ntraining = 1.5\n")
    with pytest.raises(CapacityConfigError, match=r"bad.toml: target_utilization.training"):
        load_capacity_config(bad)
    bad.write_text('[[launches]]\nname = "x"\nseries_id = "a"\nstart = "soon"\naccelerators = 1\n')
    with pytest.raises(CapacityConfigError, match=r"launches\[1\].start"):
        load_capacity_config(bad)


def test_annotation_costs_per_curated_label_and_agreement_point():
    config = CapacityConfig(annotator_hour_price={"standard": 20.0, "expert": 50.0},
                            project_tier={"med": "expert"})  # fmt: skip
    judgments = pl.DataFrame({"project": ["tox", "tox", "med"],
                              "duration_s": [1800.0, 1800.0, 3600.0]})  # fmt: skip
    aggregated = pl.DataFrame({"project": ["tox", "tox", "med", "med"],
                               "is_tie": [False, True, False, False]})  # fmt: skip
    quality = pl.DataFrame({"project": ["tox", "med"], "percent_agreement": [0.8, 0.5]})
    costs = {r["project"]: r for r in annotation_costs(judgments, aggregated, quality,
                                                       config=config).to_dicts()}  # fmt: skip
    assert costs["tox"]["cost_usd"] == 20.0 and costs["tox"]["cost_per_curated_label"] == 20.0
    assert costs["tox"]["cost_per_agreement_point"] == pytest.approx(20.0 / 80)
    assert costs["med"]["cost_usd"] == 50.0 and costs["med"]["cost_per_curated_label"] == 25.0


def test_a_task_aggregated_on_two_days_is_one_curated_label():
    # The daily layers aggregate each day's judgments, so a task judged across UTC midnight has
    # a row on each day; counted as rows it was two labels and each label looked cheaper.
    config = CapacityConfig(annotator_hour_price={"standard": 36.0})
    judgments = pl.DataFrame({"project": ["p"] * 8, "duration_s": [100.0] * 8})
    aggregated = pl.DataFrame(
        {"project": ["p"] * 4, "task_id": ["t1", "t2", "t1", "t3"],
         "day": ["2026-11-16", "2026-11-16", "2026-11-17", "2026-11-17"],
         "is_tie": [False, False, False, True]}
    )  # fmt: skip
    # t4: a tie on its first day, settled on the next; t5: the reverse (its newest is a tie).
    later = pl.DataFrame(
        {"project": ["p"] * 4, "task_id": ["t4", "t5", "t4", "t5"],
         "day": ["2026-11-17", "2026-11-16", "2026-11-16", "2026-11-17"],
         "is_tie": [False, False, True, True]}
    )  # fmt: skip
    kinds = pl.DataFrame({"project": ["p"] * 3, "task_id": ["b1", "b1", "b2"],
                          "day": ["2026-11-16", "2026-11-17", "2026-11-17"]})  # fmt: skip
    [row] = annotation_costs(
        judgments, pl.concat([aggregated, later]), None, config=config, kind_aggregated=kinds
    ).to_dicts()
    assert row["curated_labels"] == 5  # t1, t2, t4, b1, b2
    assert row["cost_per_curated_label"] == pytest.approx(8 * 100 / 3600 * 36.0 / 5)


def test_capacity_report_is_self_contained_and_reproducible():
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=2)
    plan = capacity_plan(usage, config=load_capacity_config(), as_of=dt.date(2026, 11, 29))

    def render() -> str:
        figure = cluster_figure(plan.history_weekly.filter(pl.col("cluster") == "earth"),
                                plan.cluster_weekly.filter(pl.col("cluster") == "earth"),
                                plan.supply.filter(pl.col("cluster") == "earth"),
                                cluster="earth")  # fmt: skip
        return render_capacity_report(title="t", as_of="2026-11-29", charts=[("earth", figure)],
                                      sections=[("Plan", plan.plan)])  # fmt: skip

    first, second = render(), render()
    assert first == second and "<svg" in first and "Date" not in first.split("<svg", 1)[1][:500]
    assert is_self_contained(first)
    assert set(plan.plan["scenario"]) == {"p50", "p90"}
    assert set(plan.plan["accelerator_type"]) == {"H100", "L4", "A100"}


def _materialize_plan(tmp_path, monkeypatch, usage: pl.DataFrame):
    """(metadata, lake) of the `procurement_plan` asset materialized on `usage`, one
    `compute_usage` partition per day, in a lake under `tmp_path`."""
    from assets.forecasting.assets import procurement_plan as asset
    from resources.lake import LakeIOManager, LocalLake

    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    for (day,), frame in usage.group_by(pl.col("time").dt.date(), maintain_order=True):
        lake.write_table("compute_usage", frame, day=day.isoformat())
    result = materialize(
        [asset], instance=DagsterInstance.ephemeral(),
        resources={"lake": lake, "io_manager": LakeIOManager(lake=lake)},
    )  # fmt: skip
    assert result.success
    return result.get_asset_materialization_events()[0].materialization.metadata, lake


def test_procurement_plan_asset_materializes(tmp_path, monkeypatch):
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=30, seed=3)
    metadata, lake = _materialize_plan(tmp_path, monkeypatch, usage)
    assert {"plan", "runs_short", "allocation_vs_utilization", "html_report"} <= set(metadata)
    assert any(key.startswith("plot_") for key in metadata)
    report = tmp_path / "lake" / "reports" / "capacity" / "as_of=2026-11-29" / "capacity.html"
    assert report.is_file() and "Procurement plan" in report.read_text()
    # Read in a meeting, not a Python dict's repr.
    assert "target utilization training 0.85, inference 0.60, other 0.75" in report.read_text()
    written = lake.read_table("procurement_plan")
    assert written.height == 6  # 3 cluster x type pairs x 2 scenarios
    # At the least history the plan accepts, two backtest origins a week apart already give
    # the P90 a spread of its own: no scenario is the other one shown twice.
    p50 = written.filter(pl.col("scenario") == "p50").sort("cluster", "accelerator_type")
    p90 = written.filter(pl.col("scenario") == "p90").sort("cluster", "accelerator_type")
    assert (p90["peak_required"] >= p50["peak_required"]).all()
    assert (p90["peak_required"] > p50["peak_required"]).any()
    assert metadata["p90_spread"].value.startswith("up to ")
    assert metadata["prices"].value == "every accelerator type priced"
    assert "measured no spread" not in report.read_text()
    # Every series was there all along: every spread is its own, and both say so.
    assert metadata["p90_spread"].value.endswith("every series' P90 spread is its own backtest's")
    assert "P90 spread per series" in report.read_text()
    assert "p90_spread_by_series" in metadata and "pooled" not in metadata["plan"].value
    assert set(written["spread_source"]) == {"own"}


def test_procurement_plan_asset_names_the_series_whose_spread_is_pooled(tmp_path, monkeypatch):
    usage, young_id = _young_fleet()
    metadata, lake = _materialize_plan(tmp_path, monkeypatch, usage)
    note = f"{young_id} (pooled_fleet, "
    assert (
        metadata["p90_spread"].value.startswith("up to ") and note in metadata["p90_spread"].value
    )
    assert young_id in metadata["p90_spread_by_series"].value
    report = tmp_path / "lake" / "reports" / "capacity" / "as_of=2026-11-29" / "capacity.html"
    assert note in report.read_text()
    assert set(lake.read_table("procurement_plan")["spread_source"]) == {"own", "pooled_fleet"}


def _short_fleet() -> tuple[pl.DataFrame, str]:
    """63 days of telemetry in which one series appeared 10 days before the end."""
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=63, step_minutes=60, seed=3)
    short_id = usage["series_id"].unique().sort()[0]
    arrived = dt.datetime(2026, 11, 19, tzinfo=dt.UTC)
    return usage.filter((pl.col("series_id") != short_id) | (pl.col("time") >= arrived)), short_id


def test_procurement_plan_asset_materializes_with_a_series_too_short_for_a_fit(
    tmp_path, monkeypatch
):
    # A series launched 10 days ago stopped the plan of the whole fleet. It is planned flat at
    # its last week's mean with a pooled spread, and the plan's rows, metadata and report say so.
    usage, short_id = _short_fleet()
    metadata, lake = _materialize_plan(tmp_path, monkeypatch, usage)
    note = f"{short_id} (short_pooled_fleet, "
    assert note in metadata["p90_spread"].value
    assert f"planned flat at the mean of its last 7 days: {short_id}" in (
        metadata["p90_spread"].value
    )
    assert short_id in metadata["p90_spread_by_series"].value
    report = tmp_path / "lake" / "reports" / "capacity" / "as_of=2026-11-29" / "capacity.html"
    assert note in report.read_text()
    written = lake.read_table("procurement_plan")
    profile = series_profiles(usage).filter(pl.col("id") == short_id).row(0, named=True)
    sources = dict(
        written.filter(pl.col("scenario") == "p90")
        .select(pl.concat_str("cluster", "accelerator_type"), "spread_source")
        .iter_rows()
    )
    assert "short_pooled_fleet" in sources.pop(profile["cluster"] + profile["accelerator_type"])
    assert set(sources.values()) == {"own"}
    wide = written.pivot(
        on="scenario", index=["cluster", "accelerator_type"], values="peak_required"
    )
    assert (wide["p90"] >= wide["p50"]).all()


@pytest.mark.parametrize("reconciliation", [None, "mint_shrink"])
def test_capacity_plan_plans_a_series_too_short_for_a_fit_at_its_last_weeks_mean(reconciliation):
    usage, short_id = _short_fleet()
    plan = capacity_plan(usage, config=CapacityConfig(), as_of=dt.date(2026, 11, 29),
                         reconciliation=reconciliation)  # fmt: skip
    history = to_series(with_detail_columns(usage), freq="1d").filter(pl.col("id") == short_id)
    assert history.height == 10
    level = float(history.sort("time")["value"].tail(7).mean())
    bands = plan.daily.filter(pl.col("id") == short_id)
    np.testing.assert_allclose(bands["p50"].to_numpy(), level, rtol=1e-12)
    # Its P90 is the flat rule's q90 above the week's mean: on a Sunday of a series busier on
    # weekdays, the mean itself can be above that, and the P90 stays at the P50.
    assert (bands["p90"] >= bands["p50"]).all()
    working = bands.filter(pl.col("time").dt.weekday() <= 5)
    assert (working["p90"] > working["p50"]).all()
    assert set(bands["spread_source"]) == {"short_pooled_fleet"}
    assert {s for i, s in plan.weekly.select("id", "spread_source").unique().iter_rows()
            if i != short_id} == {"own"}  # fmt: skip
    # Its demand is in its cluster's bands.
    cluster = series_profiles(usage).filter(pl.col("id") == short_id)["cluster"].item()
    first_week = plan.cluster_weekly.filter(pl.col("cluster") == cluster).sort("time").row(0)
    assert first_week[2] >= level


def test_weekly_forecast_asset_ships_the_calibrated_rule(tmp_path):
    from assets.forecasting.assets import compute_capacity_forecast
    from resources.lake import LakeIOManager, LocalLake

    lake = LocalLake(base_path=str(tmp_path / "lake"))
    # Fourteen days, the least `history_days` accepts: still room for the five origins below
    # (each needs fit_length = 96 hours before it and a 24-hour horizon after), and every model
    # fit is a third shorter than on 21 days.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=14, step_minutes=30, seed=5)
    for (day,), frame in usage.group_by(pl.col("time").dt.date(), maintain_order=True):
        lake.write_table("compute_usage", frame, day=day.isoformat())
    # Five backtest origins (not all that fit), the fewest a calibrated rule needs: the last
    # one held out, calibrated on the four before it (CALIBRATION_WINDOWS).
    result = materialize(
        [compute_capacity_forecast], instance=DagsterInstance.ephemeral(),
        resources={"lake": lake, "io_manager": LakeIOManager(lake=lake)},
        run_config={"ops": {"compute_capacity_forecast": {"config": {"horizon": 24,
                                                                     "history_days": 14,
                                                                     "backtest_windows": 5}}}},
    )  # fmt: skip
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rule"].value == "mean" and "held_out_scores" in metadata
    # A week ahead against quotas is what to rent or move now; calling it "procurement" put a
    # second, disagreeing answer to what to buy beside the monthly plan's.
    assert "procurement" not in metadata and "short_term_headroom" in metadata
    assert metadata["short_term_note"].value.startswith("accelerators to add within 2 days")
    assert metadata["reconciliation"].value == "mint_shrink over total, earth, mars"
    forecast = lake.read_table("compute_capacity_forecast")
    # Four series, their two clusters and the fleet: reconciled, so the clusters add up.
    assert forecast.height == 7 * 24 and forecast["model"].str.contains("LightGBM").all()
    wide = forecast.pivot(on="id", index="time", values="forecast")
    members = {
        "earth": ["vision-training", "llm-inference"],
        "mars": ["speech-training", "research"],
    }
    for cluster, series in members.items():
        assert (
            wide[cluster] - wide.select(pl.sum_horizontal(series)).to_series()
        ).abs().max() < 1e-6
    assert (wide["total"] - wide["earth"] - wide["mars"]).abs().max() < 1e-6


def test_capacity_plan_names_the_history_it_needs():
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=41, step_minutes=60, seed=3)
    with pytest.raises(ValueError, match=r"at least 42 days of telemetry.*has 41"):
        capacity_plan(usage, config=CapacityConfig(), as_of=dt.date(2026, 11, 29))


def _young_fleet() -> tuple[pl.DataFrame, str]:
    """63 days of telemetry in which one series appeared a month before the end."""
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=63, step_minutes=60, seed=3)
    young_id = usage["series_id"].unique().sort()[0]
    arrived = dt.datetime(2026, 10, 30, tzinfo=dt.UTC)
    return usage.filter((pl.col("series_id") != young_id) | (pl.col("time") >= arrived)), young_id


def _level_today(daily: pl.DataFrame) -> dict[str, float]:
    """Each series' mean over its last 28 days (the level spreads are taken at)."""
    return dict(daily.sort("time").group_by("id").agg(pl.col("value").tail(28).mean()).iter_rows())


def test_a_series_younger_than_its_fleet_takes_its_spread_from_the_fleets_relative_errors():
    # On one calendar a series that appeared a month ago counts zero before; its backtest
    # errors there are its arrival, and at today's level they made its type's P90 requirement
    # 146,344 accelerators against a P50 of 786. It has no errors of its own after, so its
    # spread is the other series' relative errors at its level.
    young, young_id = _young_fleet()
    plan = capacity_plan(young, config=load_capacity_config(), as_of=dt.date(2026, 11, 29))
    wide = plan.plan.pivot(
        on="scenario", index=["cluster", "accelerator_type"], values="peak_required"
    )
    assert (wide["p90"] >= wide["p50"]).all()
    assert (wide["p90"] <= 2 * wide["p50"]).all(), wide
    spreads = series_spreads(plan.hierarchy_weekly.filter(pl.col("level") == "series"))
    spread = {i: (source, value) for i, source, value in spreads.iter_rows()}
    # Four series, no peer group of MIN_PEER_SERIES: the fleet's pool.
    assert spread[young_id][0] == "pooled_fleet" and spread[young_id][1] > 0
    assert {s for i, (s, _) in spread.items() if i != young_id} == {"own"}
    # Of a sensible size: no wider, for its level, than the widest of the series it was
    # pooled from.
    levels = _level_today(to_series(with_detail_columns(young), freq="1d"))
    widest = max(v / levels[i] for i, (_, v) in spread.items() if i != young_id)
    assert spread[young_id][1] <= widest * levels[young_id]
    # Its requirement (it is the only series of its cluster and type) says where its spread
    # came from; the others' are their own.
    profile = series_profiles(young).filter(pl.col("id") == young_id).row(0, named=True)
    sources = dict(
        plan.plan.filter(pl.col("scenario") == "p90")
        .select(pl.concat_str("cluster", "accelerator_type"), "spread_source")
        .iter_rows()
    )
    assert sources.pop(profile["cluster"] + profile["accelerator_type"]) == "pooled_fleet"
    assert set(sources.values()) == {"own"}
    assert young_id in spread_note(spreads) and "pooled_fleet" in spread_note(spreads)


def test_series_with_their_own_history_keep_their_bands_when_a_young_one_pools():
    young, young_id = _young_fleet()
    profiles = series_profiles(young)
    daily = to_series(with_detail_columns(young), freq="1d")
    hierarchy = build_hierarchy(profiles, levels=HIERARCHY_LEVELS)
    peers = peer_groups(profiles)
    pooled = reconciled_scenarios(daily, hierarchy, horizon_days=56, peers=peers)
    alone = reconciled_scenarios(daily, hierarchy, horizon_days=56, peers=peers,
                                 pool_spreads=False)  # fmt: skip
    for node in hierarchy.nodes:
        if node == young_id:
            continue
        assert pooled.paths[node].spread_source == alone.paths[node].spread_source == "own"
        for key, band in alone.paths[node].bands.items():
            np.testing.assert_array_equal(pooled.paths[node].bands[key], band)
    # Not pooled, the young series has no spread (and says so); pooled, its P50 is the same.
    assert alone.paths[young_id].spread_source == "none"
    np.testing.assert_array_equal(alone.paths[young_id].bands["p90"],
                                  alone.paths[young_id].bands["p50"])  # fmt: skip
    np.testing.assert_array_equal(pooled.paths[young_id].bands["p50"],
                                  alone.paths[young_id].bands["p50"])  # fmt: skip
    assert (pooled.paths[young_id].bands["p90"] > pooled.paths[young_id].bands["p50"]).all()
    # A requirement without the young series is the same sum either way.
    others = {b: 1.0 for b in hierarchy.bottom if b != young_id}
    for key, band in alone.combination(others).bands.items():
        np.testing.assert_array_equal(pooled.combination(others).bands[key], band)
    # The series path: a young series on a calendar of its own leaves the others untouched.
    series_pooled = scenario_paths(daily, horizon_days=56, peers=peers)
    series_alone = scenario_paths(daily, horizon_days=56, pool_spreads=False)
    for series_id, path in series_alone.items():
        if series_id != young_id:
            assert series_pooled[series_id].spread_source == "own"
            for key, band in path.bands.items():
                np.testing.assert_array_equal(series_pooled[series_id].bands[key], band)
    assert series_pooled[young_id].spread_source == "pooled_fleet"
    assert (series_pooled[young_id].bands["p90"] > series_pooled[young_id].bands["p50"]).all()


def _noisy_levels(series: list[tuple[str, int, float]], *, noise: float, seed: int) -> pl.DataFrame:
    """Daily series (id, days of history, level) that all end on day 140 after START, each
    value its level times 1 + noise · N(0, 1)."""
    rng = np.random.default_rng(seed)
    frames = []
    for series_id, days, level in series:
        t = np.arange(140 - days, 140)
        frames.append(
            pl.DataFrame(
                {"id": series_id, "time": [START + dt.timedelta(days=int(d)) for d in t],
                 "value": level * (1 + noise * rng.standard_normal(t.size))}
            )
        )  # fmt: skip
    return pl.concat(frames)


def _class_fleet() -> pl.DataFrame:
    """Six 140-day series and two of 20 days, at levels 10 to 80."""
    lengths = [(f"s{k}", 140) for k in range(6)] + [("young_x", 20), ("young_w", 20)]
    return _noisy_levels(
        [(series_id, days, 10.0 * (k + 1)) for k, (series_id, days) in enumerate(lengths)],
        noise=0.2,
        seed=4,
    )


def test_scenario_tables_say_where_each_spread_came_from():
    daily = _class_fleet()
    peers = {**{f"s{k}": "x" for k in range(6)}, "young_x": "x", "young_w": "w"}
    bands, weekly = scenario_forecast(daily, horizon_days=28, peers=peers)
    for table in (bands, weekly):
        sources = dict(table.select("id", "spread_source").unique().iter_rows())
        assert sources == {**{f"s{k}": "own" for k in range(6)}, "young_x": "pooled_class",
                           "young_w": "pooled_fleet"}  # fmt: skip
    # Peers but fewer than MIN_PEER_SERIES of them with errors: the fleet's pool.
    few = {**peers, "s0": "y", "s1": "y"}
    _, weekly = scenario_forecast(daily, horizon_days=28, peers=few)
    assert weekly.filter(pl.col("id") == "young_x")["spread_source"].unique().to_list() == [
        "pooled_fleet"
    ]
    # A pooled spread is relative: at the young series' level, the spread of a series like it
    # of its age, which a fit on 20 days makes wider than the others' own on 140.
    levels = _level_today(daily)
    spread = dict(weekly.group_by("id").agg((pl.col("p90") - pl.col("p50")).mean()).iter_rows())
    relative = {i: v / levels[i] for i, v in spread.items()}
    own = [relative[f"s{k}"] for k in range(6)]
    assert max(own) < relative["young_x"] < 3 * max(own)


def _pooled_by_hand(daily: pl.DataFrame, donors: list[str], *, length: int | None) -> np.ndarray:
    """The weekly pooled spread at level 1 of `donors` (one calendar) from their fits on the
    `length` days before each origin (None: their whole history before it)."""
    wide = daily.filter(pl.col("id").is_in(donors)).sort("id", "time")
    values = np.stack([wide.filter(pl.col("id") == d)["value"].to_numpy() for d in donors])
    days = wide.filter(pl.col("id") == donors[0])["time"].to_list()
    options: dict[str, Any] = {"horizon_days": 28, "changepoint_every": 28, "ridge": 50.0,
                               "damping": 0.99, "origin_step": 7}  # fmt: skip
    if length is None:
        _, errors = _point_and_errors(values, days, **options)
        levels, _ = origin_levels(values, changepoint_every=28, origin_step=7)
    else:
        weekday = np.array([d.weekday() for d in days])
        errors, levels = truncated_errors(values, weekday, length=length, **options)
    first = days[-1] + dt.timedelta(days=1)
    relative = dict(zip(donors, relative_errors(errors, levels), strict=True))
    (spread,) = pooled_spreads(relative, ["young"], peers=None, first=first,
                               horizon_days=28).values()  # fmt: skip
    return spread.weekly


def test_a_young_series_pools_the_errors_of_fits_on_as_many_days_as_it_has():
    # Donors fit on two years err less than a series fit on three weeks: pooled from those fits,
    # 20 young series of the 500-series bench had 0.51-0.74 of test days at or below P90. Their
    # fits on the young series' own history length (its 20 days to the week: 21) give its pool.
    daily = _class_fleet()
    donors = [f"s{k}" for k in range(6)]
    truncated = _pooled_by_hand(daily, donors, length=21)
    whole = _pooled_by_hand(daily, donors, length=None)
    assert np.mean(truncated) > 1.5 * np.mean(whole)
    level = _level_today(daily)["young_x"]
    bands = scenario_paths(daily, horizon_days=28)["young_x"].bands
    np.testing.assert_allclose(bands["weekly_p90"] - bands["weekly_p50"], truncated * level,
                               rtol=1e-12)  # fmt: skip
    # The reconciled path pools its donors' reconciled errors of the same truncated fits: as
    # wide as the series path's, not as their errors on the whole history.
    profiles = pl.DataFrame({"id": [*donors, "young_x", "young_w"], "group": ["x"] * 8})
    hierarchy = build_hierarchy(profiles, levels=["group"])
    reconciled = reconciled_scenarios(daily, hierarchy, horizon_days=28).paths["young_x"].bands
    widened = (reconciled["weekly_p90"] - reconciled["weekly_p50"]) / level
    assert np.mean(widened) > 1.5 * np.mean(whole)
    assert 0.7 < np.mean(widened) / np.mean(truncated) < 1.3


def _flat_fleet_with_a_young_series() -> pl.DataFrame:
    """Six flat 140-day series (levels 20 to 120, 5% noise) and one at 100 for its 20 days."""
    own = [(f"s{k}", 140, 20.0 * (k + 1)) for k in range(6)]
    return _noisy_levels([*own, ("young", 20, 100.0)], noise=0.05, seed=5)


def test_a_young_series_reconciled_p50_is_its_own_fit_not_its_arrival():
    # On one calendar a young series counts zero before it joined; fit from the calendar's
    # start, it and every sum above it read its arrival as a jump the trend bends at, and its
    # reconciled P50 ran from 84 to 136 over eight weeks at a level of 100. Fit from its first
    # day, and the sums as their parts, its P50 is its series-path fit's.
    daily = _flat_fleet_with_a_young_series()
    profiles = pl.DataFrame({"id": [f"s{k}" for k in range(6)] + ["young"],
                             "group": ["x"] * 3 + ["y"] * 4})  # fmt: skip
    hierarchy = build_hierarchy(profiles, levels=["group"])
    reconciled = reconciled_scenarios(daily, hierarchy, horizon_days=56).paths["young"].bands
    alone = scenario_paths(daily, horizon_days=56)["young"].bands
    np.testing.assert_allclose(reconciled["weekly_p50"], alone["weekly_p50"], rtol=0.02)
    level = _level_today(daily)["young"]
    assert np.all(np.abs(reconciled["weekly_p50"] / level - 1) < 0.25), reconciled["weekly_p50"]


@pytest.mark.parametrize("days", [200, 50])
def test_sums_with_a_late_member_get_the_points_of_their_parts_fit_apart(days):
    # A sum with a member that joined after its start is fit as its established part plus that
    # member, each from its own start. The parts share the solves of the other rows; the
    # points are those of the parts fit apart. On 50 days the late series has 10 of its own,
    # too few for a fit, and every sum is fit whole.
    daily = _fleet().filter(pl.col("time") < START + dt.timedelta(days=days))
    hierarchy = build_hierarchy(pl.DataFrame({"id": ["a", "b", "c"], "group": ["x", "y", "x"]}),
                                levels=["group"])  # fmt: skip
    values, times = node_values(daily, hierarchy)
    calendar = times.to_list()
    starts = node_starts(daily, hierarchy, calendar)
    offset = len(hierarchy.aggregates)
    late = np.zeros((len(hierarchy.nodes),) * 2, dtype=bool)
    late[:offset, offset:] = (hierarchy.summing[:offset] > 0) & (
        starts[offset:] > starts[:offset, None]
    )
    weekday = np.array([d.weekday() for d in calendar])
    fit = partial(_point_from, weekday=weekday, horizon=28,
                  first_weekday=(calendar[-1] + dt.timedelta(days=1)).weekday(),
                  changepoint_every=28, ridge=50.0, damping=0.99)  # fmt: skip
    whole = fit(values, starts=starts)
    expected = whole.copy()
    settled = starts + MIN_FIT_DAYS <= days
    rows = np.flatnonzero((late & settled).any(axis=1))
    assert [hierarchy.nodes[r] for r in rows] == (["total", "x"] if days == 200 else [])
    for row in rows:
        joined = (late[row] & settled).astype(float)
        part = fit((values[row] - joined @ values)[None, :], starts=starts[[row]])
        expected[row] = part[0] + joined @ whole
    np.testing.assert_allclose(fit(values, starts=starts, late=late), expected, rtol=1e-12)


def test_no_series_with_origins_means_no_spread_and_says_so():
    # Twenty days each: no backtest origin anywhere, nothing to pool.
    daily = _class_fleet().filter(pl.col("id").str.starts_with("young"))
    bands, _ = scenario_forecast(daily, horizon_days=28)
    assert set(bands["spread_source"]) == {"none"}
    assert (bands["p90"] == bands["p50"]).all()
    # The hierarchy: a 63-day calendar on which every series appeared in the last 20 days.
    young, _ = _young_fleet()
    start = dt.datetime(2026, 11, 9, tzinfo=dt.UTC)
    late = young.with_columns(
        [pl.when(pl.col("time") < start).then(0.0).otherwise(pl.col(c)).alias(c)
         for c in ("running", "pending")]
    )  # fmt: skip
    plan = capacity_plan(late, config=load_capacity_config(), as_of=dt.date(2026, 11, 29))
    assert set(plan.hierarchy_weekly["spread_source"]) == {"none"}
    assert set(plan.plan["spread_source"]) == {"none"}
    assert (plan.hierarchy_weekly["p90"] == plan.hierarchy_weekly["p50"]).all()
    note = spread_note(series_spreads(plan.weekly))
    assert "none" in note and "no series had errors to pool" in note


def _example_with(tmp_path, old: str, new: str):
    text = EXAMPLE.read_text()
    assert old in text
    path = tmp_path / "capacity.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # A misspelt key was skipped and its default used: the plan ran on a 16-week lead time.
        (
            "lead_time_weeks = 16",
            "lead_time_week = 20",
            r"capacity.toml: unknown key 'lead_time_week'; expected one of .*lead_time_weeks",
        ),
        # A misspelt class took the "unknown" class's 0.80 in place of training's 0.85.
        (
            "training = 0.85",
            "trainning = 0.85",
            r"capacity.toml: target_utilization.trainning: unknown workload class; expected one "
            r"of training, inference, other, unknown",
        ),
        (
            "ramp_days = 21",
            "ramp_day = 21",
            r"capacity.toml: launches\[1\]: unknown key 'ramp_day'; expected one of",
        ),
        (
            'workload_class = "inference"',
            'workload_class = "batch"',
            r"capacity.toml: launches\[1\].workload_class: 'batch' is not a workload class",
        ),
    ],
)
def test_config_names_a_key_it_does_not_know(tmp_path, old, new, message):
    with pytest.raises(CapacityConfigError, match=message):
        load_capacity_config(_example_with(tmp_path, old, new))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # int() cut 16.9 weeks to 16: orders were dated six days late.
        (
            "lead_time_weeks = 16",
            "lead_time_weeks = 16.9",
            r"capacity.toml: lead_time_weeks: 16.9 is not a whole number",
        ),
        (
            "ramp_days = 21",
            "ramp_days = 2.5",
            r"capacity.toml: launches\[1\].ramp_days: 2.5 is not a whole number",
        ),
        # Hardware arriving after the horizon's end was ordered for the demand the horizon saw,
        # which says nothing of the demand when it arrives.
        (
            "lead_time_weeks = 16",
            "lead_time_weeks = 40",
            r"capacity.toml: lead_time_weeks: 40 weeks is not shorter than horizon_weeks \(26\)",
        ),
    ],
)
def test_config_weeks_and_days_are_whole_and_the_lead_time_inside_the_horizon(
    tmp_path, old, new, message
):
    with pytest.raises(CapacityConfigError, match=message):
        load_capacity_config(_example_with(tmp_path, old, new))


def test_a_type_without_a_price_is_not_priced_at_the_unknown_types_price():
    # "unknown" prices traces that name no accelerator type. A typed fleet missing from the
    # table took it too: L4s at 2.00 instead of 0.45 put 1.37 M on a 0.31 M scenario.
    config = CapacityConfig(accelerator_hour_price={"H100": 2.0, "unknown": 1.0})
    days = [dt.date(2027, 1, 1) + dt.timedelta(days=d) for d in range(10)]
    required = pl.DataFrame(
        {
            "cluster": "earth",
            "accelerator_type": ["L4"] * 10 + ["unknown"] * 10,
            "time": days * 2,
            "p50": 5.0,
            "p90": 6.0,
        }
    )
    fleet = pl.DataFrame(
        {"cluster": ["earth", "earth"], "accelerator_type": ["L4", "unknown"], "fleet": [8.0, 8.0]}
    )
    plan = procurement_plan(required, fleet, config=config, as_of=dt.date(2027, 1, 1))
    by_type = {row["accelerator_type"]: row for row in plan.filter(pl.col("scenario") == "p50")
               .iter_rows(named=True)}  # fmt: skip
    assert by_type["L4"]["scenario_cost_usd"] is None
    assert by_type["unknown"]["scenario_cost_usd"] is not None
    assert unpriced_types(plan, config) == ["L4"]


def test_a_priced_type_whose_fleet_is_unknown_is_not_called_unpriced():
    # Its costs are blank because no fleet is known, not for want of a price: the report's
    # prices line read "no price for A100" with A100 priced at 1.60 in the config.
    config = CapacityConfig(accelerator_hour_price={"A100": 1.6, "H100": 2.9})
    days = [dt.date(2027, 1, 1) + dt.timedelta(days=d) for d in range(10)]
    required = pl.DataFrame(
        {
            "cluster": ["mars"] * 10 + ["earth"] * 10,
            "accelerator_type": ["A100"] * 10 + ["L4"] * 10,
            "time": days * 2,
            "p50": 5.0,
            "p90": 6.0,
        }
    )
    fleet = pl.DataFrame(
        {
            "cluster": ["mars", "earth"],
            "accelerator_type": ["A100", "L4"],
            "fleet": [None, None],
            "fleet_unknown": ["m1", "e1"],
        },
        schema_overrides={"fleet": pl.Float64},
    )
    plan = procurement_plan(required, fleet, config=config, as_of=dt.date(2027, 1, 1))
    assert plan["scenario_cost_usd"].is_null().all()
    assert unpriced_types(plan, config) == ["L4"]


def test_config_names_a_project_tier_without_a_price(tmp_path):
    path = _example_with(tmp_path, 'medical-ner = "expert"', 'medical-ner = "expret"')
    with pytest.raises(
        CapacityConfigError,
        match=r"capacity.toml: project_tier.medical-ner: 'expret' has no price in "
        r"\[annotator_hour_price\] \(standard, expert\)",
    ):
        load_capacity_config(path)


def test_a_listed_tier_needs_a_price_even_when_no_price_is_given(tmp_path):
    # Without an [annotator_hour_price] table the listed tier was accepted and its costs blank.
    path = tmp_path / "capacity.toml"
    path.write_text('[project_tier]\nmedical = "expert"\n')
    with pytest.raises(
        CapacityConfigError,
        match=r"capacity.toml: project_tier.medical: 'expert' has no price in "
        r"\[annotator_hour_price\] \(empty\)",
    ):
        load_capacity_config(path)


def test_procurement_plan_names_the_tiers_it_cannot_price(tmp_path, monkeypatch):
    # A project not in [project_tier] is `standard`; with no standard price its costs were
    # blank and nothing said why, unlike an unpriced accelerator type.
    config = _example_with(tmp_path, "standard = 18.0\n", "")
    config.write_text(config.read_text().replace('toxicity = "standard"\n', "", 1))
    assert unpriced_tiers(
        annotation_costs(
            pl.DataFrame({"project": ["tox", "medical-ner"], "duration_s": [60.0, 60.0]}),
            pl.DataFrame({"project": ["tox", "medical-ner"], "is_tie": [False, False]}),
            None,
            config=load_capacity_config(config),
        ),
        load_capacity_config(config),
    ) == {"standard": ["tox"]}
    monkeypatch.setenv("ANNOTATION_PIPELINES_CAPACITY_CONFIG", str(config))
    from assets.forecasting.assets import procurement_plan as asset
    from resources.lake import LakeIOManager, LocalLake

    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    for (day,), frame in usage.group_by(pl.col("time").dt.date(), maintain_order=True):
        lake.write_table("compute_usage", frame, day=day.isoformat())
    day = "2026-11-28"
    lake.write_table("judgments", pl.DataFrame({"project": ["tox", "medical-ner", "alpha"],
                                                "duration_s": [60.0] * 3}), day=day)  # fmt: skip
    lake.write_table("aggregated_labels", pl.DataFrame({"project": ["tox", "medical-ner", "alpha"],
                     "task_id": ["t", "m", "a"], "is_tie": [False] * 3}), day=day)  # fmt: skip
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [asset], instance=instance,
        resources={"lake": lake, "io_manager": LakeIOManager(lake=lake)},
    )  # fmt: skip
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    named = (
        "no price for tier(s) standard (alpha, tox) in [annotator_hour_price] of capacity.toml: "
        "their annotation costs are blank"
    )
    assert metadata["annotator_prices"].value == named
    report = tmp_path / "lake" / "reports" / "capacity" / "as_of=2026-11-29" / "capacity.html"
    assert named in report.read_text()
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert f"annotation cost: {named}" in logs
    assert "medical-ner" not in named  # its expert tier is priced


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # A misspelt series matched nothing and the launch was dropped from every band.
        ({"series_id": "llm-inferense"},
         r"x.toml: launches\[1\].series_id: no telemetry series 'llm-inferense' \(have "
         r"llm-inference, research, speech-training, vision-training\)"),
        # The launch's demand lands on its series' type and class, whatever it says.
        ({"accelerator_type": "B200"},
         r"x.toml: launches\[1\].accelerator_type: 'B200', but series 'llm-inference' runs on "
         r"L4"),
        ({"workload_class": "training"},
         r"x.toml: launches\[1\].workload_class: 'training', but series 'llm-inference' is "
         r"inference"),
    ],
)  # fmt: skip
def test_plan_names_a_launch_it_cannot_place(change, message):
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    fields = {"name": "rollout", "series_id": "llm-inference", "start": dt.date(2027, 2, 1),
              "accelerators": 32.0, "workload_class": "inference",
              "accelerator_type": "L4"}  # fmt: skip
    config = CapacityConfig(launches=(Launch(**{**fields, **change}),), source="x.toml")
    with pytest.raises(CapacityConfigError, match=message):
        capacity_plan(usage, config=config, as_of=dt.date(2026, 11, 29))


def test_a_launch_under_way_adds_only_the_rest_of_its_ramp():
    # A launch that started before the history ended is in the telemetry as far as it ramped:
    # adding it whole counted that part twice (a finished one, all of it).
    daily = _daily()  # days 0..139; the first forecast day is day 140
    plain, _ = scenario_forecast(daily, horizon_days=28)

    def added(start_day: int) -> np.ndarray:
        launch = Launch(name="x", series_id="a", start=START + dt.timedelta(days=start_day),
                        accelerators=40, ramp_days=10)  # fmt: skip
        banded, _ = scenario_forecast(daily, horizon_days=28, launches=[launch])
        return (banded["p50"] - plain["p50"]).to_numpy()

    assert np.allclose(added(100), 0)  # ramped up a month before the history ended
    # Started on day 136: 4 of its 10 ramp days (16 accelerators) are in the history.
    assert added(136)[0] == pytest.approx(4.0) and added(136)[5] == pytest.approx(24.0)
    assert np.allclose(added(136)[6:], 24.0)
    config = CapacityConfig(
        launches=(Launch(name="old", series_id="a", start=START, accelerators=1),),
    )
    assert config.launches_under_way(first_day=START + dt.timedelta(days=140)) == [
        "old (started 2026-01-05): only the rest of its ramp is added; the telemetry holds "
        "what it brought so far"
    ]


def test_allocation_vs_utilization_is_the_whole_periods():
    # 42 days from 2026-10-18: 14 in October, 28 in November.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    plan = capacity_plan(usage, config=load_capacity_config(), as_of=dt.date(2026, 11, 29))
    # The mean of the two months' means gave October's 14 days November's weight.
    samples = usage.get_column("time").n_unique()
    expected = (
        usage.group_by("cluster", "workload_class")
        .agg((pl.col("running").sum() / samples).alias("allocated"),
             ((pl.col("running") * pl.col("sm_busy")).sum() / samples).alias("busy"))
    )  # fmt: skip
    found = plan.utilization.join(expected, on=["cluster", "workload_class"], suffix="_whole")
    assert found.height == 4
    assert (found["allocated"] - found["allocated_whole"]).abs().max() < 1e-9
    assert (found["busy"] - found["busy_whole"]).abs().max() < 1e-9


def test_a_series_that_reports_no_class_or_type_contradicts_no_launch():
    launch = Launch(name="rollout", series_id="a", start=dt.date(2027, 2, 1), accelerators=8,
                    workload_class="inference", accelerator_type="L4")  # fmt: skip
    config = CapacityConfig(launches=(launch,), source="x.toml")
    config.check_launches({"a": ("unknown", "unknown")})
    with pytest.raises(CapacityConfigError, match=r"launches\[1\].accelerator_type"):
        config.check_launches({"a": ("inference", "H100")})


def test_supply_line_counts_a_series_that_reports_no_class():
    # Such a series is planned at the "unknown" class's target; its quota was left out of the
    # supply line, which then drew a fleet of 544 accelerators at zero.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    unclassed = capacity_plan(
        usage.with_columns(pl.lit(None, dtype=pl.String).alias("workload_class")),
        config=load_capacity_config(), as_of=dt.date(2026, 11, 29),
    )  # fmt: skip
    supply = dict(unclassed.supply.group_by("cluster").agg(pl.col("supply").first()).iter_rows())
    assert supply == {"earth": pytest.approx((256 + 128) * 0.8), "mars": pytest.approx(160 * 0.8)}


def test_an_order_covers_the_days_after_it_arrives_only():
    # Short in the first week, before anything ordered now can arrive (two weeks): ordering
    # for that peak bought 10 accelerators that land after it has passed.
    config = CapacityConfig(lead_time_weeks=2, accelerator_hour_price={"H100": 1.0})
    days = [dt.date(2027, 1, 1) + dt.timedelta(days=d) for d in range(30)]
    required = pl.DataFrame({"cluster": "earth", "accelerator_type": "H100", "time": days,
                             "p50": [30.0] * 5 + [10.0] * 25,
                             "p90": [30.0] * 5 + [10.0] * 20 + [22.5] * 5})  # fmt: skip
    fleet = pl.DataFrame({"cluster": ["earth"], "accelerator_type": ["H100"], "fleet": [20.0]})
    plan = procurement_plan(required, fleet, config=config, as_of=dt.date(2027, 1, 1))
    p50, p90 = plan.sort("scenario").iter_rows(named=True)
    assert p50["runs_short_on"] == dt.date(2027, 1, 1) and p50["peak_required"] == 30.0
    assert p50["to_order"] == 0 and p50["arrives"] is None
    assert p50["status"] == (
        "short until 2027-01-05, before an order placed now arrives (2027-01-15): none to order"
    )
    assert p50["scenario_cost_usd"] == 20 * 30 * 24
    # The P90 is short again after arrival: it orders for that peak alone.
    assert p90["to_order"] == 3 and p90["arrives"] == dt.date(2027, 1, 15)
    assert p90["status"] == "late: order now, arrives 2027-01-15"


def test_annotation_costs_count_the_labels_of_every_kind():
    # Only categorical labels were counted, so the boxes, spans, rankings... projects spent
    # money and showed no cost per curated label.
    config = CapacityConfig(annotator_hour_price={"standard": 20.0})
    judgments = pl.DataFrame({"project": ["tox", "detection"], "duration_s": [3600.0, 7200.0]})
    aggregated = pl.DataFrame({"project": ["tox"], "is_tie": [False]})
    kind_labels = pl.DataFrame({"project": ["detection"] * 4, "kind": ["boxes"] * 4})
    found = annotation_costs(
        judgments, aggregated, None, config=config, kind_aggregated=kind_labels
    )
    costs = {r["project"]: r for r in found.to_dicts()}
    assert costs["detection"]["curated_labels"] == 4
    assert costs["detection"]["cost_per_curated_label"] == 10.0
    assert costs["tox"]["cost_per_curated_label"] == 20.0


def test_cluster_chart_marks_the_days_the_plan_says_the_cluster_runs_short():
    # The chart draws weekly means of the whole cluster against its whole fleet, so a type that
    # runs short on weekdays (earth's L4s today) did not show: the chart said there was room
    # months after the table's date.
    weeks = [START + dt.timedelta(weeks=w) for w in range(4)]
    history = pl.DataFrame({"time": weeks[:2], "value": [10.0, 11.0]})
    bands = pl.DataFrame({"time": weeks[2:], "p50": [12.0, 13.0], "p90": [14.0, 15.0]})
    supply = pl.DataFrame({"time": weeks, "supply": [20.0] * 4})
    figure = cluster_figure(history, bands, supply, cluster="earth",
                            runs_short={"p50": None, "p90": weeks[3]})  # fmt: skip
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert f"P90 runs short (plan, daily, any type): {weeks[3]}" in labels
    assert not any(label.startswith("P50 runs short") for label in labels)


def test_type_chart_puts_each_run_short_line_where_its_curve_crosses_the_fleet():
    # The plan's own daily numbers per type: each run-short line is the first day its
    # scenario's curve is above that type's fleet, and an order's step lands on its arrival.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=2)
    plan = capacity_plan(usage, config=load_capacity_config(), as_of=dt.date(2026, 11, 29))
    required = plan.required.filter(pl.col("cluster") == "mars")
    rows = plan.plan.filter(pl.col("cluster") == "mars")
    figure = type_figure(required, rows, cluster="mars")
    [axis] = figure.axes
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    for row in rows.iter_rows(named=True):
        need = required.filter(pl.col(row["scenario"]) > row["fleet"])
        first = need["time"].min() if need.height else None
        assert first == row["runs_short_on"]
        line = f"{row['scenario'].upper()} runs short: {row['runs_short_on']}"
        assert (line in labels) == (first is not None)
        if row["to_order"]:
            assert f"fleet + {row['scenario'].upper()} order of {row['to_order']:,}" in labels
    assert "fleet 160" in labels
    on_earth = pl.col("cluster") == "earth"
    earth = type_figure(plan.required.filter(on_earth), plan.plan.filter(on_earth), cluster="earth")
    assert [a.get_title() for a in earth.axes] == [
        "earth H100: accelerators to own per day",
        "earth L4: accelerators to own per day",
    ]


def test_allocation_sums_each_series_mean_when_series_sample_at_different_times():
    # Dividing the group's summed samples by its distinct timestamps read a 1-minute and a
    # 5-minute series, each 10 of 16 all day, as 12 of 19.2.
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    every_minute = pl.DataFrame({"time": [start + dt.timedelta(minutes=i) for i in range(1440)],
                                 "running": 10.0, "total": 16.0, "series_id": "a"})  # fmt: skip
    every_five = pl.DataFrame({"time": [start + dt.timedelta(minutes=5 * i) for i in range(288)],
                               "running": 10.0, "total": 16.0, "series_id": "b"})  # fmt: skip
    usage = pl.concat([normalize_usage(f, cluster="earth") for f in (every_minute, every_five)])
    for every in (None, "1d"):
        found = allocation_vs_utilization(usage, every=every)
        assert found.height == 1
        row = found.row(0, named=True)
        assert row["allocated"] == pytest.approx(20.0) and row["total"] == pytest.approx(32.0)
        assert row["unallocated"] == pytest.approx(12.0)


def test_unallocated_is_unknown_where_a_series_reports_no_total():
    # Summed over the series that report one, 100 accelerators for 50 + 60 running read as
    # -10 unallocated, where the plan calls the same fleet unknown.
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    times = [start + dt.timedelta(hours=h) for h in range(24)]
    usage = pl.concat(
        [
            normalize_usage(pl.DataFrame({"time": times, "running": 50.0, "series_id": "a"}),
                            cluster="earth"),
            normalize_usage(pl.DataFrame({"time": times, "running": 60.0, "total": 100.0,
                                          "series_id": "b"}), cluster="earth"),
        ]
    )  # fmt: skip
    for every in (None, "1d"):
        row = allocation_vs_utilization(usage, every=every).row(0, named=True)
        assert row["allocated"] == pytest.approx(110.0)
        assert row["total"] is None and row["unallocated"] is None


def test_annotation_costs_scale_from_the_judgments_with_a_duration_and_say_their_share():
    # A judgment without a duration counted as no time: a project that reports none cost $0.
    config = CapacityConfig(annotator_hour_price={"standard": 36.0})
    judgments = pl.DataFrame(
        {"project": ["tox"] * 4 + ["med"] * 4,
         "duration_s": [None] * 4 + [60.0, 60.0, None, None]},
        schema={"project": pl.String, "duration_s": pl.Float64},
    )  # fmt: skip
    aggregated = pl.DataFrame({"project": ["tox", "med"], "is_tie": [False, False]})
    costs = {
        r["project"]: r
        for r in annotation_costs(judgments, aggregated, None, config=config).to_dicts()
    }
    assert costs["tox"]["duration_share"] == 0.0
    assert costs["tox"]["annotator_hours"] is None and costs["tox"]["cost_usd"] is None
    assert costs["tox"]["cost_per_curated_label"] is None
    # Half of med's judgments were timed: the four are priced at the timed ones' mean.
    assert costs["med"]["duration_share"] == 0.5
    assert costs["med"]["annotator_hours"] == pytest.approx(4 * 60 / 3600)
    assert costs["med"]["cost_usd"] == pytest.approx(4 * 60 / 3600 * 36.0)


def test_cost_note_never_reads_a_share_below_the_whole_as_100_percent():
    # Rounded, 99.6 % read "100%" in the list of projects below 100 %, as the tables once did.
    costs = pl.DataFrame({"project": ["p", "q", "r", "s"],
                          "duration_share": [0.996, 0.5, 0.0, 1.0]})  # fmt: skip
    note = describe_partly_timed(costs)
    assert note is not None and "for p (99.6%), q (50%), r (0%) (none timed" in note
    assert "s (" not in note
    assert describe_partly_timed(costs.filter(pl.col("project") == "s")) is None


def test_capacity_report_tables_drop_no_row_silently():
    # Every table was cut at 60 rows without a word: a plan row past the 60th vanished.
    frame = pl.DataFrame({"cluster": [f"c{i:03d}" for i in range(130)], "to_order": range(130)})
    page = render_capacity_report(title="t", as_of="2026-11-29", charts=[],
                                  sections=[("Procurement plan", frame)])  # fmt: skip
    assert page.count("<tr>") == 131 and "c129" in page
    cut = html_table(frame, max_rows=100, name="procurement_plan")
    assert cut.count("<tr>") == 101
    assert "… 30 more rows (see procurement_plan in the lake)" in cut


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # NaN and inf passed every bound check: a NaN target planned NaN accelerators, an
        # infinite price costed the plan at inf.
        ("training = 0.85", "training = nan", r"capacity.toml: target_utilization.training: nan "
         r"is not a finite number"),
        ("H100 = 2.90", "H100 = nan", r"capacity.toml: accelerator_hour_price.H100: nan is not"),
        ("H100 = 2.90", "H100 = inf", r"capacity.toml: accelerator_hour_price.H100: inf is not"),
        ("accelerators = 32", "accelerators = inf",
         r"capacity.toml: launches\[1\].accelerators: inf is not a finite number"),
        # A TOML date-time loaded and crashed the plan comparing a datetime with a date.
        ('start = "2027-02-01"', "start = 2027-02-01T09:00:00",
         r"capacity.toml: launches\[1\].start: 2027-02-01 09:00:00 is a date and time; give the "
         r"day alone"),
        ('start = "2027-02-01"', "start = 09:00:00", r"launches\[1\].start: expected a date"),
    ],
)  # fmt: skip
def test_config_numbers_are_finite_and_a_start_is_a_day(tmp_path, old, new, message):
    with pytest.raises(CapacityConfigError, match=message):
        load_capacity_config(_example_with(tmp_path, old, new))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("launches = [1, 2]\n", r"bad.toml: launches\[1\]: expected a table, found 1"),
        ('[launches]\nname = "x"\n', r"bad.toml: launches: expected an array of tables"),
        ('launches = "x"\n', r"bad.toml: launches: expected an array of tables"),
        ("[project_tier]\np = 3\n", r"bad.toml: project_tier.p: expected a tier name, found 3"),
    ],
)
def test_config_launches_are_tables(tmp_path, text, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(CapacityConfigError, match=message):
        load_capacity_config(bad)


def test_a_series_with_no_total_leaves_its_fleet_unknown_not_zero():
    # A missing total is "supply unknown"; summed as nothing, mars' 160 accelerators became 64
    # and the P50 ordered 112 where it needs 16.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    mars = usage.filter(pl.col("cluster") == "mars")
    unknown = mars["series_id"].unique().sort()[0]
    blank = usage.with_columns(
        pl.when(pl.col("series_id") == unknown).then(None).otherwise(pl.col("total")).alias("total")
    )
    fleet = current_fleet(blank)
    row = fleet.filter(pl.col("cluster") == "mars").row(0, named=True)
    assert row["fleet"] is None and row["fleet_unknown"] == unknown
    plan = capacity_plan(blank, config=load_capacity_config(), as_of=dt.date(2026, 11, 29))
    rows = plan.plan.filter(pl.col("cluster") == "mars")
    assert rows.height == 2 and rows["fleet"].is_null().all() and rows["to_order"].is_null().all()
    assert rows["scenario_cost_usd"].is_null().all() and rows["runs_short_on"].is_null().all()
    assert rows["peak_required"].is_not_null().all()
    assert all(f"series {unknown} report(s) no total" in s for s in rows["status"])
    assert plan.supply.filter(pl.col("cluster") == "mars")["supply"].is_null().all()
    mars_short = plan.runs_short.filter(pl.col("cluster") == "mars")
    assert all(s.startswith("unknown: fleet of ") for s in mars_short["status"])
    assert any(unknown in note and "mars" in note for note in plan.notes)
    # The other clusters are planned as before.
    earth = capacity_plan(usage, config=load_capacity_config(), as_of=dt.date(2026, 11, 29))
    assert plan.plan.filter(pl.col("cluster") == "earth").equals(
        earth.plan.filter(pl.col("cluster") == "earth")
    )


def test_a_cluster_whose_fleet_is_unknown_does_not_read_as_never_running_short():
    # A blank date reads "not within the horizon": of a cluster made only of types whose fleet
    # is unknown, nobody knows; of one with a known type short on a day, an unknown type may
    # run short sooner.
    config = CapacityConfig(lead_time_weeks=2, target_utilization={"unknown": 0.5})
    days = [dt.date(2027, 1, 1) + dt.timedelta(days=d) for d in range(10)]
    pairs = [("earth", "H100", [5.0] * 10), ("mars", "A100", [5.0] * 10),
             ("venus", "H100", [5.0] * 5 + [30.0] * 5), ("venus", "A100", [5.0] * 10)]  # fmt: skip
    required = pl.concat(
        pl.DataFrame({"cluster": c, "accelerator_type": t, "time": days, "p50": need,
                      "p90": need})
        for c, t, need in pairs
    )  # fmt: skip
    fleet = pl.DataFrame(
        {"cluster": ["earth", "mars", "venus", "venus"],
         "accelerator_type": ["H100", "A100", "H100", "A100"],
         "fleet": [20.0, None, 20.0, None],
         "fleet_unknown": [None, "m1", None, "v2"]},
    )  # fmt: skip
    plan = procurement_plan(required, fleet, config=config, as_of=dt.date(2027, 1, 1))
    short = {(r["cluster"], r["scenario"]): r for r in runs_short(plan).iter_rows(named=True)}
    assert short["earth", "p90"]["runs_short_on"] is None
    assert short["earth", "p90"]["status"] == "not within the horizon"
    assert short["mars", "p90"]["runs_short_on"] is None
    assert short["mars", "p90"]["status"] == "unknown: fleet of A100 unknown"
    assert short["venus", "p90"]["runs_short_on"] == days[5]
    assert short["venus", "p90"]["status"] == (
        f"{days[5].isoformat()} at the latest: fleet of A100 unknown"
    )
    page = render_capacity_report(title="t", as_of="2027-01-01", charts=[],
                                  sections=[("Date each cluster runs short", runs_short(plan))],
                                  notes=[])  # fmt: skip
    assert "unknown: fleet of A100 unknown" in html.unescape(page)


def test_weekly_supply_is_unknown_over_a_series_with_no_total():
    # The weekly forecast summed its nodes' supply with a missing total as zero: the series
    # itself read a supply of 0 (so it "exceeded" it from the first hour and its short-term
    # headroom was its whole demand) and mars 64 of its accelerators, not unknown.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=2, step_minutes=60, seed=3)
    unknown = usage.filter(pl.col("cluster") == "mars")["series_id"].unique().sort()[0]
    blank = usage.with_columns(
        pl.when(pl.col("series_id") == unknown).then(None).otherwise(pl.col("total")).alias("total")
    )
    hierarchy = build_hierarchy(series_profiles(blank), levels=HIERARCHY_LEVELS)
    supply = aggregate_supply(to_series(blank, freq="1h", value="total"), hierarchy)
    missing = set(supply.filter(pl.col("value").is_null()).get_column("id"))
    assert missing == {unknown, "mars", "total"}
    known = aggregate_supply(to_series(usage, freq="1h", value="total"), hierarchy)
    assert supply.filter(pl.col("id") == "earth").equals(known.filter(pl.col("id") == "earth"))
    assert known.get_column("value").is_not_null().all()


def test_procurement_plan_asset_says_which_fleet_is_unknown(tmp_path, monkeypatch):
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    unknown = usage.filter(pl.col("cluster") == "mars")["series_id"].unique().sort()[0]
    blank = usage.with_columns(
        pl.when(pl.col("series_id") == unknown).then(None).otherwise(pl.col("total")).alias("total")
    )
    metadata, lake = _materialize_plan(tmp_path, monkeypatch, blank)
    assert any(unknown in note for note in metadata["telemetry_notes"].value)
    assert metadata["prices"].value == "every accelerator type priced"
    report = tmp_path / "lake" / "reports" / "capacity" / "as_of=2026-11-29" / "capacity.html"
    assert f"series {unknown} report(s) no total" in report.read_text()
    assert (
        lake.read_table("procurement_plan")
        .filter(pl.col("cluster") == "mars")["to_order"]
        .is_null()
        .all()
    )


@pytest.mark.parametrize("reconciliation", [None, "mint_shrink"])
def test_a_series_that_stopped_reporting_is_carried_to_the_fleets_last_day(reconciliation):
    # Three missing days read as zero demand (mars' P50 order of 16 became "enough"), and
    # alone each series was forecast from its own last day, three days off the others.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=49, step_minutes=60, seed=3)
    stale = usage.filter(pl.col("cluster") == "mars")["series_id"].unique().sort()[0]
    cut = usage.filter(
        (pl.col("series_id") != stale) | (pl.col("time").dt.date() <= dt.date(2026, 11, 25))
    )
    config = load_capacity_config()
    full = capacity_plan(usage, config=config, as_of=dt.date(2026, 11, 29),
                         reconciliation=reconciliation)  # fmt: skip
    plan = capacity_plan(cut, config=config, as_of=dt.date(2026, 11, 29),
                         reconciliation=reconciliation)  # fmt: skip
    first = plan.daily.group_by("id").agg(pl.col("time").min())["time"].unique().to_list()
    assert first == [dt.date(2026, 11, 29)] and plan.required["time"].min() == first[0]
    assert any(stale in note and "2026-11-25" in note for note in plan.notes)
    assert not full.notes
    mars = plan.plan.filter(pl.col("cluster") == "mars", pl.col("scenario") == "p50")
    was = full.plan.filter(pl.col("cluster") == "mars", pl.col("scenario") == "p50")
    assert mars["peak_required"].item() == pytest.approx(was["peak_required"].item(), rel=0.1)


def test_the_plan_sets_aside_a_sample_that_is_not_a_count_and_says_so():
    # A NaN pending sample (in a partition written before telemetry was validated) crashed the
    # plan converting NaN to an integer order.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    bad = (
        usage.with_row_index("r")
        .with_columns(
            pl.when(pl.col("r") == usage.height - 5)
            .then(float("nan"))
            .otherwise(pl.col("pending"))
            .alias("pending")
        )
        .drop("r")
    )
    assert bad["pending"].is_nan().sum() == 1
    plan = capacity_plan(bad, config=load_capacity_config(), as_of=dt.date(2026, 11, 29))
    assert plan.plan["to_order"].is_not_null().all() and not plan.daily["p50"].is_nan().any()
    assert any("1 telemetry sample" in note and "not_finite" in note for note in plan.notes)


def test_a_plan_made_after_the_telemetry_ends_starts_on_its_own_day():
    # Empty trailing compute_usage partitions put as_of days after the last telemetry: the
    # forecast started on the day after the telemetry, so a plan could run short before the
    # day it was made on and its horizon ended short of as_of + 26 weeks.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    as_of = dt.date(2026, 12, 1)
    plan = capacity_plan(usage, config=load_capacity_config(), as_of=as_of)
    assert plan.daily["time"].min() == as_of and plan.required["time"].min() == as_of
    assert plan.required["time"].max() == as_of + dt.timedelta(weeks=26, days=-1)
    assert (plan.plan["runs_short_on"].drop_nulls() >= as_of).all()
    assert any("2026-11-28" in note and "2026-11-30" in note for note in plan.notes)


def test_procurement_plan_asset_with_empty_trailing_partitions_plans_from_its_as_of(
    tmp_path, monkeypatch
):
    from annotation_pipelines import schema
    from assets.forecasting.assets import procurement_plan as asset
    from resources.lake import LakeIOManager, LocalLake

    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    for (day,), frame in usage.group_by(pl.col("time").dt.date(), maintain_order=True):
        lake.write_table("compute_usage", frame, day=day.isoformat())
    for day in ("2026-11-29", "2026-11-30"):
        lake.write_table("compute_usage", pl.DataFrame(schema=schema.COMPUTE_USAGE), day=day)
    result = materialize(
        [asset], instance=DagsterInstance.ephemeral(),
        resources={"lake": lake, "io_manager": LakeIOManager(lake=lake)},
    )  # fmt: skip
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["as_of"].value == "2026-12-01"
    assert any("no telemetry after 2026-11-28" in n for n in metadata["telemetry_notes"].value)
    written = lake.read_table("procurement_plan")
    assert (written["runs_short_on"].drop_nulls() >= dt.date(2026, 12, 1)).all()


def _drawn_text(figure) -> str:
    """The text elements of `figure`'s SVG, one a line (the SVG also keeps a math text's
    source in a comment, so the whole document would not do)."""
    import io

    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg")
    return "\n".join(html.unescape(t) for t in re.findall(r">([^<>]*)</text>", buffer.getvalue()))


@pytest.mark.parametrize("name", ["gpu$pool", "a$\\frac$b", "$x$"])
def test_names_with_dollars_are_drawn_as_written(name):
    # Two dollars make mathtext: `a$\frac$b` failed the whole procurement plan, `$x$` lost its
    # dollars and `gpu$pool` was fine only while it had one.
    weeks = [START + dt.timedelta(weeks=w) for w in range(4)]
    history = pl.DataFrame({"time": weeks[:2], "value": [1.0, 2.0]})
    bands = pl.DataFrame({"time": weeks[2:], "p50": [2.0, 3.0], "p90": [3.0, 4.0]})
    supply = pl.DataFrame({"time": weeks, "supply": [5.0] * 4})
    cluster = cluster_figure(history, bands, supply, cluster=name, runs_short={})
    assert f"{name}: accelerators" in _drawn_text(cluster)
    days = [START + dt.timedelta(days=d) for d in range(3)]
    required = pl.DataFrame({"accelerator_type": [name] * 3, "time": days,
                             "p50": [1.0, 2.0, 3.0], "p90": [2.0, 3.0, 4.0]})  # fmt: skip
    plan = pl.DataFrame({"accelerator_type": [name], "scenario": ["p50"], "fleet": [2.0],
                         "to_order": [0], "arrives": [None], "runs_short_on": [days[1]]},
                        schema_overrides={"arrives": pl.Date})  # fmt: skip
    assert f"{name} {name}: accelerators to own" in _drawn_text(
        type_figure(required, plan, cluster=name)
    )
    classes = pl.DataFrame({"cluster": [name], "workload_class": ["training"],
                            "allocated": [2.0], "busy": [1.0]})  # fmt: skip
    assert name in _drawn_text(utilization_figure(classes))
    document = render_capacity_report(title="t", as_of="2026-11-30", charts=[(name, cluster)],
                                      sections=[])  # fmt: skip
    assert "<svg" in document


def test_report_cells_never_read_a_share_as_whole_nor_show_inf():
    # 0.996 rounded to "1.00" said every judgment was timed; a cost per point of an agreement
    # of 0 read "inf".
    frame = pl.DataFrame({"project": ["p", "q"], "duration_share": [0.996, 1.0],
                          "percent_agreement": [0.9999, 0.0], "cost_usd": [12.345, 3.0],
                          "cost_per_agreement_point": [0.5, float("inf")]})  # fmt: skip
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html_table(frame))
    assert cells == ["p", "0.996", "0.999", "12.35", "0.50", "q", "1.000", "0.000", "3.00", "—"]
    config = CapacityConfig(annotator_hour_price={"standard": 36.0})
    costs = annotation_costs(
        pl.DataFrame({"project": ["p", "q"], "duration_s": [3600.0, 3600.0]}),
        pl.DataFrame({"project": ["p", "q"], "is_tie": [False, False]}),
        pl.DataFrame({"project": ["p", "q"], "percent_agreement": [0.5, 0.0]}),
        config=config,
    )
    assert costs["cost_per_agreement_point"].to_list() == [36.0 / 50, None]


def test_a_requirement_equal_to_the_fleet_is_enough_whatever_the_rounding():
    # 4.2 inference accelerators at 0.60 need 7.000000000000001 to own: seven, the fleet. Read
    # exactly, the fleet "ran short" on day 20 with nothing to order and a status that called
    # an order due in a week too late.
    config = CapacityConfig(lead_time_weeks=2, target_utilization={"inference": 0.6})
    days = [dt.date(2027, 1, 1) + dt.timedelta(days=d) for d in range(28)]
    demand = [3.0] * 20 + [4.2] * 8
    bands = pl.DataFrame({"id": "s", "time": days, "p50": demand, "p90": demand})
    profiles = pl.DataFrame({"id": ["s"], "cluster": ["earth"], "workload_class": ["inference"],
                             "accelerator_type": ["H100"]})  # fmt: skip
    required = required_accelerators(bands, profiles, config=config)
    assert required["p50"].max() > 7.0  # what float division gives
    fleet = pl.DataFrame({"cluster": ["earth"], "accelerator_type": ["H100"], "fleet": [7.0]})
    plan = procurement_plan(required, fleet, config=config, as_of=dt.date(2027, 1, 1))
    for row in plan.iter_rows(named=True):
        assert row["status"] == "enough" and row["runs_short_on"] is None
        assert row["to_order"] == 0
    assert runs_short(plan)["runs_short_on"].is_null().all()
    # One more accelerator's worth is short, and ordered.
    more = bands.with_columns(pl.col("p90") + pl.when(pl.col("time") >= days[20]).then(0.6)
                              .otherwise(0.0))  # fmt: skip
    plan = procurement_plan(required_accelerators(more, profiles, config=config), fleet,
                            config=config, as_of=dt.date(2027, 1, 1))  # fmt: skip
    p90 = plan.filter(pl.col("scenario") == "p90").row(0, named=True)
    assert p90["runs_short_on"] == days[20] and p90["to_order"] == 1
    assert p90["status"] == "order by 2027-01-07"


def test_config_that_cannot_be_read_as_text_names_the_file(tmp_path):
    # A directory or a file that is not UTF-8 crashed the plan with Python's own error, the
    # second without the file's name.
    folder = tmp_path / "capacity.toml"
    folder.mkdir()
    with pytest.raises(CapacityConfigError, match=r"capacity.toml: capacity config .*directory"):
        load_capacity_config(folder)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfelead_time_weeks = 16\n")
    with pytest.raises(CapacityConfigError, match=r"binary.toml: not UTF-8 text"):
        load_capacity_config(binary)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('accelerator_type = "L4"', "accelerator_type = 100",
         r"capacity.toml: launches\[1\].accelerator_type: expected a name, found 100"),
        ('accelerator_type = "L4"', 'accelerator_type = ["L4"]',
         r"capacity.toml: launches\[1\].accelerator_type: expected a name, found \['L4'\]"),
        ('series_id = "llm-inference"', "series_id = 5",
         r"capacity.toml: launches\[1\].series_id: expected a name, found 5"),
        ('name = "assistant v2 rollout"', "name = {x = 1}",
         r"capacity.toml: launches\[1\].name: expected a name, found \{'x': 1\}"),
        ('name = "assistant v2 rollout"', 'name = " "',
         r"capacity.toml: launches\[1\].name: expected a name, found ' '"),
    ],
)  # fmt: skip
def test_config_launch_names_are_strings(tmp_path, old, new, message):
    with pytest.raises(CapacityConfigError, match=message):
        load_capacity_config(_example_with(tmp_path, old, new))


def test_config_names_a_launch_given_twice(tmp_path):
    # A block pasted twice added its accelerators twice. One launch may span series under one
    # name; on one series a name says which launch it is.
    text = EXAMPLE.read_text()
    block = text[text.index('[[launches]]\nname = "vision') :]
    path = tmp_path / "capacity.toml"
    path.write_text(text + "\n" + block)
    with pytest.raises(
        CapacityConfigError,
        match=r"capacity.toml: launches\[3\].name: 'vision foundation model' on series "
        r"'vision-training' is launches\[2\] too",
    ):
        load_capacity_config(path)
    path.write_text(text + "\n" + block.replace('"vision-training"', '"llm-inference"'))
    assert [launch.series_id for launch in load_capacity_config(path).launches] == [
        "llm-inference", "vision-training", "llm-inference"
    ]  # fmt: skip


def test_a_launch_after_the_horizon_is_named_not_dropped_unsaid():
    config = CapacityConfig(
        horizon_weeks=4,
        launches=(
            Launch(name="soon", series_id="a", start=dt.date(2027, 1, 10), accelerators=1),
            Launch(name="later", series_id="a", start=dt.date(2027, 1, 29), accelerators=1),
        ),
    )
    first = dt.date(2027, 1, 1)  # 28 forecast days: the last is 2027-01-28
    assert config.launches_after_horizon(first_day=first) == [
        "later (starts 2027-01-29): after the last forecast day (2027-01-28), so not in this plan"
    ]
    # The plan says it beside the launches under way.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    late = Launch(name="far", series_id="llm-inference", start=dt.date(2027, 9, 1),
                  accelerators=32.0)  # fmt: skip
    plan = capacity_plan(usage, config=CapacityConfig(launches=(late,)),
                         as_of=dt.date(2026, 11, 29))  # fmt: skip
    assert plan.launch_notes == (
        "far (starts 2027-09-01): after the last forecast day (2027-05-29), so not in this plan",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("horizon", 0), ("season_length", 0), ("backtest_windows", 0), ("lead_time_days", -3),
     ("queueing_target", -1.0), ("queueing_target", float("nan")),
     # Misspelt, it failed only once the whole backtest had run.
     ("reconciliation", "mint")],
)  # fmt: skip
def test_weekly_forecast_config_refuses_what_it_cannot_plan_with(field, value):
    # A negative lead time dated the rental before the forecast began; a NaN queue blanked
    # every series' headroom; a zero horizon failed deep in the engine.
    from pydantic import ValidationError

    from assets.forecasting.assets import ComputeForecastConfig

    with pytest.raises(ValidationError, match=field):
        ComputeForecastConfig(**{field: value})


def test_weekly_forecast_refuses_a_negative_lead_time_before_reading_the_lake(tmp_path):
    from pydantic import ValidationError

    from assets.forecasting.assets import compute_capacity_forecast
    from resources.lake import LakeIOManager, LocalLake

    lake = LocalLake(base_path=str(tmp_path / "lake"))  # empty: reading it would fail otherwise
    with pytest.raises(ValidationError, match=r"lead_time_days\n.*greater than or equal to 0"):
        materialize(
            [compute_capacity_forecast], instance=DagsterInstance.ephemeral(),
            resources={"lake": lake, "io_manager": LakeIOManager(lake=lake)},
            run_config={"ops": {"compute_capacity_forecast": {"config": {"lead_time_days": -3}}}},
        )  # fmt: skip


def test_weekly_forecast_sets_a_young_series_aside_instead_of_failing_the_fleet(tmp_path):
    # Each series alone (no reconciliation), one that joined 20 hours ago failed the run.
    # Two backtest origins are the fewest a calibrated forecast runs on; the young series is
    # short of them as it was of five.
    from assets.forecasting.assets import compute_capacity_forecast
    from resources.lake import LakeIOManager, LocalLake

    lake = LocalLake(base_path=str(tmp_path / "lake"))
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=14, step_minutes=30, seed=5)
    young = usage.filter(
        (pl.col("series_id") == "research")
        & (pl.col("time") >= pl.col("time").max() - dt.timedelta(hours=20))
    ).with_columns(pl.lit("new-team").alias("series_id"))
    for (day,), frame in pl.concat([usage, young]).group_by(
        pl.col("time").dt.date(), maintain_order=True
    ):
        lake.write_table("compute_usage", frame, day=day.isoformat())
    result = materialize(
        [compute_capacity_forecast], instance=DagsterInstance.ephemeral(),
        resources={"lake": lake, "io_manager": LakeIOManager(lake=lake)},
        run_config={"ops": {"compute_capacity_forecast": {"config": {
            "horizon": 24, "history_days": 14, "backtest_windows": 2, "reconciliation": None,
            "rule": "SeasonalNaive"}}}},
    )  # fmt: skip
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert list(metadata["set_aside"].value) == ["new-team"]
    assert metadata["set_aside"].value["new-team"].startswith("21 points")
    forecast = lake.read_table("compute_capacity_forecast")
    assert set(forecast["id"]) == {"llm-inference", "research", "speech-training",
                                   "vision-training"}  # fmt: skip


def test_a_class_without_a_target_is_planned_at_unknowns_and_the_plan_says_so(
    tmp_path, monkeypatch
):
    # With inference left out of [target_utilization], llm-inference was planned at unknown's
    # 0.80 instead of the example's 0.60 (a third fewer accelerators), and nothing said so.
    usage = generate_compute_usage(end=dt.date(2026, 11, 28), days=42, step_minutes=60, seed=3)
    note = (
        "workload class inference (series llm-inference) has no target in [target_utilization] "
        "of capacity.toml: planned at unknown's 0.80"
    )
    config = load_capacity_config(_example_with(tmp_path, "inference = 0.60\n", ""))
    plan = capacity_plan(usage, config=config, as_of=dt.date(2026, 11, 29), reconciliation=None)
    assert plan.target_notes == (note,)
    # Nor "unknown": the built-in target, named as such, for every class the table leaves out.
    bare = capacity_plan(
        usage, config=CapacityConfig(target_utilization={"training": 0.9}),
        as_of=dt.date(2026, 11, 29), reconciliation=None,
    )  # fmt: skip
    assert bare.target_notes == tuple(
        f"workload class {c} (series {s}) has no target in [target_utilization] of capacity "
        "config: planned at the built-in 0.80 (no unknown target either)"
        for c, s in (("inference", "llm-inference"), ("other", "research"))
    )
    # Every class listed: nothing to say.
    listed = capacity_plan(usage, config=load_capacity_config(), as_of=dt.date(2026, 11, 29),
                           reconciliation=None)  # fmt: skip
    assert listed.target_notes == ()
    # The asset says it in its metadata and the HTML report, beside the other plan notes.
    monkeypatch.setenv("ANNOTATION_PIPELINES_CAPACITY_CONFIG", config.source)
    metadata, _ = _materialize_plan(tmp_path, monkeypatch, usage)
    assert metadata["target_utilization_notes"].value == [note]
    report = tmp_path / "lake" / "reports" / "capacity" / "as_of=2026-11-29" / "capacity.html"
    assert html.escape(f"Target utilization: {note}.") in report.read_text()


def test_config_horizon_is_at_most_two_years(tmp_path):
    # 100,000 weeks loaded and asked the plan for 700,000 days of every series.
    assert load_capacity_config(
        _example_with(tmp_path, "horizon_weeks = 26", "horizon_weeks = 104")
    ).horizon_weeks == 104  # fmt: skip
    for weeks in (105, 100000):
        with pytest.raises(
            CapacityConfigError,
            match=rf"capacity.toml: horizon_weeks: {weeks} weeks is more than 104 \(two years\)",
        ):
            load_capacity_config(
                _example_with(tmp_path, "horizon_weeks = 26", f"horizon_weeks = {weeks}")
            )


SCHEDULE_ZONES = """
import importlib, json, os
import assets.common.schedules, assets.forecasting.assets, assets.forecasting.jobs
results = {}
for zone in ZONES:
    os.environ["ANNOTATION_PIPELINES_TIMEZONE"] = zone
    for module in (assets.common.schedules, assets.forecasting.assets, assets.forecasting.jobs):
        importlib.reload(module)
    from assets.forecasting.assets import procurement_plan
    from assets.forecasting.jobs import weekly_forecast_schedule
    [condition] = procurement_plan.automation_conditions_by_key.values()
    [cron] = [c for c in condition.operands if hasattr(c, "cron_timezone")]
    results[zone] = {
        "weekly": [weekly_forecast_schedule.cron_schedule,
                   weekly_forecast_schedule.execution_timezone],
        "monthly": [cron.cron_schedule, cron.cron_timezone],
    }
print("RESULT " + json.dumps(results))
"""


def test_the_monthly_plan_and_the_weekly_forecast_run_in_the_settings_time_zone():
    # The zone is read when the definitions are imported: a fresh process, whose definitions
    # are imported again under each setting (one process: each costs seconds of imports). In
    # UTC the monthly plan ran at 23:00 on the last day of the month in Los Angeles, before
    # that day's compute_usage partition closed.
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    zones = ("America/Los_Angeles", "Asia/Tokyo")
    child = subprocess.run(
        [sys.executable, "-c", f"ZONES = {zones!r}\n" + SCHEDULE_ZONES],
        cwd=root,
        env={**os.environ, "ANNOTATION_PIPELINES_TIMEZONE": "UTC"},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in child.stdout.splitlines() if x.startswith("RESULT "))
    assert json.loads(line.removeprefix("RESULT ")) == {
        zone: {"weekly": ["0 6 * * 1", zone], "monthly": ["0 7 1 * *", zone]} for zone in zones
    }
