"""The default method's confidence is a calibrated probability; the method's own stays reachable."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation import aggregate, fit
from annotation_pipelines.aggregation.calibration import expected_calibration_error
from annotation_pipelines.aggregation.registry import METHODS
from tests.aggregation.test_properties import TOY
from tests.realdata import ALL_CROWD, accuracy, load_crowd

# Dawid–Skene's accuracy before calibration existed (README's table): labels must not move.
ACCURACY_BEFORE = {"d_product": 0.9397, "d_sentiment": 0.9600, "duck": 0.8889, "rte": 0.9275}
TARGET_MEAN_ECE = 0.05


def _calibration_on(dataset: str, method: str) -> tuple[float, float, float]:
    """(accuracy, ECE of `confidence`, ECE of `raw_confidence`) against the truth file."""
    judgments, truth = load_crowd(dataset)
    result = fit(judgments, method)
    joined = truth.join(result.labels, on="task_id", how="left", suffix="_predicted")
    correct = (joined["label"] == joined["label_predicted"]).fill_null(False).to_numpy()
    return (
        accuracy(result.labels, truth),
        expected_calibration_error(joined["confidence"].fill_null(0).to_numpy(), correct),
        expected_calibration_error(joined["raw_confidence"].fill_null(0).to_numpy(), correct),
    )


@pytest.mark.realdata
def test_default_method_is_calibrated_on_every_shared_set() -> None:
    # Measured (ECE calibrated / raw): D_Product .0260/.0300, D_PosSent .0158/.0380,
    # Duck .0500/.0972, RTE .0317/.0683; mean .0309 against .0584 raw.
    figures = {dataset: _calibration_on(dataset, "dawid_skene") for dataset in ALL_CROWD}
    for dataset, (accuracy_now, calibrated, raw) in figures.items():
        assert accuracy_now >= ACCURACY_BEFORE[dataset] - 5e-5, (dataset, accuracy_now)
        assert calibrated < raw, (dataset, calibrated, raw)
    mean = float(np.mean([calibrated for _, calibrated, _ in figures.values()]))
    assert mean <= TARGET_MEAN_ECE, figures


@pytest.mark.realdata
def test_auto_is_calibrated_too() -> None:
    judgments, truth = load_crowd("duck")
    result = fit(judgments, "auto")
    joined = truth.join(result.labels, on="task_id", suffix="_predicted")
    correct = (joined["label"] == joined["label_predicted"]).to_numpy()
    assert expected_calibration_error(joined["confidence"].to_numpy(), correct) < 0.08
    assert accuracy(result.labels, truth) >= ACCURACY_BEFORE["duck"] - 5e-5


def test_two_against_one_in_a_five_task_file_is_not_certain() -> None:
    tasks = [f"t{index}" for index in range(1, 6)]
    answers = ["yyn", "yyy", "nny", "nnn", "yyn"]
    frame = pl.DataFrame(
        [
            (task, annotator, label)
            for task, votes in zip(tasks, answers, strict=True)
            for annotator, label in zip("abc", votes, strict=True)
        ],
        schema=["task_id", "annotator_id", "label"],
        orient="row",
        schema_overrides={"label": pl.String},
    )
    result = fit(frame, "dawid_skene")
    split = result.labels.filter(pl.col("task_id").is_in(["t1", "t3", "t5"]))
    # The maximum-likelihood fit states certainty; three tasks cannot support it.
    assert split["raw_confidence"].min() > 0.999
    assert split["confidence"].max() < 0.95
    assert split["confidence"].min() > 0.5
    unanimous = result.labels.filter(pl.col("task_id").is_in(["t2", "t4"]))
    assert (unanimous["confidence"] < 0.999).all()


def test_toy_labels_unchanged_and_raw_posterior_reachable() -> None:
    result = fit(TOY, "dawid_skene")
    posterior = result.labels.unnest("posterior")
    chosen = np.where(posterior["label"] == "yes", posterior["yes"], posterior["no"])
    assert result.labels["raw_confidence"].to_numpy() == pytest.approx(chosen)
    assert (result.labels["confidence"] < result.labels["raw_confidence"] + 1e-12).all()
    assert 0.05 <= result.temperature <= 1.0


def test_gold_tasks_keep_confidence_one() -> None:
    gold = pl.DataFrame({"task_id": ["t1", "t3"], "label": ["yes", "no"]})
    labels = fit(TOY, "dawid_skene", gold=gold).labels.filter(pl.col("task_id").is_in(["t1", "t3"]))
    assert labels["confidence"].to_list() == [1.0, 1.0]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_gold_task_is_its_gold_label_at_confidence_one_with_every_method(method: str) -> None:
    # t3's votes say no 3 to 2; gold says yes. Methods that do not fit gold (majority vote,
    # wawa, zero-based skill) wrote the crowd's "no" at confidence 0.0: a label the result
    # itself gave no chance, where the answer was known, and `replay` kept it as done.
    gold = pl.DataFrame({"task_id": ["t3"], "label": ["yes"]})
    labels = fit(TOY, method, gold=gold).labels.filter(pl.col("task_id") == "t3")
    assert labels.select("label", "confidence").row(0) == ("yes", 1.0)


def test_aggregate_contract_carries_the_calibrated_confidence() -> None:
    out = aggregate(TOY, "dawid_skene")
    full = fit(TOY, "dawid_skene").labels
    assert out.columns == ["task_id", "label", "confidence"]
    assert out["confidence"].to_list() == full["confidence"].to_list()


def test_expected_calibration_error_by_hand() -> None:
    # Bin [0.9, 1.0]: confidences .95 .95, one right → |.95 − .5| · 2/4; bin [0.6, 0.7): .65 .65,
    # both right → |.65 − 1| · 2/4. Total .225 + .175 = .4.
    confidence = np.array([0.95, 0.95, 0.65, 0.65])
    correct = np.array([True, False, True, True])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.4)
    assert expected_calibration_error(np.array([1.0]), np.array([True])) == 0.0
    with pytest.raises(ValueError, match="differ"):
        expected_calibration_error(np.array([0.5]), np.array([True, False]))


def _frame(answers: dict[str, str], annotators: str = "abc") -> pl.DataFrame:
    """Judgments from {task: one label per annotator}, labels separated by commas."""
    return pl.DataFrame(
        [
            (task, annotator, label)
            for task, votes in answers.items()
            for annotator, label in zip(annotators, votes.split(","), strict=False)
        ],
        schema=["task_id", "annotator_id", "label"],
        orient="row",
    )


TINY = {"t1": "cat,cat,dog", "t2": "dog,dog,dog", "t3": "cat,bird,cat"}


def _confidences(frame: pl.DataFrame, method: str) -> dict[str, tuple[str, float]]:
    labels = fit(frame, method).labels
    return {
        task: (label, confidence)
        for task, label, confidence in labels.select("task_id", "label", "confidence").iter_rows()
    }


@pytest.mark.parametrize("method", ["dawid_skene", "majority_vote", "auto"])
def test_tiny_file_unanimous_task_is_the_surest(method: str) -> None:
    frame = _frame(TINY)
    out = _confidences(frame, method)
    k = 3
    unanimous = out["t2"][1]
    assert out["t2"][0] == "dog"
    assert unanimous > 1 / k + 0.1, out
    assert unanimous > out["t1"][1], out
    assert unanimous > out["t3"][1], out


@pytest.mark.parametrize("method", ["dawid_skene", "majority_vote"])
def test_tiny_file_no_plurality_label_below_chance(method: str) -> None:
    frame = _frame(TINY)
    majority = {task: label for task, (label, _) in _confidences(frame, "majority_vote").items()}
    raw = {
        task: label
        for task, label in fit(frame, method).labels.select("task_id", "label").iter_rows()
    }
    for task, (label, confidence) in _confidences(frame, method).items():
        assert label == raw[task]  # calibration never changes the method's label
        if label == majority[task]:
            assert confidence > 1 / 3, (task, label, confidence)


def test_tiny_file_calibration_keeps_labels_and_is_honest_about_a_degenerate_fit() -> None:
    result = fit(_frame(TINY), "dawid_skene")
    labels = result.labels.unnest("posterior")
    # Whatever Dawid–Skene's three-task fit calls t3, two of three votes say cat: the
    # calibrated probability of the reported label must not exceed that of cat there.
    t3 = labels.filter(pl.col("task_id") == "t3").row(0, named=True)
    if t3["label"] != "cat":
        assert t3["confidence"] < 0.5
    # The 2-of-3 tasks are less sure than the unanimous one, and nobody is certain.
    assert labels["confidence"].max() < 0.95


@pytest.mark.parametrize(
    "answers",
    [
        {"t1": "cat,cat,dog"},
        {"t1": "dog,dog,dog"},
        {"t1": "cat,cat,dog", "t2": "dog,dog,dog"},
        {"t1": "yes,yes,no", "t2": "no,no,no"},
    ],
)
@pytest.mark.parametrize("method", ["dawid_skene", "majority_vote"])
def test_one_and_two_task_files_are_sensible(answers: dict[str, str], method: str) -> None:
    frame = _frame(answers)
    k = frame["label"].n_unique()
    out = _confidences(frame, method)
    votes = {task: value.split(",") for task, value in answers.items()}
    for task, (label, confidence) in out.items():
        assert 0.0 < confidence <= 1.0
        assert k == 1 or confidence < 1.0, out
        share = votes[task].count(label) / len(votes[task])
        if share > 0.5 and k > 1:
            assert confidence > 1 / k, (task, out)
        if share == 1.0:
            others = [c for other, (_, c) in out.items() if other != task]
            assert all(confidence >= c - 1e-12 for c in others), out


@pytest.mark.parametrize("method", ["dawid_skene", "majority_vote"])
def test_single_annotator(method: str) -> None:
    frame = _frame({"t1": "cat", "t2": "dog", "t3": "cat", "t4": "bird"}, annotators="a")
    out = _confidences(frame, method)
    assert [label for label, _ in out.values()] == ["cat", "dog", "cat", "bird"]
    for _, confidence in out.values():
        assert 1 / 3 < confidence < 1.0, out


def test_single_class_is_certain() -> None:
    frame = _frame({"t1": "cat,cat,cat", "t2": "cat,cat"}, annotators="abc")
    out = _confidences(frame, "dawid_skene")
    assert out == {"t1": ("cat", 1.0), "t2": ("cat", 1.0)}


def test_lone_votes_are_not_certain() -> None:
    # 300 tasks with one vote each from 30 annotators who are right 60 % of the time: nothing
    # says how often an annotator is right, so a vote is worth the prior's "annotators beat
    # chance" (2/3 here), not the method's echo of the vote itself (it read 0.997).
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 300)
    labels = np.where(rng.random(300) < 0.6, truth, 1 - truth)
    frame = pl.DataFrame(
        {
            "task_id": [f"t{index}" for index in range(300)],
            "annotator_id": [f"w{a}" for a in rng.integers(0, 30, 300)],
            "label": np.array(["no", "yes"])[labels],
        }
    )
    confidence = fit(frame, "dawid_skene").labels["confidence"]
    assert confidence.max() < 0.75, confidence.describe()


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", ALL_CROWD)
def test_one_vote_per_task_is_not_read_as_certain(dataset: str) -> None:
    # Measured (first vote of each task in file order; accuracy / mean confidence / ECE):
    # D_Product .797/.752/.081, D_PosSent .569/.667/.098, Duck .546/.794/.415,
    # RTE .800/.667/.133; before, every vote read 0.977-1.000 (ECE .197-.452).
    judgments, truth = load_crowd(dataset)
    first = judgments.filter(pl.int_range(pl.len()).over("task_id") < 1)
    result = fit(first, "dawid_skene").labels
    joined = truth.join(result, on="task_id", suffix="_predicted")
    correct = (joined["label"] == joined["label_predicted"]).to_numpy()
    assert joined["confidence"].mean() < 0.8, dataset
    assert expected_calibration_error(joined["confidence"].to_numpy(), correct) < 0.42, dataset


@pytest.mark.parametrize("n_classes", [200, 2000])
def test_a_wide_label_set_is_calibrated_like_a_narrow_one(n_classes: int) -> None:
    # 400 tasks, 3 votes each from 30 annotators who are right 80 % of the time, the wrong
    # answers spread over the other classes. Before, the pooled prior's K + 1 pseudo-counts per
    # class put a share of 2 / (K + 1) on the right answer, and each class's few votes could not
    # outweigh it: majority vote was right on 93.75 % of the tasks with a mean confidence of
    # 0.032 at 2,000 classes (ECE .91; 0.389 and .55 at 200), three unanimous votes reading
    # 0.05 on average. Now ECE .002 (.009 at 200).
    rng = np.random.default_rng(5)
    truth = rng.integers(0, n_classes, 400)
    rows = []
    for task, true_class in enumerate(truth):
        for annotator in rng.choice(30, 3, replace=False):
            answer = true_class if rng.random() < 0.8 else rng.integers(0, n_classes)
            rows.append((f"t{task}", f"w{annotator}", f"L{answer}"))
    frame = pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")
    labels = fit(frame, "majority_vote").labels
    expected = pl.Series([f"L{true_class}" for true_class in truth])
    correct = (labels["label"] == expected).to_numpy()
    assert correct.mean() > 0.9
    confidence = labels["confidence"].to_numpy()
    assert expected_calibration_error(confidence, correct) < 0.05
    unanimous = (frame.group_by("task_id", maintain_order=True).agg(pl.col("label").n_unique()))[
        "label"
    ].to_numpy() == 1
    assert confidence[unanimous].min() > 0.9
