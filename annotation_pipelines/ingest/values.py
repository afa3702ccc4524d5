"""One judgment's value of a kind, checked and brought to the canonical Python shape.

Every source that carries non-categorical values (Label Studio results, SageMaker Ground Truth
manifests, CSV/Parquet/JSON Lines value columns) goes through `normalize`, so a value is
accepted or refused the same way wherever it came from. A value of the wrong shape is
reported with the canonical field it belongs to (validation then quarantines the row with
the error's reason, ``wrong_type`` unless it says otherwise, and that field); a missing value
stays None (``missing_field``).

Blank is missing: a text answer, or a label of a multilabel set, a span or a box, that is empty
or holds only whitespace and zero-width characters (what a stray keystroke or a pasted
zero-width space leaves; `blank`) is refused as ``missing_field``: nobody answered. A span or
box with no `label` at all is an unlabelled region (Label Studio's plain `rectangle` tool, a
one-class project) and is kept. A box with no area (x_min == x_max or y_min == y_max) is almost
always a click without a drag: it is refused as ``empty_box``, as a box with x_max < x_min is
refused, since no two boxes of zero area can overlap and two annotators' identical ones would
never match.

Shapes (see `annotation_pipelines.kinds`): multilabel and ranking are lists of strings (a
ranking may not repeat an item); numeric is a finite float; pairwise is `left`, `right` and a
`winner` in {left, right, tie} (a winner naming the left or right item is accepted and
mapped); spans are `{start, end, label}` with integer offsets 0 ≤ start < end; boxes are
`{label, x_min, y_min, x_max, y_max}` with finite coordinates, x_min < x_max, y_min < y_max;
text is a string. In CSV cells, list and struct values are JSON text.

Where a value is measured against what it marks, it must lie inside it, checked here once for
every reader. A box whose unit is known (`coordinates`, given beside the boxes) lies inside the
image: 0 to 100 in percent, 0 to the image's width and height in pixels (no upper bound when
the size is not given), else ``outside_image`` on field `boxes`; without a unit it is not
checked. A row that gives no unit is measured in the one its project declares, where it
declares one (`declared_unit`). A span ends within its task's text (`span_past_text`), else
``outside_text``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from annotation_pipelines.ingest.ids import number_text
from annotation_pipelines.ingest.validation import (
    EMPTY_BOX,
    MISSING_FIELD,
    OUTSIDE_IMAGE,
    WRONG_TYPE,
)
from annotation_pipelines.kinds import COORDINATE_UNITS, WINNERS, blank, check_kind
from annotation_pipelines.numbers import finite

# A plain decimal number as text: sign, digits, optional fraction and exponent.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Span offsets are stored as Int64: a larger one would be read back as null.
_MAX_OFFSET = (1 << 63) - 1
# A document given by address (Label Studio's valueType="url", an S3 object) is not the text
# the offsets index: they cannot be checked against it.
ADDRESS = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://|/data/)\S*")
# How far past an image's edge a coordinate may lie, relative to the image's extent: float
# arithmetic on the way to a stored box (Label Studio's x + width) lands a hair past 100 %.
EDGE_TOLERANCE = 1e-9


class ValueShapeError(ValueError):
    """A value of the wrong shape; `field` is the canonical column it belongs to and `reason`
    the quarantine reason (`wrong_type`, or `missing_field` for a blank label, `empty_box`)."""

    def __init__(self, field: str, message: str, *, reason: str = WRONG_TYPE) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


def _label(field: str, raw: dict[str, Any]) -> str | None:
    """A span's or box's label: None when it has none (an unlabelled region), else text that
    is not blank."""
    label = raw.get("label")
    if label is None:
        # Label Studio keeps a region's labels in a list under its control's type (`labels`,
        # `rectanglelabels`, ...): read as no label, the region would outvote its annotators.
        listed = [key for key in raw if isinstance(key, str) and key.endswith("labels")]
        if listed and "label" not in raw:
            raise ValueShapeError(
                field,
                f"{field}: a region's label is one string under 'label', got "
                f"{listed[0]!r}: {raw[listed[0]]!r:.60}",
            )
        return None
    text = _string(label)
    if text is None:
        raise ValueShapeError(field, f"{field}: label must be a string, got {label!r:.80}")
    if blank(text):
        raise ValueShapeError(
            field, f"{field}: blank label {label!r:.40} in {raw!r:.120}", reason=MISSING_FIELD
        )
    return text


def _decoded(raw: Any, *, text_cells: bool) -> Any:
    if text_cells and isinstance(raw, str):
        stripped = raw.strip()
        if not stripped:
            return None
        try:
            return json.loads(stripped)
        except (ValueError, RecursionError):  # not JSON, nested too deep, an int too long
            return raw
    return raw


def _string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    number = finite(value)
    if number is None:  # a boolean, a non-number, or a number no float holds
        return None
    return str(int(value)) if number.is_integer() else repr(value)


def _strings(field: str, raw: Any, *, text_cells: bool) -> list[str] | None:
    value = _decoded(raw, text_cells=text_cells)
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise ValueShapeError(field, f"{field}: expected a list of strings, got {value!r:.80}")
    out = [_string(item) for item in value]
    strings = [item for item in out if item is not None]
    if len(strings) != len(out):
        raise ValueShapeError(field, f"{field}: every element must be a string or number")
    if any(blank(item) for item in strings):
        raise ValueShapeError(
            field, f"{field}: a blank element in {value!r:.120}", reason=MISSING_FIELD
        )
    return strings


def _number(field: str, raw: Any) -> float | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise ValueShapeError(field, f"{field}: expected a number, got a boolean")
    # `float` also takes "1_000", padded and non-ASCII digits: a cell is a plain decimal.
    if isinstance(raw, str) and not _DECIMAL.fullmatch(raw.strip()):
        raise ValueShapeError(field, f"{field}: expected a number, got {raw!r:.80}")
    try:
        number = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError, OverflowError):
        raise ValueShapeError(field, f"{field}: expected a number, got {raw!r:.80}") from None
    if not math.isfinite(number):
        raise ValueShapeError(field, f"{field}: expected a finite number, got {raw!r:.80}")
    return number


def image_size(field: str, raw: Any) -> float | None:
    """An image's width or height in pixels (None when not given): a positive finite number or
    its plain decimal text, else a `ValueShapeError` on `field`."""
    size = _number(field, raw)
    if size is not None and not size > 0:
        raise ValueShapeError(field, f"{field}: expected a positive number, got {raw!r:.80}")
    return size


def _offset(raw: Any) -> int | None:
    if type(raw) is int:  # the common case, checked first: this runs once per span end
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    if isinstance(raw, float) and not (math.isfinite(raw) and raw.is_integer()):
        return None
    return int(raw)


def span(raw: Any) -> dict[str, Any]:
    """One span as {start, end, label}; ValueShapeError on anything else."""
    if not isinstance(raw, dict):
        raise ValueShapeError("spans", f"spans: expected an object, got {raw!r:.80}")
    start, end = _offset(raw.get("start")), _offset(raw.get("end"))
    if start is None or end is None or start < 0 or end <= start or end > _MAX_OFFSET:
        raise ValueShapeError(
            "spans", f"spans: need integer offsets 0 <= start < end, got {raw!r:.120}"
        )
    return {"start": start, "end": end, "label": _label("spans", raw)}


def box(raw: Any) -> dict[str, Any]:
    """One box as {label, x_min, y_min, x_max, y_max}; ValueShapeError on anything else."""
    if not isinstance(raw, dict):
        raise ValueShapeError("boxes", f"boxes: expected an object, got {raw!r:.80}")
    coordinates = {}
    for name in ("x_min", "y_min", "x_max", "y_max"):
        value = finite(raw.get(name))
        if value is None:
            raise ValueShapeError("boxes", f"boxes: {name} must be a finite number in {raw!r:.120}")
        coordinates[name] = value
    if coordinates["x_max"] < coordinates["x_min"] or coordinates["y_max"] < coordinates["y_min"]:
        raise ValueShapeError(
            "boxes", f"boxes: need x_min <= x_max and y_min <= y_max: {raw!r:.120}"
        )
    if coordinates["x_max"] == coordinates["x_min"] or coordinates["y_max"] == coordinates["y_min"]:
        raise ValueShapeError(
            "boxes", f"boxes: a box with no width or height: {raw!r:.120}", reason=EMPTY_BOX
        )
    return {"label": _label("boxes", raw), **coordinates}


def _image_limit(unit: str, size: float | None) -> float | None:
    return 100.0 if unit == "percent" else size


def inside_image(
    boxes: list[dict[str, Any]],
    *,
    coordinates: str | None,
    image_width: float | None = None,
    image_height: float | None = None,
) -> list[dict[str, Any]]:
    """`boxes` ({x_min, y_min, x_max, y_max}) when each lies inside the image it is drawn on,
    measured in `coordinates` (see the module docstring); a ValueShapeError
    (``outside_image``, field `boxes`) naming the first coordinate outside otherwise. A unit
    that is not one of COORDINATE_UNITS is not checked here: the reader refuses it."""
    if coordinates not in COORDINATE_UNITS:
        return boxes
    limits = {
        "x": _image_limit(coordinates, image_width),
        "y": _image_limit(coordinates, image_height),
    }
    for number, item in enumerate(boxes, start=1):
        for name in ("x_min", "y_min", "x_max", "y_max"):
            value, limit = item[name], limits[name[0]]
            slack = EDGE_TOLERANCE * (limit or 1.0)
            if value >= -slack and (limit is None or value <= limit + slack):
                continue
            if coordinates == "percent":
                image = "0 to 100 percent of the image"
            elif limit is None:
                image = "the image starts at pixel 0"
            else:
                side = "width" if name[0] == "x" else "height"
                image = f"0 to {limit:g} pixels, the image's {side}"
            raise ValueShapeError(
                "boxes",
                f"boxes: box {number} has {name} {value:g}, outside the image ({image})",
                reason=OUTSIDE_IMAGE,
            )
    return boxes


def _context(raw: dict[str, Any]) -> dict[str, Any]:
    """The unit and image size given beside `raw`'s boxes, as far as they can be read: one
    that cannot (an unknown unit, a size that is not a positive number) is the reader's to
    refuse, and is not checked against here."""
    unit = raw.get("coordinates")
    sizes: dict[str, float | None] = {}
    for name in ("image_width", "image_height"):
        try:
            sizes[name] = image_size(name, raw.get(name))
        except ValueShapeError:
            sizes[name] = None
    return {"coordinates": unit.strip() if isinstance(unit, str) else None, **sizes}


def box_context(raw: dict[str, Any]) -> dict[str, Any]:
    """Where a boxes row is measured: `coordinates` (one of COORDINATE_UNITS) and the image's
    `image_width`/`image_height` in pixels, each None when not given (a blank unit is none).
    One that cannot be kept is a ValueShapeError on its field, never dropped: a box in percent
    read as pixels is a box of another place and size. Every reader of a boxes table (ingest
    and the commands) reads the row's context here."""
    unit = raw.get("coordinates")
    if isinstance(unit, str) and not unit.strip():
        unit = None
    if unit is not None and unit not in COORDINATE_UNITS:
        raise ValueShapeError(
            "coordinates",
            f"coordinates: expected one of {', '.join(COORDINATE_UNITS)}, got {unit!r:.80}",
        )
    return {
        "coordinates": unit,
        "image_width": image_size("image_width", raw.get("image_width")),
        "image_height": image_size("image_height", raw.get("image_height")),
    }


