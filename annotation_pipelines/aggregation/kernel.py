"""The typed interface every aggregation kernel implements.

A kernel takes encoded judgments and `FitOptions` and returns a `Fitted` (posteriors and
annotator parameters indexed by code). Options a method does not support are ignored by it;
the registry says which it supports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from annotation_pipelines.aggregation.encoding import Encoded
from annotation_pipelines.aggregation.result import Fitted


@dataclass(frozen=True, eq=False)
class FitOptions:
    """How far an iterative kernel runs, and the gold classes a gold-aware one anchors on.

    `max_iter` caps the iterations, `tol` is the smallest change of the method's objective per
    iteration that still counts as progress; `gold_codes` holds, per task code, the gold class
    code or -1 (None when there is no gold). `initial_posteriors` (n_tasks × K), when given,
    replaces the vote shares as the starting point of a method that supports a warm start
    (Dawid–Skene), so a fit on a little more data than last time needs only a few iterations.
    `diagonal_pseudo_count` > 0 puts a Dirichlet prior on Dawid–Skene's confusion matrices
    (that many pseudo-judgments per annotator and class answering the true class: annotators
    are better than chance), a MAP fit that cannot drift into the label-swapped optimum; 0 is
    the maximum-likelihood fit of the paper and crowd-kit.
    """

    max_iter: int = 100
    tol: float = 1e-5
    gold_codes: np.ndarray | None = None
    initial_posteriors: np.ndarray | None = None
    diagonal_pseudo_count: float = 0.0


class Kernel(Protocol):
    """A method's fit on encoded judgments."""

    def __call__(self, encoded: Encoded, options: FitOptions, /) -> Fitted: ...


DEFAULT_OPTIONS = FitOptions()
