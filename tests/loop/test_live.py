"""The live engine: incremental state equals its sufficient statistics, exactly once, blocks,
requests with stable decision ids, agreement with a full Dawid–Skene fit, and the end-of-day
re-base on the daily aggregation."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from annotation_pipelines.aggregation.api import aggregate, fit
from annotation_pipelines.loop.live import (
    LedgerCompaction,
    LiveOptions,
    LiveState,
    due_merges,
    file_rows,
    load_state,
    load_touched,
    merge_objects,
    moved_gold_away,
    open_requests,
    plan_merge,
    rebase,
    requests_update,
    segment_opener,
    state_objects,
    state_prefix,
    update,
)
from annotation_pipelines.loop.moves import moved
from annotation_pipelines.loop.policy import RECOMMENDED

START = datetime(2026, 11, 10, 9, tzinfo=UTC)
NOW = datetime(2026, 11, 10, 12, tzinfo=UTC)


def stream(
    *, n_tasks: int = 600, votes: int = 5, n_annotators: int = 30, spammer_from: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(judgments in arrival order with ids and stamps, truth); 3 classes; annotator `s00` is
    a spammer answering uniformly at random from task `spammer_from` on."""
    rng = np.random.default_rng(11)
    truth = rng.integers(0, 3, n_tasks)
    skill = rng.uniform(0.7, 0.95, n_annotators)
    rows = []
    for task in range(n_tasks):
        for annotator in rng.choice(n_annotators, size=votes, replace=False):
            label = truth[task] if rng.random() < skill[annotator] else rng.integers(0, 3)
            rows.append((f"t{task:04d}", f"w{annotator:02d}", f"c{label}"))
        if spammer_from is not None and task >= spammer_from:
            rows.append((f"t{task:04d}", "s00", f"c{rng.integers(0, 3)}"))
    frame = pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")
    frame = frame.with_row_index("n").with_columns(
        judgment_id=pl.format("j{}", pl.col("n")),
        submitted_at=pl.lit(START) + pl.duration(milliseconds=pl.col("n") * 10),
        duration_s=pl.lit(4.0),
    )
    frame = frame.with_columns(updated_at=pl.col("submitted_at")).drop("n")
    truth_frame = pl.DataFrame(
        {"task_id": [f"t{t:04d}" for t in range(n_tasks)], "truth": [f"c{v}" for v in truth]}
    )
    return frame, truth_frame


def run(judgments: pl.DataFrame, *, batch: int = 500, options: LiveOptions | None = None):
    state, events = LiveState(project="p"), []
    for start in range(0, judgments.height, batch):
        state, event = update(state, judgments.slice(start, batch), options=options, now=NOW)
        events.append(event)
    return state, events


def recomputed_counts(state: LiveState) -> np.ndarray:
    """The confusion counts from scratch: Σ over active judgments of their task's posterior."""
    k = len(state.labels)
    codes = {label: i for i, label in enumerate(state.labels)}
    order = {a: i for i, a in enumerate(state.annotators["annotator_id"])}
    counts = np.zeros((len(order), k, k))
    joined = state.ledger.filter(~pl.col("flagged")).join(
        state.tasks.select("task_id", "posterior"), on="task_id"
    )
    for row in joined.iter_rows(named=True):
        counts[order[row["annotator_id"]], codes[row["label"]]] += np.array(row["posterior"])
    return counts


def recomputed_shared_counts(state: LiveState) -> np.ndarray:
    """The confusion counts of the judgments whose task's posterior is more than their own
    vote: another annotator's active vote is on the task, or it has gold."""
    active = state.ledger.filter(~pl.col("flagged"))
    voters = active.group_by("task_id").agg(voters=pl.col("annotator_id").n_unique())
    golden = state.tasks.filter(pl.col("gold").is_not_null()).get_column("task_id")
    shared = active.join(voters, on="task_id").filter(
        (pl.col("voters") >= 2) | pl.col("task_id").is_in(golden.implode())
    )
    k = len(state.labels)
    codes = {label: i for i, label in enumerate(state.labels)}
    order = {a: i for i, a in enumerate(state.annotators["annotator_id"])}
    counts = np.zeros((len(order), k, k))
    joined = shared.join(state.tasks.select("task_id", "posterior"), on="task_id")
    for row in joined.iter_rows(named=True):
        counts[order[row["annotator_id"]], codes[row["label"]]] += np.array(row["posterior"])
    return counts


def assert_scorecards_recount(state: LiveState) -> None:
    """The carried scorecard counts are those of the ledger, recounted from scratch."""
    golds = state.tasks.select("task_id", "gold").drop_nulls("gold")
    expected = (
        state.ledger.join(golds, on="task_id", how="left")
        .group_by("annotator_id")
        .agg(
            n=pl.len(),
            gold=pl.col("gold").is_not_null().sum(),
            right=(pl.col("gold") == pl.col("label")).fill_null(False).sum(),
            flagged=pl.col("flagged").sum(),
            duration=pl.col("duration_s").mean(),
        )
    )
    cards = state.annotators.join(expected, on="annotator_id", how="left").with_columns(
        pl.col("n", "gold", "right", "flagged").fill_null(0)
    )
    assert (cards["n_judgments"] == cards["n"]).all()
    assert (cards["n_gold"] == cards["gold"]).all()
    assert (cards["n_gold_correct"] == cards["right"]).all()
    assert (cards["n_flagged"] == cards["flagged"]).all()
    np.testing.assert_allclose(
        cards["mean_duration_s"].fill_null(0.0), cards["duration"].fill_null(0.0), atol=1e-9
    )
    np.testing.assert_allclose(state.shared_counts, recomputed_shared_counts(state), atol=1e-6)
    compared = np.rint(state.shared_counts.sum(axis=(1, 2))).astype(np.int64)
    assert cards["n_consensus_compared"].to_list() == compared.tolist()


# The key of each frame of a state: the lake stores the ledger and the tasks sorted by task, so
# a state read back holds the same rows in another order.
KEYS = {"ledger": "judgment_id", "tasks": "task_id", "annotators": None, "versions": None}


def same_frame(a: LiveState, b: LiveState, name: str) -> bool:
    key = KEYS[name]
    left, right = getattr(a, name), getattr(b, name)
    return left.equals(right) if key is None else left.sort(key).equals(right.sort(key))


def test_carried_counts_equal_the_counts_recomputed_from_the_ledger():
    judgments, _ = stream(n_tasks=200)
    state, _ = run(judgments, batch=137)
    np.testing.assert_allclose(state.counts, recomputed_counts(state), atol=1e-6)
    posteriors = np.array(state.tasks["posterior"].to_list())
    np.testing.assert_allclose(state.prior_counts, posteriors.sum(axis=0), atol=1e-6)


def test_incremental_labels_agree_with_a_full_dawid_skene_fit():
    judgments, truth = stream()
    state, _ = run(judgments, batch=300)
    full = fit(judgments.select("task_id", "annotator_id", "label"), "dawid_skene").labels
    both = state.tasks.join(
        full.select("task_id", pl.col("label").alias("full")), on="task_id"
    ).join(truth, on="task_id")
    assert both.height == 600
    agreement = (both["label"] == both["full"]).mean()
    live_accuracy = (both["label"] == both["truth"]).mean()
    full_accuracy = (both["full"] == both["truth"]).mean()
    assert agreement >= 0.98, agreement
    assert live_accuracy >= full_accuracy - 0.01, (live_accuracy, full_accuracy)


def test_a_tie_goes_to_the_label_the_batch_aggregation_gives_it():
    # "b" arrives first, so the state numbers it before "a"; the batch sorts the labels.
    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1"],
            "annotator_id": ["w1", "w2"],
            "label": ["b", "a"],
            "judgment_id": ["j1", "j2"],
            "submitted_at": [START, START + timedelta(seconds=1)],
            "duration_s": [4.0, 4.0],
        }
    ).with_columns(updated_at=pl.col("submitted_at"))
    state = LiveState(project="p")
    for row in range(judgments.height):
        state, _ = update(state, judgments.slice(row, 1), now=NOW)
    assert state.labels == ("b", "a")
    batch = aggregate(judgments.select("task_id", "annotator_id", "label"))
    assert batch["label"].to_list() == ["a"]
    assert state.tasks["label"].to_list() == ["a"]
    assert state.tasks["confidence"].item() == pytest.approx(0.5)


