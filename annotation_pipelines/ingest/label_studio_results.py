"""Label Studio `result` entries of one annotation → one canonical value per control.

An annotation's `result` list holds one entry per region or answer; entries sharing a
`from_name` (the control tag of the labeling config) form one judgment. Result types:

Result type → kind, value:

- choices → categorical, or multilabel: `value.choices`. The export does not carry the
  labeling config, so a control is multilabel when any annotation of the file picks several
  of its choices, else categorical.
- labels → spans: `value.start`/`end` character offsets (end exclusive; code points, as
  Python indexes a str, so an emoji is one character), one span per label in
  `value.labels`. On a HyperText object `start`/`end` are XPaths and the character offsets
  are `value.globalOffsets`, as for hypertextlabels. A Text span ending past the end of its
  task's text (the data value its `to_name` reads, found as the snapshot finds a span's
  document: `kinds.document_text`) is quarantined as ``outside_text``, its field naming the end
  and the text's length; the whole control goes, as for a region of the wrong shape. A text
  given by address (valueType="url") is not checked.
- hypertextlabels → spans: `value.globalOffsets.start`/`end` (character offsets in the
  document's text); a region without them is refused as `wrong_type`. Exports from before
  the tag's rename keep the labels under `htmllabels`.
- rectanglelabels (and the unlabelled rectangle tool) → boxes: `x`, `y`, `width`, `height`
  in percent of the image, rotated by `rotation` degrees about (x, y); the box is the
  rotated rectangle's axis-aligned extent, clipped to the image (0–100 %), since a turned
  rectangle near an edge reaches past it.
- polygonlabels (and polygon) → boxes + polygons: the polygon's bounding box in `boxes`, its
  outline in `polygons`.
- keypointlabels (and keypoint) → boxes: a square centred on the point whose side is the
  keypoint's drawn `width` (0 when not given), so IoU matching pairs nearby points.
- labels whose value is an image region (x/y/width/height or points, as the OCR template
  writes them) → boxes, by the region's shape.
- rating → numeric (`value.rating`); number → numeric (`value.number`).
- textarea → text: the lines of `value.text` joined by a newline.
- taxonomy → multilabel: each selected path joined by "/" (["Animal", "Cat"] → "Animal/Cat").
- pairwise → pairwise: `winner` is `value.selected`. The compared items are the task's two
  objects, so `left`/`right` are `<task id>:<object>`; the objects are named by `to_name`
  when it lists two ("text1,text2"), and are the positions `left`/`right` when it names
  only the Pairwise control itself, as the editor writes it.
- ranker → ranking: `value.ranker` is `{<control name>: [item ids, best first]}` (older
  exports: the list itself). A ranker with buckets exports `{<bucket>: [ids], ...}`, a
  grouping rather than a ranking: quarantined as ``unsupported_kind``.

Coordinates stay in percent of the image, as Label Studio stores them (`coordinates` =
"percent"), with the image's `original_width`/`original_height` in `image_width`/
`image_height` where the export gives them; multiply by size/100 for pixels. Rotation needs
the aspect ratio: without the image size it is applied in percent units (exact only for a
square image).

Results carrying an `item_index` (a control applied per image of a multi-image task) are
grouped per item: the control is `<from_name>[<item_index>]`, so boxes drawn on different
images never share a coordinate frame.

A type not in the table (brushes, video, time series, chat messages, ...) is quarantined
with reason ``unsupported_kind`` and field `result.type=<type>`; so are the relations of an
annotation (one row for all of them) and per-region answers (a single-value control whose
result shares the `id` of a region of another control, or several results of one
single-value control): they describe a region, not the task. A region of the wrong shape is
quarantined with reason ``wrong_type`` naming the canonical field.
"""

from __future__ import annotations

import json
import math
from typing import Any

