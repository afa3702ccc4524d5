"""Kind snapshots as a model trainer reads them: the item beside its label, one trainer file per
split, and category ids that mean the same class in every version."""

import io
import json
from datetime import date

import polars as pl
from pycocotools.coco import COCO

from annotation_pipelines.aggregation.spans import SCORED_SPAN
from annotation_pipelines.curation.kinds import build_kind_snapshot

SPLITS = ("train", "validation", "test")
N = 60
DAY = date(2026, 11, 2)
BOX = pl.Struct(
    {
        "label": pl.String,
        "x_min": pl.Float64,
        "y_min": pl.Float64,
        "x_max": pl.Float64,
        "y_max": pl.Float64,
        "confidence": pl.Float64,
    }
)


def _tasks(project: str, payload) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": [f"{project}-{i:03d}" for i in range(N)],
            "project": project,
            "payload": [payload(i) for i in range(N)],
            "is_gold": False,
        }
    )


def _labels(project: str, kind: str, values: dict[str, list], confidence=None, **dtypes):
    return pl.DataFrame(
        {
            "task_id": [f"{project}-{i:03d}" for i in range(N)],
            "project": project,
            "kind": kind,
            "day": DAY,
            "method": "m",
            "confidence": confidence or [0.9] * N,
            **values,
        },
        schema_overrides=dtypes,
    )


def _jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines() if line]


def test_every_row_carries_the_item_that_was_labelled():
    tasks = _tasks("tags", lambda i: f"ticket {i}: the app crashes")
    labels = _labels(
        "tags", "multilabel", {"labels": [["bug"] if i % 2 else ["ux"] for i in range(N)]}
    )
    snapshot = build_kind_snapshot(labels, tasks, project="tags", kind="multilabel")
    rows = snapshot.rows.join(tasks.select("task_id", "payload"), on="task_id", suffix="_task")
    assert rows.height == N
    assert (rows["payload"] == rows["payload_task"]).all()
    data = pl.read_parquet(io.BytesIO(snapshot.files["data.parquet"]))
    assert data["payload"].to_list() == snapshot.rows["payload"].to_list()
    assert all(row["payload"].startswith("ticket ") for row in _jsonl(snapshot.files["data.jsonl"]))


def test_each_split_has_its_own_trainer_files_and_no_task_crosses_them():
    tasks = _tasks("entities", lambda i: f"Ada met Bob {i}")
    spans = [[{"start": 0, "end": 3, "label": "PER", "confidence": 0.9}] for _ in range(N)]
    labels = _labels("entities", "spans", {"spans": spans}, spans=pl.List(SCORED_SPAN))
    snapshot = build_kind_snapshot(labels, tasks, project="entities", kind="spans")
    by_split = dict(snapshot.rows.group_by("split").agg("task_id").iter_rows())
    assert set(by_split) == set(SPLITS)
    for split in SPLITS:
        frame = pl.read_parquet(io.BytesIO(snapshot.files[f"{split}.parquet"]))
        assert sorted(frame["task_id"]) == sorted(by_split[split])
        documents = _jsonl(snapshot.files[f"{split}.spans.jsonl"])
        assert sorted(d["task_id"] for d in documents) == sorted(by_split[split])
        conll = snapshot.files[f"{split}.conll.txt"].decode()
        named = [
            line.split(" ", 1)[1] for line in conll.splitlines() if line.startswith("-DOCSTART-")
        ]
        assert sorted(named) == sorted(by_split[split])
    whole = _jsonl(snapshot.files["spans.jsonl"])
    assert {d["task_id"]: d["split"] for d in whole} == dict(
        snapshot.rows.select("task_id", "split").iter_rows()
    )


