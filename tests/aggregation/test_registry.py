"""The method registry: one declaration per method, everything else derived from it."""

from __future__ import annotations

import click
import numpy as np
import pytest

from annotation_pipelines.aggregation import AUTO_CANDIDATES, METHODS, REGISTRY, fit
from annotation_pipelines.aggregation.auto import paired_standard_errors
from annotation_pipelines.aggregation.command import aggregate_command
from annotation_pipelines.aggregation.registry import KIND_REGISTRY
from annotation_pipelines.aggregation.registry import method as declared
from tests.aggregation.test_properties import TOY


def test_lists_and_cli_choices_come_from_the_registry() -> None:
    names = tuple(entry.name for entry in REGISTRY)
    assert (*names, "auto") == METHODS
    assert set(AUTO_CANDIDATES) <= set(names)
    option = next(p for p in aggregate_command.params if p.name == "method")
    assert isinstance(option.type, click.Choice)
    kind_names = tuple(entry.name for entry in KIND_REGISTRY)
    assert tuple(option.type.choices) == tuple(dict.fromkeys((*METHODS, *kind_names)))
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        declared("nope")


@pytest.mark.parametrize("name", [entry.name for entry in REGISTRY if entry.iterative])
def test_iterative_methods_report_convergence_truthfully(name: str) -> None:
    # One iteration cannot show that the objective stopped moving; a long run on the toy
    # crowd settles. MACE and Zero-Based Skill used to say converged=True whatever happened.
    assert not fit(TOY, name, max_iter=1).converged
    settled = fit(TOY, name, max_iter=2000, tol=1e-3)
    assert settled.converged, (name, settled.iterations)


def test_non_iterative_methods_are_converged_by_construction() -> None:
    for entry in REGISTRY:
        if not entry.iterative:
            assert fit(TOY, entry.name).converged


def test_paired_standard_errors() -> None:
    challenger = np.array([1.0, 1.0, 0.0, 1.0])
    incumbent = np.array([1.0, 0.0, 0.0, 1.0])
    # differences 0, 1, 0, 0: mean 1/4, sd 1/2, standard error 1/4 -> one standard error
    assert paired_standard_errors(challenger, incumbent) == pytest.approx(1.0)
    assert paired_standard_errors(np.ones(3), np.zeros(3)) == np.inf
    assert paired_standard_errors(np.ones(1), np.zeros(1)) == 0.0


@pytest.mark.parametrize("name", [m for m in METHODS if m != "auto"])
def test_gold_of_tasks_not_judged_does_not_shape_the_fit(name: str) -> None:
    # The daily graph hands each project's gold to the fit, judged that day or not: a gold
    # label of a task nobody judged (here one no annotator gave) must not become a class.
    import polars as pl

    anchor = pl.DataFrame({"task_id": ["t1"], "label": ["yes"]})
    unjudged = pl.DataFrame({"task_id": ["t9", "t8"], "label": ["maybe", "no"]})
    alone = fit(TOY, name, gold=anchor)
    mixed = fit(TOY, name, gold=pl.concat([anchor, unjudged]))
    assert mixed.labels.equals(alone.labels)