def test_every_judgment_is_counted_once_whatever_the_re_reads():
    judgments, _ = stream(n_tasks=100)
    state = LiveState(project="p")
    # Overlapping windows, as the extract's overlap re-reads the end of the previous one.
    for start in range(0, judgments.height, 100):
        state, _ = update(state, judgments.slice(max(start - 40, 0), 140), now=NOW)
    once, _ = run(judgments, batch=100)
    assert state.ledger.height == judgments.height
    assert state.tasks["n_votes"].sum() == judgments.height
    np.testing.assert_allclose(state.counts, recomputed_counts(state), atol=1e-6)
    again, events = update(state, judgments.slice(0, 300), now=NOW)
    assert again.version == state.version and events.new_judgments == 0
    assert once.ledger.height == state.ledger.height


def test_a_resubmission_replaces_the_earlier_answer():
    judgments, _ = stream(n_tasks=50)
    state, _ = run(judgments)
    first = judgments.row(0, named=True)
    changed = "c0" if first["label"] != "c0" else "c1"
    resubmitted = pl.DataFrame([{**first, "label": changed}]).with_columns(
        updated_at=pl.lit(START + timedelta(hours=1))
    )
    state, events = update(state, resubmitted.cast(judgments.schema), now=NOW)
    assert events.new_judgments == 1
    assert state.ledger.height == judgments.height
    assert state.ledger.filter(pl.col("judgment_id") == first["judgment_id"])["label"].item() == (
        changed
    )
    np.testing.assert_allclose(state.counts, recomputed_counts(state), atol=1e-6)


def test_a_judgment_moved_to_another_task_leaves_the_first_one():
    judgments, _ = stream(n_tasks=50)
    state, _ = run(judgments)
    first = judgments.row(0, named=True)
    moved = pl.DataFrame([{**first, "task_id": "t0049"}], schema=judgments.schema).with_columns(
        updated_at=pl.lit(START + timedelta(hours=1))
    )
    after, _ = update(state, moved, now=NOW)
    votes = dict(after.tasks.select("task_id", "n_votes").iter_rows())
    assert votes[first["task_id"]] == 4 and votes["t0049"] == 6
    np.testing.assert_allclose(after.counts, recomputed_counts(after), atol=1e-6)
    assert_scorecards_recount(after)


def test_a_spammer_is_blocked_once_and_their_judgments_are_flagged():
    judgments, _ = stream(n_tasks=600, spammer_from=300)
    state, events = run(judgments, batch=200)
    actions = pl.concat([e.annotator_actions for e in events])
    assert actions["annotator_id"].to_list() == ["s00"]
    assert "spammer score" in actions["reason"].item()
    assert state.annotators.filter(pl.col("annotator_id") == "s00")["blocked"].item()
    spam = state.ledger.filter(pl.col("annotator_id") == "s00")
    assert spam.height == 300 and spam["flagged"].all()
    # Every spam judgment stops counting: no task's vote count includes them.
    assert state.tasks["n_votes"].sum() == judgments.height - 300
    np.testing.assert_allclose(state.counts, recomputed_counts(state), atol=1e-6)
    # Blocked within a batch or two of reaching min_judgments (30 of their judgments).
    order = judgments.with_row_index("n").filter(pl.col("annotator_id") == "s00")
    thirtieth = order["n"][29]
    blocking = next(i for i, e in enumerate(events) if e.annotator_actions.height)
    assert blocking * 200 <= thirtieth + 2 * 200, (blocking, thirtieth)
    others = state.annotators.filter(pl.col("annotator_id") != "s00")
    assert not others["blocked"].any()
    assert_scorecards_recount(state)


def test_too_few_judgments_block_no_one():
    judgments, _ = stream(n_tasks=100)
    wrong = judgments.head(10).with_columns(
        judgment_id=pl.format("x{}", pl.col("judgment_id")), annotator_id=pl.lit("newcomer")
    )
    state, events = run(pl.concat([judgments, wrong]))
    assert not any(e.annotator_actions.height for e in events)
    card = state.annotators.filter(pl.col("annotator_id") == "newcomer")
    assert card["n_judgments"].item() == 10 and not card["blocked"].item()


def test_judgments_alone_on_their_tasks_do_not_make_a_few_compared_ones_enough_to_block():
    """An annotator with 30 judgments, 27 of them alone on their tasks so far (the first vote
    on fresh tasks), is judged on agreement by the 3 the consensus can check: too few to
    block on, however they look; with 30 compared the rule blocks."""
    judgments, truth = stream(n_tasks=100)
    answers = dict(truth.iter_rows())
    later = START + timedelta(hours=1)

    def newcomer(tasks: list[str], prefix: str) -> pl.DataFrame:
        # One answer whatever the task: what the spammer score measures.
        return pl.DataFrame(
            {
                "judgment_id": [f"{prefix}{i}" for i in range(len(tasks))],
                "task_id": tasks,
                "annotator_id": "newcomer",
                "label": "c2",
                "submitted_at": later,
                "duration_s": 4.0,
                "updated_at": later,
            }
        ).select(judgments.columns)

    judged = [t for t, label in sorted(answers.items()) if label != "c2"]
    few = pl.concat([newcomer(judged[:3], "x"), newcomer([f"lone{i:02d}" for i in range(27)], "y")])
    state, _ = update(LiveState(project="p"), judgments, now=NOW)
    state, event = update(state, few, now=NOW)
    assert event.annotator_actions.height == 0
    card = state.annotators.filter(pl.col("annotator_id") == "newcomer").row(0, named=True)
    assert card["n_judgments"] == 30 and card["n_consensus_compared"] == 3
    assert card["agreement_upper"] < 0.6 and card["spammer_score"] > 0.8
    state, event = update(state, newcomer(judged[3:30], "z"), now=NOW)
    assert event.annotator_actions["annotator_id"].to_list() == ["newcomer"]
    assert "over 30 judgments compared" in event.annotator_actions["reason"].item()


def test_a_bad_gold_record_blocks_through_the_gold_rule():
    judgments, truth = stream(n_tasks=300)
    gold = truth.head(60).rename({"truth": "label"})
    wrong = (
        gold.join(judgments.select("task_id").unique(), on="task_id")
        .with_row_index("n")
        .select(
            "task_id",
            judgment_id=pl.format("g{}", pl.col("n")),
            annotator_id=pl.lit("careless"),
            label=pl.when(pl.col("label") == "c0").then(pl.lit("c1")).otherwise(pl.lit("c0")),
            submitted_at=pl.lit(START),
            duration_s=pl.lit(1.0),
            updated_at=pl.lit(START),
        )
    )
    state, gold_event = update(LiveState(project="p"), judgments, gold, now=NOW)
    assert not gold_event.annotator_actions.height
    state, event = update(state, wrong.select(judgments.columns), now=NOW)
    assert event.annotator_actions["annotator_id"].to_list() == ["careless"]
    assert "gold accuracy 0.000" in event.annotator_actions["reason"].item()
    card = state.annotators.filter(pl.col("annotator_id") == "careless")
    assert card["n_gold"].item() == 60 and card["gold_accuracy_upper"].item() < 0.1
    assert_scorecards_recount(state)


def test_requests_have_stable_decision_ids_and_follow_the_policy():
    judgments, _ = stream(n_tasks=200, votes=3)
    state, _ = run(judgments.head(300))
    retried_a, events_a = update(state, judgments.slice(300), now=NOW)
    _, events_b = update(state, judgments.slice(300), now=NOW)
    assert events_a.task_requests.height > 0
    assert events_a.task_requests.equals(events_b.task_requests)
    requests = events_a.task_requests
    assert set(requests["request"]) <= {"another_judgment", "expert_review"}
    decided = requests.join(retried_a.tasks, on="task_id")
    # The live layer runs the replay's recommended policy: below 0.99, from three votes.
    assert LiveOptions().policy == RECOMMENDED
    assert (decided["confidence"] < RECOMMENDED.target_confidence).all()
    assert (decided["n_votes"] >= RECOMMENDED.min_votes).all()
    # The open list reports the same decisions under the same ids.
    pending = open_requests(retried_a, LiveOptions(), now=NOW)
    assert set(requests["decision_id"]) <= set(pending["decision_id"])


