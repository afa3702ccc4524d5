"""The annotation DB's rows of the non-categorical kinds in the live kind engine: split from the
categorical rows, folded exactly once across the stream's overlap, replaced by a newer version,
and withdrawn by the DB's tombstones (which name no kind: the state holding the row is found),
with the categorical engine's rules for which version a tombstone deletes."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from annotation_pipelines.kinds import KIND_COLUMNS, SPAN, VALUE_COLUMNS, of_kind
from annotation_pipelines.loop.live_kinds import (
    KindLiveOptions,
    KindState,
    adopt_fit,
    fit_snapshot,
    held_deletions,
    kind_db_rows,
    kind_state_objects,
    load_kind_state,
    states_holding,
    update_kind,
    update_kind_projects,
)
from annotation_pipelines.schema import UTC_TIMESTAMP
from tests.loop.test_live_kinds import NOW, OPTIONS, START, _span, gold_rows, judgments

PROJECT = "p"
RATERS = ("a", "b", "c")
# Three kinds with different models: a Gaussian E-step, a character-level Dawid–Skene, a
# per-class Dawid–Skene.
ANSWERS: dict[str, list[object]] = {
    "numeric": [3.0, 4.0, 2.0],
    "spans": [[_span(0, 4)], [_span(0, 4)], [_span(0, 5)]],
    "multilabel": [["x"], ["x", "y"], ["x"]],
}
EDITED: dict[str, object] = {"numeric": 9.0, "spans": [_span(1, 3)], "multilabel": ["z"]}


def db_rows(kind: str, tasks: int = 4) -> pl.DataFrame:
    """`tasks` tasks of three votes, as `kind_db_rows` gives the DB's rows: `project`, `kind`,
    the DB's `updated_at`, `source` null."""
    answers = [(f"t{i}", r, ANSWERS[kind][n]) for i in range(tasks) for n, r in enumerate(RATERS)]
    return judgments(kind, answers).with_columns(
        project=pl.lit(PROJECT), kind=pl.lit(kind), source=pl.lit(None, pl.String)
    )


def tombstones(rows: pl.DataFrame, *, after: timedelta = timedelta(minutes=5)) -> pl.DataFrame:
    """The DB's tombstones of `rows` (the version each row is), deleted `after` it."""
    if "project" not in rows.columns:
        rows = rows.with_columns(project=pl.lit(PROJECT))
    return rows.select(
        "judgment_id",
        "task_id",
        "project",
        "annotator_id",
        "submitted_at",
        "updated_at",
        deleted_at=pl.col("updated_at") + after,
    )


def _votes(state: KindState, task: str) -> int:
    return state.tasks.filter(pl.col("task_id") == task)["n_votes"].item()


def _judged(state: KindState, annotator: str) -> int:
    return state.annotators.filter(pl.col("annotator_id") == annotator)["n_judgments"].item()


def test_db_rows_of_the_other_kinds_leave_categorical_to_its_engine():
    values = {c: pl.lit(None, t) for c, t in KIND_COLUMNS.items() if c != "kind"}
    canonical = (
        pl.DataFrame(
            {
                "judgment_id": ["1", "2", "3"],
                "task_id": ["t", "t", "u"],
                "project": [PROJECT] * 3,
                "annotator_id": ["a", "b", "c"],
                "label": ["pos", None, None],
                "submitted_at": [START] * 3,
                "duration_s": [1.0] * 3,
                "source": ["postgres"] * 3,
                "kind": ["categorical", "spans", "numeric"],
                "updated_at": [START + timedelta(seconds=s) for s in range(3)],
            }
        )
        .with_columns(**values)
        .with_columns(
            spans=pl.when(pl.col("kind") == "spans").then(pl.lit([_span(0, 2)], pl.List(SPAN))),
            value=pl.when(pl.col("kind") == "numeric").then(pl.lit(4.0)),
        )
    )
    gold = canonical.select(
        "task_id", "project", "label", "kind", "spans", "value", source=pl.lit("postgres")
    )
    rows, golden = kind_db_rows(canonical, gold)
    assert rows["judgment_id"].to_list() == ["2", "3"]
    # Versioned by the DB, from no file: only a DB tombstone withdraws them.
    assert rows["updated_at"].to_list() == canonical["updated_at"].to_list()[1:]
    assert rows["source"].is_null().all() and golden["source"].is_null().all()
    assert golden["kind"].to_list() == ["spans", "numeric"]
    # What the categorical engine takes (`kinds.of_kind`) is the rest.
    assert of_kind(canonical)["judgment_id"].to_list() == ["1"]
    assert kind_db_rows(canonical.head(0).drop("updated_at"), gold.head(0))[0].height == 0


