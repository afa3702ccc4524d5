"""The `ingest` command's fixed contract, driven through click's CliRunner."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main
from annotation_pipelines.schema import JUDGMENTS, QUARANTINE
from tests.ingest.conftest import label_studio_tasks, write_label_studio
from tests.inputs import write_input

HEADER = "task_id,annotator_id,label,submitted_at,duration_s\n"
ROWS = "t1,a1,pos,2026-05-01T10:00:00Z,1\nt1,a2,sarcastic,2026-05-01T10:00:00Z,1\n"


def run(*args: str):
    return CliRunner().invoke(main, ["ingest", *args], catch_exceptions=False)


def summary(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl"])
def test_each_table_format_writes_judgments_and_quarantine(tmp_path, fmt):
    frame = pl.read_csv((HEADER + ROWS).encode())
    path = write_input(frame, tmp_path / f"export.{fmt}")
    out = tmp_path / "out"
    result = run(
        str(path), "--format", fmt, "--label-set", "pos,neg", "--project", "p", "--output", str(out)
    )
    assert result.exit_code == 0, result.output
    assert summary(result.output) | {} == {
        "rows_read": 2,
        "rows_loaded": 1,
        "rows_quarantined": 1,
        "duplicates": 0,
        "reasons": {"unknown_label": 1},
        "judgments": 1,
        "gold_labels": 0,
        "tasks": 1,
        "files": 1,
    }
    judgments = pl.read_parquet(out / "judgments.parquet")
    quarantine = pl.read_parquet(out / "quarantine.parquet")
    assert dict(judgments.schema) == JUDGMENTS
    assert dict(quarantine.schema) == QUARANTINE
    assert quarantine.get_column("source_line").item() == (3 if fmt in ("csv", "tsv") else 2)


def test_label_studio_folder_with_bad_files_exits_zero_and_counts(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    write_label_studio(folder / "good.json")
    text = json.dumps(label_studio_tasks(), indent=2)
    (folder / "truncated.json").write_text(text[: text.index('"id": 102')])
    (folder / "latin1.json").write_bytes(text.replace("meh", "m\u00e9h").encode("latin-1"))
    result = run(str(folder), "--format", "label-studio", "--label-set", "pos,neg,neutral")
    assert result.exit_code == 0, result.output
    counts = summary(result.output)
    assert counts["files"] == 3
    assert counts["reasons"] == {"cancelled": 3, "duplicate": 1, "non_utf8": 1, "truncated_file": 1}
    assert counts["rows_read"] == counts["rows_loaded"] + counts["rows_quarantined"]


def test_sagemaker_manifest(tmp_path):
    line = {
        "source-ref": "s3://b/a.jpg",
        "animal": 0,
        "animal-metadata": {
            "class-name": "cat",
            "job-name": "labeling-job/animals",
            "creation-date": "2026-05-01T22:18:13.527256",
        },
    }
    path = tmp_path / "output.manifest"
    path.write_text(json.dumps(line) + "\n")
    result = run(str(path), "--format", "sagemaker-gt")
    assert result.exit_code == 0
    assert summary(result.output)["rows_loaded"] == 1


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.json", b"", "empty file"),
        ("object.json", b'{"not": "an array"}', "expected a JSON array"),
        ("cut.json", b'[{"id": 1, "annotations": [{"id": 2', "no task could be read"),
    ],
)
def test_unreadable_file_fails_with_its_name(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["ingest", str(path), "--format", "label-studio"])
    assert result.exit_code == 1
    assert name in result.output and message in result.output
    assert "Traceback" not in result.output


def test_missing_path_and_bad_csv_fail_cleanly(tmp_path):
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "nope.csv"), "--format", "csv"])
    assert result.exit_code == 1 and "nope.csv" in result.output
    path = tmp_path / "wrong.csv"
    path.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(main, ["ingest", str(path), "--format", "csv"])
    assert (
        result.exit_code == 1 and "missing column" in result.output and "wrong.csv" in result.output
    )
    # The file's own columns are listed, not the ones the reader adds to track lines.
    assert "the file has 'a', 'b'" in result.output, result.output
    assert "_line" not in result.output and "_bad_bytes" not in result.output


def test_kind_option_reads_a_table_of_spans(tmp_path):
    rows = [
        {
            "task_id": "t1",
            "annotator_id": "a",
            "submitted_at": "2026-05-01T10:00:00Z",
            "spans": [{"start": 0, "end": 3, "label": "PER"}],
        },
        {
            "task_id": "t1",
            "annotator_id": "b",
            "submitted_at": "2026-05-01T10:00:00Z",
            "spans": [{"start": 3, "end": 0}],
        },
    ]
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "out"
    result = run(str(path), "--format", "jsonl", "--kind", "spans", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert summary(result.output)["reasons"] == {"wrong_type": 1}
    judgments = pl.read_parquet(out / "judgments.parquet")
    assert dict(judgments.schema) == JUDGMENTS
    assert judgments.select("kind", "spans").rows() == [
        ("spans", [{"start": 0, "end": 3, "label": "PER"}])
    ]


MAPPED = (
    "question,worker,answer,time\n"
    "q1,w1,yes,2026-05-01T10:00:00Z\n"
    "q1,,no,2026-05-01T10:00:00Z\n"
    "q2,w2,maybe,2026-05-01T10:00:00Z\n"
)
COLUMNS = ("--task-col", "question", "--annotator-col", "worker", "--label-col", "answer")


def test_column_options_map_a_plain_csv_and_quarantined_rows_are_shown(tmp_path, monkeypatch):
    # Its rows are of May 2026: a start date before them keeps stderr to the quarantine.
    monkeypatch.setenv("ANNOTATION_PIPELINES_START_DATE", "2026-01-01")
    path = tmp_path / "answers.csv"
    path.write_text(MAPPED)
    args = [str(path), "--format", "csv", "--project", "duck", "--label-set", "yes,no"]
    missing = run(*args, *COLUMNS)
    assert missing.exit_code == 1
    assert "missing column(s) 'submitted_at'" in missing.output
    result = run(*args, *COLUMNS, "--submitted-at-col", "time")
    assert result.exit_code == 0, result.output
    counts = summary(result.stdout)
    assert (counts["rows_read"], counts["rows_loaded"], counts["rows_quarantined"]) == (3, 1, 2)
    assert result.stderr.splitlines() == [
        "2 of 3 rows quarantined (all with --output):",
        f"  {path}: row 2 (line 3), field 'annotator_id': missing_annotator",
        f"  {path}: row 3 (line 4), field 'label': unknown_label",
    ]


def test_settings_file_maps_as_the_landing_sensor_does(tmp_path):
    from annotation_pipelines.ingest import ColumnMapping, ingest_bytes

    path = tmp_path / "answers.csv"
    path.write_text(MAPPED)
    mapping = {
        "task_id": "question",
        "annotator_id": "worker",
        "label": "answer",
        "submitted_at": "time",
    }
    settings = tmp_path / "project.json"
    settings.write_text(json.dumps({"mapping": mapping, "label_set": ["yes", "no"]}))
    out = tmp_path / "out"
    result = run(
        str(path), "--format", "csv", "--project", "duck", "--settings", str(settings),
        "--output", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # What the landing sensor's asset computes from the same file and project.json.
    sensor = ingest_bytes(
        path.read_bytes(),
        format="csv",
        source_file=str(path),
        project="duck",
        label_set=["yes", "no"],
        mapping=ColumnMapping.from_dict(mapping),
    )
    assert summary(result.stdout) == sensor.summary()
    written = pl.read_parquet(out / "judgments.parquet")
    assert written.equals(sensor.judgments)
    # An option overrides the file's mapping; a mapping naming an unknown field is refused.
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(MAPPED.replace("question", "item"))
    overridden = run(
        str(renamed), "--format", "csv", "--settings", str(settings), "--task-col", "item"
    )
    assert overridden.exit_code == 0 and summary(overridden.stdout)["rows_loaded"] == 1
    settings.write_text(json.dumps({"mapping": {"when": "time"}}))
    assert run(str(path), "--format", "csv", "--settings", str(settings)).exit_code == 2


def test_a_settings_file_saved_with_a_byte_order_mark_is_read_as_the_landing_zone_reads_it(
    tmp_path,
):
    """Notepad saves UTF-8 with a BOM; the landing asset reads such a project.json, and the
    command refused it (`Unexpected UTF-8 BOM`)."""
    path = tmp_path / "answers.csv"
    path.write_text(MAPPED)
    settings = tmp_path / "project.json"
    mapping = {"task_id": "question", "annotator_id": "worker", "label": "answer"}
    text = json.dumps({"mapping": {**mapping, "submitted_at": "time"}, "label_set": ["yes"]})
    settings.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = run(str(path), "--format", "csv", "--settings", str(settings))
    assert result.exit_code == 0, result.output
    assert summary(result.stdout)["rows_loaded"] == 1


@pytest.mark.parametrize(
    ("gates", "error"),
    [
        ({"min_alpha": 1.5}, "quality_gates.min_alpha: expected a number in [-1, 1], got 1.5"),
        (
            {"min_gold_accuracy": -0.1},
            "quality_gates.min_gold_accuracy: expected a number in [0, 1], got -0.1",
        ),
        (
            {"min_alpha": "high"},
            "quality_gates.min_alpha: expected a number in [-1, 1], got 'high'",
        ),
        ({"min_alpha": True}, "quality_gates.min_alpha: expected a number in [-1, 1], got True"),
        (
            {"min_kappa": 0.4},
            "quality_gates.min_kappa: unknown field (known: min_alpha, min_gold_accuracy)",
        ),
        ([0.4], 'quality_gates: expected an object like {"min_alpha": 0.4}, got list'),
    ],
)
def test_settings_quality_gates_are_checked_as_the_gates_read_them(tmp_path, gates, error):
    from annotation_pipelines.quality.gates import project_gate_floors

    path = tmp_path / "answers.csv"
    path.write_text(MAPPED)
    settings = tmp_path / "project.json"
    content = {"mapping": {"task_id": "question", "annotator_id": "worker", "label": "answer",
                           "submitted_at": "time"}, "quality_gates": gates}  # fmt: skip
    settings.write_text(json.dumps(content))
    result = run(str(path), "--format", "csv", "--settings", str(settings))
    # Bad settings are a usage error (2), as a bad mapping is; the message is the one the
    # quality step fails with, naming the file, the field and the value.
    assert result.exit_code == 2, result.output
    assert f"{settings}: {error}" in " ".join(result.stderr.split())
    with pytest.raises(ValueError) as raised:
        project_gate_floors(content, source=str(settings))
    assert str(raised.value) == f"{settings}: {error}"
    # Valid floors pass, and change nothing about the ingest.
    content["quality_gates"] = {"min_alpha": 0.4, "min_gold_accuracy": 0.8}
    settings.write_text(json.dumps(content))
    valid = run(str(path), "--format", "csv", "--settings", str(settings))
    assert valid.exit_code == 0, valid.output
    del content["quality_gates"]
    settings.write_text(json.dumps(content))
    assert summary(valid.stdout) == summary(run(str(path), "--format", "csv", "--settings",
                                                    str(settings)).stdout)  # fmt: skip


def test_column_options_are_for_tables_only_and_many_quarantined_rows_are_elided(tmp_path):
    write_label_studio(tmp_path / "export.json")
    result = run(str(tmp_path / "export.json"), "--format", "label-studio", *COLUMNS)
    assert result.exit_code == 2 and "apply to tables" in result.output
    path = tmp_path / "many.parquet"
    rows = [("t", "a", "bad", "2026-05-01T10:00:00Z")] * 8
    frame = pl.DataFrame(
        rows, schema=["task_id", "annotator_id", "label", "submitted_at"], orient="row"
    )
    frame.write_parquet(path)
    result = run(str(path), "--format", "parquet", "--label-set", "good")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "8 of 8 rows quarantined (all with --output):"
    assert lines[1] == f"  {path}: row 1, field 'label': unknown_label"
    assert lines[-1] == "  ... and 3 more" and len(lines) == 7


def test_settings_apply_to_every_format_as_the_landing_asset_applies_them(tmp_path):
    # The landing asset reads a project's label set and gate floors whatever the export's
    # format; the column mapping only means something to a table.
    path = write_label_studio(tmp_path / "export.json")
    settings = tmp_path / "project.json"
    settings.write_text(json.dumps({"label_set": ["pos", "neg"], "mapping": {"task_id": "id"}}))
    given = run(str(path), "--format", "label-studio", "--settings", str(settings))
    assert given.exit_code == 0, given.output
    listed = run(str(path), "--format", "label-studio", "--label-set", "pos,neg")
    assert summary(given.stdout) == summary(listed.stdout)
    assert summary(given.stdout)["reasons"].get("unknown_label")
    settings.write_text(json.dumps({"quality_gates": {"min_alpha": "high"}}))
    bad = run(str(path), "--format", "label-studio", "--settings", str(settings))
    assert bad.exit_code == 2 and "quality_gates.min_alpha" in bad.output


def test_a_declared_scale_quarantines_numeric_answers_outside_it_as_the_landing_asset_does(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ANNOTATION_PIPELINES_START_DATE", "2026-01-01")
    path = tmp_path / "ratings.csv"
    path.write_text(
        "task_id,annotator_id,kind,value,submitted_at\n"
        "t1,a1,numeric,4,2026-05-01T10:00:00Z\n"
        "t1,a2,numeric,1e200,2026-05-01T10:00:00Z\n"
        "t1,a3,numeric,4.5,2026-05-01T10:00:00Z\n"
    )
    settings = tmp_path / "project.json"
    settings.write_text(json.dumps({"scale": {"min": 1, "max": 5, "step": 1}}))
    unchecked = run(str(path), "--format", "csv")
    assert unchecked.exit_code == 0 and summary(unchecked.stdout)["rows_quarantined"] == 0
    given = run(str(path), "--format", "csv", "--settings", str(settings))
    assert given.exit_code == 0, given.output
    assert summary(given.stdout)["reasons"] == {"outside_scale": 2}
    assert given.stderr.splitlines()[1:] == [
        f"  {path}: row 2 (line 3), field 'value (scale [1, 5] step 1)': outside_scale",
        f"  {path}: row 3 (line 4), field 'value (scale [1, 5] step 1)': outside_scale",
    ]
    # The option overrides the file's scale: half steps are answers on 1:5:0.5.
    option = run(str(path), "--format", "csv", "--settings", str(settings), "--scale", "1:5:0.5")
    assert summary(option.stdout)["reasons"] == {"outside_scale": 1}
    for bad, error in [
        ({"scale": {"min": 5, "max": 1}}, "scale: min must be below max"),
        ({"scale": {"min": 1, "max": "5"}}, "scale.max: expected a finite number, got '5'"),
    ]:
        settings.write_text(json.dumps(bad))
        refused = run(str(path), "--format", "csv", "--settings", str(settings))
        assert refused.exit_code == 2
        assert f"{settings}: {error}" in " ".join(refused.stderr.split())
    refused = run(str(path), "--format", "csv", "--scale", "5:1")
    assert refused.exit_code == 2 and "min must be below max" in refused.stderr


def test_a_row_after_a_cell_over_two_lines_is_named_by_the_line_it_starts_on(tmp_path):
    # The message said `row 3 (line 4)` (the stored source_line, data row + 1) where an
    # editor, and `aggregate` on the same file, show line 5.
    path = tmp_path / "export.csv"
    path.write_text(
        "task_id,annotator_id,label,submitted_at\n"
        't1,a1,"pos\nstill pos",2026-05-01T10:00:00Z\n'
        "t1,a2,pos,2026-05-01T10:00:00Z\n"
        "t1,a3,pos,not a time\n"
    )
    result = run(str(path), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert f"{path}: row 3 (line 5), field 'submitted_at': wrong_type" in result.stderr


def test_a_utf16_export_is_refused_naming_the_file_and_the_encoding(tmp_path):
    # Excel's "Unicode Text" is UTF-16 with a byte order mark: ingest (and so the landing
    # run) stopped with a bare csv.Error traceback naming neither the file nor the cause.
    path = tmp_path / "export.tsv"
    text = "task_id\tannotator_id\tlabel\tsubmitted_at\r\nt1\ta1\tpos\t2026-05-01T10:00:00Z\r\n"
    path.write_bytes(text.encode("utf-16"))
    result = CliRunner().invoke(main, ["ingest", str(path), "--format", "tsv"])
    assert result.exit_code == 1, result.output
    assert f"{path}: the file is UTF-16 text; save it as UTF-8" in result.stderr


@pytest.mark.parametrize("command", ["ingest", "aggregate"])
def test_a_csv_whose_lines_end_in_a_carriage_return_alone_says_so(tmp_path, command):
    # Excel for Mac's "CSV (Macintosh)" ends lines in CR alone: the file read as one line
    # was refused for a missing column 'label', listing 'label\rt1' among the columns.
    path = tmp_path / "export.csv"
    text = "task_id,annotator_id,label,submitted_at\rt1,a1,pos,2026-05-01T10:00:00Z\r"
    path.write_bytes(text.encode())
    options = ["--format", "csv"] if command == "ingest" else []
    result = CliRunner().invoke(main, [command, str(path), *options])
    assert result.exit_code == 1, result.output
    assert f"{path}: its lines end in a carriage return alone (CR)" in result.stderr


def test_a_header_naming_a_mapped_column_twice_is_refused(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "task_id,annotator_id,label,submitted_at,label\nt1,a1,pos,2026-05-01T10:00:00Z,neg\n"
    )
    result = CliRunner().invoke(main, ["ingest", str(path), "--format", "csv"])
    assert result.exit_code == 1, result.output
    assert f"{path}: line 1 (header): column 'label' appears 2 times" in result.stderr


def test_a_parquet_file_read_as_csv_says_so(tmp_path):
    # It was "file ends mid-record ...; it is still being written or was cut short": in the
    # landing zone (a Parquet file dropped in a csv/ folder) an operator waits for an upload
    # that has long finished.
    path = tmp_path / "export.csv"
    pl.DataFrame({"task_id": ["t1"], "label": ["pos"]}).write_parquet(path)
    result = CliRunner().invoke(main, ["ingest", str(path), "--format", "csv"])
    assert result.exit_code == 1, result.output
    assert f"{path}: this is a Parquet file, not csv text" in result.stderr
    from annotation_pipelines.aggregation.command import aggregate_command

    result = CliRunner().invoke(aggregate_command, [str(path)])
    assert result.exit_code == 1
    assert f"{path}: this is a Parquet file, not csv text" in " ".join(result.output.split())


def test_a_folder_is_read_as_the_landing_zone_lists_it(tmp_path):
    # The landing zone never offers a dotfile or a name an upload is still writing; `ingest`
    # of the same folder read them and stopped at the first (exit 1). An office lock file
    # (`~$export.csv`, written beside a CSV open in Excel) is never data either.
    from resources.landing import is_upload_in_progress

    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "export.csv").write_text(
        "task_id,annotator_id,label,submitted_at\nt1,a1,pos,2026-05-01T10:00:00Z\n"
    )
    (folder / ".export.csv").write_text("task_id,label\nt1,pos\n")
    (folder / "~$export.csv").write_bytes(b"\x08owner\x00\x00")
    (folder / "next.csv.part").write_text("task_id")
    result = run(str(folder), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert summary(result.stdout)["files"] == 1
    assert is_upload_in_progress("~$export.csv")


def test_an_empty_file_in_a_folder_is_zero_rows_as_the_landing_zone_reads_it(tmp_path):
    # Emptying a file is how the landing zone takes its rows back, so it reads one as zero
    # rows; the same folder given to `ingest` stopped at it (exit 1).
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "task_id,annotator_id,label,submitted_at\nt1,a1,pos,2026-05-01T10:00:00Z\n"
    )
    (folder / "b.csv").write_bytes(b"")
    (folder / "c.csv").write_text("\n  \n")
    result = run(str(folder), "--format", "csv")
    assert result.exit_code == 0, result.output
    counts = summary(result.stdout)
    assert counts["files"] == 3 and counts["rows_read"] == 1 and counts["rows_loaded"] == 1
    # A file named on its own is still refused: asking to ingest an empty file is a slip.
    result = CliRunner().invoke(main, ["ingest", str(folder / "b.csv"), "--format", "csv"])
    assert result.exit_code == 1 and "b.csv: empty file" in result.output


@pytest.mark.parametrize("suffix", [".csv.gz", ".tsv.gz", ".jsonl.gz"])
def test_a_gzipped_export_is_read_as_the_other_commands_read_it(tmp_path, suffix):
    # Polars unpacked a gzipped CSV by itself, but a gzipped JSON Lines file was read as
    # binary and every line quarantined as non_utf8.
    import gzip

    plain = write_input(pl.read_csv((HEADER + ROWS).encode()), tmp_path / f"e{suffix[:-3]}")
    path = tmp_path / f"e{suffix}"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    result = run(str(path), "--format", suffix.split(".")[1], "--label-set", "pos,neg")
    assert result.exit_code == 0, result.output
    counts = summary(result.stdout)
    assert counts["rows_read"] == 2 and counts["rows_loaded"] == 1
    where = "line 2" if suffix == ".jsonl.gz" else "row 2 (line 3)"
    assert f"{path}: {where}, field 'label': unknown_label" in result.stderr, result.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_folder_lists_gzipped_exports_as_the_landing_zone_reads_them(tmp_path, fmt):
    # A `.csv.gz` given by name was read, but a folder listed only the plain suffixes: a
    # folder of gzipped exports was `no csv files`.
    import gzip

    folder = tmp_path / "drop"
    folder.mkdir()
    plain = write_input(pl.read_csv((HEADER + ROWS).encode()), tmp_path / f"e.{fmt}")
    (folder / f"e.{fmt}.gz").write_bytes(gzip.compress(plain.read_bytes()))
    (folder / f"f.{fmt}").write_bytes(plain.read_bytes())
    (folder / f"g.{fmt}.gz.part").write_bytes(b"\x1f")
    result = run(str(folder), "--format", fmt, "--label-set", "pos,neg")
    assert result.exit_code == 0, result.output
    counts = summary(result.stdout)
    assert counts["files"] == 2 and counts["rows_read"] == 4 and counts["rows_loaded"] == 2
    (folder / f"e.{fmt}.gz").unlink()
    (folder / f"f.{fmt}").unlink()
    result = run(str(folder), "--format", fmt)
    assert f"no {fmt} files (.{fmt}, " in result.output and f".{fmt}.gz" in result.output


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_gzipped_export_in_the_landing_zone_is_read_as_the_command_reads_it(env, fmt):
    """The landing zone offers `labels.jsonl.gz` as it offers any file of a format folder:
    its runs read the compressed bytes (every retry failed `no line could be read
    (non_utf8)`), and a gzipped CSV reached Polars only past checks made on compressed bytes."""
    import gzip

    defs, instance, landing = env
    rows = pl.DataFrame(
        {
            "task_id": ["t1", "t1"],
            "annotator_id": ["a1", "a2"],
            "label": ["pos", "neg"],
            "submitted_at": ["2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z"],
        }
    )
    folder = landing / "exports" / "p" / fmt
    folder.mkdir(parents=True, exist_ok=True)
    plain = write_input(rows, folder / f"labels.{fmt}")
    path = f"exports/p/{fmt}/labels.{fmt}.gz"
    (landing / path).write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    instance.add_dynamic_partitions("export_files", [path])
    run = defs.resolve_job_def("ingest_export_job").execute_in_process(
        partition_key=path, instance=instance, raise_on_error=False
    )
    assert run.success
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_loaded"].value == 2 and metadata["rows_quarantined"].value == 0
    # A file named .gz that is not gzip fails naming it.
    (landing / path).write_bytes(plain.name.encode())
    broken = defs.resolve_job_def("ingest_export_job").execute_in_process(
        partition_key=path, instance=instance, raise_on_error=False
    )
    failure = next(e for e in broken.all_events if e.is_step_failure)
    assert f"{path}: not a readable gzip file" in str(failure.step_failure_data.error)


@pytest.mark.parametrize("project", ["my project", "café", "a+b", "_x", "a/b", "..", "con", "p."])
def test_a_project_that_cannot_name_a_lake_folder_is_a_usage_error_before_reading(
    tmp_path, project
):
    # The input does not exist: the option is refused before it is read.
    result = run(str(tmp_path / "absent.csv"), "--format", "csv", "--project", project)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--project'" in result.output
    assert repr(project) in result.output
    assert "letters, digits" in result.output


def test_a_refused_kind_value_is_named_with_the_reason_text_aggregate_prints(tmp_path):
    path = tmp_path / "boxes.csv"
    box = '"[{""label"": ""car"", ""x_min"": 10, ""y_min"": 10, ""x_max"": 5, ""y_max"": 20}]"'
    path.write_text(
        "task_id,annotator_id,submitted_at,boxes\n"
        f"b1,a,2026-11-30T10:00:00Z,{box}\n"
        'b1,b,2026-11-30T10:00:00Z,"[]"\n'
    )
    ingested = CliRunner().invoke(
        main, ["ingest", str(path), "--format", "csv", "--kind", "boxes", "--project", "det"]
    )
    aggregated = CliRunner().invoke(main, ["aggregate", "--kind", "boxes", str(path)])
    [named] = [line for line in aggregated.stderr.splitlines() if "wrong_type" in line]
    assert "x_min <= x_max" in named
    assert f"  {path}: {named.strip()}" in ingested.stderr.splitlines()


def test_label_studio_rows_are_named_by_task_and_annotation(tmp_path):
    tasks = [
        {
            "id": 7,
            "data": {"text": "Alice met Bob"},
            "annotations": [
                {"id": 70, "completed_by": 1, "created_at": "2026-05-01T10:00:00Z", "result": []},
                {
                    "id": 71,
                    "completed_by": 2,
                    "created_at": "2026-05-01T10:00:00Z",
                    "was_cancelled": True,
                    "result": [],
                },
            ],
        },
        {
            "id": 8,
            "data": {"text": "Alice met Bob"},
            "annotations": [
                {
                    "id": 80,
                    "completed_by": 1,
                    "created_at": "2026-05-01T10:00:00Z",
                    "result": [
                        {
                            "from_name": "ner",
                            "to_name": "text",
                            "type": "labels",
                            "value": {"start": 10, "end": 99, "labels": ["PER"]},
                        }
                    ],
                }
            ],
        },
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, indent=1))
    text = path.read_text().splitlines()
    line = next(n for n, row in enumerate(text, start=1) if '"id": 8' in row) - 1
    result = run(str(path), "--format", "label-studio")
    assert result.exit_code == 0, result.output
    shown = result.stderr.splitlines()
    assert f"  {path}: task 1 (id 7, line 2), annotation 1 (id 70), field 'label': " in "\n".join(
        shown
    )
    assert (
        f"  {path}: task 1 (id 7, line 2), annotation 2 (id 71), field 'was_cancelled': cancelled"
        in shown
    )
    assert any(
        row.startswith(f"  {path}: task 2 (id 8, line {line}), annotation 1 (id 80), field 'spans")
        and row.endswith(": outside_text: spans: span 1 [10, 99) PER ends past the text")
        for row in shown
    ), shown


def test_a_tsv_field_that_opens_a_quote_it_does_not_close_names_its_record(tmp_path):
    # A free-text answer that starts with a quote (`"Stop," he said.`) is read as a quoted
    # field. Before, ingest said only `unreadable tsv: CSV malformed: expected 0 rows, actual 4
    # rows, in chunk starting at row_offset 1, length 64`, and the commands named the record
    # with the csv module's `'\t' expected after '"'`.
    path = tmp_path / "answers.tsv"
    path.write_text(
        "task_id\tannotator_id\ttext\tsubmitted_at\n"
        "t1\ta\tfine\t2026-01-01T00:00:00Z\n"
        't1\tb\t"Stop," he said.\t2026-01-01T00:00:00Z\n'
        "t1\tc\tStop, he said.\t2026-01-01T00:00:00Z\n"
    )
    message = (
        f"{path}: row 2 (line 3): a field that starts with a quote is read as quoted, and this "
        "one goes on after its closing quote; quote the whole field and double the quotes in it"
    )
    result = CliRunner().invoke(main, ["ingest", str(path), "--format", "tsv", "--kind", "text"])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split()), result.output
    result = CliRunner().invoke(main, ["aggregate", str(path), "--kind", "text"])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split()), result.output


def test_judgments_before_the_start_date_are_loaded_and_said_to_be_quarantined_by_the_landing_zone(
    tmp_path, monkeypatch
):
    # The command checks an export for any history, so it loads rows from before the first
    # daily partition; the landing zone quarantines them, and the user is told so.
    monkeypatch.setenv("ANNOTATION_PIPELINES_START_DATE", "2026-09-01")
    path = tmp_path / "old.csv"
    path.write_text(
        "task_id,annotator_id,label,submitted_at\n"
        "t1,a,pos,2026-05-01T10:00:00Z\nt2,a,neg,2026-09-02T10:00:00Z\n"
    )
    result = run(str(path), "--format", "csv", "--project", "reviews")
    assert result.exit_code == 0, result.output
    assert summary(result.stdout)["rows_loaded"] == 2
    assert (
        "note: 1 of 2 judgment(s) dated before the start date 2026-09-01 "
        "(ANNOTATION_PIPELINES_START_DATE, the first daily partition), the first on 2026-05-01"
    ) in result.stderr
    assert "before_start_date" in result.stderr
    recent = tmp_path / "recent.csv"
    recent.write_text("task_id,annotator_id,label,submitted_at\nt2,a,neg,2026-09-02T10:00:00Z\n")
    assert "start date" not in run(str(recent), "--format", "csv").stderr
