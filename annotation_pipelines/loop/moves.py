"""Rows the annotation DB re-files: a judgment or a gold label moved to another project, given
another kind, or both, counted once, in the state where the DB has it now.

The DB keys a judgment by its `judgment_id` and a gold label by its `task_id`, whatever their
project and kind, and the daily layers keep the newest version of each. The live layer keeps
one state per project (categorical, `loop.live`) and one per project and kind
(`loop.live_kinds`), so a row the tool re-filed (`UPDATE judgments SET project = ..., kind =
...`) arrives in one state while an older version sits in another. Each state is a key
(`project`, `kind`), `kind` null for the categorical one.

A state's arrivals are the DB's rows of its batch whose key it does not hold (a row it holds
replaces its own version). They are looked up in every other stored state: a judgment in its
ledger segments' id fingerprints (`.ids.fp`, 4 bytes a row) before any id index, a gold label in
the tasks segments' row groups (categorical) or the small gold table (kinds). What another
state holds becomes a tombstone of the DB's shape, so each engine withdraws it exactly as it
withdraws a deleted row (`ledger.deleted`, `ledger.gold_deleted`): a judgment's tombstone names
the version held and is dated by the newer one, so a version as new as the arrival stays; a
file's version or gold is the file's to withdraw.

A row can also leave for no state: a DB tombstone and a numeric row the extract set aside as
off its project's scale name the row's project now, whose states withdraw it themselves (the
categorical one takes every tombstone, the kind states those of ids they hold), while the
version folded before may sit in another project's state, or, for a vote given an off-scale
numeric answer, in its own project's categorical one. These departures are looked up in the
same way, each in every state but those that withdraw it already, and dated as the tombstone
is: the version deleted, or the off-scale version read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import polars as pl

from annotation_pipelines.ingest.postgres import GOLD_DELETIONS
from annotation_pipelines.loop import ledger as lake_ledger
from annotation_pipelines.loop.live import (
    MOVED,
    LiveState,
    OpenSegment,
    moved_away,
    moved_gold_away,
    stored_state,
)
from annotation_pipelines.loop.live_kinds import (
    KindState,
    held_db_gold,
    load_kind_state,
    may_hold,
)

# A judgment's DB version arriving in the state (`project`, `kind`; null kind: categorical).
ARRIVING: dict[str, pl.DataType] = {
    **lake_ledger.ARRIVALS,
    "project": pl.String(),
    "kind": pl.String(),
}
# A task whose DB gold arrives in the state (`project`, `kind`).
GOLD_ARRIVING: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "kind": pl.String(),
}
# A judgment's DB version leaving for no state (deleted, or set aside off its project's scale):
# looked up in every state of another project and, with `own_categorical`, in its own
# project's categorical state, which takes no off-scale tombstone.
DEPARTING: dict[str, pl.DataType] = {
    **lake_ledger.ARRIVALS,
    "project": pl.String(),
    "own_categorical": pl.Boolean(),
}
# A task whose DB gold leaves for no state, looked up the same way.
GOLD_DEPARTING: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "own_categorical": pl.Boolean(),
}
KIND_MOVED: dict[str, pl.DataType] = {**MOVED, "kind": pl.String()}
KIND_GOLD_MOVED: dict[str, pl.DataType] = {**GOLD_DELETIONS, "kind": pl.String()}


def _from_db(frame: pl.DataFrame) -> pl.DataFrame:
    """The DB's rows of a batch (null `source`: a file's rows are the file's)."""
    return frame.filter(pl.col("source").is_null()) if "source" in frame.columns else frame


def _of(frame: pl.DataFrame, project: str, kind: str | None) -> pl.DataFrame:
    if frame.height == 0:
        return frame
    mine = frame.filter(pl.col("project") == project)
    if kind is not None:
        mine = mine.filter(pl.col("kind") == kind)
    return mine


def _keyed(frame: pl.DataFrame, project: str, kind: str | None) -> pl.DataFrame:
    return frame.with_columns(project=pl.lit(project, pl.String), kind=pl.lit(kind, pl.String))


def judgment_arrivals(
    states: Mapping[str, LiveState],
    judgments: pl.DataFrame,
    kind_states: Mapping[tuple[str, str], KindState],
    kind_judgments: pl.DataFrame,
) -> pl.DataFrame:
    """(`ARRIVING`) The DB's judgments of the batch that the loaded state of their project and
    kind does not hold: categorical rows (`judgments`, with `project`) in `states`, the other
    kinds' (`kind_judgments`, with `project` and `kind`) in `kind_states`. A loaded state holds
    every stored version of its batch's judgments (the rows of their tasks, found by id)."""
    parts = [pl.DataFrame(schema=ARRIVING)]
    for project, state in sorted(states.items()):
        mine = _of(judgments, project, None)
        found = lake_ledger.arrivals(mine, state.ledger.get_column("judgment_id"))
        parts.append(_keyed(found, project, None))
    for (project, kind), kind_state in sorted(kind_states.items()):
        mine = _of(kind_judgments, project, kind)
        found = lake_ledger.arrivals(mine, kind_state.ledger.get_column("judgment_id"))
        parts.append(_keyed(found, project, kind))
    return pl.concat(parts).cast(pl.Schema(ARRIVING))


