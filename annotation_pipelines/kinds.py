"""Annotation kinds and their canonical value columns (the shared contract of every kind).

A judgment (and a gold label) has one `kind`; its value lives in that kind's column(s), the
other kinds' columns are null. Values are typed Arrow lists and structs, never JSON text, so
Polars and DuckDB read them directly:

| kind        | column(s)                 | dtype                                             |
|-------------|---------------------------|---------------------------------------------------|
| categorical | label                     | String                                            |
| multilabel  | labels                    | List(String)                                      |
| numeric     | value                     | Float64 (Likert and ordinal as numeric codes)     |
| ranking     | ranking                   | List(String), item ids best first                 |
| pairwise    | left, right, winner       | String, String, String in {left, right, tie}      |
| spans       | spans                     | List(SPAN): character offsets, end exclusive      |
| boxes       | boxes                     | List(BOX)                                         |
| text        | text                      | String                                            |

Boxes carry two companions: `coordinates` ("pixel" or "percent" of the image size, one value
per judgment) with `image_width`/`image_height` (pixels, where the source gives them), and
`polygons` (the exact outline of a polygon region, whose bounding box is also in `boxes`).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import polars as pl

KINDS: tuple[str, ...] = (
    "categorical",
    "multilabel",
    "numeric",
    "ranking",
    "pairwise",
    "spans",
    "boxes",
    "text",
)
DEFAULT_KIND = "categorical"
# Kinds whose judgment is an annotator's whole markup of the task (every span, every box): their
# models pair each annotator's regions with the others', so a second judgment by the same
# annotator is a re-submission that replaces the first, never a second vote.
ONE_JUDGMENT_PER_ANNOTATOR: tuple[str, ...] = ("spans", "boxes")
WINNERS: tuple[str, ...] = ("left", "right", "tie")
COORDINATE_UNITS: tuple[str, ...] = ("pixel", "percent")

SPAN = pl.Struct({"start": pl.Int64, "end": pl.Int64, "label": pl.String})
BOX = pl.Struct(
    {
        "label": pl.String,
        "x_min": pl.Float64,
        "y_min": pl.Float64,
        "x_max": pl.Float64,
        "y_max": pl.Float64,
    }
)
POINT = pl.Struct({"x": pl.Float64, "y": pl.Float64})
POLYGON = pl.Struct({"label": pl.String, "points": pl.List(POINT)})

VALUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "categorical": ("label",),
    "multilabel": ("labels",),
    "numeric": ("value",),
    "ranking": ("ranking",),
    "pairwise": ("left", "right", "winner"),
    "spans": ("spans",),
    "boxes": ("boxes",),
    "text": ("text",),
}
VALUE_DTYPES: dict[str, pl.DataType] = {
    "label": pl.String(),
    "labels": pl.List(pl.String()),
    "value": pl.Float64(),
    "ranking": pl.List(pl.String()),
    "left": pl.String(),
    "right": pl.String(),
    "winner": pl.String(),
    "spans": pl.List(SPAN),
    "boxes": pl.List(BOX),
    "text": pl.String(),
}
# Context of a value that is not itself the value: where boxes are measured, the polygon
# outlines behind polygon boxes, and which control of the annotation tool produced it.
CONTEXT_DTYPES: dict[str, pl.DataType] = {
    "polygons": pl.List(POLYGON),
    "coordinates": pl.String(),
    "image_width": pl.Float64(),
    "image_height": pl.Float64(),
    "control": pl.String(),
}
# The context of a box: the unit of its coordinates and the size of the image they measure.
BOX_CONTEXT: tuple[str, ...] = ("coordinates", "image_width", "image_height")
# Every column a kind adds to the judgments and gold tables, in table order.
KIND_COLUMNS: dict[str, pl.DataType] = {
    "kind": pl.String(),
    **{name: dtype for name, dtype in VALUE_DTYPES.items() if name != "label"},
    **CONTEXT_DTYPES,
}


FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

# Characters that show nothing and are not whitespace to `str.strip`: an answer of only these
# and whitespace (a stray keystroke, a pasted zero-width space) is blank, no answer.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_BLANK = re.compile(rf"[\s{_INVISIBLE}]*")
_BLANK_PATTERN = r"^[\s\x{200B}\x{200C}\x{200D}\x{2060}\x{FEFF}]*$"


def blank(text: str) -> bool:
    """Whether `text` is empty or only whitespace and zero-width characters."""
    return _BLANK.fullmatch(text) is not None


def blank_text(text: pl.Expr) -> pl.Expr:
    """`blank` over a String column (null stays null)."""
    return text.str.contains(_BLANK_PATTERN)


def of_kind(frame: FrameT, kind: str = DEFAULT_KIND) -> FrameT:
    """The rows of `kind`. A row with no kind, or a frame with no `kind` column, is categorical:
    the canonical schema's default, so older lake partitions read the same way."""
    columns = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    if "kind" not in columns:
        return frame if kind == DEFAULT_KIND else frame.filter(pl.lit(False))
    return frame.filter(pl.col("kind").fill_null(DEFAULT_KIND) == kind)


