"""Curating 100,000-row projects of three kinds with their personal data masked.

    .venv/bin/python benchmarks/bench_kind_masking.py [--dates]

Times `build_kind_snapshot` (best of 3) on spans, pairwise and text projects where 1 % of the
texts hold an e-mail address and a phone number. `--dates` puts a date in each of the others: a
run of 7+ digits, so every text goes through libphonenumber's matcher, the worst case.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation.spans import SCORED_SPAN
from annotation_pipelines.curation.kinds import build_kind_snapshot

N = 100_000
DATES = "--dates" in sys.argv


def text(i: int) -> str:
    if i % 100 == 0:
        return f"Ada Lovelace ada{i}@example.com called (415) 555-0132 about order {i}"
    if DATES:
        return f"Bob Smith wrote about order {i} on 2026-11-{i % 28 + 1:02d}"
    return f"Bob Smith wrote about order {i}"


def frames(
    project: str,
    kind: str,
    payload: Callable[[int], str],
    values: dict[str, object],
    **dtypes: pl.DataType,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"{project}-{i:06d}" for i in range(N)]
    tasks = pl.DataFrame(
        {
            "task_id": ids,
            "project": project,
            "payload": [payload(i) for i in range(N)],
            "is_gold": False,
        }
    )
    labels = pl.DataFrame(
        {
            "task_id": ids,
            "project": project,
            "kind": kind,
            "day": date(2026, 11, 2),
            "method": "m",
            "confidence": [0.9] * N,
            **values,
        },
        schema_overrides=dtypes,
    )
    return labels, tasks


def main() -> None:
    cases = {
        "spans": frames(
            "entities",
            "spans",
            text,
            {"spans": [[{"start": 0, "end": 9, "label": "PER", "confidence": 0.9}]] * N},
            spans=pl.List(SCORED_SPAN),
        ),
        "pairwise": frames(
            "prefs",
            "pairwise",
            lambda i: json.dumps({"prompt": text(i), "left_text": f"a{i}", "right_text": f"b{i}"}),
            {"left": ["a"] * N, "right": ["b"] * N, "winner": ["left"] * N},
        ),
        "text": frames(
            "transcripts", "text", lambda i: f"audio {i}", {"text": [text(i) for i in range(N)]}
        ),
    }
    for kind, (labels, tasks) in cases.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            snapshot = build_kind_snapshot(
                labels,
                tasks,
                project=labels["project"][0],
                kind=kind,
                phone_region="US",
                max_masked_share=1.0,
            )
            best = min(best, time.perf_counter() - start)
        masked = snapshot.stats.get("masked_rows", "-")
        print(f"{kind:9s} {N:,} rows: {best:.2f} s (best of 3), masked rows: {masked}")


if __name__ == "__main__":
    main()
