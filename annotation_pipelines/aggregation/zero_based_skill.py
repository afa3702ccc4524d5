"""Zero-Based Skill: a skill-weighted vote whose skills are learnt by gradient steps.

As in crowd-kit (Ustalov et al., "Learning from Crowds with Crowd-Kit", JOSS 9(96), 2024).

Model: every annotator starts with skill 1/K + 1e-5; each round takes the skill-weighted vote
and moves each skill towards the annotator's agreement with it by a learning rate that starts
at 1 and halves every 20 rounds (a gradient step on the squared error between skill and
agreement). crowd-kit's schedule of 100 rounds is the default; there is no early stop.
"""

from __future__ import annotations

import numpy as np

from annotation_pipelines.aggregation.encoding import Encoded
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


def fit_zero_based_skill(encoded: Encoded, *, max_iter: int = 100) -> Fitted:
    preference = class_preference(encoded)
    n_observed_classes = int(np.count_nonzero(np.bincount(encoded.labels)))
    skills = np.full(encoded.n_annotators, 1.0 / n_observed_classes + EPSILON)
    learning_rate = LEARNING_RATE
    distinct = distinct_answers(encoded)
    for iteration in range(1, max_iter + 1):
        if iteration % STEPS_TO_REDUCE == 0:
            learning_rate *= REDUCE_FACTOR
        _, decided, _ = weighted_vote(encoded, skills[encoded.annotators], preference)
        skills = skills + learning_rate * (agreement_with(encoded, decided, distinct) - skills)
    posteriors, decided, ties = weighted_vote(encoded, skills[encoded.annotators], preference)
    return Fitted(
        posteriors=posteriors,
        skills=skills,
        iterations=max_iter,
        converged=True,
        decided=decided,
        ties=ties,
    )
