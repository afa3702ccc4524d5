"""The numeric kind: the bias-and-noise model against the per-task mean on known truth."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation.numeric import (
    aggregate_numeric,
    aggregate_numeric_kind,
    gold_score,
)
from annotation_pipelines.scale import RatingScale


def _biased(seed: int = 0, n_tasks: int = 400) -> tuple[pl.DataFrame, np.ndarray, dict]:
    """Six raters: two harsh, one lenient, one very noisy; each task rated by four."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(3.0, 1.0, n_tasks)
    bias = {"a": -1.0, "b": -0.5, "c": 0.0, "d": 0.0, "e": 1.5, "f": 0.0}
    noise = {"a": 0.2, "b": 0.2, "c": 0.2, "d": 0.2, "e": 0.2, "f": 2.0}
    names = list(bias)
    rows = []
    for task in range(n_tasks):
        for name in rng.choice(names, size=4, replace=False):
            value = truth[task] + bias[name] + rng.normal(0, noise[name])
            rows.append((f"t{task}", name, value))
    frame = pl.DataFrame(rows, schema=["task_id", "annotator_id", "value"], orient="row")
    return frame, truth, bias


def test_bias_noise_beats_the_mean_and_recovers_annotators() -> None:
    judgments, truth, bias = _biased()
    ours = aggregate_numeric_kind(judgments)
    mean = aggregate_numeric_kind(judgments, method="mean")
    assert ours.converged and ours.iterations > 1
    assert ours.labels.columns == ["task_id", "value", "lo", "hi", "confidence", "n_votes"]
    order = np.array([int(t[1:]) for t in ours.labels["task_id"]])
    # The truth scale is the median rater's (by judgments): compare without that offset.
    offset = np.median([bias[name] for name in judgments["annotator_id"]])
    error_ours = np.abs(ours.labels["value"].to_numpy() - offset - truth[order]).mean()
    error_mean = np.abs(mean.labels["value"].to_numpy() - offset - truth[order]).mean()
    assert error_ours < 0.6 * error_mean
    annotators = {row["annotator_id"]: row for row in ours.annotators.iter_rows(named=True)}
    for name, value in bias.items():
        assert annotators[name]["bias"] - (value - offset) == pytest.approx(0.0, abs=0.15), name
    assert annotators["f"]["noise_sd"] > 1.5
    assert annotators["f"]["reliability"] < annotators["a"]["reliability"] / 20
    # Intervals cover the truth about as often as they should.
    lo = ours.labels["lo"].to_numpy() - offset
    hi = ours.labels["hi"].to_numpy() - offset
    coverage = np.mean((lo <= truth[order]) & (truth[order] <= hi))
    assert 0.85 < coverage <= 1.0
    assert ((ours.labels["confidence"] >= 0) & (ours.labels["confidence"] <= 1)).all()


def test_gold_anchors_the_scale() -> None:
    judgments, truth, _ = _biased(seed=1)
    gold = pl.DataFrame({"task_id": [f"t{i}" for i in range(50)], "value": truth[:50]})
    fitted = aggregate_numeric_kind(judgments, gold=gold)
    annotators = {row["annotator_id"]: row for row in fitted.annotators.iter_rows(named=True)}
    assert annotators["a"]["bias"] == pytest.approx(-1.0, abs=0.15)
    assert annotators["e"]["bias"] == pytest.approx(1.5, abs=0.15)
    values = dict(zip(fitted.labels["task_id"], fitted.labels["value"], strict=True))
    assert values["t0"] == pytest.approx(truth[0])
    free = np.array([values[f"t{i}"] for i in range(50, 400)])
    assert np.abs(free - truth[50:]).mean() < 0.25


def test_few_ratings_are_shrunk_toward_the_crowd() -> None:
    judgments, _, _ = _biased(seed=2)
    extra = pl.DataFrame({"task_id": ["t0"], "annotator_id": ["newcomer"], "value": [100.0]})
    fitted = aggregate_numeric_kind(pl.concat([judgments, extra]), prior_strength=5.0)
    newcomer = fitted.annotators.filter(pl.col("annotator_id") == "newcomer").row(0, named=True)
    assert newcomer["n_judgments"] == 1
    # With one rating the bias is pulled to a sixth of the raw residual (k = 5 pseudo-ratings).
    assert newcomer["bias"] < 100.0 / 5


