"""Accuracy on the real crowd data sets: at least crowd-kit's (run here) and the published table."""

from __future__ import annotations

import polars as pl
import pytest

from annotation_pipelines.aggregation import fit
from tests.aggregation.crowdkit_reference import crowdkit_labels
from tests.realdata import ALL_CROWD, accuracy, load_crowd

pytestmark = pytest.mark.realdata

# crowd-kit paper (JOSS), reproduced on this data with crowd-kit 1.4.2 (shared/data/README.md).
PUBLISHED = {
    ("majority_vote", "d_product"): 0.897,
    ("majority_vote", "d_sentiment"): 0.932,
    ("wawa", "d_product"): 0.897,
    ("wawa", "d_sentiment"): 0.951,
    ("dawid_skene", "d_product"): 0.940,
    ("dawid_skene", "d_sentiment"): 0.960,
    ("glad", "d_product"): 0.928,
    ("glad", "d_sentiment"): 0.948,
    ("mace", "d_product"): 0.929,
    ("mace", "d_sentiment"): 0.950,
}
# crowd-kit 1.4.2 measured on this data (Wawa and ZBS through the fitted skills, see
# crowdkit_reference). The default suite compares with these figures; the `scale` suite
# re-runs crowd-kit live and checks that they are current (GLAD, MACE and ZBS take 5–120 s
# each in crowd-kit).
CROWDKIT_MEASURED = {
    ("majority_vote", "d_product"): 0.8966,
    ("majority_vote", "d_sentiment"): 0.9320,
    ("majority_vote", "duck"): 0.7593,
    ("majority_vote", "rte"): 0.9187,
    ("wawa", "d_product"): 0.8966,
    ("wawa", "d_sentiment"): 0.9510,
    ("wawa", "duck"): 0.7593,
    ("wawa", "rte"): 0.9213,
    ("dawid_skene", "d_product"): 0.9397,
    ("dawid_skene", "d_sentiment"): 0.9600,
    ("dawid_skene", "duck"): 0.8889,
    ("dawid_skene", "rte"): 0.9275,
    ("one_coin_dawid_skene", "d_product"): 0.9084,
    ("one_coin_dawid_skene", "d_sentiment"): 0.9490,
    ("one_coin_dawid_skene", "duck"): 0.5833,
    ("one_coin_dawid_skene", "rte"): 0.9250,
    ("zero_based_skill", "d_product"): 0.8966,
    ("zero_based_skill", "d_sentiment"): 0.9530,
    ("zero_based_skill", "duck"): 0.7593,
    ("zero_based_skill", "rte"): 0.9213,
    ("glad", "d_product"): 0.9283,
    ("glad", "d_sentiment"): 0.9480,
    ("glad", "duck"): 0.7222,
    ("glad", "rte"): 0.9250,
    ("mace", "d_product"): 0.9290,
    ("mace", "d_sentiment"): 0.9500,
    ("mace", "duck"): 0.8056,
    ("mace", "rte"): 0.9250,
}
LIVE_METHODS = ("majority_vote", "wawa", "dawid_skene", "one_coin_dawid_skene")
# "Within 0.005", inclusive: MACE on D_PosSent is 955/1000 = 0.950 + 0.005, which float
# subtraction puts a few ulps above 0.005.
PUBLISHED_TOLERANCE = 0.005 + 1e-9


@pytest.mark.scale
@pytest.mark.parametrize("dataset", ALL_CROWD)
@pytest.mark.parametrize("method", LIVE_METHODS)
def test_at_least_crowdkit_live(method: str, dataset: str) -> None:
    judgments, truth = load_crowd(dataset)
    ours = accuracy(fit(judgments, method).labels, truth)
    reference = accuracy(crowdkit_labels(judgments, method), truth)
    assert ours >= reference - 1e-12, (ours, reference)
    if (method, dataset) in PUBLISHED:
        assert ours == pytest.approx(PUBLISHED[method, dataset], abs=PUBLISHED_TOLERANCE)


