"""Which projects require gold, read from the staged and synthetic gold files: each file is
downloaded once per run, though both quality assets of the run ask."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl

from annotation_pipelines.lake import staging_key
from assets.quality.assets import gold_projects
from resources.lake import LocalLake, parquet_bytes
from resources.landing import LocalLandingZone


class CountingLake(LocalLake):
    """The local lake, counting the objects it hands out, whole or as a path to read from."""

    def model_post_init(self, context: object) -> None:
        super().model_post_init(context)
        self._reads: Counter[str] = Counter()

    def get(self, key: str) -> bytes:
        self._reads[key] += 1
        return super().get(key)

    def local_path(self, key: str) -> Path | None:
        self._reads[key] += 1
        return super().local_path(key)


class CountingLanding(LocalLandingZone):
    """The local landing zone, counting the files it hands out."""

    def model_post_init(self, context: object) -> None:
        super().model_post_init(context)
        self._reads: Counter[str] = Counter()

    def read_bytes(self, path: str) -> bytes:
        self._reads[path] += 1
        return super().read_bytes(path)


def _gold(project: str | None) -> pl.DataFrame:
    return pl.DataFrame(
        {"task_id": ["t1", "t2"], "project": [project, project], "label": ["a", "b"]},
        schema={"task_id": pl.String, "project": pl.String, "label": pl.String},
    )


def test_each_gold_file_is_read_once_per_run_and_again_when_the_listing_changes(tmp_path):
    lake = CountingLake(base_path=str(tmp_path / "lake"))
    landing = CountingLanding(path=str(tmp_path / "landing"))
    lake.put(staging_key("gold_labels", "2026-11-02", "gold_sets"), parquet_bytes(_gold("reviews")))
    lake.put(staging_key("gold_labels", "2026-11-03", "db"), parquet_bytes(_gold(None)))
    lake.put(
        staging_key("gold_labels", "2026-11-03", "no_project"),
        parquet_bytes(_gold("x").drop("project")),
    )
    synthetic = tmp_path / "landing" / "synthetic" / "gold_labels" / "day=2026-11-02"
    synthetic.mkdir(parents=True)
    _gold("sentiment").write_parquet(synthetic / "part-0.parquet")
    (synthetic / "notes.txt").write_text("not a parquet file")

    expected = {"intent", "reviews", "sentiment"}
    # Both quality assets of one run ask: the second asker downloads nothing.
    assert gold_projects(lake, landing, ["intent"], run_id="run-1") == expected
    assert gold_projects(lake, landing, ["intent"], run_id="run-1") == expected
    assert set(lake._reads.values()) == {1} and len(lake._reads) == 3
    assert dict(landing._reads) == {"synthetic/gold_labels/day=2026-11-02/part-0.parquet": 1}

    # Another run reads again: the gold sets may have changed between runs.
    assert gold_projects(lake, landing, [], run_id="run-2") == {"reviews", "sentiment"}
    assert set(lake._reads.values()) == {2}

    # A gold file staged within the run changes the listing: it is read.
    lake.put(
        staging_key("gold_labels", "2026-11-04", "gold_sets"), parquet_bytes(_gold("toxicity"))
    )
    assert gold_projects(lake, landing, [], run_id="run-2") == {
        "reviews",
        "sentiment",
        "toxicity",
    }
    # Outside a run nothing is remembered.
    assert gold_projects(lake, landing, []) == {"reviews", "sentiment", "toxicity"}
    assert gold_projects(lake, landing, []) == {"reviews", "sentiment", "toxicity"}
    assert lake._reads[staging_key("gold_labels", "2026-11-04", "gold_sets")] == 3
