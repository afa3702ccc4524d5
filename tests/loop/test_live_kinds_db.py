"""The annotation DB's judgments and gold of the other kinds (migration 9: `kind`, `answer`) in
the live layer, against a real PostgreSQL DB and a real Dagster materialization of
`live_quality_state`: numeric and spans rows reach their kind states (never the categorical
one), the same rows read again count once, an UPDATE replaces its judgment, a DELETE withdraws
it (and a deleted kind gold label leaves), a tombstone of a row never read is unknown, and the
project's categorical state is not touched by any of it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live import STREAM_PREFIX, load_state
from annotation_pipelines.loop.live_kinds import load_kind_state
from assets.definitions import build_definitions
from tests.loop.test_live_writeback import QUIET
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
PROJECT = "mixed"
WHEN = datetime(2026, 11, 2, 10, tzinfo=UTC)
INSERT = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, kind, answer, "
    "submitted_at, duration_s) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, 2.0)"
)
GOLD = "INSERT INTO gold_labels (task_id, project, label, kind, answer) VALUES (%s, %s, %s, %s, %s)"
RATERS = ("a0", "a1", "a2")


def _run(dsn: str, *statements: tuple[str, tuple]) -> None:
    """The statements in one committed transaction; a few ms apart from the next one's stamp."""
    with psycopg.connect(dsn) as connection:
        for statement, parameters in statements:
            connection.execute(statement, parameters)
    time.sleep(0.01)


def _judgment(
    judgment_id: str, task: str, annotator: str, kind: str | None, answer: object
) -> tuple[str, tuple]:
    if kind is None:
        return INSERT, (judgment_id, task, PROJECT, annotator, answer, None, None, WHEN)
    text = json.dumps(answer)
    return INSERT, (judgment_id, task, PROJECT, annotator, None, kind, text, WHEN)


def _span(start: int, end: int) -> list[dict[str, object]]:
    return [{"start": start, "end": end, "label": "PER"}]


