"""Free-text answers (transcriptions, translations, short answers): one answer per task.

Consensus by distance: A. Braylan and M. Lease, "Modeling and Aggregation of Complex
Annotations via Annotation Distances", The Web Conference (WWW) 2020, 1807–1818. Answers of
any structure are compared only through a distance d(a, b) ∈ [0, 1], here the normalized
Levenshtein distance (edits / length of the longer string; rapidfuzz). Their "smallest
average distance" (SAD) model picks, per task, the answer closest on average to the others;
their "best available user" (BAU) model weighs annotators by how close they are to the others
across all tasks. `method="consensus"` combines both: the chosen answer minimises the
reliability-weighted sum of distances to the other answers of the task,

    choice_i = argmin_a Σ_{b ≠ a} w_{ann(b)} d(a, b)

(the answer's own annotator's weight is the one the sum leaves out, so a reliable author
counts in its favour), and the reliabilities are re-estimated until they stop changing (no
annotator's error moves by more than `tol`; the choices are discrete and can flip back and
forth on a near-tie while the reliabilities stay put): annotator
j's error e_j is the mean, over their answers, of the weighted mean distance of that answer to
the other answers of its task (leave-self-out, so an annotator is never rewarded for agreeing
with a choice they made), shrunk toward the crowd's mean error with `prior_strength`
pseudo-answers, and w_j = 1 / (e_j + ε). `method="medoid"` is the unweighted SAD baseline
(every w = 1, no iteration).

`method="rover"` fuses words instead of choosing a whole answer, after J. G. Fiscus, "A
post-processing system to yield reduced word error rates: Recognizer Output Voting Error
Reduction (ROVER)", IEEE ASRU 1997: every answer is aligned word by word to a pivot (the
consensus answer) with a Levenshtein alignment over words; each pivot slot takes the word (or
deletion) with the largest total reliability, and words inserted between slots are kept when
the annotators inserting them outweigh those who do not. The alignment to one pivot is a
simplification of ROVER's incremental word transition network (it cannot create a slot the
pivot lacks unless a weighted majority inserts it).

Confidence per task: 1 − the reliability-weighted mean distance of the other answers to the
chosen one (1 when all agree); a task with a single answer has confidence 0.5 (no evidence
either way).

Answers are compared, fused and written in Unicode NFC: an accent typed as a combining mark
(NFD input, as macOS produces) is the same answer as the precomposed letter, and the aggregate
spells it one way whichever form its annotators typed (the judgments keep theirs).
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl
from rapidfuzz.distance import Levenshtein

from annotation_pipelines.aggregation.kinds_codes import encode_values, fixed_weights
from annotation_pipelines.aggregation.kinds_result import KindAggregation
from annotation_pipelines.agreement.distances import edit_pair_distances

TEXT_METHODS = ("consensus", "medoid", "rover")
_WORD = re.compile(r"(\S+)")
_EPSILON = 0.05
# Weighted costs (sums of reliability × distance) equal to this many decimals are a tie.
_COST_DECIMALS = 9


def aggregate_text(
    judgments: pl.DataFrame,
    *,
    method: str = "consensus",
    gold: pl.DataFrame | None = None,
    prior_strength: float = 2.0,
    max_iter: int = 100,
    tol: float = 1e-4,
    reliability: pl.DataFrame | None = None,
) -> KindAggregation:
    """Free text (`task_id`, `annotator_id`, `text`) to one answer per task.

    `labels`: `task_id`, `text`, `confidence`, `n_votes` (tasks in order of first
    appearance). `annotators`: `annotator_id`, `reliability` (the weight 1 / (error + 0.05)),
    `n_judgments`, `mean_distance` (the shrunk leave-self-out error). `gold` (`task_id`,
    `text`) fixes the error of annotators on gold tasks to their distance to the gold answer.
    `reliability` (`annotator_id`, `reliability`: weights of an earlier fit) fixes the weights
    instead of estimating them: the answers are chosen once with them (an annotator it does not
    name weighs the median weight), as an incremental caller refits a few tasks.
    """
    if method not in TEXT_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(TEXT_METHODS)}")
    missing = [c for c in ("task_id", "annotator_id", "text") if c not in judgments.columns]
    if missing:
        raise ValueError(
            f"judgments: missing column(s) {', '.join(missing)}; "
            f"have {', '.join(judgments.columns)}"
        )
    texts = judgments.get_column("text").cast(pl.String).fill_null("").str.normalize("NFC")
    tasks, task_values = encode_values(judgments.get_column("task_id"), sort=False)
    annotators, annotator_values = encode_values(judgments.get_column("annotator_id"), sort=True)
    n_tasks, n_annotators = task_values.len(), annotator_values.len()
    first, second, distance = _within_task_pairs(tasks, texts)
    gold_error = _gold_errors(judgments, texts, gold)
    weights = (
        np.ones(n_annotators)
        if reliability is None
        else fixed_weights(annotator_values, reliability, medoid=method == "medoid")
    )
    iterations, converged = 0, True
    choice, score = _choose(tasks, annotators, first, second, distance, weights, n_tasks)
    error = _annotator_error(
        annotators, first, second, distance, weights, gold_error, n_annotators, prior_strength
    )
    if method != "medoid" and reliability is not None:
        # Fixed weights: the reported reliability is the weight the choice used.
        error = 1.0 / weights - _EPSILON
    elif method != "medoid":
        converged = False
        for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is reported
            weights = 1.0 / (error + _EPSILON)
            choice, score = _choose(tasks, annotators, first, second, distance, weights, n_tasks)
            updated = _annotator_error(
                annotators,
                first,
                second,
                distance,
                weights,
                gold_error,
                n_annotators,
                prior_strength,
            )
            change = float(np.max(np.abs(updated - error))) if n_annotators else 0.0
            error = updated
            if change < tol:
                converged = True
                break
    chosen = texts.gather(choice)
    if method == "rover":
        chosen = pl.Series(_rover(texts, tasks, annotators, choice, weights), dtype=pl.String)
        fused = edit_pair_distances(chosen.gather(tasks), texts)
        weight_row = weights[annotators]
        score = np.bincount(tasks, weights=weight_row * fused, minlength=n_tasks) / np.bincount(
            tasks, weights=weight_row, minlength=n_tasks
        )
    counts = np.bincount(tasks, minlength=n_tasks)
    confidence = np.where(counts > 1, 1.0 - score, 0.5)
    labels = pl.DataFrame(
        {
            "task_id": task_values,
            "text": chosen.alias("text"),
            "confidence": pl.Series(np.clip(confidence, 0.0, 1.0), dtype=pl.Float64),
            "n_votes": pl.Series(counts, dtype=pl.UInt32),
        }
    )
    return KindAggregation(
        labels=labels,
        annotators=pl.DataFrame(
            {
                "annotator_id": annotator_values,
                "reliability": pl.Series(1.0 / (error + _EPSILON), dtype=pl.Float64),
                "n_judgments": pl.Series(
                    np.bincount(annotators, minlength=n_annotators), dtype=pl.UInt32
                ),
                "mean_distance": pl.Series(error, dtype=pl.Float64),
            }
        ),
        method=method,
        converged=converged,
        iterations=iterations,
    )


def gold_score(judgments: pl.DataFrame, gold: pl.DataFrame) -> pl.DataFrame:
    """Per annotator on gold tasks: `annotator_id`, `n_gold`, `mean_edit_distance`
    (normalized Levenshtein to the gold text), `exact_match` (share identical to gold)."""
    joined = judgments.select("task_id", "annotator_id", "text").join(
        gold.select("task_id", pl.col("text").alias("gold")), on="task_id"
    )
    return (
        joined.with_columns(
            pl.Series(
                "distance",
                edit_pair_distances(joined.get_column("text"), joined.get_column("gold")),
            )
        )
        .group_by("annotator_id")
        .agg(
            pl.len().cast(pl.UInt32).alias("n_gold"),
            pl.col("distance").mean().alias("mean_edit_distance"),
            (pl.col("distance") == 0).mean().alias("exact_match"),
        )
        .sort("annotator_id")
    )


def _within_task_pairs(
    tasks: np.ndarray, texts: pl.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair of answers to the same task: (row a, row b, distance)."""
    rows = pl.DataFrame({"task": tasks, "row": np.arange(tasks.shape[0], dtype=np.int64)})
    pairs = (
        rows.join(rows, on="task", suffix="_other")
        .filter(pl.col("row") < pl.col("row_other"))
        .select("row", "row_other")
    )
    first = pairs.get_column("row").to_numpy()
    second = pairs.get_column("row_other").to_numpy()
    distance = edit_pair_distances(texts.gather(first), texts.gather(second))
    return first, second, distance


