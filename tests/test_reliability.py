"""Killed writers: a run SIGKILLed in the middle of staging an export or a gold set leaves the
previous staging or (once recovered) the new one — never a file with no staged rows."""

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl

from resources.lake import CRASH_POINT_ENV, LocalLake

ROOT = Path(__file__).resolve().parents[1]
HEADER = "task_id,annotator_id,label,submitted_at,duration_s\n"
V1 = HEADER + "t1,a1,pos,2026-11-02T10:00:00Z,3\nt2,a1,neg,2026-11-03T09:00:00Z,5\n"
V2 = HEADER + "t1,a1,neg,2026-11-02T10:00:00Z,3\nt3,a2,pos,2026-11-02T12:00:00Z,4\n"
STAGE = """
import sys
from annotation_pipelines.ingest import ingest_bytes
from assets.sources.assets import stage
from resources.lake import LocalLake
result = ingest_bytes(sys.stdin.buffer.read(), format="csv", source_file="exports/p/csv/f.csv",
                      project="p", label_set=["pos", "neg"])
stage(LocalLake(base_path=sys.argv[1]), result, source="f")
"""


def _stage(lake_path: Path, content: str, *, crash_at: str | None = None) -> int:
    if crash_at is None:
        # Only a writer that is to be killed needs a process of its own.
        from annotation_pipelines.ingest import ingest_bytes
        from assets.sources.assets import stage

        result = ingest_bytes(content.encode(), format="csv", source_file="exports/p/csv/f.csv",
                              project="p", label_set=["pos", "neg"])  # fmt: skip
        stage(LocalLake(base_path=str(lake_path)), result, source="f")
        return 0
    env = {**os.environ}
    env.pop(CRASH_POINT_ENV, None)
    if crash_at:
        env[CRASH_POINT_ENV] = crash_at
    child = subprocess.run(
        [sys.executable, "-c", STAGE, str(lake_path)],
        input=content.encode(),
        cwd=ROOT,
        env=env,
        check=False,
    )
    return child.returncode


def _staged(lake: LocalLake) -> dict[str, list[str]]:
    out = {}
    for key in lake.list_keys("staging/judgments/"):
        out[key.split("/")[2]] = sorted(lake.get_frame(key)["label"].to_list())
    return out


def test_ingest_killed_before_its_commit_keeps_the_previous_staged_rows(tmp_path):
    lake = LocalLake(base_path=str(tmp_path))
    assert _stage(tmp_path, V1) == 0
    before = _staged(lake)
    assert before == {"day=2026-11-02": ["pos"], "day=2026-11-03": ["neg"]}
    assert _stage(tmp_path, V2, crash_at="staged") == -9
    lake.recover()
    assert _staged(lake) == before


def test_ingest_killed_while_replacing_is_finished_by_the_next_lake_user(tmp_path):
    lake = LocalLake(base_path=str(tmp_path))
    assert _stage(tmp_path, V1) == 0
    assert _stage(tmp_path, V2, crash_at="moved:1") == -9
    assert lake.recover() == 1
    # V2 has no row on 2026-11-03 any more: that day's old part is gone with the commit.
    assert _staged(lake) == {"day=2026-11-02": ["neg", "pos"]}


GOLD = """
import sys
from dagster import materialize
from assets.sources.assets import gold_sets
from resources.lake import LocalLake
from resources.landing import LocalLandingZone
lake = LocalLake(base_path=sys.argv[1] + "/lake")
landing = LocalLandingZone(path=sys.argv[1] + "/landing")
materialize([gold_sets], resources={"lake": lake, "landing": landing})
"""


