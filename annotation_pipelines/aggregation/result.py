"""What every aggregation method returns, and how a kernel's arrays become that result.

Kernels (one module per method) return a `Fitted`: the posterior over classes per task and
per-annotator parameters, all as NumPy arrays indexed by code. `build_result` turns it into
Polars tables carrying the caller's original task, annotator and label values and dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.confusion import SparseConfusion
from annotation_pipelines.aggregation.encoding import Encoded
from annotation_pipelines.aggregation.warm_start import WarmStart

# Rows of (observed, truth) label pairs gathered at once for the `confusion` column.
_PAIR_ROWS = 1 << 20
# Above this many cells (annotators × K²) the `confusion` column lists only the cells above
# their column's floor (see `_sparse_confusion_column`): 4M cells are 50 annotators at 283
# classes, far above every shared set, while 200 annotators at 2,000 classes are 800M.
DENSE_CONFUSION_CELLS = 1 << 22

# Posteriors closer than this are a tie: EM posteriors are floats, so exact equality would
# miss ties that differ only by summation order.
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Fitted:
    """A kernel's output, indexed by codes."""

    posteriors: np.ndarray  # (n_tasks, n_classes), rows sum to 1
    skills: np.ndarray  # (n_annotators,), the method's one-number annotator quality
    iterations: int = 0
    converged: bool = True
    log_likelihood: float | None = None
    # (n_annotators, n_classes observed, n_classes true): P(annotator says row | truth is column),
    # dense or as the rows answered (many classes)
    confusion: np.ndarray | SparseConfusion | None = None
    # extra per-annotator columns (name -> array of n_annotators), e.g. MACE's spamming share
    annotator_columns: dict[str, np.ndarray] = field(default_factory=dict)
    # the decided class per task when it is not the posterior's argmax (tie rules)
    decided: np.ndarray | None = None
    ties: np.ndarray | None = None


@dataclass(frozen=True)
class AggregationResult:
    """The labels, the annotator parameters, and how the fit went.

    `labels`: one row per task with `task_id`, `label`, `confidence` (the calibrated
    probability that the chosen label is right, see `calibration`), `n_votes`, `is_tie`,
    `posterior` (the method's own posterior: a struct with one probability field per class,
    named by the class's text) and `raw_confidence` (that posterior's value for the chosen
    label). `annotators`: one row per annotator with `annotator_id`, `skill`, `n_judgments`,
    method-specific columns, and for Dawid–Skene-style models
    `confusion` (a list of {observed, truth, probability}). With gold, `gold_skill` and
    `n_gold_judgments` sit beside the unsupervised `skill`.
    """

    labels: pl.DataFrame
    annotators: pl.DataFrame
    method: str
    iterations: int
    converged: bool
    log_likelihood: float | None
    tie_share: float
    explanation: str = ""
    # The temperature that tempered the evidence in the calibrated confidence (1: none).
    temperature: float = 1.0
    # The annotator model to start the next fit from (confusion-matrix methods only).
    warm_start: WarmStart | None = None


def build_result(
    encoded: Encoded,
    fitted: Fitted,
    *,
    method: str,
    gold_codes: np.ndarray | None = None,
    explanation: str = "",
    calibrated: np.ndarray | None = None,
    temperature: float = 1.0,
    warm_start: WarmStart | None = None,
) -> AggregationResult:
    """The result tables; `confidence` reads `calibrated` (n_tasks × K) when given."""
    posteriors = fitted.posteriors
    decided = (
        fitted.decided if fitted.decided is not None else best_breaking_ties(posteriors, calibrated)
    )
    if gold_codes is not None:
        # A gold task's answer is known, whatever the method: gold-aware methods clamp it, and
        # the others (which fit without gold) must not write the crowd's label beside the
        # calibrated confidence of 0 that gold gives it.
        decided = np.where(gold_codes >= 0, gold_codes, decided)
    rows = np.arange(posteriors.shape[0])
    raw_confidence = posteriors[rows, decided]
    confidence = raw_confidence if calibrated is None else calibrated[rows, decided]
    ties = fitted.ties if fitted.ties is not None else tied_with_best(posteriors)
    if gold_codes is not None:
        # Gold decided the label, not the tie rule.
        ties = ties & (gold_codes < 0)
    label_text = [str(value) for value in encoded.label_values.to_list()]
    posterior = pl.struct(
        [
            pl.Series(name, posteriors[:, index], dtype=pl.Float64)
            for index, name in enumerate(_unique_names(label_text))
        ],
        eager=True,
    ).alias("posterior")
    labels = pl.DataFrame(
        {
            "task_id": encoded.task_values,
            "label": encoded.label_values.gather(decided),
            "confidence": pl.Series(confidence, dtype=pl.Float64),
            "n_votes": pl.Series(encoded.votes_per_task(), dtype=pl.UInt32),
            "is_tie": pl.Series(ties, dtype=pl.Boolean),
        }
    ).with_columns(posterior, pl.Series("raw_confidence", raw_confidence, dtype=pl.Float64))
    annotators = pl.DataFrame(
        {
            "annotator_id": encoded.annotator_values,
            "skill": pl.Series(fitted.skills, dtype=pl.Float64),
            "n_judgments": pl.Series(encoded.judgments_per_annotator(), dtype=pl.UInt32),
            **{name: pl.Series(values) for name, values in fitted.annotator_columns.items()},
        }
    )
    if fitted.confusion is not None:
        annotators = annotators.with_columns(_confusion_column(encoded, fitted.confusion))
    if gold_codes is not None:
        annotators = annotators.with_columns(_gold_skill(encoded, gold_codes))
    n_tasks = max(encoded.n_tasks, 1)
    return AggregationResult(
        labels=labels,
        annotators=annotators,
        method=method,
        iterations=fitted.iterations,
        converged=fitted.converged,
        log_likelihood=fitted.log_likelihood,
        tie_share=float(np.count_nonzero(ties)) / n_tasks,
        explanation=explanation,
        temperature=temperature,
        warm_start=warm_start,
    )


