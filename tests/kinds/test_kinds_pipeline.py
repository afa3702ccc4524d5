"""Every kind end to end on a real (temporary) instance: the daily job, then the kind snapshots."""

import json
from datetime import date

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, build_asset_context
from pycocotools.coco import COCO

from annotation_pipelines.synthetic import KIND_PROJECTS
from assets.aggregation.kinds import (
    KindAggregationConfig,
    MixedKindProjectError,
    kind_aggregated_labels,
)
from assets.definitions import build_definitions
from resources.lake import LocalLake
from resources.landing import LocalLandingZone
from tests.support import LENIENT_GATES, QUIET, local_graph

DAY = "2026-11-16"
KIND_OF = {spec.name: spec.kind for spec in KIND_PROJECTS}
RUN_CONFIG = {
    **LENIENT_GATES,
    "ops": {
        **LENIENT_GATES["ops"],
        "kind_quality": {"config": {"bootstrap_resamples": 20}},
    },
}


def _run_day(root, *, kinds: bool):
    with local_graph(
        root,
        judgments=3_000,
        start=date.fromisoformat(DAY),
        days=1,
        seed=21,
        kinds=kinds,
        judgments_per_kind=600,
    ) as (defs, instance, data):
        daily = defs.resolve_job_def("daily_annotation_job")
        result = daily.execute_in_process(
            partition_key=DAY, instance=instance, run_config=RUN_CONFIG
        )
        assert result.success
        curated = None
        if kinds:
            curated = defs.resolve_job_def("kind_curation_job").execute_in_process(
                instance=instance, run_config=QUIET
            )
            assert curated.success
        yield result, curated, data


@pytest.fixture(scope="module")
def with_kinds(tmp_path_factory):
    yield from _run_day(tmp_path_factory.mktemp("kinds"), kinds=True)


@pytest.fixture(scope="module")
def without_kinds(tmp_path_factory):
    yield from _run_day(tmp_path_factory.mktemp("plain"), kinds=False)


def _table(data, name):
    return pl.read_parquet(data / "lake" / name / f"day={DAY}" / "data.parquet")


def test_every_kind_is_aggregated_scored_and_gated(with_kinds):
    result, _, data = with_kinds
    labels = _table(data, "kind_aggregated_labels")
    judgments = _table(data, "judgments").filter(pl.col("kind") != "categorical")
    assert dict(labels.select("project", "kind").unique().iter_rows()) == KIND_OF
    # One aggregate per judged task, in the kind's own typed column(s).
    assert labels.height == judgments["task_id"].n_unique()
    for project, kind in KIND_OF.items():
        rows = labels.filter(pl.col("project") == project)
        value = {"pairwise": "winner"}.get(kind, rows.columns[0])
        assert rows[value].null_count() == 0 if kind == "pairwise" else True
    assert labels["spans"].dtype == pl.List(
        pl.Struct(
            {"start": pl.Int64, "end": pl.Int64, "label": pl.String, "confidence": pl.Float64}
        )
    )
    assert labels.filter(pl.col("kind") == "numeric")["value"].is_between(1, 5).all()
    items = _table(data, "kind_item_scores")
    assert set(items["project"]) == {"preferences"} and items.height > 10

    report = _table(data, "kind_quality_report")
    assert sorted(report["project"]) == sorted(KIND_OF)
    assert report["krippendorff_alpha"].null_count() == 0
    assert (report["krippendorff_alpha"] > 0.2).all()
    assert (report["alpha_low"] <= report["krippendorff_alpha"]).all()
    assert report["mean_pairwise_distance"].null_count() == 0
    # A share of agreeing pairs for every kind, in [0, 1]; numeric has a distance instead.
    shares = report.filter(pl.col("kind") != "numeric")["mean_pairwise_agreement"]
    assert shares.null_count() == 0 and shares.is_between(0, 1).all()
    assert report.filter(pl.col("kind") == "numeric")["mean_pairwise_agreement"].is_null().all()
    assert dict(report.select("kind", "distance").iter_rows()) == {
        "multilabel": "masi",
        "numeric": "interval",
        "ranking": "kendall",
        "pairwise": "pairwise",
        "spans": "span",
        "boxes": "box",
        "text": "edit",
    }
    assert (report["n_gold_judgments"] > 0).all() and report["gold_metric"].null_count() == 0

    cards = _table(data, "kind_scorecards")
    assert set(cards["project"]) == set(KIND_OF)
    spammers = cards.filter(pl.col("annotator_id").str.ends_with("annotator-0000"))
    assert spammers["flagged"].all(), spammers
    loose = cards.filter(pl.col("flag_reason").str.contains("loose boxes"))
    assert loose.height >= 1 and set(loose["kind"]) == {"boxes"}
    queue = _table(data, "kind_reannotation_queue")
    assert queue.columns[:4] == ["project", "day", "kind", "task_id"]
    # The queue is the adaptive-redundancy policy's: the demo's projects (3–5 votes) get more
    # votes where unsure and experts where unsure at the project's votes.
    assert set(queue["decision"]) <= {"needs_another_judgment", "escalate"}
    assert queue.height > 0 and queue["reason"].null_count() == 0
    requests = _table(data, "kind_task_requests")
    assert requests.height == queue.height
    assert set(requests["request"]) <= {"another_judgment", "expert_review"}
    assert requests["decision_id"].n_unique() == requests.height
    task_list = json.loads(
        (data / "lake" / "reports" / "quality_kinds" / f"day={DAY}" / "requests.json").read_text()
    )
    assert sorted(item["data"]["task_id"] for item in task_list) == sorted(requests["task_id"])
    # One list for every kind project: in project order, then task order.
    listed = [(item["data"]["project"], item["data"]["task_id"]) for item in task_list]
    assert listed == sorted(listed)

    checks = [
        c
        for c in result.get_asset_check_evaluations()
        if c.asset_key == AssetKey("kind_quality_report")
    ]
    assert {c.check_name for c in checks} == {
        "agreement_floor",
        "gold_accuracy_floor",
        "flagged_annotator_share",
        "row_counts_sane",
    }
    assert all(c.partition == DAY for c in checks)
    agreement = next(c for c in checks if c.check_name == "agreement_floor")
    assert agreement.passed, agreement.description
    assert set(agreement.metadata["value"].value) == set(KIND_OF)
    page = data / "lake" / "reports" / "quality_kinds" / f"day={DAY}" / "kinds.html"
    # Annotator ids are personal data: metadata, check results and the HTML show pseudonyms.
    raw_ids = set(cards["annotator_id"])
    shown = " ".join(
        str(e.materialization.metadata) for e in result.get_asset_materialization_events()
    )
    shown += " ".join(str(c.metadata) for c in checks) + page.read_text()
    assert "anon-" in page.read_text()
    assert not [i for i in raw_ids if i in shown]


