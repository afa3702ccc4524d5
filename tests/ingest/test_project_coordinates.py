"""A project.json `coordinates` ("pixel" or "percent") declares the unit of every box row of
the project's tables that gives none, for every reader of project.json: `ingest --settings`,
the daily landing asset and the live loop's folding. Such a row's boxes are then checked
against the image (`values.inside_image`) as a row that says its unit is, and stored with the
declared unit; a row's own `coordinates` wins. Without it a box table with no `coordinates`
column keeps every finite box, however large (1e308). A value that is not a unit is refused
naming the file and the field, as a malformed label set or scale is."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main
from annotation_pipelines.ingest import ingest_bytes
from annotation_pipelines.ingest.validation import project_coordinates
from annotation_pipelines.kinds import BOX
from assets.live.assets import _fold_files
from resources.landing import LocalLandingZone
from tests.kinds.test_ingest_kinds import annotation, ingest_label_studio, rectangle, task

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
SOURCE = "exports/p/project.json"
AT = "2026-11-02T10:00:00Z"
NOW = datetime(2026, 11, 3, tzinfo=UTC)


def _box(x_min: float, y_min: float, x_max: float, y_max: float) -> dict[str, Any]:
    return {"label": "car", "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max}


def _row(task_id: str, box: dict[str, Any], **context: Any) -> dict[str, Any]:
    return {"task_id": task_id, "annotator_id": "a1", "submitted_at": AT, "boxes": [box], **context}


# A boxes table with no `coordinates` column: what each unit makes of its rows.
ROWS = [
    _row("inside", _box(10, 10, 90, 90)),
    _row("huge", _box(0, 0, 1e308, 10)),
    _row("negative", _box(-5, 0, 10, 10)),
]
KEPT = {None: ["huge", "inside", "negative"], "percent": ["inside"], "pixel": ["huge", "inside"]}


def _table(rows: list[dict[str, Any]], format: str) -> bytes:
    """`rows` as a table of `format`: boxes typed in Parquet and JSON Lines, JSON text in CSV."""
    if format == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    columns = list(dict.fromkeys(name for row in rows for name in row))
    if format == "csv":
        cells = [
            {
                name: json.dumps(row[name]) if isinstance(row.get(name), list) else row.get(name)
                for name in columns
            }
            for row in rows
        ]
        frame = pl.DataFrame(
            cells,
            schema={n: pl.Float64 if n.startswith("image_") else pl.String for n in columns},
        )
        return frame.write_csv().encode()
    schema: dict[str, Any] = dict.fromkeys(columns, pl.String)
    schema.update({"boxes": pl.List(BOX), "image_width": pl.Float64, "image_height": pl.Float64})
    frame = pl.DataFrame(rows, schema={n: d for n, d in schema.items() if n in columns})
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("settings", "unit"),
    [
        ({}, None),
        ({"coordinates": None}, None),
        ({"coordinates": "pixel"}, "pixel"),
        ({"coordinates": "percent"}, "percent"),
    ],
)
def test_a_declared_unit_is_pixel_or_percent(settings, unit):
    assert project_coordinates(settings, source=SOURCE) == unit


BAD_UNITS = [
    ("pixels", "'pixels'"),
    ("Percent", "'Percent'"),
    ("", "''"),
    (100, "100"),
    (["pixel"], "['pixel']"),
    (True, "True"),
]


@pytest.mark.parametrize(("given", "shown"), BAD_UNITS)
def test_a_declared_unit_that_is_not_one_names_the_file_and_the_field(tmp_path, given, shown):
    error = f'coordinates: expected "pixel" or "percent", got {shown}'
    with pytest.raises(ValueError) as raised:
        project_coordinates({"coordinates": given}, source=SOURCE)
    assert str(raised.value).startswith(f"{SOURCE}: {error}")
    # The command that checks a file as the landing zone would says so (usage error, 2).
    path = tmp_path / "boxes.csv"
    path.write_bytes(_table(ROWS, "csv"))
    settings = tmp_path / "project.json"
    settings.write_text(json.dumps({"coordinates": given}))
    result = CliRunner().invoke(
        main, ["ingest", str(path), "--format", "csv", "--settings", str(settings)]
    )
    assert result.exit_code == 2, result.output
    assert f"{settings}: {error}" in " ".join(result.stderr.split())


@pytest.mark.parametrize("format", ["csv", "parquet", "jsonl"])
@pytest.mark.parametrize("unit", [None, "percent", "pixel"])
def test_the_declared_unit_checks_every_box_row_that_gives_none(format, unit):
    result = ingest_bytes(
        _table(ROWS, format),
        format=format,
        source_file=f"boxes.{format}",
        coordinates=unit,
        now=NOW,
    )
    assert sorted(result.judgments["task_id"]) == KEPT[unit]
    refused = result.quarantine.select("reason", "field").rows()
    assert refused == [("outside_image", "boxes")] * (3 - len(KEPT[unit]))
    # Stored with the unit they were checked in, so the lake says how they are measured.
    assert set(result.judgments["coordinates"].to_list()) == {unit}


@pytest.mark.parametrize("format", ["csv", "parquet", "jsonl"])
def test_a_rows_own_unit_wins_over_the_declared_one(format):
    rows = [
        # Pixels of a large image: past 100, inside its own 2000 pixels.
        _row("own-pixel", _box(0, 0, 1500, 900), coordinates="pixel", image_width=2000.0),
        _row("own-past", _box(0, 0, 2500, 900), coordinates="pixel", image_width=2000.0),
        # No unit of its own (an empty cell): the project's percent.
        _row("declared", _box(0, 0, 150, 50), coordinates=None, image_width=None),
        _row("declared-ok", _box(0, 0, 50, 50), coordinates=None, image_width=None),
    ]
    result = ingest_bytes(
        _table(rows, format),
        format=format,
        source_file=f"boxes.{format}",
        coordinates="percent",
        now=NOW,
    )
    kept = result.judgments.sort("task_id")
    assert kept.select("task_id", "coordinates").rows() == [
        ("declared-ok", "percent"),
        ("own-pixel", "pixel"),
    ]
    quarantined = result.quarantine.select("source_line", "reason", "field").rows()
    first = 2 if format == "csv" else 1
    assert quarantined == [
        (first + 1, "outside_image", "boxes"),
        (first + 2, "outside_image", "boxes"),
    ]
    messages = result.quarantine_details()["message"].to_list()
    assert "2500 pixels" not in messages[0] and "0 to 2000 pixels" in messages[0]
    assert "0 to 100 percent of the image" in messages[1]


@pytest.mark.parametrize("format", ["csv", "parquet", "jsonl"])
def test_a_rows_own_unit_spelt_wrongly_is_refused_not_replaced_by_the_declared_one(format):
    rows = [_row("typo", _box(0, 0, 50, 50), coordinates="pixels")]
    result = ingest_bytes(
        _table(rows, format),
        format=format,
        source_file=f"boxes.{format}",
        coordinates="percent",
        now=NOW,
    )
    assert result.judgments.height == 0
    assert result.quarantine.select("reason", "field").rows() == [("wrong_type", "coordinates")]


def test_an_export_that_says_its_unit_keeps_it_whatever_the_project_declares():
    # Label Studio gives every box in percent of the image: a project declaring pixels (for
    # its tables) does not make them pixels.
    tasks = [task(1, {"image": "a.jpg"}, [annotation(11, 1, [rectangle(10, 10, 20, 20, "Car")])])]
    result = ingest_label_studio(tasks, coordinates="pixel")
    assert result.judgments["coordinates"].to_list() == ["percent"]


def test_the_ingest_command_reads_the_unit_from_its_settings(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_bytes(_table(ROWS, "csv"))
    settings = tmp_path / "project.json"
    command = ["ingest", str(path), "--format", "csv"]
    before = CliRunner().invoke(main, command)
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout)["rows_quarantined"] == 0
    settings.write_text(json.dumps({"coordinates": "percent"}))
    result = CliRunner().invoke(main, [*command, "--settings", str(settings)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows_loaded"] == 1 and summary["rows_quarantined"] == 2
    assert (
        f"{path}: row 2 (line 3), field 'boxes': outside_image: boxes: box 1 has x_max 1e+308, "
        "outside the image (0 to 100 percent of the image)"
    ) in result.stderr


def _ingest(defs, instance, landing, settings: dict[str, object]):
    (landing / SOURCE).write_text(json.dumps(settings))
    path = "exports/p/csv/boxes.csv"
    (landing / path).write_bytes(_table(ROWS, "csv"))
    instance.add_dynamic_partitions("export_files", [path])
    return defs.resolve_job_def("ingest_export_job").execute_in_process(
        partition_key=path, instance=instance, run_config=QUIET, raise_on_error=False
    )


def test_the_daily_ingest_checks_boxes_in_the_projects_unit_and_refuses_a_bad_one(env):
    defs, instance, landing = env
    bad = _ingest(defs, instance, landing, {"coordinates": "pixels"})
    assert not bad.success
    failure = next(e for e in bad.all_events if e.is_step_failure)
    assert f'{SOURCE}: coordinates: expected "pixel" or "percent"' in str(
        failure.step_failure_data.error
    )
    good = _ingest(defs, instance, landing, {"coordinates": "percent"})
    assert good.success
    metadata = good.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_loaded"].value == 1 and metadata["rows_quarantined"].value == 2
    assert "outside_image" in metadata["quarantine_preview"].value


def test_the_live_loop_folds_boxes_in_the_projects_unit_and_skips_a_bad_one(tmp_path):
    landing = tmp_path / "landing"
    folder = landing / "exports" / "p"
    (folder / "csv").mkdir(parents=True)
    path = "exports/p/csv/boxes.csv"
    (landing / path).write_bytes(_table(ROWS, "csv"))
    zone = LocalLandingZone(path=str(landing), settle_seconds=0)
    log = logging.getLogger("t")
    (folder / "project.json").write_text(json.dumps({"coordinates": 100}))
    folded: dict[str, dict[str, str]] = {}
    skipped = _fold_files(zone, folded, read_at=datetime.now(UTC), log=log)
    assert skipped.paths == []
    assert folded[path]["error"].startswith(
        f'{SOURCE}: coordinates: expected "pixel" or "percent", got 100'
    )
    (folder / "project.json").write_text(json.dumps({"coordinates": "pixel"}))
    batch = _fold_files(zone, folded, read_at=datetime.now(UTC), log=log)
    assert batch.paths == [path] and "error" not in folded[path]
    assert batch.quarantine.select("source_line", "reason", "field").rows() == [
        (4, "outside_image", "boxes")
    ]
    assert sorted(batch.kind_judgments["task_id"]) == ["huge", "inside"]
