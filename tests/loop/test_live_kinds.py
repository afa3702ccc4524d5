"""The live engine of the non-categorical kinds: exactly once, touched tasks only, carried
annotator parameters, running scorecards and blocks, requests once per decision."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from annotation_pipelines.aggregation.boxes import aggregate_boxes
from annotation_pipelines.aggregation.ranking import aggregate_ranking
from annotation_pipelines.aggregation.spans import fit_spans
from annotation_pipelines.aggregation.text import aggregate_text
from annotation_pipelines.kinds import BOX, SPAN, VALUE_COLUMNS, VALUE_DTYPES
from annotation_pipelines.loop.kind_posterior import (
    PairwiseConfidence,
    numeric_confidence,
    numeric_tolerance,
)
from annotation_pipelines.loop.live_kinds import (
    LIVE_KINDS,
    KindLiveOptions,
    KindState,
    adopt_fit,
    fit_snapshot,
    gold_schema,
    kind_file_rows,
    kind_state_objects,
    load_kind_state,
    open_kind_requests,
    refit_labels,
    update_kind,
    update_kind_projects,
)
from annotation_pipelines.synthetic.kinds import draw_project_day

START = datetime(2026, 11, 1, 9, tzinfo=UTC)
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
# A full fit only when there are no parameters yet: every later batch refits touched tasks.
OPTIONS = KindLiveOptions(full_fit_every=1_000)


def judgments(kind: str, answers: list[tuple[str, str, object]], *, first: int = 0) -> pl.DataFrame:
    """Rows of `kind` from (task, annotator, value) triples; ids `j<n>` from `first`."""
    columns = VALUE_COLUMNS[kind]
    values: dict[str, list[object]] = {c: [] for c in columns}
    for _, _, value in answers:
        if kind == "pairwise":
            left, right, winner = value  # type: ignore[misc]
            values["left"].append(left)
            values["right"].append(right)
            values["winner"].append(winner)
        else:
            values[columns[0]].append(value)
    n = len(answers)
    return pl.DataFrame(
        {
            "judgment_id": [f"j{first + i}" for i in range(n)],
            "task_id": [a[0] for a in answers],
            "annotator_id": [a[1] for a in answers],
            **{c: pl.Series(values[c], dtype=VALUE_DTYPES[c]) for c in columns},
            "submitted_at": [START + timedelta(seconds=first + i) for i in range(n)],
            "duration_s": [10.0] * n,
            "updated_at": [START + timedelta(seconds=first + i) for i in range(n)],
        }
    )


def gold_rows(kind: str, answers: list[tuple[str, object]]) -> pl.DataFrame:
    (column,) = VALUE_COLUMNS[kind]
    return pl.DataFrame(
        {
            "task_id": [a[0] for a in answers],
            column: pl.Series([a[1] for a in answers], dtype=VALUE_DTYPES[column]),
        }
    )


def assert_only_touched_refitted(
    before: KindState, after: KindState, touched: set[str]
) -> pl.DataFrame:
    """The untouched tasks' rows are byte for byte the same; the touched ones carry the new
    version. Returns the touched rows."""
    untouched_before = before.tasks.filter(~pl.col("task_id").is_in(list(touched))).sort("task_id")
    untouched_after = after.tasks.filter(~pl.col("task_id").is_in(list(touched))).sort("task_id")
    assert untouched_after.equals(untouched_before)
    refitted = after.tasks.filter(pl.col("task_id").is_in(list(touched)))
    assert set(refitted["task_id"]) == touched
    assert set(refitted["version"]) == {after.version}
    assert set(untouched_after["version"]) <= set(range(1, after.version))
    return refitted


def two_batches(
    kind: str,
    first: list[tuple[str, str, object]],
    second: list[tuple[str, str, object]],
    gold: pl.DataFrame | None = None,
) -> tuple[KindState, KindState, pl.DataFrame]:
    state = KindState(project="p", kind=kind)
    one, _ = update_kind(state, judgments(kind, first), gold, OPTIONS, now=NOW)
    assert one.fitted_version == 1 and one.parameters.height
    batch = judgments(kind, second, first=len(first))
    two, events = update_kind(one, batch, None, OPTIONS, now=NOW)
    assert two.fitted_version == 1  # the parameters are carried, not refitted
    assert events.refitted_tasks == len({t for t, _, _ in second})
    return one, two, batch


RATERS = ("a", "b", "c")


def test_numeric_refits_touched_tasks_with_the_carried_bias_and_noise():
    first = [
        (f"t{i}", r, float(v))
        for i in range(6)
        for r, v in zip(RATERS, (3 + i % 2, 4 + i % 2, 2 + i % 3), strict=True)
    ]
    second = [("t1", "d", 5.0), ("t4", "a", 1.0)]
    one, two, _ = two_batches("numeric", first, second)
    refitted = assert_only_touched_refitted(one, two, {"t1", "t4"})
    parameters = one.parameters
    bias = dict(zip(parameters["annotator_id"], parameters["bias"], strict=True))
    noise = dict(zip(parameters["annotator_id"], parameters["noise_sd"], strict=True))
    median_noise = float(np.median(list(noise.values())))
    values = np.array([v for _, _, v in first + second], dtype=float)
    tolerance = numeric_tolerance(pl.Series(values))
    for task in ("t1", "t4"):
        votes = [(r, v) for t, r, v in first + second if t == task]
        weights = np.array([1 / (noise.get(r, median_noise) ** 2) for r, _ in votes])
        debiased = np.array([v - bias.get(r, 0.0) for r, v in votes])
        mean = float(weights @ debiased / weights.sum())
        half = 1.959963984540054 / np.sqrt(weights.sum())
        row = refitted.filter(pl.col("task_id") == task).row(0, named=True)
        assert row["value"] == pytest.approx(mean, abs=1e-9)
        expected = numeric_confidence(
            np.array([mean - half]), np.array([mean + half]), tolerance=tolerance
        )[0]
        assert row["confidence"] == pytest.approx(expected, abs=1e-9)
        assert row["n_votes"] == len(votes)


def test_multilabel_refits_touched_tasks_by_the_per_class_dawid_skene_e_step():
    sets = [["bug"], ["bug", "ux"], ["ux"], ["bug"], [], ["ux"]]
    first = [(f"t{i}", r, sets[i]) for i in range(6) for r in RATERS]
    second = [("t0", "d", ["bug", "ux"]), ("t0", "e", ["ux"])]
    one, two, _ = two_batches("multilabel", first, second)
    refitted = assert_only_touched_refitted(one, two, {"t0"})
    # By hand: class counts [answer, truth] from the full fit's consensus (= the sets above,
    # unanimous), Dirichlet 1 + 1 on the diagonal; d and e are new (the prior only).
    votes = {"a": ["bug"], "b": ["bug"], "c": ["bug"], "d": ["bug", "ux"], "e": ["ux"]}
    truth_sets = {f"t{i}": sets[i] for i in range(6)}
    confidence = 1.0
    chosen = []
    for name in ("bug", "ux"):
        present = sum(name in s for s in truth_sets.values())
        prior = np.array([6 - present + 1, present + 1]) / (6 + 2)
        log = np.log(prior)
        for annotator, answer in votes.items():
            counts = np.zeros((2, 2))
            if annotator in RATERS:
                for s in truth_sets.values():
                    counts[int(name in s), int(name in s)] += 1
            smoothed = counts + 1 + np.eye(2)
            theta = smoothed / smoothed.sum(axis=0, keepdims=True)
            log = log + np.log(theta[int(name in answer), :])
        p = np.exp(log - log.max())
        p = p / p.sum()
        confidence *= max(p[1], 1 - p[1])
        if p[1] >= 0.5:
            chosen.append(name)
    row = refitted.row(0, named=True)
    assert row["labels"] == chosen == ["bug"]
    assert row["confidence"] == pytest.approx(confidence, abs=1e-12)
    assert row["n_votes"] == 5


def test_pairwise_refits_touched_pairs_by_the_winner_e_step_with_swapped_sides():
    first = [
        (f"t{i}", r, ("x", "y", "left" if i % 2 else "right")) for i in range(6) for r in RATERS
    ]
    # The pair shown the other way round: "left" here is x, the task's right... mirrored.
    second = [("t1", "d", ("y", "x", "left")), ("t2", "a", ("x", "y", "left"))]
    one, two, _ = two_batches("pairwise", first, second)
    refitted = assert_only_touched_refitted(one, two, {"t1", "t2"}).sort("task_id")
    assert refitted["winner"].to_list() == ["left", "right"]
    assert refitted["left"].to_list() == ["x", "x"]
    t2 = refitted.row(1, named=True)
    # t2: a, b and c said right, a now also left; each rater's carried counts are 3 left→left
    # and 3 right→right; the prior is the consensus's 3 left and 3 right pairs.
    counts = np.zeros((3, 3))
    counts[0, 0] = counts[1, 1] = 3
    theta = (counts + 1 + np.eye(3)) / (counts + 1 + np.eye(3)).sum(axis=0, keepdims=True)
    prior = (np.array([3, 3, 0]) + 1) / (6 + 3)
    log = np.log(prior) + np.log(theta[0]) + 3 * np.log(theta[1])
    p = np.exp(log - log.max())
    assert t2["confidence"] == pytest.approx(float((p / p.sum()).max()), abs=1e-12)


def test_a_pairwise_tie_goes_to_the_winner_the_batch_aggregation_gives_it():
    # a and b, c and d: the same carried counts, one of each pair saying left, the other right.
    # The pair's left and right are then equally likely, up to the order the logs are added.
    votes = [("t", r, ("x", "y", w)) for r, w in zip("abcd", ("left", "right") * 2, strict=True)]
    rows = judgments("pairwise", votes)

    def counts(agree: float) -> list[float]:
        return [agree, 0.0, 0.0, 0.0, agree, 0.0, 0.0, 0.0, 0.0]

    parameters = pl.DataFrame(
        {
            "annotator_id": ["a", "b", "c", "d", None],
            "confusion": [counts(1.0), counts(1.0), counts(5.0), counts(5.0), [5.0, 5.0, 0.0]],
        }
    )
    live = refit_labels("pairwise", rows, pl.DataFrame(schema=gold_schema("pairwise")), parameters)
    batch = PairwiseConfidence()(rows)
    assert batch["label"].to_list() == ["left"]
    assert live["winner"].to_list() == ["left"]


def _ranking(order: str) -> list[str]:
    return list(order)


def test_ranking_refits_touched_tasks_with_the_carried_kendall_weights():
    first = [
        (f"t{i}", r, _ranking(o))
        for i in range(5)
        for r, o in zip(("a", "b", "c", "e"), ("ABCD", "ABCD", "ABDC", "DCBA"), strict=True)
    ]
    second = [("t3", "d", _ranking("BACD")), ("t3", "e", _ranking("DCAB"))]
    one, two, _ = two_batches("ranking", first, second)
    refitted = assert_only_touched_refitted(one, two, {"t3"})
    rows = two.ledger.filter(pl.col("task_id") == "t3")
    expected = aggregate_ranking(
        rows.select("task_id", "annotator_id", "ranking"), reliability=one.parameters
    )
    assert refitted["ranking"].to_list() == expected.labels["ranking"].to_list()
    assert refitted["ranking"].item().to_list()[:2] == ["A", "B"]
    weights = dict(zip(one.parameters["annotator_id"], one.parameters["reliability"], strict=True))
    assert weights["e"] < weights["a"]  # the reversed ranker weighs less, as carried


def _box(x: float, label: str = "car") -> dict[str, object]:
    return {"label": label, "x_min": x, "y_min": 0.0, "x_max": x + 10.0, "y_max": 10.0}


def test_boxes_refit_touched_tasks_with_the_carried_reliabilities():
    first = [
        (f"t{i}", r, [_box(10.0 * i + shift)])
        for i in range(5)
        for r, shift in zip(("a", "b", "c", "e"), (0.0, 0.5, 1.0, 60.0), strict=True)
    ]
    second = [("t2", "d", [_box(20.0)])]
    one, two, _ = two_batches("boxes", first, second)
    refitted = assert_only_touched_refitted(one, two, {"t2"})
    rows = two.ledger.filter(pl.col("task_id") == "t2")
    expected = aggregate_boxes(
        rows.select("task_id", "annotator_id", "boxes"), reliability=one.parameters
    )
    fused = refitted["boxes"].item().to_list()
    assert len(fused) == 1
    assert fused[0]["x_min"] == pytest.approx(expected.labels["boxes"].item()[0]["x_min"])
    assert 20.0 <= fused[0]["x_min"] <= 21.0


def test_text_refits_touched_tasks_with_the_carried_weights():
    words = ["hello world", "good morning", "thank you", "see you"]
    first = [
        (f"t{i}", r, w if r != "e" else "zzzz")
        for i, w in enumerate(words)
        for r in ("a", "b", "c", "e")
    ]
    second = [("t1", "d", "good mornin"), ("t1", "e", "good mornin")]
    one, two, _ = two_batches("text", first, second)
    refitted = assert_only_touched_refitted(one, two, {"t1"})
    rows = two.ledger.filter(pl.col("task_id") == "t1")
    expected = aggregate_text(
        rows.select("task_id", "annotator_id", "text"), reliability=one.parameters
    )
    assert refitted["text"].item() == expected.labels["text"].item() == "good morning"
    assert refitted["confidence"].item() == pytest.approx(expected.labels["confidence"].item())


def _span(start: int, end: int, label: str = "PER") -> dict[str, object]:
    return {"start": start, "end": end, "label": label}


def test_spans_refit_touched_tasks_with_the_carried_confusion_matrices():
    # c always runs a span one character too far; d and e are new and do the same on t2.
    first = [(f"t{i}", r, [_span(0, 4 + (r == "c"))]) for i in range(4) for r in RATERS]
    second = [("t2", "d", [_span(0, 5)]), ("t2", "e", [_span(0, 5)])]
    one, two, _ = two_batches("spans", first, second)
    refitted = assert_only_touched_refitted(one, two, {"t2"})
    spans = refitted["spans"].item().to_list()
    # The carried matrices know c's habit: character 4 stays O, as a fit of every judgment says.
    assert [(s["start"], s["end"], s["label"]) for s in spans] == [(0, 4, "PER")]
    everything, _ = fit_spans(two.ledger.select("task_id", "annotator_id", "spans"))
    full = everything.labels.filter(pl.col("task_id") == "t2")["spans"].item().to_list()
    assert [(s["start"], s["end"]) for s in full] == [(0, 4)]


def test_spans_carried_matrices_agree_with_a_full_fit_better_than_the_touched_tasks_alone():
    rows, _, _ = _synthetic("spans", 600)
    tasks = rows["task_id"].unique().sort().head(40)
    mine = rows.filter(pl.col("task_id").is_in(tasks.implode()))
    last = mine.group_by("task_id").agg(pl.col("judgment_id").last())["judgment_id"]
    second = rows.filter(pl.col("judgment_id").is_in(last.implode()))
    state = KindState(project=rows["project"][0], kind="spans")
    state, _ = update_kind(state, rows.join(second, on="judgment_id", how="anti"), None, OPTIONS)
    state, _ = update_kind(state, second, None, OPTIONS)
    active = state.ledger.filter(~pl.col("flagged")).select("task_id", "annotator_id", "spans")
    full, _ = fit_spans(active)
    alone, _ = fit_spans(active.filter(pl.col("task_id").is_in(tasks.implode())))
    plain = pl.col("spans").list.eval(pl.struct(pl.element().struct.field("start", "end", "label")))

    def agreement(labels: pl.DataFrame) -> float:
        joined = labels.select("task_id", plain).join(
            full.labels.select("task_id", plain), on="task_id", suffix="_full"
        )
        assert joined.height == tasks.len()
        return float((joined["spans"] == joined["spans_full"]).mean())  # type: ignore[arg-type]

    live = agreement(state.tasks.filter(pl.col("task_id").is_in(tasks.implode())))
    assert live == pytest.approx(0.95) and agreement(alone.labels) == pytest.approx(0.85)


def test_judgments_fold_in_exactly_once_and_an_edited_file_withdraws_what_it_lost():
    answers = [(f"t{i}", r, float(i + (r == "b"))) for i in range(4) for r in RATERS]
    batch = judgments("numeric", answers).with_columns(source=pl.lit("exports/p/a.parquet"))
    one, _ = update_kind(KindState(project="p", kind="numeric"), batch, None, OPTIONS, now=NOW)
    # The same rows again (a re-run after a crash): nothing new, the state does not move.
    again, events = update_kind(one, batch, None, OPTIONS, now=NOW)
    assert again is one and events.new_judgments == 0
    # The file re-read after an edit: restamped, three judgments gone, one answer changed.
    edited = batch.slice(3).with_columns(
        updated_at=pl.lit(NOW),
        value=pl.when(pl.col("judgment_id") == "j5").then(9.0).otherwise(pl.col("value")),
    )
    two, events = update_kind(one, edited, None, OPTIONS, resynced=["exports/p/a.parquet"], now=NOW)
    assert events.withdrawn_judgments == 3 and events.new_judgments == 1
    assert two.ledger.filter(pl.col("judgment_id") == "j5")["value"].item() == 9.0
    assert two.ledger.height == 9
    assert set(two.tasks["task_id"]) == {"t1", "t2", "t3"}  # t0 lost every vote
    assert two.annotators["n_judgments"].sum() == 9
    # Round trip through the lake objects: the segments resolve to the same ledger.
    store: dict[str, bytes] = {}
    writes, deletes = kind_state_objects(one, store.get)
    store.update(writes)
    writes, deletes = kind_state_objects(two, store.get)
    store.update(writes)
    for key in deletes:
        store.pop(key)
    loaded = load_kind_state("p", "numeric", store.get)
    assert loaded.ledger.sort("judgment_id").equals(two.ledger.sort("judgment_id"))
    assert loaded.tasks.equals(two.tasks) and loaded.version == two.version


def _synthetic(kind: str, count: int, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    day, pool = draw_project_day(kind, day=date(2026, 11, 1), count=count, seed=seed)
    spammer = next(i for i, b in zip(pool.ids, pool.behaviour, strict=True) if b == "spammer")
    rows = day["judgments"].with_columns(updated_at=pl.col("submitted_at")).sort("submitted_at")
    return rows, day["gold_labels"], spammer


def test_a_text_spammer_is_blocked_after_the_minimum_and_only_on_a_confident_bound():
    rows, gold, spammer = _synthetic("text", 400)
    options = KindLiveOptions(full_fit_every=5)
    state = KindState(project="transcripts", kind="text")
    mine = pl.col("annotator_id") == spammer
    # Up to the spammer's 29th judgment: too few to block, however bad they look.
    cut = rows.with_row_index("_i").filter(mine)["_i"][28]
    head = rows.head(cut + 1)
    blocked_at = None
    for start in range(0, head.height, 200):
        state, events = update_kind(state, head.slice(start, 200), gold, options, now=NOW)
        assert events.annotator_actions.height == 0
    card = state.annotators.filter(mine).row(0, named=True)
    assert card["n_judgments"] == 29 and card["consensus_alpha"] < 0.2
    rest = rows.slice(cut + 1)
    for start in range(0, rest.height, 200):
        state, events = update_kind(state, rest.slice(start, 200), None, options, now=NOW)
        if events.annotator_actions.height:
            assert events.annotator_actions["annotator_id"].to_list() == [spammer]
            blocked_at = state.version
            retry = events.annotator_actions["decision_id"].item()
    assert blocked_at is not None
    blocked = state.annotators.filter(pl.col("blocked"))
    assert blocked["annotator_id"].to_list() == [spammer]
    assert "chance-corrected" in blocked["blocked_reason"].item()
    # Their judgments are flagged and out of every task's answer and vote count.
    flagged = state.ledger.filter(pl.col("flagged"))
    assert set(flagged["annotator_id"]) == {spammer}
    assert state.tasks["n_votes"].sum() + flagged.height == rows.height
    # The careful annotators' bounds never crossed: one bad answer blocks no one.
    assert (state.annotators.filter(~pl.col("blocked"))["consensus_alpha_upper"] > 0.3).all()
    assert len(retry) == 64


def test_requests_are_the_policy_s_at_the_kind_target_once_per_decision():
    rows, gold, _ = _synthetic("spans", 200)
    state = KindState(project="entities", kind="spans")
    state, first = update_kind(state, rows.head(300), gold, OPTIONS, now=NOW)
    requests = first.task_requests
    assert requests.height and requests["decision_id"].n_unique() == requests.height
    assert set(requests["request"]) <= {"another_judgment", "expert_review"}
    assert (requests["confidence"] < 0.95).all()
    assert requests["reason"].str.starts_with("spans: ").all()
    # Gold tasks and tasks below three votes are not asked about.
    asked = set(requests["task_id"])
    assert not asked & set(gold["task_id"])
    votes = state.tasks.filter(pl.col("task_id").is_in(list(asked)))["n_votes"]
    assert (votes >= 3).all()
    # A retried update of the same version makes the same ids.
    _, retried = update_kind(
        KindState(project="entities", kind="spans"), rows.head(300), gold, OPTIONS, now=NOW
    )
    assert retried.task_requests["decision_id"].to_list() == requests["decision_id"].to_list()


def test_file_rows_keep_the_kinds_and_leave_categorical_to_its_engine():
    frame = pl.DataFrame(
        {
            "judgment_id": ["1", "2"],
            "task_id": ["t", "t"],
            "project": ["p", "p"],
            "annotator_id": ["a", "b"],
            "kind": ["spans", "categorical"],
            "label": [None, "x"],
            "spans": pl.Series([[_span(0, 2)], None], dtype=pl.List(SPAN)),
            "boxes": pl.Series([None, None], dtype=pl.List(BOX)),
            "submitted_at": [START, START],
            "duration_s": [1.0, 2.0],
        }
    )
    rows, gold = kind_file_rows(frame, frame.head(0), read_at=NOW, source="f")
    assert rows["judgment_id"].to_list() == ["1"]
    assert rows["source"].to_list() == ["f"] and rows["updated_at"].to_list() == [NOW]
    assert gold.height == 0 and "value" in rows.columns


@pytest.mark.parametrize("kind", ["numeric", "multilabel", "boxes"])
def test_a_full_fit_after_incremental_runs_equals_folding_everything_at_once(kind):
    rows, gold, _ = _synthetic(kind, 120)
    project = rows["project"][0]
    rows = rows.with_columns(source=pl.lit("exports/p/a.parquet"))
    state = KindState(project=project, kind=kind)
    for start in range(0, rows.height, 90):
        state, _ = update_kind(state, rows.slice(start, 90), gold, OPTIONS, now=NOW)
    # The file edited (its first 40 judgments gone) while the daily re-base asks for a full fit.
    kept = rows.slice(40)
    state, events = update_kind(
        state, kept, None, OPTIONS, resynced=["exports/p/a.parquet"], full_fit=True, now=NOW
    )
    assert events.withdrawn_judgments == 40 and state.fitted_version == state.version
    fresh, _ = update_kind(KindState(project=project, kind=kind), kept, gold, OPTIONS, now=NOW)
    columns = list(VALUE_COLUMNS[kind])
    answers = ["task_id", *columns, "confidence", "n_votes"]
    assert (
        state.tasks.select(answers)
        .sort("task_id")
        .equals(fresh.tasks.select(answers).sort("task_id"))
    )
    carried = ["annotator_id", "n_judgments", "n_gold", "n_compared", "n_durations"]
    ours = state.annotators.filter(pl.col("n_judgments") > 0).sort("annotator_id")
    theirs = fresh.annotators.sort("annotator_id")
    assert ours.select(carried).equals(theirs.select(carried))
    for column in ("gold_total", "distance_total", "duration_total"):
        assert ours[column].to_numpy() == pytest.approx(theirs[column].to_numpy(), abs=1e-6)


def test_ledger_segments_merge_and_still_resolve_to_the_ledger():
    rows, gold, _ = _synthetic("text", 150)
    project = rows["project"][0]
    store: dict[str, bytes] = {}
    state = KindState(project=project, kind="text")

    def run(batch: pl.DataFrame, resynced: list[str]) -> KindState:
        after, _ = update_kind(state, batch, gold, OPTIONS, resynced=resynced, now=NOW)
        writes, deletes = kind_state_objects(after, store.get)
        store.update(writes)
        for key in deletes:
            store.pop(key)
        loaded = load_kind_state(project, "text", store.get)
        assert loaded.ledger.sort("judgment_id").equals(after.ledger.sort("judgment_id"))
        return loaded

    for start in range(0, rows.height, 25):
        state = run(rows.slice(start, 25).with_columns(source=pl.lit(f"f{start // 100}")), [])
        if start == 300:
            # File f1 read again without its first ten rows and with one answer changed.
            again = rows.slice(110, 90).with_columns(
                source=pl.lit("f1"),
                updated_at=pl.lit(NOW),
                text=pl.when(pl.int_range(pl.len()) == 0)
                .then(pl.lit("changed"))
                .otherwise(pl.col("text")),
            )
            state = run(again, ["f1"])
    held = rows.height - 10
    assert state.ledger.height == held and state.ledger["judgment_id"].n_unique() == held
    assert (state.ledger["text"] == "changed").sum() == 1
    # Nineteen runs of at most 90 rows each merged into fewer, larger segments.
    assert 1 <= len(state.segments) < 8


def test_a_full_fit_comes_after_enough_versions_and_enough_growth():
    rows, _, _ = _synthetic("numeric", 60)
    project = rows["project"][0]
    options = KindLiveOptions(full_fit_every=2, full_fit_growth=0.5)
    store: dict[str, bytes] = {}
    state, _ = update_kind(
        KindState(project=project, kind="numeric"), rows.head(100), None, options
    )
    assert (state.fitted_version, state.fitted_judgments, state.folded_since_fit) == (1, 100, 0)
    fitted_at = []
    for start in range(100, 190, 10):
        state, _ = update_kind(state, rows.slice(start, 10), None, options)
        writes, deletes = kind_state_objects(state, store.get)
        store.update(writes)
        for key in deletes:
            store.pop(key)
        state = load_kind_state(project, "numeric", store.get)  # the counters persist
        fitted_at.append(state.fitted_version)
    # Versions 2-5 fold 40 judgments (< 0.5 × 100); version 6 reaches 50: a full fit over
    # 150, after which 75 more are needed (version 6 + 8 > the runs here).
    assert fitted_at == [1, 1, 1, 1, 6, 6, 6, 6, 6]
    assert (state.fitted_judgments, state.folded_since_fit) == (150, 40)


def test_soft_counts_are_the_same_bits_whatever_the_row_order():
    """The carried Dawid–Skene counts of multilabel and pairwise are summed in key order, so
    the same judgments give the same state bytes however a batch or a thread pool ordered them."""
    from annotation_pipelines.loop.live_kinds import _soft_counts

    rng = np.random.default_rng(7)
    n = 50_000
    share = rng.dirichlet(np.ones(3), size=n)
    frame = pl.DataFrame(
        {
            "task_id": [f"t{i}" for i in rng.integers(0, 5_000, n)],
            "annotator_id": [f"a{i}" for i in rng.integers(0, 40, n)],
            "answer": rng.integers(0, 3, n),
            **{f"_p{t}": share[:, t] for t in range(3)},
        }
    ).unique(["task_id", "annotator_id"])
    # Each task's truth is one distribution, whichever judgment carries it.
    frame = frame.drop("_p0", "_p1", "_p2").join(
        frame.group_by("task_id").agg(pl.col("_p0", "_p1", "_p2").first()), on="task_id"
    )
    first = _soft_counts(frame, n_classes=3)
    for seed in range(3):
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        assert _soft_counts(shuffled, n_classes=3).equals(first)
    # The counts themselves: every judgment's whole truth distribution lands in its row.
    annotators = first.filter(pl.col("annotator_id").is_not_null())
    totals = annotators.select(pl.col("confusion").list.sum()).to_series()
    assert totals.sum() == pytest.approx(frame.height)
    prior = first.filter(pl.col("annotator_id").is_null())["confusion"].item()
    assert sum(prior) == pytest.approx(frame["task_id"].n_unique())


FILE_A, FILE_B = "exports/p/label-studio/a.json", "exports/p/label-studio/b.json"
# Per kind: the judgments' answers per task (by rater a, b, c), a gold answer, another one.
GOLD_CASES = {
    "numeric": ([(3.0, 4.0, 3.0), (2.0, 2.0, 5.0), (4.0, 4.0, 4.0)], 3.0, 5.0),
    "multilabel": ([(["bug"], ["bug", "ux"], ["bug"]), (["ux"], [], ["ux"])], ["bug"], ["ux"]),
}


def _gold_case(kind: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(judgments of t0–t5, gold, the gold file A's edit keeps): t0's and the vote-less g9's
    gold from file A alone, t1's from A (the edit changes its answer), t2's from A and B,
    t3's from the DB."""
    rows, answer, other = GOLD_CASES[kind]
    answers = [
        (f"t{i}", rater, value)
        for i in range(6)
        for rater, value in zip(RATERS, rows[i % len(rows)], strict=True)
    ]
    batch = judgments(kind, answers)

    def given(tasks: list[str], value: object, source: str | None) -> pl.DataFrame:
        return gold_rows(kind, [(t, value) for t in tasks]).with_columns(
            source=pl.lit(source, pl.String)
        )

    gold = pl.concat(
        [
            given(["t0", "g9", "t1", "t2"], answer, FILE_A),
            given(["t2"], answer, FILE_B),
            given(["t3"], answer, None),
        ]
    )
    return batch, gold, given(["t1"], other, FILE_A)


