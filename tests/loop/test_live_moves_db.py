"""A judgment the annotation tool moves to another project (`UPDATE judgments SET project = ...`,
a mis-filed task re-filed), against a real PostgreSQL DB and the live job: the DB keys a
judgment by its id alone, so its newest version wins across projects. The project that held it
withdraws it as it withdraws a deleted one (its task leaves when no vote is left, its open
request is withdrawn, its annotators' counts drop), the receiving project counts it once, a
later deletion withdraws it from the receiving project, and a move back returns it. The same
holds in a kind (numeric) state."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import polars as pl
import psycopg
import pytest
from dagster import AssetKey

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live import load_projects, load_state
from annotation_pipelines.loop.live_kinds import load_kind_state, load_kinds_index
from tests.loop.test_live_writeback import QUIET
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
WHEN = datetime(2026, 11, 2, 10, tzinfo=UTC)
INSERT = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, kind, answer, "
    "submitted_at, duration_s) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, 2.0)"
)
RATERS = ("w0", "w1", "w2")


def _run(dsn: str, *statements: tuple[str, tuple]) -> None:
    """The statements in one committed transaction; a few ms apart from the next one's stamp."""
    with psycopg.connect(dsn) as connection:
        for statement, parameters in statements:
            connection.execute(statement, parameters)
    time.sleep(0.01)


def _vote(judgment_id: str, task: str, project: str, annotator: str, label: str):
    return INSERT, (judgment_id, task, project, annotator, label, None, None, WHEN)


def _number(judgment_id: str, task: str, project: str, annotator: str, value: float):
    return INSERT, (judgment_id, task, project, annotator, None, "numeric", json.dumps(value), WHEN)


def _requests(dsn: str, task: str) -> dict[str, str]:
    """project → the status of its newest request for `task`."""
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT project, status FROM task_requests WHERE task_id = %s ORDER BY created_at",
            (task,),
        ).fetchall()
    return dict(rows)


def _votes(state) -> dict[str, int]:
    return dict(state.tasks.select("task_id", "n_votes").iter_rows())


def _counts(state) -> dict[str, int]:
    return dict(state.annotators.select("annotator_id", "n_judgments").iter_rows())


def test_a_judgment_moved_to_another_project_counts_once_there(tmp_path, monkeypatch):
    data = tmp_path / "data"
    read = lake_reader(data / "lake")
    with fresh_database("live_moves") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        # A: three tasks of two agreeing votes and one dissent (the policy asks for another
        # judgment of each); B: a task of its own, so both states are stored.
        _run(
            dsn,
            *(
                _vote(f"j{t}{a}", f"t{t}", "A", rater, "pos" if a < 2 else "neg")
                for t in range(3)
                for a, rater in enumerate(RATERS)
            ),
            *(_vote(f"b{a}", "b0", "B", rater, "neg") for a, rater in enumerate(RATERS)),
        )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)

        def run() -> dict[str, object]:
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return first_metadata(result)

        run()
        assert _votes(load_state("A", read)) == {"t0": 3, "t1": 3, "t2": 3}
        assert _requests(dsn, "t0") == {"A": "open"}

        # The tool re-files t0 under B (updated_at left to the trigger), while A gets a new
        # vote elsewhere: A is loaded for its own batch and for what it lost.
        _run(dsn, ("UPDATE judgments SET project = 'B' WHERE task_id = 't0'", ()))
        _run(dsn, _vote("j33", "t3", "A", "w0", "pos"))
        moved = run()
        a, b = load_state("A", read), load_state("B", read)
        assert _votes(a) == {"t1": 3, "t2": 3, "t3": 1}
        assert _votes(b) == {"b0": 3, "t0": 3}
        assert not a.ledger["judgment_id"].is_in(["j00", "j01", "j02"]).any()
        assert _counts(a) == {"w0": 3, "w1": 2, "w2": 2}
        assert _counts(b) == {"w0": 2, "w1": 2, "w2": 2}
        assert _requests(dsn, "t0") == {"A": "withdrawn", "B": "open"}
        assert moved["moved_judgments"] == 3

        # Read again in the overlap: nothing moves twice.
        again = run()
        assert again["moved_judgments"] == 0 and again["withdrawn_judgments"] == 0
        assert _votes(load_state("A", read)) == {"t1": 3, "t2": 3, "t3": 1}

        # A deletion now carries B, which holds it: withdrawn there, A untouched.
        _run(dsn, ("DELETE FROM judgments WHERE judgment_id = 'j00'", ()))
        deleted = run()
        assert deleted["withdrawn_judgments"] == 1 and deleted["deletions_unknown"] == 0
        a, b = load_state("A", read), load_state("B", read)
        assert _votes(b) == {"b0": 3, "t0": 2}
        assert _counts(b)["w0"] == 1
        assert _votes(a) == {"t1": 3, "t2": 3, "t3": 1}

        # Moved back: B loses the two left, A holds them again.
        _run(dsn, ("UPDATE judgments SET project = 'A' WHERE task_id = 't0'", ()))
        back = run()
        assert back["moved_judgments"] == 2
        a, b = load_state("A", read), load_state("B", read)
        assert _votes(a) == {"t0": 2, "t1": 3, "t2": 3, "t3": 1}
        assert _votes(b) == {"b0": 3}
        assert a.ledger.height + b.ledger.height == 12


