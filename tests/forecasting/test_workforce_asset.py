"""Workforce assets on a real instance: projects that arrive with no plan get the defaults."""

from datetime import date

import polars as pl

from tests.support import LENIENT_GATES, local_graph


def test_projects_without_a_plan_get_the_settings_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_DEFAULT_OVERLAP", "4")
    with local_graph(tmp_path, judgments=3_000, start=date(2026, 11, 16), days=1, seed=5) as env:
        defs, instance, data = env
        # Without the generator's catalogue the projects are known only from their judgments,
        # as every project that arrives through the annotation DB is.
        (data / "landing" / "synthetic" / "projects.parquet").unlink()
        # A new project whose tasks land before its first judgment: known only from its tasks.
        day_dir = data / "landing" / "synthetic" / "tasks" / "day=2026-11-16"
        tasks = pl.read_parquet(sorted(day_dir.glob("*.parquet"))[0])
        tasks.head(3).with_columns(
            project=pl.lit("newproj"), task_id=pl.format("new-{}", pl.col("task_id"))
        ).write_parquet(day_dir / "part-99999.parquet")
        result = defs.resolve_job_def("daily_annotation_job").execute_in_process(
            partition_key="2026-11-16", instance=instance, run_config=LENIENT_GATES
        )
        assert result.success
        throughput = pl.read_parquet(
            data / "lake" / "workforce_throughput_daily" / "day=2026-11-16" / "data.parquet"
        )
        judged = pl.read_parquet(data / "lake" / "judgments" / "day=2026-11-16" / "data.parquet")
        assert set(throughput["project"]) == set(judged["project"]) | {"newproj"}
        assert len(set(judged["project"])) == 3
        [new] = throughput.filter(pl.col("project") == "newproj").iter_rows(named=True)
        assert (new["tasks_created"], new["judgments"], new["backlog"]) == (3, 0, 3)


def test_a_bad_project_json_plan_falls_back_for_that_project_alone(tmp_path, capfd):
    # One project's `"overlap": 0` failed the throughput day of every project, and the error
    # named neither the file nor the field.
    import datetime as dt
    import json

    from dagster import build_asset_context

    from annotation_pipelines.forecasting import workforce_throughput
    from assets.workforce.assets import _plans_for
    from resources.landing import LocalLandingZone

    for project, plan in [
        ("beta", {"overlap": 0}),
        ("gamma", {"sla_days": 0, "overlap": 2}),
        ("delta", {"overlap": "3", "sla_days": 1.5}),
        ("epsilon", "{not json"),
        ("zeta", {"overlap": 2, "sla_days": 4}),
    ]:
        (tmp_path / "exports" / project / "jsonl").mkdir(parents=True)
        (tmp_path / "exports" / project / "jsonl" / "x.jsonl").write_text("")
        text = plan if isinstance(plan, str) else json.dumps(plan)
        (tmp_path / "exports" / project / "project.json").write_text(text)
    landing = LocalLandingZone(path=str(tmp_path), settle_seconds=0)
    names = ["alpha", "beta", "delta", "epsilon", "gamma", "zeta"]
    plans = _plans_for(build_asset_context(), landing, pl.Series(names))
    assert plans.table.rows() == [
        ("alpha", 3, 2.0),  # known only from its judgments: the defaults
        ("beta", 3, 2.0),
        ("delta", 3, 1.5),
        ("epsilon", 3, 2.0),
        ("gamma", 2, 2.0),
        ("zeta", 2, 4.0),
    ]
    assert plans.notes[0] == (
        "exports/beta/project.json: overlap: expected a whole number >= 1, got 0; "
        "using the default 3"
    )
    assert plans.notes[1] == (
        "exports/delta/project.json: overlap: expected a whole number >= 1, got '3'; "
        "using the default 3"
    )
    assert plans.notes[2].startswith("exports/epsilon/project.json: not valid JSON")
    assert plans.notes[3] == (
        "exports/gamma/project.json: sla_days: expected a number > 0, got 0; using the default 2"
    )
    assert len(plans.notes) == 4
    logged = capfd.readouterr().err
    assert all(f"WARNING - system - workforce plan: {note}" in logged for note in plans.notes)
    at = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
    judgments = pl.DataFrame(
        {"task_id": names, "project": names, "annotator_id": ["x"] * 6,
         "submitted_at": [at] * 6, "duration_s": [30.0] * 6}
    )  # fmt: skip
    tasks = judgments.select("task_id", "project", created_at="submitted_at")
    table = workforce_throughput(judgments, tasks, plans.table, through=at.date())
    assert table["project"].to_list() == names


def test_a_plan_number_no_float_holds_falls_back_too(tmp_path):
    # JSON has no limit on digits: an integer past a float's range is no overlap either.
    from dagster import build_asset_context

    from assets.workforce.assets import _plans_for
    from resources.landing import LocalLandingZone

    (tmp_path / "exports" / "huge" / "jsonl").mkdir(parents=True)
    (tmp_path / "exports" / "huge" / "jsonl" / "x.jsonl").write_text("")
    digits = "9" * 400
    (tmp_path / "exports" / "huge" / "project.json").write_text(
        f'{{"overlap": {digits}, "sla_days": {digits}}}'
    )
    landing = LocalLandingZone(path=str(tmp_path), settle_seconds=0)
    plans = _plans_for(build_asset_context(), landing, pl.Series(["huge"]))
    assert plans.table.rows() == [("huge", 3, 2.0)]
    assert len(plans.notes) == 2
