"""Trainer files as the libraries that train on them read them.

`conll.txt` is read back here the way three families of readers read CoNLL-2003-style column
files (their rules are restated below, from their sources), and the COCO files are loaded and
evaluated with pycocotools: a file a reader splits, merges or mislabels is a broken file
whatever our own parser says.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
from pathlib import Path

import polars as pl
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotation_pipelines.aggregation.boxes import FUSED_BOX
from annotation_pipelines.aggregation.spans import SCORED_SPAN
from annotation_pipelines.curation.formats_bio import conll_export, to_conll
from annotation_pipelines.curation.formats_coco import to_coco
from annotation_pipelines.curation.kinds import _coco_images, _coco_json, kind_card
from tests.curation.test_kind_snapshot import SPLITS, _jsonl, _labels, _tasks, build_kind_snapshot

Document = tuple[list[str], list[str]]


def _read_like_transformers(path: Path) -> list[Document]:
    """transformers' token-classification examples (`read_examples_from_file`) and the `datasets`
    conll2003 script: a line starting with `-DOCSTART-`, or empty, ends a sequence; any other
    line is split on single spaces, the token first and the tag last."""
    documents: list[Document] = []
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.startswith("-DOCSTART-") or line == "" or line == "\n":
                if tokens:
                    documents.append((tokens, tags))
                    tokens, tags = [], []
            else:
                fields = line.split(" ")
                tokens.append(fields[0])
                tags.append(fields[-1].replace("\n", ""))
    if tokens:
        documents.append((tokens, tags))
    return documents


def _read_like_allennlp(path: Path) -> list[Document]:
    """AllenNLP's `Conll2003DatasetReader`: `_is_divider` is a blank line or a line whose first
    whitespace-separated field is `-DOCSTART-`; each other line's fields are its columns."""

    def is_divider(line: str) -> bool:
        return line.strip() == "" or line.split()[0] == "-DOCSTART-"

    documents: list[Document] = []
    with open(path, encoding="utf-8") as file:
        for divider, lines in itertools.groupby(file, is_divider):
            if not divider:
                fields = [line.strip().split() for line in lines]
                assert all(len(row) == 2 for row in fields), fields
                documents.append(([row[0] for row in fields], [row[1] for row in fields]))
    return documents


def _read_like_flair(path: Path) -> tuple[list[Document], list[Document]]:
    """flair's `ColumnCorpus` (column_format {0: text, 1: ner}, document_separator_token
    `-DOCSTART-`, comment_symbol None): sentences end at whitespace-only lines, columns are split
    on `\\s+`, and a sentence whose text is `-DOCSTART-` is marked as a document boundary but
    stays in the corpus with its tags. Returns (boundary sentences, other sentences)."""
    boundaries: list[Document] = []
    sentences: list[Document] = []
    lines: list[list[str]] = []
    with open(path, encoding="utf-8") as file:
        for line in [*file, "\n"]:
            if not line.isspace():
                lines.append(re.split(r"\s+", line.rstrip()))
                continue
            if lines:
                sentence = ([row[0] for row in lines], [row[1] for row in lines])
                (boundaries if sentence[0] == ["-DOCSTART-"] else sentences).append(sentence)
                lines = []
    return boundaries, sentences


READERS = {"transformers": _read_like_transformers, "allennlp": _read_like_allennlp}


def _spans(rows: list[tuple[str, list[tuple[int, int, str | None, float]]]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": [task_id for task_id, _ in rows],
            "spans": [
                [
                    {"start": s, "end": e, "label": label, "confidence": confidence}
                    for s, e, label, confidence in spans
                ]
                for _, spans in rows
            ],
        },
        schema={"task_id": pl.String, "spans": pl.List(SCORED_SPAN)},
    )


def _texts(texts: dict[str, str]) -> pl.DataFrame:
    return pl.DataFrame({"task_id": list(texts), "text": list(texts.values())})


