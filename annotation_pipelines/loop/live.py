"""Near-real-time quality: running scorecards and per-task posteriors, updated incrementally.

`update(state, new_judgments, gold, options)` folds a batch of newly arrived judgments into a
project's `LiveState` and returns the new state and what it caused (task requests, block
actions, alerts). Nothing is recomputed from the whole history:

- **Sufficient statistics carried forward.** Per annotator, the soft confusion counts
  `counts[answer, truth]` (Σ over their judgments of the task's posterior); per project, the
  class counts (Σ of task posteriors); per task, its posterior and active vote count.
- **Incremental, warm-started EM** (Neal & Hinton's incremental EM). Only the tasks touched by
  the batch (new votes, new gold, or a newly blocked annotator's votes) are refitted: their
  old contributions are subtracted from the counts, a few EM sweeps run over their votes only,
  starting from their previous posteriors, and their new contributions are added back. Each
  task's posterior reads confusion matrices with that task's own contribution left out (the
  cross-fitting of `aggregation.calibration`, exact and free here) under a Dirichlet prior
  (one pseudo-count per cell plus one on the diagonal: annotators better than chance), so a
  task never vouches for itself and two votes do not make a certainty.
- **Exactly once.** Every judgment is kept in a ledger keyed by `judgment_id` with the
  `updated_at` it was read at; a re-read of the same version is dropped, a newer version
  (a resubmission) replaces the old one and its task is refitted, and a newer version that
  changes nothing is dropped too. Each row names its `source` (an export file, or null for
  the DB): when a file is read again after an edit (`resynced`), the judgments whose newest
  version came from it and that it no longer holds are withdrawn and their tasks refitted; a
  judgment whose newest version came from the DB and that the DB then deleted (a tombstone
  newer than that version, `deleted`) is withdrawn the same way, and so is one a newer DB
  version filed under another project or kind (the DB keys a judgment by its id alone, so the
  newest version wins across states: `loop.moves` dates a tombstone by it).
  Gold is withdrawn alike: each task's gold names the files that give it (`gold_sources`;
  null when the DB gives it), and gold that no file gives any more leaves the task, whose
  posterior is refitted from its votes and whose annotators' gold counts are recounted.
- **An append-only ledger and tasks table.** On the lake the ledger is a list of segments:
  each update commits one new segment with the rows it folded in (tombstones for withdrawn
  ones), in the same commit as the rest of the state, and a size-tiered compaction
  (`LedgerCompaction`, as in LSM-tree stores) merges segments, so a run writes what it read,
  not the whole day. The tasks table is kept the same way (a segment of the tasks each
  update changed). The scorecards' counts are carried per annotator like the confusion
  counts, so an update needs only the rows of the tasks it touched.
- **Reads by task.** Segments are sorted by task in small Parquet row groups, and each ledger
  segment has an id index sorted by judgment. A live run loads only its batch's part of the
  state (`load_touched`): the annotators table, and the ledger and tasks rows of the tasks
  its batch touches, found through the row groups' min/max statistics (the id index answers
  exactly once's "is this version held?" for the batch's ids; the segment's sorted id
  fingerprints, `.ids.fp`, answer "does another project hold it?" for a judgment the DB moved,
  without reading the index's row groups that random ids all fall in; each tasks segment's
  `.gold.fp` answers the same for the DB's gold on a task). Merges larger than
  `max_inline_rows` are left to a maintenance run (`plan_merge` builds one without the live
  lock, `merge_objects` commits it against the listing stored then), so the day's largest
  merges are off the live latency.

Running scorecards per annotator: gold accuracy with a Wilson bound, soft agreement with the
current consensus (Σ posterior of their answer / judgments) with a Wilson bound, the
Raykar–Yu spammer score on the soft confusion counts (as in `quality.scorecards`), mean seconds
per judgment. An annotator whose gold accuracy is confidently below `min_gold_accuracy`, or who
looks like a spammer (score above `max_spammer_score` and agreement confidently below
`min_agreement` over at least `min_judgments` judgments compared with the consensus), after
at least `min_judgments`, is blocked at once: a block action, an
alert, and their judgments flagged and taken out of every posterior in the same update.
A block the annotation tool revoked (`reversals`) is lifted by the next update: their
judgments are unflagged and every task they voted on refitted, and the rules then read only
what came after the reversal (the carried counts less their values then), so the same old
judgments do not block them again at once; a later block is a decision of its own.

Task requests come from the adaptive policy (`loop.policy.decide`) on the tasks the update
touched, so a task is asked about once per change of its evidence, not once per tick. Every
decision carries `decision_id` = sha256(kind, project, task or annotator, state version): a
retried update of the same version yields the same ids, and the annotation DB's unique
constraint keeps one row per decision.

Judgments come from the annotation DB's change stream and from landing-zone export files
(`file_rows`: a file's rows are stamped with the moment its content was read; the asset reads
a file once per content hash, `content_hash`).

End of day: `rebase` puts each task of a day on that day's daily aggregation (the record of
truth) when the daily fit saw exactly the votes the live state holds for it, and recounts the
carried statistics, so the live labels and the daily labels agree on every task of the day.

The engine never imports dagster; `state_objects` / `load_state` (whole) / `load_touched`
(part) turn a state into the lake's `live/<project>/...` objects (and the segments a
compaction deletes) and back.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from annotation_pipelines.aggregation.calibration import beat_chance_pseudo_counts
from annotation_pipelines.aggregation.result import best_in_label_order
from annotation_pipelines.ingest.postgres import DELETIONS, EXTRACT_COLUMNS, GOLD_DELETIONS
from annotation_pipelines.ingest.validation import is_safe_project
from annotation_pipelines.kinds import of_kind
from annotation_pipelines.loop import ledger as lake_ledger
from annotation_pipelines.loop.policy import (
    ESCALATE,
    NEEDS_ANOTHER_JUDGMENT,
    RECOMMENDED,
    PolicyOptions,
    decide,
)
from annotation_pipelines.quality._common import wilson_bounds
from annotation_pipelines.schema import UTC_TIMESTAMP

LIVE_PREFIX = "live"
ANOTHER_JUDGMENT = "another_judgment"
EXPERT_REVIEW = "expert_review"
BLOCK = "block"
_FLOOR = 1e-300

LEDGER: dict[str, pl.DataType] = {
    "judgment_id": pl.String(),
    "task_id": pl.String(),
    "annotator_id": pl.String(),
    "label": pl.String(),
    "submitted_at": UTC_TIMESTAMP,
    "duration_s": pl.Float64(),
    "updated_at": UTC_TIMESTAMP,
    "flagged": pl.Boolean(),
    "version": pl.Int64(),
    "source": pl.String(),  # the export file that gave this version; null: the DB
}
# Columns an incoming batch must have (the rest the engine sets; `source` may be absent).
_INPUT = tuple(c for c in LEDGER if c not in ("flagged", "version", "source"))
TASKS: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "label": pl.String(),
    "confidence": pl.Float64(),
    "n_votes": pl.Int64(),
    "posterior": pl.List(pl.Float64()),
    "gold": pl.String(),
    # The export files that give `gold`; null: the DB, or a state written before sources were
    # recorded (no file edit withdraws it). See `ledger.gold_batch`.
    "gold_sources": lake_ledger.GOLD_SOURCES,
    "version": pl.Int64(),
}
SCORECARD: dict[str, pl.DataType] = {
    "n_judgments": pl.Int64(),
    "n_flagged": pl.Int64(),
    "n_gold": pl.Int64(),
    "n_gold_correct": pl.Int64(),
    "gold_accuracy": pl.Float64(),
    "gold_accuracy_upper": pl.Float64(),
    "agreement": pl.Float64(),
    "agreement_upper": pl.Float64(),
    # The judgments `agreement` and `spammer_score` read (`shared_confusion`): those on tasks
    # someone else's active vote or gold also decides.
    "n_consensus_compared": pl.Int64(),
    "spammer_score": pl.Float64(),
    "mean_duration_s": pl.Float64(),
}
ANNOTATORS: dict[str, pl.DataType] = {
    "annotator_id": pl.String(),
    "confusion": pl.List(pl.Float64()),  # K×K soft counts, row-major [answer, truth]
    # The same counts over the judgments on tasks with another annotator's active vote or with
    # gold: a lone vote's posterior is mostly that vote, so the scorecard, which reads these,
    # would count it as agreeing with itself. Null in a state stored before they were kept:
    # read as `confusion` until the next re-base recounts them.
    "shared_confusion": pl.List(pl.Float64()),
    **SCORECARD,
    # Carried with the counts above: mean_duration_s = duration_total / n_durations.
    "duration_total": pl.Float64(),
    "n_durations": pl.Int64(),
    "blocked": pl.Boolean(),
    "blocked_reason": pl.String(),
    # The decision of the block in force (null: none, or one from before it was recorded):
    # only a reversal of that decision lifts it.
    "block_decision_id": pl.String(),
    # The last reversal of a block (the tool's `revoked_at`) and the carried counts then: a
    # new block reads the counts since (`_window_cards`), not the judgments already judged.
    "unblocked_at": UTC_TIMESTAMP,
    "base_n_judgments": pl.Int64(),
    "base_n_gold": pl.Int64(),
    "base_n_gold_correct": pl.Int64(),
    "base_confusion": pl.List(pl.Float64()),
    "base_shared_confusion": pl.List(pl.Float64()),
    "version": pl.Int64(),
}
# A block the annotation tool reversed (`annotator_actions.status = 'revoked'`).
REVERSALS: dict[str, pl.DataType] = {
    "project": pl.String(),
    "annotator_id": pl.String(),
    "decision_id": pl.String(),
    "revoked_at": UTC_TIMESTAMP,
    "revoked_by": pl.String(),
}
VERSIONS: dict[str, pl.DataType] = {
    "version": pl.Int64(),
    "watermark": UTC_TIMESTAMP,
    "applied_at": UTC_TIMESTAMP,
    "judgments": pl.Int64(),
    "withdrawn": pl.Int64(),
}
TASK_REQUESTS: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "request": pl.String(),
    "reason": pl.String(),
    "confidence": pl.Float64(),
    "posterior": pl.String(),  # JSON {label: probability}
    "decision_id": pl.String(),
    "created_at": UTC_TIMESTAMP,
}
ANNOTATOR_ACTIONS: dict[str, pl.DataType] = {
    "annotator_id": pl.String(),
    "project": pl.String(),
    "action": pl.String(),
    "reason": pl.String(),
    "evidence": pl.String(),  # JSON of the scorecard that caused it
    "decision_id": pl.String(),
    "created_at": UTC_TIMESTAMP,
}


@dataclass(frozen=True, kw_only=True)
class LiveOptions:
    """Thresholds of the running quality checks and the EM settings.

    An annotator is blocked only with `min_judgments` judgments (and `min_gold` gold answers for
    the gold rule, `min_judgments` judgments compared with the consensus for the agreement
    rule) and when the `confidence` Wilson bound, not the point estimate, is past the
    threshold, so one bad answer blocks no one.
    """

    min_judgments: int = 30
    min_gold: int = 10
    min_gold_accuracy: float = 0.6
    max_spammer_score: float = 0.8
    min_agreement: float = 0.6
    confidence: float = 0.95
    iterations: int = 3
    pseudo_count: float = 1.0
    diagonal_pseudo_count: float = 1.0
    # The replay's recommendation (three votes to start, up to thirty, done at 0.99): what the
    # replays measured against Dawid–Skene on all the judgments, where 0.98 / 15 stopped short.
    policy: PolicyOptions = RECOMMENDED


# A ledger segment's rows: the ledger's columns but `flagged` (a block flags every row of an
# annotator, old segments included, so it is derived from the annotators table on load), plus
# `replaces` (an earlier version of this judgment may sit in an older segment) and `deleted`
# (a tombstone: the judgment was withdrawn).
SEGMENT: dict[str, pl.DataType] = {
    **{c: t for c, t in LEDGER.items() if c != "flagged"},
    "replaces": pl.Boolean(),
    "deleted": pl.Boolean(),
}


@dataclass(frozen=True, kw_only=True)
class Segment:
    """One committed segment: the rows of the state versions `first`..`last`. An `indexed`
    ledger segment has an id index next to it (`_index_key`); a `golden` tasks segment the
    fingerprints of its tasks holding the DB's gold (`ledger.gold_fingerprints_key`)."""

    key: str
    rows: int
    first: int
    last: int
    indexed: bool = False
    golden: bool = False

    def as_json(self) -> dict[str, object]:
        listed: dict[str, object] = {
            "key": self.key,
            "rows": self.rows,
            "first": self.first,
            "last": self.last,
            "indexed": self.indexed,
        }
        if self.golden:
            listed["golden"] = True
        return listed


@dataclass(frozen=True, kw_only=True)
class LedgerCompaction:
    """When a commit merges ledger segments: size-tiered, in the manner of Lucene's log merge
    policy and of LSM-tree stores.

    A segment's level is its size class: level 0 under `base_rows` × `fan_in` rows, each
    level `fan_in` times larger than the one below. When the newest `fan_in` segments are of
    one level they are merged into one; a segment larger than those before it is merged with
    them at once, so levels never grow from older to newer segments. A row is rewritten about
    once per level it climbs (log_fan_in of the ledger's size over a run's: 3–5 times in a
    day at 200 judgments/s), and a project holds at most `fan_in` − 1 segments per level,
    where rewriting the whole ledger every run made a day quadratic.

    A merge of more than `max_inline_rows` rows is not done by the run whose commit makes it
    due but left to a maintenance run (`plan_merge` / `merge_objects`), so the largest merges
    of a day (millions of rows) are off the live runs' latency; None: every merge inline.
    """

    fan_in: int = 8
    base_rows: int = 1024
    max_inline_rows: int | None = None

    def __post_init__(self) -> None:
        if self.fan_in < 2 or self.base_rows < 1:
            raise ValueError(
                f"fan_in={self.fan_in}, base_rows={self.base_rows}: merge at least 2 segments "
                "of at least one row"
            )
        if self.max_inline_rows is not None and self.max_inline_rows < 1:
            raise ValueError(f"max_inline_rows={self.max_inline_rows}: use None or at least 1")

    def level(self, rows: int) -> int:
        return lake_ledger.level(rows, base_rows=self.base_rows, fan_in=self.fan_in)


# What the live layer runs with: merges of up to ~150,000 rows (a tenth of a second or so)
# inline, the larger ones (a few a day, up to millions of rows) by the maintenance job.
LIVE_COMPACTION = LedgerCompaction(max_inline_rows=150_000)


def _empty_segment() -> pl.DataFrame:
    return pl.DataFrame(schema=SEGMENT)


@dataclass(frozen=True, kw_only=True)
class LiveState:
    """One project's running state. `counts` / `prior_counts` are the carried statistics.

    `ledger` is every judgment folded in (its newest version); on the lake it is a list of
    append-only `segments` plus the rows of this state not committed yet (`pending`). The
    tasks table is a list of `task_segments` too: the rows changed after version `committed`
    (the version loaded) and the `removed_tasks` are what the next commit appends.

    A state loaded by `load_touched` holds, in `ledger` and `tasks`, only the rows of the
    tasks its batch touches (`stored` reads more: a block needs its annotator's tasks); one
    from `load_state` or built in memory holds them all (`stored` is None).
    """

    project: str
    labels: tuple[str, ...] = ()
    version: int = 0
    watermark: datetime | None = None
    prior_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ledger: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=LEDGER))
    tasks: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TASKS))
    annotators: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ANNOTATORS))
    versions: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=VERSIONS))
    segments: tuple[Segment, ...] = ()
    pending: pl.DataFrame = field(default_factory=_empty_segment)
    task_segments: tuple[Segment, ...] = ()
    committed: int = 0
    removed_tasks: frozenset[str] = frozenset()
    stored: StoredState | None = None

    @property
    def counts(self) -> np.ndarray:
        """(annotators, K answer, K truth) soft confusion counts, in `annotators` order."""
        k = len(self.labels)
        if self.annotators.height == 0:
            return np.zeros((0, k, k))
        return _matrices(self.annotators.get_column("confusion"), k)

    @property
    def shared_counts(self) -> np.ndarray:
        """(annotators, K answer, K truth) soft confusion counts of the judgments compared with
        the consensus (`shared_confusion`), in `annotators` order."""
        k = len(self.labels)
        if self.annotators.height == 0:
            return np.zeros((0, k, k))
        shared = self.annotators.select(pl.coalesce("shared_confusion", "confusion"))
        return _matrices(shared.to_series(), k)