def test_a_kind_judgment_moved_to_another_project_counts_once_there(tmp_path, monkeypatch):
    data = tmp_path / "data"
    read = lake_reader(data / "lake")
    with fresh_database("live_kind_moves") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            # A: n0's votes disagree (a request for another judgment), n1's agree; B holds a
            # numeric task of its own.
            *(_number(f"n0{a}", "n0", "A", r, 1 + 4 * a) for a, r in enumerate(RATERS)),
            *(_number(f"n1{a}", "n1", "A", r, 3) for a, r in enumerate(RATERS)),
            *(_number(f"m{a}", "m0", "B", r, 7) for a, r in enumerate(RATERS)),
            _vote("c0", "c0", "A", "w0", "pos"),
        )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)

        def run() -> dict[str, object]:
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return first_metadata(result)

        run()
        before = load_kind_state("A", "numeric", read)
        assert sorted(before.ledger["task_id"].unique()) == ["n0", "n1"]
        asked = _requests(dsn, "n0")
        assert asked == {"A": "open"}

        _run(dsn, ("UPDATE judgments SET project = 'B' WHERE task_id = 'n0'", ()))
        moved = run()
        a, b = load_kind_state("A", "numeric", read), load_kind_state("B", "numeric", read)
        assert a.ledger["task_id"].to_list() == ["n1"] * 3
        assert sorted(b.ledger["task_id"].to_list()) == ["m0"] * 3 + ["n0"] * 3
        assert a.annotators["n_judgments"].to_list() == [1, 1, 1]
        assert _requests(dsn, "n0")["A"] != "open"
        assert moved["moved_judgments"] == 3
        # The categorical state of A is not touched by it.
        assert load_state("A", read).ledger["judgment_id"].to_list() == ["c0"]

        again = run()
        assert again["moved_judgments"] == 0

        _run(dsn, ("DELETE FROM judgments WHERE judgment_id = 'n00'", ()))
        run()
        a, b = load_kind_state("A", "numeric", read), load_kind_state("B", "numeric", read)
        assert b.ledger.filter(pl.col("task_id") == "n0").height == 2
        assert a.ledger.height == 3


def _text(judgment_id: str, task: str, project: str, annotator: str, value: str):
    return INSERT, (judgment_id, task, project, annotator, None, "text", json.dumps(value), WHEN)


GOLD = "INSERT INTO gold_labels (task_id, project, label, kind, answer) VALUES (%s, %s, %s, %s, %s)"


