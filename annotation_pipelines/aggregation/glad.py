"""GLAD: annotator ability × task difficulty.

J. Whitehill, P. Ruvolo, T. Wu, J. Bergsma and J. Movellan, "Whose Vote Should Count More:
Optimal Integration of Labels from Labelers of Unknown Expertise", NeurIPS 2009.

Model: annotator w has ability α_w and task t has inverse difficulty exp(β_t); the annotator
answers correctly with probability σ(α_w · exp(β_t)) and otherwise picks one of the other K−1
classes uniformly. EM: the E-step computes each task's posterior (log space, uniform class
prior); the M-step maximises the expected log-likelihood plus standard normal priors around 1
on α and β by conjugate gradients (at most 25 steps, tolerance 1e-2). Initialisation α = β = 1,
the stopping rule (change of the objective per judgment × class below `tol`) and defaults follow
crowd-kit 1.4.2. Gold tasks, when given, are clamped to their known class after each E-step.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from annotation_pipelines.aggregation.em import clamp_gold, iterate, normalise_log
from annotation_pipelines.aggregation.encoding import Encoded
from annotation_pipelines.aggregation.kernel import DEFAULT_OPTIONS, FitOptions
from annotation_pipelines.aggregation.result import Fitted

M_STEP_MAX_ITER = 25
M_STEP_TOL = 1e-2
PRIOR_MEAN = 1.0
_HALF_LOG_TWO_PI = 0.5 * np.log(2 * np.pi)


def fit_glad(encoded: Encoded, options: FitOptions = DEFAULT_OPTIONS) -> Fitted:
    k = encoded.n_classes
    gold_codes = options.gold_codes
    n_tasks, n_annotators = encoded.n_tasks, encoded.n_annotators
    tasks, annotators = encoded.tasks, encoded.annotators
    answer_cell = tasks * k + encoded.labels
    log_other = np.log(k - 1)
    log_prior = np.full(k, -np.log(k))

    def e_step(alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
        strength = alphas[annotators] * np.exp(betas[tasks])
        log_right = log_expit(strength)
        log_wrong = log_expit(-strength) - log_other
        scores = np.repeat(
            np.bincount(tasks, weights=log_wrong, minlength=n_tasks)[:, None], k, axis=1
        )
        scores += np.bincount(
            answer_cell, weights=log_right - log_wrong, minlength=n_tasks * k
        ).reshape(n_tasks, k)
        return clamp_gold(normalise_log(scores + log_prior[None, :]), gold_codes)

    def objective(x: np.ndarray, answered: np.ndarray) -> tuple[float, np.ndarray]:
        alphas, betas = x[:n_annotators], x[n_annotators:]
        exp_beta = np.exp(betas[tasks])
        strength = alphas[annotators] * exp_beta
        q = float(
            np.sum(
                answered * log_expit(strength) + (1 - answered) * (log_expit(-strength) - log_other)
            )
        )
        q -= 0.5 * float(np.sum((alphas - PRIOR_MEAN) ** 2) + np.sum((betas - PRIOR_MEAN) ** 2))
        q -= _HALF_LOG_TWO_PI * x.shape[0]
        residual = answered - expit(strength)
        gradient = np.empty_like(x)
        gradient[:n_annotators] = np.bincount(
            annotators, weights=residual * exp_beta, minlength=n_annotators
        ) - (alphas - PRIOR_MEAN)
        gradient[n_annotators:] = np.bincount(
            tasks, weights=residual * strength, minlength=n_tasks
        ) - (betas - PRIOR_MEAN)
        return -q, -gradient

    # crowd-kit normalises the objective by the rows of its judgment × class table.
    scale = encoded.n_judgments * k

    def step(state: tuple[np.ndarray, np.ndarray]) -> tuple[tuple[np.ndarray, np.ndarray], float]:
        x, _ = state
        posteriors = e_step(x[:n_annotators], x[n_annotators:])
        answered = posteriors.reshape(-1)[answer_cell]
        solution = minimize(
            objective,
            x,
            args=(answered,),
            method="CG",
            jac=True,
            tol=M_STEP_TOL,
            options={"maxiter": M_STEP_MAX_ITER},
        )
        return (solution.x, posteriors), -float(solution.fun) / scale

    start = np.ones(n_annotators + n_tasks)
    (x, posteriors), convergence = iterate(
        step, (start, np.empty((n_tasks, k))), max_iter=options.max_iter, tol=options.tol
    )
    alphas = x[:n_annotators]
    return Fitted(
        posteriors=posteriors,
        skills=alphas,
        iterations=convergence.iterations,
        converged=convergence.converged,
        log_likelihood=convergence.objective * scale,
        annotator_columns={"alpha": alphas.copy()},
    )