from annotation_pipelines.ingest.validation import OUTSIDE_TEXT, UNSUPPORTED_KIND, WRONG_TYPE
from annotation_pipelines.ingest.values import (
    ValueShapeError,
    box,
    inside_image,
    normalize,
    span,
    span_past_text,
)
from annotation_pipelines.kinds import document_key
from annotation_pipelines.numbers import finite

SPAN_TYPES = ("labels", "hypertextlabels")
BOX_TYPES = (
    "rectanglelabels",
    "polygonlabels",
    "keypointlabels",
    "rectangle",
    "polygon",
    "keypoint",
)
SINGLE_TYPES = ("choices", "rating", "number", "textarea", "taxonomy", "pairwise", "ranker")
SUPPORTED_TYPES = SPAN_TYPES + BOX_TYPES + SINGLE_TYPES

# Every column a control's row may set; absent ones are null.
ROW_KEYS = (
    "control",
    "kind",
    "choices",
    "label",
    "labels",
    "value",
    "ranking",
    "left",
    "right",
    "winner",
    "spans",
    "boxes",
    "text",
    "polygons",
    "coordinates",
    "image_width",
    "image_height",
    "reason",
    "field",
    "record",
    # Why a refused control was refused, in words, and the field they are about.
    "label_error",
    "error_field",
)


