"""Kind snapshots as a model trainer reads them: the item beside its label, one trainer file per
split, and category ids that mean the same class in every version."""

import io
import json
from datetime import date

import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from pycocotools.coco import COCO

from annotation_pipelines.aggregation.boxes import FUSED_BOX
from annotation_pipelines.aggregation.spans import SCORED_SPAN
from annotation_pipelines.curation import MASK, MaskedShareError
from annotation_pipelines.curation.kinds import build_kind_snapshot as _build
from annotation_pipelines.curation.kinds import kind_card
from annotation_pipelines.curation.masking import MASK_CHARACTER
from annotation_pipelines.kinds import document_text, document_texts
from annotation_pipelines.quality.kinds import aggregate_kind_day
from assets.curation.kinds import kind_curated_dataset
from resources.lake import LocalLake
from tests.kinds.test_ingest_kinds import annotation, ingest_label_studio, ner, task

SPLITS = ("train", "validation", "test")
N = 60
DAY = date(2026, 11, 2)


def build_kind_snapshot(labels, tasks, **options):
    """A kind snapshot masked as the asset masks it, by default with no ceiling on the share."""
    return _build(labels, tasks, **{"phone_region": "US", "max_masked_share": 1.0, **options})


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
        # The n-th CoNLL document is the n-th line of spans.jsonl: "Ada met Bob <i>".
        conll = snapshot.files[f"{split}.conll.txt"].decode().split("-DOCSTART- O\n\n")[1:]
        numbers = [int(block.splitlines()[3].split(" ")[0]) for block in conll]
        assert [f"entities-{i:03d}" for i in numbers] == [d["task_id"] for d in documents]
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


def test_preference_pairs_map_the_winner_by_item_id_when_the_payload_names_the_items():
    # The aggregate's left/right is one judgment's view of the pair; the payload says which
    # text is which item, so a pair seen the other way round is not flipped.
    def payload(i):
        return json.dumps(
            {"prompt": f"p{i}", "left": "good", "right": "bad", "left_text": "GOOD",
             "right_text": "BAD"}
        )  # fmt: skip

    values = {"left": ["bad"] * N, "right": ["good"] * N, "winner": ["right"] * N}
    snapshot = build_kind_snapshot(
        _labels("prefs", "pairwise", values), _tasks("prefs", payload), project="prefs",
        kind="pairwise",
    )  # fmt: skip
    pairs = _jsonl(snapshot.files["preference_pairs.jsonl"])
    assert len(pairs) == N and {(p["chosen"], p["rejected"]) for p in pairs} == {("GOOD", "BAD")}


def test_a_pair_whose_payload_lacks_a_response_text_is_refused_naming_the_task():
    def payload(i):
        return json.dumps({"prompt": f"p{i}", "answer_a": "x", "answer_b": "y"})

    values = {"left": ["a"] * N, "right": ["b"] * N, "winner": ["left"] * N}
    with pytest.raises(ValueError, match=r"prefs-000.*left_text"):
        build_kind_snapshot(
            _labels("prefs", "pairwise", values), _tasks("prefs", payload), project="prefs",
            kind="pairwise",
        )  # fmt: skip


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
    frame = _labels(
        "det", "boxes", {"boxes": boxes}, confidence=confidence, boxes=pl.List(FUSED_BOX)
    )
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


def test_a_task_whose_newest_aggregate_is_not_confident_is_left_out_not_taken_from_older_days():
    # The newest aggregate supersedes the older ones: below min_confidence, the task has no
    # confident label now, and an older day's answer must not be exported in its place.
    tasks = _tasks("rate", lambda i: f"response {i}")
    first = _labels("rate", "numeric", {"value": [1.0] * N})
    later = first.head(5).with_columns(
        day=pl.lit(date(2026, 11, 3)), value=pl.lit(5.0), confidence=pl.lit(0.3)
    )
    snapshot = build_kind_snapshot(
        pl.concat([first, later]), tasks, project="rate", kind="numeric", min_confidence=0.5
    )
    superseded = set(later["task_id"])
    assert snapshot.rows.height == N - 5
    assert not superseded & set(snapshot.rows["task_id"])
    everything = build_kind_snapshot(
        pl.concat([first, later]), tasks, project="rate", kind="numeric", min_confidence=0.0
    )
    newest = everything.rows.filter(pl.col("task_id").is_in(list(superseded)))
    assert newest["value"].to_list() == [5.0] * 5


