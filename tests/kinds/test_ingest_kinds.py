"""Every annotation kind from Label Studio, SageMaker Ground Truth and plain tables."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import polars as pl
import pytest

from annotation_pipelines.ingest import UnreadableFileError, ingest_bytes
from annotation_pipelines.scale import RatingScale
from annotation_pipelines.schema import GOLD_LABELS, JUDGMENTS

NOW = datetime.fromisoformat("2026-06-01T00:00:00+00:00")
CREATED = "2026-05-01T10:00:00.000000Z"


def annotation(annotation_id: int, annotator: int, result: list[dict], **extra: Any) -> dict:
    record = {
        "id": annotation_id,
        "completed_by": annotator,
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": CREATED,
        "updated_at": CREATED,
        "lead_time": 12.5,
        "prediction": {},
        "result_count": 0,
        "task": 1,
    }
    record.update(extra)
    return record


def task(task_id: int, data: dict, annotations: list[dict]) -> dict:
    return {
        "id": task_id,
        "data": data,
        "annotations": annotations,
        "predictions": [],
        "project": 3,
        "created_at": "2026-05-01T09:00:00.000000Z",
        "updated_at": "2026-05-01T09:00:00.000000Z",
    }


def ner(start: int, end: int, text: str, label: str, region: str) -> dict:
    return {
        "id": region,
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "origin": "manual",
        "value": {"start": start, "end": end, "text": text, "labels": [label]},
    }


def rectangle(x: float, y: float, w: float, h: float, label: str, **extra: Any) -> dict:
    return {
        "id": f"r{x}{y}",
        "from_name": "bbox",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 800,
        "original_height": 600,
        "image_rotation": 0,
        "value": {
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "rotation": extra.pop("rotation", 0),
            "rectanglelabels": [label],
        },
        **extra,
    }


def control(from_name: str, kind_type: str, value: dict, to_name: str = "text") -> dict:
    return {
        "id": f"{from_name}-{kind_type}",
        "from_name": from_name,
        "to_name": to_name,
        "type": kind_type,
        "origin": "manual",
        "value": value,
    }


def ingest_label_studio(tasks: list[dict], **options: Any):
    return ingest_bytes(
        json.dumps(tasks, indent=2).encode(),
        format="label-studio",
        source_file="export.json",
        now=NOW,
        **options,
    )


TEXT = "Ada Lovelace met Charles Babbage in London."


def ner_export() -> list[dict]:
    return [
        task(
            1,
            {"text": TEXT},
            [
                annotation(
                    11,
                    1,
                    [ner(0, 12, "Ada Lovelace", "PER", "a"), ner(35, 41, "London", "LOC", "b")],
                ),
                annotation(12, 2, [ner(0, 12, "Ada Lovelace", "PER", "c")]),
                annotation(13, 3, [], ground_truth=False),
            ],
        ),
    ]


def test_label_studio_spans_one_judgment_per_annotation_and_control():
    result = ingest_label_studio(ner_export())
    judged = result.judgments.sort("judgment_id")
    assert dict(judged.schema) == JUDGMENTS
    assert judged.get_column("kind").to_list() == ["spans", "spans"]
    assert judged.get_column("control").to_list() == ["label", "label"]
    assert judged.get_column("task_id").to_list() == ["1", "1"]
    assert judged.get_column("judgment_id").to_list() == ["label-studio:11", "label-studio:12"]
    assert judged.get_column("spans").to_list()[0] == [
        {"start": 0, "end": 12, "label": "PER"},
        {"start": 35, "end": 41, "label": "LOC"},
    ]
    assert judged.get_column("label").null_count() == 2
    # An annotation with no result at all has no value: missing_field, as before.
    assert result.reasons == {"missing_field": 1}
    assert result.rows_read == 3


def test_label_studio_boxes_polygons_keypoints_keep_percent_and_image_size():
    polygon = control(
        "poly",
        "polygonlabels",
        {"points": [[10, 10], [30, 12], [20, 40]], "polygonlabels": ["Roof"], "closed": True},
        to_name="image",
    )
    polygon.update(original_width=800, original_height=600)
    keypoint = control(
        "kp", "keypointlabels", {"x": 50, "y": 50, "width": 2, "keypointlabels": ["Eye"]}, "image"
    )
    rotated = rectangle(10, 10, 20, 10, "Car", rotation=90)
    tasks = [
        task(
            7,
            {"image": "s3://bucket/7.jpg"},
            [
                annotation(71, 1, [rectangle(10, 20, 30, 40, "Car"), polygon, keypoint]),
                annotation(72, 2, [rotated]),
            ],
        )
    ]
    result = ingest_label_studio(tasks)
    assert result.rows_quarantined == 0
    rows = {row["judgment_id"]: row for row in result.judgments.iter_rows(named=True)}
    assert set(rows) == {
        "label-studio:71/bbox",
        "label-studio:71/poly",
        "label-studio:71/kp",
        "label-studio:72",
    }
    box = rows["label-studio:71/bbox"]
    assert box["kind"] == "boxes" and box["coordinates"] == "percent"
    assert (box["image_width"], box["image_height"]) == (800.0, 600.0)
    assert box["boxes"] == [
        {"label": "Car", "x_min": 10.0, "y_min": 20.0, "x_max": 40.0, "y_max": 60.0}
    ]
    poly = rows["label-studio:71/poly"]
    assert poly["boxes"] == [
        {"label": "Roof", "x_min": 10.0, "y_min": 10.0, "x_max": 30.0, "y_max": 40.0}
    ]
    assert poly["polygons"][0]["points"][1] == {"x": 30.0, "y": 12.0}
    point = rows["label-studio:71/kp"]["boxes"][0]
    assert (point["x_min"], point["x_max"], point["label"]) == (49.0, 51.0, "Eye")
    # 90° clockwise about (x, y) in pixels: 160×60 px becomes 60×160 px left of x.
    turned = rows["label-studio:72"]["boxes"][0]
    assert turned["x_min"] == pytest.approx(10 - 60 / 8)  # 60 px = 7.5 % of 800
    assert turned["x_max"] == pytest.approx(10.0)
    assert turned["y_max"] == pytest.approx(10 + 160 / 6)  # 160 px = 26.67 % of 600


def test_label_studio_scalar_controls_and_multiple_choices():
    def results(rating: int, tags: list[str], text: list[str], winner: str, order: list[str]):
        return [
            control("quality", "rating", {"rating": rating}),
            control("score", "number", {"number": rating * 10}),
            control("topics", "choices", {"choices": tags}),
            control("note", "textarea", {"text": text}),
            control("taxonomy", "taxonomy", {"taxonomy": [["Animal", "Cat"], ["Plant"]]}),
            control("pw", "pairwise", {"selected": winner}, to_name="answer_a,answer_b"),
            control("rank", "ranker", {"ranker": {"rank": order}}, to_name="results"),
        ]

    tasks = [
        task(
            5,
            {"text": "x"},
            [
                annotation(51, 1, results(4, ["a", "b"], ["fine", "really"], "left", ["x", "y"])),
                annotation(52, 2, results(2, ["a"], ["bad"], "right", ["y", "x"])),
            ],
        )
    ]
    result = ingest_label_studio(tasks)
    assert result.rows_read == 14 and result.rows_quarantined == 0
    by = {(r["annotator_id"], r["control"]): r for r in result.judgments.iter_rows(named=True)}
    assert by[("1", "quality")]["kind"] == "numeric" and by[("1", "quality")]["value"] == 4.0
    assert by[("2", "score")]["value"] == 20.0
    # One annotator picked two topics: the control is multilabel for everyone.
    assert by[("1", "topics")]["kind"] == "multilabel"
    assert by[("2", "topics")]["labels"] == ["a"]
    assert by[("1", "note")]["text"] == "fine\nreally"
    assert by[("1", "taxonomy")]["labels"] == ["Animal/Cat", "Plant"]
    pair = by[("2", "pw")]
    assert (pair["kind"], pair["left"], pair["right"], pair["winner"]) == (
        "pairwise",
        "5:answer_a",
        "5:answer_b",
        "right",
    )
    assert by[("2", "rank")]["ranking"] == ["y", "x"]
    assert {r["judgment_id"] for r in by.values()} >= {"label-studio:51/pw", "label-studio:52/rank"}


def test_unsupported_result_type_is_quarantined_as_unsupported_kind_not_missing_field():
    brush = control(
        "brush", "brushlabels", {"format": "rle", "rle": [1, 2], "brushlabels": ["Sky"]}
    )
    video = control("box", "videorectangle", {"sequence": [], "labels": ["Car"]}, "video")
    relation = {"from_id": "a", "to_id": "b", "type": "relation", "direction": "right"}
    tasks = [
        task(
            9,
            {"text": TEXT},
            [
                annotation(91, 1, [brush]),
                annotation(92, 2, [video, ner(0, 3, "Ada", "PER", "a"), relation]),
            ],
        )
    ]
    result = ingest_label_studio(tasks)
    assert result.reasons == {"unsupported_kind": 3}
    fields = sorted(result.quarantine.get_column("field").to_list())
    assert fields == [
        "result.type=brushlabels",
        "result.type=relation",
        "result.type=videorectangle",
    ]
    assert (
        "videorectangle"
        in result.quarantine.filter(pl.col("field") == "result.type=videorectangle")
        .get_column("raw")
        .item()
    )
    assert result.judgments.get_column("kind").to_list() == ["spans"]


def test_wrong_shape_region_is_wrong_type_and_the_other_controls_load():
    tasks = [
        task(
            3,
            {"text": TEXT},
            [
                annotation(
                    31,
                    1,
                    [ner(5, 2, "bad", "PER", "x"), control("quality", "rating", {"rating": 3})],
                ),
            ],
        )
    ]
    result = ingest_label_studio(tasks)
    assert result.reasons == {"wrong_type": 1}
    assert result.quarantine.get_column("field").to_list() == ["spans"]
    assert result.judgments.get_column("kind").to_list() == ["numeric"]


def test_ground_truth_annotation_of_a_kind_is_gold_with_its_value():
    export = ner_export()
    export[0]["annotations"][1]["ground_truth"] = True
    result = ingest_label_studio(export)
    assert dict(result.gold.schema) == GOLD_LABELS
    gold = result.gold.row(0, named=True)
    assert gold["kind"] == "spans" and gold["spans"] == [{"start": 0, "end": 12, "label": "PER"}]


def test_native_and_tolerant_paths_agree_on_kinds():
    export = ner_export()
    native = ingest_label_studio(export)
    broken = json.dumps(export, indent=2)[:-2] + "\n  ,{]"
    tolerant = ingest_bytes(
        broken.encode(), format="label-studio", source_file="export.json", now=NOW
    )
    assert "truncated_file" in tolerant.reasons or "malformed_json" in tolerant.reasons
    assert tolerant.judgments.drop("source_line").equals(native.judgments.drop("source_line"))


def _spans_past_the_text() -> list[dict]:
    text = "Alice met Bob"  # 13 characters
    return [
        task(
            2,
            {"text": text},
            [
                annotation(21, 1, [ner(0, 5, "Alice", "PER", "a"), ner(10, 99, "Bob", "PER", "b")]),
                annotation(22, 2, [ner(0, 5, "Alice", "PER", "c"), ner(10, 13, "Bob", "PER", "d")]),
                annotation(23, 3, [ner(13, 14, "", "PER", "e")]),
            ],
        ),
        # No text in the task's data: the offsets cannot be checked, and are kept.
        task(
            3, {"image": "a.jpg", "url": "b.jpg"}, [annotation(31, 1, [ner(10, 99, "?", "X", "f")])]
        ),
    ]


def test_label_studio_spans_past_the_end_of_the_task_text_are_quarantined():
    result = ingest_label_studio(_spans_past_the_text())
    assert sorted(result.judgments.get_column("judgment_id").to_list()) == [
        "label-studio:22",
        "label-studio:31",
    ]
    assert result.quarantine.select("reason", "field").rows() == [
        ("outside_text", "spans (end 99 past the 13 characters of data.text)"),
        ("outside_text", "spans (end 14 past the 13 characters of data.text)"),
    ]
    assert result.rows_read == result.rows_loaded + result.rows_quarantined


def test_label_studio_spans_past_the_text_are_quarantined_on_the_tolerant_path_too():
    export = _spans_past_the_text()
    native = ingest_label_studio(export)
    broken = json.dumps(export, indent=2)[:-2] + "\n  ,{]"
    tolerant = ingest_bytes(
        broken.encode(), format="label-studio", source_file="export.json", now=NOW
    )
    assert tolerant.judgments.drop("source_line").equals(native.judgments.drop("source_line"))
    assert tolerant.reasons["outside_text"] == 2


def test_label_studio_rotated_box_is_its_extent_clipped_to_the_image():
    # 30 % x 20 % of 640x480 at (90 %, 10 %) turned 45°: its extent reaches 111 % of the width.
    turned = rectangle(90, 10, 30, 20, "Car", rotation=45, original_width=640, original_height=480)
    result = ingest_label_studio([task(1, {"image": "a.jpg"}, [annotation(11, 1, [turned])])])
    [box] = result.judgments.row(0, named=True)["boxes"]
    assert box["x_max"] == 100.0
    assert box["x_min"] == pytest.approx(90 - 96 * 2**0.5 / 2 / 6.4)  # 96 px tall, turned
    assert 0.0 <= box["y_min"] < box["y_max"] <= 100.0
    assert result.judgments.row(0, named=True)["coordinates"] == "percent"


def test_categorical_exports_load_as_before_with_kind_categorical():
    tasks = [
        task(
            1,
            {"text": "a"},
            [annotation(1, 1, [control("sentiment", "choices", {"choices": ["pos"]})])],
        )
    ]
    result = ingest_label_studio(tasks)
    row = result.judgments.row(0, named=True)
    assert (row["judgment_id"], row["kind"], row["label"], row["control"]) == (
        "label-studio:1",
        "categorical",
        "pos",
        "sentiment",
    )


# ---------------------------------------------------------------- CSV / Parquet / JSON Lines


def ingest_table(data: bytes, format: str, **options: Any):
    return ingest_bytes(data, format=format, source_file=f"judgments.{format}", now=NOW, **options)


def test_jsonl_spans_boxes_and_numeric_with_the_kind_column_per_row():
    rows = [
        {
            "task_id": "t1",
            "annotator_id": "a",
            "kind": "spans",
            "submitted_at": CREATED,
            "spans": [{"start": 0, "end": 3, "label": "PER"}, {"start": 5, "end": 9}],
        },
        {
            "task_id": "t2",
            "annotator_id": "a",
            "kind": "boxes",
            "submitted_at": CREATED,
            "boxes": [{"x_min": 1, "y_min": 2, "x_max": 3, "y_max": 4, "label": "car"}],
        },
        {
            "task_id": "t3",
            "annotator_id": "a",
            "kind": "numeric",
            "submitted_at": CREATED,
            "value": 4,
        },
        {
            "task_id": "t4",
            "annotator_id": "a",
            "kind": "pairwise",
            "submitted_at": CREATED,
            "left": "m1",
            "right": "m2",
            "winner": "m2",
        },
        {
            "task_id": "t5",
            "annotator_id": "a",
            "kind": "spans",
            "submitted_at": CREATED,
            "spans": [{"start": 4, "end": 1}],
        },
        {"task_id": "t6", "annotator_id": "a", "kind": "ranking", "submitted_at": CREATED},
        {"task_id": "t7", "annotator_id": "a", "kind": "shapes", "submitted_at": CREATED},
    ]
    data = "\n".join(json.dumps(row) for row in rows).encode()
    result = ingest_table(data, "jsonl")
    by_task = {row["task_id"]: row for row in result.judgments.iter_rows(named=True)}
    assert by_task["t1"]["spans"] == [
        {"start": 0, "end": 3, "label": "PER"},
        {"start": 5, "end": 9, "label": None},
    ]
    assert by_task["t2"]["boxes"][0]["x_max"] == 3.0
    assert by_task["t3"]["value"] == 4.0 and by_task["t3"]["label"] is None
    assert by_task["t4"]["winner"] == "right"
    quarantined = dict(
        result.quarantine.select(
            "source_line", pl.col("reason") + ":" + pl.col("field")
        ).iter_rows()
    )
    assert quarantined == {5: "wrong_type:spans", 6: "missing_field:ranking", 7: "wrong_type:kind"}


@pytest.mark.parametrize(
    ("kind", "first", "again"),
    [
        ("spans", [{"start": 0, "end": 4, "label": "PER"}], [{"start": 0, "end": 3}]),
        (
            "boxes",
            [{"x_min": 0, "y_min": 0, "x_max": 4, "y_max": 4, "label": "car"}],
            [{"x_min": 1, "y_min": 0, "x_max": 4, "y_max": 5, "label": "car"}],
        ),
    ],
)
def test_a_judgment_made_again_is_resolved_as_the_command_line_resolves_it(kind, first, again):
    """The daily path's judgments come through ingest: among equal timestamps the later line
    wins and the earlier one is a counted `duplicate`, the rule `aggregate --kind` applies to a
    file without timestamps, so both aggregate the same judgments."""
    rows = [
        {"task_id": "t1", "annotator_id": "a", "submitted_at": CREATED, kind: first},
        {"task_id": "t1", "annotator_id": "b", "submitted_at": CREATED, kind: first},
        {"task_id": "t1", "annotator_id": "a", "submitted_at": CREATED, kind: again},
    ]
    data = "\n".join(json.dumps(row) for row in rows).encode()
    result = ingest_table(data, "jsonl", kind=kind)
    assert result.duplicates == 1 and result.rows_read == 3
    assert result.quarantine.select("source_line", "reason").rows() == [(1, "duplicate")]
    kept = result.judgments.filter(annotator_id="a")
    assert [{k: v for k, v in value.items() if v is not None} for value in kept[kind][0]] == again


def test_csv_list_kinds_are_json_cells_and_the_kind_is_inferred_from_the_columns():
    text = (
        "task_id,annotator_id,submitted_at,labels\n"
        f't1,a,{CREATED},"[""cat"", ""dog""]"\n'
        f"t1,b,{CREATED},[]\n"
        f"t2,a,{CREATED},cat\n"
    )
    result = ingest_table(text.encode(), "csv", label_set=["cat", "dog"])
    assert result.judgments.get_column("kind").unique().to_list() == ["multilabel"]
    assert result.judgments.sort("annotator_id").get_column("labels").to_list() == [
        ["cat", "dog"],
        [],
    ]
    assert result.quarantine.select("source_line", "reason", "field").rows() == [
        (4, "wrong_type", "labels")
    ]
    unknown = ingest_table(text.replace("dog", "emu").encode(), "csv", label_set=["cat", "dog"])
    assert ("unknown_label", "labels") in unknown.quarantine.select("reason", "field").rows()


def test_parquet_typed_lists_and_structs_with_the_kind_option(tmp_path):
    frame = pl.DataFrame(
        {
            "task_id": ["t1", "t1"],
            "annotator_id": ["a", "b"],
            "submitted_at": [datetime.fromisoformat("2026-05-01T10:00:00+00:00")] * 2,
            "ranking": [["x", "y", "z"], ["y", "x", "y"]],
        }
    )
    path = tmp_path / "ranks.parquet"
    frame.write_parquet(path)
    result = ingest_table(path.read_bytes(), "parquet", kind="ranking")
    assert result.judgments.get_column("ranking").to_list() == [["x", "y", "z"]]
    assert result.quarantine.select("reason", "field").rows() == [("wrong_type", "ranking")]
    spans = pl.DataFrame(
        {
            "task_id": ["t1"],
            "annotator_id": ["a"],
            "submitted_at": ["2026-05-01T10:00:00Z"],
            "spans": [[{"start": 0, "end": 2, "label": "X"}]],
        }
    )
    spans.write_parquet(path)
    loaded = ingest_table(path.read_bytes(), "parquet")
    assert loaded.judgments.row(0, named=True)["spans"] == [{"start": 0, "end": 2, "label": "X"}]
    assert loaded.judgments.row(0, named=True)["kind"] == "spans"


def _box_rows(**context: Any) -> list[dict[str, Any]]:
    box = {"label": "car", "x_min": 10.0, "y_min": 20.0, "x_max": 40.0, "y_max": 60.0}
    return [
        {
            "task_id": "t1",
            "annotator_id": annotator,
            "submitted_at": CREATED,
            "boxes": [box],
            "coordinates": "percent",
            "image_width": 640,
            "image_height": 480,
        }
        | context
        for annotator in ("a", "b")
    ]


def _table_bytes(rows: list[dict[str, Any]], format: str, tmp_path) -> bytes:
    if format == "jsonl":
        return "\n".join(json.dumps(row) for row in rows).encode()
    if format == "csv":
        frame = pl.DataFrame(rows).with_columns(
            boxes=pl.col("boxes").map_elements(
                lambda boxes: json.dumps(boxes.to_list()), return_dtype=pl.String
            )
        )
        return frame.write_csv().encode()
    path = tmp_path / "boxes.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path.read_bytes()


@pytest.mark.parametrize("format", ["jsonl", "csv", "parquet"])
def test_table_boxes_keep_their_unit_and_image_size(tmp_path, format):
    result = ingest_table(_table_bytes(_box_rows(), format, tmp_path), format)
    assert result.rows_quarantined == 0
    assert (
        result.judgments.select("coordinates", "image_width", "image_height").rows()
        == [("percent", 640.0, 480.0)] * 2
    )


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"coordinates": "inches"}, "coordinates"),
        ({"coordinates": "Percent"}, "coordinates"),
        ({"image_width": 0}, "image_width"),
        ({"image_height": -480}, "image_height"),
        ({"image_width": "wide"}, "image_width"),
    ],
)
@pytest.mark.parametrize("format", ["jsonl", "csv"])
def test_table_boxes_whose_unit_or_image_size_cannot_be_kept_are_quarantined(
    tmp_path, format, context, field
):
    rows = _box_rows()
    rows[1] |= context
    result = ingest_table(_table_bytes(rows, format, tmp_path), format)
    assert result.judgments.get_column("annotator_id").to_list() == ["a"]
    assert result.quarantine.select("reason", "field").rows() == [("wrong_type", field)]


def test_table_of_a_kind_without_its_value_column_names_the_column():
    text = f"task_id,annotator_id,submitted_at,label\nt1,a,{CREATED},x\n"
    with pytest.raises(UnreadableFileError, match=r"missing column.*'value'"):
        ingest_table(text.encode(), "csv", kind="numeric")


# ---------------------------------------------------------------- SageMaker Ground Truth


def sagemaker(records: list[dict]):
    data = "\n".join(json.dumps(record) for record in records).encode()
    return ingest_bytes(data, format="sagemaker-gt", source_file="output.manifest", now=NOW)


def test_sagemaker_bounding_box_manifest_in_pixels_with_the_class_map():
    record = {
        "source-ref": "s3://bucket/images/dog.jpg",
        "dogs": {
            "image_size": [{"width": 500, "height": 400, "depth": 3}],
            "annotations": [
                {"class_id": 0, "left": 111, "top": 134, "width": 61, "height": 128},
                {"class_id": 1, "left": 161, "top": 250, "width": 30, "height": 30},
            ],
        },
        "dogs-metadata": {
            "objects": [{"confidence": 0.8}, {"confidence": 0.9}],
            "class-map": {"0": "dog", "1": "toy"},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": "2026-05-01T22:18:13.527256",
            "job-name": "identify-dogs",
        },
    }
    result = sagemaker([record])
    row = result.judgments.row(0, named=True)
    assert row["kind"] == "boxes" and row["coordinates"] == "pixel"
    assert (row["image_width"], row["image_height"]) == (500.0, 400.0)
    assert row["boxes"] == [
        {"label": "dog", "x_min": 111.0, "y_min": 134.0, "x_max": 172.0, "y_max": 262.0},
        {"label": "toy", "x_min": 161.0, "y_min": 250.0, "x_max": 191.0, "y_max": 280.0},
    ]
    assert row["annotator_id"] == "sagemaker:identify-dogs"


def test_sagemaker_named_entity_and_multilabel_manifests():
    entities = {
        "source": "Amazon SageMaker is a cloud machine-learning platform.",
        "ner": {
            "annotations": {
                "labels": [{"label": "Product"}],
                "entities": [{"label": "Product", "startOffset": 0, "endOffset": 16}],
            }
        },
        "ner-metadata": {
            "entities": [{"confidence": 0.9}],
            "job-name": "ner-job",
            "type": "groundtruth/text-span",
            "creation-date": "2026-05-01T22:18:13.527256",
            "human-annotated": "yes",
        },
    }
    multi = {
        "source-ref": "s3://bucket/images/pets.jpg",
        "pets": [1, 0],
        "pets-metadata": {
            "job-name": "pets-job",
            "class-map": {"0": "cat", "1": "dog"},
            "confidence-map": {"0": 0.9, "1": 0.8},
            "type": "groundtruth/image-classification-multilabel",
            "creation-date": "2026-05-01T22:18:13.527256",
            "human-annotated": "yes",
        },
    }
    bad = {**entities, "ner": {"annotations": {"entities": [{"startOffset": 9, "endOffset": 2}]}}}
    result = sagemaker([entities, multi, bad])
    rows = {r["kind"]: r for r in result.judgments.iter_rows(named=True)}
    assert rows["spans"]["spans"] == [{"start": 0, "end": 16, "label": "Product"}]
    assert rows["multilabel"]["labels"] == ["dog", "cat"]
    assert result.quarantine.select("source_line", "reason", "field").rows() == [
        (3, "wrong_type", "spans")
    ]


def test_sagemaker_worker_responses_of_boxes_are_one_judgment_per_worker():
    record = {
        "source-ref": "s3://bucket/images/dog.jpg",
        "dogs": {"image_size": [{"width": 500, "height": 400, "depth": 3}], "annotations": []},
        "dogs-metadata": {
            "class-map": {"0": "dog"},
            "type": "groundtruth/object-detection",
            "creation-date": "2026-05-01T22:18:13.527256",
            "job-name": "identify-dogs",
            "worker-responses": [
                {
                    "workerId": f"private.us-east-1.{worker}",
                    "submissionTime": "2026-05-01T22:10:00.000Z",
                    "answerContent": {
                        "annotatedResult": {
                            "boundingBoxes": [
                                {
                                    "label": "dog",
                                    "left": 10 + worker,
                                    "top": 20,
                                    "width": 30,
                                    "height": 40,
                                }
                            ],
                            "inputImageProperties": {"height": 400, "width": 500},
                        }
                    },
                }
                for worker in (1, 2)
            ],
        },
    }
    result = sagemaker([record])
    assert result.judgments.height == 2
    assert result.judgments.get_column("kind").to_list() == ["boxes", "boxes"]
    assert [b[0]["x_min"] for b in result.judgments.get_column("boxes").to_list()] == [11.0, 12.0]


@pytest.mark.parametrize("size", ["abc", -5, 0, [1], True])
def test_sagemaker_image_size_that_is_not_a_positive_number_quarantines_its_row(size):
    def record(width: Any) -> dict:
        return {
            "source-ref": "s3://bucket/images/dog.jpg",
            "dogs": {
                "image_size": [{"width": width, "height": 400, "depth": 3}],
                "annotations": [{"class_id": 0, "left": 1, "top": 2, "width": 3, "height": 4}],
            },
            "dogs-metadata": {
                "class-map": {"0": "dog"},
                "type": "groundtruth/object-detection",
                "creation-date": "2026-05-01T22:18:13.527256",
                "job-name": "identify-dogs",
            },
        }

    result = sagemaker([record(size), record("500")])
    assert result.quarantine.select("source_line", "reason", "field").rows() == [
        (1, "wrong_type", "image_width")
    ]
    assert result.judgments.select("image_width", "image_height").rows() == [(500.0, 400.0)]


@pytest.mark.parametrize("size", ["abc", -5, float("inf")])
def test_sagemaker_worker_image_size_that_is_not_a_positive_number_quarantines_its_row(size):
    response = {
        "workerId": "private.us-east-1.w1",
        "submissionTime": "2026-05-01T22:10:00.000Z",
        "answerContent": {
            "annotatedResult": {
                "boundingBoxes": [{"label": "dog", "left": 1, "top": 2, "width": 3, "height": 4}],
                "inputImageProperties": {"height": 400, "width": size},
            }
        },
    }
    record = {
        "source-ref": "s3://bucket/images/dog.jpg",
        "dogs": {"annotations": []},
        "dogs-metadata": {
            "class-map": {"0": "dog"},
            "type": "groundtruth/object-detection",
            "creation-date": "2026-05-01T22:18:13.527256",
            "job-name": "identify-dogs",
            "worker-responses": [response],
        },
    }
    result = sagemaker([record])
    assert result.judgments.height == 0
    assert result.quarantine.select("reason", "field").rows() == [("wrong_type", "image_width")]


@pytest.mark.parametrize("rotation", [float("inf"), float("-inf"), float("nan")])
def test_label_studio_rotation_that_is_not_finite_quarantines_the_box(rotation):
    tasks = [
        task(
            7,
            {"image": "s3://bucket/7.jpg"},
            [
                annotation(71, 1, [rectangle(10, 20, 30, 40, "Car", rotation=rotation)]),
                annotation(72, 2, [rectangle(10, 20, 30, 40, "Car", rotation=90)]),
            ],
        )
    ]
    result = ingest_label_studio(tasks)
    assert result.judgments.get_column("judgment_id").to_list() == ["label-studio:72"]
    assert result.quarantine.select("reason", "field").rows() == [("wrong_type", "boxes")]


def test_label_studio_image_size_that_is_not_finite_is_not_read_as_the_size():
    huge = rectangle(10, 20, 30, 40, "Car", original_width=float("inf"))
    result = ingest_label_studio(
        [task(7, {"image": "s3://bucket/7.jpg"}, [annotation(71, 1, [huge])])]
    )
    row = result.judgments.row(0, named=True)
    assert (row["image_width"], row["image_height"]) == (None, None)


def test_label_studio_hypertext_spans_use_global_offsets():
    region = control(
        "ner",
        "hypertextlabels",
        {
            "start": "/p[1]/text()[1]",
            "end": "/p[1]/text()[1]",
            "startOffset": 0,
            "endOffset": 3,
            "globalOffsets": {"start": 10, "end": 13},
            "text": "Ada",
            "hypertextlabels": ["PER"],
        },
        to_name="html",
    )
    without = json.loads(json.dumps(region))
    del without["value"]["globalOffsets"]
    tasks = [
        task(4, {"html": "<p>Ada</p>"}, [annotation(41, 1, [region]), annotation(42, 2, [without])])
    ]
    result = ingest_label_studio(tasks)
    assert result.judgments.get_column("spans").to_list() == [
        [{"start": 10, "end": 13, "label": "PER"}]
    ]
    assert result.quarantine.select("reason", "field").rows() == [("wrong_type", "spans")]


def test_numeric_answers_outside_the_declared_scale_are_quarantined_naming_it():
    lines = [
        {
            "task_id": "t1",
            "annotator_id": "a",
            "kind": "numeric",
            "value": 4,
            "submitted_at": CREATED,
        },
        {
            "task_id": "t1",
            "annotator_id": "b",
            "kind": "numeric",
            "value": 1e200,
            "submitted_at": CREATED,
        },
        {
            "task_id": "t2",
            "annotator_id": "a",
            "kind": "numeric",
            "value": 2.5,
            "submitted_at": CREATED,
        },
        {
            "task_id": "t2",
            "annotator_id": "b",
            "kind": "numeric",
            "value": 0,
            "submitted_at": CREATED,
        },
        {
            "task_id": "t3",
            "annotator_id": "a",
            "kind": "numeric",
            "value": 5,
            "submitted_at": CREATED,
        },
        {
            "task_id": "t3",
            "annotator_id": "b",
            "kind": "categorical",
            "label": "keep",
            "submitted_at": CREATED,
        },
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()

    def ingest(scale: RatingScale | None):
        return ingest_bytes(
            data,
            format="jsonl",
            source_file="exports/r/jsonl/day.jsonl",
            project="r",
            now=NOW,
            scale=scale,
        )

    unchecked = ingest(None)
    assert unchecked.rows_quarantined == 0 and unchecked.judgments.height == 6
    result = ingest(RatingScale(1, 5, step=1))
    assert result.rows_read == result.rows_loaded + result.rows_quarantined == 6
    quarantine = result.quarantine.sort("source_line")
    assert quarantine.select("source_file", "source_line", "field", "reason").rows() == [
        ("exports/r/jsonl/day.jsonl", 2, "value (scale [1, 5] step 1)", "outside_scale"),
        ("exports/r/jsonl/day.jsonl", 3, "value (scale [1, 5] step 1)", "outside_scale"),
        ("exports/r/jsonl/day.jsonl", 4, "value (scale [1, 5] step 1)", "outside_scale"),
    ]
    assert "1e+200" in quarantine["raw"][0]
    assert result.reasons == {"outside_scale": 3}
    # A categorical answer in the same file is not a rating: the scale leaves it alone.
    assert sorted(result.judgments["value"].drop_nulls().to_list()) == [4.0, 5.0]
    assert result.judgments.filter(pl.col("kind") == "categorical")["label"].to_list() == ["keep"]


def test_label_studio_ratings_and_gold_outside_the_declared_scale_are_quarantined():
    tasks = [
        task(
            7,
            {"text": "x"},
            [
                annotation(71, 1, [control("quality", "rating", {"rating": 4})]),
                annotation(72, 2, [control("quality", "rating", {"rating": 11})]),
                annotation(
                    73, 3, [control("quality", "rating", {"rating": 12})], ground_truth=True
                ),
            ],
        )
    ]
    result = ingest_label_studio(tasks, scale=RatingScale(1, 10, integer=True))
    assert result.judgments["value"].to_list() == [4.0]
    assert result.gold.height == 0
    assert sorted(result.quarantine.select("table", "reason", "field").rows()) == [
        ("gold_labels", "outside_scale", "value (scale [1, 10] whole numbers)"),
        ("judgments", "outside_scale", "value (scale [1, 10] whole numbers)"),
    ]
    assert result.rows_read == result.rows_loaded + result.rows_quarantined


def test_a_pairwise_row_comparing_an_item_with_itself_is_refused_at_ingest_and_in_the_day():
    """The pairwise aggregation raises on a comparison of an item with itself: staged, one
    such row failed the day's kind aggregation for every project. Ingest quarantines it as
    the commands do, and a row staged before (or by no ingest) is set aside by the day."""
    from annotation_pipelines.quality.kinds import valid_values

    base = {"annotator_id": "a", "kind": "pairwise", "submitted_at": CREATED}
    rows = [
        {**base, "task_id": "t1", "left": "m1", "right": "m1", "winner": "left"},
        {**base, "task_id": "t2", "left": "m1", "right": "m2", "winner": "right"},
    ]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    result = ingest_bytes(data, format="jsonl", source_file="pairs.jsonl", now=NOW)
    assert result.judgments.get_column("task_id").to_list() == ["t2"]
    assert result.quarantine.select("source_line", "field", "reason").rows() == [
        (1, "right", "wrong_type")
    ]
    staged = pl.DataFrame(
        [{"left": r["left"], "right": r["right"], "winner": r["winner"]} for r in rows]
    )
    kept, refused = valid_values(staged, "pairwise")
    assert kept.get_column("right").to_list() == ["m2"]
    assert refused is not None