def declared_unit(context: dict[str, Any], unit: str | None) -> dict[str, Any]:
    """A boxes row's context as read (`coordinates`, `image_width`, `image_height`) with
    `unit`, the one its project declares (`validation.project_coordinates`) or a command's
    `--coordinates`, as its `coordinates` where it gives none (absent, null or blank, as
    `box_context` reads none). A row's own unit wins, a unit it spells wrongly too: that is
    refused as the row's, never replaced by the declared one."""
    given = context.get("coordinates")
    if unit is None or not (given is None or (isinstance(given, str) and not given.strip())):
        return context
    return {**context, "coordinates": unit}


def _past_message(number: int, item: dict[str, Any]) -> str:
    label = item.get("label")
    shown = f"[{item['start']}, {item['end']})" + (f" {label}" if label else "")
    return f"spans: span {number} {shown} ends past the text"


def span_past_text(
    spans: list[dict[str, Any]], text: str | None, *, name: str, first: int = 1
) -> tuple[str, str] | None:
    """(quarantine field, message) naming the first of `spans` ({start, end}, offsets checked)
    that ends past the end of `text`, the task's document read from `name` (``outside_text``);
    None when every span fits, or the text is not known or is an address (`ADDRESS`). Spans
    are numbered from `first` in the message."""
    if text is None or ADDRESS.fullmatch(text):
        return None
    length = len(text)
    for number, item in enumerate(spans, start=first):
        end = item["end"]
        if end > length:
            return (
                f"spans (end {end} past the {length} characters of {name})",
                _past_message(number, item),
            )
    return None


