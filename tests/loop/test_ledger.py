"""The ledger pieces both live engines share: exact segment levels, merge groups, merged and
resolved segment rows, withdrawal by a re-read file and by the DB's tombstones."""

from __future__ import annotations

from datetime import UTC, datetime

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


def test_deleted_only_the_deleted_db_version_or_an_older_one() -> None:
    """A DB tombstone withdraws the version the DB gave if it deleted that version or a newer
    one; not one a file gave (the file still holds it), not one newer than the deleted
    version (inserted again after the deletion, even stamped before it), not one the batch
    replaces, and nothing for an id the ledger does not hold."""
    at = [datetime(2026, 11, 2, hour, tzinfo=UTC) for hour in range(5)]
    book = pl.DataFrame(
        {
            "judgment_id": ["db", "edited", "file", "again", "early", "batch"],
            "source": [None, None, "f", None, None, None],
            "updated_at": [at[0], at[0], at[0], at[2], at[2], at[0]],
        }
    )
    tombstones = pl.DataFrame(
        {
            "judgment_id": ["db", "edited", "file", "again", "early", "batch", "unknown"],
            # The version each deleted: `edited` was edited after the ledger read it.
            "updated_at": [at[0], at[1], at[0], at[0], at[0], at[0], at[0]],
            "deleted_at": [at[1], at[2], at[1], at[1], at[3], at[1], at[1]],
        }
    )
    new = pl.DataFrame({"judgment_id": ["batch"]})
    gone = ledger.deleted(book, new, tombstones)
    # `again` was inserted again after its deletion, `early` too though its transaction began
    # before the deletion (at[2] < at[3]): both newer than the version deleted.
    assert gone.get_column("judgment_id").to_list() == ["db", "edited"]
    assert gone.columns == book.columns
    assert ledger.deleted(book, new, tombstones.head(0)).height == 0
    # Read twice, the tombstones withdraw each row once.
    twice = ledger.deleted(book, new, pl.concat([tombstones, tombstones]))
    assert twice.get_column("judgment_id").to_list() == ["db", "edited"]


def test_gold_deleted_only_the_dbs_and_not_given_again() -> None:
    stored = pl.DataFrame(
        {"task_id": ["db", "file", "again"], "gold_sources": [None, ["f"], None]},
        schema={"task_id": pl.String(), "gold_sources": ledger.GOLD_SOURCES},
    )
    batch = pl.DataFrame({"task_id": ["again"]})
    deleted = pl.Series(["db", "file", "again", "unknown"])
    gone = ledger.gold_deleted(stored, batch, deleted)
    assert gone.rows() == [("db", [])]


def test_gone_joins_a_file_s_withdrawals_and_the_db_s_deletions_and_counts_the_unknown() -> None:
    """What both engines withdraw in one batch: the rows a re-read file lost and the rows the
    DB deleted, each judgment once, and how many tombstoned judgments withdrew nothing."""
    at = [datetime(2026, 11, 2, hour, tzinfo=UTC) for hour in range(3)]
    book = pl.DataFrame(
        {
            "judgment_id": ["kept", "lost", "db", "newer"],
            "source": ["f", "f", None, None],
            "updated_at": [at[0], at[0], at[0], at[2]],
        }
    )
    new = pl.DataFrame({"judgment_id": ["kept"]})
    tombstones = pl.DataFrame(
        {
            "judgment_id": ["db", "db", "newer", "lost", "unknown"],
            "updated_at": [at[0], at[0], at[0], at[0], at[0]],
            "deleted_at": [at[1]] * 5,
        }
    )
    rows, unknown = ledger.gone(book, new, ["f"], tombstones)
    assert rows.get_column("judgment_id").to_list() == ["lost", "db"]
    # `newer` was inserted again, `lost` is a file's, `unknown` never held.
    assert unknown == {"newer", "lost", "unknown"}
    rows, unknown = ledger.gone(book, new, ["f"], None)
    assert rows.get_column("judgment_id").to_list() == ["lost"] and unknown == frozenset()


def test_gold_gone_joins_a_file_s_withdrawals_and_the_db_s_deletions() -> None:
    held = pl.DataFrame(
        {"task_id": ["db", "file", "both"], "gold_sources": [None, ["f"], ["f", "g"]]},
        schema={"task_id": pl.String(), "gold_sources": ledger.GOLD_SOURCES},
    )
    batch = ledger.gold_batch(
        pl.DataFrame({"task_id": ["both"], "label": ["x"], "source": ["g"]}), pl.col("label")
    )
    tombstones = pl.DataFrame({"task_id": ["db", "file", "unknown"]})
    gone, unknown = ledger.gold_gone(held, batch, ["f"], tombstones)
    assert sorted(gone.rows()) == [("both", ["g"]), ("db", []), ("file", [])]
    # `file` went with its file, not by the tombstone; `unknown` held no gold.
    assert unknown == {"file", "unknown"}


def test_appended_replaces_in_place_and_tombstones_the_withdrawn() -> None:
    book = pl.DataFrame(
        {"judgment_id": ["a", "b", "c"], "task_id": ["t1", "t1", "t2"], "flagged": [False] * 3}
    ).with_columns(version=pl.lit(1, pl.Int64))
    added = pl.DataFrame(
        {"judgment_id": ["a", "d"], "task_id": ["t3", "t2"], "flagged": [False, False]}
    ).with_columns(version=pl.lit(2, pl.Int64))
    pending = pl.DataFrame(
        schema={
            "judgment_id": pl.String(),
            "task_id": pl.String(),
            "version": pl.Int64(),
            "replaces": pl.Boolean(),
            "deleted": pl.Boolean(),
        }
    )
    gone = book.filter(pl.col("judgment_id") == "c")
    after, rows, earlier = ledger.appended(book, pending, added, gone, 2)
    assert after.select("judgment_id", "task_id").rows() == [("b", "t1"), ("a", "t3"), ("d", "t2")]
    assert rows.rows() == [
        ("c", "t2", 2, True, True),
        ("a", "t3", 2, True, False),
        ("d", "t2", 2, False, False),
    ]
    assert earlier.get_column("task_id").to_list() == ["t1"]
    affected, only_withdrawn = ledger.affected_tasks(
        added, added.head(0), earlier, gone.with_columns(task_id=pl.lit("t4"))
    )
    assert sorted(affected) == ["t1", "t2", "t3", "t4"] and only_withdrawn.to_list() == ["t4"]


def test_fingerprints_are_fnv_1a_of_the_utf8_bytes_and_find_every_id_held():
    # Stored beside each segment, so fixed: the published FNV-1a 32-bit values.
    found = ledger.fingerprints(pl.Series(["", "a", "foobar"])).tolist()
    assert found == [0x811C9DC5, 0xE40C292C, 0xBF9CF968]
    held = pl.Series([f"j{i}" for i in range(1000)] + ["é-ü"])
    stored = ledger.fingerprint_bytes(held)
    assert len(stored) == 4 * 1001
    probe = pl.Series(["j5", "é-ü", "k5", "j999", "nope"])
    hits = ledger.fingerprinted(stored, ledger.fingerprints(probe)).tolist()
    assert hits == [True, True, False, True, False]
    assert not ledger.fingerprinted(b"", ledger.fingerprints(probe)).any()