# GLAD's M-step is 25 steps of SciPy's conjugate gradients, stopped before convergence (as in
# crowd-kit). Its line search reads dot products computed by OpenBLAS, whose kernel (and so
# summation order) depends on the CPU and on OPENBLAS_CORETYPE; the truncated path amplifies
# that last-bit difference to a different fit. Measured on D_Product here: crowd-kit 1.4.2
# gets 7,719 of 8,315 tasks right with the detected kernel and 7,720 with
# OPENBLAS_CORETYPE=Haswell; ours 7,719 and 7,718. So for GLAD, and only GLAD, the floor is
# the measured figure less one task: a difference of one task is how far crowd-kit itself
# moves between machines, not a loss of accuracy.
MACHINE_DEPENDENT_TASKS = {"glad": 1}


@pytest.mark.parametrize(("method", "dataset"), sorted(CROWDKIT_MEASURED))
def test_at_least_crowdkit_measured(method: str, dataset: str) -> None:
    judgments, truth = load_crowd(dataset)
    ours = accuracy(fit(judgments, method).labels, truth)
    one_task = 1.0 / truth.height
    floor = CROWDKIT_MEASURED[method, dataset] - MACHINE_DEPENDENT_TASKS.get(method, 0) * one_task
    assert ours >= floor - 5e-5, ours
    if (method, dataset) in PUBLISHED:
        assert ours == pytest.approx(PUBLISHED[method, dataset], abs=PUBLISHED_TOLERANCE)


@pytest.mark.scale
@pytest.mark.parametrize(("method", "dataset"), sorted(CROWDKIT_MEASURED))
def test_crowdkit_measured_is_current(method: str, dataset: str) -> None:
    judgments, truth = load_crowd(dataset)
    reference = accuracy(crowdkit_labels(judgments, method), truth)
    assert reference == pytest.approx(CROWDKIT_MEASURED[method, dataset], abs=5e-5)


def test_mace_uniform_prevalence_is_the_papers_model() -> None:
    # Hovy et al.'s uniform class prior, kept as an option: on D_Product (88% negatives) it
    # converges to a fit with a higher likelihood and far lower accuracy (measured 0.8272)
    # than the default learned prevalence (0.9311). crowd-kit's published 0.929 with a uniform
    # prior comes from reading its strategy matrix in a different worker order than it was
    # built in; a correct uniform-prior fit cannot reach it.
    from annotation_pipelines.aggregation.encoding import encode
    from annotation_pipelines.aggregation.mace import fit_mace

    judgments, truth = load_crowd("d_product")
    encoded = encode(judgments)
    uniform = fit_mace(encoded, class_prior="uniform")
    learned = fit_mace(encoded, class_prior="learned")
    for fitted, expected in ((uniform, 0.8272), (learned, 0.9311)):
        labels = pl.DataFrame(
            {
                "task_id": encoded.task_values,
                "label": encoded.label_values.gather(fitted.posteriors.argmax(axis=1)),
            }
        )
        assert accuracy(labels, truth) == pytest.approx(expected, abs=5e-5)


# crowd-kit 1.4.2's DawidSkene(n_iter=100, tol=1e-5) on D_Sentiment: iterations, final loss.
CROWDKIT_DAWID_SKENE_SENTIMENT = (5, -1.0983166144292236)


def test_dawid_skene_iterations_match_crowdkit_measured() -> None:
    judgments, _ = load_crowd("d_sentiment")
    ours = fit(judgments, "dawid_skene")
    iterations, loss = CROWDKIT_DAWID_SKENE_SENTIMENT
    assert ours.iterations == iterations
    assert ours.log_likelihood / judgments.height == pytest.approx(loss, rel=1e-9)


@pytest.mark.scale
def test_dawid_skene_iterations_match_crowdkit() -> None:
    from crowdkit.aggregation import DawidSkene

    judgments, _ = load_crowd("d_sentiment")
    frame = judgments.rename({"task_id": "task", "annotator_id": "worker"}).to_pandas()
    reference = DawidSkene(n_iter=100, tol=1e-5).fit(frame)
    ours = fit(judgments, "dawid_skene")
    assert ours.iterations == len(reference.loss_history_)
    assert ours.log_likelihood / judgments.height == pytest.approx(
        reference.loss_history_[-1], rel=1e-9
    )


def test_gold_clamps_and_reports_gold_skill() -> None:
    judgments, truth = load_crowd("d_product")
    gold = truth.head(500)
    result = fit(judgments, "dawid_skene", gold=gold)
    labelled = result.labels.join(gold, on="task_id", suffix="_gold")
    assert (labelled["label"] == labelled["label_gold"]).all()
    assert {"gold_skill", "n_gold_judgments", "skill"} <= set(result.annotators.columns)
    assert accuracy(result.labels, truth) >= accuracy(fit(judgments, "dawid_skene").labels, truth)


