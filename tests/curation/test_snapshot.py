"""Snapshots: flagged annotators never reach labels, held-back days stay out, exports round-trip,
and no raw annotator id leaves the platform."""

from datetime import date

import polars as pl
import pytest

from annotation_pipelines.curation import build_snapshot
from tests.support import LENIENT_GATES, QUIET, local_graph

KEY = b"snapshot-test-key"


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
        judgments, TASKS, method="majority_vote", min_confidence=0, pseudonym_key=KEY
    )
    assert unfiltered.rows["label"].to_list() == ["b"]
    filtered = build_snapshot(
        judgments,
        TASKS,
        method="majority_vote",
        min_confidence=0,
        flagged_annotators=["bad0", "bad1", "bad2"],
        pseudonym_key=KEY,
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
        pseudonym_key=KEY,
    )
    assert sorted(snapshot.rows["task_id"]) == ["t1", "t3"]
    assert snapshot.rows.filter(pl.col("task_id") == "t1")["payload"][0] == "mail me at [redacted]"
    voters = snapshot.rows["annotators"].explode().to_list()
    assert voters and all(v.startswith("anon-") for v in voters)
    masked = build_snapshot(
        _judgments(rows), TASKS, method="majority_vote", pseudonym_key=KEY, drop_fields=["payload"]
    )
    assert "payload" not in masked.rows.columns
    phone = build_snapshot(_judgments(rows), TASKS, method="majority_vote", pseudonym_key=KEY)
    assert "555" not in phone.rows.filter(pl.col("task_id") == "t2")["payload"][0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    with local_graph(root, judgments=6_000, start=date(2026, 11, 2), days=1, seed=8) as env:
        defs, instance, data = env
        daily = defs.resolve_job_def("daily_annotation_job")
        assert daily.execute_in_process(
            partition_key="2026-11-02", instance=instance, run_config=LENIENT_GATES
        ).success
        instance.add_dynamic_partitions("projects", ["sentiment"])
        result = defs.resolve_job_def("curation_job").execute_in_process(
            partition_key="sentiment", instance=instance, run_config=QUIET
        )
        yield data, result


def test_exported_files_load_back_to_the_same_rows(exported):
    data, result = exported
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    folder = data / "lake" / "datasets" / "sentiment" / metadata["version_id"].value
    splits = {}
    for split in ("train", "validation", "test"):
        parquet = pl.read_parquet(folder / f"{split}.parquet")
        jsonl = pl.read_ndjson(folder / f"{split}.jsonl", schema=parquet.schema)
        assert parquet.equals(jsonl)
        splits[split] = parquet.height
    assert splits == metadata["rows_per_split"].value
    assert (folder / "card.md").read_text().startswith("# Dataset card — sentiment")


def test_no_raw_annotator_id_in_any_export_or_metadata(exported):
    data, result = exported
    raw_ids = set(
        pl.read_parquet(data / "landing" / "synthetic" / "annotators.parquet")["annotator_id"]
    )
    exported_text = "\n".join(
        path.read_bytes().decode("utf-8", errors="replace")
        for path in (data / "lake" / "datasets").rglob("*")
        if path.is_file() and path.suffix in (".jsonl", ".md", ".json")
    )
    parquet_values = pl.concat(
        [pl.read_parquet(p) for p in (data / "lake" / "datasets").rglob("*.parquet")]
    )["annotators"].explode()
    metadata_text = str(result.get_asset_materialization_events()[0].materialization.metadata)
    leaked = [i for i in raw_ids if i in exported_text or i in metadata_text]
    assert not leaked
    assert not set(parquet_values.to_list()) & raw_ids
