"""Gold sets from the landing zone (`gold/<project>/<file>`) are checked row by row as an
export's gold rows are: a bad row is quarantined naming its file, row and field, and the rest
of the file is staged."""

from __future__ import annotations

import json
import os

import polars as pl
from dagster import materialize

from annotation_pipelines.lake import quarantine_key
from assets.sources.assets import gold_sets
from resources.lake import LocalLake
from resources.landing import LocalLandingZone


def _gold_file(root, project: str, name: str, text: str) -> None:
    folder = root / "landing" / "gold" / project
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    # Past the local landing zone's settle time: a file that fresh is not read yet.
    os.utime(folder / name, (1, 1))


def test_bad_gold_rows_are_quarantined_row_by_row(tmp_path):
    """Gold rows were staged as they were: an empty task id or label, a label outside the
    project's label set and a project no folder can hold all became gold."""
    settings = tmp_path / "landing" / "exports" / "p" / "project.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"label_set": ["pos", "neg"]}))
    _gold_file(
        tmp_path,
        "p",
        "gold.csv",
        "task_id,label\nt1,pos\n,neg\nt3,\nt4,maybe\nt5,neg\nt5,pos\n",
    )
    _gold_file(tmp_path, "CON", "gold.csv", "task_id,label\nt9,pos\n")
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    landing = LocalLandingZone(path=str(tmp_path / "landing"))
    result = materialize([gold_sets], resources={"lake": lake, "landing": landing})
    assert result.success

    [key] = [k for k in lake.list_keys("staging/gold_labels/") if k.endswith("gold_sets.parquet")]
    staged = lake.get_frame(key).sort("task_id")
    assert staged.select("project", "task_id", "label").rows() == [
        ("p", "t1", "pos"),
        ("p", "t5", "pos"),
    ]
    quarantine = lake.get_frame(quarantine_key("gold_sets")).sort("source_file", "source_line")
    assert quarantine.select("table", "source_file", "source_line", "field", "reason").rows() == [
        ("gold_labels", "gold/CON/gold.csv", 1, "project", "invalid_project"),
        ("gold_labels", "gold/p/gold.csv", 2, "task_id", "missing_field"),
        ("gold_labels", "gold/p/gold.csv", 3, "label", "missing_field"),
        ("gold_labels", "gold/p/gold.csv", 4, "label", "unknown_label"),
        ("gold_labels", "gold/p/gold.csv", 5, "task_id", "duplicate"),
    ]
    assert json.loads(quarantine["raw"][3]) == {"task_id": "t4", "label": "maybe"}
    metadata = result.asset_materializations_for_node("gold_sets")[0].metadata
    assert metadata["rows_quarantined"].value == 5
    assert metadata["dagster/row_count"].value == 2


def test_a_gold_folder_spelled_as_a_lake_project_in_another_case_is_quarantined(tmp_path):
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    lake.put_frame(
        "staging/judgments/day=2026-11-02/abc.parquet",
        pl.DataFrame({"project": ["Intent"], "task_id": ["t1"]}),
    )
    _gold_file(tmp_path, "intent", "gold.csv", "task_id,label\nt1,pos\n")
    _gold_file(tmp_path, "Intent", "more.csv", "task_id,label\nt2,pos\n")
    landing = LocalLandingZone(path=str(tmp_path / "landing"))
    assert materialize([gold_sets], resources={"lake": lake, "landing": landing}).success
    [key] = [k for k in lake.list_keys("staging/gold_labels/") if k.endswith("gold_sets.parquet")]
    assert lake.get_frame(key).select("project", "task_id").rows() == [("Intent", "t2")]
    quarantine = lake.get_frame(quarantine_key("gold_sets"))
    assert quarantine.select("source_file", "source_line", "field", "reason").rows() == [
        (
            "gold/intent/gold.csv",
            1,
            "project (differs only in case from project 'Intent')",
            "invalid_project",
        )
    ]