def test_the_state_round_trips_through_its_lake_objects():
    judgments, _ = stream(n_tasks=80, spammer_from=0)
    state, _ = run(judgments, batch=120)
    files = state_objects(state).writes
    loaded = load_state("p", files.get)
    assert loaded.version == state.version and loaded.labels == state.labels
    for name in KEYS:
        assert same_frame(loaded, state, name), name
    np.testing.assert_allclose(loaded.counts, state.counts)
    more, _ = stream(n_tasks=90)
    after_a, _ = update(loaded, more.slice(400), now=NOW)
    after_b, _ = update(state, more.slice(400), now=NOW)
    assert after_a.tasks.sort("task_id").equals(after_b.tasks.sort("task_id"))


def test_rows_of_another_project_are_refused_with_the_judgment_named():
    judgments, _ = stream(n_tasks=5)
    with pytest.raises(ValueError, match="judgment j0: field project"):
        update(LiveState(project="p"), judgments.with_columns(project=pl.lit("q")), now=NOW)


def _daily(judgments: pl.DataFrame, day: str) -> pl.DataFrame:
    """What `aggregated_labels` holds for `day`: the default method on the day's judgments."""
    rows = judgments.filter(pl.col("submitted_at").dt.date().cast(pl.String) == day)
    labels = fit(rows.select("task_id", "annotator_id", "label"), "auto").labels
    return labels.select("task_id", "label", "confidence", "n_votes")


def test_the_rebase_on_the_daily_aggregation_agrees_on_every_task_of_the_day():
    judgments, _ = stream(n_tasks=600, spammer_from=300)
    # One task straddles midnight: its first vote the evening before.
    straddling = judgments.filter(pl.col("task_id") == "t0007").head(1)
    judgments = pl.concat(
        [
            straddling.with_columns(
                submitted_at=pl.col("submitted_at") - timedelta(hours=12),
                updated_at=pl.col("updated_at") - timedelta(hours=12),
            ),
            judgments.join(straddling.select("judgment_id"), on="judgment_id", how="anti"),
        ]
    )
    state, _ = run(judgments, batch=250)
    day = START.date().isoformat()
    daily = _daily(judgments, day)
    rebased, events = rebase(state, daily, day, now=NOW)
    both = rebased.tasks.join(daily.rename({"label": "daily"}), on="task_id")
    of_day = both.filter(pl.col("task_id") != "t0007")
    assert of_day.height == 599 and events.rebased_tasks == 599
    assert (of_day["label"] == of_day["daily"]).all()
    np.testing.assert_allclose(of_day["confidence"], of_day["confidence_right"])
    # The straddling task: the daily saw 4 of its 5 votes, so it keeps its live posterior.
    kept = rebased.tasks.filter(pl.col("task_id") == "t0007")
    assert kept.equals(state.tasks.filter(pl.col("task_id") == "t0007"))
    # The carried statistics are the recount of the re-based posteriors.
    np.testing.assert_allclose(rebased.counts, recomputed_counts(rebased), atol=1e-6)
    posteriors = np.array(rebased.tasks["posterior"].to_list())
    np.testing.assert_allclose(rebased.prior_counts, posteriors.sum(axis=0), atol=1e-6)
    assert rebased.version == state.version + 1
    # Requests only where the policy's answer changed; a second rebase changes nothing more.
    again, second = rebase(rebased, daily, day, now=NOW)
    assert second.task_requests.height == 0
    assert again.tasks.sort("task_id")["label"].equals(rebased.tasks.sort("task_id")["label"])
    # A late vote on a re-based task refits it from there, exactly once.
    late = (
        judgments.filter(pl.col("task_id") == "t0001")
        .head(1)
        .with_columns(
            judgment_id=pl.lit("late"),
            annotator_id=pl.lit("w29"),
            updated_at=pl.lit(START + timedelta(days=1)),
        )
    )
    after, event = update(rebased, late, now=NOW)
    assert event.new_judgments == 1
    assert after.tasks.filter(pl.col("task_id") == "t0001")["n_votes"].item() == 6
    np.testing.assert_allclose(after.counts, recomputed_counts(after), atol=1e-6)


def test_the_rebase_leaves_a_gold_task_its_gold_answer():
    """A daily table fitted before the task's gold arrived (the day rebuilds later) gives the
    crowd's answer; the live gold task keeps the gold answer at confidence 1, as each kind's
    re-base keeps it."""
    judgments, _ = stream(n_tasks=60)
    day = START.date().isoformat()
    daily = _daily(judgments, day)
    crowd = daily.filter(pl.col("task_id") == "t0003")["label"].item()
    other = next(label for label in ("c0", "c1", "c2") if label != crowd)
    gold = pl.DataFrame({"task_id": ["t0003"], "label": [other]})
    state, _ = update(LiveState(project="p"), judgments, gold, now=NOW)
    rebased, events = rebase(state, daily, day, now=NOW)
    assert events.rebased_tasks == 59
    task = rebased.tasks.filter(pl.col("task_id") == "t0003")
    assert task.select("label", "confidence", "gold").row(0) == (other, 1.0, other)
    assert task.equals(state.tasks.filter(pl.col("task_id") == "t0003"))


def test_an_export_file_becomes_live_rows_stamped_with_its_read_time():
    judgments, truth = stream(n_tasks=20)
    judgments = judgments.with_columns(project=pl.lit("p"), kind=pl.lit(None, pl.String))
    other_kind = judgments.head(3).with_columns(
        judgment_id=pl.format("n{}", pl.col("judgment_id")), kind=pl.lit("numeric")
    )
    gold = truth.head(2).select("task_id", label="truth", project=pl.lit("p"))
    rows, golden = file_rows(
        pl.concat([judgments, other_kind]), gold, read_at=NOW, source="exports/p/csv/a.csv"
    )
    assert rows.height == judgments.height and golden.height == 2
    assert (rows["updated_at"] == NOW).all()
    state, _ = update(LiveState(project="p"), rows.drop("project"), golden, now=NOW)
    again, events = update(state, rows.drop("project"), golden, now=NOW)
    assert again.version == state.version and events.new_judgments == 0


def _commit(store: dict[str, bytes], objects) -> None:
    """What `Lake.commit` does with a state's objects, on a dict."""
    store.update(objects.writes)
    for key in objects.deletes:
        if key not in objects.writes:
            del store[key]


def _segment_keys(store: dict[str, bytes]) -> set[str]:
    """The ledger segments in `store`, each checked to have its id index and its id
    fingerprints and no more."""
    ledger = [key for key in store if key.startswith(f"{state_prefix('p')}/ledger/")]
    beside = (".ids.parquet", ".ids.fp")
    segments = {key for key in ledger if not key.endswith(beside)}
    assert set(ledger) - segments == {
        k.removesuffix(".parquet") + suffix for k in segments for suffix in beside
    }
    return segments


SOURCE = "exports/p/csv/a.csv"


@dataclass(frozen=True)
class History:
    batches: list[pl.DataFrame]
    resync: dict[int, list[str]]  # batch number → the sources it reads whole
    judgments: pl.DataFrame
    from_file: pl.DataFrame
    first: dict[str, object]
    resubmitted: pl.DataFrame
    moved: tuple[str, str, str]  # judgment_id, from task, to task


