"""A label that is a number, checked against a label set of numbers, and ids that are no number.

A float class code from JSON Lines or Parquet (`1.0`) is spelled "1.0", while a project.json
`label_set` of `[1]` reads "1": before, ingest quarantined every such label as unknown_label.
A label equal as a number to one of the set's is now accepted in every reader and stored as
the set spells it; "1.5" against [1, 2] is still unknown_label, and so is a padded " 1".

A JSON `NaN` or `Infinity` id, or a Parquet float id that is NaN, was stored as "nan" or "NaN"
by ingest while the commands refused the JSON one as wrong_type: ingest now quarantines it as
wrong_type naming the field, as the commands do.
"""

from __future__ import annotations

import io
import json
from datetime import datetime

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main
from annotation_pipelines.ingest import ingest_bytes
from annotation_pipelines.ingest.validation import project_label_set
from tests.ingest.conftest import NOW, annotation

NOW_DT = datetime.fromisoformat(NOW)
WHEN = "2026-05-01T10:00:00Z"
NUMBERS = project_label_set({"label_set": [1, 2]}, source="project.json")


def _rows(labels: list[object]) -> list[dict[str, object]]:
    return [
        {"task_id": f"t{index}", "annotator_id": "a1", "label": label, "submitted_at": WHEN}
        for index, label in enumerate(labels)
    ]


