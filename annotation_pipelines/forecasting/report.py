"""The capacity report: one self-contained HTML page a planner can take to a procurement meeting.

Per cluster: weekly demand history, the P50 line and P50-P90 band months ahead, and the supply
line (what the current fleet carries at the target utilization); then the procurement plan,
the date each cluster runs short per scenario, allocation vs utilization per workload class
(the idle capacity allocation hides) and the money (the cost of each scenario, annotation cost
per curated label and per point of agreement). Charts are inline SVG without a render date and
with a per-chart `svg.hashsalt`, so the same inputs give the same bytes; nothing is referenced
outside the page.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import polars as pl

from annotation_pipelines.forecasting.plot import literal
from annotation_pipelines.forecasting.scalars import as_float

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:right}
th{background:#f6f8fa}td.text,th.text{text-align:left}.charts figure{margin:0}
.muted{color:#656d76;font-size:.85rem}
"""


def _is_share(column: str) -> bool:
    """A column holding a fraction of a whole (0..1)."""
    return column.endswith("share") or column.startswith("percent_") or column == "utilization"


def _format(value: object, *, share: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        # NaN or infinity is no figure (a cost per point of an agreement of 0): a dash, and
        # the report's notes say why.
        if not math.isfinite(value):
            return "—"
        if share:
            # Rounded, 0.996 read 1.00: every judgment timed, every answer agreed. Floored at
            # three digits, a share below the whole never reads as the whole.
            return f"{math.floor(round(value * 1000, 6)) / 1000:.3f}"
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def html_table(frame: pl.DataFrame, *, max_rows: int | None = None, name: str = "") -> str:
    """Every row of `frame`; with `max_rows`, the first that many and a line saying how many
    more there are and where (`name`, the lake table): a plan row is never dropped unsaid."""
    if frame.height == 0:
        return '<p class="muted">none</p>'
    numeric = {n for n, d in frame.schema.items() if d.is_numeric()}
    head = "".join(
        f'<th class="{"" if n in numeric else "text"}">{html.escape(n)}</th>' for n in frame.columns
    )
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"" if n in numeric else "text"}">'
            f"{html.escape(_format(v, share=_is_share(n)))}</td>"
            for n, v in row.items()
        )
        + "</tr>"
        for row in (frame if max_rows is None else frame.head(max_rows)).iter_rows(named=True)
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if max_rows is None or frame.height <= max_rows:
        return table
    more = frame.height - max_rows
    where = f" (see {html.escape(name)} in the lake)" if name else ""
    return f'{table}<p class="muted">… {more:,} more rows{where}</p>'


def svg(figure: Figure, *, name: str) -> str:
    """Inline SVG, the same bytes for the same data (no date; ids salted with the name)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"annotation-pipelines capacity {name}"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def png(figure: Figure) -> bytes:
    """The same figure as PNG for the Dagster UI (no date in the metadata)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def cluster_figure(
    history: pl.DataFrame,
    weekly: pl.DataFrame,
    supply: pl.DataFrame,
    *,
    cluster: str,
    runs_short: Mapping[str, dt.date | None] | None = None,
) -> Figure:
    """One cluster: weekly demand history, P50 and the P50-P90 band, the supply line, and the
    day the plan says it runs short per scenario (`runs_short`).

    history: [time, value] weekly demand; weekly: [time, p50, p90]; supply: [time, supply]
    (the demand the fleet carries at target utilization; a step where ordered hardware lands).
    The plan's date can come before the band crosses the line: it is the first day (not week)
    any one accelerator type of the cluster needs more than its own fleet.
    """
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3))
    axis = figure.subplots()
    axis.plot(history["time"].to_list(), history["value"].to_list(), color="black", lw=1,
              label="demand (weekly mean)")  # fmt: skip
    times = weekly["time"].to_list()
    axis.fill_between(times, weekly["p50"].to_list(), weekly["p90"].to_list(), color="#f28e2b",
                      alpha=0.3, label="P50–P90")  # fmt: skip
    axis.plot(times, weekly["p50"].to_list(), color="#f28e2b", lw=1.5, label="P50")
    if supply.height and supply["supply"].is_not_null().any():
        axis.step(supply["time"].to_list(), supply["supply"].to_list(), where="post",
                  color="#4e79a7", lw=1.5, label="supply at target utilization")  # fmt: skip
    for (scenario, day), style in zip((runs_short or {}).items(), ("--", ":"), strict=False):
        if day is not None:
            label = literal(f"{scenario.upper()} runs short (plan, daily, any type): {day}")
            axis.axvline(date2num(day), color="#e15759", ls=style, lw=1, label=label)
    axis.set_title(literal(f"{cluster}: accelerators (demand = running + pending)"))
    axis.legend(loc="upper left", fontsize=7)
    axis.grid(alpha=0.3)
    figure.autofmt_xdate()
    return figure