class _Unsupported(Exception):
    """A well-formed value of a supported type in a mode no kind represents (ranker buckets)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def expand_results(
    results: Any, *, annotation_id: Any = None, task_id: Any = None, data: Any = None
) -> list[dict[str, Any]]:
    """One row per control of an annotation's `result` list (see the module docstring).

    `data`: the task's data object, when known; a text span whose end is past the end of the
    text it labels is then refused as ``outside_text``."""
    if not isinstance(results, list) or not results:
        return [{**dict.fromkeys(ROW_KEYS), "kind": "categorical"}]
    # Ids of regions drawn by a region control: a single-value result sharing one describes
    # that region, not the task.
    region_ids = {
        (result.get("id"), result.get("from_name"))
        for result in results
        if isinstance(result, dict)
        and result.get("type") not in SINGLE_TYPES
        and isinstance(result.get("id"), str)
        and isinstance(result.get("from_name"), str)
    }
    groups: dict[str, list[Any]] = {}
    for position, result in enumerate(results):
        if not isinstance(result, dict):
            key = f"\x00malformed:{position}"
        elif result.get("type") == "relation":
            key = "\x00relation"
        elif not isinstance(result.get("from_name"), str):
            key = f"\x00malformed:{position}"
        else:
            key = result["from_name"]
            item = result.get("item_index")
            if isinstance(item, int) and not isinstance(item, bool):
                key = f"{key}[{item}]"
            if result.get("type") in SINGLE_TYPES and any(
                rid == result.get("id") and name != result["from_name"] for rid, name in region_ids
            ):
                key = f"\x00per-region:{key}"
        groups.setdefault(key, []).append(result)
    rows = [
        _control_row(control, members, annotation_id, task_id)
        for control, members in groups.items()
    ]
    if isinstance(data, dict):
        for row, members in zip(rows, groups.values(), strict=True):
            past = _past_the_text(members, data) if row["kind"] == "spans" else None
            if past is not None:
                _refuse(row, OUTSIDE_TEXT, past[0], annotation_id, members, message=past[1])
    return rows


def _past_the_text(results: list[Any], data: dict[str, Any]) -> tuple[str, str] | None:
    """The field and message of the quarantine row naming the first span of `results` (Text
    `labels`, whose offsets index the data value their `to_name` reads) that ends past that
    text, or None. HyperText offsets index the page as the browser renders it, which the
    export does not hold: they are not checked."""
    for position, result in enumerate(results, start=1):
        value = result["value"]
        if result.get("type") != "labels" or isinstance(value.get("start"), str):
            continue
        to_name = result.get("to_name")
        key = document_key(data, to_name if isinstance(to_name, str) else None)
        if key is None:
            continue
        labels = value.get("labels")
        shown = {
            "start": value.get("start"),
            "end": value["end"],
            "label": ", ".join(map(str, labels)) if isinstance(labels, list) else None,
        }
        past = span_past_text([shown], data[key], name=f"data.{key}", first=position)
        if past is not None:
            return past
    return None


def _control_row(
    control: str, results: list[Any], annotation_id: Any, task_id: Any
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    per_region = control.startswith("\x00per-region:")
    if per_region:
        control = control.removeprefix("\x00per-region:")
    row["control"] = None if control.startswith("\x00") else control
    types = {
        r.get("type") if isinstance(r, dict) and isinstance(r.get("type"), str) else None
        for r in results
    }
    if control == "\x00relation":
        return _refuse(row, UNSUPPORTED_KIND, "result.type=relation", annotation_id, results)
    if control.startswith("\x00malformed") or len(types) != 1 or None in types:
        return _refuse(
            row, WRONG_TYPE, "result.type", annotation_id, results, message=_malformed(results)
        )
    kind_type = str(next(iter(types)))
    if kind_type not in SUPPORTED_TYPES:
        return _refuse(row, UNSUPPORTED_KIND, f"result.type={kind_type}", annotation_id, results)
    if per_region or (kind_type in SINGLE_TYPES and len(results) > 1):
        # Per-region answers (one per region of another control) are not one value.
        return _refuse(
            row, UNSUPPORTED_KIND, f"result.type={kind_type} per region", annotation_id, results
        )
    values = [r.get("value") for r in results]
    if not all(isinstance(v, dict) for v in values):
        found = next(v for v in values if not isinstance(v, dict))
        return _refuse(
            row,
            WRONG_TYPE,
            "result.value",
            annotation_id,
            results,
            message=f"result.value: expected an object, got {_shown(found)}",
        )
    try:
        if kind_type == "labels" and all(_is_region(v) for v in values):
            # Labels applied to image regions (the OCR template): boxes, not text spans.
            row.update(_boxes(results, kind_type))
        elif kind_type in SPAN_TYPES:
            row.update(kind="spans", spans=[s for v in values for s in _spans(v, kind_type)])
        elif kind_type in BOX_TYPES:
            row.update(_boxes(results, kind_type))
        else:
            row.update(_single(results[0], values[0], kind_type, task_id))
    except ValueShapeError as error:
        return _refuse(row, error.reason, error.field, annotation_id, results, message=str(error))
    except _Unsupported as unsupported:
        return _refuse(row, UNSUPPORTED_KIND, unsupported.field, annotation_id, results)
    return row


def _refuse(
    row: dict[str, Any],
    reason: str,
    field: str,
    annotation_id: Any,
    results: list[Any],
    *,
    message: str | None = None,
) -> dict[str, Any]:
    # The refused control's own results are what the quarantine keeps (a loaded row keeps
    # its whole annotation as the record, should validation refuse it later).
    record = {"annotation": annotation_id, "result": results}
    row.update(
        reason=reason,
        field=field,
        kind=None,
        record=json.dumps(record, ensure_ascii=False, default=str),
        label_error=message,
        error_field=None if message is None else field,
    )
    return row


def _shown(value: Any) -> str:
    """A found value in a message: its JSON type, and the value itself when short."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    what = "null" if value is None else names.get(type(value), "a number")
    text = json.dumps(value, ensure_ascii=False, default=str)
    return what if value is None else f"{what} {text:.80}"


def _malformed(results: list[Any]) -> str:
    """Why a control's results name no one result type, in words."""
    for result in results:
        if not isinstance(result, dict):
            return f"result: expected an object, got {_shown(result)}"
        for name in ("from_name", "type"):
            if not isinstance(result.get(name), str):
                return f"result.{name}: expected a string, got {_shown(result.get(name))}"
    types = sorted({str(r["type"]) for r in results})
    return f"result.type: one control's results have several types ({', '.join(types)})"