def _history() -> History:
    """Batches of 400 tasks with a spammer from the middle, a resubmission of the very
    first judgment in batch 6, an export file read in batch 8 and read again edited in batch
    12 (one judgment gone), and a judgment of batch 1 moved to another old task in batch 14."""
    judgments, _ = stream(n_tasks=400, spammer_from=200)
    source = SOURCE
    judgments = judgments.with_columns(source=pl.lit(None, pl.String))
    first = judgments.row(0, named=True)
    resubmitted = pl.DataFrame(
        [{**first, "label": "c0" if first["label"] != "c0" else "c1"}], schema=judgments.schema
    ).with_columns(updated_at=pl.lit(START + timedelta(hours=1)))
    from_file = judgments.filter(pl.col("task_id").is_in(["t0300", "t0301"])).with_columns(
        judgment_id=pl.format("f{}", "judgment_id"), source=pl.lit(source)
    )
    batches = [judgments.slice(start, 100) for start in range(0, judgments.height, 100)]
    batches[6] = pl.concat([batches[6], resubmitted])
    resync: dict[int, list[str]] = {}
    batches[8] = pl.concat([batches[8], from_file])
    resync[8] = [source]
    # The file edited: one judgment of t0300 gone (a tombstone in a later segment).
    batches[12] = pl.concat([batches[12], from_file.slice(1)])
    resync[12] = [source]
    moved = batches[1].row(3, named=True)
    to = "t0150" if moved["task_id"] != "t0150" else "t0151"
    batches[14] = pl.concat(
        [
            batches[14],
            pl.DataFrame(
                [{**moved, "task_id": to, "updated_at": START + timedelta(hours=2)}],
                schema=judgments.schema,
            ),
        ]
    )
    return History(
        batches=batches,
        resync=resync,
        judgments=judgments,
        from_file=from_file,
        first=first,
        resubmitted=resubmitted,
        moved=(moved["judgment_id"], moved["task_id"], to),
    )


def test_a_ledger_kept_in_segments_loads_back_as_the_state_that_never_left_memory():
    history = _history()
    batches, resync, judgments = history.batches, history.resync, history.judgments
    from_file, first, resubmitted = history.from_file, history.first, history.resubmitted
    source = SOURCE
    compaction = LedgerCompaction(fan_in=3, base_rows=40)
    store: dict[str, bytes] = {}
    memory = LiveState(project="p")
    for number, batch in enumerate(batches):
        state = load_state("p", store.get)
        assert same_frame(state, memory, "ledger"), number
        state, _ = update(state, batch, resynced=resync.get(number, ()), now=NOW)
        memory, _ = update(memory, batch, resynced=resync.get(number, ()), now=NOW)
        objects = state_objects(state, store.get, compaction=compaction)
        new = [key for key in objects.writes if key in _segment_keys(objects.writes)]
        assert len(new) <= 1, new  # one segment per run: its own rows, or the merge of them
        _commit(store, objects)
        loaded = load_state("p", store.get)
        assert _segment_keys(store) == {segment.key for segment in loaded.segments}
        # Size-tiered: levels never grow from older to newer, at most fan_in - 1 of each.
        levels = [compaction.level(segment.rows) for segment in loaded.segments]
        assert levels == sorted(levels, reverse=True), levels
        assert all(levels.count(level) < 3 for level in set(levels)), levels
    loaded = load_state("p", store.get)
    for name in KEYS:
        assert same_frame(loaded, memory, name), name
    np.testing.assert_allclose(loaded.counts, memory.counts)
    assert_scorecards_recount(loaded)
    held = judgments.height + from_file.height - 1
    assert loaded.ledger["judgment_id"].n_unique() == loaded.ledger.height == held
    row = loaded.ledger.filter(pl.col("judgment_id") == first["judgment_id"])
    assert row["label"].item() == resubmitted["label"].item()
    assert loaded.ledger.filter(pl.col("source") == source).height == from_file.height - 1
    assert loaded.ledger.filter(pl.col("annotator_id") == "s00")["flagged"].all()
    # Compaction dropped the superseded versions: the segments hold little more than the ledger
    # (at most the three versions replaced since their last merge: resubmitted, withdrawn, moved).
    assert sum(segment.rows for segment in loaded.segments) <= held + 3


def test_a_state_written_as_one_ledger_file_loads_and_moves_to_segments():
    judgments, _ = stream(n_tasks=100)
    state, _ = run(judgments.head(300))
    prefix = state_prefix("p")
    store = {
        key: data
        for key, data in state_objects(state).writes.items()
        if "/ledger/" not in key and "/tasks/" not in key
    }
    # The earlier layouts: the ledger and the tasks table each one object, not listed.
    meta = json.loads(store[f"{prefix}/state.json"])
    del meta["ledger"], meta["tasks"]
    store[f"{prefix}/state.json"] = json.dumps(meta).encode()
    legacy = io.BytesIO()
    state.ledger.drop("source").write_parquet(legacy)
    store[f"{prefix}/ledger.parquet"] = legacy.getvalue()
    tasks = io.BytesIO()
    state.tasks.write_parquet(tasks)
    store[f"{prefix}/tasks.parquet"] = tasks.getvalue()
    # Nor did it carry the duration totals: they are counted once on load.
    cards = io.BytesIO()
    state.annotators.drop("duration_total", "n_durations").write_parquet(cards)
    store[f"{prefix}/annotators.parquet"] = cards.getvalue()
    loaded = load_state("p", store.get)
    assert same_frame(loaded, state, "ledger") and same_frame(loaded, state, "tasks")
    assert loaded.annotators.equals(state.annotators)
    after, _ = update(loaded, judgments.slice(300), now=NOW)
    # A live run on the earlier layout reads the touched part of it alike.
    touched = load_touched("p", store.get, judgments=judgments.slice(300))
    partly, _ = update(touched, judgments.slice(300), now=NOW)
    assert partly.tasks.sort("task_id").equals(
        after.tasks.filter(pl.col("task_id").is_in(partly.tasks["task_id"].implode())).sort(
            "task_id"
        )
    )
    objects = state_objects(partly, store.get, compaction=LedgerCompaction(fan_in=2))
    _commit(store, objects)
    assert f"{prefix}/ledger.parquet" not in store and f"{prefix}/tasks.parquet" not in store
    final = load_state("p", store.get)
    assert final.ledger.height == judgments.height
    assert same_frame(final, after, "tasks") and same_frame(final, after, "ledger")
    np.testing.assert_allclose(final.counts, after.counts)


def test_judgments_an_edited_file_no_longer_has_are_withdrawn():
    judgments, _ = stream(n_tasks=100, votes=5)
    path = "exports/p/csv/a.csv"
    first = judgments.with_columns(source=pl.lit(path))
    # One task's votes came from the DB as well: the DB's version is the newest.
    from_db = first.filter(pl.col("task_id") == "t0050").with_columns(
        source=pl.lit(None, pl.String), updated_at=pl.lit(START + timedelta(minutes=30))
    )
    state, _ = update(LiveState(project="p"), first, resynced=[path], now=NOW)
    state, _ = update(state, from_db, now=NOW)
    gone_tasks = [f"t{t:04d}" for t in range(10)]
    thinned = [f"t{t:04d}" for t in range(10, 20)]
    one_each = (
        first.filter(pl.col("task_id").is_in(thinned))
        .group_by("task_id")
        .agg(pl.col("judgment_id").first())
    )
    edited = (
        first.filter(~pl.col("task_id").is_in([*gone_tasks, "t0050"]))
        .join(one_each.select("judgment_id"), on="judgment_id", how="anti")
        .with_columns(updated_at=pl.lit(START + timedelta(hours=1)))
    )
    after, events = update(state, edited, resynced=[path], now=NOW)
    # Unchanged rows stamped anew are no new evidence; the missing ones are taken out.
    assert events.new_judgments == 0
    assert events.withdrawn_judgments == 50 + 10
    assert after.ledger.height == judgments.height - 60
    assert not after.tasks["task_id"].is_in(gone_tasks).any()
    votes = after.tasks.filter(pl.col("task_id").is_in(thinned))["n_votes"]
    assert (votes == 4).all()
    # The DB's version of t0050's judgments is not the file's to withdraw.
    assert after.tasks.filter(pl.col("task_id") == "t0050")["n_votes"].item() == 5
    np.testing.assert_allclose(after.counts, recomputed_counts(after), atol=1e-6)
    posteriors = np.array(after.tasks["posterior"].to_list())
    np.testing.assert_allclose(after.prior_counts, posteriors.sum(axis=0), atol=1e-6)
    assert_scorecards_recount(after)
    # A request only where the policy's answer changed for a task that only lost votes.
    earlier = open_requests(state, LiveOptions(), now=NOW, tasks=pl.Series(thinned))
    repeated = events.task_requests.join(earlier, on=["task_id", "request"], how="semi")
    assert repeated.height == 0
    assert set(events.task_requests["task_id"]) <= set(thinned)
    # The same edit read again withdraws nothing more.
    again, second = update(after, edited, resynced=[path], now=NOW)
    assert again.version == after.version and second.withdrawn_judgments == 0
    # Emptied: every judgment the file still gave is withdrawn.
    emptied, last = update(after, first.head(0), resynced=[path], now=NOW)
    assert last.withdrawn_judgments == edited.height
    assert emptied.ledger["task_id"].unique().to_list() == ["t0050"]


