"""Snapshots: flagged annotators never reach labels, held-back days stay out, exports round-trip,
and no raw annotator id leaves the platform."""

import hashlib
import json
from datetime import date

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from annotation_pipelines.curation import build_snapshot, dataset_card
from annotation_pipelines.curation.snapshot import source_days
from assets.curation.assets import curated_dataset
from resources.lake import LocalLake
from tests.markdown_render import rendered
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


def test_an_annotators_resubmission_on_a_later_day_replaces_their_vote():
    """A re-export whose times moved past midnight lands on the next day under new line-named
    ids: counted as a second vote, it doubled every task's votes and inflated its confidence."""
    first = [("t1", f"a{i}", "x", "2026-11-02T23:50:00") for i in range(3)]
    first += [("t2", "a0", "x", "2026-11-02T23:50:00"), ("t2", "a1", "y", "2026-11-02T23:51:00")]
    again = [("t1", f"a{i}", "x", "2026-11-03T00:10:00") for i in range(3)]
    # a1 changed their mind on t2: the newer answer is their vote.
    again += [("t2", "a1", "x", "2026-11-03T00:11:00")]
    snapshot = build_snapshot(
        _judgments(first + again),
        TASKS,
        method="majority_vote",
        min_confidence=0,
        min_votes=1,
        **PRIVACY,
    )
    votes = dict(snapshot.rows.select("task_id", "n_votes").iter_rows())
    assert votes == {"t1": 3, "t2": 2}
    assert dict(snapshot.rows.select("task_id", "label").iter_rows())["t2"] == "x"
    assert snapshot.stats["judgments_used"] == 5
    assert snapshot.stats["resubmissions_superseded"] == 4


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


def test_the_card_shows_each_label_as_its_text():
    """Labels went into the card's table raw: `pos|neg` added a column, a line break forged a
    row ("forged: 999"), and HTML or an image in a label rendered as such."""
    labels = [
        "pos|neg",
        "a\n| forged | 999 |",
        "<img src=x onerror=alert(1)>",
        "![](https://e.vil)",
    ]
    rows = [
        (f"t{n}", f"a{i}", label, "2026-11-02T10:00:00")
        for n, label in enumerate(labels)
        for i in range(2)
    ]
    tasks = pl.DataFrame(
        {
            "task_id": [f"t{n}" for n in range(len(labels))],
            "payload": ["p"] * len(labels),
            "payload_hash": [f"h{n}" for n in range(len(labels))],
            "created_at": [None] * len(labels),
        },
        schema_overrides={"created_at": pl.Datetime("us", "UTC")},
    )
    snapshot = build_snapshot(
        _judgments(rows), tasks, method="majority_vote", min_confidence=0, **PRIVACY
    )
    card = dataset_card(snapshot, project="p", quality=None, location="/x", filters={})
    tables, elements = rendered(card)
    [counts] = tables
    expected = sorted(label.replace("\n", "↵") for label in labels)
    assert sorted(row[0] for row in counts[1:]) == expected
    assert all(sum(int(v) for v in row[1:]) == 1 for row in counts[1:])
    assert elements == []


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


def test_a_duplicated_item_keeps_its_split_when_another_copy_becomes_the_survivor():
    # dup0 hashes to train and dup1 to test; they carry the same item. Later votes make dup1
    # the more confident copy, so it replaces dup0 as the survivor: the item must not move
    # from train to test between versions, or a model trained on one version is evaluated
    # on its own training items in the next.
    tasks = pl.DataFrame(
        {
            "task_id": ["dup0", "dup1"],
            "payload": ["the same item", "the same item"],
            "payload_hash": ["same", "same"],
            "created_at": [None, None],
        },
        schema_overrides={"created_at": pl.Datetime("us", "UTC")},
    )
    day = "2026-11-02T10:00:00"
    first = [("dup0", f"a{i}", "x", day) for i in range(3)]
    first += [("dup1", "a0", "x", day), ("dup1", "a1", "x", day), ("dup1", "a2", "y", day)]
    later = [("dup0", "a3", "y", day), ("dup1", "a3", "x", day), ("dup1", "a4", "x", day)]
    settings = {"method": "majority_vote", "min_confidence": 0.0, **PRIVACY}
    before = build_snapshot(_judgments(first), tasks, **settings)
    after = build_snapshot(_judgments(first + later), tasks, **settings)
    assert before.rows["task_id"].to_list() == ["dup0"]
    assert after.rows["task_id"].to_list() == ["dup1"]
    assert after.rows["split"].to_list() == before.rows["split"].to_list() == ["train"]


