"""The live asset against a real annotation DB: requests and blocks written once per decision,
the lake state and stream position committed together, the Label Studio list beside them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl
import psycopg
import pytest
from dagster import AssetKey, DagsterInstance

from annotation_pipelines.ingest.postgres import apply_schema, seed_database
from annotation_pipelines.loop.live import LiveOptions, load_state, open_requests
from annotation_pipelines.loop.writeback import write_requests
from assets.definitions import build_definitions
from tests.loop.test_live import stream
from tests.services import fresh_database
from tests.support import lake_reader, live_quality_job

pytestmark = pytest.mark.services
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _judgments(n_tasks: int = 300) -> pl.DataFrame:
    judgments, _ = stream(n_tasks=n_tasks, spammer_from=100)
    start = datetime.now(UTC) - timedelta(hours=1)
    return judgments.with_columns(
        project=pl.lit("reviews"),
        submitted_at=pl.lit(start) + pl.duration(milliseconds=pl.int_range(pl.len()) * 10),
    )


def _rows(dsn: str, table: str) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(f"SELECT decision_id FROM {table} ORDER BY 1").fetchall()


def test_the_live_asset_writes_each_decision_once(tmp_path, monkeypatch):
    judgments = _judgments()
    with fresh_database("live_writeback") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        apply_schema(dsn)  # the migration is idempotent
        seed_database(
            dsn, judgments=judgments.head(1200), label_sets={"reviews": ["c0", "c1", "c2"]}
        )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        seed_database(dsn, judgments=judgments.slice(1200))
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        requests, actions = _rows(dsn, "task_requests"), _rows(dsn, "annotator_actions")
        assert requests and len(actions) == 1
        # Nothing new: a third run writes nothing and moves no state.
        lake = tmp_path / "data" / "lake" / "live"
        third = job.execute_in_process(instance=instance, run_config=QUIET)
        metadata = third.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["new_judgments"].value == 0
        assert _rows(dsn, "task_requests") == requests
        state = load_state(
            "reviews",
            lake_reader(lake.parent),
        )
        assert state.ledger.height == judgments.height
        assert state.annotators.filter(pl.col("annotator_id") == "s00")["blocked"].item()
        with psycopg.connect(dsn) as connection:
            block = connection.execute(
                "SELECT annotator_id, project, action, evidence->>'n_judgments' "
                "FROM annotator_actions"
            ).fetchone()
        assert block[:3] == ("s00", "reviews", "block") and int(block[3]) >= 30
        imported = json.loads((lake / "reviews" / "requests.json").read_text())
        assert imported and all(set(item) == {"data"} for item in imported)
        # Each run read only its batch's tasks, yet the list is every open request.
        every = open_requests(state, LiveOptions(), now=datetime.now(UTC))
        assert sorted(item["data"]["decision_id"] for item in imported) == sorted(
            every["decision_id"]
        )
        assert not (lake / "reviews" / "tasks.parquet").exists()
        assert {p.name for p in (lake / "reviews" / "tasks").iterdir()} == {
            s.key.rsplit("/", 1)[1].removesuffix(".parquet") + suffix
            for s in state.task_segments
            for suffix in (".parquet", ".gold.fp")
        }
        # A retried write of the same decisions inserts nothing.
        frame = pl.DataFrame(
            {"task_id": ["t0001"], "project": ["reviews"], "request": ["another_judgment"],
             "reason": ["r"], "confidence": [0.5], "posterior": ['{"c0": 0.5}'],
             "decision_id": ["d1"], "created_at": [datetime.now(UTC)]}
        )  # fmt: skip
        empty = pl.DataFrame(schema={c: pl.String for c in ("annotator_id",)})
        assert (
            write_requests(dsn, task_requests=frame, annotator_actions=empty.head(0))[
                "task_requests"
            ]
            == 1
        )
        assert (
            write_requests(dsn, task_requests=frame, annotator_actions=empty.head(0))[
                "task_requests"
            ]
            == 0
        )
    assert instance.get_latest_materialization_event(AssetKey("live_quality_state")) is not None


def _resources() -> dict[str, object]:
    from annotation_pipelines.settings import load_settings
    from assets.definitions import resources_for

    return resources_for(load_settings(profile="local"))


def _tick(defs, instance, cursor: str | None = None):
    """One evaluation of the live sensor against the real instance and resources."""
    from dagster import build_sensor_context

    sensor = defs.resolve_sensor_def("live_quality_sensor")
    with build_sensor_context(instance=instance, cursor=cursor, resources=_resources()) as context:
        return sensor.evaluate_tick(context)


def _launch(job, instance, tick) -> list:
    """Run what the sensor asked for, as the daemon would (its run config, in process): the
    live runs with `job`, a maintenance run with its own job."""
    results = []
    for request in tick.run_requests or []:
        config = {**request.run_config, **QUIET}
        chosen = job
        if request.job_name not in (None, job.name):
            chosen = build_definitions(profile="local").resolve_job_def(request.job_name)
        # Tagged with its run key as the daemon tags it: the sensor follows re-base runs by it.
        tags = {**request.tags, "dagster/run_key": request.run_key} if request.run_key else None
        results.append(chosen.execute_in_process(instance=instance, run_config=config, tags=tags))
        assert results[-1].success
    return results


def _export(path, frame: pl.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.select(
        "judgment_id", "task_id", "annotator_id", "label", "submitted_at", "duration_s"
    ).write_parquet(path)


def test_files_of_one_name_in_two_folders_each_keep_their_votes_live(tmp_path, monkeypatch):
    # A file without judgment ids names its rows `<file name>:<line>`: a second day's drop
    # named alike must not replace the first's votes.
    exports = tmp_path / "data" / "landing" / "exports" / "reviews" / "csv"
    header = "task_id,annotator_id,label,submitted_at,duration_s\n"
    for day in ("2026-11-02", "2026-11-03"):
        (exports / day).mkdir(parents=True)
        (exports / day / "labels.csv").write_text(
            header + f"t-{day},a1,c1,{day}T10:00:00Z,3\nt-{day},a2,c1,{day}T11:00:00Z,3\n"
        )
    with fresh_database("live_same_names") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        seed_database(dsn, judgments=_judgments().head(0), label_sets={"reviews": ["c0", "c1"]})
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        _launch(job, instance, _tick(defs, instance))
        state = load_state("reviews", lake_reader(tmp_path / "data" / "lake"))
    assert state.ledger.height == 4
    votes = dict(state.tasks.select("task_id", "n_votes").iter_rows())
    assert votes == {"t-2026-11-02": 2, "t-2026-11-03": 2}


def test_landing_zone_exports_are_folded_into_the_live_state_once_per_content(
    tmp_path, monkeypatch
):
    import os

    judgments = _judgments()
    from_db, first, second = judgments.head(600), judgments.slice(600, 600), judgments.slice(1200)
    exports = tmp_path / "data" / "landing" / "exports" / "reviews" / "parquet"
    lake = tmp_path / "data" / "lake"

    def state():
        return load_state("reviews", lake_reader(lake))

    with fresh_database("live_files") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        seed_database(dsn, judgments=from_db, label_sets={"reviews": ["c0", "c1", "c2"]})
        _export(exports / "batch-1.parquet", first)
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")

        # The DB rows and the file arrive through one sensor tick and one run.
        tick = _tick(defs, instance)
        assert len(tick.run_requests) == 1
        _launch(job, instance, tick)
        after_first = state()
        assert after_first.ledger.height == 1200
        assert set(after_first.ledger["judgment_id"]) == set(from_db["judgment_id"]) | set(
            first["judgment_id"]
        )
        record = json.loads((lake / "live" / "_stream" / "files.json").read_text())
        assert set(record) == {"exports/reviews/parquet/batch-1.parquet"}

        # Nothing new: the sensor skips; a run anyway folds nothing.
        assert not _tick(defs, instance, tick.cursor).run_requests
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        assert state().version == after_first.version

        # The same content touched: re-fingerprinted, not read again.
        touched = exports / "batch-1.parquet"
        os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
        tick = _tick(defs, instance, tick.cursor)
        _launch(job, instance, tick)
        assert state().version == after_first.version
        assert state().ledger.height == 1200

        # A new file: its judgments once, whatever the re-runs; the spammer in it is blocked.
        _export(exports / "batch-2.parquet", second)
        tick = _tick(defs, instance, tick.cursor)
        _launch(job, instance, tick)
        _launch(job, instance, tick)
        final = state()
        assert final.ledger.height == judgments.height
        assert final.ledger["judgment_id"].n_unique() == judgments.height
        flagged = int(final.ledger["flagged"].sum())
        assert int(final.tasks["n_votes"].sum()) + flagged == judgments.height
        assert (
            _rows(dsn, "annotator_actions")
            and final.annotators.filter(pl.col("annotator_id") == "s00")["blocked"].item()
        )

        # An unreadable file is recorded with its error and never stalls the loop.
        (exports / "broken.parquet").write_bytes(b"not parquet")
        tick = _tick(defs, instance, tick.cursor)
        _launch(job, instance, tick)
        record = json.loads((lake / "live" / "_stream" / "files.json").read_text())
        assert "error" in record["exports/reviews/parquet/broken.parquet"]
        assert not _tick(defs, instance, tick.cursor).run_requests

        # An edited file without 40 of its judgments: they are withdrawn, their tasks refitted;
        # its unchanged rows are no new judgments.
        dropped = first.head(40)
        _export(exports / "batch-1.parquet", first.slice(40))
        tick = _tick(defs, instance, tick.cursor)
        result = _launch(job, instance, tick)[0]
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["withdrawn_judgments"].value == 40
        assert metadata["new_judgments"].value == 0
        edited = state()
        assert edited.ledger.height == judgments.height - 40
        assert not edited.ledger["judgment_id"].is_in(dropped["judgment_id"].implode()).any()
        flagged = int(edited.ledger["flagged"].sum())
        assert int(edited.tasks["n_votes"].sum()) + flagged == judgments.height - 40

        # A file removed from the landing zone takes nothing back (nor do the daily layers):
        # clearing the drop zone is not a retraction.
        (exports / "batch-2.parquet").unlink()
        assert not _tick(defs, instance, tick.cursor).run_requests
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        assert state().version == edited.version
        assert state().ledger.height == judgments.height - 40


def yesterdays_stream(*, n_tasks: int, spammer_from: int) -> tuple[pl.DataFrame, date]:
    """(a `stream` of project "reviews" submitted yesterday from 09:00 UTC, 10 ms apart,
    that day)."""
    judgments, _ = stream(n_tasks=n_tasks, spammer_from=spammer_from)
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    start = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    judgments = judgments.with_columns(
        project=pl.lit("reviews"),
        submitted_at=pl.lit(start) + pl.duration(milliseconds=pl.int_range(pl.len()) * 10),
    )
    return judgments, day


def daily_labels(lake_dir, judgments: pl.DataFrame, day: date, instance) -> pl.DataFrame:
    """The day's `aggregated_labels`, built by the real aggregation asset in `instance` on the
    day the raw layer would build from `judgments`."""
    from dagster import AssetSpec, materialize

    from annotation_pipelines import schema
    from assets.aggregation.assets import aggregated_labels
    from assets.common.partitions import daily_partitions
    from resources.lake import LakeIOManager, LocalLake

    lake = LocalLake(base_path=str(lake_dir))
    lake.write_table("judgments", judgments, day=day.isoformat())
    lake.write_table("gold_labels", schema.empty(schema.GOLD_LABELS), day=day.isoformat())
    sources = [
        AssetSpec(name, partitions_def=daily_partitions) for name in ("judgments", "gold_labels")
    ]
    assert materialize(
        [*sources, aggregated_labels],
        partition_key=day.isoformat(),
        resources={"lake": lake, "io_manager": LakeIOManager(lake=lake)},
        instance=instance,
    ).success
    return lake.read_table("aggregated_labels", day=day.isoformat())


def test_a_day_s_aggregation_re_bases_the_live_state_on_it(tmp_path, monkeypatch):
    judgments, day = yesterdays_stream(n_tasks=600, spammer_from=300)
    lake_dir = tmp_path / "data" / "lake"
    with fresh_database("live_rebase") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        seed_database(dsn, judgments=judgments, label_sets={"reviews": ["c0", "c1", "c2"]})
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        tick = _tick(defs, instance)
        _launch(job, instance, tick)

        daily = daily_labels(lake_dir, judgments, day, instance)

        def live_labels() -> pl.DataFrame:
            state = load_state(
                "reviews",
                lake_reader(lake_dir),
            )
            return state.tasks.join(daily.rename({"label": "daily"}), on="task_id")

        before = live_labels()
        tick = _tick(defs, instance, tick.cursor)
        assert tick.run_requests, tick.skip_message
        assert tick.run_requests[0].run_config["ops"]["live_quality_state"]["config"][
            "rebase_days"
        ] == [day.isoformat()]
        _launch(job, instance, tick)
        after = live_labels()
        # Every task of the day: the live label is the daily label.
        assert after.height == daily.height == 600
        assert (after["label"] == after["daily"]).all(), (
            f"agreement before the re-base {(before['label'] == before['daily']).mean():.4f}"
        )
        # The cursor moved past that materialization: the next tick re-bases nothing.
        assert not _tick(defs, instance, tick.cursor).run_requests


LIVE_RUN = """
from dagster import DagsterInstance
from assets.definitions import build_definitions
quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
with DagsterInstance.ephemeral() as instance:
    build_definitions(profile="local").resolve_job_def("live_quality_job").execute_in_process(
        instance=instance, run_config=quiet, raise_on_error=False)