def _table(rows: list[dict[str, object]], fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    buffer = io.BytesIO()
    frame = pl.DataFrame(rows)
    if fmt == "parquet":
        frame.write_parquet(buffer)
    else:
        frame.write_csv(buffer)
    return buffer.getvalue()


def _ingest(data: bytes, fmt: str, labels: list[str] | None = NUMBERS, **options):
    return ingest_bytes(
        data, format=fmt, source_file=f"export.{fmt}", label_set=labels, now=NOW_DT, **options
    )


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_float_label_equal_to_a_number_of_the_set_is_stored_as_the_set_spells_it(fmt):
    result = _ingest(_table(_rows([1.0, 1.5, 2.0]), fmt), fmt)
    assert result.judgments.select("task_id", "label").rows() == [("t0", "1"), ("t2", "2")]
    assert result.quarantine.select("source_line", "field", "reason").rows() == [
        (2, "label", "unknown_label")
    ]


@pytest.mark.parametrize(
    ("labels", "loaded", "refused"),
    [
        # Text that reads as the same number as a label of the set is that label.
        (["1", "1.0", "2e0", "+2"], ["1", "1", "2", "2"], []),
        # Another number, padding (kept as written everywhere) or text is not.
        (["1.5", " 1.0", "1.0 ", "one", "0x1", "nan"], [], [1, 2, 3, 4, 5, 6]),
    ],
)
def test_a_csv_number_equal_to_a_label_of_the_set_is_accepted_the_same_way(labels, loaded, refused):
    rows = "".join(f"t{i},a1,{label},{WHEN}\n" for i, label in enumerate(labels))
    data = f"task_id,annotator_id,label,submitted_at\n{rows}".encode()
    result = _ingest(data, "csv", labels=["1", "2"])
    assert result.judgments.get_column("label").to_list() == loaded
    assert result.quarantine.get_column("reason").to_list() == ["unknown_label"] * len(refused)
    assert result.quarantine.get_column("source_line").to_list() == [r + 1 for r in refused]


def test_a_label_the_set_holds_as_written_is_kept_as_written():
    # A set that spells both "1" and "1.0" makes them two labels; each stays itself.
    result = _ingest(_table(_rows(["1.0", "1", 1.0]), "jsonl"), "jsonl", labels=["1", "1.0"])
    assert result.judgments.get_column("label").to_list() == ["1.0", "1", "1.0"]


def test_a_number_two_labels_of_the_set_equal_is_not_guessed():
    # "01" and "1" are two labels to the project; "1.0" could be either: unknown_label.
    result = _ingest(_table(_rows([1.0, "01"]), "jsonl"), "jsonl", labels=["01", "1"])
    assert result.judgments.get_column("label").to_list() == ["01"]
    assert result.quarantine.get_column("reason").to_list() == ["unknown_label"]


def test_a_multilabel_set_of_numbers_is_spelled_as_the_label_set_spells_them():
    rows = [
        {"task_id": "t1", "annotator_id": "a1", "labels": [1.0, 2], "submitted_at": WHEN},
        {"task_id": "t2", "annotator_id": "a1", "labels": [1.5], "submitted_at": WHEN},
    ]
    result = _ingest(_table(rows, "jsonl"), "jsonl")
    assert result.judgments.get_column("labels").to_list() == [["1", "2"]]
    assert result.quarantine.select("field", "reason").rows() == [("labels", "unknown_label")]


def test_gold_and_label_studio_choices_are_spelled_as_the_label_set_spells_them():
    task = {
        "id": 1,
        "data": {"text": "x"},
        "annotations": [
            annotation(1, 11, "1.0"),
            annotation(2, 12, "1.5"),
            annotation(3, 13, "2.0", ground_truth=True),
        ],
    }
    result = _ingest(json.dumps([task]).encode(), "label-studio")
    assert result.judgments.get_column("label").to_list() == ["1"]
    assert result.gold.get_column("label").to_list() == ["2"]
    assert result.quarantine.select("field", "reason").rows() == [("label", "unknown_label")]


def test_sagemaker_class_codes_are_spelled_as_the_label_set_spells_them():
    answers = [
        {"workerId": "w1", "answerContent": {"crowd-classifier": {"label": 1.0}},
         "submissionTime": WHEN},
        {"workerId": "w2", "answerContent": {"crowd-classifier": {"label": 1.5}},
         "submissionTime": WHEN},
    ]  # fmt: skip
    line = {
        "source-ref": "s3://b/a.txt",
        "c": 0,
        "c-metadata": {
            "class-name": "2.0",
            "type": "groundtruth/text-classification",
            "job-name": "job",
            "creation-date": "2026-05-01T22:18:13",
            "worker-responses": answers,
        },
    }
    result = _ingest(json.dumps(line).encode() + b"\n", "sagemaker-gt")
    assert result.judgments.get_column("label").to_list() == ["1"]
    assert result.quarantine.select("field", "reason").rows() == [("label", "unknown_label")]


def test_the_ingest_command_takes_a_float_label_a_settings_label_set_spells_as_an_integer(
    tmp_path,
):
    path = tmp_path / "answers.jsonl"
    path.write_bytes(_table(_rows([1.0, 1.5]), "jsonl"))
    settings = tmp_path / "project.json"
    settings.write_text(json.dumps({"label_set": [1, 2]}))
    out = tmp_path / "out"
    args = ["ingest", str(path), "--format", "jsonl", "--settings", str(settings)]
    result = CliRunner().invoke(main, [*args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows_loaded"], summary["reasons"]) == (1, {"unknown_label": 1})
    assert f"{path}: line 2, field 'label': unknown_label" in result.stderr
    assert pl.read_parquet(out / "judgments.parquet")["label"].to_list() == ["1"]


# --- ids that are no number ---------------------------------------------------------------


def test_a_json_nan_or_infinity_id_or_label_is_quarantined_as_wrong_type_naming_the_field():
    lines = [
        '{"task_id": NaN, "annotator_id": "a1", "label": "pos", "submitted_at": "%s"}',
        '{"task_id": "t1", "annotator_id": Infinity, "label": "pos", "submitted_at": "%s"}',
        '{"judgment_id": NaN, "task_id": "t1", "annotator_id": "a2", "label": "pos", '
        '"submitted_at": "%s"}',
        '{"task_id": "t1", "annotator_id": "a3", "label": -Infinity, "submitted_at": "%s"}',
        '{"task_id": 1.0, "annotator_id": 7, "label": "pos", "submitted_at": "%s"}',
    ]
    data = "".join(line % WHEN + "\n" for line in lines).encode()
    result = _ingest(data, "jsonl", labels=None)
    assert result.judgments.select("task_id", "annotator_id").rows() == [("1.0", "7")]
    assert result.quarantine.select("source_line", "field", "reason").rows() == [
        (1, "task_id", "wrong_type"),
        (2, "annotator_id", "wrong_type"),
        (3, "judgment_id", "wrong_type"),
        (4, "label", "wrong_type"),
    ]
    assert result.quarantine_details()["message"].to_list() == [
        "task_id: expected a string or a number, got nan",
        "annotator_id: expected a string or a number, got inf",
        "judgment_id: expected a string or a number, got nan",
        "label: expected a scalar, got -inf",
    ]


def test_a_parquet_float_id_or_label_that_is_nan_is_quarantined_as_wrong_type():
    frame = pl.DataFrame(
        {
            "task_id": [1.0, float("nan"), 3.0, 4.0],
            "annotator_id": ["a", "b", "c", "d"],
            "label": [1.0, 2.0, float("nan"), float("inf")],
            "submitted_at": [WHEN] * 4,
        }
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    result = _ingest(buffer.getvalue(), "parquet", labels=None)
    assert result.judgments.select("task_id", "label").rows() == [("1.0", "1.0")]
    assert result.quarantine.select("source_line", "field", "reason").rows() == [
        (2, "task_id", "wrong_type"),
        (3, "label", "wrong_type"),
        (4, "label", "wrong_type"),
    ]
    assert result.quarantine_details()["message"].to_list() == [
        "task_id: expected a string or a number, got nan",
        "label: expected a scalar, got nan",
        "label: expected a scalar, got inf",
    ]


def test_a_sagemaker_id_that_is_nan_is_quarantined_as_wrong_type():
    answers = [
        {"workerId": float("nan"), "answerContent": {"crowd-classifier": {"label": "pos"}},
         "submissionTime": WHEN},
        {"workerId": "w2", "answerContent": {"crowd-classifier": {"label": "pos"}},
         "submissionTime": WHEN},
    ]  # fmt: skip
    line = {
        "id": float("nan"),
        "source-ref": "s3://b/a.txt",
        "c": 0,
        "c-metadata": {
            "class-name": "pos",
            "type": "groundtruth/text-classification",
            "job-name": "job",
            "creation-date": "2026-05-01T22:18:13",
        },
    }
    worker_line = {
        "source-ref": "s3://b/b.txt",
        "c": 0,
        "c-metadata": {**line["c-metadata"], "worker-responses": answers},
    }
    data = (json.dumps(line) + "\n" + json.dumps(worker_line) + "\n").encode()
    result = _ingest(data, "sagemaker-gt", labels=None)
    assert result.judgments.get_column("annotator_id").to_list() == ["w2"]
    assert result.quarantine.select("source_line", "field", "reason").rows() == [
        (1, "task_id", "wrong_type"),
        (2, "annotator_id", "wrong_type"),
    ]


def test_the_ingest_command_names_the_file_line_and_field_of_a_nan_id(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(
        f'{{"task_id": "t1", "annotator_id": "a1", "label": "pos", "submitted_at": "{WHEN}"}}\n'
        f'{{"task_id": NaN, "annotator_id": "a2", "label": "pos", "submitted_at": "{WHEN}"}}\n'
    )
    result = CliRunner().invoke(main, ["ingest", str(path), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reasons"] == {"wrong_type": 1}
    assert (
        f"{path}: line 2, field 'task_id': wrong_type: task_id: expected a string or a number, "
        "got nan" in result.stderr
    )


def test_a_label_studio_id_that_is_nan_or_infinite_is_quarantined_as_wrong_type():
    tasks = [
        {"id": float("nan"), "data": {"text": "x"}, "annotations": [annotation(1, 4, "pos")]},
        {
            "id": 2,
            "data": {"text": "y"},
            "annotations": [
                annotation(3, 7, "pos"),
                annotation(4, float("nan"), "pos"),
                annotation(float("inf"), 5, "pos"),
            ],
        },
    ]
    result = _ingest(json.dumps(tasks).encode(), "label-studio", labels=None)
    assert result.judgments.select("task_id", "annotator_id").rows() == [("2", "7")]
    assert result.quarantine.select("field", "reason").rows() == [
        ("task_id", "wrong_type"),
        ("annotator_id", "wrong_type"),
        ("judgment_id", "wrong_type"),
    ]
    assert result.tasks.get_column("task_id").to_list() == ["2"]
