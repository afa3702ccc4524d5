"""The command-line contract for every annotation kind: `aggregate` and `agreement`.

    annotation-pipelines aggregate INPUT --kind KIND [--method NAME] [--task-col C]
        [--annotator-col C] [--value-col C] [--gold PATH] [--output PATH]
    annotation-pipelines agreement INPUT --kind KIND [--task-col C] [--annotator-col C]
        [--value-col C]

Each kind runs from a real JSON Lines and a real Parquet file through the real commands; rows
of the wrong shape for their kind are quarantined with their row and field, never dropped.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner, Result

from annotation_pipelines.aggregation.command import aggregate_command
from annotation_pipelines.aggregation.registry import methods_for
from annotation_pipelines.agreement.command import agreement_command
from annotation_pipelines.cli import main
from annotation_pipelines.kinds import BOX, KINDS, SPAN, VALUE_COLUMNS, VALUE_DTYPES
from tests.inputs import write_input

ROOT = Path(__file__).resolve().parents[2]
ANNOTATORS = ("a1", "a2", "a3")


def _span(start: int, end: int, label: str | None = "PER") -> dict[str, Any]:
    return {"start": start, "end": end, "label": label}


def _box(x_min: float, y_min: float, x_max: float, y_max: float) -> dict[str, Any]:
    return {"label": "car", "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max}


# Per kind, per task, one value per annotator (a1, a2, a3): enough disagreement that every
# statistic is defined.
VALUES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "categorical": {
        "t1": [{"label": "cat"}, {"label": "cat"}, {"label": "dog"}],
        "t2": [{"label": "dog"}, {"label": "dog"}, {"label": "dog"}],
        "t3": [{"label": "cat"}, {"label": "bird"}, {"label": "cat"}],
    },
    "multilabel": {
        "t1": [{"labels": ["x", "y"]}, {"labels": ["x"]}, {"labels": ["x", "y"]}],
        "t2": [{"labels": ["z"]}, {"labels": ["z"]}, {"labels": ["y"]}],
        "t3": [{"labels": []}, {"labels": ["x"]}, {"labels": []}],
    },
    "numeric": {
        "t1": [{"value": 1.0}, {"value": 2.0}, {"value": 1.5}],
        "t2": [{"value": 4.0}, {"value": 5.0}, {"value": 4.5}],
        "t3": [{"value": 3.0}, {"value": 2.0}, {"value": 3.5}],
    },
    "ranking": {
        "t1": [
            {"ranking": ["a", "b", "c"]},
            {"ranking": ["a", "c", "b"]},
            {"ranking": ["b", "a", "c"]},
        ],
        "t2": [{"ranking": ["c", "b"]}, {"ranking": ["c", "b"]}, {"ranking": ["b", "c"]}],
        "t3": [
            {"ranking": ["d", "e", "f"]},
            {"ranking": ["d", "e", "f"]},
            {"ranking": ["e", "d", "f"]},
        ],
    },
    "pairwise": {
        "t1": [{"left": "a", "right": "b", "winner": "left"}] * 3,
        "t2": [
            {"left": "b", "right": "c", "winner": "left"},
            {"left": "b", "right": "c", "winner": "right"},
            {"left": "b", "right": "c", "winner": "tie"},
        ],
        "t3": [{"left": "a", "right": "c", "winner": "left"}] * 2
        + [{"left": "a", "right": "c", "winner": "right"}],
    },
    "spans": {
        "t1": [{"spans": [_span(0, 4)]}, {"spans": [_span(0, 4)]}, {"spans": [_span(0, 3)]}],
        "t2": [{"spans": [_span(2, 5, None)]}, {"spans": []}, {"spans": [_span(2, 5, None)]}],
        "t3": [
            {"spans": [_span(1, 9, "ORG"), _span(12, 15)]},
            {"spans": [_span(1, 9, "ORG")]},
            {"spans": [_span(1, 9, "ORG"), _span(12, 15)]},
        ],
    },
    "boxes": {
        "t1": [{"boxes": [_box(0, 0, 10, 10)]}] * 2 + [{"boxes": [_box(1, 0, 10, 11)]}],
        "t2": [{"boxes": []}, {"boxes": [_box(5, 5, 8, 9)]}, {"boxes": [_box(5, 5, 8, 9)]}],
        "t3": [
            {"boxes": [_box(0, 0, 4, 4), _box(20, 20, 30, 30)]},
            {"boxes": [_box(0, 0, 4, 5), _box(20, 21, 30, 30)]},
            {"boxes": [_box(20, 20, 31, 30)]},
        ],
    },
    "text": {
        "t1": [{"text": "hello world"}, {"text": "hello word"}, {"text": "hello world"}],
        "t2": [{"text": "abc"}, {"text": "abd"}, {"text": "abc"}],
        "t3": [{"text": "the cat sat"}, {"text": "the cat sat"}, {"text": "a cat sat"}],
    },
}

# Output columns per kind, in order, with their Parquet dtypes.
SPAN_OUT = pl.Struct({**SPAN.to_schema(), "confidence": pl.Float64})
BOX_OUT = pl.Struct({**BOX.to_schema(), "confidence": pl.Float64})
OUTPUT_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "categorical": {"task_id": pl.String(), "label": pl.String(), "confidence": pl.Float64()},
    "multilabel": {
        "task_id": pl.String(),
        "labels": pl.List(pl.String()),
        "confidence": pl.Float64(),
    },
    "numeric": {
        "task_id": pl.String(),
        "value": pl.Float64(),
        "confidence": pl.Float64(),
        "lo": pl.Float64(),
        "hi": pl.Float64(),
    },
    "ranking": {
        "task_id": pl.String(),
        "ranking": pl.List(pl.String()),
        "confidence": pl.Float64(),
    },
    "pairwise": {
        "item": pl.String(),
        "score": pl.Float64(),
        "lo": pl.Float64(),
        "hi": pl.Float64(),
        "confidence": pl.Float64(),
    },
    "spans": {"task_id": pl.String(), "spans": pl.List(SPAN_OUT), "confidence": pl.Float64()},
    "boxes": {"task_id": pl.String(), "boxes": pl.List(BOX_OUT), "confidence": pl.Float64()},
    "text": {"task_id": pl.String(), "text": pl.String(), "confidence": pl.Float64()},
}
LIST_KINDS = ("multilabel", "ranking", "spans", "boxes")
DISTANCES = {
    "categorical": "nominal",
    "multilabel": "masi",
    "numeric": "interval",
    "ranking": "kendall",
    "pairwise": "pairwise",
    "spans": "span",
    "boxes": "box",
    "text": "edit",
}


def judgments(kind: str) -> pl.DataFrame:
    rows = [
        {"task_id": task, "annotator_id": annotator, **value}
        for task, values in VALUES[kind].items()
        for annotator, value in zip(ANNOTATORS, values, strict=True)
    ]
    schema = {
        "task_id": pl.String(),
        "annotator_id": pl.String(),
        **{column: VALUE_DTYPES[column] for column in VALUE_COLUMNS[kind]},
    }
    return pl.DataFrame(rows, schema=schema)


def _invoke(command: Any, args: list[str]) -> Result:
    return CliRunner().invoke(command, args, catch_exceptions=False)


def _write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_every_kind_is_covered() -> None:
    assert set(VALUES) == set(KINDS) == set(OUTPUT_SCHEMAS)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize("kind", KINDS)
def test_aggregate_writes_the_contract_columns(tmp_path: Path, kind: str, suffix: str) -> None:
    path = write_input(judgments(kind), tmp_path / f"judgments{suffix}")
    output = tmp_path / "aggregate.parquet"
    result = _invoke(aggregate_command, [str(path), "--kind", kind, "--output", str(output)])
    assert result.exit_code == 0, result.output
    out = pl.read_parquet(output)
    assert dict(out.schema) == OUTPUT_SCHEMAS[kind]
    key = "item" if kind == "pairwise" else "task_id"
    expected_keys = {"a", "b", "c"} if kind == "pairwise" else set(VALUES[kind])
    assert set(out.get_column(key)) == expected_keys
    assert out.get_column("confidence").is_between(0, 1).all()
    assert not (tmp_path / "aggregate.parquet.quarantine.jsonl").exists()
    if kind in ("spans", "boxes"):
        inner = out.get_column(kind).explode().struct.field("confidence").drop_nulls()
        assert inner.len() > 0 and inner.is_between(0, 1).all()
    if kind in ("numeric", "pairwise"):
        estimate = out.get_column("value" if kind == "numeric" else "score")
        assert (out.get_column("lo") <= estimate).all() and (estimate <= out.get_column("hi")).all()


@pytest.mark.parametrize("kind", KINDS)
def test_aggregate_to_stdout_and_to_json_lines(tmp_path: Path, kind: str) -> None:
    """stdout: JSON Lines when a column is a list (multilabel, ranking, spans, boxes), else
    CSV; `--output x.jsonl` writes JSON Lines for every kind."""
    path = write_input(judgments(kind), tmp_path / "judgments.jsonl")
    result = _invoke(aggregate_command, [str(path), "--kind", kind])
    assert result.exit_code == 0, result.output
    columns = list(OUTPUT_SCHEMAS[kind])
    if kind in LIST_KINDS:
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert [list(record) for record in records] == [columns] * len(VALUES[kind])
        (column,) = VALUE_COLUMNS[kind]
        assert all(isinstance(record[column], list) for record in records)
    else:
        out = pl.read_csv(io.StringIO(result.stdout), infer_schema=False)
        assert out.columns == columns
    output = tmp_path / "aggregate.jsonl"
    result = _invoke(aggregate_command, [str(path), "--kind", kind, "--output", str(output)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert records and all(list(record) == columns for record in records)
    assert all(isinstance(record["confidence"], float) for record in records)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize("kind", KINDS)
def test_agreement_prints_the_contract_json(tmp_path: Path, kind: str, suffix: str) -> None:
    frame = judgments(kind)
    path = write_input(frame, tmp_path / f"judgments{suffix}")
    result = _invoke(agreement_command, [str(path), "--kind", kind])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["distance"] == DISTANCES[kind]
    assert isinstance(payload["krippendorff_alpha"], float)
    # One meaning per field across kinds: a share of agreeing pairs (numeric, whose distance
    # is unbounded, has none), and the mean distance between two annotators' answers.
    share = payload["mean_pairwise_agreement"]
    assert share is None if kind == "numeric" else 0.0 <= share <= 1.0
    assert isinstance(payload["mean_pairwise_distance"], float)
    if share is not None:
        assert payload["mean_pairwise_distance"] == pytest.approx(1 - share, abs=1e-12)
    assert payload["n_tasks"] == len(VALUES[kind])
    assert payload["n_annotators"] == len(ANNOTATORS)
    assert payload["n_judgments"] == frame.height
    if kind != "categorical":
        # Every kind but categorical (whose default stays "no bootstrap") prints the interval.
        assert payload["ci_low"] <= payload["krippendorff_alpha"] <= payload["ci_high"]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_numeric_alpha_equals_the_krippendorff_package(tmp_path: Path, suffix: str) -> None:
    generator = np.random.default_rng(7)
    n_tasks, n_raters = 40, 5
    truth = generator.normal(3.0, 1.0, n_tasks)
    matrix = truth[None, :] + generator.normal(0.0, 0.6, (n_raters, n_tasks))
    matrix[generator.random((n_raters, n_tasks)) < 0.25] = np.nan  # not every rater rates all
    rows = [
        {"task": f"q{task}", "rater": f"r{rater}", "score": float(matrix[rater, task])}
        for rater in range(n_raters)
        for task in range(n_tasks)
        if not np.isnan(matrix[rater, task])
    ]
    path = write_input(pl.DataFrame(rows), tmp_path / f"ratings{suffix}")
    args = ["--task-col", "task", "--annotator-col", "rater", "--value-col", "score"]
    result = _invoke(agreement_command, [str(path), "--kind", "numeric", *args])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="interval")
    assert payload["krippendorff_alpha"] == pytest.approx(expected, abs=1e-9)
    assert payload["distance"] == "interval"
    assert payload["n_judgments"] == len(rows)
    # The raw figure is a distance (lower is better): named so, and not under the name that
    # holds a share of agreeing pairs (higher is better) for the other kinds.
    assert payload["raw_measure"] == "mean_absolute_difference"
    assert payload["mean_absolute_difference"] == payload["mean_pairwise_distance"] > 0.5
    assert payload["mean_pairwise_agreement"] is None


# One bad row per case: (kind, the bad row's values, the field that is named).
BAD_ROWS: dict[str, tuple[str, dict[str, Any], str]] = {
    "span_end_before_start": ("spans", {"spans": [_span(5, 2)]}, "spans"),
    "box_x_max_below_x_min": ("boxes", {"boxes": [_box(10, 0, 2, 5)]}, "boxes"),
    "ranking_repeats_an_item": ("ranking", {"ranking": ["a", "b", "a"]}, "ranking"),
    "winner_not_left_right_tie": (
        "pairwise",
        {"left": "a", "right": "b", "winner": "neither"},
        "winner",
    ),
    "pair_of_an_item_with_itself": (
        "pairwise",
        {"left": "a", "right": "a", "winner": "left"},
        "right",
    ),
    "non_numeric_value": ("numeric", {"value": "very good"}, "value"),
    "labels_not_a_list": ("multilabel", {"labels": {"x": 1}}, "labels"),
    "text_not_a_string": ("text", {"text": ["a", "b"]}, "text"),
}


def _with_bad_row(kind: str, bad: dict[str, Any]) -> list[dict[str, Any]]:
    """The kind's good rows as JSON records with the bad one as data row 4."""
    records = judgments(kind).to_dicts()
    return [*records[:3], {"task_id": "t9", "annotator_id": "a1", **bad}, *records[3:]]


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_wrong_shape_rows_are_quarantined(tmp_path: Path, case: str) -> None:
    kind, bad, field = BAD_ROWS[case]
    records = _with_bad_row(kind, bad)
    path = _write_lines(tmp_path / "judgments.jsonl", records)
    output = tmp_path / "out.parquet"
    result = _invoke(aggregate_command, [str(path), "--kind", kind, "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert f"1 of {len(records)} rows quarantined" in result.stderr
    assert f"row 4 (line 4), field {field!r}" in result.stderr and str(path) in result.stderr
    quarantine = tmp_path / "out.parquet.quarantine.jsonl"
    assert str(quarantine) in result.stderr
    (entry,) = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert (entry["row"], entry["line"], entry["field"]) == (4, 4, field)
    assert entry["reason"] == "wrong_type"
    assert entry["file"] == str(path) and entry["message"]
    assert json.loads(entry["record"])["task_id"] == "t9"
    out = pl.read_parquet(output)
    key = "item" if kind == "pairwise" else "task_id"
    assert "t9" not in out.get_column(key).to_list()

    result = _invoke(agreement_command, [str(path), "--kind", kind])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_judgments"] == len(records) - 1
    assert f"row 4 (line 4), field {field!r}" in result.stderr


@pytest.mark.parametrize(
    ("kind", "bad", "field"),
    [
        ("spans", {"spans": [_span(5, 2)]}, "spans"),
        ("boxes", {"boxes": [_box(0, 10, 5, 2)]}, "boxes"),
        ("ranking", {"ranking": ["a", "a"]}, "ranking"),
    ],
)
def test_wrong_shape_rows_in_parquet_are_quarantined(
    tmp_path: Path, kind: str, bad: dict[str, Any], field: str
) -> None:
    frame = pl.DataFrame(_with_bad_row(kind, bad), schema=judgments(kind).schema)
    path = write_input(frame, tmp_path / "judgments.parquet")
    result = _invoke(aggregate_command, [str(path), "--kind", kind])
    assert result.exit_code == 0, result.output
    assert f"row 4, field {field!r}" in result.stderr
    assert len(result.stdout.splitlines()) == len(VALUES[kind])


def test_a_pair_of_an_item_with_itself_in_parquet_is_quarantined(tmp_path: Path) -> None:
    bad = {"left": "a", "right": "a", "winner": "tie"}
    frame = pl.DataFrame(_with_bad_row("pairwise", bad), schema=judgments("pairwise").schema)
    path = write_input(frame, tmp_path / "judgments.parquet")
    result = _invoke(aggregate_command, [str(path), "--kind", "pairwise"])
    assert result.exit_code == 0, result.output
    assert "row 4, field 'right'" in result.stderr and "same item as left" in result.stderr


def test_csv_reads_scalars_and_json_encoded_lists(tmp_path: Path) -> None:
    path = tmp_path / "judgments.csv"
    path.write_text("task_id,annotator_id,value\nt1,a1,1\nt1,a2,2\nt1,a3,abc\nt2,a1,4\nt2,a2,5.5\n")
    result = _invoke(aggregate_command, [str(path), "--kind", "numeric"])
    assert result.exit_code == 0, result.output
    assert "row 3 (line 4), field 'value'" in result.stderr
    assert pl.read_csv(io.StringIO(result.stdout)).height == 2

    spans = tmp_path / "spans.csv"
    spans.write_text(
        "task_id,annotator_id,spans\n"
        't1,a1,"[{""start"": 0, ""end"": 4, ""label"": ""P""}]"\n'
        't1,a2,"[{""start"": 0, ""end"": 4, ""label"": ""P""}]"\n'
        't1,a3,"[{""start"": 4, ""end"": 0}]"\n'
    )
    result = _invoke(aggregate_command, [str(spans), "--kind", "spans"])
    assert result.exit_code == 0, result.output
    assert "row 3 (line 4), field 'spans'" in result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(s["start"], s["end"], s["label"]) for s in record["spans"]] == [(0, 4, "P")]


def test_malformed_lines_and_missing_ids_are_quarantined(tmp_path: Path) -> None:
    records = [json.dumps(r) for r in judgments("text").to_dicts()]
    records[1] = '{"task_id": "t1", "annotator_id": '
    records[4] = json.dumps({"task_id": "t2", "text": "abc"})
    path = tmp_path / "judgments.jsonl"
    path.write_text("\n".join(records) + "\n")
    result = _invoke(aggregate_command, [str(path), "--kind", "text"])
    assert result.exit_code == 0, result.output
    assert "2 of 9 rows quarantined" in result.stderr
    assert "row 2 (line 2): malformed_json" in result.stderr
    assert "row 5 (line 5), field 'annotator_id': missing_annotator" in result.stderr


def test_no_valid_row_is_an_error(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "judgments.jsonl",
        [{"task_id": "t1", "annotator_id": "a1", "spans": [_span(3, 1)]}],
    )
    output = tmp_path / "out.jsonl"
    result = _invoke(aggregate_command, [str(path), "--kind", "spans", "--output", str(output)])
    assert result.exit_code != 0
    assert f"{path}: no valid rows" in result.output
    assert "row 1 (line 1), field 'spans'" in result.output
    assert not output.exists()
    assert (tmp_path / "out.jsonl.quarantine.jsonl").exists()
    result = _invoke(agreement_command, [str(path), "--kind", "spans"])
    assert result.exit_code != 0 and "no valid rows" in result.output


def test_missing_value_column_names_file_and_column(tmp_path: Path) -> None:
    path = write_input(judgments("spans"), tmp_path / "judgments.parquet")
    result = _invoke(aggregate_command, [str(path), "--kind", "boxes"])
    assert result.exit_code != 0
    assert str(path) in result.output and "'boxes'" in result.output
    result = _invoke(agreement_command, [str(path), "--kind", "boxes"])
    assert result.exit_code != 0 and "'boxes'" in result.output


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "categorical"])
def test_unknown_method_for_the_kind_lists_its_methods(tmp_path: Path, kind: str) -> None:
    path = write_input(judgments(kind), tmp_path / "judgments.jsonl")
    wrong = "majority_vote" if kind not in ("multilabel",) else "borda"
    assert wrong not in methods_for(kind)
    result = CliRunner().invoke(aggregate_command, [str(path), "--kind", kind, "--method", wrong])
    assert result.exit_code == 2
    assert f"{wrong!r}" in result.output and kind in result.output
    assert ", ".join(methods_for(kind)) in result.output


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "categorical"])
def test_every_method_of_the_kind_runs(tmp_path: Path, kind: str) -> None:
    path = write_input(judgments(kind), tmp_path / "judgments.parquet")
    for method in methods_for(kind):
        output = tmp_path / f"{method}.parquet"
        args = [str(path), "--kind", kind, "--method", method, "--output", str(output)]
        result = _invoke(aggregate_command, args)
        assert result.exit_code == 0, (method, result.output)
        assert dict(pl.read_parquet(output).schema) == OUTPUT_SCHEMAS[kind], method


