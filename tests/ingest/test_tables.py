"""CSV / TSV / Parquet / JSON Lines with a column mapping, and SageMaker GT manifests."""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation_pipelines.ingest import (
    ColumnMapping,
    UnreadableFileError,
    ingest_bytes,
    ingest_path,
)
from annotation_pipelines.schema import JUDGMENTS
from tests.ingest.conftest import LABELS, NOW
from tests.realdata import load_crowd

NOW_DT = datetime.fromisoformat(NOW)
HEADER = "task_id,annotator_id,label,submitted_at,duration_s\n"
GOOD = [
    "t1,a1,pos,2026-05-01T10:00:00Z,1.5",
    "t1,a2,neg,2026-05-01T11:00:00+02:00,2",
    "t2,a1,neutral,2026-05-01 12:00:00.25+0000,",
]
BAD = {
    "unknown_label": "t3,a1,sarcastic,2026-05-01T10:00:00Z,1",
    "missing_annotator": "t3,,pos,2026-05-01T10:00:00Z,1",
    "timestamp_without_timezone": "t3,a3,pos,2026-05-01T10:00:00,1",
    "timestamp_in_future": "t3,a4,pos,2030-05-01T10:00:00Z,1",
    "wrong_type": "t3,a5,pos,2026-05-01T10:00:00Z,fast",
    "oversized_field": "t3," + "a" * 5000 + ",pos,2026-05-01T10:00:00Z,1",
    "duplicate": "t1,a1,neg,2026-04-30T10:00:00Z,1",  # earlier than line 2: it loses
}


def ingest(data: bytes, fmt: str, name: str = "export", **options):
    return ingest_bytes(
        data, format=fmt, source_file=f"{name}.{fmt}", label_set=LABELS, now=NOW_DT, **options
    )


def test_csv_good_rows_load_and_every_bad_row_is_quarantined_on_its_line():
    lines = GOOD + list(BAD.values())
    result = ingest((HEADER + "\n".join(lines) + "\n").encode(), "csv")
    assert result.judgments.height == 3
    assert result.reasons == dict.fromkeys(sorted(BAD), 1)
    assert result.duplicates == 1
    for reason, line in BAD.items():
        row = result.quarantine.filter(pl.col("reason") == reason)
        assert row.get_column("source_line").item() == 2 + lines.index(line), reason
    assert result.judgments.get_column("submitted_at").dt.hour().to_list() == [10, 9, 12]
    assert result.judgments.get_column("duration_s").to_list() == [1.5, 2.0, None]
    assert result.judgments.get_column("project").unique().to_list() == ["export"]
    assert dict(result.judgments.schema) == JUDGMENTS


def test_csv_latin1_row_is_quarantined_as_non_utf8():
    data = (HEADER + GOOD[0] + "\n" + "t9,ren\u00e9,pos,2026-05-01T10:00:00Z,1\n").encode("latin-1")
    result = ingest(data, "csv")
    assert result.reasons == {"non_utf8": 1}
    assert result.judgments.height == 1
    # Named by its column, as every other quarantined row is: where to look in a wide row.
    assert result.quarantine.get_column("field").to_list() == ["annotator_id"]


def test_one_judgment_id_given_to_two_judgments_is_quarantined_not_left_to_the_lake():
    """The daily layers keep one row per judgment id: two different judgments (other task or
    annotator) under one id both loaded here, and the lake kept one of them without a word.
    Both are quarantined naming the id; a second version of one judgment stays a duplicate."""
    header = "judgment_id,task_id,annotator_id,label,submitted_at\n"
    rows = [
        "j1,t1,a1,pos,2026-05-01T10:00:00Z",
        "j1,t2,a2,neg,2026-05-01T10:00:00Z",
        "j2,t3,a1,pos,2026-05-01T10:00:00Z",
        "j2,t3,a1,neg,2026-05-01T11:00:00Z",
    ]
    result = ingest((header + "\n".join(rows) + "\n").encode(), "csv")
    assert result.judgments.select("judgment_id", "label").rows() == [("j2", "neg")]
    shared = result.quarantine.filter(pl.col("field").str.starts_with("judgment_id"))
    assert shared.get_column("source_line").to_list() == [2, 3]
    assert result.reasons == {"duplicate": 3}
    assert result.rows_read == result.rows_loaded + result.rows_quarantined
    # Ids are per project: two projects' j1 are two judgments.
    header = "project,judgment_id,task_id,annotator_id,label,submitted_at\n"
    rows = ["p1,j1,t1,a1,pos,2026-05-01T10:00:00Z", "p2,j1,t2,a2,neg,2026-05-01T10:00:00Z"]
    both = ingest((header + "\n".join(rows) + "\n").encode(), "csv")
    assert both.judgments.height == 2 and both.rows_quarantined == 0


