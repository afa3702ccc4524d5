"""The quality gates: undefined metrics fail, per-project floors are shown, verdicts per day."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from annotation_pipelines.aggregation import fit
from annotation_pipelines.quality import (
    gate_checks,
    gate_verdicts,
    held_out_gold_consensus,
    quality_gates,
    quality_report,
)
from annotation_pipelines.quality.gates import Floor, pick_floor, project_gate_floors
from annotation_pipelines.synthetic import generate_workload
from tests.quality.conftest import DAY, majority


def _day(rows: list[tuple[str, str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema=["project", "task_id", "annotator_id", "label"], orient="row"
    ).with_columns(day=pl.lit(DAY))


def _report(judgments: pl.DataFrame, gold: pl.DataFrame | None = None) -> pl.DataFrame:
    gold = gold if gold is not None else pl.DataFrame(schema=["task_id", "project", "label"])
    return quality_report(judgments, majority(judgments), gold.cast(pl.String))


def test_one_judgment_per_task_fails_the_agreement_gate_as_undefined_even_at_floor_zero():
    judgments = _day([("solo", f"t{i}", f"a{i % 3}", "xy"[i % 2]) for i in range(12)])
    gates = quality_gates(_report(judgments), min_alpha=0.0)
    row = gates.filter(pl.col("gate") == "agreement_floor").row(0, named=True)
    assert not row["passed"] and row["severity"] == "ERROR" and row["value"] is None
    assert row["description"] == "undefined: no task has two judgments"
    [check] = [c for c in gate_checks(gates) if c.name == "agreement_floor"]
    assert not check.passed and check.failing == ["solo"]
    assert check.description == "solo: undefined: no task has two judgments"


def test_a_unanimous_day_is_undefined_too():
    judgments = _day([("same", f"t{i}", f"a{j}", "x") for i in range(4) for j in range(3)])
    row = (
        quality_gates(_report(judgments), min_alpha=0.0)
        .filter(pl.col("gate") == "agreement_floor")
        .row(0, named=True)
    )
    assert not row["passed"]
    assert row["description"].startswith("undefined: every pairable judgment has the same label")


def test_the_failed_check_names_the_project_value_and_the_floor_applied_to_it(toy_day):
    # Alpha 0.142 for both projects: the default floor passes "easy"; the per-project 0.3 of
    # "strict" fails it, and the check says so with that floor, not the default.
    judgments = pl.concat([toy_day.with_columns(project=pl.lit(p)) for p in ("easy", "strict")])
    gates = quality_gates(_report(judgments), min_alpha=0.1, min_alpha_per_project={"strict": 0.3})
    [check] = [c for c in gate_checks(gates) if c.name == "agreement_floor"]
    assert not check.passed and check.severity == "ERROR" and check.failing == ["strict"]
    assert check.description == "strict: alpha 0.142 < floor 0.30 (per-project)"
    assert check.thresholds == {"easy": 0.1, "strict": 0.3}
    assert check.values["strict"] == pytest.approx(0.142191, abs=1e-6)
    verdicts = gate_verdicts(_report(judgments), gates)
    assert dict(verdicts.select("project", "gates_passed").rows()) == {
        "easy": True,
        "strict": False,
    }
    strict = verdicts.filter(pl.col("project") == "strict").row(0, named=True)
    assert strict["failed_gates"] == "agreement_floor"
    assert (
        "agreement_floor (ERROR): alpha 0.142 < floor 0.30 (per-project)"
        in (strict["gate_reasons"])
    )


def test_the_check_says_where_each_floor_came_from(toy_day):
    judgments = pl.concat([toy_day.with_columns(project=pl.lit(p)) for p in ("own", "run", "std")])
    gates = quality_gates(
        _report(judgments),
        min_alpha=0.1,
        min_alpha_per_project={
            "own": Floor(0.3, "project.json"),
            "run": Floor(0.35, "run config"),
        },
    )
    [check] = [c for c in gate_checks(gates) if c.name == "agreement_floor"]
    assert check.description == (
        "own: alpha 0.142 < floor 0.30 (project.json); run: alpha 0.142 < floor 0.35 (run config)"
    )
    assert check.threshold_sources == {"own": "project.json", "run": "run config", "std": "default"}
    std = gates.filter((pl.col("project") == "std") & (pl.col("gate") == "agreement_floor"))
    assert std.row(0, named=True)["description"] == "alpha 0.142 >= floor 0.10"


def test_a_projects_floors_come_from_its_quality_gates_object():
    settings = {"label_set": ["a"], "quality_gates": {"min_alpha": 0.4, "min_gold_accuracy": 1}}
    assert project_gate_floors(settings, source="exports/p/project.json") == {
        "min_alpha": 0.4,
        "min_gold_accuracy": 1.0,
    }
    assert project_gate_floors({"label_set": ["a"]}, source="x") == {}


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        ([0.4], "exports/p/project.json: quality_gates: expected an object like"),
        (
            {"min_alpha": "0.4"},
            "exports/p/project.json: quality_gates.min_alpha: expected a number in [-1, 1], "
            "got '0.4'",
        ),
        (
            {"min_gold_accuracy": 1.5},
            "exports/p/project.json: quality_gates.min_gold_accuracy: expected a number in "
            "[0, 1], got 1.5",
        ),
        ({"min_gold_accuracy": True}, "exports/p/project.json: quality_gates.min_gold_accuracy: "),
        (
            {"min_apha": 0.4},
            "exports/p/project.json: quality_gates.min_apha: unknown field (known: min_alpha, "
            "min_gold_accuracy)",
        ),
    ],
)
def test_a_malformed_quality_gates_object_is_one_line_naming_the_file_and_field(gates, message):
    with pytest.raises(ValueError) as error:
        project_gate_floors({"quality_gates": gates}, source="exports/p/project.json")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_run_config_beats_the_project_file_which_beats_the_default():
    own = {"min_alpha": 0.4}
    pick = {"project_file": own, "name": "min_alpha"}
    assert pick_floor("p", run_per_project={}, run_all=None, **pick) == Floor(0.4, "project.json")
    assert pick_floor("p", run_per_project={}, run_all=0.0, **pick) == Floor(0.0, "run config")
    assert pick_floor("p", run_per_project={"p": 0.2}, run_all=0.0, **pick) == Floor(
        0.2, "run config"
    )
    assert (
        pick_floor("q", run_per_project={"p": 0.2}, run_all=None, project_file={}, name="x") is None
    )


def test_warn_failures_are_reported_but_do_not_hold_the_day_back(toy_day):
    report = _report(toy_day)  # no gold at all, project without a gold set
    gates = quality_gates(report, min_alpha=0.1)
    [check] = [c for c in gate_checks(gates) if c.name == "gold_accuracy_floor"]
    assert not check.passed and check.severity == "WARN" and check.warned == ["toy"]
    assert check.failing == []
    verdict = gate_verdicts(report, gates).row(0, named=True)
    assert verdict["gates_passed"] and verdict["failed_gates"] == ""
    assert "gold_accuracy_floor (WARN): undefined" in verdict["gate_reasons"]


def test_a_day_without_judgments_fails_the_row_count_gate_only_as_a_warning():
    # Nothing is held back on a day with no rows, and a quiet day (a holiday) is not an
    # outage: the failure is still alerted every such day, at WARN, so a feed that stopped shows.
    empty = quality_gates(_report(_day([]).cast({"day": pl.Date})))
    checks = {c.name: c for c in gate_checks(empty)}
    assert not checks["row_counts_sane"].passed
    assert checks["row_counts_sane"].severity == "WARN"
    assert checks["row_counts_sane"].description == "the day has no judgments"
    assert all(c.passed for name, c in checks.items() if name != "row_counts_sane")


def test_labels_missing_for_judged_tasks_fail_the_row_count_gate(toy_day):
    aggregated = majority(toy_day)
    gates = quality_gates(_report(toy_day), aggregated=aggregated.head(3))
    row = gates.filter(pl.col("gate") == "row_counts_sane").row(0, named=True)
    assert not row["passed"] and row["description"] == "3 aggregated labels for 5 judged tasks"


def test_consensus_on_gold_is_scored_held_out_not_against_the_clamped_labels(tmp_path):
    generate_workload(tmp_path, judgments=6_000, start=dt.date(2026, 11, 16), days=1, seed=7)
    judgments = pl.read_parquet(tmp_path / "judgments" / "day=2026-11-16" / "*.parquet")
    judgments = judgments.filter(pl.col("project") == "sentiment")
    gold = pl.read_parquet(tmp_path / "gold_labels" / "day=2026-11-16" / "*.parquet").filter(
        pl.col("project") == "sentiment"
    )
    gold = gold.select("task_id", "project", "label")
    result = fit(judgments, "dawid_skene", gold=gold.select("task_id", "label"))
    clamped = result.labels.with_columns(project=pl.lit("sentiment"))
    assert gold.height >= 20
    # The clamped labels score 1.0 on gold whatever the crowd said: the defect.
    assert quality_report(judgments, clamped, gold)["consensus_accuracy_on_gold"][0] == 1.0
    held_out = held_out_gold_consensus(judgments, gold, methods={"sentiment": "dawid_skene"})
    assert held_out.height == gold.join(judgments, on="task_id", how="semi").height
    report = quality_report(judgments, clamped, gold, held_out_consensus=held_out)
    honest = report["consensus_accuracy_on_gold"][0]
    expected = held_out.join(gold, on=["task_id", "project"]).select(
        (pl.col("label") == pl.col("label_right")).mean()
    )
    assert honest == pytest.approx(expected.item()) and 0.5 < honest < 1.0
    # Fold 0 of 5 is fitted without its own gold: its labels match a fit given the rest only.
    ids = gold.sort("task_id")["task_id"]
    fold = ids.gather(list(range(0, ids.len(), 5)))
    rest = gold.filter(~pl.col("task_id").is_in(fold.implode())).select("task_id", "label")
    refit = fit(judgments, "dawid_skene", gold=rest).labels
    mine = held_out.filter(pl.col("task_id").is_in(fold.implode())).sort("task_id")
    theirs = refit.join(mine.select("task_id"), on="task_id").sort("task_id")
    assert mine["label"].to_list() == theirs["label"].to_list()


def test_a_project_judged_in_several_kinds_fails_the_row_count_gate(toy_day):
    # Its other kind's answers are not in this report, and the raw layer kept one judgment
    # per (task, annotator) of them all: the categorical figures describe part of the day.
    gates = quality_gates(
        _report(toy_day), min_alpha=0.0, mixed_kinds={"toy": ["categorical", "numeric"]}
    )
    row = gates.filter(pl.col("gate") == "row_counts_sane").row(0, named=True)
    assert not row["passed"] and row["severity"] == "ERROR"
    assert row["description"].startswith(
        "judgments of several kinds (categorical, numeric): a project holds one kind"
    )
    verdict = gate_verdicts(_report(toy_day), gates).row(0, named=True)
    assert not verdict["gates_passed"] and verdict["failed_gates"] == "row_counts_sane"
