"""The live asset with a spans project: an export dropped in the landing zone reaches the kind's
live state through a real sensor tick and run (real Dagster instance, real PostgreSQL
annotation DB), its requests are written once, a killed run repeats nothing, and an edited file
withdraws the judgments it lost."""

from __future__ import annotations

import json
import shutil

import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live_kinds import load_kind_state
from tests.loop.test_live_kinds import _synthetic
from tests.loop.test_live_writeback import QUIET, _launch, _rows, _tick
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job, retried_after_the_db_write

pytestmark = pytest.mark.services
PROJECT = "entities"


def _export(path, frame: pl.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.select(
        "judgment_id", "task_id", "annotator_id", "kind", "spans", "submitted_at", "duration_s"
    ).write_parquet(path)


def test_a_spans_export_reaches_the_live_state_once_and_an_edit_withdraws(tmp_path, monkeypatch):
    rows, _, spammer = _synthetic("spans", 200)
    exports = tmp_path / "data" / "landing" / "exports" / PROJECT / "parquet"
    lake = tmp_path / "data" / "lake"

    def state():
        return load_kind_state(
            PROJECT,
            "spans",
            lake_reader(lake),
        )

    with fresh_database("live_kinds") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _export(exports / "batch-1.parquet", rows)
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")

        # The file arrives through one sensor tick and one run.
        snapshot = tmp_path / "lake-before"
        shutil.copytree(lake, snapshot) if lake.exists() else snapshot.mkdir()
        tick = _tick(defs, instance)
        assert len(tick.run_requests) == 1
        first = first_metadata(_launch(job, instance, tick)[0])
        folded = state()
        assert folded.ledger.height == rows.height
        assert set(folded.ledger["judgment_id"]) == set(rows["judgment_id"])
        assert folded.tasks.height == rows["task_id"].n_unique()
        assert first["kind_new_judgments"] == rows.height
        requests = _rows(dsn, "task_requests")
        assert requests and first["task_requests_written"] == len(requests)
        with psycopg.connect(dsn) as connection:
            reason, posterior = connection.execute(
                "SELECT reason, posterior FROM task_requests LIMIT 1"
            ).fetchone()
        assert reason.startswith("spans: ") and posterior["kind"] == "spans"
        # The spammer is blocked once, with a bound, after the minimum of judgments.
        blocks = _rows(dsn, "annotator_actions")
        assert len(blocks) == 1
        assert folded.annotators.filter(pl.col("blocked"))["annotator_id"].to_list() == [spammer]
        # No categorical state for a spans project; the Label Studio list sits beside the state.
        assert not (lake / "live" / PROJECT / "state.json").exists()
        listed = json.loads(
            (lake / "live" / PROJECT / "kinds" / "spans" / "requests.json").read_text()
        )
        assert {item["data"]["task_id"] for item in listed} <= set(rows["task_id"])
        index = json.loads((lake / "live" / "_stream" / "kinds.json").read_text())
        assert index == {PROJECT: ["spans"]}

        # A run killed after writing to the DB and before its lake commit: the next run reads
        # the same file again, folds the same judgments once, and writes no decision twice.
        after_first = tmp_path / "lake-after"
        shutil.copytree(lake, after_first)
        shutil.rmtree(lake)
        shutil.copytree(snapshot, lake)
        retried = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert retried["kind_new_judgments"] == rows.height
        assert retried["task_requests_written"] == 0 and retried["blocks_written"] == 0
        assert _rows(dsn, "task_requests") == requests
        # The same judgments, stamped with the retry's read time.
        assert (
            state()
            .ledger.drop("updated_at")
            .sort("judgment_id")
            .equals(folded.ledger.drop("updated_at").sort("judgment_id"))
        )
        assert state().tasks.sort("task_id").equals(folded.tasks.sort("task_id"))

        # Nothing new: the sensor skips; a run anyway folds nothing and moves no state.
        assert not _tick(defs, instance, tick.cursor).run_requests
        again = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert again["kind_new_judgments"] == 0 and again["task_requests_written"] == 0
        assert state().version == folded.version

        # An edited file without 30 of its judgments: withdrawn, their tasks refitted, and its
        # unchanged rows are no new judgments.
        dropped = rows.head(30)
        _export(exports / "batch-1.parquet", rows.slice(30))
        tick = _tick(defs, instance, tick.cursor)
        edited_run = first_metadata(_launch(job, instance, tick)[0])
        assert edited_run["kind_withdrawn_judgments"] == 30
        assert edited_run["kind_new_judgments"] == 0
        edited = state()
        assert edited.ledger.height == rows.height - 30
        assert not edited.ledger["judgment_id"].is_in(dropped["judgment_id"].implode()).any()
        flagged = int(edited.ledger["flagged"].sum())
        assert int(edited.tasks["n_votes"].sum()) + flagged == rows.height - 30
        kept = edited.annotators["n_judgments"].sum()
        assert kept == rows.height - 30
        assert len(_rows(dsn, "annotator_actions")) == 1

        # Another edit drops every judgment of two requested tasks: their requests are
        # withdrawn in the DB, and what it holds open is what the kind's list holds, each
        # listed id a row the tool can acknowledge.
        def listed() -> dict[str, str]:
            items = json.loads(
                (lake / "live" / PROJECT / "kinds" / "spans" / "requests.json").read_text()
            )
            return {item["data"]["decision_id"]: item["data"]["task_id"] for item in items}

        def statuses() -> dict[str, str]:
            with psycopg.connect(dsn) as connection:
                query = "SELECT decision_id, status FROM task_requests"
                return dict(connection.execute(query).fetchall())

        asked = listed()
        gone = sorted(set(asked.values()))[:2]
        _export(exports / "batch-1.parquet", rows.slice(30).filter(~pl.col("task_id").is_in(gone)))
        tick = _tick(defs, instance, tick.cursor)
        _launch(job, instance, tick)
        after = statuses()
        assert {after[d] for d, task in asked.items() if task in gone} == {"withdrawn"}
        assert set(listed()) == {d for d, status in after.items() if status == "open"}


def test_a_mixed_export_feeds_both_engines_and_an_edit_can_drop_a_whole_kind(tmp_path, monkeypatch):
    from annotation_pipelines.loop.live import load_state

    ratings, _, _ = _synthetic("numeric", 40)
    ratings = ratings.with_columns(project=pl.lit("mixed"))
    labels = pl.DataFrame(
        {
            "judgment_id": [f"c{i}" for i in range(30)],
            "task_id": [f"q{i // 3}" for i in range(30)],
            "annotator_id": [f"a{i % 3}" for i in range(30)],
            "kind": ["categorical"] * 30,
            "label": ["yes" if i % 4 else "no" for i in range(30)],
            "submitted_at": ratings["submitted_at"].head(30),
            "duration_s": [5.0] * 30,
        }
    )
    columns = ["judgment_id", "task_id", "annotator_id", "kind", "submitted_at", "duration_s"]
    both = pl.concat(
        [labels.select(*columns, "label"), ratings.select(*columns, "value")], how="diagonal"
    )
    path = tmp_path / "data" / "landing" / "exports" / "mixed" / "parquet" / "day.parquet"
    path.parent.mkdir(parents=True)
    both.write_parquet(path)
    lake = tmp_path / "data" / "lake"

    read = lake_reader(lake)

    with fresh_database("live_kinds_mixed") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        tick = _tick(defs, instance)
        first = first_metadata(_launch(job, instance, tick)[0])
        assert first["new_judgments"] == 30 and first["kind_new_judgments"] == ratings.height
        assert load_state("mixed", read).ledger.height == 30
        assert load_kind_state("mixed", "numeric", read).ledger.height == ratings.height
        record = json.loads(read("live/_stream/files.json") or b"{}")
        assert record["exports/mixed/parquet/day.parquet"]["kinds"] == "categorical,numeric"

        # The file edited to hold only its categorical rows: every rating is withdrawn, and
        # the categorical judgments are neither new nor withdrawn.
        labels.select(*columns, "label").write_parquet(path)
        tick = _tick(defs, instance, tick.cursor)
        edited = first_metadata(_launch(job, instance, tick)[0])
        assert edited["kind_withdrawn_judgments"] == ratings.height
        assert edited["withdrawn_judgments"] == 0 and edited["new_judgments"] == 0
        numeric = load_kind_state("mixed", "numeric", read)
        assert numeric.ledger.height == 0 and numeric.tasks.height == 0
        assert load_state("mixed", read).ledger.height == 30


def _due_state(lake, options, kind: str = "text") -> str:
    """A `kind` state committed to `lake` over five live versions, its full fit due by the
    growth rule of `options`; its project."""
    from annotation_pipelines.loop.live_kinds import (
        KindState,
        kind_state_objects,
        kinds_index_object,
        update_kind,
    )

    rows, gold, _ = _synthetic(kind, 200)
    project = str(rows["project"][0])
    state = KindState(project=project, kind=kind)
    for start in range(0, 500, 100):
        state, _ = update_kind(state, rows.slice(start, 100), gold, options)
        writes, deletes = kind_state_objects(state, lake.get_if_exists)
        lake.commit({**writes, **kinds_index_object({project: [kind]})}, deletes=deletes)
    return project


def test_a_due_kind_fit_is_launched_once_and_adopted_by_the_kind_fit_job(tmp_path, monkeypatch):
    """States the live runs left with a full fit due (the growth rule): the sensor asks for the
    kind fit job once per due set, not while one is on its way; the job fits them whole under
    the live lock, writes its decisions once, and leaves the ledger as it was."""
    from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context

    from annotation_pipelines.loop.live_kinds import KindLiveOptions, due_full_fits
    from assets.definitions import build_definitions
    from assets.live.sensors import kind_fit_request
    from resources.lake import LocalLake

    lake = LocalLake(base_path=str(tmp_path / "data" / "lake"))
    read = lake_reader(tmp_path / "data" / "lake")
    options = KindLiveOptions(full_fit_every=3, full_fit_growth=0.2, inline_full_fits=False)
    project = _due_state(lake, options)
    before = load_kind_state(project, "text", read)
    assert before.fitted_version == 1 and before.version == 5
    assert due_full_fits(read, options) == {f"{project}/text": 5}
    with fresh_database("live_kind_fit") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
        instance = DagsterInstance.ephemeral()
        job = build_definitions(profile="local").resolve_job_def("live_kind_fit_job")
        with build_sensor_context(instance=instance) as context:
            request = kind_fit_request(context, lake, options=options)
            again = kind_fit_request(context, lake, options=options)
        assert request is not None and request.job_name == "live_kind_fit_job"
        assert again is not None and again.run_key == request.run_key
        config = {**request.run_config, **QUIET}
        # One on its way: no second request.
        queued = instance.create_run_for_job(
            job_def=job, run_config=config, status=DagsterRunStatus.NOT_STARTED
        )
        with build_sensor_context(instance=instance) as context:
            assert kind_fit_request(context, lake, options=options) is None
        instance.delete_run(queued.run_id)
        assert job.execute_in_process(instance=instance, run_config=config).success
        with build_sensor_context(instance=instance) as context:
            assert kind_fit_request(context, lake, options=options) is None
        requests = _rows(dsn, "task_requests")
        # A second run finds nothing due and writes nothing.
        assert job.execute_in_process(instance=instance, run_config=config).success
        assert _rows(dsn, "task_requests") == requests
    after = load_kind_state(project, "text", read)
    assert due_full_fits(read, options) == {}
    assert after.version == 6 and after.fitted_version == 6 and after.folded_since_fit == 0
    assert after.fitted_judgments == int((~before.ledger["flagged"]).sum())
    assert after.ledger.sort("judgment_id").equals(before.ledger.sort("judgment_id"))
    assert set(after.tasks["task_id"]) >= set(before.ledger.filter(~pl.col("flagged"))["task_id"])
    listed = json.loads(
        (tmp_path / "data" / "lake" / f"live/{project}/kinds/text/requests.json").read_text()
    )
    assert {item["data"]["task_id"] for item in listed} <= set(after.tasks["task_id"])


def test_a_kind_fit_retried_after_its_db_write_lists_the_requests_with_the_db_s_created_at(
    tmp_path, monkeypatch
):
    """A kind fit run that wrote its decisions to the DB and failed before its lake commit is
    retried on the same version: its inserts conflict and keep the first attempt's
    `created_at`, which the retry's request list then carries too, as a live run's does."""
    from dagster import DagsterInstance

    from annotation_pipelines.loop.live_kinds import KindLiveOptions, kind_prefix
    from assets.definitions import build_definitions
    from assets.live.sensors import _fit_config
    from resources.lake import LocalLake

    data = tmp_path / "data"
    lake = LocalLake(base_path=str(data / "lake"))
    options = KindLiveOptions(full_fit_every=3, full_fit_growth=0.2, inline_full_fits=False)
    # A multilabel fit changes some answers, so the fit decides requests of its own.
    project = _due_state(lake, options, "multilabel")
    fit = _fit_config([f"{project}/multilabel"], options).model_dump()
    config = {"ops": {"fit_kind_states": {"config": fit}}, **QUIET}
    with fresh_database("live_kind_fit_retry") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
        instance = DagsterInstance.ephemeral()
        job = build_definitions(profile="local").resolve_job_def("live_kind_fit_job")
        stamped = retried_after_the_db_write(
            data,
            dsn,
            lambda: job.execute_in_process(instance=instance, run_config=config).success,
            scratch=tmp_path / "before",
        )
        listed = pl.read_parquet(
            data / "lake" / kind_prefix(project, "multilabel") / "requests.parquet"
        )
    # The live versions before the fit wrote no DB: only the fit's own decisions are in both.
    times = dict(listed.select("decision_id", "created_at").iter_rows())
    assert {d: times.get(d) for d in stamped} == stamped


def test_a_daily_request_is_withdrawn_when_new_evidence_settles_its_task_live(
    tmp_path, monkeypatch
):
    """The live layer and the daily kind queue write to one table: a daily request on a task
    that new judgments leave settled is withdrawn by the live run, though no live list held it;
    a daily decision newer than a live one replaces it."""
    from datetime import UTC, datetime, timedelta

    from annotation_pipelines.loop.live import ANNOTATOR_ACTIONS, TASK_REQUESTS
    from annotation_pipelines.loop.writeback import write_requests

    rows, _, spammer = _synthetic("spans", 200)
    exports = tmp_path / "data" / "landing" / "exports" / PROJECT / "parquet"
    lake = tmp_path / "data" / "lake"

    def daily(task: str, decision: str, at: datetime) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "task_id": [task],
                "project": [PROJECT],
                "request": ["another_judgment"],
                "reason": ["spans: 2 vote(s) < min_votes 3"],
                "confidence": [0.5],
                "posterior": ['{"confidence": 0.5, "n_judgments": 2}'],
                "decision_id": [decision],
                "created_at": [at],
            },
            schema=TASK_REQUESTS,
        )

    def statuses(dsn: str) -> dict[str, tuple[str, str]]:
        with psycopg.connect(dsn) as connection:
            query = "SELECT decision_id, task_id, status FROM task_requests"
            return {d: (t, s) for d, t, s in connection.execute(query).fetchall()}

    with fresh_database("live_kinds_daily") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _export(exports / "batch-1.parquet", rows)
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        state = load_kind_state(PROJECT, "spans", lake_reader(lake))
        live = statuses(dsn)
        asked = {task for task, _ in live.values()}
        # The task the live layer is surest of, among those it asks nothing about.
        good = rows.filter(pl.col("annotator_id") != spammer)
        sure = state.tasks.filter(~pl.col("task_id").is_in(sorted(asked))).sort("confidence")
        task = sure["task_id"][-1]
        replaced_task = sorted(asked)[0]
        replaced = next(d for d, (t, _) in live.items() if t == replaced_task)
        # The daily run asked another vote on both: on `task` before the live run decided it,
        # on `replaced_task` after (its decision is the newer and stands).
        now = datetime.now(UTC)
        none = pl.DataFrame(schema=ANNOTATOR_ACTIONS)
        write_requests(
            dsn,
            task_requests=daily(task, "daily-old", now - timedelta(days=1)),
            annotator_actions=none,
        )
        written = write_requests(
            dsn,
            task_requests=daily(replaced_task, "daily-new", now + timedelta(minutes=1)),
            annotator_actions=none,
        )
        assert written["withdrawn"] == 1
        assert statuses(dsn)[replaced] == (replaced_task, "withdrawn")

        # New evidence on `task`: two more good annotators give its consensus; the live run
        # still wants nothing of it, and withdraws the daily request.
        theirs = rows.filter(pl.col("task_id") == task)
        others = [
            a for a in good["annotator_id"].unique().sort() if a not in theirs["annotator_id"]
        ]
        consensus = theirs.filter(pl.col("annotator_id") != spammer).head(1)
        more = pl.concat(
            [
                consensus.with_columns(
                    judgment_id=pl.lit(f"more-{i}"),
                    annotator_id=pl.lit(others[i]),
                    submitted_at=pl.col("submitted_at") + pl.duration(hours=1 + i),
                )
                for i in range(2)
            ]
        )
        _export(exports / "batch-2.parquet", more)
        result = job.execute_in_process(instance=instance, run_config=QUIET)
        assert result.success
        after = statuses(dsn)
        assert after["daily-old"] == (task, "withdrawn")
        assert not [d for d, (t, s) in after.items() if t == task and s == "open"]
        assert after["daily-new"] == (replaced_task, "open")
        assert first_metadata(result)["task_requests_withdrawn"] >= 1


