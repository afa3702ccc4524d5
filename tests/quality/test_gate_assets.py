"""The gates through the assets, on a real temporary instance: a day whose agreement is
undefined fails its gate per partition, with the reason, and stays out of the curated dataset."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, FloatMetadataValue, PathMetadataValue

from tests.support import LENIENT_GATES, QUIET, local_graph

GOOD, SOLO = "2026-11-16", "2026-11-17"


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    root = tmp_path_factory.mktemp("gates")
    with local_graph(root, judgments=4_000, start=date(2026, 11, 16), days=2, seed=11) as env:
        # The second day: every task keeps one judgment, so no task can be compared.
        parts = (env[2] / "landing" / "synthetic" / "judgments" / f"day={SOLO}").glob("*.parquet")
        for part in parts:
            frame = pl.read_parquet(part)
            frame.sort("annotator_id").unique("task_id", keep="first").write_parquet(part)
        yield env


def test_undefined_alpha_fails_its_gate_per_day_and_is_held_back_from_curation(graph):
    defs, instance, data = graph
    daily = defs.resolve_job_def("daily_annotation_job")
    # Floors at zero: only an undefined metric can fail.
    runs = {
        day: daily.execute_in_process(
            partition_key=day, instance=instance, run_config=LENIENT_GATES, raise_on_error=False
        )
        for day in (GOOD, SOLO)
    }
    # A failed gate is a verdict on the data, not a crash: the run succeeds, no step fails.
    assert all(run.success for run in runs.values())
    good = {c.check_name: c for c in _report_checks(runs[GOOD])}
    assert good["agreement_floor"].passed and good["agreement_floor"].partition == GOOD
    solo = {c.check_name: c for c in _report_checks(runs[SOLO])}
    check = solo["agreement_floor"]
    assert not check.passed and check.severity.value == "ERROR"
    assert check.partition == SOLO  # the UI shows the day, not "Partition —"
    for project in ("intent", "sentiment", "toxicity"):
        assert f"{project}: undefined: no task has two judgments" in check.description
    assert sorted(check.metadata["failing"].value) == ["intent", "sentiment", "toxicity"]

    lake = data / "lake"
    report = pl.read_parquet(lake / "quality_report" / f"day={SOLO}" / "data.parquet")
    assert not report["gates_passed"].any()
    assert (report["failed_gates"] == "agreement_floor").all()
    html = (lake / "reports" / "quality" / f"day={SOLO}" / "sentiment.html").read_text()
    assert "undefined: no task has two judgments" in html

    instance.add_dynamic_partitions("projects", ["sentiment"])
    curation = defs.resolve_job_def("curation_job")
    result = curation.execute_in_process(
        partition_key="sentiment", instance=instance, run_config=QUIET
    )
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    version = metadata["version_id"]
    # The snapshot's page says which day is missing and why.
    assert metadata["held_back_days"].value == [SOLO]
    assert metadata["held_back_reasons"].value == f"{SOLO}: agreement_floor"
    manifest = json.loads(
        (lake / "datasets" / "sentiment" / version.value / "manifest.json").read_text()
    )
    assert manifest["held_back_days"] == [SOLO]
    rows = pl.concat(
        [
            pl.read_parquet(p)
            for p in (lake / "datasets" / "sentiment" / version.value).glob("*.parquet")
        ]
    )
    solo_tasks = pl.read_parquet(lake / "judgments" / f"day={SOLO}" / "data.parquet")["task_id"]
    assert rows.height > 0
    assert not rows["task_id"].is_in(solo_tasks.implode()).any()


def test_the_failed_check_shows_the_per_project_floor_that_failed_it(graph):
    defs, instance, _ = graph
    config = {
        **QUIET,
        "ops": {
            "quality": {
                "config": {
                    "min_alpha": 0.0,
                    "min_gold_accuracy": 0.0,
                    "min_alpha_per_project": {"sentiment": 0.99},
                    "bootstrap_resamples": 0,
                }
            }
        },
    }
    run = defs.resolve_job_def("daily_annotation_job").execute_in_process(
        partition_key=GOOD, instance=instance, run_config=config, raise_on_error=False
    )
    assert run.success
    check = {c.check_name: c for c in _report_checks(run)}["agreement_floor"]
    assert not check.passed and check.metadata["failing"].value == ["sentiment"]
    assert check.description.startswith("sentiment: alpha 0.")
    assert check.description.endswith("< floor 0.99 (run config)")
    assert check.metadata["floor"].value["sentiment"] == 0.99
    # Each project's figure and floor as numbers too, which the check's Plots panel draws over
    # the days.
    assert isinstance(check.metadata["sentiment/value"], FloatMetadataValue)
    assert check.metadata["sentiment/floor"].value == 0.99
    figure = check.metadata["sentiment/value"].value
    assert 0 < figure < 0.99 and figure == round(figure, 4)
    gold = {c.check_name: c for c in _report_checks(run)}["gold_accuracy_floor"]
    assert gold.passed and "gold accuracy" in gold.description

    # What the asset page shows: the day's verdict in words, a clickable path per project's HTML
    # report, and figures a reader can take in at a glance.
    [report] = [
        e.materialization.metadata
        for e in run.get_asset_materialization_events()
        if e.asset_key == AssetKey("quality_report")
    ]
    assert report["held_back"].value == "sentiment: agreement_floor"
    for project in ("intent", "sentiment", "toxicity"):
        path = report[f"html_report/{project}"]
        assert isinstance(path, PathMetadataValue) and Path(path.value).is_file()
    assert "html_reports" not in report
    for label in ("mean_alpha", "mean_gold_accuracy"):
        value = report[label].value
        assert 0 < value < 1 and value == round(value, 4), (label, value)


def _report_checks(result):
    # The categorical report's checks; kind_quality_report has checks of the same names.
    return [
        check
        for check in result.get_asset_check_evaluations()
        if check.asset_key == AssetKey("quality_report")
    ]


def test_a_projects_floor_in_project_json_holds_on_every_rebuild_of_the_day(graph):
    defs, instance, data = graph
    quality = defs.resolve_job_def("quality_job")
    settings = data / "landing" / "exports" / "sentiment" / "project.json"
    settings.parent.mkdir(parents=True, exist_ok=True)

    def agreement(run_config):
        run = quality.execute_in_process(
            partition_key=GOOD, instance=instance, run_config=run_config, raise_on_error=False
        )
        assert run.success
        return {c.check_name: c for c in _report_checks(run)}["agreement_floor"]

    try:
        # The default floor passes the day's sentiment. The day's own run, which also builds
        # what the rebuilds below read, is the first verdict: its quality step is the one a
        # rebuild with the same config would repeat.
        daily = defs.resolve_job_def("daily_annotation_job")
        run = daily.execute_in_process(partition_key=GOOD, instance=instance, run_config=QUIET)
        assert run.success
        check = {c.check_name: c for c in _report_checks(run)}["agreement_floor"]
        assert "sentiment" not in check.metadata["failing"].value
        assert check.metadata["floor_source"].value["sentiment"] == "default"

        settings.write_text(
            json.dumps({"label_set": ["pos", "neg"], "quality_gates": {"min_alpha": 0.99}})
        )
        # An operator's run that sets other floors, then a rebuild with the default config
        # (what a schedule, sensor or automation condition launches): both apply the file's.
        manual = {**QUIET, "ops": {"quality": {"config": {"min_gold_accuracy": 0.0}}}}
        for run_config in (manual, QUIET):
            check = agreement(run_config)
            assert not check.passed and check.metadata["failing"].value == ["sentiment"]
            assert check.description.startswith("sentiment: alpha 0.")
            assert check.description.endswith("< floor 0.99 (project.json)")
            assert check.metadata["floor"].value["sentiment"] == 0.99
            assert check.metadata["floor_source"].value["sentiment"] == "project.json"
            report = pl.read_parquet(
                data / "lake" / "quality_report" / f"day={GOOD}" / "data.parquet"
            )
            verdict = dict(report.select("project", "failed_gates").rows())
            assert "agreement_floor" in verdict["sentiment"]

        # Run config given for the run still overrides it, for that run only.
        override = {"min_alpha_per_project": {"sentiment": 0.0}}
        check = agreement({**QUIET, "ops": {"quality": {"config": override}}})
        assert "sentiment" not in check.metadata["failing"].value
        assert check.metadata["floor_source"].value["sentiment"] == "run config"
        assert "sentiment" in agreement(QUIET).metadata["failing"].value
    finally:
        settings.unlink(missing_ok=True)


def test_a_malformed_project_json_fails_the_run_in_one_line_naming_file_and_field(graph):
    defs, instance, data = graph
    settings = data / "landing" / "exports" / "sentiment" / "project.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    try:
        settings.write_text(json.dumps({"quality_gates": {"min_alpha": "high"}}))
        run = defs.resolve_job_def("daily_annotation_job").execute_in_process(
            partition_key=GOOD, instance=instance, run_config=QUIET, raise_on_error=False
        )
        assert not run.success
        [failure] = [e for e in run.get_step_failure_events() if e.step_key == "quality"]
        # Dagster wraps what the step raised; the cause is the reason an operator reads.
        error = failure.step_failure_data.error.cause
        assert error.message.strip() == (
            "ValueError: exports/sentiment/project.json: quality_gates.min_alpha: expected a "
            "number in [-1, 1], got 'high'"
        )
    finally:
        settings.unlink(missing_ok=True)


def test_a_day_whose_judgments_changed_since_its_verdict_is_held_back_until_it_is_rebuilt(graph):
    """Late rows for a day that passed reach the lake before its quality step runs again (or
    that step fails): the verdict is of other rows, so it cannot vouch for the day."""
    defs, instance, data = graph
    curation = defs.resolve_job_def("curation_job")
    instance.add_dynamic_partitions("projects", ["sentiment"])

    def curate() -> dict:
        result = curation.execute_in_process(
            partition_key="sentiment", instance=instance, run_config=QUIET
        )
        version = result.get_asset_materialization_events()[0].materialization.metadata
        folder = data / "lake" / "datasets" / "sentiment" / version["version_id"].value
        return json.loads((folder / "manifest.json").read_text())

    def quality(day: str) -> None:
        job = defs.resolve_job_def("quality_job")
        assert job.execute_in_process(
            partition_key=day, instance=instance, run_config=LENIENT_GATES
        ).success

    quality(GOOD)
    assert GOOD not in curate()["held_back_days"]
    part = data / "lake" / "judgments" / f"day={GOOD}" / "data.parquet"
    judged = pl.read_parquet(part)
    late = judged.filter(pl.col("project") == "sentiment").head(1)
    late = late.with_columns(judgment_id=pl.lit("late-1"), annotator_id=pl.lit("late-annotator"))
    pl.concat([judged, late]).write_parquet(part)
    manifest = curate()
    assert manifest["held_back_reasons"][GOOD] == "quality report older than the day's rows"
    assert manifest["source_days"][GOOD]["gates_passed"] is None
    quality(GOOD)
    assert GOOD not in curate()["held_back_days"]


KIND_DAYS = ("2026-11-16", "2026-11-17", "2026-11-18")
QUICK = {
    **QUIET,
    "ops": {
        "quality": {"config": {"min_alpha": 0.0, "bootstrap_resamples": 0}},
        "kind_quality": {"config": {"bootstrap_resamples": 0}},
    },
}


@pytest.fixture(scope="module")
def kinds_graph(tmp_path_factory):
    """Three days with every kind: on the second no gold task of `rankings` is judged; on the
    third only non-categorical projects are judged. Each day's daily run, by day."""
    root = tmp_path_factory.mktemp("kind_gates")
    first, no_gold, kinds_only = KIND_DAYS
    with local_graph(
        root,
        judgments=1_500,
        start=date.fromisoformat(first),
        days=3,
        seed=11,
        kinds=True,
        judgments_per_kind=300,
    ) as (defs, instance, data):
        synthetic = data / "landing" / "synthetic"
        gold = pl.concat(
            [pl.read_parquet(p) for p in (synthetic / "gold_labels" / f"day={no_gold}").glob("*")],
            how="diagonal_relaxed",
        )
        dropped = gold.filter(pl.col("project") == "rankings")["task_id"].implode()
        for part in (synthetic / "judgments" / f"day={no_gold}").glob("*.parquet"):
            frame = pl.read_parquet(part)
            frame.filter(~pl.col("task_id").is_in(dropped)).write_parquet(part)
        for table in ("judgments", "gold_labels"):
            for part in (synthetic / table / f"day={kinds_only}").glob("*.parquet"):
                frame = pl.read_parquet(part)
                frame.filter(pl.col("kind") != "categorical").write_parquet(part)
        daily = defs.resolve_job_def("daily_annotation_job")
        runs = {
            day: daily.execute_in_process(
                partition_key=day, instance=instance, run_config=QUICK, raise_on_error=False
            )
            for day in KIND_DAYS
        }
        yield defs, instance, data, runs