def _matrices(column: pl.Series, k: int) -> np.ndarray:
    """A list column of row-major K×K matrices as an (rows, K, K) array."""
    flat = column.list.to_array(k * k).to_numpy()
    return np.asarray(flat, dtype=np.float64).reshape(-1, k, k)


@dataclass(frozen=True)
class LiveEvents:
    """What one update caused: requests for the tool, block actions, alert rows."""

    task_requests: pl.DataFrame
    annotator_actions: pl.DataFrame
    alerts: list[dict[str, object]]
    new_judgments: int = 0
    refitted_tasks: int = 0
    rebased_tasks: int = 0
    withdrawn_judgments: int = 0
    withdrawn_gold: int = 0
    # Tombstones of the batch that withdrew nothing: a judgment or gold never folded in,
    # already withdrawn, or a file's; how many, and their judgment and task ids (a run that
    # hands a tombstone to both engines counts it unknown only when neither withdrew it).
    unknown_deletions: int = 0
    unknown_deleted: frozenset[str] = frozenset()
    unknown_deleted_gold: frozenset[str] = frozenset()
    unblocked: tuple[str, ...] = ()
    # Tasks with new evidence after which the policy wants no request: the write-back withdraws
    # any older open request of theirs, a daily one included (the live lists know only theirs).
    settled_tasks: pl.Series = field(default_factory=lambda: pl.Series("task_id", [], pl.String))


def with_unknown(events: LiveEvents, judgments: frozenset[str], gold: frozenset[str]) -> LiveEvents:
    """`events` with the tombstones that withdrew nothing: judgment ids, gold task ids."""
    return replace(
        events,
        unknown_deletions=len(judgments) + len(gold),
        unknown_deleted=judgments,
        unknown_deleted_gold=gold,
    )


def decision_id(kind: str, project: str, subject: str, version: int) -> str:
    """Stable id of one decision: the same (kind, subject, state version) → the same id."""
    return hashlib.sha256(f"{kind}\x1f{project}\x1f{subject}\x1f{version}".encode()).hexdigest()


def update(
    state: LiveState,
    new_judgments: pl.DataFrame,
    gold: pl.DataFrame | None = None,
    options: LiveOptions | None = None,
    *,
    resynced: Collection[str] = (),
    watermark: datetime | None = None,
    now: datetime | None = None,
    reversals: pl.DataFrame | None = None,
    deleted: pl.DataFrame | None = None,
    deleted_gold: pl.DataFrame | None = None,
) -> tuple[LiveState, LiveEvents]:
    """Fold `new_judgments` (and new `gold` labels) of `state.project` into the state.

    `new_judgments` has `judgment_id`, `task_id`, `annotator_id`, `label`, `submitted_at`,
    `duration_s`, `updated_at` and optionally `source` (the export file it came from; rows of
    other projects, if a `project` column is present, are an error). `gold` has `task_id`,
    `label` and optionally `source` (its export file; null or absent: the DB). `resynced` names
    sources read whole in this batch (an edited export file): a judgment whose newest version
    came from one of them and that is no longer in `new_judgments` is withdrawn, its tasks
    refitted; so is gold one of them gave and no longer gives (`gold`), unless another file
    still gives it or the DB does (`ledger.gold_batch`): the task loses its gold, is refitted
    from its votes, its annotators' gold counts are recounted, and it leaves the state when
    no vote is left either. A different gold answer replaces the earlier one.
    `reversals` (`REVERSALS`) are blocks the tool reversed; each one of a block in force lifts
    it first (`_unblock`), and one already applied or of an earlier block is skipped.
    `deleted` holds the DB's tombstones (`judgment_id`, `updated_at`, `deleted_at`): a judgment the
    DB gave and then deleted is withdrawn like one an edited file dropped (`ledger.deleted`), and so
    is gold the DB gave and deleted (`deleted_gold`: `task_id`; `ledger.gold_deleted`).
    Returns the next state (version + 1 when anything changed) and its events.
    """
    options = options or LiveOptions()
    now = now or datetime.now(UTC)
    _check_project(state.project)
    version = state.version + 1
    unchanged = state
    state, unblocked, unblocked_tasks = _unblock(state, reversals, options, version)
    incoming = _incoming(state, new_judgments)
    withdrawn, unknown = lake_ledger.gone(state.ledger, new_judgments, resynced, deleted)
    batch_gold = _gold_batch(gold)
    # Labels first (padding posteriors leaves the gold alone): a gold answer of the batch that
    # is no label yet is a new answer, since every earlier gold answer became a label.
    padded = _with_labels(state, incoming, batch_gold)
    held = padded.tasks.filter(pl.col("gold").is_not_null()).select("task_id", "gold_sources")
    gold_gone, unknown_gold = lake_ledger.gold_gone(held, batch_gold, resynced, deleted_gold)
    kept_gold, gold_lost = _without_withdrawn_gold(padded.tasks, gold_gone, version)
    gold_rows, relabelled = _new_gold(kept_gold, batch_gold)
    if (
        incoming.height == 0
        and gold_rows.height == 0
        and withdrawn.height == 0
        and kept_gold is padded.tasks
        and not unblocked
    ):
        empty = with_unknown(no_events(), unknown, unknown_gold)
        return replace(unchanged, watermark=watermark or unchanged.watermark), empty
    state = padded
    old_ledger = state.ledger
    added = _ledger_rows(state, incoming, version)
    ledger, pending, replaced = lake_ledger.appended(
        state.ledger, state.pending, added, withdrawn, version
    )
    tasks = _with_gold(kept_gold, gold_rows, version)
    # The tasks whose gold answer changed or went: refitted, their annotators' counts redone.
    regolded = pl.concat([relabelled.get_column("task_id"), gold_lost]).unique()
    affected, only_withdrawn = lake_ledger.affected_tasks(
        incoming, regolded.to_frame(), replaced, withdrawn
    )
    # The rows of the affected tasks, before and after: all the refit and the running
    # counts need, found with one lookup each instead of passes over the whole ledger.
    old_rows = old_ledger.filter(pl.col("task_id").is_in(affected.implode()))
    new_rows = ledger.filter(pl.col("task_id").is_in(affected.implode()))
    fitted = _refit(state, old_rows, new_rows, tasks, affected, options, version)
    fitted = replace(fitted, ledger=ledger, pending=pending)
    fitted = replace(
        fitted,
        annotators=_carry_counts(
            fitted.annotators, plus=(new_rows, fitted.tasks), minus=(old_rows, state.tasks)
        ),
    )
    touched = pl.concat(
        [incoming.get_column("annotator_id"), withdrawn.get_column("annotator_id")]
    ).unique()
    gold_annotators = pl.concat([old_rows, new_rows]).filter(
        pl.col("task_id").is_in(regolded.implode())
    )
    touched = pl.concat([touched, gold_annotators.get_column("annotator_id")]).unique()
    # Every voter of a refitted task gets a fresh card: another's vote can make their lone
    # judgment one compared with the consensus. Blocks still read only the annotators whose
    # own judgments or gold changed.
    voters = pl.concat([touched, new_rows.get_column("annotator_id")]).unique()
    fitted = replace(fitted, annotators=_scorecards(fitted, voters, options))
    fitted, actions, alerts = _block(fitted, touched, options, version, now)
    if actions.height:
        blocked = actions.get_column("annotator_id")
        fitted = _with_tasks_of(fitted, blocked)
        before = fitted.ledger
        flagged = before.with_columns(
            flagged=pl.col("flagged") | pl.col("annotator_id").is_in(blocked.implode())
        )
        their_tasks = before.filter(pl.col("annotator_id").is_in(blocked.implode())).get_column(
            "task_id"
        )
        affected = pl.concat([affected, their_tasks]).unique()
        fitted = _refit(
            fitted, before, flagged, fitted.tasks, their_tasks.unique(), options, version
        )
        fitted = replace(fitted, ledger=flagged)
        fitted = replace(fitted, annotators=_scorecards(fitted, blocked, options))
    lift = partial(_unblock, options=options, version=version)
    fitted, unblocked, unblocked_tasks = lake_ledger.lift_retried(
        fitted, actions, reversals, unblock=lift, unblocked=unblocked, tasks=unblocked_tasks
    )
    affected = pl.concat([affected, unblocked_tasks]).unique()
    remaining, removed = _without_empty_tasks(
        fitted.tasks, pl.concat([only_withdrawn, gold_lost]).unique()
    )
    fitted = replace(fitted, tasks=remaining, removed_tasks=fitted.removed_tasks | removed)
    requests = _requests_after_change(state, fitted, options, now, affected, only_withdrawn)
    versions = pl.concat(
        [
            fitted.versions,
            pl.DataFrame(
                {
                    "version": [version],
                    "watermark": [watermark],
                    "applied_at": [now],
                    "judgments": [incoming.height],
                    "withdrawn": [withdrawn.height],
                },
                schema=VERSIONS,
            ),
        ]
    )
    final = replace(
        fitted, version=version, watermark=watermark or state.watermark, versions=versions
    )
    events = with_unknown(
        LiveEvents(
            task_requests=requests,
            annotator_actions=actions,
            alerts=alerts,
            new_judgments=incoming.height,
            refitted_tasks=affected.len(),
            withdrawn_judgments=withdrawn.height,
            withdrawn_gold=gold_lost.len(),
            unblocked=unblocked,
        ),
        unknown,
        unknown_gold,
    )
    return final, events


def _requests_after_change(
    before: LiveState,
    after: LiveState,
    options: LiveOptions,
    now: datetime,
    affected: pl.Series,
    only_withdrawn: pl.Series,
) -> pl.DataFrame:
    """The policy's requests on the affected tasks. A task that only lost votes (withdrawn
    judgments) is asked about only where the policy's answer changed: it has no new evidence
    that a new request would be about."""
    requests = open_requests(after, options, now=now, tasks=affected)
    if only_withdrawn.len() == 0 or requests.height == 0:
        return requests
    earlier = open_requests(before, options, now=now, tasks=only_withdrawn)
    repeated = requests.filter(pl.col("task_id").is_in(only_withdrawn.implode())).join(
        earlier.select("task_id", "request"), on=["task_id", "request"], how="semi"
    )
    return requests.join(repeated.select("task_id"), on="task_id", how="anti")


def update_projects(
    states: Mapping[str, LiveState],
    judgments: pl.DataFrame,
    gold: pl.DataFrame | None = None,
    options: LiveOptions | None = None,
    *,
    resynced: Mapping[str, Collection[str]] | None = None,
    watermark: datetime | None = None,
    now: datetime | None = None,
    reversals: pl.DataFrame | None = None,
    deleted: pl.DataFrame | None = None,
    deleted_gold: pl.DataFrame | None = None,
) -> tuple[dict[str, LiveState], dict[str, LiveEvents]]:
    """`update` per project present in `judgments` / `gold` (a `project` column each), in
    `resynced` (project → the sources of it read whole), in `reversals` (`REVERSALS`) or in
    `deleted` / `deleted_gold` (the DB's tombstones, with `project`)."""
    resynced = resynced or {}
    projects = (
        set(judgments.get_column("project").unique().to_list()) if judgments.height else set()
    )
    if gold is not None and gold.height:
        projects |= set(gold.get_column("project").unique().to_list())
    projects |= {project for project, sources in resynced.items() if sources}
    if reversals is not None and reversals.height:
        projects |= set(reversals.get_column("project").unique().to_list())
    for tombstones in (deleted, deleted_gold):
        if tombstones is not None and tombstones.height:
            projects |= set(tombstones.get_column("project").unique().to_list())
    next_states = dict(states)
    events: dict[str, LiveEvents] = {}
    for project in sorted(projects):
        state = next_states.get(project) or LiveState(project=project)
        mine = judgments.filter(pl.col("project") == project) if judgments.height else judgments
        their_gold = None if gold is None else gold.filter(pl.col("project") == project)
        next_states[project], events[project] = update(
            state,
            mine,
            their_gold,
            options,
            resynced=resynced.get(project, ()),
            watermark=watermark,
            now=now,
            reversals=reversals,
            deleted=None if deleted is None else deleted.filter(pl.col("project") == project),
            deleted_gold=None
            if deleted_gold is None
            else deleted_gold.filter(pl.col("project") == project),
        )
    return next_states, events


# Incoming rows ------------------------------------------------------------------------------


def _check_project(project: str) -> None:
    if not is_safe_project(project):
        raise ValueError(
            f"project {project!r}: use letters, digits, '.', '_' or '-', no '..', no trailing "
            "'.' and no name Windows keeps for a device (it names lake keys)"
        )


def _incoming(state: LiveState, new: pl.DataFrame) -> pl.DataFrame:
    """New rows not yet in the ledger (one row per judgment, with its `source`).

    A re-read of the version the ledger holds (same `updated_at`) is dropped, and so is a newer
    version that changes nothing (same task, annotator, label, times and source): a re-read
    edited file stamps every row anew, but only its changed rows are new evidence.
    """
    if new.height == 0:
        return pl.DataFrame(schema={c: LEDGER[c] for c in (*_INPUT, "source")})
    lake_ledger.check_project(new, state.project)
    missing = [c for c in _INPUT if c not in new.columns]
    if missing:
        raise ValueError(f"new judgments: missing column(s) {', '.join(missing)}")
    nulls = new.filter(pl.col("annotator_id").is_null() | pl.col("label").is_null())
    if nulls.height:
        field_name = "annotator_id" if nulls.item(0, "annotator_id") is None else "label"
        raise ValueError(f"judgment {nulls.item(0, 'judgment_id')}: field {field_name} is null")
    rows = lake_ledger.newest_versions(new, {c: LEDGER[c] for c in _INPUT})
    return lake_ledger.without_repeats(rows, state.ledger, _repeated)