def test_the_manifest_says_what_a_trainer_needs(exported):
    data, result, *_ = exported
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    folder = data / "lake" / "datasets" / "sentiment" / metadata["version_id"].value
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "categorical"
    assert manifest["files"] == sorted(path.name for path in folder.iterdir())
    train = pl.read_parquet(folder / "train.parquet")
    assert manifest["schema"] == {name: str(dtype) for name, dtype in train.schema.items()}
    judged = pl.read_parquet(data / "lake" / "judgments" / "day=2026-11-02" / "data.parquet")
    labels = judged.filter(pl.col("project") == "sentiment")["label"].unique().sort().to_list()
    assert manifest["label_set"] == labels
    assert manifest["source_days"] == {
        "2026-11-02": {"gates_passed": True, "failed_gates": [], "gate_reasons": ""}
    }


def test_source_days_name_each_days_gate_verdict():
    quality = pl.DataFrame(
        {
            "project": ["p", "p", "q"],
            "day": [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)],
            "gates_passed": [True, False, False],
            "failed_gates": ["", "agreement_floor,row_counts_sane", "agreement_floor"],
            "gate_reasons": ["", "agreement_floor (ERROR): alpha 0.1 < 0.25", "x"],
        }
    )
    days = source_days(["2026-11-03", "2026-11-02", "2026-11-04"], quality, project="p")
    assert list(days) == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert days["2026-11-02"] == {"gates_passed": True, "failed_gates": [], "gate_reasons": ""}
    assert days["2026-11-03"]["failed_gates"] == ["agreement_floor", "row_counts_sane"]
    assert days["2026-11-03"]["gates_passed"] is False
    # No quality report for that day (of this project): no verdict, not a pass.
    assert days["2026-11-04"] == {"gates_passed": None, "failed_gates": [], "gate_reasons": None}


CURATE = """
import sys
from dagster import DagsterInstance
from assets.definitions import build_definitions
run_config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
              "ops": {"curated_dataset": {"config": {"min_confidence": float(sys.argv[1])}}}}
with DagsterInstance.ephemeral() as instance:
    instance.add_dynamic_partitions("projects", ["sentiment"])
    result = build_definitions(profile="local").resolve_job_def("curation_job").execute_in_process(
        partition_key="sentiment", instance=instance, run_config=run_config)
    print(next(e.materialization.metadata["version_id"].value
               for e in result.get_asset_materialization_events()))
"""


def test_a_snapshot_appears_whole_or_not_at_all(exported):
    # A trainer that lists datasets/<project>/ while a snapshot is written, or after its step
    # was killed, must never find a version folder with some of its splits missing.
    import os
    import subprocess
    import sys
    from pathlib import Path

    from resources.lake import CRASH_POINT_ENV, LocalLake

    data, _, _, defs, instance = exported
    lake = data / "lake"
    folders = lake / "datasets" / "sentiment"
    before = {path.name for path in folders.iterdir()}
    env = {k: v for k, v in os.environ.items() if k != CRASH_POINT_ENV}
    env |= {
        "ANNOTATION_PIPELINES_DATA_DIR": str(data),
        "ANNOTATION_PIPELINES_PSEUDONYM_KEY": os.environ["ANNOTATION_PIPELINES_PSEUDONYM_KEY"],
    }
    root = Path(__file__).resolve().parents[2]

    def curate(crash_at: str | None) -> subprocess.CompletedProcess:
        extra = {CRASH_POINT_ENV: crash_at} if crash_at else {}
        return subprocess.run(
            [sys.executable, "-c", CURATE, "0.85"],
            cwd=root,
            env=env | extra,
            capture_output=True,
            text=True,
            check=False,
        )

    killed = curate("staged")
    assert killed.returncode == -9, killed.stderr[-2000:]
    LocalLake(base_path=str(lake)).recover()
    assert {path.name for path in folders.iterdir()} == before
    # Only the run that is to be killed needs a process of its own; the one after it is an
    # ordinary run of the same job and config.
    run_config = {**QUIET, "ops": {"curated_dataset": {"config": {"min_confidence": 0.85}}}}
    finished = defs.resolve_job_def("curation_job").execute_in_process(
        partition_key="sentiment", instance=instance, run_config=run_config
    )
    assert finished.success
    metadata = finished.get_asset_materialization_events()[0].materialization.metadata
    version = metadata["version_id"].value
    assert {path.name for path in folders.iterdir()} == before | {version}
    manifest = json.loads((folders / version / "manifest.json").read_text())
    assert sorted(path.name for path in (folders / version).iterdir()) == manifest["files"]