def gold_arrivals(
    states: Mapping[str, LiveState],
    gold: pl.DataFrame,
    kind_states: Mapping[tuple[str, str], KindState],
    kind_gold: pl.DataFrame,
) -> pl.DataFrame:
    """(`GOLD_ARRIVING`) The tasks of the DB's gold of the batch whose loaded state (its
    project and kind) does not hold the DB's gold on them already: categorical `gold` in
    `states` (their tasks rows, loaded for the batch's gold), the other kinds' `kind_gold` in
    `kind_states` (whole)."""
    parts = [pl.DataFrame(schema=GOLD_ARRIVING)]
    for project, state in sorted(states.items()):
        mine = _from_db(_of(gold, project, None))
        held = state.tasks.filter(
            pl.col("gold").is_not_null() & pl.col("gold_sources").is_null()
        ).get_column("task_id")
        parts.append(_arriving_gold(mine, held, project, None))
    for (project, kind), kind_state in sorted(kind_states.items()):
        mine = _from_db(_of(kind_gold, project, kind))
        held = kind_state.gold.filter(pl.col("gold_sources").is_null()).get_column("task_id")
        parts.append(_arriving_gold(mine, held, project, kind))
    return pl.concat(parts).cast(pl.Schema(GOLD_ARRIVING))


def _arriving_gold(
    mine: pl.DataFrame, held: pl.Series, project: str, kind: str | None
) -> pl.DataFrame:
    if mine.height == 0:
        return pl.DataFrame(schema=GOLD_ARRIVING)
    tasks = mine.select(pl.col("task_id").cast(pl.String)).unique(maintain_order=True)
    return _keyed(tasks.filter(~pl.col("task_id").is_in(held.implode())), project, kind)


def _not_of(frame: pl.DataFrame, project: str, kind: str | None) -> pl.DataFrame:
    """The arrivals of every state but (`project`, `kind`): those it may hold an older
    version of."""
    return frame.filter(~((pl.col("project") == project) & pl.col("kind").eq_missing(kind)))


def departures(
    deleted: pl.DataFrame, off_scale: pl.DataFrame, schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """(`schema`: `DEPARTING` or `GOLD_DEPARTING`) The run's DB tombstones (`deleted`) and its
    rows set aside off their project's scale (`off_scale`, as tombstones of the DB's shape),
    each dated by the version it names. The categorical state of a tombstone's project takes
    it already; that of an off-scale row's project does not."""
    columns = [c for c in schema if c != "own_categorical"]
    return pl.concat(
        [
            pl.DataFrame(schema=schema),
            *(
                frame.select(columns).with_columns(own_categorical=pl.lit(own))
                for frame, own in ((deleted, False), (off_scale, True))
                if frame.height
            ),
        ],
        how="vertical_relaxed",
    ).cast(pl.Schema(schema))


def _departing(frame: pl.DataFrame, project: str, *, categorical: bool) -> pl.DataFrame:
    """The departures a state of `project` may hold an older version of: another project's,
    and, for its categorical state, its own off-scale rows."""
    if frame.height == 0:
        return frame
    others = pl.col("project") != project
    if categorical:
        others = others | pl.col("own_categorical")
    return frame.filter(others)


def _theirs(arriving: pl.DataFrame, departing: pl.DataFrame) -> pl.DataFrame:
    """Arrivals and departures as one `ARRIVALS` frame, the newest version of each id."""
    if departing.height == 0:
        return arriving.select(list(lake_ledger.ARRIVALS))
    rows = pl.concat(
        [arriving.select(list(lake_ledger.ARRIVALS)), departing.select(list(lake_ledger.ARRIVALS))]
    )
    return rows.sort("updated_at").unique("judgment_id", keep="last", maintain_order=True)


def _tasks(golden: pl.DataFrame, departing: pl.DataFrame) -> pl.Series:
    """The tasks of arriving and departing gold as one series."""
    tasks = golden.get_column("task_id")
    if departing.height == 0:
        return tasks
    return pl.concat([tasks, departing.get_column("task_id")])


@dataclass(frozen=True)
class Moves:
    """The tombstones of what the other states hold of a batch's arrivals: `judgments` and
    `gold` for the categorical engine (the DB's shapes, `MOVED` and `GOLD_DELETIONS`), and
    `kind_judgments` / `kind_gold` for the kind states (the same with the holder's `kind`),
    with `kind_states`: the kind states loaded for them that the run had not loaded."""

    judgments: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MOVED))
    gold: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=GOLD_DELETIONS))
    kind_judgments: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=KIND_MOVED))
    kind_gold: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=KIND_GOLD_MOVED))
    kind_states: dict[tuple[str, str], KindState] = field(default_factory=dict)

    @property
    def projects(self) -> set[str]:
        """The projects whose categorical state loses a judgment or gold."""
        return set(self.judgments["project"].unique()) | set(self.gold["project"].unique())


