"""Real Label Studio exports and SageMaker Ground Truth manifests, reproduced structurally.

Each fixture is our own data written in the exact structure of a real export found in a
public repository: every key, its nesting, types and representative values, as cited in the
fixture's docstring. The assertions are the contract of the issue: every supported
annotation loads as its kind with its typed value, every row read is either loaded or
quarantined with a reason (`rows_read == rows_loaded + rows_quarantined`), and a result type
we do not support is quarantined as ``unsupported_kind`` naming the type.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import polars as pl
import pytest

from annotation_pipelines.ingest import ColumnMapping, UnreadableFileError, ingest_bytes

NOW = datetime.fromisoformat("2026-06-01T00:00:00+00:00")


def ingest_ls(tasks: Any, *, indent: int | None = 2, **options: Any):
    data = json.dumps(tasks, indent=indent, ensure_ascii=False).encode()
    return ingest_bytes(
        data, format="label-studio", source_file="project-9-at-2026.json", now=NOW, **options
    )


def by_control(result) -> dict[tuple[str, str | None], dict]:
    return {
        (row["annotator_id"], row["control"]): row for row in result.judgments.iter_rows(named=True)
    }


def reasons_by_field(result) -> list[tuple[str, str]]:
    return sorted(result.quarantine.select("reason", "field").iter_rows())


def community_annotation(
    annotation_id: int,
    completed_by: Any,
    result: list[dict],
    *,
    task: int,
    project: int,
    created_at: str = "2026-03-02T10:15:00.123456Z",
    **extra: Any,
) -> dict:
    """An annotation of the Community JSON export (label-studio-converter
    tests/data/test_export_json_min/data.json and tests/data/test_converter_data/data.json)."""
    record = {
        "id": annotation_id,
        "completed_by": completed_by,
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": created_at,
        "updated_at": created_at,
        "draft_created_at": "2026-03-02T10:14:01.000001Z",
        "lead_time": 41.207,
        "prediction": {},
        "result_count": 0,
        "unique_id": f"00000000-0000-4000-8000-{annotation_id:012d}",
        "import_id": None,
        "last_action": None,
        "task": task,
        "project": project,
        "updated_by": completed_by if isinstance(completed_by, int) else None,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
    }
    record.update(extra)
    return record


def community_task(
    task_id: int, data: dict, annotations: list[dict], *, project: int, **extra: Any
) -> dict:
    """A task of the Community JSON export (same sources as `community_annotation`)."""
    record = {
        "id": task_id,
        "annotations": annotations,
        "file_upload": f"{task_id:04d}-upload.json",
        "drafts": [],
        "predictions": [],
        "data": data,
        "meta": {},
        "created_at": "2026-03-01T08:00:00.000001Z",
        "updated_at": "2026-03-02T10:15:00.500000Z",
        "inner_id": task_id,
        "total_annotations": len(annotations),
        "cancelled_annotations": sum(a.get("was_cancelled") is True for a in annotations),
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": project,
        "updated_by": 1,
        "comment_authors": [],
    }
    record.update(extra)
    return record


def rect(region: str, x: float, y: float, w: float, h: float, label: str, **extra: Any) -> dict:
    """A rectanglelabels result as exported (converter tests/data/test_converter_data/data.json:
    `original_width/height` and `image_rotation` first, `origin` last)."""
    return {
        "original_width": extra.pop("original_width", 1600),
        "original_height": extra.pop("original_height", 1200),
        "image_rotation": 0,
        "value": {
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "rotation": extra.pop("rotation", 0),
            "rectanglelabels": [label],
        },
        "id": region,
        "from_name": extra.pop("from_name", "label"),
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
        **extra,
    }


# ---------------------------------------------------------------- boxes


def test_rectangles_of_two_annotators_community_export():
    """HumanSignal/label-studio-converter tests/data/test_converter_data/data.json: two tasks,
    two annotators with two rectangles each on the first, `completed_by` an int."""
    tasks = [
        community_task(
            1,
            {"image": "/data/upload/4/leaf-1.jpg"},
            [
                community_annotation(
                    1,
                    2,
                    [
                        rect("aR1x", 12.5, 40.25, 5.0, 6.5, "rust"),
                        rect("aR2x", 60.0, 10.0, 4.25, 3.75, "healthy"),
                    ],
                    task=1,
                    project=4,
                ),
                community_annotation(
                    2, 1, [rect("bR1x", 13.0, 41.0, 4.5, 6.0, "rust")], task=1, project=4
                ),
            ],
            project=4,
        ),
        community_task(
            2,
            {"image": "/data/upload/4/leaf-2.jpg"},
            [
                community_annotation(
                    3, 1, [rect("cR1x", 0.0, 0.0, 100.0, 100.0, "healthy")], task=2, project=4
                )
            ],
            project=4,
        ),
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 3 and result.rows_quarantined == 0
    rows = {row["judgment_id"]: row for row in result.judgments.iter_rows(named=True)}
    first = rows["label-studio:1"]
    assert (first["kind"], first["control"], first["coordinates"]) == ("boxes", "label", "percent")
    assert (first["image_width"], first["image_height"]) == (1600.0, 1200.0)
    assert first["boxes"] == [
        {"label": "rust", "x_min": 12.5, "y_min": 40.25, "x_max": 17.5, "y_max": 46.75},
        {"label": "healthy", "x_min": 60.0, "y_min": 10.0, "x_max": 64.25, "y_max": 13.75},
    ]
    assert rows["label-studio:3"]["boxes"][0]["x_max"] == 100.0
    assert sorted(result.judgments.get_column("annotator_id").to_list()) == ["1", "1", "2"]


def test_enterprise_export_with_reviews_and_predictions_keeps_the_human_boxes():
    """HumanSignal/label-studio-converter tests/data/test_export_csv/csv_test.json: Enterprise
    export, `completed_by` an object, results with `score` and `origin` "prediction" /
    "prediction-changed", `reviews`, a populated `prediction` and `predictions` with other
    coordinates. Predictions are a model's, not a judgment: they never become rows."""
    person = {"id": 7, "email": "ann@example.org", "first_name": "", "last_name": ""}
    reviewer = {"id": 8, "email": "rev@example.org", "first_name": "", "last_name": ""}
    model_box = {
        "id": "m1",
        "type": "rectanglelabels",
        "score": 0.41,
        "value": {
            "x": 1.0,
            "y": 2.0,
            "width": 30.0,
            "height": 40.0,
            "rotation": 0,
            "rectanglelabels": ["Truck"],
        },
        "source": "$image",
        "to_name": "image",
        "from_name": "label",
    }
    prediction = {
        "id": 1,
        "task": 31,
        "score": 0.66,
        "result": [model_box],
        "cluster": None,
        "neighbors": None,
        "created_at": "2026-02-27T19:40:48.842071Z",
        "updated_at": "2026-02-27T19:40:48.842078Z",
        "created_ago": "4 days, 1 hour",
        "mislabeling": 0.0,
        "model_version": "model 0",
    }
    changed = {
        "id": "m1",
        "type": "rectanglelabels",
        "score": 0.41,
        "value": {
            "x": 3.5,
            "y": 2.0,
            "width": 30.0,
            "height": 40.0,
            "rotation": 0,
            "rectanglelabels": ["Truck"],
        },
        "origin": "prediction-changed",
        "to_name": "image",
        "from_name": "label",
        "image_rotation": 0,
        "original_width": 768,
        "original_height": 576,
    }
    manual = {
        **changed,
        "id": "h2",
        "origin": "manual",
        "value": {
            "x": 50.0,
            "y": 50.0,
            "width": 10.0,
            "height": 5.0,
            "rotation": 0,
            "rectanglelabels": ["Car"],
        },
    }
    del manual["score"]
    annotation = {
        "id": 70,
        "completed_by": person,
        "result": [changed, manual],
        "reviews": [
            {
                "id": 28,
                "created_by": reviewer,
                "created_at": "2026-03-02T20:38:25.027900Z",
                "accepted": False,
                "result": None,
                "annotation": 70,
                "fixed_annotation_history": None,
                "previous_annotation_history": 57,
                "last_annotation_history": None,
                "previous_annotation_history_result": None,
            }
        ],
        "last_action": "rejected",
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2026-03-01T21:19:19.131290Z",
        "updated_at": "2026-03-01T21:19:19.131302Z",
        "lead_time": 7.662,
        "prediction": prediction,
        "result_count": 0,
        "last_created_by": 8,
        "task": 31,
        "parent_prediction": 1,
        "parent_annotation": None,
    }
    task = community_task(
        31,
        {"image": "https://example.org/images/street.jpg", "text": "street scene"},
        [annotation],
        project=1,
        predictions=[{**{k: prediction[k] for k in prediction if k != "task"}, "task": 31}],
        agreement=100.0,
        total_predictions=1,
    )
    result = ingest_ls([task], indent=None)
    assert result.rows_read == 1 and result.rows_quarantined == 0
    row = result.judgments.row(0, named=True)
    assert row["annotator_id"] == "7"
    assert row["boxes"] == [
        {"label": "Truck", "x_min": 3.5, "y_min": 2.0, "x_max": 33.5, "y_max": 42.0},
        {"label": "Car", "x_min": 50.0, "y_min": 50.0, "x_max": 60.0, "y_max": 55.0},
    ]
    assert (row["image_width"], row["image_height"]) == (768.0, 576.0)


