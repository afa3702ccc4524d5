"""The `replay` command's fixed contract: output columns, JSON keys, budget, clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.aggregation.registry import methods_for
from annotation_pipelines.cli import main
from annotation_pipelines.loop.policy import RECOMMENDED
from tests.inputs import write_input
from tests.loop.synthetic import crowd

JSON_KEYS = {
    "judgments_used",
    "judgments_available",
    "tasks",
    "rounds",
    "min_votes",
    "max_votes",
    "target_confidence",
    "budget",
}


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["replay", *args])
    return result.exit_code, result.output


def test_contract_output_json_and_budget(tmp_path: Path) -> None:
    judgments, _ = crowd(n_tasks=80, votes=6)
    renamed = judgments.rename({"task_id": "item", "annotator_id": "rater", "label": "answer"})
    path = write_input(renamed, tmp_path / "in.csv")
    output = tmp_path / "labels.csv"
    code, printed = _invoke(
        str(path),
        "--task-col", "item", "--annotator-col", "rater", "--label-col", "answer",
        "--min-votes", "2", "--max-votes", "6", "--target-confidence", "0.99",
        "--budget", "0.5", "--output", str(output),
    )  # fmt: skip
    assert code == 0, printed
    summary = json.loads(printed)
    assert set(summary) >= JSON_KEYS
    assert summary["judgments_available"] == 480 and summary["tasks"] == 80
    assert summary["judgments_used"] <= 240
    assert (summary["min_votes"], summary["max_votes"], summary["budget"]) == (2, 6, 0.5)
    labels = pl.read_csv(output, infer_schema=False)
    assert labels.columns == ["task_id", "label", "confidence"]
    assert set(labels["task_id"]) == set(judgments["task_id"])


def test_defaults_are_the_policy_defaults(tmp_path: Path) -> None:
    judgments, _ = crowd(n_tasks=20, votes=4)
    code, printed = _invoke(str(write_input(judgments, tmp_path / "in.parquet")))
    assert code == 0, printed
    summary = json.loads(printed)
    defaults = RECOMMENDED
    assert (summary["min_votes"], summary["max_votes"], summary["target_confidence"]) == (
        defaults.min_votes,
        defaults.max_votes,
        defaults.target_confidence,
    )
    assert summary["label_uncertainty"] is defaults.label_uncertainty
    assert summary["round_share"] == defaults.round_share
    assert summary["budget"] == 1.0 and summary["kind"] == "categorical"


def test_empty_label_is_quarantined_with_file_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("task_id,annotator_id,label\nt1,w1,a\nt1,w2,\n")
    output = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["replay", str(path), "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert str(path) in result.stderr and "row 2 (line 3), field 'label'" in result.stderr
    assert json.loads(result.stdout)["judgments_available"] == 1
    assert (tmp_path / "out.csv.quarantine.jsonl").read_text().count("\n") == 1
    path.write_text("task_id,annotator_id,label\nt1,w1,\n")
    code, printed = _invoke(str(path))
    assert code != 0 and "no valid rows" in printed


def test_a_gzipped_csv_is_read_and_a_bad_row_named(tmp_path: Path) -> None:
    path = tmp_path / "in.csv.gz"
    path.write_bytes(gzip.compress(b"task_id,annotator_id,label\nt1,w1,a\nt1,w2,\n"))
    result = CliRunner().invoke(main, ["replay", str(path)])
    assert result.exit_code == 0, result.output
    assert str(path) in result.stderr and "row 2 (line 3), field 'label'" in result.stderr
    assert json.loads(result.stdout)["judgments_available"] == 1


def test_missing_column_and_bad_options(tmp_path: Path) -> None:
    judgments, _ = crowd(n_tasks=5, votes=3)
    path = write_input(judgments.drop("annotator_id"), tmp_path / "in.csv")
    code, printed = _invoke(str(path))
    assert code != 0 and str(path) in printed and "'annotator_id'" in printed
    good = write_input(judgments, tmp_path / "good.csv")
    code, printed = _invoke(str(good), "--min-votes", "4", "--max-votes", "3")
    assert code == 2 and "--max-votes" in printed
    code, printed = _invoke(str(good), "--budget", "1.5")
    assert code != 0 and "--budget" in printed
    code, printed = _invoke(str(good), "--output", str(tmp_path / "out.txt"))
    assert code != 0 and "out.txt" in printed


def test_option_errors_are_usage_errors_named_by_option_before_reading(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent.csv")  # never read: the options are refused first
    result = CliRunner().invoke(main, ["replay", absent, "--min-votes", "5", "--max-votes", "2"])
    assert result.exit_code == 2, result.output
    assert "--max-votes" in result.output and "max_votes" not in result.output
    assert "no such file" not in result.output
    for method in ("crowd_bt", "bradley_terry"):
        result = CliRunner().invoke(
            main, ["replay", absent, "--kind", "pairwise", "--method", method]
        )
        assert result.exit_code == 2, result.output
        assert "--method" in result.output and "dawid_skene" in result.output
        assert "no such file" not in result.output
    # A CSV output for a list kind is refused before INPUT is read, as other outputs are.
    result = CliRunner().invoke(main, ["replay", absent, "--kind", "spans", "--output", "s.csv"])
    assert result.exit_code == 1 and "CSV cannot hold" in result.output, result.output
    assert "no such file" not in result.output


def test_value_col_names_the_label_column_too(tmp_path: Path) -> None:
    judgments, _ = crowd(n_tasks=10, votes=3)
    path = write_input(judgments.rename({"label": "answer"}), tmp_path / "in.csv")
    code, printed = _invoke(str(path), "--value-col", "answer")
    assert code == 0, printed
    assert json.loads(printed)["tasks"] == 10


def test_tasks_that_run_out_below_target_are_counted_as_exhausted(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("task_id,annotator_id,label\nt1,a1,cat\nt1,a2,dog\nt2,a1,cat\nt2,a2,cat\n")
    code, printed = _invoke(str(path), "--min-votes", "2", "--target-confidence", "0.999")
    assert code == 0, printed
    summary = json.loads(printed)
    # t1's two votes disagree and there is no third: done for lack of data, not for confidence.
    assert summary["decisions"] == {"done": 2}
    assert 1 <= summary["exhausted"] <= 2


def test_a_budget_below_one_judgment_per_task_still_writes_every_task(tmp_path: Path) -> None:
    judgments, _ = crowd(n_tasks=40, votes=5)  # 200 rows: 0.1 pays 20 judgments for 40 tasks
    path = write_input(judgments, tmp_path / "in.csv")
    output = tmp_path / "labels.csv"
    result = CliRunner().invoke(
        main, ["replay", str(path), "--budget", "0.1", "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["tasks"], summary["tasks_unlabelled"]) == (40, 20)
    assert summary["decisions"] == {"deferred": 40}
    labels = pl.read_csv(output)
    assert labels.height == 40
    unseen = labels.filter(pl.col("label").is_null())
    assert unseen.height == 20 and unseen["confidence"].to_list() == [0.0] * 20
    assert "20 task(s) have no label" in result.stderr and "--budget 0.2" in result.stderr


@pytest.mark.parametrize(
    ("kind", "rows"),
    [
        ("categorical", "task_id,annotator_id,label\nt1,a1,x\nt1,a2,y\nt2,a1,\n"),
        ("pairwise", "task_id,annotator_id,left,right,winner\nt1,a1,A,B,left\nt2,a1,A,B,up\n"),
        ("numeric", "task_id,annotator_id,value\nt1,a1,3\nt1,a2,4\nt2,a1,x\n"),
    ],
)
def test_a_budget_that_pays_no_judgment_is_a_usage_error(
    tmp_path: Path, kind: str, rows: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_text(rows)  # the last row is quarantined
    output = tmp_path / "labels.csv"
    code, printed = _invoke(str(path), "--kind", kind, "--budget", "0.1", "--output", str(output))
    assert code == 2, printed
    assert "--budget" in printed and "pays none" in printed
    assert not output.exists()
    assert not (tmp_path / "labels.csv.quarantine.jsonl").exists()


def test_an_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("task_id,annotator_id,label\nt1,a1,x\nt1,a2,x\nt2,a1,y\n")
    before = path.read_text()
    code, printed = _invoke(str(path), "--output", str(tmp_path / "." / "in.csv"))
    assert code == 1 and "would overwrite the input" in printed
    assert path.read_text() == before


def test_method_auto_reports_the_method_it_chose(tmp_path: Path) -> None:
    judgments, _ = crowd(n_tasks=40, votes=5)
    path = write_input(judgments, tmp_path / "in.csv")
    code, printed = _invoke(str(path), "--method", "auto")
    assert code == 0, printed
    method = json.loads(printed)["method"]
    assert method != "auto" and method in methods_for("categorical")


def test_a_gold_file_with_its_own_label_column_name_is_read(tmp_path: Path) -> None:
    judgments, _ = crowd(n_tasks=5, votes=3)
    path = write_input(judgments, tmp_path / "in.csv")
    first = judgments["task_id"][0]
    gold = write_input(pl.DataFrame({"task_id": [first], "truth": ["a"]}), tmp_path / "g.csv")
    code, printed = _invoke(str(path), "--gold", str(gold))
    assert code == 0, printed


@pytest.mark.parametrize("option", ["--task-col", "--annotator-col", "--label-col"])
def test_a_missing_column_is_named_by_its_option(tmp_path, option):
    source = tmp_path / "answers.csv"
    source.write_text("task_id,annotator_id,label\nt1,a,x\nt1,b,y\n")
    run = CliRunner().invoke(main, ["replay", str(source), option, "nope"])
    assert run.exit_code == 1, run.output
    assert f"{option} 'nope': no such column" in " ".join(run.output.split()), run.output


def test_replay_says_how_many_gold_tasks_input_judged(tmp_path: Path) -> None:
    judgments, _ = crowd(n_tasks=10, votes=3)
    path = tmp_path / "in.csv"
    judgments.write_csv(path)
    first = judgments["task_id"][0]
    gold = tmp_path / "gold.csv"
    gold.write_text(f"task_id,label\n{first},{judgments['label'][0]}\nnot-a-task,x\n")
    result = CliRunner().invoke(main, ["replay", str(path), "--gold", str(gold)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["gold_tasks"], summary["gold_tasks_in_input"]) == (2, 1)
    assert "the other 1 anchors nothing: 'not-a-task'" in result.stderr
    without = json.loads(CliRunner().invoke(main, ["replay", str(path)]).stdout)
    assert (without["gold_tasks"], without["gold_tasks_in_input"]) == (None, None)
    gold.write_text("task_id,label\nnot-a-task,x\n")
    result = CliRunner().invoke(main, ["replay", str(path), "--gold", str(gold)])
    assert result.exit_code == 2 and "none of its 1 gold task is judged" in result.output
