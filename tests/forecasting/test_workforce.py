"""Workforce throughput, backlog and SLA plan: hand-computed cases and properties."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation_pipelines import schema
from annotation_pipelines.forecasting import (
    PLAN_COLUMNS,
    THROUGHPUT_COLUMNS,
    workforce_forecast,
    workforce_throughput,
)
from annotation_pipelines.forecasting.plot import forecast_figure
from annotation_pipelines.forecasting.workforce.plan import _clear_date

D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def _judgments(rows: list[tuple[str, str, str, dt.datetime, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "judgment_id": [str(n) for n in range(len(rows))],
            "project": [r[0] for r in rows],
            "task_id": [r[1] for r in rows],
            "annotator_id": [r[2] for r in rows],
            "label": ["x"] * len(rows),
            "submitted_at": [r[3] for r in rows],
            "duration_s": [r[4] for r in rows],
        },
        schema_overrides={"submitted_at": schema.UTC_TIMESTAMP, "duration_s": pl.Float64},
    )


def _tasks(rows: list[tuple[str, str, dt.datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": [r[1] for r in rows],
            "project": [r[0] for r in rows],
            "created_at": [r[2] for r in rows],
        },
        schema_overrides={"created_at": schema.UTC_TIMESTAMP},
    )


PROJECTS = pl.DataFrame({"project": ["p", "q"], "overlap": [2, 1], "sla_days": [3, 1]})


def test_throughput_by_hand():
    tasks = _tasks(
        [
            ("p", "t1", _at(D1, 10)),
            ("p", "t2", _at(D1, 11)),
            ("p", "t3", _at(D2, 9)),
            ("p", "t4", _at(D3, 8)),  # never judged
            ("q", "u1", _at(D2, 8)),
        ]
    )
    judgments = _judgments(
        [
            ("p", "t1", "a", _at(D1, 12), 1800.0),
            ("p", "t1", "b", _at(D1, 13), 1800.0),  # t1 complete on day 1
            ("p", "t2", "a", _at(D1, 14), 3600.0),
            ("p", "t2", "a", _at(D2, 9), 600.0),  # a repeat: a judgment, not overlap
            ("p", "t3", "b", _at(D2, 10), 900.0),
            # t3 complete on day 2; a null duration stands at the day's timed mean (600 s)
            ("p", "t3", "c", _at(D2, 11), None),
            ("p", "t5", "a", _at(D2, 12), 300.0),  # t5 has no task row: exists from here
            ("p", "t2", "c", _at(D3, 10), 1200.0),  # t2 complete on day 3
            ("q", "u1", "z", _at(D2, 9), 7200.0),
        ]
    )
    table = workforce_throughput(judgments, tasks, PROJECTS)
    assert table.schema == pl.Schema(THROUGHPUT_COLUMNS)
    expected = pl.DataFrame(
        {
            "project": ["p", "p", "p", "q", "q"],
            "day": [D1, D2, D3, D2, D3],
            "tasks_created": [2, 2, 1, 1, 0],
            "judgments": [3, 4, 1, 1, 0],
            "tasks_completed": [1, 1, 1, 1, 0],
            "annotators": [2, 3, 1, 1, 0],
            "annotator_hours": [2.0, 2 / 3, 1 / 3, 2.0, 0.0],
            "judgments_per_annotator_hour": [1.5, 6.0, 3.0, 0.5, None],
            "backlog": [1, 2, 2, 0, 0],
        },
        schema=THROUGHPUT_COLUMNS,
    )
    assert table.equals(expected), table
    # `through` cuts the history: as of day 2, t2 is still open.
    earlier = workforce_throughput(judgments, tasks, PROJECTS, through=D2)
    assert earlier.filter(pl.col("project") == "p")["backlog"].to_list() == [1, 2]


def test_throughput_errors_name_the_problem():
    tasks = _tasks([("other", "t1", _at(D1, 1))])
    with pytest.raises(ValueError, match=r"no overlap/sla_days for project.*'other'"):
        workforce_throughput(_judgments([]), tasks, PROJECTS)
    with pytest.raises(ValueError, match="overlap >= 1"):
        workforce_throughput(
            _judgments([]), tasks, pl.DataFrame({"project": ["p"], "overlap": [0], "sla_days": [1]})
        )
    with pytest.raises(ValueError, match="negative duration_s"):
        workforce_throughput(_judgments([("p", "t1", "a", _at(D1, 2), -5.0)]), _tasks([]), PROJECTS)
    assert workforce_throughput(_judgments([]), _tasks([]), PROJECTS).is_empty()


@st.composite
def _activity(draw):
    n_tasks = draw(st.integers(1, 12))
    tasks = [
        ("p", f"t{i}", _at(D1 + dt.timedelta(days=draw(st.integers(0, 5))), 6))
        for i in range(n_tasks)
    ]
    rows = []
    for task in range(n_tasks):
        for _ in range(draw(st.integers(0, 4))):
            day = D1 + dt.timedelta(days=draw(st.integers(0, 7)))
            rows.append(
                ("p", f"t{task}", draw(st.sampled_from("abc")), _at(day, draw(st.integers(0, 23))),
                 float(draw(st.integers(0, 3600))))
            )  # fmt: skip
    overlap = draw(st.integers(1, 3))
    return tasks, rows, overlap


@settings(max_examples=60, deadline=None)
@given(_activity())
def test_throughput_properties(activity):
    task_rows, judgment_rows, overlap = activity
    projects = pl.DataFrame({"project": ["p"], "overlap": [overlap], "sla_days": [2]})
    judgments = _judgments(judgment_rows)
    table = workforce_throughput(judgments, _tasks(task_rows), projects)
    backlog = table["backlog"].cast(pl.Int64)
    flow = (
        table["tasks_created"].cast(pl.Int64) - table["tasks_completed"].cast(pl.Int64)
    ).cum_sum()
    assert backlog.to_list() == flow.to_list()
    assert (backlog >= 0).all()
    assert table["judgments"].sum() == len(judgment_rows)
    assert table["annotator_hours"].sum() == pytest.approx(sum(r[4] for r in judgment_rows) / 3600)
    distinct = {}
    for _, task, annotator, _, _ in judgment_rows:
        distinct.setdefault(task, set()).add(annotator)
    assert table["tasks_completed"].sum() == sum(len(a) >= overlap for a in distinct.values())
    assert table["tasks_created"].sum() == len(task_rows)
    days = table["day"]
    assert days.diff().drop_nulls().dt.total_days().eq(1).all()


def _constant_throughput(project: str, *, days: int, hours: float, backlog: int) -> pl.DataFrame:
    start = dt.date(2024, 1, 1)
    return pl.DataFrame(
        {
            "project": [project] * days,
            "day": [start + dt.timedelta(days=n) for n in range(days)],
            "tasks_created": [20] * days,
            "judgments": [int(hours * 10)] * days,  # 10 judgments per annotator-hour
            "tasks_completed": [20] * days,
            "annotators": [3] * days,
            "annotator_hours": [hours] * days,
            "judgments_per_annotator_hour": [10.0] * days,
            "backlog": [backlog] * days,
        }
    )


def test_plan_by_hand_and_short_histories():
    # 20 tasks a day, 10 judgments per annotator-hour, overlap 2, 14-day horizon.
    throughput = pl.concat(
        [
            _constant_throughput("p", days=70, hours=4.0, backlog=90),
            _constant_throughput("r", days=70, hours=4.0, backlog=90),
            _constant_throughput("s", days=70, hours=8.0, backlog=0),
            _constant_throughput("t", days=70, hours=4.0, backlog=90),
            _constant_throughput("short", days=10, hours=4.0, backlog=0),
            _constant_throughput("tiny", days=3, hours=4.0, backlog=0),
        ]
    )
    projects = pl.DataFrame(
        {
            "project": ["p", "r", "s", "t", "short", "tiny"],
            "overlap": [2, 2, 2, 2, 2, 2],
            "sla_days": [2, 10, 5, 10, 5, 5],
        }
    )
    result = workforce_forecast(
        throughput,
        projects,
        horizon_days=14,
        backtest_windows=2,
        staffing_hours_per_week={"p": 70.0, "t": 35.0},
        models=["AutoETS"],
    )
    assert result.plan.schema == pl.Schema(PLAN_COLUMNS)
    assert result.forecast.schema == pl.Schema(schema.CAPACITY_FORECAST)
    assert result.forecast.group_by("id").len().sort("id")["len"].to_list() == [14] * 6
    # A constant history: the seasonal naive (the tie-break) forecasts 20 a day exactly.
    assert result.forecast["forecast"].to_list() == [20.0] * 84
    plan = {row["project"]: row for row in result.plan.iter_rows(named=True)}
    as_of = dt.date(2024, 3, 10)

    p = plan["p"]
    assert p["judgments_per_annotator_hour"] == 10.0
    assert p["forecast_tasks_per_week"] == 140.0
    assert p["steady_hours_per_week"] == 28.0  # 140 tasks x 2 / 10
    assert p["backlog_hours"] == 18.0  # 90 x 2 / 10
    assert p["hours_needed_per_week"] == 91.0  # 28 + 18 x 7 / 2
    assert p["hours_gap_per_week"] == 21.0
    # 70 h/week = 10 h/day = 50 tasks/day against 20 arriving: 90 -> 60 -> 30 -> 0.
    assert p["backlog_clear_date"] == as_of + dt.timedelta(days=3)
    assert p["sla_deadline"] == as_of + dt.timedelta(days=2)
    assert p["at_risk"] and "91.0" in p["risk_reason"] and "after the SLA" in p["risk_reason"]

    r = plan["r"]  # recent staffing: 4 h/day = 28 h/week = exactly the arrivals
    assert r["current_hours_per_week"] == 28.0
    assert r["hours_needed_per_week"] == pytest.approx(28.0 + 18.0 * 7 / 10)
    assert r["backlog_clear_date"] is None
    assert r["at_risk"] and "does not clear" in r["risk_reason"]

    s = plan["s"]  # twice the hours needed, nothing waiting
    assert s["current_hours_per_week"] == 56.0
    assert s["hours_needed_per_week"] == 28.0
    assert s["backlog_clear_date"] == as_of
    assert not s["at_risk"] and s["risk_reason"] is None

    t = plan["t"]  # 35 h/week = 25 tasks/day: 5/day net, 90 -> 20 left after 14 days, 4 more
    assert t["backlog_clear_date"] == as_of + dt.timedelta(days=18)
    assert t["clear_date_extrapolated"]

    scores = {row["id"]: row for row in result.scores.iter_rows(named=True)}
    assert scores["p"]["held_out"] and scores["p"]["reason"] is None
    assert (
        plan["short"]["model"] == "SeasonalNaive"
        and "without a backtest" in (plan["short"]["model_reason"])
    )
    assert plan["tiny"]["model"] == "Naive" and not scores["tiny"]["held_out"]
    assert "3 days of history" in scores["tiny"]["reason"]


def test_days_whose_judgments_have_no_duration_neither_lower_the_hours_nor_raise_the_rate():
    # Counted as zero hours, untimed judgments made a project look twice as fast per hour
    # and half as staffed as it is.
    judgments = _judgments(
        [
            ("q", "u1", "z", _at(D1, 9), 3600.0),
            ("q", "u2", "z", _at(D1, 10), 3600.0),
            ("q", "u3", "z", _at(D2, 9), None),
            ("q", "u4", "z", _at(D2, 10), None),
        ]
    )
    table = workforce_throughput(judgments, _tasks([]), PROJECTS)
    assert table.select("day", "judgments", "annotator_hours").rows() == [
        (D1, 2, 2.0),
        (D2, 2, None),
    ]
    throughput = _constant_throughput("s", days=70, hours=8.0, backlog=0).with_columns(
        annotator_hours=pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.col("annotator_hours"))
    )
    result = workforce_forecast(
        throughput, PROJECTS.with_columns(project=pl.lit("s")).head(1), models=["AutoETS"]
    )
    [plan] = result.plan.iter_rows(named=True)
    assert plan["judgments_per_annotator_hour"] == 10.0
    assert plan["current_hours_per_week"] == 56.0


def test_plan_rejects_unconfigured_projects_and_gaps():
    throughput = _constant_throughput("p", days=10, hours=1.0, backlog=0)
    with pytest.raises(ValueError, match="'p'"):
        workforce_forecast(
            throughput,
            pl.DataFrame({"project": ["x"], "overlap": [1], "sla_days": [1]}),
            horizon_days=7,
            backtest_windows=2,
        )
    # The operator has to know which project's partitions to rebuild.
    with pytest.raises(ValueError, match=r"one row per day.*'p': missing 2024-01-05$"):
        workforce_forecast(
            throughput.filter(pl.col("day") != dt.date(2024, 1, 5)),
            pl.DataFrame({"project": ["p"], "overlap": [1], "sla_days": [1]}),
            horizon_days=7,
            backtest_windows=2,
        )
    with pytest.raises(ValueError, match=r"'p': repeated 2024-01-03$"):
        workforce_forecast(
            pl.concat([throughput, throughput.filter(pl.col("day") == dt.date(2024, 1, 3))]),
            pl.DataFrame({"project": ["p"], "overlap": [1], "sla_days": [1]}),
            horizon_days=7,
            backtest_windows=2,
        )


@settings(max_examples=200, deadline=None)
@given(
    backlog=st.floats(0, 500),
    arrivals=st.lists(st.floats(0, 50), min_size=1, max_size=30),
    capacity=st.floats(0, 80),
    more=st.floats(0, 40),
)
def test_clear_date_properties(backlog, arrivals, capacity, more):
    as_of = dt.date(2024, 1, 1)
    clear, _ = _clear_date(
        as_of=as_of, backlog=backlog, arrivals=arrivals, capacity_per_day=capacity
    )
    faster, _ = _clear_date(
        as_of=as_of, backlog=backlog, arrivals=arrivals, capacity_per_day=capacity + more
    )
    # More capacity never clears later.
    if clear is not None:
        assert faster is not None and faster <= clear
    if clear is not None and clear <= as_of + dt.timedelta(days=len(arrivals)):
        # Within the horizon the date is exactly the first day the running balance hits zero.
        days = (clear - as_of).days
        assert backlog + sum(arrivals[:days]) - capacity * days <= 1e-6
        if days:
            before = backlog + sum(arrivals[: days - 1]) - capacity * (days - 1)
            assert before > 0


def test_short_histories_say_no_interval_instead_of_a_zero_width_one():
    # One day leaves the naive forecast no residual, seven days leave the seasonal naive none,
    # eight leave it one: statsforecast drew zero-width (or one-difference) bands for them.
    volumes = [23, 17, 21, 26, 18, 20, 25, 19, 22, 16]
    throughput = pl.concat(
        [
            _constant_throughput(project, days=days, hours=4.0, backlog=0).with_columns(
                pl.Series("tasks_created", volumes[:days])
            )
            for project, days in (("day", 1), ("week", 7), ("eight", 8), ("ten", 10))
        ]
    )
    projects = pl.DataFrame(
        {"project": ["day", "week", "eight", "ten"], "overlap": [2] * 4, "sla_days": [5] * 4}
    )
    result = workforce_forecast(throughput, projects, horizon_days=14, backtest_windows=2)
    bounds = ["lo_80", "hi_80", "lo_95", "hi_95"]
    without = result.forecast.filter(pl.col("id").is_in(["day", "week", "eight"]))
    assert without.height == 42 and without.select(bounds).null_count().row(0) == (42,) * 4
    assert without["forecast"].null_count() == 0
    ten = result.forecast.filter(pl.col("id") == "ten")
    assert ten.select(bounds).null_count().row(0) == (0,) * 4
    assert (ten["hi_80"] > ten["lo_80"]).all() and (ten["hi_95"] > ten["hi_80"]).all()

    plan = {row["project"]: row for row in result.plan.iter_rows(named=True)}
    assert plan["day"]["interval_reason"].startswith("no interval: 1 day of history leaves 0 Naive")
    assert "7 days of history leave 0 SeasonalNaive" in plan["week"]["interval_reason"]
    assert "8 days of history leave 1 SeasonalNaive residual to" in plan["eight"]["interval_reason"]
    assert "a backtested interval needs 63 days" in plan["week"]["interval_reason"]
    for project in ("day", "week", "eight"):
        assert plan[project]["forecast_tasks_per_week_hi_80"] is None
        assert plan[project]["hours_needed_per_week_hi_80"] is None
        assert plan[project]["hours_needed_per_week"] is not None
    assert plan["ten"]["interval_reason"] is None
    assert plan["ten"]["hours_needed_per_week_hi_80"] > plan["ten"]["hours_needed_per_week"]

    reasons = dict(result.plan.select("project", "interval_reason").iter_rows())
    figure = forecast_figure(result.history, result.forecast, last=60, notes=reasons)
    panels = {axis.get_title(): axis for axis in figure.axes}
    for project in ("day", "week", "eight"):
        legend = [text.get_text() for text in panels[project].get_legend().get_texts()]
        assert legend[0] == reasons[project] and "80%" not in legend and "95%" not in legend
        assert not panels[project].collections  # no band drawn
    legend = [text.get_text() for text in panels["ten"].get_legend().get_texts()]
    assert {"80%", "95%"} <= set(legend) and not any("no interval" in t for t in legend)
    assert len(panels["ten"].collections) == 2
    bare = forecast_figure(result.history, result.forecast.filter(pl.col("id") == "day"))
    assert bare.axes[0].get_legend().get_texts()[0].get_text() == "no interval"


def test_durations_and_hours_that_are_not_finite_count_as_unknown():
    # Ingest quarantines them now, but a lake written before may hold them: an infinite hour
    # made the rate 0 and the plan divide by zero, a NaN blanked the whole plan row.
    rows = [
        ("q", "u1", "z", _at(D1, 9), 3600.0),
        ("q", "u2", "z", _at(D1, 10), float("nan")),
        ("q", "u3", "z", _at(D2, 9), 1800.0),
        ("q", "u4", "z", _at(D2, 10), float("inf")),
        ("q", "u5", "z", _at(D3, 9), float("-inf")),
    ]
    unknown = [(*row[:4], row[4] if row[4] in (3600.0, 1800.0) else None) for row in rows]
    table = workforce_throughput(_judgments(rows), _tasks([]), PROJECTS)
    assert table.equals(workforce_throughput(_judgments(unknown), _tasks([]), PROJECTS))
    assert table.select("day", "annotator_hours").rows() == [(D1, 2.0), (D2, 1.0), (D3, None)]

    throughput = _constant_throughput("s", days=70, hours=8.0, backlog=5)
    poisoned = throughput.with_columns(
        annotator_hours=pl.when(pl.col("day") == pl.col("day").max())
        .then(float("inf"))
        .when(pl.col("day") == pl.col("day").max() - dt.timedelta(days=1))
        .then(float("nan"))
        .otherwise(pl.col("annotator_hours"))
    )
    projects = PROJECTS.with_columns(project=pl.lit("s")).head(1)
    [plan] = workforce_forecast(poisoned, projects, models=["Naive"]).plan.iter_rows(named=True)
    assert plan["judgments_per_annotator_hour"] == 10.0
    assert plan["current_hours_per_week"] == 56.0
    assert plan["hours_needed_per_week"] is not None


def test_recent_days_without_durations_estimate_staffing_from_the_rate_they_fall_back_to():
    # A tool that stops sending durations: the rate falls back to the whole history, and
    # staffing used to read 0 h/week, so a backlog never cleared at "current staffing".
    throughput = _constant_throughput("s", days=70, hours=8.0, backlog=5)
    untimed_tail = throughput.with_columns(
        annotator_hours=pl.when(pl.int_range(pl.len()) < 56).then(pl.col("annotator_hours"))
    )
    projects = PROJECTS.with_columns(project=pl.lit("s")).head(1)
    [plan] = workforce_forecast(untimed_tail, projects, models=["Naive"]).plan.iter_rows(named=True)
    assert plan["judgments_per_annotator_hour"] == 10.0
    assert plan["current_hours_per_week"] == pytest.approx(56.0)  # 80 judgments/day ÷ 10/h
    assert plan["backlog_clear_date"] is not None
    assert plan["staffing_reason"] == (
        "14 of the last 14 days have no durations: their hours are estimated as their 1120 "
        "judgments at the whole history's 10.0 judgments per annotator-hour"
    )
    # Measured staffing has no reason; no hours at all is unknown staffing, not zero.
    [measured] = workforce_forecast(throughput, projects, models=["Naive"]).plan.iter_rows(
        named=True
    )
    assert measured["staffing_reason"] is None and measured["current_hours_per_week"] == 56.0
    never_timed = throughput.with_columns(annotator_hours=pl.lit(None, pl.Float64))
    [unknown] = workforce_forecast(never_timed, projects, models=["Naive"]).plan.iter_rows(
        named=True
    )
    assert unknown["current_hours_per_week"] is None
    assert unknown["staffing_reason"] == "no annotator-hours recorded: current staffing unknown"
    assert unknown["at_risk"] and "judgments per hour unknown" in unknown["risk_reason"]