def _cards(annotators: pl.DataFrame) -> pl.DataFrame:
    """The scorecards to compare: a blocked annotator's counts are all taken out, and their
    soft scores are then a ratio of rounding residues (1e-16 / 1e-16) in any summation order."""
    emptied = pl.col("confusion").list.sum() < 1e-9
    soft = ("agreement", "agreement_upper", "spammer_score")
    return annotators.with_columns(
        [pl.when(emptied).then(None).otherwise(pl.col(c)).alias(c) for c in soft]
    ).drop("confusion", "shared_confusion")


def _touched_equal(partial: LiveState, full: LiveState) -> None:
    """A state read in part holds what the whole state holds for the tasks it has, and the
    same carried statistics."""
    assert partial.version == full.version and partial.labels == full.labels
    assert partial.versions.equals(full.versions)
    ids = partial.tasks["task_id"].implode()
    assert_frame_equal(
        partial.tasks.sort("task_id"),
        full.tasks.filter(pl.col("task_id").is_in(ids)).sort("task_id"),
        check_exact=False,
        rel_tol=1e-9,
    )
    assert_frame_equal(
        partial.ledger.sort("judgment_id"),
        full.ledger.filter(pl.col("task_id").is_in(partial.ledger["task_id"].implode())).sort(
            "judgment_id"
        ),
    )
    assert_frame_equal(
        _cards(partial.annotators), _cards(full.annotators), check_exact=False, rel_tol=1e-9
    )
    np.testing.assert_allclose(partial.counts, full.counts, atol=1e-9)
    np.testing.assert_allclose(partial.prior_counts, full.prior_counts, rtol=1e-9)


def test_runs_reading_only_their_tasks_keep_the_state_a_whole_load_keeps():
    """Each run reads the touched part of the lake (`load_touched`): the resubmission of a
    judgment merged long ago, the withdrawal of a file's judgment, a judgment moved to an old
    task and a block (which reads its annotator's tasks) all give what the whole state gives;
    merges above `max_inline_rows` wait for a maintenance run, which may run between them."""
    history = _history()
    compaction = LedgerCompaction(fan_in=3, base_rows=40, max_inline_rows=300)
    store: dict[str, bytes] = {}
    memory = LiveState(project="p")
    deferred = 0
    for number, batch in enumerate(history.batches):
        resynced = history.resync.get(number, ())
        state = load_touched("p", store.get, judgments=batch, resynced=resynced)
        assert state.stored is not None or number == 0
        state, events = update(state, batch, resynced=resynced, now=NOW)
        memory, expected = update(memory, batch, resynced=resynced, now=NOW)
        _touched_equal(state, memory)
        assert set(events.task_requests["decision_id"]) == set(
            expected.task_requests["decision_id"]
        )
        assert events.annotator_actions["decision_id"].equals(
            expected.annotator_actions["decision_id"]
        )
        assert (events.new_judgments, events.withdrawn_judgments) == (
            expected.new_judgments,
            expected.withdrawn_judgments,
        )
        objects = state_objects(state, store.get, compaction=compaction)
        # A run writes no segment (its own or a merge) of more than max_inline_rows rows.
        for key, data in objects.writes.items():
            if key.endswith(".parquet") and ("/ledger/" in key or "/tasks/" in key):
                assert pl.read_parquet(io.BytesIO(data)).height <= 300, key
        _commit(store, objects)
        due = due_merges("p", store.get, compaction)
        deferred += bool(due)
        if number % 4 == 3:
            # The maintenance run: plans outside the lock, commits against what is stored then.
            while (merge := plan_merge("p", store.get, compaction)) is not None:
                committed = merge_objects(store.get, merge)
                assert committed is not None
                _commit(store, committed)
            assert due_merges("p", store.get, compaction) == []
        # The block's refit sums in another order in a partial state: equal to rounding.
        _touched_equal(load_state("p", store.get), memory)
    assert deferred, "no merge was ever left for maintenance"
    whole = load_state("p", store.get)
    blocked = whole.annotators.filter(pl.col("blocked"))["annotator_id"].to_list()
    assert blocked == ["s00"]
    row = whole.ledger.filter(pl.col("judgment_id") == history.first["judgment_id"])
    assert row["label"].item() == history.resubmitted["label"].item()
    judgment, was, now_on = history.moved
    assert whole.ledger.filter(pl.col("judgment_id") == judgment)["task_id"].item() == now_on
    assert whole.ledger.filter(pl.col("task_id") == was).height == (
        history.judgments.filter(pl.col("task_id") == was).height - 1
    )
    assert whole.ledger.filter(pl.col("source") == SOURCE).height == history.from_file.height - 1
    np.testing.assert_allclose(whole.counts, recomputed_counts(whole), atol=1e-6)
    assert_scorecards_recount(whole)
    # A merge planned against a listing that changed since is not committed.
    stale = plan_merge("p", store.get, LedgerCompaction(fan_in=2, base_rows=1))
    assert stale is not None
    forced = merge_objects(store.get, stale)
    assert forced is not None
    _commit(store, forced)
    assert merge_objects(store.get, stale) is None
    # The re-base reads the whole state and refuses a part of it.
    day = START.date().isoformat()
    daily = _daily(history.judgments, day)
    rebased, _ = rebase(load_state("p", store.get), daily, day, now=NOW)
    expected_rebase, _ = rebase(memory, daily, day, now=NOW)
    assert rebased.version == expected_rebase.version
    _touched_equal(rebased, expected_rebase)
    touched = load_touched("p", store.get, judgments=history.batches[0])
    with pytest.raises(ValueError, match="load_state"):
        rebase(touched, daily, day, now=NOW)


FILE_A, FILE_B = "exports/p/label-studio/a.json", "exports/p/label-studio/b.json"