def type_figure(required: pl.DataFrame, plan: pl.DataFrame, *, cluster: str) -> Figure:
    """One cluster, one panel per accelerator type: the accelerators to own per day (P50 and the
    P50-P90 band), the type's fleet, the fleet with each scenario's order from the day it
    lands, and the day each scenario runs short. These are the numbers of the plan itself, so
    a run-short line falls on the first day its curve is above the fleet, which the cluster
    chart (weekly means, every type pooled) cannot show.

    required: [accelerator_type, time, p50, p90] daily; plan: procurement.PLAN_COLUMNS rows of
    the cluster.
    """
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure

    types = required.get_column("accelerator_type").unique().sort().to_list()
    figure = Figure(figsize=(8, 2.4 * max(1, len(types))))
    axes = figure.subplots(max(1, len(types)), 1, squeeze=False, sharex=True)[:, 0]
    styles = {"p50": ("--", "#e15759"), "p90": (":", "#b07aa1")}
    for axis, accelerator_type in zip(axes, types, strict=False):
        need = required.filter(pl.col("accelerator_type") == accelerator_type).sort("time")
        days = need.get_column("time").to_list()
        axis.fill_between(days, need["p50"].to_list(), need["p90"].to_list(), color="#f28e2b",
                          alpha=0.3, label="P50–P90 to own")  # fmt: skip
        axis.plot(days, need["p50"].to_list(), color="#f28e2b", lw=1.2, label="P50 to own")
        rows = plan.filter(pl.col("accelerator_type") == accelerator_type)
        # Null where a series of the type reports no total: no fleet line to draw.
        known = rows.get_column("fleet").drop_nulls()
        fleet = (
            as_float(known.first(), what=f"fleet of {cluster} {accelerator_type}")
            if known.len()
            else None
        )
        if fleet is not None:
            axis.plot([days[0], days[-1]], [fleet, fleet], color="#4e79a7", lw=1.5,
                      label=f"fleet {fleet:,.0f}")  # fmt: skip
        for row in rows.sort("scenario").iter_rows(named=True):
            style, color = styles.get(row["scenario"], ("-.", "#76b7b2"))
            name = literal(str(row["scenario"]).upper())
            if fleet is not None and row["to_order"] and row["arrives"] is not None:
                owned = [fleet + (row["to_order"] if day >= row["arrives"] else 0) for day in days]
                axis.step(days, owned, where="post", color="#4e79a7", ls=style, lw=1,
                          label=f"fleet + {name} order of {row['to_order']:,}")  # fmt: skip
            if row["runs_short_on"] is not None:
                axis.axvline(date2num(row["runs_short_on"]), color=color, ls=style, lw=1,
                             label=f"{name} runs short: {row['runs_short_on']}")  # fmt: skip
        axis.set_title(
            literal(f"{cluster} {accelerator_type}: accelerators to own per day"), fontsize=9
        )
        axis.legend(loc="upper left", fontsize=6)
        axis.grid(alpha=0.3)
    figure.autofmt_xdate()
    return figure


def utilization_figure(classes: pl.DataFrame) -> Figure:
    """Allocated vs busy accelerators per cluster and class (the idle part is what allocation
    hides). classes: [cluster, workload_class, allocated, busy]."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3))
    axis = figure.subplots()
    labels = [
        literal(f"{c}\n{w}") for c, w in classes.select("cluster", "workload_class").iter_rows()
    ]
    positions = list(range(len(labels)))
    allocated = classes["allocated"].fill_null(0.0).to_list()
    busy = classes["busy"].fill_null(float("nan")).to_list()
    axis.bar(positions, allocated, color="#bab0ac", label="allocated")
    axis.bar(positions, busy, color="#59a14f", label="busy (SM time)")
    axis.set_xticks(positions, labels, fontsize=7)
    axis.set_ylabel("accelerators (mean)")
    axis.legend(fontsize=7)
    axis.set_title("Allocation vs utilization by workload class")
    return figure


def render_capacity_report(
    *,
    title: str,
    as_of: str,
    charts: list[tuple[str, Figure]],
    sections: list[tuple[str, pl.DataFrame]],
    notes: list[str] = (),  # type: ignore[assignment]
) -> str:
    """The page: title, notes, charts (inline SVG) and tables, in the order given."""
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="muted">as of {html.escape(as_of)}</p>']
    parts += [f"<p>{html.escape(note)}</p>" for note in notes]
    for name, figure in charts:
        parts.append(
            f'<figure aria-label="{html.escape(name)}" class="charts">{svg(figure, name=name)}'
            "</figure>"
        )
    for heading, frame in sections:
        parts += [f"<h2>{html.escape(heading)}</h2>", html_table(frame)]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
