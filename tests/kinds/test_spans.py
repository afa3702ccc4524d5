import krippendorff
import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation.spans import SPAN, aggregate_spans, gold_score, segment
from annotation_pipelines.agreement.spans import span_f1, span_pair_distances, span_unitizing_alpha
from tests.kinds.synthetic_geo import texts

SPANS = pl.List(SPAN)


def span(start, end, label="PER"):
    return {"start": start, "end": end, "label": label}


def frame(rows):
    return pl.DataFrame(
        rows, schema={"task_id": pl.String, "annotator_id": pl.String, "spans": SPANS}, orient="row"
    )


def test_segmentation_cuts_at_every_boundary():
    judgments = frame([("t", "a", [span(0, 10)]), ("t", "b", [span(5, 15, "ORG")]), ("t", "c", [])])
    seg = segment(judgments)
    assert list(zip(seg.start, seg.end, strict=True)) == [(0, 5), (5, 10), (10, 15)]
    tags = sorted(zip(seg.tag_interval, seg.tag_annotator, seg.tag_class, strict=True))
    # Classes: 1 = ORG, 2 = PER (sorted); annotator codes a=0, b=1.
    assert tags == [(0, 0, 2), (1, 0, 2), (1, 1, 1), (2, 1, 1)]


def test_majority_is_character_level_with_ties_to_o():
    judgments = frame(
        [
            ("t", "a", [span(0, 10)]),
            ("t", "b", [span(5, 15)]),
            ("t", "c", [span(5, 10)]),
            ("t", "d", []),
        ]
    )
    result = aggregate_spans(judgments, method="majority")
    # Characters 0–5: 1 of 4 say PER; 5–10: 3 of 4; 10–15: 1 of 4.
    assert result.labels["spans"][0].to_list() == [
        {"start": 5, "end": 10, "label": "PER", "confidence": 0.75}
    ]
    # The set is right when every interval's class is: 0.75 for each of the three.
    assert result.labels["confidence"][0] == pytest.approx(0.75**3)


def test_adjacent_entities_of_one_label_stay_two_spans():
    judgments = frame([("t", name, [span(0, 4), span(5, 9)]) for name in "abc"])
    judgments = pl.concat([judgments, frame([("t", n, [span(0, 4), span(4, 9)]) for n in "de"])])
    result = aggregate_spans(judgments)
    got = [(s["start"], s["end"]) for s in result.labels["spans"][0].to_list()]
    assert got == [(0, 4), (4, 9)] or got == [(0, 4), (5, 9)]
    assert len(got) == 2


def test_dawid_skene_beats_majority_against_truth():
    _, truth, judgments = texts(400, seed=1)
    model = aggregate_spans(judgments)
    baseline = aggregate_spans(judgments, method="majority")
    assert model.converged
    score = gold_score(model.labels.with_columns(annotator_id=pl.lit("m")), truth).row(
        0, named=True
    )
    base = gold_score(baseline.labels.with_columns(annotator_id=pl.lit("m")), truth).row(
        0, named=True
    )
    assert score["exact_f1"] > 0.97
    assert score["exact_f1"] > base["exact_f1"] + 0.1
    reliability = dict(model.annotators.select("annotator_id", "reliability").iter_rows())
    assert reliability["good_1"] > reliability["confuser"] > reliability["spammer"]
    assert reliability["spammer"] < 0.1
    recall = dict(model.annotators.select("annotator_id", "recall").iter_rows())
    assert recall["misser"] < 0.5 < recall["good_2"]


def test_gold_clamps_its_tasks():
    _, truth, judgments = texts(60, seed=2)
    result = aggregate_spans(judgments, method="majority", gold=truth.head(10))
    head = result.labels.head(10).with_columns(annotator_id=pl.lit("m"))
    assert gold_score(head, truth.head(10))["exact_f1"][0] == 1.0


def test_gold_score_hand_computed():
    judgments = frame([("t", "a", [span(0, 5), span(10, 20, "ORG"), span(30, 32)])])
    gold = pl.DataFrame(
        {"task_id": ["t"], "spans": [[span(0, 5), span(12, 18, "ORG"), span(40, 45)]]},
        schema={"task_id": pl.String, "spans": SPANS},
    )
    row = gold_score(judgments, gold).row(0, named=True)
    assert row["exact_precision"] == pytest.approx(1 / 3)
    assert row["exact_recall"] == pytest.approx(1 / 3)
    assert row["overlap_f1"] == pytest.approx(2 / 3)


