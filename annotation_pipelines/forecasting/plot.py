"""History, forecast and 80/95% intervals as a PNG, for asset metadata and reports."""

from __future__ import annotations

import io

import polars as pl


def plot_forecast(
    history: pl.DataFrame,
    forecast: pl.DataFrame,
    *,
    supply: pl.DataFrame | None = None,
    supply_column: str = "supply",
    last: int | None = 24 * 14,
    title: str = "",
) -> bytes:
    """One panel per series: the last `last` points of history, forecast, intervals, supply.

    history: [id, time, value]; forecast: `capacity_forecast`. Returns PNG bytes (Agg backend,
    no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = forecast.get_column("id").unique().sort().to_list()
    figure, axes = plt.subplots(len(ids), 1, figsize=(10, 2.6 * max(1, len(ids))), squeeze=False)
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
        axis.fill_between(
            time, ahead["lo_95"].to_list(), ahead["hi_95"].to_list(), alpha=0.2, label="95%"
        )
        axis.fill_between(
            time, ahead["lo_80"].to_list(), ahead["hi_80"].to_list(), alpha=0.35, label="80%"
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
        axis.set_title(f"{title} {series_id}".strip(), fontsize=9)
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()
