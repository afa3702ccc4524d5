"""The HTML quality report is byte-for-byte reproducible, in one process and across processes."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl

from annotation_pipelines.quality import (
    annotator_scorecards,
    item_disagreement,
    label_distribution,
    quality_report,
    reannotation_queue,
    render_html_report,
)
from annotation_pipelines.quality.drift import drift
from tests.agreement.conftest import TOY_CROWD
from tests.quality.conftest import DAY, majority

ROOT = Path(__file__).resolve().parents[2]


def full_report() -> str:
    """The toy day with every section the renderer draws: four charts and their tables."""
    judgments = pl.DataFrame(
        [
            (task, "toy", worker, label, DAY)
            for worker, row in TOY_CROWD.items()
            for task, label in row.items()
        ],
        schema={
            "task_id": pl.String,
            "project": pl.String,
            "annotator_id": pl.String,
            "label": pl.String,
            "day": pl.Date,
        },
        orient="row",
    )
    gold = pl.DataFrame({"task_id": ["t1", "t3"], "project": "toy", "label": ["yes", "no"]})
    aggregated = majority(judgments)
    cards = annotator_scorecards(judgments, aggregated, gold, min_judgments=1)
    items = item_disagreement(judgments)
    queue = reannotation_queue(items, aggregated, gold)
    report = quality_report(judgments, aggregated, gold, scorecards=cards)
    # Eight earlier days with the same votes give the drift chart a line to draw.
    history = pl.concat(
        [judgments.with_columns(pl.lit(DAY - dt.timedelta(days=d)).alias("day")) for d in range(9)]
    )
    trend = drift(label_distribution(history), min_baseline_days=3)
    return render_html_report(
        report, scorecards=cards, items=items, queue=queue, judgments=judgments, drift=trend
    )


def _render_in_subprocess(hash_seed: str) -> str:
    script = "import sys; from tests.quality.test_render_reproducible import full_report; "
    script += "sys.stdout.write(full_report())"
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


def test_the_same_report_renders_to_the_same_bytes():
    first = full_report()
    assert len(re.findall(r"<svg\b", first)) == 4  # every chart is in the comparison
    assert "clip-path" in first  # ids that used to be random per render
    assert first == full_report()
    others = [_render_in_subprocess(seed) for seed in ("1", "2")]
    digests = {hashlib.sha256(text.encode()).hexdigest() for text in (first, *others)}
    assert len(digests) == 1


def test_inline_charts_do_not_share_ids():
    # Several SVGs inline in one page share one id namespace: a fixed salt must not make two
    # charts' clip paths collide.
    document = full_report()
    ids = re.findall(r'<clipPath id="([^"]+)"', document)
    assert ids and len(ids) == len(set(ids))
    assert "<dc:date>" not in document


def test_labels_and_projects_with_dollars_are_drawn_as_written():
    # Two `$` make matplotlib read a label as mathtext: `a$\frac$b` failed the whole report.
    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t2"],
            "project": "p$x$",
            "annotator_id": ["a", "b", "a"],
            "label": ["a$\\frac$b", "$5", "plain"],
            "day": [DAY] * 3,
        }
    )
    aggregated = majority(judgments)
    report = quality_report(judgments, aggregated, judgments.head(0).select("task_id", "project",
                                                                            "label"))  # fmt: skip
    history = pl.concat(
        [judgments.with_columns(pl.lit(DAY - dt.timedelta(days=d)).alias("day")) for d in range(9)]
    )
    trend = drift(label_distribution(history), min_baseline_days=3)
    page = render_html_report(report, judgments=judgments, drift=trend)
    assert len(re.findall(r"<svg\b", page)) >= 1
