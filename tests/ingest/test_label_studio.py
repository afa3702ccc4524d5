"""Label Studio exports: fast path, tolerant path, every quarantine reason, provenance."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation_pipelines.ingest import UnreadableFileError, ingest_bytes, ingest_path
from annotation_pipelines.ingest.label_studio import _stage_native, scan_json_array
from annotation_pipelines.schema import GOLD_LABELS, JUDGMENTS, QUARANTINE, RAW_TASKS
from tests.ingest.conftest import LABELS, NOW, annotation, label_studio_tasks, write_label_studio

NOW_DT = datetime.fromisoformat(NOW)


def ingest(data: bytes, **options):
    return ingest_bytes(
        data,
        format="label-studio",
        source_file="export.json",
        label_set=LABELS,
        now=NOW_DT,
        **options,
    )


def test_export_with_mixed_completed_by_loads_judgments_gold_and_counts():
    result = ingest(json.dumps(label_studio_tasks(), indent=2).encode())
    assert result.rows_read == 8
    assert result.rows_loaded == 6
    assert result.rows_quarantined == 2
    assert result.duplicates == 1
    assert result.reasons == {"cancelled": 1, "duplicate": 1}
    assert dict(result.judgments.schema) == JUDGMENTS
    assert dict(result.gold.schema) == GOLD_LABELS
    assert dict(result.quarantine.schema) == QUARANTINE
    assert dict(result.tasks.schema) == RAW_TASKS
    judged = result.judgments.sort("judgment_id")
    assert judged.get_column("judgment_id").to_list() == [
        f"label-studio:{i}" for i in (1, 2, 5, 6, 8)
    ]
    # annotator 12 submitted task 102 twice: the later submission (annotation 6) wins
    row = judged.filter(pl.col("task_id") == "102", pl.col("annotator_id") == "12")
    assert row.get_column("label").to_list() == ["neg"]
    assert "15" in judged.get_column("annotator_id").to_list()  # {"id": 15, ...} form
    assert result.gold.row(0, named=True)["label"] == "neg"
    assert result.tasks.filter(pl.col("task_id") == "101").get_column("is_gold").item()
    assert set(result.judgments.get_column("project")) == {"7"}
    assert result.judgments.get_column("duration_s").to_list() == [3.5] * 5


def test_uniform_export_takes_the_native_path_and_records_task_lines():
    tasks = label_studio_tasks()
    tasks[1]["annotations"][3]["completed_by"] = 15
    text = json.dumps(tasks, indent=2)
    result = ingest(text.encode(), project="sentiment")
    lines = text.splitlines()
    line_of_102 = next(i for i, line in enumerate(lines, 1) if '"id": 102' in line) - 1
    assert lines[line_of_102 - 1].strip() in ("{", "},") or lines[line_of_102 - 1].strip() == "{"
    by_task = dict(result.judgments.select("task_id", "source_line").unique().iter_rows())
    assert by_task["101"] == 2
    assert lines[by_task["102"] - 1].strip() == "{"
    assert result.rows_read == 8 and result.duplicates == 1
    assert set(result.judgments.get_column("project")) == {"sentiment"}
    assert result.judgments.get_column("source").unique().to_list() == ["label-studio"]
    assert result.judgments.get_column("source_file").unique().to_list() == ["export.json"]


def test_native_and_tolerant_paths_agree():
    tasks = label_studio_tasks()
    tasks[1]["annotations"][3]["completed_by"] = 15
    native = ingest(json.dumps(tasks).encode())
    tasks[0]["annotations"].append(annotation(99, {"id": 16}, "pos"))  # forces the slow path
    tolerant = ingest(json.dumps(tasks).encode())
    drop = pl.col("judgment_id") != "label-studio:99"
    assert native.judgments.sort("judgment_id").equals(
        tolerant.judgments.filter(drop).sort("judgment_id")
    )
    assert native.reasons == tolerant.reasons


def test_each_bad_annotation_is_quarantined_with_field_and_reason():
    bad = [
        annotation(20, 21, "sarcastic"),
        annotation(21, None, "pos"),
        annotation(22, 23, "pos", created_at="2026-05-01 10:00:00"),
        annotation(23, 24, "pos", created_at="2031-01-01T00:00:00Z"),
        annotation(24, 25, "pos", lead_time="slow"),
        annotation(25, "x" * 5000, "pos"),
        annotation(26, 27, "pos", created_at="yesterday"),
    ]
    tasks = [{"id": 200, "data": {"text": "t"}, "annotations": [annotation(19, 20, "pos"), *bad]}]
    result = ingest(json.dumps(tasks).encode())
    assert result.judgments.height == 1
    assert sorted(result.quarantine.select("reason", "field").iter_rows()) == [
        ("missing_annotator", "annotator_id"),
        ("oversized_field", "annotator_id"),
        ("timestamp_in_future", "submitted_at"),
        ("timestamp_without_timezone", "submitted_at"),
        ("unknown_label", "label"),
        ("wrong_type", "duration_s"),
        ("wrong_type", "submitted_at"),
    ]
    raw = result.quarantine.filter(pl.col("reason") == "unknown_label").get_column("raw").item()
    assert json.loads(raw)["id"] == 20


def test_malformed_task_is_quarantined_and_the_others_load(tmp_path):
    text = json.dumps(label_studio_tasks(), indent=2)
    broken = text.replace('"lead_time": 3.5,', '"lead_time": ,', 1)  # inside task 101
    result = ingest(broken.encode())
    assert result.reasons["malformed_json"] == 1
    assert set(result.judgments.get_column("task_id")) == {"102"}
    line = result.quarantine.filter(pl.col("reason") == "malformed_json").get_column("source_line")
    assert '"lead_time": ,' in broken.splitlines()[line.item() - 1]
    assert result.rows_read == result.rows_loaded + result.rows_quarantined


def test_truncated_export_keeps_the_complete_tasks():
    text = json.dumps(label_studio_tasks(), indent=2)
    cut = text[: text.index('"id": 7') + 20]
    result = ingest(cut.encode())
    assert result.reasons == {"cancelled": 1, "truncated_file": 1}
    assert set(result.judgments.get_column("task_id")) == {"101"}


def test_latin1_bytes_quarantine_only_their_task():
    text = json.dumps(label_studio_tasks(), indent=2, ensure_ascii=False)
    data = text.replace("meh", "m\u00e9h").encode("latin-1")
    result = ingest(data)
    assert result.reasons == {"cancelled": 1, "non_utf8": 1}
    assert set(result.judgments.get_column("task_id")) == {"101"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty file"),
        (b'{"id": 1}', "expected a JSON array"),
        (b'[{"id": 1, "annotations": [', "no task could be read"),
    ],
)
def test_unreadable_export_raises_naming_the_file(payload, message):
    # An empty file is zero rows unless the caller refuses it (see test_tables).
    with pytest.raises(UnreadableFileError, match=message) as error:
        ingest(payload, allow_empty=False)
    assert "export.json" in str(error.value)


def test_empty_array_is_readable_and_empty():
    result = ingest(b"[]")
    assert result.rows_read == 0 and result.judgments.height == 0


def test_structural_scan_ignores_brackets_and_escaped_quotes_in_strings():
    tasks = [{"id": 1, "data": {"text": 'a } ] { [ "quoted\\" \\\\'}}, {"id": 2}]
    data = json.dumps(tasks, indent=1).encode()
    scan = scan_json_array(data)
    assert scan.closed
    assert [json.loads(data[s:e])["id"] for s, e in zip(scan.starts, scan.ends, strict=True)] == [
        1,
        2,
    ]


def test_folder_ingest_combines_files(tmp_path):
    write_label_studio(tmp_path / "a.json")
    write_label_studio(tmp_path / "b.json", label_studio_tasks()[:1])
    (tmp_path / "notes.txt").write_text("ignored")
    result = ingest_path(tmp_path, format="label-studio", label_set=LABELS, now=NOW_DT)
    assert result.rows_read == 8 + 4
    assert set(result.judgments.get_column("source_file").map_elements(lambda p: p[-6:])) == {
        "a.json",
        "b.json",
    }


def test_payload_keeps_keys_that_first_appear_late():
    tasks = [{"id": i, "data": {"text": f"t{i}"}, "annotations": []} for i in range(1500)]
    tasks[-1]["data"]["image"] = "s3://bucket/late.png"
    result = ingest(json.dumps(tasks).encode())
    payload = result.tasks.filter(pl.col("task_id") == "1499").get_column("payload").item()
    assert json.loads(payload) == {"text": "t1499", "image": "s3://bucket/late.png"}


def test_chunked_parse_matches_single_chunk_and_isolates_bad_tasks(monkeypatch):
    from annotation_pipelines.ingest import label_studio

    tasks = [
        {"id": i, "data": {"text": f"t{i}"}, "annotations": [annotation(i, 10 + i % 7, "pos")]}
        for i in range(60)
    ]
    text = json.dumps(tasks, indent=1)
    broken = text.replace('"lead_time": 3.5', '"lead_time": 3.5,,', 1)
    whole = ingest(broken.encode())
    monkeypatch.setattr(label_studio, "CHUNK_BYTES", 2_000)
    chunked = ingest(broken.encode())
    assert chunked.reasons == whole.reasons == {"malformed_json": 1}
    assert chunked.judgments.equals(whole.judgments)
    assert chunked.tasks.equals(whole.tasks)
    assert chunked.judgments.height == 59


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["id", "data", "x"]),
            st.recursive(
                st.text(alphabet='ab{}[]"\\\n,: é', max_size=8) | st.integers(),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(alphabet='k{["\\', max_size=3), inner, max_size=3)
                ),
                max_leaves=6,
            ),
            max_size=3,
        ),
        max_size=6,
    ),
    st.sampled_from([None, 1]),
)
def test_structural_scan_finds_every_top_level_object(tasks, indent):
    data = json.dumps(tasks, indent=indent, ensure_ascii=False).encode()
    scan = scan_json_array(data)
    assert scan.closed
    found = [json.loads(data[s:e]) for s, e in zip(scan.starts, scan.ends, strict=True)]
    assert found == tasks


def test_a_chunk_of_tasks_without_annotations_stays_on_the_native_path():
    # Polars reads lists that are all empty as a list of nulls, not of structs: the native
    # stager must stage no annotations instead of failing over to the tolerant parser.
    tasks = [{"id": i, "data": {"text": f"t{i}"}, "annotations": []} for i in (1, 2)]
    frame = pl.read_json(json.dumps(tasks).encode(), infer_schema_length=None)
    scan = scan_json_array(json.dumps(tasks).encode())
    annotations, staged = _stage_native(frame, np.array([1, 2]), scan.starts, scan.ends)
    assert annotations.height == 0
    assert staged.get_column("task_id").to_list() == ["1", "2"]
    result = ingest(json.dumps(tasks).encode(), project="sentiment")
    assert result.rows_read == 0 and result.judgments.height == 0


@pytest.mark.parametrize("lead_time", [float("nan"), float("inf")])
def test_a_lead_time_that_is_not_a_finite_number_is_quarantined(lead_time):
    # Python's json writes these as NaN / Infinity, which Label Studio's reader accepts too.
    tasks = [
        {
            "id": 300,
            "data": {"text": "t"},
            "annotations": [
                annotation(30, 31, "pos"),
                annotation(31, 32, "pos", lead_time=lead_time),
            ],
        }
    ]
    result = ingest(json.dumps(tasks).encode())
    assert result.judgments.get_column("annotator_id").to_list() == ["31"]
    assert result.quarantine.select("reason", "field").rows() == [("wrong_type", "duration_s")]


def test_an_annotator_that_is_a_list_an_object_or_a_boolean_is_quarantined():
    # completed_by [5], true or {"id": {...}} was loaded as the annotator ids "[5]", "true"
    # and '{"x": 1}'; an {"email": ...} without id stays a missing annotator.
    def submitted(number: int, completed_by: object) -> dict:
        return {
            "id": number,
            "completed_by": completed_by,
            "created_at": "2026-05-01T10:00:00Z",
            "result": [
                {"from_name": "s", "to_name": "text", "type": "choices",
                 "value": {"choices": ["pos"]}}
            ],
        }  # fmt: skip

    for index, bad in enumerate([[5], True, {"id": {"x": 1}}, {"id": False}]):
        export = [
            {
                "id": 1,
                "data": {"text": "a"},
                "annotations": [submitted(10, bad), submitted(11, 7)],
            }
        ]
        result = ingest_bytes(
            json.dumps(export).encode(), format="label-studio", source_file=f"e{index}.json"
        )
        assert result.quarantine.select("field", "reason").rows() == [
            ("annotator_id", "wrong_type")
        ], bad
        assert result.judgments.get_column("annotator_id").to_list() == ["7"], bad
        assert result.rows_read == result.rows_loaded + result.rows_quarantined == 2