def _repeated(rows: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
    same = [pl.col(c).eq_missing(pl.col(f"{c}_known")) for c in _CONTENT]
    return rows.join(
        known.select(*_INPUT, "source"), on="judgment_id", how="inner", suffix="_known"
    ).filter((pl.col("updated_at") == pl.col("updated_at_known")) | pl.all_horizontal(same))


# What a judgment says; a newer version equal on all of these changes nothing.
_CONTENT = ("task_id", "annotator_id", "label", "submitted_at", "duration_s", "source")


def _without_empty_tasks(
    tasks: pl.DataFrame, candidates: pl.Series
) -> tuple[pl.DataFrame, frozenset[str]]:
    """`tasks` without the `candidates` that have no vote and no gold left (every judgment of
    theirs was withdrawn): out of the live state, as they would be had they never come; and
    the ids of those removed."""
    if candidates.len() == 0:
        return tasks, frozenset()
    empty = (
        pl.col("task_id").is_in(candidates.implode())
        & (pl.col("n_votes") == 0)
        & pl.col("gold").is_null()
    )
    removed = tasks.filter(empty).get_column("task_id").to_list()
    return tasks.filter(~empty), frozenset(removed)


def _unblock(
    state: LiveState, reversals: pl.DataFrame | None, options: LiveOptions, version: int
) -> tuple[LiveState, tuple[str, ...], pl.Series]:
    """(`state` with the reversed blocks lifted at `version`, the annotators unblocked, the
    tasks refitted). A reversal lifts a block only while that block is in force: once lifted,
    or after a later block of the same annotator, reading it again changes nothing, so the
    overlap of the stream and a retried run apply it once.

    Their judgments are unflagged and every task they voted on is refitted (their votes count
    again); their carried counts then become the base of the next block's evidence."""
    none = pl.Series("task_id", [], pl.String)
    if reversals is None or reversals.height == 0 or state.annotators.height == 0:
        return state, (), none
    due = in_force(state.annotators, reversals.filter(pl.col("project") == state.project))
    if due.height == 0:
        return state, (), none
    ids = due.get_column("annotator_id")
    theirs = pl.col("annotator_id").is_in(ids.implode())
    grown = _with_tasks_of(state, ids)
    # Rows read from the lake just now came unflagged for them: as they were, all flagged.
    before = grown.ledger.with_columns(flagged=pl.col("flagged") | theirs)
    after = before.with_columns(flagged=pl.col("flagged") & ~theirs)
    tasks = before.filter(theirs).get_column("task_id").unique()
    fitted = _refit(grown, before, after, grown.tasks, tasks, options, version)
    annotators = fitted.annotators.with_columns(
        **lift_columns(due),
        **{
            f"base_{c}": pl.when(theirs).then(pl.col(c)).otherwise(f"base_{c}")
            for c in ("n_judgments", "n_gold", "n_gold_correct", "confusion")
        },
        base_shared_confusion=pl.when(theirs)
        .then(pl.coalesce("shared_confusion", "confusion"))
        .otherwise("base_shared_confusion"),
        version=pl.when(theirs).then(pl.lit(version, pl.Int64)).otherwise("version"),
    )
    fitted = replace(fitted, ledger=after, annotators=annotators)
    fitted = replace(fitted, annotators=_scorecards(fitted, ids, options))
    return fitted, tuple(ids.to_list()), tasks


def lift_columns(due: pl.DataFrame) -> dict[str, pl.Expr]:
    """The annotators-table columns of lifting the blocks `due` (from `in_force`): unblocked,
    no reason or decision in force, and `unblocked_at` the reversal's `revoked_at`. Both
    engines lift this way; what else a lift moves (the evidence window's base) is theirs."""
    ids = due.get_column("annotator_id")
    theirs = pl.col("annotator_id").is_in(ids.implode())
    revoked = dict(zip(ids, due.get_column("revoked_at"), strict=True))
    return {
        "blocked": pl.col("blocked") & ~theirs,
        "blocked_reason": pl.when(theirs).then(None).otherwise("blocked_reason"),
        "block_decision_id": pl.when(theirs).then(None).otherwise("block_decision_id"),
        "unblocked_at": pl.when(theirs)
        .then(
            pl.col("annotator_id").replace_strict(
                revoked, default=None, return_dtype=ANNOTATORS["unblocked_at"]
            )
        )
        .otherwise("unblocked_at"),
    }


def in_force(annotators: pl.DataFrame, reversals: pl.DataFrame) -> pl.DataFrame:
    """The `reversals` of one project's blocks still in force, the latest per annotator."""
    held = annotators.filter(pl.col("blocked")).select("annotator_id", "block_decision_id")
    return (
        reversals.join(held, on="annotator_id", how="inner")
        .filter(
            pl.col("block_decision_id").is_null()
            | (pl.col("block_decision_id") == pl.col("decision_id"))
        )
        .sort("revoked_at")
        .unique("annotator_id", keep="last")
        .sort("annotator_id")
        .select(list(REVERSALS))
    )


def due_reversals(reversals: pl.DataFrame, read: Callable[[str], bytes | None]) -> pl.DataFrame:
    """The `reversals` that lift a block in force in the stored states (each project's small
    annotators table read): a run loads and updates a project for those only, not for one
    already applied and read again in the stream's overlap, nor for a project with no state.
    Kept too: the reversal of the block the next version would decide again (a run that wrote
    it to the DB and did not commit, retried), which `update` lifts once it is decided."""
    return lake_ledger.due_reversals(
        reversals,
        read,
        by=["project"],
        prefix=lambda key: state_prefix(key[0]),
        in_force=lambda _, data, mine: in_force(_read_frame(data, ANNOTATORS), mine),
        block_id=lambda key, annotator, version: decision_id(BLOCK, key[0], annotator, version),
        schema=REVERSALS,
    )


def _with_tasks_of(state: LiveState, annotators: pl.Series) -> LiveState:
    """A partially loaded state grown by the stored rows of every task the `annotators` voted
    on (a block refits them all). Reads the `annotator_id` column of every segment: a block
    is rare (once per annotator), a run is not."""
    stored = state.stored
    if stored is None:
        return state
    voted = stored.tasks_where("annotator_id", annotators.to_list()).unique()
    held = pl.concat(
        [
            state.tasks.get_column("task_id"),
            state.ledger.get_column("task_id"),
            pl.Series(sorted(state.removed_tasks), dtype=pl.String),
        ]
    )
    new = voted.filter(~voted.is_in(held.implode()))
    if new.len() == 0:
        return state
    # Their rows as they were before this block: the caller flags them.
    earlier = _blocked(state.annotators)
    earlier = earlier.filter(~earlier.is_in(annotators.implode()))
    return replace(
        state,
        ledger=pl.concat([state.ledger, stored.ledger_of_tasks(new, earlier)]),
        tasks=pl.concat([state.tasks, stored.tasks_rows(new)]),
    )


_GOLD_BATCH: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "label": pl.String(),
    "_key": pl.String(),
    "_held": lake_ledger.GOLD_SOURCES,
    "gold_sources": lake_ledger.GOLD_SOURCES,
}


def _gold_batch(gold: pl.DataFrame | None) -> pl.DataFrame:
    """The batch's gold per task (`ledger.gold_batch`)."""
    if gold is None or gold.height == 0:
        return pl.DataFrame(schema=_GOLD_BATCH)
    columns = [pl.col("task_id").cast(pl.String), pl.col("label").cast(pl.String)]
    if "source" in gold.columns:
        columns.append(pl.col("source").cast(pl.String))
    rows = gold.select(columns)
    return lake_ledger.gold_batch(rows, pl.col("label")).select(list(_GOLD_BATCH))


def _new_gold(tasks: pl.DataFrame, batch: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the batch's gold rows that change `tasks`: `task_id`, `label`, `gold_sources`; those of
    them with a new answer). The same answer given again changes only its sources, when it
    adds a file or the DB; nothing else is new."""
    schema = {
        "task_id": pl.String(),
        "label": pl.String(),
        "gold_sources": lake_ledger.GOLD_SOURCES,
    }
    if batch.height == 0:
        empty = pl.DataFrame(schema=schema)
        return empty, empty
    known = tasks.select("task_id", _known_key="gold", _known="gold_sources").drop_nulls(
        "_known_key"
    )
    changed, relabelled = lake_ledger.gold_changes(batch, known)
    return changed.select(list(schema)), relabelled.select(list(schema))


def _without_withdrawn_gold(
    tasks: pl.DataFrame,
    gone: pl.DataFrame,
    version: int,
) -> tuple[pl.DataFrame, pl.Series]:
    """(`tasks` without the gold that is `gone` (`ledger.gold_gone`: withdrawn by a file or
    deleted by the DB), the tasks whose gold went); `tasks` itself when nothing went. A task
    some other file still gives the gold of keeps it with fewer sources; every task changed
    is at `version`."""
    lost = gone.filter(pl.col("gold_sources").list.len() == 0).get_column("task_id")
    if gone.height == 0:
        return tasks, lost
    left = gone.with_columns(
        gold_sources=pl.when(pl.col("gold_sources").list.len() > 0).then("gold_sources")
    )
    joined = tasks.join(
        left.rename({"gold_sources": "_left"}).with_columns(_gone=pl.lit(True)),
        on="task_id",
        how="left",
        maintain_order="left",
    )
    withdrawn = pl.col("_gone").fill_null(False)
    emptied = withdrawn & pl.col("_left").is_null()
    return (
        joined.with_columns(
            gold=pl.when(emptied).then(pl.lit(None, pl.String)).otherwise("gold"),
            gold_sources=pl.when(withdrawn).then("_left").otherwise("gold_sources"),
            version=pl.when(withdrawn).then(pl.lit(version, pl.Int64)).otherwise("version"),
        ).select(tasks.columns),
        lost,
    )


def _with_labels(state: LiveState, incoming: pl.DataFrame, gold: pl.DataFrame) -> LiveState:
    """Append labels never seen before (existing codes stay), padding every K-shaped array."""
    seen = pl.concat([incoming.get_column("label"), gold.get_column("label")]).unique().sort()
    new = [label for label in seen.to_list() if label not in state.labels]
    if not new:
        return state
    k, grown = len(state.labels), len(state.labels) + len(new)
    counts = np.zeros((state.annotators.height, grown, grown))
    counts[:, :k, :k] = state.counts
    shared = np.zeros_like(counts)
    shared[:, :k, :k] = state.shared_counts
    prior = np.zeros(grown)
    prior[:k] = state.prior_counts[:k] if state.prior_counts.size else 0.0
    pad = [0.0] * len(new)
    tasks = state.tasks.with_columns(
        posterior=pl.col("posterior").list.concat(pl.lit(pad, pl.List(pl.Float64)))
    )
    return replace(
        state,
        labels=(*state.labels, *new),
        prior_counts=prior,
        tasks=tasks,
        annotators=_set_counts(state.annotators, counts, shared),
    )


def _ledger_rows(state: LiveState, incoming: pl.DataFrame, version: int) -> pl.DataFrame:
    blocked = _blocked(state.annotators)
    return incoming.with_columns(
        flagged=pl.col("annotator_id").is_in(blocked.implode()),
        version=pl.lit(version, pl.Int64),
    ).select(list(LEDGER))


def _blocked(annotators: pl.DataFrame) -> pl.Series:
    return annotators.filter(pl.col("blocked")).get_column("annotator_id")


def _with_gold(tasks: pl.DataFrame, gold: pl.DataFrame, version: int) -> pl.DataFrame:
    if gold.height == 0:
        return tasks
    given = gold.rename({"label": "_gold", "gold_sources": "_sources"}).with_columns(
        _given=pl.lit(True)
    )
    known = tasks.join(given, on="task_id", how="left", maintain_order="left")
    is_given = pl.col("_given").fill_null(False)
    known = known.with_columns(
        gold=pl.coalesce("_gold", "gold"),
        gold_sources=pl.when(is_given).then("_sources").otherwise("gold_sources"),
        version=pl.when(is_given).then(pl.lit(version, pl.Int64)).otherwise("version"),
    ).drop("_gold", "_sources", "_given")
    fresh = gold.join(tasks.select("task_id"), on="task_id", how="anti").select(
        "task_id",
        label=pl.lit(None, pl.String),
        confidence=pl.lit(None, pl.Float64),
        n_votes=pl.lit(0, pl.Int64),
        posterior=pl.lit(None, pl.List(pl.Float64)),
        gold=pl.col("label"),
        gold_sources="gold_sources",
        version=pl.lit(version, pl.Int64),
    )
    return pl.concat([known, fresh.cast(pl.Schema(TASKS))], how="vertical")


# Incremental EM -----------------------------------------------------------------------------


def _refit(
    state: LiveState,
    old_ledger: pl.DataFrame,
    ledger: pl.DataFrame,
    tasks: pl.DataFrame,
    affected: pl.Series,
    options: LiveOptions,
    version: int,
) -> LiveState:
    """Refit the `affected` tasks: subtract their old contributions, run EM on them, add back.

    `old_ledger` / `ledger` are the ledger before and after (or at least their rows of the
    affected tasks); the state's own ledger is left to the caller.
    """
    k = len(state.labels)
    label_codes = {label: code for code, label in enumerate(state.labels)}
    annotators = _with_annotators(state.annotators, ledger, affected, k)
    codes = annotators.select("annotator_id").with_row_index("annotator_code")
    counts = np.zeros((annotators.height, k, k))
    counts[: state.annotators.height] = state.counts
    shared = np.zeros_like(counts)
    shared[: state.annotators.height] = state.shared_counts
    prior = state.prior_counts.copy() if state.prior_counts.size == k else np.zeros(k)
    frame = pl.DataFrame({"task_id": affected.unique().sort()}).with_row_index("task_code")
    n = frame.height
    previous = frame.join(tasks, on="task_id", how="left", maintain_order="left")

    def votes(rows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        active = rows.filter(~pl.col("flagged")).join(frame, on="task_id", how="inner")
        active = active.join(codes, on="annotator_id", how="inner")
        answer = active.get_column("label").replace_strict(label_codes, return_dtype=pl.Int64)
        return (
            active.get_column("task_code").to_numpy().astype(np.int64),
            active.get_column("annotator_code").to_numpy().astype(np.int64),
            answer.to_numpy().astype(np.int64),
        )

    old_posterior = _posterior_matrix(previous, k)
    old_votes = previous.get_column("n_votes").fill_null(0).to_numpy()
    # What each task put into the class counts: the gold it had before this change.
    old_gold = (
        frame.join(state.tasks.select("task_id", "gold"), on="task_id", how="left")
        .sort("task_code")
        .get_column("gold")
        .to_numpy()
    )
    had_gold = np.array([g is not None for g in old_gold], dtype=bool)
    contributed = (old_votes > 0) | had_gold
    task_o, annotator_o, answer_o = votes(
        old_ledger.filter(pl.col("task_id").is_in(affected.implode()))
    )
    _scatter(counts, annotator_o, answer_o, old_posterior[task_o], sign=-1.0)
    compared = _compared(task_o, annotator_o, n, had_gold)
    _scatter(
        shared,
        annotator_o[compared],
        answer_o[compared],
        old_posterior[task_o[compared]],
        sign=-1.0,
    )
    np.maximum(shared, 0.0, out=shared)
    prior -= old_posterior[contributed].sum(axis=0)
    np.maximum(counts, 0.0, out=counts)
    np.maximum(prior, 0.0, out=prior)
    others = counts.copy()
    other_prior = prior.copy()

    task_n, annotator_n, answer_n = votes(
        ledger.filter(pl.col("task_id").is_in(affected.implode()))
    )
    n_votes = np.bincount(task_n, minlength=n)
    gold_codes = np.array(
        [
            -1 if g is None else label_codes.get(g, -1)
            for g in previous.get_column("gold").to_list()
        ],
        dtype=np.int64,
    )
    posterior = _initial(old_posterior, old_votes, task_n, answer_n, n, k)
    is_gold = gold_codes >= 0
    posterior[is_gold] = np.eye(k)[gold_codes[is_gold]]
    has_votes = n_votes > 0
    if k >= 2:
        for _ in range(max(options.iterations, 1)):
            counts = others.copy()
            _scatter(counts, annotator_n, answer_n, posterior[task_n], sign=1.0)
            prior = other_prior + posterior[has_votes | is_gold].sum(axis=0)
            posterior = _e_step(counts, prior, posterior, task_n, annotator_n, answer_n, n, options)
            posterior[is_gold] = np.eye(k)[gold_codes[is_gold]]
            no_votes = ~has_votes & ~is_gold
            posterior[no_votes] = (other_prior + options.pseudo_count) / (
                other_prior.sum() + k * options.pseudo_count
            )
    counts = others.copy()
    _scatter(counts, annotator_n, answer_n, posterior[task_n], sign=1.0)
    compared = _compared(task_n, annotator_n, n, is_gold)
    _scatter(
        shared, annotator_n[compared], answer_n[compared], posterior[task_n[compared]], sign=1.0
    )
    prior = other_prior + posterior[has_votes | is_gold].sum(axis=0)
    best = (
        best_in_label_order(posterior, pl.Series(state.labels, dtype=pl.String))
        if k
        else np.zeros(n, dtype=np.int64)
    )
    refitted = frame.select(
        "task_id",
        label=pl.Series([state.labels[b] for b in best] if k else [None] * n, dtype=pl.String),
        confidence=pl.Series(posterior[np.arange(n), best] if k else np.zeros(n), dtype=pl.Float64),
        n_votes=pl.Series(n_votes, dtype=pl.Int64),
        posterior=pl.Series(posterior.tolist(), dtype=pl.List(pl.Float64)),
        gold=previous.get_column("gold"),
        gold_sources=previous.get_column("gold_sources"),
        version=pl.lit(version, pl.Int64),
    ).with_columns(
        label=pl.when(pl.col("n_votes") > 0).then("label").otherwise(pl.col("gold")),
    )
    tasks = pl.concat(
        [tasks.join(frame.select("task_id"), on="task_id", how="anti"), refitted], how="vertical"
    )
    return replace(
        state, tasks=tasks, prior_counts=prior, annotators=_set_counts(annotators, counts, shared)
    )


def _compared(task: np.ndarray, annotator: np.ndarray, n: int, gold: np.ndarray) -> np.ndarray:
    """Per vote (`task`, `annotator` codes): True where its task, of `n`, has another
    annotator's vote among these or has `gold` (per task), so its posterior is more than
    this vote: the votes a scorecard compares with the consensus."""
    if task.size == 0:
        return np.zeros(0, dtype=bool)
    pairs = np.unique(np.stack([task, annotator]), axis=1)
    voters = np.bincount(pairs[0], minlength=n)
    return (voters >= 2)[task] | gold[task]


def _with_annotators(
    annotators: pl.DataFrame, ledger: pl.DataFrame, affected: pl.Series, k: int
) -> pl.DataFrame:
    """`annotators` plus a zero row for each annotator of the affected tasks not yet in it."""
    present = ledger.filter(pl.col("task_id").is_in(affected.implode())).select("annotator_id")
    new = present.unique().join(annotators.select("annotator_id"), on="annotator_id", how="anti")
    if new.height == 0:
        return annotators
    fresh = new.sort("annotator_id").with_columns(
        confusion=pl.lit([0.0] * (k * k), pl.List(pl.Float64)),
        shared_confusion=pl.lit([0.0] * (k * k), pl.List(pl.Float64)),
        blocked=pl.lit(False),
    )
    return (
        pl.concat([annotators, fresh], how="diagonal_relaxed")
        .select(list(ANNOTATORS))
        .cast(pl.Schema(ANNOTATORS))
    )


def _set_counts(annotators: pl.DataFrame, counts: np.ndarray, shared: np.ndarray) -> pl.DataFrame:
    if annotators.height == 0:
        return annotators
    flat = counts.reshape(counts.shape[0], -1)
    flat_shared = shared.reshape(shared.shape[0], -1)
    return annotators.with_columns(
        confusion=pl.Series(flat.tolist(), dtype=pl.List(pl.Float64)),
        shared_confusion=pl.Series(flat_shared.tolist(), dtype=pl.List(pl.Float64)),
    )


def _posterior_matrix(previous: pl.DataFrame, k: int) -> np.ndarray:
    rows = previous.get_column("posterior").to_list()
    return np.array(
        [row if row is not None else [0.0] * k for row in rows], dtype=np.float64
    ).reshape(len(rows), k)


def _initial(
    old: np.ndarray,
    old_votes: np.ndarray,
    task: np.ndarray,
    answer: np.ndarray,
    n: int,
    k: int,
) -> np.ndarray:
    """Warm start: the previous posterior where there was one, the vote shares otherwise."""
    shares = np.zeros((n, k))
    np.add.at(shares, (task, answer), 1.0)
    totals = shares.sum(axis=1, keepdims=True)
    shares = np.where(totals > 0, shares / np.maximum(totals, 1.0), 1.0 / max(k, 1))
    return np.where((old_votes > 0)[:, None] & (old.sum(axis=1) > 0)[:, None], old, shares)


def _scatter(
    counts: np.ndarray,
    annotator: np.ndarray,
    answer: np.ndarray,
    weights: np.ndarray,
    *,
    sign: float,
) -> None:
    """counts[annotator, answer, :] += sign · weights, row by row (repeated cells add up)."""
    if annotator.size == 0:
        return
    a, k, _ = counts.shape
    cell = annotator * k + answer
    flat = counts.reshape(a * k, k)
    for truth in range(k):
        flat[:, truth] += sign * np.bincount(cell, weights=weights[:, truth], minlength=a * k)


def _e_step(
    counts: np.ndarray,
    prior: np.ndarray,
    posterior: np.ndarray,
    task: np.ndarray,
    annotator: np.ndarray,
    answer: np.ndarray,
    n: int,
    options: LiveOptions,
) -> np.ndarray:
    """Task posteriors from confusion matrices and class prior with the task's own part left out."""
    k = prior.shape[0]
    own = posterior[task]  # (rows, K): what this judgment's task put into its annotator's counts
    alpha, beta = options.pseudo_count, options.diagonal_pseudo_count
    # The prior that annotators beat chance, right as often whatever K (as the batch fit's
    # calibration reads it): one pseudo-count on every wrong answer would make its accuracy
    # 2 / (K + 1), which at 200 classes outweighed a task's unanimous votes (confidence 0.035
    # where 0.915 of the labels were right).
    wrong, right = beat_chance_pseudo_counts(k, per_cell=alpha, diagonal_extra=beta)
    diagonal = (np.arange(k)[None, :] == answer[:, None]).astype(np.float64)
    numerator = counts[annotator, answer, :] - own + wrong + (right - wrong) * diagonal
    column = counts.sum(axis=1)[annotator] - own + k * alpha + beta
    log_errors = np.log(np.maximum(numerator, _FLOOR)) - np.log(np.maximum(column, _FLOOR))
    scores = np.zeros((n, k))
    for truth in range(k):
        scores[:, truth] = np.bincount(task, weights=log_errors[:, truth], minlength=n)
    own_prior = np.where((posterior.sum(axis=1) > 0)[:, None], posterior, 0.0)
    scores += np.log(np.maximum(prior[None, :] - own_prior + alpha, _FLOOR))
    scores -= scores.max(axis=1, keepdims=True)
    probabilities = np.exp(scores)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