def _gold_sources() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(judgments from the DB, gold, the gold file A's edit keeps). The gold of t0000–t0009
    and of the vote-less task g0 comes from file A alone, t0010–t0014's from files A and B,
    t0015–t0019's from the DB; the edit drops A's gold but t0005's, whose answer it changes."""
    judgments, truth = stream(n_tasks=100, votes=5)
    answers = truth.head(20).rename({"truth": "label"})
    extra = pl.DataFrame({"task_id": ["g0"], "label": ["c0"]})
    only_a = pl.concat([answers.head(10), extra]).with_columns(source=pl.lit(FILE_A))
    both = answers.slice(10, 5)
    gold = pl.concat(
        [
            only_a,
            both.with_columns(source=pl.lit(FILE_A)),
            both.with_columns(source=pl.lit(FILE_B)),
            answers.slice(15, 5).with_columns(source=pl.lit(None, pl.String)),
        ]
    )
    changed = answers.filter(pl.col("task_id") == "t0005").with_columns(
        label=pl.when(pl.col("label") == "c0").then(pl.lit("c1")).otherwise(pl.lit("c0")),
        source=pl.lit(FILE_A),
    )
    return judgments, gold, changed


def test_open_requests_merged_run_to_run_are_those_of_the_whole_state():
    """Each run holds only its tasks: `requests.parquet` keeps the other tasks' requests and
    replaces the touched ones', so after any run it lists what the whole state asks for, and
    `requests.json` is the same list as Label Studio tasks. A lake that has only the JSON list
    (written before the table) is read once from it."""
    history = _history()
    store: dict[str, bytes] = {}
    memory = LiveState(project="p")
    options = LiveOptions()
    prefix = state_prefix("p")
    for number, batch in enumerate(history.batches):
        resynced = history.resync.get(number, ())
        state = load_touched("p", store.get, judgments=batch, resynced=resynced)
        state, _ = update(state, batch, resynced=resynced, now=NOW)
        memory, _ = update(memory, batch, resynced=resynced, now=NOW)
        _commit(store, state_objects(state, store.get))
        if number == 5:
            # A lake from before the table: its list is the only record of the open requests.
            store.pop(f"{prefix}/requests.parquet")
        store.update(requests_update(state, options, now=NOW, read=store.get)[0])
        table = pl.read_parquet(io.BytesIO(store[f"{prefix}/requests.parquet"]))
        whole = open_requests(memory, options, now=NOW)
        assert table["task_id"].to_list() == whole["task_id"].to_list(), number
        assert table["request"].to_list() == whole["request"].to_list(), number
        assert table["decision_id"].to_list() == whole["decision_id"].to_list(), number
        listed = json.loads(store[f"{prefix}/requests.json"])
        # Label Studio's import format: `data` per task; `id` is Label Studio's own (an
        # integer it assigns, reserved on import), so the task is named inside `data`.
        assert all(set(item) == {"data"} for item in listed)
        assert [item["data"]["task_id"] for item in listed] == whole["task_id"].to_list()
        assert [item["data"]["decision_id"] for item in listed] == whole["decision_id"].to_list()
    assert whole.height > 0
    assert set(listed[0]["data"]) == {
        "task_id",
        "project",
        "request",
        "reason",
        "confidence",
        "decision_id",
    }


def test_the_label_studio_list_orders_requests_by_project_then_task_then_every_field():
    """Sorted by `task_id` alone, two projects' requests for one task id (the daily list of
    every kind project) could swap places from one run to the next: the list's order is total
    over what it holds, whatever order the requests come in."""
    from annotation_pipelines.loop.live import TASK_REQUESTS, label_studio_requests

    rows = [
        ("t1", "b", "another_judgment", "spans: unsure", 0.6, "d1"),
        ("t2", "a", "another_judgment", "unsure", 0.5, "d2"),
        ("t1", "a", "expert_review", "unsure", 0.4, "d3"),
        ("t1", "a", "another_judgment", "unsure", 0.4, "d4"),
        ("t1", "a", "another_judgment", "boxes: unsure", None, "d5"),
        ("t1", "b", "another_judgment", "boxes: unsure", 0.6, "d6"),
        ("t3", "a", "another_judgment", "unsure", 0.5, "d8"),
        ("t3", "a", "another_judgment", "unsure", 0.5, "d7"),
        ("t4", "a", "another_judgment", "unsure", None, "d9"),
        ("t4", "a", "another_judgment", "unsure", 0.2, "d10"),
    ]
    requests = pl.DataFrame(
        [(*row[:5], None, row[5], None) for row in rows],
        schema=TASK_REQUESTS,
        orient="row",
    )
    listed = label_studio_requests(requests)
    order = [(item["data"]["project"], item["data"]["decision_id"]) for item in json.loads(listed)]
    assert order == [
        ("a", "d5"),
        ("a", "d4"),
        ("a", "d3"),
        ("a", "d2"),
        ("a", "d7"),
        ("a", "d8"),
        ("a", "d10"),
        ("a", "d9"),
        ("b", "d6"),
        ("b", "d1"),
    ]
    for seed in range(20):
        shuffled = requests.sample(fraction=1.0, shuffle=True, seed=seed)
        assert label_studio_requests(shuffled) == listed, seed


def test_gold_an_edited_file_no_longer_gives_is_withdrawn():
    judgments, gold, edit = _gold_sources()
    state, _ = update(LiveState(project="p"), judgments, gold, resynced=[FILE_A, FILE_B], now=NOW)
    sources = dict(state.tasks.select("task_id", "gold_sources").iter_rows())
    assert sources["t0000"] == [FILE_A] and sources["t0010"] == [FILE_A, FILE_B]
    assert sources["t0015"] is None and "g0" in sources

    after, events = update(state, judgments.head(0), edit, resynced=[FILE_A], now=NOW)
    assert events.withdrawn_gold == 9 + 1 and events.withdrawn_judgments == 0
    tasks = {row["task_id"]: row for row in after.tasks.iter_rows(named=True)}
    lost = [f"t{t:04d}" for t in range(10) if t != 5]
    assert all(tasks[task]["gold"] is None for task in lost)
    assert all(tasks[task]["n_votes"] == 5 for task in lost)
    # A vote-less task whose only gold went leaves the state, as if it had never come.
    assert "g0" not in tasks and "g0" in after.removed_tasks
    # A changed answer replaces the earlier one; gold another file or the DB gives stays.
    assert (tasks["t0005"]["gold"], tasks["t0005"]["gold_sources"]) == (
        edit["label"].item(),
        [FILE_A],
    )
    assert all(tasks[f"t{t:04d}"]["gold_sources"] == [FILE_B] for t in range(10, 15))
    assert all(tasks[f"t{t:04d}"]["gold"] is not None for t in range(10, 20))
    # The running gold counts are those of the gold left, as if the rest had never come.
    assert_scorecards_recount(after)
    left = after.tasks.select("task_id", label="gold").drop_nulls("label")
    fresh, _ = update(LiveState(project="p"), judgments, left, now=NOW)
    counted = ["annotator_id", "n_gold", "n_gold_correct"]
    assert (
        after.annotators.select(counted)
        .sort("annotator_id")
        .equals(fresh.annotators.select(counted).sort("annotator_id"))
    )
    assert after.annotators["n_gold"].sum() < state.annotators["n_gold"].sum()
    np.testing.assert_allclose(after.counts, recomputed_counts(after), atol=1e-6)
    posteriors = np.array(after.tasks["posterior"].to_list())
    np.testing.assert_allclose(after.prior_counts, posteriors.sum(axis=0), atol=1e-6)
    # The tasks that lost their anchor are decided by the policy again.
    assert set(events.task_requests["task_id"]) <= set(lost)

    # The same edit read again changes nothing; emptied, A takes its last gold back, and B's
    # goes with B emptied; the DB's stays.
    again, second = update(after, judgments.head(0), edit, resynced=[FILE_A], now=NOW)
    assert again.version == after.version and second.withdrawn_gold == 0
    emptied, _ = update(after, judgments.head(0), edit.head(0), resynced=[FILE_A], now=NOW)
    both, last = update(emptied, judgments.head(0), None, resynced=[FILE_B], now=NOW)
    assert last.withdrawn_gold == 5
    assert sorted(both.tasks.drop_nulls("gold")["task_id"]) == [f"t{t:04d}" for t in range(15, 20)]
    assert_scorecards_recount(both)


def test_gold_given_again_by_another_source_keeps_the_task_anchored():
    judgments, gold, _ = _gold_sources()
    answer = gold.filter(pl.col("task_id") == "t0000")
    state, _ = update(LiveState(project="p"), judgments, answer, now=NOW)
    # The DB's gold takes a file's over: no file edit withdraws it.
    by_db = answer.with_columns(source=pl.lit(None, pl.String))
    moved, _ = update(state, judgments.head(0), by_db, now=NOW)
    assert moved.version == state.version + 1
    assert moved.tasks.filter(pl.col("task_id") == "t0000")["gold_sources"].item() is None
    kept, events = update(moved, judgments.head(0), None, resynced=[FILE_A], now=NOW)
    assert events.withdrawn_gold == 0 and kept.version == moved.version
    # Nor does an edit of a file the gold never came from.
    other, events = update(state, judgments.head(0), None, resynced=[FILE_B], now=NOW)
    assert events.withdrawn_gold == 0 and other.version == state.version


def test_gold_withdrawn_through_a_partly_loaded_state_matches_the_whole_state():
    """A run that reads only its tasks (`load_touched`) finds the tasks the edited file's gold
    anchored, the vote-less ones too, and gives what the whole state gives."""
    judgments, gold, edit = _gold_sources()
    store: dict[str, bytes] = {}
    memory, _ = update(LiveState(project="p"), judgments, gold, now=NOW)
    _commit(store, state_objects(memory, store.get))
    touched = load_touched(
        "p", store.get, judgments=judgments.head(0), gold=edit, resynced=[FILE_A]
    )
    assert {"g0", "t0001"} <= set(touched.tasks["task_id"])
    partly, events = update(touched, judgments.head(0), edit, resynced=[FILE_A], now=NOW)
    whole, expected = update(memory, judgments.head(0), edit, resynced=[FILE_A], now=NOW)
    assert events.withdrawn_gold == expected.withdrawn_gold == 10
    _touched_equal(partly, whole)
    _commit(store, state_objects(partly, store.get))
    loaded = load_state("p", store.get)
    assert same_frame(loaded, whole, "tasks") and "g0" not in loaded.tasks["task_id"]
    assert_scorecards_recount(loaded)


def test_a_state_stored_before_gold_sources_loads_and_keeps_its_gold():
    """Tasks segments written without `gold_sources`: their gold has no known file, so no
    file edit withdraws it; gold given afterwards is withdrawn as usual."""
    judgments, gold, _ = _gold_sources()
    state, _ = update(LiveState(project="p"), judgments, gold, now=NOW)
    store: dict[str, bytes] = {}
    _commit(store, state_objects(state, store.get))
    for key in [k for k in store if "/tasks/" in k and k.endswith(".parquet")]:
        frame = pl.read_parquet(io.BytesIO(store[key])).drop("gold_sources")
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        store[key] = buffer.getvalue()
    loaded = load_state("p", store.get)
    assert loaded.tasks["gold_sources"].is_null().all()
    assert (
        loaded.tasks.drop("gold_sources")
        .sort("task_id")
        .equals(state.tasks.drop("gold_sources").sort("task_id"))
    )
    kept, events = update(loaded, judgments.head(0), None, resynced=[FILE_A], now=NOW)
    assert events.withdrawn_gold == 0 and kept.version == loaded.version
    touched = load_touched("p", store.get, judgments=judgments.head(0), resynced=[FILE_A])
    kept, events = update(touched, judgments.head(0), None, resynced=[FILE_A], now=NOW)
    assert events.withdrawn_gold == 0
    fresh_gold = pl.DataFrame({"task_id": ["t0050"], "label": ["c2"], "source": [FILE_A]})
    given, _ = update(loaded, judgments.head(0), fresh_gold, now=NOW)
    taken, events = update(given, judgments.head(0), None, resynced=[FILE_A], now=NOW)
    assert events.withdrawn_gold == 1
    assert taken.tasks.filter(pl.col("task_id") == "t0050")["gold"].item() is None
    assert_scorecards_recount(taken)


def test_every_open_request_listed_is_a_decision_written_to_the_db():
    """The tool acknowledges a request by the `decision_id` it finds in `requests.json` or
    `requests.parquet`: that id must be a row of `task_requests`. A task refitted without new
    evidence (it only lost a withdrawn vote, or the day's re-base moved it) whose request is
    unchanged writes no new decision, so its listed request keeps the id already written."""
    history = _history()
    store: dict[str, bytes] = {}
    options = LiveOptions()
    prefix = state_prefix("p")
    written: set[str] = set()

    def listed() -> set[str]:
        table = pl.read_parquet(io.BytesIO(store[f"{prefix}/requests.parquet"]))
        ids = set(table["decision_id"])
        assert {
            item["data"]["decision_id"] for item in json.loads(store[f"{prefix}/requests.json"])
        } == ids
        return ids

    def commit(state: LiveState, decisions: pl.Series) -> None:
        """The run's state and its requests, `decisions` the ones it wrote to the DB."""
        written.update(decisions)
        _commit(store, state_objects(state, store.get))
        store.update(requests_update(state, options, now=NOW, read=store.get, written=decisions)[0])

    for number, batch in enumerate(history.batches):
        resynced = history.resync.get(number, ())
        state = load_touched("p", store.get, judgments=batch, resynced=resynced)
        state, events = update(state, batch, resynced=resynced, now=NOW)
        commit(state, events.task_requests["decision_id"])
        assert listed() <= written, number
    whole = load_state("p", store.get)
    day = START.date().isoformat()
    rebased, events = rebase(whole, _daily(history.judgments, day), day, options, now=NOW)
    assert events.rebased_tasks > 0
    commit(rebased, events.task_requests["decision_id"])
    ids = listed()
    assert ids <= written
    # Still the requests the whole state asks for, task by task.
    table = pl.read_parquet(io.BytesIO(store[f"{prefix}/requests.parquet"]))
    expected = open_requests(rebased, options, now=NOW)
    assert table.select("task_id", "request").equals(expected.select("task_id", "request"))


def test_a_rewritten_list_carries_unwritten_ids_and_names_the_requests_that_left():
    """A kind's list is rewritten whole each run: a request the run did not write keeps the id
    the DB holds, and the requests no longer listed are the ones to withdraw, whether the
    previous list is its table or (a lake from before the table) its Label Studio list, old
    items with the task in `id` included."""
    from annotation_pipelines.loop.live import label_studio_requests, relisted_requests

    state, _ = run(stream(n_tasks=60, votes=3)[0], batch=90)
    before = open_requests(state, LiveOptions(), now=NOW)
    assert before.height > 3
    moved = before.head(3).with_columns(decision_id=pl.format("new-{}", "decision_id"))
    fresh = pl.concat([moved, before.slice(4)])  # the fourth task settled
    written = [moved["decision_id"][0]]  # only the first got a decision this run
    table = io.BytesIO()
    before.write_parquet(table)
    old_list = json.dumps(
        [
            {"id": item["data"]["task_id"], **item}
            for item in json.loads(label_studio_requests(before))
        ]
    ).encode()
    for previous, previous_json in ((table.getvalue(), None), (None, old_list)):
        listed, closed = relisted_requests(
            fresh, previous, previous_json, project="p", written=written
        )
        ids = before["decision_id"].to_list()
        assert listed["decision_id"].to_list() == [written[0], *ids[1:3], *ids[4:]]
        assert closed == sorted([ids[0], ids[3]])


def test_a_judgment_filed_under_another_project_is_found_where_an_older_version_is_held():
    judgments, _ = stream(n_tasks=40)
    rows = judgments.with_columns(updated_at=pl.col("submitted_at"))
    store: dict[str, bytes] = {}
    held, _ = update(LiveState(project="a"), rows, now=NOW)
    _commit(store, state_objects(held, store.get))
    later = NOW + timedelta(hours=1)
    moving = rows.filter(pl.col("task_id") == "t0003").with_columns(
        project=pl.lit("b"), updated_at=pl.lit(later)
    )
    receiving = {"b": LiveState(project="b")}

    def moved_judgments(states, batch, projects, read):
        nothing = pl.DataFrame()
        return moved(
            states, batch, nothing, {}, nothing, nothing, projects=projects, index={}, read=read
        ).judgments

    found = moved_judgments(receiving, moving, ["a", "b"], store.get)
    assert sorted(found["judgment_id"]) == sorted(moving["judgment_id"])
    assert (found["project"] == "a").all() and (found["deleted_at"] == later).all()
    # Dated by the newer version; naming the version held, which is all it withdraws.
    before = rows.filter(pl.col("task_id") == "t0003").sort("judgment_id")["updated_at"]
    assert (found.sort("judgment_id")["updated_at"] == before).all()
    # An index without fingerprints (written before them) is read instead: the same.
    legacy = {k: v for k, v in store.items() if not k.endswith(".ids.fp")}
    assert moved_judgments(receiving, moving, ["a"], legacy.get).equals(found)
    # A version as old as the one held, a file's row, or a state holding it: nothing moves.
    same = moving.with_columns(updated_at=pl.col("submitted_at"))
    assert moved_judgments(receiving, same, ["a"], store.get).height == 0
    filed = moving.with_columns(source=pl.lit("exports/b/a.csv"))
    assert moved_judgments(receiving, filed, ["a"], store.get).height == 0
    holding = {"b": replace(held, project="b")}
    assert moved_judgments(holding, moving, ["a"], store.get).height == 0


def test_gold_another_state_takes_in_is_found_where_the_db_gave_it():
    """`moved_gold_away` finds the tasks whose newest row holds the DB's gold, through the
    tasks segments' gold fingerprints (or their rows, for segments written before those):
    not a file's gold, not gold a newer segment took away."""
    judgments, _ = stream(n_tasks=40)
    rows = judgments.with_columns(updated_at=pl.col("submitted_at"))
    gold = pl.DataFrame(
        {
            "task_id": ["t0001", "t0002", "t0003"],
            "project": "a",
            "label": "c0",
            "source": [None, "exports/a/csv/g.csv", None],
        }
    )
    store: dict[str, bytes] = {}
    held, _ = update(LiveState(project="a"), rows, gold, now=NOW)
    _commit(store, state_objects(held, store.get))
    asked = pl.Series(["t0001", "t0002", "t0003", "t0004", "zz"])
    found = moved_gold_away("a", store.get, asked)
    assert found.sort("task_id")["task_id"].to_list() == ["t0001", "t0003"]
    assert (found["project"] == "a").all() and (found["label"] == "c0").all()
    legacy = {k: v for k, v in store.items() if not k.endswith(".gold.fp")}
    assert moved_gold_away("a", legacy.get, asked).equals(found)
    # Tasks without the DB's gold (numbered like the state's own) open no tasks segment; a
    # segment written before the fingerprints is read for them.
    opened: list[str] = []

    def opener(read):
        fetch = segment_opener(read)
        return lambda key: opened.append(key) or fetch(key)

    unheld = pl.Series(["t0002", "t0004", "t0005"])
    assert moved_gold_away("a", store.get, unheld, open_segment=opener(store.get)).height == 0
    assert opened == []
    assert moved_gold_away("a", legacy.get, unheld, open_segment=opener(legacy.get)).height == 0
    assert opened and all("/tasks/" in key for key in opened)
    # A later version without t0003's gold (the DB deleted it): only t0001 is held.
    loaded = load_state("a", store.get)
    tombstone = pl.DataFrame({"task_id": ["t0003"], "project": ["a"]})
    later, _ = update(loaded, rows.head(0), now=NOW, deleted_gold=tombstone)
    _commit(store, state_objects(later, store.get))
    assert moved_gold_away("a", store.get, asked)["task_id"].to_list() == ["t0001"]
    # Nothing asked, or a state never stored: nothing read.
    assert moved_gold_away("a", store.get, asked.head(0)).height == 0
    assert moved_gold_away("b", store.get, asked).height == 0


def lone_judgments(
    annotator: str, tasks: list[str], labels: list[str], at: datetime
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": tasks,
            "annotator_id": annotator,
            "label": labels,
            "judgment_id": [f"{annotator}-{t}" for t in tasks],
            "submitted_at": [at + timedelta(seconds=i) for i in range(len(tasks))],
            "duration_s": 4.0,
        }
    ).with_columns(updated_at=pl.col("submitted_at"))