@pytest.mark.parametrize("kind", list(ANSWERS))
def test_db_rows_fold_once_an_update_replaces_and_a_delete_withdraws(kind):
    rows = db_rows(kind)
    states, events = update_kind_projects({}, rows, None, OPTIONS, now=NOW)
    one = states[(PROJECT, kind)]
    assert events[(PROJECT, kind)].new_judgments == 12 and one.ledger["source"].is_null().all()
    assert _votes(one, "t0") == 3 and _judged(one, "a") == 4

    # The stream's overlap reads the same versions again: nothing new, the state stays.
    again, events = update_kind_projects(states, rows.slice(6), None, OPTIONS, now=NOW)
    assert again[(PROJECT, kind)] is one and events[(PROJECT, kind)].new_judgments == 0

    # An UPDATE: the same judgment at a later updated_at, with another answer, replaces it.
    edited = rows.filter(pl.col("judgment_id") == "j1").with_columns(
        pl.lit(EDITED[kind])
        .cast(one.ledger.schema[VALUE_COLUMNS[kind][0]])
        .alias(VALUE_COLUMNS[kind][0]),
        updated_at=pl.col("updated_at") + timedelta(hours=1),
    )
    states, events = update_kind_projects(states, edited, None, OPTIONS, now=NOW)
    two = states[(PROJECT, kind)]
    assert events[(PROJECT, kind)].new_judgments == 1
    assert two.ledger.height == 12 and _votes(two, "t0") == 3 and _judged(two, "b") == 4
    held = two.ledger.filter(pl.col("judgment_id") == "j1")
    assert held["updated_at"].item() == edited["updated_at"].item()
    assert held.select(VALUE_COLUMNS[kind]).equals(edited.select(VALUE_COLUMNS[kind]))
    # The new version read again in the next run's overlap: counted once.
    states, events = update_kind_projects(states, edited, None, OPTIONS, now=NOW)
    assert states[(PROJECT, kind)] is two and events[(PROJECT, kind)].new_judgments == 0

    # A DELETE of j0 (a's vote on t0): the tombstone names no kind; the state holding it is
    # found, and the vote leaves the task and the annotator's counts.
    current = states[(PROJECT, kind)]
    dead = tombstones(current.ledger.filter(pl.col("judgment_id") == "j0"))
    unknown = tombstones(
        rows.head(1).with_columns(judgment_id=pl.lit("never-folded"), task_id=pl.lit("t9"))
    )
    kind_deleted, _ = held_deletions(states, pl.concat([dead, unknown]), _no_gold_deletions())
    assert kind_deleted.select("judgment_id", "kind").rows() == [("j0", kind)]
    states, events = update_kind_projects(
        states, rows.head(0), None, OPTIONS, now=NOW, deleted=kind_deleted
    )
    three = states[(PROJECT, kind)]
    assert events[(PROJECT, kind)].withdrawn_judgments == 1
    assert events[(PROJECT, kind)].unknown_deletions == 0
    assert "j0" not in three.ledger["judgment_id"].to_list()
    assert _votes(three, "t0") == 2 and _judged(three, "a") == 3

    # The tombstone read again (the overlap): it withdraws nothing twice, and is unknown.
    again, events = update_kind(three, rows.head(0), None, OPTIONS, deleted=dead, now=NOW)
    assert again is three
    assert events.withdrawn_judgments == 0 and events.unknown_deletions == 1

    # Through the lake: the segment's tombstone resolves the ledger without j0.
    store: dict[str, bytes] = {}
    for state in (one, two, three):
        writes, deletes = kind_state_objects(state, store.get)
        store.update(writes)
        for key in deletes:
            store.pop(key)
    loaded = load_kind_state(PROJECT, kind, store.get)
    assert loaded.ledger.sort("judgment_id").equals(three.ledger.sort("judgment_id"))
    assert loaded.tasks.equals(three.tasks)