"""


def test_a_live_run_killed_mid_commit_loses_and_repeats_no_judgment(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from resources.lake import CRASH_POINT_ENV

    judgments = _judgments()
    lake = tmp_path / "data" / "lake"

    def run(dsn: str, crash_at: str | None) -> int:
        # Only a run that is to be killed needs a process of its own; the runs before and after
        # the kills are ordinary runs, here without a second import of the code location.
        if crash_at is None:
            monkeypatch.delenv(CRASH_POINT_ENV, raising=False)
            _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
            with instance:
                result = job.execute_in_process(instance=instance, run_config=QUIET)
            return 0 if result.success else 1
        env = {k: v for k, v in os.environ.items() if k != CRASH_POINT_ENV}
        env.update(ANNOTATION_DB_DSN=dsn, ANNOTATION_PIPELINES_DATA_DIR=str(tmp_path / "data"))
        env[CRASH_POINT_ENV] = crash_at
        root = Path(__file__).resolve().parents[2]
        args = [sys.executable, "-c", LIVE_RUN]
        return subprocess.run(args, cwd=root, env=env, check=False).returncode

    def state():
        return load_state("reviews", lake_reader(lake))

    with fresh_database("live_crash") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        seed_database(
            dsn, judgments=judgments.head(500), label_sets={"reviews": ["c0", "c1", "c2"]}
        )
        assert run(dsn, None) == 0
        first = state()
        seed_database(dsn, judgments=judgments.slice(500, 500))
        # Killed with its objects staged but no marker: the previous state and position stand.
        assert run(dsn, "staged") == -9
        assert state().version == first.version and state().ledger.height == 500
        # Killed after the marker, one object moved: the next run finishes that commit first.
        assert run(dsn, "moved:1") == -9
        seed_database(dsn, judgments=judgments.slice(1000))
        assert run(dsn, None) == 0
        final = state()
    assert final.ledger.height == final.ledger["judgment_id"].n_unique() == judgments.height
    assert sum(segment.rows for segment in final.segments) == judgments.height
    for segment in final.segments:
        assert (lake / segment.key).exists(), segment.key
    flagged = int(final.ledger["flagged"].sum())
    assert int(final.tasks["n_votes"].sum()) + flagged == judgments.height


def test_merges_left_by_the_live_runs_are_done_by_the_compaction_job_and_its_sensor(
    tmp_path, monkeypatch
):
    """A state whose runs left merges for maintenance: the sensor asks for the compaction
    job for them, and the job merges them under the live lock, the state unchanged."""
    from dagster import build_sensor_context

    from annotation_pipelines.loop.live import (
        LedgerCompaction,
        due_merges,
        state_objects,
        update,
    )
    from assets.live.sensors import compaction_request
    from resources.lake import LocalLake
    from tests.loop.test_live import NOW, same_frame

    lake = LocalLake(base_path=str(tmp_path / "data" / "lake"))

    def read(key: str) -> bytes | None:
        return lake.get(key) if lake.exists(key) else None

    compaction = LedgerCompaction(fan_in=2, base_rows=20, max_inline_rows=100)
    judgments = _judgments().drop("project")
    for start in range(0, judgments.height, 60):
        state, _ = update(load_state("reviews", read), judgments.slice(start, 60), now=NOW)
        objects = state_objects(state, read, compaction=compaction)
        lake.commit(objects.writes, deletes=objects.deletes)
    before = load_state("reviews", read)
    assert {table for table, _ in due_merges("reviews", read, compaction)} == {"ledger", "tasks"}
    with fresh_database("live_compaction") as database:
        monkeypatch.setenv("ANNOTATION_DB_DSN", f"postgresql://postgres@127.0.0.1:5432/{database}")
        monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
        instance = DagsterInstance.ephemeral()
        with build_sensor_context(instance=instance) as context:
            request = compaction_request(context, lake, compaction=compaction)
            again = compaction_request(context, lake, compaction=compaction)
        assert request is not None and request.job_name == "live_compaction_job"
        assert again is not None and again.run_key == request.run_key
        job = build_definitions(profile="local").resolve_job_def("live_compaction_job")
        config = {**request.run_config, **QUIET}
        assert job.execute_in_process(instance=instance, run_config=config).success
        with build_sensor_context(instance=instance) as context:
            assert compaction_request(context, lake, compaction=compaction) is None
    assert due_merges("reviews", read, compaction) == []
    after = load_state("reviews", read)
    for name in ("ledger", "tasks", "annotators", "versions"):
        assert same_frame(after, before, name), name
    listed = {s.key for s in (*after.segments, *after.task_segments)}
    indexes = {
        s.key.removesuffix(".parquet") + suffix
        for s in after.segments
        for suffix in (".ids.parquet", ".ids.fp")
    } | {s.key.removesuffix(".parquet") + ".gold.fp" for s in after.task_segments}
    stored = {k for k in lake.list_keys("live/reviews/") if "/ledger/" in k or "/tasks/" in k}
    assert stored == listed | indexes
    assert len(after.segments) < len(before.segments)
