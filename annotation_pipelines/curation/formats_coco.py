"""COCO JSON export of aggregated boxes.

The object-detection format of T.-Y. Lin et al., "Microsoft COCO: Common Objects in Context",
ECCV 2014 (cocodataset.org/#format-data): `images` (one per task: `id`, `file_name`, `width`,
`height`), `categories` (`id`, `name`, `supercategory`) and `annotations` (`id`, `image_id`,
`category_id`, `bbox` = [x, y, width, height] in pixels, `area`, `iscrowd` 0,
and `score` = the fused box's confidence, as in COCO's detection-results files). Image ids
follow the task order of the aggregate; category ids follow `categories` (a label set, so
that ids do not depend on which labels one export happens to contain) and then the sorted names
of any other label; a box with a null label gets the category `"object"`. Width and height come
from the optional `images` frame (`task_id`, `width`, `height`, optionally `file_name` and
`split`, which each image then carries); without them they are 0, which pycocotools accepts and
evaluators treat as unknown. An image whose `coordinates` (also from `images`) are "percent"
has its boxes scaled to pixels by its width and height; one without a known size keeps them in
percent, and `info.images_in_percent` counts those images.

Image and annotation ids are positive and unique (pycocotools' evaluator takes an annotation id
0 for "unmatched"). A split's file (`to_coco_with_splits`) is the whole file's images of that split
with their annotations, ids unchanged, and every category: a prediction made on `train` joins
`coco.json` by image id, and a class id means one class in every file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

UNLABELLED = "object"


def to_coco(
    labels: pl.DataFrame,
    *,
    images: pl.DataFrame | None = None,
    categories: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The COCO dict for an aggregate with `task_id` and `boxes` (List of fused boxes)."""
    tasks, annotations, category = _coco_frames(labels, images=images, categories=categories)
    return _render(tasks, annotations, category)


def to_coco_with_splits(
    labels: pl.DataFrame,
    *,
    images: pl.DataFrame,
    splits: Sequence[str],
    categories: Sequence[str] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """`to_coco` of the same arguments and, per split, the COCO dict of the images whose
    `split` (in `images`) it is, with the whole dict's image, annotation and category ids, so a
    split's file joins the whole one by id. Every split lists every category, as COCO's own
    splits do. The frames are built once for all of them."""
    tasks, annotations, category = _coco_frames(labels, images=images, categories=categories)
    by_split = {}
    for split in splits:
        part = tasks.filter(pl.col("split") == split)
        by_split[split] = _render(
            part,
            annotations.filter(pl.col("image_id").is_in(part["image_id"].implode())),
            category,
        )
    return _render(tasks, annotations, category), by_split


def _coco_frames(
    labels: pl.DataFrame,
    *,
    images: pl.DataFrame | None,
    categories: Sequence[str] | None,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """The images (one row per task, with `image_id` and `in_percent`), the annotations (with
    their `id`) and the category ids of an aggregate."""
    tasks = labels.select("task_id").with_row_index("image_id", offset=1)
    if images is not None:
        extra = images.select(
            "task_id",
            *[
                c
                for c in ("width", "height", "file_name", "split", "coordinates")
                if c in images.columns
            ],
        )
        tasks = tasks.join(extra, on="task_id", how="left", maintain_order="left")
    if "coordinates" not in tasks.columns:
        tasks = tasks.with_columns(pl.lit(None, pl.String).alias("coordinates"))
    percent = pl.col("coordinates") == "percent"
    known = (pl.col("width") > 0) & (pl.col("height") > 0)
    tasks = tasks.with_columns(
        pl.col("width").fill_null(0).cast(pl.Int64)
        if "width" in tasks.columns
        else pl.lit(0, pl.Int64).alias("width"),
        pl.col("height").fill_null(0).cast(pl.Int64)
        if "height" in tasks.columns
        else pl.lit(0, pl.Int64).alias("height"),
        pl.coalesce(
            pl.col("file_name") if "file_name" in tasks.columns else pl.lit(None, pl.String),
            pl.col("task_id"),
        ).alias("file_name"),
    )
    # Percent of the image size (Label Studio) becomes pixels where the size is known; without
    # it the numbers stay as they are and `info.images_in_percent` counts those images.
    scale = tasks.select(
        "task_id",
        "image_id",
        pl.when(percent & known).then(pl.col("width") / 100).otherwise(1.0).alias("x_scale"),
        pl.when(percent & known).then(pl.col("height") / 100).otherwise(1.0).alias("y_scale"),
    )
    tasks = tasks.with_columns((percent & ~known).fill_null(False).alias("in_percent"))
    boxes = (
        labels.select("task_id", "boxes")
        .join(scale, on="task_id", maintain_order="left")
        .explode("boxes", keep_nulls=False)
        .unnest("boxes")
        .with_columns(
            pl.col("label").fill_null(UNLABELLED),
            *(pl.col(c) * pl.col("x_scale") for c in ("x_min", "x_max")),
            *(pl.col(c) * pl.col("y_scale") for c in ("y_min", "y_max")),
        )
    )
    names = list(dict.fromkeys(categories or ()))
    names += sorted(set(boxes["label"].unique().to_list()) - set(names))
    category = {name: index + 1 for index, name in enumerate(names)}
    confidence = "confidence" in boxes.columns
    annotations = boxes.select(
        pl.int_range(1, pl.len() + 1).alias("id"),
        "image_id",
        pl.col("label").replace_strict(category, return_dtype=pl.Int64).alias("category_id"),
        pl.concat_list(
            "x_min", "y_min", pl.col("x_max") - pl.col("x_min"), pl.col("y_max") - pl.col("y_min")
        ).alias("bbox"),
        ((pl.col("x_max") - pl.col("x_min")) * (pl.col("y_max") - pl.col("y_min"))).alias("area"),
        pl.lit(0).alias("iscrowd"),
        *([pl.col("confidence").alias("score")] if confidence else []),
    )
    return tasks, annotations, category


def _render(
    tasks: pl.DataFrame, annotations: pl.DataFrame, category: dict[str, int]
) -> dict[str, Any]:
    return {
        "info": {
            "description": "aggregated boxes",
            "version": "1.0",
            "images_in_percent": int(tasks["in_percent"].sum()),
        },
        "licenses": [],
        "images": tasks.select(
            pl.col("image_id").cast(pl.Int64).alias("id"),
            "file_name",
            "width",
            "height",
            "task_id",
            *(["split"] if "split" in tasks.columns else []),
        ).to_dicts(),
        "categories": [
            {"id": index, "name": name, "supercategory": name} for name, index in category.items()
        ],
        "annotations": annotations.with_columns(pl.col("image_id").cast(pl.Int64)).to_dicts(),
    }


def write_coco(
    labels: pl.DataFrame, path: str | Path, *, images: pl.DataFrame | None = None
) -> Path:
    """Write `to_coco(labels, images=images)` as JSON to `path`."""
    target = Path(path)
    target.write_text(json.dumps(to_coco(labels, images=images)))
    return target