def test_a_judged_day_without_a_quality_report_is_held_back(tmp_path, monkeypatch):
    # Its quality step failed or has not run: nothing vouched for the day, which must not
    # reach the curated dataset as if it had passed.
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    monkeypatch.setenv("ANNOTATION_PIPELINES_MAX_MASKED_SHARE", "1")
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    rows = [("t1", f"a{i}", "x", "2026-11-02T10:00:00") for i in range(3)]
    rows += [("t2", f"a{i}", "y", "2026-11-03T10:00:00") for i in range(3)]
    judgments = _judgments(rows)
    for day in ("2026-11-02", "2026-11-03"):
        judged = judgments.filter(pl.col("submitted_at").dt.date().cast(pl.String) == day)
        lake.write_table("judgments", judged, day=day)
        lake.write_table("raw_tasks", TASKS.with_columns(project=pl.lit("p")), day=day)
        lake.write_table(
            "gold_labels", pl.DataFrame(schema={"task_id": pl.String, "project": pl.String,
                                                "label": pl.String}), day=day)  # fmt: skip
        lake.write_table(
            "annotator_scorecards",
            pl.DataFrame({"project": "p", "annotator_id": ["a0"], "flagged": [False]}),
            day=day,
        )
    # Only the first day has its report.
    report = pl.DataFrame(
        {"project": ["p"], "day": [date(2026, 11, 2)], "gates_passed": [True],
         "failed_gates": [""], "gate_reasons": [""], "krippendorff_alpha": [0.5],
         "gold_accuracy": [None]},
        schema_overrides={"gold_accuracy": pl.Float64},
    )  # fmt: skip
    lake.write_table("quality_report", report, day="2026-11-02")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("projects", ["p"])
    result = materialize(
        [curated_dataset], resources={"lake": lake}, instance=instance, partition_key="p"
    )
    metadata = result.asset_materializations_for_node("curated_dataset")[0].metadata
    assert metadata["held_back_days"].value == ["2026-11-03"]
    assert metadata["held_back_reasons"].value == "2026-11-03: no quality report"
    folder = tmp_path / "lake" / "datasets" / "p" / metadata["version_id"].value
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["held_back_days"] == ["2026-11-03"]
    assert manifest["held_back_reasons"] == {"2026-11-03": "no quality report"}
    assert manifest["source_days"]["2026-11-03"]["gates_passed"] is None
    exported = pl.concat([pl.read_parquet(p) for p in folder.glob("*.parquet")])
    assert exported["task_id"].to_list() == ["t1"]
    assert "2026-11-03 (no quality report)" in (folder / "card.md").read_text()


@pytest.mark.parametrize(
    "ratios",
    [{"train": 0.8, "validation": 0.1, "test": 0.1}, {"train": 0.9, "holdout": 0.1}, None],
)
def test_the_card_loads_every_split_the_snapshot_writes(ratios):
    """The card's `load_dataset` line named train and test only: a team copying it trained
    without the validation split, and a configured split of another name was left out."""
    rows = [("t1", f"a{i}", "x", "2026-11-02T10:00:00") for i in range(2)]
    snapshot = build_snapshot(_judgments(rows), TASKS, method="majority_vote", **PRIVACY)
    filters = {} if ratios is None else {"split_ratios": ratios}
    card = dataset_card(snapshot, project="p", quality=None, location="/x", filters=filters)
    [line] = [line for line in card.splitlines() if "load_dataset(" in line]
    files = json.loads(line.split("data_files=", 1)[1].removesuffix(")"))
    expected = ratios or {"train": 0.8, "validation": 0.1, "test": 0.1}
    assert files == {split: f"/x/{split}.parquet" for split in expected}


def test_a_masked_payload_is_not_exported_beside_the_hash_of_its_unmasked_text():
    """`payload_hash` is an unkeyed SHA-256 of the payload as ingested: beside a masked payload
    (`mail me at [redacted]`) it let anyone confirm a guessed address or phone number by hashing
    the text with it filled in. A masked row's hash is the hash of what is exported."""
    raw = {
        "t1": "mail me at jane.doe@example.com",
        "t2": "call +1 415 555 0100 now",
        "t3": "plain",
    }
    tasks = TASKS.with_columns(
        payload_hash=pl.col("payload").map_elements(
            lambda text: hashlib.sha256(text.encode()).hexdigest(), return_dtype=pl.String
        )
    )
    rows = [(task, f"a{i}", "x", "2026-11-02T10:00:00") for task in raw for i in range(2)]
    snapshot = build_snapshot(
        _judgments(rows), tasks, method="majority_vote", min_confidence=0, **PRIVACY
    )
    exported = {row["task_id"]: row for row in snapshot.rows.iter_rows(named=True)}
    assert set(exported) == set(raw)
    for task, text in raw.items():
        row = exported[task]
        assert row["payload_hash"] == hashlib.sha256(row["payload"].encode()).hexdigest()
        if task != "t3":
            assert "[redacted]" in row["payload"]
            assert row["payload_hash"] != hashlib.sha256(text.encode()).hexdigest()
    # Nothing masked, nothing changed: such a snapshot keeps its version id.
    assert exported["t3"]["payload_hash"] == tasks.row(2, named=True)["payload_hash"]