def test_a_kinds_retry_that_decides_otherwise_leaves_open_only_what_it_lists(tmp_path, monkeypatch):
    """A spans run writes its requests and its block of the spammer, then loses its lake
    commit; before the retry the export is replaced by one without two requested tasks and
    without the spammer. The retry, on the same kind state version, decides neither: their
    requests and the block are withdrawn, and the DB's open rows are the kind's list."""
    rows, _, spammer = _synthetic("spans", 200)
    exports = tmp_path / "data" / "landing" / "exports" / PROJECT / "parquet"
    lake = tmp_path / "data" / "lake"
    prefix = f"live/{PROJECT}/kinds/spans"

    def listed() -> dict[str, str]:
        items = json.loads((lake / prefix / "requests.json").read_text())
        return {item["data"]["decision_id"]: item["data"]["task_id"] for item in items}

    with fresh_database("live_kinds_retry") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _export(exports / "batch-1.parquet", rows)
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        gone: dict[str, str] = {}
        runs = []

        def run() -> bool:
            runs.append(job.execute_in_process(instance=instance, run_config=QUIET))
            return runs[-1].success

        def drop() -> None:
            # The first attempt's lake is gone: its requests are the DB's.
            with psycopg.connect(dsn) as connection:
                asked = connection.execute(
                    "SELECT decision_id, task_id FROM task_requests ORDER BY task_id LIMIT 2"
                ).fetchall()
            gone.update(asked)
            kept = rows.filter(
                ~pl.col("task_id").is_in(list(gone.values())) & (pl.col("annotator_id") != spammer)
            )
            _export(exports / "batch-1.parquet", kept)

        retried_after_the_db_write(
            tmp_path / "data" / "lake",
            dsn,
            run,
            scratch=tmp_path / "before",
            between=drop,
        )
        with psycopg.connect(dsn) as connection:
            requests = {
                d: (status, by)
                for d, status, by in connection.execute(
                    "SELECT decision_id, status, withdrawn_state FROM task_requests"
                ).fetchall()
            }
            blocks = connection.execute(
                "SELECT annotator_id, status, withdrawn_at IS NOT NULL FROM annotator_actions"
            ).fetchall()
        assert {requests[d] for d in gone} == {("withdrawn", prefix)}
        assert set(listed()) == {d for d, (status, _) in requests.items() if status == "open"}
        assert not set(listed().values()) & set(gone.values())
        assert blocks == [(spammer, "withdrawn", True)]
        retry = first_metadata(runs[-1])
        assert retry["blocks_withdrawn"] == 1
        assert retry["task_requests_withdrawn"] >= len(gone)
        state = load_kind_state(PROJECT, "spans", lake_reader(lake))
        assert not state.annotators["blocked"].any()