def test_plain_statistics_keep_the_old_intervals() -> None:
    judgments, _, _ = _biased(seed=3, n_tasks=30)
    kind = aggregate_numeric_kind(judgments, method="median")
    old = aggregate_numeric(
        judgments.select("task_id", pl.col("value").alias("label")), statistic="median"
    )
    assert kind.labels["value"].to_list() == old["value"].to_list()
    assert kind.labels["lo"].to_list() == old["low"].to_list()
    assert kind.labels["hi"].to_list() == old["high"].to_list()


def test_gold_score_is_absolute_error() -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["1", "1", "2", "2"],
            "annotator_id": ["a", "b", "a", "b"],
            "value": [1.0, 4.0, 2.0, 2.0],
        }
    )
    gold = pl.DataFrame({"task_id": ["1", "2"], "value": [2.0, 2.0]})
    scores = gold_score(judgments, gold)
    assert scores.to_dicts() == [
        {"annotator_id": "a", "n_gold": 2, "mean_absolute_error": 0.5, "bias": -0.5},
        {"annotator_id": "b", "n_gold": 2, "mean_absolute_error": 1.0, "bias": 1.0},
    ]


def test_unknown_method_and_missing_column_are_named() -> None:
    judgments, _, _ = _biased(n_tasks=5)
    with pytest.raises(ValueError, match="unknown method 'mode'"):
        aggregate_numeric_kind(judgments, method="mode")
    with pytest.raises(ValueError, match="missing column"):
        aggregate_numeric_kind(judgments.drop("value"))


def test_one_answer_far_off_the_scale_does_not_make_the_other_tasks_confident() -> None:
    """Confidence is 1 − interval width / the scale's range: a typo of 500 on a 1–5 scale once
    stretched the range a hundredfold and every split task read as nearly certain."""
    split = [
        (f"t{i}", rater, value)
        for i in range(6)
        for rater, value in zip("abc", (2, 3, 5), strict=True)
    ]

    def confidence(stray: float) -> list[float]:
        rows = [*split, ("t9", "d", stray)]
        frame = pl.DataFrame(rows, schema=["task_id", "annotator_id", "value"], orient="row")
        labels = aggregate_numeric_kind(frame.with_columns(pl.col("value").cast(pl.Float64)))
        return labels.labels.filter(pl.col("task_id") != "t9")["confidence"].to_list()

    assert confidence(500.0) == confidence(5.0)
    assert max(confidence(500.0)) < 0.5


def test_answers_whose_squares_overflow_are_fitted_without_nan() -> None:
    frame = pl.DataFrame(
        {
            "task_id": ["a", "a", "a", "b", "b", "b"],
            "annotator_id": ["x", "y", "z"] * 2,
            "value": [1e160, 2e160, 3e160, 4e160, 5e160, 6e160],
        }
    )
    labels = aggregate_numeric_kind(frame).labels
    scaled = aggregate_numeric_kind(frame.with_columns(pl.col("value") / 1e160)).labels
    # The model is the same on any scale: the fit scales back exactly.
    np.testing.assert_allclose(labels["value"].to_numpy() / 1e160, scaled["value"], rtol=1e-9)
    np.testing.assert_allclose(labels["confidence"], scaled["confidence"], rtol=1e-9)
    assert labels["lo"].is_finite().all() and labels["hi"].is_finite().all()


def test_one_answer_far_off_the_scale_does_not_move_the_other_tasks() -> None:
    judgments, _, _ = _biased(n_tasks=100)
    clean = aggregate_numeric_kind(judgments).labels
    typed = judgments.with_columns(
        value=pl.when(pl.int_range(pl.len()) == 0).then(1e4).otherwise("value")
    )
    labels = aggregate_numeric_kind(typed).labels
    others = clean.join(labels, on="task_id", suffix="_typo").filter(pl.col("task_id") != "t0")
    shift = (others["value"] - others["value_typo"]).abs()
    assert shift.median() < 0.05, shift.median()
    assert labels["confidence"].mean() > 0.9 * clean["confidence"].mean()


def test_equal_answers_past_the_scaling_threshold_are_fitted() -> None:
    # Centred, they are all zero: a scale taken from their spread was log2(0).
    frame = pl.DataFrame(
        {"task_id": ["a", "a", "b"], "annotator_id": ["x", "y", "x"], "value": [2.5e6] * 3}
    )
    labels = aggregate_numeric_kind(frame).labels
    assert labels["value"].to_list() == [2.5e6, 2.5e6]


# Three tasks, one answer typed far off a 1-5 scale: the smallest project where it matters.
FEW = [
    ("t1", "a1", 3.0),
    ("t1", "a2", 4.0),
    ("t1", "a3", 3.0),
    ("t2", "a1", 5.0),
    ("t2", "a2", 5.0),
    ("t2", "a3", 4.0),
    ("t3", "a1", 2.0),
    ("t3", "a2", 1e200),
    ("t3", "a3", 2.0),
]