@pytest.mark.parametrize("latin1", [False, True])
@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_a_replacement_character_written_in_utf8_text_is_no_bad_byte(fmt, latin1):
    """U+FFFD is a character (text an upstream tool already mangled), valid UTF-8: its row
    loads, as it does from JSON Lines, also when another row of the file holds a byte that
    is not UTF-8 and is quarantined for it."""
    sep = "\t" if fmt == "tsv" else ","
    header = "task_id,annotator_id,label,submitted_at,comment\n".replace(",", sep)
    rows = [
        ["t1", "a1", "pos", "2026-05-01T10:00:00Z", "caf\ufffd menu"],
        ["t2", "a\ufffd", "neg", "2026-05-01T10:00:00Z", "ok"],
    ]
    data = "".join(sep.join(row) + "\n" for row in [header.strip().split(sep), *rows]).encode()
    if latin1:
        data += "t3,ren\u00e9,pos,2026-05-01T10:00:00Z,ok\n".replace(",", sep).encode("latin-1")
    result = ingest(data, fmt)
    assert result.judgments.get_column("annotator_id").to_list() == ["a1", "a\ufffd"]
    assert result.reasons == ({"non_utf8": 1} if latin1 else {})
    if latin1:
        assert result.quarantine.get_column("source_line").to_list() == [4]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_a_row_with_more_fields_than_the_header_is_quarantined_not_cut(fmt):
    """An unquoted separator in the last column (`New York, NY`) gives the row a field more
    than the header: the reader cut it off and staged the label `New York`. Empty fields past
    the header (a trailing separator) lose nothing and still load."""
    sep = "\t" if fmt == "tsv" else ","
    lines = [
        ["task_id", "annotator_id", "submitted_at", "label"],
        ["t1", "a1", "2026-05-01T10:00:00Z", "pos"],
        ["t1", "a2", "2026-05-01T10:00:00Z", "neg", " neutral"],
        ["t2", "a1", '"2026-05-01T10:00:00Z"', '"pos"', "", ""],
        ["t2", "a2", "2026-05-01T10:00:00Z", "neutral", "", "x"],
    ]
    data = "".join(sep.join(line) + "\n" for line in lines).encode()
    result = ingest(data, fmt)
    assert result.judgments.select("task_id", "annotator_id", "label").rows() == [
        ("t1", "a1", "pos"),
        ("t2", "a1", "pos"),
    ]
    assert result.quarantine.select("source_line", "reason").rows() == [
        (3, "extra_fields"),
        (5, "extra_fields"),
    ]
    assert result.rows_read == result.rows_loaded + result.rows_quarantined == 4


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_blank_lines_are_no_rows_as_in_json_lines(fmt):
    """A file ending in an empty line (or Excel's rows of empty cells) read each as a row and
    quarantined it as missing_field; JSON Lines skips blank lines. Later rows keep their
    numbers."""
    sep = "\t" if fmt == "tsv" else ","
    rows = [
        ["task_id", "annotator_id", "label", "submitted_at"],
        ["t1", "a1", "pos", "2026-05-01T10:00:00Z"],
        [],
        ["t1", "a2", "neg", "2026-05-01T10:00:00Z"],
        ["", "", "", ""],
        ["t2", "", "neg", "2026-05-01T10:00:00Z"],
        [],
        [],
    ]
    data = "\r\n".join(sep.join(row) for row in rows).encode() + b"\r\n"
    result = ingest(data, fmt)
    assert result.judgments.select("task_id", "annotator_id", "source_line").rows() == [
        ("t1", "a1", 2),
        ("t1", "a2", 4),
    ]
    assert result.quarantine.select("source_line", "reason").rows() == [(6, "missing_annotator")]
    assert result.rows_read == result.rows_loaded + result.rows_quarantined == 3