def test_gold_sets_killed_mid_run_keep_the_previous_gold_set(tmp_path):
    gold = tmp_path / "landing" / "gold" / "p"
    gold.mkdir(parents=True)
    (gold / "gold.csv").write_text("task_id,label\nt1,pos\nt2,neg\n")
    # Past the local landing zone's settle time: a file that fresh is not read yet.
    os.utime(gold / "gold.csv", (1, 1))
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    # An older gold set staged on an earlier day: the new run replaces it.
    lake.put_frame(
        "staging/gold_labels/day=2026-01-01/gold_sets.parquet",
        pl.DataFrame({"task_id": ["t0"], "label": ["pos"]}),
    )

    def run(crash_at: str | None) -> int:
        if crash_at is None:
            # Only a run that is to be killed needs a process of its own.
            from dagster import materialize

            from assets.sources.assets import gold_sets
            from resources.landing import LocalLandingZone

            landing = LocalLandingZone(path=str(tmp_path / "landing"))
            result = materialize([gold_sets], resources={"lake": lake, "landing": landing})
            return 0 if result.success else 1
        env = {k: v for k, v in os.environ.items() if k != CRASH_POINT_ENV}
        env[CRASH_POINT_ENV] = crash_at
        args = [sys.executable, "-c", GOLD, str(tmp_path)]
        return subprocess.run(args, cwd=ROOT, env=env, check=False).returncode

    def staged() -> list[str]:
        keys = [
            k for k in lake.list_keys("staging/gold_labels/") if k.endswith("gold_sets.parquet")
        ]
        return sorted(t for k in keys for t in lake.get_frame(k)["task_id"].to_list())

    assert run("staged") == -9
    lake.recover()
    assert staged() == ["t0"]
    assert run(None) == 0
    assert staged() == ["t1", "t2"]


DAILY = """
import sys
from dagster import DagsterInstance
from assets.definitions import build_definitions
quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
         "ops": {"quality": {"config": {"bootstrap_resamples": 0}}}}
with DagsterInstance.ephemeral() as instance:
    build_definitions(profile="local").resolve_job_def(sys.argv[1]).execute_in_process(
        partition_key="2026-11-02", instance=instance, run_config=quiet, raise_on_error=False)
"""


def test_quality_step_killed_between_its_writes_never_leaves_a_mixed_set(tmp_path, monkeypatch):
    from datetime import date

    from dagster import DagsterInstance

    from annotation_pipelines.synthetic import generate_workload
    from assets.definitions import build_definitions

    generate_workload(
        tmp_path / "landing" / "synthetic",
        judgments=2_000,
        start=date(2026, 11, 2),
        days=1,
        seed=4,
    )

    def run(pseudonym_key: str, crash_at: str | None, job: str) -> int:
        if crash_at is None:
            # Only a run that is to be killed needs a process of its own.
            monkeypatch.delenv(CRASH_POINT_ENV, raising=False)
            monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
            monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", pseudonym_key)
            quiet = {
                "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                "ops": {"quality": {"config": {"bootstrap_resamples": 0}}},
            }
            with DagsterInstance.ephemeral() as instance:
                job_def = build_definitions(profile="local").resolve_job_def(job)
                result = job_def.execute_in_process(
                    partition_key="2026-11-02", instance=instance, run_config=quiet
                )
            return 0 if result.success else 1
        env = {k: v for k, v in os.environ.items() if k != CRASH_POINT_ENV}
        env |= {
            "ANNOTATION_PIPELINES_DATA_DIR": str(tmp_path),
            "ANNOTATION_PIPELINES_PSEUDONYM_KEY": pseudonym_key,
        }
        if crash_at:
            env[CRASH_POINT_ENV] = crash_at
        return subprocess.run([sys.executable, "-c", DAILY, job], cwd=ROOT, env=env).returncode

    lake = LocalLake(base_path=str(tmp_path / "lake"))

    def consistent() -> bool:
        cards = lake.read_table("annotator_scorecards", day="2026-11-02")
        pages = [k for k in lake.list_keys("reports/quality/day=2026-11-02/")]
        shown = set(re.findall(r"anon-[0-9a-f]{16}", "".join(lake.get(k).decode() for k in pages)))
        return bool(shown) and shown <= set(cards["annotator_pseudonym"].to_list())

    assert run("first-key", None, "daily_annotation_job") == 0
    assert consistent()
    # Killed after its first move (an HTML page): before recovery the lake is mixed ... The
    # rebuild re-scores the quality layer alone (what a floor change or history rebuild
    # launches): the step killed is the same, without building the day's upstream layers again.
    assert run("second-key", "moved:1", "quality_job") == -9
    assert not consistent()
    # ... and the next lake user (any run's first input load, a commit, maintenance) rolls the
    # killed step forward, so readers see one complete set.
    assert lake.recover() == 1
    assert consistent()
