import json

import polars as pl
import pytest
from pycocotools.coco import COCO

from annotation_pipelines.aggregation.boxes import aggregate_boxes
from annotation_pipelines.aggregation.spans import SCORED_SPAN
from annotation_pipelines.curation.formats_bio import to_conll, write_spans_jsonl
from annotation_pipelines.curation.formats_coco import write_coco
from tests.kinds.synthetic_geo import scenes


def test_coco_export_loads_in_pycocotools(tmp_path):
    _, judgments = scenes(20, seed=0)
    result = aggregate_boxes(judgments)
    images = pl.DataFrame({"task_id": ["t0", "t1"], "width": [640, 640], "height": [480, 480]})
    path = write_coco(result.labels, tmp_path / "coco.json", images=images)
    coco = COCO(str(path))
    n_boxes = result.labels["boxes"].list.len().sum()
    assert len(coco.getAnnIds()) == n_boxes
    assert len(coco.getImgIds()) == 20
    first = result.labels.filter(pl.col("task_id") == "t0")["boxes"][0].to_list()[0]
    image = next(i for i in coco.dataset["images"] if i["task_id"] == "t0")
    assert (image["width"], image["height"]) == (640, 480)
    annotation = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))[0]
    x, y, w, h = annotation["bbox"]
    assert (x, y, x + w, y + h) == pytest.approx(
        (first["x_min"], first["y_min"], first["x_max"], first["y_max"])
    )
    assert annotation["score"] == pytest.approx(first["confidence"])
    assert coco.loadCats(annotation["category_id"])[0]["name"] == first["label"]
    for field in ("id", "image_id", "category_id", "bbox", "area", "iscrowd"):
        assert all(field in a for a in coco.dataset["annotations"])


def _labels():
    return pl.DataFrame(
        {
            "task_id": ["a", "b"],
            "spans": [
                [
                    {"start": 0, "end": 9, "label": "PER", "confidence": 0.9},
                    {"start": 20, "end": 24, "label": None, "confidence": 0.5},
                ],
                [],
            ],
            "confidence": [0.8, 1.0],
        },
        schema={"task_id": pl.String, "spans": pl.List(SCORED_SPAN), "confidence": pl.Float64},
    )


TEXTS = pl.DataFrame(
    {"task_id": ["a", "b"], "text": ["Ada Lovel ace met Bob Paris", "nothing here"]}
)


def test_conll_bio_tags_tokens_by_their_first_character():
    # Span 0–9 covers "Ada" and "Lovel" (first chars inside); "ace" starts at 10, outside.
    # Span 20–24 starts inside "Bob" (18–21): "Bob" starts before it, so it is O; "Paris"
    # (22) starts inside it.
    assert to_conll(_labels(), TEXTS).splitlines() == [
        "-DOCSTART- O",
        "",
        "Ada B-PER",
        "Lovel I-PER",
        "ace O",
        "met O",
        "Bob O",
        "Paris B-ENTITY",
        "",
        "-DOCSTART- O",
        "",
        "nothing O",
        "here O",
        "",
    ]


def test_jsonl_keeps_offsets_and_the_covered_text(tmp_path):
    path = write_spans_jsonl(_labels(), TEXTS, tmp_path / "spans.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["spans"][0] == {
        "start": 0,
        "end": 9,
        "label": "PER",
        "confidence": 0.9,
        "text": "Ada Lovel",
    }
    assert rows[0]["text"] == "Ada Lovel ace met Bob Paris"
    assert rows[1]["spans"] == []


def _read_conll(text: str) -> tuple[list[str], list[list[str]]]:
    """(document ids, token lines split into fields) as a CoNLL reader sees the file."""
    ids, tokens = [], []
    for line in text.splitlines():
        if line.startswith("-DOCSTART-"):
            ids.append(line.split(" ", 1)[1])
        elif line:
            tokens.append(line.split())
    return ids, tokens


def test_conll_has_one_line_per_token_whatever_ids_and_labels_hold():
    """A line break in a task id or a span label wrote extra token lines (training tokens no
    text has), and a space in a label a third column whose last word readers took as the tag."""
    labels = pl.DataFrame(
        {
            "task_id": ["doc-1\nEvil B-PER", "doc 2"],
            "spans": [
                [{"start": 0, "end": 4, "label": "LOC\nInjected B-ORG", "confidence": 1.0}],
                [{"start": 0, "end": 8, "label": "New York", "confidence": 1.0}],
            ],
            "confidence": [1.0, 1.0],
        },
        schema={"task_id": pl.String, "spans": pl.List(SCORED_SPAN), "confidence": pl.Float64},
    )
    texts = pl.DataFrame(
        {"task_id": ["doc-1\nEvil B-PER", "doc 2"], "text": ["Rome is", "New York"]}
    )
    ids, tokens = _read_conll(to_conll(labels, texts))
    assert tokens == [
        ["Rome", "B-LOC_Injected_B-ORG"],
        ["is", "O"],
        ["New", "B-New_York"],
        ["York", "I-New_York"],
    ]
    # The separator names no task (documents follow spans.jsonl's order), so no id reaches it.
    assert ids == ["O", "O"]


def test_conll_refuses_two_labels_that_would_be_one_tag():
    labels = pl.DataFrame(
        {
            "task_id": ["a"],
            "spans": [
                [
                    {"start": 0, "end": 3, "label": "New York", "confidence": 1.0},
                    {"start": 4, "end": 7, "label": "New_York", "confidence": 1.0},
                ]
            ],
            "confidence": [1.0],
        },
        schema={"task_id": pl.String, "spans": pl.List(SCORED_SPAN), "confidence": pl.Float64},
    )
    texts = pl.DataFrame({"task_id": ["a"], "text": ["one two"]})
    with pytest.raises(ValueError, match="'New York' and 'New_York'"):
        to_conll(labels, texts)