def test_polygons_small_and_many_points():
    """HumanSignal/label-studio-converter tests/data/test_export_json_min/data.json (3 points,
    `closed`, a 128 px image) and tests/data/test_converter_data/data_polygon.json (37
    points, a 640×426 image)."""
    triangle = [[40.0, 45.5], [38.25, 60.0], [55.0, 50.75]]
    ring = [
        [50 + 20 * math.cos(2 * math.pi * k / 37), 50 + 15 * math.sin(2 * math.pi * k / 37)]
        for k in range(37)
    ]

    def polygon(region: str, points: list, label: str, size: tuple[int, int], closed: bool):
        value: dict[str, Any] = {"points": points, "polygonlabels": [label]}
        if closed:
            value = {"closed": True, **value}
        return {
            "id": region,
            "type": "polygonlabels",
            "value": value,
            "origin": "manual",
            "to_name": "image",
            "from_name": "label",
            "image_rotation": 0,
            "original_width": size[0],
            "original_height": size[1],
        }

    tasks = [
        community_task(
            87,
            {"image": "/data/upload/29/kite.png"},
            [
                community_annotation(
                    22, 1, [polygon("p1", triangle, "Kite", (128, 128), True)], task=87, project=29
                )
            ],
            project=29,
        ),
        community_task(
            88,
            {"image": "/image2"},
            [
                community_annotation(
                    23, 1, [polygon("p2", ring, "Pond", (640, 426), False)], task=88, project=29
                )
            ],
            project=29,
        ),
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 2 and result.rows_quarantined == 0
    rows = {row["task_id"]: row for row in result.judgments.iter_rows(named=True)}
    assert rows["87"]["boxes"] == [
        {"label": "Kite", "x_min": 38.25, "y_min": 45.5, "x_max": 55.0, "y_max": 60.0}
    ]
    assert rows["87"]["polygons"] == [
        {"label": "Kite", "points": [{"x": x, "y": y} for x, y in triangle]}
    ]
    pond = rows["88"]
    assert len(pond["polygons"][0]["points"]) == 37
    assert pond["boxes"][0]["x_min"] == pytest.approx(min(p[0] for p in ring))
    assert pond["boxes"][0]["y_max"] == pytest.approx(max(p[1] for p in ring))
    assert (pond["image_width"], pond["image_height"]) == (640.0, 426.0)


def test_oriented_rectangles_on_non_square_images():
    """HumanSignal/label-studio-converter tests/data/test_export_yolo/data_obb.json: rectangles
    rotated by arbitrary degrees (328.33, 43.68, ...) on 597×768 images; the box is the
    rotated rectangle's extent, computed in pixels."""
    specs = [
        (10.5, 79.5, 19.0, 8.1, 328.3324),
        (16.8, 57.4, 18.2, 6.3, 43.6775),
        (48.5, 34.2, 12.8, 5.4, 357.9298),
    ]
    results = [
        rect(f"o{i}", x, y, w, h, "Moth", rotation=r, original_width=597, original_height=768)
        for i, (x, y, w, h, r) in enumerate(specs)
    ]
    tasks = [
        community_task(
            10959,
            {"image": "/image1"},
            [community_annotation(1552, 1, results, task=10959, project=7)],
            project=7,
        )
    ]
    result = ingest_ls(tasks, indent=None)
    assert result.rows_quarantined == 0
    boxes = result.judgments.row(0, named=True)["boxes"]
    for box, (x, y, w, h, r) in zip(boxes, specs, strict=True):
        theta = math.radians(r)
        corners = [(0, 0), (w * 5.97, 0), (w * 5.97, h * 7.68), (0, h * 7.68)]
        xs = [x + (dx * math.cos(theta) - dy * math.sin(theta)) / 5.97 for dx, dy in corners]
        ys = [y + (dx * math.sin(theta) + dy * math.cos(theta)) / 7.68 for dx, dy in corners]
        assert box["x_min"] == pytest.approx(min(xs)) and box["x_max"] == pytest.approx(max(xs))
        assert box["y_min"] == pytest.approx(min(ys)) and box["y_max"] == pytest.approx(max(ys))


def test_keypoints_inside_a_box_with_relations():
    """HumanSignal/label-studio-sdk tests/custom/converter/data/test_export_yolo/
    data_keypoints.json: keypoints with `parentID` of a rectangle, then five `relation`
    results (no `id`, no `from_name`). The relations are one unsupported row."""

    def keypoint(region: str, x: float, y: float, label: str) -> dict:
        return {
            "id": region,
            "type": "keypointlabels",
            "value": {"x": x, "y": y, "width": 0.2285263987391647, "keypointlabels": [label]},
            "origin": "manual",
            "to_name": "image",
            "parentID": "body01",
            "from_name": "keypoints",
            "image_rotation": 0,
            "original_width": 216,
            "original_height": 174,
        }

    body = {
        "id": "body01",
        "type": "rectanglelabels",
        "value": {
            "x": 30.0,
            "y": 8.0,
            "width": 40.0,
            "height": 50.0,
            "rotation": 0,
            "rectanglelabels": ["person"],
        },
        "origin": "manual",
        "to_name": "image",
        "from_name": "bbox",
        "image_rotation": 0,
        "original_width": 216,
        "original_height": 174,
    }
    relations = [
        {"type": "relation", "to_id": to, "from_id": frm, "direction": "right"}
        for frm, to in [
            ("body01", "k3"),
            ("body01", "body01"),
            ("k1", "body01"),
            ("k2", "body01"),
            ("k3", "body01"),
        ]
    ]
    results = [
        keypoint("k1", 50.0, 30.0, "nose"),
        keypoint("k2", 45.0, 25.0, "left_eye"),
        keypoint("k3", 55.0, 25.0, "right_eye"),
        body,
        *relations,
    ]
    person = {"id": 1, "email": "kp@example.org", "first_name": "", "last_name": ""}
    annotation = community_annotation(
        11996,
        person,
        results,
        task=10764,
        project=18,
        reviews=[],
        bulk_created=False,
        result_count=5,
    )
    tasks = [
        community_task(
            10764, {"image": "/data/upload/18/walk.jpg"}, [annotation], project=18, agreement=100.0
        )
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 3
    assert reasons_by_field(result) == [("unsupported_kind", "result.type=relation")]
    rows = by_control(result)
    points = rows[("1", "keypoints")]["boxes"]
    half = 0.2285263987391647 / 2
    assert [p["label"] for p in points] == ["nose", "left_eye", "right_eye"]
    assert points[0]["x_min"] == pytest.approx(50.0 - half)
    assert rows[("1", "bbox")]["boxes"][0]["y_max"] == 58.0


def test_repeater_per_region_taxonomy_is_not_a_task_label():
    """HumanSignal/label-studio-converter tests/data/test_export_json_min/data_repeater.json:
    a Repeater config (`labels_0`, `categories_0` on `page_0`) whose taxonomy result carries
    the rectangle's `id` and geometry: it classifies that region, so it is quarantined as a
    per-region answer and the rectangle loads."""
    geometry = {"x": 19.25, "y": 53.5, "width": 20.5, "height": 20.0, "rotation": 0}
    results = [
        {
            "id": "Rg01",
            "type": "rectanglelabels",
            "value": {**geometry, "rectanglelabels": ["Document Title"]},
            "origin": "manual",
            "to_name": "page_0",
            "from_name": "labels_0",
            "image_rotation": 0,
            "original_width": 1280,
            "original_height": 720,
        },
        {
            "id": "Rg01",
            "type": "taxonomy",
            "value": {**geometry, "taxonomy": [["Bacteria"]]},
            "origin": "manual",
            "to_name": "page_0",
            "from_name": "categories_0",
            "image_rotation": 0,
            "original_width": 1280,
            "original_height": 720,
        },
    ]
    data = {
        "images": [{"url": "https://example.org/p1.jpeg"}, {"url": "https://example.org/p2.jpeg"}]
    }
    tasks = [
        community_task(
            86, data, [community_annotation(21, 1, results, task=86, project=28)], project=28
        )
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 2
    assert reasons_by_field(result) == [("unsupported_kind", "result.type=taxonomy per region")]
    row = result.judgments.row(0, named=True)
    assert (row["control"], row["kind"], row["boxes"][0]["label"]) == (
        "labels_0",
        "boxes",
        "Document Title",
    )


def test_per_region_and_per_item_controls_of_multi_image_tasks():
    """HumanSignal/label-studio web/libs/editor/tests/integration/data/control_tags/
    per-item.ts: unlabelled `rectangle` regions with `item_index`, a per-region `rating`
    sharing a region's `id` (geometry copied into its value), and per-item `rating` /
    `number` results, one per image (`item_index` 0, 1, 2)."""
    regions = [
        {
            "id": "r_1",
            "type": "rectangle",
            "from_name": "rect",
            "to_name": "image",
            "item_index": 0,
            "value": {"x": 10, "y": 10, "width": 35, "height": 80},
        },
        {
            "id": "r_2",
            "type": "rectangle",
            "from_name": "rect",
            "to_name": "image",
            "item_index": 1,
            "value": {"x": 55, "y": 10, "width": 35, "height": 80},
        },
    ]
    per_region = {
        "id": "r_1",
        "type": "rating",
        "from_name": "quality",
        "to_name": "image",
        "item_index": 0,
        "value": {"rating": 4, "x": 10, "y": 10, "width": 35, "height": 80},
    }
    per_item = [
        {
            "id": f"n_{i}",
            "type": "number",
            "from_name": "count",
            "to_name": "image",
            "value": {"number": n},
            "item_index": i,
        }
        for i, n in enumerate([3, 0, 12])
    ]
    tasks = [
        community_task(
            5,
            {
                "images": [
                    "https://example.org/a.jpg",
                    "https://example.org/b.jpg",
                    "https://example.org/c.jpg",
                ]
            },
            [community_annotation(50, 3, [*regions, per_region, *per_item], task=5, project=2)],
            project=2,
        )
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 2 + 1 + 3
    assert reasons_by_field(result) == [("unsupported_kind", "result.type=rating per region")]
    rows = by_control(result)
    assert rows[("3", "rect[0]")]["boxes"] == [
        {"label": None, "x_min": 10.0, "y_min": 10.0, "x_max": 45.0, "y_max": 90.0}
    ]
    assert rows[("3", "rect[1]")]["boxes"][0]["x_min"] == 55.0
    assert [rows[("3", f"count[{i}]")]["value"] for i in range(3)] == [3.0, 0.0, 12.0]


# ---------------------------------------------------------------- classification, ratings, text


def test_choices_with_history_and_awkward_text_keep_the_label_exactly():
    """HumanSignal/label-studio-converter tests/data/test_export_csv/csv_test_history.json
    (annotation `history`, `draft_created_at`, `unique_id`, `last_action`) and csv_test2.json
    (a choice with quotes, newline, tabs and Cyrillic; `to_name` "$uri"; nested task data)."""
    person = {"id": 14, "email": "e2e@example.org", "first_name": "", "last_name": ""}
    awkward = 'Yes " "" \n \t \t д е ж \n'
    choice = {
        "id": "c1",
        "type": "choices",
        "value": {"choices": ["Positive"]},
        "origin": "manual",
        "to_name": "text",
        "from_name": "sentiment",
    }
    history = [
        {
            "id": 18070,
            "comment": None,
            "organization_id": 12,
            "project_id": 24,
            "annotation_id": 18047,
            "draft_id": None,
            "review_id": None,
            "task_id": 6141,
            "result": [choice],
            "action": "submitted",
            "created_at": "2026-03-15T12:09:17.000572Z",
            "created_by": 14,
            "comment_id": None,
        }
    ]
    first = community_annotation(
        18047,
        person,
        [choice],
        task=6141,
        project=24,
        reviews=[],
        history=history,
        last_action="submitted",
    )
    second = community_annotation(
        9,
        {**person, "id": 1},
        [
            {
                "id": "c2",
                "type": "choices",
                "value": {"choices": [awkward]},
                "origin": "manual",
                "to_name": "$uri",
                "from_name": "uri_selection",
            }
        ],
        task=4,
        project=24,
        reviews=[],
        last_action="submitted",
    )
    tasks = [
        community_task(
            6141, {"text": "wildfires signal a new fire age"}, [first], project=24, agreement=100
        ),
        community_task(
            4,
            {"uri": "work:1", "writers": [{"ipi": None, "name": "A B"}], "iswcs": []},
            [second],
            project=24,
            agreement=100.0,
        ),
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 2 and result.rows_quarantined == 0
    labels = dict(result.judgments.select("control", "label").iter_rows())
    assert labels == {"sentiment": "Positive", "uri_selection": awkward}
    assert set(result.judgments.get_column("kind")) == {"categorical"}


def test_scalar_controls_as_the_editor_serializes_them():
    """HumanSignal/label-studio web/libs/editor/tests/integration/data/control_tags/
    per-item.ts (perTag results: `{"rating": 4}`, `{"number": 123}`, `{"taxonomy":
    [["Choice 1"]]}`, `{"choices": [...]}`) and label-studio examples/transcribe_audio/
    completions/1.json (`textarea` with `{"text": ["..."]}`, `to_name` equal to `from_name`);
    label-studio-frontend examples/taxonomy/completions/0.json (nested taxonomy paths)."""

    def results(rating: int, number: float, text: list[str], tags: list[str]) -> list[dict]:
        return [
            {
                "id": "rating_1",
                "type": "rating",
                "from_name": "rating",
                "to_name": "image",
                "value": {"rating": rating},
            },
            {
                "id": "number_1",
                "type": "number",
                "from_name": "number",
                "to_name": "image",
                "value": {"number": number},
            },
            {
                "id": "tx_1",
                "type": "taxonomy",
                "from_name": "tax",
                "to_name": "image",
                "value": {"taxonomy": [["One"], ["Three", "Sub"]]},
            },
            {
                "id": "ch_1",
                "type": "choices",
                "from_name": "tags",
                "to_name": "image",
                "value": {"choices": tags},
            },
            {
                "from_name": "answer",
                "id": "ta_1",
                "to_name": "answer",
                "type": "textarea",
                "value": {"text": text},
            },
        ]

    tasks = [
        community_task(
            3,
            {"image": "https://example.org/3.jpg"},
            [
                community_annotation(
                    31,
                    1,
                    results(4, 123, ["a cat", "on a mat"], ["Choice 1", "Choice 3"]),
                    task=3,
                    project=6,
                ),
                community_annotation(
                    32, 2, results(2, 7.5, ["a dog"], ["Choice 2"]), task=3, project=6
                ),
            ],
            project=6,
        )
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 10 and result.rows_quarantined == 0
    rows = by_control(result)
    assert (rows[("1", "rating")]["kind"], rows[("1", "rating")]["value"]) == ("numeric", 4.0)
    assert rows[("2", "number")]["value"] == 7.5
    assert rows[("1", "tax")]["labels"] == ["One", "Three/Sub"]
    assert rows[("1", "tags")]["kind"] == "multilabel"
    assert rows[("2", "tags")]["labels"] == ["Choice 2"]
    assert rows[("1", "answer")]["text"] == "a cat\non a mat"
    assert rows[("2", "answer")]["kind"] == "text"


def test_ocr_per_region_transcriptions_are_quarantined_and_the_boxes_load():
    """The OCR template's export: a `rectangle` region, `labels` on that region (value with
    the region's geometry) and a `perRegion` `textarea` repeating the region's `id` and
    geometry, as in label-studio-converter tests/data/test_export_json_min/data_repeater.json
    and label-studio web/libs/editor/tests/integration/data/control_tags/per-item.ts."""

    def region(rid: str, x: float, text: str) -> list[dict]:
        geometry = {"x": x, "y": 5.0, "width": 10.0, "height": 4.0, "rotation": 0}
        common = {
            "id": rid,
            "origin": "manual",
            "to_name": "image",
            "image_rotation": 0,
            "original_width": 1000,
            "original_height": 800,
        }
        return [
            {**common, "type": "rectangle", "from_name": "bbox", "value": geometry},
            {
                **common,
                "type": "labels",
                "from_name": "label",
                "value": {**geometry, "labels": ["Text"]},
            },
            {
                **common,
                "type": "textarea",
                "from_name": "transcription",
                "value": {**geometry, "text": [text]},
            },
        ]

    annotation = community_annotation(
        40, 5, [*region("t1", 10.0, "TOTAL"), *region("t2", 40.0, "12.50")], task=9, project=3
    )
    result = ingest_ls([community_task(9, {"ocr": "/data/receipt.png"}, [annotation], project=3)])
    assert result.rows_read == 3
    assert reasons_by_field(result) == [("unsupported_kind", "result.type=textarea per region")]
    assert [b["label"] for b in by_control(result)[("5", "label")]["boxes"]] == ["Text", "Text"]
    assert by_control(result)[("5", "bbox")]["boxes"][1]["x_min"] == 40.0


# ---------------------------------------------------------------- spans


def test_named_entity_spans_community_export():
    """Label Studio NER results as in HumanSignal/label-studio examples/named_entity/
    completions/0.json (`labels` with `start`, `end`, `text`, `labels`), in the Community
    export envelope of label-studio-converter tests/data/test_converter_data/data.json."""
    text = "Rain fell on the Douro valley on March 3 and lifted grape prices."

    def ner(region: str, start: int, end: int, label: str) -> dict:
        return {
            "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
            "id": region,
            "from_name": "ner",
            "to_name": "text",
            "type": "labels",
            "origin": "manual",
        }

    tasks = [
        community_task(
            1,
            {"text": text},
            [
                community_annotation(
                    1,
                    1,
                    [ner("n1", 17, 29, "Location"), ner("n2", 33, 40, "Date")],
                    task=1,
                    project=2,
                ),
                community_annotation(2, 2, [ner("n3", 17, 23, "Location")], task=1, project=2),
            ],
            project=2,
        )
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 2 and result.rows_quarantined == 0
    rows = by_control(result)
    assert rows[("1", "ner")]["spans"] == [
        {"start": 17, "end": 29, "label": "Location"},
        {"start": 33, "end": 40, "label": "Date"},
    ]
    assert text[17:29] == "Douro valley"


def test_hypertext_spans_current_legacy_and_labels_on_html():
    """Hypertext regions as Label Studio writes them: `hypertextlabels` with XPath `start`/
    `end`, `startOffset`/`endOffset` and `globalOffsets` (the `test_htmltags_migration`
    fixtures of Label Studio's evaluation tests, found by code search); the legacy form whose
    labels sit under `htmllabels` (label-studio-frontend examples/phrases/completions/1.json);
    and `labels` on a HyperText object with XPaths and `globalOffsets` (label-studio-sdk
    label interface tests)."""
    current = {
        "id": "h1",
        "type": "hypertextlabels",
        "value": {
            "end": "/text()[1]",
            "text": "Great acting",
            "start": "/text()[1]",
            "endOffset": 12,
            "startOffset": 0,
            "globalOffsets": {"end": 12, "start": 0},
            "hypertextlabels": ["Title"],
        },
        "origin": "manual",
        "to_name": "text",
        "from_name": "ner",
    }
    legacy = {
        "id": "h2",
        "type": "hypertextlabels",
        "value": {
            "end": "/text()[1]",
            "text": "reat acting",
            "start": "/text()[1]",
            "endOffset": 12,
            "htmllabels": ["Title"],
            "startOffset": 1,
            "globalOffsets": {"end": 12, "start": 1},
        },
        "origin": "manual",
        "to_name": "text",
        "from_name": "ner",
    }
    on_html = {
        "id": "h3",
        "type": "labels",
        "from_name": "ner",
        "to_name": "text",
        "value": {
            "start": "/div[1]/p[1]/text()[1]",
            "end": "/div[1]/p[1]/text()[1]",
            "startOffset": 6,
            "endOffset": 12,
            "globalOffsets": {"start": 6, "end": 12},
            "labels": ["Title"],
        },
    }
    paragraphs = {
        "id": "h4",
        "from_name": "ner",
        "to_name": "text",
        "source": "$dialogue",
        "type": "hypertextlabels",
        "value": {
            "start": "2",
            "end": "4",
            "startOffset": 0,
            "endOffset": 134,
            "htmllabels": ["Stuff"],
        },
    }
    tasks = [
        community_task(
            2,
            {"text": "<p>Great acting</p>"},
            [
                community_annotation(i + 1, i + 1, [r], task=2, project=3)
                for i, r in enumerate([current, legacy, on_html, paragraphs])
            ],
            project=3,
        )
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 4
    spans = {row["annotator_id"]: row["spans"] for row in result.judgments.iter_rows(named=True)}
    assert spans == {
        "1": [{"start": 0, "end": 12, "label": "Title"}],
        "2": [{"start": 1, "end": 12, "label": "Title"}],
        "3": [{"start": 6, "end": 12, "label": "Title"}],
    }
    # Paragraph indices with no text offsets: not character spans.
    assert reasons_by_field(result) == [("wrong_type", "spans")]


# ---------------------------------------------------------------- preferences and rankings


def test_pairwise_as_the_editor_writes_it_and_as_documented():
    """HumanSignal/label-studio web/libs/editor/src/tags/control/Pairwise.js creates its
    result with `createResult({}, { selected }, self, self.name)`: `to_name` is the Pairwise
    control itself and `value` is `{"selected": "left" | "right"}`. The tag docs' form names
    both compared objects in `to_name` ("txt-1,txt-2")."""

    def pw(selected: str, to_name: str = "pw") -> list[dict]:
        return [
            {
                "id": "p1",
                "from_name": "pw",
                "to_name": to_name,
                "type": "pairwise",
                "origin": "manual",
                "value": {"selected": selected},
            }
        ]

    tasks = [
        community_task(
            11,
            {"prompt": "q", "answer1": "a", "answer2": "b"},
            [
                community_annotation(1, 1, pw("left"), task=11, project=8),
                community_annotation(2, 2, pw("right"), task=11, project=8),
            ],
            project=8,
        ),
        community_task(
            12,
            {"text1": "x", "text2": "y"},
            [community_annotation(3, 1, pw("right", "txt-1,txt-2"), task=12, project=8)],
            project=8,
        ),
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 3 and result.rows_quarantined == 0
    rows = [
        (r["task_id"], r["annotator_id"], r["left"], r["right"], r["winner"])
        for r in result.judgments.sort("judgment_id").iter_rows(named=True)
    ]
    assert rows == [
        ("11", "1", "11:left", "11:right", "left"),
        ("11", "2", "11:left", "11:right", "right"),
        ("12", "1", "12:txt-1", "12:txt-2", "right"),
    ]
    assert set(result.judgments.get_column("kind")) == {"pairwise"}


def test_ranker_rankings_and_buckets():
    """HumanSignal/label-studio web/libs/editor/src/tags/control/Ranker.jsx: a plain ranker
    saves `{"ranker": {"<tag name>": [ids in order]}}`; with Buckets it saves
    `{"ranker": {"<bucket>": [ids], ...}}` (plus `_` for unsorted items); docs/source/tags/
    ranker.md (older) shows `{"ranker": [ids]}`. Buckets group, they do not rank."""

    def ranker(value: Any) -> list[dict]:
        return [
            {
                "id": "k1",
                "from_name": "rank",
                "to_name": "results",
                "type": "ranker",
                "origin": "manual",
                "value": {"ranker": value},
            }
        ]

    items = {
        "items": [
            {"id": "mdn", "title": "t", "body": "b"},
            {"id": "wiki", "title": "t", "body": "b"},
            {"id": "blog", "title": "t", "body": "b"},
        ]
    }
    annotations = [
        community_annotation(1, 1, ranker({"rank": ["mdn", "wiki", "blog"]}), task=1, project=5),
        community_annotation(2, 2, ranker(["wiki", "mdn", "blog"]), task=1, project=5),
        community_annotation(3, 3, ranker({"best": ["mdn"], "ads": ["blog"]}), task=1, project=5),
        community_annotation(
            4, 4, ranker({"_": ["wiki"], "best": ["mdn", "blog"]}), task=1, project=5
        ),
        community_annotation(
            5, 5, ranker({"relevant": ["mdn", "wiki", "blog"]}), task=1, project=5
        ),
    ]
    result = ingest_ls([community_task(1, items, annotations, project=5)])
    assert result.rows_read == 5
    rankings = {r["annotator_id"]: r["ranking"] for r in result.judgments.iter_rows(named=True)}
    assert rankings == {"1": ["mdn", "wiki", "blog"], "2": ["wiki", "mdn", "blog"]}
    assert reasons_by_field(result) == [("unsupported_kind", "result.type=ranker buckets")] * 3


# ---------------------------------------------------------------- unsupported and envelopes


def test_chat_and_other_unsupported_types_are_unsupported_kind_with_the_type():
    """label-studio-sdk tests/custom/converter/data/test_export_json_min/chat_data.json: a
    chat annotation of four `chatmessage` results (no `was_cancelled`/`ground_truth` keys);
    label-studio-frontend examples: video_bboxes (`videobbox` sequences), image_segmentation
    (`brushlabels` RLE), image_ellipses (`ellipselabels`, next to a `choices` that loads)."""
    person = {"id": 22798, "email": "chat@example.org", "first_name": "", "last_name": ""}
    chat = [
        {
            "id": f"m{i}",
            "type": "chatmessage",
            "value": {
                "chatmessage": {
                    "role": role,
                    "content": content,
                    "createdAt": 1761626717856 + i,
                    **({"tool_calls": None} if role == "assistant" else {}),
                }
            },
            "origin": "manual",
            "to_name": "chat",
            "from_name": "chat",
        }
        for i, (role, content) in enumerate(
            [("user", "hi"), ("assistant", "Hello!"), ("user", "help me"), ("assistant", "Sure.")]
        )
    ]
    chat_annotation = {
        "id": 76858371,
        "completed_by": person,
        "result": chat,
        "created_at": "2026-03-28T05:34:18.522508Z",
        "updated_at": "2026-03-28T05:34:18.522521Z",
        "lead_time": 912.131,
    }
    video = {
        "value": {
            "sequence": [
                {
                    "frame": 1,
                    "enabled": True,
                    "x": 38.2,
                    "y": 38.8,
                    "width": 41.3,
                    "height": 22.2,
                    "rotation": 0,
                },
                {
                    "frame": 5,
                    "enabled": False,
                    "x": 40.2,
                    "y": 49.8,
                    "width": 41.3,
                    "height": 22.2,
                    "rotation": 0,
                },
            ]
        },
        "id": "v1",
        "from_name": "box",
        "to_name": "video",
        "type": "videobbox",
        "origin": "manual",
    }
    brush = {
        "id": "b1",
        "from_name": "tag",
        "to_name": "img",
        "source": "$image",
        "type": "brushlabels",
        "value": {"format": "rle", "brushlabels": ["Planet"], "rle": [1, 127, 109, 144, 57]},
    }
    ellipse = {
        "from_name": "tag2",
        "id": "e1",
        "source": "$image",
        "to_name": "img",
        "type": "ellipselabels",
        "value": {
            "x": 50.4,
            "y": 50.7,
            "ellipselabels": ["Planet"],
            "rotation": 0,
            "radiusY": 10.6,
            "radiusX": 13.3,
        },
    }
    scene = {
        "from_name": "choice",
        "id": "c1",
        "to_name": "img",
        "type": "choices",
        "value": {"choices": ["Space"]},
    }
    tasks = [
        {
            "id": 226650350,
            "data": {"scenario_prompt": "check in", "chat": []},
            "annotations": [chat_annotation],
        },
        community_task(
            2,
            {"image": "/images/astro.jpg"},
            [
                community_annotation(3, 1, [video], task=2, project=1),
                community_annotation(4, 2, [brush, ellipse, scene], task=2, project=1),
            ],
            project=1,
        ),
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 1 + 1 + 3
    assert reasons_by_field(result) == [
        ("unsupported_kind", "result.type=brushlabels"),
        ("unsupported_kind", "result.type=chatmessage"),
        ("unsupported_kind", "result.type=ellipselabels"),
        ("unsupported_kind", "result.type=videobbox"),
    ]
    assert "missing_field" not in result.reasons
    assert result.judgments.select("control", "label").rows() == [("choice", "Space")]


def test_cancelled_annotations_drafts_and_unannotated_tasks():
    """Community export with a skipped annotation (`was_cancelled: true`, empty `result`, as
    counted by the task's `cancelled_annotations`), a draft (`drafts` are unsubmitted work)
    and a task without annotations (label-studio-sdk tests/custom/converter/data/
    test_export_csv/csv_test_colliding_keys_mixed.json). Only submissions are rows."""
    choice = [
        {
            "id": "c",
            "type": "choices",
            "value": {"choices": ["spam"]},
            "origin": "manual",
            "to_name": "text",
            "from_name": "label",
        }
    ]
    draft = {
        "id": 9,
        "user": "d@example.org",
        "created_username": "d@example.org, 4",
        "created_ago": "0 minutes",
        "result": choice,
        "lead_time": 3.1,
        "was_postponed": False,
        "import_id": None,
        "created_at": "2026-03-02T10:00:00Z",
        "updated_at": "2026-03-02T10:00:00Z",
        "task": 1,
        "annotation": None,
    }
    tasks = [
        community_task(
            1,
            {"text": "win money"},
            [
                community_annotation(1, 1, choice, task=1, project=2),
                community_annotation(2, 2, [], task=1, project=2, was_cancelled=True),
            ],
            project=2,
            drafts=[draft],
        ),
        {"id": 2, "annotations": [], "data": {"text": "Unannotated task"}},
    ]
    result = ingest_ls(tasks)
    assert result.rows_read == 2
    assert result.reasons == {"cancelled": 1}
    assert result.judgments.select("annotator_id", "label").rows() == [("1", "spam")]
    assert sorted(result.tasks.get_column("task_id").to_list()) == ["1", "2"]


def test_pre_1_0_completions_export_is_read_not_ignored():
    """Label Studio before 1.0 kept annotations under `completions` (HumanSignal/label-studio
    examples/named_entity/completions/0.json, examples/image_keypoints/completions/0.json,
    label-studio-frontend examples/timeseries/completions/1.json; a skipped one has
    `skipped: true`, as label-studio-converter's reader handles). Those example completions
    carry no annotator or time: quarantined for that, never silently dropped."""
    tasks = [
        {
            "completions": [
                {
                    "result": [
                        {
                            "from_name": "ner",
                            "id": "q1",
                            "source": "$text",
                            "to_name": "text",
                            "type": "labels",
                            "value": {
                                "end": 9,
                                "labels": ["Date"],
                                "start": 0,
                                "text": "March 3rd",
                            },
                        }
                    ]
                }
            ],
            "data": {"text": "March 3rd was wet."},
            "id": 0,
            "task_path": "../examples/ner/tasks.json",
        },
        {
            "completions": [{"id": "1001", "result": [], "skipped": True}],
            "data": {"url": "https://example.org/a.mp3"},
            "id": 1,
            "task_path": "../examples/audio/tasks.json",
        },
        {
            "completions": [
                {
                    "completed_by": 3,
                    "created_at": "2026-01-05T10:00:00Z",
                    "lead_time": 2.0,
                    "id": 1002,
                    "result": [
                        {
                            "id": "kp",
                            "from_name": "tag",
                            "to_name": "img",
                            "source": "$image",
                            "type": "keypointlabels",
                            "value": {
                                "x": 49.6,
                                "y": 52.3,
                                "width": 0.6666666666666666,
                                "keypointlabels": ["Hello"],
                            },
                        }
                    ],
                }
            ],
            "data": {"image": "https://example.org/moon.jpg"},
            "id": 2,
        },
    ]
    for indent in (2, None):
        result = ingest_ls(tasks, indent=indent)
        assert result.rows_read == 3
        assert result.reasons == {"cancelled": 1, "missing_annotator": 1}
        row = result.judgments.row(0, named=True)
        assert (row["kind"], row["boxes"][0]["label"]) == ("boxes", "Hello")


def test_json_min_export_is_refused_with_the_reason_not_read_as_empty():
    """label-studio-converter `convert_to_json_min` (label_studio_converter/converter.py;
    tests/test_export_json_min.py): one flat object per annotation with the task data, `id`,
    each control's prettified value, `annotator`, `annotation_id`, `created_at`,
    `updated_at`, `lead_time`. The result types are gone, so it cannot be read faithfully."""
    records = [
        {
            "image": "/data/upload/29/kite.png",
            "id": 87,
            "label": [
                {
                    "points": [[1, 2], [3, 4], [5, 1]],
                    "polygonlabels": ["Kite"],
                    "closed": True,
                    "original_width": 128,
                    "original_height": 128,
                }
            ],
            "sentiment": "Positive",
            "annotator": 1,
            "annotation_id": 22,
            "created_at": "2026-01-30T02:40:43.893565Z",
            "updated_at": "2026-01-30T02:40:43.893578Z",
            "lead_time": 8.65,
        }
    ]
    for indent in (2, None):
        with pytest.raises(UnreadableFileError, match="JSON-MIN"):
            ingest_ls(records, indent=indent)


def test_csv_export_loads_with_a_column_mapping():
    """label-studio-converter tests/data/test_export_csv/csv_test2_result.csv and
    `convert_to_csv`: the task data columns, `id`, one column per control (a single choice as
    text), `annotator` (an email), `annotation_id`, `created_at`, `updated_at`,
    `lead_time`, `agreement`; tab-separated with every header quoted."""
    header = [
        "_row_id",
        "agreement",
        "annotation_id",
        "annotator",
        "created_at",
        "id",
        "lead_time",
        "sentiment",
        "text",
        "updated_at",
    ]
    lines = [
        "\t".join(f'"{h}"' for h in header),
        '"r1"\t100.0\t9\t"a@example.org"\t"2026-03-04T18:50:53.017134Z"\t4\t10.744\t"Positive"\t"good"\t"2026-03-04T18:50:53.017151Z"',
        '"r1"\t100.0\t10\t"b@example.org"\t"2026-03-04T18:51:00.000001Z"\t4\t3.5\t"Negative"\t"good"\t"2026-03-04T18:51:00.000002Z"',
    ]
    mapping = ColumnMapping(
        task_id="id",
        annotator_id="annotator",
        label="sentiment",
        submitted_at="created_at",
        duration_s="lead_time",
        judgment_id="annotation_id",
    )
    result = ingest_bytes(
        "\n".join(lines).encode(),
        format="tsv",
        source_file="project-9.tsv",
        now=NOW,
        mapping=mapping,
    )
    assert result.rows_read == 2 and result.rows_quarantined == 0
    assert result.judgments.select("task_id", "annotator_id", "label").rows() == [
        ("4", "a@example.org", "Positive"),
        ("4", "b@example.org", "Negative"),
    ]


# ---------------------------------------------------------------- SageMaker Ground Truth


def sagemaker(lines: list[dict]):
    data = "\n".join(json.dumps(line, separators=(",", ":")) for line in lines).encode()
    return ingest_bytes(data, format="sagemaker-gt", source_file="output.manifest", now=NOW)


def test_sagemaker_bounding_boxes_including_an_image_with_none():
    """t04glovern/aws-ground-truth-cat-labels output.manifest: `groundtruth/object-detection`,
    `job-name` "labeling-job/<attr>", an image with no objects (`annotations: []`,
    `class-map: {}`, `objects: []`) and images with one or two boxes. An empty image is a
    judgment (no objects), not a missing value."""

    def line(number: int, boxes: list[dict]) -> dict:
        return {
            "source-ref": f"s3://bucket/input-images/{number:04d}.jpg",
            "dog-boxes": {
                "annotations": boxes,
                "image_size": [{"width": 640, "depth": 3, "height": 480}],
            },
            "dog-boxes-metadata": {
                "job-name": "labeling-job/dog-boxes",
                "class-map": {"0": "Dog"} if boxes else {},
                "human-annotated": "yes",
                "objects": [{"confidence": 0.09} for _ in boxes],
                "creation-date": "2026-01-29T13:29:11.798957",
                "type": "groundtruth/object-detection",
            },
        }

    result = sagemaker(
        [
            line(1, []),
            line(2, [{"class_id": 0, "width": 164, "top": 165, "height": 157, "left": 237}]),
            line(
                3,
                [
                    {"class_id": 0, "width": 284, "top": 162, "height": 205, "left": 239},
                    {"class_id": 0, "width": 166, "top": 107, "height": 124, "left": 221},
                ],
            ),
        ]
    )
    assert result.rows_read == 3 and result.rows_quarantined == 0
    boxes = dict(result.judgments.select("task_id", "boxes").iter_rows())
    assert boxes["s3://bucket/input-images/0001.jpg"] == []
    assert boxes["s3://bucket/input-images/0002.jpg"] == [
        {"label": "Dog", "x_min": 237.0, "y_min": 165.0, "x_max": 401.0, "y_max": 322.0}
    ]
    assert len(boxes["s3://bucket/input-images/0003.jpg"]) == 2
    assert set(result.judgments.get_column("coordinates")) == {"pixel"}


def test_sagemaker_named_entities_and_multilabel():
    """aws-samples/amazon-comprehend-examples comprehend_groundtruth_integration README (a
    `groundtruth/text-span` output.manifest: `source`, entities with `startOffset`/
    `endOffset`/`label`, `labels`, per-entity `confidence`); awsdocs/amazon-sagemaker-
    developer-guide doc_source/sms-data-output.md (multi-label: class ids with `class-map`
    and `confidence-map`, job name "labeling-job/<attr>")."""
    ner = {
        "source": "Ana was born on May 2 1990 and lived in Porto.",
        "people": {
            "annotations": {
                "entities": [
                    {"endOffset": 3, "startOffset": 0, "label": "Person"},
                    {"endOffset": 26, "startOffset": 16, "label": "Date"},
                    {"endOffset": 46, "startOffset": 41, "label": "Location"},
                ],
                "labels": [{"label": "Date"}, {"label": "Location"}, {"label": "Person"}],
            }
        },
        "people-metadata": {
            "entities": [{"confidence": 0.08}, {"confidence": 0.08}, {"confidence": 0.09}],
            "job-name": "labeling-job/people",
            "type": "groundtruth/text-span",
            "creation-date": "2026-04-17T23:27:41.344393",
            "human-annotated": "yes",
        },
    }
    multilabel = {
        "source-ref": "s3://bucket/example_image.jpg",
        "scene": [6, 0],
        "scene-metadata": {
            "job-name": "labeling-job/scene",
            "confidence-map": {"6": 0.0, "0": 0.0},
            "class-map": {"6": "clouds", "0": "canyon"},
            "type": "groundtruth/image-classification-multilabel",
            "human-annotated": "yes",
            "creation-date": "2026-02-27T21:31:32.051349",
        },
    }
    result = sagemaker([ner, multilabel])
    assert result.rows_read == 2 and result.rows_quarantined == 0
    rows = {r["kind"]: r for r in result.judgments.iter_rows(named=True)}
    assert rows["spans"]["spans"] == [
        {"start": 0, "end": 3, "label": "Person"},
        {"start": 16, "end": 26, "label": "Date"},
        {"start": 41, "end": 46, "label": "Location"},
    ]
    assert rows["multilabel"]["labels"] == ["clouds", "canyon"]
    assert rows["multilabel"]["annotator_id"] == "sagemaker:labeling-job/scene"


def test_sagemaker_custom_workflow_is_unsupported_kind_naming_the_type():
    """aws-samples/aws-legal-entity-extraction output.manifest: a `groundtruth/custom` job
    whose label is only an `annotation-ref` to an S3 file."""
    line = {
        "source-ref": "s3://bucket/source/Letter 36.pdf",
        "page": "1",
        "metadata": {"pages": "1", "use-textract-only": False, "labels": ["Law Firm", "Payout"]},
        "annotator-metadata": {"Info": "Annotate Required Entities"},
        "legal-job": {"annotation-ref": "s3://bucket/annotations/Letter 36-1-ann.json"},
        "legal-job-metadata": {
            "type": "groundtruth/custom",
            "job-name": "legal-job",
            "human-annotated": "yes",
            "creation-date": "2026-01-04T17:49:31.536000",
        },
    }
    result = sagemaker([line])
    assert result.rows_read == 1
    assert reasons_by_field(result) == [("unsupported_kind", "type=groundtruth/custom")]


def test_every_fixture_reconciles():
    """The reconciliation holds for every result above by construction (IngestResult checks
    it); this guards the quarantine table's typed columns on a mixed export."""
    result = ingest_ls(
        [
            community_task(
                1,
                {"text": "t"},
                [
                    community_annotation(
                        1,
                        1,
                        [
                            {
                                "id": "x",
                                "type": "paragraphlabels",
                                "from_name": "p",
                                "to_name": "d",
                                "value": {
                                    "start": "0",
                                    "end": "1",
                                    "startOffset": 0,
                                    "endOffset": 4,
                                    "text": "Hi t",
                                    "paragraphlabels": ["Greeting"],
                                },
                            },
                            {
                                "id": "y",
                                "type": "timeserieslabels",
                                "from_name": "ts",
                                "to_name": "s",
                                "value": {
                                    "start": 1,
                                    "end": 9,
                                    "instant": False,
                                    "timeserieslabels": ["Run"],
                                },
                            },
                        ],
                        task=1,
                        project=1,
                    )
                ],
                project=1,
            )
        ]
    )
    assert result.rows_read == result.rows_loaded + result.rows_quarantined == 2
    assert reasons_by_field(result) == [
        ("unsupported_kind", "result.type=paragraphlabels"),
        ("unsupported_kind", "result.type=timeserieslabels"),
    ]
    assert result.quarantine.schema["raw"] == pl.String


def test_one_task_per_file_folders_are_read(tmp_path):
    """One task object per file: the `completions/` folder of Label Studio before 1.0
    (HumanSignal/label-studio examples/transcribe_audio/completions/1.json: `completions`,
    `data`, `id`, `task_path`; a `textarea` whose `to_name` is itself) and cloud-storage
    targets, which write one `<task id>.json` per task (label-studio docs/source/guide/
    export.md), here a 1.x task object."""
    old = {
        "completions": [
            {
                "result": [
                    {
                        "from_name": "answer",
                        "id": "oM1",
                        "to_name": "answer",
                        "type": "textarea",
                        "value": {"text": ["Maria"]},
                    }
                ]
            }
        ],
        "data": {"url": "https://example.org/game.wav"},
        "id": 1,
        "task_path": "../examples/transcribe_audio/tasks.json",
    }
    current = community_task(
        2,
        {"url": "https://example.org/song.wav"},
        [
            community_annotation(
                5,
                3,
                [
                    {
                        "from_name": "answer",
                        "id": "oM2",
                        "to_name": "answer",
                        "type": "textarea",
                        "value": {"text": ["Mario"]},
                        "origin": "manual",
                    }
                ],
                task=2,
                project=1,
            )
        ],
        project=1,
    )
    (tmp_path / "1.json").write_text(json.dumps(old, indent=4))
    (tmp_path / "2.json").write_text(json.dumps(current))
    from annotation_pipelines.ingest import ingest_path

    result = ingest_path(tmp_path, format="label-studio", now=NOW)
    assert result.rows_read == 2
    assert result.reasons == {"missing_annotator": 1}
    assert result.judgments.select("task_id", "kind", "text").rows() == [("2", "text", "Mario")]
    not_a_task = json.dumps({"items": [1, 2]}).encode()
    with pytest.raises(UnreadableFileError, match="JSON array"):
        ingest_bytes(not_a_task, format="label-studio", source_file="x.json", now=NOW)


def test_tolerant_reader_agrees_with_the_native_reader_on_real_shapes():
    """A malformed task sends its chunk down the task-by-task reader: the real shapes above
    (per-item results, editor pairwise, completions, relations) load the same way."""
    pairwise = [
        {
            "id": "p1",
            "from_name": "pw",
            "to_name": "pw",
            "type": "pairwise",
            "value": {"selected": "right"},
        }
    ]
    per_item = [
        {
            "id": f"n_{i}",
            "type": "number",
            "from_name": "count",
            "to_name": "image",
            "value": {"number": i},
            "item_index": i,
        }
        for i in range(2)
    ]
    relation = [{"type": "relation", "to_id": "n_0", "from_id": "n_1", "direction": "right"}]
    tasks = [
        community_task(
            1, {"t": "x"}, [community_annotation(1, 1, pairwise, task=1, project=1)], project=1
        ),
        community_task(
            2,
            {"t": "y"},
            [community_annotation(2, 1, per_item + relation, task=2, project=1)],
            project=1,
        ),
        {
            "id": 3,
            "data": {},
            "completions": [
                {
                    "completed_by": 2,
                    "created_at": "2026-01-02T00:00:00Z",
                    "id": 9,
                    "result": pairwise,
                }
            ],
        },
    ]
    native = ingest_ls(tasks)
    text = json.dumps(tasks, indent=2)
    broken = text[:-2] + ',\n  {"id": 4, "annotations": [1,]}\n]'
    tolerant = ingest_bytes(broken.encode(), format="label-studio", source_file="p.json", now=NOW)
    assert tolerant.reasons == {**native.reasons, "malformed_json": 1}
    columns = ["judgment_id", "control", "kind", "value", "left", "right", "winner"]
    assert (
        tolerant.judgments.select(columns)
        .sort("judgment_id")
        .equals(native.judgments.select(columns).sort("judgment_id"))
    )
    assert native.judgments.height == 4


def test_span_offsets_are_code_points_as_python_indexes_text():
    """HumanSignal/label-studio web/libs/editor/tests/integration/e2e/ner/emoji.cy.ts (data in
    tests/integration/data/ner/emoji.ts): on Text, `start`/`end` count code points, so an
    emoji before the span is one character; on HyperText `globalOffsets` count code points
    while `startOffset`/`endOffset` count UTF-16 units within the node (13/17 for 23/27)."""
    text = "🐱 Warning: This is a test text"
    on_text = {
        "id": "e1",
        "type": "labels",
        "from_name": "tag",
        "to_name": "text",
        "origin": "manual",
        "value": {"start": 21, "end": 25, "text": "test", "labels": ["region"]},
    }
    on_html = {
        "id": "e2",
        "type": "labels",
        "from_name": "tag",
        "to_name": "text",
        "origin": "manual",
        "value": {
            "start": "/article[1]/p[1]/text()[1]",
            "end": "/article[1]/p[1]/text()[1]",
            "text": "test",
            "globalOffsets": {"start": 23, "end": 27},
            "startOffset": 13,
            "endOffset": 17,
            "labels": ["region"],
        },
    }
    tasks = [
        community_task(
            1, {"text": text}, [community_annotation(1, 1, [on_text], task=1, project=1)], project=1
        ),
        community_task(
            2,
            {"text": "<article><h2>🐱 Warning:</h2> <p>🐱 This is a test text</p></article>"},
            [community_annotation(2, 1, [on_html], task=2, project=1)],
            project=1,
        ),
    ]
    result = ingest_ls(tasks)
    spans = dict(result.judgments.select("task_id", "spans").iter_rows())
    assert spans["1"] == [{"start": 21, "end": 25, "label": "region"}]
    assert text[21:25] == "test"
    assert spans["2"] == [{"start": 23, "end": 27, "label": "region"}]
    assert "🐱 Warning: 🐱 This is a test text"[23:27] == "test"
