"""The synthetic projects of every non-categorical kind: canonical, seeded, with known truth."""

from datetime import date

import polars as pl
import pytest

from annotation_pipelines import schema
from annotation_pipelines.aggregation.boxes import gold_score as box_gold_score
from annotation_pipelines.aggregation.numeric import gold_score as numeric_gold_score
from annotation_pipelines.kinds import KINDS, VALUE_COLUMNS, value_missing
from annotation_pipelines.synthetic import KIND_PROJECTS, generate_workload

START = date(2026, 11, 9)


def _read(root, table):
    return pl.read_parquet(root / table / "**" / "*.parquet")


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    summary = generate_workload(
        root, judgments=3_000, start=START, days=2, seed=5, kinds=True, judgments_per_kind=2_000
    )
    return root, summary


def test_every_kind_lands_in_the_canonical_tables(workload):
    root, summary = workload
    judgments = _read(root, "judgments")
    assert dict(judgments.schema) == schema.JUDGMENTS
    assert dict(_read(root, "tasks").schema) == schema.RAW_TASKS
    assert dict(_read(root, "gold_labels").schema) == schema.GOLD_LABELS
    assert set(judgments["kind"]) == set(KINDS)
    assert summary.judgments == judgments.height
    for spec in KIND_PROJECTS:
        rows = judgments.filter(pl.col("project") == spec.name)
        assert set(rows["kind"]) == {spec.kind}
        assert 1_800 <= rows.height <= 2_200, spec.name
        assert summary.kind_projects[spec.name] == rows.height
        assert rows.filter(value_missing(spec.kind)).height == 0, spec.name
        # One judgment per (task, annotator): the raw layer's deduplication key.
        assert rows.select("task_id", "annotator_id").is_unique().all()
    assert judgments["judgment_id"].is_unique().all()


def test_truth_covers_every_task_and_gold_is_about_five_percent(workload):
    root, _ = workload
    tasks = _read(root, "tasks")
    truth = _read(root, "kind_truth")
    gold = _read(root, "gold_labels").filter(pl.col("kind") != "categorical")
    kind_tasks = tasks.filter(pl.col("project").is_in([s.name for s in KIND_PROJECTS]))
    assert truth["task_id"].sort().equals(kind_tasks["task_id"].sort())
    assert 0.02 < gold.height / kind_tasks.height < 0.09
    for spec in KIND_PROJECTS:
        columns = list(VALUE_COLUMNS[spec.kind])
        published = gold.filter(pl.col("kind") == spec.kind).select("task_id", *columns)
        known = truth.join(published.select("task_id"), on="task_id").select("task_id", *columns)
        assert published.sort("task_id").equals(known.sort("task_id")), spec.name


def test_categorical_output_is_identical_with_and_without_kinds(workload, tmp_path):
    root, _ = workload
    plain = generate_workload(tmp_path, judgments=3_000, start=START, days=2, seed=5)
    categorical = _read(root, "judgments").filter(pl.col("kind") == "categorical")
    assert categorical.sort("judgment_id").equals(_read(tmp_path, "judgments").sort("judgment_id"))
    assert plain.kind_projects == {}
    assert not (tmp_path / "kind_truth").exists()


def test_same_seed_same_kind_data(workload, tmp_path):
    root, _ = workload
    generate_workload(
        tmp_path, judgments=3_000, start=START, days=2, seed=5, kinds=True, judgments_per_kind=2_000
    )
    assert (
        _read(root, "judgments")
        .sort("judgment_id")
        .equals(_read(tmp_path, "judgments").sort("judgment_id"))
    )


def test_annotator_failure_modes_show_against_truth(workload):
    root, _ = workload
    judgments = _read(root, "judgments")
    truth = _read(root, "kind_truth")
    annotators = pl.read_parquet(root / "annotators.parquet")
    # Loose box drawers: lower IoU with the true boxes than careful annotators.
    boxes = judgments.filter(pl.col("kind") == "boxes").select("task_id", "annotator_id", "boxes")
    scored = box_gold_score(boxes, truth.select("task_id", "boxes")).join(
        annotators, on="annotator_id"
    )
    by_behaviour = dict(scored.group_by("behaviour").agg(pl.col("mean_iou").mean()).iter_rows())
    assert by_behaviour["loose_boxes"] < by_behaviour["reliable"] - 0.1
    # The harsh rater rates well below the truth on average.
    ratings = judgments.filter(pl.col("kind") == "numeric").select(
        "task_id", "annotator_id", "value"
    )
    errors = numeric_gold_score(ratings, truth.select("task_id", "value")).join(
        annotators, on="annotator_id"
    )
    assert errors.filter(pl.col("behaviour") == "harsh")["bias"].item() < -0.7
    # Pairwise and ranking items have a hidden quality.
    items = pl.read_parquet(root / "kind_items.parquet")
    assert set(items["project"]) == {"rankings", "preferences"}
