"""Item disagreement, the re-annotation queue, drift, the daily report and its rendering."""

from __future__ import annotations

import datetime as dt
import math
import re

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon

from annotation_pipelines import schema
from annotation_pipelines.quality import (
    annotator_scorecards,
    item_disagreement,
    label_distribution,
    markdown_summary,
    quality_report,
    reannotation_queue,
    render_html_report,
)
from annotation_pipelines.quality.drift import drift, stale_baselines
from annotation_pipelines.quality.render import is_self_contained
from tests.agreement.conftest import TOY_TRUTH
from tests.markdown_render import rendered
from tests.quality.conftest import DAY, majority


@pytest.fixture
def toy_gold() -> pl.DataFrame:
    return pl.DataFrame({"task_id": ["t1", "t3"], "project": "toy", "label": ["yes", "no"]})


def test_item_disagreement_exact_values(toy_day):
    items = {row["task_id"]: row for row in item_disagreement(toy_day).iter_rows(named=True)}
    assert items["t1"]["entropy"] == pytest.approx(1.0)
    assert items["t1"]["margin"] == 0.0 and items["t1"]["contested"]
    assert items["t2"]["entropy"] == pytest.approx(-(0.6 * math.log2(0.6) + 0.4 * math.log2(0.4)))
    assert items["t2"]["margin"] == pytest.approx(0.2) and items["t2"]["contested"]
    assert items["t4"]["entropy"] == 0.0 and items["t4"]["margin"] == 1.0
    assert not items["t4"]["contested"] and items["t4"]["top_label"] == "yes"
    assert items["t5"]["margin"] == pytest.approx(0.6) and not items["t5"]["contested"]
    assert items["t5"]["top_share"] == pytest.approx(0.8) and items["t5"]["n_votes"] == 5
    strict = item_disagreement(toy_day, contested_margin=0.1)
    assert strict.filter(pl.col("contested"))["task_id"].to_list() == ["t1"]


def test_reannotation_queue_reasons_and_priority(toy_day, toy_gold):
    aggregated = majority(toy_day)
    items = item_disagreement(toy_day)
    cards = annotator_scorecards(toy_day, aggregated, toy_gold, min_judgments=1)
    queue = reannotation_queue(items, aggregated, toy_gold, scorecards=cards, judgments=toy_day)
    schema.conform(queue, schema.REANNOTATION_QUEUE, name="reannotation_queue")
    rows = {row["task_id"]: row for row in queue.iter_rows(named=True)}
    assert queue["task_id"][0] == "t1"  # the tie outranks everything
    assert rows["t1"]["priority"] == 1.0
    for reason in ("tie", "gold_disagreement", "contested", "low_confidence"):
        assert reason in rows["t1"]["reason"].split(",")
    assert rows["t2"]["reason"].startswith("contested")
    assert rows["t2"]["priority"] == pytest.approx(max(0.5 + 0.5 * rows["t2"]["entropy"], 0.4))
    assert "t4" not in rows and "t5" not in rows
    assert queue["priority"].is_sorted(descending=True)
    assert reannotation_queue(items, aggregated, toy_gold, limit=1).height == 1


def test_flagged_annotator_share_sends_tasks_back(toy_day):
    aggregated = majority(toy_day)
    items = item_disagreement(toy_day)
    cards = annotator_scorecards(
        toy_day, aggregated, toy_day.head(0).select("task_id", "project", "label"), min_judgments=1
    )
    cards = cards.with_columns(pl.col("annotator_id").is_in(["w1", "w4", "w5"]).alias("flagged"))
    queue = reannotation_queue(
        items, aggregated, None, scorecards=cards, judgments=toy_day, max_flagged_share=0.6
    )
    reasons = dict(queue.select("task_id", "reason").rows())
    assert "flagged_annotators" in reasons["t1"]  # w1, w4, w5 cast 3 of t1's 4 votes
    assert "t4" in reasons and reasons["t4"] == "flagged_annotators"