def test_tsv_and_declared_column_mapping():
    data = "question\tworker\tanswer\twhen\n" + "q1\tw1\tpos\t2026-05-01T10:00:00Z\n"
    mapping = ColumnMapping(
        task_id="question", annotator_id="worker", label="answer", submitted_at="when"
    )
    result = ingest(data.encode(), "tsv", mapping=mapping, project="p")
    assert result.judgments.select("task_id", "annotator_id", "label", "project").row(0) == (
        "q1",
        "w1",
        "pos",
        "p",
    )


def test_csv_missing_mapped_column_is_unreadable():
    with pytest.raises(UnreadableFileError, match="missing column"):
        ingest(b"task_id,label\nt1,pos\n", "csv")


def test_parquet_typed_timestamps_naive_are_quarantined(tmp_path):
    frame = pl.DataFrame(
        {
            "task_id": ["t1", "t2"],
            "annotator_id": ["a", "b"],
            "label": ["pos", "neg"],
            "submitted_at": [datetime(2026, 5, 1), datetime(2026, 5, 2)],
            "duration_s": [1.0, 2.0],
        }
    )
    aware = frame.with_columns(pl.col("submitted_at").dt.replace_time_zone("Europe/Paris"))
    aware.write_parquet(tmp_path / "aware.parquet")
    frame.write_parquet(tmp_path / "naive.parquet")
    result = ingest_path(tmp_path, format="parquet", label_set=LABELS, now=NOW_DT)
    assert result.rows_read == 4
    assert result.reasons == {"timestamp_without_timezone": 2}
    assert result.judgments.get_column("submitted_at").dt.hour().to_list() == [22, 22]


def test_jsonl_malformed_wrong_type_and_truncated_lines():
    lines = [
        json.dumps(
            {
                "task_id": "t1",
                "annotator_id": "a",
                "label": "pos",
                "submitted_at": "2026-05-01T10:00:00Z",
            }
        ),
        '{"task_id": "t2", "annotator_id": ',
        json.dumps(
            {
                "task_id": "t3",
                "annotator_id": "a",
                "label": ["pos"],
                "submitted_at": "2026-05-01T10:00:00Z",
            }
        ),
        "",
        json.dumps(
            {
                "task_id": 4,
                "annotator_id": 9,
                "label": "neg",
                "submitted_at": "2026-05-01T10:00:00Z",
            }
        ),
        '{"task_id": "t5", "annotator_id": "a", "lab',
    ]
    result = ingest("\n".join(lines).encode(), "jsonl")
    assert result.reasons == {"malformed_json": 1, "truncated_file": 1, "wrong_type": 1}
    assert dict(result.quarantine.select("reason", "source_line").iter_rows()) == {
        "malformed_json": 2,
        "wrong_type": 3,
        "truncated_file": 6,
    }
    assert result.judgments.get_column("task_id").to_list() == ["t1", "4"]


def test_jsonl_with_nothing_readable_raises():
    with pytest.raises(UnreadableFileError, match=r"export\.jsonl"):
        ingest(b"not json\nstill not\n", "jsonl")


def manifest_line(source: str, class_name: str, **metadata) -> str:
    return json.dumps(
        {
            "source-ref": source,
            "sentiment": LABELS.index(class_name) if class_name in LABELS else 9,
            "sentiment-metadata": {
                "class-name": class_name,
                "confidence": 0.9,
                "type": "groundtruth/text-classification",
                "job-name": "labeling-job/sentiment",
                "human-annotated": "yes",
                "creation-date": "2026-05-01T22:18:13.527256",
                **metadata,
            },
        }
    )


