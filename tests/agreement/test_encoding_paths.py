"""The exact string-view fast paths group exactly like the general hashed path."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.agreement import _encoding, krippendorff_alpha

ID_FORMATS = {
    "numbered": lambda i: f"task-{i}",
    "padded": lambda i: f"t{i:08d}",
    "twelve_bytes": lambda i: f"x{i:011d}",
    "long": lambda i: f"a-rather-long-task-identifier-{i}",
    "mixed_lengths": lambda i: "q" * (i % 13) + str(i),
    "hex": lambda i: f"{(i * 2654435761) % (1 << 48):012x}",
    "unicode": lambda i: f"é{i}",
}
LABEL_FORMATS = {
    "digits": lambda v: str(v),
    "short_words": lambda v: ["no", "yes", "skip", "n/a", ""][v],
    "long_words": lambda v: ["negative", "positive", "neutral", "mixed!", "unknown"][v],
    "unicode": lambda v: ["α", "β", "γ", "δ", "ε"][v],
}


def _counts(frame: pl.DataFrame, level: str) -> list[tuple]:
    """Each task's sorted (value, count) pairs, as a sorted list: task codes are arbitrary."""
    counts = _encoding.task_value_counts(frame, level=level)
    per_task: dict[int, list] = {}
    for task, value, count in zip(
        counts.task.tolist(),
        counts.domain[counts.value].tolist(),
        counts.count.tolist(),
        strict=True,
    ):
        per_task.setdefault(task, []).append((value, count))
    return sorted(tuple(sorted(pairs)) for pairs in per_task.values())


@pytest.mark.parametrize("ids", sorted(ID_FORMATS))
@pytest.mark.parametrize("labels", sorted(LABEL_FORMATS))
def test_fast_paths_match_the_hashed_path(ids, labels, monkeypatch):
    generator = np.random.default_rng(len(ids) * 31 + len(labels))
    tasks = generator.integers(0, 300, 2000)
    values = generator.integers(0, 5, 2000)
    frame = pl.DataFrame(
        {
            "task_id": [ID_FORMATS[ids](int(t)) for t in tasks],
            "annotator_id": "a",
            "label": [LABEL_FORMATS[labels](int(v)) for v in values],
        }
    ).slice(7)  # a non-zero Arrow offset
    if ids in ("numbered", "padded", "twelve_bytes"):
        assert _encoding._exact_task_keys(frame.get_column("task_id"), 3) is not None
    if labels in ("digits", "short_words", "unicode"):
        assert _encoding._short_text_codes(frame.get_column("label")) is not None
    fast = _counts(frame, "nominal"), krippendorff_alpha(frame)
    monkeypatch.setattr(_encoding, "_exact_task_keys", lambda tasks, bits: None)
    monkeypatch.setattr(_encoding, "_short_text_codes", lambda labels: None)
    slow = _counts(frame, "nominal"), krippendorff_alpha(frame)
    assert fast[0] == slow[0]
    assert fast[1] == pytest.approx(slow[1], abs=1e-12)


def test_numeric_levels_through_the_short_label_path():
    frame = pl.DataFrame(
        {"task_id": ["a", "a", "b", "b", "b", "c"], "label": ["1", "1.0", "3", "2", "3", "7"]}
    )
    counts = _encoding.task_value_counts(frame, level="interval")
    assert counts.domain.tolist() == [1.0, 2.0, 3.0, 7.0]
    assert counts.n_tasks == 3