def _snapshot(data, project):
    manifests = sorted((data / "lake" / "datasets" / project).glob("*/manifest.json"))
    assert len(manifests) == 1, manifests
    return manifests[0].parent, json.loads(manifests[0].read_text())


def test_every_kind_has_its_snapshot_in_the_trainer_format(with_kinds):
    _, curated, data = with_kinds
    event = curated.get_asset_materialization_events()[0].materialization
    assert event.metadata["dagster/row_count"].value == len(KIND_OF)
    for project, kind in KIND_OF.items():
        folder, manifest = _snapshot(data, project)
        assert manifest["kind"] == kind and manifest["rows"] > 0
        rows = pl.read_parquet(folder / "data.parquet")
        assert (
            rows.height == manifest["rows"] == len((folder / "data.jsonl").read_text().splitlines())
        )
        card = (folder / "card.md").read_text()
        assert f"Kind: **{kind}**" in card and "alpha" in card

    folder, _ = _snapshot(data, "detection")
    coco = COCO(str(folder / "coco.json"))
    assert len(coco.getImgIds()) == pl.read_parquet(folder / "data.parquet").height
    assert len(coco.getAnnIds()) > 0
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} <= {"car", "dog", "person"}
    assert coco.imgs[1]["width"] == 640
    for split in ("train", "validation", "test"):
        part = json.loads((folder / f"{split}.coco.json").read_text())
        assert part["categories"] == coco.dataset["categories"]
        assert all(image == coco.imgs[image["id"]] for image in part["images"])
        assert all(box == coco.anns[box["id"]] for box in part["annotations"])

    folder, manifest = _snapshot(data, "entities")
    conll = manifest["stats"]["conll"]
    dropped = conll["spans_dropped"]
    assert conll["spans_written"] + dropped["overlapping"] + dropped["without_token"] == sum(
        len(spans) for spans in pl.read_parquet(folder / "data.parquet")["spans"]
    )
    documents = 0
    previous = "O"
    for line in (folder / "conll.txt").read_text().splitlines():
        if not line:
            previous = "O"
            continue
        if line.startswith("-DOCSTART-"):
            documents += 1
            continue
        token, tag = line.rsplit(" ", 1)
        assert token and (tag == "O" or tag[:2] in ("B-", "I-")), line
        if tag.startswith("I-"):
            assert previous[2:] == tag[2:], line
        previous = tag
    assert documents == pl.read_parquet(folder / "data.parquet").height
    offsets = [json.loads(line) for line in (folder / "spans.jsonl").read_text().splitlines()]
    for document in offsets:
        for span in document["spans"]:
            assert document["text"][span["start"] : span["end"]] == span["text"]

    folder, _ = _snapshot(data, "preferences")
    pairs = [
        json.loads(line) for line in (folder / "preference_pairs.jsonl").read_text().splitlines()
    ]
    assert pairs
    for pair in pairs:
        assert pair["prompt"].startswith("prompt ") and pair["chosen"] != pair["rejected"]
        assert pair["chosen"].startswith("response ") and pair["rejected"].startswith("response ")