# Tokens a CoNLL-2003 reader takes for a document break, and whitespace of every kind Python,
# and so these readers, split on (tab, no-break space, line and file separators, CR LF).
AWKWARD = {
    "a": "see -DOCSTART- here",
    "b": "-DOCSTART-",
    "c": "-DOCSTART-x y",
    "d": "tabs\tand\u00a0nbsp\u2028line\x1cfs\r\ncrlf  end",
}
AWKWARD_SPANS = [
    ("a", [(4, 14, "MISC", 0.9)]),
    ("b", [(0, 10, "MISC", 0.9)]),
    ("c", []),
    ("d", [(5, 8, "X", 0.9), (9, 13, "X", 0.9)]),
]
AWKWARD_DOCUMENTS = [
    (["see", "_DOCSTART-", "here"], ["O", "B-MISC", "O"]),
    (["_DOCSTART-"], ["B-MISC"]),
    (["_DOCSTART-x", "y"], ["O", "O"]),
    (["tabs", "and", "nbsp", "line", "fs", "crlf", "end"], ["O", "B-X", "B-X", "O", "O", "O", "O"]),
]


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_reads_one_document_per_task_whatever_its_tokens(tmp_path, reader):
    path = tmp_path / "conll.txt"
    path.write_text(to_conll(_spans(AWKWARD_SPANS), _texts(AWKWARD)), encoding="utf-8")
    assert READERS[reader](path) == AWKWARD_DOCUMENTS


def test_flair_sees_document_boundaries_tagged_o_and_the_documents_whole(tmp_path):
    path = tmp_path / "conll.txt"
    path.write_text(to_conll(_spans(AWKWARD_SPANS), _texts(AWKWARD)), encoding="utf-8")
    boundaries, sentences = _read_like_flair(path)
    # A separator whose tag column is not O becomes a labelled span in flair's corpus.
    assert boundaries == [(["-DOCSTART-"], ["O"])] * len(AWKWARD)
    assert sentences == AWKWARD_DOCUMENTS


def test_tokens_that_read_as_a_document_break_are_rewritten_and_counted():
    export = conll_export(_spans(AWKWARD_SPANS), _texts(AWKWARD))
    assert export.tokens_rewritten == 3
    lines = export.text.splitlines()
    assert lines.count("-DOCSTART- O") == len(AWKWARD)
    # Only the separators start with -DOCSTART-; a rewritten token keeps its length.
    assert [line for line in lines if line.startswith("-DOCSTART-")] == ["-DOCSTART- O"] * 4
    assert "_DOCSTART- B-MISC" in lines


def test_labels_with_whitespace_stay_one_tag_column_and_the_renaming_is_recorded(tmp_path):
    text = {"t": "a new product line shipped"}
    spans = [("t", [(2, 13, "product name", 0.9), (14, 18, "multi\tword\nlabel", 0.8)])]
    export = conll_export(_spans(spans), _texts(text))
    for line in export.text.splitlines():
        assert line == "" or (len(line.split(" ")) == 2 and len(line.split()) == 2), line
    path = tmp_path / "conll.txt"
    path.write_text(export.text, encoding="utf-8")
    expected = [
        (
            ["a", "new", "product", "line", "shipped"],
            ["O", "B-product_name", "I-product_name", "B-multi_word_label", "O"],
        )
    ]
    for reader in READERS.values():
        assert reader(path) == expected
    assert export.tags_renamed == {
        "multi\tword\nlabel": "multi_word_label",
        "product name": "product_name",
    }


def test_two_labels_that_would_become_one_tag_are_refused_naming_both():
    spans = [("t", [(0, 1, "a b", 0.9), (2, 3, "a_b", 0.9)])]
    with pytest.raises(ValueError, match=r"'a b'.*'a_b'"):
        conll_export(_spans(spans), _texts({"t": "x y"}))


