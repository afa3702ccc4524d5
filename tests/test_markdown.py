"""Frames as the markdown tables the Dagster UI shows in metadata."""

import polars as pl

from annotation_pipelines.markdown import frame_to_markdown


def _cells(markdown: str) -> list[list[str]]:
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_a_table_reads_like_a_report_not_a_dump():
    reason = "needs 331.8 annotator-hours/week to meet the 3-day SLA, staffed 310.7; " * 2
    frame = pl.DataFrame(
        {
            "project": ["intent", "tags"],
            "scenario_cost_usd": [3_933_264.2584, None],
            "backlog": [13_636, 0],
            "risk_reason": [reason.strip(), None],
        }
    )
    header, _, intent, tags = _cells(frame_to_markdown(frame))
    assert header == ["project", "scenario_cost_usd", "backlog", "risk_reason"]
    # Thousands grouped; a reason in full (it is what the reader acts on); no "null".
    assert intent == ["intent", "3,933,264.2584", "13,636", reason.strip()]
    assert tags == ["tags", "—", "0", "—"]


def test_every_column_is_shown_and_hidden_rows_are_counted():
    wide = pl.DataFrame({f"column_{i}": [i] * 30 for i in range(30)})
    markdown = frame_to_markdown(wide, rows=10)
    header = _cells(markdown)[0]
    assert header == [f"column_{i}" for i in range(30)]
    assert len(_cells(markdown)) == 2 + 10
    assert markdown.rstrip().endswith("_20 more rows_")