def test_quality_report_toy_values(toy_day, toy_gold):
    aggregated = majority(toy_day)
    cards = annotator_scorecards(toy_day, aggregated, toy_gold, min_judgments=1)
    report = quality_report(toy_day, aggregated, toy_gold, scorecards=cards, n_resamples=200)
    schema.conform(report, schema.QUALITY_REPORT, name="quality_report")
    row = report.row(0, named=True)
    assert row["krippendorff_alpha"] == pytest.approx(0.14219114219114215, abs=1e-12)
    assert (row["n_tasks"], row["n_judgments"], row["n_annotators"]) == (5, 24, 5)
    on_gold = toy_day.filter(pl.col("task_id").is_in(["t1", "t3"]))
    expected = sum(
        TOY_TRUTH[task] == label for task, label in on_gold.select("task_id", "label").rows()
    )
    assert row["gold_accuracy"] == pytest.approx(expected / on_gold.height)
    assert row["n_gold_judgments"] == on_gold.height == 9
    assert row["consensus_accuracy_on_gold"] == pytest.approx(0.5)  # t1 tie → "no", t3 right
    assert row["share_flagged_annotators"] == pytest.approx(cards["flagged"].mean())
    assert (
        row["krippendorff_alpha_low"] < row["krippendorff_alpha"] < row["krippendorff_alpha_high"]
    )
    without = quality_report(toy_day, aggregated, toy_gold)
    assert without["share_flagged_annotators"][0] is None


def test_quality_report_splits_projects_and_days(toy_day, toy_gold):
    other = toy_day.with_columns(pl.lit(DAY + dt.timedelta(days=1)).alias("day"))
    second = toy_day.with_columns(pl.lit("other").alias("project"))
    judgments = pl.concat([toy_day, other, second])
    report = quality_report(judgments, majority(judgments), toy_gold)
    assert report.select("project", "day").rows() == [
        ("other", DAY),
        ("toy", DAY),
        ("toy", DAY + dt.timedelta(days=1)),
    ]
    assert report["krippendorff_alpha"].to_list() == pytest.approx([0.142191] * 3, abs=1e-6)
    assert report["gold_accuracy"][0] is None  # gold belongs to project "toy"


def daily_judgments(shares_by_day: dict[dt.date, list[float]], n: int = 2000) -> pl.DataFrame:
    generator = np.random.default_rng(0)
    frames = []
    for day, shares in shares_by_day.items():
        labels = generator.choice(["a", "b", "c"], size=n, p=shares)
        frames.append(
            pl.DataFrame(
                {
                    "task_id": [f"{day}-{i // 2}" for i in range(n)],
                    "project": "p",
                    "annotator_id": [f"w{i % 7}" for i in range(n)],
                    "label": labels,
                    "day": day,
                }
            )
        )
    return pl.concat(frames)


