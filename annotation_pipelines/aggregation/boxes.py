"""Bounding boxes: match across annotators by IoU, fuse by reliability, keep what enough saw.

Fusion follows R. Solovyev, W. Wang and T. Gabruseva, "Weighted boxes fusion: Ensembling boxes
from different object detection models", Image and Vision Computing 107, 2021: boxes are
clustered by IoU with the cluster's current fused box, and each cluster's coordinates are the
weighted mean of its members' coordinates (weights here are annotator reliabilities, not
detector scores). Annotator reliability is estimated iteratively, in the spirit of Dawid and
Skene (1979): fuse with the current weights, score each annotator against the fused objects,
re-weight, until the weights stop moving.

Model, per task:
- Clustering (greedy, as WBF): boxes are visited from the most to the least reliable annotator;
  a box joins the cluster whose fused box it overlaps most, provided the IoU is at least
  `iou_threshold`, the labels are equal (a null label only matches a null label) and its
  annotator has no box in that cluster yet; otherwise it starts a new cluster.
- Fusion: each coordinate is the reliability-weighted mean of the cluster's boxes.
- Support: the cluster's share of the task's annotators, weighted by reliability (annotators
  who submitted no box count in the denominator). A cluster is kept as an object when its
  support is at least `min_support`.
- Confidence of a kept box: support × the weighted mean IoU of its members with the fused box;
  high when many reliable annotators drew it and agreed on where. Task confidence: the mean over
  the task's clusters of the probability the keep/drop decision is right (support if kept,
  1 − support if dropped); 1 for a task where nobody drew a box. A task one annotator judged
  (without gold) has confidence 0.5, and so have its boxes: full support from a single
  annotator is no evidence either way, as for free text.
- Reliability of annotator w: F1 of (precision = share of w's boxes in kept clusters, recall =
  share of the kept objects of w's tasks that w drew) × w's mean IoU with the fused boxes,
  floored at `min_reliability` so a spammer's votes shrink but never vanish. `looseness` is w's
  mean area ratio to the fused box minus one (positive: w draws loose boxes; negative: tight).

Gold boxes anchor the fit: they enter as an extra annotator with an overwhelming, fixed weight,
so on gold tasks the fused objects are the gold boxes and every annotator is scored against them.

Method `majority` is the unweighted baseline: one pass with equal weights.

The whole path is vectorised (Polars, NumPy); the per-task clustering and the optimal matching
used by `gold_score` and the agreement distances are compiled Numba loops over tasks.
"""

from __future__ import annotations

import numba
import numpy as np
import polars as pl

from annotation_pipelines.aggregation.kinds_codes import fixed_weights
from annotation_pipelines.aggregation.kinds_result import KindAggregation

BOX = pl.Struct(
    {
        "label": pl.String,
        "x_min": pl.Float64,
        "y_min": pl.Float64,
        "x_max": pl.Float64,
        "y_max": pl.Float64,
    }
)
FUSED_BOX = pl.Struct({**dict(BOX), "confidence": pl.Float64})
COORDINATES = ("x_min", "y_min", "x_max", "y_max")
METHODS = ("weighted_fusion", "majority")
_GOLD_ANNOTATOR = "\x00gold"
# A task one annotator judged: no evidence either way, as for free text.
LONE_CONFIDENCE = 0.5
_GOLD_WEIGHT = 1e6
# Internal stand-in for a null label, so labels factorize as one string column.
_NULL_LABEL = "\x00null"