def test_db_kind_rows_reach_their_kind_states_once_and_leave_when_deleted(tmp_path, monkeypatch):
    data = tmp_path / "data"
    lake = data / "lake"
    read = lake_reader(lake)
    with fresh_database("live_kinds_db") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            # Categorical: three tasks of three votes.
            *(
                _judgment(f"c{t}-{a}", f"c{t}", rater, None, ("pos", "neg")[t % 2])
                for t in range(3)
                for a, rater in enumerate(RATERS)
            ),
            # Numeric: four tasks of three votes, and one whose votes disagree (the policy
            # asks for another).
            *(
                _judgment(f"n{t}-{a}", f"n{t}", rater, "numeric", 3 + t + a % 2)
                for t in range(4)
                for a, rater in enumerate(RATERS)
            ),
            *(_judgment(f"n9-{a}", "n9", r, "numeric", 1 + 4 * a) for a, r in enumerate(RATERS)),
            # Spans: four tasks of three votes.
            *(
                _judgment(f"s{t}-{a}", f"s{t}", rater, "spans", _span(0, 4 + (a == 2)))
                for t in range(4)
                for a, rater in enumerate(RATERS)
            ),
            (GOLD, ("n0", PROJECT, None, "numeric", json.dumps(3))),
            (GOLD, ("c0", PROJECT, "pos", None, None)),
        )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)

        def run() -> dict[str, object]:
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return first_metadata(result)

        first = run()
        assert first["kind_db_judgments"] == 27 and first["kind_new_judgments"] == 27
        assert first["new_judgments"] == 9  # the categorical rows only
        numeric = load_kind_state(PROJECT, "numeric", read)
        spans = load_kind_state(PROJECT, "spans", read)
        categorical = load_state(PROJECT, read)
        assert numeric.ledger.height == 15 and spans.ledger.height == 12
        assert numeric.ledger["source"].is_null().all() and spans.ledger["source"].is_null().all()
        assert sorted(categorical.ledger["task_id"].unique()) == ["c0", "c1", "c2"]
        assert numeric.gold["task_id"].to_list() == ["n0"]
        assert numeric.gold["gold_sources"].is_null().all()
        assert categorical.tasks.filter(pl.col("task_id") == "c0")["gold"].item() == "pos"
        assert numeric.annotators["n_gold"].sum() == 3
        # The kind states' requests are written back as the file-fed ones are.
        with psycopg.connect(dsn) as connection:
            asked = connection.execute(
                "SELECT request, reason FROM task_requests WHERE task_id = 'n9'"
            ).fetchall()
        assert [(r, reason.split(":")[0]) for r, reason in asked] == [
            ("another_judgment", "numeric")
        ]

        # The stream forgets what it read at the end of its window: the next run reads the
        # same rows again (the overlap), and counts none of them twice.
        (lake / STREAM_PREFIX / "seen.parquet").unlink()
        again = run()
        assert again["kind_db_judgments"] == 27 and again["kind_new_judgments"] == 0
        assert load_kind_state(PROJECT, "numeric", read).version == numeric.version
        assert load_kind_state(PROJECT, "spans", read).version == spans.version
        assert load_state(PROJECT, read).version == categorical.version

        # An UPDATE of a numeric answer replaces that judgment (the trigger stamps it anew).
        _run(dsn, ("UPDATE judgments SET answer = '9'::jsonb WHERE judgment_id = 'n1-0'", ()))
        edited = run()
        assert edited["kind_new_judgments"] == 1 and edited["new_judgments"] == 0
        numeric = load_kind_state(PROJECT, "numeric", read)
        assert numeric.ledger.height == 15
        assert numeric.ledger.filter(pl.col("judgment_id") == "n1-0")["value"].item() == 9.0
        assert numeric.tasks.filter(pl.col("task_id") == "n1")["n_votes"].item() == 3

        # DELETEs: a spans judgment, the numeric gold, and a row inserted and deleted before
        # any run read it (its tombstone is of nothing held).
        _run(dsn, ("DELETE FROM judgments WHERE judgment_id = 's1-1'", ()))
        _run(dsn, ("DELETE FROM gold_labels WHERE task_id = 'n0'", ()))
        _run(dsn, _judgment("brief", "s2", "a9", "spans", _span(0, 1)))
        _run(dsn, ("DELETE FROM judgments WHERE judgment_id = 'brief'", ()))
        deleted = run()
        assert deleted["deletions_read"] == 3 and deleted["deletions_unknown"] == 1
        assert deleted["kind_withdrawn_judgments"] == 1 and deleted["kind_withdrawn_gold"] == 1
        assert deleted["withdrawn_judgments"] == 0 and deleted["withdrawn_gold"] == 0
        spans = load_kind_state(PROJECT, "spans", read)
        assert "s1-1" not in spans.ledger["judgment_id"].to_list()
        assert spans.tasks.filter(pl.col("task_id") == "s1")["n_votes"].item() == 2
        assert spans.annotators.filter(pl.col("annotator_id") == "a1")["n_judgments"].item() == 3
        numeric = load_kind_state(PROJECT, "numeric", read)
        assert numeric.gold.height == 0 and numeric.annotators["n_gold"].sum() == 0
        # The categorical state of the project saw none of it.
        after = load_state(PROJECT, read)
        assert after.version == categorical.version
        assert after.ledger.sort("judgment_id").equals(categorical.ledger.sort("judgment_id"))
        assert after.tasks.filter(pl.col("task_id") == "c0")["gold"].item() == "pos"

        # The tombstones read again withdraw nothing twice.
        (lake / STREAM_PREFIX / "seen.parquet").unlink()
        last = run()
        assert last["kind_withdrawn_judgments"] == 0 and last["kind_withdrawn_gold"] == 0
        assert last["kind_new_judgments"] == 0
        assert load_kind_state(PROJECT, "spans", read).version == spans.version

        # A re-base day asks every kind state for a full fit; the kind fit job fits the states
        # holding DB rows whole and keeps what the DB deleted out.
        rebase = {"ops": {"live_quality_state": {"config": {"kind_rebase_days": ["2026-11-02"]}}}}
        asked = job.execute_in_process(instance=instance, run_config={**rebase, **QUIET})
        assert asked.success
        fit_job = build_definitions(profile="local").resolve_job_def("live_kind_fit_job")
        assert fit_job.execute_in_process(instance=instance, run_config=QUIET).success
        for kind, before in (("spans", spans), ("numeric", numeric)):
            fitted = load_kind_state(PROJECT, kind, read)
            assert fitted.fitted_version == fitted.version > before.version
            assert not fitted.fit_requested
            assert fitted.ledger.sort("judgment_id").equals(before.ledger.sort("judgment_id"))
        fitted = load_kind_state(PROJECT, "spans", read)
        assert fitted.tasks.filter(pl.col("task_id") == "s1")["n_votes"].item() == 2
        assert load_state(PROJECT, read).version == categorical.version


