"""A spans task's confidence is the probability that its whole span set is right.

Three annotators who each mark an entity somewhere else agree there is one: "no spans" is the
answer least supported, and the policy must ask again rather than call it done.
"""

import polars as pl
import pytest

from annotation_pipelines.aggregation.spans import SPAN, aggregate_spans
from annotation_pipelines.loop.kind_posterior import KIND_TARGETS, KindConfidence
from annotation_pipelines.loop.policy import DONE, PolicyOptions, decide

SPANS = pl.List(SPAN)


def span(start, end, label="PER"):
    return {"start": start, "end": end, "label": label}


def frame(rows):
    return pl.DataFrame(
        rows, schema={"task_id": pl.String, "annotator_id": pl.String, "spans": SPANS}, orient="row"
    )


def case(name, markups):
    return frame([(name, annotator, spans) for annotator, spans in markups.items()])


def project(*cases, agreed=30, annotators="abc"):
    """The cases beside `agreed` tasks the annotators mark alike (one entity each, and a few
    with none), so their reliabilities are learnt as in a real project."""
    rows = [
        (f"agreed{t}", a, [] if t % 10 == 0 else [span(0, 5, "ORG")])
        for t in range(agreed)
        for a in annotators
    ]
    return pl.concat([frame(rows), *cases])


ALL_DISAGREE = {"a": [span(0, 5)], "b": [span(10, 15)], "c": [span(20, 25)]}
TWO_AGREE = {"a": [span(0, 5)], "b": [span(0, 5)], "c": [span(20, 25)]}
ALL_AGREE = {name: [span(0, 5)] for name in "abc"}
NOBODY = {name: [] for name in "abc"}
ONE_MARKS = {"a": [span(0, 5)], "b": [], "c": []}


def labels_of(judgments, **options):
    labels = aggregate_spans(judgments, **options).labels
    return {row["task_id"]: row for row in labels.iter_rows(named=True)}


@pytest.mark.parametrize("method", ["dawid_skene", "majority"])
def test_every_annotator_marking_elsewhere_is_no_consensus_alone(method):
    got = labels_of(case("t", ALL_DISAGREE), method=method)["t"]
    assert got["spans"] == []
    assert got["confidence"] < 0.5


def test_every_annotator_marking_elsewhere_is_no_consensus_in_a_project():
    got = labels_of(project(case("t", ALL_DISAGREE)))["t"]
    assert got["spans"] == []
    assert got["confidence"] < 0.5


def test_five_annotators_marking_five_places_is_no_consensus():
    markups = {name: [span(10 * i, 10 * i + 5)] for i, name in enumerate("abcde")}
    got = labels_of(project(case("t", markups), annotators="abcde"))["t"]
    assert got["spans"] == []
    assert got["confidence"] < 0.5


@pytest.mark.parametrize("in_project", [False, True])
def test_a_set_is_no_more_certain_than_any_of_its_spans(in_project):
    judgments = case("t", TWO_AGREE)
    got = labels_of(project(judgments) if in_project else judgments)["t"]
    assert [(s["start"], s["end"]) for s in got["spans"]] == [(0, 5)]
    assert got["confidence"] <= got["spans"][0]["confidence"] + 1e-9


def test_confidence_orders_agreement():
    judgments = project(
        case("disagree", ALL_DISAGREE), case("two", TWO_AGREE), case("all", ALL_AGREE)
    )
    got = labels_of(judgments)
    assert got["disagree"]["confidence"] < got["two"]["confidence"] < got["all"]["confidence"]
    assert got["all"]["confidence"] >= KIND_TARGETS["spans"]


def test_unanimous_markups_stay_certain():
    got = labels_of(project(case("all", ALL_AGREE), case("none", NOBODY)))
    assert got["all"]["spans"][0]["start"] == 0 and got["all"]["confidence"] > 0.99
    assert got["none"]["spans"] == [] and got["none"]["confidence"] == pytest.approx(1.0)
    alone = labels_of(case("none", NOBODY))["none"]
    assert alone["spans"] == [] and alone["confidence"] == pytest.approx(1.0)


def test_one_marking_against_two_is_a_likely_empty_set():
    got = labels_of(project(case("t", ONE_MARKS)))["t"]
    assert got["spans"] == []
    assert 0.5 < got["confidence"] <= 1.0


def test_gold_task_stays_certain():
    judgments = case("t", ALL_DISAGREE)
    gold = pl.DataFrame(
        {"task_id": ["t"], "spans": [[]]}, schema={"task_id": pl.String, "spans": SPANS}
    )
    got = labels_of(judgments, gold=gold)["t"]
    assert got["spans"] == [] and got["confidence"] == pytest.approx(1.0)


def test_policy_asks_again_when_every_annotator_marked_elsewhere():
    judgments = project(case("disagree", ALL_DISAGREE), case("all", ALL_AGREE))
    options = PolicyOptions(min_votes=2, max_votes=9, target_confidence=KIND_TARGETS["spans"])
    decided = decide(KindConfidence(kind="spans")(judgments), options)
    decision = dict(zip(decided["task_id"], decided["decision"], strict=True))
    assert decision["disagree"] != DONE
    assert decision["all"] == DONE
