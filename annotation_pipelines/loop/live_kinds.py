"""Live quality for every non-categorical kind: a ledger, per-task posteriors refitted on the
touched tasks with carried annotator parameters, running scorecards, blocks and requests.

The categorical engine (`loop.live`) carries soft confusion counts and runs incremental EM.
The other kinds' aggregations (`aggregation.by_kind`) are batch fits, so this engine follows
the incremental EM of R. M. Neal and G. E. Hinton ("A view of the EM algorithm that justifies
incremental, sparse, and other variants", 1998) in its simplest sound form: the annotator
parameters (the M-step's output) are carried from the last **full fit** of the kind's own
aggregation over the whole ledger, and each run recomputes only the **touched tasks'**
posteriors with those parameters held fixed (the E-step of those tasks). A full fit runs when
a project has no parameters yet, when the caller asks (`full_fit=True`, the daily layer's
re-base), and when at least `full_fit_every` versions have passed and the judgments folded
since the last one reach `full_fit_growth` of what it saw. The growth rule makes the full fits
geometric in the ledger's size (as a dynamic array doubles): a fit over n judgments comes once
per `full_fit_growth` · n new ones, so its cost spread over the judgments that triggered it is
a constant, and a run's amortized cost depends on its batch, not on the history. With
`inline_full_fits` off (the live asset's setting) only the first fit runs inside an update: a
due one is recorded (`full_fit_due` reads it from `state.json`), and a maintenance run fits a
snapshot without the live lock (`fit_snapshot`) and adopts it under the lock (`adopt_fit`):
the tasks the live runs changed since the snapshot are refitted with the new parameters, so
the result is the full fit at the snapshot followed by those runs. Per kind:

| kind       | model (its aggregation)                 | carried per annotator | touched tasks   |
|------------|-----------------------------------------|-----------------------|-----------------|
| numeric    | bias + noise (Raykar et al. 2010)       | bias b_j, noise σ_j   | Gaussian E-step |
| text       | weighted consensus (Braylan–Lease 2020) | weight 1/(e_j + ε)    | weights fixed   |
| ranking    | Plackett–Luce (Hunter 2004)             | Kendall weight w_j    | weights fixed   |
| boxes      | weighted box fusion (Solovyev 2021)     | reliability           | weights fixed   |
| multilabel | per-label Dawid–Skene                   | 2×2 counts per class  | DS E-step       |
| pairwise   | Dawid–Skene on the pair's winner        | 3×3 counts            | DS E-step       |
| spans      | character-level Dawid–Skene             | K×K character counts  | DS E-step       |

Numeric, text, ranking and boxes are exact: their aggregations take the carried parameters
(`reliability=`) or have a closed-form E-step, so a touched task's answer is what the full
fit's last iteration would give it (to its convergence tolerance). Spans take the full fit's
own expected confusion counts (`aggregation.spans.fit_spans(confusion=...)`): the touched
tasks' characters get the
Dawid–Skene E-step with them, exactly the full fit's model. Multilabel and pairwise carry the
expected counts of their full fit too, built from its posteriors (each judgment adds
P(truth = t) at [answer, t]; per class P(class applies) from `aggregate_multilabel_kind`, per
pair the winner fit's own posterior, `PairwiseConfidence.posterior`), read by the Dawid–Skene
E-step with a Dirichlet 1 + 1 on the diagonal (as `loop.live`). Counting each judgment
against the full fit's answer alone (classification EM) moves the refitted answers further
from a full fit's: on seven synthetic projects, 96.0 % against 97.1 % of the touched
multilabel tasks (pairwise 99.19 % against 99.29 %). An annotator the last full fit did not
see is read with the prior (spans: the crowd's pooled matrix; the weighted kinds: the median
weight; numeric: no bias and the median noise) until the next full fit learns them.

**Boxes** keep each judgment's and gold's unit and image size (`coordinates`, `image_width`,
`image_height`, from the DB's answers and the export files), and the fits, as the daily
layer's, put a task's boxes and gold in the unit most of its judgments give
(`kinds.boxes_in_task_unit`): a pixel box beside percent ones is the same object, and gold in
pixels anchors a task judged in percent. The task's answer records that unit, and the
scorecards read each judgment and gold in it. Rows stored before the state kept the unit have
it null, an unknown unit, and stay as written.

Every task's confidence is `kind_posterior`'s (`policy_confidence`: numeric from the interval,
the others the aggregation's), so `loop.policy.decide` with `kind_posterior.KIND_TARGETS`
decides the same way as in the daily layer and the replay.

**End of day** as in `loop.live.rebase`: when the daily layer's `kind_aggregated_labels` of a
day materializes, `rebase_kind` gives each of that day's tasks whose votes the daily fit saw
exactly the daily answer (confidence as the policy reads it), so the live and the daily kind
labels agree on them; a task with a vote on another day or one the daily fit has not seen
keeps its live answer.

**Exactly once** as in `loop.live`: the ledger keeps the newest version of each judgment
(`judgment_id`, `updated_at`); a re-read of the same version or a newer one that changes
nothing is dropped; an edited export (`resynced`) withdraws the judgments it no longer has,
and the gold it no longer gives (the gold table names its files, `gold_sources`) unless
another file or the DB still gives it.
On the lake the ledger is append-only segments with a size-tiered merge, committed with the
rest of the state.

**Running scorecards** (per annotator, sums carried and adjusted by the touched tasks' rows
before and after each refit): the kind's own gold metric per gold judgment
(`quality.kinds.GOLD_METRICS`, mapped onto [0, 1]), agreement with the current consensus
(1 − the kind's distance, `quality.kinds.judgment_distances`; numeric over the scale's range),
its chance-corrected form `consensus_alpha` = 1 − (1 − agreement) / D_e (D_e the distance to a
random other task's consensus, as the daily scorecards), spam score 1 − `consensus_alpha`, and
mean seconds. Agreement reads only the `n_compared` judgments on tasks that another annotator's
active judgment or gold also decides (`_compared_with_consensus`), as the daily
`n_consensus_compared`: a lone answer's consensus is that answer. With none compared, agreement,
`consensus_alpha` and spam score are null, and no block rule holds on a null; another's judgment
on a lone task makes it compared (its task is refitted and every voter's card refreshed). A full
fit recounts the sums from the ledger rather than carrying them, which also corrects a state
stored when lone judgments were counted. An annotator is blocked after `min_judgments`
judgments only when a Wilson bound says so: the gold score's upper bound below
`min_gold_score` (over at least `min_gold` gold judgments), or the upper bound of
`consensus_alpha` below `min_consensus_alpha` (over at least `min_judgments` compared
judgments). Their judgments are flagged and their tasks
refitted in the same update. A block the tool revokes
is lifted as in `loop.live` (`_unblock`): their judgments count again, and the block rules
then read only the carried sums since the reversal (`_window_cards`); a full fit adopted
after the reversal keeps it lifted (`adopt_fit`).
"""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtri

from annotation_pipelines.aggregation.by_kind import aggregate_kind
from annotation_pipelines.aggregation.result import best_in_label_order
from annotation_pipelines.aggregation.spans import SpanConfusion, fit_spans
from annotation_pipelines.kinds import (
    BOX_CONTEXT,
    CONTEXT_DTYPES,
    DEFAULT_KIND,
    KIND_COLUMNS,
    VALUE_COLUMNS,
    VALUE_DTYPES,
    boxes_in_task_unit,
    fit_columns,
)
from annotation_pipelines.loop import ledger as lake_ledger
from annotation_pipelines.loop.kind_posterior import (
    KIND_TARGETS,
    PairwiseConfidence,
    comparable_values,
    numeric_confidence,
    numeric_tolerance,
    oriented_winners,
    policy_confidence,
)
from annotation_pipelines.loop.live import (
    ANNOTATOR_ACTIONS,
    ANOTHER_JUDGMENT,
    BLOCK,
    EXPERT_REVIEW,
    LEDGER_FOLDER,
    REVERSALS,
    TASK_REQUESTS,
    BlockRule,
    LiveEvents,
    apply_blocks,
    blocks_due,
    conform_frame,
    decision_id,
    gold_rule,
    in_force,
    lift_columns,
    no_events,
    relisted_requests,
    request_lists,
    state_prefix,
    with_unknown,
)
from annotation_pipelines.loop.policy import (
    ESCALATE,
    NEEDS_ANOTHER_JUDGMENT,
    RECOMMENDED,
    PolicyOptions,
    decide,
)
from annotation_pipelines.quality._common import wilson_bounds
from annotation_pipelines.quality.kinds import (
    GOLD_METRICS,
    SCORED_KINDS,
    box_context,
    judgment_distances,
)
from annotation_pipelines.scale import RatingScale
from annotation_pipelines.schema import UTC_TIMESTAMP

LIVE_KINDS: tuple[str, ...] = SCORED_KINDS
KINDS_FOLDER = "kinds"
# project → the kinds it has a live state of; committed with the states.
KINDS_INDEX = "live/_stream/kinds.json"
_WINNERS = ("left", "right", "tie")
_FLOOR = 1e-300


def value_columns(kind: str) -> dict[str, pl.DataType]:
    return {c: VALUE_DTYPES[c] for c in VALUE_COLUMNS[kind]}


def context_columns(kind: str) -> dict[str, pl.DataType]:
    """Boxes: the unit and image size the boxes are measured in (`kinds.BOX_CONTEXT`), which a
    task's fit needs to read a pixel box and a percent one of the same object as one; none for
    the other kinds. Null where unknown (rows stored before the state kept them): left as
    written."""
    return {c: CONTEXT_DTYPES[c] for c in BOX_CONTEXT} if kind == "boxes" else {}


def ledger_schema(kind: str) -> dict[str, pl.DataType]:
    return {
        "judgment_id": pl.String(),
        "task_id": pl.String(),
        "annotator_id": pl.String(),
        **value_columns(kind),
        **context_columns(kind),
        "submitted_at": UTC_TIMESTAMP,
        "duration_s": pl.Float64(),
        "updated_at": UTC_TIMESTAMP,
        "flagged": pl.Boolean(),
        "version": pl.Int64(),
        "source": pl.String(),
    }


def tasks_schema(kind: str) -> dict[str, pl.DataType]:
    # Boxes: the unit the fused boxes are in (the task's judgments' most common one).
    return {
        "task_id": pl.String(),
        **value_columns(kind),
        **context_columns(kind),
        "confidence": pl.Float64(),
        "n_votes": pl.Int64(),
        "version": pl.Int64(),
    }


def gold_schema(kind: str) -> dict[str, pl.DataType]:
    return {"task_id": pl.String(), **value_columns(kind), **context_columns(kind)}


def stored_gold_schema(kind: str) -> dict[str, pl.DataType]:
    """The state's gold table: the gold and the export files giving it (`gold_sources`; null:
    given by no file, or stored before sources were recorded, so never withdrawn by one)."""
    return {**gold_schema(kind), "gold_sources": lake_ledger.GOLD_SOURCES}


# Per annotator sums carried from run to run (raw units: numeric errors in scale points).
_CARRIED = (
    "n_judgments",
    "n_gold",
    "gold_total",
    "n_compared",
    "distance_total",
    "duration_total",
    "n_durations",
)
_CARRIED_TYPES: dict[str, pl.DataType] = {
    "n_judgments": pl.Int64(),
    "n_gold": pl.Int64(),
    "gold_total": pl.Float64(),
    "n_compared": pl.Int64(),
    "distance_total": pl.Float64(),
    "duration_total": pl.Float64(),
    "n_durations": pl.Int64(),
}
ANNOTATORS: dict[str, pl.DataType] = {
    "annotator_id": pl.String(),
    **_CARRIED_TYPES,
    "n_flagged": pl.Int64(),
    "gold_score": pl.Float64(),
    "gold_score_upper": pl.Float64(),
    "agreement": pl.Float64(),
    "agreement_upper": pl.Float64(),
    "consensus_alpha": pl.Float64(),
    "consensus_alpha_upper": pl.Float64(),
    "spammer_score": pl.Float64(),
    "mean_duration_s": pl.Float64(),
    "blocked": pl.Boolean(),
    "blocked_reason": pl.String(),
    # The decision of the block in force (null: none, or one from before it was recorded, then
    # known from `version`): only a reversal of that decision lifts it.
    "block_decision_id": pl.String(),
    # The last reversal of a block (the tool's `revoked_at`) and the carried sums then: a new
    # block reads the sums since (`_window_cards`), not the judgments already judged.
    "unblocked_at": UTC_TIMESTAMP,
    **{f"base_{c}": dtype for c, dtype in _CARRIED_TYPES.items()},
    "version": pl.Int64(),
}
SCORECARD = (
    "n_judgments",
    # The judgments `agreement` and `consensus_alpha` read: on tasks another annotator's
    # active judgment or gold also decides.
    "n_compared",
    "n_flagged",
    "n_gold",
    "gold_score",
    "gold_score_upper",
    "agreement",
    "agreement_upper",
    "consensus_alpha",
    "consensus_alpha_upper",
    "spammer_score",
    "mean_duration_s",
)
# A segment row `replaces` an earlier version of its judgment (in an older segment) or is a
# `deleted` tombstone: loading resolves only those judgments, not the whole ledger.
SEGMENT_EXTRA = {"replaces": pl.Boolean(), "deleted": pl.Boolean()}


@dataclass(frozen=True, kw_only=True)
class KindLiveOptions:
    """Block thresholds (the daily kind scorecards' floors), the full-fit cadence, the policy.

    `policy` is `policy.RECOMMENDED` (three votes to start, up to thirty); its target is
    replaced by the kind's `KIND_TARGETS` unless `targets` names another.
    `inline_full_fits`: a due full fit (the growth rule's, or `full_fit=True`) runs inside
    `update_kind`; off, the update only records it as due (`full_fit_due`) and a maintenance
    run fits a snapshot off the live path (`fit_snapshot`, `adopt_fit`). The very first fit
    always runs inline: a state without parameters has no answers.
    """

    min_judgments: int = 30
    min_gold: int = 10
    min_gold_score: float = 0.5
    min_consensus_alpha: float = 0.3
    confidence: float = 0.95
    full_fit_every: int = 20
    full_fit_growth: float = 0.1
    inline_full_fits: bool = True
    policy: PolicyOptions = RECOMMENDED
    targets: Mapping[str, float] = field(default_factory=lambda: dict(KIND_TARGETS))

    def policy_for(self, kind: str) -> PolicyOptions:
        return replace(self.policy, target_confidence=self.targets[kind])


@dataclass(frozen=True, kw_only=True)
class Segment:
    key: str
    rows: int
    first: int
    last: int