def _no_gold_deletions() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "task_id": pl.String(),
            "project": pl.String(),
            "label": pl.String(),
            "updated_at": UTC_TIMESTAMP,
            "deleted_at": UTC_TIMESTAMP,
        }
    )


def test_a_tombstone_deletes_only_its_version_or_an_older_one():
    rows = db_rows("numeric")
    state, _ = update_kind(KindState(project=PROJECT, kind="numeric"), rows, None, OPTIONS)
    # j2 was updated after the version its tombstone deleted (deleted, inserted again by a
    # transaction stamped before the deletion): the newer version stays.
    newer = rows.filter(pl.col("judgment_id") == "j2").with_columns(
        value=pl.lit(7.0), updated_at=pl.col("updated_at") + timedelta(minutes=1)
    )
    state, _ = update_kind(state, newer, None, OPTIONS)
    stale = tombstones(rows.filter(pl.col("judgment_id") == "j2"), after=timedelta(minutes=2))
    kept, events = update_kind(state, rows.head(0), None, OPTIONS, deleted=stale)
    assert kept is state and events.unknown_deletions == 1
    # A tombstone of the version held, and a row of the batch it would delete: the batch's
    # version (inserted again after the deletion) replaces it instead.
    held = tombstones(state.ledger.filter(pl.col("judgment_id").is_in(["j2", "j3"])))
    again = rows.filter(pl.col("judgment_id") == "j3").with_columns(
        value=pl.lit(1.0), updated_at=pl.col("updated_at") + timedelta(hours=2)
    )
    after, events = update_kind(state, again, None, OPTIONS, deleted=held)
    assert events.withdrawn_judgments == 1 and events.new_judgments == 1
    assert "j2" not in after.ledger["judgment_id"].to_list()
    assert after.ledger.filter(pl.col("judgment_id") == "j3")["value"].item() == 1.0


def test_a_file_s_row_is_the_file_s_to_withdraw_not_a_db_tombstone_s():
    rows = db_rows("spans").with_columns(source=pl.lit("exports/p/a.jsonl"))
    state, _ = update_kind(KindState(project=PROJECT, kind="spans"), rows, None, OPTIONS)
    kept, events = update_kind(state, rows.head(0), None, OPTIONS, deleted=tombstones(rows.head(1)))
    assert kept is state and events.unknown_deletions == 1