def _holders(read) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """(judgment → the (project, kind) of the live state holding it, task → that of the state
    holding its DB gold) over every stored state; a judgment or gold held twice fails."""
    judged: dict[str, tuple[str, str]] = {}
    golden: dict[str, tuple[str, str]] = {}

    def hold(found: dict[str, tuple[str, str]], keys, where: tuple[str, str]) -> None:
        for key in keys:
            assert key not in found, f"{key} held by {found[key]} and {where}"
            found[key] = where

    for project in load_projects(read) or []:
        state = load_state(project, read)
        hold(judged, state.ledger["judgment_id"], (project, "categorical"))
        hold(
            golden,
            state.tasks.filter(pl.col("gold").is_not_null())["task_id"],
            (project, "categorical"),
        )
    for project, kinds in load_kinds_index(read).items():
        for kind in kinds:
            state = load_kind_state(project, kind, read)
            hold(judged, state.ledger["judgment_id"], (project, kind))
            hold(golden, state.gold["task_id"], (project, kind))
    return judged, golden


def _in_the_db(dsn: str) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """The same from the DB's rows: where the daily layers, which keep each row's newest
    version, have them."""
    with psycopg.connect(dsn) as connection:
        judged = connection.execute(
            "SELECT judgment_id, project, coalesce(kind, 'categorical') FROM judgments"
        ).fetchall()
        golden = connection.execute(
            "SELECT task_id, project, coalesce(kind, 'categorical') FROM gold_labels"
        ).fetchall()
    return {j: (p, k) for j, p, k in judged}, {t: (p, k) for t, p, k in golden}


def test_a_judgment_whose_project_and_kind_change_together_counts_once(tmp_path, monkeypatch):
    """Categorical in A → numeric in B, numeric in B → text in A, text in A → categorical in
    B, and a kind change within A: after each run every judgment is held by one live state,
    the one of its project and kind in the DB."""
    data = tmp_path / "data"
    read = lake_reader(data / "lake")
    with fresh_database("live_kind_moves_across") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            *(
                _vote(f"j{t}{a}", f"t{t}", "A", rater, "pos" if a < 2 else "neg")
                for t in range(2)
                for a, rater in enumerate(RATERS)
            ),
            *(_number(f"m{a}", "m0", "B", r, 2 + a) for a, r in enumerate(RATERS)),
            *(_number(f"k{a}", "k0", "B", r, 4) for a, r in enumerate(RATERS)),
        )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)

        def run() -> dict[str, object]:
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return first_metadata(result)

        run()
        assert _requests(dsn, "t0") == {"A": "open"}
        assert _holders(read)[0] == _in_the_db(dsn)[0]

        # Categorical in A → numeric in B.
        _run(
            dsn,
            (
                "UPDATE judgments SET project = 'B', kind = 'numeric', label = NULL, "
                "answer = '3' WHERE task_id = 't0'",
                (),
            ),
        )
        moved = run()
        assert moved["moved_judgments"] == 3
        assert _holders(read)[0] == _in_the_db(dsn)[0]
        assert _votes(load_state("A", read)) == {"t1": 3}
        assert _counts(load_state("A", read)) == {"w0": 1, "w1": 1, "w2": 1}
        assert _requests(dsn, "t0")["A"] == "withdrawn"
        numeric = load_kind_state("B", "numeric", read)
        assert numeric.ledger.filter(pl.col("task_id") == "t0").height == 3
        assert numeric.annotators["n_judgments"].to_list() == [3, 3, 3]

        again = run()
        assert again["moved_judgments"] == 0 and again["withdrawn_judgments"] == 0

        # Numeric in B → text in A; then text in A → categorical in B.
        _run(
            dsn,
            (
                "UPDATE judgments SET project = 'A', kind = 'text', answer = '\"abc\"' "
                "WHERE task_id = 'm0'",
                (),
            ),
        )
        assert run()["moved_judgments"] == 3
        assert _holders(read)[0] == _in_the_db(dsn)[0]
        numeric = load_kind_state("B", "numeric", read)
        assert sorted(numeric.ledger["task_id"].unique()) == ["k0", "t0"]
        assert numeric.annotators["n_judgments"].to_list() == [2, 2, 2]
        assert load_kind_state("A", "text", read).ledger.height == 3

        _run(
            dsn,
            (
                "UPDATE judgments SET project = 'B', kind = NULL, label = 'pos', answer = NULL "
                "WHERE task_id = 'm0'",
                (),
            ),
        )
        assert run()["moved_judgments"] == 3
        assert _holders(read)[0] == _in_the_db(dsn)[0]
        assert load_kind_state("A", "text", read).ledger.height == 0
        assert _votes(load_state("B", read)) == {"m0": 3}

        # Within one project: categorical in A → numeric in A, and one vote back again.
        _run(
            dsn,
            (
                "UPDATE judgments SET kind = 'numeric', label = NULL, answer = '1' "
                "WHERE task_id = 't1'",
                (),
            ),
        )
        assert run()["moved_judgments"] == 3
        assert _holders(read)[0] == _in_the_db(dsn)[0]
        assert load_state("A", read).ledger.height == 0
        _run(
            dsn,
            (
                "UPDATE judgments SET kind = NULL, label = 'neg', answer = NULL "
                "WHERE judgment_id = 'j10'",
                (),
            ),
        )
        assert run()["moved_judgments"] == 1
        judged, _ = _holders(read)
        assert judged == _in_the_db(dsn)[0]
        assert judged["j10"] == ("A", "categorical")
        assert load_kind_state("A", "numeric", read).ledger.height == 2

        # A deletion reaches the one state holding each judgment: nothing is unknown.
        _run(dsn, ("DELETE FROM judgments WHERE judgment_id IN ('j10', 'm0', 'j11')", ()))
        deleted = run()
        assert deleted["withdrawn_judgments"] == 2 and deleted["deletions_unknown"] == 0
        assert _holders(read)[0] == _in_the_db(dsn)[0]


