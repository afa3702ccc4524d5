"""Blank answers and boxes with no area are refused by the one value check every reader uses.

A text answer, or a label of a multilabel set, a span or a box, that is empty or only
whitespace and zero-width characters is `missing_field` naming its field; a box with no width
or height is `empty_box`. The same row gets the same reason from the commands (JSON Lines and
Parquet), from ingest (tables and Label Studio) and from the annotation DB's extract
(`tests/ingest/test_kind_answers.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.aggregation.command import aggregate_command
from annotation_pipelines.kinds import VALUE_COLUMNS, VALUE_DTYPES
from tests.inputs import write_input
from tests.kinds.test_ingest_kinds import (
    CREATED,
    annotation,
    ingest_label_studio,
    ingest_table,
    rectangle,
    task,
)


def _box(x_min: float, y_min: float, x_max: float, y_max: float, label: Any = "car") -> dict:
    return {"label": label, "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max}


# kind, the refused value, reason, field.
REFUSED: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "box_with_no_width": ("boxes", {"boxes": [_box(5, 0, 5, 10)]}, "empty_box", "boxes"),
    "box_with_no_height": ("boxes", {"boxes": [_box(0, 7, 10, 7)]}, "empty_box", "boxes"),
    "box_that_is_a_point": ("boxes", {"boxes": [_box(0, 0, 0, 0)]}, "empty_box", "boxes"),
    "box_blank_label": ("boxes", {"boxes": [_box(0, 0, 5, 5, " ")]}, "missing_field", "boxes"),
    "span_empty_label": (
        "spans",
        {"spans": [{"start": 0, "end": 3, "label": ""}]},
        "missing_field",
        "spans",
    ),
    "span_zero_width_label": (
        "spans",
        {"spans": [{"start": 0, "end": 3, "label": "\u200b"}]},
        "missing_field",
        "spans",
    ),
    "multilabel_empty_label": ("multilabel", {"labels": ["x", ""]}, "missing_field", "labels"),
    "text_empty": ("text", {"text": ""}, "missing_field", "text"),
    "text_spaces": ("text", {"text": "   "}, "missing_field", "text"),
    "text_zero_width_space": ("text", {"text": "\u200b"}, "missing_field", "text"),
    "text_blank_mix": ("text", {"text": " \u200b\ufeff\t"}, "missing_field", "text"),
}

GOOD: dict[str, list[dict[str, Any]]] = {
    "boxes": [{"boxes": [_box(0, 0, 10, 10)]}, {"boxes": [_box(1, 0, 10, 10)]}],
    "spans": [
        {"spans": [{"start": 0, "end": 3, "label": "PER"}]},
        {"spans": [{"start": 0, "end": 3, "label": "PER"}]},
    ],
    "multilabel": [{"labels": ["x"]}, {"labels": ["x", "y"]}],
    "text": [{"text": "hello"}, {"text": "hello"}],
}


def _records(kind: str, bad: dict[str, Any]) -> list[dict[str, Any]]:
    """Two good judgments of task t1, then the refused one of task t2 (data row 3)."""
    good = [
        {"task_id": "t1", "annotator_id": annotator, **value}
        for annotator, value in zip(("a1", "a2"), GOOD[kind], strict=True)
    ]
    return [*good, {"task_id": "t2", "annotator_id": "a1", **bad}]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_commands_quarantine_it_with_its_reason_and_field(tmp_path: Path, case: str) -> None:
    kind, bad, reason, field = REFUSED[case]
    path = tmp_path / "judgments.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records(kind, bad)))
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        aggregate_command,
        [str(path), "--kind", kind, "--output", str(output)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"row 3 (line 3), field {field!r}: {reason}" in result.stderr
    (entry,) = [
        json.loads(line)
        for line in (tmp_path / "out.jsonl.quarantine.jsonl").read_text().splitlines()
    ]
    assert (entry["row"], entry["field"], entry["reason"]) == (3, field, reason)
    tasks = [json.loads(line)["task_id"] for line in output.read_text().splitlines()]
    assert tasks == ["t1"]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_parquet_file_is_checked_alike(tmp_path: Path, case: str) -> None:
    # Typed Parquet columns take a vectorized path that must not wave these rows through.
    kind, bad, reason, field = REFUSED[case]
    schema = {
        "task_id": pl.String(),
        "annotator_id": pl.String(),
        **{column: VALUE_DTYPES[column] for column in VALUE_COLUMNS[kind]},
    }
    frame = pl.DataFrame(_records(kind, bad), schema=schema)
    path = write_input(frame, tmp_path / "judgments.parquet")
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        aggregate_command, [str(path), "--kind", kind, "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert f"row 3, field {field!r}: {reason}" in result.stderr
    assert [json.loads(line)["task_id"] for line in output.read_text().splitlines()] == ["t1"]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_ingest_quarantines_it_with_its_reason_and_field(case: str) -> None:
    kind, bad, reason, field = REFUSED[case]
    rows = [{"kind": kind, "submitted_at": CREATED, **r} for r in _records(kind, bad)]
    result = ingest_table("\n".join(json.dumps(r) for r in rows).encode(), "jsonl")
    assert result.judgments["task_id"].to_list() == ["t1", "t1"]
    assert result.quarantine.select("source_line", "reason", "field").rows() == [(3, reason, field)]


def test_an_unlabelled_region_is_still_a_region() -> None:
    # A span or box with no label at all is what a one-class tool (Label Studio's plain
    # `rectangle`) writes: kept, where a blank label is refused.
    rows = [
        {
            "task_id": "t1",
            "annotator_id": "a",
            "kind": "spans",
            "submitted_at": CREATED,
            "spans": [{"start": 0, "end": 3}],
        },
        {
            "task_id": "t2",
            "annotator_id": "a",
            "kind": "boxes",
            "submitted_at": CREATED,
            "boxes": [{"x_min": 0, "y_min": 0, "x_max": 3, "y_max": 4}],
        },
    ]
    result = ingest_table("\n".join(json.dumps(r) for r in rows).encode(), "jsonl")
    assert result.quarantine.height == 0
    assert result.judgments["spans"][0].to_list() == [{"start": 0, "end": 3, "label": None}]
    assert result.judgments["boxes"][1][0]["label"] is None


def test_label_studio_rectangle_with_no_width_is_an_empty_box() -> None:
    tasks = [
        task(
            1,
            {"image": "a.png"},
            [
                annotation(1, 1, [rectangle(10, 20, 30, 40, "Car")]),
                annotation(2, 2, [rectangle(10, 20, 0, 40, "Car")]),
            ],
        )
    ]
    result = ingest_label_studio(tasks)
    assert result.judgments.height == 1
    assert result.quarantine.select("reason", "field").rows() == [("empty_box", "boxes")]


@pytest.mark.parametrize(
    ("kind", "region", "words"),
    [
        (
            "spans",
            {"start": 0, "end": 3, "labels": ["PER"]},
            "spans: a region's label is one string under 'label', got 'labels': ['PER']",
        ),
        (
            "boxes",
            {"x_min": 0, "y_min": 0, "x_max": 5, "y_max": 5, "rectanglelabels": ["car"]},
            "boxes: a region's label is one string under 'label', got 'rectanglelabels': ['car']",
        ),
    ],
)
def test_a_label_under_a_label_studio_key_is_refused_not_dropped(
    tmp_path: Path, kind: str, region: dict[str, Any], words: str
) -> None:
    # Label Studio keeps a region's labels in a list under `labels` (`rectanglelabels`, ...);
    # a table written from its results as they are read that key. Before, the label was
    # dropped without a word and the region counted as unlabelled, outvoting the annotators
    # who labelled it (a PER span at confidence 0.667 where all three marked PER).
    (column,) = VALUE_COLUMNS[kind]
    path = tmp_path / "judgments.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records(kind, {column: [region]})))
    result = CliRunner().invoke(aggregate_command, [str(path), "--kind", kind])
    assert result.exit_code == 0, result.output
    assert f"row 3 (line 3), field '{column}': wrong_type: {words}" in result.stderr
    rows = [
        {"kind": kind, "submitted_at": CREATED, **r} for r in _records(kind, {column: [region]})
    ]
    ingested = ingest_table("\n".join(json.dumps(r) for r in rows).encode(), "jsonl")
    assert ingested.quarantine.select("source_line", "reason", "field").rows() == [
        (3, "wrong_type", column)
    ]