def _few(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["task_id", "annotator_id", "value"], orient="row")


def test_a_declared_scale_is_the_range_confidence_reads_and_bounds_the_values() -> None:
    on_scale = _few([row for row in FEW if row[2] != 1e200])
    estimated = aggregate_numeric_kind(on_scale).labels
    declared = aggregate_numeric_kind(on_scale, scale=RatingScale(1, 5, 1)).labels
    # The answers span 2-5; the scale 1-5: the same intervals read against a wider range.
    assert ((estimated["confidence"] > 0) & (estimated["confidence"] < 1)).all()
    np.testing.assert_allclose(
        1 - declared["confidence"], (1 - estimated["confidence"]) * 3 / 4, rtol=1e-12
    )
    assert (declared["confidence"] > estimated["confidence"]).all()
    np.testing.assert_allclose(declared["value"], estimated["value"], rtol=1e-12)
    assert declared["hi"].max() <= 5.0 and declared["lo"].min() >= 1.0
    for method in ("mean", "median", "trimmed_mean"):
        plain = aggregate_numeric_kind(on_scale, method=method, scale=RatingScale(1, 5))
        assert plain.labels["hi"].max() <= 5.0 and plain.labels["lo"].min() >= 1.0


def test_the_few_tasks_with_one_answer_far_off_get_sensible_values() -> None:
    # Without a scale the 1e200 is set aside as a gross error; with one it is an error.
    unchecked = aggregate_numeric_kind(_few(FEW))
    assert unchecked.set_aside is not None and unchecked.set_aside["row"].to_list() == [7]
    np.testing.assert_allclose(
        unchecked.labels.sort("task_id")["value"], [3.33, 4.67, 2.0], atol=0.35
    )
    assert unchecked.labels["confidence"].min() > 0.5
    scale = RatingScale(1, 5, 1)
    with pytest.raises(ValueError, match=r"judgments: row 7 column 'value': 1e\+200 is outside"):
        aggregate_numeric_kind(_few(FEW), scale=scale)
    frame = _few(FEW)
    kept = frame.filter(~scale.outside(pl.col("value")))
    labels = aggregate_numeric_kind(kept, scale=scale).labels.sort("task_id")
    np.testing.assert_allclose(labels["value"], [3.33, 4.67, 2.0], atol=0.35)
    assert labels["confidence"].min() > 0.5
    gold = pl.DataFrame({"task_id": ["t1"], "value": [7.0]})
    with pytest.raises(ValueError, match=r"gold: row 0 column 'value': 7\.0 is outside"):
        aggregate_numeric_kind(kept, gold=gold, scale=scale)


# One pasted id among 1-5 ratings (the smallest case: every task rated twice).
PASTED = [
    ("t1", "a", 3.0),
    ("t1", "b", 1e17),
    ("t2", "a", 1.0),
    ("t2", "b", 2.0),
    ("t3", "a", 4.0),
    ("t3", "b", 5.0),
    ("t4", "a", 4.0),
    ("t4", "c", 5.0),
]


def test_a_pasted_id_is_set_aside_and_moves_no_other_task() -> None:
    fitted = aggregate_numeric_kind(_few(PASTED))
    values = dict(zip(fitted.labels["task_id"], fitted.labels["value"], strict=True))
    # The mean and median of the other tasks' answers: 1.5, 4.5, 4.5.
    for task, expected in (("t2", 1.5), ("t3", 4.5), ("t4", 4.5)):
        assert values[task] == pytest.approx(expected, abs=0.5), (task, values)
    assert values["t1"] == pytest.approx(3.0, abs=0.5)
    assert fitted.labels["confidence"].min() > 0.0
    assert fitted.labels["hi"].max() <= 5.0 and fitted.labels["lo"].min() >= 1.0
    assert fitted.annotators["bias"].abs().max() < 2.0
    assert fitted.set_aside is not None
    assert fitted.set_aside.to_dicts() == [
        {"row": 1, "task_id": "t1", "annotator_id": "b", "value": 1e17}
    ]