def test_drift_flags_a_moved_label_distribution_and_falling_agreement():
    start = dt.date(2026, 10, 1)
    shares = {start + dt.timedelta(days=d): [0.5, 0.3, 0.2] for d in range(14)}
    shifted_day = start + dt.timedelta(days=14)
    shares[shifted_day] = [0.2, 0.3, 0.5]
    counts = label_distribution(daily_judgments(shares))
    quality = pl.DataFrame(
        {
            "project": "p",
            "day": list(shares),
            "krippendorff_alpha": [0.8] * 14 + [0.5],
        }
    )
    result = drift(counts, quality=quality, trailing_days=28, min_baseline_days=7)
    assert result.height == 15
    early = result.filter(pl.col("day") < start + dt.timedelta(days=7))
    assert early["js_distance"].null_count() == early.height and not early["flagged"].any()
    stable = result.filter(
        (pl.col("day") >= start + dt.timedelta(days=7)) & (pl.col("day") < shifted_day)
    )
    assert stable["js_distance"].max() < 0.1 and not stable["flagged"].any()
    last = result.filter(pl.col("day") == shifted_day).row(0, named=True)
    assert last["label_drift"] and last["agreement_drift"] and last["flagged"]
    assert last["alpha_change"] == pytest.approx(-0.3)
    assert "JS distance" in last["reason"] and "agreement fell" in last["reason"]
    today = counts.filter(pl.col("day") == shifted_day).sort("label")["n_judgments"].to_numpy()
    baseline = (
        counts.filter(pl.col("day") < shifted_day)
        .group_by("label")
        .agg(pl.col("n_judgments").sum())
        .sort("label")["n_judgments"]
        .to_numpy()
    )
    expected = jensenshannon(today / today.sum(), baseline / baseline.sum(), base=2)
    assert last["js_distance"] == pytest.approx(expected, abs=1e-12)
    assert last["chi_square_p_value"] < 1e-6
    only = drift(counts, day=shifted_day, max_js_distance=0.9, max_alpha_drop=0.5)
    assert only.height == 1 and not only["flagged"][0]


def test_stale_baselines_names_the_days_whose_earlier_days_changed():
    start = dt.date(2026, 11, 1)
    shares = {start + dt.timedelta(days=d): [0.5, 0.3, 0.2] for d in range(12)}
    counts = label_distribution(daily_judgments(shares))
    quality = pl.DataFrame(
        {"project": "p", "day": list(shares), "krippendorff_alpha": [0.8] * len(shares)}
    )
    stored = drift(counts, quality=quality)
    last = stored.row(-1, named=True)
    assert last["baseline_days"] == 11
    assert [entry["label"] for entry in last["baseline_label_counts"]] == ["a", "b", "c"]
    assert sum(e["n_judgments"] for e in last["baseline_label_counts"]) == 11 * 2000
    # Recomputed from the same earlier days: nothing to rebuild.
    assert stale_baselines(stored, counts, quality=quality).is_empty()

    # One more judgment on day 3: the days whose 28-day baseline holds day 3, and only those.
    changed_day = start + dt.timedelta(days=3)
    more = pl.concat(
        [counts, pl.DataFrame({"project": ["p"], "day": [changed_day], "label": ["a"],
                               "n_judgments": [1]}, schema_overrides={"n_judgments": pl.UInt32})]
    )  # fmt: skip
    stale = stale_baselines(stored, more, quality=quality)
    assert stale["day"].to_list() == [start + dt.timedelta(days=d) for d in range(4, 12)]
    assert (
        stale.row(0, named=True)["baseline_days_now"] == stale.row(0, named=True)["baseline_days"]
    )
    # A shorter window does not reach day 3 from day 11.
    short = drift(counts, quality=quality, trailing_days=7)
    assert stale_baselines(short, more, quality=quality, trailing_days=7)["day"].max() == (
        start + dt.timedelta(days=10)
    )
    # An earlier day's alpha moves the mean only once there are enough baseline days (7).
    lower = quality.with_columns(
        krippendorff_alpha=pl.when(pl.col("day") == changed_day)
        .then(0.2)
        .otherwise(pl.col("krippendorff_alpha"))
    )
    moved = stale_baselines(stored, counts, quality=lower)["day"].to_list()
    assert moved == [start + dt.timedelta(days=d) for d in range(7, 12)]
    # A row written without its baseline's labels cannot be vouched for.
    legacy = stored.drop("baseline_label_counts")
    assert stale_baselines(legacy, counts, quality=quality).height == stored.height


