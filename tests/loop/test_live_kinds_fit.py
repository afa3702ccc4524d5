"""A kind's full fit off the live path: the live runs only record it as due; a snapshot's fit
adopted at the snapshot's version is the inline full fit, and adopted after live runs folded
more is the full fit followed by those runs, task by task."""

from __future__ import annotations

import json
from dataclasses import replace

import polars as pl
import pytest

from annotation_pipelines.kinds import VALUE_COLUMNS
from annotation_pipelines.loop.live_kinds import (
    KindLiveOptions,
    KindState,
    adopt_fit,
    due_full_fits,
    fit_counters,
    fit_snapshot,
    full_fit_due,
    kind_state_objects,
    kinds_index_object,
    load_kind_state,
    update_kind,
)
from tests.loop.test_live_kinds import NOW, _synthetic

# The live asset's setting: due full fits are left to the maintenance job.
DEFERRED = KindLiveOptions(full_fit_every=1_000, inline_full_fits=False)
INLINE = KindLiveOptions(full_fit_every=1_000)
KINDS = ["numeric", "multilabel", "pairwise", "ranking", "spans", "boxes", "text"]


def _stored(state: KindState, store: dict[str, bytes]) -> KindState:
    writes, deletes = kind_state_objects(state, store.get)
    store.update(writes)
    for key in deletes:
        store.pop(key)
    store.update(kinds_index_object({state.project: [state.kind]}))
    return load_kind_state(state.project, state.kind, store.get)


def _in_order(frame: pl.DataFrame) -> pl.DataFrame:
    """A hash-aggregated frame (annotators, parameters) in the order of its flat columns."""
    keys = [name for name, dtype in frame.schema.items() if not dtype.is_nested()]
    return frame.sort(keys, nulls_last=True) if keys and frame.height else frame


def _same_parameters(ours: pl.DataFrame, theirs: pl.DataFrame) -> None:
    """Equal keys, and counts equal to float summation order (hash aggregations)."""
    ours, theirs = _in_order(ours), _in_order(theirs)
    flat = [name for name, dtype in ours.schema.items() if not dtype.is_nested()]
    assert ours.select(flat).equals(theirs.select(flat))
    for name, dtype in ours.schema.items():
        if dtype == pl.List(pl.Float64):
            left = ours[name].explode().to_numpy()
            assert left == pytest.approx(theirs[name].explode().to_numpy(), rel=1e-9, abs=1e-9)
        elif name not in flat:
            assert ours[name].equals(theirs[name])


def _answers(state: KindState) -> pl.DataFrame:
    columns = list(VALUE_COLUMNS[state.kind])
    return state.tasks.select("task_id", *columns, "confidence", "n_votes").sort("task_id")


def _same_answers(ours: KindState, theirs: KindState) -> None:
    """Task by task the same answer and votes; confidences equal to float summation order (the
    two fits' hash aggregations sum the carried counts in their own orders)."""
    left, right = _answers(ours), _answers(theirs)
    assert left.drop("confidence").equals(right.drop("confidence"))
    assert left["confidence"].to_numpy() == pytest.approx(
        right["confidence"].to_numpy(), rel=1e-9, abs=1e-12
    )


def _history(kind: str) -> tuple[KindState, pl.DataFrame, pl.DataFrame, dict[str, bytes]]:
    """A stored state of 300 judgments folded in three runs, the rows not folded yet, gold."""
    rows, gold, _ = _synthetic(kind, 160)
    rows = rows.with_columns(source=pl.lit("exports/p/a.parquet"))
    state = KindState(project=str(rows["project"][0]), kind=kind)
    store: dict[str, bytes] = {}
    for start in range(0, 300, 100):
        state, _ = update_kind(state, rows.slice(start, 100), gold.head(3), DEFERRED, now=NOW)
        state = _stored(state, store)
    return state, rows.slice(300), gold, store


def test_live_runs_record_a_due_full_fit_and_keep_the_first_fit_inline():
    rows, _, _ = _synthetic("numeric", 60)
    project = str(rows["project"][0])
    options = KindLiveOptions(full_fit_every=2, full_fit_growth=0.5, inline_full_fits=False)
    store: dict[str, bytes] = {}
    state, _ = update_kind(
        KindState(project=project, kind="numeric"), rows.head(100), None, options
    )
    assert state.fitted_version == 1 and state.parameters.height  # the first fit: inline
    state = _stored(state, store)
    due = []
    for start in range(100, 160, 10):
        state, events = update_kind(state, rows.slice(start, 10), None, options)
        assert events.refitted_tasks < state.tasks.height
        state = _stored(state, store)
        due.append(full_fit_due(fit_counters(state), options))
    # The growth rule of the inline fit (version 6 folds the 50th judgment since the fit of
    # 100): due from then on, never run inside a live run.
    assert due == [False, False, False, False, True, True]
    assert state.fitted_version == 1 and state.folded_since_fit == 60
    assert due_full_fits(store.get, options) == {f"{project}/numeric": state.version}
    # The re-base day's request: recorded (and stored), not run.
    quiet = KindLiveOptions(full_fit_every=1_000, inline_full_fits=False)
    asked, events = update_kind(state, pl.DataFrame(), None, quiet, full_fit=True)
    assert asked.fit_requested and asked.fitted_version == 1 and asked.version == state.version + 1
    assert events.refitted_tasks == 0
    stored = _stored(replace(asked, rebase_after_fit=("2026-11-01",)), store)
    assert stored.fit_requested and stored.rebase_after_fit == ("2026-11-01",)
    meta = json.loads(store[f"live/{project}/kinds/numeric/state.json"])
    assert full_fit_due(meta, quiet) and not full_fit_due({**meta, "fit_requested": False}, quiet)