def test_sagemaker_manifest_consolidated_and_worker_responses():
    answers = [
        {
            "workerId": "private.us-east-1.w1",
            "answerContent": {"crowd-classifier": {"label": "pos"}},
            "submissionTime": "2026-05-01T22:10:00.000Z",
            "timeSpentInSeconds": 12.5,
        },
        {
            "workerId": "private.us-east-1.w2",
            "answerContent": {"crowd-classifier": {"label": "neg"}},
            "submissionTime": "2026-05-01T22:11:00.000Z",
            "timeSpentInSeconds": 8,
        },
        {
            "answerContent": {"crowd-classifier": {"label": "neg"}},
            "submissionTime": "2026-05-01T22:11:00Z",
        },
    ]
    lines = [
        manifest_line("s3://bucket/a.txt", "pos"),
        manifest_line("s3://bucket/b.txt", "angry"),
        manifest_line("s3://bucket/c.txt", "neg", **{"worker-responses": answers}),
        '{"source-ref": "s3://bucket/d.txt", "sentiment": 0}',
    ]
    result = ingest("\n".join(lines).encode() + b"\n", "sagemaker-gt", name="output")
    assert result.rows_read == 6
    assert result.reasons == {"malformed_json": 1, "missing_annotator": 1, "unknown_label": 1}
    judged = result.judgments.sort("judgment_id")
    assert judged.select("task_id", "annotator_id", "label").rows() == [
        ("s3://bucket/a.txt", "sagemaker:labeling-job/sentiment", "pos"),
        ("s3://bucket/c.txt", "private.us-east-1.w1", "pos"),
        ("s3://bucket/c.txt", "private.us-east-1.w2", "neg"),
    ]
    # Ground Truth's creation-date is UTC without an offset
    assert judged.get_column("submitted_at").dt.hour().to_list() == [22, 22, 22]
    assert judged.get_column("duration_s").to_list()[1:] == [12.5, 8.0]
    assert result.tasks.height == 3


def test_a_ground_truth_machine_label_is_no_judgment():
    # `human-annotated: no` is Ground Truth's automated labeling: the label came from its model,
    # not a person, so it must not count as a vote (Label Studio's predictions never do).
    lines = [
        manifest_line("s3://bucket/a.txt", "pos"),
        manifest_line("s3://bucket/b.txt", "neg", **{"human-annotated": "no"}),
    ]
    result = ingest("\n".join(lines).encode() + b"\n", "sagemaker-gt", name="output")
    assert result.rows_read == 2
    assert result.reasons == {"machine_label": 1}
    assert result.judgments.get_column("task_id").to_list() == ["s3://bucket/a.txt"]
    assert result.quarantine.select("reason", "field").rows() == [
        ("machine_label", "sentiment-metadata.human-annotated")
    ]
    assert result.tasks.height == 2


def test_real_crowd_data_round_trips_through_csv(tmp_path):
    judgments, _ = load_crowd("d_sentiment")
    frame = judgments.with_columns(submitted_at=pl.lit("2026-05-01T00:00:00Z"))
    frame.write_csv(tmp_path / "sentiment.csv")
    result = ingest_path(tmp_path / "sentiment.csv", format="csv", now=NOW_DT)
    expected_duplicates = frame.height - frame.unique(["task_id", "annotator_id"]).height
    assert result.rows_read == frame.height
    assert result.duplicates == expected_duplicates
    assert result.judgments.height == frame.unique(["task_id", "annotator_id"]).height


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["t1", "t2", "", "t3"]),
            st.sampled_from(["a1", "a2", ""]),
            st.sampled_from([*LABELS, "other"]),
            st.sampled_from(
                [
                    "2026-05-01T10:00:00Z",
                    "2026-05-02T10:00:00Z",
                    "2026-05-01T10:00:00",
                    "bad",
                    "2099-01-01T00:00:00Z",
                ]
            ),
        ),
        max_size=30,
    )
)
def test_reconciliation_holds_and_no_key_survives_twice(rows):
    data = HEADER + "".join(f"{t},{a},{lab},{ts},1\n" for t, a, lab, ts in rows)
    if not rows:
        return
    result = ingest(data.encode(), "csv")
    assert result.rows_read == len(rows) == result.rows_loaded + result.rows_quarantined
    assert result.judgments.select("task_id", "annotator_id").is_duplicated().sum() == 0
    assert set(result.judgments.get_column("label")) <= set(LABELS)


