"""Spans and boxes at scale: aggregation and agreement, beside a straightforward reference.

    .venv/bin/python benchmarks/bench_kinds_geo.py --rows 1000000

`--rows` is the number of boxes (and of spans) aggregated, and the number of judgments whose
pairwise agreement is measured. Data is synthetic and seeded, 5 annotators per task (two
precise, one who misses small objects / 60% of entities, one loose / label-confusing, one
spammer). Each stage runs in a fresh subprocess (`--stage NAME`) so its peak RSS
(`resource.getrusage`) is its own; data generation is not timed.

The references are direct NumPy/Python implementations of the same methods, one task at a
time: boxes — the same greedy reliability-ordered clustering, weighted fusion, support and
reliability update, in Python per task; spans — Dawid–Skene over every character (a dense
characters × annotators answer matrix, no interval compression); agreement — per pair in
Python (scipy's Hungarian for boxes, set intersection for spans). They run on the first
`--reference-rows` rows' worth of tasks (default 50,000) because they are slow; their
results are checked against ours on that subset and their time is reported with the
per-row rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation.boxes import BOX, aggregate_boxes, iou
from annotation_pipelines.aggregation.spans import SPAN, aggregate_spans
from annotation_pipelines.agreement.boxes import box_f1_at_iou, box_pair_distances
from annotation_pipelines.agreement.spans import span_pair_distances, span_unitizing_alpha

ANNOTATORS = 5
LABELS = np.array(["A", "B", "C"])


def _lists(flat: pl.DataFrame, n_tasks: int, column: str, dtype: pl.DataType) -> pl.DataFrame:
    """Flat rows (task, annotator, fields…) → one judgment per (task, annotator), lists."""
    fields = [c for c in flat.columns if c not in ("task", "annotator")]
    grouped = flat.group_by("task", "annotator").agg(pl.struct(fields).alias(column))
    every = pl.DataFrame(
        {
            "task": np.repeat(np.arange(n_tasks), ANNOTATORS),
            "annotator": np.tile(np.arange(ANNOTATORS), n_tasks),
        }
    )
    return (
        every.join(grouped, on=["task", "annotator"], how="left")
        .sort("task", "annotator")
        .select(
            pl.format("t{}", "task").alias("task_id"),
            pl.format("w{}", "annotator").alias("annotator_id"),
            pl.col(column).fill_null(pl.lit([], dtype=pl.List(dtype))).cast(pl.List(dtype)),
        )
    )


def box_judgments(n_boxes: int, *, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n_tasks = max(n_boxes // 6, 1)
    per_task = rng.integers(1, 3, n_tasks)
    obj_task = np.repeat(np.arange(n_tasks), per_task)
    n_obj = obj_task.shape[0]
    size = rng.uniform(15, 200, (n_obj, 2))
    corner = rng.uniform(0, 440, (n_obj, 2))
    label = rng.integers(0, 3, n_obj)
    rows = []
    for annotator in range(4):
        keep = np.ones(n_obj, dtype=bool)
        if annotator == 2:
            keep = size.min(axis=1) >= 40
        low = corner - (0.15 * size if annotator == 3 else 0)
        high = corner + size + (0.15 * size if annotator == 3 else 0)
        jitter = rng.normal(0, 0.02, (n_obj, 4)) * size.min(axis=1)[:, None]
        coords = np.hstack([low, high]) + jitter
        rows.append((obj_task[keep], np.full(keep.sum(), annotator), label[keep], coords[keep]))
    n_spam = n_tasks
    spam_size = rng.uniform(15, 200, (n_spam, 2))
    spam_corner = rng.uniform(0, 440, (n_spam, 2))
    rows.append(
        (
            rng.integers(0, n_tasks, n_spam),
            np.full(n_spam, 4),
            rng.integers(0, 3, n_spam),
            np.hstack([spam_corner, spam_corner + spam_size]),
        )
    )
    task, annotator, label_code, coords = (
        np.concatenate(parts) for parts in zip(*rows, strict=True)
    )
    flat = pl.DataFrame(
        {
            "task": task,
            "annotator": annotator,
            "label": LABELS[label_code],
            "x_min": coords[:, 0],
            "y_min": coords[:, 1],
            "x_max": coords[:, 2],
            "y_max": coords[:, 3],
        }
    )
    return _lists(flat, n_tasks, "boxes", BOX)


def span_judgments(n_spans: int, *, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n_tasks = max(n_spans // 8, 1)
    per_task = rng.integers(1, 4, n_tasks)
    ent_task = np.repeat(np.arange(n_tasks), per_task)
    slot = np.arange(ent_task.shape[0]) - np.repeat(np.cumsum(per_task) - per_task, per_task)
    start = slot * 40 + rng.integers(0, 10, ent_task.shape[0])
    end = start + rng.integers(3, 20, ent_task.shape[0])
    label = rng.integers(0, 3, ent_task.shape[0])
    rows = []
    for annotator in range(4):
        keep = np.ones(ent_task.shape[0], dtype=bool)
        labels = label
        if annotator == 2:
            keep = rng.random(ent_task.shape[0]) >= 0.6
        if annotator == 3:
            flip = rng.random(ent_task.shape[0]) < 0.5
            labels = np.where(flip, (label + rng.integers(1, 3, label.shape[0])) % 3, label)
        rows.append(
            (ent_task[keep], np.full(keep.sum(), annotator), start[keep], end[keep], labels[keep])
        )
    spam_task = rng.integers(0, n_tasks, n_tasks)
    spam_start = rng.integers(0, 120, n_tasks)
    rows.append(
        (
            spam_task,
            np.full(n_tasks, 4),
            spam_start,
            spam_start + rng.integers(3, 20, n_tasks),
            rng.integers(0, 3, n_tasks),
        )
    )
    task, annotator, starts, ends, label_code = (
        np.concatenate(parts) for parts in zip(*rows, strict=True)
    )
    flat = pl.DataFrame(
        {
            "task": task,
            "annotator": annotator,
            "start": starts,
            "end": ends,
            "label": LABELS[label_code],
        }
    )
    return _lists(flat, n_tasks, "spans", SPAN)


def head_tasks(judgments: pl.DataFrame, column: str, rows: int) -> pl.DataFrame:
    """The first tasks holding about `rows` items."""
    counts = judgments.group_by("task_id", maintain_order=True).agg(pl.col(column).list.len().sum())
    keep = counts.filter(pl.col(column).cum_sum() <= rows).select("task_id")
    return judgments.join(keep, on="task_id", how="semi")


# ---- references: one task at a time ----------------------------------------------------


def reference_boxes(judgments: pl.DataFrame, *, iterations: int, threshold: float = 0.5) -> int:
    tasks: dict[str, list[tuple[int, list[dict]]]] = {}
    names = sorted(judgments["annotator_id"].unique())
    code = {name: i for i, name in enumerate(names)}
    for task_id, annotator_id, boxes in judgments.iter_rows():
        tasks.setdefault(task_id, []).append((code[annotator_id], boxes))
    weights = np.ones(len(names))
    kept_total = 0
    for _ in range(iterations):
        kept_boxes = np.zeros(len(names))
        n_boxes = np.zeros(len(names))
        seen = np.zeros(len(names))
        iou_sum = np.zeros(len(names))
        kept_total = 0
        for entries in tasks.values():
            items = [
                (a, b["label"], np.array([b["x_min"], b["y_min"], b["x_max"], b["y_max"]]))
                for a, boxes in entries
                for b in boxes
            ]
            items.sort(key=lambda item: (-weights[item[0]], item[0]))
            clusters: list[dict] = []
            for a, label, coords in items:
                best, best_iou = None, -1.0
                for cluster in clusters:
                    if cluster["label"] != label or a in cluster["annotators"]:
                        continue
                    fused = cluster["sum"] / cluster["weight"]
                    value = float(iou(coords[None], fused[None])[0])
                    if value >= threshold and value > best_iou and value > 0:
                        best, best_iou = cluster, value
                if best is None:
                    best = {
                        "label": label,
                        "annotators": [],
                        "boxes": [],
                        "sum": np.zeros(4),
                        "weight": 0.0,
                    }
                    clusters.append(best)
                best["annotators"].append(a)
                best["boxes"].append(coords)
                best["sum"] = best["sum"] + weights[a] * coords
                best["weight"] += weights[a]
            task_weight = sum(weights[a] for a, _ in entries)
            kept = 0
            for cluster in clusters:
                fused = cluster["sum"] / cluster["weight"]
                keep = cluster["weight"] / task_weight >= 0.5 - 1e-12
                kept += keep
                for a, coords in zip(cluster["annotators"], cluster["boxes"], strict=True):
                    n_boxes[a] += 1
                    if keep:
                        kept_boxes[a] += 1
                        iou_sum[a] += float(iou(coords[None], fused[None])[0])
            for a, _ in entries:
                seen[a] += kept
            kept_total += kept
        precision = np.divide(kept_boxes, n_boxes, out=np.zeros(len(names)), where=n_boxes > 0)
        recall = np.divide(kept_boxes, seen, out=np.ones(len(names)), where=seen > 0)
        f1 = np.divide(
            2 * precision * recall,
            precision + recall,
            out=np.zeros(len(names)),
            where=precision + recall > 0,
        )
        mean_iou = np.divide(iou_sum, kept_boxes, out=np.zeros(len(names)), where=kept_boxes > 0)
        weights = np.maximum(np.where(kept_boxes > 0, f1 * mean_iou, f1), 0.05)
    return kept_total


def reference_spans(judgments: pl.DataFrame, *, iterations: int) -> int:
    """Dawid–Skene over every character; returns the number of labelled characters."""
    names = sorted(judgments["annotator_id"].unique())
    code = {name: i for i, name in enumerate(names)}
    classes = {label: i + 1 for i, label in enumerate(LABELS)}
    blocks = []
    by_task: dict[str, list] = {}
    for task_id, annotator_id, spans in judgments.iter_rows():
        by_task.setdefault(task_id, []).append((code[annotator_id], spans))
    for entries in by_task.values():
        every = [s for _, spans in entries for s in spans]
        if not every:
            continue
        low, high = min(s["start"] for s in every), max(s["end"] for s in every)
        block = np.full((high - low, len(names)), -1)
        for a, spans in entries:
            block[:, a] = 0
            for s in sorted(spans, key=lambda s: -classes[s["label"]]):
                block[s["start"] - low : s["end"] - low, a] = classes[s["label"]]
        blocks.append(block)
    answers = np.vstack(blocks)
    k = len(LABELS) + 1
    votes = np.stack([(answers == c).sum(axis=1) for c in range(k)], axis=1).astype(float)
    posteriors = votes / votes.sum(axis=1, keepdims=True)
    for _ in range(iterations):
        prior = posteriors.mean(axis=0)
        log_errors = np.empty((len(names), k, k))
        for a in range(len(names)):
            counts = np.stack([posteriors[answers[:, a] == c].sum(axis=0) for c in range(k)])
            errors = np.maximum(counts, 1e-10)
            log_errors[a] = np.log(errors / errors.sum(axis=0, keepdims=True))
        scores = np.tile(np.log(prior), (answers.shape[0], 1))
        for a in range(len(names)):
            judged = answers[:, a] >= 0
            scores[judged] += log_errors[a][answers[judged, a]]
        scores -= scores.max(axis=1, keepdims=True)
        posteriors = np.exp(scores)
        posteriors /= posteriors.sum(axis=1, keepdims=True)
    return int((posteriors.argmax(axis=1) > 0).sum())


def reference_span_distance(a: list, b: list) -> float:
    if not a and not b:
        return 0.0
    hit_a = sum(
        any(x["label"] == y["label"] and x["start"] < y["end"] and y["start"] < x["end"] for y in b)
        for x in a
    )
    hit_b = sum(
        any(x["label"] == y["label"] and x["start"] < y["end"] and y["start"] < x["end"] for x in a)
        for y in b
    )
    p = hit_a / len(a) if a else 0.0
    r = hit_b / len(b) if b else 0.0
    return 1.0 - (2 * p * r / (p + r) if p + r else 0.0)


def reference_box_distance(a: list, b: list) -> float:
    from scipy.optimize import linear_sum_assignment

    if not a and not b:
        return 0.0
    if not a or not b:
        return 1.0
    gain = np.zeros((len(a), len(b)))
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            if x["label"] == y["label"]:
                gain[i, j] = iou(
                    np.array([[x["x_min"], x["y_min"], x["x_max"], x["y_max"]]]),
                    np.array([[y["x_min"], y["y_min"], y["x_max"], y["y_max"]]]),
                )[0]
    rows, columns = linear_sum_assignment(gain, maximize=True)
    matched = gain[rows, columns]
    return 1.0 - matched.sum() / (len(a) + len(b) - np.count_nonzero(matched > 0))


def pairs(judgments: pl.DataFrame, column: str) -> pl.DataFrame:
    """Every within-task pair of judgments (a < b), values side by side."""
    left = judgments.select("task_id", "annotator_id", pl.col(column).alias("a"))
    right = judgments.select(
        "task_id", pl.col("annotator_id").alias("other"), pl.col(column).alias("b")
    )
    return left.join(right, on="task_id").filter(pl.col("annotator_id") < pl.col("other"))


# ---- stages -------------------------------------------------------------------------------


def _timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def stage(name: str, rows: int, reference_rows: int) -> dict:
    result: dict = {"stage": name}
    if name == "boxes":
        judgments = box_judgments(rows)
        aggregate_boxes(head_tasks(judgments, "boxes", 2000))  # load the compiled kernels
        seconds, fitted = _timed(aggregate_boxes, judgments)
        result |= {
            "items": int(judgments["boxes"].list.len().sum()),
            "judgments": judgments.height,
            "seconds": seconds,
            "iterations": fitted.iterations,
            "annotators": fitted.annotators.select(
                "annotator_id", "reliability", "looseness"
            ).to_dicts(),
        }
    elif name == "boxes_reference":
        judgments = head_tasks(box_judgments(rows), "boxes", reference_rows)
        ours = aggregate_boxes(judgments)
        seconds, kept = _timed(reference_boxes, judgments, iterations=ours.iterations)
        result |= {
            "items": int(judgments["boxes"].list.len().sum()),
            "seconds": seconds,
            "same_objects": int(kept) == int(ours.labels["boxes"].list.len().sum()),
        }
    elif name == "spans":
        judgments = span_judgments(rows)
        seconds, fitted = _timed(aggregate_spans, judgments)
        result |= {
            "items": int(judgments["spans"].list.len().sum()),
            "judgments": judgments.height,
            "seconds": seconds,
            "iterations": fitted.iterations,
            "annotators": fitted.annotators.select("annotator_id", "reliability").to_dicts(),
        }
    elif name == "spans_reference":
        judgments = head_tasks(span_judgments(rows), "spans", reference_rows)
        ours = aggregate_spans(judgments)
        seconds, labelled = _timed(reference_spans, judgments, iterations=ours.iterations)
        ours_labelled = int(
            ours.labels.select(
                pl.col("spans")
                .list.eval(pl.element().struct.field("end") - pl.element().struct.field("start"))
                .list.sum()
                .sum()
            ).item()
        )
        result |= {
            "items": int(judgments["spans"].list.len().sum()),
            "seconds": seconds,
            "labelled_chars_reference": labelled,
            "labelled_chars_ours": ours_labelled,
        }
    elif name == "agreement":
        spans = span_judgments(rows * 8 // ANNOTATORS).head(rows)
        boxes = box_judgments(rows * 6 // ANNOTATORS).head(rows)
        box_distances(boxes.head(2000))  # load the compiled kernels
        start = time.perf_counter()
        span_pairs = pairs(spans, "spans")
        distances = span_pair_distances(span_pairs["a"], span_pairs["b"])
        alpha = span_unitizing_alpha(spans)
        span_seconds = time.perf_counter() - start
        start = time.perf_counter()
        box_pairs = pairs(boxes, "boxes")
        box_d = box_pair_distances(box_pairs["a"], box_pairs["b"])
        box_f1 = box_f1_at_iou(box_pairs["a"], box_pairs["b"])
        box_seconds = time.perf_counter() - start
        result |= {
            "span_judgments": spans.height,
            "span_pairs": span_pairs.height,
            "span_seconds": span_seconds,
            "span_mean_distance": float(distances.mean()),
            "span_character_alpha": alpha,
            "box_judgments": boxes.height,
            "box_pairs": box_pairs.height,
            "box_seconds": box_seconds,
            "box_mean_distance": float(box_d.mean()),
            "box_mean_f1": float(box_f1.mean()),
        }
    elif name == "agreement_reference":
        spans = span_judgments(reference_rows * 8 // ANNOTATORS).head(reference_rows)
        boxes = box_judgments(reference_rows * 6 // ANNOTATORS).head(reference_rows)
        span_pairs = pairs(spans, "spans")
        box_pairs = pairs(boxes, "boxes")
        span_seconds, span_ref = _timed(
            lambda: [
                reference_span_distance(a, b)
                for a, b in zip(span_pairs["a"].to_list(), span_pairs["b"].to_list(), strict=True)
            ]
        )
        box_seconds, box_ref = _timed(
            lambda: [
                reference_box_distance(a, b)
                for a, b in zip(box_pairs["a"].to_list(), box_pairs["b"].to_list(), strict=True)
            ]
        )
        result |= {
            "span_judgments": spans.height,
            "span_seconds": span_seconds,
            "span_agrees": bool(
                np.allclose(span_ref, span_pair_distances(span_pairs["a"], span_pairs["b"]))
            ),
            "box_judgments": boxes.height,
            "box_seconds": box_seconds,
            "box_agrees": bool(
                np.allclose(box_ref, box_pair_distances(box_pairs["a"], box_pairs["b"]))
            ),
        }
    else:
        raise SystemExit(f"unknown stage {name!r}")
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def box_distances(boxes: pl.DataFrame) -> np.ndarray:
    box_pairs = pairs(boxes, "boxes")
    return box_pair_distances(box_pairs["a"], box_pairs["b"])


STAGES = (
    "boxes",
    "boxes_reference",
    "spans",
    "spans_reference",
    "agreement",
    "agreement_reference",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=50_000)
    parser.add_argument("--stage", choices=STAGES)
    parser.add_argument("--skip-reference", action="store_true")
    options = parser.parse_args()
    if options.stage:
        print(json.dumps(stage(options.stage, options.rows, options.reference_rows)))
        return
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    for name in STAGES:
        if options.skip_reference and name.endswith("reference"):
            continue
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                "--stage",
                name,
                "--rows",
                str(options.rows),
                "--reference-rows",
                str(options.reference_rows),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        print(json.dumps(json.loads(output.strip().splitlines()[-1]), indent=None))
        print(f"  load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