def best_breaking_ties(posteriors: np.ndarray, calibrated: np.ndarray | None) -> np.ndarray:
    """The posterior's most probable class; among classes within `TIE_TOLERANCE` of it, the
    one the calibrated posterior rates highest, then the first-sorting label (the codes'
    order).

    A plain argmax would let the last bits of the EM's sums decide a tie, and those change with
    the order of the input rows: on a symmetric file the same tasks came out all one label or
    all the other.
    """
    at_best = posteriors >= posteriors.max(axis=1, keepdims=True) - TIE_TOLERANCE
    if calibrated is not None:
        rated = np.where(at_best, calibrated, -np.inf)
        at_best &= rated >= rated.max(axis=1, keepdims=True) - TIE_TOLERANCE
    return np.argmax(at_best, axis=1)


def best_in_label_order(posteriors: np.ndarray, labels: pl.Series) -> np.ndarray:
    """`best_breaking_ties` (no calibrated posterior) for columns that are `labels` in any
    order: a tie goes to the label that sorts first, as `encoding.encode` orders the codes.

    An engine that numbers labels as they arrive would otherwise give a tie to the label it
    saw first, and its answer would differ from the batch aggregation's on the same votes.
    """
    order = labels.arg_sort().to_numpy()
    return order[best_breaking_ties(posteriors[:, order], None)]


def tied_with_best(posteriors: np.ndarray) -> np.ndarray:
    if posteriors.shape[1] < 2:
        return np.zeros(posteriors.shape[0], dtype=bool)
    top_two = -np.partition(-posteriors, 1, axis=1)[:, :2]
    return (top_two[:, 0] - top_two[:, 1]) <= TIE_TOLERANCE


def _unique_names(names: list[str]) -> list[str]:
    # Two labels can share a text form (1 and "1" cannot, but 1.0 and 1 can after casting);
    # struct fields must be unique.
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}#{count}")
    return unique