def check_kind(kind: str) -> str:
    """`kind` if it is one of KINDS, else a ValueError listing them."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def value_missing(kind: str) -> pl.Expr:
    """True where a row of `kind` has no value (any of its columns null)."""
    return pl.any_horizontal(
        [pl.col(column).is_null() for column in VALUE_COLUMNS[check_kind(kind)]]
    )


def document_text(payload: str | None, to_name: str | None = None) -> str | None:
    """The document a task's span offsets index, from its stored payload.

    Tools that hand over the task's data object (Label Studio, SageMaker) leave its JSON
    encoding as the payload; the offsets index one string value of it, not the encoding: the
    value under `to_name` (the data key the labelled object reads) when given, else `text`,
    else the object's only string value; None when the object names no single document. Any
    other payload (a CSV's text column) is the document itself.
    """
    return document_and_key(payload, to_name)[0]


def document_and_key(
    payload: str | None, to_name: str | None = None
) -> tuple[str | None, str | None]:
    """`document_text` of `payload`, and the key of the data object it was read from (None when
    the payload is the document itself, or names none)."""
    if payload is None or not payload.lstrip().startswith("{"):
        return payload, None
    try:
        data: Any = json.loads(payload)
    except (ValueError, RecursionError):
        return payload, None
    if not isinstance(data, dict):
        return payload, None
    key = document_key(data, to_name)
    return (None, None) if key is None else (str(data[key]), key)


def document_key(data: dict[str, Any], to_name: str | None = None) -> str | None:
    """The key of a task's data object whose string value span offsets index (see
    document_text): `to_name`, else `text`, else the only key holding a string; None when
    the object names no single document."""
    for key in (to_name, "text"):
        if key is not None and isinstance(data.get(key), str):
            return key
    keys = [key for key, value in data.items() if isinstance(value, str)]
    return keys[0] if len(keys) == 1 else None


def document_texts(tasks: pl.DataFrame) -> pl.DataFrame:
    """`task_id`, `text`: each task's document (see document_text) from its `payload`; an error
    naming the task whose JSON payload holds no single document string."""
    payloads = tasks["payload"].cast(pl.String).to_list()
    texts = tasks.select("task_id").with_columns(
        text=pl.Series([document_text(payload) for payload in payloads], dtype=pl.String)
    )
    unresolved = texts.filter(pl.col("text").is_null() & tasks["payload"].is_not_null())
    if unresolved.height:
        raise ValueError(
            f"task {unresolved['task_id'][0]!r}: its payload is a JSON object with no `text` "
            "and not exactly one string value, so which one the span offsets index is unknown"
        )
    return texts


def box_task_units(judgments: pl.DataFrame) -> pl.DataFrame | None:
    """Per task (`task_id`, `_unit`): the unit most of its box judgments give (the first in
    sorted order on a tie); None for a frame without the unit and size columns."""
    if any(name not in judgments.columns for name in ("boxes", *BOX_CONTEXT)):
        return None
    return judgments.group_by("task_id").agg(most_common("coordinates").alias("_unit"))


def most_common(column: str) -> pl.Expr:
    """In an aggregation: the most common non-null value of `column` (the first in sorted order
    on a tie). A task's boxes are put in its most common unit by this rule, and the daily
    labels name their unit and image size by it, so the two always agree."""
    return pl.col(column).drop_nulls().mode().sort().first()


def fit_columns(frame: pl.DataFrame, kind: str, *keys: str) -> pl.DataFrame:
    """`frame`'s `keys`, the kind's value column(s) and, for boxes, the unit and image size
    columns it has: what `aggregate_kind` reads, so it fuses a pixel box and percent ones of
    the same object as one (`boxes_in_task_unit`)."""
    context = [c for c in BOX_CONTEXT if c in frame.columns] if kind == "boxes" else []
    return frame.select(*keys, *VALUE_COLUMNS[kind], *context)


def boxes_and_gold_in_task_unit(
    judgments: pl.DataFrame, gold: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(`judgments`, `gold`) of boxes with each task's boxes, its gold's too, in the unit most
    of its judgments give (`boxes_in_task_unit`)."""
    if gold is not None:
        units = box_task_units(judgments)
        gold = gold if units is None else boxes_in_task_unit(gold, units=units)
    return boxes_in_task_unit(judgments), gold


