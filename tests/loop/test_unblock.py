"""Reversing a block in the live engine: the annotator's judgments count again, the evidence
window starts over (only judgments after the reversal can block them again), and re-reading
the same reversal changes nothing."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import polars as pl

from annotation_pipelines.loop.live import (
    BLOCK,
    REVERSALS,
    LiveState,
    decision_id,
    due_reversals,
    load_state,
    load_touched,
    rebase,
    state_objects,
    update,
)
from tests.loop.test_live import (
    NOW,
    START,
    _commit,
    _daily,
    _touched_equal,
    assert_scorecards_recount,
    recomputed_counts,
    run,
    stream,
)

REVOKED_AT = NOW + timedelta(minutes=5)


def _reversal(state: LiveState, annotator: str, decision: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "project": [state.project],
            "annotator_id": [annotator],
            "decision_id": [decision],
            "revoked_at": [REVOKED_AT],
            "revoked_by": ["lead@example.org"],
        },
        schema=REVERSALS,
    )


def _blocked_spammer() -> tuple[LiveState, pl.DataFrame, str]:
    """(the state after s00 was blocked, the judgments not fed yet, the block's decision)."""
    judgments, _ = stream(n_tasks=600, spammer_from=300)
    # Up to task 449: s00 has 150 judgments by then, well past the block.
    cut = judgments.with_row_index("n").filter(pl.col("task_id") == "t0450")["n"].min()
    assert isinstance(cut, int)
    state, events = run(judgments.head(cut), batch=200)
    actions = pl.concat([e.annotator_actions for e in events])
    assert actions["annotator_id"].to_list() == ["s00"]
    return state, judgments.slice(cut), actions["decision_id"].item()


def _card(state: LiveState, annotator: str = "s00") -> dict[str, object]:
    return state.annotators.filter(pl.col("annotator_id") == annotator).row(0, named=True)


def test_a_reversed_block_counts_the_votes_again_and_needs_new_evidence_to_block_again():
    state, rest, first_block = _blocked_spammer()
    held = state.ledger.filter(pl.col("annotator_id") == "s00").height
    assert state.tasks["n_votes"].sum() == state.ledger.height - held

    unblocked, events = update(state, rest.head(0), reversals=_reversal(state, "s00", first_block))
    assert events.unblocked == ("s00",)
    assert unblocked.version == state.version + 1
    card = _card(unblocked)
    assert not card["blocked"] and card["blocked_reason"] is None
    assert card["unblocked_at"] == REVOKED_AT
    assert card["n_flagged"] == 0 and card["n_judgments"] == held
    # Their votes count again in the posteriors of every task they touched.
    assert not unblocked.ledger["flagged"].any()
    assert unblocked.tasks["n_votes"].sum() == unblocked.ledger.height
    np.testing.assert_allclose(unblocked.counts, recomputed_counts(unblocked), atol=1e-6)
    assert_scorecards_recount(unblocked)
    # The same old judgments, past the rules as they are, block no one at once.
    assert events.annotator_actions.height == 0

    # The same reversal read again (the overlap, a retried run): nothing to do.
    again, repeat = update(unblocked, rest.head(0), reversals=_reversal(state, "s00", first_block))
    assert repeat.unblocked == () and again.version == unblocked.version
    # A retried run from the state before it gives the same state.
    retried, _ = update(state, rest.head(0), reversals=_reversal(state, "s00", first_block))
    assert retried.annotators.equals(unblocked.annotators)

    # Fewer than 30 judgments after the reversal block no one, however bad.
    spam = rest.with_row_index("n").filter(pl.col("annotator_id") == "s00")
    twentieth = spam["n"][19]
    few = rest.head(twentieth + 1)
    after_few, few_events = update(unblocked, few)
    assert few_events.annotator_actions.height == 0
    assert not _card(after_few)["blocked"]
    # Past 30 new judgments the rules decide again: a new block, a new decision.
    later = after_few
    blocks = []
    for start in range(twentieth + 1, rest.height, 100):
        later, event = update(later, rest.slice(start, 100))
        blocks.append(event.annotator_actions)
    actions = pl.concat(blocks)
    assert actions["annotator_id"].to_list() == ["s00"]
    assert actions["decision_id"].item() != first_block
    evidence = actions["evidence"].str.json_decode().struct.unnest()
    # The new block's evidence is the window since the reversal, not the whole history.
    assert 30 <= evidence["n_judgments"].item() < spam.height
    card = _card(later)
    assert card["blocked"] and card["block_decision_id"] == actions["decision_id"].item()
    assert later.ledger.filter(pl.col("annotator_id") == "s00")["flagged"].all()
    np.testing.assert_allclose(later.counts, recomputed_counts(later), atol=1e-6)
    # The first block's reversal, read once more, does not undo the second block.
    still, none = update(later, rest.head(0), reversals=_reversal(state, "s00", first_block))
    assert none.unblocked == () and _card(still)["blocked"]


def test_a_reversal_for_an_annotator_never_blocked_changes_nothing():
    state, rest, _ = _blocked_spammer()
    after, events = update(state, rest.head(0), reversals=_reversal(state, "w01", "not-a-block"))
    assert events.unblocked == () and after.version == state.version


def test_an_unblock_through_a_partly_loaded_state_matches_the_whole_state():
    """The live run loads only its batch's tasks: the reversal reads the annotator's other
    tasks from the lake, and gives what the whole state gives."""
    state, rest, first_block = _blocked_spammer()
    store: dict[str, bytes] = {}
    _commit(store, state_objects(state))
    reversal = _reversal(state, "s00", first_block)
    batch = rest.head(50)
    partial = load_touched("p", store.get, judgments=batch)
    assert partial.stored is not None
    partial, partial_events = update(partial, batch, reversals=reversal, now=NOW)
    whole, whole_events = update(load_state("p", store.get), batch, reversals=reversal, now=NOW)
    assert partial_events.unblocked == whole_events.unblocked == ("s00",)
    _touched_equal(partial, whole)
    _commit(store, state_objects(partial, store.get))
    stored = load_state("p", store.get)
    _touched_equal(stored, whole)
    assert not stored.ledger["flagged"].any()
    assert _card(stored)["unblocked_at"] == REVOKED_AT


def test_a_block_revoked_before_its_run_committed_is_lifted_by_the_retry():
    """The DB write comes before the lake commit: a run that wrote a block and failed to
    commit is retried, and the tool may have revoked the block in between. The retry decides
    the same block (same decision) and lifts it in the same run."""
    judgments, _ = stream(n_tasks=600, spammer_from=300)
    state, blocking = LiveState(project="p"), None
    for start in range(0, judgments.height, 200):
        batch = judgments.slice(start, 200)
        after, event = update(state, batch, now=NOW)
        if event.annotator_actions.height:
            blocking = (state, batch, event.annotator_actions["decision_id"].item())
            break
        state = after
    assert blocking is not None
    before, batch, decision = blocking
    retried, events = update(before, batch, now=NOW, reversals=_reversal(before, "s00", decision))
    assert events.annotator_actions["decision_id"].to_list() == [decision]
    assert events.unblocked == ("s00",)
    assert not _card(retried)["blocked"]
    assert not retried.ledger["flagged"].any()
    np.testing.assert_allclose(retried.counts, recomputed_counts(retried), atol=1e-6)


def test_a_run_loads_a_project_only_for_a_reversal_that_lifts_a_block_in_force():
    """The stream's overlap reads a reversal again for a while: the run does not load and
    rewrite the project for it, nor make a state for a project that has none."""
    state, rest, first_block = _blocked_spammer()
    store: dict[str, bytes] = {}
    _commit(store, state_objects(state))
    valid = _reversal(state, "s00", first_block)
    read = pl.concat(
        [
            valid,
            _reversal(state, "w01", "not-a-block"),
            _reversal(LiveState(project="ghost"), "s00", first_block),
            _reversal(state, "s00", "an-earlier-block"),
        ]
    )
    assert due_reversals(read, store.get).equals(valid)
    lifted, _ = update(state, rest.head(0), reversals=valid, now=NOW)
    _commit(store, state_objects(lifted, store.get))
    assert due_reversals(read, store.get).height == 0
    # A block the next version decides again (a retried run) keeps its reversal.
    retried = _reversal(state, "w02", decision_id(BLOCK, "p", "w02", lifted.version + 1))
    assert due_reversals(retried, store.get).equals(retried)


def test_a_block_from_a_state_stored_before_decisions_were_kept_is_lifted():
    """States stored before this change hold blocks without their decision: the reversal of
    the annotator's block lifts it, whatever decision the tool names."""
    state, rest, first_block = _blocked_spammer()
    store: dict[str, bytes] = {}
    _commit(store, state_objects(state))
    key = "live/p/annotators.parquet"
    older = pl.read_parquet(io.BytesIO(store[key])).drop(
        "block_decision_id",
        "unblocked_at",
        "base_n_judgments",
        "base_n_gold",
        "base_n_gold_correct",
        "base_confusion",
    )
    buffer = io.BytesIO()
    older.write_parquet(buffer)
    store[key] = buffer.getvalue()
    loaded = load_state("p", store.get)
    assert _card(loaded)["blocked"] and _card(loaded)["block_decision_id"] is None
    lifted, events = update(loaded, rest.head(0), reversals=_reversal(state, "s00", first_block))
    assert events.unblocked == ("s00",) and not lifted.ledger["flagged"].any()


def test_the_days_rebase_keeps_the_reversal_and_counts_the_unflagged_votes():
    state, rest, first_block = _blocked_spammer()
    lifted, _ = update(state, rest.head(0), reversals=_reversal(state, "s00", first_block))
    judgments, _ = stream(n_tasks=600, spammer_from=300)
    day = START.date().isoformat()
    held = judgments.join(lifted.ledger.select("judgment_id"), on="judgment_id", how="semi")
    rebased, _ = rebase(lifted, _daily(held, day), day, now=NOW)
    assert _card(rebased)["unblocked_at"] == REVOKED_AT and not _card(rebased)["blocked"]
    np.testing.assert_allclose(rebased.counts, recomputed_counts(rebased), atol=1e-6)
    assert_scorecards_recount(rebased)
