"""Snapshots: flagged annotators never reach labels, held-back days stay out, exports round-trip,
and no raw annotator id leaves the platform."""

import json
from datetime import date

import polars as pl
import pytest

from annotation_pipelines.curation import build_snapshot, dataset_card
from tests.support import LENIENT_GATES, QUIET, local_graph

KEY = b"snapshot-test-key"
# What the asset passes from settings; the engine never reads settings itself.
PRIVACY = {"pseudonym_key": KEY, "phone_region": "US", "max_masked_share": 1.0}


def _judgments(rows):
    return pl.DataFrame(
        rows, schema=["task_id", "annotator_id", "label", "submitted_at"], orient="row"
    ).with_columns(
        pl.col("submitted_at").str.to_datetime(time_zone="UTC"),
        project=pl.lit("p"),
    )


TASKS = pl.DataFrame(
    {
        "task_id": ["t1", "t2", "t3"],
        "payload": ["mail me at jane.doe@example.com", "call +1 415 555 0100 now", "plain"],
        "payload_hash": ["h1", "h2", "h3"],
        "created_at": [None, None, None],
    },
    schema_overrides={"created_at": pl.Datetime("us", "UTC")},
)


def test_flagged_annotators_votes_do_not_reach_the_labels():
    # Two honest annotators say "a"; three flagged ones say "b" and would win a plain vote.
    rows = [("t1", f"good{i}", "a", "2026-11-02T10:00:00") for i in range(2)]
    rows += [("t1", f"bad{i}", "b", "2026-11-02T10:00:00") for i in range(3)]
    judgments = _judgments(rows)
    unfiltered = build_snapshot(
        judgments, TASKS, method="majority_vote", min_confidence=0, **PRIVACY
    )
    assert unfiltered.rows["label"].to_list() == ["b"]
    filtered = build_snapshot(
        judgments,
        TASKS,
        method="majority_vote",
        min_confidence=0,
        flagged_annotators=["bad0", "bad1", "bad2"],
        **PRIVACY,
    )
    assert filtered.rows["label"].to_list() == ["a"]
    assert filtered.excluded_annotators == 3
    assert all(len(v) == 2 for v in filtered.rows["annotators"].to_list())


def test_held_back_days_and_privacy():
    rows = [("t1", f"a{i}", "x", "2026-11-02T10:00:00") for i in range(3)]
    rows += [("t2", f"a{i}", "y", "2026-11-03T10:00:00") for i in range(3)]
    rows += [("t3", f"a{i}", "x", "2026-11-04T10:00:00") for i in range(3)]
    snapshot = build_snapshot(
        _judgments(rows),
        TASKS,
        method="majority_vote",
        held_back_days=["2026-11-03"],
        **PRIVACY,
    )
    assert sorted(snapshot.rows["task_id"]) == ["t1", "t3"]
    assert snapshot.rows.filter(pl.col("task_id") == "t1")["payload"][0] == "mail me at [redacted]"
    voters = snapshot.rows["annotators"].explode().to_list()
    assert voters and all(v.startswith("anon-") for v in voters)
    masked = build_snapshot(
        _judgments(rows), TASKS, method="majority_vote", **PRIVACY, drop_fields=["payload"]
    )
    assert "payload" not in masked.rows.columns
    phone = build_snapshot(_judgments(rows), TASKS, method="majority_vote", **PRIVACY)
    assert "555" not in phone.rows.filter(pl.col("task_id") == "t2")["payload"][0]


def test_tasks_without_a_payload_stay_one_row_each():
    tasks = pl.DataFrame(
        {
            "task_id": [f"t{i:03d}" for i in range(120)],
            "payload": [None] * 120,
            "payload_hash": [None] * 120,
            "created_at": [None] * 120,
        },
        schema_overrides={
            "payload": pl.String,
            "payload_hash": pl.String,
            "created_at": pl.Datetime("us", "UTC"),
        },
    )
    rows = [
        (f"t{i:03d}", f"a{j}", "x", "2026-11-02T10:00:00") for i in range(120) for j in range(2)
    ]
    snapshot = build_snapshot(_judgments(rows), tasks, method="majority_vote", **PRIVACY)
    assert snapshot.rows.height == 120
    assert snapshot.stats["duplicates_collapsed"] == 0
    assert snapshot.stats["masked_share"] == 0.0


