"""Published data sets from shared/reference/agreement.md, as judgments frames."""

from __future__ import annotations

import polars as pl
import pytest

KRIPPENDORFF_2011 = """\
1 2 3 3 2 1 4 1 2 . . .
1 2 3 3 2 2 4 1 2 5 . 3
. 3 3 3 2 3 4 2 2 5 1 .
1 2 3 3 2 4 4 1 2 5 1 ."""

FLEISS_WIKIPEDIA = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

TOY_CROWD = {
    "w1": {"t1": "no", "t2": "yes", "t3": "yes", "t4": "yes", "t5": "yes"},
    "w2": {"t1": "yes", "t2": "yes", "t3": "no", "t4": "yes", "t5": "no"},
    "w3": {"t2": "yes", "t3": "no", "t4": "yes", "t5": "no"},
    "w4": {"t1": "yes", "t2": "no", "t3": "yes", "t4": "yes", "t5": "no"},
    "w5": {"t1": "no", "t2": "no", "t3": "no", "t4": "yes", "t5": "no"},
}
TOY_TRUTH = {"t1": "yes", "t2": "yes", "t3": "no", "t4": "yes", "t5": "no"}

SCHEMA = {"task_id": pl.String, "annotator_id": pl.String, "label": pl.String}


def frame(records: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(records, schema=SCHEMA, orient="row")


@pytest.fixture
def krippendorff_2011() -> pl.DataFrame:
    records = []
    for coder, line in zip("ABCD", KRIPPENDORFF_2011.splitlines(), strict=True):
        for unit, value in enumerate(line.split(), start=1):
            if value != ".":
                records.append((f"unit{unit}", f"coder{coder}", value))
    return frame(records)


@pytest.fixture
def fleiss_wikipedia() -> pl.DataFrame:
    records = []
    for subject, row in enumerate(FLEISS_WIKIPEDIA, start=1):
        rater = 0
        for category, count in enumerate(row, start=1):
            for _ in range(count):
                rater += 1
                records.append((f"s{subject}", f"r{rater}", f"c{category}"))
    return frame(records)


@pytest.fixture
def toy_crowd() -> pl.DataFrame:
    return frame(
        [(task, worker, label) for worker, row in TOY_CROWD.items() for task, label in row.items()]
    )