def test_html_report_is_self_contained_and_escaped(toy_day, toy_gold):
    hostile = toy_day.with_columns(
        pl.when(pl.col("annotator_id") == "w4")
        .then(pl.lit("<script>alert(1)</script>"))
        .otherwise(pl.col("annotator_id"))
        .alias("annotator_id")
    )
    aggregated = majority(hostile)
    cards = annotator_scorecards(hostile, aggregated, toy_gold, min_judgments=1)
    items = item_disagreement(hostile)
    queue = reannotation_queue(items, aggregated, toy_gold)
    report = quality_report(hostile, aggregated, toy_gold, scorecards=cards)
    document = render_html_report(
        report, scorecards=cards, items=items, queue=queue, judgments=hostile
    )
    assert document.startswith("<!DOCTYPE html>")
    assert is_self_contained(document)
    assert "<script>" not in document and "&lt;script&gt;" in document
    assert len(re.findall(r"<svg\b", document)) == 3
    assert queue.height == 3 and "Re-annotation queue (3 tasks)" in document
    summary = markdown_summary(report, scorecards=cards, queue=queue)
    assert "| toy | 2026-11-20 | 5 | 24 | 5 | 0.142 |" in summary
    assert "### Re-annotation queue (3 tasks)" in summary


def test_quality_gates_severity_and_outcomes(toy_day, toy_gold):
    from annotation_pipelines.quality import quality_gates

    aggregated = majority(toy_day)
    cards = annotator_scorecards(toy_day, aggregated, toy_gold, min_judgments=1)
    report = quality_report(toy_day, aggregated, toy_gold, scorecards=cards)
    gates = {row["gate"]: row for row in quality_gates(report).iter_rows(named=True)}
    assert not gates["agreement_floor"]["passed"]  # alpha 0.142 < 0.25
    assert gates["agreement_floor"]["severity"] == "ERROR"
    assert not gates["gold_accuracy_floor"]["passed"]  # 5/9 < 0.65
    assert not gates["flagged_annotator_share"]["passed"]  # 2 of 5 flagged
    assert gates["flagged_annotator_share"]["severity"] == "WARN"
    assert gates["row_counts_sane"]["passed"] and gates["row_counts_sane"]["value"] == 24
    lenient = quality_gates(report, min_alpha=0.1, min_gold_accuracy=0.5, max_flagged_share=0.5)
    assert lenient["passed"].all()
    # No gold judged: undefined, so failed; held back (ERROR) only if the project has gold.
    no_gold = report.with_columns(pl.lit(None, dtype=pl.Float64).alias("gold_accuracy"))
    row = quality_gates(no_gold).filter(pl.col("gate") == "gold_accuracy_floor").row(0, named=True)
    assert not row["passed"] and row["severity"] == "WARN"
    assert row["description"].startswith("undefined: the project has no gold set")
    required = quality_gates(no_gold, gold_projects={"toy"})
    row = required.filter(pl.col("gate") == "gold_accuracy_floor").row(0, named=True)
    assert not row["passed"] and row["severity"] == "ERROR"
    assert row["description"].startswith("undefined: no gold task judged")


def test_an_empty_day_yields_empty_tables_not_errors():
    from annotation_pipelines.quality import quality_gates

    judgments = schema.empty(schema.JUDGMENTS)
    aggregated = schema.empty(schema.AGGREGATED_LABELS)
    gold = schema.empty(schema.GOLD_LABELS)
    cards = annotator_scorecards(judgments, aggregated, gold)
    items = item_disagreement(judgments)
    queue = reannotation_queue(items, aggregated, gold, scorecards=cards, judgments=judgments)
    report = quality_report(judgments, aggregated, gold, scorecards=cards)
    for frame, table in (
        (cards, schema.ANNOTATOR_SCORECARDS),
        (queue, schema.REANNOTATION_QUEUE),
        (report, schema.QUALITY_REPORT),
    ):
        assert frame.height == 0
        schema.conform(frame, table, name="empty")
    assert quality_gates(report).height == 0
    assert is_self_contained(render_html_report(report, scorecards=cards, queue=queue))


