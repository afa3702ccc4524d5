"""One-coin Dawid–Skene: one accuracy per annotator instead of a confusion matrix.

A. P. Dawid and A. M. Skene (1979), as above, in the "one-coin" form studied by Zhang, Chen,
Zhou and Jordan, "Spectral Methods Meet EM", NeurIPS 2014.

Model: annotator w gives the true class with probability s_w and each of the other K−1
classes with probability (1 − s_w)/(K − 1). EM as in Dawid–Skene, with the M-step
s_w = mean over w's answers of the posterior of the answered class, clipped to
[1e-10, 1 − 1e-10]; initialisation, stopping rule and defaults follow crowd-kit 1.4.2.
Gold tasks, when given, are clamped to their known class.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from annotation_pipelines.aggregation.em import (
    EPSILON,
    clamp_gold,
    iterate,
    normalise_log,
    vote_shares,
)
from annotation_pipelines.aggregation.encoding import Encoded
from annotation_pipelines.aggregation.kernel import DEFAULT_OPTIONS, FitOptions
from annotation_pipelines.aggregation.result import Fitted


def fit_one_coin_dawid_skene(encoded: Encoded, options: FitOptions = DEFAULT_OPTIONS) -> Fitted:
    k = encoded.n_classes
    n_tasks = encoded.n_tasks
    gold_codes = options.gold_codes
    answer_cell = encoded.tasks * k + encoded.labels
    judgments_per_annotator = np.maximum(encoded.judgments_per_annotator(), 1)
    votes_per_task = encoded.votes_per_task().astype(np.float64)

    def skills_of(posteriors: np.ndarray) -> np.ndarray:
        answered = posteriors.reshape(-1)[answer_cell]
        totals = np.bincount(encoded.annotators, weights=answered, minlength=encoded.n_annotators)
        return totals / judgments_per_annotator

    def log_rates(skills: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        right = np.clip(skills, EPSILON, 1 - EPSILON)
        wrong = np.clip((1 - skills) / (k - 1), EPSILON, 1 - EPSILON)
        return np.log(right), np.log(wrong)

    def step(state: _State) -> tuple[_State, float]:
        log_right, log_wrong = log_rates(state.skills)
        wrong_per_judgment = log_wrong[encoded.annotators]
        scores = np.repeat(
            np.bincount(encoded.tasks, weights=wrong_per_judgment, minlength=n_tasks)[:, None],
            k,
            axis=1,
        )
        scores += np.bincount(
            answer_cell,
            weights=log_right[encoded.annotators] - wrong_per_judgment,
            minlength=n_tasks * k,
        ).reshape(n_tasks, k)
        scores += np.log(np.maximum(state.prior, EPSILON))[None, :]
        posteriors = clamp_gold(normalise_log(scores), gold_codes)
        prior = posteriors.mean(axis=0)
        skills = skills_of(posteriors)
        log_right, log_wrong = log_rates(skills)
        answered = posteriors.reshape(-1)[answer_cell]
        log_prior = np.log(np.maximum(prior, EPSILON))
        joint = float(
            np.sum(
                answered * log_right[encoded.annotators]
                + (1 - answered) * log_wrong[encoded.annotators]
            )
        )
        joint += float(np.sum(votes_per_task[:, None] * posteriors * log_prior[None, :]))
        clipped = np.maximum(posteriors, EPSILON)
        bound = joint - float(np.sum(clipped * np.log(clipped)))
        return _State(posteriors, prior, skills), bound / encoded.n_judgments

    posteriors = clamp_gold(vote_shares(encoded), gold_codes)
    start = _State(posteriors, posteriors.mean(axis=0), skills_of(posteriors))
    state, convergence = iterate(step, start, max_iter=options.max_iter, tol=options.tol)
    return Fitted(
        posteriors=state.posteriors,
        skills=state.skills,
        iterations=convergence.iterations,
        converged=convergence.converged,
        log_likelihood=float(convergence.objective * encoded.n_judgments),
    )


class _State(NamedTuple):
    posteriors: np.ndarray
    prior: np.ndarray
    skills: np.ndarray