# Ten of the N tasks carry an e-mail address and a phone number, one inside a labelled span and
# the other outside it; the other tasks carry neither.
PERSONAL = 10
EMAIL, PHONE = "ada@example.com", "(415) 555-0132"


def _entity_text(i: int) -> str:
    if i >= PERSONAL:
        return f"Bob Smith wrote about order {i}"
    if i % 2:
        return f"Ada Lovelace {EMAIL} called {PHONE} about order {i}"
    return f"Ada Lovelace called {PHONE} about order {i} from {EMAIL}"


def _entity_spans(text: str) -> list[dict]:
    def span(start: int, end: int, label: str) -> dict:
        return {"start": start, "end": end, "label": label, "confidence": 0.9}

    spans = [span(0, text.index(" ", 4), "PER")]  # "Ada Lovelace" / "Bob Smith"
    if EMAIL in text and text.index(EMAIL) < text.index(PHONE):
        spans[0] = span(0, text.index(EMAIL) + len(EMAIL), "CONTACT")  # the address inside
    elif PHONE in text:
        start = text.index(PHONE)
        spans.append(span(start, start + len(PHONE), "PHONE"))  # the number inside
    order = text.index("order")
    spans.append(span(order, order + len("order"), "THING"))
    return spans


def test_span_payloads_are_masked_in_place_and_every_offset_still_holds():
    tasks = _tasks("entities", _entity_text)
    spans = [_entity_spans(_entity_text(i)) for i in range(N)]
    labels = _labels("entities", "spans", {"spans": spans}, spans=pl.List(SCORED_SPAN))
    snapshot = build_kind_snapshot(labels, tasks, project="entities", kind="spans")

    originals = dict(tasks.select("task_id", "payload").iter_rows())
    masked = dict(snapshot.rows.select("task_id", "payload").iter_rows())
    for task_id, text in masked.items():
        original = originals[task_id]
        assert len(text) == len(original) and EMAIL not in text
        assert "555" not in text and text.count(" ") == original.count(" ")
        if EMAIL in original:
            assert MASK_CHARACTER * len(EMAIL) in text
    stats = snapshot.stats
    assert stats["masked"] == {"email": PERSONAL, "phone": PERSONAL, "custom": 0}
    assert stats["masked_rows"] == PERSONAL and stats["masked_share"] == round(PERSONAL / N, 6)
    assert stats["phone_region"] == "US" and stats["max_masked_share"] == 1.0

    for name, data in snapshot.files.items():
        if name.endswith(".parquet"):
            frame = pl.read_parquet(io.BytesIO(data))
            assert frame["payload"].to_list() == [masked[t] for t in frame["task_id"]], name
        else:
            assert EMAIL.encode() not in data and b"555" not in data, name
    for name in ("spans.jsonl", *(f"{split}.spans.jsonl" for split in SPLITS)):
        for document in _jsonl(snapshot.files[name]):
            assert document["text"] == masked[document["task_id"]], name
            for span in document["spans"]:
                assert document["text"][span["start"] : span["end"]] == span["text"], name
    contact = [
        span["text"]
        for document in _jsonl(snapshot.files["spans.jsonl"])
        for span in document["spans"]
        if span["label"] == "CONTACT"
    ]
    assert contact == ["Ada Lovelace " + MASK_CHARACTER * len(EMAIL)] * (PERSONAL // 2)

    documents: dict[str, list[tuple[str, str]]] = {}
    in_order = iter(document["task_id"] for document in _jsonl(snapshot.files["spans.jsonl"]))
    for line in snapshot.files["conll.txt"].decode().splitlines():
        if line.startswith("-DOCSTART- "):
            current = documents.setdefault(next(in_order), [])
        elif line:
            token, tag = line.rsplit(" ", 1)
            current.append((token, tag))
    assert set(documents) == set(masked)
    for task_id, tokens in documents.items():
        # The tokens are the masked text's, as many as the original's, tagged as before.
        assert [token for token, _ in tokens] == masked[task_id].split()
        assert len(tokens) == len(originals[task_id].split())
    phone_tags = [tag for token, tag in documents["entities-001"] if set(token) <= {"*", "(", ")"}]
    assert phone_tags == ["I-CONTACT", "O", "O"]  # the address in the span, the number out
    assert [tag for token, tag in documents["entities-000"] if "*" in token] == [
        "B-PHONE",
        "I-PHONE",
        "O",
    ]


def test_preference_payloads_have_their_texts_masked_and_stay_json():
    def payload(i):
        prompt = f"p{i}: answer jane@example.com" if i < PERSONAL else f"p{i}"
        return json.dumps({"prompt": prompt, "left_text": f"a{i}", "right_text": f"b{i}"})

    tasks = _tasks("prefs", payload)
    values = {"left": ["a"] * N, "right": ["b"] * N, "winner": ["left"] * N}
    snapshot = build_kind_snapshot(
        _labels("prefs", "pairwise", values), tasks, project="prefs", kind="pairwise"
    )
    rows = _jsonl(snapshot.files["data.jsonl"])
    prompts = {row["task_id"]: json.loads(row["payload"])["prompt"] for row in rows}
    assert prompts["prefs-003"] == f"p3: answer {MASK}" and prompts["prefs-030"] == "p30"
    pairs = _jsonl(snapshot.files["preference_pairs.jsonl"])
    assert {pair["task_id"]: pair["prompt"] for pair in pairs} == prompts
    for name, data in snapshot.files.items():
        assert b"jane@example.com" not in data, name
    assert snapshot.stats["masked"] == {"email": PERSONAL, "phone": 0, "custom": 0}


def test_image_references_are_masked_inside_their_json():
    def payload(i):
        name = "photos/jane@example.com/0.jpg" if i == 0 else f"{i}.jpg"
        return json.dumps({"file_name": name, "width": 100, "height": 100})

    box = {"label": "car", "x_min": 1.0, "y_min": 2.0, "x_max": 3.0, "y_max": 4.0}
    boxes = [[{**box, "confidence": 0.9}]] * N
    labels = _labels("det", "boxes", {"boxes": boxes}, boxes=pl.List(FUSED_BOX))
    snapshot = build_kind_snapshot(labels, _tasks("det", payload), project="det", kind="boxes")
    images = json.loads(snapshot.files["coco.json"])["images"]
    assert [image["file_name"] for image in images if image["task_id"] == "det-000"] == [
        f"photos/{MASK}/0.jpg"
    ]
    assert all(image["width"] == 100 for image in images)
    assert snapshot.stats["masked_rows"] == 1


def test_free_text_answers_are_masked_like_payloads():
    answers = [f"call me at 415-555-01{i:02d}" if i < PERSONAL else f"answer {i}" for i in range(N)]
    labels = _labels("transcripts", "text", {"text": answers})
    snapshot = build_kind_snapshot(
        labels, _tasks("transcripts", lambda i: f"audio {i}"), project="transcripts", kind="text"
    )
    texts = dict(snapshot.rows.select("task_id", "text").iter_rows())
    assert texts["transcripts-002"] == f"call me at {MASK}"
    assert texts["transcripts-020"] == "answer 20"
    assert snapshot.stats["masked"] == {"email": 0, "phone": PERSONAL, "custom": 0}
    assert b"415-555-" not in snapshot.files["data.jsonl"]


def test_a_kind_snapshot_above_the_masked_share_ceiling_is_not_built():
    answers = [f"call me at 415-555-01{i:02d}" if i < PERSONAL else f"answer {i}" for i in range(N)]
    labels = _labels("transcripts", "text", {"text": answers})
    tasks = _tasks("transcripts", lambda i: f"audio {i}")
    share = PERSONAL / N
    build_kind_snapshot(labels, tasks, project="transcripts", kind="text", max_masked_share=share)
    with pytest.raises(MaskedShareError) as raised:
        build_kind_snapshot(
            labels, tasks, project="transcripts", kind="text", max_masked_share=share / 2
        )
    message = str(raised.value)
    for part in ("'transcripts'", f"{share:.1%}", "ANNOTATION_PIPELINES_MAX_MASKED_SHARE"):
        assert part in message
    custom = build_kind_snapshot(
        labels, tasks, project="transcripts", kind="text", mask_patterns=[r"answer \d+"]
    )
    assert custom.stats["masked"]["custom"] == N - PERSONAL


def _lake_with(tmp_path, projects: dict[str, tuple[pl.DataFrame, pl.DataFrame]]) -> LocalLake:
    """A lake holding the given projects' (labels, tasks) on DAY, with passing quality rows."""
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    day = DAY.isoformat()
    labels = pl.concat([labels for labels, _ in projects.values()], how="diagonal")
    tasks = pl.concat([tasks for _, tasks in projects.values()], how="diagonal")
    quality = pl.DataFrame(
        {
            "project": list(projects),
            "day": DAY,
            "gates_passed": True,
            "failed_gates": "",
            "distance": "edit",
            "krippendorff_alpha": 0.8,
            "alpha_low": 0.7,
            "alpha_high": 0.9,
            "mean_pairwise_agreement": 0.8,
            "gold_metric_name": "edit",
            "gold_metric": 0.9,
        }
    )
    lake.write_table("kind_aggregated_labels", labels, day=day)
    lake.write_table("kind_quality_report", quality, day=day)
    lake.write_table("raw_tasks", tasks, day=day)
    return lake


def _curate(lake: LocalLake):
    return materialize(
        [kind_curated_dataset],
        resources={"lake": lake},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _transcripts() -> tuple[pl.DataFrame, pl.DataFrame]:
    answers = [f"call me at 415-555-01{i:02d}" if i < PERSONAL else f"answer {i}" for i in range(N)]
    labels = _labels("transcripts", "text", {"text": answers})
    return labels, _tasks("transcripts", lambda i: f"audio {i}")


def test_the_kind_asset_records_the_masked_share_in_manifest_and_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    monkeypatch.delenv("ANNOTATION_PIPELINES_MAX_MASKED_SHARE", raising=False)
    spans = [_entity_spans(_entity_text(i)) for i in range(N)]
    entities = _labels("entities", "spans", {"spans": spans}, spans=pl.List(SCORED_SPAN))
    lake = _lake_with(
        tmp_path,
        {"transcripts": _transcripts(), "entities": (entities, _tasks("entities", _entity_text))},
    )
    result = _curate(lake)
    assert result.success
    metadata = result.asset_materializations_for_node("kind_curated_dataset")[0].metadata
    share = round(PERSONAL / N, 6)
    assert metadata["masked_share"].value == {"entities": share, "transcripts": share}
    assert metadata["masked"].value == {
        "entities": {"email": PERSONAL, "phone": PERSONAL, "custom": 0},
        "transcripts": {"email": 0, "phone": PERSONAL, "custom": 0},
    }
    for project in ("entities", "transcripts"):
        [manifest] = (tmp_path / "lake" / "datasets" / project).glob("*/manifest.json")
        stats = json.loads(manifest.read_text())["stats"]
        assert stats["masked_share"] == share and stats["masked_rows"] == PERSONAL
        assert stats["phone_region"] == "US" and stats["max_masked_share"] == 0.2
        card = (manifest.parent / "card.md").read_text()
        assert "## Personal data" in card and f"{share:.1%} of" in card


def test_a_kind_project_above_the_ceiling_fails_the_asset_and_writes_no_snapshot(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    monkeypatch.setenv("ANNOTATION_PIPELINES_MAX_MASKED_SHARE", "0.1")
    ratings = _labels("ratings", "numeric", {"value": [3.0] * N})
    lake = _lake_with(
        tmp_path,
        {"transcripts": _transcripts(), "ratings": (ratings, _tasks("ratings", str))},
    )
    result = _curate(lake)
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert "MaskedShareError" in message and "'transcripts'" in message
    assert not (tmp_path / "lake" / "datasets" / "transcripts").exists()
    # A project within the ceiling is not held hostage by another project's data.
    assert list((tmp_path / "lake" / "datasets" / "ratings").glob("*/manifest.json"))


def test_a_judged_day_without_a_quality_report_is_held_back(tmp_path, monkeypatch):
    # Its kind quality step failed or has not run: nothing vouched for the day.
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    later = date(2026, 11, 3)
    first = _labels("rate", "numeric", {"value": [1.0] * N})
    again = first.head(5).with_columns(day=pl.lit(later), value=pl.lit(2.0))
    fresh = _labels("rate", "numeric", {"value": [3.0] * N}).with_columns(
        task_id=pl.format("rate-new-{}", pl.col("task_id")), day=pl.lit(later)
    )
    tasks = pl.concat([_tasks("rate", lambda i: f"r {i}"),
                       _tasks("rate", lambda i: f"n {i}").with_columns(
                           task_id=pl.format("rate-new-{}", pl.col("task_id")))])  # fmt: skip
    lake = _lake_with(tmp_path, {"rate": (first, tasks)})
    # The second day has labels and no kind_quality_report.
    lake.write_table("kind_aggregated_labels", pl.concat([again, fresh]), day=later.isoformat())
    result = _curate(lake)
    assert result.success
    [manifest_path] = (tmp_path / "lake" / "datasets" / "rate").glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["held_back_days"] == [later.isoformat()]
    assert manifest["held_back_reasons"] == {later.isoformat(): "no quality report"}
    assert manifest["source_days"][later.isoformat()]["gates_passed"] is None
    rows = pl.read_parquet(manifest_path.parent / "data.parquet")
    # Neither the new tasks nor those judged again on the ungated day.
    assert rows.height == N - 5 and not rows["task_id"].str.starts_with("rate-new").any()
    assert (
        f"{later.isoformat()} (no quality report)" in (manifest_path.parent / "card.md").read_text()
    )


def test_one_projects_unusable_payload_does_not_hold_back_the_others(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    values = {"left": ["a"] * N, "right": ["b"] * N, "winner": ["left"] * N}
    prefs = (_labels("prefs", "pairwise", values), _tasks("prefs", lambda i: '{"q": 1}'))
    lake = _lake_with(tmp_path, {"prefs": prefs, "transcripts": _transcripts()})
    result = _curate(lake)
    assert not result.success
    assert list((tmp_path / "lake" / "datasets" / "transcripts").glob("*/manifest.json"))
    assert not (tmp_path / "lake" / "datasets" / "prefs").exists()


def test_a_pair_shown_both_ways_takes_the_orientation_most_judgments_saw():
    # The first judgment saw the pair swapped; the payload's texts are in the task's own
    # order, which the other two saw: the preferred response must come out as chosen.
    from annotation_pipelines.quality.kinds import aggregate_kind_day

    rows = [
        {"task_id": f"t{t}", "project": "prefs", "annotator_id": a, "kind": "pairwise",
         "left": "bad" if a == "a1" else "good", "right": "good" if a == "a1" else "bad",
         "winner": "right" if a == "a1" else "left", "submitted_at": DAY}
        for t in range(3)
        for a in ("a1", "a2", "a3")
    ]  # fmt: skip
    judgments = pl.DataFrame(rows)
    labels = aggregate_kind_day(judgments, project="prefs", day=DAY, kind="pairwise").labels
    assert labels.select("left", "right", "winner").unique().rows() == [("good", "bad", "left")]


def test_label_studio_ner_offsets_index_the_task_text_not_its_json_payload(tmp_path, monkeypatch):
    """Label Studio hands over the task's data object, which ingest keeps JSON-encoded as the
    payload: aggregation snaps and the snapshot writes spans against its `text`, not against
    the encoding (where 24:30 would be "met Bob")."""
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    tasks = []
    for t in range(1, 9):
        data = {"text": f"Zoë Lovelace met Bob in London {t}", "source": "wire", "page": t}
        spans = [ner(0, 12, "Zoë Lovelace", "PER", f"r{t}"), ner(24, 30, "London", "LOC", f"s{t}")]
        tasks.append(task(t, data, [annotation(100 * t + a, a, spans) for a in (1, 2, 3)]))
    ingested = ingest_label_studio(tasks, project="ls-ner")
    assert json.loads(ingested.tasks["payload"][0])["text"] == "Zoë Lovelace met Bob in London 1"
    labels = aggregate_kind_day(
        ingested.judgments, project="ls-ner", day=DAY, tasks=ingested.tasks, kind="spans"
    ).labels
    assert labels["spans"].list.len().to_list() == [2] * 8
    lake = _lake_with(tmp_path, {"ls-ner": (labels, ingested.tasks)})
    assert _curate(lake).success
    [manifest] = (tmp_path / "lake" / "datasets" / "ls-ner").glob("*/manifest.json")
    documents = _jsonl((manifest.parent / "spans.jsonl").read_bytes())
    assert len(documents) == 8
    for document in documents:
        assert document["text"] == f"Zoë Lovelace met Bob in London {document['task_id']}"
        assert [(s["text"], s["label"]) for s in document["spans"]] == [
            ("Zoë Lovelace", "PER"),
            ("London", "LOC"),
        ]
    conll = (manifest.parent / "conll.txt").read_text().split("\n\n")
    assert conll[1].splitlines() == [
        "Zoë B-PER",
        "Lovelace I-PER",
        "met O",
        "Bob O",
        "in O",
        "London B-LOC",
        f"{documents[0]['task_id']} O",
    ]


def test_document_text_reads_the_named_then_the_text_then_the_only_string_value():
    assert document_text("Ada met Bob") == "Ada met Bob"  # a CSV's text column
    assert document_text('{"text": "Ada", "source": "wire"}') == "Ada"
    assert document_text('{"text": "Ada", "body": "Bob"}', to_name="body") == "Bob"
    assert document_text('{"source": "Ada met Bob", "page": 3}') == "Ada met Bob"
    assert document_text('{"title": "A", "body": "B"}') is None
    assert document_text("{not json") == "{not json"
    with pytest.raises(ValueError, match="'t1'"):
        document_texts(pl.DataFrame({"task_id": ["t1"], "payload": ['{"a": "x", "b": "y"}']}))


def _ingested_boxes(result) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The aggregated labels and raw tasks of an ingested boxes export, as the lake holds them."""
    from annotation_pipelines.quality.kinds import aggregate_kind_day

    [project] = result.judgments["project"].unique().to_list()
    labels = aggregate_kind_day(
        result.judgments, project=project, day=DAY, tasks=result.tasks, kind="boxes"
    ).labels
    return labels, result.tasks


def test_label_studio_percent_boxes_reach_coco_in_pixels_with_the_image_reference(tmp_path):
    from tests.kinds.test_ingest_kinds import annotation, ingest_label_studio, rectangle, task

    # Label Studio measures rectangles in percent of the image; original_width/height 800x600.
    tasks = [
        task(
            t,
            {"image": f"s3://bucket/{t}.jpg"},
            [annotation(100 * t + a, a, [rectangle(10, 20, 30, 40, "Car")]) for a in (1, 2, 3)],
        )
        for t in range(1, 7)
    ]
    labels, raw = _ingested_boxes(ingest_label_studio(tasks, project="ls-boxes"))
    assert labels["coordinates"].unique().to_list() == ["percent"]
    snapshot = build_kind_snapshot(labels, raw, project="ls-boxes", kind="boxes", min_confidence=0)
    path = tmp_path / "coco.json"
    path.write_bytes(snapshot.files["coco.json"])
    coco = COCO(str(path))
    assert coco.dataset["images"]
    for image in coco.dataset["images"]:
        assert (image["width"], image["height"]) == (800, 600)
        assert image["file_name"] == f"s3://bucket/{image['task_id']}.jpg"
    for box in coco.dataset["annotations"]:
        assert box["bbox"] == pytest.approx([80, 120, 240, 240])
        assert box["area"] == pytest.approx(240 * 240)
    assert snapshot.stats["tasks_in_percent"] == 0
    assert "percent" not in kind_card(snapshot, quality=None, location="here")


def test_a_table_of_percent_boxes_reaches_coco_in_pixels_of_its_image_size(tmp_path):
    from annotation_pipelines.ingest import ingest_path

    # A JSON Lines file of boxes in percent of a 640x480 image, as a team's own tool writes it.
    box = {"label": "car", "x_min": 10, "y_min": 20, "x_max": 40, "y_max": 60}
    rows = [
        {
            "task_id": f"img{t}",
            "annotator_id": f"a{a}",
            "submitted_at": f"{DAY}T10:00:00Z",
            "boxes": [box],
            "coordinates": "percent",
            "image_width": 640,
            "image_height": 480,
        }
        for t in range(6)
        for a in range(3)
    ]
    path = tmp_path / "boxes.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    result = ingest_path(path, format="jsonl", project="det")
    assert result.rows_quarantined == 0
    staged = result.judgments.select("coordinates", "image_width", "image_height").unique()
    assert staged.rows() == [("percent", 640.0, 480.0)]
    labels, raw = _ingested_boxes(result)
    snapshot = build_kind_snapshot(labels, raw, project="det", kind="boxes", min_confidence=0)
    coco = json.loads(snapshot.files["coco.json"])
    assert {(image["width"], image["height"]) for image in coco["images"]} == {(640, 480)}
    assert len(coco["annotations"]) == 6
    for fused in coco["annotations"]:
        # 10 % of 640 px is 64 px, not 10 px.
        assert fused["bbox"] == pytest.approx([64, 96, 192, 192])
    assert snapshot.stats["tasks_in_percent"] == 0


def test_ground_truth_pixel_boxes_take_the_image_size_from_the_judgments(tmp_path):
    from tests.kinds.test_ingest_kinds import sagemaker

    records = [
        {
            "source-ref": f"s3://bucket/images/dog{i}.jpg",
            "dogs": {
                "image_size": [{"width": 500, "height": 400, "depth": 3}],
                "annotations": [
                    {"class_id": 0, "left": 111, "top": 134, "width": 61, "height": 128}
                ],
            },
            "dogs-metadata": {
                "objects": [{"confidence": 0.8}],
                "class-map": {"0": "dog"},
                "type": "groundtruth/object-detection",
                "human-annotated": "yes",
                "creation-date": "2026-05-01T22:18:13.527256",
                "job-name": "identify-dogs",
            },
        }
        for i in range(6)
    ]
    labels, raw = _ingested_boxes(sagemaker(records))
    [project] = labels["project"].unique().to_list()
    snapshot = build_kind_snapshot(labels, raw, project=project, kind="boxes", min_confidence=0)
    coco = json.loads(snapshot.files["coco.json"])
    assert coco["images"]
    for image in coco["images"]:
        assert (image["width"], image["height"]) == (500, 400)
        assert image["file_name"].startswith("s3://bucket/images/dog")
    assert [box["bbox"] for box in coco["annotations"]] == [[111, 134, 61, 128]] * len(
        coco["annotations"]
    )


def test_percent_boxes_without_an_image_size_stay_in_percent_and_the_card_says_so():
    box = {"label": "car", "x_min": 10.0, "y_min": 20.0, "x_max": 40.0, "y_max": 60.0}
    labels = _labels(
        "pct",
        "boxes",
        {
            "boxes": [[{**box, "confidence": 0.9}]] * N,
            "coordinates": ["percent"] * N,
            "image_width": [None] * N,
            "image_height": [None] * N,
        },
        boxes=pl.List(FUSED_BOX),
        image_width=pl.Float64,
        image_height=pl.Float64,
    )
    tasks = _tasks("pct", lambda i: json.dumps({"image": f"{i}.jpg"}))
    snapshot = build_kind_snapshot(labels, tasks, project="pct", kind="boxes")
    coco = json.loads(snapshot.files["coco.json"])
    assert {tuple(box["bbox"]) for box in coco["annotations"]} == {(10.0, 20.0, 30.0, 40.0)}
    assert snapshot.stats["tasks_in_percent"] == N
    assert "percent" in kind_card(snapshot, quality=None, location="here")


def test_a_numeric_card_names_its_mean_distance_and_never_calls_it_agreement():
    # Numeric agreement has a distance in the answers' unit (bigger is worse), not a share.
    snapshot = build_kind_snapshot(
        _labels("rate", "numeric", {"value": [3.0] * N}),
        _tasks("rate", str),
        project="rate",
        kind="numeric",
    )
    quality = pl.DataFrame(
        {
            "project": ["rate"],
            "day": [DAY],
            "distance": ["interval"],
            "krippendorff_alpha": [0.35],
            "alpha_low": [0.3],
            "alpha_high": [0.4],
            "mean_pairwise_agreement": [None],
            "mean_pairwise_distance": [17.234],
            "raw_measure": ["mean_absolute_difference"],
            "gold_metric_name": ["mae"],
            "gold_metric": [8.6],
        },
        schema_overrides={"mean_pairwise_agreement": pl.Float64},
    )
    # A day reported before the distance had its own column held it in the share's.
    earlier = quality.with_columns(
        day=pl.lit(date(2026, 11, 1)), mean_pairwise_agreement=pl.lit(12.5)
    ).drop("mean_pairwise_distance")
    card = kind_card(
        snapshot, quality=pl.concat([earlier, quality], how="diagonal"), location="here"
    )
    rows = [line for line in card.splitlines() if line.startswith("| 2026-11-0")]
    assert "| mean_absolute_difference 12.500 |" in rows[0], rows
    assert "| mean_absolute_difference 17.234 |" in rows[1], rows


def test_a_lake_without_kind_judgments_curates_nothing_and_the_run_succeeds(tmp_path):
    # Automation asks for this asset whenever a day's kind aggregation is rebuilt, also on a
    # day that judged only categorical projects: failing then was a failed run and an alert
    # every day for a platform that has no other kinds.
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    empty = pl.DataFrame(schema={"project": pl.String, "kind": pl.String, "task_id": pl.String})
    lake.write_table("kind_aggregated_labels", empty, day=DAY.isoformat())
    result = _curate(lake)
    assert result.success
    metadata = result.asset_materializations_for_node("kind_curated_dataset")[0].metadata
    assert metadata["dagster/row_count"].value == 0
    assert "no non-categorical project" in metadata["snapshots"].value
    assert not (tmp_path / "lake" / "datasets").exists()
