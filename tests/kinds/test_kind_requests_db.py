"""The daily kind queue written back to a real annotation DB by the daily job on a real
(temporary) Dagster instance, beside the live layer's requests: one open request per task, the
newer decision standing, the day's settled tasks withdrawn, a retry changing nothing."""

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl
import psycopg
import pytest
from dagster import AssetKey

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.lake import kind_requests_key
from annotation_pipelines.loop.live import ANNOTATOR_ACTIONS, TASK_REQUESTS, decision_id
from annotation_pipelines.loop.writeback import write_requests
from tests.kinds.test_kinds_pipeline import DAY, RUN_CONFIG
from tests.services import fresh_database
from tests.support import QUIET, local_graph

pytestmark = pytest.mark.services
DAY_END = datetime.combine(date.fromisoformat(DAY) + timedelta(days=1), datetime.min.time(), UTC)


def _live(project: str, task: str, at: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": [task],
            "project": [project],
            "request": ["another_judgment"],
            "reason": ["live"],
            "confidence": [0.5],
            "posterior": ["{}"],
            "decision_id": [decision_id("another_judgment", project, task, int(at.timestamp()))],
            "created_at": [at],
        },
        schema=TASK_REQUESTS,
    )


def _rows(dsn: str) -> dict[str, tuple[str, str, str, datetime]]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT decision_id, project, task_id, status, updated_at FROM task_requests"
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def _open_per_task(dsn: str) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for project, task, status, _ in _rows(dsn).values():
        if status in ("open", "acknowledged"):
            found[(project, task)] = found.get((project, task), 0) + 1
    return found


def test_the_daily_kind_requests_withdraw_older_requests_and_a_retry_changes_nothing(
    tmp_path, monkeypatch
):
    with fresh_database("kind_daily_requests") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        with local_graph(
            tmp_path,
            judgments=300,
            start=date.fromisoformat(DAY),
            days=1,
            seed=21,
            kinds=True,
            judgments_per_kind=600,
        ) as (defs, instance, data):
            daily = defs.resolve_job_def("daily_annotation_job")
            assert daily.execute_in_process(
                partition_key=DAY, instance=instance, run_config=RUN_CONFIG
            ).success
            lake = data / "lake"
            queue = pl.read_parquet(
                lake / "kind_reannotation_queue" / f"day={DAY}" / "data.parquet"
            )
            labels = pl.read_parquet(
                lake / "kind_aggregated_labels" / f"day={DAY}" / "data.parquet"
            )
            first = _rows(dsn)
            assert len(first) == queue.height > 0
            assert {status for *_, status, _ in first.values()} == {"open"}

            # The live layer asks about three tasks: one the day queued, decided during the
            # day (older: the day's request stands); one the day queued, decided after the
            # day ended (newer: it stands, the day's is withdrawn); one the day found settled,
            # decided during the day.
            queued = queue.sort("project", "task_id").row(0, named=True)
            later = queue.sort("project", "task_id").row(1, named=True)
            done = labels.join(queue, on=["project", "task_id"], how="anti").row(0, named=True)
            older = _live(queued["project"], queued["task_id"], DAY_END - timedelta(hours=2))
            newer = _live(later["project"], later["task_id"], DAY_END + timedelta(hours=2))
            settled = _live(done["project"], done["task_id"], DAY_END - timedelta(hours=1))
            write_requests(
                dsn,
                task_requests=pl.concat([older, newer, settled]),
                annotator_actions=pl.DataFrame(schema=ANNOTATOR_ACTIONS),
            )
            # The live write keeps the newer of its own and the day's request on each task.
            status = {d: s for d, (_, _, s, _) in _rows(dsn).items()}
            assert status[older["decision_id"][0]] == "withdrawn"
            assert status[newer["decision_id"][0]] == "open"
            assert status[settled["decision_id"][0]] == "open"

            # A retry of the day's requests (a re-run of the asset): nothing new is written;
            # the request on the task the day found settled, decided before the day ended, is
            # withdrawn; each task is left with its newest request open.
            selected = defs.resolve_job_def("daily_annotation_job")
            rerun = selected.execute_in_process(
                partition_key=DAY,
                instance=instance,
                run_config=QUIET,
                asset_selection=[AssetKey("kind_task_requests")],
            )
            assert rerun.success
            rows = _rows(dsn)
            assert len(rows) == queue.height + 3
            status = {d: s for d, (_, _, s, _) in rows.items()}
            assert status[older["decision_id"][0]] == "withdrawn"
            assert status[newer["decision_id"][0]] == "open"
            assert status[settled["decision_id"][0]] == "withdrawn"
            day_of_later = [
                d
                for d, (p, t, _, _) in rows.items()
                if (p, t) == (later["project"], later["task_id"]) and d != newer["decision_id"][0]
            ]
            assert [status[d] for d in day_of_later] == ["withdrawn"]
            opened = _open_per_task(dsn)
            assert set(opened.values()) == {1}
            assert len(opened) == queue.height  # every queued task, once
            materialization = rerun.asset_materializations_for_node("kind_task_requests")[0]
            assert "0 new of" in materialization.metadata["annotation_db"].value
            assert "1 withdrawn" in materialization.metadata["annotation_db"].value

            # Again: nothing moves, not even `updated_at`.
            assert selected.execute_in_process(
                partition_key=DAY,
                instance=instance,
                run_config=QUIET,
                asset_selection=[AssetKey("kind_task_requests")],
            ).success
            assert _rows(dsn) == rows


