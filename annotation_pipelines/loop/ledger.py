"""The judgment ledger both live engines keep (`loop.live`, categorical; `loop.live_kinds`, the
other kinds): exactly-once folding of a batch, withdrawal by a re-read export (of judgments
and of the gold it gave) or by the DB's tombstones of deleted judgments, and the lake layout
of its append-only segments with their size-tiered merges.

A segment row is a judgment's version with `replaces` (an earlier version may sit in an older
segment) and `deleted` (a tombstone); segments are named by the state versions they hold and
merged as in Lucene's log merge policy (see `loop.live.LedgerCompaction`). The engines differ
in their schemas and in how a segment is laid out in its file, so those stay with them.

Both also lift the blocks the annotation tool revoked the same way: which reversals are due
in the stored states (`due_reversals`), and the lift of a block a retried version decides again
(`lift_retried`); how a lift refits a state is each engine's.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import polars as pl

State = TypeVar("State")


def parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd")
    return buffer.getvalue()


def segment_key(prefix: str, folder: str, first: int, last: int) -> str:
    """The key of the segment of state versions `first`..`last`; zero-padded so keys sort by
    version."""
    return f"{prefix}/{folder}/{first:012d}-{last:012d}.parquet"


def level(rows: int, *, base_rows: int, fan_in: int) -> int:
    """A segment's size class: 0 under `base_rows` × `fan_in` rows, each next one `fan_in`
    times larger."""
    result, bound = 0, base_rows * fan_in
    while rows >= bound:
        result, bound = result + 1, bound * fan_in
    return result


def group_ending(levels: list[int], fan_in: int) -> tuple[int, int] | None:
    """The segments (start, stop) to merge that end at the newest one, or None: the newest
    with the smaller ones before it, else the newest `fan_in` when they are of one level, so
    levels never grow from older to newer segments."""
    if len(levels) >= 2 and levels[-1] > levels[-2]:
        start = len(levels) - 1
        while start > 0 and levels[start - 1] < levels[-1]:
            start -= 1
        return start, len(levels)
    tail = levels[-fan_in:]
    if len(tail) == fan_in and len(set(tail)) == 1:
        return len(levels) - fan_in, len(levels)
    return None


def merged_rows(rows: pl.DataFrame, *, oldest: bool) -> pl.DataFrame:
    """Consecutive ledger segments' rows (oldest first) as one segment: the newest version of
    each judgment, `replaces` as its first version in the range had it. From the oldest
    segment on, nothing older can be shadowed: tombstones go and nothing `replaces`."""
    rows = rows.with_columns(replaces=pl.col("replaces").first().over("judgment_id")).filter(
        pl.col("judgment_id").is_last_distinct()
    )
    if oldest:
        rows = rows.filter(~pl.col("deleted")).with_columns(replaces=pl.lit(False))
    return rows


def resolved(rows: pl.DataFrame) -> pl.DataFrame:
    """The ledger that segments' rows (oldest first) hold: each judgment's newest version,
    withdrawn ones left out.

    A judgment is in more than one segment only when a later row of it `replaces` an earlier
    one or is a tombstone, so only those judgments need resolving: a lookup of a few ids, not
    a deduplication of the whole ledger.
    """
    marked = rows.filter(pl.col("replaces") | pl.col("deleted")).get_column("judgment_id")
    if marked.len() == 0:
        return rows
    indexed = rows.with_row_index("_row")
    candidates = indexed.filter(pl.col("judgment_id").is_in(marked.unique().implode()))
    stale = candidates.filter(
        ~pl.col("judgment_id").is_last_distinct() | pl.col("deleted")
    ).get_column("_row")
    return indexed.filter(~pl.col("_row").is_in(stale.implode())).drop("_row")


def check_project(new: pl.DataFrame, project: str) -> None:
    """A batch for `project` must not carry another project's judgments."""
    if "project" not in new.columns:
        return
    other = new.filter(pl.col("project") != project)
    if other.height:
        raise ValueError(
            f"judgment {other.item(0, 'judgment_id')}: field project is "
            f"{other.item(0, 'project')!r}, expected {project!r}"
        )


