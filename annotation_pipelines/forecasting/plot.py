"""History, forecast and 80/95% intervals as a PNG, for asset metadata and reports.

Figures are drawn with `matplotlib.figure.Figure` directly (no pyplot), so plotting needs no
display and leaves matplotlib's global backend alone. The PNG carries no date: the same data
gives the same bytes, run after run.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NO_INTERVAL = "no interval"


def literal(text: object) -> str:
    """`text` as matplotlib should draw it, character for character. A name with two `$` is
    mathtext to matplotlib: `gpu$a$` is drawn in italics without the dollars and `a$\\frac$b`
    fails the whole figure. An escaped dollar is drawn as a dollar."""
    return str(text).replace("$", r"\$")


def _values(frame: pl.DataFrame, column: str) -> list[float]:
    # Null bounds become NaN, which matplotlib leaves out of a band instead of failing on.
    return frame.get_column(column).cast(pl.Float64).fill_null(float("nan")).to_list()


def forecast_figure(
    history: pl.DataFrame,
    forecast: pl.DataFrame,
    *,
    supply: pl.DataFrame | None = None,
    supply_column: str = "supply",
    last: int | None = 24 * 14,
    title: str = "",
    notes: Mapping[str, str] | None = None,
) -> Figure:
    """One panel per series: the last `last` points of history, forecast, intervals, supply.

    history: [id, time, value]; forecast: `capacity_forecast`. A series whose bounds are all
    null has no band, and its legend says "no interval" (or its entry in `notes`, the reason).
    """
    from matplotlib.figure import Figure

    ids = forecast.get_column("id").unique().sort().to_list()
    figure = Figure(figsize=(10, 2.6 * max(1, len(ids))))
    axes = figure.subplots(len(ids), 1, squeeze=False)
    for axis, series_id in zip(axes[:, 0], ids, strict=True):
        past = history.filter(pl.col("id") == series_id).sort("time")
        if last:
            past = past.tail(last)
        ahead = forecast.filter(pl.col("id") == series_id).sort("time")
        time = ahead.get_column("time").to_list()
        axis.plot(
            past.get_column("time").to_list(),
            past.get_column("value").to_list(),
            color="black",
            lw=1,
        )
        bounds = ahead.select("lo_80", "hi_80", "lo_95", "hi_95")
        if bounds.null_count().sum_horizontal().item() == bounds.height * bounds.width:
            # An empty handle: the legend states the absence instead of naming a band not drawn.
            note = (notes or {}).get(series_id, NO_INTERVAL)
            axis.plot([], [], linestyle="none", label=literal(note))
        else:
            axis.fill_between(
                time, _values(ahead, "lo_95"), _values(ahead, "hi_95"), alpha=0.2, label="95%"
            )
            axis.fill_between(
                time, _values(ahead, "lo_80"), _values(ahead, "hi_80"), alpha=0.35, label="80%"
            )
        model = ahead.get_column("model")[0] if "model" in ahead.columns and ahead.height else ""
        axis.plot(time, ahead["forecast"].to_list(), lw=1.2, label=f"forecast ({model})")
        if supply is not None and supply_column in supply.columns:
            own = supply.filter(pl.col("id") == series_id).sort("time")
            if own.height:
                axis.step(
                    own["time"].to_list(),
                    own[supply_column].to_list(),
                    where="post",
                    color="red",
                    lw=1,
                    label="supply",
                )
                start = past.get_column("time").min() if past.height else time[0]
                axis.set_xlim(start, time[-1])
        axis.set_title(literal(f"{title} {series_id}".strip()), fontsize=9)
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return figure


def plot_forecast(
    history: pl.DataFrame,
    forecast: pl.DataFrame,
    *,
    supply: pl.DataFrame | None = None,
    supply_column: str = "supply",
    last: int | None = 24 * 14,
    title: str = "",
    notes: Mapping[str, str] | None = None,
) -> bytes:
    """`forecast_figure` as PNG bytes (Agg, no display needed)."""
    figure = forecast_figure(
        history,
        forecast,
        supply=supply,
        supply_column=supply_column,
        last=last,
        title=title,
        notes=notes,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