def _stage_parquet_gold(root, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the staged gold, the gold sets' quarantine by line) after `gold_sets` read `frame` as
    project p's Parquet gold set."""
    folder = root / "landing" / "gold" / "p"
    folder.mkdir(parents=True)
    frame.write_parquet(folder / "gold.parquet")
    os.utime(folder / "gold.parquet", (1, 1))
    lake = LocalLake(base_path=str(root / "lake"))
    landing = LocalLandingZone(path=str(root / "landing"))
    assert materialize([gold_sets], resources={"lake": lake, "landing": landing}).success
    [key] = [k for k in lake.list_keys("staging/gold_labels/") if k.endswith("gold_sets.parquet")]
    return lake.get_frame(key), lake.get_frame(quarantine_key("gold_sets")).sort("source_line")


def test_a_parquet_gold_set_is_checked_as_a_csv_one(tmp_path):
    frame = pl.DataFrame({"task_id": [1, None, 3], "label": ["pos", "neg", None]})
    staged, quarantine = _stage_parquet_gold(tmp_path, frame)
    assert staged.select("task_id", "label").rows() == [("1", "pos")]
    assert quarantine.select("source_line", "field", "reason").rows() == [
        (2, "task_id", "missing_field"),
        (3, "label", "missing_field"),
    ]
    assert json.loads(quarantine["raw"][0]) == {"task_id": None, "label": "neg"}


def test_a_parquet_gold_set_with_a_bytes_column_is_checked_and_its_bad_rows_keep_the_bytes(
    tmp_path,
):
    """Polars writes no bytes as JSON: a digest column stopped every project's gold."""
    frame = pl.DataFrame(
        {"task_id": ["t1", "t2"], "label": ["pos", None], "md5": [b"\x01\xff", b"\x03"]}
    )
    staged, quarantine = _stage_parquet_gold(tmp_path, frame)
    assert staged.select("task_id", "label").rows() == [("t1", "pos")]
    assert quarantine.select("source_line", "field", "reason").rows() == [
        (2, "label", "missing_field")
    ]
    assert json.loads(quarantine["raw"][0]) == {"task_id": "t2", "label": None, "md5": "03"}


def test_an_unreadable_project_json_stops_no_other_projects_gold(tmp_path):
    # The gold sets are one asset for every project: one project's typo in its settings file
    # stages that project's gold unchecked (said in the log) and every other project's as usual.
    settings = tmp_path / "landing" / "exports" / "p" / "project.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"label_set": ["pos", "neg"],}')
    _gold_file(tmp_path, "p", "gold.csv", "task_id,label\nt1,pos\nt2,maybe\n")
    _gold_file(tmp_path, "q", "gold.csv", "task_id,label\nt1,neg\n")
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    landing = LocalLandingZone(path=str(tmp_path / "landing"))
    result = materialize([gold_sets], resources={"lake": lake, "landing": landing})
    assert result.success
    [key] = [k for k in lake.list_keys("staging/gold_labels/") if k.endswith("gold_sets.parquet")]
    staged = lake.get_frame(key).sort("project", "task_id")
    assert staged.select("project", "task_id", "label").rows() == [
        ("p", "t1", "pos"),
        ("p", "t2", "maybe"),
        ("q", "t1", "neg"),
    ]


def test_a_parquet_gold_set_with_a_nan_task_id_or_label_quarantines_them_as_wrong_type(tmp_path):
    # Cast to text, NaN was the task "NaN" (every NaN one task) and the label "NaN".
    nan = float("nan")
    frame = pl.DataFrame({"task_id": [1.0, nan, 3.0, 4.0], "label": [1.0, 2.0, nan, float("inf")]})
    staged, quarantine = _stage_parquet_gold(tmp_path, frame)
    assert staged.select("task_id", "label").rows() == [("1.0", "1.0")]
    assert quarantine.select("source_line", "field", "reason").rows() == [
        (2, "task_id", "wrong_type"),
        (3, "label", "wrong_type"),
        (4, "label", "wrong_type"),
    ]


def _gold_bytes(root, project: str, name: str, data: bytes) -> None:
    folder = root / "landing" / "gold" / project
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    os.utime(folder / name, (1, 1))


def _staged_gold(tmp_path):
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    landing = LocalLandingZone(path=str(tmp_path / "landing"))
    result = materialize(
        [gold_sets], resources={"lake": lake, "landing": landing}, raise_on_error=False
    )
    return result, lake


def test_an_emptied_gold_set_is_no_gold_and_stops_no_other_file(tmp_path):
    """An emptied gold file is zero rows, as an emptied export is: it failed the run with
    polars' `empty CSV`, naming no file, and no project's gold was restaged."""
    _gold_bytes(tmp_path, "p", "cleared.csv", b"")
    _gold_bytes(tmp_path, "p", "blank.csv", b"\n \n")
    _gold_file(tmp_path, "q", "gold.csv", "task_id,label\nt1,pos\n")
    result, lake = _staged_gold(tmp_path)
    assert result.success
    [key] = [k for k in lake.list_keys("staging/gold_labels/") if k.endswith("gold_sets.parquet")]
    assert lake.get_frame(key).select("project", "task_id", "label").rows() == [("q", "t1", "pos")]


def _failure(result) -> str:
    [event] = [event for event in result.all_events if event.is_step_failure]
    error = event.step_failure_data.error
    return (error.cause or error).message


def test_an_unreadable_gold_set_fails_naming_its_file(tmp_path):
    # Polars' own words named no file.
    _gold_bytes(tmp_path, "p", "gold.parquet", b"PAR1 not really")
    result, _ = _staged_gold(tmp_path)
    assert not result.success
    assert "gold/p/gold.parquet: unreadable parquet" in _failure(result)
    (tmp_path / "landing" / "gold" / "p" / "gold.parquet").unlink()
    _gold_bytes(tmp_path, "p", "gold.csv", "task_id,label\nt1,pos\n".encode("utf-16"))
    result, _ = _staged_gold(tmp_path)
    assert "gold/p/gold.csv: the file is UTF-16 text" in _failure(result)
    _gold_bytes(tmp_path, "p", "gold.csv", b"task_id,label,label\nt1,pos,neg\n")
    result, _ = _staged_gold(tmp_path)
    assert "gold/p/gold.csv: line 1 (header): column 'label' appears 2 times" in _failure(result)


def test_a_gold_row_not_utf8_or_wider_than_the_header_is_quarantined_naming_its_row(tmp_path):
    """Read as an export's rows are: a Latin-1 byte failed the run naming no file, and a label
    with an unquoted comma (`New York, NY`) failed it too."""
    text = "task_id,label\nt1,caf\xe9\nt2,pos\nt3,New York, NY\n"
    _gold_bytes(tmp_path, "p", "gold.csv", text.encode("latin-1"))
    result, lake = _staged_gold(tmp_path)
    assert result.success
    [key] = [k for k in lake.list_keys("staging/gold_labels/") if k.endswith("gold_sets.parquet")]
    assert lake.get_frame(key).select("task_id", "label").rows() == [("t2", "pos")]
    quarantine = lake.get_frame(quarantine_key("gold_sets"))
    assert quarantine.select("source_file", "source_line", "reason").rows() == [
        ("gold/p/gold.csv", 1, "non_utf8"),
        ("gold/p/gold.csv", 3, "extra_fields"),
    ]
    assert json.loads(quarantine["raw"][1]) == {"task_id": "t3", "label": "New York"}


def test_a_file_under_gold_that_is_not_a_gold_set_is_named_not_silently_skipped(tmp_path):
    """Only `gold/<project>/<file>.csv|parquet` is a gold set; a TSV, a file straight under
    `gold/` or one a folder deeper was skipped without a word."""
    _gold_file(tmp_path, "p", "gold.csv", "task_id,label\nt1,pos\n")
    _gold_file(tmp_path, "p", "gold.tsv", "task_id\tlabel\nt2\tpos\n")
    _gold_file(tmp_path, "p/2026", "more.csv", "task_id,label\nt3,pos\n")
    (tmp_path / "landing" / "gold" / "p.csv").write_text("task_id,label\nt4,pos\n")
    os.utime(tmp_path / "landing" / "gold" / "p.csv", (1, 1))
    result, lake = _staged_gold(tmp_path)
    assert result.success
    metadata = result.asset_materializations_for_node("gold_sets")[0].metadata
    assert metadata["ignored_files"].value == [
        "gold/p.csv",
        "gold/p/2026/more.csv",
        "gold/p/gold.tsv",
    ]
    [key] = [k for k in lake.list_keys("staging/gold_labels/") if k.endswith("gold_sets.parquet")]
    assert lake.get_frame(key).select("task_id").to_series().to_list() == ["t1"]