@dataclass(frozen=True, kw_only=True)
class KindState:
    """One (project, kind)'s running state; `parameters` are the last full fit's per annotator
    (and, for the Dawid–Skene kinds, `annotator_id` null rows holding the class counts)."""

    project: str
    kind: str
    version: int = 0
    fitted_version: int = 0
    # The active judgments the last full fit saw, and the judgments folded in since.
    fitted_judgments: int = 0
    folded_since_fit: int = 0
    # A full fit asked for (the daily re-base) and not yet run, and the re-base days to apply
    # again after it (a fit gives every task its own answer, the re-based ones too).
    fit_requested: bool = False
    rebase_after_fit: tuple[str, ...] = ()
    chance_distance: float | None = None
    value_range: tuple[float, float] | None = None
    ledger: pl.DataFrame = field(default_factory=pl.DataFrame)
    tasks: pl.DataFrame = field(default_factory=pl.DataFrame)
    gold: pl.DataFrame = field(default_factory=pl.DataFrame)
    annotators: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ANNOTATORS))
    parameters: pl.DataFrame = field(default_factory=pl.DataFrame)
    segments: tuple[Segment, ...] = ()
    pending: pl.DataFrame = field(default_factory=pl.DataFrame)

    def __post_init__(self) -> None:
        if self.kind not in LIVE_KINDS:
            raise ValueError(f"project {self.project!r}: kind {self.kind!r} is not a live kind")
        state_prefix(self.project)
        empty = {
            "ledger": ledger_schema(self.kind),
            "tasks": tasks_schema(self.kind),
            "gold": stored_gold_schema(self.kind),
            "pending": _segment_schema(self.kind),
        }
        for name, schema in empty.items():
            if getattr(self, name).width == 0:
                object.__setattr__(self, name, pl.DataFrame(schema=schema))


def _segment_schema(kind: str) -> dict[str, pl.DataType]:
    schema = {c: t for c, t in ledger_schema(kind).items() if c != "flagged"}
    return {**schema, **SEGMENT_EXTRA}


# Incoming rows ------------------------------------------------------------------------------