def test_auto_reaches_the_hindsight_best_crowdkit_method() -> None:
    # The aim: without ground truth, auto averages at least the accuracy of the best
    # single crowd-kit method chosen per data set with hindsight (measured: Dawid–Skene on
    # all four, mean 0.9290). Measured: auto keeps Dawid–Skene on all four (0.9290).
    hindsight = {
        dataset: max(value for (_, name), value in CROWDKIT_MEASURED.items() if name == dataset)
        for dataset in ALL_CROWD
    }
    accuracies = []
    for dataset in ALL_CROWD:
        judgments, truth = load_crowd(dataset)
        result = fit(judgments, "auto")
        assert result.method != "auto" and result.explanation.startswith(f"chose {result.method}")
        assert "held-out log-likelihood" in result.explanation
        accuracies.append(accuracy(result.labels, truth))
    mean = sum(accuracies) / len(accuracies)
    assert mean >= sum(hindsight.values()) / len(hindsight) - 5e-5, (accuracies, hindsight)


def test_auto_with_gold_picks_by_gold_accuracy() -> None:
    judgments, truth = load_crowd("duck")
    result = fit(judgments, "auto", gold=truth.head(40))
    assert "gold task" in result.explanation
    # Measured 0.8796 (gold on 40 of 108 tasks); majority vote reaches 0.7593.
    assert accuracy(result.labels, truth) >= 0.85


def test_auto_choice_does_not_depend_on_row_order() -> None:
    judgments, _ = load_crowd("duck")
    shuffled = judgments.sample(fraction=1.0, shuffle=True, seed=4)
    first, second = fit(judgments, "auto"), fit(shuffled, "auto")
    assert first.method == second.method
    assert first.explanation == second.explanation


# One-coin Dawid–Skene on Duck: .5833 is the model's answer, not a defect of ours. On this
# 2-class set (39 votes a task) the votes on truly-1 tasks are right 51.7 % of the time and on
# truly-0 tasks 73.1 %; a one-coin annotator must err as often on either class, so the
# likelihood is highest with a prior of .972 on class 0 and 105 of 108 tasks labelled 0 (EM
# started from the truth reaches the same fit). A third class no task has changes the model
# itself: a wrong answer costs (1 − s)/2 instead of 1 − s, so an annotator right 40 % of the
# time votes for its answer instead of against it, and crowd-kit moves from .5833 to .75 as
# we do. The confusion-matrix Dawid–Skene, which lets errors differ by class, gets .8889.
ONE_COIN_DUCK = (0.5833, 0.75)


def _with_phantom_class(judgments: pl.DataFrame) -> pl.DataFrame:
    phantom = pl.DataFrame({"task_id": ["~phantom"], "annotator_id": ["~phantom"], "label": ["2"]})
    return pl.concat([judgments, phantom])


def _same_labels(ours: pl.DataFrame, reference: pl.DataFrame) -> None:
    joined = ours.select("task_id", "label").join(
        reference, on="task_id", how="full", suffix="_crowdkit"
    )
    differ = joined.filter(pl.col("label").ne_missing(pl.col("label_crowdkit")))
    assert differ.height == 0, differ.head()


@pytest.mark.parametrize(
    "dataset",
    [pytest.param("d_product", marks=pytest.mark.scale), "d_sentiment", "duck", "rte"],
)
def test_one_coin_gives_crowdkits_labels_on_every_task(dataset: str) -> None:
    judgments, _ = load_crowd(dataset)
    reference = crowdkit_labels(judgments, "one_coin_dawid_skene")
    _same_labels(fit(judgments, "one_coin_dawid_skene").labels, reference)


def test_one_coin_on_duck_moves_with_a_phantom_class_as_crowdkits_does() -> None:
    judgments, truth = load_crowd("duck")
    frames = (judgments, _with_phantom_class(judgments))
    for frame, expected in zip(frames, ONE_COIN_DUCK, strict=True):
        ours = fit(frame, "one_coin_dawid_skene").labels
        reference = crowdkit_labels(frame, "one_coin_dawid_skene")
        _same_labels(ours, reference)
        assert accuracy(ours, truth) == pytest.approx(expected, abs=5e-5)
        assert accuracy(reference, truth) == pytest.approx(expected, abs=5e-5)