# IoU does not change when either axis is scaled. Where areas of boxes with coordinates near
# the largest float overflow, an axis whose coordinates pass `_HUGE_AXIS` is multiplied by
# `_AXIS_SHRINK` (a power of two, exact) and the IoU computed again: identical huge boxes then
# match with IoU 1 instead of an undefined inf / inf. Every other pair is computed as it always
# was, bit for bit. Widths and heights below 2^501 cannot make an area or a sum overflow.
_HUGE_AXIS = 2.0**500
_AXIS_SHRINK = 2.0**-600
# Fusion sums reliability-weighted coordinates (gold weighs 1e6): coordinates past this are
# fused divided by a power of two and multiplied back.
_FUSION_LIMIT = 2.0**900


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (n, 4) arrays of (x_min, y_min, x_max, y_max); 0 where both are empty."""
    intersection, union = _overlap(a, b)
    huge = ~(np.isfinite(intersection) & np.isfinite(union))
    if huge.any():
        intersection[huge], union[huge] = _overlap(*_shrunk_axes(a[huge], b[huge]))
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise (intersection, union) areas; not finite where they overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        width = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
        height = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
        intersection = np.clip(width, 0, None) * np.clip(height, 0, None)
        union = _area(a) + _area(b) - intersection
    return intersection, union


def _shrunk_axes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`a` and `b` with each row's axis shrunk where its coordinates pass `_HUGE_AXIS`."""
    factors = []
    for low, high in ((0, 2), (1, 3)):
        largest = np.max(np.abs(np.column_stack([a[:, low], a[:, high], b[:, low], b[:, high]])), 1)
        factors.append(np.where(largest > _HUGE_AXIS, _AXIS_SHRINK, 1.0))
    scale = np.column_stack([*factors, *factors])
    return a * scale, b * scale


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _area_ratio(boxes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Row-wise area of `boxes` over area of `reference` (1 where the reference has none), as
    the ratio of widths times the ratio of heights where an area overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        area, reference_area = _area(boxes), _area(reference)
        ratio = np.divide(area, reference_area, out=np.ones_like(area), where=reference_area > 0)
    huge = ~(np.isfinite(area) & np.isfinite(reference_area))
    if huge.any():
        # Halved before subtracting (exact): a width past the largest float stays finite.
        half, reference_half = boxes[huge] / 2.0, reference[huge] / 2.0
        sides = half[:, 2:] - half[:, :2]
        reference_sides = reference_half[:, 2:] - reference_half[:, :2]
        empty = np.any(reference_sides <= 0, axis=1)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            products = np.prod(sides / reference_sides, axis=1)
        ratio[huge] = np.where(empty, 1.0, products)
    return ratio


@numba.njit(cache=True, nogil=True)
def _iou_one(a: np.ndarray, i: int, b: np.ndarray, j: int) -> float:  # pragma: no cover
    width = min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0])
    height = min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1])
    if width <= 0.0 or height <= 0.0:
        return 0.0
    intersection = width * height
    union = (
        (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1])
        + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])
        - intersection
    )
    if not (np.isfinite(intersection) and np.isfinite(union)):
        return _iou_shrunk(a, i, b, j)
    return intersection / union if union > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _axis_factor(p: float, q: float, r: float, s: float) -> float:  # pragma: no cover
    largest = max(max(abs(p), abs(q)), max(abs(r), abs(s)))
    return _AXIS_SHRINK if largest > _HUGE_AXIS else 1.0