def _confusion_column(encoded: Encoded, confusion: np.ndarray | SparseConfusion) -> pl.Series:
    """Each annotator's matrix as a list of {observed, truth, probability}, answer-major.

    Every annotator has the same K × K (observed, truth) pairs, so one block of them is
    repeated and the flat rows are cut into equal lists, with no per-row annotator column or
    index columns: at 1,000 classes and 50 annotators there are 50 million rows, and grouping
    them by annotator needs 5 GB. The block is repeated by a gather up to `_PAIR_ROWS` rows and
    by concatenation beyond: a gather index over every row would be 200 MB at 1,000 classes,
    and one concatenated block per annotator is slow for thousands of annotators.
    """
    n_annotators, k, _ = confusion.shape
    if n_annotators * k * k > DENSE_CONFUSION_CELLS:
        if isinstance(confusion, SparseConfusion):
            return _confusion_column_from_rows(encoded, confusion)
        return _sparse_confusion_column(encoded, confusion)
    if isinstance(confusion, SparseConfusion):
        confusion = confusion.dense()
    pairs = pl.DataFrame(
        {
            "observed": encoded.label_values.gather(np.repeat(np.arange(k), k)),
            "truth": encoded.label_values.gather(np.tile(np.arange(k), k)),
        }
    )
    per_block = max(1, min(n_annotators, _PAIR_ROWS // (k * k)))
    block = pairs[np.tile(np.arange(k * k), per_block)]
    blocks = max(1, -(-n_annotators // per_block))
    flat = pl.concat([block] * blocks).head(n_annotators * k * k)
    entries = flat.select(
        pl.struct(
            "observed", "truth", pl.Series("probability", confusion.reshape(-1), dtype=pl.Float64)
        ).alias("confusion")
    ).to_series()
    if n_annotators == 0:
        return pl.Series("confusion", [], dtype=pl.List(entries.dtype))
    return entries.reshape((n_annotators, k * k)).cast(pl.List(entries.dtype))


def _sparse_confusion_column(encoded: Encoded, confusion: np.ndarray) -> pl.Series:
    """Each annotator's matrix as its cells above their truth column's least value, then one
    entry per truth with `observed` null holding that least value.

    A confusion-matrix fit floors every count at ε before normalising, so every answer the
    annotator (nearly) never gave for a truth has the same probability, ε over the column's
    total: the null entry stands for all of them, and the matrix is recovered exactly from
    the list. With many classes nearly every cell is such an answer, and listing them all
    made annotators × K² entries (800 million at 200 annotators and 2,000 classes).
    """
    n_annotators, k, _ = confusion.shape
    observed_parts: list[np.ndarray] = []
    truth_parts: list[np.ndarray] = []
    probability_parts: list[np.ndarray] = []
    lengths = np.zeros(n_annotators, dtype=np.int64)
    # Every annotator has k null entries, so none is left out of the grouping.
    classes = np.arange(k)
    for annotator in range(n_annotators):
        matrix = confusion[annotator]
        floor = matrix.min(axis=0)
        observed, truth = np.nonzero(matrix > floor[None, :])
        observed_parts += [observed, np.full(k, -1)]
        truth_parts += [truth, classes]
        probability_parts += [matrix[observed, truth], floor]
        lengths[annotator] = observed.size + k
    observed_codes = np.concatenate(observed_parts)
    labels = encoded.label_values
    observed_labels = labels.gather(np.maximum(observed_codes, 0)).scatter(
        np.flatnonzero(observed_codes < 0), None
    )
    entries = pl.DataFrame(
        {
            "annotator": np.repeat(np.arange(n_annotators), lengths),
            "observed": observed_labels,
            "truth": labels.gather(np.concatenate(truth_parts)),
            "probability": pl.Series(np.concatenate(probability_parts), dtype=pl.Float64),
        }
    )
    return (
        entries.group_by("annotator", maintain_order=True)
        .agg(pl.struct("observed", "truth", "probability").alias("confusion"))
        .get_column("confusion")
    )


def _confusion_column_from_rows(encoded: Encoded, confusion: SparseConfusion) -> pl.Series:
    """`_sparse_confusion_column` from the stored rows, never building the dense matrices:
    the same entries in the same order (per annotator the listed cells by answer then truth,
    then the null entries by truth)."""
    n_annotators, k, _ = confusion.shape
    least = confusion.column_minimum()
    annotators = confusion.annotators
    stored, truth = np.nonzero(confusion.rows > least[annotators])
    listed_annotator = [annotators[stored]]
    listed_observed = [confusion.answers[stored]]
    listed_truth = [truth]
    listed_probability = [confusion.rows[stored, truth]]
    if confusion.own_class is not None:
        # A row not stored is above its column's least value only in its own class's column.
        above = confusion.unstored() & (confusion.own_class > least)
        owner, own = np.nonzero(above)
        listed_annotator.append(owner)
        listed_observed += [own]
        listed_truth += [own]
        listed_probability.append(confusion.own_class[owner, own])
    n_floor = n_annotators * k
    annotator = np.concatenate([*listed_annotator, np.repeat(np.arange(n_annotators), k)])
    observed_codes = np.concatenate([*listed_observed, np.full(n_floor, -1)])
    truth_codes = np.concatenate([*listed_truth, np.tile(np.arange(k), n_annotators)])
    probability = np.concatenate([*listed_probability, least.reshape(-1)])
    is_floor = observed_codes < 0
    order = np.lexsort((truth_codes, observed_codes, is_floor, annotator))
    observed_codes, truth_codes = observed_codes[order], truth_codes[order]
    labels = encoded.label_values
    observed_labels = labels.gather(np.maximum(observed_codes, 0)).scatter(
        np.flatnonzero(observed_codes < 0), None
    )
    entries = pl.DataFrame(
        {
            "annotator": annotator[order],
            "observed": observed_labels,
            "truth": labels.gather(truth_codes),
            "probability": pl.Series(probability[order], dtype=pl.Float64),
        }
    )
    return (
        entries.group_by("annotator", maintain_order=True)
        .agg(pl.struct("observed", "truth", "probability").alias("confusion"))
        .get_column("confusion")
    )


def _gold_skill(encoded: Encoded, gold_codes: np.ndarray) -> list[pl.Series]:
    """Each annotator's accuracy on gold tasks: the supervised skill beside the unsupervised."""
    truth = gold_codes[encoded.tasks]
    on_gold = truth >= 0
    n_gold = np.bincount(encoded.annotators[on_gold], minlength=encoded.n_annotators)
    correct = np.bincount(
        encoded.annotators[on_gold],
        weights=(encoded.labels[on_gold] == truth[on_gold]).astype(np.float64),
        minlength=encoded.n_annotators,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        skill = np.where(n_gold > 0, correct / np.maximum(n_gold, 1), np.nan)
    return [
        pl.Series("gold_skill", skill, dtype=pl.Float64).fill_nan(None),
        pl.Series("n_gold_judgments", n_gold, dtype=pl.UInt32),
    ]