@pytest.mark.parametrize("kind", ["numeric", "multilabel"])
def test_gold_an_edited_file_no_longer_gives_is_withdrawn_from_the_kind(kind):
    (column,) = VALUE_COLUMNS[kind]
    batch, gold, edit = _gold_case(kind)
    one, _ = update_kind(
        KindState(project="p", kind=kind), batch, gold, OPTIONS, resynced=[FILE_A, FILE_B], now=NOW
    )
    assert set(one.gold["task_id"]) == {"t0", "g9", "t1", "t2", "t3"}
    two, events = update_kind(one, batch.head(0), edit, OPTIONS, resynced=[FILE_A], now=NOW)
    assert events.withdrawn_gold == 2 and two.version == one.version + 1
    sources = dict(two.gold.select("task_id", "gold_sources").iter_rows())
    assert sources == {"t1": [FILE_A], "t2": [FILE_B], "t3": None}
    # The changed answer replaced the earlier one; t0 is fitted from its votes again, and
    # the vote-less g9 is gone.
    assert two.gold.filter(pl.col("task_id") == "t1")[column].to_list() == edit[column].to_list()
    assert two.tasks.filter(pl.col("task_id") == "t1")[column].to_list() == edit[column].to_list()
    assert "g9" not in two.tasks["task_id"] and "t0" in two.tasks["task_id"]
    assert two.tasks.filter(pl.col("task_id") == "t0")["version"].item() == two.version
    # The gold sums are those of the gold left, as if the rest had never come.
    left = two.gold.drop("gold_sources")
    fresh, _ = update_kind(KindState(project="p", kind=kind), batch, left, OPTIONS, now=NOW)
    sums = ["annotator_id", "n_gold", "gold_total"]
    mine = two.annotators.select(sums).sort("annotator_id")
    theirs = fresh.annotators.select(sums).sort("annotator_id")
    assert mine["n_gold"].to_list() == theirs["n_gold"].to_list()
    np.testing.assert_allclose(mine["gold_total"], theirs["gold_total"], atol=1e-9)
    assert two.annotators["n_gold"].sum() == one.annotators["n_gold"].sum() - len(RATERS)
    np.testing.assert_allclose(
        two.annotators.sort("annotator_id")["gold_score"],
        fresh.annotators.sort("annotator_id")["gold_score"],
        atol=1e-9,
    )
    # Read again: nothing; round trip through the lake keeps the sources.
    again, _ = update_kind(two, batch.head(0), edit, OPTIONS, resynced=[FILE_A], now=NOW)
    assert again is two
    store: dict[str, bytes] = {}
    writes, _ = kind_state_objects(two, store.get)
    store.update(writes)
    loaded = load_kind_state("p", kind, store.get)
    assert loaded.gold.equals(two.gold)
    # B emptied takes t2's gold; the DB's stays.
    last, events = update_kind(loaded, batch.head(0), None, OPTIONS, resynced=[FILE_B], now=NOW)
    assert events.withdrawn_gold == 1 and set(last.gold["task_id"]) == {"t1", "t3"}


