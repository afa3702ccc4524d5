"""Every aggregation method, declared once with what it supports.

The method lists, the `auto` candidates and the CLI choices all derive from `REGISTRY`; adding
a method means adding its kernel module and one `Method` line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

import numpy as np

from annotation_pipelines.aggregation.kernel import FitOptions, Kernel
from annotation_pipelines.aggregation.result import Fitted

if TYPE_CHECKING:
    from annotation_pipelines.aggregation.encoding import Encoded
    from annotation_pipelines.aggregation.kinds_result import KindAggregation

AUTO = "auto"


@dataclass(frozen=True)
class Method:
    """One aggregation method.

    `iterative`: it runs until `max_iter`/`tol` say stop and reports convergence.
    `gold_aware`: gold tasks anchor its fit (clamped to their known class).
    `kinds`: the judgment kinds it aggregates. `auto_candidate`: `auto` may choose it.
    """

    name: str
    # "module:function" in this package, imported on first fit: listing methods (the CLI's
    # choices, `--help`) then costs no SciPy or Numba import.
    kernel: str
    iterative: bool
    gold_aware: bool
    kinds: tuple[str, ...] = ("categorical",)
    auto_candidate: bool = True

    @property
    def fit(self) -> Kernel:
        """The method's kernel (its module imported now: SciPy and Numba load only when used)."""
        module, function = self.kernel.split(":")
        return cast(Kernel, getattr(importlib.import_module(f"{__package__}.{module}"), function))


REGISTRY: tuple[Method, ...] = (
    Method("majority_vote", "majority_vote:fit_majority_vote", iterative=False, gold_aware=False),
    Method("wawa", "wawa:fit_wawa", iterative=False, gold_aware=False),
    Method(
        "zero_based_skill",
        "zero_based_skill:fit_zero_based_skill",
        iterative=True,
        gold_aware=False,
    ),
    Method("dawid_skene", "dawid_skene:fit_dawid_skene", iterative=True, gold_aware=True),
    Method(
        "one_coin_dawid_skene",
        "one_coin_dawid_skene:fit_one_coin_dawid_skene",
        iterative=True,
        gold_aware=True,
    ),
    Method("glad", "glad:fit_glad", iterative=True, gold_aware=True),
    Method("mace", "mace:fit_mace", iterative=True, gold_aware=True),
)
_BY_NAME = {method.name: method for method in REGISTRY}

CATEGORICAL_METHODS: tuple[str, ...] = tuple(
    method.name for method in REGISTRY if "categorical" in method.kinds
)
AUTO_CANDIDATES: tuple[str, ...] = tuple(
    method.name for method in REGISTRY if method.auto_candidate
)
# What `aggregate`, `fit` and the CLI accept.
METHODS: tuple[str, ...] = (*CATEGORICAL_METHODS, AUTO)


def method(name: str) -> Method:
    """The declaration of `name`; a ValueError listing the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; expected one of {', '.join(_BY_NAME)}"
        ) from None


def run_kernel(
    encoded: Encoded,
    name: str,
    *,
    max_iter: int = 100,
    tol: float = 1e-5,
    gold_codes: np.ndarray | None = None,
    initial_posteriors: np.ndarray | None = None,
    diagonal_pseudo_count: float = 0.0,
) -> Fitted:
    """The method's kernel on encoded judgments (gold reaches only gold-aware methods;
    `initial_posteriors` only the methods that start from them, see `FitOptions`)."""
    declared = method(name)
    if encoded.n_classes == 1:
        # One class: nothing to infer, and the K-1 in several models' likelihoods is zero.
        return Fitted(
            posteriors=np.ones((encoded.n_tasks, 1)),
            skills=np.ones(encoded.n_annotators),
        )
    options = FitOptions(
        max_iter=max_iter,
        tol=tol,
        gold_codes=gold_codes,
        initial_posteriors=initial_posteriors,
        diagonal_pseudo_count=diagonal_pseudo_count,
    )
    if not declared.gold_aware:
        options = replace(options, gold_codes=None)
    return declared.fit(encoded, options)


@dataclass(frozen=True)
class KindMethod:
    """One aggregation method of a non-categorical kind.

    `aggregator` is "module:function" in this package; the function takes
    `(judgments, *, method, gold, **options)` and returns a `KindAggregation`. The first method
    declared for a kind is its default.
    """

    kind: str
    name: str
    aggregator: str
    iterative: bool
    gold_aware: bool = True

    @property
    def aggregate(self) -> Callable[..., KindAggregation]:
        module, function = self.aggregator.split(":")
        found = getattr(importlib.import_module(f"{__package__}.{module}"), function)
        return cast("Callable[..., KindAggregation]", found)


KIND_REGISTRY: tuple[KindMethod, ...] = (
    KindMethod("multilabel", "dawid_skene", "multilabel:aggregate_multilabel_kind", True),
    KindMethod("multilabel", "majority_vote", "multilabel:aggregate_multilabel_kind", False),
    KindMethod("numeric", "bias_noise", "numeric:aggregate_numeric_kind", True),
    KindMethod("numeric", "mean", "numeric:aggregate_numeric_kind", False, gold_aware=False),
    KindMethod("numeric", "median", "numeric:aggregate_numeric_kind", False, gold_aware=False),
    KindMethod("numeric", "trimmed_mean", "numeric:aggregate_numeric_kind", False, False),
    KindMethod("ranking", "plackett_luce", "ranking:aggregate_ranking", True),
    KindMethod("ranking", "borda", "ranking:aggregate_ranking", False),
    KindMethod("pairwise", "crowd_bt", "pairwise:aggregate_pairwise", True),
    KindMethod("pairwise", "bradley_terry", "pairwise:aggregate_pairwise", True),
    KindMethod("spans", "dawid_skene", "spans:aggregate_spans", True),
    KindMethod("spans", "majority", "spans:aggregate_spans", False),
    KindMethod("boxes", "weighted_fusion", "boxes:aggregate_boxes", True),
    KindMethod("boxes", "majority", "boxes:aggregate_boxes", False),
    KindMethod("text", "consensus", "text:aggregate_text", True),
    KindMethod("text", "medoid", "text:aggregate_text", False),
    KindMethod("text", "rover", "text:aggregate_text", False),
)


# Every method name of every kind: the CLI's `--method` choices.
ALL_METHODS: tuple[str, ...] = tuple(
    dict.fromkeys([*METHODS, *(declared.name for declared in KIND_REGISTRY)])
)


def methods_for(kind: str) -> tuple[str, ...]:
    """The methods that aggregate `kind`, its default first (categorical: `METHODS`)."""
    if kind == "categorical":
        return (AUTO, *CATEGORICAL_METHODS)
    return tuple(declared.name for declared in KIND_REGISTRY if declared.kind == kind)


def kind_method(kind: str, name: str | None = None) -> KindMethod:
    """The declaration of `name` (default: the kind's default) for a non-categorical kind."""
    candidates = [declared for declared in KIND_REGISTRY if declared.kind == kind]
    if not candidates:
        raise ValueError(f"no aggregation methods for kind {kind!r}")
    if name is None:
        return candidates[0]
    for declared in candidates:
        if declared.name == name:
            return declared
    known = ", ".join(declared.name for declared in candidates)
    raise ValueError(f"unknown method {name!r} for kind {kind!r}; expected one of {known}")
