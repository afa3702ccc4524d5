"""The live loop names a row it did not fold in by the line it starts on, as `ingest` names
it: a quoted cell over two lines pushes every later row down the file, past the stored
`source_line` (the data row + 1)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from annotation_pipelines.cli import main
from assets.live.assets import _fold_files, file_quarantine_lines
from resources.landing import LocalLandingZone


def test_a_row_after_a_cell_over_two_lines_is_named_by_the_line_it_starts_on(tmp_path):
    landing = tmp_path / "landing"
    folder = landing / "exports" / "reviews"
    (folder / "csv").mkdir(parents=True)
    (folder / "project.json").write_text(json.dumps({"label_set": ["pos", "neg"]}))
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    path = "exports/reviews/csv/batch.csv"
    (landing / path).write_text(
        "task_id,annotator_id,label,submitted_at,comment\n"
        f't1,a1,pos,{at},"two\nlines"\n'
        f"t1,a2,cat,{at},\n"
    )
    zone = LocalLandingZone(path=str(landing), settle_seconds=0)
    batch = _fold_files(zone, {}, read_at=datetime.now(UTC), log=logging.getLogger("t"))
    [line] = file_quarantine_lines(batch.quarantine, lines=batch.lines)
    assert line == f"{path}, row 2 (line 4): label: unknown_label"
    # The same row as `ingest` names it.
    command = ["ingest", str(landing / path), "--format", "csv", "--project", "reviews"]
    command += ["--settings", str(folder / "project.json")]
    result = CliRunner().invoke(main, command)
    assert "row 2 (line 4), field 'label': unknown_label" in result.stderr, result.stderr


def test_a_gzipped_export_is_folded_and_its_rows_named_as_in_the_plain_file(tmp_path):
    """The live loop read a `.csv.gz` export's compressed bytes, as the daily ingest did."""
    import gzip

    landing = tmp_path / "landing"
    folder = landing / "exports" / "reviews"
    (folder / "csv").mkdir(parents=True)
    (folder / "project.json").write_text(json.dumps({"label_set": ["pos", "neg"]}))
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    path = "exports/reviews/csv/batch.csv.gz"
    text = (
        "task_id,annotator_id,label,submitted_at,comment\n"
        f't1,a1,pos,{at},"two\nlines"\n'
        f"t1,a2,cat,{at},\n"
    )
    (landing / path).write_bytes(gzip.compress(text.encode()))
    zone = LocalLandingZone(path=str(landing), settle_seconds=0)
    batch = _fold_files(zone, {}, read_at=datetime.now(UTC), log=logging.getLogger("t"))
    [line] = file_quarantine_lines(batch.quarantine, lines=batch.lines)
    assert line == f"{path}, row 2 (line 4): label: unknown_label"
