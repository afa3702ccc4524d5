"""Locate and load the real data sets in ../shared/data, read in place (never copied).

Used by tests and benchmarks. Every loader returns canonical column names so engine code
never sees a data set's own header.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

SHARED_DIR = Path(
    os.environ.get("ANNOTATION_PIPELINES_SHARED", Path(__file__).resolve().parents[2] / "shared")
)
DATA_DIR = SHARED_DIR / "data"
CROWD_DIR = DATA_DIR / "crowd"
CAPACITY_DIR = DATA_DIR / "capacity"

# name -> (folder, answer columns task/annotator/label, truth columns task/label)
CROWD_DATASETS: dict[str, tuple[str, tuple[str, str, str], tuple[str, str]]] = {
    "d_product": ("d_jn_product", ("question", "worker", "answer"), ("question", "truth")),
    "d_sentiment": ("d_sentiment", ("id", "worker", "answer"), ("q", "truth")),
    "duck": ("d_Duck_Identification", ("question", "worker", "answer"), ("question", "truth")),
}
ALL_CROWD = (*CROWD_DATASETS, "rte")


def require_shared(*parts: str) -> Path:
    """The path under shared/data, or skip the calling test with the reason."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (set ANNOTATION_PIPELINES_SHARED)")
    return path


def load_crowd(name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(judgments[task_id, annotator_id, label], truth[task_id, label]) as strings."""
    if name == "rte":
        path = require_shared("crowd", "snow_rte", "rte.standardized.tsv")
        raw = pl.read_csv(path, separator="\t", infer_schema=False)
        judgments = raw.select(
            pl.col("orig_id").alias("task_id"),
            pl.col("!amt_worker_ids").alias("annotator_id"),
            pl.col("response").alias("label"),
        )
        truth = raw.select(pl.col("orig_id").alias("task_id"), pl.col("gold").alias("label"))
        return judgments, truth.unique("task_id", maintain_order=True)
    folder, (task, worker, answer), (truth_task, truth_label) = CROWD_DATASETS[name]
    answers = pl.read_csv(require_shared("crowd", folder, "answer.csv"), infer_schema=False)
    truth = pl.read_csv(require_shared("crowd", folder, "truth.csv"), infer_schema=False)
    return (
        answers.select(
            pl.col(task).alias("task_id"),
            pl.col(worker).alias("annotator_id"),
            pl.col(answer).alias("label"),
        ),
        truth.select(pl.col(truth_task).alias("task_id"), pl.col(truth_label).alias("label")),
    )


def accuracy(predicted: pl.DataFrame, truth: pl.DataFrame) -> float:
    """Share of truth tasks whose predicted label equals the truth (missing counts as wrong)."""
    joined = truth.join(predicted.select("task_id", "label"), on="task_id", how="left", suffix="_p")
    return float((joined["label"] == joined["label_p"]).fill_null(False).mean())