def _choose(
    tasks: np.ndarray,
    annotators: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    distance: np.ndarray,
    weights: np.ndarray,
    n_tasks: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(chosen row per task, its weighted mean distance to the others)."""
    cost, weight = _weighted_costs(annotators, first, second, distance, weights, tasks.shape[0])
    mean = np.where(weight > 0, cost / np.maximum(weight, 1e-300), 0.0)
    # Lowest weighted sum of distances first (the answer's own annotator weighs in its favour:
    # their weight is the one missing from the sum). Costs equal but for the order their terms
    # were summed in are a tie (two copies of one answer always are), and a tie goes to the
    # annotator first by id, not to the row given first: which copy is chosen sets the
    # confidence (its own annotator's weight is left out), so row order moved both.
    order = np.lexsort(
        (np.arange(tasks.shape[0]), annotators, np.round(cost, _COST_DECIMALS), tasks)
    )
    sorted_tasks = tasks[order]
    head = np.ones(order.shape[0], dtype=bool)
    head[1:] = sorted_tasks[1:] != sorted_tasks[:-1]
    choice = np.empty(n_tasks, dtype=np.int64)
    choice[sorted_tasks[head]] = order[head]
    return choice, mean[choice]


def _weighted_costs(
    annotators: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    distance: np.ndarray,
    weights: np.ndarray,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per answer: Σ over the task's other answers of w · d, and Σ w."""
    weight_first = weights[annotators[first]]
    weight_second = weights[annotators[second]]
    cost = np.bincount(first, weights=weight_second * distance, minlength=n) + np.bincount(
        second, weights=weight_first * distance, minlength=n
    )
    weight = np.bincount(first, weights=weight_second, minlength=n) + np.bincount(
        second, weights=weight_first, minlength=n
    )
    return cost, weight


def _annotator_error(
    annotators: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    distance: np.ndarray,
    weights: np.ndarray,
    gold_error: np.ndarray,
    n_annotators: int,
    prior_strength: float,
) -> np.ndarray:
    """Per annotator: the shrunk mean of their answers' weighted distance to the others."""
    n = annotators.shape[0]
    cost, weight = _weighted_costs(annotators, first, second, distance, weights, n)
    per_answer = np.where(weight > 0, cost / np.maximum(weight, 1e-300), np.nan)
    per_answer = np.where(np.isnan(gold_error), per_answer, gold_error)
    known = ~np.isnan(per_answer)
    crowd = float(per_answer[known].mean()) if known.any() else 0.5
    total = np.bincount(annotators[known], weights=per_answer[known], minlength=n_annotators)
    count = np.bincount(annotators[known], minlength=n_annotators)
    return (total + prior_strength * crowd) / (count + prior_strength)


def _gold_errors(
    judgments: pl.DataFrame, texts: pl.Series, gold: pl.DataFrame | None
) -> np.ndarray:
    """Per answer: its distance to the task's gold text, NaN without gold."""
    if gold is None or gold.height == 0:
        return np.full(judgments.height, np.nan)
    for column in ("task_id", "text"):
        if column not in gold.columns:
            raise ValueError(f"gold: missing column {column!r}; have {', '.join(gold.columns)}")
    reference = (
        judgments.select(pl.col("task_id").cast(pl.String))
        .join(
            gold.select(pl.col("task_id").cast(pl.String), pl.col("text").alias("gold")),
            on="task_id",
            how="left",
            maintain_order="left",
        )
        .get_column("gold")
    )
    has = reference.is_not_null().to_numpy()
    result = np.full(judgments.height, np.nan)
    if has.any():
        rows = np.flatnonzero(has)
        result[rows] = edit_pair_distances(texts.gather(rows), reference.gather(rows))
    return result


def _rover(
    texts: pl.Series,
    tasks: np.ndarray,
    annotators: np.ndarray,
    pivots: np.ndarray,
    weights: np.ndarray,
) -> list[str]:
    """Word-level weighted vote of every answer aligned to its task's pivot answer, written
    with the pivot's own whitespace (line breaks, indents) between the words it keeps and
    none around the whole."""
    answers = texts.to_list()
    words = [text.split() for text in answers]
    order = np.argsort(tasks, kind="stable")
    bounds = np.flatnonzero(np.diff(tasks[order])) + 1
    fused: list[str] = [""] * pivots.shape[0]
    for group in np.split(order, bounds):
        task = int(tasks[group[0]])
        pivot = words[int(pivots[task])]
        # gaps[k]: the pivot's whitespace before its word k (a line break, an indent), k >= 1.
        gaps = _WORD.split(answers[int(pivots[task])])[0::2]
        slots: list[dict[str, float]] = [{} for _ in pivot]
        inserted: list[dict[str, float]] = [{} for _ in range(len(pivot) + 1)]
        total = 0.0
        for row in group:
            weight = float(weights[annotators[row]])
            total += weight
            hypothesis = words[int(row)]
            matched = [""] * len(pivot)  # a pivot word with no counterpart is a deletion
            for operation in Levenshtein.opcodes(pivot, hypothesis):
                tag, a0, a1 = operation.tag, operation.src_start, operation.src_end
                b0, b1 = operation.dest_start, operation.dest_end
                if tag in ("equal", "replace") and a1 - a0 == b1 - b0:
                    for offset in range(a1 - a0):
                        matched[a0 + offset] = hypothesis[b0 + offset]
                elif tag == "replace":
                    span = min(a1 - a0, b1 - b0)
                    for offset in range(span):
                        matched[a0 + offset] = hypothesis[b0 + offset]
                    extra = " ".join(hypothesis[b0 + span : b1])
                    if extra:
                        cell = inserted[a0 + span]
                        cell[extra] = cell.get(extra, 0.0) + weight
                elif tag == "insert":
                    cell = inserted[a0]
                    phrase = " ".join(hypothesis[b0:b1])
                    cell[phrase] = cell.get(phrase, 0.0) + weight
            for index, word in enumerate(matched):
                slots[index][word] = slots[index].get(word, 0.0) + weight
        # (whitespace before, word): a pivot slot's word keeps the pivot's whitespace before it.
        output: list[tuple[str, str]] = []
        for index in range(len(pivot) + 1):
            if inserted[index]:
                phrase, support = max(inserted[index].items(), key=lambda item: item[1])
                if support > total / 2:
                    output.append((" ", phrase))
            if index < len(pivot):
                word, _ = max(
                    slots[index].items(), key=lambda item: (item[1], item[0] == pivot[index])
                )
                if word:
                    output.append((gaps[index] if index else " ", word))
        fused[task] = "".join(space + word for space, word in output).lstrip()
    return fused