def test_a_kind_fit_retried_with_other_settings_leaves_open_only_what_it_lists(
    tmp_path, monkeypatch
):
    """The kind fit job writes its decisions and loses its lake commit; its retry, on the same
    state version, decides otherwise (here: a lower vote cap turns requests for another
    judgment into expert reviews). The first attempt's requests the retry does not decide are
    withdrawn, and the DB's open rows are the kind's list."""
    from dagster import DagsterInstance

    from annotation_pipelines.loop.live_kinds import KindLiveOptions, kind_prefix
    from assets.definitions import build_definitions
    from assets.live.sensors import _fit_config
    from resources.lake import LocalLake

    data = tmp_path / "data"
    lake = LocalLake(base_path=str(data / "lake"))
    options = KindLiveOptions(full_fit_every=3, full_fit_growth=0.2, inline_full_fits=False)
    project = _due_state(lake, options, "multilabel")
    prefix = kind_prefix(project, "multilabel")
    configs = [
        {"ops": {"fit_kind_states": {"config": fit.model_dump()}}, **QUIET}
        for fit in (
            _fit_config([f"{project}/multilabel"], options),
            _fit_config([f"{project}/multilabel"], options).model_copy(
                update={"max_votes": 3, "min_votes": 2}
            ),
        )
    ]
    with fresh_database("live_kind_fit_otherwise") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
        instance = DagsterInstance.ephemeral()
        job = build_definitions(profile="local").resolve_job_def("live_kind_fit_job")

        def run() -> bool:
            config = configs.pop(0)
            return job.execute_in_process(instance=instance, run_config=config).success

        first = retried_after_the_db_write(data, dsn, run, scratch=tmp_path / "before")
        with psycopg.connect(dsn) as connection:
            rows = dict(
                connection.execute("SELECT decision_id, status FROM task_requests").fetchall()
            )
    items = json.loads((data / "lake" / prefix / "requests.json").read_text())
    listed = {item["data"]["decision_id"] for item in items}
    # The live versions before the fit wrote no DB (`_due_state`): of the listed ids, those the
    # DB holds are open, and nothing else is.
    assert listed & set(rows) == {d for d, status in rows.items() if status == "open"}
    stale = set(first) - listed
    assert stale and {rows[d] for d in stale} == {"withdrawn"}
    assert (listed & set(rows)) - set(first)  # the retry's own decisions
