"""Trainer files as the libraries that train on them read them: the COCO files are loaded and
evaluated with pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import polars as pl
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotation_pipelines.aggregation.boxes import FUSED_BOX
from tests.curation.test_kind_snapshot import SPLITS, _labels, _tasks, build_kind_snapshot


def _boxes_snapshot():
    def payload(i):
        if i % 5 == 0:
            return json.dumps({"image": f"s3://bucket/{i}.png"})
        return json.dumps({"file_name": f"{i}.jpg", "width": 100, "height": 100})

    def label(i):
        # One unlabelled box, in one split only: its "object" category must still mean the same
        # id in every file.
        return None if i == 7 else ("dog" if i % 2 else "person")

    n = 60
    boxes = [
        [
            {
                "label": label(i),
                "x_min": 1.0 + b,
                "y_min": 2.0,
                "x_max": 11.0 + b,
                "y_max": 22.0,
                "confidence": 0.8,
            }
            for b in range(1 + i % 3)
        ]
        for i in range(n)
    ]
    labels = _labels(
        "det",
        "boxes",
        {"boxes": boxes, "coordinates": ["percent" if i % 5 == 0 else "pixel" for i in range(n)]},
        boxes=pl.List(FUSED_BOX),
    )
    return build_kind_snapshot(labels, _tasks("det", payload), project="det", kind="boxes")


def _coco(tmp_path: Path, data: bytes, name: str) -> COCO:
    path = tmp_path / name
    path.write_bytes(data)
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_per_split_coco_files_keep_the_ids_of_coco_json(tmp_path):
    snapshot = _boxes_snapshot()
    whole = _coco(tmp_path, snapshot.files["coco.json"], "coco.json").dataset
    image_of = {image["task_id"]: image for image in whole["images"]}
    annotation_of = {annotation["id"]: annotation for annotation in whole["annotations"]}
    for key in ("images", "annotations", "categories"):
        ids = [item["id"] for item in whole[key]]
        assert len(set(ids)) == len(ids) and all(isinstance(i, int) and i > 0 for i in ids)
    seen_images: list[int] = []
    seen_annotations: list[int] = []
    in_percent = 0
    for split in SPLITS:
        part = _coco(tmp_path, snapshot.files[f"{split}.coco.json"], f"{split}.coco.json")
        data = part.dataset
        assert data["images"] and {image["split"] for image in data["images"]} == {split}
        assert data["categories"] == whole["categories"]
        for image in data["images"]:
            assert image == image_of[image["task_id"]]
        for annotation in data["annotations"]:
            assert annotation == annotation_of[annotation["id"]]
        assert {a["image_id"] for a in data["annotations"]} <= set(part.getImgIds())
        seen_images += part.getImgIds()
        seen_annotations += part.getAnnIds()
        in_percent += data["info"]["images_in_percent"]
    assert sorted(seen_images) == sorted(image["id"] for image in whole["images"])
    assert sorted(seen_annotations) == sorted(annotation_of)
    assert in_percent == whole["info"]["images_in_percent"] == 12


def test_cocoeval_scores_each_split_file_against_its_own_boxes_perfectly(tmp_path):
    snapshot = _boxes_snapshot()
    for split in SPLITS:
        truth = _coco(tmp_path, snapshot.files[f"{split}.coco.json"], f"{split}.coco.json")
        detections = [
            {key: a[key] for key in ("image_id", "category_id", "bbox", "score")}
            for a in truth.dataset["annotations"]
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0), split
