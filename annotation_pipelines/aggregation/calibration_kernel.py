"""Compiled temperature search of the calibration, for inputs with many classes.

Every (τ, held-out judgment) of the search needs a K-term log-sum-exp (`calibration`); at a
thousand classes that is 10^10 exponentials per fit, and NumPy's separate passes (scale, add,
max, subtract, exp, multiply, two sums) cost ≈ 7 ns per term. This kernel fuses them into two
vectorised loops per (τ, judgment) with a polynomial exponential that LLVM can vectorise
(Numba has no vector `exp` without SVML). Sums run in vector lanes, not in class order, and
the polynomial is within a few ulp of `np.exp`, so the scores differ from the NumPy path's in
the last bits (≈ 1e-15 relative): far inside the relative 1e-9 by which the grids' choices
are made, and the tests hold both paths to the same (s, τ). The calibrated posteriors
themselves are always computed by NumPy.
"""

from __future__ import annotations

import numba
import numpy as np

_LOG2E = 1.4426950408889634
# ln 2 split in two so that k · ln2 is exact in the high part for |k| ≤ 1074.
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_FLOOR = 1e-300
# Reassociation lets the class sums and the max run in vector lanes; the exponential must not
# have it, or LLVM folds the two-part ln 2 reduction back into one rounded constant.
_FAST = {"nsz", "arcp", "contract", "reassoc"}
_EXACT_REDUCTION = {"nsz", "arcp", "contract"}


@numba.njit(cache=True, nogil=True, fastmath=_EXACT_REDUCTION)
def _exp_into(
    scale: float,
    values: np.ndarray,
    offsets: np.ndarray,
    shift: float,
    mantissas: np.ndarray,
    exponents: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """exp(scale · values + offsets − shift) as mantissas · 2^k, k's bits written as a
    float64's exponent into `exponents` (viewed as float64 by the caller), in one
    vectorisable loop."""
    for c in range(values.shape[0]):
        y = min(max(scale * values[c] + offsets[c] - shift, -708.0), 709.0)
        k = np.floor(y * _LOG2E + 0.5)
        r = y - k * _LN2_HI - k * _LN2_LO
        # Taylor series to r^13 / 13!: |r| ≤ ln 2 / 2, so the truncation is below 1e-17.
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        mantissas[c] = p
        exponents[c] = (np.int64(k) + 1023) << 52


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def held_out_log_likelihoods_on_grid(
    tasks: np.ndarray,
    log_errors: np.ndarray,
    task_sums: np.ndarray,
    log_prior: np.ndarray,
    temperatures: np.ndarray,
    scores: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """`calibration._held_out_log_likelihoods_on_grid` into `scores` (τ × judgment)."""
    k = log_errors.shape[1]
    others = np.empty(k)
    prior = np.empty(k)
    answer = np.empty(k)
    zeros = np.zeros(k)
    mantissas = np.empty(k)
    exponents = np.empty(k, dtype=np.int64)
    scales = exponents.view(np.float64)
    for j in range(tasks.shape[0]):
        t = tasks[j]
        for c in range(k):
            others[c] = task_sums[t, c] - log_errors[j, c]
            prior[c] = log_prior[t, c]
        _exp_into(1.0, log_errors[j], zeros, 0.0, mantissas, exponents)
        for c in range(k):
            answer[c] = mantissas[c] * scales[c]
        for row in range(temperatures.shape[0]):
            temperature = temperatures[row]
            top = -np.inf
            for c in range(k):
                top = max(top, temperature * others[c] + prior[c])
            _exp_into(temperature, others, prior, top, mantissas, exponents)
            numerator = 0.0
            denominator = 0.0
            for c in range(k):
                term = mantissas[c] * scales[c]
                numerator += term * answer[c]
                denominator += term
            scores[row, j] = np.log(max(numerator / denominator, _FLOOR))