# Scorecards, blocks, requests ---------------------------------------------------------------


# The running counts per annotator that come from the ledger, carried so an update adds its
# rows' share instead of recounting every judgment an annotator ever made.
_CARRIED = ("n_judgments", "n_gold", "n_gold_correct", "duration_total", "n_durations")


def _ledger_stats(rows: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    """Per annotator of `rows`: the `_CARRIED` counts, with the gold `tasks` hold."""
    golds = tasks.select("task_id", "gold").drop_nulls("gold")
    return (
        rows.join(golds, on="task_id", how="left")
        .group_by("annotator_id")
        .agg(
            n_judgments=pl.len().cast(pl.Int64),
            n_gold=pl.col("gold").is_not_null().sum().cast(pl.Int64),
            n_gold_correct=(pl.col("gold") == pl.col("label"))
            .fill_null(False)
            .sum()
            .cast(pl.Int64),
            duration_total=pl.col("duration_s").sum().cast(pl.Float64),
            n_durations=pl.col("duration_s").count().cast(pl.Int64),
        )
    )


def _carry_counts(
    annotators: pl.DataFrame,
    *,
    plus: tuple[pl.DataFrame, pl.DataFrame],
    minus: tuple[pl.DataFrame, pl.DataFrame],
) -> pl.DataFrame:
    """`annotators` with the counts of the `plus` rows added and of the `minus` rows taken
    away ((rows, tasks) each: the affected tasks' rows after and before, with their gold)."""
    added, removed = _ledger_stats(*plus), _ledger_stats(*minus)
    delta = (
        pl.concat([added, removed.with_columns([-pl.col(c) for c in _CARRIED])], how="vertical")
        .group_by("annotator_id")
        .agg([pl.col(c).sum() for c in _CARRIED])
    )
    joined = annotators.join(delta, on="annotator_id", how="left", suffix="_delta")
    return joined.with_columns(
        [pl.col(c).fill_null(0) + pl.col(f"{c}_delta").fill_null(0) for c in _CARRIED]
    ).select(list(ANNOTATORS))


def _recounted(annotators: pl.DataFrame, ledger: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    """`annotators` with the carried counts recounted from the whole ledger."""
    stats = _ledger_stats(ledger, tasks)
    return (
        annotators.drop(_CARRIED)
        .join(stats, on="annotator_id", how="left")
        .with_columns(pl.col(_CARRIED).fill_null(0))
        .select(list(ANNOTATORS))
        .cast(pl.Schema(ANNOTATORS))
    )


def _scorecards(state: LiveState, touched: pl.Series, options: LiveOptions) -> pl.DataFrame:
    """Refresh the running scorecard columns of the `touched` annotators from the carried
    counts (`_CARRIED`, the confusion counts); a blocked annotator's judgments are all flagged."""
    annotators = state.annotators
    if touched.len() == 0 or annotators.height == 0:
        return annotators
    fresh = _fresh_cards(annotators, state.shared_counts, len(state.labels), options)
    columns = [c for c in SCORECARD if c not in _CARRIED]
    refreshed = annotators.join(
        fresh.select("annotator_id", *columns), on="annotator_id", how="left", suffix="_new"
    ).with_columns(
        [
            pl.when(pl.col("annotator_id").is_in(touched.implode()))
            .then(pl.col(f"{c}_new"))
            .otherwise(pl.col(c))
            .alias(c)
            for c in columns
        ]
    )
    return refreshed.select(list(ANNOTATORS)).cast(pl.Schema(ANNOTATORS))


def _fresh_cards(
    annotators: pl.DataFrame, counts: np.ndarray, k: int, options: LiveOptions
) -> pl.DataFrame:
    """The scorecard of each of `annotators` (its carried columns and `blocked`) with the
    confusion `counts` of the judgments compared with the consensus (one K×K per row).
    Without any (an annotator alone on every task), agreement and spammer score are null,
    which no block rule holds on."""
    totals = counts.sum(axis=(1, 2))
    # Each compared judgment adds one posterior (summing to 1); less than half a judgment
    # left is what subtracting a refitted task's old share leaves, not a judgment.
    compared = np.rint(totals).astype(np.int64)
    agreement = np.trace(counts, axis1=1, axis2=2) / np.maximum(totals, _FLOOR)
    some = compared > 0
    soft = pl.DataFrame(
        {
            "annotator_id": annotators.get_column("annotator_id"),
            "agreement": np.where(some, agreement, np.nan),
            "n_consensus_compared": compared,
            "_agreeing": np.where(some, np.trace(counts, axis1=1, axis2=2), 0.0),
            "_total": np.where(some, totals, 0.0),
            "spammer_score": np.where(some, _spammer_scores(counts), np.nan)
            if k >= 2
            else np.full(totals.shape, np.nan),
        }
    ).with_columns(pl.col("agreement", "spammer_score").fill_nan(None))
    _, agreement_upper = wilson_bounds(
        pl.col("_agreeing"), pl.col("_total"), confidence=options.confidence
    )
    soft = soft.with_columns(agreement_upper=agreement_upper).drop("_agreeing", "_total")
    _, gold_upper = wilson_bounds(
        pl.col("n_gold_correct"), pl.col("n_gold"), confidence=options.confidence
    )
    return (
        annotators.select("annotator_id", *_CARRIED, "blocked")
        .join(soft, on="annotator_id", how="left", maintain_order="left")
        .with_columns(
            n_flagged=pl.when(pl.col("blocked")).then(pl.col("n_judgments")).otherwise(0),
            gold_accuracy=pl.when(pl.col("n_gold") > 0).then(
                pl.col("n_gold_correct") / pl.col("n_gold")
            ),
            gold_accuracy_upper=gold_upper,
            mean_duration_s=pl.when(pl.col("n_durations") > 0).then(
                pl.col("duration_total") / pl.col("n_durations")
            ),
        )
    )


def _window_cards(cards: pl.DataFrame, k: int, options: LiveOptions) -> pl.DataFrame:
    """`cards` (SCORECARD columns) with those of annotators whose block was reversed
    recomputed on what came after the reversal: the carried counts less their base then.
    The soft counts of the judgments before it drift a little as their tasks are refitted,
    so their difference is clipped at zero."""
    reversed_ = cards.filter(pl.col("unblocked_at").is_not_null())
    if reversed_.height == 0:
        return cards
    base = ("n_judgments", "n_gold", "n_gold_correct")
    window = reversed_.with_columns(
        [(pl.col(c) - pl.col(f"base_{c}").fill_null(0)).clip(lower_bound=0) for c in base]
    )
    shared = reversed_.select(pl.coalesce("shared_confusion", "confusion")).to_series()
    counts = _matrices(shared, k).copy()
    bases = reversed_.select(pl.coalesce("base_shared_confusion", "base_confusion")).to_series()
    for row, earlier in enumerate(bases.to_list()):
        if earlier is None:
            continue
        # Labels are appended, never reordered: an older base is the top-left block.
        j = round(len(earlier) ** 0.5)
        counts[row, :j, :j] -= np.asarray(earlier, dtype=np.float64).reshape(j, j)
    np.maximum(counts, 0.0, out=counts)
    fresh = _fresh_cards(window, counts, k, options)
    columns = [c for c in SCORECARD if c not in _CARRIED]
    recomputed = window.drop(columns).join(
        fresh.select("annotator_id", *columns), on="annotator_id", how="left"
    )
    return pl.concat(
        [cards.filter(pl.col("unblocked_at").is_null()), recomputed.select(cards.columns)]
    )


def _spammer_scores(counts: np.ndarray) -> np.ndarray:
    """1 − Raykar–Yu S per annotator on soft counts (columns: consensus class; see scorecards)."""
    columns = counts.sum(axis=1)  # (A, K truth)
    alpha = counts / np.maximum(columns[:, None, :], _FLOOR)  # α[a, answer, truth]
    present = columns >= 1.0
    classes = present.sum(axis=1).astype(np.float64)
    alpha = np.where(present[:, None, :], alpha, 0.0)
    squares = (alpha**2).sum(axis=(1, 2))
    summed = (alpha.sum(axis=2) ** 2).sum(axis=1)
    score = 1.0 - (classes * squares - summed) / np.maximum(classes * (classes - 1.0), _FLOOR)
    return np.where(classes >= 2, np.clip(score, 0.0, 1.0), np.nan)


def gold_rule(
    *, label: str, score: str, upper: str, floor: float, min_gold: int, confidence: float
) -> BlockRule:
    """Block on gold: at least `min_gold` gold answers and the `score` column's `upper`
    Wilson bound below `floor`."""
    return BlockRule(
        holds=(pl.col("n_gold") >= min_gold) & (pl.col(upper) < floor),
        reason=lambda card: (
            f"{label} {card[score]:.3f} on {card['n_gold']} gold "
            f"(upper {confidence:g} bound {card[upper]:.3f}) < {floor:g}"
        ),
    )


def _block_rules(options: LiveOptions) -> list[BlockRule]:
    """Gold accuracy confidently below `min_gold_accuracy`; or a spammer score above
    `max_spammer_score` with agreement confidently below `min_agreement`, read on at least
    `min_judgments` judgments compared with the consensus: an annotator's judgments alone on
    their tasks (the first vote on fresh tasks) say nothing of it, and a few compared ones are
    too few to block on, as the daily scorecards hold."""
    return [
        gold_rule(
            label="gold accuracy",
            score="gold_accuracy",
            upper="gold_accuracy_upper",
            floor=options.min_gold_accuracy,
            min_gold=options.min_gold,
            confidence=options.confidence,
        ),
        BlockRule(
            holds=(pl.col("spammer_score") > options.max_spammer_score)
            & (pl.col("agreement_upper") < options.min_agreement)
            & (pl.col("n_consensus_compared") >= options.min_judgments),
            reason=lambda card: (
                f"spammer score {card['spammer_score']:.3f} > {options.max_spammer_score:g} and "
                f"agreement {card['agreement']:.3f} (upper bound {card['agreement_upper']:.3f}) "
                f"< {options.min_agreement:g} over {card['n_consensus_compared']} judgments "
                f"compared of {card['n_judgments']}"
            ),
        ),
    ]


def _block(
    state: LiveState, touched: pl.Series, options: LiveOptions, version: int, now: datetime
) -> tuple[LiveState, pl.DataFrame, list[dict[str, object]]]:
    cards = state.annotators.filter(
        pl.col("annotator_id").is_in(touched.implode()) & ~pl.col("blocked")
    )
    cards = _window_cards(cards, len(state.labels), options)
    active = pl.col("n_judgments") - pl.col("n_flagged")
    blocks = blocks_due(
        cards,
        _block_rules(options),
        eligible=active >= options.min_judgments,
        evidence=list(SCORECARD),
    )
    if not blocks:
        return state, pl.DataFrame(schema=ANNOTATOR_ACTIONS), []
    annotators, actions, alerts = apply_blocks(
        state.annotators, blocks, project=state.project, version=version, now=now
    )
    return replace(state, annotators=annotators), actions, alerts


@dataclass(frozen=True)
class Block:
    """One annotator to block: why, and the scorecard figures that said so."""

    annotator_id: str
    reason: str
    evidence: dict[str, object]


@dataclass(frozen=True)
class BlockRule:
    """One reason to block an annotator: when it holds (an expression over the annotators
    table; null does not hold) and how the block says it (from the scorecard's row)."""

    holds: pl.Expr
    reason: Callable[[dict[str, Any]], str]


def blocks_due(
    cards: pl.DataFrame,
    rules: list[BlockRule],
    *,
    eligible: pl.Expr,
    evidence: list[str],
) -> list[Block]:
    """The `eligible` annotators of `cards` on which some rule holds, by annotator id, each
    with the reasons that hold and its `evidence` figures (a figure that is not finite is
    null: JSON has no NaN and the DB's jsonb refuses it)."""
    flags = [f"_rule{i}" for i in range(len(rules))]
    marked = cards.with_columns(
        [rule.holds.fill_null(False).alias(flag) for flag, rule in zip(flags, rules, strict=True)]
    )
    hits = marked.filter(eligible & pl.any_horizontal(flags)).sort("annotator_id")
    blocks = []
    for card in hits.iter_rows(named=True):
        reasons = [rule.reason(card) for flag, rule in zip(flags, rules, strict=True) if card[flag]]
        figures = {
            c: None if isinstance(card[c], float) and not np.isfinite(card[c]) else card[c]
            for c in evidence
        }
        blocks.append(Block(card["annotator_id"], "; ".join(reasons), figures))
    return blocks


def apply_blocks(
    annotators: pl.DataFrame,
    blocks: list[Block],
    *,
    project: str,
    version: int,
    now: datetime,
    kind: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, list[dict[str, object]]]:
    """(annotators with `blocks` marked at `version`, their block actions, their alerts).
    A `kind` other than the categorical one joins the decision ids, the evidence and the
    messages, so its blocks are decisions of their own. `annotators` has `block_decision_id`
    (set to each block's decision) and `unblocked_at` (a block after a reversal says, in its
    evidence, `since` when its window starts)."""
    rows: list[dict[str, object]] = []
    alerts: list[dict[str, object]] = []
    where = project if kind is None else f"{project} ({kind})"
    since = {
        a: t.isoformat()
        for a, t in annotators.select("annotator_id", "unblocked_at").drop_nulls().iter_rows()
    }
    for block in blocks:
        evidence = block.evidence if kind is None else {"kind": kind, **block.evidence}
        if block.annotator_id in since:
            # After a reversal the evidence is the window's figures, and says where it starts.
            evidence = {**evidence, "since": since[block.annotator_id]}
        decision = BLOCK if kind is None else f"{kind}_{BLOCK}"
        rows.append(
            {
                "annotator_id": block.annotator_id,
                "project": project,
                "action": BLOCK,
                "reason": block.reason,
                "evidence": json.dumps(evidence, sort_keys=True),
                "decision_id": decision_id(decision, project, block.annotator_id, version),
                "created_at": now,
            }
        )
        alerts.append(
            {
                "kind": "annotator_blocked",
                "asset": "live_quality_state",
                "check": "running_scorecard",
                "partition": project,
                "severity": "WARN",
                "run_id": "",
                "message": f"{where}: annotator {block.annotator_id} blocked: {block.reason}",
            }
        )
    actions = pl.DataFrame(rows, schema=ANNOTATOR_ACTIONS)
    ids = actions.get_column("annotator_id")
    reason_by = dict(zip(ids, actions["reason"], strict=True))
    marked = annotators.with_columns(
        blocked=pl.col("blocked") | pl.col("annotator_id").is_in(ids.implode()),
        blocked_reason=pl.coalesce(
            pl.col("annotator_id").replace_strict(reason_by, default=None, return_dtype=pl.String),
            pl.col("blocked_reason"),
        ),
        version=pl.when(pl.col("annotator_id").is_in(ids.implode()))
        .then(pl.lit(version, pl.Int64))
        .otherwise(pl.col("version")),
        # Only a reversal of this decision lifts the block.
        block_decision_id=pl.coalesce(
            pl.col("annotator_id").replace_strict(
                dict(zip(ids, actions["decision_id"], strict=True)),
                default=None,
                return_dtype=pl.String,
            ),
            pl.col("block_decision_id"),
        ),
    )
    return marked, actions, alerts


def open_requests(
    state: LiveState,
    options: LiveOptions,
    *,
    now: datetime,
    tasks: pl.Series | None = None,
) -> pl.DataFrame:
    """The policy's request for every task (or every task in `tasks`) that still wants one.

    Only tasks with their first `min_votes` votes and no gold are decided. A request's
    `decision_id` uses the version at which the task last changed, so the same open request
    has the same id in every update and in `requests.json`.
    """
    chosen = pl.col("gold").is_null() & (pl.col("n_votes") >= options.policy.min_votes)
    if tasks is not None:
        chosen = chosen & pl.col("task_id").is_in(tasks.implode())
    candidates = state.tasks.filter(chosen).sort("task_id")
    if candidates.height == 0:
        return pl.DataFrame(schema=TASK_REQUESTS)
    decided = decide(candidates.select("task_id", "confidence", "n_votes"), options.policy)
    wanted = decided.filter(pl.col("decision").is_in([NEEDS_ANOTHER_JUDGMENT, ESCALATE]))
    if wanted.height == 0:
        return pl.DataFrame(schema=TASK_REQUESTS)
    labels = list(state.labels)
    joined = wanted.join(
        candidates.select("task_id", "posterior", "version"), on="task_id", how="left"
    )
    request = (
        pl.when(pl.col("decision") == ESCALATE)
        .then(pl.lit(EXPERT_REVIEW))
        .otherwise(pl.lit(ANOTHER_JUDGMENT))
    )
    rows = joined.select(
        "task_id",
        "version",
        project=pl.lit(state.project),
        request=request,
        reason="reason",
        confidence="confidence",
        posterior=pl.col("posterior").map_elements(
            lambda p: json.dumps(dict(zip(labels, (round(x, 6) for x in p), strict=True))),
            return_dtype=pl.String,
        ),
    )
    ids = [
        decision_id(kind, state.project, task, version)
        for kind, task, version in zip(
            rows["request"], rows["task_id"], rows["version"], strict=True
        )
    ]
    return rows.with_columns(
        decision_id=pl.Series(ids, dtype=pl.String), created_at=pl.lit(now).cast(UTC_TIMESTAMP)
    ).select(list(TASK_REQUESTS))


# Reconciliation with the daily layer -------------------------------------------------------


def rebase(
    state: LiveState,
    daily: pl.DataFrame,
    day: str,
    options: LiveOptions | None = None,
    *,
    now: datetime | None = None,
) -> tuple[LiveState, LiveEvents]:
    """Re-base the tasks of `day` on that day's daily aggregation, the record of truth.

    `daily` is this project's rows of `aggregated_labels` for `day` (`task_id`, `label`,
    `confidence`, `n_votes`). A task is re-based when the daily fit saw exactly the votes the
    live state holds for it: each of its ledger rows (flagged ones too: the daily layer does
    not know about blocks) was submitted on `day`, and there are `n_votes` of them. Its label
    and confidence become the daily's; its posterior puts the daily's confidence on that label
    and spreads the rest over the other classes in the live posterior's proportions. The
    confusion counts and class counts are then recounted from the ledger (Σ of posteriors
    over active votes), so the carried statistics stay exactly what the incremental EM
    maintains, and the next late vote refits the task warm-started from the daily's answer.

    A task with votes on another day (it straddles midnight, or a late vote arrived after the
    daily fit) keeps its live posterior: the daily layer aggregates per day and saw only part
    of its votes. A gold task keeps its gold answer (as `live_kinds.rebase_kind`). Requests
    are emitted only for re-based tasks the policy now asks about and did not before, so a
    task already requested is not requested twice.
    """
    options = options or LiveOptions()
    now = now or datetime.now(UTC)
    if state.stored is not None:
        raise ValueError(
            f"{state_prefix(state.project)}: the re-base recounts from every task and judgment; "
            "load the whole state (load_state), not the touched part (load_touched)"
        )
    k = len(state.labels)
    if daily.height == 0 or state.tasks.height == 0 or k == 0:
        return state, no_events()
    codes = {label: code for code, label in enumerate(state.labels)}
    votes = state.ledger.group_by("task_id").agg(
        n_all=pl.len().cast(pl.Int64),
        same_day=(pl.col("submitted_at").dt.date() == date.fromisoformat(day)).all(),
    )
    chosen = (
        daily.select(
            pl.col("task_id").cast(pl.String),
            daily_label=pl.col("label").cast(pl.String),
            daily_confidence=pl.col("confidence").cast(pl.Float64),
            daily_votes=pl.col("n_votes").cast(pl.Int64),
        )
        .join(votes, on="task_id", how="inner")
        .filter(
            pl.col("same_day")
            & (pl.col("n_all") == pl.col("daily_votes"))
            & pl.col("daily_label").is_in(list(state.labels))
        )
        # A gold task keeps its gold answer: a daily fit that had the gold gives it too, and
        # one fitted before the gold came (its day not rebuilt yet) gives the crowd's.
        .join(
            state.tasks.filter(pl.col("gold").is_null()).select("task_id", "posterior"),
            on="task_id",
            how="inner",
        )
        .sort("task_id")
    )
    if chosen.height == 0:
        return state, no_events()
    version = state.version + 1
    old = _posterior_matrix(chosen, k)
    label = chosen.get_column("daily_label").replace_strict(codes, return_dtype=pl.Int64)
    code = label.to_numpy().astype(np.int64)
    confidence = np.clip(chosen.get_column("daily_confidence").fill_null(1.0).to_numpy(), 0, 1)
    rows = np.arange(code.size)
    rest = old.copy()
    rest[rows, code] = 0.0
    total = rest.sum(axis=1, keepdims=True)
    others = (np.arange(k)[None, :] != code[:, None]).astype(np.float64) / max(k - 1, 1)
    rest = np.where(total > 0, rest / np.maximum(total, _FLOOR), others)
    posterior = rest * (1.0 - confidence)[:, None]
    posterior[rows, code] = confidence if k > 1 else 1.0
    rebased = chosen.select(
        "task_id",
        _label="daily_label",
        _confidence="daily_confidence",
        _posterior=pl.Series(posterior.tolist(), dtype=pl.List(pl.Float64)),
    )
    tasks = (
        state.tasks.join(rebased, on="task_id", how="left")
        .with_columns(
            label=pl.coalesce("_label", "label"),
            confidence=pl.coalesce("_confidence", "confidence"),
            posterior=pl.when(pl.col("_posterior").is_not_null())
            .then(pl.col("_posterior"))
            .otherwise(pl.col("posterior")),
            version=pl.when(pl.col("_label").is_not_null())
            .then(pl.lit(version, pl.Int64))
            .otherwise(pl.col("version")),
        )
        .select(list(TASKS))
    )
    counts, shared, prior = _recount(state.ledger, tasks, state.annotators, k, codes)
    rebased_state = replace(
        state,
        tasks=tasks,
        prior_counts=prior,
        annotators=_set_counts(state.annotators, counts, shared),
    )
    rebased_state = replace(
        rebased_state,
        annotators=_scorecards(rebased_state, state.annotators.get_column("annotator_id"), options),
    )
    ids = rebased.get_column("task_id")
    before = open_requests(state, options, now=now, tasks=ids)
    after = open_requests(rebased_state, options, now=now, tasks=ids)
    requests = after.join(
        before.select("task_id", "request"), on=["task_id", "request"], how="anti"
    )
    versions = pl.concat(
        [
            state.versions,
            pl.DataFrame(
                {
                    "version": [version],
                    "watermark": [state.watermark],
                    "applied_at": [now],
                    "judgments": [0],
                    "withdrawn": [0],
                },
                schema=VERSIONS,
            ),
        ]
    )
    final = replace(rebased_state, version=version, versions=versions)
    events = LiveEvents(
        task_requests=requests,
        annotator_actions=pl.DataFrame(schema=ANNOTATOR_ACTIONS),
        alerts=[],
        rebased_tasks=ids.len(),
    )
    return final, events


def _recount(
    ledger: pl.DataFrame,
    tasks: pl.DataFrame,
    annotators: pl.DataFrame,
    k: int,
    codes: Mapping[str, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confusion counts, those of the votes compared with the consensus (`_compared`), and
    class counts, from scratch: Σ posteriors over the active votes."""
    indexed = tasks.select("task_id", "n_votes", "gold", "posterior").with_row_index("_task")
    matrix = _posterior_matrix(indexed, k)
    active = (
        ledger.filter(~pl.col("flagged"))
        .select("task_id", "annotator_id", "label")
        .join(indexed.select("task_id", "_task"), on="task_id", how="inner")
        .join(
            annotators.select("annotator_id").with_row_index("_annotator"),
            on="annotator_id",
            how="inner",
        )
    )
    answer = active.get_column("label").replace_strict(dict(codes), return_dtype=pl.Int64)
    counts = np.zeros((annotators.height, k, k))
    shared = np.zeros_like(counts)
    task = active.get_column("_task").to_numpy().astype(np.int64)
    annotator = active.get_column("_annotator").to_numpy().astype(np.int64)
    code = answer.to_numpy().astype(np.int64)
    _scatter(counts, annotator, code, matrix[task], sign=1.0)
    gold = indexed.get_column("gold").is_not_null().to_numpy()
    compared = _compared(task, annotator, indexed.height, gold)
    _scatter(shared, annotator[compared], code[compared], matrix[task[compared]], sign=1.0)
    contributes = (indexed.get_column("n_votes").fill_null(0) > 0).to_numpy() | gold
    return counts, shared, matrix[contributes].sum(axis=0)


def no_events() -> LiveEvents:
    """What an update that changed nothing caused."""
    return LiveEvents(
        task_requests=pl.DataFrame(schema=TASK_REQUESTS),
        annotator_actions=pl.DataFrame(schema=ANNOTATOR_ACTIONS),
        alerts=[],
    )


# Persistence --------------------------------------------------------------------------------

_SMALL = {"annotators": ANNOTATORS, "versions": VERSIONS}
LEDGER_FOLDER = "ledger"
TASKS_FOLDER = "tasks"
# Whole-table objects of states written before segments were: each loads as one segment.
_LEGACY_LEDGER = "ledger.parquet"
_LEGACY_TASKS = "tasks.parquet"
# A tasks segment: the rows of the tasks changed in its versions; `deleted` is a tombstone
# (every vote of the task was withdrawn).
TASK_SEGMENT: dict[str, pl.DataType] = {**TASKS, "deleted": pl.Boolean()}
# Rows per Parquet row group of a segment, the unit a lookup by task reads: segments are
# sorted by task, so the tasks of one run fall in a few groups of each segment, and each
# group's min/max statistics let the reader skip the rest. At 1M rows held, 2,048 read the
# fewest bytes for a mix of new and recent tasks (1,024 spend more on footers, 4,096 read
# twice the rows when a run's tasks are spread over the whole history).
ROW_GROUP_ROWS = 2048


def state_prefix(project: str) -> str:
    _check_project(project)
    return f"{LIVE_PREFIX}/{project}"


@dataclass(frozen=True)
class StateObjects:
    """What to commit for a state, in one `Lake.commit`: objects to write, keys to delete."""

    writes: dict[str, bytes]
    deletes: list[str]


@dataclass(frozen=True, kw_only=True)
class _Table:
    """A segmented table: where its segments go, their columns, how consecutive segments
    (oldest first) merge into one, and whether each has an id index."""

    name: str
    folder: str
    schema: Mapping[str, pl.DataType]
    order: tuple[str, ...]
    merge: Callable[[pl.DataFrame, bool], pl.DataFrame]
    indexed: bool = False
    golden: bool = False


# A ledger segment's id index: its judgments and their tasks, sorted by judgment, so that the
# exactly-once lookup of a batch's (mostly new) ids reads one row group or none per segment,
# where the segment itself, sorted by task, has ids of every age in each group.
INDEX: dict[str, pl.DataType] = {"judgment_id": pl.String(), "task_id": pl.String()}


# A judgment a newer DB version moved to another project or kind is withdrawn from the state
# holding it by a tombstone of the DB's shape (`loop.moves`).
MOVED = DELETIONS


def _index_key(key: str) -> str:
    return key.removesuffix(".parquet") + ".ids.parquet"


def _index_bytes(rows: pl.DataFrame) -> bytes:
    return _sorted_parquet(rows.select(list(INDEX)), ("judgment_id",))


def _fingerprints_bytes(rows: pl.DataFrame) -> bytes:
    """A ledger segment's id fingerprints, sorted, distinct, little-endian: 4 bytes a row, so
    a probe for ids another project's state holds (`StoredState.held_judgments`) reads these
    instead of the id index's every row group, which random ids all fall in."""
    return lake_ledger.fingerprint_bytes(rows.get_column("judgment_id"))


def _gold_fingerprints_bytes(rows: pl.DataFrame) -> bytes:
    """A tasks segment's fingerprints of the tasks whose row holds the DB's gold (null
    `gold_sources`): a probe for gold another state takes in (`StoredState.held_gold`) reads
    these, not the segment's row groups, which tasks numbered alike in every project fall in."""
    db_gold = pl.col("gold").is_not_null() & pl.col("gold_sources").is_null() & ~pl.col("deleted")
    return lake_ledger.fingerprint_bytes(rows.filter(db_gold).get_column("task_id"))


def _side_objects(segment: Segment, rows: pl.DataFrame) -> dict[str, bytes]:
    """The objects kept beside a segment of `rows`: a ledger segment's id index and
    fingerprints, a tasks segment's gold fingerprints."""
    objects = {}
    if segment.indexed:
        objects[_index_key(segment.key)] = _index_bytes(rows)
        objects[lake_ledger.fingerprints_key(segment.key)] = _fingerprints_bytes(rows)
    if segment.golden:
        objects[lake_ledger.gold_fingerprints_key(segment.key)] = _gold_fingerprints_bytes(rows)
    return objects


def _objects_of(segment: Segment) -> list[str]:
    keys = [segment.key]
    if segment.indexed:
        keys += [_index_key(segment.key), lake_ledger.fingerprints_key(segment.key)]
    if segment.golden:
        keys.append(lake_ledger.gold_fingerprints_key(segment.key))
    return keys


def _merged(rows: pl.DataFrame, oldest: bool) -> pl.DataFrame:
    return lake_ledger.merged_rows(rows, oldest=oldest).select(list(SEGMENT))


def _merged_tasks(rows: pl.DataFrame, oldest: bool) -> pl.DataFrame:
    """Consecutive tasks segment rows (oldest first) as one: each task's newest row; from the
    oldest segment on, tombstones go."""
    rows = rows.filter(pl.col("task_id").is_last_distinct())
    if oldest:
        rows = rows.filter(~pl.col("deleted"))
    return rows.select(list(TASK_SEGMENT))


_LEDGER_TABLE = _Table(
    name="ledger",
    folder=LEDGER_FOLDER,
    schema=SEGMENT,
    order=("task_id", "judgment_id"),
    merge=_merged,
    indexed=True,
)
_TASKS_TABLE = _Table(
    name="tasks",
    folder=TASKS_FOLDER,
    schema=TASK_SEGMENT,
    order=("task_id",),
    merge=_merged_tasks,
    golden=True,
)
_TABLES = {table.name: table for table in (_LEDGER_TABLE, _TASKS_TABLE)}


def state_objects(
    state: LiveState,
    read: Callable[[str], bytes | None] | None = None,
    *,
    compaction: LedgerCompaction | None = None,
) -> StateObjects:
    """The lake objects of `state` (commit them together): the annotators and versions
    frames, `state.json`, one new ledger segment with the rows folded in since the state was
    loaded, one new tasks segment with the tasks changed since (tombstones for tasks that
    left), and the compactions they trigger (merged segments written, the ones they replace
    deleted; `read` reads the committed segments being merged). A merge above
    `compaction.max_inline_rows` is left for `plan_merge` (a maintenance run).

    A run that dies before the commit leaves the previous `state.json`, which lists only the
    previous segments; the next run folds the same rows again into segments of the same
    versions.
    """
    compaction = compaction or LedgerCompaction()
    prefix = state_prefix(state.project)
    writes: dict[str, bytes] = {}
    for name in _SMALL:
        writes[f"{prefix}/{name}.parquet"] = lake_ledger.parquet(getattr(state, name))
    deletes: list[str] = []
    listings: dict[str, list[Segment]] = {}
    for table, committed, fresh_rows, first, last in (
        (_LEDGER_TABLE, state.segments, *_pending_ledger(state)),
        (_TASKS_TABLE, state.task_segments, *_pending_tasks(state)),
    ):
        segments, table_writes = _appended_segments(
            table,
            prefix,
            list(committed),
            fresh_rows,
            first=first,
            last=last,
            read=read,
            compaction=compaction,
        )
        writes.update(table_writes)
        kept = {segment.key for segment in segments}
        deletes += [
            key for segment in committed if segment.key not in kept for key in _objects_of(segment)
        ]
        listings[table.name] = segments
    meta = {
        "project": state.project,
        "labels": list(state.labels),
        "version": state.version,
        "watermark": state.watermark.isoformat() if state.watermark else None,
        "prior_counts": state.prior_counts.tolist(),
        **{name: [segment.as_json() for segment in found] for name, found in listings.items()},
    }
    writes[f"{prefix}/state.json"] = json.dumps(meta, sort_keys=True).encode()
    return StateObjects(writes=writes, deletes=deletes)


def _pending_ledger(state: LiveState) -> tuple[pl.DataFrame, int, int]:
    if state.pending.height == 0:
        return state.pending, 0, 0
    versions = state.pending.get_column("version")
    return state.pending, int(versions.min()), int(versions.max())  # type: ignore[arg-type]


def _pending_tasks(state: LiveState) -> tuple[pl.DataFrame, int, int]:
    """The tasks rows changed since the state was committed (every change sets a task's
    `version`), and tombstones for the tasks that left it."""
    changed = state.tasks.filter(pl.col("version") > state.committed).with_columns(
        deleted=pl.lit(False)
    )
    gone = sorted(state.removed_tasks - set(state.tasks.get_column("task_id").to_list()))
    tombstones = pl.DataFrame({"task_id": gone}, schema={"task_id": pl.String()}).with_columns(
        version=pl.lit(state.version, pl.Int64), deleted=pl.lit(True)
    )
    rows = conform_frame(pl.concat([changed, tombstones], how="diagonal_relaxed"), TASK_SEGMENT)
    return rows, state.committed + 1, state.version


def _appended_segments(
    table: _Table,
    prefix: str,
    segments: list[Segment],
    rows: pl.DataFrame,
    *,
    first: int,
    last: int,
    read: Callable[[str], bytes | None] | None,
    compaction: LedgerCompaction,
) -> tuple[list[Segment], dict[str, bytes]]:
    """`segments` with a new one of `rows` appended and the inline merges done; the objects
    to write."""
    fresh: dict[str, pl.DataFrame] = {}
    if rows.height:
        rows = table.merge(rows, not segments)
        if rows.height:
            segment = Segment(
                key=lake_ledger.segment_key(prefix, table.folder, first, last),
                rows=rows.height,
                first=first,
                last=last,
                indexed=table.indexed,
                golden=table.golden,
            )
            fresh[segment.key] = rows
            segments.append(segment)

    def frame(segment: Segment) -> pl.DataFrame:
        if segment.key in fresh:
            return fresh[segment.key]
        data = read(segment.key) if read is not None else None
        if data is None:
            raise FileNotFoundError(f"{segment.key}: a segment to merge is missing")
        return _read_frame(data, table.schema)

    while (
        group := _to_merge(segments, compaction, limit=compaction.max_inline_rows, tail=True)
    ) is not None:
        start, stop = group
        parts = segments[start:stop]
        merged_rows = table.merge(pl.concat([frame(p) for p in parts]), start == 0)
        merged = _merged_segment(prefix, table, parts, merged_rows.height)
        for part in parts:
            fresh.pop(part.key, None)
        fresh[merged.key] = merged_rows
        segments[start:stop] = [merged]
    writes = {}
    for segment in segments:
        if segment.key in fresh:
            writes[segment.key] = _segment_bytes(fresh[segment.key], table)
            writes.update(_side_objects(segment, fresh[segment.key]))
    return segments, writes


def _merged_segment(prefix: str, table: _Table, parts: list[Segment], rows: int) -> Segment:
    return Segment(
        key=lake_ledger.segment_key(prefix, table.folder, parts[0].first, parts[-1].last),
        rows=rows,
        first=parts[0].first,
        last=parts[-1].last,
        indexed=table.indexed,
        golden=table.golden,
    )


def _to_merge(
    segments: list[Segment],
    compaction: LedgerCompaction,
    *,
    limit: int | None = None,
    tail: bool = False,
) -> tuple[int, int] | None:
    """The segments (start, stop) the next merge takes, or None: a segment with the smaller
    ones before it, else `fan_in` consecutive segments of one level; the newest such group
    first. A group of more than `limit` rows is skipped; with `tail`, only the group ending
    at the newest segment is considered (what a live run merges)."""
    levels = [compaction.level(segment.rows) for segment in segments]
    ends = [len(levels)] if tail else list(range(len(levels), 1, -1))
    for stop in ends:
        group = lake_ledger.group_ending(levels[:stop], compaction.fan_in)
        if group is None:
            continue
        if limit is None or sum(s.rows for s in segments[group[0] : group[1]]) <= limit:
            return group
    return None


def _segment_bytes(frame: pl.DataFrame, table: _Table) -> bytes:
    """A segment sorted by task with small row groups, so that a lookup of a few tasks reads
    a few groups (see `ROW_GROUP_ROWS`)."""
    return _sorted_parquet(frame, table.order)


# Key-value metadata of a segment: its row groups' first and last sort keys (`fences`) and the
# groups holding a `replaces` row, so a lookup picks its groups with two binary searches
# instead of a pass over every group's statistics in the footer.
_FENCES = b"live_fences"


def _sorted_parquet(frame: pl.DataFrame, order: tuple[str, ...]) -> bytes:
    """`frame` sorted by `order` in row groups of exactly `ROW_GROUP_ROWS`, with its fences."""
    frame = frame.sort(list(order))
    keys = frame.get_column(order[0])
    starts = list(range(0, frame.height, ROW_GROUP_ROWS))
    ends = [min(start + ROW_GROUP_ROWS, frame.height) - 1 for start in starts]
    fences: dict[str, object] = {
        "column": order[0],
        "min": keys.gather(starts).to_list() if starts else [],
        "max": keys.gather(ends).to_list() if ends else [],
    }
    if "replaces" in frame.columns:
        rows = frame.get_column("replaces").arg_true().to_numpy()
        fences["flagged"] = np.unique(rows // ROW_GROUP_ROWS).tolist()
    table = frame.to_arrow()
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _FENCES: json.dumps(fences).encode()}
    )
    buffer = io.BytesIO()
    # Statistics only where a lookup reads them: every other column's would grow the footer
    # each lookup parses by a min/max per row group.
    looked_up = [c for c in ("task_id", "judgment_id", "replaces") if c in frame.columns]
    pq.write_table(
        table,
        buffer,
        compression="zstd",
        row_group_size=ROW_GROUP_ROWS,
        write_statistics=looked_up,
    )
    return buffer.getvalue()


def conform_frame(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """`frame` in `schema`'s columns; a column an older writer did not have is null (or
    false for a flag)."""
    missing = [
        (pl.lit(False) if dtype == pl.Boolean() else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in schema.items()
        if name not in frame.columns
    ]
    return frame.with_columns(missing).select(list(schema)).cast(pl.Schema(schema))


def _read_frame(data: bytes, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return conform_frame(pl.read_parquet(io.BytesIO(data)), schema)


def _ledger_of(segments: list[pl.DataFrame], annotators: pl.DataFrame) -> pl.DataFrame:
    """The ledger the segments hold: each judgment's newest version, withdrawn ones left out,
    `flagged` where its annotator is blocked.

    A judgment is in more than one segment only when a later row of it `replaces` an earlier
    one or is a tombstone, so only those judgments need resolving: a lookup of a few ids, not
    a deduplication of the whole ledger.
    """
    rows = pl.concat(segments, how="vertical") if segments else _empty_segment()
    return _flagged(lake_ledger.resolved(rows), _blocked(annotators))


def _flagged(rows: pl.DataFrame, blocked: pl.Series) -> pl.DataFrame:
    return rows.with_columns(flagged=pl.col("annotator_id").is_in(blocked.implode())).select(
        list(LEDGER)
    )


def _tasks_of(rows: pl.DataFrame, k: int) -> pl.DataFrame:
    """The tasks the (oldest first) tasks segment rows hold: each task's newest row, deleted
    ones left out, posteriors padded to the state's `k` labels (labels seen after a task was
    last written have probability 0 for it, as `update` pads the tasks it holds)."""
    rows = rows.filter(pl.col("task_id").is_last_distinct() & ~pl.col("deleted"))
    padded = pl.col("posterior").list.concat(
        pl.lit([0.0] * k, pl.List(pl.Float64)).list.slice(0, k - pl.col("posterior").list.len())
    )
    return rows.with_columns(
        posterior=pl.when(pl.col("posterior").list.len() < k).then(padded).otherwise("posterior")
    ).select(list(TASKS))


@dataclass(frozen=True, kw_only=True)
class _Header:
    meta: dict[str, object]
    frames: dict[str, pl.DataFrame]
    carried: bool
    segments: tuple[Segment, ...]
    task_segments: tuple[Segment, ...]


def _header(project: str, read: Callable[[str], bytes | None]) -> _Header | None:
    """`state.json`, the small frames and both segment lists; None for a state never stored.
    A state written before tasks (or the ledger) were segments lists its whole-table object
    as the one segment."""
    prefix = state_prefix(project)
    raw = read(f"{prefix}/state.json")
    if raw is None:
        return None
    meta = json.loads(raw)
    frames = {}
    carried = True
    for name, schema in _SMALL.items():
        data = read(f"{prefix}/{name}.parquet")
        if data is None:
            raise FileNotFoundError(f"{prefix}/{name}.parquet missing next to {prefix}/state.json")
        frame = pl.read_parquet(io.BytesIO(data))
        if name == "annotators":
            carried = set(_CARRIED) <= set(frame.columns)
        frames[name] = conform_frame(frame, schema)
    version = int(meta["version"])
    listed = {}
    for name, legacy in (("ledger", _LEGACY_LEDGER), ("tasks", _LEGACY_TASKS)):
        if name in meta:
            listed[name] = tuple(Segment(**entry) for entry in meta[name])
            continue
        data = read(f"{prefix}/{legacy}")
        if data is None:
            raise FileNotFoundError(f"{prefix}/{legacy} missing: {prefix}/state.json needs it")
        rows = _parquet_rows(data)
        listed[name] = (Segment(key=f"{prefix}/{legacy}", rows=rows, first=1, last=version),)
    return _Header(
        meta=meta,
        frames=frames,
        carried=carried,
        segments=listed["ledger"],
        task_segments=listed["tasks"],
    )


def _parquet_rows(data: bytes) -> int:
    """Rows of a Parquet object, from its footer."""
    return int(pl.scan_parquet(io.BytesIO(data)).select(pl.len()).collect().item())


def _state(project: str, header: _Header, **parts: object) -> LiveState:
    meta = header.meta
    watermark = meta["watermark"]
    return LiveState(
        project=project,
        labels=tuple(meta["labels"]),  # type: ignore[arg-type]
        version=int(meta["version"]),  # type: ignore[call-overload]
        committed=int(meta["version"]),  # type: ignore[call-overload]
        watermark=datetime.fromisoformat(watermark) if isinstance(watermark, str) else None,
        prior_counts=np.asarray(meta["prior_counts"], dtype=np.float64),
        segments=header.segments,
        task_segments=header.task_segments,
        annotators=header.frames["annotators"],
        versions=header.frames["versions"],
        **parts,  # type: ignore[arg-type]
    )


def load_state(project: str, read: Callable[[str], bytes | None]) -> LiveState:
    """The whole state stored under `live/<project>/` (`read(key)` returns None when absent):
    every segment read. For readers, the re-base and states of the earlier layouts; a live
    run reads only what its batch touches (`load_touched`)."""
    header = _header(project, read)
    if header is None:
        return LiveState(project=project)

    def frames(
        segments: tuple[Segment, ...], schema: Mapping[str, pl.DataType]
    ) -> Iterator[pl.DataFrame]:
        for segment in segments:
            data = read(segment.key)
            if data is None:
                raise FileNotFoundError(
                    f"{segment.key} missing: {state_prefix(project)}/state.json lists it"
                )
            yield _read_frame(data, schema)

    ledger = _ledger_of(list(frames(header.segments, SEGMENT)), header.frames["annotators"])
    task_rows = list(frames(header.task_segments, TASK_SEGMENT))
    rows = pl.concat(task_rows) if task_rows else pl.DataFrame(schema=TASK_SEGMENT)
    tasks = _tasks_of(rows, len(header.meta["labels"]))  # type: ignore[arg-type]
    if not header.carried:
        # Written before the counts were carried: count them once.
        header.frames["annotators"] = _recounted(header.frames["annotators"], ledger, tasks)
    return _state(project, header, ledger=ledger, tasks=tasks)


# A segment as the lookups see it: its Parquet footer (row-group statistics) and the row groups
# read on demand. On a local lake the file is opened in place; otherwise its bytes are fetched.
OpenSegment = Callable[[str], pq.ParquetFile]


def segment_opener(read: Callable[[str], bytes | None]) -> OpenSegment:
    """An `OpenSegment` for a store that only reads whole objects."""

    def open_segment(key: str) -> pq.ParquetFile:
        data = read(key)
        if data is None:
            raise FileNotFoundError(f"{key} missing: the state lists it")
        return pq.ParquetFile(io.BytesIO(data))

    return open_segment


def _admitted_groups(
    segment: pq.ParquetFile, column: str, keys: list[str], flag: str | None = None
) -> list[int]:
    """The row groups whose `column` min/max admit one of the sorted `keys` (and, with
    `flag`, that hold a true `flag`): all a lookup reads. Polars' own pushdown does not use
    the statistics for `is_in`, so the footer is read here."""
    names = segment.schema_arrow.names
    if column not in names or (flag is not None and flag not in names):
        # An earlier layout's object: no flag column means no flagged row; no statistics
        # for the column means every group.
        return [] if flag is not None else list(range(segment.metadata.num_row_groups))
    raw = (segment.schema_arrow.metadata or {}).get(_FENCES)
    fences = json.loads(raw) if raw is not None else {}
    usable = fences.get("column") == column and None not in (*fences["min"], *fences["max"])
    if usable and fences["min"]:
        # Sorted by `column`: group g holds a key iff the first key ≥ its min is ≤ its max.
        sorted_keys = np.array(keys, dtype=str)
        after = np.searchsorted(sorted_keys, np.array(fences["min"], dtype=str), side="left")
        bounded = np.minimum(after, len(keys) - 1)
        hit = (after < len(keys)) & (sorted_keys[bounded] <= np.array(fences["max"], dtype=str))
        return np.nonzero(hit)[0].tolist()
    groups = range(segment.metadata.num_row_groups)
    if flag is not None and "flagged" in fences:
        groups = fences["flagged"]
    position = names.index(column)
    flag_position = names.index(flag) if flag is not None else None
    chosen = []
    for group in groups:
        meta = segment.metadata.row_group(group)
        if flag_position is not None:
            flags = meta.column(flag_position).statistics
            if flags is not None and flags.has_min_max and not flags.max:
                continue
        stats = meta.column(position).statistics
        if stats is None or not stats.has_min_max:
            chosen.append(group)
            continue
        first = bisect.bisect_left(keys, stats.min)
        if first < len(keys) and keys[first] <= stats.max:
            chosen.append(group)
    return chosen


def _lookup(
    segment: pq.ParquetFile,
    schema: Mapping[str, pl.DataType],
    column: str,
    keys: list[str],
    *,
    flag: str | None = None,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """The rows of `segment` whose `column` is one of the sorted `keys` (and `flag` true),
    reading only the row groups their statistics admit."""
    groups = _admitted_groups(segment, column, keys, flag) if keys else []
    present = segment.schema_arrow.names
    wanted = {name: schema[name] for name in (columns or list(schema))}
    if not groups:
        return pl.DataFrame(schema=wanted)
    table = segment.read_row_groups(groups, columns=[c for c in wanted if c in present])
    frame = conform_frame(pl.from_arrow(table), wanted)  # type: ignore[arg-type]
    match = pl.col(column).is_in(pl.Series(keys, dtype=pl.String).implode())
    return frame.filter(match & pl.col(flag) if flag is not None else match)


def _sorted_keys(values: pl.Series) -> list[str]:
    return values.cast(pl.String).drop_nulls().unique().sort().to_list()


@dataclass(frozen=True, kw_only=True)
class StoredState:
    """A committed state's segments, for the lookups of a partly loaded state: a lookup of
    tasks (or judgments) reads the row groups of each segment whose statistics admit them,
    so a run reads what its batch touches, not the history held."""

    ledger: tuple[Segment, ...]
    tasks: tuple[Segment, ...]
    open_segment: OpenSegment
    k: int
    # Reads a segment's id fingerprints (`held_judgments`); without it the id index is read.
    read: Callable[[str], bytes | None] | None = None
    # Each object's footer is parsed once per load, not once per lookup.
    opened: dict[str, pq.ParquetFile] = field(default_factory=dict, compare=False, repr=False)

    def open(self, key: str) -> pq.ParquetFile:
        if key not in self.opened:
            self.opened[key] = self.open_segment(key)
        return self.opened[key]

    def tasks_of_judgments(self, ids: pl.Series) -> pl.Series:
        """The tasks of every stored version of the judgments `ids` (exactly once needs all
        of them), from each segment's id index (sorted by judgment, so new ids skip it)."""
        keys = _sorted_keys(ids)
        found = [pl.Series("task_id", [], pl.String)]
        for segment in self.ledger if keys else ():
            key = _index_key(segment.key) if segment.indexed else segment.key
            rows = _lookup(
                self.open(key), INDEX, "judgment_id", keys, columns=["judgment_id", "task_id"]
            )
            found.append(rows.get_column("task_id"))
        return pl.concat(found)

    def held_judgments(self, ids: pl.Series) -> pl.Series:
        """The judgments of `ids` some stored version is of: the probe for judgments another
        project's state takes in, which mostly finds none. Each segment's id fingerprints
        (4 bytes a row) are checked first; only a match reads the id index's judgment column
        (segments written before the fingerprints read it directly)."""
        keys = _sorted_keys(ids)
        hashes = lake_ledger.fingerprints(pl.Series(keys, dtype=pl.String))
        every_key = np.asarray(keys, dtype=object)
        found = [pl.Series("judgment_id", [], pl.String)]
        for segment in self.ledger if keys else ():
            candidates = keys
            stored = None
            if segment.indexed and self.read is not None:
                stored = self.read(lake_ledger.fingerprints_key(segment.key))
            if stored is not None:
                # Only a match (the id, or 1 in 2^32 of the others per id held) reads the index.
                match = lake_ledger.fingerprinted(stored, hashes)
                candidates = every_key[match].tolist()
                if not candidates:
                    continue
            key = _index_key(segment.key) if segment.indexed else segment.key
            rows = _lookup(
                self.open(key), INDEX, "judgment_id", candidates, columns=["judgment_id"]
            )
            found.append(rows.get_column("judgment_id"))
        return pl.concat(found).unique()

    def held_gold(self, tasks: pl.Series) -> pl.DataFrame:
        """The rows of the `tasks` whose newest row holds the DB's gold (null `gold_sources`): the
        probe for gold another state takes in, which mostly finds none. Each tasks segment's
        gold fingerprints are checked first; only the tasks some segment may hold gold on are
        read (all of them where a segment was written before the fingerprints)."""
        keys = _sorted_keys(tasks)
        hashes = lake_ledger.fingerprints(pl.Series(keys, dtype=pl.String))
        candidates = np.zeros(len(keys), dtype=bool)
        for segment in self.tasks if keys else ():
            stored = None
            if segment.golden and self.read is not None:
                stored = self.read(lake_ledger.gold_fingerprints_key(segment.key))
            if stored is None:
                candidates[:] = True
                break
            candidates |= lake_ledger.fingerprinted(stored, hashes)
        if not candidates.any():
            return pl.DataFrame(schema=TASKS)
        chosen = np.asarray(keys, dtype=object)[candidates].tolist()
        rows = self.tasks_rows(pl.Series("task_id", chosen, pl.String))
        return rows.filter(pl.col("gold").is_not_null() & pl.col("gold_sources").is_null())

    def tasks_where(self, column: str, values: Collection[str]) -> pl.Series:
        """The tasks of the stored rows whose `column` is one of `values`, every version: a
        read of two columns of every segment, for the rare lookups (a block reads its
        annotator's tasks, a file read again its judgments')."""
        found = [pl.Series("task_id", [], pl.String)]
        for segment in self.ledger:
            opened = self.open(segment.key)
            if column not in opened.schema_arrow.names:
                continue
            rows = pl.from_arrow(opened.read(columns=[column, "task_id"]))
            assert isinstance(rows, pl.DataFrame)
            matched = rows.filter(pl.col(column).cast(pl.String).is_in(list(values)))
            found.append(matched.get_column("task_id").cast(pl.String))
        return pl.concat(found)

    def tasks_with_gold_from(self, sources: Collection[str]) -> pl.Series:
        """The tasks whose stored gold one of the `sources` gave, from any row of the tasks
        table (a newer row may have lost it: a superset). A read of two columns of every
        tasks segment, only when a file is read again after an edit."""
        found = [pl.Series("task_id", [], pl.String)]
        for segment in self.tasks:
            opened = self.open(segment.key)
            if "gold_sources" not in opened.schema_arrow.names:
                continue
            rows = pl.from_arrow(opened.read(columns=["task_id", "gold_sources"]))
            assert isinstance(rows, pl.DataFrame)
            given = rows.explode("gold_sources").filter(pl.col("gold_sources").is_in(list(sources)))
            found.append(given.get_column("task_id").cast(pl.String))
        return pl.concat(found)

    def ledger_of_tasks(self, task_ids: pl.Series, blocked: pl.Series) -> pl.DataFrame:
        """The ledger rows (newest version of each judgment, withdrawn ones left out) of the
        tasks `task_ids`.

        A stored row is stale when its judgment has a row in a newer segment; that row
        `replaces` it and may sit under another task (the judgment moved), so the judgments
        found are looked up among the `replaces` rows of every segment, in the row groups its
        metadata lists as holding one (a few: resubmissions and tombstones).
        """
        keys = _sorted_keys(task_ids)
        parts = [
            _lookup(self.open(segment.key), SEGMENT, "task_id", keys).with_columns(
                _segment=pl.lit(number, pl.Int64)
            )
            for number, segment in enumerate(self.ledger)
        ]
        empty = _empty_segment().with_columns(_segment=pl.lit(0, pl.Int64))
        rows = pl.concat(parts) if parts else empty
        ids = _sorted_keys(rows.get_column("judgment_id"))
        newest = [rows.select("judgment_id", "_segment")]
        for number, segment in enumerate(self.ledger):
            newer = _lookup(
                self.open(segment.key),
                SEGMENT,
                "judgment_id",
                ids,
                flag="replaces",
                columns=["judgment_id", "replaces"],
            )
            newest.append(newer.select("judgment_id", _segment=pl.lit(number, pl.Int64)))
        last = pl.concat(newest).group_by("judgment_id").agg(pl.col("_segment").max())
        current = rows.join(last, on=["judgment_id", "_segment"], how="semi")
        current = current.filter(~pl.col("deleted") & pl.col("task_id").is_in(keys))
        return _flagged(current, blocked)

    def tasks_rows(self, task_ids: pl.Series) -> pl.DataFrame:
        """The tasks table's rows of `task_ids` (each task's newest row)."""
        keys = _sorted_keys(task_ids)
        parts = [
            _lookup(self.open(segment.key), TASK_SEGMENT, "task_id", keys).with_columns(
                _segment=pl.lit(number, pl.Int64)
            )
            for number, segment in enumerate(self.tasks)
        ]
        if not parts:
            return pl.DataFrame(schema=TASKS)
        return _tasks_of(pl.concat(parts).sort("_segment", maintain_order=True), self.k)


def load_touched(
    project: str,
    read: Callable[[str], bytes | None],
    *,
    judgments: pl.DataFrame,
    gold: pl.DataFrame | None = None,
    resynced: Collection[str] = (),
    open_segment: OpenSegment | None = None,
    deleted: pl.DataFrame | None = None,
    deleted_gold: pl.DataFrame | None = None,
) -> LiveState:
    """The part of the stored state an `update` with this batch needs: the annotators (all of
    them, with the carried counts) and, of the ledger and the tasks table, only the rows of
    the tasks the batch touches. Those are the batch's tasks and gold tasks, the tasks of the
    earlier versions of its judgments (found by id: exactly once needs every version the
    ledger holds), the tasks of the judgments and of the gold of the `resynced` sources, and
    those of the judgments (by id) and of the gold the DB deleted (`deleted`, `deleted_gold`:
    its tombstones). A block in the update reads its annotator's tasks then (`update` calls
    `StoredState`).

    `open_segment(key)` opens one segment (default: fetched whole through `read`; on a local
    lake, open the file in place so only the row groups a lookup needs are read).
    """
    header = _header(project, read)
    if header is None:
        return LiveState(project=project)
    if not header.carried:
        return load_state(project, read)
    stored = StoredState(
        ledger=header.segments,
        tasks=header.task_segments,
        open_segment=open_segment or segment_opener(read),
        k=len(header.meta["labels"]),  # type: ignore[arg-type]
    )
    tasks = []
    if judgments.height:
        tasks.append(judgments.get_column("task_id").cast(pl.String))
        tasks.append(stored.tasks_of_judgments(judgments.get_column("judgment_id")))
    if gold is not None and gold.height:
        tasks.append(gold.get_column("task_id").cast(pl.String))
    if resynced:
        tasks.append(stored.tasks_where("source", resynced))
        tasks.append(stored.tasks_with_gold_from(resynced))
    if deleted is not None and deleted.height:
        tasks.append(stored.tasks_of_judgments(deleted.get_column("judgment_id")))
    if deleted_gold is not None and deleted_gold.height:
        tasks.append(deleted_gold.get_column("task_id").cast(pl.String))
    touched = pl.concat(tasks) if tasks else pl.Series("task_id", [], pl.String)
    blocked = _blocked(header.frames["annotators"])
    return _state(
        project,
        header,
        ledger=stored.ledger_of_tasks(touched, blocked),
        tasks=stored.tasks_rows(touched),
        stored=stored,
    )


def moved_away(
    project: str,
    read: Callable[[str], bytes | None],
    arrivals: pl.DataFrame,
    *,
    open_segment: OpenSegment | None = None,
    stored: StoredState | None = None,
) -> pl.DataFrame:
    """The tombstones (`ledger.moved`) of the judgments `project`'s stored state holds in an
    older DB version than `arrivals` (`ledger.ARRIVALS`: DB versions another project's state
    takes in). Each ledger segment's id fingerprints are checked first, then, for a match (or a
    segment written before the fingerprints), its id index (sorted by judgment: an id it does
    not hold skips it), and only on a hit a read of those tasks' rows. `stored`: its segments
    as `stored_state` read them already."""
    if stored is None and arrivals.height:
        stored = stored_state(project, read, open_segment)
    if stored is None or arrivals.height == 0:
        return pl.DataFrame(schema=MOVED)
    found = stored.held_judgments(arrivals.get_column("judgment_id"))
    if found.len() == 0:
        return pl.DataFrame(schema=MOVED)
    tasks = stored.tasks_of_judgments(found)
    held = stored.ledger_of_tasks(tasks, pl.Series([], dtype=pl.String))
    return lake_ledger.moved(held, arrivals, project).cast(pl.Schema(MOVED))


def stored_state(
    project: str, read: Callable[[str], bytes | None], open_segment: OpenSegment | None = None
) -> StoredState | None:
    """`project`'s committed segments, for a lookup in a state the run did not load; None for
    a state never stored."""
    raw = read(f"{state_prefix(project)}/state.json")
    if raw is None:
        return None
    meta = json.loads(raw)
    if "ledger" in meta and "tasks" in meta:
        # `state.json` alone: the small frames `_header` reads too are not needed here.
        ledger = tuple(Segment(**entry) for entry in meta["ledger"])
        tasks = tuple(Segment(**entry) for entry in meta["tasks"])
    else:
        header = _header(project, read)
        assert header is not None
        ledger, tasks = header.segments, header.task_segments
    return StoredState(
        ledger=ledger,
        tasks=tasks,
        open_segment=open_segment or segment_opener(read),
        k=len(meta["labels"]),
        read=read,
    )


def moved_gold_away(
    project: str,
    read: Callable[[str], bytes | None],
    tasks: pl.Series,
    *,
    open_segment: OpenSegment | None = None,
    stored: StoredState | None = None,
) -> pl.DataFrame:
    """Tombstones (`GOLD_DELETIONS`, the shape of the DB's: `task_id`, `project`, `label`; no
    versions, which the stored gold does not keep) of the gold the DB gave (null
    `gold_sources`) that `project`'s stored state holds on `tasks`: tasks whose DB gold
    another state takes in, found through the tasks segments' gold fingerprints
    (`StoredState.held_gold`); gold a file gives is that file's to withdraw. `stored`: its
    segments as `stored_state` read them already."""
    if stored is None and tasks.len():
        stored = stored_state(project, read, open_segment)
    if stored is None or tasks.len() == 0:
        return pl.DataFrame(schema=GOLD_DELETIONS)
    held = stored.held_gold(tasks.cast(pl.String).unique())
    return held.select(
        "task_id",
        project=pl.lit(project, pl.String),
        label="gold",
        updated_at=pl.lit(None, GOLD_DELETIONS["updated_at"]),
        deleted_at=pl.lit(None, GOLD_DELETIONS["deleted_at"]),
    )


# Maintenance: merges above `max_inline_rows`, done off the live runs' path ------------------


@dataclass(frozen=True, kw_only=True)
class Merge:
    """One deferred merge, built: `parts` of table `table` become `merged` (`objects`: the
    segment and its id index, by key)."""

    project: str
    table: str
    parts: tuple[Segment, ...]
    merged: Segment
    objects: dict[str, bytes]


def due_merges(
    project: str, read: Callable[[str], bytes | None], compaction: LedgerCompaction
) -> list[tuple[str, tuple[str, ...]]]:
    """(table, segment keys) of the merges a live run left for maintenance; reads only
    `state.json`."""
    raw = read(f"{state_prefix(project)}/state.json")
    if raw is None:
        return []
    meta = json.loads(raw)
    due = []
    for name in _TABLES:
        segments = [Segment(**entry) for entry in meta.get(name, [])]
        group = _to_merge(segments, compaction)
        if group is not None:
            due.append((name, tuple(s.key for s in segments[group[0] : group[1]])))
    return due


def plan_merge(
    project: str, read: Callable[[str], bytes | None], compaction: LedgerCompaction
) -> Merge | None:
    """The next merge due (any size), read and built. Segments are immutable once listed, so
    this runs without the live lock; `merge_objects` commits it under the lock."""
    header = _header(project, read)
    if header is None:
        return None
    prefix = state_prefix(project)
    for table, segments in ((_LEDGER_TABLE, header.segments), (_TASKS_TABLE, header.task_segments)):
        group = _to_merge(list(segments), compaction)
        if group is None:
            continue
        parts = segments[group[0] : group[1]]
        frames = []
        for part in parts:
            data = read(part.key)
            if data is None:
                raise FileNotFoundError(f"{part.key} missing: {prefix}/state.json lists it")
            frames.append(_read_frame(data, table.schema))
        rows = table.merge(pl.concat(frames), group[0] == 0)
        merged = _merged_segment(prefix, table, list(parts), rows.height)
        objects = {merged.key: _segment_bytes(rows, table), **_side_objects(merged, rows)}
        return Merge(
            project=project, table=table.name, parts=tuple(parts), merged=merged, objects=objects
        )
    return None


def merge_objects(read: Callable[[str], bytes | None], merge: Merge) -> StateObjects | None:
    """The commit of a built `merge` against the state stored now: `state.json` listing the
    merged segment in place of its parts, the parts deleted. None when the stored listing no
    longer has the parts in a row (another maintenance run merged them)."""
    prefix = state_prefix(merge.project)
    header = _header(merge.project, read)
    if header is None:
        return None
    segments = list(header.segments if merge.table == "ledger" else header.task_segments)
    keys = [segment.key for segment in segments]
    wanted = [part.key for part in merge.parts]
    starts = [i for i in range(len(keys)) if keys[i : i + len(wanted)] == wanted]
    if not starts:
        return None
    start = starts[0]
    segments[start : start + len(wanted)] = [merge.merged]
    meta = dict(header.meta)
    meta["ledger"] = [s.as_json() for s in header.segments]
    meta["tasks"] = [s.as_json() for s in header.task_segments]
    meta[merge.table] = [s.as_json() for s in segments]
    return StateObjects(
        writes={
            **merge.objects,
            f"{prefix}/state.json": json.dumps(meta, sort_keys=True).encode(),
        },
        deletes=[key for part in merge.parts for key in _objects_of(part)],
    )


STREAM_PREFIX = f"{LIVE_PREFIX}/_stream"


def stream_files(watermark: datetime, seen: pl.DataFrame) -> dict[str, bytes]:
    """The change stream's position (DB watermark and the rows read at its end), as objects
    committed with the states they produced, so state and position never disagree."""
    buffer = io.BytesIO()
    seen.write_parquet(buffer)
    return {
        f"{STREAM_PREFIX}/watermark.json": json.dumps(
            {"watermark": watermark.isoformat()}
        ).encode(),
        f"{STREAM_PREFIX}/seen.parquet": buffer.getvalue(),
    }


def load_stream(read: Callable[[str], bytes | None]) -> tuple[datetime, pl.DataFrame | None]:
    """(watermark, seen) of the change stream; the epoch and None before the first update."""
    raw = read(f"{STREAM_PREFIX}/watermark.json")
    if raw is None:
        return datetime(1970, 1, 1, tzinfo=UTC), None
    seen = read(f"{STREAM_PREFIX}/seen.parquet")
    frame = None if seen is None else pl.read_parquet(io.BytesIO(seen))
    return datetime.fromisoformat(json.loads(raw)["watermark"]), frame


PROJECTS_KEY = f"{STREAM_PREFIX}/projects.json"


def load_projects(read: Callable[[str], bytes | None]) -> list[str] | None:
    """The projects with a stored categorical state; None when no run recorded them yet."""
    raw = read(PROJECTS_KEY)
    return None if raw is None else sorted(json.loads(raw))


def projects_object(projects: Collection[str]) -> dict[str, bytes]:
    """The projects record as a lake object, committed with the states it lists."""
    return {PROJECTS_KEY: json.dumps(sorted(set(projects))).encode()}


FILES_KEY = f"{STREAM_PREFIX}/files.json"


def load_files(read: Callable[[str], bytes | None]) -> dict[str, dict[str, str]]:
    """Landing-zone files already folded in: path → {"fingerprint", "sha256"[, "error"]}."""
    raw = read(FILES_KEY)
    return {} if raw is None else dict(json.loads(raw))


def files_object(files: Mapping[str, Mapping[str, str]]) -> dict[str, bytes]:
    """The folded-files record as a lake object, committed with the states it produced."""
    return {FILES_KEY: json.dumps(dict(files), sort_keys=True, indent=0).encode()}


def content_hash(data: bytes) -> str:
    """A file's identity for exactly-once: the SHA-256 of its bytes (a touched file with the
    same content is not folded again; an edited one is)."""
    return hashlib.sha256(data).hexdigest()


def file_rows(
    judgments: pl.DataFrame, gold: pl.DataFrame, *, read_at: datetime, source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """An ingested export's categorical judgments and gold as `update_projects` reads them.

    A file has no per-row version: every row is stamped with `read_at`, the moment its file
    content was read, so a re-dropped file with a changed answer replaces the earlier one
    (the ledger keeps the newest version of a judgment) and the same content is never read
    twice (`content_hash`). Every row (gold too) names its file in `source`, so that a later
    version of the file (passed as `resynced` to `update`) withdraws the judgments and the gold
    it no longer has.
    """
    # The same columns the DB extract reads, so a file row and a DB row fold in alike.
    rows = of_kind(judgments).select(
        *EXTRACT_COLUMNS["judgments"],
        updated_at=pl.lit(read_at).cast(UTC_TIMESTAMP),
        source=pl.lit(source, pl.String),
    )
    golden = of_kind(gold).select("task_id", "project", "label", source=pl.lit(source, pl.String))
    return rows, golden


def _open_requests_and_closed(
    state: LiveState,
    options: LiveOptions,
    *,
    now: datetime,
    previous: bytes | None,
    previous_json: bytes | None,
    written: Collection[str] | None,
) -> tuple[pl.DataFrame, list[str]]:
    """Every open request of `state`'s project (`TASK_REQUESTS`, sorted by task), the table
    `requests.parquet` holds and `requests.json` is written from.

    A state loaded in part holds only the tasks its batch touched, so the `previous` table's
    requests stand for the other tasks and those of the tasks it holds are replaced. Kept as
    Parquet because every live run merges it: with 100,000 open requests, merging the JSON
    list itself (parse, filter, sort, dump) took 1.01 s of CPU a run; the table's merge takes
    0.06 s and writing the list from it 0.09 s.
    `previous_json` is read only when there is no table yet (a lake written before it).

    `written` is the decision ids this run wrote to the annotation DB. A task refitted without
    new evidence (it only lost votes, or a re-base moved it) whose request is the same as
    before writes no decision; its listed request keeps the id and time of the one the DB
    holds, so the tool finds every listed `decision_id` in `task_requests`.

    Also returns the `decision_id`s of the previous table it no longer holds. Only the tasks
    the state holds can lose a request, so only their rows are compared: the rest of a
    100,000-request table is carried as it is.
    """
    fresh = open_requests(state, options, now=now)
    if previous is None and previous_json is None:
        return fresh, []
    before = (
        pl.read_parquet(previous)
        if previous is not None
        else _requests_from_json(previous_json or b"[]", state.project)
    ).cast(pl.Schema(TASK_REQUESTS))
    if state.stored is None:
        mine, kept = before, before.head(0)
    else:
        held = pl.Series(
            sorted(set(state.tasks.get_column("task_id").to_list()) | state.removed_tasks),
            dtype=pl.String,
        )
        is_held = pl.col("task_id").is_in(held.implode())
        mine, kept = before.filter(is_held), before.filter(~is_held)
    if written is not None:
        fresh = _with_written_ids(fresh, mine, written)
    closed = _left_ids(mine, fresh)
    if state.stored is None:
        return fresh, closed
    return pl.concat([kept, fresh], how="vertical").sort("task_id"), closed


def _with_written_ids(
    fresh: pl.DataFrame, before: pl.DataFrame, written: Collection[str]
) -> pl.DataFrame:
    """`fresh` with each request that was not written this run and was already listed (same
    task and request) under the listed request's `decision_id` and `created_at`."""
    ids = pl.Series(sorted(written), dtype=pl.String)
    listed = before.select(
        "task_id", "request", _listed_id="decision_id", _listed_at="created_at"
    ).unique(["task_id", "request"], keep="last")
    unwritten = ~pl.col("decision_id").is_in(ids.implode())
    return (
        fresh.join(listed, on=["task_id", "request"], how="left", maintain_order="left")
        .with_columns(
            decision_id=pl.when(unwritten & pl.col("_listed_id").is_not_null())
            .then("_listed_id")
            .otherwise("decision_id"),
            created_at=pl.when(unwritten & pl.col("_listed_id").is_not_null())
            .then("_listed_at")
            .otherwise("created_at"),
        )
        .select(list(TASK_REQUESTS))
    )


def relisted_requests(
    fresh: pl.DataFrame,
    previous: bytes | None,
    previous_json: bytes | None,
    *,
    project: str,
    written: Collection[str],
) -> tuple[pl.DataFrame, list[str]]:
    """For a state whose list is rewritten whole every run (a kind state's): `fresh`, every
    request of the state, with the ids the DB holds where no decision was written (as
    `_open_requests_and_closed` does), and the `decision_id`s the previous list held that
    `fresh` no longer does (to withdraw). The previous list is its table (`previous`,
    Parquet), or its `requests.json` in a lake written before the table."""
    if previous is not None:
        before = pl.read_parquet(previous).cast(pl.Schema(TASK_REQUESTS))
    elif previous_json is not None:
        before = _requests_from_json(previous_json, project)
    else:
        return fresh, []
    table = _with_written_ids(fresh, before, written)
    return table, _left_ids(before, table)


def _left_ids(before: pl.DataFrame, after: pl.DataFrame) -> list[str]:
    """The `decision_id`s `before` lists and `after` no longer does, sorted."""
    gone = before.join(after.select("decision_id"), on="decision_id", how="anti")
    return sorted(gone.get_column("decision_id").to_list())


def _requests_from_json(data: bytes, project: str) -> pl.DataFrame:
    """A `requests.json` list read back as the open requests table (no posterior or time).
    Polars parses it: a kind's list is read on every run that changes its state, and Python's
    json took 0.45 s of CPU over 100,000 requests."""
    if not data.strip() or data.strip() == b"[]":
        return pl.DataFrame(schema=TASK_REQUESTS)
    items = pl.read_json(io.BytesIO(data))
    dtype = items.schema["data"]
    fields = {f.name for f in dtype.fields} if isinstance(dtype, pl.Struct) else set()

    def field(name: str, default: pl.Expr) -> pl.Expr:
        return pl.col("data").struct.field(name) if name in fields else default

    return items.select(
        # Lists written before the task was named only in `data` also had it as `id`.
        task_id=field("task_id", pl.col("id") if "id" in items.columns else pl.lit(None)),
        project=field("project", pl.lit(project)),
        request=field("request", pl.lit(None)),
        reason=field("reason", pl.lit(None)),
        confidence=field("confidence", pl.lit(None)),
        posterior=pl.lit(None),
        decision_id=field("decision_id", pl.lit(None)),
        created_at=pl.lit(None),
    ).cast(pl.Schema(TASK_REQUESTS))


def requests_update(
    state: LiveState,
    options: LiveOptions,
    *,
    now: datetime,
    read: Callable[[str], bytes | None],
    written: Collection[str] | None = None,
) -> tuple[dict[str, bytes], list[str]]:
    """`requests.parquet` (the open requests, merged run to run) and `requests.json` (the same
    list for tools that import Label Studio tasks) for `state`'s project, with `written` as in
    `_open_requests_and_closed`; and the `decision_id`s the previous list held that the new one
    no longer does: the requests no longer wanted (the task settled, went, or was asked again
    after new evidence), which the annotation DB marks withdrawn."""
    return request_lists(
        state_prefix(state.project),
        read,
        lambda previous, previous_json: _open_requests_and_closed(
            state,
            options,
            now=now,
            previous=previous,
            previous_json=previous_json,
            written=written,
        ),
    )


def request_lists(
    prefix: str,
    read: Callable[[str], bytes | None],
    relist: Callable[[bytes | None, bytes | None], tuple[pl.DataFrame, list[str]]],
) -> tuple[dict[str, bytes], list[str]]:
    """A state's request lists under `prefix`, `requests.parquet` and `requests.json`, from
    `relist(previous table, previous JSON list)` (the open requests, and the `decision_id`s
    that left the list); the JSON list is read only where there is no table yet (a lake
    written before it). The table is what the next run reads back: a JSON list is slow to
    parse."""
    previous = read(f"{prefix}/requests.parquet")
    previous_json = read(f"{prefix}/requests.json") if previous is None else None
    table, closed = relist(previous, previous_json)
    objects = {
        f"{prefix}/requests.parquet": lake_ledger.parquet(table),
        f"{prefix}/requests.json": label_studio_requests(table),
    }
    return objects, closed


def restamp_requests(objects: dict[str, bytes], recorded: Mapping[str, datetime]) -> int:
    """Give the listed requests in `objects` (each `requests.parquet`) the `created_at` the
    annotation DB keeps for them (`recorded`, by `decision_id`), in place; how many changed.

    A retried run decides anew at its own time, while the DB keeps the first attempt's row:
    the list takes the DB's so that both order the requests alike."""
    if not recorded:
        return 0
    ids = pl.Series("decision_id", list(recorded), pl.String)
    times = pl.DataFrame(
        {"decision_id": ids, "_recorded": list(recorded.values())},
        schema={"decision_id": pl.String(), "_recorded": TASK_REQUESTS["created_at"]},
    )
    changed = 0
    for key, content in objects.items():
        if not key.endswith("/requests.parquet"):
            continue
        table = pl.read_parquet(content)
        hits = int(table["decision_id"].is_in(ids.implode()).sum())
        if not hits:
            continue
        table = (
            table.join(times, on="decision_id", how="left", maintain_order="left")
            .with_columns(created_at=pl.coalesce("_recorded", "created_at"))
            .drop("_recorded")
        )
        objects[key] = lake_ledger.parquet(table)
        changed += hits
    return changed


def label_studio_requests(requests: pl.DataFrame) -> bytes:
    """Open requests as a Label Studio–importable JSON list: one task per request, its
    fields under `data`. Label Studio's own `id` is an integer it assigns and reserves on
    import, so the task is named by `data.task_id`, not `id`. Ordered by project, task,
    request, reason, confidence (null last) and decision id."""
    # Polars writes the rows in Rust; json.dumps of the same dictionaries is several times
    # slower, and this list is written on every live run.
    if requests.height == 0:
        return b"[]"
    # A total order over every field listed: one list holds several projects (the daily list
    # of every kind project), which may share a task id, and a project may ask more than once
    # about one task; by task alone such rows could swap places between runs of the same
    # requests.
    return (
        requests.sort(
            "project", "task_id", "request", "reason", "confidence", "decision_id", nulls_last=True
        )
        .select(
            data=pl.struct("task_id", "project", "request", "reason", "confidence", "decision_id"),
        )
        .write_json()
        .encode()
    )


__all__ = [
    "ANNOTATOR_ACTIONS",
    "LIVE_COMPACTION",
    "MOVED",
    "PROJECTS_KEY",
    "REVERSALS",
    "TASK_REQUESTS",
    "LedgerCompaction",
    "LiveEvents",
    "LiveOptions",
    "LiveState",
    "Merge",
    "OpenSegment",
    "Segment",
    "StateObjects",
    "StoredState",
    "conform_frame",
    "content_hash",
    "decision_id",
    "due_merges",
    "due_reversals",
    "file_rows",
    "files_object",
    "in_force",
    "label_studio_requests",
    "lift_columns",
    "load_files",
    "load_projects",
    "load_state",
    "load_stream",
    "load_touched",
    "merge_objects",
    "moved_away",
    "moved_gold_away",
    "open_requests",
    "plan_merge",
    "projects_object",
    "rebase",
    "relisted_requests",
    "request_lists",
    "requests_update",
    "restamp_requests",
    "segment_opener",
    "state_objects",
    "state_prefix",
    "stored_state",
    "stream_files",
    "update",
    "update_projects",
]
