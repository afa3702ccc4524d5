"""Text spans: character-level Dawid–Skene over elementary intervals, merged back into spans.

A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the
EM Algorithm", Journal of the Royal Statistical Society C 28(1), 1979, 20–28; applied to
sequence labels as in the character/token-level baselines of A. T. Nguyen, B. C. Wallace,
J. J. Li, A. Nenkova and M. Lease, "Aggregating and Predicting Sequence Labels from Crowd
Annotations", ACL 2017, and E. Simpson and I. Gurevych, "A Bayesian Approach for Sequence
Tagging with Crowds", EMNLP 2019 (who show per-token Dawid–Skene to be a strong, simple
baseline; the sequential HMM-Crowd and BSC models are not implemented here). In a task where
some markup nests (one annotator's or gold's spans overlap), each label is its own layer, as
nested named entities are tagged one entity type at a time (B. Alex, B. Haddow and C. Grover,
"Recognising Nested Named Entities in Biomedical Text", BioNLP 2007, 65–72, their cascade of
one tagger per type), so spans of different labels may overlap or nest there.

Model: in a task read jointly (its markup flat), every character of its text has a hidden class
z ∈ {O, label_1, …, label_L} drawn from a prior p; annotator w tags it class k with probability
e_w[k, z] (one confusion matrix per annotator, shared across tasks). An annotator who judged a
task and drew no span over a character says O there. In a nested task each label ℓ is a layer
whose characters have z ∈ {O, ℓ}, read with the same matrices: an annotator who drew no span of
label ℓ over a character says O there in ℓ's layer. Reading every task in layers would lose what
the joint model learns from an annotator who writes PER where the others write ORG (a confusion,
not a miss and a false positive), which costs exact span F1 on flat markup. EM alternates the
posterior of every character's class and the re-estimation of the confusion matrices and prior
from length-weighted expected counts.

Characters are not materialised: each task (each layer of a nested one) is cut into elementary
intervals at the union of its span boundaries (judgments' and gold's), so every character of an
interval sees the same answers and shares one posterior. Work scales with spans, not characters:
an interval weighs its length in the M-step and the likelihood. Only the stretch between a
task's first and last boundary is modelled (the text length is not known here); characters
outside it are O by unanimity. The E-step is one sparse product: the sum of the annotators' log
e[O, ·] over the task, corrected by +log e[k, ·] − log e[O, ·] for each (interval, annotator)
tagged k, with the classes of other layers ruled out. One annotator's overlapping spans of one
label read as their union. Given the task texts (`texts=`), spans snap outward to whitespace
tokens and intervals weigh their token count, so the same model runs over tokens instead of
characters.

Decoding: the MAP class per interval; consecutive intervals of a layer with its label merge into
one span, except at a boundary where more annotators start a span than continue one across it
(so two adjacent entities of one label stay two). A span's confidence is its label's posterior
averaged over its characters. A task's confidence is the probability that its whole span set is
right, as the policy and the snapshots read it: the product over its modelled intervals of the
MAP posterior (1 when nobody drew a span). The model reads each interval alone, so annotators
who each mark an entity in a different place look like as many false positives and "no spans"
would read as certain; when the decoded set is empty but some annotator marked a span, the
confidence is capped by the probability that the task holds no entity at all, from a
task-level two-class Dawid–Skene over "marked something" (`_entity_posterior`). Every annotator
marking somewhere else thus gives an empty set at a low confidence — no consensus, which the
policy asks again about and the snapshots leave out — while an empty set that nobody disputes
stays at 1 (no entity). A task one annotator judged (outside gold) has confidence 0.5, and so
have its spans: one markup agrees with itself, which is no evidence either way (the same for
every kind).

Annotators: `reliability` is the character-level F1 of the annotator against the fitted
consensus (expected counts, O excluded), with its `precision` and `recall`. Gold spans clamp the
posterior of their tasks' intervals, anchoring the confusion matrices; a gold task with no
spans clamps its intervals to O.

Method `majority` is the baseline: per character and label, whether most of the task's
annotators gave that label (ties to O).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from annotation_pipelines.aggregation.boxes import dense_codes
from annotation_pipelines.aggregation.kinds_result import KindAggregation

SPAN = pl.Struct({"start": pl.Int64, "end": pl.Int64, "label": pl.String})
SCORED_SPAN = pl.Struct({**dict(SPAN), "confidence": pl.Float64})
METHODS = ("dawid_skene", "majority")
_EPSILON = 1e-10
_NULL_LABEL = "\x00null"
# A task one annotator judged: no evidence either way.
LONE_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Segmented:
    """Spans cut into elementary intervals.

    Intervals (index i): `task`, `start`, `end` (sorted by task, then start). Tags (one per
    interval × annotator who covered it with a span): `tag_interval`, `tag_annotator`,
    `tag_class` (1-based label code), `tag_first` (the interval is the first of that span).
    `pairs_task`/`pairs_annotator`: every (task, annotator) judgment. `classes`: the label per
    class code (code 0 is O, not listed). `gold_class`: per interval, the gold class code, −1
    outside gold tasks; `gold_task`: per task, whether gold holds it (its spans may be none).
    """

    task: np.ndarray
    start: np.ndarray
    end: np.ndarray
    tag_interval: np.ndarray
    tag_annotator: np.ndarray
    tag_class: np.ndarray
    tag_first: np.ndarray
    pairs_task: np.ndarray
    pairs_annotator: np.ndarray
    gold_class: np.ndarray | None
    tasks: pl.Series
    annotators: pl.Series
    classes: list[str | None]
    tokens: np.ndarray | None = None
    gold_task: np.ndarray | None = None
    layer_class: np.ndarray | None = None

    def excluded(self) -> np.ndarray | None:
        """Per interval and class, whether the class is out of the interval's label layer (a task
        read jointly, `layer_class` 0, rules none out)."""
        if self.layer_class is None:
            return None
        allowed = np.zeros((self.task.shape[0], self.n_classes), dtype=bool)
        allowed[:, 0] = True
        allowed[self.layer_class == 0] = True
        allowed[np.arange(self.task.shape[0]), self.layer_class] = True
        return ~allowed

    @property
    def length(self) -> np.ndarray:
        """Each interval's weight: its characters, or its tokens in token mode."""
        if self.tokens is not None:
            return self.tokens
        return (self.end - self.start).astype(np.float64)

    @property
    def n_classes(self) -> int:
        return len(self.classes) + 1


