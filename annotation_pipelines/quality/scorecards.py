"""Annotator scorecards: gold accuracy, agreement with the consensus, speed, spamming, trend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from annotation_pipelines.quality._common import join_reasons, require, wilson_bounds, with_day
from annotation_pipelines.schema import ANNOTATOR_SCORECARDS

KEYS = ["project", "day", "annotator_id"]


def compared_with_consensus(
    gold: pl.DataFrame | None = None, *, task: Sequence[str] = ("project", "task_id")
) -> pl.Expr:
    """True for a judgment whose task's consensus is more than its own vote: someone else
    judged the task too (in the frame the expression runs over), or the task is in `gold` (its
    consensus is the gold answer). A lone vote's consensus is that vote, so comparing them
    would only count it as agreeing with itself. An expression over judgments with
    `annotator_id` and the `task` columns, which name a task (and `gold` has)."""
    keys = list(task)
    shared = pl.col("annotator_id").n_unique().over(keys) >= 2
    if gold is None or gold.height == 0:
        return shared
    golden = pl.struct(keys).is_in(gold.select(pl.struct(keys)).to_series().implode())
    return shared | golden


def spammer_scores(
    judgments: pl.DataFrame, aggregated: pl.DataFrame, gold: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per (project, day, annotator): 1 − Raykar–Yu score against the consensus labels.

    Raykar & Yu (2012), "Eliminating spammers and ranking annotators for crowdsourced
    labeling tasks" (JMLR 13). With α_ck the share of tasks whose consensus is c that the
    annotator labelled k, a spammer answers independently of the item, so the rows α_c· are
    identical; S = Σ_{c<c'} ‖α_c − α_c'‖² / (K(K − 1)) over the K consensus classes the
    annotator saw is 0 for such a spammer (random or always-the-same label) and 1 for a
    perfect annotator. We report 1 − S, so higher means more spam-like; null when the
    annotator saw fewer than two consensus classes. Only judgments compared with a consensus
    that is not just their own vote count (`compared_with_consensus`, with `gold`): an
    annotator alone on every task would otherwise read as a perfect, spam-free one. Uses
    Σ_{c<c'} ‖α_c − α_c'‖² = K Σ_c ‖α_c‖² − ‖Σ_c α_c‖², so the cost is one pass over the
    confusion counts.
    """
    paired = judgments.filter(compared_with_consensus(gold)).join(
        aggregated.select("task_id", "project", pl.col("label").alias("consensus")),
        on=["task_id", "project"],
        how="inner",
    )
    confusion = (
        paired.group_by([*KEYS, "consensus", "label"])
        .agg(pl.len().alias("n"))
        # Sorted so the float sums below add in one order: a re-run gives identical bits.
        .sort([*KEYS, "consensus", "label"])
        .with_columns((pl.col("n") / pl.col("n").sum().over([*KEYS, "consensus"])).alias("share"))
    )
    squares = confusion.group_by(KEYS, maintain_order=True).agg(
        (pl.col("share") ** 2).sum().alias("squares"),
        pl.col("consensus").n_unique().alias("classes"),
    )
    columns = (
        confusion.group_by([*KEYS, "label"], maintain_order=True)
        .agg(pl.col("share").sum().alias("column"))
        .group_by(KEYS, maintain_order=True)
        .agg((pl.col("column") ** 2).sum().alias("column_squares"))
    )
    k = pl.col("classes").cast(pl.Float64)
    return squares.join(columns, on=KEYS).select(
        *KEYS,
        pl.when(pl.col("classes") >= 2)
        .then(1.0 - (k * pl.col("squares") - pl.col("column_squares")) / (k * (k - 1.0)))
        .clip(0.0, 1.0)
        .alias("spammer_score"),
    )