def _checks_of(run, asset: str) -> dict[str, object]:
    return {
        check.check_name: check
        for check in run.get_asset_check_evaluations()
        if check.asset_key == AssetKey(asset)
    }


def test_a_kind_project_with_a_gold_set_is_held_back_on_a_day_without_gold(kinds_graph):
    # rankings has gold in the lake (judged on the first day): a day on which none of its gold
    # tasks is judged checks nothing against gold, and fails as a categorical project's would.
    _, _, data, runs = kinds_graph
    day = KIND_DAYS[1]
    gold = _checks_of(runs[day], "kind_quality_report")["gold_accuracy_floor"]
    assert not gold.passed and gold.severity.value == "ERROR"
    assert "rankings" in gold.metadata["failing"].value
    assert "rankings: undefined: no gold task judged this day" in gold.description
    report = pl.read_parquet(data / "lake" / "kind_quality_report" / f"day={day}" / "*.parquet")
    verdict = dict(report.select("project", "failed_gates").rows())
    assert "gold_accuracy_floor" in verdict["rankings"]


def test_a_day_with_only_other_kinds_judged_passes_the_categorical_gates(kinds_graph):
    # The categorical report of such a day is empty, but the day is not: its row-count gate
    # must not fail (and alert) as for a day without any judgment.
    _, _, data, runs = kinds_graph
    day = KIND_DAYS[2]
    judged = pl.read_parquet(data / "lake" / "judgments" / f"day={day}" / "*.parquet")
    assert judged.height and not (judged["kind"] == "categorical").any()
    checks = _checks_of(runs[day], "quality_report")
    assert set(checks) == {"agreement_floor", "gold_accuracy_floor",
                           "flagged_annotator_share", "row_counts_sane"}  # fmt: skip
    for check in checks.values():
        assert check.passed, (check.check_name, check.description)
        assert check.description == "no categorical project judged this day"
    kinds = _checks_of(runs[day], "kind_quality_report")
    assert kinds["row_counts_sane"].passed


