"""What `--coordinates` costs the commands' read of a boxes table.

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/bench_box_coordinates.py

Reads 1,000,000 Parquet box rows (one box each, inside a 640×480 image in both units) with
`read_kind_table`, as `aggregate`, `replay` and `agreement --kind boxes` do, without a declared
unit and with each unit: once from a table without the image size columns (where `percent` adds
the inside-the-image check) and once from one with them (where the check already runs). Prints
the median and smallest process CPU time of 7 interleaved runs: CPU time, not wall time, since
the machine is shared and one Polars thread keeps the figures apart from the other workers' load.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.kinds import BOX
from annotation_pipelines.tabular import read_kind_table

N = 1_000_000
RUNS = 7


def boxes(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    x0, y0 = rng.uniform(0, 60, n), rng.uniform(0, 60, n)
    index = pl.int_range(n, eager=True)
    return pl.DataFrame(
        {
            "task_id": "t" + (index // 3).cast(pl.String),
            "annotator_id": "a" + (index % 3).cast(pl.String),
            "label": "car",
            "x_min": x0,
            "y_min": y0,
            "x_max": x0 + 30,
            "y_max": y0 + 30,
        }
    ).select(
        "task_id",
        "annotator_id",
        boxes=pl.concat_list(pl.struct("label", "x_min", "y_min", "x_max", "y_max").cast(BOX)),
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        bare = Path(folder) / "bare.parquet"
        sized = Path(folder) / "sized.parquet"
        table = boxes(N)
        table.write_parquet(bare)
        table.with_columns(image_width=pl.lit(640.0), image_height=pl.lit(480.0)).write_parquet(
            sized
        )
        for path, units in ((bare, (None, "percent")), (sized, (None, "percent", "pixel"))):
            cpu: dict[str | None, list[float]] = {unit: [] for unit in units}
            for _ in range(RUNS):
                for unit in units:
                    start = time.process_time()
                    read = read_kind_table(path, kind="boxes", coordinates=unit)
                    cpu[unit].append(time.process_time() - start)
                    assert read.rows.height == N and not read.quarantined
            for unit, times in cpu.items():
                print(
                    f"{path.stem}: --coordinates {unit or '(none)'}: median CPU "
                    f"{statistics.median(times):.2f} s, min {min(times):.2f} s"
                )


if __name__ == "__main__":
    main()