@pytest.mark.parametrize("field", ["task_id", "annotator_id", "label", "submitted_at"])
def test_a_column_mapping_cannot_drop_a_field_every_table_needs(field):
    # A project's mapping comes from its settings JSON: `null` there used to build a mapping
    # whose required column was None, reported later as a missing column named "None".
    with pytest.raises(ValueError, match=rf"column mapping: '{field}' must name a column"):
        ColumnMapping.from_dict({field: None})


def test_a_column_mapping_may_drop_an_optional_field_and_rename_others():
    mapping = ColumnMapping.from_dict({"task_id": "item", "duration_s": None})
    assert mapping.task_id == "item" and mapping.duration_s is None


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl", "sagemaker-gt", "label-studio"])
@pytest.mark.parametrize("data", [b"", b" \n\t\r\n"])
def test_an_emptied_export_is_zero_rows_where_the_caller_allows_it(fmt, data, tmp_path):
    # Emptying a file in the landing zone is how its rows are taken back.
    result = ingest_bytes(data, format=fmt, source_file=f"exports/p/{fmt}/f")
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (0, 0, 0)
    assert result.judgments.height == result.tasks.height == result.quarantine.height == 0
    assert result.files == (f"exports/p/{fmt}/f",)
    # A file given by hand (the ingest command) that is empty is more likely a mistake.
    with pytest.raises(UnreadableFileError, match=r"exports/p/.*: empty file"):
        ingest_bytes(data, format=fmt, source_file=f"exports/p/{fmt}/f", allow_empty=False)
    path = tmp_path / "empty"
    path.write_bytes(data)
    with pytest.raises(UnreadableFileError, match="empty: empty file"):
        ingest_path(path, format=fmt)


def test_rows_before_the_start_date_are_set_aside_in_the_quarantine_naming_it():
    from annotation_pipelines.ingest.result import set_aside_before

    data = (
        b"task_id,annotator_id,label,submitted_at,duration_s\n"
        b"t1,a1,pos,2026-10-31T23:59:00Z,3\n"  # before: quarantined
        b"t1,a2,neg,2026-11-02T10:00:00Z,3\n"  # the task moves to its first day in range
        b"t2,a1,pos,2026-10-30T10:00:00Z,3\n"  # t2 has nothing left: no day
        b"t3,a1,pos,2026-11-01T00:00:00Z,3\n"  # the start date itself is in range
    )
    result = ingest_bytes(data, format="csv", source_file="exports/p/csv/f.csv", project="p")
    kept = set_aside_before(result, "2026-11-01")
    assert kept.rows_read == 4 and (kept.rows_loaded, kept.rows_quarantined) == (2, 2)
    assert sorted(kept.judgments["task_id"]) == ["t1", "t3"]
    assert kept.reasons == {"before_start_date (2026-11-01)": 2}
    assert sorted(kept.quarantine["source_line"]) == [2, 4]
    assert set(kept.quarantine["field"]) == {"submitted_at"}
    created = dict(kept.tasks.select("task_id", pl.col("created_at").dt.date()).rows())
    assert {k: str(v) if v else None for k, v in created.items()} == {
        "t1": "2026-11-02",
        "t2": None,
        "t3": "2026-11-01",
    }
    # Nothing before the start date: the result is returned as it is.
    assert set_aside_before(kept, "2026-11-01") is kept