def test_a_kind_day_whose_aggregates_changed_since_its_verdict_is_held_back(kinds_graph):
    defs, instance, data, _ = kinds_graph
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("kind_curated_dataset")}
    )

    def manifest_of(project: str) -> dict:
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        current = data / "lake" / "datasets" / project / "current.json"
        version = json.loads(current.read_text())["version_id"]
        folder = data / "lake" / "datasets" / project / version
        return json.loads((folder / "manifest.json").read_text())

    day = KIND_DAYS[0]
    before = manifest_of("ratings")
    assert day not in before["held_back_days"], before["held_back_reasons"]
    part = data / "lake" / "kind_aggregated_labels" / f"day={day}" / "data.parquet"
    labels = pl.read_parquet(part)
    changed = pl.col("project") == "ratings"
    labels.with_columns(
        value=pl.when(changed).then(pl.col("value") + 1.0).otherwise(pl.col("value"))
    ).write_parquet(part)
    after = manifest_of("ratings")
    assert after["held_back_reasons"][day] == "quality report older than the day's rows"
    # Other projects' days keep their verdicts.
    assert day not in manifest_of("detection")["held_back_days"]


def test_quadratic_kappa_is_reported_only_for_a_project_that_declares_its_labels_order(graph):
    from sklearn.metrics import cohen_kappa_score

    defs, instance, data = graph
    settings = data / "landing" / "exports" / "sentiment" / "project.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    order = ["negative", "neutral", "positive"]
    try:
        settings.write_text(json.dumps({"label_set": order, "ordinal": True}))
        run = defs.resolve_job_def("daily_annotation_job").execute_in_process(
            partition_key=GOOD, instance=instance, run_config=QUIET
        )
        assert run.success
        lake = data / "lake"
        pairs = pl.read_parquet(lake / "annotator_pair_agreement" / f"day={GOOD}" / "data.parquet")
        by_project = {
            project: rows for (project,), rows in pairs.group_by("project", maintain_order=True)
        }
        assert set(by_project) == {"sentiment", "toxicity", "intent"}
        # Nominal labels (no declared order) have no quadratic kappa; their plain kappa stays.
        for project in ("toxicity", "intent"):
            assert by_project[project]["kappa_quadratic"].null_count() == by_project[project].height
            assert by_project[project]["kappa"].null_count() < by_project[project].height
        sentiment = by_project["sentiment"].drop_nulls("kappa_quadratic")
        assert sentiment.height > 0
        judgments = pl.read_parquet(lake / "judgments" / f"day={GOOD}" / "data.parquet").filter(
            pl.col("project") == "sentiment"
        )
        first = sentiment.row(0, named=True)
        a, b = first["annotator_a"], first["annotator_b"]
        answers = (
            judgments.filter(pl.col("annotator_id").is_in([a, b]))
            .pivot(on="annotator_id", index="task_id", values="label", aggregate_function="first")
            .drop_nulls()
        )
        theirs = cohen_kappa_score(answers[a], answers[b], weights="quadratic", labels=order)
        assert first["kappa_quadratic"] == pytest.approx(theirs, abs=1e-9)
        # The materialization says where the column is null and why.
        [event] = [
            e
            for e in run.get_asset_materialization_events()
            if e.asset_key == AssetKey("annotator_pair_agreement")
        ]
        note = event.materialization.metadata["kappa_quadratic"].value
        assert note.startswith("sentiment (declared order: negative < neutral < positive)")
        assert "null for intent, toxicity" in note
    finally:
        settings.unlink(missing_ok=True)