def _is_region(value: dict) -> bool:
    """An image region's value: points, or x/y without text offsets."""
    return "points" in value or ("x" in value and "y" in value and "start" not in value)


def _shape(kind_type: str, value: dict) -> str:
    """rectangle, polygon or keypoint: from the type, or from the value for `labels`."""
    for shape in ("polygon", "keypoint", "rectangle"):
        if kind_type.startswith(shape):
            return shape
    if "points" in value:
        return "polygon"
    return "rectangle" if "width" in value and "height" in value else "keypoint"


def _region_labels(value: dict, kind_type: str, field: str) -> list[str | None]:
    labels = value.get(kind_type)
    if labels is None and kind_type == "hypertextlabels":
        labels = value.get("htmllabels")
    if labels is None:
        return [None]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueShapeError(field, f"{field}: region labels must be a list of strings")
    return list(labels) or [None]


def _spans(value: dict, kind_type: str) -> list[dict[str, Any]]:
    start, end = value.get("start"), value.get("end")
    if kind_type == "hypertextlabels" or isinstance(start, str) or isinstance(end, str):
        # On HyperText the region's start/end are XPaths; the text offsets are global.
        offsets = value.get("globalOffsets")
        if not isinstance(offsets, dict):
            raise ValueShapeError("spans", "spans: hypertext region without globalOffsets")
        start, end = offsets.get("start"), offsets.get("end")
    return [
        span({"start": start, "end": end, "label": label})
        for label in _region_labels(value, kind_type, "spans")
    ]


def _size(results: list[dict]) -> tuple[float | None, float | None]:
    for result in results:
        width, height = result.get("original_width"), result.get("original_height")
        if (size := (finite(width), finite(height)))[0] and size[1] and size[0] > 0 and size[1] > 0:
            return size[0], size[1]
    return None, None


def _number(value: dict, name: str) -> float:
    number = finite(value.get(name))
    if number is None:
        raise ValueShapeError(
            "boxes", f"boxes: {name} must be a finite number, got {value.get(name)!r:.40}"
        )
    return number


def _rectangle(
    value: dict, width: float | None, height: float | None
) -> tuple[float, float, float, float]:
    x, y = _number(value, "x"), _number(value, "y")
    w, h = _number(value, "width"), _number(value, "height")
    rotation = value.get("rotation") or 0.0
    if isinstance(rotation, bool) or finite(rotation) is None:
        raise ValueShapeError("boxes", "boxes: rotation must be a finite number")
    if rotation % 360 == 0:
        return x, y, x + w, y + h
    # The extent of a turned rectangle near an edge reaches past the image (a box of 111 % of
    # its width); what lies outside holds no pixel of the object, so the box is clipped to the
    # image, as detection pipelines clip boxes (torchvision's clip_boxes_to_image).
    # Rotate the corners about (x, y) in pixel units (percent when the size is unknown).
    sx, sy = (width / 100.0, height / 100.0) if width and height else (1.0, 1.0)
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    xs, ys = [], []
    for dx, dy in ((0.0, 0.0), (w * sx, 0.0), (w * sx, h * sy), (0.0, h * sy)):
        xs.append(x + (dx * cos - dy * sin) / sx)
        ys.append(y + (dx * sin + dy * cos) / sy)
    return (
        min(max(min(xs), 0.0), 100.0),
        min(max(min(ys), 0.0), 100.0),
        min(max(max(xs), 0.0), 100.0),
        min(max(max(ys), 0.0), 100.0),
    )