def annotator_scorecards(
    judgments: pl.DataFrame,
    aggregated: pl.DataFrame,
    gold: pl.DataFrame,
    *,
    skill: pl.DataFrame | None = None,
    history: pl.DataFrame | None = None,
    min_gold_accuracy: float = 0.7,
    min_consensus_agreement: float = 0.5,
    max_spammer_score: float = 0.8,
    max_agreement_drop: float = 0.15,
    min_judgments: int = 10,
    min_gold: int = 3,
    min_median_duration_s: float | None = None,
    history_days: int = 28,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """One scorecard per (project, day, annotator); columns of schema.ANNOTATOR_SCORECARDS + extras.

    - gold accuracy on gold tasks with its Wilson (1927) interval at `confidence`;
    - consensus agreement: share of the annotator's judgments equal to the aggregated label
      (their own vote included, as a majority or Dawid–Skene consensus does), over the
      `n_consensus_compared` judgments on tasks someone else judged too or on gold tasks
      (`compared_with_consensus`); null when there are none (a lone annotator's consensus is
      their own vote, and agreeing with it says nothing);
    - skill: from `skill` (annotator_id[, project], skill), e.g. the aggregation model's
      annotator parameters; null without it;
    - median seconds per judgment (`duration_s`, if present);
    - spammer score: see `spammer_scores` (on the same compared judgments);
    - trend: `history` holds earlier scorecards (same columns); the extras
      history_consensus_agreement / consensus_agreement_change and history_gold_accuracy /
      gold_accuracy_change compare the day against the judgment-weighted mean of the
      `history_days` before it.

    Flagged, with every reason in flag_reason: gold accuracy whose upper Wilson bound is
    below `min_gold_accuracy` (at least `min_gold` gold answers); consensus agreement below
    `min_consensus_agreement` or spammer score above `max_spammer_score` (at least
    `min_judgments` compared judgments); consensus agreement down by more than `max_agreement_drop`
    against the annotator's own history; median seconds below `min_median_duration_s`.
    A null figure raises no flag.
    """
    judged = with_day(judgments)
    require(aggregated, "aggregated", ("task_id", "project", "label"))
    require(gold, "gold", ("task_id", "project", "label"))
    consensus = aggregated.select("task_id", "project", pl.col("label").alias("consensus"))
    gold_labels = gold.unique(["task_id", "project"], keep="last").select(
        "task_id", "project", pl.col("label").alias("gold_label")
    )
    scored = (
        judged.join(consensus, on=["task_id", "project"], how="left")
        .join(gold_labels, on=["task_id", "project"], how="left")
        .with_columns(_compared=compared_with_consensus(gold_labels))
    )
    duration = (
        pl.col("duration_s").cast(pl.Float64).median()
        if "duration_s" in judged.columns
        else pl.lit(None, dtype=pl.Float64)
    )
    cards = scored.group_by(KEYS).agg(
        pl.len().cast(pl.UInt32).alias("n_judgments"),
        pl.col("gold_label").is_not_null().sum().cast(pl.UInt32).alias("n_gold"),
        (pl.col("label") == pl.col("gold_label")).sum().alias("n_gold_correct"),
        (pl.col("label") == pl.col("consensus"))
        .filter(pl.col("_compared"))
        .mean()
        .alias("consensus_agreement"),
        pl.col("_compared").sum().cast(pl.UInt32).alias("n_consensus_compared"),
        duration.alias("median_duration_s"),
    )
    low, high = wilson_bounds(pl.col("n_gold_correct"), pl.col("n_gold"), confidence=confidence)
    cards = cards.with_columns(
        pl.when(pl.col("n_gold") > 0)
        .then(pl.col("n_gold_correct") / pl.col("n_gold"))
        .alias("gold_accuracy"),
        low.alias("gold_accuracy_low"),
        high.alias("gold_accuracy_high"),
    ).join(spammer_scores(judged, aggregated, gold_labels), on=KEYS, how="left")
    cards = _attach_skill(cards, skill)
    cards = _attach_history(cards, history, history_days=history_days)

    enough = pl.col("n_judgments") >= min_judgments
    compared = pl.col("n_consensus_compared") >= min_judgments
    reasons = [
        pl.when(
            (pl.col("n_gold") >= min_gold) & (pl.col("gold_accuracy_high") < min_gold_accuracy)
        ).then(
            pl.format(
                "gold accuracy {} (upper bound {}) below {}",
                pl.col("gold_accuracy").round(3),
                pl.col("gold_accuracy_high").round(3),
                pl.lit(min_gold_accuracy),
            )
        ),
        pl.when(compared & (pl.col("consensus_agreement") < min_consensus_agreement)).then(
            pl.format(
                "consensus agreement {} below {}",
                pl.col("consensus_agreement").round(3),
                pl.lit(min_consensus_agreement),
            )
        ),
        pl.when(compared & (pl.col("spammer_score") > max_spammer_score)).then(
            pl.format(
                "spammer score {} above {}",
                pl.col("spammer_score").round(3),
                pl.lit(max_spammer_score),
            )
        ),
        pl.when(pl.col("consensus_agreement_change") < -max_agreement_drop).then(
            pl.format(
                "consensus agreement fell {} against own trailing {} days ({})",
                (-pl.col("consensus_agreement_change")).round(3),
                pl.lit(history_days),
                pl.col("history_consensus_agreement").round(3),
            )
        ),
    ]
    if min_median_duration_s is not None:
        reasons.append(
            pl.when(enough & (pl.col("median_duration_s") < min_median_duration_s)).then(
                pl.format(
                    "median {} s per judgment below {} s",
                    pl.col("median_duration_s").round(1),
                    pl.lit(min_median_duration_s),
                )
            )
        )
    cards = cards.with_columns(join_reasons(*reasons).alias("flag_reason")).with_columns(
        pl.col("flag_reason").is_not_null().alias("flagged")
    )
    extras = [
        "history_consensus_agreement",
        "consensus_agreement_change",
        "history_gold_accuracy",
        "gold_accuracy_change",
        "history_days",
    ]
    return cards.select(
        *(pl.col(name).cast(dtype) for name, dtype in ANNOTATOR_SCORECARDS.items()), *extras
    ).sort(KEYS)


# The scorecard columns a day reads from its trailing history (`_attach_history`): the only part
# of a day's scorecards (and so of its flags) that earlier days' scorecards decide.
HISTORY_COLUMNS = ("history_consensus_agreement", "history_gold_accuracy", "history_days")


def stale_history(
    cards: pl.DataFrame,
    history: pl.DataFrame | None,
    *,
    history_days: int = 28,
    tolerance: float = 1e-9,
) -> pl.DataFrame:
    """The scorecards of `cards` (stored ones, of any days) whose trailing-history columns
    differ from those `history` (earlier scorecards, as the lake holds them now) gives: KEYS,
    the stored HISTORY_COLUMNS and the recomputed ones (suffix `_now`). Empty when every card
    was built with the history there is now, i.e. rebuilding those days would not change them.
    The history columns depend only on earlier days' own judgments (never on their history),
    so a day rebuilt after this check stays current however its neighbours' trends move."""
    require(cards, "cards", (*KEYS, *HISTORY_COLUMNS))
    base = cards.select(*KEYS, "consensus_agreement", "gold_accuracy")
    now = _attach_history(
        base, history if history is not None and history.height else None, history_days=history_days
    ).select(*KEYS, *(pl.col(c).alias(f"{c}_now") for c in HISTORY_COLUMNS))
    joined = cards.select(*KEYS, *HISTORY_COLUMNS).join(now, on=KEYS, how="left")
    differs = [
        (pl.col(c).is_null() != pl.col(f"{c}_now").is_null())
        | ((pl.col(c).cast(pl.Float64) - pl.col(f"{c}_now").cast(pl.Float64)).abs() > tolerance)
        for c in HISTORY_COLUMNS
    ]
    return joined.filter(pl.any_horizontal([d.fill_null(False) for d in differs])).sort(KEYS)


def _attach_skill(cards: pl.DataFrame, skill: pl.DataFrame | None) -> pl.DataFrame:
    if skill is None:
        return cards.with_columns(pl.lit(None, dtype=pl.Float64).alias("skill"))
    require(skill, "skill", ("annotator_id", "skill"))
    keys = ["annotator_id", "project"] if "project" in skill.columns else ["annotator_id"]
    table = skill.group_by(keys).agg(pl.col("skill").cast(pl.Float64).mean())
    return cards.join(table, on=keys, how="left")


def _attach_history(
    cards: pl.DataFrame, history: pl.DataFrame | None, *, history_days: int
) -> pl.DataFrame:
    empty = [
        pl.lit(None, dtype=pl.Float64).alias("history_consensus_agreement"),
        pl.lit(None, dtype=pl.Float64).alias("history_gold_accuracy"),
        pl.lit(0, dtype=pl.UInt32).alias("history_days"),
    ]
    if history is None or history.height == 0:
        cards = cards.with_columns(empty)
    else:
        require(history, "history", ("project", "day", "annotator_id", "n_judgments"))
        # Each day's agreement weighs as many as it compared; scorecards written before that
        # count was kept weigh their judgments.
        compared = (
            pl.coalesce(pl.col("n_consensus_compared"), pl.col("n_judgments"))
            if "n_consensus_compared" in history.columns
            else pl.col("n_judgments")
        )
        past = history.select(
            pl.col("project"),
            pl.col("day").cast(pl.Date).alias("history_day"),
            pl.col("annotator_id"),
            pl.col("n_judgments").cast(pl.Float64),
            compared.cast(pl.Float64).alias("n_compared"),
            pl.col("consensus_agreement").cast(pl.Float64),
            pl.col("n_gold").cast(pl.Float64),
            pl.col("gold_accuracy").cast(pl.Float64),
        )
        window = (
            cards.select(KEYS)
            .join(past, on=["project", "annotator_id"], how="inner")
            .filter(
                (pl.col("history_day") < pl.col("day"))
                & (pl.col("history_day") >= pl.col("day") - dt.timedelta(days=history_days))
            )
        )
        summary = window.group_by(KEYS).agg(
            (
                (pl.col("consensus_agreement") * pl.col("n_compared")).sum()
                / pl.col("n_compared").filter(pl.col("consensus_agreement").is_not_null()).sum()
            ).alias("history_consensus_agreement"),
            (
                (pl.col("gold_accuracy") * pl.col("n_gold")).sum()
                / pl.col("n_gold").filter(pl.col("gold_accuracy").is_not_null()).sum()
            ).alias("history_gold_accuracy"),
            pl.col("history_day").n_unique().cast(pl.UInt32).alias("history_days"),
        )
        cards = cards.join(summary, on=KEYS, how="left").with_columns(
            pl.col("history_days").fill_null(0),
            pl.col("history_consensus_agreement").fill_nan(None),
            pl.col("history_gold_accuracy").fill_nan(None),
        )
    return cards.with_columns(
        (pl.col("consensus_agreement") - pl.col("history_consensus_agreement")).alias(
            "consensus_agreement_change"
        ),
        (pl.col("gold_accuracy") - pl.col("history_gold_accuracy")).alias("gold_accuracy_change"),
    )