def test_nothing_selected_gives_an_empty_snapshot_that_says_why():
    rows = [("t1", f"a{i}", "x", "2026-11-02T10:00:00") for i in range(2)]
    snapshot = build_snapshot(
        _judgments(rows), TASKS, method="majority_vote", min_votes=5, **PRIVACY
    )
    assert snapshot.rows.height == 0
    assert "min_votes" in snapshot.stats["empty_reason"]
    assert snapshot.rows.columns == [
        "task_id",
        "project",
        "payload",
        "payload_hash",
        "label",
        "confidence",
        "n_votes",
        "split",
        "created_at",
        "duplicate_task_ids",
        "annotators",
    ]
    card = dataset_card(snapshot, project="p", quality=None, location="/x", filters={})
    assert "0 items" in card and "min_votes" in card
    # Every day held back: nothing to aggregate, the same kind of empty snapshot.
    held = build_snapshot(
        _judgments(rows), TASKS, method="majority_vote", held_back_days=["2026-11-02"], **PRIVACY
    )
    assert held.rows.height == 0 and "held back" in held.stats["empty_reason"]
    assert "held back" in dataset_card(held, project="p", quality=None, location="/x", filters={})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    with local_graph(root, judgments=6_000, start=date(2026, 11, 2), days=1, seed=8) as env:
        defs, instance, data = env
        daily = defs.resolve_job_def("daily_annotation_job").execute_in_process(
            partition_key="2026-11-02", instance=instance, run_config=LENIENT_GATES
        )
        assert daily.success
        instance.add_dynamic_partitions("projects", ["sentiment"])
        result = defs.resolve_job_def("curation_job").execute_in_process(
            partition_key="sentiment", instance=instance, run_config=QUIET
        )
        yield data, result, daily, defs, instance


def test_exported_files_load_back_to_the_same_rows(exported):
    data, result, *_ = exported
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    folder = data / "lake" / "datasets" / "sentiment" / metadata["version_id"].value
    splits = {}
    for split in ("train", "validation", "test"):
        parquet = pl.read_parquet(folder / f"{split}.parquet")
        jsonl = pl.read_ndjson(folder / f"{split}.jsonl", schema=parquet.schema)
        assert parquet.equals(jsonl)
        splits[split] = parquet.height
    assert splits == metadata["rows_per_split"].value
    card = (folder / "card.md").read_text()
    assert card.startswith("# Dataset card — sentiment")
    # The synthetic items carry no personal data: nothing masked, and the card says so.
    assert metadata["masked_share"].value == 0.0
    assert metadata["masked"].value == {"email": 0, "phone": 0, "custom": 0}
    assert "0.0% of payloads" in card
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["stats"]["masked_share"] == 0.0
    payloads = pl.read_parquet(folder / "train.parquet")["payload"]
    assert not payloads.str.contains(r"\[redacted\]").any()


def test_the_column_schema_shown_is_the_exported_files_schema(exported):
    data, result, *_ = exported
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    folder = data / "lake" / "datasets" / "sentiment" / metadata["version_id"].value
    shown = [(c.name, c.type) for c in metadata["dagster/column_schema"].value.columns]
    exported_schema = pl.read_parquet_schema(folder / "train.parquet")
    assert shown == [(name, str(dtype)) for name, dtype in exported_schema.items()]
    # The files are where the metadata says, one click away.
    assert metadata["location"].value == str(folder.resolve())


def test_no_raw_annotator_id_in_any_export_or_metadata(exported):
    data, result, daily, *_ = exported
    raw_ids = set(
        pl.read_parquet(data / "landing" / "synthetic" / "annotators.parquet")["annotator_id"]
    )
    files = [p for p in (data / "lake" / "datasets").rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".parquet", ".jsonl", ".md", ".json"}
    # Every byte of every file (Parquet pages may be compressed, so their values are decoded too).
    texts = [path.read_bytes() for path in files]
    for path in files:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            texts.append(frame.write_ndjson().encode("utf-8"))
    metadata = [
        str(event.materialization.metadata).encode("utf-8")
        for run in (daily, result)
        for event in run.get_asset_materialization_events()
    ]
    assert metadata
    leaked = sorted(
        raw_id for raw_id in raw_ids if any(raw_id.encode() in blob for blob in texts + metadata)
    )
    assert not leaked, f"{len(leaked)} raw annotator ids leaked, e.g. {leaked[:3]}"


def test_empty_selection_materializes_an_empty_snapshot_with_a_card(exported):
    data, _, _, defs, instance = exported
    run_config = {**QUIET, "ops": {"curated_dataset": {"config": {"min_votes": 1_000}}}}
    result = defs.resolve_job_def("curation_job").execute_in_process(
        partition_key="sentiment", instance=instance, run_config=run_config
    )
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["dagster/row_count"].value == 0
    assert "min_votes" in metadata["empty_reason"].value
    folder = data / "lake" / "datasets" / "sentiment" / metadata["version_id"].value
    assert "min_votes" in (folder / "card.md").read_text()
    for split in ("train", "validation", "test"):
        assert pl.read_parquet(folder / f"{split}.parquet").height == 0
