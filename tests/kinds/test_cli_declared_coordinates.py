"""`--coordinates pixel|percent` on `aggregate`, `replay` and `agreement --kind boxes`: the unit
of every box whose row gives none (no `coordinates` column, or an empty cell), so a table without
the column is checked against its image as ingest checks a row that has it. A row's own
`coordinates` wins. `pixel` needs the `image_width` and `image_height` columns (in INPUT and in
`--gold`): without them the run is a usage error naming the missing columns, before any work.
Without the option, boxes with no unit stay unchecked (`test_cli_box_context`,
`test_huge_values`)."""

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
COMMANDS = ("aggregate", "replay", "agreement")


def _rows(bad: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
    """Two tasks judged by three annotators each inside the image; data row 4 is `bad`."""
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
    elif path.suffix == ".csv":
        cells = [{k: json.dumps(v) if k == "boxes" else v for k, v in r.items()} for r in rows]
        pl.DataFrame(cells).write_csv(path)
    else:
        pl.DataFrame(rows).write_parquet(path)
    return path


def _at(path: Path, row: int) -> str:
    line = row + 1 if path.suffix == ".csv" else row
    return f"row {row}" if path.suffix == ".parquet" else f"row {row} (line {line})"


CASES = {
    "percent": (
        {},
        {"boxes": [_box(10.0, 10.0, 120.0, 40.0)]},
        "boxes: box 1 has x_max 120, outside the image (0 to 100 percent of the image)",
    ),
    "percent-below-0": (
        {},
        {"boxes": [_box(-1e308, 10.0, 40.0, 40.0)]},
        "boxes: box 1 has x_min -1e+308, outside the image (0 to 100 percent of the image)",
    ),
    "pixel": (
        {"image_width": 640, "image_height": 480},
        {"boxes": [_box(1.0, 1.0, 40.0, 1e308)]},
        "boxes: box 1 has y_max 1e+308, outside the image (0 to 480 pixels, the image's height)",
    ),
}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_declared_unit_quarantines_a_box_outside_the_image_in_every_command(
    tmp_path: Path, case: str, suffix: str
) -> None:
    context, bad, message = CASES[case]
    unit = case.split("-")[0]
    rows = _rows(bad, **context)
    path = _write(rows, tmp_path / f"boxes{suffix}")
    expected = f"{_at(path, 4)}, field 'boxes': outside_image: {message}"
    for command in COMMANDS:
        args = [command, str(path), "--kind", "boxes"]
        # Without the option nothing says where the image ends: the row is kept, as today.
        before = CliRunner().invoke(main, args)
        assert before.exit_code == 0, (command, before.output)
        assert "quarantined" not in before.stderr, (command, before.stderr)
        result = CliRunner().invoke(main, [*args, "--coordinates", unit])
        assert result.exit_code == 0, (command, result.output)
        assert f"{path}: 1 of {len(rows)} rows quarantined" in result.stderr, command
        assert expected in result.stderr, (command, result.stderr)
    output = tmp_path / "fused.jsonl"
    result = CliRunner().invoke(
        main,
        ["aggregate", str(path), "--kind", "boxes", "--coordinates", unit, "--output", str(output)],
    )
    assert result.exit_code == 0, result.output
    assert pl.read_ndjson(output).get_column("task_id").sort().to_list() == ["t1", "t2"]
    quarantine = output.with_name("fused.jsonl.quarantine.jsonl")
    (entry,) = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert (entry["file"], entry["row"], entry["field"], entry["reason"], entry["message"]) == (
        str(path),
        4,
        "boxes",
        "outside_image",
        message,
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_rows_own_coordinates_win_over_the_declared_unit(tmp_path: Path, suffix: str) -> None:
    # Row 4 says pixel on a 640-pixel image: x 120 is inside it, whatever --coordinates says.
    # Row 5 leaves its cell empty: the declared percent measures it, and x 120 is outside.
    rows = _rows({"coordinates": "pixel", "boxes": [_box(10.0, 10.0, 120.0, 40.0)]})
    rows = [{**row, "coordinates": row.get("coordinates"), "image_width": 640} for row in rows]
    rows[4] = {**rows[4], "coordinates": None, "boxes": [_box(10.0, 10.0, 120.0, 40.0)]}
    path = _write(rows, tmp_path / f"boxes{suffix}")
    message = "boxes: box 1 has x_max 120, outside the image (0 to 100 percent of the image)"
    for command in COMMANDS:
        result = CliRunner().invoke(
            main, [command, str(path), "--kind", "boxes", "--coordinates", "percent"]
        )
        assert result.exit_code == 0, (command, result.output)
        assert f"{path}: 1 of {len(rows)} rows quarantined" in result.stderr, command
        assert f"{_at(path, 5)}, field 'boxes': outside_image: {message}" in result.stderr, (
            command,
            result.stderr,
        )


@pytest.mark.parametrize(
    ("have", "missing"),
    [({}, "'image_width', 'image_height'"), ({"image_width": 640}, "'image_height'")],
)
def test_pixel_without_the_image_size_columns_is_a_usage_error_before_any_work(
    tmp_path: Path, have: dict[str, Any], missing: str
) -> None:
    path = _write(_rows({}, **have), tmp_path / "boxes.jsonl")
    output = tmp_path / "fused.jsonl"
    for command in COMMANDS:
        args = [command, str(path), "--kind", "boxes", "--coordinates", "pixel"]
        if command != "agreement":
            args += ["--output", str(output)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (command, result.output)
        assert "Invalid value for --coordinates:" in result.stderr, result.stderr
        stderr = " ".join(result.stderr.split())
        assert f"{path}: missing column(s) {missing}" in stderr, stderr
        assert not output.exists()
        assert not output.with_name(output.name + ".quarantine.jsonl").exists()


def test_pixel_needs_the_image_size_in_gold_too(tmp_path: Path) -> None:
    path = _write(_rows({}, image_width=640, image_height=480), tmp_path / "boxes.jsonl")
    gold = _write([{"task_id": "t1", "boxes": [INSIDE]}], tmp_path / "gold.jsonl")
    for command in ("aggregate", "replay"):
        args = [command, str(path), "--kind", "boxes", "--gold", str(gold)]
        result = CliRunner().invoke(main, [*args, "--coordinates", "pixel"])
        assert result.exit_code == 2, (command, result.output)
        assert f"{gold}: missing column(s) 'image_width', 'image_height'" in " ".join(
            result.stderr.split()
        ), result.stderr
        # In percent the gold box is measured too: one outside the image is an error naming it.
        outside = _write(
            [{"task_id": "t1", "boxes": [_box(10.0, 10.0, 120.0, 40.0)]}],
            tmp_path / "gold_outside.jsonl",
        )
        args = [command, str(path), "--kind", "boxes", "--gold", str(outside)]
        assert CliRunner().invoke(main, args).exit_code == 0
        result = CliRunner().invoke(main, [*args, "--coordinates", "percent"])
        assert result.exit_code == 1, (command, result.output)
        assert (
            f"{outside}: row 1 (line 1), field 'boxes': outside_image: boxes: box 1 has x_max 120"
            in result.stderr
        ), result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_coordinates_apply_to_boxes_only(tmp_path: Path, command: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("task_id,annotator_id,value\nt1,a,1\nt1,b,2\n")
    result = CliRunner().invoke(
        main, [command, str(path), "--kind", "numeric", "--coordinates", "percent"]
    )
    assert result.exit_code == 2, result.output
    assert "applies to boxes, not numeric" in result.stderr, result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_the_help_says_which_unit_wins(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "--coordinates [pixel|percent]" in text, text
    assert "a row's own `coordinates` wins" in text, text