def newest_versions(new: pl.DataFrame, columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """The batch's `columns` and `source` (null when absent: the DB), one row per judgment: its
    newest `updated_at`."""
    source = pl.col("source") if "source" in new.columns else pl.lit(None)
    return (
        new.select(*[pl.col(c).cast(t) for c, t in columns.items()], source=source.cast(pl.String))
        .sort("updated_at")
        .unique("judgment_id", keep="last", maintain_order=True)
    )


def without_repeats(
    rows: pl.DataFrame,
    ledger: pl.DataFrame,
    repeated: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame],
) -> pl.DataFrame:
    """`rows` but the judgments `repeated(rows, known)` names, `known` being the ledger rows of
    the batch's judgments: a hash lookup of the batch's ids, not a join with the whole
    ledger."""
    known = ledger.filter(pl.col("judgment_id").is_in(rows.get_column("judgment_id").implode()))
    if known.height == 0:
        return rows
    return rows.join(repeated(rows, known).select("judgment_id"), on="judgment_id", how="anti")


def appended(
    ledger: pl.DataFrame,
    pending: pl.DataFrame,
    added: pl.DataFrame,
    withdrawn: pl.DataFrame,
    version: int,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(the next ledger, the next pending segment rows, the earlier versions `added` replaces):
    the ledger drops the earlier versions of `added` and the `withdrawn` rows and appends
    `added`, in place of a rewrite; the pending rows get `withdrawn`'s tombstones at `version`
    and `added`, marked where they replace a version in an older segment."""
    earlier = ledger.filter(pl.col("judgment_id").is_in(added.get_column("judgment_id").implode()))
    replaced = earlier.get_column("judgment_id")
    gone = pl.concat([replaced, withdrawn.get_column("judgment_id")])
    kept = ledger
    if gone.len():
        kept = kept.filter(~pl.col("judgment_id").is_in(gone.implode()))
    rows = added.drop("flagged").with_columns(
        replaces=pl.col("judgment_id").is_in(replaced.implode()), deleted=pl.lit(False)
    )
    tombstones = withdrawn.drop("flagged").with_columns(
        version=pl.lit(version, pl.Int64), replaces=pl.lit(True), deleted=pl.lit(True)
    )
    return (
        pl.concat([kept, added], how="vertical"),
        pl.concat([pending, tombstones, rows], how="vertical"),
        earlier,
    )


def affected_tasks(
    incoming: pl.DataFrame, gold: pl.DataFrame, replaced: pl.DataFrame, withdrawn: pl.DataFrame
) -> tuple[pl.Series, pl.Series]:
    """(every task the change touches, those that only lost votes). A new version may have
    moved a judgment to another task: the old one loses its vote."""
    voted = pl.concat(
        [
            incoming.get_column("task_id"),
            gold.get_column("task_id"),
            replaced.get_column("task_id"),
        ]
    ).unique()
    only_withdrawn = withdrawn.get_column("task_id").unique()
    only_withdrawn = only_withdrawn.filter(~only_withdrawn.is_in(voted.implode()))
    return pl.concat([voted, only_withdrawn]).unique(), only_withdrawn


def withdrawn(ledger: pl.DataFrame, new: pl.DataFrame, resynced: Collection[str]) -> pl.DataFrame:
    """Ledger rows whose newest version came from a source in `resynced` and that the new
    read of it no longer has."""
    if not resynced or ledger.height == 0:
        return ledger.head(0)
    gone = pl.col("source").is_in(list(resynced))
    if new.height:
        ids = new.get_column("judgment_id").cast(pl.String)
        gone = gone & ~pl.col("judgment_id").is_in(ids.implode())
    return ledger.filter(gone)


def deleted(ledger: pl.DataFrame, new: pl.DataFrame, tombstones: pl.DataFrame) -> pl.DataFrame:
    """Ledger rows the DB deleted: the DB gave their newest version (null `source`; a file
    that gives it still holds it) and a tombstone of theirs (`judgment_id`, `updated_at` of
    the version it deleted, `deleted_at`) deleted that version or an older one:
    `updated_at <= the tombstone's updated_at` and `< its deleted_at`. A version newer than
    the one deleted was inserted again after the deletion, even when stamped before it (a
    transaction that began before the deletion and inserted the freed key after it
    committed), and stays. A judgment of the batch (`new`) is left to replace its version. A
    tombstone read again finds its row gone, or re-inserted: it removes nothing twice."""
    if tombstones.height == 0 or ledger.height == 0:
        return ledger.head(0)
    deaths = tombstones.select("judgment_id", _version="updated_at", _deleted_at="deleted_at")
    dead = (pl.col("updated_at") <= pl.col("_version")) & (
        pl.col("updated_at") < pl.col("_deleted_at")
    )
    rows = (
        ledger.with_row_index("_row")
        .join(deaths, on="judgment_id", how="inner")
        .filter(pl.col("source").is_null() & dead)
        .unique("_row")
        .sort("_row")
        .drop("_row", "_version", "_deleted_at")
    )
    if new.height:
        rows = rows.filter(~pl.col("judgment_id").is_in(new.get_column("judgment_id").implode()))
    return rows


def gone(
    ledger: pl.DataFrame,
    new: pl.DataFrame,
    resynced: Collection[str],
    tombstones: pl.DataFrame | None,
) -> tuple[pl.DataFrame, frozenset[str]]:
    """(the ledger rows a batch withdraws, one per judgment: those a `resynced` source no
    longer holds (`withdrawn`) and those the DB deleted (`deleted`); the judgments the
    `tombstones` name that withdrew nothing: never held, already withdrawn, inserted again, or
    a file's). Both engines withdraw this way."""
    if tombstones is None or tombstones.height == 0:
        return withdrawn(ledger, new, resynced), frozenset()
    by_deletion = deleted(ledger, new, tombstones)
    rows = pl.concat([withdrawn(ledger, new, resynced), by_deletion]).unique(
        "judgment_id", maintain_order=True
    )
    named = set(tombstones.get_column("judgment_id").to_list())
    return rows, frozenset(named - set(by_deletion.get_column("judgment_id").to_list()))


ARRIVALS: dict[str, pl.DataType] = {
    "judgment_id": pl.String(),
    "updated_at": pl.Datetime("us", "UTC"),
}


def arrivals(rows: pl.DataFrame, held: pl.Series) -> pl.DataFrame:
    """(`judgment_id`, `updated_at`) of the DB's versions (null `source`) among a state's
    incoming `rows` whose judgment its ledger does not hold (`held`: the ids of the rows it
    loaded, which hold every id of the batch it has): only those can come from another
    project's state, so only those are looked for in the others (`moved`)."""
    if rows.height == 0:
        return pl.DataFrame(schema=ARRIVALS)
    db = rows.filter(pl.col("source").is_null()) if "source" in rows.columns else rows
    return (
        db.filter(~pl.col("judgment_id").is_in(held.implode()))
        .select([pl.col(c).cast(t) for c, t in ARRIVALS.items()])
        .sort("updated_at")
        .unique("judgment_id", keep="last", maintain_order=True)
    )


def moved(held: pl.DataFrame, arrivals: pl.DataFrame, project: str) -> pl.DataFrame:
    """Tombstones, in the shape of the DB's (`judgment_id`, `task_id`, `project`,
    `annotator_id`, `submitted_at`, `updated_at`, `deleted_at`), of the `held` ledger rows of
    `project` that a newer DB version filed under another project replaces (`arrivals`:
    `judgment_id`, `updated_at` of that version). A judgment's id is the DB's key whatever its
    project, so its newest version wins across projects as within one: the tombstone names
    the held version (`updated_at`) and is dated by the newer one (`deleted_at`), so `deleted`
    withdraws that version and nothing newer, like a deletion. A file's version is the file's
    to withdraw, and a held version as new as the arrival stays."""
    newer = arrivals.select(pl.col("judgment_id").cast(pl.String), _newer="updated_at")
    return (
        held.filter(pl.col("source").is_null())
        .join(newer, on="judgment_id", how="inner")
        .filter(pl.col("updated_at") < pl.col("_newer"))
        .select(
            "judgment_id",
            "task_id",
            pl.lit(project, pl.String).alias("project"),
            "annotator_id",
            "submitted_at",
            "updated_at",
            deleted_at="_newer",
        )
    )


# Id fingerprints ----------------------------------------------------------------------------
#
# Beside each ledger segment, its ids' sorted 32-bit FNV-1a hashes (4 bytes a row): whether
# another project's state holds one of a run's ids is a binary search in them, not a read of its
# id index or ledger, whose row groups random ids all fall in. Stored, so a fixed hash: polars'
# may change between its versions.


def fingerprints_key(segment_key: str) -> str:
    """The key of a ledger segment's fingerprints object, beside the segment."""
    return segment_key.removesuffix(".parquet") + ".ids.fp"


def gold_fingerprints_key(segment_key: str) -> str:
    """The key of a tasks segment's gold fingerprints (its tasks holding the DB's gold)."""
    return segment_key.removesuffix(".parquet") + ".gold.fp"


def fingerprints(ids: pl.Series) -> np.ndarray:
    """The 32-bit FNV-1a hash of each id's UTF-8 bytes."""
    if ids.len() == 0:
        return np.zeros(0, dtype=np.uint32)
    ids = ids.cast(pl.String)
    lengths = ids.str.len_bytes().to_numpy()
    width = max(int(lengths.max()), 1)
    raw = np.array(ids.cast(pl.Binary).to_list(), dtype=f"S{width}")
    codes = raw.view(np.uint8).reshape(len(raw), width)
    hashes = np.full(len(raw), 2166136261, dtype=np.uint32)
    for column in range(width):
        stepped = (hashes ^ codes[:, column]) * np.uint32(16777619)
        hashes = np.where(column < lengths, stepped, hashes)
    return hashes


def fingerprint_bytes(ids: pl.Series) -> bytes:
    """A segment's fingerprints object: its ids' hashes, sorted, distinct, little-endian."""
    return np.unique(fingerprints(ids)).astype("<u4").tobytes()


def fingerprinted(stored: bytes, hashes: np.ndarray) -> np.ndarray:
    """Which `hashes` (`fingerprints`) a fingerprints object holds: every id the segment holds,
    and about 1 in 2^32 of the others per id it holds."""
    held = np.frombuffer(stored, dtype="<u4")
    if held.size == 0:
        return np.zeros(len(hashes), dtype=bool)
    at = np.minimum(np.searchsorted(held, hashes), held.size - 1)
    return held[at] == hashes


# Gold sources ------------------------------------------------------------------------------
#
# A task's stored gold names the export files that give its answer (`gold_sources`, sorted);
# null when the DB gives it or the state was written before sources were recorded: no file
# edit withdraws that gold. The newest answer wins, as for judgments: a different answer
# replaces the gold and its sources; the same answer from one more file adds that file, and
# from the DB makes the gold the DB's.

GOLD_SOURCES = pl.List(pl.String())


def gold_batch(gold: pl.DataFrame, key: pl.Expr) -> pl.DataFrame:
    """A batch's gold, one row per task: its last row's columns (`source` left out), `_key`
    (`key`: the answer as one comparable value), `gold_sources` (the files giving that answer;
    null when the DB gives it) and `_held` (every file giving the task any gold)."""
    source = pl.col("source") if "source" in gold.columns else pl.lit(None)
    rows = gold.with_columns(_key=key, source=source.cast(pl.String))
    last = rows.unique("task_id", keep="last", maintain_order=True)
    same = rows.join(last.select("task_id", "_key"), on=["task_id", "_key"], how="semi")
    sources = same.group_by("task_id").agg(
        _db=pl.col("source").is_null().any(),
        _files=pl.col("source").drop_nulls().unique().sort(),
    )
    held = rows.group_by("task_id").agg(_held=pl.col("source").drop_nulls().unique().sort())
    return (
        last.drop("source")
        .join(sources, on="task_id", how="left", maintain_order="left")
        .join(held, on="task_id", how="left", maintain_order="left")
        .with_columns(
            gold_sources=pl.when(pl.col("_db"))
            .then(pl.lit(None, GOLD_SOURCES))
            .otherwise(pl.col("_files"))
        )
        .drop("_db", "_files")
    )


def gold_changes(batch: pl.DataFrame, known: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the rows of a batch's gold (`gold_batch`) that change the stored gold; those of them
    with a new answer). `known` is the stored gold: `task_id`, `_known_key` (its answer, as
    `_key`) and `_known` (its sources). The same answer given again changes only its sources,
    when it adds a file (both files lists) or the DB (null: the DB's)."""
    joined = batch.join(known, on="task_id", how="left", maintain_order="left")
    same = (pl.col("_known_key") == pl.col("_key")).fill_null(False)
    merged = (
        pl.when(pl.col("_known").is_null() | pl.col("gold_sources").is_null())
        .then(pl.lit(None, GOLD_SOURCES))
        .otherwise(pl.col("_known").list.concat(pl.col("gold_sources")).list.unique().list.sort())
    )
    joined = joined.with_columns(
        gold_sources=pl.when(same).then(merged).otherwise(pl.col("gold_sources"))
    )
    changed = joined.filter(~same | ~pl.col("gold_sources").eq_missing(pl.col("_known")))
    return changed, changed.filter(~same)


def gold_withdrawn(
    stored: pl.DataFrame, batch: pl.DataFrame, resynced: Collection[str]
) -> pl.DataFrame:
    """(`task_id`, `gold_sources` left) of the `stored` gold (`task_id`, `gold_sources`) that a
    `resynced` file gave and its new version (`batch`, from `gold_batch`) no longer gives: the
    files still giving it, an empty list when none does (the gold is withdrawn). Gold with
    null sources is never withdrawn by a file."""
    empty = pl.DataFrame(schema={"task_id": pl.String(), "gold_sources": GOLD_SOURCES})
    if not resynced or stored.height == 0:
        return empty
    given = stored.select("task_id", "gold_sources").filter(pl.col("gold_sources").list.len() > 0)
    exploded = given.explode("gold_sources").rename({"gold_sources": "_source"})
    still = batch.select("task_id", _source="_held").explode("_source").drop_nulls("_source")
    gone = exploded.filter(pl.col("_source").is_in(list(resynced))).join(
        still, on=["task_id", "_source"], how="anti"
    )
    if gone.height == 0:
        return empty
    left = (
        exploded.join(gone.select("task_id").unique(), on="task_id", how="semi")
        .join(gone, on=["task_id", "_source"], how="anti")
        .group_by("task_id")
        .agg(gold_sources=pl.col("_source").sort())
    )
    return (
        gone.select("task_id")
        .unique(maintain_order=True)
        .join(left, on="task_id", how="left", maintain_order="left")
        .with_columns(pl.col("gold_sources").fill_null(pl.lit([], GOLD_SOURCES)))
        .sort("task_id")
    )


def gold_deleted(stored: pl.DataFrame, batch: pl.DataFrame, deleted: pl.Series) -> pl.DataFrame:
    """(`task_id`, `gold_sources` left: empty) of the `stored` gold (`task_id`, `gold_sources`
    of the tasks holding gold) the DB gave (null sources) and deleted (`deleted`: the tasks
    of its gold tombstones), unless the batch gives the task gold again: withdrawn, as
    `gold_withdrawn` says it. Gold a file gives is that file's to withdraw."""
    gone = stored.filter(
        pl.col("gold_sources").is_null()
        & pl.col("task_id").is_in(deleted.implode())
        & ~pl.col("task_id").is_in(batch.get_column("task_id").implode())
    )
    return gone.select(pl.col("task_id"), gold_sources=pl.lit([], GOLD_SOURCES)).sort("task_id")


def gold_gone(
    held: pl.DataFrame,
    batch: pl.DataFrame,
    resynced: Collection[str],
    tombstones: pl.DataFrame | None,
) -> tuple[pl.DataFrame, frozenset[str]]:
    """(`task_id`, `gold_sources` left) of the `held` gold (`task_id`, `gold_sources` of the
    tasks holding gold) that the `resynced` files no longer give (`gold_withdrawn`) or the DB
    deleted (`tombstones`: its gold tombstones, by `task_id`; `gold_deleted`), an empty list
    where none gives it any more; and the tombstoned tasks that lost no gold by it. Both
    engines withdraw gold this way."""
    gone = gold_withdrawn(held, batch, resynced)
    if tombstones is None or tombstones.height == 0:
        return gone, frozenset()
    deleted = tombstones.get_column("task_id").cast(pl.String)
    by_deletion = gold_deleted(held, batch, deleted)
    if by_deletion.height:
        gone = pl.concat([gone, by_deletion]).unique("task_id", keep="first", maintain_order=True)
    lost = set(by_deletion.get_column("task_id").to_list())
    return gone, frozenset(set(deleted.to_list()) - lost)


# Revoked blocks ----------------------------------------------------------------------------


def due_reversals(
    reversals: pl.DataFrame,
    read: Callable[[str], bytes | None],
    *,
    by: Sequence[str],
    prefix: Callable[[tuple[Any, ...]], str],
    in_force: Callable[[tuple[Any, ...], bytes, pl.DataFrame], pl.DataFrame],
    block_id: Callable[[tuple[Any, ...], str, int], str],
    schema: Mapping[str, pl.DataType],
) -> pl.DataFrame:
    """The `reversals` (`schema`) that lift a block in force in the stored states, a state for
    each value of the `by` columns (its key), read from its small annotators table: a run loads
    and updates a state for those only, not for one already applied and read again in the
    stream's overlap, nor for a state never stored. Kept too: the reversal of the block the
    next version would decide again (a run that wrote it to the DB and did not commit,
    retried), which the update lifts once it is decided (`lift_retried`).

    `prefix(key)` is where the state is stored; `in_force(key, its annotators.parquet, its
    reversals)` the reversals of its blocks in force; `block_id(key, annotator, version)` the
    decision id of a block of the annotator decided at that version."""
    columns = list(schema)
    due = [pl.DataFrame(schema=schema)]
    groups = reversals.partition_by(list(by), as_dict=True, maintain_order=True)
    for key, mine in sorted(groups.items(), key=lambda group: group[0]):
        where = prefix(key)
        meta, data = read(f"{where}/state.json"), read(f"{where}/annotators.parquet")
        if meta is None or data is None:
            continue
        due.append(in_force(key, data, mine))
        retried = int(json.loads(meta)["version"]) + 1
        again = [block_id(key, a, retried) for a in mine["annotator_id"]]
        due.append(mine.filter(mine["decision_id"] == pl.Series(again, dtype=pl.String)))
    return pl.concat([frame.select(columns) for frame in due]).unique(maintain_order=True)


def lift_retried(
    state: State,
    actions: pl.DataFrame,
    reversals: pl.DataFrame | None,
    *,
    unblock: Callable[[State, pl.DataFrame], tuple[State, tuple[str, ...], pl.Series]],
    unblocked: tuple[str, ...],
    tasks: pl.Series,
) -> tuple[State, tuple[str, ...], pl.Series]:
    """A block this version decides again (`actions`: a retry after its DB write, before its
    commit) that the tool has revoked meanwhile (in `reversals`): lifted in the same run by
    `unblock`, not left in force. Returns `state` after it, and the annotators unblocked
    (`unblocked` so far) and their tasks (`tasks` so far) with those it lifted added."""
    if actions.height == 0 or reversals is None or reversals.height == 0:
        return state, unblocked, tasks
    retried = reversals.filter(pl.col("decision_id").is_in(actions["decision_id"].implode()))
    state, late, late_tasks = unblock(state, retried)
    return state, (*unblocked, *late), pl.concat([tasks, late_tasks])


__all__ = [
    "ARRIVALS",
    "GOLD_SOURCES",
    "affected_tasks",
    "appended",
    "arrivals",
    "check_project",
    "deleted",
    "due_reversals",
    "fingerprint_bytes",
    "fingerprinted",
    "fingerprints",
    "fingerprints_key",
    "gold_batch",
    "gold_changes",
    "gold_deleted",
    "gold_fingerprints_key",
    "gold_gone",
    "gold_withdrawn",
    "gone",
    "group_ending",
    "level",
    "lift_retried",
    "merged_rows",
    "moved",
    "newest_versions",
    "parquet",
    "resolved",
    "segment_key",
    "withdrawn",
    "without_repeats",
]