def test_a_day_written_after_a_later_day_only_withdraws_and_asks_nothing(tmp_path, monkeypatch):
    """A backfill (or a retry of a day that failed before writing) whose write comes after the
    next day's: its requests would reopen tasks the later day may have found settled, and no
    row of a settled decision would withdraw them. So it inserts nothing, withdraws the open
    requests of its settled tasks decided before its end, keeps its lake list, and says so."""
    first_day = date.fromisoformat(DAY)
    next_day = (first_day + timedelta(days=1)).isoformat()
    with fresh_database("kind_daily_backfill") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        with local_graph(
            tmp_path,
            judgments=300,
            start=first_day,
            days=2,
            seed=21,
            kinds=True,
            judgments_per_kind=600,
        ) as (defs, instance, data):
            daily = defs.resolve_job_def("daily_annotation_job")
            assert daily.execute_in_process(
                partition_key=next_day, instance=instance, run_config=RUN_CONFIG
            ).success
            later_rows = _rows(dsn)
            assert later_rows

            # Day one's aggregates and queue, without its requests yet (its write failed).
            upstream = [
                key
                for key in daily.asset_layer.selected_asset_keys
                if key != AssetKey("kind_task_requests")
            ]
            assert daily.execute_in_process(
                partition_key=DAY,
                instance=instance,
                run_config=RUN_CONFIG,
                asset_selection=upstream,
            ).success
            lake = data / "lake"
            queue = pl.read_parquet(
                lake / "kind_reannotation_queue" / f"day={DAY}" / "data.parquet"
            )
            labels = pl.read_parquet(
                lake / "kind_aggregated_labels" / f"day={DAY}" / "data.parquet"
            )
            assert queue.height > 0
            # A live request, made during day one, on a task day one found settled.
            done = labels.join(queue, on=["project", "task_id"], how="anti").row(0, named=True)
            settled = _live(done["project"], done["task_id"], DAY_END - timedelta(hours=1))
            write_requests(
                dsn, task_requests=settled, annotator_actions=pl.DataFrame(schema=ANNOTATOR_ACTIONS)
            )

            retry = daily.execute_in_process(
                partition_key=DAY,
                instance=instance,
                run_config=QUIET,
                asset_selection=[AssetKey("kind_task_requests")],
            )
            assert retry.success
            rows = _rows(dsn)
            assert set(rows) == set(later_rows) | {settled["decision_id"][0]}
            assert rows[settled["decision_id"][0]][2] == "withdrawn"
            # The later day's rows are as it left them.
            assert {d: rows[d] for d in later_rows} == later_rows
            listed = json.loads((lake / kind_requests_key(DAY)).read_text())
            assert len(listed) == queue.height
            text = (
                retry.asset_materializations_for_node("kind_task_requests")[0]
                .metadata["annotation_db"]
                .value
            )
            assert text.startswith(f"no new requests: a later day ({next_day})")
            assert "1 withdrawn" in text
            logged = [entry.user_message for entry in instance.all_logs(retry.run_id)]
            assert any(f"a later day ({next_day})" in line for line in logged)


def test_a_day_rebuilt_with_new_evidence_asks_again_where_a_retry_asks_nothing(tmp_path):
    """The day's requests are fulfilled by the tool; the day is rebuilt with one more judgment
    per task and the policy still wants another: a new decision, so one new row per task. A
    retry of either build (the same evidence) writes nothing."""
    from annotation_pipelines.loop.kind_posterior import queue_requests

    day = date.fromisoformat(DAY)

    def queue(n_judgments: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "project": ["spans-a", "spans-a"],
                "task_id": ["t1", "t2"],
                "kind": ["spans", "spans"],
                "decision": ["needs_another_judgment", "escalate"],
                "reason": ["low confidence", "disagreement"],
                "confidence": [0.6, 0.4],
                "n_judgments": [n_judgments, n_judgments],
                "day": [day, day],
            }
        )

    def write(frame: pl.DataFrame) -> dict[str, int]:
        return write_requests(
            dsn,
            task_requests=queue_requests(frame, created_at=DAY_END),
            annotator_actions=pl.DataFrame(schema=ANNOTATOR_ACTIONS),
            settled=pl.DataFrame(schema={"project": pl.String, "task_id": pl.String}),
            decided_at=DAY_END,
        )

    with fresh_database("kind_daily_rebuilt") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        assert write(queue(3))["task_requests"] == 2
        assert write(queue(3))["task_requests"] == 0
        with psycopg.connect(dsn) as connection:
            connection.execute("UPDATE task_requests SET status = 'fulfilled', closed_at = now()")
        fulfilled = _rows(dsn)
        # Rebuilt with a fourth judgment on each task, still wanting more: two new rows, open.
        assert write(queue(4))["task_requests"] == 2
        rows = _rows(dsn)
        assert len(rows) == 4
        assert {d: rows[d] for d in fulfilled} == fulfilled
        assert sorted(s for d, (_, _, s, _) in rows.items() if d not in fulfilled) == [
            "open",
            "open",
        ]
        # Its retry changes nothing, `updated_at` included.
        assert write(queue(4))["task_requests"] == 0
        assert _rows(dsn) == rows