@pytest.mark.parametrize("kind", ["numeric", "multilabel"])
def test_db_gold_is_withdrawn_by_its_tombstone_and_file_gold_is_not(kind):
    rows = db_rows(kind)
    gold = pl.concat(
        [
            gold_rows(kind, [("t0", ANSWERS[kind][0])]).with_columns(
                source=pl.lit(None, pl.String)
            ),
            gold_rows(kind, [("t1", ANSWERS[kind][1])]).with_columns(source=pl.lit("exports/g")),
        ]
    ).with_columns(project=pl.lit(PROJECT), kind=pl.lit(kind))
    states, _ = update_kind_projects({}, rows, gold, OPTIONS, now=NOW)
    one = states[(PROJECT, kind)]
    assert sorted(one.gold["task_id"]) == ["t0", "t1"]
    n_gold = one.annotators["n_gold"].sum()
    deletions = _no_gold_deletions().vstack(
        pl.DataFrame(
            {
                "task_id": ["t0", "t1", "t7"],
                "project": [PROJECT] * 3,
                "label": [None] * 3,
                "updated_at": [START] * 3,
                "deleted_at": [NOW] * 3,
            },
            schema=_no_gold_deletions().schema,
        )
    )
    _, kind_gold = held_deletions(states, rows.head(0).select("judgment_id", "project"), deletions)
    assert sorted(kind_gold["task_id"]) == ["t0", "t1"] and set(kind_gold["kind"]) == {kind}
    states, events = update_kind_projects(
        states, rows.head(0), None, OPTIONS, now=NOW, deleted_gold=kind_gold
    )
    two = states[(PROJECT, kind)]
    # t0's gold came from the DB: gone, its annotators' gold counts recounted; t1's came from
    # a file, which alone withdraws it: the tombstone is unknown.
    assert events[(PROJECT, kind)].withdrawn_gold == 1
    assert events[(PROJECT, kind)].unknown_deletions == 1
    assert two.gold["task_id"].to_list() == ["t1"]
    assert two.annotators["n_gold"].sum() == n_gold - 3


def test_a_full_fit_of_a_state_holding_db_rows_keeps_the_deletion():
    rows = db_rows("numeric", tasks=6)
    deferred = KindLiveOptions(full_fit_every=1_000, inline_full_fits=False)
    state, _ = update_kind(KindState(project=PROJECT, kind="numeric"), rows, None, deferred)
    fit = fit_snapshot(state, deferred, now=NOW)
    # A live run deletes j0 while the fit runs off the lock: the adopted fit keeps it deleted.
    dead = tombstones(state.ledger.filter(pl.col("judgment_id") == "j0"))
    current, _ = update_kind(state, rows.head(0), None, deferred, deleted=dead, now=NOW)
    adopted = adopt_fit(fit, current, deferred, now=NOW)
    assert adopted is not None
    ours, _ = adopted
    assert "j0" not in ours.ledger["judgment_id"].to_list()
    assert _votes(ours, "t0") == 2 and ours.fitted_version == ours.version
    assert ours.ledger["source"].is_null().all()


def test_the_stored_states_holding_a_tombstone_s_row_are_found_from_their_ids():
    store: dict[str, bytes] = {}
    for kind in ("numeric", "spans"):
        rows = db_rows(kind).with_columns(judgment_id=pl.lit(kind[0]) + pl.col("judgment_id"))
        gold = gold_rows(kind, [(f"{kind[0]}-gold", ANSWERS[kind][0])])
        state, _ = update_kind(KindState(project=PROJECT, kind=kind), rows, gold, OPTIONS)
        store.update(kind_state_objects(state, store.get)[0])
        # One judgment deleted since: its tombstone in the next segment, no longer held.
        state = load_kind_state(PROJECT, kind, store.get)
        state, _ = update_kind(state, rows.head(0), None, OPTIONS, deleted=tombstones(rows.head(1)))
        store.update(kind_state_objects(state, store.get)[0])
        assert len(load_kind_state(PROJECT, kind, store.get).segments) == 2
    index = {PROJECT: ["numeric", "spans"], "other": ["numeric"]}
    deleted = pl.DataFrame(
        {"judgment_id": ["sj3", "nj0", "cj1", "sj3"], "project": [PROJECT] * 3 + ["other"]}
    )
    gold = pl.DataFrame({"task_id": ["n-gold", "x"], "project": [PROJECT, PROJECT]})
    # nj0 was deleted (no longer held); sj3 is held by spans; the numeric gold by numeric.
    assert states_holding(index, deleted, gold.head(0), store.get) == {(PROJECT, "spans")}
    assert states_holding(index, deleted, gold, store.get) == {
        (PROJECT, "spans"),
        (PROJECT, "numeric"),
    }
    assert states_holding(index, deleted.head(0), gold.head(0), store.get) == set()
