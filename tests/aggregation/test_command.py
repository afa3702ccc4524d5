"""The `aggregate` command: formats in and out, and errors that name file, row and column."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.aggregation.command import aggregate_command
from annotation_pipelines.cli import main
from annotation_pipelines.tabular import position, row_lines
from tests.inputs import write_input

JUDGMENTS = pl.DataFrame(
    {
        "task_id": ["007", "007", "007", "008", "008", "009"],
        "annotator_id": ["w1", "w2", "w3", "w1", "w2", "w3"],
        "label": ["cat", "cat", "dog", "dog", "dog", "cat"],
    }
)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_formats_to_stdout(tmp_path: Path, suffix: str) -> None:
    path = write_input(JUDGMENTS, tmp_path / f"judgments{suffix}")
    result = CliRunner().invoke(aggregate_command, [str(path), "--method", "majority_vote"])
    assert result.exit_code == 0, result.output
    out = pl.read_csv(io.StringIO(result.stdout), schema_overrides={"task_id": pl.String})
    assert out.columns == ["task_id", "label", "confidence"]
    assert dict(out.select("task_id", "label").iter_rows()) == {
        "007": "cat",
        "008": "dog",
        "009": "cat",
    }


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_output_file_and_custom_columns(tmp_path: Path, suffix: str) -> None:
    renamed = JUDGMENTS.rename({"task_id": "item", "annotator_id": "rater", "label": "answer"})
    path = write_input(renamed, tmp_path / "in.csv")
    output = tmp_path / f"out{suffix}"
    result = CliRunner().invoke(
        aggregate_command,
        [
            str(path),
            "--task-col",
            "item",
            "--annotator-col",
            "rater",
            "--label-col",
            "answer",
            "--output",
            str(output),
        ],
    )
    assert result.exit_code == 0, result.output
    out = (
        pl.read_parquet(output) if suffix == ".parquet" else pl.read_csv(output, infer_schema=False)
    )
    assert out.columns == ["task_id", "label", "confidence"]
    assert "007" in out["task_id"].to_list()


def test_gold_option(tmp_path: Path) -> None:
    path = write_input(JUDGMENTS, tmp_path / "in.csv")
    gold = write_input(pl.DataFrame({"task_id": ["009"], "label": ["dog"]}), tmp_path / "gold.csv")
    result = CliRunner().invoke(aggregate_command, [str(path), "--gold", str(gold)])
    assert result.exit_code == 0, result.output
    assert "009,dog,1.0" in result.stdout


def test_missing_column(tmp_path: Path) -> None:
    path = write_input(JUDGMENTS.drop("label"), tmp_path / "in.csv")
    result = CliRunner().invoke(aggregate_command, [str(path)])
    assert result.exit_code != 0
    assert str(path) in result.output and "'label'" in result.output


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    result = CliRunner().invoke(aggregate_command, [str(path)])
    assert result.exit_code != 0 and "empty file" in result.output and str(path) in result.output


def test_a_json_line_giving_a_key_twice_is_quarantined_as_ingest_quarantines_it(
    tmp_path: Path,
) -> None:
    # Which of the two labels the annotator meant is unknown; the last one was counted.
    path = tmp_path / "votes.jsonl"
    path.write_text(
        '{"task_id": "t1", "annotator_id": "a1", "label": "pos", "label": "neg"}\n'
        '{"task_id": "t1", "annotator_id": "a2", "label": "pos"}\n'
    )
    result = CliRunner().invoke(aggregate_command, [str(path)])
    assert result.exit_code == 0, result.output
    assert "row 1 (line 1), field 'label': malformed_json" in result.stderr
    assert "label: given twice in one object" in result.stderr
    assert result.stdout.splitlines()[1].startswith("t1,pos,")


def test_unreadable_json_line_is_quarantined_and_the_rest_aggregated(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"task_id": "1", "annotator_id": "w", "label": "a"}\n{not json\n')
    result = CliRunner().invoke(aggregate_command, [str(path), "--method", "majority_vote"])
    assert result.exit_code == 0, result.output
    assert "row 2" in result.stderr and "malformed_json" in result.stderr
    assert str(path) in result.stderr and result.stdout.startswith("task_id,label,confidence")


@pytest.mark.parametrize("kind", ["categorical", "numeric"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "task_id,annotator_id,label\n1,w1,4\n1,w2,5,6\n2,w1,3\n",
            "row 2 (line 3): 4 fields, the header has 3",
        ),
        (
            'task_id,annotator_id,label\n1,w1,"2\nx"\n1,w2,5,6\n',
            "row 2 (line 4): 4 fields, the header has 3",
        ),
        (
            'task_id,annotator_id,label\n1,w1,4\n1,w2,"unterminated\n2,w1,3\n',
            "row 2 (line 3): a quoted field is never closed",
        ),
    ],
    ids=["extra_field", "after_a_multiline_field", "unterminated_quote"],
)
def test_a_csv_polars_cannot_parse_names_the_record(
    tmp_path: Path, kind: str, content: str, message: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_text(content)
    value = ["--value-col", "label"] if kind == "numeric" else []
    result = CliRunner().invoke(aggregate_command, [str(path), "--kind", kind, *value])
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: {message}" + (
        " (the file ends inside it)\n" if "quoted" in message else "\n"
    )


@pytest.mark.parametrize(
    ("row", "field"),
    [("2,,b", "annotator_id"), (",w2,b", "task_id"), ("2,w2,", "label"), ("2,w2,  ", "label")],
)
def test_empty_categorical_value_is_quarantined_with_row_and_field(
    tmp_path: Path, row: str, field: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_text(f"task_id,annotator_id,label\n1,w1,a\n{row}\n1,w3,a\n")
    output = tmp_path / "out.csv"
    result = CliRunner().invoke(
        aggregate_command, [str(path), "--method", "majority_vote", "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert f"row 2 (line 3), field {field!r}: missing" in result.stderr
    assert "1 of 3 rows quarantined" in result.stderr
    assert pl.read_csv(output)["task_id"].to_list() == [1]
    [entry] = [json.loads(line) for line in (tmp_path / "out.csv.quarantine.jsonl").open()]
    assert entry["row"] == 2 and entry["line"] == 3 and entry["field"] == field


def test_categorical_file_without_a_valid_row_exits_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("task_id,annotator_id,label\n1,w1,\n2,,b\n")
    result = CliRunner().invoke(aggregate_command, [str(path)])
    assert result.exit_code == 1
    assert "no valid rows: all 2 were quarantined" in result.output and str(path) in result.output


def test_bad_output_suffix(tmp_path: Path) -> None:
    path = write_input(JUDGMENTS, tmp_path / "in.csv")
    result = CliRunner().invoke(
        aggregate_command, [str(path), "--output", str(tmp_path / "o.xlsx")]
    )
    assert result.exit_code != 0 and ".parquet or .csv" in result.output


@pytest.mark.parametrize("target", ["input", "gold", "link"])
def test_an_output_that_is_an_input_file_is_refused(tmp_path: Path, target: str) -> None:
    path = write_input(JUDGMENTS, tmp_path / "judgments.csv")
    gold = tmp_path / "gold.csv"
    gold.write_text("task_id,label\n007,cat\n")
    (tmp_path / "link.csv").symlink_to(path)
    output = {"input": path, "gold": gold, "link": tmp_path / "link.csv"}[target]
    before = output.read_text()
    result = CliRunner().invoke(
        aggregate_command, [str(path), "--gold", str(gold), "--output", str(output)]
    )
    assert result.exit_code != 0 and "would overwrite the input" in result.output
    assert output.read_text() == before


def test_value_col_and_json_lines_output_for_categorical(tmp_path: Path) -> None:
    """`--value-col` is the kind-neutral name of `--label-col`; `.jsonl` output works too."""
    renamed = JUDGMENTS.rename({"label": "answer"})
    path = write_input(renamed, tmp_path / "in.parquet")
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        aggregate_command,
        [
            str(path),
            *("--kind", "categorical", "--method", "majority_vote"),
            *("--value-col", "answer", "--output", str(output)),
        ],
    )
    assert result.exit_code == 0, result.output
    out = pl.read_ndjson(output)
    assert out.columns == ["task_id", "label", "confidence"]
    assert dict(out.select("task_id", "label").iter_rows()) == {
        "007": "cat",
        "008": "dog",
        "009": "cat",
    }


def test_method_of_another_kind_is_refused_for_categorical(tmp_path: Path) -> None:
    path = write_input(JUDGMENTS, tmp_path / "in.csv")
    result = CliRunner().invoke(aggregate_command, [str(path), "--method", "borda"])
    assert result.exit_code == 2
    assert "'borda' does not aggregate kind 'categorical'" in result.output
    assert "dawid_skene" in result.output


def test_rows_are_named_by_data_row_and_the_line_they_start_on(tmp_path: Path) -> None:
    """One convention everywhere: `row N` counts data rows (a CSV's header not counted; a
    blank line is a row, as Polars reads it), the line is what an editor shows: a quoted cell
    over two lines shifts it; JSON Lines skip blank lines."""
    csv_path = tmp_path / "in.csv"
    csv_path.write_text('task_id,annotator_id,label\n1,w1,"a\nb"\n\n2,w2,c\n')
    assert row_lines(csv_path, [1, 3]) == {1: 2, 3: 5}
    jsonl_path = tmp_path / "in.jsonl"
    jsonl_path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert row_lines(jsonl_path, [2]) == {2: 3}
    assert row_lines(tmp_path / "in.parquet", [1]) == {}
    assert position(2, 3) == "row 2 (line 3)" and position(2) == "row 2"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "1", "annotator_id": "w", "label": "a"}\n\n{"task_id": "2"}\n')
    result = CliRunner().invoke(aggregate_command, [str(bad), "--method", "majority_vote"])
    assert "row 2 (line 3), field 'annotator_id'" in result.stderr


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_boolean_labels_are_read_as_ingest_reads_them(tmp_path: Path, suffix: str) -> None:
    # A yes/no project exported with typed booleans: ingest stores them as "true"/"false",
    # while aggregate quarantined every row ("expected a scalar, got True") and exited 1.
    judgments = pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t1", "t2", "t2"],
            "annotator_id": ["w1", "w2", "w3", "w1", "w2"],
            "label": [True, True, False, False, False],
        }
    )
    path = write_input(judgments, tmp_path / f"judgments{suffix}")
    result = CliRunner().invoke(aggregate_command, [str(path), "--method", "majority_vote"])
    assert result.exit_code == 0, result.output
    out = pl.read_csv(io.StringIO(result.stdout), schema_overrides={"label": pl.String})
    assert dict(out.select("task_id", "label").iter_rows()) == {"t1": "true", "t2": "false"}


def test_text_that_is_not_utf8_is_named_by_its_row_and_line(tmp_path: Path) -> None:
    # A Latin-1 export: the message was "unreadable csv: invalid utf-8 sequence", naming no
    # row; a UTF-16 one was read as a header of garbled column names.
    latin = tmp_path / "latin.csv"
    latin.write_bytes("task_id,annotator_id,label\nt1,a,cat\nt1,Zoé,café\n".encode("latin-1"))
    result = CliRunner().invoke(aggregate_command, [str(latin)])
    assert result.exit_code == 1, result.output
    assert f"{latin}: row 2 (line 3): not UTF-8 text (byte 0xe9); save the file as UTF-8" in (
        " ".join(result.output.split())
    )
    wide = tmp_path / "wide.csv"
    wide.write_bytes("task_id,annotator_id,label\nt1,a,cat\n".encode("utf-16"))
    result = CliRunner().invoke(aggregate_command, [str(wide)])
    assert result.exit_code == 1, result.output
    assert f"{wide}: the file is UTF-16 text; save it as UTF-8" in " ".join(result.output.split())


def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    # Polars reads the second `label` as `label_duplicated_0`, so the first was aggregated
    # without a word, whichever of the two held the answers.
    path = tmp_path / "twice.csv"
    path.write_text("task_id,annotator_id,label,notes,label,notes\nt1,a,cat,x,dog,y\n")
    result = CliRunner().invoke(aggregate_command, [str(path)])
    assert result.exit_code == 1, result.output
    assert f"{path}: line 1 (header): column 'label' appears 2 times" in " ".join(
        result.output.split()
    )
    # A repeated column the command does not read is no ambiguity.
    path.write_text("task_id,annotator_id,label,notes,notes\nt1,a,cat,x,y\n")
    assert CliRunner().invoke(aggregate_command, [str(path)]).exit_code == 0


@pytest.mark.parametrize("suffix", [".csv.gz", ".tsv.gz", ".jsonl.gz"])
def test_gzipped_text_is_read_as_ingest_reads_it(tmp_path: Path, suffix: str) -> None:
    path = write_input(JUDGMENTS, tmp_path / f"judgments{suffix}")
    result = CliRunner().invoke(aggregate_command, [str(path), "--method", "majority_vote"])
    assert result.exit_code == 0, result.output
    out = pl.read_csv(io.StringIO(result.stdout), schema_overrides={"task_id": pl.String})
    assert dict(out.select("task_id", "label").iter_rows()) == {
        "007": "cat",
        "008": "dog",
        "009": "cat",
    }


def test_a_bad_row_of_a_gzipped_csv_is_named_by_file_row_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "in.csv.gz"
    path.write_bytes(gzip.compress(b'task_id,annotator_id,label\n1,w1,"a\nb"\n1,w2,\n1,w3,a\n'))
    result = CliRunner().invoke(aggregate_command, [str(path), "--method", "majority_vote"])
    assert result.exit_code == 0, result.output
    assert str(path) in result.stderr and "row 2 (line 4), field 'label': missing" in result.stderr
    empty = tmp_path / "empty.csv.gz"
    empty.write_bytes(gzip.compress(b""))
    result = CliRunner().invoke(aggregate_command, [str(empty)])
    assert result.exit_code != 0 and f"{empty}: empty file" in result.output
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(b"task_id,annotator_id,label\n")
    result = CliRunner().invoke(aggregate_command, [str(corrupt)])
    assert result.exit_code != 0 and str(corrupt) in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("suffix", [".csv", ".tsv.gz", ".parquet", ".jsonl"])
def test_a_gold_file_of_the_task_column_and_one_other_reads_that_one_as_the_label(
    tmp_path: Path, suffix: str
) -> None:
    # Shared truth files name their answer column `truth`, not INPUT's `label`.
    path = write_input(JUDGMENTS, tmp_path / "in.csv")
    gold = write_input(
        pl.DataFrame({"task_id": ["009"], "truth": ["dog"]}), tmp_path / f"gold{suffix}"
    )
    result = CliRunner().invoke(aggregate_command, [str(path), "--gold", str(gold)])
    assert result.exit_code == 0, result.output
    assert "009,dog,1.0" in result.stdout


@pytest.mark.parametrize(
    ("columns", "found"),
    [
        ({"q": ["009"], "truth": ["dog"]}, "'q', 'truth'"),
        ({"task_id": ["009"], "truth": ["dog"], "note": ["x"]}, "'task_id', 'truth', 'note'"),
    ],
)
def test_a_gold_file_that_is_not_unambiguous_names_the_columns_expected_and_found(
    tmp_path: Path, columns: dict[str, list[str]], found: str
) -> None:
    path = write_input(JUDGMENTS, tmp_path / "in.csv")
    gold = write_input(pl.DataFrame(columns), tmp_path / "gold.csv")
    result = CliRunner().invoke(aggregate_command, [str(path), "--gold", str(gold)])
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert (
        f"{gold}: gold needs INPUT's task column 'task_id' and value column 'label', or "
        f"'task_id' and exactly one other column; the file has {found}"
    ) in message, message


def test_the_shared_truth_files_are_gold_as_they_are() -> None:
    from tests.realdata import CROWD_DIR, require_shared

    require_shared("crowd", "d_jn_product/truth.csv")
    folder = CROWD_DIR / "d_jn_product"
    columns = ["--task-col", "question", "--annotator-col", "worker", "--label-col", "answer"]
    result = CliRunner().invoke(
        aggregate_command,
        [str(folder / "answer.csv"), *columns, "--gold", str(folder / "truth.csv")],
    )
    assert result.exit_code == 0, result.output


# Whole-number floats, a fraction, and floats whose spelling differs between Python's repr
# (JSON Lines) and Polars' cast (Parquet): `1e-07` against `1e-7`, and a Float32 0.1.
FLOAT_IDS = [1.0, 2.0, 2.5, 1e20, 1e-7]


def _ingested_ids(path: Path, fmt: str, tmp_path: Path) -> set[tuple[str, str]]:
    from annotation_pipelines.cli import main

    out = tmp_path / "ingested"
    result = CliRunner().invoke(
        main, ["ingest", str(path), "--format", fmt, "--project", "p", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    staged = pl.read_parquet(out / "judgments.parquet")
    return set(staged.select("task_id", "annotator_id").iter_rows())


def _float_id_rows() -> list[dict[str, object]]:
    return [
        {
            "task_id": task,
            "annotator_id": annotator,
            "label": "cat" if annotator != 3.0 else "dog",
            "submitted_at": "2026-05-01T10:00:00Z",
        }
        for task in FLOAT_IDS
        for annotator in (1.0, 2.0, 3.0)
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "parquet-float32"])
def test_float_ids_are_spelled_as_ingest_stores_them(tmp_path: Path, fmt: str) -> None:
    # Ingest keeps `1.0` as "1.0" (renaming it would rename ids already in the lake), so the
    # commands read the same file to the same ids: a result joins back to the lake's rows.
    rows = _float_id_rows()
    if fmt == "jsonl":
        path = tmp_path / "judgments.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        dtype = pl.Float32 if fmt == "parquet-float32" else pl.Float64
        frame = pl.DataFrame(rows).with_columns(pl.col("task_id", "annotator_id").cast(dtype))
        path = tmp_path / "judgments.parquet"
        frame.write_parquet(path)
    stored = _ingested_ids(path, fmt.split("-")[0], tmp_path)
    assert ("1.0", "1.0") in stored
    output = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        aggregate_command, [str(path), "--method", "majority_vote", "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert set(pl.read_parquet(output)["task_id"]) == {task for task, _ in stored}

    from annotation_pipelines.loop.command import replay_command

    replayed = tmp_path / "replayed.parquet"
    result = CliRunner().invoke(replay_command, [str(path), "--output", str(replayed)])
    assert result.exit_code == 0, result.output
    assert set(pl.read_parquet(replayed)["task_id"]) == {task for task, _ in stored}


PADDED = pl.DataFrame(
    {
        "task_id": ["t1", "t1", "t1 ", "t2"],
        "annotator_id": ["w1", " w2", "w1", "w2"],
        "label": ["cat", " cat", "cat", "dog\t"],
        "submitted_at": ["2026-05-01T10:00:00Z"] * 4,
    }
)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_whitespace_around_ids_and_labels_is_kept_as_ingest_keeps_it_and_named(
    tmp_path: Path, suffix: str
) -> None:
    # Ingest keeps " cat" as written (stripping would change rows already staged when an old
    # export is read again), so the commands keep it too, and say so: four padded values,
    # the first named by file, row and field.
    path = write_input(PADDED, tmp_path / f"judgments{suffix}")
    result = CliRunner().invoke(aggregate_command, [str(path), "--method", "majority_vote"])
    assert result.exit_code == 0, result.output
    out = pl.read_csv(io.StringIO(result.stdout))
    assert sorted(out["task_id"]) == ["t1", "t1 ", "t2"]
    first = {".csv": "row 2 (line 3)", ".parquet": "row 2", ".jsonl": "row 2 (line 2)"}[suffix]
    assert (
        f"{path}: 4 ids or labels have whitespace around them, kept as written as ingest "
        f"keeps them (' cat' and 'cat' are two labels); first: {first}, field 'annotator_id': "
        "' w2'"
    ) in result.stderr, result.stderr

    from annotation_pipelines.cli import main

    for command in ("agreement", "replay"):
        other = CliRunner().invoke(main, [command, str(path)])
        assert other.exit_code == 0, other.output
        assert f"{path}: 4 ids or labels have whitespace around them" in other.stderr
    fmt = suffix.lstrip(".")
    ingested = CliRunner().invoke(main, ["ingest", str(path), "--format", fmt, "--project", "p"])
    assert ingested.exit_code == 0, ingested.output
    where = {".csv": "row 2 (line 3)", ".parquet": "row 2", ".jsonl": "line 2"}[suffix]
    assert (
        "4 ids or labels have whitespace around them, kept as written as the commands keep "
        f"them (' cat' and 'cat' are two labels); first: {path}: {where}, field "
        "'annotator_id': ' w2'"
    ) in ingested.stderr, ingested.stderr


def test_no_whitespace_no_note(tmp_path: Path) -> None:
    path = write_input(JUDGMENTS, tmp_path / "judgments.csv")
    result = CliRunner().invoke(aggregate_command, [str(path), "--method", "majority_vote"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "parquet-float32"])
def test_float_labels_are_spelled_as_ingest_stores_them(tmp_path: Path, fmt: str) -> None:
    # Class codes exported as floats (a pandas column with a gap is float): the lake holds
    # "1.0", so the commands' labels and gold must say "1.0" too to join with it.
    at = "2026-05-01T10:00:00Z"
    rows = [
        {"task_id": task, "annotator_id": annotator, "label": label, "submitted_at": at}
        for task, answers in {"t1": [1.0, 1.0, 2.0], "t2": [0.1, 0.1, 2.0]}.items()
        for annotator, label in zip(("w1", "w2", "w3"), answers, strict=True)
    ]
    if fmt == "jsonl":
        path = tmp_path / "judgments.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        dtype = pl.Float32 if fmt == "parquet-float32" else pl.Float64
        path = tmp_path / "judgments.parquet"
        pl.DataFrame(rows).with_columns(pl.col("label").cast(dtype)).write_parquet(path)
    from annotation_pipelines.cli import main

    out = tmp_path / "ingested"
    result = CliRunner().invoke(
        main, ["ingest", str(path), "--format", fmt.split("-")[0], "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    stored = set(pl.read_parquet(out / "judgments.parquet")["label"])
    assert "1.0" in stored
    output = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        aggregate_command, [str(path), "--method", "majority_vote", "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert stored == {"1.0", "2.0", "0.1"}
    assert set(pl.read_parquet(output)["label"]) == {"1.0", "0.1"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
@pytest.mark.parametrize(
    ("kind", "value", "option"),
    [
        ("categorical", "label", "--task-col"),
        ("categorical", "label", "--value-col"),
        ("numeric", "value", "--annotator-col"),
        ("numeric", "value", "--value-col"),
    ],
)
def test_a_missing_column_is_named_by_its_option(tmp_path, suffix, kind, value, option):
    frame = pl.DataFrame({"task_id": ["t1", "t1"], "annotator_id": ["a", "b"], value: ["1", "2"]})
    source = tmp_path / f"answers{suffix}"
    if suffix == ".csv":
        frame.write_csv(source)
    elif suffix == ".parquet":
        frame.write_parquet(source)
    else:
        frame.write_ndjson(source)
    run = CliRunner().invoke(aggregate_command, [str(source), "--kind", kind, option, "nope"])
    assert run.exit_code == 1, run.output
    message = " ".join(run.output.split())
    assert f"{option} 'nope': no such column; the file has" in message, message


def test_a_gold_file_naming_no_task_of_input_is_refused_naming_both_and_the_column(
    tmp_path: Path,
) -> None:
    # The usual mistake: gold keyed by ids in another format ("7" for "007"); it would anchor
    # nothing, and the results would equal a run without it.
    path = write_input(JUDGMENTS, tmp_path / "in.csv")
    gold = tmp_path / "gold.csv"
    gold.write_text("task_id,label\n7,cat\n8,dog\n")
    result = CliRunner().invoke(aggregate_command, [str(path), "--gold", str(gold)])
    assert result.exit_code == 2, result.output
    assert "--gold" in result.output
    assert f"{gold}: none of its 2 gold tasks is judged in {path}" in result.output
    assert "column 'task_id'" in result.output
    assert "'7', '8'" in result.output and "'007'" in result.output


def test_gold_tasks_input_does_not_judge_are_named_and_do_not_shape_the_fit(
    tmp_path: Path,
) -> None:
    path = write_input(JUDGMENTS, tmp_path / "in.csv")
    alone = tmp_path / "alone.csv"
    alone.write_text("task_id,label\n009,dog\n")
    gold = tmp_path / "gold.csv"
    # A task nobody judged, with a label nobody gave: it must not become a class of the fit.
    gold.write_text("task_id,label\n009,dog\nzzz1,bird\nzzz2,cat\n")
    expected = CliRunner().invoke(aggregate_command, [str(path), "--gold", str(alone)])
    result = CliRunner().invoke(aggregate_command, [str(path), "--gold", str(gold)])
    assert result.exit_code == 0, result.output
    assert (
        f"{gold}: 1 of 3 gold tasks is judged in {path}; the other 2 anchor nothing: "
        "'zzz1', 'zzz2'" in result.stderr
    )
    assert result.stdout == expected.stdout


def test_a_gold_label_no_annotator_gave_is_kept_and_named_by_its_row(tmp_path: Path) -> None:
    path = write_input(JUDGMENTS, tmp_path / "in.csv")
    gold = tmp_path / "gold.csv"
    gold.write_text("task_id,label\n008,dog\n009,bird\n")
    result = CliRunner().invoke(
        aggregate_command, [str(path), "--gold", str(gold), "--method", "dawid_skene"]
    )
    assert result.exit_code == 0, result.output
    assert "009,bird,1.0" in result.stdout
    assert (
        f"{gold}: 1 gold label no annotator gave in {path}, kept as its task's answer"
        in result.stderr
    )
    assert "row 2 (line 3): task '009', label 'bird'" in result.stderr


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (["aggregate"], "categorical"),
        (["aggregate", "--kind", "numeric", "--label-col", "label"], "numeric"),
        (["replay"], "categorical"),
    ],
)
def test_an_annotators_repeated_judgment_is_said_to_count_as_another_vote(
    tmp_path: Path, command: list[str], kind: str
) -> None:
    # crowd-kit counts a repeated row as one more vote, and so do these commands; `agreement`
    # and the daily layers keep the annotator's last, so the user is told which rows differ.
    labels = ["1", "1", "2", "1", "2", "2"] if kind == "numeric" else ["x", "x", "y", "x", "y", "y"]
    path = tmp_path / "repeats.csv"
    pl.DataFrame(
        {
            "task_id": ["t1", "t1", "t1", "t2", "t2", "t2"],
            "annotator_id": ["a", "b", "a", "a", "c", "c"],
            "label": labels,
        }
    ).write_csv(path)
    result = CliRunner().invoke(main, [*command, str(path)])
    assert result.exit_code == 0, result.output
    assert (
        f"{path}: 2 rows repeat an annotator's judgment of a task, each counted as one more vote"
    ) in result.stderr
    assert "first: row 3 (line 4), task 't1', annotator 'a'" in result.stderr


def test_no_repeat_no_note(tmp_path: Path) -> None:
    path = tmp_path / "once.csv"
    JUDGMENTS.write_csv(path)
    result = CliRunner().invoke(aggregate_command, [str(path)])
    assert result.exit_code == 0 and "rows repeat" not in result.stderr


def _wide_crowd(classes: int, tasks: int) -> pl.DataFrame:
    """Three of 30 annotators per task, each right 80 % of the time, wrong uniformly."""
    rng = np.random.default_rng(0)
    truth = rng.integers(classes, size=tasks)
    rows = []
    for task in range(tasks):
        for annotator in rng.choice(30, size=3, replace=False):
            right = rng.random() < 0.8
            label = truth[task] if right else rng.integers(classes)
            rows.append((f"t{task}", f"a{annotator}", f"L{label}"))
    return pl.DataFrame(rows, schema=["task_id", "annotator_id", "label"], orient="row")


def test_labels_no_annotator_gave_on_many_tasks_are_said_with_what_to_use_instead(
    tmp_path: Path,
) -> None:
    # 50 classes and 50 judgments per annotator: Dawid-Skene's 2,500-cell confusion matrices are
    # barely identified and it labels tasks with classes none of their annotators gave.
    path = tmp_path / "wide.csv"
    _wide_crowd(50, 500).write_csv(path)
    result = CliRunner().invoke(aggregate_command, [str(path), "--method", "dawid_skene"])
    assert result.exit_code == 0, result.output
    assert "tasks" in result.stderr and "got a label none of their annotators gave" in result.stderr
    assert "With 50 classes and 50 judgments per annotator" in result.stderr
    assert "--method auto" in result.stderr
    # Majority vote only gives labels somebody gave.
    plain = CliRunner().invoke(aggregate_command, [str(path), "--method", "majority_vote"])
    assert plain.exit_code == 0 and "none of their annotators" not in plain.stderr


@pytest.mark.parametrize("command", ["aggregate", "agreement", "replay"])
def test_a_label_typed_in_two_unicode_forms_is_said_to_be_two_classes(
    tmp_path: Path, command: str
) -> None:
    # "café" as U+00E9 and as "e" + U+0301 (macOS input) look alike and are two classes, as
    # ingest keeps them; the commands say so instead of splitting one answer in silence.
    path = tmp_path / "forms.csv"
    path.write_text(
        "task_id,annotator_id,label\nt1,a,caf\u00e9\nt1,b,cafe\u0301\nt2,a,x\nt2,b,x\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, [command, str(path)])
    assert result.exit_code == 0, result.output
    assert (
        f"{path}: 1 label(s) given in more than one Unicode form, kept as separate classes; "
        "first: 'cafe\\u0301' and 'caf\\xe9'"
    ) in result.stderr
    plain = tmp_path / "plain.csv"
    plain.write_text("task_id,annotator_id,label\nt1,a,x\nt1,b,y\n")
    assert "Unicode form" not in CliRunner().invoke(main, [command, str(plain)]).stderr