def test_a_lone_annotator_has_no_live_agreement_and_is_not_blocked_on_it():
    rng = np.random.default_rng(3)
    tasks = [f"x{i:03d}" for i in range(40)]
    labels = [f"c{v}" for v in rng.integers(0, 3, len(tasks))]
    solo = lone_judgments("solo", tasks, labels, START)
    # Any agreement and spammer score would block: only a null blocks no one.
    strict = LiveOptions(min_agreement=1.01, max_spammer_score=-1.0)
    state, events = update(LiveState(project="p"), solo, options=strict, now=NOW)
    card = state.annotators.row(0, named=True)
    assert card["n_judgments"] == 40 and card["n_consensus_compared"] == 0
    assert card["agreement"] is None and card["agreement_upper"] is None
    assert card["spammer_score"] is None
    assert not card["blocked"] and events.annotator_actions.height == 0
    assert_scorecards_recount(state)
    # Someone else judges 20 of the tasks (5 differently): those 20 are compared, for both.
    mate_labels = labels[:15] + [f"c{(int(v[1]) + 1) % 3}" for v in labels[15:20]]
    mate = lone_judgments("mate", tasks[:20], mate_labels, START + timedelta(hours=1))
    state, _ = update(state, mate, now=NOW)
    cards = {row["annotator_id"]: row for row in state.annotators.iter_rows(named=True)}
    assert cards["solo"]["n_consensus_compared"] == 20
    assert cards["mate"]["n_consensus_compared"] == 20
    assert cards["solo"]["agreement"] is not None
    assert_scorecards_recount(state)
    # Gold makes the consensus the gold answer: a lone answer on it is compared too.
    gold = pl.DataFrame({"task_id": tasks[30:35], "label": labels[30:35]})
    state, _ = update(state, solo.head(0), gold, now=NOW)
    solo_card = state.annotators.filter(pl.col("annotator_id") == "solo").row(0, named=True)
    assert solo_card["n_consensus_compared"] == 25
    assert_scorecards_recount(state)