def test_kind_gold_stored_before_gold_sources_is_never_withdrawn_by_a_file():
    batch, gold, _ = _gold_case("numeric")
    one, _ = update_kind(KindState(project="p", kind="numeric"), batch, gold, OPTIONS, now=NOW)
    store: dict[str, bytes] = {}
    writes, _ = kind_state_objects(one, store.get)
    store.update(writes)
    key = "live/p/kinds/numeric/gold.parquet"
    older = io.BytesIO()
    one.gold.drop("gold_sources").write_parquet(older)
    store[key] = older.getvalue()
    loaded = load_kind_state("p", "numeric", store.get)
    assert loaded.gold["gold_sources"].is_null().all()
    kept, events = update_kind(loaded, batch.head(0), None, OPTIONS, resynced=[FILE_A], now=NOW)
    assert kept is loaded and events.withdrawn_gold == 0


@pytest.mark.parametrize("outlier", [500.0, 1e200])
def test_one_answer_far_off_the_scale_leaves_the_other_numeric_tasks_as_they_were(outlier):
    """A typo of 500 on a 1–5 scale once made every task's interval look narrow against the
    scale it stretched: the whole project read as settled and its requests were withdrawn."""

    def rows(answers, first):
        return judgments("numeric", answers, first=first).with_columns(
            project=pl.lit("p"), kind=pl.lit("numeric"), source=pl.lit(None, pl.String)
        )

    def run(stray: float) -> KindState:
        split = [
            (f"t{i}", r, float(v)) for i in range(6) for r, v in zip("abc", (3, 4, 5), strict=True)
        ]
        states, _ = update_kind_projects({}, rows(split, 0), None, OPTIONS, now=NOW)
        for batch, first in (([("t9", "d", stray)], 100), ([("t0", "e", 3.0)], 200)):
            states, _ = update_kind_projects(states, rows(batch, first), None, OPTIONS, now=NOW)
        return states[("p", "numeric")]

    on_scale, off_scale = run(5.0), run(outlier)
    others = pl.col("task_id") != "t9"
    assert_frame_equal(
        off_scale.tasks.filter(others).select("task_id", "value", "confidence").sort("task_id"),
        on_scale.tasks.filter(others).select("task_id", "value", "confidence").sort("task_id"),
    )
    asked = open_kind_requests(off_scale, OPTIONS, now=NOW)["task_id"].sort().to_list()
    assert asked == [f"t{i}" for i in range(6)]
    # The stray answer's own task is no surer than any other single vote.
    single = off_scale.tasks.filter(pl.col("task_id") == "t9")["confidence"].item()
    assert single == pytest.approx(
        on_scale.tasks.filter(pl.col("task_id") == "t9")["confidence"].item()
    )


