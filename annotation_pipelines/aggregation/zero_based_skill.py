"""Zero-Based Skill: a skill-weighted vote whose skills are learnt by gradient steps.

As in crowd-kit (Ustalov et al., "Learning from Crowds with Crowd-Kit", JOSS 9(96), 2024).

Model: every annotator starts with skill 1/K + 1e-5; each round takes the skill-weighted vote
and moves each skill towards the annotator's agreement with it by a learning rate that starts
at 1 and halves every 20 rounds (a gradient step on the squared error between skill and
agreement). crowd-kit's schedule of 100 rounds is the default; there is no early stop. The fit
is reported converged when the last round changed that squared error (mean over annotators)
by less than `tol`.
"""

from __future__ import annotations

import numpy as np

from annotation_pipelines.aggregation.em import iterate
from annotation_pipelines.aggregation.encoding import Encoded
from annotation_pipelines.aggregation.kernel import DEFAULT_OPTIONS, FitOptions
from annotation_pipelines.aggregation.majority_vote import (
    agreement_with,
    class_preference,
    distinct_answers,
    weighted_vote,
)
from annotation_pipelines.aggregation.result import Fitted

LEARNING_RATE = 1.0
STEPS_TO_REDUCE = 20
REDUCE_FACTOR = 0.5
EPSILON = 1e-5


def fit_zero_based_skill(encoded: Encoded, options: FitOptions = DEFAULT_OPTIONS) -> Fitted:
    preference = class_preference(encoded)
    n_observed_classes = int(np.count_nonzero(np.bincount(encoded.labels)))
    distinct = distinct_answers(encoded)

    def step(state: tuple[int, float, np.ndarray]) -> tuple[tuple[int, float, np.ndarray], float]:
        iteration, learning_rate, skills = state
        iteration += 1
        if iteration % STEPS_TO_REDUCE == 0:
            learning_rate *= REDUCE_FACTOR
        _, decided, _ = weighted_vote(encoded, skills[encoded.annotators], preference)
        gap = agreement_with(encoded, decided, distinct) - skills
        squared_error = float(np.mean(gap * gap)) if gap.shape[0] else 0.0
        return (iteration, learning_rate, skills + learning_rate * gap), -squared_error

    start = np.full(encoded.n_annotators, 1.0 / n_observed_classes + EPSILON)
    (_, _, skills), convergence = iterate(
        step,
        (0, LEARNING_RATE, start),
        max_iter=options.max_iter,
        tol=options.tol,
        stop_early=False,
    )
    posteriors, decided, ties = weighted_vote(encoded, skills[encoded.annotators], preference)
    return Fitted(
        posteriors=posteriors,
        skills=skills,
        iterations=convergence.iterations,
        converged=convergence.converged,
        decided=decided,
        ties=ties,
    )
