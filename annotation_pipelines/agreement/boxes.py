"""Agreement on bounding boxes: 1 − matched IoU per pair of judgments, and F1 at an IoU.

For two annotators' box lists on one task, boxes are matched one-to-one by the assignment that
maximises the summed IoU (Hungarian algorithm, compiled; only same-label pairs with IoU > 0 may
match). `box_pair_distances` is 1 − (Σ matched IoU) / (number of objects), where the objects are
the matched pairs plus every unmatched box (an unmatched box counts IoU 0): 0 for identical
lists, 1 when nothing overlaps; both empty = identical. `box_f1_at_iou` is the detection F1
2·TP / (n_a + n_b) with TP the pairs matched at IoU ≥ the threshold (0.5, as in PASCAL VOC).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.boxes import flatten_boxes, label_codes, match_groups


def _match(values_a: pl.Series, values_b: pl.Series, min_iou: float) -> tuple[np.ndarray, ...]:
    if values_a.len() != values_b.len():
        raise ValueError(f"box agreement: {values_a.len()} values against {values_b.len()}")
    a_offsets, a_labels, a_coordinates = flatten_boxes(values_a)
    b_offsets, b_labels, b_coordinates = flatten_boxes(values_b)
    a_codes, b_codes = label_codes(a_labels, b_labels)
    sums, counts = match_groups(
        a_offsets, a_codes, a_coordinates, b_offsets, b_codes, b_coordinates, min_iou
    )
    return sums, counts.astype(np.float64), np.diff(a_offsets), np.diff(b_offsets)


def box_pair_distances(values_a: pl.Series, values_b: pl.Series) -> np.ndarray:
    """1 − mean IoU over the objects of each pair, under the optimal matching."""
    sums, matched, n_a, n_b = _match(values_a, values_b, 0.0)
    objects = n_a + n_b - matched
    return 1.0 - np.divide(sums, objects, out=np.ones_like(sums), where=objects > 0)


def box_f1_at_iou(
    values_a: pl.Series, values_b: pl.Series, *, threshold: float = 0.5
) -> np.ndarray:
    """Detection F1 of each pair with matches at IoU ≥ `threshold`; both empty = 1."""
    _, matched, n_a, n_b = _match(values_a, values_b, threshold)
    total = (n_a + n_b).astype(np.float64)
    return np.divide(2 * matched, total, out=np.ones_like(total), where=total > 0)
