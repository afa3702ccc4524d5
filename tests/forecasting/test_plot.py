"""The forecast plot: a PNG that is the same bytes for the same data, in any process."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from annotation_pipelines.forecasting.plot import plot_forecast

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def sample_png() -> bytes:
    """A week of history and a day ahead for two series, with supply, as the assets draw it."""
    history = pl.DataFrame(
        {
            "id": ["a"] * 168 + ["b"] * 168,
            "time": [START + dt.timedelta(hours=h) for h in range(168)] * 2,
            "value": [float(10 + h % 24) for h in range(168)] + [float(h % 7) for h in range(168)],
        }
    )
    ahead = [START + dt.timedelta(hours=168 + h) for h in range(24)]
    forecast = pl.DataFrame(
        {
            "id": ["a"] * 24 + ["b"] * 24,
            "time": ahead * 2,
            "forecast": [float(10 + h) for h in range(24)] + [3.0] * 24,
            "lo_80": [float(8 + h) for h in range(24)] + [None] * 24,
            "hi_80": [float(12 + h) for h in range(24)] + [None] * 24,
            "lo_95": [float(6 + h) for h in range(24)] + [None] * 24,
            "hi_95": [float(14 + h) for h in range(24)] + [None] * 24,
            "model": ["AutoETS"] * 24 + ["Naive"] * 24,
        }
    )
    supply = pl.DataFrame({"id": ["a", "b"], "time": [ahead[0]] * 2, "supply": [30.0, 5.0]})
    return plot_forecast(history, forecast, supply=supply, title="demand")


def _png_in_subprocess(hash_seed: str) -> bytes:
    script = "import sys; from tests.forecasting.test_plot import sample_png; "
    script += "sys.stdout.buffer.write(sample_png())"
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        capture_output=True,
        check=True,
    )
    return completed.stdout


def test_the_same_plot_is_the_same_png_in_every_process():
    first = sample_png()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert first == sample_png()
    digests = {hashlib.sha256(png).hexdigest() for png in (first, *map(_png_in_subprocess, "12"))}
    assert len(digests) == 1


def test_a_series_named_with_dollars_is_drawn_as_written():
    # Two dollars are mathtext to matplotlib: `a$\frac$b` failed the figure, `$x$` lost them.
    from annotation_pipelines.forecasting.plot import forecast_figure

    ids = ["a$\\frac$b", "$x$"]
    history = pl.DataFrame({"id": ids, "time": [START] * 2, "value": [1.0, 2.0]})
    forecast = pl.DataFrame(
        {"id": ids, "time": [START + dt.timedelta(hours=1)] * 2, "forecast": [1.0, 2.0],
         "lo_80": [None, None], "hi_80": [None, None], "lo_95": [None, None],
         "hi_95": [None, None], "model": ["Naive"] * 2},
        schema_overrides={c: pl.Float64 for c in ("lo_80", "hi_80", "lo_95", "hi_95")},
    )  # fmt: skip
    figure = forecast_figure(history, forecast, notes={"$x$": "too short: $5$ days"})
    titles = {axis.get_title() for axis in figure.axes}
    assert titles == {r"a\$\frac\$b", r"\$x\$"}  # escaped: drawn as written
    figure.savefig(io.BytesIO(), format="png")  # a$\frac$b failed here
    legends = [t.get_text() for axis in figure.axes for t in axis.get_legend().get_texts()]
    assert r"too short: \$5\$ days" in legends