def moved(
    states: Mapping[str, LiveState],
    judgments: pl.DataFrame,
    gold: pl.DataFrame,
    kind_states: Mapping[tuple[str, str], KindState],
    kind_judgments: pl.DataFrame,
    kind_gold: pl.DataFrame,
    *,
    projects: Collection[str],
    index: Mapping[str, Collection[str]],
    read: Callable[[str], bytes | None],
    open_segment: OpenSegment | None = None,
    departing: pl.DataFrame | None = None,
    departing_gold: pl.DataFrame | None = None,
) -> Moves:
    """What the stored states hold of the judgments and gold the batch files under another
    state (`judgment_arrivals`, `gold_arrivals`), as tombstones for the states holding it: the
    categorical states of `projects` and the kind states of `index` (project → kinds), each
    looked in for the arrivals of every state but itself. A categorical state is read through
    its segments (`moved_away`, `moved_gold_away`); a kind state not loaded yet is read only
    where its fingerprints or gold table may hold one, and then loaded whole. `departing` /
    `departing_gold` (`DEPARTING`, `GOLD_DEPARTING`: `departures`) are looked up in every state
    but those of their own project (its categorical one too for an off-scale row)."""
    arriving = judgment_arrivals(states, judgments, kind_states, kind_judgments)
    golden = gold_arrivals(states, gold, kind_states, kind_gold)
    leaving = pl.DataFrame(schema=DEPARTING) if departing is None else departing
    leaving_gold = pl.DataFrame(schema=GOLD_DEPARTING) if departing_gold is None else departing_gold
    if not (arriving.height or golden.height or leaving.height or leaving_gold.height):
        return Moves()
    tombstones, gold_tombstones = (
        [pl.DataFrame(schema=MOVED)],
        [pl.DataFrame(schema=GOLD_DELETIONS)],
    )
    for project in sorted(projects):
        theirs = _theirs(
            _not_of(arriving, project, None), _departing(leaving, project, categorical=True)
        )
        tasks = _tasks(
            _not_of(golden, project, None), _departing(leaving_gold, project, categorical=True)
        )
        stored = stored_state(project, read, open_segment) if theirs.height or tasks.len() else None
        if stored is None:
            continue
        tombstones.append(moved_away(project, read, theirs, stored=stored))
        gold_tombstones.append(moved_gold_away(project, read, tasks, stored=stored))
    kind_tombstones = [pl.DataFrame(schema=KIND_MOVED)]
    kind_gold_tombstones = [pl.DataFrame(schema=KIND_GOLD_MOVED)]
    loaded: dict[tuple[str, str], KindState] = {}
    held = {(p, k) for p, kinds in index.items() for k in kinds} | set(kind_states)
    for project, kind in sorted(held):
        theirs = _theirs(
            _not_of(arriving, project, kind), _departing(leaving, project, categorical=False)
        )
        tasks = _tasks(
            _not_of(golden, project, kind), _departing(leaving_gold, project, categorical=False)
        )
        holder = kind_states.get((project, kind))
        if holder is None:
            judged = theirs.height > 0 and may_hold(
                project, kind, theirs.get_column("judgment_id"), read
            )
            if not judged and not (
                tasks.len() > 0 and tasks.is_in(held_db_gold(project, kind, read).implode()).any()
            ):
                continue
            holder = loaded[(project, kind)] = load_kind_state(project, kind, read)
        found = lake_ledger.moved(holder.ledger, theirs, project)
        kind_tombstones.append(found.with_columns(kind=pl.lit(kind, pl.String)))
        kind_gold_tombstones.append(
            holder.gold.filter(
                pl.col("gold_sources").is_null() & pl.col("task_id").is_in(tasks.implode())
            ).select(
                "task_id",
                project=pl.lit(project, pl.String),
                label=pl.lit(None, GOLD_DELETIONS["label"]),
                updated_at=pl.lit(None, GOLD_DELETIONS["updated_at"]),
                deleted_at=pl.lit(None, GOLD_DELETIONS["deleted_at"]),
                kind=pl.lit(kind, pl.String),
            )
        )
    return Moves(
        judgments=pl.concat(tombstones).cast(pl.Schema(MOVED)),
        gold=pl.concat(gold_tombstones).cast(pl.Schema(GOLD_DELETIONS)),
        kind_judgments=pl.concat(kind_tombstones).cast(pl.Schema(KIND_MOVED)),
        kind_gold=pl.concat(kind_gold_tombstones).cast(pl.Schema(KIND_GOLD_MOVED)),
        kind_states=loaded,
    )


__all__ = [
    "ARRIVING",
    "DEPARTING",
    "GOLD_ARRIVING",
    "GOLD_DEPARTING",
    "KIND_GOLD_MOVED",
    "KIND_MOVED",
    "Moves",
    "departures",
    "gold_arrivals",
    "judgment_arrivals",
    "moved",
]