def test_a_judgment_whose_kind_changed_leaves_the_old_kind_at_once(tmp_path, monkeypatch):
    """A `judgment_id` whose kind the DB changed (categorical → numeric) leaves the categorical
    state in the run that folds the new version, as the daily layers take the new version;
    gold whose kind changed too. A later deletion withdraws it from the numeric state, the only
    one holding it, and is not counted unknown."""
    data = tmp_path / "data"
    read = lake_reader(data / "lake")
    with fresh_database("live_kind_change") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)

        def run() -> dict[str, object]:
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return first_metadata(result)

        _run(
            dsn,
            *(_judgment(f"c{t}-{a}", f"c{t}", a, None, "pos") for t in range(3) for a in RATERS),
            *(
                _judgment(f"n{t}-{a}", f"n{t}", a, "numeric", 3 + t)
                for t in range(3)
                for a in RATERS
            ),
            (GOLD, ("c0", PROJECT, "pos", None, None)),
        )
        run()
        _run(
            dsn,
            (
                "UPDATE judgments SET kind = 'numeric', label = NULL, answer = '7', task_id = 'n2' "
                "WHERE judgment_id = 'c0-a0'",
                (),
            ),
            (
                "UPDATE gold_labels SET kind = 'numeric', label = NULL, answer = '4' "
                "WHERE task_id = 'c0'",
                (),
            ),
        )
        changed = run()
        assert changed["moved_judgments"] == 1 and changed["moved_gold"] == 1
        categorical = load_state(PROJECT, read)
        assert "c0-a0" not in categorical.ledger["judgment_id"].to_list()
        assert categorical.tasks.filter(pl.col("task_id") == "c0")["gold"].to_list() == [None]
        numeric = load_kind_state(PROJECT, "numeric", read)
        assert "c0-a0" in numeric.ledger["judgment_id"]
        assert "c0" in numeric.gold["task_id"].to_list()
        _run(
            dsn,
            ("DELETE FROM judgments WHERE judgment_id = 'c0-a0'", ()),
            ("DELETE FROM gold_labels WHERE task_id = 'c0'", ()),
        )
        metadata = run()
        assert metadata["deletions_read"] == 2 and metadata["deletions_unknown"] == 0
        categorical = load_state(PROJECT, read)
        numeric = load_kind_state(PROJECT, "numeric", read)
        assert "c0-a0" not in categorical.ledger["judgment_id"].to_list()
        assert "c0-a0" not in numeric.ledger["judgment_id"].to_list()
        assert categorical.tasks.filter(pl.col("task_id") == "c0")["gold"].item() is None
        assert "c0" not in numeric.gold["task_id"].to_list()
        # Read again in a later run's overlap, they withdraw nothing more and are not unknown
        # twice over.
        _run(dsn, _judgment("later", "c1", "a9", None, "pos"))
        assert run()["withdrawn_judgments"] == 0
