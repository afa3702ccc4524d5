"""Bringing 100,000-row kind snapshots' trainer files to the current format, and the check every
kind curation run makes first.

    .venv/bin/python benchmarks/bench_trainer_rewrite.py

Times `rewrite_trainer_files` (best of 3) on a spans and a boxes snapshot of 100,000 rows whose
manifest names format 1, from their data.parquet bytes (the read and the check that the rows
hash to the version id included), and the scan the asset makes on every run: listing a lake of
1,000 kind versions already in the current format and reading each manifest.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation.boxes import FUSED_BOX
from annotation_pipelines.aggregation.spans import SCORED_SPAN
from annotation_pipelines.curation.kinds import (
    build_kind_snapshot,
    rewrite_trainer_files,
    trainer_files_outdated,
)
from annotation_pipelines.lake import DATASETS, dataset_manifest_keys
from resources.lake import LocalLake

N = 100_000
VERSIONS = 1_000


def frames(kind: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"{kind}-{i:06d}" for i in range(N)]
    if kind == "spans":
        payloads = [f"Ada Lovelace met Bob Smith about order {i}" for i in range(N)]
        spans = [
            {"start": 0, "end": 12, "label": "PER", "confidence": 0.9},
            {"start": 4, "end": 16, "label": "EVENT", "confidence": 0.8},
        ]
        values: dict[str, object] = {"spans": [spans] * N}
        dtype = pl.List(SCORED_SPAN)
    else:
        payloads = [
            json.dumps({"file_name": f"{i}.jpg", "width": 640, "height": 480}) for i in range(N)
        ]
        box = {"x_min": 1.0, "y_min": 2.0, "x_max": 11.0, "y_max": 22.0, "confidence": 0.8}
        values = {"boxes": [[{**box, "label": ("dog", "cat")[i % 2]}] for i in range(N)]}
        dtype = pl.List(FUSED_BOX)
    tasks = pl.DataFrame({"task_id": ids, "project": kind, "payload": payloads, "is_gold": False})
    labels = pl.DataFrame(
        {
            "task_id": ids,
            "project": kind,
            "kind": kind,
            "day": date(2026, 11, 2),
            "method": "m",
            "confidence": [0.9] * N,
            **values,
        },
        schema_overrides={kind: dtype},
    )
    return labels, tasks


def main() -> None:
    for kind in ("spans", "boxes"):
        labels, tasks = frames(kind)
        snapshot = build_kind_snapshot(
            labels, tasks, project=kind, kind=kind, phone_region="US", max_masked_share=1.0
        )
        manifest = {
            "project": kind,
            "kind": kind,
            "version_id": snapshot.version_id,
            "splits": {"train": 0, "validation": 0, "test": 0},
            "label_set": snapshot.stats["label_set"],
            "files": sorted(snapshot.files),
            "stats": snapshot.stats,
        }
        data = snapshot.files["data.parquet"]
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            rows = pl.read_parquet(io.BytesIO(data))
            rewrite = rewrite_trainer_files(
                manifest, rows, stored=lambda _: None, rewritten_at="now", run_id="bench"
            )
            best = min(best, time.perf_counter() - start)
        print(
            f"rewrite {kind:5s} {N:,} rows: {best:.2f} s (best of 3), "
            f"{len(rewrite.files)} files, {sum(map(len, rewrite.files.values())) / 1e6:.1f} MB"
        )
    with tempfile.TemporaryDirectory() as root:
        lake = LocalLake(base_path=root)
        current = json.dumps({**manifest, "trainer_files": {"format": 2}}).encode()
        for n in range(VERSIONS):
            lake.put(f"{DATASETS}/p{n % 10}/v{n:04d}/manifest.json", current)
            lake.put(f"{DATASETS}/p{n % 10}/v{n:04d}/data.parquet", b"")
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            keys = dataset_manifest_keys(lake.list_keys(f"{DATASETS}/"))
            outdated = [key for key in keys if trainer_files_outdated(json.loads(lake.get(key)))]
            best = min(best, time.perf_counter() - start)
        print(
            f"scan of {len(keys):,} current versions: {best * 1000:.0f} ms (best of 3), "
            f"{len(outdated)} outdated"
        )


if __name__ == "__main__":
    main()
