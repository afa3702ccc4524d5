"""The commands read a boxes table's `coordinates`, `image_width` and `image_height` columns,
as ingest does, and check each box lies inside its image with ingest's own check
(`values.inside_image`): a box outside is quarantined as `outside_image` on field `boxes`, an
unknown unit or a size that is no positive number as `wrong_type` on its field, with the file,
row and line named. Before, they read no such column, so a percent box at x 120, or a pixel box
at x −1e308, was fused. A NaN or infinite id in a Parquet float column was spelled "NaN" by the
commands; it is now refused as a JSON NaN id is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main


def _box(x_min: float, y_min: float, x_max: float, y_max: float) -> dict[str, Any]:
    return {"label": "car", "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max}


INSIDE = _box(10.0, 10.0, 40.0, 40.0)


def _rows(bad: dict[str, Any]) -> list[dict[str, Any]]:
    """Two tasks judged by three annotators each inside the image; data row 4 is `bad`."""
    context = {"coordinates": "percent", "image_width": 640, "image_height": 480}
    rows = [
        {"task_id": task, "annotator_id": annotator, "boxes": [INSIDE], **context}
        for task in ("t1", "t2")
        for annotator in ("a", "b", "c")
    ]
    return [
        *rows[:3],
        {"task_id": "t9", "annotator_id": "a", "boxes": [INSIDE], **context, **bad},
        *rows[3:],
    ]


def _write(rows: list[dict[str, Any]], path: Path) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        pl.DataFrame(rows).write_parquet(path)
    return path


CASES = {
    "percent-past-100": (
        {"boxes": [_box(10.0, 10.0, 120.0, 40.0)]},
        "boxes",
        "outside_image",
        "boxes: box 1 has x_max 120, outside the image (0 to 100 percent of the image)",
    ),
    "pixel-at-minus-1e308": (
        {"boxes": [_box(-1e308, 10.0, 40.0, 40.0)], "coordinates": "pixel"},
        "boxes",
        "outside_image",
        "boxes: box 1 has x_min -1e+308, outside the image (0 to 640 pixels, the image's width)",
    ),
    "pixel-past-the-height": (
        {"boxes": [_box(1.0, 1.0, 40.0, 1e308)], "coordinates": "pixel"},
        "boxes",
        "outside_image",
        "boxes: box 1 has y_max 1e+308, outside the image (0 to 480 pixels, the image's height)",
    ),
    "unknown-unit": (
        {"coordinates": "inches"},
        "coordinates",
        "wrong_type",
        "coordinates: expected one of pixel, percent, got 'inches'",
    ),
    "negative-width": (
        {"image_width": -640},
        "image_width",
        "wrong_type",
        "image_width: expected a positive number, got -640",
    ),
}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_command_quarantines_a_box_outside_its_image_as_ingest_does(
    tmp_path: Path, case: str, suffix: str
) -> None:
    bad, field, reason, message = CASES[case]
    rows = _rows(bad)
    path = _write(rows, tmp_path / f"boxes{suffix}")
    at = "row 4 (line 4)" if suffix == ".jsonl" else "row 4"
    expected = f"{at}, field {field!r}: {reason}: {message}"
    runs = {
        "aggregate": ["aggregate", str(path), "--kind", "boxes"],
        "replay": ["replay", str(path), "--kind", "boxes"],
        "agreement": ["agreement", str(path), "--kind", "boxes"],
    }
    for name, args in runs.items():
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (name, result.output)
        assert f"{path}: 1 of {len(rows)} rows quarantined" in result.stderr, name
        assert expected in result.stderr, (name, result.stderr)
    output = tmp_path / "fused.jsonl"
    result = CliRunner().invoke(main, [*runs["aggregate"], "--output", str(output)])
    assert result.exit_code == 0, result.output
    fused = pl.read_ndjson(output)
    assert fused.get_column("task_id").sort().to_list() == ["t1", "t2"]
    quarantine = output.with_name("fused.jsonl.quarantine.jsonl")
    (entry,) = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert (entry["row"], entry["field"], entry["reason"], entry["message"]) == (
        4,
        field,
        reason,
        message,
    )


def test_the_ingest_command_refuses_the_same_rows(tmp_path: Path) -> None:
    for case, (bad, field, reason, message) in CASES.items():
        rows = [{**row, "submitted_at": "2026-05-01T10:00:00Z"} for row in _rows(bad)]
        path = _write(rows, tmp_path / f"{case}.jsonl")
        result = CliRunner().invoke(main, ["ingest", str(path), "--format", "jsonl"])
        assert result.exit_code == 0, result.output
        assert f"line 4, field {field!r}: {reason}: {message}" in result.stderr, case


def test_boxes_without_a_unit_are_not_checked_against_an_image(tmp_path: Path) -> None:
    # Without `coordinates` nothing says what image the numbers measure, in the commands as
    # in ingest: finite coordinates, however large, are fused (see tests/kinds/test_huge_values).
    rows = [
        {"task_id": "t1", "annotator_id": annotator, "boxes": [_box(-1e308, 0.0, 1e308, 1.0)]}
        for annotator in ("a", "b")
    ]
    path = _write(rows, tmp_path / "boxes.jsonl")
    result = CliRunner().invoke(main, ["aggregate", str(path), "--kind", "boxes"])
    assert result.exit_code == 0, result.output
    assert "quarantined" not in result.stderr


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_coordinate_no_float_holds_is_wrong_type_in_every_command(
    tmp_path: Path, value: str
) -> None:
    good = json.dumps({"task_id": "t1", "annotator_id": "a", "boxes": [INSIDE]})
    bad = good.replace('"x_min": 10.0', f'"x_min": {value}').replace('"a"', '"b"')
    path = tmp_path / "boxes.jsonl"
    path.write_text(good + "\n" + bad + "\n")
    for command in ("aggregate", "replay", "agreement"):
        result = CliRunner().invoke(main, [command, str(path), "--kind", "boxes"])
        assert result.exit_code == 0, (command, result.output)
        assert "row 2 (line 2), field 'boxes': wrong_type: boxes: x_min must be a finite" in (
            result.stderr
        ), (command, result.stderr)


def test_a_nan_id_in_a_parquet_float_column_is_wrong_type_in_the_commands(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    pl.DataFrame(
        {
            "task_id": [1.0, 1.0, float("nan"), 2.0],
            "annotator_id": ["a", "b", "c", "d"],
            "label": [1.0, 1.0, 2.0, float("inf")],
        }
    ).write_parquet(path)
    result = CliRunner().invoke(main, ["aggregate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["task_id,label,confidence", "1.0,1.0,1.0"]
    assert (
        "row 3, field 'task_id': wrong_type: expected a string or a number, got nan"
        in result.stderr
    )
    assert "row 4, field 'label': wrong_type: label: expected a scalar, got inf" in result.stderr


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_one_object_drawn_in_pixels_and_in_percent_is_one_object(
    tmp_path: Path, suffix: str
) -> None:
    # Before, boxes were matched as numbers whatever their unit: annotator a's pixel box was
    # dropped as a second object nobody else drew (the others' box fused at 0.976) and
    # agreement read 0.333 where all three agree.
    image = {"image_width": 640, "image_height": 480}
    path = _write(
        [
            {
                "task_id": "t1",
                "annotator_id": "a",
                "boxes": [_box(64.0, 48.0, 256.0, 192.0)],
                "coordinates": "pixel",
                **image,
            },
            *(
                {
                    "task_id": "t1",
                    "annotator_id": name,
                    "boxes": [INSIDE],
                    "coordinates": "percent",
                    **image,
                }
                for name in ("b", "c")
            ),
        ],
        tmp_path / f"mixed{suffix}",
    )
    output = tmp_path / "fused.jsonl"
    result = CliRunner().invoke(
        main, ["aggregate", str(path), "--kind", "boxes", "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    (fused,) = pl.read_ndjson(output).to_dicts()
    (box,) = fused["boxes"]
    assert box == pytest.approx({**INSIDE, "confidence": 1.0})
    result = CliRunner().invoke(main, ["agreement", str(path), "--kind", "boxes"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mean_pairwise_agreement"] == pytest.approx(1.0)


def test_gold_in_another_unit_than_its_tasks_judgments_is_converted(tmp_path: Path) -> None:
    # Before, the pixel gold box was taken as numbers in the task's percent: the gold task
    # came out as a box at x 64–256 "percent".
    image = {"image_width": 640, "image_height": 480}
    path = _write(
        [
            {
                "task_id": "t1",
                "annotator_id": "a",
                "boxes": [_box(64.0, 48.0, 256.0, 192.0)],
                "coordinates": "pixel",
                **image,
            },
            *(
                {
                    "task_id": "t1",
                    "annotator_id": name,
                    "boxes": [INSIDE],
                    "coordinates": "percent",
                    **image,
                }
                for name in ("b", "c")
            ),
        ],
        tmp_path / "mixu.jsonl",
    )
    gold = _write(
        [
            {
                "task_id": "t1",
                "boxes": [_box(64.0, 48.0, 256.0, 192.0)],
                "coordinates": "pixel",
                **image,
            }
        ],
        tmp_path / "g.jsonl",
    )
    output = tmp_path / "fused.jsonl"
    result = CliRunner().invoke(
        main,
        ["aggregate", str(path), "--kind", "boxes", "--gold", str(gold), "--output", str(output)],
    )
    assert result.exit_code == 0, result.output
    (fused,) = pl.read_ndjson(output).to_dicts()
    (box,) = fused["boxes"]
    assert box == pytest.approx({**INSIDE, "confidence": 1.0})