def kind_file_rows(
    judgments: pl.DataFrame, gold: pl.DataFrame, *, read_at: datetime, source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """An ingested export's non-categorical judgments and gold (with `kind`, `project` and the
    value columns), stamped like `loop.live.file_rows`: `updated_at` = when the content was
    read, `source` = the file (on the gold too), so an edited file replaces and withdraws."""
    return _kind_rows(
        judgments, gold, updated_at=pl.lit(read_at).cast(UTC_TIMESTAMP), source=source
    )


def kind_db_rows(judgments: pl.DataFrame, gold: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The annotation DB's non-categorical judgments and gold of an extract (canonical frames
    with `kind`, the value columns and the DB's `updated_at`), as `update_kind_projects` takes
    them: versioned by the DB's `updated_at`, `source` null (no file: the DB's tombstones, not
    a file edit, withdraw them)."""
    if "updated_at" not in judgments.columns:
        if judgments.height:
            raise ValueError("annotation DB judgments: missing column updated_at")
        judgments = judgments.with_columns(updated_at=pl.lit(None, UTC_TIMESTAMP))
    return _kind_rows(judgments, gold, updated_at=pl.col("updated_at"), source=None)


def _kind_rows(
    judgments: pl.DataFrame, gold: pl.DataFrame, *, updated_at: pl.Expr, source: str | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    kind = pl.col("kind").fill_null(DEFAULT_KIND) if "kind" in judgments.columns else None
    if kind is None or judgments.height == 0:
        rows = judgments.head(0)
    else:
        rows = judgments.filter(kind.is_in(list(LIVE_KINDS)))
    # Boxes carry their unit and image size (null for the other kinds, which drop them).
    values = [c for c in KIND_COLUMNS if c in VALUE_DTYPES and c != "label"] + list(BOX_CONTEXT)
    base = ("judgment_id", "task_id", "project", "annotator_id", "submitted_at", "duration_s")
    rows = _with_columns(rows, {**dict.fromkeys(values), "kind": None}).select(
        *base,
        "kind",
        *values,
        updated_at=updated_at.cast(UTC_TIMESTAMP),
        source=pl.lit(source, pl.String),
    )
    golden = gold
    if "kind" in gold.columns and gold.height:
        golden = gold.filter(pl.col("kind").fill_null(DEFAULT_KIND).is_in(list(LIVE_KINDS)))
    else:
        golden = gold.head(0)
    golden = _with_columns(golden, {**dict.fromkeys(values), "kind": None}).select(
        "task_id", "project", "kind", *values, source=pl.lit(source, pl.String)
    )
    return rows, golden


def _with_columns(frame: pl.DataFrame, names: Mapping[str, object]) -> pl.DataFrame:
    missing = [
        pl.lit(None).cast(KIND_COLUMNS.get(name, pl.String())).alias(name)
        for name in names
        if name not in frame.columns
    ]
    return frame.with_columns(missing) if missing else frame


def _content_key(kind: str) -> pl.Expr:
    """What a judgment says, as one comparable value (nested values included): a box's unit
    and image size too, so a row stored without them takes them from its next version (an
    edited export, an updated DB row); one read again unchanged (the same `updated_at`) is a
    repeat and keeps what it has."""
    columns = [
        "task_id",
        "annotator_id",
        *VALUE_COLUMNS[kind],
        *context_columns(kind),
        "submitted_at",
        "duration_s",
    ]
    return pl.struct([pl.col(c) for c in [*columns, "source"]]).struct.json_encode()


def _incoming(state: KindState, new: pl.DataFrame) -> pl.DataFrame:
    """Rows of the batch not yet in the ledger as they are (one per judgment, newest)."""
    schema = {c: t for c, t in ledger_schema(state.kind).items() if c not in ("flagged", "version")}
    if new.height == 0:
        return pl.DataFrame(schema=schema)
    lake_ledger.check_project(new, state.project)
    if "kind" in new.columns:
        wrong = new.filter(pl.col("kind") != state.kind)
        if wrong.height:
            raise ValueError(
                f"judgment {wrong.item(0, 'judgment_id')}: field kind is "
                f"{wrong.item(0, 'kind')!r}, expected {state.kind!r}"
            )
    optional = {"source", *context_columns(state.kind)}
    missing = [c for c in schema if c not in new.columns and c not in optional]
    if missing:
        raise ValueError(f"new {state.kind} judgments: missing column(s) {', '.join(missing)}")
    new = _with_columns(new, context_columns(state.kind))
    value = VALUE_COLUMNS[state.kind]
    nulls = new.filter(pl.any_horizontal([pl.col(c).is_null() for c in ("annotator_id", *value)]))
    if nulls.height:
        row = nulls.row(0, named=True)
        name = next(c for c in ("annotator_id", *value) if row[c] is None)
        raise ValueError(f"judgment {row['judgment_id']}: field {name} is null")
    rows = lake_ledger.newest_versions(new, {c: t for c, t in schema.items() if c != "source"})
    key = _content_key(state.kind)

    def repeated(rows: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
        mine = rows.with_columns(_key=key)
        theirs = known.select("judgment_id", _updated="updated_at", _known=key)
        return mine.join(theirs, on="judgment_id", how="inner").filter(
            (pl.col("updated_at") == pl.col("_updated")) | (pl.col("_key") == pl.col("_known"))
        )

    return lake_ledger.without_repeats(rows, state.ledger, repeated)


def _gold_key(kind: str) -> pl.Expr:
    """A gold answer as one comparable value (nested values included; a box's unit and image
    size with it)."""
    return pl.struct([*value_columns(kind), *context_columns(kind)]).struct.json_encode()


def _gold_batch(state: KindState, gold: pl.DataFrame | None) -> pl.DataFrame:
    """The batch's `state.kind` gold per task (`ledger.gold_batch`)."""
    schema = {**gold_schema(state.kind), "_key": pl.String(), "_held": lake_ledger.GOLD_SOURCES}
    schema["gold_sources"] = lake_ledger.GOLD_SOURCES
    if gold is None or gold.height == 0:
        return pl.DataFrame(schema=schema)
    if "kind" in gold.columns:
        gold = gold.filter(pl.col("kind") == state.kind)
    gold = _with_columns(gold, context_columns(state.kind))
    columns = [pl.col(c).cast(t) for c, t in gold_schema(state.kind).items()]
    if "source" in gold.columns:
        columns.append(pl.col("source").cast(pl.String))
    batch = lake_ledger.gold_batch(gold.select(columns), _gold_key(state.kind))
    return batch.select(list(schema))


def _new_gold(
    kind: str, gold: pl.DataFrame, batch: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the batch's gold rows that change the stored `gold`, in its schema; those of them with
    a new answer): `ledger.gold_changes`."""
    if batch.height == 0:
        return gold.head(0), gold.head(0)
    known = gold.select("task_id", _known_key=_gold_key(kind), _known="gold_sources")
    changed, relabelled = lake_ledger.gold_changes(batch, known)
    return changed.select(gold.columns), relabelled.select(gold.columns)


def _without_withdrawn_gold(
    gold: pl.DataFrame, gone: pl.DataFrame
) -> tuple[pl.DataFrame, pl.Series]:
    """(the stored `gold` without what is `gone` (`ledger.gold_gone`: what the resynced files
    no longer give, and the DB's gold it deleted), the tasks whose gold went); `gold` itself
    when nothing went. Gold another file still gives stays with fewer sources."""
    lost = gone.filter(pl.col("gold_sources").list.len() == 0).get_column("task_id")
    if gone.height == 0:
        return gold, lost
    kept = gold.join(gone.select("task_id", _left="gold_sources"), on="task_id", how="left")
    kept = kept.filter(~pl.col("task_id").is_in(lost.implode())).with_columns(
        gold_sources=pl.coalesce("_left", "gold_sources")
    )
    return kept.select(gold.columns), lost


# The update ---------------------------------------------------------------------------------


def update_kind(
    state: KindState,
    new_judgments: pl.DataFrame,
    gold: pl.DataFrame | None = None,
    options: KindLiveOptions | None = None,
    *,
    resynced: Collection[str] = (),
    full_fit: bool = False,
    now: datetime | None = None,
    reversals: pl.DataFrame | None = None,
    deleted: pl.DataFrame | None = None,
    deleted_gold: pl.DataFrame | None = None,
) -> tuple[KindState, LiveEvents]:
    """Fold a batch of `state.kind` judgments (and gold) of `state.project` into the state.

    `new_judgments`: `judgment_id`, `task_id`, `annotator_id`, the kind's value column(s),
    `submitted_at`, `duration_s`, `updated_at`, optionally `source` (and for boxes
    `coordinates`, `image_width`, `image_height`: null or absent, unknown); `gold`: `task_id`,
    the value column(s) (boxes: with their unit and image size, optionally), optionally
    `source` (null or absent: given by no file). `resynced`:
    sources read whole in this batch; the judgments and the gold they no longer hold are
    withdrawn (gold another file, or no file, still gives stays: `ledger.gold_batch`), the
    tasks refitted and their annotators' gold sums recounted; a different gold answer
    replaces the earlier one. `full_fit`: refit every task and the annotator parameters with
    the kind's aggregation (the daily re-base); with `options.inline_full_fits` off, only
    record the request (`fit_requested`). `reversals` (`loop.live.REVERSALS`) are blocks the
    tool reversed; each one of this kind's block in force lifts it first (`_unblock`), and one
    already applied or of an earlier block is skipped, as in `loop.live.update`.
    `deleted` / `deleted_gold` are the DB's tombstones (`judgment_id`, `updated_at`,
    `deleted_at`; `task_id`) of this state's judgments and gold (`held_deletions` finds the
    state of each): a judgment or gold the DB gave and deleted is withdrawn by the categorical
    engine's rules (`ledger.gone`, `ledger.gold_gone`), and a tombstone that withdraws nothing
    is counted in `unknown_deletions`.
    """
    options = options or KindLiveOptions()
    now = now or datetime.now(UTC)
    unchanged = state
    state, unblocked, unblocked_tasks = _unblock(state, reversals, options, state.version + 1)
    incoming = _incoming(state, new_judgments)
    withdrawn, unknown = lake_ledger.gone(state.ledger, new_judgments, resynced, deleted)
    batch_gold = _gold_batch(state, gold)
    gone_gold, unknown_gold = lake_ledger.gold_gone(
        state.gold.select("task_id", "gold_sources"), batch_gold, resynced, deleted_gold
    )
    kept_gold, gold_lost = _without_withdrawn_gold(state.gold, gone_gold)
    gold_rows, relabelled = _new_gold(state.kind, kept_gold, batch_gold)
    if (
        incoming.height == 0
        and gold_rows.height == 0
        and withdrawn.height == 0
        and kept_gold is state.gold
        and not full_fit
        and not unblocked
    ):
        return unchanged, with_unknown(no_events(), unknown, unknown_gold)
    version = state.version + 1
    blocked = state.annotators.filter(pl.col("blocked")).get_column("annotator_id")
    added = incoming.with_columns(
        flagged=pl.col("annotator_id").is_in(blocked.implode()),
        version=pl.lit(version, pl.Int64),
    ).select(list(ledger_schema(state.kind)))
    ledger, segment_rows, replaced = lake_ledger.appended(
        state.ledger, state.pending, added, withdrawn, version
    )
    stored_gold = pl.concat(
        [kept_gold.join(gold_rows, on="task_id", how="anti"), gold_rows], how="vertical"
    )
    # The tasks whose gold answer changed or went: refitted, their annotators' sums redone.
    regolded = pl.concat([relabelled.get_column("task_id"), gold_lost]).unique().to_frame()
    affected, only_withdrawn = lake_ledger.affected_tasks(incoming, regolded, replaced, withdrawn)
    value_range = _value_range(state, incoming, relabelled)
    mid = replace(
        state, ledger=ledger, gold=stored_gold, pending=segment_rows, value_range=value_range
    )
    due = full_fit or _growth_due(
        version - state.fitted_version,
        state.folded_since_fit + incoming.height,
        state.fitted_judgments,
        options,
    )
    refit_all = state.parameters.height == 0 or (due and options.inline_full_fits)
    if refit_all:
        fitted = _fit_everything(mid, options, version)
        # Every task held before or after: one whose votes were all withdrawn counted before.
        every_task = pl.concat(
            [state.ledger.get_column("task_id"), ledger.get_column("task_id")]
        ).unique()
        fitted = _carry(
            fitted, before=state, tasks=every_task, ledger_before=state.ledger, recount=True
        )
    else:
        fitted = _refit_tasks(mid, affected, options, version)
        fitted = _carry(fitted, before=state, tasks=affected, ledger_before=state.ledger)
    touched = pl.concat(
        [
            incoming.get_column("annotator_id"),
            withdrawn.get_column("annotator_id"),
            ledger.filter(pl.col("task_id").is_in(affected.implode())).get_column("annotator_id"),
        ]
    ).unique()
    if refit_all:
        touched = fitted.annotators.get_column("annotator_id")
    fitted, actions, alerts, their_tasks = _scored_and_blocked(
        fitted, touched, options, version, now
    )
    lift = partial(_unblock, options=options, version=version)
    fitted, unblocked, unblocked_tasks = lake_ledger.lift_retried(
        fitted, actions, reversals, unblock=lift, unblocked=unblocked, tasks=unblocked_tasks
    )
    their_tasks = pl.concat([their_tasks, unblocked_tasks])
    if their_tasks.len():
        affected = pl.concat([affected, their_tasks]).unique()
    requests = _requests_after_change(
        state, fitted, options, now, affected, only_withdrawn, everything=refit_all
    )
    evidence = affected.filter(~affected.is_in(only_withdrawn.implode()))
    settled = evidence.filter(~evidence.is_in(requests.get_column("task_id").implode()))
    final = replace(fitted, version=version)
    if not refit_all:
        final = replace(
            final,
            folded_since_fit=state.folded_since_fit + incoming.height,
            fit_requested=state.fit_requested or full_fit,
        )
    events = with_unknown(
        LiveEvents(
            task_requests=requests,
            annotator_actions=actions,
            alerts=alerts,
            new_judgments=incoming.height,
            refitted_tasks=final.tasks.height if refit_all else affected.len(),
            withdrawn_judgments=withdrawn.height,
            withdrawn_gold=gold_lost.len(),
            settled_tasks=settled.cast(pl.String).sort(),
            unblocked=unblocked,
        ),
        unknown,
        unknown_gold,
    )
    return final, events


def _unblock(
    state: KindState, reversals: pl.DataFrame | None, options: KindLiveOptions, version: int
) -> tuple[KindState, tuple[str, ...], pl.Series]:
    """(`state` with the reversed blocks lifted at `version`, the annotators unblocked, the
    tasks refitted), as `loop.live._unblock`: only a block still in force is lifted, so the
    stream's overlap and a retried run apply a reversal once. Their judgments are unflagged,
    the tasks they voted on refitted (their votes count again), and their carried sums then
    become the base of the next block's evidence."""
    none = pl.Series("task_id", [], pl.String)
    if reversals is None or reversals.height == 0 or state.annotators.height == 0:
        return state, (), none
    due = in_force(
        _with_block_decisions(state.annotators, state.project, state.kind),
        reversals.filter(pl.col("project") == state.project),
    )
    if due.height == 0:
        return state, (), none
    ids = due.get_column("annotator_id")
    theirs = pl.col("annotator_id").is_in(ids.implode())
    lifted_annotators = state.annotators.with_columns(
        **lift_columns(due),
        version=pl.when(theirs).then(pl.lit(version, pl.Int64)).otherwise("version"),
    )
    ledger = state.ledger.with_columns(flagged=pl.col("flagged") & ~theirs)
    tasks = state.ledger.filter(theirs).get_column("task_id").unique()
    refitted = _refit_tasks(
        replace(state, ledger=ledger, annotators=lifted_annotators), tasks, options, version
    )
    refitted = _carry(refitted, before=state, tasks=tasks, ledger_before=state.ledger)
    annotators = refitted.annotators.with_columns(
        [
            pl.when(theirs).then(pl.col(c)).otherwise(f"base_{c}").alias(f"base_{c}")
            for c in _CARRIED
        ]
    )
    refitted = replace(refitted, annotators=annotators)
    touched = refitted.ledger.filter(pl.col("task_id").is_in(tasks.implode()))
    touched_ids = pl.concat([ids, touched.get_column("annotator_id")]).unique()
    refitted = replace(refitted, annotators=_scorecards(refitted, touched_ids, options))
    return refitted, tuple(ids.to_list()), tasks


def _with_block_decisions(annotators: pl.DataFrame, project: str, kind: str) -> pl.DataFrame:
    """`annotators` with the decision of each block in force: one stored before decisions
    were kept is the kind's block decided at the annotator's `version`."""
    known = {
        a: decision_id(f"{kind}_{BLOCK}", project, a, v)
        for a, v in annotators.filter(pl.col("blocked") & pl.col("block_decision_id").is_null())
        .select("annotator_id", "version")
        .iter_rows()
    }
    if not known:
        return annotators
    return annotators.with_columns(
        block_decision_id=pl.coalesce(
            "block_decision_id",
            pl.col("annotator_id").replace_strict(known, default=None, return_dtype=pl.String),
        )
    )


KIND_REVERSALS: dict[str, pl.DataType] = {**REVERSALS, "kind": pl.String()}


def due_kind_reversals(
    reversals: pl.DataFrame, read: Callable[[str], bytes | None]
) -> pl.DataFrame:
    """The `reversals` (`KIND_REVERSALS`) that lift a block in force in the stored kind states
    (each state's small annotators table read: `loop.ledger.due_reversals`): a run loads and
    updates a kind state for those only. Kept too: the reversal of the block the next version
    would decide again (a run that wrote it to the DB and did not commit, retried)."""

    def found(key: tuple[str, str], data: bytes, mine: pl.DataFrame) -> pl.DataFrame:
        annotators = conform_frame(pl.read_parquet(io.BytesIO(data)), ANNOTATORS)
        due = in_force(_with_block_decisions(annotators, *key), mine)
        return due.with_columns(kind=pl.lit(key[1]))

    return lake_ledger.due_reversals(
        reversals.filter(pl.col("kind").is_not_null()),
        read,
        by=["project", "kind"],
        prefix=lambda key: kind_prefix(*key),
        in_force=found,
        block_id=lambda key, annotator, version: decision_id(
            f"{key[1]}_{BLOCK}", key[0], annotator, version
        ),
        schema=KIND_REVERSALS,
    )


def _growth_due(versions: int, folded: int, fitted: int, options: KindLiveOptions) -> bool:
    """The growth rule: enough versions since the last full fit, and the judgments folded since
    reach `full_fit_growth` of what it saw."""
    return versions >= options.full_fit_every and folded >= options.full_fit_growth * fitted


def _scored_and_blocked(
    state: KindState, touched: pl.Series, options: KindLiveOptions, version: int, now: datetime
) -> tuple[KindState, pl.DataFrame, list[dict[str, object]], pl.Series]:
    """The `touched` annotators' scorecards, their blocks, and the blocked annotators' tasks
    refitted without them (flagged); returns those tasks too (they have new evidence)."""
    state = replace(state, annotators=_scorecards(state, touched, options))
    state, actions, alerts = _block(state, touched, options, version, now)
    if actions.height == 0:
        return state, actions, alerts, pl.Series("task_id", [], dtype=pl.String)
    blocked_now = actions.get_column("annotator_id")
    flagged_ledger = state.ledger.with_columns(
        flagged=pl.col("flagged") | pl.col("annotator_id").is_in(blocked_now.implode())
    )
    their_tasks = (
        state.ledger.filter(pl.col("annotator_id").is_in(blocked_now.implode()))
        .get_column("task_id")
        .unique()
    )
    refitted = _refit_tasks(replace(state, ledger=flagged_ledger), their_tasks, options, version)
    refitted = _carry(refitted, before=state, tasks=their_tasks, ledger_before=state.ledger)
    again = refitted.ledger.filter(pl.col("task_id").is_in(their_tasks.implode()))
    touched = pl.concat([touched, again.get_column("annotator_id")]).unique()
    refitted = replace(refitted, annotators=_scorecards(refitted, touched, options))
    return refitted, actions, alerts, their_tasks


def update_kind_projects(
    states: Mapping[tuple[str, str], KindState],
    judgments: pl.DataFrame,
    gold: pl.DataFrame | None = None,
    options: KindLiveOptions | None = None,
    *,
    resynced: Mapping[tuple[str, str], Collection[str]] | None = None,
    full_fit: bool = False,
    now: datetime | None = None,
    reversals: pl.DataFrame | None = None,
    deleted: pl.DataFrame | None = None,
    deleted_gold: pl.DataFrame | None = None,
) -> tuple[dict[tuple[str, str], KindState], dict[tuple[str, str], LiveEvents]]:
    """`update_kind` per (project, kind) in `judgments` / `gold` (`project` and `kind` columns),
    in `resynced`, in `reversals` (`KIND_REVERSALS`: each lifts its kind's block), in the DB's
    tombstones `deleted` / `deleted_gold` (with the `kind` of the state holding each:
    `held_deletions`), or (with `full_fit`) in `states`."""
    resynced = resynced or {}
    keys: set[tuple[str, str]] = set()
    for frame in (judgments, gold, deleted, deleted_gold):
        if frame is not None and frame.height:
            keys |= {(p, k) for p, k in frame.select("project", "kind").unique().iter_rows()}
    keys |= {key for key, sources in resynced.items() if sources}
    if full_fit:
        keys |= set(states)
    if reversals is not None and reversals.height:
        keys |= set(reversals.select("project", "kind").unique().iter_rows())
    next_states = dict(states)
    events: dict[tuple[str, str], LiveEvents] = {}
    for project, kind in sorted(keys):
        state = next_states.get((project, kind)) or KindState(project=project, kind=kind)

        def mine(frame: pl.DataFrame | None, p: str = project, k: str = kind) -> pl.DataFrame:
            if frame is None or frame.height == 0:
                return pl.DataFrame()
            return frame.filter((pl.col("project") == p) & (pl.col("kind") == k))

        next_states[(project, kind)], events[(project, kind)] = update_kind(
            state,
            mine(judgments),
            mine(gold),
            options,
            resynced=resynced.get((project, kind), ()),
            full_fit=full_fit and state.version > 0,
            now=now,
            reversals=None
            if reversals is None
            else reversals.filter(pl.col("kind") == kind).select(list(REVERSALS)),
            deleted=mine(deleted),
            deleted_gold=mine(deleted_gold),
        )
    return next_states, events


def held_deletions(
    states: Mapping[tuple[str, str], KindState], deleted: pl.DataFrame, deleted_gold: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The DB's tombstones (`deleted`: `judgment_id`, with `project`; `deleted_gold`:
    `task_id`, with `project`) of the judgments and gold a kind state holds, each with that
    state's `kind`: a tombstone names no kind, so the states of its project are looked in.
    `states` must hold every kind state holding one (`states_holding` finds them). The
    categorical engine gets every tombstone, these too: one id can be held by both."""

    def found(
        tombstones: pl.DataFrame, key: str, held: Callable[[KindState], pl.Series]
    ) -> pl.DataFrame:
        parts = [tombstones.head(0).with_columns(kind=pl.lit(None, pl.String))]
        if tombstones.height:
            for (project, kind), state in sorted(states.items()):
                ids = held(state)
                parts.append(
                    tombstones.filter(
                        (pl.col("project") == project)
                        & pl.col(key).cast(pl.String).is_in(ids.implode())
                    ).with_columns(kind=pl.lit(kind, pl.String))
                )
        return pl.concat(parts, how="vertical")

    return (
        found(deleted, "judgment_id", lambda s: s.ledger.get_column("judgment_id")),
        found(deleted_gold, "task_id", lambda s: s.gold.get_column("task_id")),
    )


def refused_by_scale(
    state: KindState, scale: RatingScale, *, at: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Tombstones, in the shape of the DB's (`DELETIONS`, `GOLD_DELETIONS` of
    `ingest.postgres`), of the judgments and gold a numeric `state` holds from the DB (null
    `source`) that `scale` refuses, dated `at`: the scale a project declares in the DB after
    they were folded withdraws them as the extract would have quarantined them. Each names
    the version held, so a newer one read in the same run stays. Rows of export files follow
    their project.json, whose change reads their files again (`assets.live`)."""
    project = pl.lit(state.project, pl.String)
    moment = pl.lit(at).cast(UTC_TIMESTAMP)
    judged = state.ledger.filter(
        pl.col("source").is_null() & scale.outside(pl.col("value")).fill_null(False)
    ).select(
        "judgment_id",
        "task_id",
        project.alias("project"),
        "annotator_id",
        "submitted_at",
        "updated_at",
        moment.alias("deleted_at"),
    )
    gold = state.gold.filter(
        pl.col("gold_sources").is_null() & scale.outside(pl.col("value")).fill_null(False)
    ).select(
        "task_id",
        project.alias("project"),
        pl.lit(None, pl.String).alias("label"),
        moment.alias("updated_at"),
        moment.alias("deleted_at"),
    )
    return judged, gold


# The end-of-day re-base -----------------------------------------------------------------------


def rebase_kind(
    state: KindState,
    daily: pl.DataFrame,
    day: str,
    options: KindLiveOptions | None = None,
    *,
    now: datetime | None = None,
) -> tuple[KindState, LiveEvents]:
    """Re-base the tasks of `day` on that day's `kind_aggregated_labels`, the record of truth.

    `daily` is this (project, kind)'s rows of the daily table for `day` (`task_id`, the kind's
    value column(s), `confidence`, `n_votes`; numeric `lo`, `hi`). As `loop.live.rebase`: a
    task is re-based when the daily fit saw exactly the votes the live state holds for it (each
    ledger row, flagged ones too, submitted on `day`, and `n_votes` of them); its answer becomes
    the daily's. A task with votes on another day, or a vote the daily fit has not seen, keeps
    its live answer; a gold task keeps the gold answer (the daily fit is anchored on it).

    The confidence is the daily's as the policy reads it (`kind_posterior`): the table's own
    `confidence` for multilabel, ranking, spans, boxes and text; for numeric the daily interval
    `lo`, `hi` read at the live tolerance (the table's `confidence` is a relative width); for
    pairwise, whose table reports the winning side's share of the weight, the live
    Dawid–Skene posterior of the daily winner (oriented as the live state shows the pair).

    The carried parameters that are a function of the consensus follow it: multilabel's and
    pairwise's expected counts are recounted by one EM step over the ledger, the re-based
    tasks (and the gold) certain of their answer, the others at their E-step posterior. The
    others (the last full fit's bias and noise, weights, reliabilities, span matrices) are estimates
    over the whole ledger, which one day's fit does not refresh. The scorecards' agreement sums
    are moved from the old answers to the new ones. Requests only where the policy's answer on
    a re-based task changed, so a task already requested is not requested twice.
    """
    options = options or KindLiveOptions()
    now = now or datetime.now(UTC)
    if daily.height == 0 or state.tasks.height == 0:
        return state, no_events()
    answers = _daily_answers(state, daily)
    votes = state.ledger.group_by("task_id").agg(
        n_all=pl.len().cast(pl.Int64),
        same_day=(pl.col("submitted_at").dt.date() == date.fromisoformat(day)).all(),
    )
    chosen = (
        answers.join(votes, on="task_id", how="inner")
        .filter(pl.col("same_day") & (pl.col("n_all") == pl.col("_daily_votes")))
        .join(state.gold.select("task_id"), on="task_id", how="anti")
        .join(state.tasks.select("task_id"), on="task_id", how="semi")
        .sort("task_id")
    )
    if chosen.height == 0:
        return state, no_events()
    version = state.version + 1
    # A daily box answer comes with the unit it is in, which replaces the live one.
    context = [c for c in context_columns(state.kind) if c in chosen.columns]
    columns = [*VALUE_COLUMNS[state.kind], *context]
    chosen = _policy_reading(state, chosen)
    fresh = chosen.select(
        "task_id", *[pl.col(c).alias(f"_new_{c}") for c in columns], _new_confidence="_confidence"
    )
    replaced = pl.col("_new_confidence").is_not_null()
    tasks = (
        state.tasks.join(fresh, on="task_id", how="left", maintain_order="left")
        .with_columns(
            *[pl.when(replaced).then(f"_new_{c}").otherwise(c).alias(c) for c in columns],
            confidence=pl.when(replaced).then("_new_confidence").otherwise("confidence"),
            version=pl.when(replaced).then(pl.lit(version, pl.Int64)).otherwise("version"),
        )
        .select(list(tasks_schema(state.kind)))
    )
    ids = chosen.get_column("task_id")
    rebased = replace(state, tasks=tasks)
    if state.kind in ("multilabel", "pairwise"):
        rebased = replace(rebased, parameters=_recounted(rebased, ids))
    rebased = _carry(rebased, before=state, tasks=ids, ledger_before=state.ledger)
    touched = state.ledger.filter(pl.col("task_id").is_in(ids.implode())).get_column("annotator_id")
    rebased = replace(rebased, annotators=_scorecards(rebased, touched.unique(), options))
    before = open_kind_requests(state, options, now=now, tasks=ids)
    after = open_kind_requests(rebased, options, now=now, tasks=ids)
    requests = after.join(
        before.select("task_id", "request"), on=["task_id", "request"], how="anti"
    )
    events = LiveEvents(
        task_requests=requests,
        annotator_actions=pl.DataFrame(schema=ANNOTATOR_ACTIONS),
        alerts=[],
        rebased_tasks=ids.len(),
    )
    return replace(rebased, version=version), events


def rebase_kind_projects(
    states: Mapping[tuple[str, str], KindState],
    daily: Mapping[str, pl.DataFrame],
    options: KindLiveOptions | None = None,
    *,
    now: datetime | None = None,
) -> tuple[dict[tuple[str, str], KindState], dict[tuple[str, str], list[LiveEvents]]]:
    """`rebase_kind` per (project, kind) state with rows in `daily` (day → that day's
    `kind_aggregated_labels`, with `project` and `kind`), the days in order."""
    next_states = dict(states)
    events: dict[tuple[str, str], list[LiveEvents]] = {}
    for day, frame in sorted(daily.items()):
        if frame.height == 0:
            continue
        for project, kind in sorted(frame.select("project", "kind").unique().iter_rows()):
            state = next_states.get((project, kind))
            if state is None or state.version == 0:
                continue
            rows = frame.filter((pl.col("project") == project) & (pl.col("kind") == kind))
            next_states[(project, kind)], event = rebase_kind(state, rows, day, options, now=now)
            events.setdefault((project, kind), []).append(event)
    return next_states, events


# The full fit off the live path ---------------------------------------------------------------


def full_fit_due(meta: Mapping[str, Any], options: KindLiveOptions) -> bool:
    """Whether a stored state (its `state.json`, or `fit_counters` of a state) waits for a full
    fit: one was asked for (`fit_requested`), or the growth rule holds, which is what the run
    that stored it would have fitted inline on."""
    if int(meta.get("version", 0)) == 0:
        return False
    if meta.get("fit_requested"):
        return True
    return _growth_due(
        int(meta["version"]) - int(meta.get("fitted_version", 0)),
        int(meta.get("folded_since_fit", 0)),
        int(meta.get("fitted_judgments", 0)),
        options,
    )


def fit_counters(state: KindState) -> dict[str, Any]:
    """The `state.json` fields `full_fit_due` reads."""
    return {
        "version": state.version,
        "fitted_version": state.fitted_version,
        "fitted_judgments": state.fitted_judgments,
        "folded_since_fit": state.folded_since_fit,
        "fit_requested": state.fit_requested,
    }


def due_full_fits(read: Callable[[str], bytes | None], options: KindLiveOptions) -> dict[str, int]:
    """`project/kind` → stored version, for each kind state (of the kinds index) whose full fit
    is due; reads only the small `state.json` objects."""
    due: dict[str, int] = {}
    for project, kinds in sorted(load_kinds_index(read).items()):
        for kind in sorted(kinds):
            raw = read(f"{kind_prefix(project, kind)}/state.json")
            if raw is None:
                continue
            meta = json.loads(raw)
            if full_fit_due(meta, options):
                due[f"{project}/{kind}"] = int(meta["version"])
    return due


@dataclass(frozen=True)
class FittedSnapshot:
    """A full fit of a stored state (`snapshot`, version v): `fitted` is what `update_kind`
    with `full_fit=True` and no new judgments makes of it at version v + 1 (every task and the
    parameters refitted, the carried sums moved, every scorecard, blocks), `actions` / `alerts`
    its blocks, `their_tasks` the blocked annotators' tasks (refitted without them)."""

    snapshot: KindState
    fitted: KindState
    actions: pl.DataFrame
    alerts: list[dict[str, object]]
    their_tasks: pl.Series


def fit_snapshot(
    snapshot: KindState, options: KindLiveOptions | None = None, *, now: datetime | None = None
) -> FittedSnapshot:
    """The kind's full fit of `snapshot`, built without the live lock (see `adopt_fit`)."""
    options = options or KindLiveOptions()
    now = now or datetime.now(UTC)
    version = snapshot.version + 1
    fitted = _fit_everything(snapshot, options, version)
    every_task = snapshot.ledger.get_column("task_id").unique()
    fitted = _carry(
        fitted, before=snapshot, tasks=every_task, ledger_before=snapshot.ledger, recount=True
    )
    touched = fitted.annotators.get_column("annotator_id")
    fitted, actions, alerts, their_tasks = _scored_and_blocked(
        fitted, touched, options, version, now
    )
    return FittedSnapshot(
        snapshot=snapshot,
        fitted=replace(fitted, version=version),
        actions=actions,
        alerts=alerts,
        their_tasks=their_tasks,
    )


def adopt_fit(
    fit: FittedSnapshot,
    current: KindState,
    options: KindLiveOptions | None = None,
    *,
    daily: Mapping[str, pl.DataFrame] | None = None,
    now: datetime | None = None,
    reversals: pl.DataFrame | None = None,
) -> tuple[KindState, LiveEvents] | None:
    """`current` (version w, read under the live lock) with the full fit of its snapshot
    (version v ≤ w) adopted, at version w + 1; None when another fit was adopted since the
    snapshot (its parameters are newer: nothing to do).

    w = v: the fit's state as `update_kind(full_fit=True)` makes it. w > v: the live runs
    folded batches in between with the old parameters; as if the fit had run at v and those
    batches after it, every task whose rows, flags or gold changed between v and w is refitted
    with the fit's parameters (`_refit_tasks`) and its carried sums moved from the fit's
    answer to the new one; the other tasks take the fit's answers. Blocks made between v and
    w stand (a fit's block of an annotator already blocked is dropped), and the changed tasks'
    annotators are scored and may be blocked. The ledger is `current`'s: no judgment is added
    or dropped. Numeric confidences of the changed tasks read the rating scale at w (a live
    run reads it at its own version).

    Then the re-base days recorded with the request (`rebase_after_fit`, each `daily[day]` this
    state's rows of that day's `kind_aggregated_labels`) are applied again, so the day's tasks
    keep the daily answers. Requests: on the blocked annotators' tasks, and on every other task
    only where the policy's answer differs from `current`'s, so no decision is requested twice.

    `reversals` (`loop.live.REVERSALS`): blocks the tool revoked that an earlier attempt of
    this adoption decided and wrote before failing (`loop.writeback.revoked_attempts`); the
    same block decided again is lifted (`loop.ledger.lift_retried`), not adopted in force.
    """
    options = options or KindLiveOptions()
    now = now or datetime.now(UTC)
    snapshot, fitted = fit.snapshot, fit.fitted
    if current.version < snapshot.version or current.fitted_version != snapshot.fitted_version:
        return None
    version = current.version + 1
    actions, alerts, fresh = fit.actions, fit.alerts, fit.their_tasks
    if current.version == snapshot.version:
        adopted = fitted
    else:
        # The fit's block of an annotator blocked since, or lifted since: the earlier decision,
        # or the reversal, stands (the fit's evidence predates it).
        since = _block_changed(snapshot.annotators, current.annotators)
        already = set(current.annotators.filter(pl.col("blocked"))["annotator_id"]) | set(since)
        kept = [i for i, a in enumerate(actions.get_column("annotator_id")) if a not in already]
        actions, alerts = actions[kept], [alerts[i] for i in kept]
        annotators = _merged_blocks(fitted.annotators, current.annotators, since)
        blocked = annotators.filter(pl.col("blocked")).get_column("annotator_id")
        base = replace(
            fitted,
            ledger=current.ledger.with_columns(
                flagged=pl.col("flagged") | pl.col("annotator_id").is_in(blocked.implode())
            ),
            gold=current.gold,
            pending=current.pending,
            segments=current.segments,
            value_range=current.value_range,
            annotators=annotators,
            tasks=fitted.tasks.with_columns(version=pl.lit(version, pl.Int64)),
        )
        changed = _changed_tasks(fitted, base)
        adopted = _refit_tasks(base, changed, options, version)
        adopted = _carry(adopted, before=fitted, tasks=changed, ledger_before=fitted.ledger)
        mine = pl.col("task_id").is_in(changed.implode())
        touched = pl.concat(
            [
                fitted.ledger.filter(mine).get_column("annotator_id"),
                adopted.ledger.filter(mine).get_column("annotator_id"),
            ]
        ).unique()
        adopted, more, more_alerts, their_tasks = _scored_and_blocked(
            adopted, touched, options, version, now
        )
        actions = pl.concat([actions, more], how="vertical")
        alerts = [*alerts, *more_alerts]
        fresh = pl.concat([fresh, their_tasks]).unique()
    requested = current.fit_requested and not snapshot.fit_requested
    adopted = replace(
        adopted,
        version=version,
        fitted_version=version,
        folded_since_fit=current.folded_since_fit - snapshot.folded_since_fit,
        fit_requested=requested,
        rebase_after_fit=current.rebase_after_fit if requested else (),
    )
    rebased = 0
    for day in sorted(set(current.rebase_after_fit)):
        rows = (daily or {}).get(day)
        if rows is not None and rows.height:
            adopted, event = rebase_kind(adopted, rows, day, options, now=now)
            rebased += event.rebased_tasks
    lift = partial(_unblock, options=options, version=version)
    adopted, unblocked, unblocked_tasks = lake_ledger.lift_retried(
        adopted, actions, reversals, unblock=lift, unblocked=(), tasks=fresh.head(0)
    )
    if unblocked:
        # The tool lifted that block already: no alert raises it again (one alert per action).
        ids = actions.get_column("annotator_id").to_list()
        alerts = [alert for a, alert in zip(ids, alerts, strict=True) if a not in unblocked]
        fresh = pl.concat([fresh, unblocked_tasks]).unique()
    empty = pl.Series("task_id", [], dtype=pl.String)
    requests = _requests_after_change(current, adopted, options, now, fresh, empty, everything=True)
    events = LiveEvents(
        task_requests=requests,
        annotator_actions=actions,
        alerts=alerts,
        refitted_tasks=adopted.tasks.height,
        rebased_tasks=rebased,
        unblocked=unblocked,
    )
    return adopted, events


# An annotator's block and its evidence window: `current`'s stand over a fit's.
_BLOCK_COLUMNS = (
    "blocked",
    "blocked_reason",
    "block_decision_id",
    "unblocked_at",
    *(f"base_{c}" for c in _CARRIED),
    "version",
)


def _block_changed(snapshot: pl.DataFrame, current: pl.DataFrame) -> list[str]:
    """Annotators whose block was lifted after the `snapshot`: a reversal `current` applied."""
    before = snapshot.select("annotator_id", _before="unblocked_at")
    joined = current.join(before, on="annotator_id", how="left")
    lifted = pl.col("unblocked_at").is_not_null() & ~pl.col("unblocked_at").eq_missing(
        pl.col("_before")
    )
    return joined.filter(lifted).get_column("annotator_id").to_list()


def _merged_blocks(fitted: pl.DataFrame, current: pl.DataFrame, lifted: list[str]) -> pl.DataFrame:
    """The fit's annotators with the blocks made since its snapshot (`current`'s: an earlier
    decision stands) and the blocks `lifted` since (`current`'s: the reversal stands, with its
    evidence window), and the annotators new since then with no carried sums yet."""
    block = list(_BLOCK_COLUMNS)
    theirs = current.filter(pl.col("blocked") | pl.col("annotator_id").is_in(lifted)).select(
        "annotator_id", *block, _now=pl.lit(True)
    )
    known = fitted.join(theirs, on="annotator_id", how="left", suffix="_now")
    merged = known.with_columns(
        [
            pl.when(pl.col("_now").fill_null(False))
            .then(pl.col(f"{c}_now"))
            .otherwise(pl.col(c))
            .alias(c)
            for c in block
        ]
    ).select(list(ANNOTATORS))
    newcomers = current.join(fitted.select("annotator_id"), on="annotator_id", how="anti")
    newcomers = newcomers.with_columns([pl.lit(0).cast(ANNOTATORS[c]).alias(c) for c in _CARRIED])
    return pl.concat([merged, newcomers.select(list(ANNOTATORS))], how="vertical").cast(
        pl.Schema(ANNOTATORS)
    )


def _changed_tasks(before: KindState, after: KindState) -> pl.Series:
    """Tasks whose ledger rows (a judgment added, replaced or withdrawn: its version), flags or
    gold differ between two states."""
    key = ["task_id", "judgment_id", "version", "flagged"]
    old, new = before.ledger.select(key), after.ledger.select(key)
    rows = pl.concat([old.join(new, on=key, how="anti"), new.join(old, on=key, how="anti")])
    value = _gold_key(before.kind)
    old_gold = before.gold.select("task_id", _key=value)
    new_gold = after.gold.select("task_id", _key=value)
    gold = pl.concat(
        [
            old_gold.join(new_gold, on=["task_id", "_key"], how="anti"),
            new_gold.join(old_gold, on=["task_id", "_key"], how="anti"),
        ]
    )
    return pl.concat([rows.get_column("task_id"), gold.get_column("task_id")]).unique().sort()


def merged_events(events: Collection[LiveEvents]) -> LiveEvents:
    """Several updates' events as one (a run that folds and then re-bases a state)."""
    return LiveEvents(
        task_requests=pl.concat(
            [pl.DataFrame(schema=TASK_REQUESTS), *(e.task_requests for e in events)]
        ),
        annotator_actions=pl.concat(
            [pl.DataFrame(schema=ANNOTATOR_ACTIONS), *(e.annotator_actions for e in events)]
        ),
        alerts=[a for e in events for a in e.alerts],
        new_judgments=sum(e.new_judgments for e in events),
        refitted_tasks=sum(e.refitted_tasks for e in events),
        rebased_tasks=sum(e.rebased_tasks for e in events),
        withdrawn_judgments=sum(e.withdrawn_judgments for e in events),
        withdrawn_gold=sum(e.withdrawn_gold for e in events),
        unknown_deletions=sum(e.unknown_deletions for e in events),
        unknown_deleted=frozenset().union(*(e.unknown_deleted for e in events)),
        unknown_deleted_gold=frozenset().union(*(e.unknown_deleted_gold for e in events)),
        settled_tasks=pl.concat(
            [pl.Series("task_id", [], pl.String), *(e.settled_tasks for e in events)]
        )
        .unique()
        .sort(),
    )


def settled_frame(events: Mapping[tuple[str, str], LiveEvents]) -> pl.DataFrame:
    """`project`, `task_id` of the kind states' `settled_tasks`, as the write-back takes them."""
    return pl.concat(
        [
            pl.DataFrame(schema={"project": pl.String, "task_id": pl.String}),
            *(
                pl.DataFrame({"task_id": e.settled_tasks}).select(
                    project=pl.lit(project, pl.String), task_id=pl.col("task_id")
                )
                for (project, _), e in sorted(events.items())
            ),
        ]
    )


def _daily_answers(state: KindState, daily: pl.DataFrame) -> pl.DataFrame:
    """The daily rows in the live tasks' types: `task_id`, value column(s) (spans and boxes
    without their per-item confidence), `_confidence`, `_daily_votes` (numeric: `lo`, `hi`;
    boxes: the unit and image size of the daily answer, where the table has them)."""
    columns = list(VALUE_COLUMNS[state.kind])
    required = ["task_id", *columns, "confidence", "n_votes"]
    missing = [c for c in required if c not in daily.columns]
    if missing:
        raise ValueError(
            f"kind_aggregated_labels of {state.project} ({state.kind}): missing column(s) "
            f"{', '.join(missing)}"
        )
    interval = [pl.col(c).cast(pl.Float64) for c in ("lo", "hi") if c in daily.columns]
    context = [
        pl.col(c).cast(t) for c, t in context_columns(state.kind).items() if c in daily.columns
    ]
    figures = daily.select(
        *interval,
        *context,
        _confidence=pl.col("confidence").cast(pl.Float64),
        _daily_votes=pl.col("n_votes").cast(pl.Int64),
    )
    return pl.concat([comparable_values(daily, state.kind), figures], how="horizontal")


def _policy_reading(state: KindState, chosen: pl.DataFrame) -> pl.DataFrame:
    """`_confidence` as the policy reads the daily answer (see `rebase_kind`)."""
    if state.kind == "numeric" and {"lo", "hi"} <= set(chosen.columns):
        scale = _scale(state)
        tolerance = numeric_tolerance(scale if scale is not None else chosen.get_column("value"))
        has = pl.col("lo").is_not_null() & pl.col("hi").is_not_null()
        read = numeric_confidence(
            chosen.get_column("lo").fill_null(0.0).to_numpy(),
            chosen.get_column("hi").fill_null(0.0).to_numpy(),
            tolerance=tolerance,
        )
        return chosen.with_columns(
            _confidence=pl.when(has)
            .then(pl.Series(read, dtype=pl.Float64))
            .otherwise("_confidence")
        )
    if state.kind != "pairwise":
        return chosen
    live = state.tasks.select("task_id", _left="left", _right="right")
    oriented = chosen.join(live, on="task_id", how="left").with_columns(
        winner=pl.when(
            (pl.col("left") != pl.col("_left")) & pl.col("winner").is_in(["left", "right"])
        )
        .then(pl.when(pl.col("winner") == "left").then(pl.lit("right")).otherwise(pl.lit("left")))
        .otherwise("winner"),
        left=pl.col("_left"),
        right=pl.col("_right"),
    )
    rows = _active(state, oriented.get_column("task_id"))
    if rows.height == 0:
        return oriented.drop("_left", "_right")
    tasks, posterior = _pairwise_probabilities(rows, state.parameters)
    codes = {w: i for i, w in enumerate(_WINNERS)}
    index = dict(zip(tasks.get_column("task_id"), range(tasks.height), strict=True))
    probability = [
        float(posterior[index[task], codes[winner]]) if task in index else None
        for task, winner in oriented.select("task_id", "winner").iter_rows()
    ]
    return oriented.with_columns(
        _confidence=pl.coalesce(pl.Series(probability, dtype=pl.Float64), "_confidence")
    ).drop("_left", "_right")


def _recounted(state: KindState, rebased: pl.Series) -> pl.DataFrame:
    """Multilabel / pairwise: the carried counts after one EM step over the ledger: the E-step
    with the carried counts on every task, the `rebased` tasks and the gold certain of their
    answer, then the expected counts (the M-step's statistics)."""
    rows = _active(state)
    if rows.height == 0:
        return state.parameters
    columns = list(VALUE_COLUMNS[state.kind])
    known = state.tasks.filter(pl.col("task_id").is_in(rebased.implode())).select(
        "task_id", *columns
    )
    gold = state.gold.join(rows.select("task_id").unique(), on="task_id", how="semi")
    if state.kind == "pairwise":
        tasks, posterior = _pairwise_probabilities(rows, state.parameters)
        truth = tasks.with_columns(
            [pl.Series(f"_p{i}", posterior[:, i], dtype=pl.Float64) for i in range(3)]
        )
        known = pl.concat([known, _oriented_gold(rows, gold)], how="vertical_relaxed")
        return _pairwise_parameters(rows, _clamped(truth, known, state.kind))
    tasks, classes, probability = _multilabel_probabilities(rows, state.parameters)
    truth = (
        tasks.select("task_id")
        .with_columns(
            [pl.Series(name, probability[:, i], dtype=pl.Float64) for i, name in enumerate(classes)]
        )
        .unpivot(index="task_id", variable_name="class", value_name="p")
        if classes
        else pl.DataFrame(schema={"task_id": pl.String, "class": pl.String, "p": pl.Float64})
    )
    known = pl.concat([known, gold.select("task_id", *columns)], how="vertical_relaxed")
    return _multilabel_parameters(rows, _clamped(truth, known, state.kind))


def _oriented_gold(rows: pl.DataFrame, gold: pl.DataFrame) -> pl.DataFrame:
    """Gold pairs as the task's first row shows the pair (`task_id`, `left`, `right`, `winner`)."""
    first = rows.group_by("task_id", maintain_order=True).agg(pl.col("left").first().alias("_l"))
    swapped = (pl.col("left") != pl.col("_l")) & pl.col("winner").is_in(["left", "right"])
    mirrored = pl.when(pl.col("winner") == "left").then(pl.lit("right")).otherwise(pl.lit("left"))
    return gold.join(first, on="task_id", how="inner").select(
        "task_id",
        left=pl.when(swapped).then("right").otherwise("left"),
        right=pl.when(swapped).then("left").otherwise("right"),
        winner=pl.when(swapped).then(mirrored).otherwise("winner"),
    )


def _value_range(
    state: KindState, incoming: pl.DataFrame, gold: pl.DataFrame
) -> tuple[float, float] | None:
    """Numeric only: the range of every value seen, the scale agreement is measured on."""
    if state.kind != "numeric":
        return None
    values = pl.concat([incoming.get_column("value"), gold.get_column("value")]).drop_nulls()
    if values.len() == 0:
        return state.value_range
    low, high = float(values.min()), float(values.max())  # type: ignore[arg-type]
    if state.value_range is not None:
        low, high = min(low, state.value_range[0]), max(high, state.value_range[1])
    return low, high


# Fits ---------------------------------------------------------------------------------------


def _active(state: KindState, tasks: pl.Series | None = None) -> pl.DataFrame:
    # One filter: narrowing to the tasks first copies only their rows, not the whole ledger.
    keep = ~pl.col("flagged")
    if tasks is not None:
        keep = pl.col("task_id").is_in(tasks.implode()) & keep
    rows = state.ledger.filter(keep)
    # A stable order: pairwise orients every task by its first row.
    return rows.sort("task_id", "submitted_at", "judgment_id")


def _fit_everything(state: KindState, options: KindLiveOptions, version: int) -> KindState:
    """The kind's aggregation over every active judgment: all tasks and the parameters."""
    rows = _active(state)
    gold = state.gold.filter(pl.col("task_id").is_in(rows.get_column("task_id").implode()))
    labels, parameters = full_fit_labels(state.kind, rows, gold)
    tasks = _task_rows(state, labels, rows, gold, version)
    return replace(
        state,
        tasks=tasks,
        parameters=parameters,
        fitted_version=version,
        fitted_judgments=rows.height,
        folded_since_fit=0,
        fit_requested=False,
        rebase_after_fit=(),
        # Each judgment in its task's unit, as the daily scorecards read D_e.
        chance_distance=_chance_distance(
            state.kind, _in_consensus_unit(state.kind, rows, tasks), labels
        ),
    )


def _refit_tasks(
    state: KindState, affected: pl.Series, options: KindLiveOptions, version: int
) -> KindState:
    """The `affected` tasks' posteriors with the carried parameters; the rest stay."""
    if affected.len() == 0:
        return state
    rows = _active(state, affected)
    gold = state.gold.filter(pl.col("task_id").is_in(affected.implode()))
    labels = (
        refit_labels(state.kind, rows, gold, state.parameters, ledger_values=_scale(state))
        if rows.height
        else pl.DataFrame(schema=_labels_schema(state.kind))
    )
    fresh = _task_rows(state, labels, rows, gold, version)
    kept = state.tasks.filter(~pl.col("task_id").is_in(affected.implode()))
    return replace(state, tasks=pl.concat([kept, fresh], how="vertical"))


def _scale(state: KindState) -> pl.Series | None:
    """Numeric: every active value of the project (the tolerance reads the rating scale)."""
    if state.kind != "numeric":
        return None
    return state.ledger.select("value", "flagged").filter(~pl.col("flagged")).get_column("value")


def _labels_schema(kind: str) -> dict[str, pl.DataType]:
    return {"task_id": pl.String(), **value_columns(kind), "confidence": pl.Float64()}


def _task_rows(
    state: KindState,
    labels: pl.DataFrame,
    rows: pl.DataFrame,
    gold: pl.DataFrame,
    version: int,
) -> pl.DataFrame:
    """One row per task with votes or gold: the refit's answer (gold: the gold answer, at
    confidence 1), `n_votes` the active judgments."""
    columns = list(VALUE_COLUMNS[state.kind])
    votes = rows.group_by("task_id").agg(n_votes=pl.len().cast(pl.Int64))
    answered = labels.select("task_id", *columns, "confidence").join(
        gold.select("task_id"), on="task_id", how="anti"
    )
    context = list(context_columns(state.kind))
    units = None
    if context:
        # The fused boxes are in the unit most of the task's judgments give (`aggregate_kind`),
        # and so is its gold answer; a task only gold answers keeps the gold's own.
        units = box_context(rows)
        gold = boxes_in_task_unit(gold, units=units.select("task_id", _unit="coordinates"))
    golden = gold.select("task_id", *columns, confidence=pl.lit(1.0, pl.Float64))
    frame = pl.concat(
        [
            answered.cast(pl.Schema(_labels_schema(state.kind))),
            golden.cast(pl.Schema(_labels_schema(state.kind))),
        ],
        how="vertical",
    )
    if units is not None:
        own = gold.select("task_id", *context).join(units, on="task_id", how="anti")
        frame = frame.join(
            pl.concat([units, own], how="vertical_relaxed"), on="task_id", how="left"
        )
    return (
        frame.join(votes, on="task_id", how="left")
        .with_columns(n_votes=pl.col("n_votes").fill_null(0), version=pl.lit(version, pl.Int64))
        .select(list(tasks_schema(state.kind)))
        .cast(pl.Schema(tasks_schema(state.kind)))
    )


def full_fit_labels(
    kind: str, rows: pl.DataFrame, gold: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`task_id`, value column(s), `confidence` per task; the parameters to carry)."""
    columns = list(VALUE_COLUMNS[kind])
    if rows.height == 0:
        return pl.DataFrame(schema=_labels_schema(kind)), pl.DataFrame()
    anchors = fit_columns(gold, kind, "task_id") if gold.height else None
    if kind == "pairwise":
        winners = PairwiseConfidence(gold=anchors)
        labels = _pairwise_labels(rows, winners(rows))
        # The fit clamps the gold pairs itself, in the pairs' own orientation.
        truth = _winner_probabilities(winners.posterior, labels)
        return labels, _pairwise_parameters(rows, truth)
    plain = fit_columns(rows, kind, "task_id", "annotator_id")
    if kind == "spans":
        fitted, carried = fit_spans(plain, gold=anchors)
        return _with_confidence(kind, fitted.labels, rows), _span_parameters(carried)
    result = aggregate_kind(plain, kind=kind, gold=anchors)
    confidence = policy_confidence(kind, result.labels, rows)
    labels = result.labels.select("task_id", *columns).join(
        confidence.select("task_id", "confidence"), on="task_id", how="left"
    )
    if kind == "multilabel":
        truth = _class_probabilities(result.labels.select("task_id", "probability"))
        return labels, _multilabel_parameters(rows, _clamped(truth, gold, kind))
    if kind == "numeric":
        return labels, result.annotators.select("annotator_id", "bias", "noise_sd")
    return labels, result.annotators.select("annotator_id", "reliability")


def refit_labels(
    kind: str,
    rows: pl.DataFrame,
    gold: pl.DataFrame,
    parameters: pl.DataFrame,
    *,
    ledger_values: pl.Series | None = None,
) -> pl.DataFrame:
    """The touched tasks' answers and confidences with the carried `parameters` fixed."""
    anchors = fit_columns(gold, kind, "task_id") if gold.height else None
    plain = fit_columns(rows, kind, "task_id", "annotator_id")
    if kind == "numeric":
        values = ledger_values if ledger_values is not None else rows.get_column("value")
        return _numeric_posterior(rows, gold, parameters, tolerance=numeric_tolerance(values))
    if kind == "multilabel":
        return _multilabel_posterior(rows, gold, parameters)
    if kind == "pairwise":
        return _pairwise_posterior(rows, gold, parameters)
    if kind == "spans":
        fitted, _ = fit_spans(plain, gold=anchors, confusion=_span_confusion(parameters))
        return _with_confidence(kind, fitted.labels, rows)
    result = aggregate_kind(plain, kind=kind, gold=anchors, reliability=parameters)
    return _with_confidence(kind, result.labels, rows)


def _with_confidence(kind: str, labels: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """The aggregate's value column(s) and the policy's confidence (`policy_confidence`)."""
    confidence = policy_confidence(kind, labels, rows)
    return labels.select("task_id", *VALUE_COLUMNS[kind]).join(
        confidence.select("task_id", "confidence"), on="task_id", how="left"
    )


def _span_parameters(carried: SpanConfusion) -> pl.DataFrame:
    """A spans fit's confusion counts as a frame: one row per annotator (K×K, row-major) and a
    null-annotator row with the class prior; `classes` the class order (code 0 is O)."""
    k = len(carried.classes) + 1
    classes = pl.Series(
        [carried.classes] * (carried.annotators.len() + 1), dtype=pl.List(pl.String)
    )
    return pl.DataFrame(
        {
            "annotator_id": pl.concat(
                [carried.annotators.cast(pl.String), pl.Series([None], dtype=pl.String)]
            ),
            "confusion": pl.Series(
                [*carried.counts.reshape(-1, k * k).tolist(), carried.prior.tolist()],
                dtype=pl.List(pl.Float64),
            ),
            "classes": classes,
        }
    )


def _span_confusion(parameters: pl.DataFrame) -> SpanConfusion:
    annotators = parameters.filter(pl.col("annotator_id").is_not_null())
    prior = parameters.filter(pl.col("annotator_id").is_null())
    classes = list(parameters.get_column("classes")[0]) if parameters.height else []
    k = len(classes) + 1
    counts = np.asarray(annotators.get_column("confusion").to_list(), dtype=np.float64)
    return SpanConfusion(
        classes=classes,
        annotators=annotators.get_column("annotator_id"),
        counts=counts.reshape(-1, k, k),
        prior=np.asarray(prior.get_column("confusion")[0].to_list(), dtype=np.float64)
        if prior.height
        else np.zeros(k),
    )


def _numeric_posterior(
    rows: pl.DataFrame, gold: pl.DataFrame, parameters: pl.DataFrame, *, tolerance: float
) -> pl.DataFrame:
    """x_ij = t_i + b_j + ε, ε ~ N(0, σ_j²), flat prior on t: t_i | x ~ N(Σ w(x − b) / Σ w,
    1 / Σ w) with w = 1/σ_j² (the bias-and-noise model's E-step; a newcomer has no bias and
    the median noise)."""
    known = parameters.select("annotator_id", "bias", "noise_sd")
    noise = known.get_column("noise_sd").drop_nulls()
    default = float(noise.median() or 1.0) if noise.len() else 1.0  # type: ignore[arg-type]
    frame = rows.select("task_id", "annotator_id", "value").join(
        known, on="annotator_id", how="left", maintain_order="left"
    )
    frame = frame.with_columns(
        bias=pl.col("bias").fill_null(0.0),
        weight=1.0 / pl.col("noise_sd").fill_null(default).clip(lower_bound=1e-6).pow(2),
    )
    per_task = frame.group_by("task_id", maintain_order=True).agg(
        precision=pl.col("weight").sum(),
        weighted=((pl.col("value") - pl.col("bias")) * pl.col("weight")).sum(),
    )
    z = float(ndtri(0.975))
    per_task = per_task.with_columns(
        value=pl.col("weighted") / pl.col("precision"),
        sd=1.0 / pl.col("precision").sqrt(),
    ).with_columns(lo=pl.col("value") - z * pl.col("sd"), hi=pl.col("value") + z * pl.col("sd"))
    # The interval centred on zero: beside a value near 1e200, hi − lo rounds to 0.
    sd = per_task.get_column("sd").to_numpy()
    confidence = numeric_confidence(-z * sd, z * sd, tolerance=tolerance)
    labels = per_task.select("task_id", "value", confidence=pl.Series(confidence))
    golden = gold.select("task_id", "value", confidence=pl.lit(1.0))
    return pl.concat(
        [labels.join(golden.select("task_id"), on="task_id", how="anti"), golden],
        how="vertical_relaxed",
    )


# Dawid–Skene kinds with carried confusion counts ---------------------------------------------


def _ds_posterior(
    task: np.ndarray,
    annotator: np.ndarray,
    answer: np.ndarray,
    counts: np.ndarray,
    prior: np.ndarray,
    n_tasks: int,
) -> np.ndarray:
    """P(truth | votes) per task with fixed confusion counts (annotator −1: none carried) under
    a Dirichlet prior of one pseudo-count per cell plus one on the diagonal (as `loop.live`)."""
    k = prior.shape[0]
    a = counts.shape[0]
    padded = np.concatenate([counts, np.zeros((1, k, k))])  # row a: a newcomer
    who = np.where(annotator < 0, a, annotator)
    smoothed = padded + 1.0 + np.eye(k)[None, :, :]
    theta = smoothed / smoothed.sum(axis=1, keepdims=True)
    scores = np.zeros((n_tasks, k))
    log_theta = np.log(np.maximum(theta[who, answer, :], _FLOOR))
    for truth in range(k):
        scores[:, truth] = np.bincount(task, weights=log_theta[:, truth], minlength=n_tasks)
    scores += np.log((prior + 1.0) / (prior.sum() + k))[None, :]
    scores -= scores.max(axis=1, keepdims=True)
    probabilities = np.exp(scores)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def _counts_of(
    parameters: pl.DataFrame, annotators: pl.Series, k: int, *, class_name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(counts (annotators, K, K) in `annotators` order, prior (K,)) from the parameters."""
    frame = parameters
    if class_name is not None and frame.height:
        frame = frame.filter(pl.col("class") == class_name)
    counts = np.zeros((annotators.len(), k, k))
    prior = np.zeros(k)
    if frame.height == 0:
        return counts, prior
    prior_rows = frame.filter(pl.col("annotator_id").is_null())
    if prior_rows.height:
        prior = np.asarray(prior_rows.get_column("confusion")[0], dtype=np.float64)
    indexed = annotators.to_frame("annotator_id").with_row_index("_code")
    joined = indexed.join(frame.drop_nulls("annotator_id"), on="annotator_id", how="inner")
    if joined.height:
        flat = np.asarray(joined.get_column("confusion").to_list(), dtype=np.float64)
        counts[joined.get_column("_code").to_numpy()] = flat.reshape(-1, k, k)
    return counts, prior


def _pairwise_labels(rows: pl.DataFrame, confidence: pl.DataFrame) -> pl.DataFrame:
    """The pair's winner as its first row shows the pair (left, right, winner)."""
    first = rows.group_by("task_id", maintain_order=True).agg(
        pl.col("left").first(), pl.col("right").first()
    )
    return first.join(
        confidence.select("task_id", winner="label", confidence="confidence"),
        on="task_id",
        how="inner",
    ).select("task_id", "left", "right", "winner", "confidence")


def _pairwise_posterior(
    rows: pl.DataFrame, gold: pl.DataFrame, parameters: pl.DataFrame
) -> pl.DataFrame:
    tasks, posterior = _pairwise_probabilities(rows, parameters)
    best = best_in_label_order(posterior, pl.Series(_WINNERS))
    confidence = tasks.select(
        "task_id",
        label=pl.Series([_WINNERS[b] for b in best], dtype=pl.String),
        confidence=pl.Series(posterior[np.arange(tasks.height), best], dtype=pl.Float64),
    )
    return _pairwise_labels(rows, confidence)


def _pairwise_probabilities(
    rows: pl.DataFrame, parameters: pl.DataFrame
) -> tuple[pl.DataFrame, np.ndarray]:
    """(`task_id` in posterior row order, P(left / right / tie) per task as the task's first
    row shows the pair) with the carried counts fixed."""
    oriented = oriented_winners(rows)
    tasks = oriented.select("task_id").unique(maintain_order=True).with_row_index("_task")
    annotators = oriented.get_column("annotator_id").unique().sort()
    counts, prior = _counts_of(parameters, annotators, len(_WINNERS))
    codes = {w: i for i, w in enumerate(_WINNERS)}
    coded = oriented.join(tasks, on="task_id").join(
        annotators.to_frame().with_row_index("_annotator"), on="annotator_id"
    )
    posterior = _ds_posterior(
        coded.get_column("_task").to_numpy().astype(np.int64),
        coded.get_column("_annotator").to_numpy().astype(np.int64),
        coded.get_column("label").replace_strict(codes, return_dtype=pl.Int64).to_numpy(),
        counts,
        prior,
        tasks.height,
    )
    return tasks.select("task_id"), posterior


def _class_universe(rows: pl.DataFrame, parameters: pl.DataFrame) -> list[str]:
    seen = set(rows.get_column("labels").explode().drop_nulls().to_list())
    if parameters.height and "class" in parameters.columns:
        seen |= set(parameters.get_column("class").drop_nulls().to_list())
    return sorted(seen)


def _multilabel_codes(
    rows: pl.DataFrame, classes: list[str], truth: pl.DataFrame | None
) -> pl.DataFrame:
    """One row per (judgment, class): `answer` 1 if the judgment lists the class (and `truth`
    from the `truth` frame's sets)."""
    frame = rows.select("task_id", "annotator_id", "labels").join(
        pl.DataFrame({"class": classes}, schema={"class": pl.String}), how="cross"
    )
    frame = frame.with_columns(
        answer=pl.col("labels").list.contains(pl.col("class")).cast(pl.Int64)
    )
    if truth is not None:
        frame = frame.join(truth.select("task_id", _truth="labels"), on="task_id", how="inner")
        frame = frame.with_columns(
            truth=pl.col("_truth").list.contains(pl.col("class")).cast(pl.Int64)
        )
    return frame


def _multilabel_parameters(rows: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Per (annotator, class) the expected 2×2 counts [answer, truth] of the judgments, and per
    class the expected counts of the truth (the prior): the M-step's statistics given `truth`
    (`task_id`, `class`, `p` = P(class applies); a class the frame lacks for a task: 0)."""
    classes = _class_universe(rows, pl.DataFrame())
    if not classes:
        return pl.DataFrame()
    codes = _multilabel_codes(rows, classes, None).join(truth, on=["task_id", "class"], how="left")
    codes = codes.with_columns(pl.col("p").fill_null(0.0))
    return _soft_counts(
        codes.select("task_id", "annotator_id", "class", "answer", _p0=1.0 - pl.col("p"), _p1="p"),
        n_classes=2,
    )


def _class_probabilities(probability: pl.DataFrame) -> pl.DataFrame:
    """`task_id`, `probability` (a struct, one field per class) → `task_id`, `class`, `p`."""
    if probability.height == 0 or not probability.schema["probability"].fields:  # type: ignore[attr-defined]
        return pl.DataFrame(schema={"task_id": pl.String, "class": pl.String, "p": pl.Float64})
    return (
        probability.unnest("probability")
        .unpivot(index="task_id", variable_name="class", value_name="p")
        .with_columns(pl.col("task_id").cast(pl.String), pl.col("p").cast(pl.Float64))
    )


def _winner_probabilities(posterior: pl.DataFrame | None, labels: pl.DataFrame) -> pl.DataFrame:
    """`task_id`, `_p0`, `_p1`, `_p2`: P(left / right / tie) per pair from a fit's posterior
    struct (a winner nobody chose: 0); without one, the answer in `labels` with certainty."""
    if posterior is None:
        codes = {w: i for i, w in enumerate(_WINNERS)}
        return labels.select(
            "task_id",
            *[(pl.col("winner") == w).cast(pl.Float64).alias(f"_p{codes[w]}") for w in _WINNERS],
        )
    fields = {f.name for f in posterior.schema["posterior"].fields}  # type: ignore[attr-defined]
    return posterior.select(
        pl.col("task_id").cast(pl.String),
        *[
            (
                pl.col("posterior").struct.field(w).cast(pl.Float64)
                if w in fields
                else pl.lit(0.0, pl.Float64)
            ).alias(f"_p{i}")
            for i, w in enumerate(_WINNERS)
        ],
    )


def _pairwise_parameters(rows: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Per annotator the expected 3×3 counts [answer, truth] of their oriented winners, and the
    expected counts of the truth (the prior), given `truth` (`task_id`, `_p0`.. `_p2`)."""
    oriented = oriented_winners(rows)
    codes = {w: i for i, w in enumerate(_WINNERS)}
    frame = oriented.join(truth, on="task_id", how="inner").select(
        "task_id",
        "annotator_id",
        answer=pl.col("label").replace_strict(codes, return_dtype=pl.Int64),
        _p0="_p0",
        _p1="_p1",
        _p2="_p2",
    )
    return _soft_counts(frame, n_classes=len(_WINNERS))


def _soft_counts(frame: pl.DataFrame, *, n_classes: int) -> pl.DataFrame:
    """The M-step's statistics with each judgment's truth a distribution (`_p0`..): per
    annotator (and `class`) the K×K sums Σ P(truth = t) at [answer, t], and null-annotator rows
    (per `class`) with Σ over tasks of P(truth = t), the prior.

    Summed in key order with `np.bincount`: Polars' multi-threaded group sums add in an order
    that changes from run to run, so the same state would be written with different last digits.
    """
    keys: list[str] = [c for c in ("annotator_id", "class") if c in frame.columns]
    shares = [f"_p{t}" for t in range(n_classes)]
    answer = frame.get_column("answer").to_numpy()
    weights = frame.select(
        [
            pl.Series(f"_c{a}_{t}", np.where(answer == a, frame.get_column(p).to_numpy(), 0.0))
            for a in range(n_classes)
            for t, p in enumerate(shares)
        ]
    )
    cells = pl.concat([frame, weights], how="horizontal")
    counts = _sums_in_key_order(cells, keys, weights.columns)
    prior_keys: list[str] = [c for c in keys if c != "annotator_id"] or ["_all"]
    per_task = frame.with_columns(_all=pl.lit(0)).unique([*prior_keys, "task_id"], keep="first")
    prior = _sums_in_key_order(per_task, prior_keys, shares).with_columns(
        annotator_id=pl.lit(None, pl.String)
    )
    return pl.concat([counts, prior.select(*keys, "confusion")], how="vertical_relaxed")


def _sums_in_key_order(frame: pl.DataFrame, keys: list[str], columns: list[str]) -> pl.DataFrame:
    """`keys` and `confusion` (the list of each of `columns`' sums) per distinct `keys`, the
    rows added in (`keys`, `task_id`) order."""
    ordered = frame.sort([*keys, "task_id"])
    group = ordered.select(pl.struct(keys).rle_id()).to_series().to_numpy()
    n_groups = int(group[-1]) + 1 if group.size else 0
    sums = np.stack(
        [
            np.bincount(group, weights=ordered.get_column(c).to_numpy(), minlength=n_groups)
            for c in columns
        ],
        axis=1,
    )
    return (
        ordered.select(keys)
        .unique(maintain_order=True)
        .with_columns(confusion=pl.Series(sums.tolist(), dtype=pl.List(pl.Float64)))
    )


def _clamped(truth: pl.DataFrame, known: pl.DataFrame, kind: str) -> pl.DataFrame:
    """`truth` with the tasks of `known` (gold, or re-based answers: `task_id` and the kind's
    value column(s)) certain of their answer."""
    if known.height == 0:
        return truth
    if kind == "pairwise":
        sure = known.select(
            pl.col("task_id").cast(pl.String),
            *[
                (pl.col("winner") == w).cast(pl.Float64).alias(f"_p{i}")
                for i, w in enumerate(_WINNERS)
            ],
        )
        return pl.concat([truth.join(sure, on="task_id", how="anti"), sure.select(truth.columns)])
    classes = truth.select("class").unique()
    extra = known.select(pl.col("labels").explode().alias("class")).drop_nulls().unique()
    classes = pl.concat([classes, extra]).unique()
    sure = (
        known.select(pl.col("task_id").cast(pl.String), "labels")
        .join(classes, how="cross")
        .select(
            "task_id",
            "class",
            p=pl.col("labels").list.contains(pl.col("class")).cast(pl.Float64),
        )
    )
    kept = truth.join(known.select(pl.col("task_id").cast(pl.String)), on="task_id", how="anti")
    return pl.concat([kept, sure.select(truth.columns)])


def _multilabel_posterior(
    rows: pl.DataFrame, gold: pl.DataFrame, parameters: pl.DataFrame
) -> pl.DataFrame:
    """Per class the binary Dawid–Skene E-step; the set is every class at P ≥ 1/2 and the
    confidence Π_c max(p_c, 1 − p_c), as `aggregate_multilabel_kind` reports it."""
    tasks, classes, probability = _multilabel_probabilities(rows, parameters)
    n = tasks.height
    chosen: list[list[str]] = [[] for _ in range(n)]
    confidence = np.ones(n)
    for code, name in enumerate(classes):
        posterior = probability[:, code]
        confidence *= np.maximum(posterior, 1.0 - posterior)
        for index in np.flatnonzero(posterior >= 0.5):
            chosen[index].append(name)
    return tasks.select(
        "task_id",
        labels=pl.Series(chosen, dtype=pl.List(pl.String)),
        confidence=pl.Series(confidence, dtype=pl.Float64),
    )


def _multilabel_probabilities(
    rows: pl.DataFrame, parameters: pl.DataFrame
) -> tuple[pl.DataFrame, list[str], np.ndarray]:
    """(`task_id` in row order, the classes, P(class applies) per task and class) with the
    carried counts fixed."""
    classes = _class_universe(rows, parameters)
    tasks = rows.select("task_id").unique(maintain_order=True).with_row_index("_task")
    n = tasks.height
    annotators = rows.get_column("annotator_id").unique().sort()
    codes = (
        _multilabel_codes(rows, classes, None)
        .join(tasks, on="task_id")
        .join(annotators.to_frame().with_row_index("_annotator"), on="annotator_id")
    )
    probability = np.zeros((n, len(classes)))
    for code, name in enumerate(classes):
        mine = codes.filter(pl.col("class") == name)
        counts, prior = _counts_of(parameters, annotators, 2, class_name=name)
        probability[:, code] = _ds_posterior(
            mine.get_column("_task").to_numpy().astype(np.int64),
            mine.get_column("_annotator").to_numpy().astype(np.int64),
            mine.get_column("answer").to_numpy().astype(np.int64),
            counts,
            prior,
            n,
        )[:, 1]
    return tasks.select("task_id"), classes, probability


# Scorecards ---------------------------------------------------------------------------------


def _chance_distance(kind: str, rows: pl.DataFrame, labels: pl.DataFrame) -> float | None:
    """D_e of the daily scorecards (`quality.kinds.consensus_agreement`): 1/2 for rankings,
    1 − Σ p_w² for pairwise, else the distance to a random other task's consensus (seed 0)."""
    if rows.height == 0 or labels.height == 0:
        return None
    if kind == "ranking":
        return 0.5
    if kind == "pairwise":
        # Sorted: `value_counts` lists the winners in a new order each run, and the sum of
        # squares would differ in its last digits.
        counts = rows.get_column("winner").value_counts(sort=False).sort("winner")["count"]
        shares = counts.to_numpy() / rows.height
        return float(1.0 - np.sum(shares**2))
    judged = rows.join(labels.select("task_id"), on="task_id", how="semi")
    order = np.random.default_rng(0).permutation(labels.height)
    shuffled = labels.with_columns(pl.col("task_id").gather(order))
    distances = judgment_distances(judged, shuffled, kind=kind)
    return float(np.nanmean(distances)) if distances.size else None


def _row_stats(state: KindState, rows: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    """Per annotator of `rows`: the `_CARRIED` sums against `tasks` (consensus) and the gold."""
    kind = state.kind
    columns = list(VALUE_COLUMNS[kind])
    if rows.height == 0:
        return pl.DataFrame(
            schema={"annotator_id": pl.String, **{c: ANNOTATORS[c] for c in _CARRIED}}
        )
    consensus = tasks.select("task_id", *columns)
    rows = _in_consensus_unit(kind, rows, tasks)
    judged = rows.join(consensus.select("task_id"), on="task_id", how="semi")
    if kind == "pairwise":
        distance = _pairwise_distances(judged, consensus)
    else:
        distance = (
            judgment_distances(judged, consensus, kind=kind) if judged.height else np.zeros(0)
        )
    compared = (
        judged.select("annotator_id", _compared=_compared_with_consensus(judged, state.gold))
        .with_columns(_distance=pl.Series(distance, dtype=pl.Float64))
        .filter(pl.col("_compared"))
    )
    gold = _gold_metric(state, rows, tasks)
    base = rows.group_by("annotator_id").agg(
        n_judgments=pl.len().cast(pl.Int64),
        duration_total=pl.col("duration_s").sum().cast(pl.Float64),
        n_durations=pl.col("duration_s").count().cast(pl.Int64),
    )
    agree = (
        compared.drop_nans("_distance")
        .group_by("annotator_id")
        .agg(n_compared=pl.len().cast(pl.Int64), distance_total=pl.col("_distance").sum())
    )
    return (
        base.join(agree, on="annotator_id", how="left")
        .join(gold, on="annotator_id", how="left")
        .with_columns(pl.col(list(_CARRIED)).fill_null(0))
        .select("annotator_id", *_CARRIED)
    )


def _in_consensus_unit(kind: str, frame: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    """Boxes: `frame`'s (judgments' or gold's) boxes in the unit of their task's answer in
    `tasks`, so a pixel box is scored against percent consensus or gold as the same object
    (where the task's unit or the row's image size is unknown, as written). Other kinds as
    they are."""
    if not context_columns(kind) or frame.height == 0:
        return frame
    return boxes_in_task_unit(frame, units=tasks.select("task_id", _unit="coordinates"))


def _compared_with_consensus(rows: pl.DataFrame, gold: pl.DataFrame) -> pl.Expr:
    """True for a row of `rows` (every ledger row of its task) whose task's answer is more
    than that row's own: another annotator's active (unflagged) judgment is on the task, or
    the task has `gold`. A lone answer's consensus is that answer, so comparing the two would
    only count it as agreeing with itself. An expression over `rows`."""
    active = ~pl.col("flagged")
    voters = pl.col("annotator_id").filter(active).n_unique().over("task_id")
    theirs = active.any().over("task_id", "annotator_id").cast(pl.UInt32)
    others = voters - theirs >= 1
    if gold.height == 0:
        return others
    return others | pl.col("task_id").is_in(gold.get_column("task_id").implode())


def _pairwise_distances(judged: pl.DataFrame, consensus: pl.DataFrame) -> np.ndarray:
    """Pairwise: 0 where a judgment's winner is the consensus winner as that judgment shows
    the pair (left and right may be swapped), else 1 (the nominal distance on pairs)."""
    joined = judged.select("task_id", "left", "winner").join(
        consensus.select("task_id", _left="left", _winner="winner"),
        on="task_id",
        how="left",
        maintain_order="left",
    )
    swapped = pl.col("left") != pl.col("_left")
    expected = (
        pl.when(swapped & (pl.col("_winner") == "left"))
        .then(pl.lit("right"))
        .when(swapped & (pl.col("_winner") == "right"))
        .then(pl.lit("left"))
        .otherwise(pl.col("_winner"))
    )
    differs = joined.select((pl.col("winner") != expected).fill_null(True)).to_series()
    return differs.to_numpy().astype(np.float64)


def _gold_metric(state: KindState, rows: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    """Per annotator: `n_gold`, `gold_total` = Σ over their gold judgments of the kind's own gold
    metric (`quality.kinds.GOLD_METRICS`), each judgment scored alone, raw units. `rows` are in
    the unit of their task's answer in `tasks` (boxes), and the gold is put in it too."""
    empty = pl.DataFrame(
        schema={"annotator_id": pl.String, "n_gold": pl.Int64, "gold_total": pl.Float64}
    )
    if state.gold.height == 0:
        return empty
    columns = list(VALUE_COLUMNS[state.kind])
    judged = rows.join(state.gold.select("task_id"), on="task_id", how="semi")
    if judged.height == 0:
        return empty
    metric = GOLD_METRICS[state.kind]
    module = importlib.import_module(f"annotation_pipelines.aggregation.{metric.module}")
    gold = state.gold.join(judged.select("task_id").unique(), on="task_id", how="semi")
    gold = _in_consensus_unit(state.kind, gold, tasks)
    per_judgment = module.gold_score(
        judged.select("task_id", annotator_id="judgment_id", **{c: c for c in columns}),
        gold.select("task_id", *columns),
    )
    scored = per_judgment.select(
        judgment_id="annotator_id", _metric=pl.col(metric.column).cast(pl.Float64)
    ).filter(pl.col("_metric").is_not_null() & pl.col("_metric").is_not_nan())
    return (
        judged.select("judgment_id", "annotator_id")
        .join(scored, on="judgment_id", how="inner")
        .group_by("annotator_id")
        .agg(n_gold=pl.len().cast(pl.Int64), gold_total=pl.col("_metric").sum())
    )


def _carry(
    state: KindState,
    *,
    before: KindState,
    tasks: pl.Series,
    ledger_before: pl.DataFrame,
    recount: bool = False,
) -> KindState:
    """The carried sums with the `tasks`' rows before taken away and after added. `recount`
    (`tasks` then every task, as a full fit has): the sums counted afresh from the ledger
    instead. A state stored before lone judgments were left out of the agreement sums still
    counts them, and taking away by the current rule would never remove them."""
    mine = pl.col("task_id").is_in(tasks.implode())
    old_rows = ledger_before.filter(mine)
    new_rows = state.ledger.filter(mine)
    old_state = replace(state, gold=before.gold)
    # The tasks' consensus only: joins then hash what the run touched, not every task.
    added = _row_stats(state, new_rows, state.tasks.filter(mine))
    if recount:
        removed = added.head(0)
        state = replace(
            state,
            annotators=state.annotators.with_columns(
                [pl.lit(0, ANNOTATORS[c]).alias(c) for c in _CARRIED]
            ),
        )
    else:
        removed = _row_stats(old_state, old_rows, before.tasks.filter(mine))
    delta = (
        pl.concat([added, removed.with_columns([-pl.col(c) for c in _CARRIED])], how="vertical")
        .group_by("annotator_id")
        .agg([pl.col(c).sum() for c in _CARRIED])
    )
    annotators = state.annotators
    fresh = delta.select("annotator_id").join(annotators, on="annotator_id", how="anti")
    if fresh.height:
        annotators = pl.concat(
            [
                annotators,
                fresh.with_columns(blocked=pl.lit(False), version=pl.lit(0, pl.Int64)),
            ],
            how="diagonal_relaxed",
        ).select(list(ANNOTATORS))
    joined = annotators.join(delta, on="annotator_id", how="left", suffix="_delta")
    annotators = joined.with_columns(
        [pl.col(c).fill_null(0) + pl.col(f"{c}_delta").fill_null(0) for c in _CARRIED]
    ).select(list(ANNOTATORS))
    return replace(state, annotators=annotators.cast(pl.Schema(ANNOTATORS)))


def _scorecards(state: KindState, touched: pl.Series, options: KindLiveOptions) -> pl.DataFrame:
    """The scorecard columns of the `touched` annotators from the carried sums."""
    annotators = state.annotators
    if touched.len() == 0 or annotators.height == 0:
        return annotators
    metric = GOLD_METRICS[state.kind]
    spread = 1.0
    if state.kind == "numeric" and state.value_range is not None:
        spread = (state.value_range[1] - state.value_range[0]) or 1.0
    mean_gold = pl.col("gold_total") / pl.col("n_gold")
    if metric.signed:
        gold_score = (mean_gold + 1.0) / 2.0
    elif not metric.bounded:
        gold_score = (1.0 - mean_gold / spread).clip(0.0, 1.0)
    else:
        gold_score = mean_gold if metric.higher_is_better else 1.0 - mean_gold
    agreement = (1.0 - pl.col("distance_total") / pl.col("n_compared") / spread).clip(0.0, 1.0)
    chance = state.chance_distance
    if state.kind == "numeric" and chance is not None:
        chance = chance / spread
    work = annotators.with_columns(
        _gold=pl.when(pl.col("n_gold") > 0).then(gold_score),
        _agreement=pl.when(pl.col("n_compared") > 0).then(agreement),
    )
    _, gold_upper = wilson_bounds(
        pl.col("_gold") * pl.col("n_gold"), pl.col("n_gold"), confidence=options.confidence
    )
    _, agreement_upper = wilson_bounds(
        pl.col("_agreement") * pl.col("n_compared"),
        pl.col("n_compared"),
        confidence=options.confidence,
    )
    work = work.with_columns(_gold_upper=gold_upper, _agreement_upper=agreement_upper)

    def alpha(column: str) -> pl.Expr:
        if chance is None or chance <= 0:
            return pl.lit(None, pl.Float64)
        return 1.0 - (1.0 - pl.col(column)) / chance

    work = work.with_columns(_alpha=alpha("_agreement"), _alpha_upper=alpha("_agreement_upper"))
    chosen = pl.col("annotator_id").is_in(touched.implode())
    fresh = {
        "gold_score": pl.col("_gold"),
        "gold_score_upper": pl.col("_gold_upper"),
        "agreement": pl.col("_agreement"),
        "agreement_upper": pl.col("_agreement_upper"),
        "consensus_alpha": pl.col("_alpha"),
        "consensus_alpha_upper": pl.col("_alpha_upper"),
        "spammer_score": (1.0 - pl.col("_alpha")).clip(0.0, 1.0),
        "mean_duration_s": pl.when(pl.col("n_durations") > 0).then(
            pl.col("duration_total") / pl.col("n_durations")
        ),
        "n_flagged": pl.when(pl.col("blocked")).then(pl.col("n_judgments")).otherwise(0),
    }
    return (
        work.with_columns(
            [
                pl.when(chosen).then(expr).otherwise(pl.col(name)).alias(name)
                for name, expr in fresh.items()
            ]
        )
        .select(list(ANNOTATORS))
        .cast(pl.Schema(ANNOTATORS))
    )


def _window_cards(state: KindState, cards: pl.DataFrame, options: KindLiveOptions) -> pl.DataFrame:
    """`cards` with those of annotators whose block was reversed scored on what came after the
    reversal: the carried sums less their base then. The sums of the judgments before it
    drift a little as their tasks are refitted, so a count or a distance is clipped at zero."""
    reversed_ = cards.filter(pl.col("unblocked_at").is_not_null())
    if reversed_.height == 0:
        return cards
    window = reversed_.with_columns(
        [
            (pl.col(c) - pl.col(f"base_{c}").fill_null(0)).clip(lower_bound=0)
            if c != "gold_total"
            else pl.col(c) - pl.col(f"base_{c}").fill_null(0)
            for c in _CARRIED
        ]
    )
    scored = _scorecards(
        replace(state, annotators=window), window.get_column("annotator_id"), options
    )
    return pl.concat([cards.filter(pl.col("unblocked_at").is_null()), scored])


def _block_rules(kind: str, options: KindLiveOptions) -> list[BlockRule]:
    """The kind's gold score confidently below `min_gold_score`; or chance-corrected agreement
    with the consensus confidently below `min_consensus_alpha`, read on at least
    `min_judgments` judgments compared with it (those alone on their tasks say nothing of it,
    and a few compared ones are too few to block on). Neither holds on a null: an annotator
    with no judgment compared (`_compared_with_consensus`) has no agreement."""
    return [
        gold_rule(
            label=f"{kind} gold score",
            score="gold_score",
            upper="gold_score_upper",
            floor=options.min_gold_score,
            min_gold=options.min_gold,
            confidence=options.confidence,
        ),
        BlockRule(
            holds=(pl.col("consensus_alpha_upper") < options.min_consensus_alpha)
            & (pl.col("n_compared") >= options.min_judgments),
            reason=lambda card: (
                f"{kind} agreement with the consensus {card['agreement']:.3f}, "
                f"chance-corrected {card['consensus_alpha']:.3f} (upper bound "
                f"{card['consensus_alpha_upper']:.3f}) < {options.min_consensus_alpha:g} over "
                f"{card['n_compared']} of {card['n_judgments']} judgments compared"
            ),
        ),
    ]


def _block(
    state: KindState, touched: pl.Series, options: KindLiveOptions, version: int, now: datetime
) -> tuple[KindState, pl.DataFrame, list[dict[str, object]]]:
    cards = state.annotators.filter(
        pl.col("annotator_id").is_in(touched.implode()) & ~pl.col("blocked")
    )
    cards = _window_cards(state, cards, options)
    blocks = blocks_due(
        cards,
        _block_rules(state.kind, options),
        eligible=pl.col("n_judgments") >= options.min_judgments,
        evidence=list(SCORECARD),
    )
    if not blocks:
        return state, pl.DataFrame(schema=ANNOTATOR_ACTIONS), []
    annotators, actions, alerts = apply_blocks(
        state.annotators, blocks, project=state.project, version=version, now=now, kind=state.kind
    )
    return replace(state, annotators=annotators), actions, alerts


# Requests -----------------------------------------------------------------------------------


def open_kind_requests(
    state: KindState,
    options: KindLiveOptions,
    *,
    now: datetime,
    tasks: pl.Series | None = None,
) -> pl.DataFrame:
    """The policy's request for every task (or those in `tasks`) that wants one: tasks without
    gold with their first `min_votes` votes, decided by `loop.policy.decide` at the kind's
    target. `decision_id` hashes the kind, request, task and the version it last changed at."""
    policy = options.policy_for(state.kind)
    chosen = pl.col("n_votes") >= policy.min_votes
    chosen = chosen & ~pl.col("task_id").is_in(state.gold.get_column("task_id").implode())
    if tasks is not None:
        chosen = chosen & pl.col("task_id").is_in(tasks.implode())
    candidates = state.tasks.filter(chosen).sort("task_id")
    if candidates.height == 0:
        return pl.DataFrame(schema=TASK_REQUESTS)
    decided = decide(candidates.select("task_id", "confidence", "n_votes"), policy)
    wanted = decided.filter(pl.col("decision").is_in([NEEDS_ANOTHER_JUDGMENT, ESCALATE]))
    if wanted.height == 0:
        return pl.DataFrame(schema=TASK_REQUESTS)
    # Boxes with the unit they are in: one project's tasks may be in different ones.
    columns = [*VALUE_COLUMNS[state.kind], *context_columns(state.kind)]
    joined = wanted.join(candidates.select("task_id", "version", *columns), on="task_id")
    request = (
        pl.when(pl.col("decision") == ESCALATE)
        .then(pl.lit(EXPERT_REVIEW))
        .otherwise(pl.lit(ANOTHER_JUDGMENT))
    )
    posterior = pl.struct(
        [pl.lit(state.kind).alias("kind"), pl.col("confidence"), pl.col("n_votes")]
        + [pl.col(c) for c in columns]
    ).struct.json_encode()
    rows = joined.select(
        "task_id",
        "version",
        project=pl.lit(state.project),
        request=request,
        reason=pl.lit(f"{state.kind}: ") + pl.col("reason"),
        confidence="confidence",
        posterior=posterior,
    )
    ids = [
        decision_id(f"{state.kind}_{request}", state.project, task, version)
        for request, task, version in rows.select("request", "task_id", "version").iter_rows()
    ]
    return rows.with_columns(
        decision_id=pl.Series(ids, dtype=pl.String), created_at=pl.lit(now).cast(UTC_TIMESTAMP)
    ).select(list(TASK_REQUESTS))


def kind_requests_update(
    state: KindState,
    options: KindLiveOptions,
    *,
    now: datetime,
    read: Callable[[str], bytes | None],
    written: Collection[str],
) -> tuple[dict[str, bytes], list[str]]:
    """`requests.parquet` and `requests.json` for the kind state, as `loop.live.requests_update`
    writes a project's: every open request (`open_kind_requests`, the list rewritten whole),
    with the ids the DB holds where this run wrote no decision (`written`: the decisions it
    writes, as in `relisted_requests`); and the `decision_id`s that left the list."""
    return request_lists(
        kind_prefix(state.project, state.kind),
        read,
        lambda previous, previous_json: relisted_requests(
            open_kind_requests(state, options, now=now),
            previous,
            previous_json,
            project=state.project,
            written=written,
        ),
    )


def _requests_after_change(
    before: KindState,
    after: KindState,
    options: KindLiveOptions,
    now: datetime,
    affected: pl.Series,
    only_withdrawn: pl.Series,
    *,
    everything: bool,
) -> pl.DataFrame:
    """Requests on the tasks with new evidence; on the tasks that only lost votes or were only
    refitted by a full fit, only where the policy's answer changed."""
    fresh = affected.filter(~affected.is_in(only_withdrawn.implode()))
    requests = open_kind_requests(after, options, now=now, tasks=fresh)
    others = only_withdrawn
    if everything:
        all_tasks = after.tasks.get_column("task_id")
        others = pl.concat([others, all_tasks.filter(~all_tasks.is_in(fresh.implode()))]).unique()
    if others.len() == 0:
        return requests
    later = open_kind_requests(after, options, now=now, tasks=others)
    earlier = open_kind_requests(before, options, now=now, tasks=others)
    changed = later.join(
        earlier.select("task_id", "request"), on=["task_id", "request"], how="anti"
    )
    return pl.concat([requests, changed], how="vertical")


# Persistence --------------------------------------------------------------------------------

_FRAMES = ("tasks", "gold", "annotators", "parameters")
# Built by hash aggregations, in no fixed row order (the tasks and gold keep the order folded).
_HASH_ORDERED = ("annotators", "parameters")
FAN_IN = 8
BASE_ROWS = 1024


def kind_prefix(project: str, kind: str) -> str:
    return f"{state_prefix(project)}/{KINDS_FOLDER}/{kind}"


def _level(rows: int) -> int:
    return lake_ledger.level(rows, base_rows=BASE_ROWS, fan_in=FAN_IN)


def kind_state_objects(
    state: KindState, read: Callable[[str], bytes | None]
) -> tuple[dict[str, bytes], list[str]]:
    """(objects to write, keys to delete) for `state`, to commit in one `Lake.commit`: the
    frames, `state.json`, and the pending ledger rows as one new segment, merged size-tiered
    (the newest `FAN_IN` segments of one level become one; a larger segment absorbs the smaller
    ones before it), so a row is rewritten about once per level it climbs."""
    prefix = kind_prefix(state.project, state.kind)
    writes = {
        f"{prefix}/{name}.parquet": lake_ledger.parquet(
            _in_key_order(getattr(state, name)) if name in _HASH_ORDERED else getattr(state, name)
        )
        for name in _FRAMES
    }
    segments = list(state.segments)
    fresh: dict[str, pl.DataFrame] = {}
    if state.pending.height:
        versions = state.pending.get_column("version")
        first, last = int(versions.min()), int(versions.max())  # type: ignore[arg-type]
        rows = lake_ledger.merged_rows(state.pending, oldest=not segments)
        segment = Segment(
            key=_segment_key(prefix, first, last), rows=rows.height, first=first, last=last
        )
        fresh[segment.key] = rows
        segments.append(segment)

    def frame(segment: Segment) -> pl.DataFrame:
        if segment.key in fresh:
            return fresh[segment.key]
        data = read(segment.key)
        if data is None:
            raise FileNotFoundError(f"{segment.key}: a ledger segment to merge is missing")
        return conform_frame(pl.read_parquet(io.BytesIO(data)), _segment_schema(state.kind))

    while True:
        group = lake_ledger.group_ending([_level(s.rows) for s in segments], FAN_IN)
        if group is None:
            break
        start = group[0]
        parts = segments[start:]
        rows = lake_ledger.merged_rows(
            pl.concat([frame(p) for p in parts], how="vertical"), oldest=start == 0
        )
        merged = Segment(
            key=_segment_key(prefix, parts[0].first, parts[-1].last),
            rows=rows.height,
            first=parts[0].first,
            last=parts[-1].last,
        )
        for part in parts:
            fresh.pop(part.key, None)
        fresh[merged.key] = rows
        segments[start:] = [merged]
    for segment in segments:
        if segment.key in fresh:
            writes[segment.key] = lake_ledger.parquet(fresh[segment.key])
            writes[lake_ledger.fingerprints_key(segment.key)] = lake_ledger.fingerprint_bytes(
                fresh[segment.key].get_column("judgment_id")
            )
    kept = {s.key for s in segments}
    deletes = [
        key
        for s in state.segments
        if s.key not in kept
        for key in (s.key, lake_ledger.fingerprints_key(s.key))
    ]
    meta = {
        "project": state.project,
        "kind": state.kind,
        **fit_counters(state),
        "rebase_after_fit": list(state.rebase_after_fit),
        "chance_distance": state.chance_distance,
        "value_range": list(state.value_range) if state.value_range else None,
        "ledger": [s.__dict__ for s in segments],
    }
    writes[f"{prefix}/state.json"] = json.dumps(meta, sort_keys=True).encode()
    return writes, deletes


def _segment_key(prefix: str, first: int, last: int) -> str:
    return lake_ledger.segment_key(prefix, LEDGER_FOLDER, first, last)


def may_hold(project: str, kind: str, ids: pl.Series, read: Callable[[str], bytes | None]) -> bool:
    """Whether the stored state may hold one of `ids`: from its segments' fingerprints (a
    match may be another id, 1 in 2^32 per id held), or, where a segment written before them
    has none, from its stored ids (`_stored_ids`)."""
    raw = read(f"{kind_prefix(project, kind)}/state.json")
    if raw is None:
        return False
    hashes = lake_ledger.fingerprints(ids)
    for entry in json.loads(raw)["ledger"]:
        stored = read(lake_ledger.fingerprints_key(entry["key"]))
        if stored is None:
            judged, _ = _stored_ids(project, kind, read)
            return bool(ids.is_in(judged.implode()).any())
        if lake_ledger.fingerprinted(stored, hashes).any():
            return True
    return False


def held_db_gold(project: str, kind: str, read: Callable[[str], bytes | None]) -> pl.Series:
    """The tasks whose gold the stored state holds from the DB (null `gold_sources`; a state
    stored before sources were recorded holds only such gold), from its small gold table."""
    data = read(f"{kind_prefix(project, kind)}/gold.parquet")
    if data is None:
        return pl.Series("task_id", [], pl.String)
    gold = pl.read_parquet(io.BytesIO(data))
    if "gold_sources" in gold.columns:
        gold = gold.filter(pl.col("gold_sources").is_null())
    return gold.get_column("task_id").cast(pl.String)


def _in_key_order(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` sorted by its flat columns, so the same state is the same bytes on the lake."""
    keys = [name for name, dtype in frame.schema.items() if not dtype.is_nested()]
    return frame.sort(keys, nulls_last=True) if keys and frame.height else frame


def load_kind_state(project: str, kind: str, read: Callable[[str], bytes | None]) -> KindState:
    """The state stored under `live/<project>/kinds/<kind>/` (empty when there is none)."""
    prefix = kind_prefix(project, kind)
    raw = read(f"{prefix}/state.json")
    if raw is None:
        return KindState(project=project, kind=kind)
    meta = json.loads(raw)
    frames: dict[str, pl.DataFrame] = {}
    for name in _FRAMES:
        data = read(f"{prefix}/{name}.parquet")
        if data is None:
            raise FileNotFoundError(f"{prefix}/{name}.parquet missing next to {prefix}/state.json")
        frames[name] = pl.read_parquet(io.BytesIO(data))
    if "gold_sources" not in frames["gold"].columns:
        # Stored before gold sources were recorded: never withdrawn by a file.
        frames["gold"] = frames["gold"].with_columns(
            gold_sources=pl.lit(None, lake_ledger.GOLD_SOURCES)
        )
    # Boxes stored before their unit and image size were kept: those are unknown (null).
    frames["gold"] = conform_frame(frames["gold"], stored_gold_schema(kind))
    frames["tasks"] = conform_frame(frames["tasks"], tasks_schema(kind))
    schema = _segment_schema(kind)
    segments = tuple(Segment(**entry) for entry in meta["ledger"])
    parts = []
    for segment in segments:
        data = read(segment.key)
        if data is None:
            raise FileNotFoundError(f"{segment.key} missing: {prefix}/state.json lists it")
        parts.append(conform_frame(pl.read_parquet(io.BytesIO(data)), schema))
    rows = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=schema)
    rows = lake_ledger.resolved(rows)
    # Stored before blocks could be lifted: no decision recorded, no reversal applied.
    frames["annotators"] = conform_frame(frames["annotators"], ANNOTATORS)
    blocked = frames["annotators"].filter(pl.col("blocked")).get_column("annotator_id")
    ledger = rows.with_columns(flagged=pl.col("annotator_id").is_in(blocked.implode())).select(
        list(ledger_schema(kind))
    )
    value_range = meta.get("value_range")
    return KindState(
        project=project,
        kind=kind,
        version=int(meta["version"]),
        fitted_version=int(meta["fitted_version"]),
        fitted_judgments=int(meta.get("fitted_judgments", 0)),
        folded_since_fit=int(meta.get("folded_since_fit", 0)),
        fit_requested=bool(meta.get("fit_requested", False)),
        rebase_after_fit=tuple(meta.get("rebase_after_fit", ())),
        chance_distance=meta.get("chance_distance"),
        value_range=(float(value_range[0]), float(value_range[1])) if value_range else None,
        ledger=ledger,
        segments=segments,
        **frames,
    )


def states_holding(
    index: Mapping[str, Collection[str]],
    deleted: pl.DataFrame,
    deleted_gold: pl.DataFrame,
    read: Callable[[str], bytes | None],
    *,
    known: Collection[tuple[str, str]] = (),
) -> set[tuple[str, str]]:
    """The stored kind states (of the kinds `index`) that hold a judgment of the DB's
    tombstones `deleted` or gold of `deleted_gold` (each with `project`), found from the ids
    alone (`judgment_id` of the ledger segments, `task_id` of the gold), so a run with
    tombstones does not load every kind state of their projects whole. The states `known`
    (loaded whole by the run anyway) are not read for it."""
    found: set[tuple[str, str]] = set()
    projects = {
        p for frame in (deleted, deleted_gold) for p in frame.get_column("project").unique()
    }
    for project in sorted(projects & set(index)):
        ids = deleted.filter(pl.col("project") == project).get_column("judgment_id")
        tasks = deleted_gold.filter(pl.col("project") == project).get_column("task_id")
        for kind in sorted(index[project]):
            if (project, kind) in known:
                continue
            judged, golden = _stored_ids(project, kind, read)
            if ids.is_in(judged.implode()).any() or tasks.is_in(golden.implode()).any():
                found.add((project, kind))
    return found


def _stored_ids(
    project: str, kind: str, read: Callable[[str], bytes | None]
) -> tuple[pl.Series, pl.Series]:
    """(the judgments the stored ledger holds, the tasks its gold holds); empty when none is
    stored. Reads the id columns only."""
    none = pl.Series([], dtype=pl.String)
    prefix = kind_prefix(project, kind)
    raw = read(f"{prefix}/state.json")
    if raw is None:
        return none, none
    columns = ["judgment_id", *SEGMENT_EXTRA]
    parts = [pl.DataFrame(schema={c: _segment_schema(kind)[c] for c in columns})]
    for entry in json.loads(raw)["ledger"]:
        data = read(entry["key"])
        if data is None:
            raise FileNotFoundError(f"{entry['key']} missing: {prefix}/state.json lists it")
        parts.append(pl.read_parquet(io.BytesIO(data), columns=columns))
    judged = lake_ledger.resolved(pl.concat(parts, how="vertical")).get_column("judgment_id")
    gold = read(f"{prefix}/gold.parquet")
    if gold is None:
        return judged, none
    return judged, pl.read_parquet(io.BytesIO(gold), columns=["task_id"]).get_column("task_id")


def load_kinds_index(read: Callable[[str], bytes | None]) -> dict[str, list[str]]:
    """project → the kinds it has a live state of."""
    raw = read(KINDS_INDEX)
    return {} if raw is None else {p: list(k) for p, k in json.loads(raw).items()}


def kinds_index_object(index: Mapping[str, Collection[str]]) -> dict[str, bytes]:
    body = {p: sorted(set(k)) for p, k in sorted(index.items())}
    return {KINDS_INDEX: json.dumps(body, sort_keys=True).encode()}


__all__ = [
    "KINDS_INDEX",
    "KIND_REVERSALS",
    "LIVE_KINDS",
    "FittedSnapshot",
    "KindLiveOptions",
    "KindState",
    "adopt_fit",
    "due_full_fits",
    "due_kind_reversals",
    "fit_counters",
    "fit_snapshot",
    "full_fit_due",
    "full_fit_labels",
    "held_db_gold",
    "held_deletions",
    "kind_db_rows",
    "kind_file_rows",
    "kind_prefix",
    "kind_requests_update",
    "kind_state_objects",
    "kinds_index_object",
    "load_kind_state",
    "load_kinds_index",
    "may_hold",
    "merged_events",
    "open_kind_requests",
    "rebase_kind",
    "rebase_kind_projects",
    "refit_labels",
    "states_holding",
    "update_kind",
    "update_kind_projects",
]
