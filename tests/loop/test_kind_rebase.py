"""The end-of-day re-base of the non-categorical kinds on `kind_aggregated_labels`: a task
whose votes the daily fit saw exactly takes the daily answer and confidence; the others keep
their live answer; requests only where the policy's answer changed."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.kinds import VALUE_COLUMNS
from annotation_pipelines.loop.kind_posterior import (
    comparable_values,
    numeric_confidence,
    numeric_tolerance,
    winning_item,
)
from annotation_pipelines.loop.live_kinds import (
    LIVE_KINDS,
    KindLiveOptions,
    KindState,
    open_kind_requests,
    rebase_kind,
    rebase_kind_projects,
    update_kind,
)
from annotation_pipelines.quality.kinds import aggregate_kind_day, score_kind_project
from tests.loop.test_live_kinds import NOW, _synthetic, lone_copies

DAY = date(2026, 11, 1)
# Carried parameters from the first batch on: the live answers are incremental, not a refit.
OPTIONS = KindLiveOptions(full_fit_every=1_000)


def agreement(state: KindState, daily: pl.DataFrame) -> tuple[int, float]:
    """(tasks compared, share whose live answer is the daily answer) over the day's tasks the
    live state holds, gold tasks aside (both layers answer them with the gold answer)."""
    kind = state.kind
    live = comparable_values(state.tasks, kind).join(
        state.gold.select("task_id"), on="task_id", how="anti"
    )
    joined = live.join(comparable_values(daily, kind), on="task_id", suffix="_daily")
    if kind == "numeric":
        same = (pl.col("value") - pl.col("value_daily")).abs() < 1e-9
    elif kind == "pairwise":
        same = winning_item() == winning_item("_daily")
    else:
        columns = VALUE_COLUMNS[kind]
        same = pl.all_horizontal(
            [
                pl.struct(c).struct.json_encode()
                == pl.struct(pl.col(f"{c}_daily").alias(c)).struct.json_encode()
                for c in columns
            ]
        )
    flags = joined.select(same.fill_null(False)).to_series()
    return joined.height, float(flags.mean() or 0.0)  # type: ignore[arg-type]


def near_agreement(state: KindState, daily: pl.DataFrame) -> float:
    """Numeric: the share within the policy's tolerance of the daily value; boxes: the share
    with the same labelled boxes, each corner within one pixel (the exact figure counts any
    difference in the fused coordinates)."""
    live = state.tasks.join(state.gold.select("task_id"), on="task_id", how="anti")
    joined = comparable_values(live, state.kind).join(
        comparable_values(daily, state.kind), on="task_id", suffix="_daily"
    )
    if state.kind == "numeric":
        tolerance = numeric_tolerance(state.ledger["value"])
        near = (pl.col("value") - pl.col("value_daily")).abs() <= tolerance
        return float(joined.select(near.mean()).item())
    flags = []
    for ours, theirs in joined.select("boxes", "boxes_daily").iter_rows():
        same = len(ours) == len(theirs) and all(
            a["label"] == b["label"]
            and all(abs(a[c] - b[c]) <= 1.0 for c in ("x_min", "y_min", "x_max", "y_max"))
            for a, b in zip(
                sorted(ours, key=lambda box: (box["label"], box["x_min"])),
                sorted(theirs, key=lambda box: (box["label"], box["x_min"])),
                strict=True,
            )
        )
        flags.append(same)
    return float(np.mean(flags)) if flags else 0.0


def live_and_daily(kind: str, count: int = 240) -> tuple[KindState, pl.DataFrame, pl.DataFrame]:
    """A day's judgments folded in three batches (carried parameters), and the daily fit."""
    rows, gold, _ = _synthetic(kind, count)
    project = str(rows["project"][0])
    state = KindState(project=project, kind=kind)
    n = rows.height
    for index, part in enumerate(
        (rows.slice(0, n // 3), rows.slice(n // 3, n // 3), rows.slice(2 * (n // 3)))
    ):
        state, _ = update_kind(state, part, gold if index == 0 else None, OPTIONS, now=NOW)
    assert state.fitted_version == 1
    daily = aggregate_kind_day(rows, project=project, day=DAY, gold=gold, kind=kind).labels
    return state, daily, rows


@pytest.mark.parametrize("kind", LIVE_KINDS)
def test_every_task_of_the_day_takes_the_daily_answer_and_confidence(kind):
    state, daily, _ = live_and_daily(kind)
    compared, before = agreement(state, daily)
    rebased, events = rebase_kind(state, daily, DAY.isoformat(), OPTIONS, now=NOW)
    compared_after, after = agreement(rebased, daily)
    near = ""
    if kind in ("numeric", "boxes"):
        near = (
            f" (near: before {near_agreement(state, daily):.4f}, "
            f"after {near_agreement(rebased, daily):.4f})"
        )
    print(f"{kind}: {compared} tasks, agreement before {before:.4f}, after {after:.4f}{near}")
    assert compared == compared_after == daily.height - state.gold.height
    assert after == 1.0
    assert events.rebased_tasks == compared
    assert rebased.version == state.version + 1
    # The ledger and the full-fit bookkeeping are untouched: the next update goes on from here.
    assert rebased.ledger.equals(state.ledger) and rebased.pending.equals(state.pending)
    assert rebased.fitted_version == state.fitted_version
    # The confidence is the daily's as the policy reads it.
    joined = rebased.tasks.join(daily, on="task_id", suffix="_daily").join(
        state.gold.select("task_id"), on="task_id", how="anti"
    )
    if kind == "numeric":
        expected = numeric_confidence(
            joined["lo"].to_numpy(),
            joined["hi"].to_numpy(),
            tolerance=numeric_tolerance(rebased.ledger["value"]),
        )
        np.testing.assert_allclose(joined["confidence"].to_numpy(), expected)
    elif kind != "pairwise":
        assert (joined["confidence"] == joined["confidence_daily"]).all()
    else:
        assert joined["confidence"].is_between(0.0, 1.0).all()
    # Requests: only where the policy's answer changed, never a repeat of an open one.
    earlier = open_kind_requests(state, OPTIONS, now=NOW).select("task_id", "request")
    asked = events.task_requests.select("task_id", "request")
    assert asked.join(earlier, on=["task_id", "request"], how="semi").height == 0
    later = open_kind_requests(rebased, OPTIONS, now=NOW).select("task_id", "request")
    assert asked.join(later, on=["task_id", "request"], how="anti").height == 0


@pytest.mark.parametrize("kind", ["numeric", "multilabel", "pairwise"])
def test_a_task_with_a_vote_on_another_day_or_unseen_keeps_its_live_answer(kind):
    state, daily, rows = live_and_daily(kind)
    tasks = sorted(daily.join(state.gold.select("task_id"), on="task_id", how="anti")["task_id"])
    late, unseen = tasks[0], tasks[1]
    # A vote submitted after midnight on one task; one the daily fit has not seen (same day).
    extra = rows.filter(pl.col("task_id").is_in([late, unseen])).group_by("task_id").first()
    extra = extra.with_columns(
        judgment_id=pl.col("judgment_id") + "-extra",
        annotator_id=pl.col("annotator_id") + "-extra",
        submitted_at=pl.when(pl.col("task_id") == late)
        .then(pl.col("submitted_at") + timedelta(days=1))
        .otherwise(pl.col("submitted_at")),
    ).select(rows.columns)
    state, _ = update_kind(state, extra, None, OPTIONS, now=NOW)
    rebased, events = rebase_kind(state, daily, DAY.isoformat(), OPTIONS, now=NOW)
    kept = [late, unseen]
    assert rebased.tasks.filter(pl.col("task_id").is_in(kept)).equals(
        state.tasks.filter(pl.col("task_id").is_in(kept))
    )
    assert events.rebased_tasks == len(tasks) - 2
    # Another day's table re-bases nothing.
    again, none = rebase_kind(state, daily, (DAY + timedelta(days=1)).isoformat(), OPTIONS)
    assert none.rebased_tasks == 0 and again is state


@pytest.mark.parametrize("kind", ["multilabel", "pairwise"])
def test_the_carried_counts_follow_the_re_based_answers(kind):
    state, daily, _ = live_and_daily(kind)
    rebased, _ = rebase_kind(state, daily, DAY.isoformat(), OPTIONS, now=NOW)
    # Each annotator's counts sum to their active judgments (per class for multilabel), and
    # the prior counts the answers the state now holds.
    counts = rebased.parameters.drop_nulls("annotator_id").with_columns(
        total=pl.col("confusion").list.sum()
    )
    active = rebased.ledger.filter(~pl.col("flagged"))
    per = active.group_by("annotator_id").agg(n=pl.len())
    if kind == "multilabel":
        counts = counts.group_by("annotator_id").agg(pl.col("total").first())
    joined = counts.join(per, on="annotator_id")
    np.testing.assert_allclose(joined["total"].to_numpy(), joined["n"].to_numpy())
    if kind == "pairwise":
        prior = rebased.parameters.filter(pl.col("annotator_id").is_null())["confusion"][0]
        winners = rebased.tasks.join(active.select("task_id").unique(), on="task_id", how="semi")
        shares = winners["winner"].value_counts()
        expected = [
            float(shares.filter(pl.col("winner") == w)["count"].sum())
            for w in ("left", "right", "tie")
        ]
        assert list(prior) == pytest.approx(expected)


def test_the_projects_re_base_only_states_the_live_layer_holds():
    state, daily, _ = live_and_daily("text", count=60)
    key = (state.project, "text")
    frame = daily.with_columns(project=pl.lit(state.project), kind=pl.lit("text"))
    other = frame.with_columns(project=pl.lit("elsewhere"))
    states, events = rebase_kind_projects(
        {key: state}, {DAY.isoformat(): pl.concat([frame, other])}, OPTIONS, now=NOW
    )
    assert set(states) == {key} and set(events) == {key}
    assert events[key][0].rebased_tasks == daily.height - state.gold.height


@pytest.mark.parametrize("kind", sorted(LIVE_KINDS))
def test_live_and_daily_scorecards_compare_the_same_judgments_with_the_consensus(kind):
    rows, gold, _ = _synthetic(kind, 150)
    # "solo" judged twelve tasks no one else did: neither layer compares those.
    rows = pl.concat([rows, lone_copies(rows, "solo", 12, prefix="solo-")])
    project = str(rows["project"][0])
    # No blocks: a blocked annotator's judgments leave the live fit, not the daily one.
    options = replace(OPTIONS, min_judgments=10**6)
    state = KindState(project=project, kind=kind)
    for index, start in enumerate(range(0, rows.height, rows.height // 3 + 1)):
        part = rows.slice(start, rows.height // 3 + 1)
        state, _ = update_kind(state, part, gold if index == 0 else None, options, now=NOW)
    scores = score_kind_project(
        rows, project=project, day=DAY, gold=gold, kind=kind, n_resamples=10
    )
    state, _ = rebase_kind(state, scores.labels, DAY.isoformat(), options, now=NOW)
    live = state.annotators.select("annotator_id", "n_compared", "agreement", "consensus_alpha")
    joined = live.join(scores.scorecards, on="annotator_id", how="full", coalesce=True)
    assert joined.height == live.height == scores.scorecards.height
    solo = joined.filter(pl.col("annotator_id") == "solo").row(0, named=True)
    assert solo["n_compared"] == solo["n_consensus_compared"] == 0
    assert solo["agreement"] is None and solo["consensus_agreement"] is None
    assert solo["consensus_alpha"] is None and solo["consensus_alpha_right"] is None
    assert joined["n_compared"].to_list() == joined["n_consensus_compared"].to_list()
    gap = (joined["agreement"] - joined["consensus_agreement"]).abs()
    print(
        f"{kind}: {joined.height} annotators, compared counts equal; agreement gap "
        f"max {gap.max():.4f} mean {gap.mean():.4f}"
    )
    # Pairwise: the daily distance reads a judgment's winner as it stands, the live one as
    # the judgment showed the pair (sides swapped back), so a swapped display can differ.
    assert gap.max() < (0.05 if kind == "pairwise" else 1e-9)


def _hard_counts(state: KindState) -> pl.DataFrame:
    """The classification-EM counts: every judgment against the full fit's answers alone."""
    from annotation_pipelines.loop import live_kinds

    rows = live_kinds._active(state)
    if state.kind == "pairwise":
        truth = live_kinds._winner_probabilities(None, state.tasks)
        return live_kinds._pairwise_parameters(rows, truth)
    empty = pl.DataFrame(schema={"task_id": pl.String, "class": pl.String, "p": pl.Float64})
    truth = live_kinds._clamped(empty, state.tasks.select("task_id", "labels"), "multilabel")
    return live_kinds._multilabel_parameters(rows, truth)


@pytest.mark.parametrize("kind", ["multilabel", "pairwise"])
def test_soft_counts_give_incremental_answers_at_least_as_close_to_a_full_fit(kind):
    # Seven synthetic projects: one project's figure moves by a task or two either way.
    figures = [_incremental_against_full_fit(kind, seed) for seed in range(3, 10)]
    soft, hard, soft_gap, hard_gap = (float(np.mean(f)) for f in zip(*figures, strict=True))
    print(
        f"{kind}: touched = full fit's, mean of 7 projects: soft {soft:.4f}, hard {hard:.4f}; "
        f"mean |confidence - full fit's|: soft {soft_gap:.4f}, hard {hard_gap:.4f}"
    )
    assert soft >= hard
    # The expected counts are the full fit's own model: its confidences, not only its answers.
    assert soft_gap < hard_gap
    if kind == "multilabel":
        assert all(f[0] >= f[1] for f in figures)


def _incremental_against_full_fit(kind: str, seed: int) -> tuple[float, float, float, float]:
    """(soft, hard) share of the refitted tasks whose answer is a full fit's, then (soft, hard)
    mean distance of their confidence to the full fit's."""
    from annotation_pipelines.loop.live_kinds import full_fit_labels

    rows, _, _ = _synthetic(kind, 900, seed=seed)
    # The last vote of a third of the tasks arrives in a second run: those tasks are refitted
    # with the carried counts, and compared with a full fit of everything.
    tasks = rows["task_id"].unique().sort().gather_every(3)
    last = (
        rows.filter(pl.col("task_id").is_in(tasks.implode()))
        .group_by("task_id")
        .agg(pl.col("judgment_id").last())["judgment_id"]
    )
    second = rows.filter(pl.col("judgment_id").is_in(last.implode()))
    first = rows.join(second, on="judgment_id", how="anti")
    start = KindState(project=str(rows["project"][0]), kind=kind)
    one, _ = update_kind(start, first, None, OPTIONS, now=NOW)
    active = one.ledger.filter(~pl.col("flagged"))
    full, _ = full_fit_labels(
        kind,
        pl.concat([active.drop("flagged", "version"), second], how="diagonal_relaxed").sort(
            "task_id", "submitted_at", "judgment_id"
        ),
        one.gold,
    )
    columns = list(VALUE_COLUMNS[kind])

    def agreement(start: KindState) -> tuple[float, float]:
        two, _ = update_kind(start, second, None, OPTIONS, now=NOW)
        assert two.fitted_version == 1
        mine = two.tasks.filter(pl.col("task_id").is_in(tasks.implode()))
        joined = mine.join(full, on="task_id", suffix="_full")
        assert joined.height == tasks.len()
        same = pl.all_horizontal(
            [
                pl.struct(c).struct.json_encode()
                == pl.struct(pl.col(f"{c}_full").alias(c)).struct.json_encode()
                for c in columns
            ]
        )
        gap = (joined["confidence"] - joined["confidence_full"]).abs().mean()
        return float(joined.select(same.mean()).item()), float(gap)  # type: ignore[arg-type]

    (soft, soft_gap), (hard, hard_gap) = (
        agreement(one),
        agreement(replace(one, parameters=_hard_counts(one))),
    )
    print(
        f"{kind} seed {seed}: {tasks.len()} touched: soft {soft:.4f} ({soft_gap:.4f}), "
        f"hard {hard:.4f} ({hard_gap:.4f})"
    )
    return soft, hard, soft_gap, hard_gap
