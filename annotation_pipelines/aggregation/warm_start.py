"""Carry a confusion-matrix model from one fit to the next on a little more data.

An incremental caller (the replay simulator, a live posterior) refits after every batch of new
judgments. Starting EM from the posteriors that last fit's annotator confusion matrices and
class prior give on the new data, instead of from vote shares, lands next to the previous
optimum, so each refit takes a few iterations. Annotators the previous fit never saw add no
evidence to that starting point; EM then estimates them as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.confusion import SparseConfusion
from annotation_pipelines.aggregation.em import EPSILON, normalise_log, row_sum
from annotation_pipelines.aggregation.encoding import Encoded


@dataclass(frozen=True, eq=False)
class WarmStart:
    """A fitted model keyed by values (not codes), so it applies to a re-encoded input."""

    annotator_values: pl.Series
    label_values: pl.Series
    # (n_annotators, K observed, K true): P(answer | truth), dense or as the rows answered
    confusion: np.ndarray | SparseConfusion
    prior: np.ndarray  # (K,)

    def initial_posteriors(self, encoded: Encoded) -> np.ndarray | None:
        """Posteriors on `encoded` under this model; None when the classes differ."""
        if not encoded.label_values.equals(self.label_values):
            return None
        k = encoded.n_classes
        previous = _previous_codes(encoded.annotator_values, self.annotator_values)
        known = previous[encoded.annotators] >= 0
        annotators, labels = previous[encoded.annotators[known]], encoded.labels[known]
        if isinstance(self.confusion, SparseConfusion):
            rows = self.confusion.row_values(annotators, labels)
        else:
            rows = self.confusion[annotators, labels, :]
        evidence = np.log(np.maximum(rows, EPSILON))
        scores = np.empty((encoded.n_tasks, k))
        for truth in range(k):
            scores[:, truth] = np.bincount(
                encoded.tasks[known], weights=evidence[:, truth], minlength=encoded.n_tasks
            )
        scores += np.log(np.maximum(self.prior, EPSILON))[None, :]
        posteriors = normalise_log(scores)
        # A task no known annotator answered starts from its vote shares, as a cold fit would.
        votes = encoded.votes()
        unseen = np.bincount(encoded.tasks[known], minlength=encoded.n_tasks) == 0
        if unseen.any():
            totals = row_sum(votes[unseen])
            posteriors[unseen] = votes[unseen] / np.maximum(totals, 1.0)[:, None]
            posteriors[unseen & (row_sum(votes) == 0)] = 1.0 / k
        return posteriors


def warm_start_from(
    encoded: Encoded, posteriors: np.ndarray, confusion: np.ndarray | SparseConfusion | None
) -> WarmStart | None:
    """The model a fit leaves behind (None for methods without confusion matrices)."""
    if confusion is None or len(confusion.shape) != 3:
        return None
    prior = posteriors.mean(axis=0) if posteriors.shape[0] else np.full(posteriors.shape[1], 1.0)
    return WarmStart(
        annotator_values=encoded.annotator_values,
        label_values=encoded.label_values,
        confusion=confusion,
        prior=prior,
    )


def _previous_codes(current: pl.Series, previous: pl.Series) -> np.ndarray:
    """For each current annotator value, its code in `previous`, or -1."""
    lookup = pl.DataFrame(
        {"value": previous, "code": pl.Series(np.arange(previous.len()), dtype=pl.Int64)}
    )
    joined = pl.DataFrame({"value": current.cast(previous.dtype, strict=False)}).join(
        lookup, on="value", how="left", maintain_order="left"
    )
    return joined.get_column("code").fill_null(-1).to_numpy()