def test_the_categorical_path_ignores_the_other_kinds(with_kinds, without_kinds):
    _, _, data = with_kinds
    _, _, plain = without_kinds
    for table in (
        "aggregated_labels",
        "annotator_skill",
        "quality_report",
        "annotator_scorecards",
        "reannotation_queue",
        "annotator_pair_agreement",
    ):
        assert _table(data, table).height == _table(plain, table).height, table
    assert _table(data, "aggregated_labels").equals(_table(plain, "aggregated_labels"))
    # The plain day has no kind project: its kind tables are empty and its gates pass.
    assert _table(plain, "kind_quality_report").height == 0


def test_a_kind_projects_floors_in_project_json_hold_on_a_default_rebuild(with_kinds, monkeypatch):
    _, _, data = with_kinds
    # The other module fixture's graph may have pointed the data folder elsewhere since.
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
    settings = data / "landing" / "exports" / "ratings" / "project.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"quality_gates": {"min_alpha": 0.99}}))
    try:
        run = (
            build_definitions(profile="local")
            .resolve_job_def("quality_job")
            .execute_in_process(
                partition_key=DAY,
                instance=DagsterInstance.ephemeral(),
                run_config=QUIET,
                raise_on_error=False,
            )
        )
    finally:
        settings.unlink()
    assert run.success
    checks = {
        c.check_name: c
        for c in run.get_asset_check_evaluations()
        if c.asset_key == AssetKey("kind_quality_report")
    }
    agreement = checks["agreement_floor"]
    assert not agreement.passed and agreement.metadata["failing"].value == ["ratings"]
    assert agreement.description.startswith("ratings: alpha ")
    assert agreement.description.endswith("< floor 0.99 (project.json)")
    sources = agreement.metadata["floor_source"].value
    assert sources == {name: "project.json" if name == "ratings" else "default" for name in KIND_OF}


def test_every_kind_manifest_says_what_a_trainer_needs(with_kinds):
    _, _, data = with_kinds
    for project, kind in KIND_OF.items():
        folder, manifest = _snapshot(data, project)
        assert manifest["files"] == sorted(path.name for path in folder.iterdir()), project
        for split in ("train", "validation", "test"):
            assert f"{split}.parquet" in manifest["files"] and split in manifest["splits"]
        rows = pl.read_parquet(folder / "data.parquet")
        assert manifest["schema"] == {name: str(dtype) for name, dtype in rows.schema.items()}
        assert rows["payload"].null_count() == 0, project
        # The synthetic items hold no personal data: nothing is masked, and the share says so.
        assert manifest["stats"]["masked_share"] == 0.0, project
        assert manifest["stats"]["masked"] == {"email": 0, "phone": 0, "custom": 0}, project
        # The verdict the snapshot was built with (another test re-runs the gates since).
        [(day, verdict)] = manifest["source_days"].items()
        assert day == DAY and verdict["gates_passed"] is (DAY not in manifest["held_back_days"])
        assert verdict["gates_passed"] is (not verdict["failed_gates"])
        if kind in ("boxes", "spans", "multilabel"):
            assert manifest["label_set"], project
        else:
            assert manifest["label_set"] is None, project
    folder, manifest = _snapshot(data, "detection")
    categories = json.loads((folder / "coco.json").read_text())["categories"]
    assert [c["name"] for c in categories] == manifest["label_set"]


def test_a_project_with_controls_of_two_kinds_fails_its_aggregation_naming_them(tmp_path):
    # A Label Studio project with a choices and a rating control yields categorical and
    # numeric judgments of one project; no layer can hold both under one project name.
    day = date(2026, 11, 2)
    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t2", "t2"],
            "project": "mixed",
            "annotator_id": ["a1", "a2", "a1", "a2"],
            "kind": ["categorical", "numeric", "numeric", "categorical"],
            "control": ["sentiment", "quality", "quality", "sentiment"],
            "label": ["pos", None, None, "neg"],
            "value": [None, 4.0, 2.0, None],
        }
    )
    context = build_asset_context(partition_key=day.isoformat())
    with pytest.raises(MixedKindProjectError) as raised:
        list(
            kind_aggregated_labels(
                context,
                KindAggregationConfig(),
                judgments=judgments,
                gold_labels=pl.DataFrame(schema={"task_id": pl.String, "project": pl.String}),
                raw_tasks=pl.DataFrame(schema={"task_id": pl.String, "project": pl.String}),
                landing=LocalLandingZone(path=str(tmp_path)),
                lake=LocalLake(base_path=str(tmp_path / "lake")),
            )
        )
    assert str(raised.value).startswith(
        "project 'mixed' has judgments of 2 kinds on 2026-11-02: categorical: 2 judgments "
        "(control sentiment); numeric: 2 judgments (control quality). A project holds one kind"
    )