def boxes_in_task_unit(
    judgments: pl.DataFrame, *, units: pl.DataFrame | None = None
) -> pl.DataFrame:
    """`judgments` of boxes with each task's boxes in one unit: the one most of its judgments
    give (`coordinates`; the first in sorted order on a tie), a judgment in the other unit
    converted through its image's `image_width` and `image_height`.

    Boxes are matched and fused as numbers, so a task judged with a percent tool (Label
    Studio) and a pixel one (Ground Truth) would read one object as two. A judgment whose image
    size is unknown cannot be converted and stays as written; a frame without the unit and size
    columns is returned as it is.

    With `units` (`box_task_units` of the task's judgments), the rows are put in those units
    instead: gold, in the unit of the judgments it is compared with."""
    if any(name not in judgments.columns for name in ("boxes", *BOX_CONTEXT)):
        return judgments
    if units is None:
        if judgments.get_column("coordinates").drop_nulls().n_unique() < 2:
            return judgments  # one unit throughout (the usual case): nothing to convert
        units = box_task_units(judgments)
        assert units is not None
    task_unit = units.select("task_id", "_unit")
    frame = judgments.with_row_index("_index").join(
        task_unit, on="task_id", how="left", maintain_order="left"
    )
    converts = (
        (pl.col("coordinates") != pl.col("_unit"))
        & pl.col("image_width").is_not_null()
        & pl.col("image_height").is_not_null()
    ).fill_null(False)
    moved = frame.filter(converts)
    if moved.height == 0:
        return judgments
    to_percent = pl.col("_unit") == "percent"
    factor = {
        axis: pl.when(to_percent).then(100.0 / pl.col(size)).otherwise(pl.col(size) / 100.0)
        for axis, size in (("x", "image_width"), ("y", "image_height"))
    }
    box = pl.col("boxes")
    fields = [
        (
            box.struct.field(name) * factor[name[0]]
            if name in ("x_min", "y_min", "x_max", "y_max")
            else box.struct.field(name)
        ).alias(name)
        for name in BOX.to_schema()
    ]
    converted = (
        moved.select("_index", "_unit", "image_width", "image_height", "boxes")
        .explode("boxes")
        .select(
            "_index", "_unit", pl.when(box.is_not_null()).then(pl.struct(fields)).alias("boxes")
        )
        .group_by("_index", maintain_order=True)
        .agg(pl.col("_unit").first(), pl.col("boxes").drop_nulls())
    )
    return (
        frame.join(converted, on="_index", how="left", suffix="_converted")
        .with_columns(
            pl.coalesce("boxes_converted", "boxes").cast(judgments.schema["boxes"]).alias("boxes"),
            pl.coalesce("_unit_converted", "coordinates").alias("coordinates"),
        )
        .select(judgments.columns)
    )
