"""Hostile input: each bad record is quarantined (or the file refused) with a clear message,
the rest of the file still loads, and rows read = rows loaded + rows quarantined."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main
from annotation_pipelines.ingest import UnreadableFileError, ingest_bytes, ingest_path
from annotation_pipelines.ingest.postgres import partition_by_day
from annotation_pipelines.ingest.validation import MAX_RAW_CHARS
from tests.ingest.conftest import NOW, annotation, label_studio_tasks

DEPTH = 100_000
LINE = {"task_id": "t1", "annotator_id": "a1", "label": "pos", "submitted_at": NOW}


def deep_json(depth: int = DEPTH) -> str:
    return "[" * depth + "]" * depth


def balanced(result) -> bool:
    return result.rows_read == result.rows_loaded + result.rows_quarantined


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_deeply_nested_jsonl_line_is_quarantined_and_the_rest_load():
    data = jsonl(
        json.dumps(LINE),
        '{"task_id": "t2", "annotator_id": "a1", "label": ' + deep_json() + "}",
        json.dumps({**LINE, "task_id": "t3"}),
    )
    result = ingest_bytes(data, format="jsonl", source_file="deep.jsonl", now=None)
    assert sorted(result.judgments["task_id"].to_list()) == ["t1", "t3"]
    [row] = result.quarantine.to_dicts()
    assert (row["reason"], row["source_line"]) == ("nesting_too_deep", 2)
    assert balanced(result)


def test_deeply_nested_label_studio_task_is_quarantined_and_the_rest_load(tmp_path):
    tasks = label_studio_tasks()
    body = json.dumps(tasks)
    deep_task = '{"id": 103, "data": {"text": ' + deep_json() + '}, "annotations": []}'
    path = tmp_path / "deep.json"
    path.write_text(body[:-1] + ", " + deep_task + "]")
    result = ingest_path(path, format="label-studio")
    plain = ingest_bytes(body.encode(), format="label-studio", source_file=str(path))
    assert result.judgments.height == plain.judgments.height > 0
    assert result.reasons == {**plain.reasons, "nesting_too_deep": 1}
    assert balanced(result)


def test_huge_line_is_quarantined_with_a_capped_raw_record_its_size_and_hash():
    big = json.dumps({**LINE, "task_id": "t2", "label": "x" * (20 * 1024 * 1024)})
    data = jsonl(json.dumps(LINE), big)
    result = ingest_bytes(data, format="jsonl", source_file="big.jsonl")
    assert result.judgments["task_id"].to_list() == ["t1"]
    [row] = result.quarantine.to_dicts()
    assert row["reason"] == "oversized_record"
    assert row["source_line"] == 2
    assert len(row["raw"]) < MAX_RAW_CHARS + 200
    raw = big.encode()
    assert f"{len(raw)} bytes" in row["raw"]
    assert hashlib.sha256(raw).hexdigest() in row["raw"]
    assert balanced(result)


def test_large_field_quarantine_raw_is_capped_too():
    # 1 MB label: under the record limit, over the field limit: the raw record is capped.
    big = json.dumps({**LINE, "task_id": "t2", "label": "y" * (1024 * 1024)})
    result = ingest_bytes(jsonl(json.dumps(LINE), big), format="jsonl", source_file="f.jsonl")
    [row] = result.quarantine.to_dicts()
    assert row["reason"] == "oversized_field"
    assert len(row["raw"]) < MAX_RAW_CHARS + 200
    assert "sha256=" in row["raw"]
    assert balanced(result)


def test_csv_with_too_many_columns_is_refused_early(tmp_path):
    header = ",".join(
        ["task_id", "annotator_id", "label", "submitted_at"] + [f"c{i}" for i in range(20_000)]
    )
    path = tmp_path / "wide.csv"
    path.write_text(header + "\n" + "t1,a1,pos," + NOW + "," * 20_000 + "\n")
    with pytest.raises(UnreadableFileError, match=r"wide\.csv: line 1 \(header\): 20,004 columns"):
        ingest_path(path, format="csv")
    result = CliRunner().invoke(main, ["ingest", str(path), "--format", "csv"])
    assert result.exit_code != 0
    assert "20,004 columns" in result.output
    assert "Traceback" not in result.output


CSV_HEADER = "task_id,annotator_id,label,submitted_at,duration_s\n"
CSV_ROW = f"t1,a1,pos,{NOW},3\n"


@pytest.mark.parametrize(
    ("tail", "found"),
    [
        ("t2,a1,po", "line 3: 3 of 5 fields"),
        ('t2,a1,"pos', "line 3: a quote left open"),
    ],
)
def test_csv_cut_mid_record_is_refused_naming_the_cut(tail, found):
    with pytest.raises(UnreadableFileError, match=f"cut.csv: file ends mid-record \\({found}"):
        ingest_bytes((CSV_HEADER + CSV_ROW + tail).encode(), format="csv", source_file="cut.csv")


def test_csv_without_a_final_newline_loads_when_its_last_record_is_whole():
    data = (CSV_HEADER + CSV_ROW + f'"t2",a1,neg,{NOW},4').encode()
    result = ingest_bytes(data, format="csv", source_file="whole.csv")
    assert (result.rows_read, result.rows_quarantined) == (2, 0)


def test_nul_bytes_in_ids_and_labels_are_quarantined():
    data = (
        "task_id,annotator_id,label,submitted_at\n"
        f"t1,a1,pos,{NOW}\n"
        f"t\x002,a1,pos,{NOW}\n"
        f"t3,a\x001,pos,{NOW}\n"
        f"t4,a1,po\x00s,{NOW}\n"
    ).encode()
    result = ingest_bytes(data, format="csv", source_file="nul-bytes.csv")
    assert result.judgments["task_id"].to_list() == ["t1"]
    assert dict(zip(result.quarantine["source_line"], result.quarantine["field"], strict=True)) == {
        3: "task_id",
        4: "annotator_id",
        5: "label",
    }
    assert set(result.quarantine["reason"]) == {"nul_byte"}
    assert balanced(result)


def test_label_studio_file_of_bare_nested_arrays_is_refused(tmp_path):
    path = tmp_path / "arrays.json"
    path.write_text("[[[1, 2]], [3], [[[]]]]")
    with pytest.raises(UnreadableFileError, match="no task objects"):
        ingest_path(path, format="label-studio")
    result = CliRunner().invoke(main, ["ingest", str(path), "--format", "label-studio"])
    assert result.exit_code != 0
    assert "arrays.json" in result.output and "no task objects" in result.output
    # An empty export is still an export with nothing in it.
    empty = tmp_path / "empty.json"
    empty.write_text("[ ]")
    assert ingest_path(empty, format="label-studio").rows_read == 0


# The last four are folders a Windows disk cannot hold or merges with another (`p.` is `p`).
UNSAFE_PROJECTS = [
    *("../../etc", "a/b", "..", "x\x00y", ".hidden", "a..b", "with space", "p" * 129),
    *("CON", "aux.v2", "com1", "p."),
]


@pytest.mark.parametrize("name", UNSAFE_PROJECTS)
def test_unsafe_project_names_are_quarantined_from_tables(name):
    frame = pl.DataFrame(
        {
            "task_id": ["t1", "t2"],
            "annotator_id": ["a1", "a1"],
            "label": ["pos", "pos"],
            "submitted_at": [NOW, NOW],
            "project": ["good-project_1.v2", name],
        }
    )
    result = ingest_bytes(_parquet(frame), format="parquet", source_file="p.parquet")
    assert result.judgments["project"].to_list() == ["good-project_1.v2"]
    assert result.tasks["project"].to_list() == ["good-project_1.v2"]
    [row] = result.quarantine.to_dicts()
    assert row["field"] == "project"
    assert row["reason"] in ("invalid_project", "nul_byte")
    assert balanced(result)


@pytest.mark.parametrize("name", UNSAFE_PROJECTS)
def test_the_live_loop_refuses_the_project_names_ingest_quarantines(name):
    from annotation_pipelines.loop.live import state_prefix

    with pytest.raises(ValueError, match="it names lake keys"):
        state_prefix(name)


def test_names_that_only_look_like_device_names_are_projects():
    from annotation_pipelines.ingest.validation import is_safe_project

    assert all(is_safe_project(n) for n in ("console", "conan", "com10", "aux2", "p.v2", "Nul-x"))


def _parquet(frame: pl.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def test_unsafe_project_name_from_label_studio_is_quarantined(tmp_path):
    tasks = label_studio_tasks()
    tasks.append({"id": 103, "project": "../../../tmp", "annotations": [annotation(9, 11, "pos")]})
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    result = ingest_path(path, format="label-studio")
    bad = result.quarantine.filter(pl.col("reason") == "invalid_project")
    assert bad["field"].to_list() == ["project"]
    assert "../../../tmp" not in result.judgments["project"].to_list()
    assert "../../../tmp" not in result.tasks["project"].to_list()
    assert balanced(result)


# ------------------------------------------------ aggregate / agreement read through tabular


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


HOSTILE = {
    "wide.csv": (
        (
            ",".join(["task_id", "annotator_id", "label"] + [f"c{i}" for i in range(20_000)]) + "\n"
        ).encode(),
        "20,003 columns",
    ),
}
# A hostile row among good ones is quarantined like any bad row: named, counted, skipped.
HOSTILE_ROWS = {
    "deep.jsonl": (
        jsonl(
            json.dumps({"task_id": "t1", "annotator_id": "a1", "label": "x"}),
            '{"task_id": "t2", "annotator_id": "a1", "label": ' + deep_json() + "}",
        ),
        "row 2 (line 2): nesting_too_deep",
    ),
    "nul.csv": (
        b"task_id,annotator_id,label\nt1,a1,x\nt2,a\x001,y\n",
        "row 2 (line 3), field 'annotator_id': nul_byte",
    ),
}


@pytest.mark.parametrize("command", ["aggregate", "agreement"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_cli_commands_give_one_line_errors_on_hostile_input(tmp_path, command, name):
    data, expected = HOSTILE[name]
    path = _write(tmp_path / name, data)
    result = CliRunner().invoke(main, [command, str(path)])
    assert result.exit_code != 0
    assert not isinstance(result.exception, RecursionError), result.exception
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1, result.output
    assert name in error_lines[0] and expected in error_lines[0], result.output


@pytest.mark.parametrize("command", ["aggregate", "agreement"])
@pytest.mark.parametrize("name", sorted(HOSTILE_ROWS))
def test_cli_commands_quarantine_hostile_rows(tmp_path, command, name):
    data, expected = HOSTILE_ROWS[name]
    path = _write(tmp_path / name, data)
    result = CliRunner().invoke(main, [command, str(path)])
    assert result.exit_code == 0, result.output
    assert not isinstance(result.exception, RecursionError), result.exception
    assert "Traceback" not in result.output
    assert f"{path}: 1 of 2 rows quarantined" in result.stderr
    assert expected in result.stderr, result.stderr


def test_label_studio_elements_that_are_not_tasks_are_quarantined_not_dropped(tmp_path):
    task = {
        "id": 1,
        "data": {"text": "hello"},
        "annotations": [
            {
                "id": 11,
                "completed_by": 5,
                "created_at": "2026-11-20T10:00:00Z",
                "result": [
                    {
                        "from_name": "sentiment",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["pos"]},
                    }
                ],
            }
        ],
    }
    path = tmp_path / "mixed.json"
    path.write_text("[\n" + json.dumps(task) + ',\n3,\n"x",\n[1, 2]\n]')
    result = ingest_path(path, format="label-studio")
    assert result.rows_loaded == 1
    assert result.rows_read == result.rows_loaded + result.rows_quarantined == 4
    stray = result.quarantine.filter(pl.col("reason") == "not_a_task")
    assert stray["source_line"].to_list() == [3, 4, 5]
    assert set(stray["field"]) == {"task"}


def test_a_task_takes_its_time_from_its_gold_and_one_with_no_valid_row_has_none():
    tasks = [
        # No created_at and every annotation outside the label set: no time to take.
        {"id": 201, "data": {"text": "a"}, "annotations": [annotation(1, 11, "cat")]},
        {"id": 202, "data": {"text": "b"}, "annotations": [annotation(2, 12, "pos")]},
        {
            "id": 203,
            "data": {"text": "c"},
            "annotations": [
                annotation(3, 13, "neg", ground_truth=True, created_at="2026-05-02T08:00:00Z")
            ],
        },
    ]
    result = ingest_bytes(
        json.dumps(tasks).encode(),
        format="label-studio",
        source_file="mixed.json",
        label_set=["pos", "neg"],
        now=None,
    )
    assert result.reasons == {"unknown_label": 1}
    created = dict(zip(result.tasks["task_id"], result.tasks["created_at"], strict=True))
    assert created["201"] is None
    assert created["202"].isoformat().startswith("2026-05-01T10:00:00")
    assert created["203"].isoformat().startswith("2026-05-02T08:00:00")
    assert balanced(result)


def test_staging_refuses_rows_with_no_day_naming_the_table_and_column():
    frame = pl.DataFrame(
        {"task_id": ["t1", "t2"], "created_at": [datetime(2026, 5, 1, tzinfo=UTC), None]}
    )
    with pytest.raises(ValueError, match=r"raw_tasks: 1 row\(s\) with no created_at"):
        partition_by_day(frame, column="created_at", name="raw_tasks")


# A JSON escape of half a surrogate pair (`"\ud800"`) is valid JSON but no Unicode text: it
# cannot be written as UTF-8, so its record is quarantined as non-UTF-8 like a raw bad byte.
LONE = '"\\ud800"'


def test_jsonl_line_with_a_lone_surrogate_escape_is_quarantined_and_the_rest_load():
    good = json.dumps({**LINE, "task_id": "t1", "label": "\U0001f600"})
    bad = json.dumps({**LINE, "task_id": "t2"}).replace('"pos"', LONE)
    result = ingest_bytes(jsonl(good, bad), format="jsonl", source_file="s.jsonl", now=None)
    assert result.judgments["label"].to_list() == ["\U0001f600"]
    assert result.quarantine.select("source_line", "reason").rows() == [(2, "non_utf8")]
    assert balanced(result)


def test_sagemaker_line_with_a_lone_surrogate_escape_is_quarantined():
    record = {
        "source": "t",
        "cls": 1,
        "cls-metadata": {
            "job-name": "c",
            "class-name": "dog",
            "type": "groundtruth/text-classification",
            "creation-date": "2026-05-01T22:18:13.527256",
            "human-annotated": "yes",
        },
    }
    bad = json.dumps({**record, "source": "x"}).replace('"x"', LONE)
    result = ingest_bytes(
        jsonl(json.dumps(record), bad), format="sagemaker-gt", source_file="o.manifest"
    )
    assert result.judgments.height == 1
    assert result.quarantine.select("source_line", "reason").rows() == [(2, "non_utf8")]
    assert balanced(result)


def test_label_studio_task_with_a_lone_surrogate_escape_is_quarantined_and_the_rest_load():
    tasks = label_studio_tasks()
    body = json.dumps(tasks, indent=1)
    bad = body.replace('"meh"', LONE)
    result = ingest_bytes(bad.encode(), format="label-studio", source_file="s.json")
    plain = ingest_bytes(body.encode(), format="label-studio", source_file="s.json")
    first = plain.judgments.filter(pl.col("task_id") == "101")
    assert result.judgments.sort("judgment_id").equals(first.sort("judgment_id"))
    assert result.reasons.get("non_utf8") == 1
    assert balanced(result)


@pytest.mark.parametrize(
    "result",
    [
        {"from_name": ["a"], "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}},
        {"from_name": "s", "to_name": "text", "type": ["choices"], "value": {"choices": ["pos"]}},
        {"id": "r", "from_name": {"a": 1}, "type": "labels", "value": {"start": 0, "end": 1}},
        {"from_name": "s", "type": "rectanglelabels", "value": {"x": 10**400, "y": 1}},
        {"from_name": "s", "type": "rectanglelabels", "original_width": 10**400, "value": {}},
    ],
    ids=["list-from-name", "list-type", "dict-region-name", "huge-x", "huge-width"],
)
def test_label_studio_result_of_any_shape_is_quarantined_not_a_failed_file(result):
    tasks = label_studio_tasks()
    tasks[1]["annotations"][0]["result"] = [result, {**result, "id": "other"}]
    tasks[1]["annotations"][3]["result"] = 1.5
    plain = ingest_bytes(
        json.dumps(label_studio_tasks()).encode(), format="label-studio", source_file="s.json"
    )
    found = ingest_bytes(json.dumps(tasks).encode(), format="label-studio", source_file="s.json")
    kept = set(found.judgments["judgment_id"])
    assert kept == set(plain.judgments["judgment_id"]) - {"label-studio:5", "label-studio:8"}
    assert balanced(found)


def test_sagemaker_box_coordinate_no_float_holds_is_quarantined():
    record = {
        "source-ref": "s3://b/d.jpg",
        "dogs": {
            "annotations": [{"class_id": 0, "left": 10**400, "top": 1, "width": 2, "height": 3}]
        },
        "dogs-metadata": {
            "class-map": {"0": "dog"},
            "type": "groundtruth/object-detection",
            "creation-date": "2026-05-01T22:18:13.527256",
            "job-name": "j",
        },
    }
    result = ingest_bytes(
        jsonl(json.dumps(record)), format="sagemaker-gt", source_file="o.manifest"
    )
    assert result.quarantine.select("reason", "field").rows() == [("wrong_type", "boxes")]
    assert balanced(result)


def test_a_jsonl_object_that_gives_a_key_twice_is_quarantined_naming_the_key():
    # Which of the two answers the annotator meant is unknown: a CSV header naming a column
    # twice is refused, and a JSON line doing so must not load whichever value the parser keeps.
    twice = json.dumps({**LINE, "task_id": "t2"})[:-1] + ', "label": "neg"}'
    nested = json.dumps({**LINE, "task_id": "t3", "kind": "spans", "label": None})
    nested = nested[:-1] + ', "spans": [{"start": 0, "end": 2, "start": 1}]}'
    data = jsonl(json.dumps(LINE), twice, nested)
    result = ingest_bytes(data, format="jsonl", source_file="twice.jsonl", now=None)
    assert result.judgments["task_id"].to_list() == ["t1"]
    assert result.quarantine.select("source_line", "field", "reason").rows() == [
        (2, "label", "malformed_json"),
        (3, "start", "malformed_json"),
    ]
    assert balanced(result)


def test_a_json_line_with_a_byte_that_is_not_utf8_names_the_key_holding_it():
    # As a CSV row's bad byte names its column: which of a wide line's values to fix.
    good = json.dumps(LINE).encode()
    bad = json.dumps({**LINE, "task_id": "t2", "annotator_id": "ren?"}).encode()
    bad = bad.replace(b"ren?", b"ren\xe9")
    result = ingest_bytes(good + b"\n" + bad + b"\n", format="jsonl", source_file="e.jsonl")
    assert result.quarantine.select("source_line", "field", "reason").rows() == [
        (2, "annotator_id", "non_utf8")
    ]
    assert balanced(result)
