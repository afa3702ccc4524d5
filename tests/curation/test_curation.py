import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation_pipelines.curation import (
    assign_split,
    content_version,
    deduplicate,
    pseudonymize,
    select_tasks,
)


def _tasks(n, offset=0):
    return pl.DataFrame({"task_id": [f"task-{i}" for i in range(offset, offset + n)]})


def test_split_ratios_hold_and_are_stratified():
    frame = _tasks(60_000).with_columns(label=pl.Series(["a", "b", "c"] * 20_000))
    split = assign_split(frame, ratios={"train": 0.8, "validation": 0.1, "test": 0.1})
    shares = split["split"].value_counts(normalize=True)
    share = dict(shares.iter_rows())
    assert share["train"] == pytest.approx(0.8, abs=0.01)
    assert share["test"] == pytest.approx(0.1, abs=0.01)
    per_label = split.group_by("label").agg((pl.col("split") == "train").mean())
    assert per_label["split"].min() == pytest.approx(0.8, abs=0.015)


def test_adding_tasks_moves_no_existing_task():
    before = assign_split(_tasks(5_000))
    after = assign_split(pl.concat([_tasks(5_000), _tasks(5_000, offset=5_000)]))
    joined = before.join(after, on="task_id", suffix="_after")
    assert joined.height == 5_000
    assert (joined["split"] == joined["split_after"]).all()


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=50, unique=True))
@settings(max_examples=30, deadline=None)
def test_split_depends_on_the_task_alone(ids):
    frame = pl.DataFrame({"task_id": ids})
    forward = assign_split(frame)
    backward = assign_split(frame.reverse())
    assert forward.sort("task_id").equals(backward.sort("task_id"))


def test_content_version_ignores_row_order_and_sees_changes():
    frame = pl.DataFrame({"task_id": ["a", "b", "c"], "label": ["x", "y", "x"]})
    assert content_version(frame) == content_version(frame.reverse())
    assert content_version(frame) != content_version(frame.with_columns(label=pl.lit("x")))


def test_select_keeps_confident_non_gold():
    aggregated = pl.DataFrame(
        {
            "task_id": ["a", "b", "c", "d"],
            "label": ["x"] * 4,
            "confidence": [0.9, 0.5, 0.95, 0.99],
            "n_votes": [3, 3, 1, 3],
        }
    )
    gold = pl.DataFrame({"task_id": ["d"], "label": ["x"]})
    kept = select_tasks(aggregated, min_confidence=0.7, min_votes=2, gold=gold)
    assert kept["task_id"].to_list() == ["a"]
    with_gold = select_tasks(aggregated, gold=gold, include_gold=True)
    assert sorted(with_gold["task_id"]) == ["a", "d"]


def test_deduplicate_keeps_most_confident_and_provenance():
    frame = pl.DataFrame(
        {
            "task_id": ["t1", "t2", "t3"],
            "payload_hash": ["h", "h", "k"],
            "confidence": [0.8, 0.9, 0.7],
        }
    )
    result = deduplicate(frame).sort("payload_hash")
    assert result["task_id"].to_list() == ["t2", "t3"]
    assert result["duplicate_task_ids"].to_list() == [["t1", "t2"], ["t3"]]


def test_pseudonymize_is_keyed_and_stable():
    frame = pl.DataFrame({"annotator_id": ["alice", "bob", "alice"]})
    one = pseudonymize(frame, key=b"k1")
    assert one["annotator_id"][0] == one["annotator_id"][2] != one["annotator_id"][1]
    assert "alice" not in one["annotator_id"].to_list()
    assert pseudonymize(frame, key=b"k2")["annotator_id"][0] != one["annotator_id"][0]
    with pytest.raises(ValueError):
        pseudonymize(frame, key=b"")


def test_deduplicate_keeps_each_task_without_a_payload_hash():
    frame = pl.DataFrame(
        {
            "task_id": [f"t{i}" for i in range(5)],
            "payload_hash": [None, None, "h", "h", None],
            "confidence": [0.8, 0.9, 0.7, 0.6, 0.5],
        },
        schema_overrides={"payload_hash": pl.String},
    )
    result = deduplicate(frame).sort("task_id")
    assert result["task_id"].to_list() == ["t0", "t1", "t2", "t4"]
    assert result["duplicate_task_ids"].to_list() == [["t0"], ["t1"], ["t2", "t3"], ["t4"]]