@numba.njit(cache=True, nogil=True)
def _iou_shrunk(a: np.ndarray, i: int, b: np.ndarray, j: int) -> float:  # pragma: no cover
    """`_iou_one` of a pair whose areas overflow, with its huge axes shrunk."""
    fx = _axis_factor(a[i, 0], a[i, 2], b[j, 0], b[j, 2])
    fy = _axis_factor(a[i, 1], a[i, 3], b[j, 1], b[j, 3])
    ax0, ay0, ax1, ay1 = a[i, 0] * fx, a[i, 1] * fy, a[i, 2] * fx, a[i, 3] * fy
    bx0, by0, bx1, by1 = b[j, 0] * fx, b[j, 1] * fy, b[j, 2] * fx, b[j, 3] * fy
    width = min(ax1, bx1) - max(ax0, bx0)
    height = min(ay1, by1) - max(ay0, by0)
    if width <= 0.0 or height <= 0.0:
        return 0.0
    intersection = width * height
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - intersection
    return intersection / union if union > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _cluster(
    task_starts: np.ndarray,
    labels: np.ndarray,
    annotators: np.ndarray,
    coordinates: np.ndarray,
    weights: np.ndarray,
    threshold: float,
) -> np.ndarray:  # pragma: no cover - compiled
    """Greedy WBF clustering; rows sorted by task, then by decreasing weight. Returns cluster ids.

    A box joins the cluster (of its task) whose running weighted-mean box it overlaps most with
    IoU ≥ threshold, same label, and no box yet from the same annotator.
    """
    n = labels.shape[0]
    clusters = np.empty(n, dtype=np.int64)
    cluster_labels = np.empty(n, dtype=labels.dtype)
    sums = np.zeros((n, 4))
    totals = np.zeros(n)
    fused = np.zeros((n, 4))
    next_cluster = 0
    for t in range(task_starts.shape[0] - 1):
        first_cluster = next_cluster
        start = task_starts[t]
        for row in range(start, task_starts[t + 1]):
            best = -1
            best_iou = -1.0
            for c in range(first_cluster, next_cluster):
                if cluster_labels[c] != labels[row]:
                    continue
                value = _iou_one(coordinates, row, fused, c)
                if value < threshold or value <= best_iou or value <= 0.0:
                    continue
                taken = False
                for other in range(start, row):
                    if clusters[other] == c and annotators[other] == annotators[row]:
                        taken = True
                        break
                if not taken:
                    best = c
                    best_iou = value
            if best < 0:
                best = next_cluster
                cluster_labels[best] = labels[row]
                next_cluster += 1
            clusters[row] = best
            totals[best] += weights[row]
            for k in range(4):
                sums[best, k] += weights[row] * coordinates[row, k]
                fused[best, k] = sums[best, k] / totals[best] if totals[best] > 0 else 0.0
    return clusters


@numba.njit(cache=True, nogil=True)
def _hungarian(
    cost: np.ndarray, n: int, m: int, assignment: np.ndarray
) -> None:  # pragma: no cover
    """Minimum-cost assignment of n rows to m ≥ n columns (shortest augmenting paths, O(n²m)).

    `assignment[i]` receives the column of row i. The classic potentials formulation
    (Kuhn–Munkres as refined by Jonker and Volgenant), 1-indexed internally.
    """
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=np.bool_)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = np.inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    current = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if current < minv[j]:
                        minv[j] = current
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    for j in range(1, m + 1):
        if p[j] > 0:
            assignment[p[j] - 1] = j - 1