def test_gold_moved_to_another_project_or_kind_leaves_the_old_state(tmp_path, monkeypatch):
    """The DB's gold keyed by task: moved to another project (categorical and numeric), and
    moved with its kind changed, it leaves the state that held it (its annotators' gold counts
    drop) and counts once where the DB has it now."""
    data = tmp_path / "data"
    read = lake_reader(data / "lake")
    with fresh_database("live_gold_moves") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            *(
                _vote(f"j{t}{a}", f"t{t}", "A", rater, "pos")
                for t in range(2)
                for a, rater in enumerate(RATERS)
            ),
            *(_number(f"n{a}", "n0", "A", r, 3) for a, r in enumerate(RATERS)),
            *(_vote(f"b{a}", "b0", "B", rater, "neg") for a, rater in enumerate(RATERS)),
            (GOLD, ("t0", "A", "pos", None, None)),
            (GOLD, ("t1", "A", "pos", None, None)),
            (GOLD, ("n0", "A", None, "numeric", "3")),
        )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)

        def run() -> dict[str, object]:
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return first_metadata(result)

        run()
        assert _holders(read)[1] == _in_the_db(dsn)[1]
        gold_counts = dict(
            load_state("A", read).annotators.select("annotator_id", "n_gold").iter_rows()
        )
        assert gold_counts == {"w0": 2, "w1": 2, "w2": 2}

        # t0's gold to B (categorical), n0's to B (numeric), t1's to B as numeric gold.
        _run(
            dsn,
            ("UPDATE gold_labels SET project = 'B' WHERE task_id IN ('t0', 'n0')", ()),
            (
                "UPDATE gold_labels SET project = 'B', kind = 'numeric', label = NULL, "
                "answer = '2' WHERE task_id = 't1'",
                (),
            ),
        )
        moved = run()
        assert moved["moved_gold"] == 3
        assert _holders(read)[1] == _in_the_db(dsn)[1]
        a = load_state("A", read)
        assert a.tasks.filter(pl.col("gold").is_not_null()).height == 0
        assert dict(a.annotators.select("annotator_id", "n_gold").iter_rows()) == {
            "w0": 0,
            "w1": 0,
            "w2": 0,
        }
        assert _votes(a) == {"t0": 3, "t1": 3}
        b = load_state("B", read)
        assert b.tasks.filter(pl.col("task_id") == "t0")["gold"].to_list() == ["pos"]
        numeric = load_kind_state("A", "numeric", read)
        assert numeric.gold.height == 0
        assert numeric.annotators["n_gold"].to_list() == [0, 0, 0]
        assert sorted(load_kind_state("B", "numeric", read).gold["task_id"]) == ["n0", "t1"]

        again = run()
        assert again["moved_gold"] == 0

        # Back to A: B loses it, A's annotators count it again.
        _run(dsn, ("UPDATE gold_labels SET project = 'A' WHERE task_id = 't0'", ()))
        assert run()["moved_gold"] == 1
        assert _holders(read)[1] == _in_the_db(dsn)[1]
        gold_counts = dict(
            load_state("A", read).annotators.select("annotator_id", "n_gold").iter_rows()
        )
        assert gold_counts == {"w0": 1, "w1": 1, "w2": 1}
        assert "t0" not in load_state("B", read).tasks["task_id"].to_list()