@pytest.mark.parametrize("kind", sorted(LIVE_KINDS))
def test_a_gold_task_is_its_gold_answer_at_confidence_one_and_never_requested(kind):
    """Gold none of the crowd's answers gives: the first fit and the refits with carried
    parameters after more votes answer each gold task with its gold at confidence 1, and the
    policy asks nothing about it, as the daily kind step and `replay --gold` do."""
    from tests.loop.test_kind_replay import _gold_unlike_the_crowd, _project

    rows, truth = _project(kind, tasks=40, overlap=5)
    gold = _gold_unlike_the_crowd(kind, truth)
    rows = rows.with_columns(
        judgment_id=pl.format("j{}", pl.int_range(pl.len())),
        submitted_at=pl.lit(START),
        duration_s=pl.lit(10.0),
        updated_at=pl.lit(START),
    )
    even = pl.int_range(pl.len()) % 2 == 0
    columns = ["task_id", *VALUE_COLUMNS[kind]]
    expected = gold.select(columns).sort("task_id")
    state = KindState(project="p", kind=kind)
    for batch, given in ((rows.filter(even), gold), (rows.filter(~even), None)):
        state, _ = update_kind(state, batch, given, OPTIONS, now=NOW)
        answered = state.tasks.join(gold.select("task_id"), on="task_id")
        assert answered["confidence"].to_list() == [1.0] * gold.height, kind
        assert answered.select(columns).sort("task_id").equals(expected.cast(expected.schema))
        asked = open_kind_requests(state, OPTIONS, now=NOW)
        assert asked.height and not set(asked["task_id"]) & set(gold["task_id"]), kind