NESTED = {
    # the(0) New(4) York(8) City(13) Council(18) met(26)
    "n": "the New York City Council met",
    # a(0) b(2) c(4) d(6)
    "p": "a b c d",
}
NESTED_SPANS = [
    (
        "n",
        [
            (4, 17, "LOC", 0.9),  # New York City
            (4, 25, "ORG", 0.6),  # New York City Council: the longest
            (8, 12, "GPE", 0.99),  # York, nested in both
            (5, 7, "X", 0.9),  # inside "New": no token starts in it
            (26, 29, "PER", 0.9),  # met, alone
        ],
    ),
    (
        "p",
        [
            (0, 3, "P", 0.5),  # a b
            (2, 5, "Q", 0.9),  # b c: as long, starts later
            (6, 7, "Z", 0.6),  # d
            (6, 7, "Y", 0.9),  # d again, more confident
        ],
    ),
]


def test_overlapping_spans_keep_the_longest_then_first_then_most_confident_and_count_the_rest():
    export = conll_export(_spans(NESTED_SPANS), _texts(NESTED))
    documents = [block.splitlines() for block in export.text.split("-DOCSTART- O\n\n")[1:]]
    assert documents == [
        ["the O", "New B-ORG", "York I-ORG", "City I-ORG", "Council I-ORG", "met B-PER", ""],
        ["a B-P", "b I-P", "c O", "d B-Y", ""],
    ]
    assert export.spans == 9
    assert export.spans_written == 4
    assert export.spans_overlapping == 4  # LOC, GPE, Q, Z
    assert export.spans_without_token == 1  # X
    assert export.stats()["spans_dropped"] == {"overlapping": 4, "without_token": 1}


def _entities_snapshot():
    texts = [
        "the New York City Council met",
        "a -DOCSTART- token",
        "",
        "Ada met Bob",
    ]
    spans = [
        [
            {"start": 4, "end": 17, "label": "LOC", "confidence": 0.9},
            {"start": 4, "end": 25, "label": "ORG", "confidence": 0.9},
        ],
        [{"start": 2, "end": 12, "label": "odd token", "confidence": 0.9}],
        [],
        [{"start": 0, "end": 3, "label": "PER", "confidence": 0.9}],
    ]
    n = 60
    tasks = _tasks("entities", lambda i: texts[i % 4])
    labels = _labels(
        "entities",
        "spans",
        {"spans": [spans[i % 4] for i in range(n)]},
        spans=pl.List(SCORED_SPAN),
    )
    return build_kind_snapshot(labels, tasks, project="entities", kind="spans")


def test_a_snapshot_counts_what_conll_could_not_hold_in_its_stats_and_card():
    snapshot = _entities_snapshot()
    conll = snapshot.stats["conll"]
    assert conll == {
        "documents": 60,
        "spans": 60,
        "spans_written": 45,
        "spans_dropped": {"overlapping": 15, "without_token": 0},
        "kept_when_overlapping": "most tokens, then first, then most confident, then label",
        "tokens_rewritten": 15,
        "tags_renamed": {"odd token": "odd_token"},
    }
    card = kind_card(snapshot, quality=None, location="here")
    assert "15 of 60 spans" in card and "-DOCSTART-" in card


def test_conll_documents_follow_spans_jsonl_line_for_line_in_every_file():
    snapshot = _entities_snapshot()
    for prefix in ("", *(f"{split}." for split in SPLITS)):
        documents = _jsonl(snapshot.files[f"{prefix}spans.jsonl"])
        blocks = snapshot.files[f"{prefix}conll.txt"].decode().split("-DOCSTART- O\n\n")[1:]
        assert len(blocks) == len(documents) > 0, prefix
        for document, block in zip(documents, blocks, strict=True):
            tokens = [line.split(" ")[0] for line in block.splitlines() if line]
            assert len(tokens) == len(document["text"].split()), prefix


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


def test_coco_json_is_the_whole_file_coco_and_the_snapshot_counts_its_percent_images():
    # The whole file and the split files come from one build of the COCO frames.
    snapshot = _boxes_snapshot()
    rows = snapshot.rows
    label_set = snapshot.stats["label_set"]
    whole = to_coco(
        rows.select("task_id", "boxes"),
        images=_coco_images(rows),
        categories=label_set if isinstance(label_set, list) else None,
    )
    assert snapshot.files["coco.json"] == _coco_json(whole)
    assert snapshot.stats["tasks_in_percent"] == whole["info"]["images_in_percent"] == 12