DAY = "2026-11-02"


def test_moves_leave_the_live_state_and_the_day_alike(tmp_path, monkeypatch):
    """The daily layers keep each DB row's newest version: after a judgment moved with its
    kind changed and a gold label moved to another project on a later day than it was set,
    the day's judgments and gold are where the live states hold them."""
    data = tmp_path / "data"
    lake = data / "lake"
    read = lake_reader(lake)
    with fresh_database("live_moves_daily") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            *(
                _vote(f"j{t}{a}", f"t{t}", "A", rater, "pos")
                for t in range(3)
                for a, rater in enumerate(RATERS)
            ),
            *(_vote(f"b{a}", "b0", "B", rater, "neg") for a, rater in enumerate(RATERS)),
            # Set on the day judged: staged under that day.
            (
                "INSERT INTO gold_labels (task_id, project, label, updated_at) "
                "VALUES ('t0', 'A', 'pos', %s), ('t2', 'A', 'pos', %s)",
                (WHEN, WHEN),
            ),
        )
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        changes = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={AssetKey("annotation_db_changes")}
        )
        raw_job = defs.resolve_job_def("raw_job")

        def run() -> dict[str, object]:
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return first_metadata(result)

        def daily() -> tuple[dict[str, tuple[str, str]], set[tuple[str, str]]]:
            assert changes.execute_in_process(instance=instance, run_config=QUIET).success
            raw = raw_job.execute_in_process(partition_key=DAY, instance=instance, run_config=QUIET)
            assert raw.success
            day = pl.read_parquet(lake / "judgments" / f"day={DAY}" / "data.parquet")
            gold = pl.read_parquet(lake / "gold_labels" / f"day={DAY}" / "data.parquet")
            kinds = day.select("judgment_id", "project", pl.col("kind").fill_null("categorical"))
            return (
                {j: (p, k) for j, p, k in kinds.iter_rows()},
                set(gold.select("project", "task_id").iter_rows()),
            )

        def live() -> tuple[dict[str, tuple[str, str]], set[tuple[str, str]]]:
            """The live holders, gold on the tasks with votes (the day keys gold to them)."""
            judged, golden = _holders(read)
            voted = {
                (project, task)
                for project in ("A", "B")
                for task in load_state(project, read).tasks.filter(pl.col("n_votes") > 0)["task_id"]
            }
            return judged, {(p, t) for t, (p, _) in golden.items() if (p, t) in voted}

        run()
        assert daily() == live()
        # Today (a later day than the gold's): t0's gold to B, t1's votes to B as ratings.
        _run(
            dsn,
            ("UPDATE gold_labels SET project = 'B' WHERE task_id = 't0'", ()),
            (
                "UPDATE judgments SET project = 'B', kind = 'numeric', label = NULL, "
                "answer = '4' WHERE task_id = 't1'",
                (),
            ),
        )
        moved = run()
        assert moved["moved_judgments"] == 3 and moved["moved_gold"] == 1
        judged, golden = daily()
        assert (judged, golden) == live()
        assert golden == {("A", "t2")}
        assert {judged[f"j1{a}"] for a in range(3)} == {("B", "numeric")}


SCALED = (
    "INSERT INTO projects (project, scale) VALUES ('S', '{\"min\": 1, \"max\": 5}'::jsonb) "
    "ON CONFLICT (project) DO UPDATE SET scale = excluded.scale, updated_at = now()"
)