def test_value_col_renames_the_value_column(tmp_path: Path) -> None:
    frame = judgments("boxes").rename(
        {"task_id": "image", "annotator_id": "worker", "boxes": "objects"}
    )
    path = write_input(frame, tmp_path / "judgments.jsonl")
    args = ["--task-col", "image", "--annotator-col", "worker", "--value-col", "objects"]
    result = _invoke(aggregate_command, [str(path), "--kind", "boxes", *args])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [list(r) for r in records] == [["task_id", "boxes", "confidence"]] * 3
    result = _invoke(agreement_command, [str(path), "--kind", "boxes", *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_judgments"] == frame.height


def test_value_col_is_not_applicable_to_pairwise(tmp_path: Path) -> None:
    path = write_input(judgments("pairwise"), tmp_path / "judgments.jsonl")
    for command in (aggregate_command, agreement_command):
        result = CliRunner().invoke(
            command, [str(path), "--kind", "pairwise", "--value-col", "winner"]
        )
        assert result.exit_code == 2
        assert "--value-col" in result.output and "left, right, winner" in result.output


def test_level_is_only_for_categorical(tmp_path: Path) -> None:
    path = write_input(judgments("numeric"), tmp_path / "judgments.jsonl")
    result = CliRunner().invoke(
        agreement_command, [str(path), "--kind", "numeric", "--level", "ordinal"]
    )
    assert result.exit_code == 2 and "--level" in result.output


def test_numeric_gold_anchors_the_fit(tmp_path: Path) -> None:
    path = write_input(judgments("numeric"), tmp_path / "judgments.jsonl")
    gold = write_input(pl.DataFrame({"task_id": ["t1"], "value": [1.25]}), tmp_path / "gold.jsonl")
    output = tmp_path / "out.parquet"
    args = [str(path), "--kind", "numeric", "--gold", str(gold), "--output", str(output)]
    result = _invoke(aggregate_command, args)
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(output).height == 3

    bad_gold = _write_lines(tmp_path / "bad_gold.jsonl", [{"task_id": "t1", "value": "x"}])
    args = [str(path), "--kind", "numeric", "--gold", str(bad_gold)]
    result = CliRunner().invoke(aggregate_command, args)
    assert result.exit_code != 0
    assert f"{bad_gold}: row 1 (line 1), field 'value'" in result.output


@pytest.mark.parametrize("method", ["bias_noise", "mean", "median", "trimmed_mean"])
def test_a_numeric_gold_task_is_its_gold_value_at_confidence_one(
    tmp_path: Path, method: str
) -> None:
    # Before, mean, median and trimmed_mean wrote the crowd's mean (3.5 at 0.5) and bias_noise
    # the gold value clipped to the answers' range (3.0 at 1.0), where gold said 1.25.
    path = _write_lines(
        tmp_path / "judgments.jsonl",
        [
            {"task_id": task, "annotator_id": annotator, "value": value}
            for task, annotator, value in [
                ("t1", "a", 3),
                ("t1", "b", 4),
                ("t2", "a", 3),
                ("t2", "b", 5),
            ]
        ],
    )
    gold = _write_lines(tmp_path / "gold.jsonl", [{"task_id": "t1", "value": 1.25}])
    output = tmp_path / "out.jsonl"
    base = [str(path), "--kind", "numeric", "--method", method, "--gold", str(gold)]
    result = _invoke(aggregate_command, [*base, "--output", str(output)])
    assert result.exit_code == 0, result.output
    row = pl.read_ndjson(output).filter(pl.col("task_id") == "t1").to_dicts()[0]
    assert row == {"task_id": "t1", "value": 1.25, "confidence": 1.0, "lo": 1.25, "hi": 1.25}
    replayed = tmp_path / "replay.jsonl"
    result = CliRunner().invoke(main, ["replay", *base, "--output", str(replayed)])
    assert result.exit_code == 0, result.output
    row = pl.read_ndjson(replayed).filter(pl.col("task_id") == "t1").to_dicts()[0]
    assert row == {"task_id": "t1", "value": 1.25, "confidence": 1.0}


def test_the_installed_command_holds_the_contract(tmp_path: Path) -> None:
    """Once through the console script itself, as a user's shell runs it."""
    path = write_input(judgments("spans"), tmp_path / "spans.parquet")
    script = Path(sys.executable).parent / "annotation-pipelines"
    output = tmp_path / "spans.jsonl"
    completed = subprocess.run(
        [str(script), "aggregate", str(path), "--kind", "spans", "--output", str(output)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert len(output.read_text().splitlines()) == 3
    completed = subprocess.run(
        [str(script), "agreement", str(path), "--kind", "spans"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["distance"] == "span"


@pytest.mark.parametrize("kind", KINDS)
def test_typed_parquet_and_json_lines_load_the_same_rows(tmp_path: Path, kind: str) -> None:
    """A typed Parquet file is checked by vectorised expressions, other files row by row: the
    two ways keep the same rows and quarantine the same rows for the same reasons."""
    from annotation_pipelines.tabular import read_kind_table

    records = judgments(kind).to_dicts()
    bad = [value for case_kind, value, _ in BAD_ROWS.values() if case_kind == kind]
    records += [{"task_id": "t9", "annotator_id": f"b{i}", **value} for i, value in enumerate(bad)]
    records.append({**records[0], "annotator_id": None})
    records.append({**records[1], "task_id": " "})
    records.append({**records[2], **dict.fromkeys(VALUE_COLUMNS[kind])})
    schema = judgments(kind).schema
    # A typed file cannot hold a word where a number goes; those rows are tested elsewhere.
    records = [record for record in records if _fits(record, schema)]
    from_lines = read_kind_table(_write_lines(tmp_path / "j.jsonl", records), kind=kind)
    parquet = write_input(pl.DataFrame(records, schema=schema), tmp_path / "j.parquet")
    from_parquet = read_kind_table(parquet, kind=kind)
    assert from_parquet.rows.equals(from_lines.rows)
    assert from_parquet.rows.schema == from_lines.rows.schema
    reasons = [(q.row, q.field, q.reason) for q in from_parquet.quarantined]
    assert reasons == [(q.row, q.field, q.reason) for q in from_lines.quarantined]
    assert from_parquet.rows_read == from_lines.rows_read == len(records)
    assert len(reasons) >= 3 and from_parquet.rows.height == len(records) - len(reasons)


def _fits(record: dict[str, Any], schema: pl.Schema) -> bool:
    """Whether `record` can be held by a Parquet file of `schema` (a typed file cannot hold a
    word where a number goes)."""
    try:
        held = pl.DataFrame([record], schema=schema, strict=True).to_dicts()[0]
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return False
    return held == record


def test_parquet_with_integer_coordinates_and_text_numbers(tmp_path: Path) -> None:
    """Parquet whose dtypes are not the kind's own still loads: integer box corners are read as
    floats, numbers stored as text are read (or refused) one by one."""
    boxes = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t2"],
            "annotator_id": ["a1", "a2", "a1"],
            "boxes": [
                [{"label": "car", "x_min": 0, "y_min": 0, "x_max": 10, "y_max": 10}],
                [{"label": "car", "x_min": 1, "y_min": 0, "x_max": 10, "y_max": 9}],
                [{"label": "car", "x_min": 8, "y_min": 0, "x_max": 2, "y_max": 9}],
            ],
        }
    )
    path = write_input(boxes, tmp_path / "boxes.parquet")
    result = _invoke(agreement_command, [str(path), "--kind", "boxes"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_judgments"] == 2
    assert "row 3, field 'boxes'" in result.stderr
    ratings = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t2"],
            "annotator_id": ["a1", "a2", "a1"],
            "value": ["1", "2", "x"],
        }
    )
    path = write_input(ratings, tmp_path / "ratings.parquet")
    result = _invoke(aggregate_command, [str(path), "--kind", "numeric"])
    assert result.exit_code == 0, result.output
    assert "row 3, field 'value'" in result.stderr
    values = pl.read_csv(io.StringIO(result.stdout)).get_column("value").to_list()
    assert values == [pytest.approx(1.5)]


# Annotator a1 marks up t1 again (data row 10) after a first judgment on data row 1.
RESUBMITTED: dict[str, dict[str, Any]] = {
    "spans": {"spans": [_span(0, 3), _span(6, 8, "ORG")]},
    "boxes": {"boxes": [_box(1, 0, 10, 11), _box(40, 40, 50, 50)]},
}


def _write_judgments(records: list[dict[str, Any]], kind: str, path: Path) -> Path:
    """`records` as a JSON Lines, Parquet or CSV file (list cells as JSON text)."""
    if path.suffix == ".csv":
        columns = ["task_id", "annotator_id", *VALUE_COLUMNS[kind]]
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for record in records:
                writer.writerow(
                    [json.dumps(v) if isinstance(v, list) else v for v in map(record.get, columns)]
                )
        return path
    if path.suffix == ".parquet":
        return write_input(pl.DataFrame(records, schema=judgments(kind).schema), path)
    return _write_lines(path, records)


@pytest.mark.parametrize("kind", sorted(RESUBMITTED))
@pytest.mark.parametrize(
    ("suffix", "first_line", "kept_line"),
    [(".jsonl", 1, 10), (".csv", 2, 11), (".parquet", None, None)],
)
def test_a_judgment_made_again_replaces_the_earlier_one(
    tmp_path: Path, kind: str, suffix: str, first_line: int | None, kept_line: int | None
) -> None:
    """As ingest resolves a duplicate submission: the later row is kept, the earlier one is
    quarantined naming file, row, line and the row that replaced it, and every command goes on
    with one judgment per task and annotator."""
    records = judgments(kind).to_dicts()
    again = {"task_id": "t1", "annotator_id": "a1", **RESUBMITTED[kind]}
    assert (records[0]["task_id"], records[0]["annotator_id"]) == ("t1", "a1")
    path = _write_judgments([*records, again], kind, tmp_path / f"judgments{suffix}")
    expected = _write_judgments([*records[1:], again], kind, tmp_path / f"expected{suffix}")
    first = "row 1" if first_line is None else f"row 1 (line {first_line})"
    kept = "row 10" if kept_line is None else f"row 10 (line {kept_line})"
    named = (
        f"{first}, field 'task_id,annotator_id': duplicate: annotator_id 'a1' judged task_id "
        f"'t1' again at {kept}, which replaces this judgment"
    )

    output = tmp_path / "out.parquet"
    result = _invoke(aggregate_command, [str(path), "--kind", kind, "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert f"{path}: 1 of 10 rows quarantined" in result.stderr
    assert named in result.stderr
    (entry,) = [
        json.loads(line)
        for line in (tmp_path / "out.parquet.quarantine.jsonl").read_text().splitlines()
    ]
    assert (entry["file"], entry["row"], entry["line"]) == (str(path), 1, first_line)
    assert (entry["field"], entry["reason"]) == ("task_id,annotator_id", "duplicate")
    assert json.loads(entry["record"]) == records[0]
    reference = tmp_path / "reference.parquet"
    result = _invoke(aggregate_command, [str(expected), "--kind", kind, "--output", str(reference)])
    assert result.exit_code == 0 and not result.stderr, result.output
    assert pl.read_parquet(output).equals(pl.read_parquet(reference))

    result = _invoke(agreement_command, [str(path), "--kind", kind])
    assert result.exit_code == 0, result.output
    assert named in result.stderr
    reference_agreement = _invoke(agreement_command, [str(expected), "--kind", kind])
    assert json.loads(result.stdout) == json.loads(reference_agreement.stdout)
    assert json.loads(result.stdout)["n_judgments"] == 9

    result = _invoke(main, ["replay", str(path), "--kind", kind, "--min-votes", "2"])
    assert result.exit_code == 0, result.output
    assert named in result.stderr
    assert json.loads(result.stdout)["judgments_available"] == 9


def _read(records: list[dict[str, Any]], kind: str, path: Path) -> Any:
    from annotation_pipelines.tabular import read_kind_table

    return read_kind_table(_write_judgments(records, kind, path), kind=kind, row_column="row")


@pytest.mark.parametrize("kind", sorted(RESUBMITTED))
def test_the_reader_keeps_the_last_valid_judgment_of_each_task_and_annotator(
    tmp_path: Path, kind: str
) -> None:
    """Three judgments of t1 by a1 and a fourth of the wrong shape: the last valid one stays
    in its place, both earlier ones name it, the wrong-shaped one is quarantined for its shape,
    rows read = rows kept + rows quarantined, and the engine takes the rows as read."""
    from annotation_pipelines.aggregation.by_kind import aggregate_kind

    records = judgments(kind).to_dicts()
    again = {"task_id": "t1", "annotator_id": "a1", **RESUBMITTED[kind]}
    wrong = next(value for case_kind, value, _ in BAD_ROWS.values() if case_kind == kind)
    bad = {"task_id": "t1", "annotator_id": "a1", **wrong}
    rows = [*records[:4], again, *records[4:], again, bad]  # rows 1, 5 and 11 are t1/a1; 12 bad
    by_format = [_read(rows, kind, tmp_path / f"j{suffix}") for suffix in (".jsonl", ".parquet")]
    for table in by_format:
        assert table.rows_read == 12 and table.rows.height == 9
        assert table.rows.get_column("row").to_list() == [2, 3, 4, 6, 7, 8, 9, 10, 11]
        assert table.rows.filter(task_id="t1", annotator_id="a1").get_column(kind).to_list() == [
            again[kind]
        ]
        summary = [(q.row, q.reason, q.field) for q in table.quarantined]
        assert summary == [
            (1, "duplicate", "task_id,annotator_id"),
            (5, "duplicate", "task_id,annotator_id"),
            (12, "wrong_type", kind),
        ]
        assert all("again at row 11" in q.message for q in table.quarantined[:2])
        result = aggregate_kind(table.rows.drop("row"), kind=kind)
        assert result.labels.height == 3
    lines, parquet = by_format
    assert parquet.rows.equals(lines.rows)
    with pytest.raises(ValueError, match="one judgment per task and annotator"):
        aggregate_kind(pl.DataFrame(rows[:-1], schema=judgments(kind).schema), kind=kind)


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind not in RESUBMITTED])
def test_other_kinds_keep_every_judgment_as_a_vote(tmp_path: Path, kind: str) -> None:
    """Kinds whose models count votes read a judgment made again as one more vote, as
    `aggregate` and `agreement` always have."""
    records = judgments(kind).to_dicts()
    table = _read([*records, records[0]], kind, tmp_path / "j.jsonl")
    assert table.rows.height == 10 and not table.quarantined


def test_numeric_aggregate_with_a_declared_scale_sets_answers_off_it_aside(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(
        "task_id,annotator_id,rating\n"
        "t1,a1,3\nt1,a2,4\nt1,a3,3\nt2,a1,5\nt2,a2,5\nt2,a3,4\nt3,a1,2\nt3,a2,1e200\nt3,a3,2\n"
        "t3,a4,2.5\n"
    )
    base = [str(path), "--kind", "numeric", "--value-col", "rating"]
    # Without the scale the 1e200 is a gross error the model sets aside, and says so.
    unchecked = _invoke(aggregate_command, base)
    assert unchecked.exit_code == 0
    assert unchecked.stderr.splitlines() == [
        f"{path}: 1 of 10 answers set aside by bias_noise as gross errors (far off the "
        "scale the answers show and from their task's median), not fitted; first:",
        "  row 8 (line 9), field 'rating': 1e+200 (task 't3', annotator 'a2')",
    ]
    assert pl.read_csv(io.StringIO(unchecked.stdout))["confidence"].min() > 0.3
    output = tmp_path / "labels.parquet"
    result = _invoke(aggregate_command, [*base, "--scale", "1:5:1", "--output", str(output)])
    assert result.exit_code == 0, result.output
    quarantine = output.with_name("labels.parquet.quarantine.jsonl")
    assert result.stderr.splitlines() == [
        f"{path}: 2 of 10 rows quarantined (all in {quarantine}):",
        "  row 8 (line 9), field 'rating': outside_scale: 1e+200 is outside the declared "
        "scale [1, 5] step 1",
        "  row 10 (line 11), field 'rating': outside_scale: 2.5 is outside the declared "
        "scale [1, 5] step 1",
    ]
    written = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert written[0]["record"] == json.dumps(
        {"task_id": "t3", "annotator_id": "a2", "rating": 1e200}
    )
    labels = pl.read_parquet(output).sort("task_id")
    assert labels.columns == ["task_id", "value", "confidence", "lo", "hi"]
    np.testing.assert_allclose(labels["value"], [3.33, 4.67, 2.0], atol=0.35)
    assert labels["confidence"].min() > 0.5
    assert labels["lo"].min() >= 1.0 and labels["hi"].max() <= 5.0
    # Half steps are answers on a 0.5 step; nothing else changes without --scale.
    halves = _invoke(aggregate_command, [*base, "--scale", "1:5:0.5"])
    assert halves.stderr.count("outside_scale") == 1
    for scale, error in [
        ("5:1", "'5:1': min must be below max"),
        ("1:x", "MAX of '1:x': 'x' is not a number"),
        ("1:nan", "MAX of '1:nan': expected a finite number"),
        ("1", "expected MIN:MAX or MIN:MAX:STEP"),
    ]:
        refused = CliRunner().invoke(aggregate_command, [*base, "--scale", scale])
        assert refused.exit_code == 2 and error in refused.output, refused.output
    other = CliRunner().invoke(aggregate_command, [str(path), "--scale", "1:5"])
    assert other.exit_code == 2 and "applies to numeric ratings, not categorical" in other.output


@pytest.mark.parametrize(
    ("kind", "answer", "other", "same"),
    [
        ("categorical", {"label": "cat"}, {"label": "dog"}, {"label": "cat"}),
        ("numeric", {"value": 1.0}, {"value": 9.0}, {"value": 1}),
        ("multilabel", {"labels": ["x"]}, {"labels": ["x", "y"]}, {"labels": ["x"]}),
        ("text", {"text": "a"}, {"text": "b"}, {"text": "a"}),
        # The same pair shown the other way round, with the same winner, is the same answer.
        (
            "pairwise",
            {"left": "a", "right": "b", "winner": "left"},
            {"left": "a", "right": "b", "winner": "right"},
            {"left": "b", "right": "a", "winner": "a"},
        ),
    ],
)
def test_a_task_given_two_gold_answers_is_an_error_naming_the_gold_file_and_rows(
    tmp_path: Path, kind: str, answer: dict, other: dict, same: dict
) -> None:
    # Before: numeric, multilabel and text kept the last answer without a word; categorical
    # and pairwise failed naming INPUT ("judgments.jsonl: gold: task 't1' has more than one
    # gold label"), not the gold file or its rows.
    path = write_input(judgments(kind), tmp_path / "judgments.jsonl")
    gold = _write_lines(
        tmp_path / "gold.jsonl",
        [{"task_id": "t1", **answer}, {"task_id": "t2", **answer}, {"task_id": "t1", **other}],
    )
    command = ["replay"] if kind == "pairwise" else ["aggregate"]
    result = CliRunner().invoke(main, [*command, str(path), "--kind", kind, "--gold", str(gold)])
    assert result.exit_code == 1, result.output
    assert (
        f"{gold}: row 3 (line 3): task 't1' already has another gold answer at row 1 (line 1)"
        in " ".join(result.output.split())
    )
    # The same answer given twice is one gold answer.
    twice = _write_lines(
        tmp_path / "twice.jsonl", [{"task_id": "t1", **answer}, {"task_id": "t1", **same}]
    )
    result = CliRunner().invoke(main, [*command, str(path), "--kind", kind, "--gold", str(twice)])
    assert result.exit_code == 0, result.output


def test_numeric_aggregate_names_the_answers_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "outlier.csv"
    path.write_text(
        "task_id,annotator_id,value\nt1,a,3\nt1,b,100000000000000000\nt2,a,1\nt2,b,2\n"
        "t3,a,4\nt3,b,5\nt4,a,4\nt4,c,5\n"
    )
    result = _invoke(aggregate_command, [str(path), "--kind", "numeric"])
    assert result.exit_code == 0
    assert result.stderr.splitlines()[1] == (
        "  row 2 (line 3), field 'value': 1e+17 (task 't1', annotator 'b')"
    )
    labels = pl.read_csv(io.StringIO(result.stdout)).sort("task_id")
    np.testing.assert_allclose(labels["value"], [3.0, 1.5, 4.5, 4.5], atol=0.5)
    # The plain statistics set nothing aside and say nothing.
    mean = _invoke(aggregate_command, [str(path), "--kind", "numeric", "--method", "mean"])
    assert mean.exit_code == 0 and not mean.stderr


@pytest.mark.parametrize("command", ["aggregate", "replay"])
@pytest.mark.parametrize("kind", ["multilabel", "ranking", "spans", "boxes"])
def test_a_list_kind_to_csv_is_refused_before_its_input_is_read(
    tmp_path: Path, command: str, kind: str
) -> None:
    # Before, INPUT was read and checked first, so a large file's whole read (and its
    # quarantine file) came before a refusal the options alone decide.
    (column,) = VALUE_COLUMNS[kind]
    path = _write_lines(
        tmp_path / "answers.jsonl",
        [
            {"task_id": "t1", "annotator_id": "a1", column: []},
            {"task_id": "t1", "annotator_id": "a2", column: 7},
        ],
    )
    output = tmp_path / "out.csv"
    for source in (path, tmp_path / "absent.jsonl"):
        result = CliRunner().invoke(
            main, [command, str(source), "--kind", kind, "--output", str(output)]
        )
        assert result.exit_code == 1, result.output
        assert (
            f"{output}: CSV cannot hold the list column(s) '{column}'; write JSON Lines (.jsonl) "
            "or Parquet (.parquet), which hold lists"
        ) in " ".join(result.output.split())
        assert "quarantined" not in result.output and "absent" not in result.output
        assert not (tmp_path / "out.csv.quarantine.jsonl").exists() and not output.exists()


@pytest.mark.parametrize("command", ["aggregate", "replay"])
def test_a_pairwise_gold_answer_for_another_pair_is_an_error_naming_its_row(
    tmp_path: Path, command: str
) -> None:
    # Before, the gold winner was read as a side of the task's own pair: gold saying 'zz' beat
    # 'yy' on a task comparing 'a' and 'b' made replay write 'b' as the task's known answer at
    # confidence 1.0, and aggregate fit every vote on it reversed.
    path = _write_lines(
        tmp_path / "judgments.jsonl",
        [
            {"task_id": "t1", "annotator_id": name, "left": "a", "right": "b", "winner": winner}
            for name, winner in [("w1", "left"), ("w2", "left"), ("w3", "right")]
        ]
        + [{"task_id": "t2", "annotator_id": "w1", "left": "b", "right": "c", "winner": "left"}],
    )
    gold = _write_lines(
        tmp_path / "gold.jsonl",
        [
            {"task_id": "t2", "left": "c", "right": "b", "winner": "right"},
            {"task_id": "t1", "left": "zz", "right": "yy", "winner": "left"},
        ],
    )
    result = CliRunner().invoke(
        main, [command, str(path), "--kind", "pairwise", "--gold", str(gold)]
    )
    assert result.exit_code == 1, result.output
    assert (
        f"{gold}: row 2 (line 2): task 't1' compares 'zz' and 'yy', but {path} compares 'a' "
        "and 'b' on it; gold answers the pair its task shows"
    ) in " ".join(result.output.split())
    # The pair shown the other way round is the task's pair.
    swapped = _write_lines(
        tmp_path / "swapped.jsonl", [{"task_id": "t1", "left": "b", "right": "a", "winner": "left"}]
    )
    result = CliRunner().invoke(
        main, [command, str(path), "--kind", "pairwise", "--gold", str(swapped)]
    )
    assert result.exit_code == 0, result.output