def lone_copies(rows: pl.DataFrame, annotator: str, n: int, *, prefix: str) -> pl.DataFrame:
    """One judgment each of the first `n` tasks of `rows`, as `annotator`'s alone on a task of
    their own (`prefix` + task id)."""
    first = rows.unique("task_id", keep="first", maintain_order=True).head(n)
    return first.with_columns(
        task_id=pl.lit(prefix) + pl.col("task_id"),
        judgment_id=pl.lit(f"{annotator}-") + pl.col("judgment_id"),
        annotator_id=pl.lit(annotator),
    )


@pytest.mark.parametrize("kind", sorted(LIVE_KINDS))
def test_a_lone_annotator_has_no_live_agreement_and_is_not_blocked_on_it(kind):
    rows, _, _ = _synthetic(kind, 60)
    solo = lone_copies(rows, "solo", 40, prefix="solo-").with_columns(project=pl.lit("p"))
    # Any chance-corrected agreement would block: only a null blocks no one.
    strict = KindLiveOptions(full_fit_every=1_000, min_judgments=10, min_consensus_alpha=2.0)
    state, events = update_kind(KindState(project="p", kind=kind), solo, None, strict, now=NOW)
    card = state.annotators.row(0, named=True)
    assert card["n_judgments"] == 40 and card["n_compared"] == 0
    assert card["agreement"] is None and card["agreement_upper"] is None
    assert card["consensus_alpha"] is None and card["consensus_alpha_upper"] is None
    assert card["spammer_score"] is None
    assert not card["blocked"] and events.annotator_actions.height == 0
    # Someone else answers 20 of the tasks as solo did: those 20 are compared, for both.
    mate = solo.head(20).with_columns(
        annotator_id=pl.lit("mate"),
        judgment_id=pl.lit("mate-") + pl.col("judgment_id"),
        submitted_at=pl.col("submitted_at") + timedelta(hours=1),
        updated_at=pl.col("updated_at") + timedelta(hours=1),
        source=pl.lit("m"),
    )
    state, _ = update_kind(state, mate, None, OPTIONS, now=NOW)
    cards = {row["annotator_id"]: row for row in state.annotators.iter_rows(named=True)}
    assert cards["solo"]["n_compared"] == 20 and cards["mate"]["n_compared"] == 20
    assert cards["solo"]["agreement"] is not None
    # Gold on three of solo's lone tasks: the consensus there is the gold answer.
    columns = list(VALUE_COLUMNS[kind])
    gold = solo.slice(30, 3).select("task_id", *columns)
    state, _ = update_kind(state, solo.head(0), gold, OPTIONS, now=NOW)
    solo_card = state.annotators.filter(pl.col("annotator_id") == "solo").row(0, named=True)
    assert solo_card["n_compared"] == 23
    # The carried sums are those of folding the same ledger at once.
    fresh, _ = update_kind(
        KindState(project="p", kind=kind), pl.concat([solo, mate]), gold, OPTIONS, now=NOW
    )
    carried = ["annotator_id", "n_judgments", "n_compared"]
    ours = state.annotators.sort("annotator_id")
    theirs = fresh.annotators.sort("annotator_id")
    assert ours.select(carried).equals(theirs.select(carried))
    np.testing.assert_allclose(ours["distance_total"], theirs["distance_total"], atol=1e-6)
    # Mate's file read again without its first ten: those tasks are solo's alone again.
    state, events = update_kind(state, mate.slice(10), None, OPTIONS, resynced=["m"], now=NOW)
    assert events.withdrawn_judgments == 10
    cards = {row["annotator_id"]: row for row in state.annotators.iter_rows(named=True)}
    assert cards["solo"]["n_compared"] == 13 and cards["mate"]["n_compared"] == 10