def flatten_spans(values: pl.Series) -> tuple[np.ndarray, pl.DataFrame]:
    """A Series of span lists → (offsets per row, flat frame of start, end, label)."""
    lengths = values.list.len().fill_null(0).cast(pl.Int64).to_numpy()
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = values.explode(empty_as_null=False, keep_nulls=False).struct.unnest()
    return offsets, flat.select(
        pl.col("start").cast(pl.Int64),
        pl.col("end").cast(pl.Int64),
        pl.col("label").cast(pl.String),
    )


def _check(judgments: pl.DataFrame) -> None:
    duplicated = judgments.select(
        (~pl.struct("task_id", "annotator_id").is_first_distinct()).arg_true().first()
    ).item()
    if duplicated is not None:
        row = judgments.row(duplicated, named=True)
        raise ValueError(
            f"judgments row {duplicated}: task_id {row['task_id']!r} has more than one judgment "
            f"from annotator_id {row['annotator_id']!r}; one judgment per task and annotator"
        )


def segment(
    judgments: pl.DataFrame,
    gold: pl.DataFrame | None = None,
    *,
    texts: pl.DataFrame | None = None,
    layers: bool = False,
) -> Segmented:
    """Cut every task's spans (and gold spans) into elementary intervals; see `Segmented`.

    With `layers`, each label of a task where some markup (an annotator's or gold) overlaps
    itself is cut on its own (`layer_class` names the interval's label, 0 in the tasks read
    jointly), so spans of different labels may overlap; otherwise one annotator's overlapping
    spans tag an interval with the smallest label code.

    With `texts` (`task_id`, `text`), spans snap outward to whitespace tokens (a boundary inside
    a token moves to that token's edge; one in whitespace moves to the nearest token inside the
    span) and intervals weigh their number of tokens: the model becomes token-level.
    """
    _check(judgments)
    tasks, task_code = dense_codes(judgments["task_id"])
    annotators, annotator_code = dense_codes(judgments["annotator_id"])
    offsets, flat = flatten_spans(judgments["spans"])
    span_task = np.repeat(task_code, np.diff(offsets))
    span_annotator = np.repeat(annotator_code, np.diff(offsets))
    gold_tasks = None
    if gold is not None and gold.height:
        gold = gold.join(judgments.select("task_id").unique(), on="task_id", how="semi")
        gold_offsets, gold_flat = flatten_spans(gold["spans"])
        gold_codes = np.searchsorted(tasks.to_numpy(), gold["task_id"].to_numpy())
        gold_task = np.repeat(gold_codes, np.diff(gold_offsets)).astype(np.int64)
        gold_tasks = np.zeros(tasks.len(), dtype=bool)
        gold_tasks[gold_codes] = True
    else:
        gold_flat = flat.clear()
        gold_task = np.zeros(0, dtype=np.int64)
    _check_offsets(judgments, offsets, flat)
    all_flat = pl.concat([flat, gold_flat])
    label_key = all_flat["label"].fill_null(_NULL_LABEL)
    class_names = label_key.unique().sort()
    all_class = np.searchsorted(class_names.to_numpy(), label_key.to_numpy()).astype(np.int64) + 1
    all_task = np.concatenate([span_task, gold_task])
    all_start = all_flat["start"].to_numpy()
    all_end = all_flat["end"].to_numpy()
    token_index = None
    if texts is not None:
        token_index = _tokens(tasks, texts)
        all_start, all_end = _snap(token_index, all_task, all_start, all_end)
    valid = all_end > all_start
    is_gold = np.zeros(all_task.shape[0], dtype=bool)
    is_gold[span_task.shape[0] :] = True
    all_task, all_start, all_end, all_class, is_gold = (
        array[valid] for array in (all_task, all_start, all_end, all_class, is_gold)
    )
    span_annotator = span_annotator[valid[: span_annotator.shape[0]]]
    n_codes = class_names.len() + 1
    all_layer = all_task
    if layers:
        markup = np.r_[span_annotator, np.full(int(is_gold.sum()), -1, dtype=np.int64)]
        nested = _nested_tasks(all_task, markup, all_start, all_end, tasks.len())
        all_layer = all_task * n_codes + np.where(nested[all_task], all_class, 0)

    stride = int(all_end.max()) + 1 if all_end.size else 1
    keys = np.unique(np.concatenate([all_layer * stride + all_start, all_layer * stride + all_end]))
    boundary_layer = keys // stride
    opens = boundary_layer[:-1] == boundary_layer[1:]  # boundary k opens interval k → k+1
    interval_of_boundary = np.cumsum(opens) - opens  # valid only where opens
    first_boundary = np.searchsorted(keys, all_layer * stride + all_start)
    last_boundary = np.searchsorted(keys, all_layer * stride + all_end)
    covered = last_boundary - first_boundary
    first_interval = interval_of_boundary[first_boundary]
    owner = np.repeat(np.arange(all_task.shape[0]), covered)
    step = np.arange(owner.shape[0]) - np.repeat(np.cumsum(covered) - covered, covered)
    tag_interval = first_interval[owner] + step
    tag_first = step == 0
    tag_class = all_class[owner]
    tag_gold = is_gold[owner]

    interval_layer = boundary_layer[:-1][opens]
    interval_task = interval_layer // n_codes if layers else interval_layer
    interval_start = (keys[:-1] % stride)[opens]
    interval_end = (keys[1:] % stride)[opens]
    gold_class = None
    # A gold task with no spans clamps its intervals to O: "no entity" is a gold answer too.
    if gold_tasks is not None and gold_tasks.any():
        gold_class = np.full(interval_task.shape[0], -1, dtype=np.int64)
        gold_class[gold_tasks[interval_task]] = 0
        gold_class[tag_interval[tag_gold]] = tag_class[tag_gold]
    # One tag per (interval, annotator): where one annotator's spans overlap, the smallest label
    # code, and a span that goes on across the interval's start before one that starts there, so
    # overlapping spans of one label read as their union.
    judged_owner = owner[~tag_gold]
    tag_annotator_all = span_annotator[judged_owner]
    n_annotators = max(annotators.len(), 1)
    order = np.lexsort(
        (
            tag_first[~tag_gold],
            tag_class[~tag_gold],
            tag_annotator_all,
            tag_interval[~tag_gold],
        )
    )
    pair_key = (tag_interval[~tag_gold] * n_annotators + tag_annotator_all)[order]
    keep = order[np.r_[True, pair_key[1:] != pair_key[:-1]]] if order.size else order
    tokens = None
    if token_index is not None:
        keys_start, token_stride = token_index[0], token_index[3]
        tokens = (
            np.searchsorted(keys_start, interval_task * token_stride + interval_end)
            - np.searchsorted(keys_start, interval_task * token_stride + interval_start)
        ).astype(np.float64)
    return Segmented(
        tokens=tokens,
        task=interval_task,
        start=interval_start,
        end=interval_end,
        tag_interval=tag_interval[~tag_gold][keep],
        tag_annotator=tag_annotator_all[keep],
        tag_class=tag_class[~tag_gold][keep],
        tag_first=tag_first[~tag_gold][keep],
        pairs_task=task_code,
        pairs_annotator=annotator_code,
        gold_class=gold_class,
        gold_task=gold_tasks,
        tasks=tasks,
        annotators=annotators,
        classes=[None if name == _NULL_LABEL else name for name in class_names.to_list()],
        layer_class=interval_layer % n_codes if layers else None,
    )


