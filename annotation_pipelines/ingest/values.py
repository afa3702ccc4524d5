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
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from annotation_pipelines.ingest.ids import number_text
from annotation_pipelines.ingest.validation import EMPTY_BOX, MISSING_FIELD, WRONG_TYPE
from annotation_pipelines.kinds import WINNERS, blank, check_kind
from annotation_pipelines.numbers import finite

# A plain decimal number as text: sign, digits, optional fraction and exponent.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Span offsets are stored as Int64: a larger one would be read back as null.
_MAX_OFFSET = (1 << 63) - 1


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


def _objects(field: str, raw: Any, one: Any, *, text_cells: bool) -> list[dict] | None:
    value = _decoded(raw, text_cells=text_cells)
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise ValueShapeError(field, f"{field}: expected a list of objects, got {value!r:.80}")
    return [one(item) for item in value]


def normalize(kind: str, raw: dict[str, Any], *, text_cells: bool = False) -> dict[str, Any]:
    """The canonical value columns of `kind` from `raw` (column → cell as read).

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
        return values
    if kind == "spans":
        return {"spans": _objects("spans", raw.get("spans"), span, text_cells=text_cells)}
    return {"boxes": _objects("boxes", raw.get("boxes"), box, text_cells=text_cells)}