@pytest.mark.parametrize("kind", sorted(LIVE_KINDS))
def test_a_few_compared_judgments_among_many_lone_ones_block_no_one(kind):
    """Agreement reads only the judgments compared with the consensus: 3 of 40 are too few to
    block on, however strict the floor; 10 (the minimum here) are enough."""
    rows, _, _ = _synthetic(kind, 60)
    solo = lone_copies(rows, "solo", 40, prefix="solo-").with_columns(project=pl.lit("p"))
    # Any chance-corrected agreement would block: only the count of compared ones holds it.
    strict = KindLiveOptions(full_fit_every=1_000, min_judgments=10, min_consensus_alpha=2.0)
    state, _ = update_kind(KindState(project="p", kind=kind), solo, None, strict, now=NOW)
    mate = solo.with_columns(
        annotator_id=pl.lit("mate"),
        judgment_id=pl.lit("mate-") + pl.col("judgment_id"),
        submitted_at=pl.col("submitted_at") + timedelta(hours=1),
        updated_at=pl.col("updated_at") + timedelta(hours=1),
    )
    state, events = update_kind(state, mate.head(3), None, strict, now=NOW)
    card = state.annotators.filter(pl.col("annotator_id") == "solo").row(0, named=True)
    assert events.annotator_actions.height == 0, kind
    assert card["n_judgments"] == 40 and card["n_compared"] == 3
    assert card["consensus_alpha_upper"] is not None
    state, events = update_kind(state, mate.slice(3, 7), None, strict, now=NOW)
    assert set(events.annotator_actions["annotator_id"]) == {"solo", "mate"}, kind