@pytest.mark.parametrize("kind", KINDS)
def test_a_fit_adopted_at_its_snapshot_s_version_is_the_inline_full_fit(kind):
    state, _, _, _ = _history(kind)
    inline, expected = update_kind(state, pl.DataFrame(), None, INLINE, full_fit=True, now=NOW)
    fit = fit_snapshot(state, DEFERRED, now=NOW)
    adopted = adopt_fit(fit, state, DEFERRED, now=NOW)
    assert adopted is not None
    ours, events = adopted
    assert ours.version == inline.version == ours.fitted_version
    assert ours.tasks.sort("task_id").equals(inline.tasks.sort("task_id"))
    _same_parameters(ours.parameters, inline.parameters)
    assert _in_order(ours.annotators).equals(_in_order(inline.annotators))
    assert ours.ledger.equals(inline.ledger)
    assert events.task_requests.sort("decision_id").equals(
        expected.task_requests.sort("decision_id")
    )
    assert events.annotator_actions.equals(expected.annotator_actions)
    assert (ours.folded_since_fit, ours.fitted_judgments) == (0, inline.fitted_judgments)


@pytest.mark.parametrize("kind", KINDS)
def test_a_fit_adopted_after_a_live_run_is_the_full_fit_then_that_run(kind):
    """Snapshot at v; a live run folds a batch (new judgments, an edited file's withdrawals,
    new gold) at v + 1; the fit of v adopted at v + 2 equals the full fit at v followed by
    the same batch, task by task; its ledger is the live run's, each judgment once."""
    snapshot, rest, gold, store = _history(kind)
    # The file a.parquet re-read without its first 20 judgments, and 40 new ones from b.
    edited_ids = snapshot.ledger.sort("judgment_id")["judgment_id"].head(20)
    held = snapshot.ledger.filter(~pl.col("judgment_id").is_in(edited_ids.implode())).drop(
        "flagged", "version"
    )
    new = rest.head(40).with_columns(source=pl.lit("exports/p/b.parquet"))
    batch = pl.concat([held, new.select(held.columns)], how="vertical_relaxed")
    more_gold = gold.slice(3, 2)

    def live_run(state: KindState, options: KindLiveOptions) -> KindState:
        after, _ = update_kind(
            state,
            batch,
            more_gold,
            options,
            resynced=["exports/p/a.parquet"],
            now=NOW,
        )
        return after

    fit = fit_snapshot(snapshot, DEFERRED, now=NOW)
    current = _stored(live_run(snapshot, DEFERRED), store)
    assert current.fitted_version == snapshot.fitted_version
    adopted = adopt_fit(fit, current, DEFERRED, now=NOW)
    assert adopted is not None
    ours, events = adopted
    # As if: the full fit at v inline, then the same live run with its parameters.
    full, _ = update_kind(snapshot, pl.DataFrame(), None, INLINE, full_fit=True, now=NOW)
    then = live_run(full, INLINE)
    assert ours.parameters.equals(fit.fitted.parameters)
    _same_parameters(ours.parameters, then.parameters)
    assert ours.version == current.version + 1 == ours.fitted_version
    _same_answers(ours, then)
    # Every judgment the live run holds, once; every task with votes or gold.
    assert ours.ledger.sort("judgment_id").equals(current.ledger.sort("judgment_id"))
    assert ours.ledger["judgment_id"].n_unique() == ours.ledger.height
    assert not ours.ledger["judgment_id"].is_in(edited_ids.implode()).any()
    active = current.ledger.filter(~pl.col("flagged"))["task_id"]
    assert set(ours.tasks["task_id"]) == set(then.tasks["task_id"]) >= set(active)
    carried = ["annotator_id", "n_judgments", "n_gold", "n_compared", "n_durations"]
    ours_cards = ours.annotators.filter(pl.col("n_judgments") > 0).sort("annotator_id")
    then_cards = then.annotators.filter(pl.col("n_judgments") > 0).sort("annotator_id")
    assert ours_cards.select(carried).equals(then_cards.select(carried))
    for column in ("gold_total", "distance_total", "duration_total"):
        assert ours_cards[column].to_numpy() == pytest.approx(
            then_cards[column].to_numpy(), abs=1e-6
        )
    assert set(ours.annotators.filter("blocked")["annotator_id"]) == set(
        then.annotators.filter("blocked")["annotator_id"]
    )
    stored = _stored(ours, store)
    assert adopt_fit(fit, stored, DEFERRED, now=NOW) is None  # a newer fit was adopted
    assert not full_fit_due(fit_counters(stored), DEFERRED)
    assert events.task_requests["decision_id"].n_unique() == events.task_requests.height
