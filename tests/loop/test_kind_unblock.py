"""Reversing a block in a kind's live state, as the categorical engine does: the annotator's
judgments count again, the evidence window starts over (only judgments after the reversal
can block them again), re-reading the same reversal changes nothing, and a full fit adopted
after the reversal does not block them again."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta

import polars as pl

from annotation_pipelines.loop.live import REVERSALS, decision_id
from annotation_pipelines.loop.live_kinds import (
    ANNOTATORS,
    KIND_REVERSALS,
    KindLiveOptions,
    KindState,
    adopt_fit,
    due_kind_reversals,
    fit_snapshot,
    kind_prefix,
    load_kind_state,
    update_kind,
)
from tests.loop.test_live_kinds import NOW, _synthetic
from tests.loop.test_live_kinds_fit import _stored

REVOKED_AT = NOW + timedelta(minutes=5)
OPTIONS = KindLiveOptions(full_fit_every=5)


def _reversal(state: KindState, annotator: str, decision: str) -> pl.DataFrame:
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


def _blocked_spammer() -> tuple[KindState, pl.DataFrame, pl.DataFrame, str, str]:
    """(the state once the text spammer was blocked, the judgments not fed yet, the gold, the
    spammer, the block's decision)."""
    rows, gold, spammer = _synthetic("text", 1200)
    state = KindState(project="transcripts", kind="text")
    for start in range(0, rows.height, 100):
        state, events = update_kind(
            state, rows.slice(start, 100), gold if start == 0 else None, OPTIONS, now=NOW
        )
        if events.annotator_actions.height:
            assert events.annotator_actions["annotator_id"].to_list() == [spammer]
            decision = events.annotator_actions["decision_id"].item()
            return state, rows.slice(start + 100), gold, spammer, decision
    raise AssertionError("the spammer was never blocked")


def _card(state: KindState, annotator: str) -> dict[str, object]:
    return state.annotators.filter(pl.col("annotator_id") == annotator).row(0, named=True)


def test_a_reversed_kind_block_counts_the_votes_again_and_needs_new_evidence_to_block_again():
    state, rest, _, spammer, first_block = _blocked_spammer()
    assert _card(state, spammer)["block_decision_id"] == first_block
    held = state.ledger.filter(pl.col("annotator_id") == spammer).height
    assert state.tasks["n_votes"].sum() == state.ledger.height - held
    reversal = _reversal(state, spammer, first_block)

    lifted, events = update_kind(state, rest.head(0), None, OPTIONS, reversals=reversal, now=NOW)
    assert events.unblocked == (spammer,)
    assert lifted.version == state.version + 1
    card = _card(lifted, spammer)
    assert not card["blocked"] and card["blocked_reason"] is None
    assert card["block_decision_id"] is None and card["unblocked_at"] == REVOKED_AT
    assert card["n_flagged"] == 0 and card["n_judgments"] == held
    # Their votes count again in every task they touched.
    assert not lifted.ledger["flagged"].any()
    assert lifted.tasks["n_votes"].sum() == lifted.ledger.height
    # The same old judgments, past the rules as they are, block no one at once.
    assert events.annotator_actions.height == 0

    # The same reversal read again (the overlap, a retried run): nothing to do.
    again, repeat = update_kind(lifted, rest.head(0), None, OPTIONS, reversals=reversal, now=NOW)
    assert repeat.unblocked == () and again.version == lifted.version
    # A retried run from the state before it gives the same state.
    retried, _ = update_kind(state, rest.head(0), None, OPTIONS, reversals=reversal, now=NOW)
    assert retried.annotators.equals(lifted.annotators)

    # Fewer judgments after the reversal than the minimum block no one, however bad.
    spam = rest.with_row_index("n").filter(pl.col("annotator_id") == spammer)
    assert spam.height > 2 * OPTIONS.min_judgments
    last_few = spam["n"][OPTIONS.min_judgments - 2]
    after_few, few_events = update_kind(lifted, rest.head(last_few + 1), None, OPTIONS, now=NOW)
    assert few_events.annotator_actions.height == 0
    assert not _card(after_few, spammer)["blocked"]
    # Past the minimum the rules decide again: a new block, a new decision, written once.
    later, blocks = after_few, []
    for start in range(last_few + 1, rest.height, 100):
        later, event = update_kind(later, rest.slice(start, 100), None, OPTIONS, now=NOW)
        blocks.append(event.annotator_actions)
    actions = pl.concat(blocks)
    assert actions["annotator_id"].to_list() == [spammer]
    assert actions["decision_id"].item() != first_block
    evidence = actions["evidence"].str.json_decode().struct.unnest()
    # The new block's evidence is the window since the reversal, not the whole history.
    assert OPTIONS.min_judgments <= evidence["n_judgments"].item() < held + spam.height
    assert evidence["n_judgments"].item() <= spam.height
    assert evidence["since"].item() == REVOKED_AT.isoformat()
    card = _card(later, spammer)
    assert card["blocked"] and card["block_decision_id"] == actions["decision_id"].item()
    assert later.ledger.filter(pl.col("annotator_id") == spammer)["flagged"].all()
    # The first block's reversal, read once more, does not undo the second block.
    still, none = update_kind(later, rest.head(0), None, OPTIONS, reversals=reversal, now=NOW)
    assert none.unblocked == () and _card(still, spammer)["blocked"]


def test_a_kind_reversal_of_another_project_or_block_changes_nothing():
    state, rest, _, spammer, first_block = _blocked_spammer()
    for reversal in (
        _reversal(state, "nobody", "not-a-block"),
        _reversal(state, spammer, "an-earlier-block"),
        _reversal(KindState(project="ghost", kind="text"), spammer, first_block),
    ):
        after, events = update_kind(state, rest.head(0), None, OPTIONS, reversals=reversal, now=NOW)
        assert events.unblocked == () and after.version == state.version


def test_a_full_fit_adopted_after_the_reversal_does_not_block_again():
    """A full fit of a snapshot taken while the block was in force, adopted after the live
    run lifted it: the lift stands, and the fit's evidence (from before the reversal) blocks
    no one."""
    state, rest, _, spammer, first_block = _blocked_spammer()
    fit = fit_snapshot(state, OPTIONS, now=NOW)
    assert _card(fit.fitted, spammer)["blocked"]
    # The live asset's setting: a due full fit is left to the maintenance job.
    deferred = replace(OPTIONS, inline_full_fits=False)
    lifted, _ = update_kind(
        state,
        rest.head(0),
        None,
        deferred,
        reversals=_reversal(state, spammer, first_block),
        now=NOW,
    )
    assert lifted.fitted_version == state.fitted_version
    adopted = adopt_fit(fit, lifted, deferred, now=NOW)
    assert adopted is not None
    after, events = adopted
    assert spammer not in events.annotator_actions["annotator_id"].to_list()
    card = _card(after, spammer)
    assert not card["blocked"] and card["unblocked_at"] == REVOKED_AT
    assert not after.ledger["flagged"].any()
    assert after.tasks["n_votes"].sum() == after.ledger.height


def test_a_kind_block_stored_before_decisions_were_kept_is_lifted_by_its_own_decision():
    """States stored before this change hold blocks without their decision: the kind's block
    decided at the annotator's version is the one a reversal must name (another kind's
    block of the same annotator does not lift it)."""
    state, rest, _, spammer, first_block = _blocked_spammer()
    store: dict[str, bytes] = {}
    stored = _stored(state, store)
    key = f"{kind_prefix(state.project, state.kind)}/annotators.parquet"
    older = pl.read_parquet(io.BytesIO(store[key])).drop(
        "block_decision_id", "unblocked_at", *[c for c in ANNOTATORS if c.startswith("base_")]
    )
    buffer = io.BytesIO()
    older.write_parquet(buffer)
    store[key] = buffer.getvalue()
    loaded = load_kind_state(state.project, state.kind, store.get)
    assert _card(loaded, spammer)["blocked"] and _card(loaded, spammer)["block_decision_id"] is None
    other = decision_id("numeric_block", state.project, spammer, _card(loaded, spammer)["version"])
    kept, none = update_kind(
        loaded, rest.head(0), None, OPTIONS, reversals=_reversal(state, spammer, other), now=NOW
    )
    assert none.unblocked == () and _card(kept, spammer)["blocked"]
    lifted, events = update_kind(
        loaded,
        rest.head(0),
        None,
        OPTIONS,
        reversals=_reversal(state, spammer, first_block),
        now=NOW,
    )
    assert events.unblocked == (spammer,) and not lifted.ledger["flagged"].any()
    # Stored and loaded again, the lift stands.
    again = _stored(lifted, store)
    assert not _card(again, spammer)["blocked"] and not again.ledger["flagged"].any()
    assert _card(again, spammer)["unblocked_at"] == REVOKED_AT
    assert stored.version == state.version


def test_a_kind_block_revoked_before_its_run_committed_is_lifted_by_the_retry():
    """The DB write comes before the lake commit: a run that wrote a block and failed to
    commit is retried, and the tool may have revoked the block in between. The retry decides
    the same block (same decision) and lifts it in the same run."""
    rows, gold, spammer = _synthetic("text", 1200)
    before, blocking = KindState(project="transcripts", kind="text"), None
    for start in range(0, rows.height, 100):
        batch = rows.slice(start, 100)
        after, events = update_kind(before, batch, gold if start == 0 else None, OPTIONS, now=NOW)
        if events.annotator_actions.height:
            blocking = (batch, gold if start == 0 else None, events.annotator_actions)
            break
        before = after
    assert blocking is not None
    batch, batch_gold, actions = blocking
    decision = actions["decision_id"].item()
    reversal = _reversal(before, spammer, decision)
    retried, events = update_kind(before, batch, batch_gold, OPTIONS, reversals=reversal, now=NOW)
    assert events.annotator_actions["decision_id"].to_list() == [decision]
    assert events.unblocked == (spammer,)
    assert not _card(retried, spammer)["blocked"] and not retried.ledger["flagged"].any()
    assert retried.tasks["n_votes"].sum() == retried.ledger.height


def test_a_run_loads_a_kind_state_only_for_a_reversal_that_lifts_a_block_in_force():
    """The stream's overlap reads a reversal again for a while: the run does not load and
    rewrite the kind state for it, nor for a kind or project with no state."""
    state, rest, _, spammer, first_block = _blocked_spammer()
    store: dict[str, bytes] = {}
    _stored(state, store)
    valid = _reversal(state, spammer, first_block).with_columns(kind=pl.lit("text"))
    read = pl.concat(
        [
            valid,
            _reversal(state, "nobody", "not-a-block").with_columns(kind=pl.lit("text")),
            _reversal(state, spammer, first_block).with_columns(kind=pl.lit("spans")),
            _reversal(KindState(project="ghost", kind="text"), spammer, first_block).with_columns(
                kind=pl.lit("text")
            ),
        ]
    ).select(list(KIND_REVERSALS))
    assert due_kind_reversals(read, store.get).equals(valid)
    lifted, _ = update_kind(
        state, rest.head(0), None, OPTIONS, reversals=valid.drop("kind"), now=NOW
    )
    _stored(lifted, store)
    assert due_kind_reversals(read, store.get).height == 0
    # A block the next version decides again (a retried run) keeps its reversal.
    again = decision_id("text_block", state.project, "w02", lifted.version + 1)
    retried = _reversal(state, "w02", again).with_columns(kind=pl.lit("text"))
    assert due_kind_reversals(retried, store.get).equals(retried)