@numba.njit(cache=True, nogil=True)
def match_groups(
    a_offsets: np.ndarray,
    a_labels: np.ndarray,
    a_coordinates: np.ndarray,
    b_offsets: np.ndarray,
    b_labels: np.ndarray,
    b_coordinates: np.ndarray,
    min_iou: float,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Per group g, the matching of a's boxes to b's boxes that maximises the summed IoU.

    Only same-label pairs with IoU ≥ `min_iou` (and > 0) may match. Returns, per group, the
    matched IoU sum and the number of matched pairs.
    """
    groups = a_offsets.shape[0] - 1
    sums = np.zeros(groups)
    counts = np.zeros(groups, dtype=np.int64)
    for g in range(groups):
        a0, a1 = a_offsets[g], a_offsets[g + 1]
        b0, b1 = b_offsets[g], b_offsets[g + 1]
        na, nb = a1 - a0, b1 - b0
        if na == 0 or nb == 0:
            continue
        transpose = na > nb
        n, m = (nb, na) if transpose else (na, nb)
        gain = np.zeros((n, m))
        for i in range(na):
            for j in range(nb):
                if a_labels[a0 + i] != b_labels[b0 + j]:
                    continue
                value = _iou_one(a_coordinates, a0 + i, b_coordinates, b0 + j)
                if value > 0.0 and value >= min_iou:
                    if transpose:
                        gain[j, i] = value
                    else:
                        gain[i, j] = value
        if n == 1:
            best = 0.0
            for j in range(m):
                best = max(best, gain[0, j])
            if best > 0.0:
                sums[g] = best
                counts[g] = 1
            continue
        assignment = np.empty(n, dtype=np.int64)
        _hungarian(-gain, n, m, assignment)
        for i in range(n):
            value = gain[i, assignment[i]]
            if value > 0.0:
                sums[g] += value
                counts[g] += 1
    return sums, counts


def label_codes(*columns: pl.Series) -> list[np.ndarray]:
    """One shared integer code per label across the given String columns (null is a label)."""
    lengths = [column.len() for column in columns]
    combined = pl.concat([column.cast(pl.String).fill_null(_NULL_LABEL) for column in columns])
    codes = combined.rank("dense").cast(pl.Int64).to_numpy()
    return list(np.split(codes, np.cumsum(lengths)[:-1]))


def flatten_boxes(values: pl.Series) -> tuple[np.ndarray, pl.Series, np.ndarray]:
    """A Series of box lists → (offsets per row, flat labels, flat (n, 4) coordinates).

    Null lists are empty; corners are ordered so x_min ≤ x_max and y_min ≤ y_max.
    """
    lengths = values.list.len().fill_null(0).cast(pl.Int64).to_numpy()
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = values.explode(empty_as_null=False, keep_nulls=False).struct.unnest()
    coordinates = _ordered(flat.select(COORDINATES).to_numpy().astype(np.float64))
    return offsets, flat["label"], coordinates


def _ordered(coordinates: np.ndarray) -> np.ndarray:
    low = np.minimum(coordinates[:, :2], coordinates[:, 2:])
    high = np.maximum(coordinates[:, :2], coordinates[:, 2:])
    return np.ascontiguousarray(np.hstack([low, high]))


def _check_unique(judgments: pl.DataFrame) -> None:
    duplicated = judgments.select(
        (~pl.struct("task_id", "annotator_id").is_first_distinct()).arg_true().first()
    ).item()
    if duplicated is not None:
        row = judgments.row(duplicated, named=True)
        raise ValueError(
            f"judgments row {duplicated}: task_id {row['task_id']!r} has more than one judgment "
            f"from annotator_id {row['annotator_id']!r}; one judgment per task and annotator"
        )


def aggregate_boxes(
    judgments: pl.DataFrame,
    *,
    method: str = "weighted_fusion",
    gold: pl.DataFrame | None = None,
    iou_threshold: float = 0.5,
    min_support: float = 0.5,
    min_reliability: float = 0.05,
    max_iter: int = 20,
    tol: float = 1e-4,
    reliability: pl.DataFrame | None = None,
) -> KindAggregation:
    """Fused boxes per task with confidences, and annotator reliability and looseness.

    `judgments` has `task_id`, `annotator_id`, `boxes` (List(BOX)); an empty list means the
    annotator saw no object. `gold` (`task_id`, `boxes`) anchors the fit on its tasks.
    `reliability` (`annotator_id`, `reliability`: weights of an earlier fit) fixes the weights:
    one fusion with them (an annotator it does not name weighs the median weight), as an
    incremental caller refits a few tasks.
    """
    if method not in METHODS:
        raise ValueError(f"unknown boxes method {method!r}; expected one of {METHODS}")
    _check_unique(judgments)
    frame = judgments.select("task_id", "annotator_id", "boxes")
    if gold is not None and gold.height:
        gold_rows = gold.select(
            "task_id", pl.lit(_GOLD_ANNOTATOR).alias("annotator_id"), "boxes"
        ).join(frame.select("task_id").unique(), on="task_id", how="semi")
        frame = pl.concat([frame, gold_rows.cast(frame.schema)])
    tasks, task_code = dense_codes(frame["task_id"])
    annotators, annotator_code = dense_codes(frame["annotator_id"])
    offsets, labels, coordinates = flatten_boxes(frame["boxes"])
    magnitude = float(np.max(np.abs(coordinates))) if coordinates.size else 0.0
    unit = 1.0
    if magnitude > _FUSION_LIMIT:
        unit = 2.0 ** (np.ceil(np.log2(magnitude)) - np.log2(_FUSION_LIMIT))
        coordinates = coordinates / unit
    lengths = np.diff(offsets)
    box_task = np.repeat(task_code, lengths)
    box_annotator = np.repeat(annotator_code, lengths)
    (box_label,) = label_codes(labels)
    # The gold annotator's name sorts first ("\x00…") whenever it is present.
    has_gold = annotators.len() > 0 and annotators[0] == _GOLD_ANNOTATOR
    gold_code = 0

    n_annotators = annotators.len()
    weights = np.ones(n_annotators)
    if reliability is not None and method != "majority":
        weights = np.maximum(fixed_weights(annotators, reliability), min_reliability)
    if has_gold:
        weights[gold_code] = _GOLD_WEIGHT
    iterations = 0
    converged = True
    rounds = 1 if method == "majority" or reliability is not None else max_iter
    for _ in range(rounds):
        iterations += 1
        state = _fuse(
            box_task=box_task,
            box_annotator=box_annotator,
            box_label=box_label,
            coordinates=coordinates,
            task_code=task_code,
            annotator_code=annotator_code,
            n_tasks=tasks.len(),
            weights=weights,
            iou_threshold=iou_threshold,
            min_support=min_support,
        )
        scores = _annotator_scores(state, box_annotator, annotator_code, task_code, n_annotators)
        if rounds == 1:
            break
        new_weights = np.maximum(scores["reliability"], min_reliability)
        if has_gold:
            new_weights[gold_code] = _GOLD_WEIGHT
        change = float(np.max(np.abs(new_weights - weights))) if n_annotators else 0.0
        weights = new_weights
        converged = change < tol
        if converged:
            break

    lone = np.bincount(task_code, minlength=tasks.len()) == 1
    if unit != 1.0:
        state = {**state, "fused": state["fused"] * unit}
    labels_frame = _labels_frame(state, tasks, labels, lone=lone)
    n_judgments = np.bincount(annotator_code, minlength=n_annotators)
    annotator_frame = pl.DataFrame(
        {
            "annotator_id": annotators,
            "reliability": scores["reliability"],
            "n_judgments": n_judgments.astype(np.int64),
            "n_boxes": np.bincount(box_annotator, minlength=n_annotators).astype(np.int64),
            "precision": scores["precision"],
            "recall": scores["recall"],
            "mean_iou": scores["mean_iou"],
            "looseness": scores["looseness"],
        }
    ).filter(pl.col("annotator_id") != _GOLD_ANNOTATOR)
    return KindAggregation(
        labels=labels_frame,
        annotators=annotator_frame,
        method=method,
        converged=converged,
        iterations=iterations,
    )


def dense_codes(values: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """(sorted unique values, each value's index in them); Polars' multi-threaded rank."""
    codes = values.rank("dense").cast(pl.Int64).to_numpy() - 1
    return values.unique().sort(), codes


def _fuse(
    *,
    box_task: np.ndarray,
    box_annotator: np.ndarray,
    box_label: np.ndarray,
    coordinates: np.ndarray,
    task_code: np.ndarray,
    annotator_code: np.ndarray,
    n_tasks: int,
    weights: np.ndarray,
    iou_threshold: float,
    min_support: float,
) -> dict[str, np.ndarray]:
    """One clustering + fusion pass with the given annotator weights."""
    box_weight = weights[box_annotator]
    # Within a task: most reliable annotator first; ties by annotator code, then input order.
    order = np.lexsort((box_annotator, -box_weight, box_task))
    task_starts = np.searchsorted(box_task[order], np.arange(n_tasks + 1))
    clusters_sorted = _cluster(
        task_starts,
        box_label[order],
        box_annotator[order],
        coordinates[order],
        box_weight[order],
        iou_threshold,
    )
    cluster = np.empty_like(clusters_sorted)
    cluster[order] = clusters_sorted
    n_clusters = int(cluster.max()) + 1 if cluster.size else 0
    total = np.bincount(cluster, weights=box_weight, minlength=n_clusters)
    safe_total = np.where(total > 0, total, 1.0)
    fused = (
        np.column_stack(
            [
                np.bincount(cluster, weights=box_weight * coordinates[:, k], minlength=n_clusters)
                / safe_total
                for k in range(4)
            ]
        )
        if n_clusters
        else np.zeros((0, 4))
    )
    cluster_task = np.zeros(n_clusters, dtype=np.int64)
    cluster_task[cluster] = box_task
    cluster_label = np.zeros(n_clusters, dtype=np.int64)
    cluster_label[cluster] = np.arange(box_label.shape[0])  # a representative box row
    task_weight = np.bincount(task_code, weights=weights[annotator_code], minlength=n_tasks)
    support = total / np.where(task_weight[cluster_task] > 0, task_weight[cluster_task], 1.0)
    support = np.minimum(support, 1.0)
    keep = support >= min_support - 1e-12
    member_iou = iou(coordinates, fused[cluster]) if n_clusters else np.zeros(0)
    mean_iou = (
        np.bincount(cluster, weights=box_weight * member_iou, minlength=n_clusters) / safe_total
    )
    return {
        "cluster": cluster,
        "fused": fused,
        "cluster_task": cluster_task,
        "cluster_row": cluster_label,
        "support": support,
        "keep": keep,
        "member_iou": member_iou,
        "cluster_mean_iou": mean_iou,
        "coordinates": coordinates,
    }


def _annotator_scores(
    state: dict[str, np.ndarray],
    box_annotator: np.ndarray,
    annotator_code: np.ndarray,
    task_code: np.ndarray,
    n_annotators: int,
) -> dict[str, np.ndarray]:
    cluster = state["cluster"]
    keep = state["keep"]
    in_kept = keep[cluster] if cluster.size else np.zeros(0, dtype=bool)
    n_boxes = np.bincount(box_annotator, minlength=n_annotators).astype(np.float64)
    kept_boxes = np.bincount(box_annotator, weights=in_kept, minlength=n_annotators)
    kept_per_task = np.bincount(
        state["cluster_task"][keep], minlength=int(task_code.max()) + 1 if task_code.size else 0
    )
    objects_seen = np.bincount(
        annotator_code, weights=kept_per_task[task_code], minlength=n_annotators
    )
    precision = np.divide(kept_boxes, n_boxes, out=np.zeros(n_annotators), where=n_boxes > 0)
    recall = np.divide(kept_boxes, objects_seen, out=np.ones(n_annotators), where=objects_seen > 0)
    # An annotator with no boxes on tasks without objects is neither precise nor imprecise.
    precision = np.where((n_boxes == 0) & (objects_seen == 0), 1.0, precision)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros(n_annotators),
        where=(precision + recall) > 0,
    )
    member_iou = state["member_iou"]
    iou_sum = np.bincount(box_annotator, weights=member_iou * in_kept, minlength=n_annotators)
    mean_iou = np.divide(iou_sum, kept_boxes, out=np.zeros(n_annotators), where=kept_boxes > 0)
    ratio = (
        _area_ratio(state["coordinates"], state["fused"][cluster]) if cluster.size else np.zeros(0)
    )
    ratio_sum = np.bincount(box_annotator, weights=(ratio - 1.0) * in_kept, minlength=n_annotators)
    looseness = np.divide(
        ratio_sum, kept_boxes, out=np.full(n_annotators, np.nan), where=kept_boxes > 0
    )
    reliability = np.where(kept_boxes > 0, f1 * mean_iou, f1)
    return {
        "precision": precision,
        "recall": recall,
        "mean_iou": np.where(kept_boxes > 0, mean_iou, np.nan),
        "looseness": looseness,
        "reliability": reliability,
    }


def _labels_frame(
    state: dict[str, np.ndarray], tasks: pl.Series, labels: pl.Series, *, lone: np.ndarray
) -> pl.DataFrame:
    """`lone`: per task, whether one annotator (and no gold) judged it: a lone annotator's
    boxes have full support by construction, which is no evidence that anyone would agree."""
    keep = state["keep"]
    support = np.where(lone[state["cluster_task"]], LONE_CONFIDENCE, state["support"])
    n_tasks = tasks.len()
    cluster_task = state["cluster_task"]
    confidence = support * state["cluster_mean_iou"]
    fused = state["fused"]
    kept = np.flatnonzero(keep)
    # Task confidence: mean probability that each keep/drop decision is right.
    decision = np.where(keep, support, 1.0 - support)
    n_clusters = np.bincount(cluster_task, minlength=n_tasks)
    decision_sum = np.bincount(cluster_task, weights=decision, minlength=n_tasks)
    task_confidence = np.divide(
        decision_sum, n_clusters, out=np.ones(n_tasks), where=n_clusters > 0
    )
    task_confidence[lone] = LONE_CONFIDENCE
    objects = pl.DataFrame(
        {
            "task": cluster_task[kept],
            "label": labels.gather(state["cluster_row"][kept]).cast(pl.String)
            if kept.size
            else pl.Series([], dtype=pl.String),
            "x_min": fused[kept, 0],
            "y_min": fused[kept, 1],
            "x_max": fused[kept, 2],
            "y_max": fused[kept, 3],
            "confidence": confidence[kept],
        },
        schema={
            "task": pl.Int64,
            "label": pl.String,
            **dict.fromkeys(COORDINATES, pl.Float64),
            "confidence": pl.Float64,
        },
    )
    grouped = objects.group_by("task").agg(
        pl.struct("label", *COORDINATES, "confidence").alias("boxes")
    )
    frame = pl.DataFrame({"task": np.arange(n_tasks), "task_id": tasks})
    return (
        frame.join(grouped, on="task", how="left")
        .sort("task")
        .select(
            "task_id",
            pl.col("boxes")
            .fill_null(pl.lit([], dtype=pl.List(FUSED_BOX)))
            .cast(pl.List(FUSED_BOX)),
            pl.Series("confidence", task_confidence),
        )
    )


def gold_score(
    judgments: pl.DataFrame, gold: pl.DataFrame, *, iou_threshold: float = 0.5
) -> pl.DataFrame:
    """Per annotator on gold tasks: precision, recall, F1 at IoU ≥ `iou_threshold`, mean IoU.

    Boxes are matched one-to-one to gold boxes of the same label by the assignment that
    maximises summed IoU among pairs at or above the threshold; `mean_iou` is the mean IoU of
    the matched pairs.
    """
    paired = judgments.select("task_id", "annotator_id", "boxes").join(
        gold.select("task_id", pl.col("boxes").alias("gold_boxes")), on="task_id", how="inner"
    )
    a_offsets, a_labels, a_coordinates = flatten_boxes(paired["boxes"])
    b_offsets, b_labels, b_coordinates = flatten_boxes(paired["gold_boxes"])
    a_codes, b_codes = label_codes(a_labels, b_labels)
    sums, counts = match_groups(
        a_offsets, a_codes, a_coordinates, b_offsets, b_codes, b_coordinates, iou_threshold
    )
    per_pair = paired.select("annotator_id").with_columns(
        matched=pl.Series(counts),
        iou_sum=pl.Series(sums),
        n_boxes=pl.Series(np.diff(a_offsets)),
        n_gold=pl.Series(np.diff(b_offsets)),
    )
    totals = per_pair.group_by("annotator_id").agg(
        pl.len().alias("n_gold_tasks"),
        pl.col("matched", "iou_sum", "n_boxes", "n_gold").sum(),
    )
    return (
        totals.with_columns(
            precision=pl.when(pl.col("n_boxes") > 0)
            .then(pl.col("matched") / pl.col("n_boxes"))
            .otherwise(pl.lit(None, dtype=pl.Float64)),
            recall=pl.when(pl.col("n_gold") > 0)
            .then(pl.col("matched") / pl.col("n_gold"))
            .otherwise(pl.lit(None, dtype=pl.Float64)),
            f1=pl.when((pl.col("n_boxes") + pl.col("n_gold")) > 0)
            .then(2 * pl.col("matched") / (pl.col("n_boxes") + pl.col("n_gold")))
            .otherwise(1.0),
            mean_iou=pl.when(pl.col("matched") > 0)
            .then(pl.col("iou_sum") / pl.col("matched"))
            .otherwise(pl.lit(None, dtype=pl.Float64)),
        )
        .select(
            "annotator_id",
            "n_gold_tasks",
            "n_boxes",
            "n_gold",
            "precision",
            "recall",
            "f1",
            "mean_iou",
        )
        .sort("annotator_id")
    )