def test_live_and_daily_scorecards_compare_the_same_judgments_with_the_consensus():
    from annotation_pipelines.quality import annotator_scorecards

    judgments, _ = stream(n_tasks=300)
    rng = np.random.default_rng(5)
    extra = [f"x{i:03d}" for i in range(30)]
    alone = lone_judgments(
        "w00", extra, [f"c{v}" for v in rng.integers(0, 3, 30)], START + timedelta(hours=2)
    )
    judgments = pl.concat([judgments, alone.select(judgments.columns)])
    state, _ = run(judgments, batch=150)
    day = START.date().isoformat()
    daily = _daily(judgments, day)
    rebased, _ = rebase(state, daily, day, now=NOW)
    assert_scorecards_recount(rebased)
    cards = annotator_scorecards(
        judgments.with_columns(project=pl.lit("p")),
        daily.with_columns(project=pl.lit("p")),
        pl.DataFrame(schema={"task_id": pl.String, "project": pl.String, "label": pl.String}),
    )
    both = rebased.annotators.join(
        cards.select("annotator_id", "n_consensus_compared", "consensus_agreement"),
        on="annotator_id",
        suffix="_daily",
    )
    assert both.height == 30
    assert (both["n_consensus_compared"] == both["n_consensus_compared_daily"]).all()
    gap = (both["agreement"] - both["consensus_agreement"]).abs()
    assert gap.max() < 0.03, gap.max()


def test_a_wide_label_set_reads_as_confident_as_its_labels_are_right():
    # The live prior that annotators beat chance must not fall with the number of classes:
    # one pseudo-count on every wrong answer made it 2 / (K + 1), and at 200 classes three
    # unanimous votes read 0.035 while 0.915 of the labels were right.
    rng = np.random.default_rng(5)
    classes, n_tasks = 200, 300
    truth = rng.integers(0, classes, n_tasks)
    rows = []
    for task, right in enumerate(truth):
        for annotator in rng.choice(30, 3, replace=False):
            answer = right if rng.random() < 0.8 else rng.integers(0, classes)
            rows.append((f"t{task:04d}", f"w{annotator:02d}", f"L{answer}"))
    frame = (
        pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")
        .with_row_index("n")
        .with_columns(
            judgment_id=pl.format("j{}", pl.col("n")),
            submitted_at=pl.lit(START) + pl.duration(milliseconds=pl.col("n") * 10),
            duration_s=pl.lit(4.0),
        )
        .with_columns(updated_at=pl.col("submitted_at"))
        .drop("n")
    )
    state, _ = update(LiveState(project="p"), frame, now=NOW)
    posterior = np.array(state.tasks["posterior"].to_list())
    chosen = np.array(state.labels)[posterior.argmax(axis=1)]
    expected = dict(zip([f"t{task:04d}" for task in range(n_tasks)], truth, strict=True))
    tasks = state.tasks["task_id"]
    right = np.array(
        [label == f"L{expected[task]}" for label, task in zip(chosen, tasks, strict=True)]
    )
    assert right.mean() > 0.9
    assert abs(posterior.max(axis=1).mean() - right.mean()) < 0.05