def _ratings(seed: int = 0, n_tasks: int = 50) -> pl.DataFrame:
    """1-5 ratings by eight raters, three per task, some harsh or lenient."""
    rng = np.random.default_rng(seed)
    bias = dict(zip("abcdefgh", (-1.0, -0.5, 0.0, 0.0, 0.0, 0.5, 1.0, 0.0), strict=True))
    rows = []
    for task in range(n_tasks):
        truth = rng.uniform(1.5, 4.5)
        for name in rng.choice(list(bias), size=3, replace=False):
            value = np.clip(np.round(truth + bias[name] + rng.normal(0, 0.6)), 1, 5)
            rows.append((f"t{task}", str(name), float(value)))
    return _few(rows)


def test_a_rating_typo_moves_no_task_it_is_not_in() -> None:
    clean = _ratings()
    typed = clean.with_columns(
        value=pl.when(pl.int_range(pl.len()) == 0).then(55.0).otherwise("value")
    )
    before = aggregate_numeric_kind(clean).labels
    after = aggregate_numeric_kind(typed)
    joined = before.join(after.labels, on="task_id", suffix="_typo")
    others = joined.filter(pl.col("task_id") != clean["task_id"][0])
    shift = (others["value"] - others["value_typo"]).abs()
    assert shift.max() < 0.05, shift.max()
    assert after.set_aside is not None and after.set_aside["row"].to_list() == [0]
    typo_task = joined.filter(pl.col("task_id") == clean["task_id"][0])
    assert 1.0 <= typo_task["value_typo"][0] <= 5.0


@pytest.mark.parametrize("seed", range(5))
def test_values_stay_within_the_answers(seed: int) -> None:
    judgments = _ratings(seed=seed)
    fitted = aggregate_numeric_kind(judgments)
    labels = fitted.labels
    assert labels["value"].min() >= 1.0 and labels["value"].max() <= 5.0
    assert labels["lo"].min() >= 1.0 and labels["hi"].max() <= 5.0
    assert fitted.set_aside is None or fitted.set_aside.height == 0


def test_answers_of_very_different_magnitudes_keep_their_precision() -> None:
    # Two self-consistent tasks 1e23 apart: neither is an outlier of the other.
    frame = _few([("t1", "a", 1e23), ("t1", "b", 1e23), ("t2", "a", 1.0), ("t2", "b", 2.0)])
    fitted = aggregate_numeric_kind(frame)
    values = dict(zip(fitted.labels["task_id"], fitted.labels["value"], strict=True))
    assert values["t2"] == pytest.approx(1.5)
    assert values["t1"] == pytest.approx(1e23)
    assert fitted.set_aside is None or fitted.set_aside.height == 0


def test_a_task_keeps_an_answer_and_its_majority_decides() -> None:
    rows = [*PASTED, ("t5", "a", -1e17), ("t5", "c", 1e17)]
    rows += [("t6", "a", 60.0), ("t6", "b", 55.0), ("t6", "c", 5.0)]
    fitted = aggregate_numeric_kind(_few(rows))
    # t5 keeps both its answers (equally near its median); t6's two large answers are its value.
    assert fitted.set_aside is not None and fitted.set_aside["row"].to_list() == [1]
    assert fitted.labels["value"].is_finite().all()


def test_a_declared_scale_is_the_scale_gross_errors_are_judged_on() -> None:
    # On a declared 0-100 scale a 55 among answers of 1-5 is an answer anyone could give.
    rows = [
        (f"t{i}", rater, float(v))
        for i in range(6)
        for rater, v in zip("abc", (2, 3, 4), strict=True)
    ]
    rows.append(("t0", "d", 55.0))
    frame = _few(rows)
    estimated = aggregate_numeric_kind(frame)
    assert estimated.set_aside is not None and estimated.set_aside["row"].to_list() == [18]
    declared = aggregate_numeric_kind(frame, scale=RatingScale(0, 100))
    assert declared.set_aside is not None and declared.set_aside.height == 0


def test_annotators_who_agree_exactly_on_every_task_are_confident() -> None:
    # Every task rated twice, the two answers equal, the tasks' values different: the noise
    # measured is none. Before, the spread of the answers across tasks stood in for it, so
    # alpha 1.0 came with confidence 0.13 and intervals ±1.74 on a 1–5 scale, where the
    # mean, median and trimmed mean read 1.0.
    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t2", "t2", "t3", "t3"],
            "annotator_id": ["a", "b"] * 3,
            "value": [3.0, 3.0, 5.0, 5.0, 1.0, 1.0],
        }
    )
    labels = aggregate_numeric_kind(judgments).labels.sort("task_id")
    assert labels["value"].to_list() == pytest.approx([3.0, 5.0, 1.0])
    assert min(labels["confidence"]) > 0.99
    assert (labels["hi"] - labels["lo"]).max() < 0.01
