"""Render quality results: a self-contained HTML report and a markdown summary for metadata.

The HTML has no external reference at all — styles inline, charts as inline SVG — so it can
be mailed, archived or opened from object
storage as one file. Figures are drawn with `matplotlib.figure.Figure` directly (no pyplot),
so rendering needs no display and leaves matplotlib's global backend alone.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence
from typing import Any

import polars as pl

from annotation_pipelines.forecasting.plot import literal
from annotation_pipelines.markdown import frame_to_markdown, markdown_text

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:right}
th{background:#f6f8fa}td.text,th.text{text-align:left}
.flag{color:#b42318;font-weight:600}.ok{color:#1a7f37}.charts{display:flex;flex-wrap:wrap;gap:1rem}
.charts figure{margin:0}.muted{color:#656d76;font-size:.85rem}
"""


def _format(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _html_table(frame: pl.DataFrame, *, max_rows: int, flag_column: str | None = None) -> str:
    if frame.height == 0:
        return '<p class="muted">none</p>'
    text_columns = {
        name for name, dtype in frame.schema.items() if dtype in (pl.String, pl.Date, pl.Boolean)
    }
    head = "".join(
        f'<th class="{"text" if name in text_columns else ""}">{html.escape(name)}</th>'
        for name in frame.columns
    )
    body = []
    for row in frame.head(max_rows).iter_rows(named=True):
        flagged = flag_column is not None and bool(row.get(flag_column))
        cells = "".join(
            f'<td class="{"text" if name in text_columns else ""}">'
            f"{html.escape(_format(value))}</td>"
            for name, value in row.items()
        )
        body.append(f'<tr class="{"flag" if flagged else ""}">{cells}</tr>')
    more = (
        f'<p class="muted">{frame.height - max_rows:,} more rows not shown</p>'
        if frame.height > max_rows
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _markdown_table(frame: pl.DataFrame, *, max_rows: int) -> str:
    if frame.height == 0:
        return "_none_"
    # The report's cells read as its HTML tables do (`_format`), escaped for markdown.
    return frame_to_markdown(frame, rows=max_rows, cell=lambda value: markdown_text(_format(value)))


def _svg(figure: Any, *, name: str) -> str:  # a matplotlib Figure, imported lazily
    """The figure as inline SVG, the same bytes on every run for the same data.

    Matplotlib stamps the render date into the SVG metadata (dropped here) and salts its
    clip-path and marker ids with a random UUID unless `svg.hashsalt` is set. The salt is the
    chart's name, so the ids repeat run after run but differ between the charts that share the
    page's one id namespace.
    """
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"annotation-pipelines {name}"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    # Drop the XML prolog and DOCTYPE: inline SVG inside HTML must start at <svg>.
    return text[text.index("<svg") :]


def _chart(name: str, figure: Any) -> tuple[str, str]:
    return name, _svg(figure, name=name)


def _charts(
    report: pl.DataFrame,
    scorecards: pl.DataFrame | None,
    items: pl.DataFrame | None,
    judgments: pl.DataFrame | None,
    drift: pl.DataFrame | None,
) -> list[tuple[str, str]]:
    # A bare Figure (no pyplot) needs no GUI backend and touches no global state.
    from matplotlib.figure import Figure

    charts = []
    if judgments is not None and judgments.height:
        shares = (
            judgments.group_by("label").agg(pl.len().alias("n")).sort("n", descending=True).head(20)
        )
        figure = Figure(figsize=(5, 3))
        axes = figure.subplots()
        # Labels are the annotators' text: `$…$` in one would be read as mathtext.
        axes.bar([literal(x) for x in shares["label"]], shares["n"].to_list(), color="#0969da")
        axes.set_ylabel("judgments")
        axes.set_title("Label distribution")
        axes.tick_params(axis="x", rotation=45)
        charts.append(_chart("Label distribution", figure))
    if scorecards is not None and scorecards.height:
        figure = Figure(figsize=(5, 3))
        axes = figure.subplots()
        x_column = (
            "gold_accuracy" if scorecards["gold_accuracy"].drop_nulls().len() else "spammer_score"
        )
        for flagged, color, name in ((False, "#1a7f37", "ok"), (True, "#b42318", "flagged")):
            part = scorecards.filter(pl.col("flagged") == flagged).drop_nulls(
                [x_column, "consensus_agreement"]
            )
            if part.height:
                axes.scatter(
                    part[x_column].to_list(),
                    part["consensus_agreement"].to_list(),
                    s=12,
                    alpha=0.7,
                    color=color,
                    label=f"{name} ({part.height})",
                )
        axes.set_xlabel(x_column.replace("_", " "))
        axes.set_ylabel("consensus agreement")
        axes.set_title("Annotators")
        axes.legend(loc="lower right", fontsize=8)
        charts.append(_chart("Annotators", figure))
    if items is not None and items.height:
        figure = Figure(figsize=(5, 3))
        axes = figure.subplots()
        axes.hist(items["normalized_entropy"].to_numpy(), bins=20, color="#8250df")
        axes.set_xlabel("normalized vote entropy per task")
        axes.set_ylabel("tasks")
        axes.set_title(f"Item disagreement ({int(items['contested'].sum()):,} contested)")
        charts.append(_chart("Item disagreement", figure))
    if drift is not None and drift.height and drift["js_distance"].drop_nulls().len():
        figure = Figure(figsize=(5, 3))
        axes = figure.subplots()
        for (project,), part in drift.drop_nulls("js_distance").group_by(["project"]):
            part = part.sort("day")
            axes.plot(
                part["day"].to_list(),
                part["js_distance"].to_list(),
                marker="o",
                label=literal(project),
            )
        axes.set_ylabel("JS distance to trailing weeks")
        axes.set_title("Label drift")
        axes.legend(fontsize=8)
        figure.autofmt_xdate()
        charts.append(_chart("Label drift", figure))
    return charts


def render_html_report(
    report: pl.DataFrame,
    *,
    scorecards: pl.DataFrame | None = None,
    items: pl.DataFrame | None = None,
    queue: pl.DataFrame | None = None,
    drift: pl.DataFrame | None = None,
    judgments: pl.DataFrame | None = None,
    title: str | None = None,
    max_rows: int = 50,
) -> str:
    """One self-contained HTML page: the report rows, charts (inline SVG) and top tables.

    Typically called with one project and day's slice of each frame. Every argument but
    `report` is optional; the sections whose data is missing are left out.
    """
    if title is None:
        pairs = report.select("project", "day").unique().sort("project", "day").rows()
        title = "Annotation quality — " + ", ".join(f"{p} {d}" for p, d in pairs[:5])
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2>",
        _html_table(report, max_rows=max_rows),
    ]
    charts = _charts(report, scorecards, items, judgments, drift)
    if charts:
        figures = "".join(
            f'<figure aria-label="{html.escape(name)}">{svg}</figure>' for name, svg in charts
        )
        sections.append(f'<h2>Charts</h2><div class="charts">{figures}</div>')
    if scorecards is not None:
        flagged = scorecards.filter(pl.col("flagged")).sort("n_judgments", descending=True)
        sections += [
            f"<h2>Flagged annotators ({flagged.height:,} of {scorecards.height:,})</h2>",
            _html_table(flagged.select(_present(flagged, _SCORECARD_COLUMNS)), max_rows=max_rows),
        ]
    if queue is not None:
        sections += [
            f"<h2>Re-annotation queue ({queue.height:,} tasks)</h2>",
            _html_table(queue.select(_present(queue, _QUEUE_COLUMNS)), max_rows=max_rows),
        ]
    if drift is not None and drift.height:
        # The baseline's label counts are there for the sensor that checks them; the figures
        # beside them say what a reader needs.
        shown = drift.drop("baseline_label_counts", strict=False)
        sections += ["<h2>Drift</h2>", _html_table(shown, max_rows=max_rows, flag_column="flagged")]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


_SCORECARD_COLUMNS = (
    "project",
    "day",
    "annotator_id",
    "n_judgments",
    "n_gold",
    "gold_accuracy",
    "gold_accuracy_low",
    "gold_accuracy_high",
    "consensus_agreement",
    "n_consensus_compared",
    "spammer_score",
    "median_duration_s",
    "flag_reason",
)
_QUEUE_COLUMNS = ("project", "day", "task_id", "priority", "reason", "label", "entropy", "margin")


def _present(frame: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    return [column for column in columns if column in frame.columns]


def markdown_summary(
    report: pl.DataFrame,
    *,
    scorecards: pl.DataFrame | None = None,
    queue: pl.DataFrame | None = None,
    drift: pl.DataFrame | None = None,
    max_rows: int = 10,
) -> str:
    """Markdown tables for Dagster metadata (`MetadataValue.md`): report, flagged, queue, drift."""
    parts = [
        "### Quality",
        _markdown_table(
            report.select(
                _present(
                    report,
                    (
                        "project",
                        "day",
                        "n_tasks",
                        "n_judgments",
                        "n_annotators",
                        "krippendorff_alpha",
                        "fleiss_kappa",
                        "percent_agreement",
                        "gold_accuracy",
                        "consensus_accuracy_on_gold",
                        "share_flagged_annotators",
                        "gates_passed",
                        "gate_reasons",
                    ),
                )
            ),
            max_rows=max_rows,
        ),
    ]
    if scorecards is not None:
        flagged = scorecards.filter(pl.col("flagged"))
        parts += [
            f"### Flagged annotators ({flagged.height} of {scorecards.height})",
            _markdown_table(
                flagged.select(
                    _present(
                        flagged,
                        (
                            "annotator_id",
                            "n_judgments",
                            "gold_accuracy",
                            "spammer_score",
                            "flag_reason",
                        ),
                    )
                ),
                max_rows=max_rows,
            ),
        ]
    if queue is not None:
        parts += [
            f"### Re-annotation queue ({queue.height} tasks)",
            _markdown_table(
                queue.select(_present(queue, ("task_id", "priority", "reason", "label"))),
                max_rows=max_rows,
            ),
        ]
    if drift is not None and drift.height:
        parts += [
            "### Drift",
            _markdown_table(
                drift.select(
                    _present(drift, ("project", "day", "js_distance", "alpha_change", "reason"))
                ),
                max_rows=max_rows,
            ),
        ]
    return "\n\n".join(parts)


def is_self_contained(document: str) -> bool:
    """True when the HTML references no external resource (no src/href to a URL)."""
    return not re.search(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", document)