def test_a_row_leaving_for_no_state_leaves_the_one_holding_it(tmp_path, monkeypatch):
    """A DB tombstone and an off-scale quarantine carry the row's new project and kind, which
    hold nothing of it: a rating moved into a project whose scale refuses it, a categorical
    vote given an off-scale numeric answer, and a vote moved and then deleted before the next
    run (gold labels alike) each leave the state that held them, as the daily layers drop
    them, and are counted once (the moved-then-deleted one is no unknown deletion)."""
    data = tmp_path / "data"
    read = lake_reader(data / "lake")
    with fresh_database("live_departures") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            (SCALED, ()),
            *(_number(f"n{a}", "n0", "A", r, 3 + 3 * a) for a, r in enumerate(RATERS)),
            *(_number(f"s{a}", "s0", "S", r, 2) for a, r in enumerate(RATERS)),
            *(_vote(f"c{a}", "c0", "S", r, "pos") for a, r in enumerate(RATERS)),
            *(_vote(f"d{a}", "d0", "A", r, "neg") for a, r in enumerate(RATERS)),
            *(_vote(f"b{a}", "b0", "B", r, "pos") for a, r in enumerate(RATERS)),
            (GOLD, ("c0", "S", "pos", None, None)),
            (GOLD, ("d0", "A", "neg", None, None)),
        )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)

        def run() -> dict[str, object]:
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return first_metadata(result)

        run()
        assert _holders(read) == _in_the_db(dsn)

        _run(
            dsn,
            # The rating of 9 into S, whose scale (1 to 5) refuses it.
            ("UPDATE judgments SET project = 'S' WHERE judgment_id = 'n2'", ()),
            # S's vote c0 made a numeric answer off S's scale.
            (
                "UPDATE judgments SET kind = 'numeric', label = NULL, answer = '50' "
                "WHERE judgment_id = 'c0'",
                (),
            ),
            # So is S's gold on c0.
            (
                "UPDATE gold_labels SET kind = 'numeric', label = NULL, answer = '50' "
                "WHERE task_id = 'c0'",
                (),
            ),
        )
        # Re-filed under B and deleted there, both before the next run, with A's gold on d0.
        _run(
            dsn,
            ("UPDATE judgments SET project = 'B' WHERE judgment_id = 'd0'", ()),
            ("UPDATE gold_labels SET project = 'B' WHERE task_id = 'd0'", ()),
        )
        _run(
            dsn,
            ("DELETE FROM judgments WHERE judgment_id = 'd0'", ()),
            ("DELETE FROM gold_labels WHERE task_id = 'd0'", ()),
        )
        left = run()
        off_scale = {"n2", "c0"}
        expected = {j: h for j, h in _in_the_db(dsn)[0].items() if j not in off_scale}
        judged, golden = _holders(read)
        assert judged == expected and golden == {}
        assert _in_the_db(dsn)[1] == {"c0": ("S", "numeric")}
        assert left["outside_scale"] == 3
        assert left["outside_scale_withdrawn"] == 3
        assert left["deletions_unknown"] == 0
        # n2, c0 and d0, c0's and d0's gold: counted apart from the moves.
        assert (left["departed_judgments"], left["departed_gold"]) == (3, 2)
        numeric = load_kind_state("A", "numeric", read)
        assert sorted(numeric.ledger["judgment_id"]) == ["n0", "n1"]
        assert numeric.annotators["n_judgments"].to_list() == [1, 1, 0]
        assert _votes(load_state("S", read)) == {"c0": 2}
        assert _votes(load_state("A", read)) == {"d0": 2}
        assert _counts(load_state("A", read)) == {"w0": 0, "w1": 1, "w2": 1}

        # Read again in the overlap: nothing is withdrawn or counted twice.
        again = run()
        assert again["outside_scale_withdrawn"] == 0 and again["deletions_unknown"] == 0
        assert again["departed_judgments"] == 0 and again["departed_gold"] == 0
        assert again["withdrawn_judgments"] == 0 and again["kind_withdrawn_judgments"] == 0
        assert again["withdrawn_gold"] == 0
        assert _holders(read) == (expected, {})