def test_both_set_asides_give_a_gold_label_the_quarantine_row_they_give_a_judgment():
    from annotation_pipelines import schema
    from annotation_pipelines.ingest.result import (
        IngestResult,
        set_aside_before,
        set_aside_case_twins,
    )

    day = datetime.fromisoformat("2026-10-31T10:00:00+00:00")
    where = {"source": ["gold_sets"], "source_file": ["gold/P/g.csv"], "source_line": [2]}
    judgments = schema.conform(
        pl.DataFrame(
            {"judgment_id": ["j1"], "task_id": ["t1"], "project": ["P"], "annotator_id": ["a1"],
             "label": ["pos"], "submitted_at": [day], "duration_s": [1.0], **where}
        ),
        schema.JUDGMENTS,
        name="judgments",
    )  # fmt: skip
    gold = schema.conform(
        pl.DataFrame(
            {"task_id": ["t1"], "project": ["P"], "label": ["pos"], "updated_at": [day], **where}
        ),
        schema.GOLD_LABELS,
        name="gold_labels",
    )
    result = IngestResult(
        judgments, schema.empty(schema.RAW_TASKS), gold, schema.empty(schema.QUARANTINE), 2
    )
    early = set_aside_before(result, "2026-11-01").quarantine
    twins = set_aside_case_twins(result, {"p"}).quarantine
    for quarantine in (early, twins):
        assert quarantine.schema == pl.Schema(schema.QUARANTINE)
        assert quarantine["table"].to_list() == ["judgments", "gold_labels"]
        assert quarantine["source_file"].to_list() == ["gold/P/g.csv"] * 2
        assert json.loads(quarantine["raw"][1])["label"] == "pos"
    assert early["field"].to_list() == ["submitted_at", "updated_at"]
    assert set(early["reason"]) == {"before_start_date (2026-11-01)"}
    assert set(twins["field"]) == {"project (differs only in case from project 'p')"}
    assert set(twins["reason"]) == {"invalid_project"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_duration_that_is_not_a_finite_number_is_quarantined_naming_the_field(fmt, tmp_path):
    # NaN or infinity parse as floats; kept, they made a day's annotator-hours NaN or infinite
    # and the staffing plan divide by zero.
    durations = [1.5, float("nan"), float("inf"), float("-inf")]
    frame = pl.DataFrame(
        {
            "task_id": ["t1", "t2", "t3", "t4"],
            "annotator_id": ["a"] * 4,
            "label": ["pos"] * 4,
            "submitted_at": ["2026-05-01T10:00:00Z"] * 4,
            "duration_s": durations,
        }
    )
    if fmt == "csv":
        raw = ["1.5", "NaN", "inf", "-Infinity"]
        text = HEADER + "".join(
            f"t{n},a,pos,2026-05-01T10:00:00Z,{raw[n - 1]}\n" for n in (1, 2, 3, 4)
        )
        data = text.encode()
    elif fmt == "jsonl":
        data = "\n".join(json.dumps(row) for row in frame.iter_rows(named=True)).encode()
    else:
        frame.with_columns(pl.col("submitted_at").str.to_datetime(time_zone="UTC")).write_parquet(
            tmp_path / "export.parquet"
        )
        data = (tmp_path / "export.parquet").read_bytes()
    result = ingest(data, fmt)
    assert result.judgments.select("task_id", "duration_s").rows() == [("t1", 1.5)]
    assert (
        sorted(result.quarantine.select("reason", "field").rows())
        == [("wrong_type", "duration_s")] * 3
    )


def _ids_quarantine(result) -> list[tuple[int, str, str]]:
    return sorted(result.quarantine.select("source_line", "field", "reason").rows())


def test_an_id_that_is_an_object_a_list_or_a_boolean_is_quarantined_as_wrong_type():
    # An export naming its annotator as {"id": 5, "email": ...} (as Label Studio's
    # completed_by does) was loaded with the object's text as the annotator id: the
    # e-mail address in every judgment's id, and a new "annotator" when it changes.
    lines = [
        {"task_id": "t1", "annotator_id": {"id": 5, "email": "ann@example.org"}},
        {"task_id": ["t2"], "annotator_id": "a2"},
        {"task_id": True, "annotator_id": "a3"},
        {"task_id": "t4", "annotator_id": "a4"},
        {"task_id": 5, "annotator_id": 7},
    ]
    data = "".join(
        json.dumps({**line, "label": "pos", "submitted_at": NOW}) + "\n" for line in lines
    ).encode()
    result = ingest_bytes(data, format="jsonl", source_file="e.jsonl", now=NOW_DT)
    assert _ids_quarantine(result) == [
        (1, "annotator_id", "wrong_type"),
        (2, "task_id", "wrong_type"),
        (3, "task_id", "wrong_type"),
    ]
    assert result.judgments.select("task_id", "annotator_id").rows() == [("t4", "a4"), ("5", "7")]


def test_a_parquet_id_column_of_objects_or_booleans_is_quarantined_as_wrong_type(tmp_path):
    rows = {"label": ["pos", "neg"], "submitted_at": [NOW, NOW]}
    struct = pl.DataFrame(
        {"task_id": ["t1", "t2"], "annotator_id": [{"id": 5, "email": "a@b.c"}, None], **rows}
    )
    boolean = pl.DataFrame({"task_id": [True, False], "annotator_id": ["a1", "a2"], **rows})
    for frame, field, lines in ((struct, "annotator_id", [1]), (boolean, "task_id", [1, 2])):
        path = tmp_path / f"{field}.parquet"
        frame.write_parquet(path)
        result = ingest_bytes(
            path.read_bytes(), format="parquet", source_file=path.name, now=NOW_DT
        )
        quarantined = _ids_quarantine(result)
        assert [(line, f) for line, f, reason in quarantined if reason == "wrong_type"] == [
            (line, field) for line in lines
        ]
        assert "a@b.c" not in " ".join(result.judgments.get_column("annotator_id").to_list())


def test_a_sagemaker_worker_id_that_is_an_object_or_a_boolean_is_quarantined():
    answers = [
        {"workerId": {"id": "w1", "email": "ann@example.org"}, "submissionTime": NOW,
         "answerContent": {"crowd-classifier": {"label": "pos"}}},
        {"workerId": True, "submissionTime": NOW,
         "answerContent": {"crowd-classifier": {"label": "pos"}}},
        {"workerId": "w3", "submissionTime": NOW,
         "answerContent": {"crowd-classifier": {"label": "neg"}}},
    ]  # fmt: skip
    line = manifest_line("s3://bucket/a.txt", "pos", **{"worker-responses": answers})
    result = ingest_bytes(
        line.encode() + b"\n", format="sagemaker-gt", source_file="out.manifest", now=NOW_DT
    )
    assert result.quarantine.select("field", "reason").rows() == [
        ("annotator_id", "wrong_type"),
        ("annotator_id", "wrong_type"),
    ]
    assert result.judgments.get_column("annotator_id").to_list() == ["w3"]


def test_whitespace_around_ids_and_labels_is_staged_as_written_and_counted():
    # Stripped, an old export read again would give its staged judgments another task or
    # label under the same id: edits that never happened. So the values stay as written and
    # the landing asset's metadata counts them (the commands name the first).
    from assets.sources.assets import reconciliation

    rows = ["t1 ,a1,pos,2026-05-01T10:00:00Z,1", "t1,a2, neg,2026-05-01T10:00:00Z,1"]
    data = (HEADER + "\n".join(rows) + "\n").encode()
    result = ingest_bytes(data, format="csv", source_file="export.csv", now=NOW_DT)
    assert result.judgments.select("task_id", "label").rows() == [("t1 ", "pos"), ("t1", " neg")]
    assert reconciliation(result)["padded_values"].value == 2
    plain = ingest(HEADER.encode() + GOOD[0].encode() + b"\n", "csv")
    assert reconciliation(plain)["padded_values"].value == 0


def test_timestamps_given_to_the_minute_load_like_those_with_seconds():
    """ISO 8601 lets the seconds be left out; such rows were quarantined as wrong_type, and a
    naive one was not told apart from a naive time with seconds."""
    lines = [
        "task_id,annotator_id,label,submitted_at",
        "t1,a1,pos,2026-05-01T10:00Z",
        "t2,a1,pos,2026-05-01 10:30+02:00",
        "t3,a1,pos,2026-05-01T11:15-0100",
        "t4,a1,pos,2026-05-01T09:45+02",
        "t5,a1,pos,2026-05-01T10:00:00Z",
        "t6,a1,pos,2026-05-01 10:00",
        "t7,a1,pos,2026-05-01T10:00:00",
        "t8,a1,pos,2026-05-01T10Z",
    ]
    result = ingest(("\n".join(lines) + "\n").encode(), "csv")
    loaded = result.judgments.sort("task_id")
    assert loaded.get_column("task_id").to_list() == ["t1", "t2", "t3", "t4", "t5"]
    assert loaded.get_column("submitted_at").dt.strftime("%H:%M:%S").to_list() == [
        "10:00:00",
        "08:30:00",
        "12:15:00",
        "07:45:00",
        "10:00:00",
    ]
    reasons = result.quarantine.sort("source_line").select("source_line", "reason").rows()
    assert reasons == [
        (7, "timestamp_without_timezone"),
        (8, "timestamp_without_timezone"),
        (9, "wrong_type"),
    ]
