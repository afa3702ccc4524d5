"""A value lies inside what it marks, whatever format it came in, by one check each.

Boxes whose unit is known lie inside their image (`values.inside_image`: 0-100 in percent,
0 to the image's size in pixels), else ``outside_image`` on field `boxes`; spans end within
their task's text where the text is known (`values.span_past_text`), else ``outside_text``,
the field naming the end and the text's length. Label Studio, SageMaker Ground Truth, CSV,
Parquet and JSON Lines are each held to them, and a refused Label Studio control says why in
words as a table row does.
"""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main
from annotation_pipelines.ingest import IngestResult
from annotation_pipelines.ingest.command import quarantine_lines
from annotation_pipelines.kinds import BOX
from annotation_pipelines.tabular import refused_values
from tests.kinds.test_ingest_kinds import (
    CREATED,
    annotation,
    control,
    ingest_label_studio,
    ingest_table,
    ner,
    rectangle,
    task,
)


def _box(x_min: float, y_min: float, x_max: float, y_max: float) -> dict[str, Any]:
    return {"label": "car", "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max}


def _row(task_id: str, **value: Any) -> dict[str, Any]:
    return {"task_id": task_id, "annotator_id": "a1", "submitted_at": CREATED, **value}


def _table(rows: list[dict[str, Any]], format: str) -> bytes:
    """`rows` as a table of `format`: nested values typed in Parquet and JSON Lines, JSON
    text in CSV cells."""
    if format == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    columns = sorted({name for row in rows for name in row})
    if format == "csv":
        cells = [
            {
                name: json.dumps(row[name]) if isinstance(row.get(name), list) else row.get(name)
                for name in columns
            }
            for row in rows
        ]
        frame = pl.DataFrame(cells, schema=dict.fromkeys(columns, pl.String))
        return frame.write_csv().encode()
    schema: dict[str, Any] = dict.fromkeys(columns, pl.String)
    schema.update(
        {
            "boxes": pl.List(BOX),
            "image_width": pl.Float64,
            "image_height": pl.Float64,
            "spans": pl.List(pl.Struct({"start": pl.Int64, "end": pl.Int64, "label": pl.String})),
        }
    )
    frame = pl.DataFrame(rows, schema={n: d for n, d in schema.items() if n in columns})
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _refused(result: IngestResult) -> list[tuple[Any, ...]]:
    return result.quarantine.select("source_line", "reason", "field").rows()


def _messages(result: IngestResult, format: str) -> list[str]:
    shown = quarantine_lines(
        result.quarantine,
        format_=format,
        rows_read=result.rows_read,
        details=result.quarantine_details(),
    )
    return shown.splitlines()[1:]


# Rows of a table, each good or refused as boxes outside their image: the data row (1-based)
# of each refused one and its message's tail.
BOX_ROWS = [
    _row("ok", kind="boxes", coordinates="percent", boxes=[_box(0, 0, 100, 100)]),
    _row("over", kind="boxes", coordinates="percent", boxes=[_box(90, 10, 120, 20)]),
    _row("under", kind="boxes", coordinates="percent", boxes=[_box(10, -5, 20, 20)]),
    _row("tall", kind="boxes", coordinates="percent", boxes=[_box(10, 10, 20, 100.5)]),
    _row(
        "pixel-ok",
        kind="boxes",
        coordinates="pixel",
        image_width=640.0,
        image_height=480.0,
        boxes=[_box(500, 300, 640, 480)],
    ),
    _row(
        "pixel-past",
        kind="boxes",
        coordinates="pixel",
        image_width=640.0,
        image_height=480.0,
        boxes=[_box(500, 300, 641, 400)],
    ),
    _row("pixel-negative", kind="boxes", coordinates="pixel", boxes=[_box(-3, 0, 20, 20)]),
    # Without a unit the image is not known: kept as written.
    _row("no-unit", kind="boxes", boxes=[_box(90, 10, 120, 20)]),
]
REFUSED_BOXES = {
    2: "box 1 has x_max 120, outside the image (0 to 100 percent of the image)",
    3: "box 1 has y_min -5, outside the image (0 to 100 percent of the image)",
    4: "box 1 has y_max 100.5, outside the image (0 to 100 percent of the image)",
    6: "box 1 has x_max 641, outside the image (0 to 640 pixels, the image's width)",
    7: "box 1 has x_min -3, outside the image (the image starts at pixel 0)",
}


@pytest.mark.parametrize("format", ["csv", "parquet", "jsonl"])
def test_table_boxes_outside_their_image_are_quarantined_naming_row_and_field(format):
    result = ingest_table(_table(BOX_ROWS, format), format)
    first_row = 2 if format == "csv" else 1  # a CSV row's line, after the header
    assert _refused(result) == [
        (row + first_row - 1, "outside_image", "boxes") for row in REFUSED_BOXES
    ]
    assert sorted(result.judgments["task_id"]) == ["no-unit", "ok", "pixel-ok"]
    for line, (row, tail) in zip(_messages(result, format), REFUSED_BOXES.items(), strict=True):
        where = {"csv": f"row {row} (line {row + 1})", "parquet": f"row {row}"}.get(
            format, f"line {row}"
        )
        assert line == (
            f"  judgments.{format}: {where}, field 'boxes': outside_image: boxes: {tail}"
        )
    assert result.rows_read == result.rows_loaded + result.rows_quarantined


def test_a_percent_box_a_rounding_error_past_the_edge_is_kept():
    # What a tool summing x and width in floats can write for a box at the right edge.
    box = _box(12.5, 0, 100.00000000000001, 50)
    result = ingest_table(
        _table([_row("t", kind="boxes", coordinates="percent", boxes=[box])], "jsonl"), "jsonl"
    )
    assert result.quarantine.height == 0
    assert result.judgments["boxes"][0][0]["x_max"] == 100.00000000000001


def test_label_studio_boxes_outside_the_image_are_quarantined_as_table_boxes_are():
    regions = {
        11: [rectangle(10, 10, 20, 20, "Car")],
        12: [rectangle(90, 10, 20, 20, "Car")],  # reaches 110 %
        13: [rectangle(-4, 10, 20, 20, "Car")],
        14: [
            control(
                "kp",
                "keypointlabels",
                {"x": 101, "y": 5, "width": 2, "keypointlabels": ["Nose"]},
                to_name="image",
            )
        ],
        15: [
            control(
                "poly",
                "polygonlabels",
                {"points": [[10, 10], [50, 10], [50, 120]], "polygonlabels": ["Car"]},
                to_name="image",
            )
        ],
    }
    annotations = [annotation(aid, aid, result) for aid, result in regions.items()]
    result = ingest_label_studio([task(1, {"image": "a.jpg"}, annotations)])
    assert result.judgments["judgment_id"].to_list() == ["label-studio:11"]
    assert result.quarantine.select("reason", "field").rows() == [("outside_image", "boxes")] * 4
    messages = [line.split("outside_image: ", 1)[1] for line in _messages(result, "label-studio")]
    assert messages == [
        "boxes: box 1 has x_max 110, outside the image (0 to 100 percent of the image)",
        "boxes: box 1 has x_min -4, outside the image (0 to 100 percent of the image)",
        "boxes: box 1 has x_min 101, outside the image (0 to 100 percent of the image)",
        "boxes: box 1 has y_max 120, outside the image (0 to 100 percent of the image)",
    ]


def test_a_label_studio_keypoint_near_the_edge_is_clipped_to_the_image():
    point = control(
        "kp", "keypointlabels", {"x": 99, "y": 1, "width": 4, "keypointlabels": ["Nose"]}, "image"
    )
    result = ingest_label_studio([task(1, {"image": "a.jpg"}, [annotation(11, 1, [point])])])
    [box] = result.judgments["boxes"][0]
    assert (box["x_min"], box["y_min"], box["x_max"], box["y_max"]) == (97.0, 0.0, 100.0, 3.0)


def _manifest_line(source: str, entities: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "source": source,
        "ner": {
            "annotations": {
                "entities": [
                    {"startOffset": start, "endOffset": end, "label": "PER"}
                    for start, end in entities
                ],
                "labels": [{"label": "PER"}],
            }
        },
        "ner-metadata": {
            "type": "groundtruth/text-span",
            "job-name": "ner-job",
            "human-annotated": "yes",
            "creation-date": "2026-05-01T10:00:00.000000",
        },
    }


def test_ground_truth_spans_past_the_task_text_are_quarantined():
    lines = [
        _manifest_line("Alice met Bob", [(0, 5), (10, 13)]),
        _manifest_line("Carol met Dan", [(0, 5), (10, 14)]),
        # Text given by address: the offsets index the fetched object, not checked.
        {**_manifest_line("s3://bucket/doc.txt", [(0, 99)])},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    result = ingest_table(data, "sagemaker-gt")
    assert _refused(result) == [
        (2, "outside_text", "spans (end 14 past the 13 characters of source)")
    ]
    assert result.judgments["source_line"].to_list() == [1, 3]
    [message] = _messages(result, "sagemaker-gt")
    assert message.endswith(
        "field 'spans (end 14 past the 13 characters of source)': "
        "outside_text: spans: span 2 [10, 14) PER ends past the text"
    )


def test_ground_truth_worker_spans_past_the_task_text_are_quarantined():
    line = _manifest_line("Alice met Bob", [(0, 5)])
    line["ner-metadata"]["worker-responses"] = [
        {
            "workerId": worker,
            "submissionTime": "2026-05-01T10:00:00Z",
            "answerContent": {
                "crowd-entity-annotation": {
                    "entities": [{"startOffset": 10, "endOffset": end, "label": "PER"}]
                }
            },
        }
        for worker, end in (("w1", 13), ("w2", 40))
    ]
    result = ingest_table((json.dumps(line) + "\n").encode(), "sagemaker-gt")
    assert result.judgments["annotator_id"].to_list() == ["w1"]
    assert _refused(result) == [
        (1, "outside_text", "spans (end 40 past the 13 characters of source)")
    ]


SPAN_ROWS = [
    _row("t1", kind="spans", payload="Alice met Bob", spans=[{"start": 0, "end": 5, "label": "P"}]),
    _row(
        "t2", kind="spans", payload="Alice met Bob", spans=[{"start": 10, "end": 14, "label": "P"}]
    ),
    # The task's payload is given once; its other rows are checked against it.
    _row("t2", annotator_id="a2", kind="spans", spans=[{"start": 0, "end": 30, "label": "P"}]),
    _row(
        "t3",
        kind="spans",
        payload=json.dumps({"text": "Hi", "lang": "en"}),
        spans=[{"start": 0, "end": 3, "label": "P"}],
    ),
    # No payload: the text is not known, the offsets are kept.
    _row("t4", kind="spans", spans=[{"start": 0, "end": 99, "label": "P"}]),
]


@pytest.mark.parametrize("format", ["csv", "parquet", "jsonl"])
def test_table_spans_past_the_task_text_are_quarantined(format):
    result = ingest_table(_table(SPAN_ROWS, format), format)
    first_row = 2 if format == "csv" else 1
    assert _refused(result) == [
        (2 + first_row - 1, "outside_text", "spans (end 14 past the 13 characters of payload)"),
        (3 + first_row - 1, "outside_text", "spans (end 30 past the 13 characters of payload)"),
        (4 + first_row - 1, "outside_text", "spans (end 3 past the 2 characters of payload.text)"),
    ]
    assert sorted(result.judgments["task_id"]) == ["t1", "t4"]


@pytest.mark.parametrize("format", ["csv", "parquet", "jsonl", "label-studio", "sagemaker-gt"])
def test_a_span_ending_before_it_starts_is_refused_in_every_format(format):
    if format == "label-studio":
        result = ingest_label_studio(
            [task(1, {"text": "Alice met Bob"}, [annotation(11, 1, [ner(5, 2, "x", "P", "a")])])]
        )
    elif format == "sagemaker-gt":
        line = _manifest_line("Alice met Bob", [(5, 2)])
        result = ingest_table((json.dumps(line) + "\n").encode(), "sagemaker-gt")
    else:
        rows = [_row("t", kind="spans", spans=[{"start": 5, "end": 2, "label": "P"}])]
        result = ingest_table(_table(rows, format), format)
    assert result.quarantine.select("reason", "field").rows() == [("wrong_type", "spans")]


def test_every_label_studio_wrong_type_says_why_in_words():
    rect = rectangle(10, 10, 20, 20, "Car")
    regions: dict[int, list[Any]] = {
        11: [{**rect, "value": "a string"}],
        12: [{**rect, "type": ["rectanglelabels"]}],
        13: [{**rect, "from_name": {"name": "bbox"}}],
        14: [rect, {**rect, "type": "polygonlabels"}],
        15: [{**rect, "value": {**rect["value"], "x": "left"}}],
        16: [7],
    }
    annotations = [annotation(aid, aid, result) for aid, result in regions.items()]
    result = ingest_label_studio([task(1, {"image": "a.jpg"}, annotations)])
    assert result.judgments.height == 0
    messages = result.quarantine_details()["message"].to_list()
    assert messages == [
        'result.value: expected an object, got a string "a string"',
        'result.type: expected a string, got a list ["rectanglelabels"]',
        'result.from_name: expected a string, got an object {"name": "bbox"}',
        "result.type: one control's results have several types (polygonlabels, rectanglelabels)",
        "boxes: x must be a finite number, got 'left'",
        "result: expected an object, got a number 7",
    ]
    assert result.quarantine.height == 6
    fields = result.quarantine["field"].to_list()
    assert fields == ["result.value", "result.type", "result.type", "result.type", "boxes",
                      "result.type"]  # fmt: skip


def test_the_ingest_command_prints_a_label_studio_wrong_type_reason(tmp_path):
    export = tmp_path / "export.json"
    broken = {**rectangle(10, 10, 20, 20, "Car"), "value": 3}
    export.write_text(json.dumps([task(1, {"image": "a.jpg"}, [annotation(11, 1, [broken])])]))
    result = CliRunner().invoke(main, ["ingest", str(export), "--format", "label-studio"])
    assert result.exit_code == 0, result.output
    assert (
        f"  {export}: task 1 (id 1, line 1), annotation 1 (id 11), field 'result.value': "
        "wrong_type: result.value: expected an object, got a number 3"
    ) in result.stderr


def test_the_daily_recheck_refuses_boxes_outside_the_image_their_row_names():
    frame = pl.DataFrame(
        {
            "boxes": [[_box(0, 0, 100, 100)], [_box(0, 0, 120, 10)], [_box(0, 0, 700, 10)], []],
            "coordinates": ["percent", "percent", "pixel", "percent"],
            "image_width": [None, None, 640.0, None],
            "image_height": [None, None, 480.0, None],
        },
        schema={
            "boxes": pl.List(BOX),
            "coordinates": pl.String,
            "image_width": pl.Float64,
            "image_height": pl.Float64,
        },
    )
    refused = refused_values(frame, "boxes")
    assert refused.select("row", "reason", "field").rows() == [
        (1, "outside_image", "boxes"),
        (2, "outside_image", "boxes"),
    ]
    # Without the unit the image is not known: nothing to refuse.
    assert refused_values(frame.select("boxes"), "boxes").height == 0
