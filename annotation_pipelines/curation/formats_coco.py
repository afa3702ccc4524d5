"""COCO JSON export of aggregated boxes.

The object-detection format of T.-Y. Lin et al., "Microsoft COCO: Common Objects in Context",
ECCV 2014 (cocodataset.org/#format-data): `images` (one per task: `id`, `file_name`, `width`,
`height`), `categories` (`id`, `name`, `supercategory`) and `annotations` (`id`, `image_id`,
`category_id`, `bbox` = [x, y, width, height] in the task's coordinates, `area`, `iscrowd` 0,
and `score` = the fused box's confidence, as in COCO's detection-results files). Image ids
follow the task order of the aggregate; category ids follow `categories` (a label set, so
that ids do not depend on which labels one export happens to contain) and then the sorted names
of any other label; a box with a null label gets the category `"object"`. Width and height come
from the optional `images` frame (`task_id`, `width`, `height`, optionally `file_name` and
`split`, which each image then carries); without them they are 0, which pycocotools accepts and
evaluators treat as unknown.
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
    tasks = labels.select("task_id").with_row_index("image_id", offset=1)
    if images is not None:
        extra = images.select(
            "task_id",
            *[c for c in ("width", "height", "file_name", "split") if c in images.columns],
        )
        tasks = tasks.join(extra, on="task_id", how="left", maintain_order="left")
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
    boxes = (
        labels.select("task_id", "boxes")
        .join(tasks.select("task_id", "image_id"), on="task_id", maintain_order="left")
        .explode("boxes", keep_nulls=False)
        .unnest("boxes")
        .with_columns(pl.col("label").fill_null(UNLABELLED))
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
    return {
        "info": {"description": "aggregated boxes", "version": "1.0"},
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