def _nested_tasks(
    task: np.ndarray, markup: np.ndarray, start: np.ndarray, end: np.ndarray, n_tasks: int
) -> np.ndarray:
    """Per task, whether one markup (an annotator's, or gold as −1) holds overlapping spans."""
    overlapping = (
        pl.DataFrame({"task": task, "markup": markup, "start": start, "end": end})
        .sort("task", "markup", "start")
        .with_columns(reach=pl.col("end").cum_max().shift(1).over("task", "markup"))
        .filter(pl.col("start") < pl.col("reach"))
        .get_column("task")
        .to_numpy()
    )
    nested = np.zeros(n_tasks, dtype=bool)
    nested[overlapping] = True
    return nested


_TOKEN = re.compile(r"\S+")


def _tokens(
    tasks: pl.Series, texts: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Whitespace tokens of every task: (task·stride + start keys, task codes, ends, stride)."""
    joined = (
        pl.DataFrame({"task_id": tasks})
        .with_row_index("task")
        .join(texts.select("task_id", "text"), on="task_id", how="left", maintain_order="left")
    )
    missing = joined.filter(pl.col("text").is_null())
    if missing.height:
        raise ValueError(f"texts: no text for task_id {missing['task_id'][0]!r}")
    task_codes: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    for task, text in joined.select("task", "text").iter_rows():
        for match in _TOKEN.finditer(text):
            task_codes.append(task)
            starts.append(match.start())
            ends.append(match.end())
    longest = joined["text"].str.len_chars().max()
    # len_chars is a UInt32 column: its max is an int, or None when there is no text.
    stride = (longest if isinstance(longest, int) else 0) + 1
    task_array = np.asarray(task_codes, dtype=np.int64)
    keys = task_array * stride + np.asarray(starts, dtype=np.int64)
    return keys, task_array, np.asarray(ends, dtype=np.int64), stride


def _snap(
    token_index: tuple[np.ndarray, np.ndarray, np.ndarray, int],
    task: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Spans widened to whole tokens; a span over whitespace only gets end ≤ start (dropped)."""
    keys, token_task, token_end, stride = token_index
    if keys.size == 0:
        return start, start
    token_start = keys - token_task * stride
    last = keys.size - 1
    # Token at or before the start: inside it → its start; else the next token of the task.
    i = np.searchsorted(keys, task * stride + start, side="right") - 1
    inside = (
        (i >= 0)
        & (token_task[np.clip(i, 0, last)] == task)
        & (token_end[np.clip(i, 0, last)] > start)
    )
    following = np.clip(np.where(inside, i, i + 1), 0, last)
    new_start = np.where(token_task[following] == task, token_start[following], end)
    # Token at or before the last character: its end (whitespace → the previous token's end).
    j = np.clip(np.searchsorted(keys, task * stride + end - 1, side="right") - 1, 0, last)
    new_end = np.where(token_task[j] == task, token_end[j], start)
    return new_start, np.where(new_end > new_start, new_end, new_start)


def _check_offsets(judgments: pl.DataFrame, offsets: np.ndarray, flat: pl.DataFrame) -> None:
    bad = flat.select(
        (pl.col("start").is_null() | pl.col("end").is_null() | (pl.col("start") < 0)).arg_true()
    )
    if bad.height:
        span = int(bad.item(0, 0))
        row = int(np.searchsorted(offsets, span, side="right") - 1)
        raise ValueError(
            f"judgments row {row} (task_id {judgments['task_id'][row]!r}), field spans: span "
            f"{span - offsets[row]} has a missing or negative start/end"
        )


def _matrices(seg: Segmented) -> tuple[sparse.csr_array, sparse.csr_array, sparse.csr_array]:
    """(D: intervals × annotator·K, +1 at the tag, −1 at O; TA: tasks × annotators; IT)."""
    k = seg.n_classes
    n_intervals = seg.task.shape[0]
    n_annotators = seg.annotators.len()
    tags = seg.tag_interval.shape[0]
    rows = np.concatenate([seg.tag_interval, seg.tag_interval])
    columns = np.concatenate([seg.tag_annotator * k + seg.tag_class, seg.tag_annotator * k])
    data = np.concatenate([np.ones(tags), -np.ones(tags)])
    d = sparse.csr_array((data, (rows, columns)), shape=(n_intervals, n_annotators * k))
    ta = sparse.csr_array(
        (np.ones(seg.pairs_task.shape[0]), (seg.pairs_task, seg.pairs_annotator)),
        shape=(seg.tasks.len(), n_annotators),
    )
    it = sparse.csr_array(
        (np.ones(n_intervals), (seg.task, np.arange(n_intervals))),
        shape=(seg.tasks.len(), n_intervals),
    )
    return d, ta, it


def _votes(seg: Segmented, ta: sparse.csr_array) -> np.ndarray:
    """Votes per interval and class; O gets the task's annotators who did not tag it."""
    k = seg.n_classes
    votes = np.zeros((seg.task.shape[0], k))
    np.add.at(votes, (seg.tag_interval, seg.tag_class), 1.0)
    per_task = np.asarray(ta.sum(axis=1)).ravel()
    votes[:, 0] = per_task[seg.task] - votes[:, 1:].sum(axis=1)
    return votes


def _clamp(posteriors: np.ndarray, gold_class: np.ndarray | None) -> np.ndarray:
    if gold_class is not None:
        rows = np.flatnonzero(gold_class >= 0)
        posteriors[rows] = 0.0
        posteriors[rows, gold_class[rows]] = 1.0
    return posteriors


def _expected_counts(
    seg: Segmented,
    matrices: tuple[sparse.csr_array, sparse.csr_array, sparse.csr_array],
    posteriors: np.ndarray,
) -> np.ndarray:
    """counts[w, answer, truth]: characters w tagged `answer` weighted by P(truth)."""
    d, ta, it = matrices
    k = seg.n_classes
    weighted = posteriors * seg.length[:, None]
    counts = np.asarray(d.T @ weighted)
    per_task = np.asarray(it @ weighted)
    counts[0::k] += np.asarray(ta.T @ per_task)
    return counts.reshape(seg.annotators.len(), k, k)


def _fit(
    seg: Segmented,
    matrices: tuple[sparse.csr_array, sparse.csr_array, sparse.csr_array],
    *,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    d, ta, _ = matrices
    k = seg.n_classes
    length = seg.length
    characters = max(float(length.sum()), 1.0)
    votes = _votes(seg, ta)
    excluded = seg.excluded()
    posteriors = _clamp(votes / np.maximum(votes.sum(axis=1, keepdims=True), 1.0), seg.gold_class)
    previous = -np.inf
    iterations = 0
    converged = False
    for _ in range(max_iter):
        iterations += 1
        counts = _expected_counts(seg, matrices, posteriors)
        errors = np.maximum(counts, _EPSILON)
        errors /= errors.sum(axis=1, keepdims=True)
        log_errors = np.log(errors)
        prior = np.maximum(length @ posteriors / characters, _EPSILON)
        base = np.asarray(ta @ log_errors[:, 0, :])
        scores = np.asarray(d @ log_errors.reshape(-1, k)) + base[seg.task] + np.log(prior)
        if excluded is not None:
            scores[excluded] = -np.inf
        top = scores.max(axis=1, keepdims=True)
        np.exp(scores - top, out=scores)
        total = scores.sum(axis=1, keepdims=True)
        objective = float(length @ (np.log(total[:, 0]) + top[:, 0])) / characters
        posteriors = _clamp(scores / total, seg.gold_class)
        change = objective - previous
        converged = bool(abs(change) < tol)
        if change < tol:
            break
        previous = objective
    return posteriors, _expected_counts(seg, matrices, posteriors), iterations, converged


def aggregate_spans(
    judgments: pl.DataFrame,
    *,
    method: str = "dawid_skene",
    gold: pl.DataFrame | None = None,
    texts: pl.DataFrame | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> KindAggregation:
    """Consensus spans per task with confidences, and annotator character-level reliability.

    `judgments` has `task_id`, `annotator_id`, `spans` (List(SPAN)); an empty list means the
    annotator found nothing. `gold` (`task_id`, `spans`) clamps its tasks. With `texts`
    (`task_id`, `text`) the model is token-level (see `segment`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown spans method {method!r}; expected one of {METHODS}")
    seg = segment(
        judgments.select("task_id", "annotator_id", "spans"), gold, texts=texts, layers=True
    )
    matrices = _matrices(seg)
    if method == "majority":
        votes = _votes(seg, matrices[1])
        best = _argmax_o_first(votes)
        posteriors = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1.0)
        posteriors = _clamp(posteriors, seg.gold_class)
        one_hot = np.zeros_like(posteriors)
        one_hot[np.arange(best.shape[0]), _argmax_o_first(posteriors)] = 1.0
        counts = _expected_counts(seg, matrices, one_hot)
        iterations, converged = 1, True
    else:
        posteriors, counts, iterations, converged = _fit(seg, matrices, max_iter=max_iter, tol=tol)
    return KindAggregation(
        labels=_judged_once(_decode(seg, posteriors), judgments, gold),
        annotators=_annotator_frame(seg, counts),
        method=method,
        converged=converged,
        iterations=iterations,
    )


@dataclass(frozen=True)
class SpanConfusion:
    """A spans fit's annotator parameters, to carry into a later fit of a few tasks.

    `counts[w, answer, truth]`: annotator w's length-weighted expected counts over the class
    codes (0 is O, then `classes` in order); `prior`: the length-weighted mass of each class.
    """

    classes: list[str | None]
    annotators: pl.Series
    counts: np.ndarray
    prior: np.ndarray


def fit_spans(
    judgments: pl.DataFrame,
    *,
    gold: pl.DataFrame | None = None,
    texts: pl.DataFrame | None = None,
    confusion: SpanConfusion | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> tuple[KindAggregation, SpanConfusion]:
    """`aggregate_spans(method="dawid_skene")` and the fitted parameters; with `confusion`, the
    annotators' matrices and the class prior are fixed to those instead of estimated: one
    E-step, as an incremental caller refits a few tasks with what a fit of all of them learnt.

    Under fixed parameters each matrix and the prior get one pseudo-count per cell (a class or
    annotator `confusion` never saw is not ruled out), and an annotator it does not name is
    read as the crowd's pooled matrix: the average annotator.
    """
    seg = segment(
        judgments.select("task_id", "annotator_id", "spans"), gold, texts=texts, layers=True
    )
    matrices = _matrices(seg)
    if confusion is None:
        posteriors, counts, iterations, converged = _fit(seg, matrices, max_iter=max_iter, tol=tol)
    else:
        fixed, prior = _aligned(confusion, seg)
        posteriors = _fixed_posteriors(seg, matrices, fixed, prior)
        counts = _expected_counts(seg, matrices, posteriors)
        iterations, converged = 1, True
    fitted = KindAggregation(
        labels=_judged_once(_decode(seg, posteriors), judgments, gold),
        annotators=_annotator_frame(seg, counts),
        method="dawid_skene",
        converged=converged,
        iterations=iterations,
    )
    carried = SpanConfusion(
        classes=seg.classes, annotators=seg.annotators, counts=counts, prior=seg.length @ posteriors
    )
    return fitted, carried


def _aligned(confusion: SpanConfusion, seg: Segmented) -> tuple[np.ndarray, np.ndarray]:
    """`confusion`'s counts and prior on `seg`'s annotators and class codes (+1 per cell)."""
    k = seg.n_classes
    old = {name: code + 1 for code, name in enumerate(confusion.classes)}
    mapping = np.array([0, *[old.get(name, -1) for name in seg.classes]], dtype=np.int64)
    known = mapping >= 0
    pooled = confusion.counts.sum(axis=0) if confusion.counts.size else np.zeros((1, 1))
    index = {name: i for i, name in enumerate(confusion.annotators.to_list())}
    counts = np.zeros((seg.annotators.len(), k, k))
    rows, columns = np.ix_(np.flatnonzero(known), np.flatnonzero(known))
    for code, annotator in enumerate(seg.annotators.to_list()):
        source = confusion.counts[index[annotator]] if annotator in index else pooled
        if source.size > 1:
            counts[code][rows, columns] = source[np.ix_(mapping[known], mapping[known])]
    prior = np.zeros(k)
    if confusion.prior.size:
        prior[known] = confusion.prior[mapping[known]]
    return counts + 1.0, prior + 1.0


def _fixed_posteriors(
    seg: Segmented,
    matrices: tuple[sparse.csr_array, sparse.csr_array, sparse.csr_array],
    counts: np.ndarray,
    prior: np.ndarray,
) -> np.ndarray:
    """The E-step of `_fit` with the confusion counts and the class prior given."""
    d, ta, _ = matrices
    k = seg.n_classes
    log_errors = np.log(counts / counts.sum(axis=1, keepdims=True))
    base = np.asarray(ta @ log_errors[:, 0, :])
    scores = (
        np.asarray(d @ log_errors.reshape(-1, k)) + base[seg.task] + np.log(prior / prior.sum())
    )
    excluded = seg.excluded()
    if excluded is not None:
        scores[excluded] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    return _clamp(scores / scores.sum(axis=1, keepdims=True), seg.gold_class)


def _argmax_o_first(values: np.ndarray) -> np.ndarray:
    """Row argmax; ties go to the lowest class (O first)."""
    return np.argmax(values >= values.max(axis=1, keepdims=True) - 1e-12, axis=1)


def _decode(seg: Segmented, posteriors: np.ndarray) -> pl.DataFrame:
    n_tasks = seg.tasks.len()
    n_intervals = seg.task.shape[0]
    best = _argmax_o_first(posteriors) if n_intervals else np.zeros(0, dtype=np.int64)
    best_probability = posteriors[np.arange(n_intervals), best] if n_intervals else np.zeros(0)
    length = seg.length
    starts = np.bincount(seg.tag_interval, weights=seg.tag_first, minlength=n_intervals)
    continues = np.bincount(seg.tag_interval, weights=~seg.tag_first, minlength=n_intervals)
    same_as_previous = np.zeros(n_intervals, dtype=bool)
    same_as_previous[1:] = (
        (seg.task[1:] == seg.task[:-1])
        & (best[1:] == best[:-1])
        & (seg.layer_class is None or seg.layer_class[1:] == seg.layer_class[:-1])
        & (seg.start[1:] == seg.end[:-1])
        & (starts[1:] <= continues[1:])
    )
    run = np.cumsum(~same_as_previous) - 1
    labelled = best > 0
    n_runs = int(run[-1]) + 1 if n_intervals else 0
    run_length = np.bincount(run, weights=length, minlength=n_runs)
    run_mass = np.bincount(run, weights=length * best_probability, minlength=n_runs)
    heads = np.flatnonzero(~same_as_previous)
    tails = np.r_[heads[1:] - 1, n_intervals - 1] if n_intervals else heads
    keep_runs = labelled[heads]
    class_names = pl.Series([None, *seg.classes], dtype=pl.String)
    spans = pl.DataFrame(
        {
            "task": seg.task[heads][keep_runs],
            "start": seg.start[heads][keep_runs],
            "end": seg.end[tails][keep_runs],
            "label": class_names.gather(best[heads][keep_runs]),
            "confidence": (run_mass / np.maximum(run_length, 1.0))[keep_runs],
        },
        schema={
            "task": pl.Int64,
            "start": pl.Int64,
            "end": pl.Int64,
            "label": pl.String,
            "confidence": pl.Float64,
        },
    )
    grouped = spans.group_by("task").agg(
        pl.struct("start", "end", "label", "confidence").alias("spans")
    )
    empty = np.ones(n_tasks, dtype=bool)
    empty[seg.task[heads][keep_runs]] = False
    confidence = _set_confidence(seg, best_probability, empty=empty)
    return (
        pl.DataFrame({"task": np.arange(n_tasks), "task_id": seg.tasks})
        .join(grouped, on="task", how="left")
        .sort("task")
        .select(
            "task_id",
            pl.col("spans")
            .fill_null(pl.lit([], dtype=pl.List(SCORED_SPAN)))
            .cast(pl.List(SCORED_SPAN))
            .list.sort(),
            pl.Series("confidence", confidence),
        )
    )


def _set_confidence(
    seg: Segmented, best_probability: np.ndarray, *, empty: np.ndarray
) -> np.ndarray:
    """Per task, the probability that its decoded span set is right: that every interval's
    class is (the product of the intervals' MAP posteriors; an interval with no token, which
    no span can hold, left out), and, for an empty set some annotator marked a span in, that
    the task holds no entity at all (`_entity_posterior`), whichever is lower.

    The characters model reads each interval alone, so annotators who each mark a different
    place look like as many false positives, and "no spans" would read as certain; that they
    all saw an entity is evidence about the task as a whole, which only the cap weighs.
    """
    weighed = seg.length > 0
    log_right = np.log(np.clip(best_probability, _EPSILON, 1.0)) * weighed
    intervals = np.exp(np.bincount(seg.task, weights=log_right, minlength=seg.tasks.len()))
    marked = _marked(seg)
    n_marked = np.bincount(seg.pairs_task, weights=marked, minlength=seg.tasks.len())
    disputed = empty & (n_marked > 0)
    if not disputed.any():
        return intervals
    no_entity = 1.0 - _entity_posterior(seg, marked=marked, empty=empty)
    return np.where(disputed, np.minimum(intervals, no_entity), intervals)


def _marked(seg: Segmented) -> np.ndarray:
    """Per (task, annotator) judgment: 1.0 where the annotator marked any span in the task."""
    n_annotators = max(seg.annotators.len(), 1)
    marked_keys = np.unique(seg.task[seg.tag_interval] * n_annotators + seg.tag_annotator)
    pair_keys = seg.pairs_task * n_annotators + seg.pairs_annotator
    return np.isin(pair_keys, marked_keys).astype(np.float64)


def _entity_posterior(seg: Segmented, *, marked: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """P(a task holds at least one entity), from whether each of its annotators marked a span.

    Two-class Dawid–Skene with its parameters read off the decoded sets (gold where known)
    rather than fitted by EM: per annotator, the share of tasks with a decoded span where they
    marked one (sensitivity) and of tasks without where they marked one anyway (false alarm),
    one pseudo-count per cell. Fitted freely, the two classes drift to "easy" and "hard" tasks
    when nearly every task holds an entity (the second class then reads a missed entity as
    none); anchored on the consensus, they keep meaning entity and no entity.
    """
    n_tasks = seg.tasks.len()
    n_annotators = max(seg.annotators.len(), 1)
    gold = _gold_entity(seg)
    reference = np.where(gold >= 0, gold, (~empty).astype(np.float64))
    has = reference[seg.pairs_task]
    by_annotator = {
        name: np.bincount(seg.pairs_annotator, weights=weights, minlength=n_annotators)
        for name, weights in (
            ("hits", has * marked),
            ("positives", has),
            ("alarms", (1.0 - has) * marked),
            ("negatives", 1.0 - has),
        )
    }
    sensitivity = (by_annotator["hits"] + 1.0) / (by_annotator["positives"] + 2.0)
    false_alarm = (by_annotator["alarms"] + 1.0) / (by_annotator["negatives"] + 2.0)
    prior = (reference.sum() + 1.0) / (n_tasks + 2.0)
    evidence = np.where(
        marked > 0,
        np.log(sensitivity / false_alarm)[seg.pairs_annotator],
        np.log((1.0 - sensitivity) / (1.0 - false_alarm))[seg.pairs_annotator],
    )
    log_odds = np.log(prior / (1.0 - prior)) + np.bincount(
        seg.pairs_task, weights=evidence, minlength=n_tasks
    )
    return np.where(gold >= 0, gold, 1.0 / (1.0 + np.exp(-log_odds)))


def _gold_entity(seg: Segmented) -> np.ndarray:
    """Per task: 1 where gold holds a span, 0 where gold holds none, −1 outside gold."""
    gold = np.full(seg.tasks.len(), -1.0)
    if seg.gold_task is None:
        return gold
    gold[seg.gold_task] = 0.0
    if seg.gold_class is not None:
        gold[seg.task[seg.gold_class > 0]] = 1.0
    return gold


def _judged_once(
    labels: pl.DataFrame, judgments: pl.DataFrame, gold: pl.DataFrame | None
) -> pl.DataFrame:
    """`labels` with the tasks one annotator judged (and no gold clamps) at `LONE_CONFIDENCE`,
    their spans too: the posterior of a lone markup echoes it, as near 1 as the fit allows."""
    annotators = judgments.group_by("task_id").agg(pl.col("annotator_id").n_unique().alias("_n"))
    lone = (
        labels.select("task_id")
        .join(annotators, on="task_id", how="left", maintain_order="left")
        .get_column("_n")
        .fill_null(0)
        == 1
    )
    if gold is not None and gold.height:
        lone = lone & ~labels.get_column("task_id").is_in(gold.get_column("task_id").implode())
    if not lone.any():
        return labels
    halved = pl.col("spans").list.eval(
        pl.element().struct.with_fields(pl.lit(LONE_CONFIDENCE).alias("confidence"))
    )
    return labels.with_columns(
        spans=pl.when(lone).then(halved).otherwise(pl.col("spans")),
        confidence=pl.when(lone).then(LONE_CONFIDENCE).otherwise(pl.col("confidence")),
    )


def _annotator_frame(seg: Segmented, counts: np.ndarray) -> pl.DataFrame:
    diagonal = np.einsum("wcc->wc", counts)[:, 1:].sum(axis=1)
    tagged = counts[:, 1:, :].sum(axis=(1, 2))
    truth = counts[:, :, 1:].sum(axis=(1, 2))
    precision = np.divide(diagonal, tagged, out=np.full(diagonal.shape, np.nan), where=tagged > 0)
    recall = np.divide(diagonal, truth, out=np.full(diagonal.shape, np.nan), where=truth > 0)
    both = np.nan_to_num(precision) + np.nan_to_num(recall)
    f1 = np.divide(
        2 * np.nan_to_num(precision) * np.nan_to_num(recall),
        both,
        out=np.zeros(diagonal.shape),
        where=both > 0,
    )
    # An annotator who tagged nothing where the consensus found nothing agrees fully.
    f1 = np.where((tagged <= _EPSILON) & (truth <= _EPSILON), 1.0, f1)
    n_annotators = seg.annotators.len()
    return pl.DataFrame(
        {
            "annotator_id": seg.annotators,
            "reliability": f1,
            "n_judgments": np.bincount(seg.pairs_annotator, minlength=n_annotators).astype(
                np.int64
            ),
            "n_tagged_chars": tagged,
            "precision": precision,
            "recall": recall,
        }
    )


def _exploded(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    return (
        frame.explode(column, keep_nulls=False)
        .unnest(column)
        .filter(pl.col("end") > pl.col("start"))
        .with_row_index("span")
    )


def gold_score(judgments: pl.DataFrame, gold: pl.DataFrame) -> pl.DataFrame:
    """Per annotator on gold tasks: span precision, recall and F1, exact and overlap.

    Exact: same start, end and label. Overlap: a span counts as correct when it overlaps a gold
    span of the same label; a gold span counts as found when a same-label span overlaps it.
    """
    gold = gold.select("task_id", "spans")
    judged = judgments.select("task_id", "annotator_id", "spans").join(
        gold.select("task_id"), on="task_id", how="semi"
    )
    predicted = _exploded(judged, "spans")
    truth = _exploded(gold, "spans").rename({"span": "gold_span"})
    truth_per_task = truth.group_by("task_id").len("n_gold_task")
    n_gold = (
        judged.select("task_id", "annotator_id")
        .join(truth_per_task, on="task_id", how="left")
        .group_by("annotator_id")
        .agg(
            pl.len().alias("n_gold_tasks"), pl.col("n_gold_task").fill_null(0).sum().alias("n_gold")
        )
    )
    n_predicted = predicted.group_by("annotator_id").len("n_spans")
    exact = (
        predicted.join(truth, on=["task_id", "start", "end", "label"], nulls_equal=True)
        .group_by("annotator_id")
        .agg(pl.col("span").n_unique().alias("exact_tp"))
    )
    overlapping = predicted.join(
        truth.rename({"start": "gold_start", "end": "gold_end"}),
        on=["task_id", "label"],
        nulls_equal=True,
    ).filter((pl.col("start") < pl.col("gold_end")) & (pl.col("gold_start") < pl.col("end")))
    overlap = overlapping.group_by("annotator_id").agg(
        pl.col("span").n_unique().alias("overlap_tp_predicted"),
        pl.col("gold_span").n_unique().alias("overlap_tp_gold"),
    )
    frame = (
        n_gold.join(n_predicted, on="annotator_id", how="left")
        .join(exact, on="annotator_id", how="left")
        .join(overlap, on="annotator_id", how="left")
        .with_columns(
            pl.col("n_spans", "exact_tp", "overlap_tp_predicted", "overlap_tp_gold")
            .fill_null(0)
            .cast(pl.Int64)
        )
    )
    return (
        frame.with_columns(
            exact_precision=_ratio("exact_tp", "n_spans"),
            exact_recall=_ratio("exact_tp", "n_gold"),
            overlap_precision=_ratio("overlap_tp_predicted", "n_spans"),
            overlap_recall=_ratio("overlap_tp_gold", "n_gold"),
        )
        .with_columns(
            exact_f1=_f1("exact_precision", "exact_recall"),
            overlap_f1=_f1("overlap_precision", "overlap_recall"),
        )
        .select(
            "annotator_id",
            "n_gold_tasks",
            "n_spans",
            "n_gold",
            "exact_precision",
            "exact_recall",
            "exact_f1",
            "overlap_precision",
            "overlap_recall",
            "overlap_f1",
        )
        .sort("annotator_id")
    )


def _ratio(numerator: str, denominator: str) -> pl.Expr:
    return (
        pl.when(pl.col(denominator) > 0)
        .then(pl.col(numerator) / pl.col(denominator))
        .otherwise(pl.lit(None, dtype=pl.Float64))
    )


def _f1(precision: str, recall: str) -> pl.Expr:
    p = pl.col(precision).fill_null(0.0)
    r = pl.col(recall).fill_null(0.0)
    both_empty = pl.col(precision).is_null() & pl.col(recall).is_null()
    return pl.when(both_empty).then(1.0).when((p + r) > 0).then(2 * p * r / (p + r)).otherwise(0.0)