def test_a_full_fit_recounts_agreement_sums_a_stored_state_counted_on_lone_tasks():
    """A state stored before lone judgments were left out of the agreement sums counted them;
    a full fit (inline, or off the live path and adopted) recounts the sums from the ledger,
    where carrying them would keep those counts for good."""
    rows, gold, _ = _synthetic("text", 60)
    lone = lone_copies(rows, "solo", 12, prefix="solo-")
    everything = pl.concat([rows, lone])
    state, _ = update_kind(
        KindState(project=str(rows["project"][0]), kind="text"), everything, gold, OPTIONS, now=NOW
    )
    assert state.annotators.filter(pl.col("annotator_id") == "solo")["n_compared"].item() == 0
    # As the old rule counted: every judgment compared, the lone ones at distance 0.
    stored = state.annotators.with_columns(
        n_compared=pl.col("n_judgments"), distance_total=pl.col("distance_total") + 1.0
    )
    legacy = replace(state, annotators=stored)
    carried = ["annotator_id", "n_judgments", "n_gold", "n_compared"]
    inline, _ = update_kind(legacy, everything.head(0), None, OPTIONS, full_fit=True, now=NOW)
    deferred = KindLiveOptions(full_fit_every=1_000, inline_full_fits=False)
    adopted = adopt_fit(fit_snapshot(legacy, deferred, now=NOW), legacy, deferred, now=NOW)
    assert adopted is not None
    for fitted in (inline, adopted[0]):
        ours = fitted.annotators.sort("annotator_id")
        theirs = state.annotators.sort("annotator_id")
        assert ours.select(carried).equals(theirs.select(carried))
        np.testing.assert_allclose(ours["distance_total"], theirs["distance_total"], atol=1e-6)
        assert ours.filter(pl.col("annotator_id") == "solo")["agreement"].item() is None
