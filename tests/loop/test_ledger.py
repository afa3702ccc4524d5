"""The ledger pieces both live engines share: exact segment levels, merge groups, merged and
resolved segment rows."""

from __future__ import annotations

import polars as pl
import pytest

from annotation_pipelines.loop import ledger


def _rows(*rows: tuple[str, int, bool, bool]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "judgment_id": pl.String(),
            "version": pl.Int64(),
            "replaces": pl.Boolean(),
            "deleted": pl.Boolean(),
        },
        orient="row",
    )


@pytest.mark.parametrize(
    ("rows", "expected"), [(0, 0), (8191, 0), (8192, 1), (65535, 1), (65536, 2)]
)
def test_level_is_the_size_class(rows: int, expected: int) -> None:
    assert ledger.level(rows, base_rows=1024, fan_in=8) == expected


def test_group_ending() -> None:
    assert ledger.group_ending([0, 0, 0], 4) is None
    assert ledger.group_ending([1, 0, 0, 0, 0], 4) == (1, 5)
    # A larger newest segment takes the smaller ones before it, not the larger one.
    assert ledger.group_ending([2, 0, 0, 1], 4) == (1, 4)
    assert ledger.group_ending([0], 4) is None


def test_segment_key_sorts_by_version() -> None:
    assert ledger.segment_key("live/p", "ledger", 3, 12) == (
        "live/p/ledger/000000000003-000000000012.parquet"
    )


def test_merged_rows_keep_the_newest_version() -> None:
    rows = _rows(("a", 1, False, False), ("b", 1, True, False), ("a", 2, True, False))
    rows = pl.concat([rows, _rows(("b", 3, True, True))])
    merged = ledger.merged_rows(rows, oldest=False)
    assert merged.rows() == [("a", 2, False, False), ("b", 3, True, True)]
    assert ledger.merged_rows(rows, oldest=True).rows() == [("a", 2, False, False)]


def test_resolved_drops_replaced_and_withdrawn() -> None:
    rows = _rows(
        ("a", 1, False, False),
        ("b", 1, False, False),
        ("c", 1, False, False),
        ("a", 2, True, False),
        ("b", 3, True, True),
    )
    assert ledger.resolved(rows).rows() == [("c", 1, False, False), ("a", 2, True, False)]


def test_withdrawn_only_from_resynced_sources() -> None:
    book = pl.DataFrame({"judgment_id": ["a", "b", "c"], "source": ["f", "f", "g"]})
    new = pl.DataFrame({"judgment_id": ["a"]})
    assert ledger.withdrawn(book, new, ["f"]).get_column("judgment_id").to_list() == ["b"]
    assert ledger.withdrawn(book, new, []).height == 0