def _boxes(results: list[dict], kind_type: str) -> dict[str, Any]:
    width, height = _size(results)
    boxes: list[dict[str, Any]] = []
    polygons: list[dict[str, Any]] = []
    for result in results:
        value = result["value"]
        labels = _region_labels(value, kind_type, "boxes")
        shape = _shape(kind_type, value)
        if shape == "polygon":
            points = value.get("points")
            if (
                not isinstance(points, list)
                or len(points) < 3
                or not all(isinstance(p, list | tuple) and len(p) == 2 for p in points)
            ):
                raise ValueShapeError("boxes", "boxes: a polygon needs at least 3 [x, y] points")
            outline = [
                {"x": _number({"x": p[0]}, "x"), "y": _number({"y": p[1]}, "y")} for p in points
            ]
            xs = [p["x"] for p in outline]
            ys = [p["y"] for p in outline]
            extent = (min(xs), min(ys), max(xs), max(ys))
            polygons.extend({"label": label, "points": outline} for label in labels)
        elif shape == "keypoint":
            x, y = _number(value, "x"), _number(value, "y")
            point = {"x_min": x, "y_min": y, "x_max": x, "y_max": y}
            inside_image([point], coordinates="percent")
            half = value.get("width") or 0.0
            half = _number({"width": half}, "width") / 2.0
            # The square drawn around a point near an edge reaches past it, as a turned
            # rectangle does: clipped to the image the same way.
            extent = (
                max(x - half, 0.0),
                max(y - half, 0.0),
                min(x + half, 100.0),
                min(y + half, 100.0),
            )
        else:
            extent = _rectangle(value, width, height)
        for label in labels:
            boxes.append(
                box(
                    {
                        "label": label,
                        "x_min": extent[0],
                        "y_min": extent[1],
                        "x_max": extent[2],
                        "y_max": extent[3],
                    }
                )
            )
    return {
        "kind": "boxes",
        "boxes": inside_image(boxes, coordinates="percent"),
        "polygons": polygons or None,
        "coordinates": "percent",
        "image_width": width,
        "image_height": height,
    }


def _single(result: dict, value: dict, kind_type: str, task_id: Any) -> dict[str, Any]:
    if kind_type == "choices":
        choices = value.get("choices")
        if choices is None:
            return {"choices": None, "kind": "categorical"}
        if not isinstance(choices, list) or not all(
            isinstance(c, str | int | float) and not isinstance(c, bool) for c in choices
        ):
            raise ValueShapeError("label", "label: choices must be a list of strings")
        return {"choices": [str(c) for c in choices], "kind": "categorical"}
    if kind_type in ("rating", "number"):
        return {"kind": "numeric", **normalize("numeric", {"value": value.get(kind_type)})}
    if kind_type == "textarea":
        text = value.get("text")
        if isinstance(text, list) and all(isinstance(line, str) for line in text):
            text = "\n".join(text)
        return {"kind": "text", **normalize("text", {"text": text})}
    if kind_type == "taxonomy":
        paths = value.get("taxonomy")
        if paths is not None and (
            not isinstance(paths, list)
            or not all(isinstance(p, list) and all(isinstance(x, str) for x in p) for p in paths)
        ):
            raise ValueShapeError("labels", "labels: taxonomy must be a list of label paths")
        joined = None if paths is None else ["/".join(path) for path in paths]
        return {"kind": "multilabel", **normalize("multilabel", {"labels": joined})}
    if kind_type == "pairwise":
        names = [name.strip() for name in str(result.get("to_name") or "").split(",")]
        if len(names) != 2:
            # The editor writes the Pairwise control itself as `to_name`: positions only.
            names = ["left", "right"]
        prefix = "" if task_id is None else f"{task_id}:"
        winner = value.get("selected")
        return {
            "kind": "pairwise",
            **normalize(
                "pairwise",
                {"left": prefix + names[0], "right": prefix + names[1], "winner": winner},
            ),
        }
    ranker = value.get("ranker")
    if isinstance(ranker, dict):
        if set(ranker) != {result.get("from_name")}:
            raise _Unsupported("result.type=ranker buckets")
        ranker = ranker[result.get("from_name")]
    return {"kind": "ranking", **normalize("ranking", {"ranking": ranker})}
