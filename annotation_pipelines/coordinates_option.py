"""`--coordinates pixel|percent` of `aggregate`, `replay` and `agreement`: the unit of a boxes
table's coordinates, declared on the command line for the rows that do not give one.

A box is checked against its image only where its unit is known (`ingest.values.inside_image`):
0 to 100 in percent, 0 to the image's width and height in pixels. A table may say the unit per
row in a `coordinates` column; one without it says nothing about where the image ends, and no
bound can be guessed for it: a whole-slide image is 100,000 pixels wide and more, and projected
map coordinates run to millions of metres either side of zero. So without the column and without
this option, every finite box is kept, as ingest keeps it where the project declares no unit
(its project.json `coordinates`, which ingest reads as these commands read this option). The
option fills in the unit of the rows that give none (no column, or an empty cell); a row's own
unit wins, as the more specific of the two (a table that mixes units says so row by row).

`pixel` is checked against `image_width` and `image_height`, so a file without those columns is
a usage error before any work: a pixel unit with no size would check only that boxes start at 0.
Ingest does not refuse a file so: a landing-zone file has nobody at a prompt to correct it, and
a pixel row without a size is checked from 0 up there as it always was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from annotation_pipelines.kinds import COORDINATE_UNITS

F = TypeVar("F", bound=Callable[..., Any])


def coordinates_option(*, gold: bool) -> Callable[[F], F]:
    """The `--coordinates` option of a command that reads INPUT, and `--gold` too if `gold`."""
    files = "INPUT and --gold" if gold else "INPUT"
    return click.option(
        "--coordinates",
        "coordinates",
        type=click.Choice(COORDINATE_UNITS),
        default=None,
        help="Boxes only: the unit of every box whose row gives none (no `coordinates` column, "
        "or an empty cell): percent (0 to 100 of the image) or pixel (0 to each row's "
        f"image_width and image_height, columns {files} must have). A box outside its image "
        "is quarantined as outside_image. When the column and this option disagree, a row's "
        "own `coordinates` wins. Without either, boxes are not checked against an image "
        "(gigapixel slides and map coordinates have no bound to guess).",
    )


def checked_coordinates(kind: str, unit: str | None, *paths: Path | str | None) -> str | None:
    """`--coordinates` for `kind`: None when not given; a usage error for a kind other than
    boxes, or for `pixel` when one of `paths` (INPUT, `--gold`) lacks the image size columns,
    naming them and the file. Only the files' headers are read."""
    if unit is None:
        return None
    if kind != "boxes":
        raise click.BadParameter(f"applies to boxes, not {kind}", param_hint="--coordinates")
    if unit != "pixel":
        return unit
    from annotation_pipelines.tabular import IMAGE_SIZE_COLUMNS, missing_image_size

    for path in paths:
        if path is None:
            continue
        missing, have = missing_image_size(path)
        if missing:
            raise click.BadParameter(
                f"{path}: missing column(s) {', '.join(map(repr, missing))}; pixel boxes are "
                "checked against each image's width and height, given in the columns "
                f"{' and '.join(map(repr, IMAGE_SIZE_COLUMNS))} (the file has "
                f"{', '.join(map(repr, have))}). Add {'it' if len(missing) == 1 else 'them'}, "
                "or give --coordinates percent if the boxes are percentages of the image",
                param_hint="--coordinates",
            )
    return unit