def test_preference_pairs_name_their_task_and_split():
    def payload(i):
        return json.dumps({"prompt": f"p{i}", "left_text": f"a{i}", "right_text": f"b{i}"})

    tasks = _tasks("prefs", payload)
    values = {"left": ["a"] * N, "right": ["b"] * N, "winner": ["left"] * N}
    snapshot = build_kind_snapshot(
        _labels("prefs", "pairwise", values), tasks, project="prefs", kind="pairwise"
    )
    split_of = dict(snapshot.rows.select("task_id", "split").iter_rows())
    whole = _jsonl(snapshot.files["preference_pairs.jsonl"])
    assert len(whole) == N
    assert all(pair["split"] == split_of[pair["task_id"]] for pair in whole)
    for split in SPLITS:
        pairs = _jsonl(snapshot.files[f"{split}.preference_pairs.jsonl"])
        assert pairs and {pair["split"] for pair in pairs} == {split}
        assert all(pair["prompt"] == f"p{int(pair['task_id'].split('-')[1])}" for pair in pairs)


def _boxes_snapshot(car_confidence: float, tmp_path, name: str):
    def payload(i):
        return json.dumps({"file_name": f"{i}.jpg", "width": 100, "height": 100})

    tasks = _tasks("det", payload)
    labels = ["car" if i == 0 else ("dog" if i % 2 else "person") for i in range(N)]
    boxes = [
        [
            {
                "label": label,
                "x_min": 1.0,
                "y_min": 2.0,
                "x_max": 11.0,
                "y_max": 22.0,
                "confidence": 0.8,
            }
        ]
        for label in labels
    ]
    confidence = [car_confidence] + [0.9] * (N - 1)
    frame = _labels("det", "boxes", {"boxes": boxes}, confidence=confidence, boxes=pl.List(BOX))
    snapshot = build_kind_snapshot(frame, tasks, project="det", kind="boxes")
    paths = {}
    for file in ["coco.json", *(f"{split}.coco.json" for split in SPLITS)]:
        paths[file] = tmp_path / f"{name}-{file}"
        paths[file].write_bytes(snapshot.files[file])
    return snapshot, paths


def test_coco_category_ids_do_not_move_when_a_label_drops_out_of_a_version(tmp_path):
    with_car, paths = _boxes_snapshot(0.9, tmp_path, "v1")
    # The only car task falls below min_confidence: the next version has no car box.
    without_car, later = _boxes_snapshot(0.1, tmp_path, "v2")
    first, second = COCO(str(paths["coco.json"])), COCO(str(later["coco.json"]))
    names = {c["name"]: c["id"] for c in first.dataset["categories"]}
    assert {c["name"]: c["id"] for c in second.dataset["categories"]} == names
    assert with_car.stats["label_set"] == without_car.stats["label_set"] == ["car", "dog", "person"]
    assert not any(a["category_id"] == names["car"] for a in second.dataset["annotations"])
    for split in SPLITS:
        coco = COCO(str(later[f"{split}.coco.json"]))
        assert {c["name"]: c["id"] for c in coco.dataset["categories"]} == names
        assert {image["split"] for image in coco.dataset["images"]} == {split}
        image_ids = set(coco.getImgIds())
        assert all(a["image_id"] in image_ids for a in coco.dataset["annotations"])


def test_a_task_judged_on_a_held_back_day_stays_out_even_when_judged_again_later():
    # As in the categorical snapshots: a task with judgments on a day that failed its gates
    # is held back whole, not curated from the votes of its other days.
    tasks = _tasks("rate", lambda i: f"response {i}")
    first = _labels("rate", "numeric", {"value": [1.0] * N})
    later = first.head(5).with_columns(day=pl.lit(date(2026, 11, 3)), value=pl.lit(2.0))
    quality = pl.DataFrame(
        {
            "project": ["rate", "rate"],
            "day": [DAY, date(2026, 11, 3)],
            "gates_passed": [False, True],
        }
    )
    snapshot = build_kind_snapshot(
        pl.concat([first, later]), tasks, project="rate", kind="numeric", quality=quality
    )
    assert snapshot.held_back_days == [DAY.isoformat()]
    assert snapshot.rows.height == 0 and snapshot.stats["tasks_held_back"] == N
