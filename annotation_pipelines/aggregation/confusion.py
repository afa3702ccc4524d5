"""Annotator confusion matrices kept as the rows some judgment answered.

A Dawid–Skene fit floors every expected count at ε before normalising, so a row (annotator w,
answer a) that no judgment has is ε over its column's total in every column (and, under a
diagonal prior, the pseudo-count over the total in its own class's column). Those rows are
one value per (annotator, truth) and need no storage: at 200 annotators and 2,000 classes the
dense annotators × K × K array is 6.4 GB, the 12,000 answered rows 190 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Confusion cells (annotators × K²) above which the column totals are summed compiled, with
# no A × K² buffer, and a Dawid–Skene fit returns the answered rows as a `SparseConfusion`
# (the result's `confusion` column lists them sparsely from the same size on, `result`'s
# DENSE_CONFUSION_CELLS). Both paths give the same bits. The compiled sum is faster per
# M-step even below (one update at 100 classes × 50 annotators: 0.095 s NumPy, 0.037 s
# compiled; at 283 × 50, 0.15 s and 0.09 s, on a loaded 2-core machine), but its first call
# pays Numba's import and cache load (≈ 1.5 s idle, 6.5 s measured loaded), more than a whole
# fit of a few million cells; so the NumPy path is kept below this size.
ANSWERED_ROWS_MIN_CELLS = 1 << 22

# Runs of this many rows not stored or more are added column by column in closed form: one
# such column costs about as much as 1,000–2,000 rows added lane by lane (measured at 2,000
# classes, 200 annotators, 1,000–12,000 stored rows).
LONG_GAP = 1024


@dataclass(frozen=True, eq=False)
class SparseConfusion:
    """P(answer | truth) per annotator: e[w, a, c] for the stored rows, a floor elsewhere.

    `cells` are the stored rows `w * K + a`, ascending; `rows` their (K truth) probabilities.
    Every row not stored is `floor[w]`, except that its own class's column holds
    `own_class[w, a]` when that is given (a diagonal prior's pseudo-count).
    """

    cells: np.ndarray  # (n,) int64, ascending
    rows: np.ndarray  # (n, K truth)
    floor: np.ndarray  # (n_annotators, K truth)
    own_class: np.ndarray | None = None  # (n_annotators, K)

    @property
    def shape(self) -> tuple[int, int, int]:
        n_annotators, k = self.floor.shape
        return n_annotators, k, k

    @property
    def annotators(self) -> np.ndarray:
        return self.cells // self.floor.shape[1]

    @property
    def answers(self) -> np.ndarray:
        return self.cells % self.floor.shape[1]

    def unstored(self) -> np.ndarray:
        """(n_annotators, K) True where the row (w, a) is not stored."""
        mask = np.ones(self.floor.shape, dtype=bool)
        mask.reshape(-1)[self.cells] = False
        return mask

    def row_values(self, annotators: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """The rows e[w, a, :] for the given (w, a) pairs, shape (len, K)."""
        k = self.floor.shape[1]
        keys = annotators.astype(np.int64) * k + answers
        position = np.minimum(np.searchsorted(self.cells, keys), max(self.cells.size - 1, 0))
        stored = self.cells[position] == keys if self.cells.size else np.zeros(keys.size, bool)
        values = self.floor[annotators]
        if self.own_class is not None:
            missing = np.flatnonzero(~stored)
            values[missing, answers[missing]] = self.own_class[
                annotators[missing], answers[missing]
            ]
        values[stored] = self.rows[position[stored]]
        return values

    def diagonal(self) -> np.ndarray:
        """e[w, c, c], shape (n_annotators, K)."""
        values = (self.floor if self.own_class is None else self.own_class).copy()
        answers = self.answers
        values[self.annotators, answers] = self.rows[np.arange(self.cells.size), answers]
        return values

    def column_minimum(self) -> np.ndarray:
        """min over answers of e[w, a, c], shape (n_annotators, K truth)."""
        unstored = self.unstored()
        # Rows not stored other than the truth's own, each of which holds the floor there.
        others = unstored.sum(axis=1)[:, None] - unstored
        least = np.where(others > 0, self.floor, np.inf)
        own = self.floor if self.own_class is None else self.own_class
        least = np.where(unstored, np.minimum(least, own), least)
        if self.cells.size:
            annotators = self.annotators
            starts = np.flatnonzero(np.r_[True, annotators[1:] != annotators[:-1]])
            grouped = np.minimum.reduceat(self.rows, starts, axis=0)
            present = annotators[starts]
            least[present] = np.minimum(least[present], grouped)
        return least

    def dense(self) -> np.ndarray:
        """The (n_annotators, K answer, K truth) array; only for small shapes."""
        n_annotators, k = self.floor.shape
        dense = np.empty((n_annotators, k, k))
        dense[...] = self.floor[:, None, :]
        if self.own_class is not None:
            classes = np.arange(k)
            dense[:, classes, classes] = self.own_class
        dense.reshape(-1, k)[self.cells] = self.rows
        return dense
