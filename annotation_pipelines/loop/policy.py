"""Adaptive redundancy (dynamic overlap): per task, done, one more judgment, or an expert.

Every task starts with `min_votes` judgments. After each round the task's posterior decides:

- confidence ≥ `target_confidence` (and at least `min_votes` votes): **done**;
- below target with fewer than `max_votes` votes: **needs another judgment** (one at a time),
  unless an expert is cheaper than the crowd votes it would still take (`expert_cost`, in units
  of one crowd judgment, with the expected number of votes estimated below): **escalate**;
- below target at `max_votes`: **escalate** to an expert.

The budget is per project: a number of crowd judgments (a share of those available). When the
round's requests exceed what is left, the least confident tasks are served first and the rest
are **deferred** (they wait; nothing is escalated for lack of budget). When a project sets a
budget below the whole (`budget` < 1) and every task has reached the target with budget left,
the least confident tasks get one more judgment each (`SPEND_BATCH_SHARE` of the tasks a
round) until it is spent: the project set that money aside for labels, and the least
confident tasks are where another vote is most likely to change one (uncertainty sampling).

**Round size.** With `round_share` set and a budget below the whole, at most that share of
the tasks is asked per round, the least confident first; the other tasks below target wait
for a later round (`deferred`, "waits for a later round") and are read again after the
refit. For binary labels the expected gain in accuracy from one more vote by an annotator
drawn from the project's pool is E[max(a − p, 0)] for a task at posterior p ≥ 1/2 and
annotators of accuracy a (the one-step
knowledge gradient; Frazier, Powell and Dayanik 2008, for crowd labels Chen, Lin and Zhou,
ICML 2013): it falls with the confidence, so least confident first is the knowledge-gradient
order, and what asking every task below target at once loses is the refits in between. On
RTE at `--budget 0.5` that spent the budget in five to eight rounds, evenly over tasks at 0.6
and at 0.98; a tenth of the tasks a round (about twenty rounds) put the same judgments on the
tasks still least settled after each refit: file order 0.9213 → 0.9250, two shuffled orders
0.9075 / 0.9137 → 0.9175 / 0.9225. A twentieth or a fiftieth of the tasks a round cost two to
five times the refits and was no better (0.9237 / 0.9100 / 0.9213, 0.9250 / 0.9137 / 0.9225).
Without a budget every task below target gets its votes anyway, and smaller rounds only let
tasks stop on a refit moved by other tasks' votes, a little earlier and a little less right
(D_PosSent 0.954 @ 0.48 → 0.950 @ 0.47, Duck 0.861 @ 0.39 → 0.852 @ 0.39): the round size
serves a budget, so it applies only under one.

**Optional stopping.** Stopping a task the moment its posterior crosses the target is optional
stopping: the tasks that stop are disproportionately those whose first votes happened to
agree, and a posterior that treats votes on one task as independent given the truth
overstates how settled a hard item is. Three guards, measured on the shared crowd sets:

1. A full refit every round (`posterior.py`): every task's confidence, done or not, is read
   again from annotator reliabilities learnt on everything revealed since, and a task that
   falls back below the target is asked again.
2. A high target (0.99 in `RECOMMENDED`) and a `max_votes` that lets hard items reach it (30):
   at 0.98 / 15 the policy stopped 1–3 points of accuracy short of Dawid–Skene on all the
   judgments; 15 votes cut off the hard items of the 20- and 39-vote sets.
3. Optionally (`label_uncertainty`), the task's own vote split as a second opinion, after
   Ipeirotis, Provost, Sheng and Wang ("Repeated labeling using multiple noisy labelers",
   Data Mining and Knowledge Discovery 28, 2014), who find that choosing items for
   relabeling by the model's uncertainty alone, or by the vote split alone, both lose to
   their combination (LMU: the geometric mean). With the counts of a task's two most
   frequent answers (`top_votes`, `runner_up_votes`), the label uncertainty is the Beta
   posterior mass on the other side of an even split, LU = I_0.5(top + 1, runner_up + 1)
   (the regularised incomplete beta function), and the task stops at
   1 − sqrt((1 − confidence) · LU) ≥ target: a unanimous 3-0 at a model confidence of
   0.999 stops at 0.97 (LU = 0.0625), a 4-3 split at 0.998 does not at 0.98 (LU ≈ 0.36).
   It is off by default because, on the shared sets, at equal spend it matched the model's
   confidence alone at a higher target and did not beat it (file order and shuffled
   arrival orders, `benchmarks/bench_replay.py`): the extra votes it buys on split tasks
   are the votes a target of 0.99 buys anyway.

The policy is kind-agnostic: it reads a frame with `task_id`, `confidence` and `n_votes`,
produced by a `ConfidenceFunction` (judgments → per-task confidence) for the kind at hand
(`posterior.py` has the categorical one). Any kind whose aggregation yields a calibrated
confidence per task plugs in. The replay simulator and the pipeline run this same code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import polars as pl
from scipy.special import betainc

DONE = "done"
NEEDS_ANOTHER_JUDGMENT = "needs_another_judgment"
ESCALATE = "escalate"
DEFERRED = "deferred"  # wanted another judgment, but the budget is spent
DECISIONS = (DONE, NEEDS_ANOTHER_JUDGMENT, ESCALATE, DEFERRED)
# When a project set a budget and every task has reached the target, the least confident
# tasks get one more judgment each, this share of the tasks per round, until it is spent.
SPEND_BATCH_SHARE = 0.05


class ConfidenceFunction(Protocol):
    """Judgments (`task_id`, `annotator_id`, plus the kind's value columns) → one row per task
    with at least `task_id`, `label`, `confidence` (calibrated) and `n_votes`."""

    def __call__(self, judgments: pl.DataFrame, /) -> pl.DataFrame: ...


@dataclass(frozen=True)
class PolicyOptions:
    """What a project lead sets. Costs are in units of one crowd judgment.

    The field defaults are a conservative base: three votes to start, up to fifteen, done at a
    calibrated 0.98, every task below target asked at once (`round_share` None).
    `RECOMMENDED` is what the replay measured, what `annotation-pipelines replay` defaults to
    and what the live layer runs (see there). `round_share`: under a budget below
    the whole, at most this share of the tasks is asked per round, least confident first
    (module docstring: why).
    """

    min_votes: int = 3
    max_votes: int = 15
    target_confidence: float = 0.98
    budget: float = 1.0
    crowd_cost: float = 1.0
    expert_cost: float | None = None
    label_uncertainty: bool = False
    spend_budget: bool = True
    round_share: float | None = None

    def __post_init__(self) -> None:
        if self.min_votes < 1:
            raise ValueError(f"min_votes must be at least 1, got {self.min_votes}")
        if self.max_votes < self.min_votes:
            raise ValueError(
                f"max_votes ({self.max_votes}) must be at least min_votes ({self.min_votes})"
            )
        if not 0.0 < self.target_confidence <= 1.0:
            raise ValueError(f"target_confidence must be in (0, 1], got {self.target_confidence}")
        if not 0.0 < self.budget <= 1.0:
            raise ValueError(f"budget must be a fraction in (0, 1], got {self.budget}")
        if self.crowd_cost <= 0:
            raise ValueError(f"crowd_cost must be positive, got {self.crowd_cost}")
        if self.expert_cost is not None and self.expert_cost <= 0:
            raise ValueError(f"expert_cost must be positive, got {self.expert_cost}")
        if self.round_share is not None and not 0.0 < self.round_share <= 1.0:
            raise ValueError(f"round_share must be a fraction in (0, 1], got {self.round_share}")

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


RECOMMENDED = PolicyOptions(max_votes=30, target_confidence=0.99, round_share=0.1)
"""What to recommend to a project lead, measured on the four shared crowd sets with
`benchmarks/bench_replay.py` (one configuration for all; the README has the table): three
votes to start, up to thirty, done at a calibrated 0.99, the model's confidence alone
(`label_uncertainty` off), under a budget a tenth of the tasks asked per round
(`round_share`), a set budget spent (`spend_budget`), no expert-cost shortcut and no budget
cap beyond `max_votes` unless the project sets one. At 0.98 / 15 votes the replays stopped
1–3 points of accuracy short of Dawid–Skene on all the judgments; 15 votes cut off the hard
items of the 20- and 39-vote sets (module docstring: why)."""


def budget_judgments(available: int, options: PolicyOptions) -> int:
    """The project's judgment budget: `budget` × available, rounded down."""
    return math.floor(options.budget * available + 1e-9)


def decide(
    confidence: pl.DataFrame, options: PolicyOptions, *, budget_left: int | None = None
) -> pl.DataFrame:
    """One row per task: `task_id`, `confidence`, `n_votes`, `decision`, `reason`.

    `confidence` is a `ConfidenceFunction`'s output, optionally with a boolean `exhausted`
    (no judgment can be had for the task: it is done as it stands), a boolean `known` (a gold
    task: done whatever its votes, never asked, not even to spend a budget) and with `top_votes` and
    `runner_up_votes` (the counts of the task's two most frequent answers), which make the
    stopping confidence `stopping_confidence` (the module docstring says why). `budget_left`
    (crowd judgments still affordable; None: unlimited) caps this round's requests, least
    confident first. The `confidence` column returned is the one the decision read.
    """
    missing = [c for c in ("task_id", "confidence", "n_votes") if c not in confidence.columns]
    if missing:
        raise ValueError(f"confidence: missing column(s) {', '.join(missing)}")
    frame = confidence.select("task_id", "confidence", pl.col("n_votes").cast(pl.Int64))
    values = frame.get_column("confidence").to_numpy().astype(np.float64)
    if options.label_uncertainty and {"top_votes", "runner_up_votes"} <= set(confidence.columns):
        values = stopping_confidence(
            values,
            confidence.get_column("top_votes").fill_null(0).to_numpy(),
            confidence.get_column("runner_up_votes").fill_null(0).to_numpy(),
        )
        frame = frame.with_columns(pl.Series("confidence", values, dtype=pl.Float64))
    # A confidence the fit could not compute (NaN, null) is read as none: never `done`.
    unknown = ~np.isfinite(values)
    if unknown.any():
        values = np.where(unknown, 0.0, values)
        frame = frame.with_columns(pl.Series("confidence", values, dtype=pl.Float64))
    votes = frame.get_column("n_votes").to_numpy()
    below = values < options.target_confidence
    at_max = votes >= options.max_votes
    remaining = expected_votes_to_target(values, votes, options)
    expert_cheaper = (
        np.zeros(values.shape, dtype=bool)
        if options.expert_cost is None
        else options.expert_cost < remaining * options.crowd_cost
    )
    decision = np.full(values.shape, DONE, dtype=object)
    decision[below & ~at_max] = NEEDS_ANOTHER_JUDGMENT
    decision[below & (at_max | expert_cheaper)] = ESCALATE
    # However confident, a task with fewer than `min_votes` is not yet a consensus.
    decision[(votes < options.min_votes) & (decision == DONE)] = NEEDS_ANOTHER_JUDGMENT
    exhausted = _flag(confidence, "exhausted")
    decision[exhausted & (decision == NEEDS_ANOTHER_JUDGMENT)] = DONE
    # A gold task's answer is known: no judgment can change it, not even one a budget left
    # over would buy.
    known = _flag(confidence, "known")
    decision[known] = DONE
    exhausted = exhausted | known
    wanting = np.flatnonzero(decision == NEEDS_ANOTHER_JUDGMENT)
    spending = np.zeros(values.shape, dtype=bool)
    if (
        options.spend_budget
        and options.budget < 1.0
        and budget_left is not None
        and budget_left > 0
        and wanting.shape[0] == 0
    ):
        # Every task is at target: a budget set aside is better spent on the least confident
        # tasks than left over (uncertainty sampling, Lewis and Gale, SIGIR 1994).
        room = np.flatnonzero((decision == DONE) & ~exhausted & (votes < options.max_votes))
        batch = min(budget_left, max(1, math.ceil(SPEND_BATCH_SHARE * values.shape[0])))
        chosen = room[np.lexsort((room, values[room]))][:batch]
        decision[chosen] = NEEDS_ANOTHER_JUDGMENT
        spending[chosen] = True
        wanting = chosen
    affordable = wanting.shape[0] if budget_left is None else max(budget_left, 0)
    per_round = (
        max(1, math.ceil(options.round_share * values.shape[0]))
        if options.round_share is not None and options.budget < 1.0 and not spending.any()
        else wanting.shape[0]
    )
    waiting = np.zeros(values.shape, dtype=bool)
    if wanting.shape[0] > min(affordable, per_round):
        # Least confident first; ties by task order, which is the caller's stable order.
        order = wanting[np.lexsort((wanting, values[wanting]))]
        decision[order[min(affordable, per_round) :]] = DEFERRED
        waiting[order[per_round:affordable]] = True
    reason = _reasons(decision, values, votes, remaining, exhausted, spending, waiting, options)
    for index in np.flatnonzero(known):
        reason[index] = f"gold: the answer is known (confidence {values[index]:.3f})"
    return frame.with_columns(
        pl.Series("decision", decision.tolist(), dtype=pl.String),
        pl.Series("reason", reason, dtype=pl.String),
    )


def label_uncertainty(top_votes: np.ndarray, runner_up_votes: np.ndarray) -> np.ndarray:
    """Ipeirotis et al. (2014)'s label uncertainty: the Beta(top + 1, runner_up + 1) posterior
    mass below one half, i.e. the chance that the answer now leading is not the one most of
    the crowd would give."""
    top = np.asarray(top_votes, dtype=np.float64)
    runner_up = np.asarray(runner_up_votes, dtype=np.float64)
    return np.asarray(betainc(top + 1.0, runner_up + 1.0, 0.5), dtype=np.float64)


def stopping_confidence(
    confidence: np.ndarray, top_votes: np.ndarray, runner_up_votes: np.ndarray
) -> np.ndarray:
    """1 − sqrt((1 − model confidence) · label uncertainty): the LMU combination of
    Ipeirotis et al. (2014), read as a confidence. Either source alone can hold a task open:
    the model when the annotators who agree are unreliable, the split when they disagree."""
    model_error = np.clip(1.0 - np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    return 1.0 - np.sqrt(model_error * label_uncertainty(top_votes, runner_up_votes))


def expected_votes_to_target(
    confidence: np.ndarray, votes: np.ndarray, options: PolicyOptions
) -> np.ndarray:
    """Crowd votes a task below target is expected to need, capped by what `max_votes` allows.

    The log-odds a vote adds is read from the project's own confident tasks (median of
    logit(confidence) / votes over tasks above 0.5, at least 0.1), and a task needs the missing
    log-odds divided by it: a rough guide for the expert-versus-crowd trade, not a promise.
    """
    clipped = np.clip(confidence, 1e-6, 1 - 1e-6)
    logit = np.log(clipped / (1 - clipped))
    confident = confidence > 0.5
    per_vote = (
        float(np.median(logit[confident] / np.maximum(votes[confident], 1)))
        if confident.any()
        else 0.0
    )
    per_vote = max(per_vote, 0.1)
    target = min(options.target_confidence, 1 - 1e-6)
    missing = np.log(target / (1 - target)) - logit
    needed = np.ceil(np.maximum(missing, 0.0) / per_vote)
    room = np.maximum(options.max_votes - votes, 0)
    return np.where(missing > 0, np.maximum(np.minimum(needed, room), 1), 0).astype(np.float64)


def _flag(confidence: pl.DataFrame, name: str) -> np.ndarray:
    """The optional boolean column `name` of `confidence` as an array (missing, null: False)."""
    if name not in confidence.columns:
        return np.zeros(confidence.height, dtype=bool)
    return confidence.get_column(name).fill_null(False).to_numpy().astype(bool)


def _reasons(
    decision: np.ndarray,
    confidence: np.ndarray,
    votes: np.ndarray,
    remaining: np.ndarray,
    exhausted: np.ndarray,
    spending: np.ndarray,
    waiting: np.ndarray,
    options: PolicyOptions,
) -> list[str]:
    target = options.target_confidence
    reasons = []
    rows = zip(decision, confidence, votes, remaining, exhausted, spending, waiting, strict=True)
    for kind, value, count, more, no_more, spent, waits in rows:
        # What a wanted judgment is wanted for: a low confidence, or too few votes to trust one.
        wanted = (
            f"{count} vote(s) < min_votes {options.min_votes}"
            if value >= target
            else f"confidence {value:.3f} < target {target:g}"
        )
        if waits:
            reasons.append(f"{wanted}; waits for a later round (less confident tasks first)")
        elif spent:
            reasons.append(
                f"confidence {value:.3f} >= target {target:g}; among the least confident "
                "while budget is left"
            )
        elif kind == DONE and no_more and value < target:
            reasons.append(f"confidence {value:.3f} < target {target:g}; no judgment left")
        elif kind == DONE:
            reasons.append(f"confidence {value:.3f} >= target {target:g} with {count} vote(s)")
        elif kind == NEEDS_ANOTHER_JUDGMENT and value >= target:
            reasons.append(f"{count} vote(s) < min_votes {options.min_votes}")
        elif kind == NEEDS_ANOTHER_JUDGMENT:
            reasons.append(f"confidence {value:.3f} < target {target:g} with {count} vote(s)")
        elif kind == DEFERRED:
            reasons.append(f"{wanted}; budget spent")
        elif count >= options.max_votes:
            reasons.append(
                f"confidence {value:.3f} < target {target:g} after max_votes {options.max_votes}"
            )
        else:
            reasons.append(
                f"expert cost {options.expert_cost:g} < ~{int(more)} more crowd vote(s) "
                f"x {options.crowd_cost:g}"
            )
    return reasons