def test_span_f1_and_distances_hand_computed():
    a = pl.Series([[span(0, 5), span(10, 20, "ORG")], [], [span(0, 5)], [span(0, 5)]], dtype=SPANS)
    b = pl.Series(
        [[span(0, 5), span(12, 18, "ORG"), span(30, 35)], [], [], [span(2, 4, "ORG")]], dtype=SPANS
    )
    # Pair 0 overlap: precision 2/2, recall 2/3 → F1 0.8; exact: 2·1 / (2 + 3).
    assert span_f1(a, b) == pytest.approx([0.8, 1.0, 0.0, 0.0])
    assert span_f1(a, b, match="exact") == pytest.approx([0.4, 1.0, 0.0, 0.0])
    assert span_pair_distances(a, b) == pytest.approx([0.2, 0.0, 1.0, 1.0])


def test_character_alpha_equals_krippendorff_package_on_characters():
    _, _, judgments = texts(40, seed=3)
    codes = {"PER": 1, "ORG": 2, "LOC": 3}
    annotators = sorted(judgments["annotator_id"].unique())
    spans = {
        (row["task_id"], row["annotator_id"]): row["spans"]
        for row in judgments.iter_rows(named=True)
    }
    columns = []
    for task in sorted(judgments["task_id"].unique()):
        every = [s for name in annotators for s in spans[task, name]]
        for character in range(min(s["start"] for s in every), max(s["end"] for s in every)):
            column = []
            for name in annotators:
                covering = [
                    codes[s["label"]]
                    for s in spans[task, name]
                    if s["start"] <= character < s["end"]
                ]
                column.append(min(covering, default=0))
            columns.append(column)
    expected = krippendorff.alpha(
        reliability_data=np.array(columns).T, level_of_measurement="nominal"
    )
    assert span_unitizing_alpha(judgments) == pytest.approx(expected, abs=1e-9)


def test_bad_offsets_are_named():
    judgments = frame([("t", "a", [span(0, 5), {"start": None, "end": 3, "label": "PER"}])])
    with pytest.raises(ValueError, match=r"row 0 \(task_id 't'\), field spans: span 1"):
        aggregate_spans(judgments)


def test_token_mode_snaps_to_whitespace_tokens_and_weighs_tokens():
    text = "Ada Lovelace met Bob  in Paris"
    judgments = frame(
        [
            ("t", "a", [span(1, 6)]),  # inside "Ada" … inside "Lovelace" → 0–12
            ("t", "b", [span(0, 12), span(20, 22, "LOC")]),  # 20–22 is whitespace: dropped
            ("t", "c", [span(17, 19)]),  # part of "Bob" → 17–20
        ]
    )
    texts = pl.DataFrame({"task_id": ["t"], "text": [text]})
    seg = segment(judgments, texts=texts)
    assert list(zip(seg.start, seg.end, seg.tokens, strict=True)) == [
        (0, 12, 2),
        (12, 17, 1),
        (17, 20, 1),
    ]
    result = aggregate_spans(judgments, method="majority", texts=texts)
    assert result.labels["spans"][0].to_list() == [
        {"start": 0, "end": 12, "label": "PER", "confidence": pytest.approx(2 / 3)}
    ]
    # Intervals: "Ada Lovelace" (PER at 2/3), "met" (O at 1), "Bob" (O at 2/3).
    assert result.labels["confidence"][0] == pytest.approx(2 / 3 * 1 * 2 / 3)
    with pytest.raises(ValueError, match="no text for task_id 't'"):
        aggregate_spans(judgments, texts=texts.clear())


NESTED = [span(0, 10, "ORG"), span(2, 5, "PER"), span(4, 8, "LOC")]


@pytest.mark.parametrize("method", ["dawid_skene", "majority"])
def test_nested_spans_everyone_drew_come_back_whole(method):
    judgments = frame([("t1", name, NESTED) for name in "abc"])
    result = aggregate_spans(judgments, method=method)
    got = result.labels["spans"][0].to_list()
    assert [(s["start"], s["end"], s["label"]) for s in got] == [
        (0, 10, "ORG"),
        (2, 5, "PER"),
        (4, 8, "LOC"),
    ]
    assert min(s["confidence"] for s in got) > 0.9
    assert result.labels["confidence"][0] > 0.9


def test_one_annotators_overlapping_spans_of_one_label_merge():
    judgments = frame(
        [
            ("t", "a", [span(0, 6), span(4, 10)]),
            ("t", "b", [span(0, 10)]),
            ("t", "c", [span(0, 10)]),
        ]
    )
    got = aggregate_spans(judgments).labels["spans"][0].to_list()
    assert [(s["start"], s["end"], s["label"]) for s in got] == [(0, 10, "PER")]


def test_nested_spans_live_fit_keeps_every_layer():
    from annotation_pipelines.aggregation.spans import fit_spans

    judgments = frame([("t1", name, NESTED) for name in "abc"])
    _, carried = fit_spans(judgments)
    refit, _ = fit_spans(judgments, confusion=carried)
    got = refit.labels["spans"][0].to_list()
    assert [(s["start"], s["end"], s["label"]) for s in got] == [
        (0, 10, "ORG"),
        (2, 5, "PER"),
        (4, 8, "LOC"),
    ]