def _objects(field: str, raw: Any, one: Any, *, text_cells: bool) -> list[dict] | None:
    value = _decoded(raw, text_cells=text_cells)
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise ValueShapeError(field, f"{field}: expected a list of objects, got {value!r:.80}")
    return [one(item) for item in value]


def normalize(kind: str, raw: dict[str, Any], *, text_cells: bool = False) -> dict[str, Any]:
    """The canonical value columns of `kind` from `raw` (column → cell as read; for boxes,
    also `coordinates`, `image_width` and `image_height` when the source gives them, to check
    the boxes lie inside the image).

    `text_cells`: cells are text as in CSV, so list and object values are JSON text.
    Raises ValueShapeError naming the column of a value of the wrong shape.
    """
    check_kind(kind)
    if kind == "categorical":
        label = raw.get("label")
        if isinstance(label, bool):
            # Spelled as ingest stores a typed boolean label, so a yes/no export aggregates
            # the same from the lake and from the command line.
            return {"label": "true" if label else "false"}
        if isinstance(label, float) and math.isfinite(label):
            # And a float one as ingest stores it (class codes 1.0, 2.0 stay "1.0", "2.0").
            return {"label": number_text(label)}
        if label is not None and _string(label) is None:
            raise ValueShapeError("label", f"label: expected a scalar, got {label!r:.80}")
        return {"label": _string(label)}
    if kind == "multilabel":
        return {"labels": _strings("labels", raw.get("labels"), text_cells=text_cells)}
    if kind == "ranking":
        ranking = _strings("ranking", raw.get("ranking"), text_cells=text_cells)
        if ranking is not None and len(set(ranking)) != len(ranking):
            raise ValueShapeError("ranking", f"ranking: an item is ranked twice: {ranking!r:.120}")
        return {"ranking": ranking}
    if kind == "numeric":
        return {"value": _number("value", raw.get("value"))}
    if kind == "text":
        text = raw.get("text")
        if text is not None and not isinstance(text, str):
            if _string(text) is None:
                raise ValueShapeError("text", f"text: expected a string, got {text!r:.80}")
            text = _string(text)
        # A blank answer is no answer: missing, as an empty categorical label is.
        return {"text": None if text is None or blank(text) else text}
    if kind == "pairwise":
        values = {}
        for name in ("left", "right", "winner"):
            value = raw.get(name)
            if value is not None and _string(value) is None:
                raise ValueShapeError(name, f"{name}: expected a string, got {value!r:.80}")
            values[name] = _string(value)
        winner = values["winner"]
        if winner is not None and winner not in WINNERS:
            if winner == values["left"]:
                values["winner"] = "left"
            elif winner == values["right"]:
                values["winner"] = "right"
            else:
                raise ValueShapeError(
                    "winner",
                    f"winner: expected one of {', '.join(WINNERS)} or the left/right item, "
                    f"got {winner!r:.80}",
                )
        if values["left"] is not None and values["left"] == values["right"]:
            # A comparison of an item with itself says nothing about either side and has no
            # orientation: the aggregation cannot take it.
            raise ValueShapeError("right", f"right: the same item as left ({values['left']!r:.80})")
        return values
    if kind == "spans":
        return {"spans": _objects("spans", raw.get("spans"), span, text_cells=text_cells)}
    boxes = _objects("boxes", raw.get("boxes"), box, text_cells=text_cells)
    if boxes is not None:
        boxes = inside_image(boxes, **_context(raw))
    return {"boxes": boxes}
