"""The `agreement` command: one JSON object, every input format, clear errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from annotation_pipelines.agreement.command import agreement_command
from annotation_pipelines.cli import main
from tests.inputs import write_input


@pytest.mark.parametrize(
    "suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".csv.gz", ".tsv.gz", ".jsonl.gz"]
)
def test_every_format_prints_the_same_json(tmp_path, krippendorff_2011, suffix):
    path = tmp_path / f"judgments{suffix}"
    write_input(krippendorff_2011, path)
    result = CliRunner().invoke(main, ["agreement", str(path)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["krippendorff_alpha"] == pytest.approx(0.743421, abs=1e-6)
    assert payload["n_tasks"] == 12
    assert payload["n_annotators"] == 4
    assert payload["n_judgments"] == krippendorff_2011.height
    assert {"fleiss_kappa", "percent_agreement"} <= set(payload)


@pytest.mark.parametrize(
    ("level", "expected"), [("ordinal", 0.815388), ("interval", 0.849107), ("ratio", 0.797403)]
)
def test_levels_and_custom_columns(tmp_path, krippendorff_2011, level, expected):
    path = tmp_path / "coded.csv"
    write_input(
        krippendorff_2011.rename({"task_id": "unit", "annotator_id": "coder", "label": "v"}), path
    )
    result = CliRunner().invoke(
        agreement_command,
        [
            str(path),
            "--task-col",
            "unit",
            "--annotator-col",
            "coder",
            "--label-col",
            "v",
            "--level",
            level,
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["krippendorff_alpha"] == pytest.approx(expected, abs=1e-6)


def test_bootstrap_adds_intervals(tmp_path, fleiss_wikipedia):
    path = tmp_path / "fleiss.parquet"
    write_input(fleiss_wikipedia, path)
    result = CliRunner().invoke(agreement_command, [str(path), "--bootstrap", "200", "--seed", "3"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["fleiss_kappa"] == pytest.approx(0.209931, abs=1e-6)
    assert payload["fleiss_kappa_low"] < payload["fleiss_kappa"] < payload["fleiss_kappa_high"]
    # The interval every kind prints is alpha's, beside each statistic's own.
    assert payload["ci_low"] == payload["krippendorff_alpha_low"]
    assert payload["ci_high"] == payload["krippendorff_alpha_high"]
    assert payload["ci_low"] < payload["krippendorff_alpha"] < payload["ci_high"]


def test_non_numeric_labels_at_ordinal_level(tmp_path, toy_crowd):
    path = tmp_path / "toy.csv"
    write_input(toy_crowd, path)
    result = CliRunner().invoke(agreement_command, [str(path), "--level", "ordinal"])
    assert result.exit_code == 1
    assert "treats labels as numbers" in result.output
    assert "'no'" in result.output or "'yes'" in result.output
    assert str(path) in result.output and "'label'" in result.output
    first = next(i for i, label in enumerate(toy_crowd["label"]) if label in ("no", "yes"))
    assert f"row {first + 1} (line {first + 2}), column 'label'" in result.output
    nominal = CliRunner().invoke(agreement_command, [str(path)])
    assert json.loads(nominal.output)["krippendorff_alpha"] == pytest.approx(0.142191, abs=1e-6)
    # A quarantined row before it does not shift the row named.
    path.write_text("task_id,annotator_id,label\n1,a,\n1,b,2\n1,c,x\n2,a,1\n2,b,1\n")
    result = CliRunner().invoke(agreement_command, [str(path), "--level", "ordinal"])
    assert "row 1 (line 2), field 'label': missing_field" in result.stderr
    assert "row 3 (line 4), column 'label'" in result.output


def test_missing_column_names_file_and_column(tmp_path, toy_crowd):
    path = tmp_path / "toy.csv"
    write_input(toy_crowd.drop("annotator_id"), path)
    result = CliRunner().invoke(agreement_command, [str(path)])
    assert result.exit_code != 0
    assert str(path) in result.output and "'annotator_id'" in result.output


def test_missing_file_and_undefined_statistics(tmp_path):
    result = CliRunner().invoke(agreement_command, [str(tmp_path / "absent.csv")])
    assert result.exit_code == 1 and "no such file" in result.output
    path = tmp_path / "same.csv"
    path.write_text("task_id,annotator_id,label\nt1,a,x\nt1,b,x\n")
    result = CliRunner().invoke(agreement_command, [str(path)])
    assert result.exit_code == 0
    payload = json.loads(result.output)
    assert payload["krippendorff_alpha"] is None and payload["percent_agreement"] == 1.0


def test_categorical_names_its_distance_and_raw_agreement(tmp_path, toy_crowd):
    """Every kind prints `distance` and `mean_pairwise_agreement`; categorical too."""
    path = tmp_path / "judgments.jsonl"
    write_input(toy_crowd, path)
    result = CliRunner().invoke(agreement_command, [str(path), "--kind", "categorical"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["distance"] == "nominal"
    assert 0.0 <= payload["mean_pairwise_agreement"] <= 1.0
    assert payload["mean_pairwise_distance"] == pytest.approx(
        1 - payload["mean_pairwise_agreement"], abs=1e-12
    )
    # Categorical keeps no bootstrap by default; the keys are there all the same, null.
    assert "ci_low" in payload and "ci_high" in payload
    assert payload["ci_low"] is None and payload["ci_high"] is None


@pytest.mark.parametrize(
    ("kind", "header", "values", "statistic", "expected"),
    [
        # a1 and a2 disagree on every task; a1's repeats would "agree" with themselves.
        ("categorical", "label", ["x", "y", "x", "y", "y", "x"], "percent_agreement", 0.0),
        ("numeric", "value", ["1", "5", "2", "6", "3", "7"], "n_pairs", 3),
    ],
)
def test_an_annotators_repeated_rows_are_not_paired_with_themselves(
    tmp_path, kind, header, values, statistic, expected
):
    tasks = ["t1", "t1", "t2", "t2", "t3", "t3"]
    annotators = ["a1", "a2"] * 3
    rows = [f"{t},{a},{v}" for t, a, v in zip(tasks, annotators, values, strict=True)]
    repeats = [rows[0]] * 3 + [rows[2]] * 2
    path = tmp_path / "judgments.csv"
    path.write_text("\n".join([f"task_id,annotator_id,{header}", *repeats, *rows]) + "\n")
    result = CliRunner().invoke(main, ["agreement", str(path), "--kind", kind, "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload[statistic] == expected
    assert payload["n_judgments"] == 6 and payload["repeated_rows_set_aside"] == 5
    assert "5 repeated row(s)" in result.stderr


@pytest.mark.parametrize(
    ("rows", "alpha", "difference"),
    [
        # Divided by 1e200 the krippendorff package gives 0.0 (and -0.5 below, by 1e308).
        ("t1,a1,3\nt1,a2,4\nt1,a3,3\nt2,a1,5\nt2,a2,5\nt2,a3,4\nt3,a1,2\nt3,a2,1e200\n"
         "t3,a3,2\n", 0.0, 2.0 / 9.0 * 1e200),
        ("t1,a1,1e308\nt1,a2,-1e308\nt2,a1,1\nt2,a2,2\n", -0.5, 1e308),
    ],
)  # fmt: skip
def test_huge_finite_numeric_answers_give_finite_json(tmp_path, rows, alpha, difference):
    path = tmp_path / "judgments.csv"
    path.write_text("task_id,annotator_id,value\n" + rows)
    result = CliRunner().invoke(main, ["agreement", str(path), "--kind", "numeric"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout, parse_constant=pytest.fail)
    assert payload["krippendorff_alpha"] == pytest.approx(alpha, abs=1e-12)
    assert payload["mean_absolute_difference"] == pytest.approx(difference, rel=1e-12)


def test_a_difference_beyond_the_largest_float_is_null(tmp_path):
    path = tmp_path / "judgments.csv"
    path.write_text("task_id,annotator_id,value\nt1,a1,1.7e308\nt1,a2,-1.7e308\n")
    result = CliRunner().invoke(main, ["agreement", str(path), "--kind", "numeric"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout, parse_constant=pytest.fail)
    assert payload["mean_absolute_difference"] is None


@pytest.mark.parametrize("level", ["ordinal", "interval", "ratio"])
@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity"])
def test_a_label_that_is_not_a_finite_number_is_named_at_numeric_levels(tmp_path, level, bad):
    # 'nan' parsed as a number: interval and ratio alpha came out null without a word, and
    # ordinal ranked NaN among the answers (0.606).
    path = tmp_path / "rated.csv"
    path.write_text(
        f"task_id,annotator_id,label\nt1,a,1\nt1,b,2\nt2,a,3\nt2,b,3\nt3,a,{bad}\nt3,b,3\n"
    )
    result = CliRunner().invoke(agreement_command, [str(path), "--level", level])
    assert result.exit_code == 1, result.output
    assert f"{path}: row 5 (line 6), column 'label'" in result.output
    assert "not a finite number" in result.output


@pytest.mark.parametrize("level", ["interval", "ratio"])
def test_huge_labels_at_numeric_levels_give_the_alpha_of_the_same_answers_scaled(tmp_path, level):
    # The --kind numeric path divided answers by a power of two; --level interval did not,
    # so squares near 1e308 overflowed and alpha was printed null (with RuntimeWarnings).
    import krippendorff
    import numpy as np

    rows = "t1,a1,1e308\nt1,a2,-1e308\nt2,a1,1\nt2,a2,2\nt3,a1,1e307\nt3,a2,1e307\n"
    path = tmp_path / "judgments.csv"
    path.write_text("task_id,annotator_id,label\n" + rows)
    result = CliRunner().invoke(agreement_command, [str(path), "--level", level])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout, parse_constant=pytest.fail)["krippendorff_alpha"]
    scaled = np.array([[1.0, 1e-300, 1e-1], [-1.0, 2e-300, 1e-1]])
    expected = krippendorff.alpha(reliability_data=scaled, level_of_measurement=level)
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("kind", "option"),
    [("categorical", "--annotator-col"), ("categorical", "--label-col"), ("text", "--task-col")],
)
def test_a_missing_column_is_named_by_its_option(tmp_path, kind, option):
    source = tmp_path / "answers.csv"
    value = "label" if kind == "categorical" else "text"
    source.write_text(f"task_id,annotator_id,{value}\nt1,a,x\nt1,b,y\n")
    run = CliRunner().invoke(main, ["agreement", str(source), "--kind", kind, option, "nope"])
    assert run.exit_code == 1, run.output
    named = "--value-col" if option == "--label-col" else option
    assert f"{named} 'nope': no such column" in " ".join(run.output.split()), run.output


@pytest.mark.parametrize("level", ["ordinal", "interval", "ratio"])
def test_numeric_levels_count_one_number_spelled_two_ways_as_agreement(tmp_path, level):
    # Two exports merged: one wrote ratings as 1, 2, the other as 1.0, 2.0. At a numeric level
    # alpha reads them as the numbers they are, and so must the shares printed beside it:
    # percent agreement, Fleiss' kappa and the pairwise share read 0.0, -0.33 and 0.0 here,
    # every task "disagreeing" with itself while alpha said it agreed.
    spelled = tmp_path / "spelled.csv"
    spelled.write_text(
        "task_id,annotator_id,label\n"
        "t1,a,1\nt1,b,1.0\nt2,a,2\nt2,b,2.0\nt3,a,3\nt3,b,1\nt4,a,1\nt4,b,2\nt5,a,0\nt5,b,-0\n"
    )
    uniform = tmp_path / "uniform.csv"
    uniform.write_text(
        "task_id,annotator_id,label\n"
        "t1,a,1\nt1,b,1\nt2,a,2\nt2,b,2\nt3,a,3\nt3,b,1\nt4,a,1\nt4,b,2\nt5,a,0\nt5,b,0\n"
    )
    outputs = []
    for path in (spelled, uniform):
        result = CliRunner().invoke(agreement_command, [str(path), "--level", level])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.output))
    assert outputs[0] == outputs[1]
    assert outputs[0]["percent_agreement"] == 0.6
    assert outputs[0]["mean_pairwise_agreement"] == 0.6