def test_the_summary_shows_task_ids_and_labels_as_their_text():
    """`|` was escaped but a line break still ended the table, and a link or image in a task
    id or label rendered as one in the UI."""
    report = pl.DataFrame({"project": ["p"], "day": [DAY], "n_tasks": [2]})
    task_ids = ["t1\n| forged | 1.0 | gold | x |", "![](https://e.vil/b.png)"]
    queue = pl.DataFrame(
        {
            "task_id": task_ids,
            "priority": [0.5, 0.4],
            "reason": ["contested", "contested"],
            "label": ["[x](https://e.vil)", "a|b"],
        }
    )
    tables, elements = rendered(markdown_summary(report, queue=queue))
    assert tables[1] == [
        ["task_id", "priority", "reason", "label"],
        ["t1↵| forged | 1.0 | gold | x |", "0.500", "contested", "[x](https://e.vil)"],
        ["![](https://e.vil/b.png)", "0.400", "contested", "a|b"],
    ]
    assert elements == []


def test_each_project_days_drift_reads_its_own_days_counts_only():
    # Counts of other projects and days, with labels of their own, change no row's figures.
    start = dt.date(2026, 10, 1)
    frames = []
    for project, labels in (("p", ["a", "b", "c"]), ("q", ["a", "x"]), ("r", ["y"])):
        for d in range(10):
            frames.append(
                pl.DataFrame(
                    {
                        "project": project,
                        "day": start + dt.timedelta(days=d),
                        "label": labels + (["late"] if d == 9 and project == "p" else []),
                        "n_judgments": [10 + d * (i + 1) for i in range(len(labels))]
                        + ([5] if d == 9 and project == "p" else []),
                    },
                    schema_overrides={"n_judgments": pl.UInt32},
                )
            )
    counts = pl.concat(frames)
    together = drift(counts, min_baseline_days=3).sort("project", "day")
    alone = pl.concat(
        [
            drift(counts.filter(pl.col("project") == project), min_baseline_days=3)
            for project in ("p", "q", "r")
        ]
    ).sort("project", "day")
    assert together.equals(alone)
    last = together.filter((pl.col("project") == "p") & (pl.col("day") == start + dt.timedelta(9)))
    assert last["js_distance"][0] > 0  # the day's own label, not in its baseline, is counted


@pytest.mark.parametrize("method", ["majority_vote", "dawid_skene"])
def test_a_gold_task_the_crowd_gets_wrong_is_queued_though_its_label_is_gold(method):
    # The aggregation writes a gold task's gold label with every method, so the crowd's
    # disagreement with gold shows in its votes, not in the label; and gold, not the tie rule,
    # decided a gold task whose votes tie.
    from annotation_pipelines.aggregation.api import fit

    day = pl.DataFrame(
        {
            "task_id": ["g1"] * 3 + ["g2"] * 2 + ["t3"] * 3,
            "annotator_id": ["a", "b", "c", "a", "b", "a", "b", "c"],
            "label": ["no", "no", "yes", "yes", "no", "yes", "yes", "yes"],
        }
    ).with_columns(
        project=pl.lit("toy"), submitted_at=pl.lit(dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC))
    )
    gold = pl.DataFrame({"task_id": ["g1", "g2"], "project": "toy", "label": ["yes", "yes"]})
    labels = fit(
        day.select("task_id", "annotator_id", "label"), method=method, gold=gold.drop("project")
    ).labels
    rows = {row["task_id"]: row for row in labels.iter_rows(named=True)}
    assert rows["g1"]["label"] == "yes" and rows["g2"]["label"] == "yes"
    assert not rows["g2"]["is_tie"]
    aggregated = labels.with_columns(project=pl.lit("toy"))
    queue = reannotation_queue(item_disagreement(day), aggregated, gold)
    reasons = {row["task_id"]: row["reason"].split(",") for row in queue.iter_rows(named=True)}
    assert "gold_disagreement" in reasons["g1"]
    assert "tie" not in reasons.get("g2", [])
