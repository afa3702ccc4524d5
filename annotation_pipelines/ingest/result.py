"""What one ingest returns, and how staged rows become the canonical tables."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from annotation_pipelines.ingest.validation import (
    INVALID_PROJECT,
    parse_utc,
    safe_project,
    validate,
)
from annotation_pipelines.kinds import KIND_COLUMNS
from annotation_pipelines.scale import RatingScale
from annotation_pipelines.schema import (
    GOLD_LABELS,
    JUDGMENTS,
    QUARANTINE,
    RAW_TASKS,
    conform,
    empty,
)
from annotation_pipelines.tabular import InputError


class UnreadableFileError(InputError):
    """The whole file could not be read; the message names it. Retry it on the next run."""


# What the messages say of a quarantined row beyond the lake's columns: `where` it is in a
# source whose rows a line cannot name (a Label Studio task and annotation), and the `message`
# of a value refused for its shape, as the other commands print it. Never written to the lake.
DETAILS: dict[str, pl.DataType] = {"where": pl.String(), "message": pl.String()}


@dataclass(frozen=True)
class IngestResult:
    """The canonical tables read from one or more files, and their reconciliation.

    A *row* is one submission: a Label Studio annotation (ground-truth annotations become
    gold labels, cancelled ones are quarantined with reason ``cancelled`` so nothing read
    vanishes), a SageMaker worker response or consolidated label, a line of a table, a row of
    the annotation database. A line that cannot be parsed at all counts as one row.
    `rows_read == rows_loaded + rows_quarantined` always holds: `rows_loaded` counts judgments
    and gold labels, duplicates are quarantined copies and are also counted in `duplicates`.
    Tasks are the context of the rows and are not counted.
    """

    judgments: pl.DataFrame
    tasks: pl.DataFrame
    gold: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    files: tuple[str, ...] = field(default=())
    # The DETAILS of the first `details.height` quarantined rows, row for row (rows set aside
    # later are appended to the quarantine, with none); None when no row has any.
    details: pl.DataFrame | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Counted by the parser before validation: a row validation dropped would show here.
        if self.rows_read != self.rows_loaded + self.rows_quarantined:
            raise ValueError(
                f"reconciliation failed for {', '.join(self.files) or 'ingest'}: read "
                f"{self.rows_read} != loaded {self.rows_loaded} + quarantined "
                f"{self.rows_quarantined}"
            )

    def quarantine_details(self) -> pl.DataFrame:
        """DETAILS of every quarantined row, row for row with `quarantine` (nulls where none)."""
        known = self.details if self.details is not None else empty(DETAILS)
        missing = self.quarantine.height - known.height
        if missing <= 0:
            return known.head(self.quarantine.height)
        return pl.concat([known, pl.DataFrame({n: [None] * missing for n in DETAILS}, DETAILS)])

    @property
    def rows_loaded(self) -> int:
        return self.judgments.height + self.gold.height

    @property
    def rows_quarantined(self) -> int:
        return self.quarantine.height

    @property
    def duplicates(self) -> int:
        return int((self.quarantine.get_column("reason") == "duplicate").sum())

    @property
    def reasons(self) -> dict[str, int]:
        counts = Counter(self.quarantine.get_column("reason").to_list())
        return dict(sorted(counts.items()))

    def summary(self) -> dict[str, object]:
        """The reconciliation as a JSON-ready dict (the CLI output and asset metadata)."""
        return {
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "duplicates": self.duplicates,
            "reasons": self.reasons,
            "judgments": self.judgments.height,
            "gold_labels": self.gold.height,
            "tasks": self.tasks.height,
            "files": len(self.files),
        }


def combine(results: Iterable[IngestResult]) -> IngestResult:
    """One result for many files (a folder, a sensor tick)."""
    results = list(results)
    if not results:
        return IngestResult(
            empty(JUDGMENTS), empty(RAW_TASKS), empty(GOLD_LABELS), empty(QUARANTINE), 0
        )

    def stack(frames: list[pl.DataFrame], table: dict[str, pl.DataType]) -> pl.DataFrame:
        frames = [frame.select(list(table)) for frame in frames if frame.height]
        return pl.concat(frames) if frames else empty(table)

    details = None
    if any(r.details is not None for r in results):
        details = pl.concat([r.quarantine_details() for r in results])
    return IngestResult(
        judgments=stack([r.judgments for r in results], JUDGMENTS),
        tasks=stack([r.tasks for r in results], RAW_TASKS),
        gold=stack([r.gold for r in results], GOLD_LABELS),
        quarantine=stack([r.quarantine for r in results], QUARANTINE),
        rows_read=sum(r.rows_read for r in results),
        files=tuple(f for r in results for f in r.files),
        details=details,
    )


def sha256_text(column: pl.Expr) -> pl.Expr:
    """Content hash of the task payload (stable across runs and library versions)."""
    return column.map_batches(
        lambda series: pl.Series(
            [None if v is None else hashlib.sha256(v.encode()).hexdigest() for v in series],
            dtype=pl.String,
        ),
        return_dtype=pl.String,
    )


def assemble(
    *,
    staged_judgments: pl.DataFrame,
    staged_gold: pl.DataFrame | None = None,
    staged_tasks: pl.DataFrame | None = None,
    preset_quarantine: pl.DataFrame | None = None,
    label_set: list[str] | None,
    scale: RatingScale | None = None,
    now: datetime | None,
    max_field_bytes: int,
    source: str,
    source_file: str,
) -> IngestResult:
    """Validate staged rows and build the canonical tables with provenance."""
    provenance = {
        "source": pl.lit(source, pl.String),
        "source_file": pl.lit(source_file, pl.String),
    }
    good, quarantined = validate(
        staged_judgments,
        label_set=label_set,
        scale=scale,
        now=now,
        max_field_bytes=max_field_bytes,
        source=source,
        source_file=source_file,
    )
    judgments = conform(
        good.select(
            judgment_id=pl.col("judgment_id").cast(pl.String),
            task_id=pl.col("task_id").cast(pl.String),
            project=pl.col("project").cast(pl.String),
            annotator_id=pl.col("annotator_id").cast(pl.String),
            label=pl.col("label").cast(pl.String),
            submitted_at=pl.col("_submitted"),
            duration_s=pl.col("_duration"),
            **provenance,
            source_line=pl.col("source_line").cast(pl.Int64),
            **_kind_columns(good),
        ),
        JUDGMENTS,
        name="judgments",
    )
    quarantines = [quarantined]
    details = [_details(staged_judgments, good, quarantined)]
    gold = empty(GOLD_LABELS)
    if staged_gold is not None and staged_gold.height:
        good_gold, bad_gold = validate(
            staged_gold,
            label_set=label_set,
            scale=scale,
            now=now,
            max_field_bytes=max_field_bytes,
            duplicate_key=("task_id",),
            required=("task_id", "label", "submitted_at"),
            table="gold_labels",
            source=source,
            source_file=source_file,
        )
        gold = conform(
            good_gold.select(
                task_id=pl.col("task_id").cast(pl.String),
                project=pl.col("project").cast(pl.String),
                label=pl.col("label").cast(pl.String),
                updated_at=pl.col("_submitted"),
                **provenance,
                source_line=pl.col("source_line").cast(pl.Int64),
                **_kind_columns(good_gold),
            ),
            GOLD_LABELS,
            name="gold_labels",
        )
        quarantines.append(bad_gold)
        details.append(_details(staged_gold, good_gold, bad_gold))
    if preset_quarantine is not None and preset_quarantine.height:
        quarantines.append(preset_quarantine.select(list(QUARANTINE)))
    quarantine = pl.concat([q.cast(pl.Schema(QUARANTINE)) for q in quarantines])
    tasks = build_tasks(staged_tasks, judgments, gold, source=source, source_file=source_file)
    rows_read = staged_judgments.height
    rows_read += 0 if staged_gold is None else staged_gold.height
    rows_read += 0 if preset_quarantine is None else preset_quarantine.height
    return IngestResult(
        judgments,
        tasks,
        gold,
        quarantine,
        rows_read,
        files=(source_file,),
        details=pl.concat(details),
    )


def _details(staged: pl.DataFrame, good: pl.DataFrame, quarantined: pl.DataFrame) -> pl.DataFrame:
    """DETAILS of the `quarantined` rows of `staged` (validation keeps them in staged order,
    and the rows it kept carry their `_order`): where a Label Studio row is (its task's place,
    id and line, its annotation's place and id, when staged), and the parser's message where
    the row was refused for the value it described."""
    if not quarantined.height:
        return empty(DETAILS)
    kept = good.get_column("_order").implode()
    bad = staged.with_row_index("_order").filter(~pl.col("_order").is_in(kept))

    def column(name: str) -> pl.Expr:
        return pl.col(name) if name in bad.columns else pl.lit(None, pl.String)

    def shown(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String).fill_null("none")

    where = pl.lit(None, pl.String)
    if {"task_place", "annotation_place", "annotation_id"} <= set(bad.columns):
        task = pl.when(pl.col("task_place").is_not_null()).then(pl.format("task {} ", "task_place"))
        where = pl.format(
            "{}(id {}, line {}), annotation {} (id {})",
            task.otherwise(pl.lit("task ")),
            shown("task_id"),
            shown("source_line"),
            shown("annotation_place"),
            shown("annotation_id"),
        )
    refused_field = pl.coalesce(column("error_field"), pl.lit("label"))
    return bad.select(
        where=where,
        message=pl.when(pl.Series(quarantined.get_column("field")) == refused_field)
        .then(column("label_error"))
        .cast(pl.String),
    )


def _kind_columns(frame: pl.DataFrame) -> dict[str, pl.Expr]:
    """The kind columns the staged rows carry, cast to their canonical types (the rest are
    filled by `conform`)."""
    return {
        name: pl.col(name).cast(dtype)
        for name, dtype in KIND_COLUMNS.items()
        if name in frame.columns
    }


def build_tasks(
    staged_tasks: pl.DataFrame | None,
    judgments: pl.DataFrame,
    gold: pl.DataFrame,
    *,
    source: str,
    source_file: str,
) -> pl.DataFrame:
    """Tasks as exported, or derived from the judgments when the source has no task list.

    A task's `created_at` falls back to its first valid judgment, then its gold label, when
    the export does not say. A task with none of them (not judged yet, or every judgment
    quarantined) keeps a null `created_at`: it is still what the export holds, but it has no
    day, so staging leaves it out (`assets/sources/assets.py:stage`).
    """
    first_seen = judgments.group_by("task_id").agg(
        _first=pl.col("submitted_at").min(), _line=pl.col("source_line").min()
    )
    gold_seen = gold.group_by("task_id").agg(_gold=pl.col("updated_at").min())
    if staged_tasks is None:
        staged_tasks = judgments.group_by("task_id", maintain_order=True).agg(
            project=pl.col("project").first(),
            payload=pl.lit(None, pl.String),
            created_at=pl.lit(None, pl.String),
            source_line=pl.col("source_line").min(),
        )
    # A task whose project is not a safe name never becomes a path; its judgments are
    # quarantined with reason invalid_project by validation.
    staged_tasks = staged_tasks.filter(
        pl.col("task_id").is_not_null() & safe_project(pl.col("project").cast(pl.String))
    ).unique("task_id", keep="first", maintain_order=True)
    staged_tasks = parse_utc(
        staged_tasks, "created_at", parsed="_created", has_timezone="_tz", naive="_naive"
    )
    tasks = (
        staged_tasks.with_columns(task_id=pl.col("task_id").cast(pl.String))
        .join(first_seen, on="task_id", how="left")
        .join(gold_seen, on="task_id", how="left")
        .select(
            task_id=pl.col("task_id"),
            project=pl.col("project").cast(pl.String),
            payload=pl.col("payload").cast(pl.String),
            payload_hash=sha256_text(pl.col("payload").cast(pl.String)),
            created_at=pl.coalesce("_created", "_first", "_gold"),
            is_gold=pl.col("task_id").is_in(gold.get_column("task_id").implode()),
            source=pl.lit(source, pl.String),
            source_file=pl.lit(source_file, pl.String),
            source_line=pl.col("source_line").cast(pl.Int64),
        )
    )
    return conform(tasks, RAW_TASKS, name="raw_tasks")


def dated_before(column: str, start_date: str) -> pl.Expr:
    """Whether `column`'s timestamp falls on a UTC day before `start_date` (YYYY-MM-DD); a row
    with no date is not before anything."""
    cutoff = pl.lit(datetime.fromisoformat(start_date).date())
    return (pl.col(column).dt.date() < cutoff).fill_null(False)


def set_aside_before(result: IngestResult, start_date: str) -> IngestResult:
    """`result` with its judgments and gold labels dated before `start_date` (YYYY-MM-DD,
    UTC: the platform's first partition) moved to the quarantine, reason
    `before_start_date (<start_date>)`: no daily partition would ever hold them, and staged on
    their own day they would vanish without a word. A task dated before it moves to its first
    day in range, or has no day when nothing of it is left. `result` itself when nothing is
    before the start date."""
    reason = f"before_start_date ({start_date})"
    tables = (
        ("judgments", result.judgments, "submitted_at"),
        ("gold_labels", result.gold, "updated_at"),
    )
    early = [
        (name, frame.filter(dated_before(column, start_date)), column)
        for name, frame, column in tables
    ]
    if not any(frame.height for _, frame, _ in early):
        return result
    judgments = result.judgments.filter(~dated_before("submitted_at", start_date))
    gold = result.gold.filter(~dated_before("updated_at", start_date))
    set_aside = [
        _set_aside(frame, table=name, field=column, reason=reason)
        for name, frame, column in early
        if frame.height
    ]
    first = (
        pl.concat(
            [
                judgments.select("project", "task_id", _at=pl.col("submitted_at")),
                gold.select("project", "task_id", _at=pl.col("updated_at")),
            ]
        )
        .group_by("project", "task_id")
        .agg(_first=pl.col("_at").min())
    )
    tasks = (
        result.tasks.join(first, on=["project", "task_id"], how="left", nulls_equal=True)
        .with_columns(
            created_at=pl.when(dated_before("created_at", start_date))
            .then(pl.col("_first"))
            .otherwise(pl.col("created_at"))
        )
        .drop("_first")
    )
    quarantine = pl.concat([result.quarantine, *set_aside])
    return IngestResult(
        judgments, tasks, gold, quarantine, result.rows_read, result.files, result.details
    )


def _set_aside(
    frame: pl.DataFrame, *, table: str, field: str | pl.Expr, reason: str
) -> pl.DataFrame:
    """`frame`'s rows (of canonical table `table`) as quarantine rows, each whole in `raw`:
    `field` names what is wrong (a column's name, or an expression naming it row by row)."""
    return frame.select(
        table=pl.lit(table, pl.String),
        source=pl.col("source"),
        source_file=pl.col("source_file"),
        source_line=pl.col("source_line"),
        field=pl.lit(field, pl.String) if isinstance(field, str) else field,
        reason=pl.lit(reason, pl.String),
        raw=_raw_row(),
    ).cast(pl.Schema(QUARANTINE))


def _raw_row() -> pl.Expr:
    """A set-aside row as JSON: list and struct values (labels, rankings, spans, boxes) as JSON
    values, which no cast to text can hold."""
    return pl.struct(pl.all()).struct.json_encode()


def set_aside_case_twins(result: IngestResult, known: Iterable[str] = ()) -> IngestResult:
    """`result` with every judgment and gold label whose project differs only in case from a
    `known` project (one already in the lake) or from a project of a row before it (file by
    file, line by line) moved to the quarantine, reason `invalid_project`, its field naming the
    other project: on a case-insensitive disk (macOS, Windows) the two would share one folder.
    Their tasks go with them. `result` itself when no row is such a twin."""
    tables = (("judgments", result.judgments), ("gold_labels", result.gold))
    order = {name: n for n, name in enumerate(result.files)}
    rows = pl.concat(
        [
            frame.select(
                "project",
                _file=pl.col("source_file").replace_strict(order, default=len(order)),
                _line=pl.col("source_line"),
            )
            for _, frame in tables
        ]
    )
    # The first spelling of each case-folded name holds it: the lake's, else the input's first.
    # Twins the lake already holds (staged before this check) stay: moving them would not
    # make them one folder.
    lake = set(known)
    holder = {name.casefold(): name for name in sorted(lake, reverse=True)}
    first_seen = (
        rows.drop_nulls("project")
        # The name breaks ties where rows carry no line (a DB extract's), so the winner does
        # not depend on the order the database returned them in.
        .sort("_file", "_line", "project", nulls_last=True)
        .unique("project", keep="first", maintain_order=True)
    )
    for project in first_seen.get_column("project").to_list():
        holder.setdefault(project.casefold(), project)
    twins = {
        project: holder[project.casefold()]
        for project in rows.get_column("project").drop_nulls().unique().to_list()
        if project not in lake and holder[project.casefold()] != project
    }
    if not twins:
        return result
    named = pl.col("project").replace_strict(
        {p: f"project (differs only in case from project {h!r})" for p, h in twins.items()},
        default=None,
        return_dtype=pl.String,
    )
    twin = pl.col("project").is_in(list(twins))
    set_aside = [
        _set_aside(frame.filter(twin), table=name, field=named, reason=INVALID_PROJECT)
        for name, frame in tables
    ]
    quarantine = pl.concat([result.quarantine, *set_aside])
    return IngestResult(
        result.judgments.filter(~twin),
        result.tasks.filter(~twin.fill_null(False)),
        result.gold.filter(~twin),
        quarantine,
        result.rows_read,
        result.files,
        result.details,
    )
