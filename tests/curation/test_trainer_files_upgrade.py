"""Snapshots whose trainer files an older writer wrote get the current ones, from their own rows.

A version id names the rows, so a change of trainer-file format cannot make a new version: the
snapshot asset rewrites the derived files of every version whose manifest names an older
format, in place, and leaves the rows, the id, `created_at` and `current` as they were. The
lakes here are made by the asset, then aged into the first format's shape (what the writer
produced before split COCO files kept the whole file's ids and conll.txt's separator was
`-DOCSTART- O`), as a lake built before the change holds them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from annotation_pipelines.aggregation.boxes import FUSED_BOX
from annotation_pipelines.aggregation.spans import SCORED_SPAN
from annotation_pipelines.curation.kinds import (
    TRAINER_FILES_FORMAT,
    card_with_conll_notes,
    kind_card,
    kind_of_columns,
)
from annotation_pipelines.curation.versioning import content_version
from annotation_pipelines.kinds import document_texts
from annotation_pipelines.lake import manifest_created_at
from resources.lake import CRASH_POINT_ENV, LocalLake
from tests.curation.test_kind_snapshot import (
    DAY,
    SPLITS,
    N,
    _curate,
    _labels,
    _lake_with,
    _tasks,
    _transcripts,
    build_kind_snapshot,
)

# When the aged snapshots were made: long before the runs of the tests.
MADE = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def _text(i: int) -> str:
    return f"Ada Lovelace met -DOCSTART-ish Bob on day {i}"


def _spans(i: int) -> list[dict]:
    text = _text(i)

    def span(start: int, end: int, label: str) -> dict:
        return {"start": start, "end": end, "label": label, "confidence": 0.9}

    # "Lovelace met" shares a token with "Ada Lovelace": BIO keeps one of them.
    return [span(0, 12, "PER"), span(4, 16, "EVENT X"), span(text.index("Bob"), len(text), "PER")]


def _entities() -> tuple[pl.DataFrame, pl.DataFrame]:
    labels = _labels(
        "entities", "spans", {"spans": [_spans(i) for i in range(N)]}, spans=pl.List(SCORED_SPAN)
    )
    return labels, _tasks("entities", _text)


def _detection(confidence: float = 0.9) -> tuple[pl.DataFrame, pl.DataFrame]:
    def payload(i: int) -> str:
        return json.dumps({"file_name": f"{i}.jpg", "width": 100, "height": 100})

    boxes = [
        [
            {
                "label": "dog" if i % 2 else "person",
                "x_min": 1.0,
                "y_min": 2.0,
                "x_max": 11.0,
                "y_max": 22.0,
                "confidence": 0.8,
            }
        ]
        for i in range(N)
    ]
    labels = _labels(
        "det", "boxes", {"boxes": boxes}, confidence=[confidence] * N, boxes=pl.List(FUSED_BOX)
    )
    return labels, _tasks("det", payload)


def _old_conll(rows: pl.DataFrame) -> bytes:
    """conll.txt as the first format wrote it: the task id in the separator's tag column, spans
    taken in (start, end) order, a token's tag from the first span still open at it."""
    lines: list[str] = []
    texts = document_texts(rows)
    documents = rows.select("task_id", "spans").join(texts, on="task_id", maintain_order="left")
    for task_id, spans, text in documents.select("task_id", "spans", "text").iter_rows():
        lines += [f"-DOCSTART- {task_id}", ""]
        ordered = sorted(spans or [], key=lambda span: (span["start"], span["end"]))
        cursor, previous = 0, -1
        position = 0
        for token in text.split():
            first = text.index(token, position)
            position = first + len(token)
            while cursor < len(ordered) and ordered[cursor]["end"] <= first:
                cursor += 1
            tag = "O"
            if cursor < len(ordered) and ordered[cursor]["start"] <= first:
                label = ordered[cursor]["label"] or "ENTITY"
                tag = ("I-" if previous == cursor else "B-") + label
                previous = cursor
            else:
                previous = -1
            lines.append(f"{token} {tag}")
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


def _old_split_coco(current: bytes) -> bytes:
    """A split's COCO file as the first format wrote it: its own images and annotations
    numbered from 1, and only the categories its boxes use."""
    coco = json.loads(current)
    image_ids = {image["id"]: n for n, image in enumerate(coco["images"], start=1)}
    used = {annotation["category_id"] for annotation in coco["annotations"]}
    coco["images"] = [{**image, "id": image_ids[image["id"]]} for image in coco["images"]]
    coco["annotations"] = [
        {**annotation, "id": n, "image_id": image_ids[annotation["image_id"]]}
        for n, annotation in enumerate(coco["annotations"], start=1)
    ]
    coco["categories"] = [c for c in coco["categories"] if c["id"] in used]
    return json.dumps(coco, indent=1, sort_keys=True).encode()


def _age(folder: Path, made: datetime | None = MADE) -> None:
    """Turn a version folder the asset wrote into what the first format left: its trainer
    files in the old shape, a manifest without the format, the conll stats or created_at, a
    card without the CoNLL section, and the manifest written at `made` (None: when it was)."""
    manifest_path = folder / "manifest.json"
    written_ns = manifest_path.stat().st_mtime_ns
    manifest = json.loads(manifest_path.read_text())
    rows = pl.read_parquet(folder / "data.parquet")
    splits = list(manifest["splits"])
    if manifest["kind"] == "spans":
        (folder / "conll.txt").write_bytes(_old_conll(rows))
        for split in splits:
            part = rows.filter(pl.col("split") == split)
            (folder / f"{split}.conll.txt").write_bytes(_old_conll(part))
        manifest["stats"].pop("conll")
        card = (folder / "card.md").read_text()
        (folder / "card.md").write_text(card.split("\n\n## CoNLL\n")[0] + "\n")
    if manifest["kind"] == "boxes":
        for split in splits:
            path = folder / f"{split}.coco.json"
            path.write_bytes(_old_split_coco(path.read_bytes()))
    manifest.pop("trainer_files", None)
    manifest.pop("created_at", None)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    stamp = written_ns if made is None else int(made.timestamp()) * 10**9
    os.utime(manifest_path, ns=(stamp, stamp))


def _folder(lake_root: Path, project: str) -> Path:
    [manifest] = (lake_root / "datasets" / project).glob("*/manifest.json")
    return manifest.parent


def _current(root: Path, project: str) -> str:
    return json.loads((root / "datasets" / project / "current.json").read_text())["version_id"]


def _contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _times(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "current.json"
    }


@pytest.fixture
def aged(tmp_path, monkeypatch):
    """A lake with a spans, a boxes and a text project curated once and aged into the first
    format, and what the asset wrote for each before it was aged."""
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    lake = _lake_with(
        tmp_path,
        {"entities": _entities(), "det": _detection(), "transcripts": _transcripts()},
    )
    assert _curate(lake).success
    root = tmp_path / "lake"
    written = {project: _contents(_folder(root, project)) for project in ("entities", "det")}
    for project in ("entities", "det", "transcripts"):
        _age(_folder(root, project))
    return lake, root, written


def test_an_old_formats_trainer_files_are_rewritten_from_the_versions_own_rows(aged):
    lake, root, written = aged
    before = {project: _contents(_folder(root, project)) for project in ("entities", "det")}
    assert before["entities"]["conll.txt"].startswith(b"-DOCSTART- entities-000\n")
    transcripts = _times(_folder(root, "transcripts"))
    pointers = {p: _current(root, p) for p in written}

    result = _curate(lake)
    assert result.success
    for project in ("entities", "det"):
        folder = _folder(root, project)
        after = _contents(folder)
        # The same rows give the same trainer files a fresh build of today's code writes.
        for name, data in written[project].items():
            if name not in ("manifest.json", "card.md"):
                assert after[name] == data, (project, name)
        assert after["data.parquet"] == before[project]["data.parquet"]
        assert folder.name == json.loads(after["manifest.json"])["version_id"]
        manifest = json.loads(after["manifest.json"])
        fresh = json.loads(written[project]["manifest.json"])
        kind = manifest["kind"]
        assert manifest["trainer_files"]["format"] == TRAINER_FILES_FORMAT[kind]
        assert manifest["trainer_files"]["previous_format"] == 1
        assert manifest["trainer_files"]["rewritten_by_run"] == result.run_id
        assert manifest["trainer_files"]["sha256"] == fresh["trainer_files"]["sha256"]
        # Only the files whose bytes change are written again, the card among them.
        rewritten = manifest["trainer_files"]["rewritten"]
        assert rewritten == sorted(
            name
            for name in [*fresh["trainer_files"]["sha256"], "card.md"]
            if before[project][name] != written[project][name]
        )
        assert after["card.md"] == written[project]["card.md"]
        assert manifest["created_at"] == MADE.isoformat()
        assert manifest["created_by_run"] == fresh["created_by_run"] != result.run_id
        assert manifest["stats"] == fresh["stats"]
        assert manifest["files"] == fresh["files"]
        assert _current(root, project) == pointers[project] == folder.name
    assert b"\n## CoNLL\n" in _contents(_folder(root, "entities"))["card.md"]
    # A kind whose trainer files did not change is left alone.
    assert _times(_folder(root, "transcripts")) == transcripts
    metadata = result.asset_materializations_for_node("kind_curated_dataset")[0].metadata
    assert metadata["trainer_files_rewritten"].value == {
        f"{p}/{_folder(root, p).name}": {
            "from_format": 1,
            "to_format": 2,
            "files": json.loads((_folder(root, p) / "manifest.json").read_text())["trainer_files"][
                "rewritten"
            ],
        }
        for p in ("det", "entities")
    }

    # Nothing is left to rewrite: the second run writes no file of any version.
    times = _times(root / "datasets")
    again = _curate(lake)
    assert again.success
    assert _times(root / "datasets") == times
    metadata = again.asset_materializations_for_node("kind_curated_dataset")[0].metadata
    assert metadata["trainer_files_rewritten"].value == {}


def test_a_pinned_version_no_longer_current_is_rewritten_from_its_rows_not_todays(aged):
    lake, root, written = aged
    old = _folder(root, "det")
    old_rows = (old / "data.parquet").read_bytes()
    # Today's lake makes another version of det: every box now below the confidence floor but
    # one, so today's rows could not give the old version's files.
    labels, _ = _detection()
    later = labels.with_columns(
        day=pl.lit(date(2026, 11, 3)), confidence=pl.Series([0.9] + [0.1] * (N - 1))
    )
    lake.write_table("kind_aggregated_labels", later, day="2026-11-03")
    quality = lake.read_table("kind_quality_report", day=DAY.isoformat())
    lake.write_table(
        "kind_quality_report", quality.with_columns(day=pl.lit(date(2026, 11, 3))), day="2026-11-03"
    )
    assert _curate(lake).success
    folders = {p.parent.name for p in (root / "datasets" / "det").glob("*/manifest.json")}
    assert old.name in folders and len(folders) == 2
    assert _current(root, "det") != old.name
    assert (old / "data.parquet").read_bytes() == old_rows
    for split in SPLITS:
        name = f"{split}.coco.json"
        assert (old / name).read_bytes() == written["det"][name]
    assert json.loads((old / "manifest.json").read_text())["trainer_files"]["format"] == 2


def test_a_version_whose_rows_do_not_hash_to_its_id_is_not_rewritten(aged):
    lake, root, _ = aged
    folder = _folder(root, "entities")
    rows = pl.read_parquet(folder / "data.parquet")
    (folder / "data.parquet").write_bytes(b"")
    rows.head(3).write_parquet(folder / "data.parquet")
    aged_files = _contents(folder)
    result = _curate(lake)
    assert not result.success
    assert _contents(folder) == aged_files
    # The other project's old version is still brought up to date.
    det = json.loads((_folder(root, "det") / "manifest.json").read_text())
    assert det["trainer_files"]["format"] == 2
    [failure] = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    assert folder.name in str(failure.event_specific_data.error)  # type: ignore[union-attr]


def test_created_at_is_the_manifests_field_and_its_write_time_without_one():
    modified = datetime(2026, 11, 5, tzinfo=UTC)
    assert manifest_created_at({}, modified) == modified
    stamped = {"created_at": MADE.isoformat()}
    assert manifest_created_at(stamped, modified) == MADE


def test_the_cards_conll_section_is_put_where_kind_card_puts_it_and_replaced_in_place():
    labels, tasks = _entities()
    failed = date(2026, 11, 3)
    later = labels.head(2).with_columns(day=pl.lit(failed))
    quality = pl.DataFrame(
        {"project": "entities", "day": [DAY, failed], "gates_passed": [True, False]}
    ).with_columns(failed_gates=pl.Series(["", "alpha"]))
    snapshot = build_kind_snapshot(
        pl.concat([labels, later]), tasks, project="entities", kind="spans", quality=quality
    )
    card = kind_card(snapshot, quality=None, location="lake")
    assert snapshot.held_back_days and "\n## CoNLL\n" in card
    conll = snapshot.stats["conll"]
    assert isinstance(conll, dict)
    without = card.replace(card[card.index("\n## CoNLL\n") : card.index("\nHeld back")], "")
    assert "## CoNLL" not in without and without.endswith(".\n")
    assert card_with_conll_notes(without, conll) == card
    assert card_with_conll_notes(card, conll) == card
    nothing_lost = {
        **conll,
        "spans_dropped": {"overlapping": 0, "without_token": 0},
        "tokens_rewritten": 0,
        "tags_renamed": {},
    }
    assert card_with_conll_notes(card, nothing_lost) == without


def test_a_manifest_that_cannot_be_read_holds_back_no_other_version(aged):
    # Another project's torn manifest (a categorical snapshot, say) is not this asset's to
    # judge: the kind versions around it are still brought up to date and the run succeeds.
    lake, root, _ = aged
    torn = root / "datasets" / "catproj" / "abc" / "manifest.json"
    torn.parent.mkdir(parents=True)
    torn.write_text('{"project": "catproj", "vers')
    assert _curate(lake).success
    det = json.loads((_folder(root, "det") / "manifest.json").read_text())
    assert det["trainer_files"]["format"] == 2


_CURATE = """
import sys
from resources.lake import LocalLake
from tests.curation.test_kind_snapshot import _curate
_curate(LocalLake(base_path=sys.argv[1]))
"""


def test_a_rewrite_killed_mid_commit_is_finished_and_listed_whole_by_the_next_run(aged, tmp_path):
    # Killed after two of its files moved: the next run finishes that commit before comparing
    # files, so the manifest lists every file the rewrite replaced, as an uninterrupted run does.
    lake, root, _ = aged
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)
    assert _curate(LocalLake(base_path=str(clean))).success
    expected = {
        p: json.loads((_folder(clean, p) / "manifest.json").read_text())
        for p in ("det", "entities")
    }
    env = {k: v for k, v in os.environ.items() if k != CRASH_POINT_ENV}
    killed = subprocess.run(
        [sys.executable, "-c", _CURATE, str(root)],
        cwd=Path(__file__).resolve().parents[2],
        env={**env, CRASH_POINT_ENV: "moved:2"},
        check=False,
        capture_output=True,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert _curate(lake).success
    for project in ("det", "entities"):
        after = json.loads((_folder(root, project) / "manifest.json").read_text())
        assert (
            after["trainer_files"]["rewritten"] == expected[project]["trainer_files"]["rewritten"]
        )
        assert after["trainer_files"]["sha256"] == expected[project]["trainer_files"]["sha256"]


def _with_labels_one_tag_would_merge(folder: Path) -> Path:
    """The aged version remade as one whose rows hold the span labels `a b` and `a_b` (which
    the first format wrote as two tags, and today's as one), under its own id."""
    rows = pl.read_parquet(folder / "data.parquet")
    records = rows.to_dicts()
    for record, label in zip(records, ["a b", "a_b"], strict=False):
        # The span over "Bob ...", which BIO keeps.
        record["spans"][-1]["label"] = label
    changed = pl.DataFrame(records, schema=rows.schema)
    version = content_version(changed)
    moved = folder.with_name(version)
    folder.rename(moved)
    changed.write_parquet(moved / "data.parquet")
    (moved / "conll.txt").write_bytes(_old_conll(changed))
    manifest = json.loads((moved / "manifest.json").read_text())
    (moved / "manifest.json").write_text(json.dumps({**manifest, "version_id": version}, indent=2))
    stamp = int(MADE.timestamp()) * 10**9
    os.utime(moved / "manifest.json", ns=(stamp, stamp))
    return moved


def test_an_old_version_whose_labels_would_share_a_tag_keeps_its_files_and_the_run_succeeds(
    aged,
):
    """Such a version could not be rewritten, and the asset failed on every run until it was
    removed."""
    lake, root, _ = aged
    old = _with_labels_one_tag_would_merge(_folder(root, "entities"))
    files = {name: data for name, data in _contents(old).items() if name != "manifest.json"}

    result = _curate(lake)
    assert result.success
    # The old files stay as the old format wrote them: two tags, as the labels were.
    assert {n: d for n, d in _contents(old).items() if n != "manifest.json"} == files
    manifest = json.loads((old / "manifest.json").read_text())
    record = manifest["trainer_files"]
    assert record["format"] == 1
    assert record["not_rewritten"]["labels"] == ["a b", "a_b"]
    assert record["not_rewritten"]["tag"] == "a_b"
    assert record["not_rewritten"]["to_format"] == TRAINER_FILES_FORMAT["spans"]
    assert "'a b' and 'a_b'" in record["not_rewritten"]["reason"]
    assert manifest["created_at"] == MADE.isoformat()
    metadata = result.asset_materializations_for_node("kind_curated_dataset")[0].metadata
    [(name, kept)] = metadata["trainer_files_not_rewritten"].value.items()
    assert name == f"entities/{old.name}"
    assert kept["labels"] == ["a b", "a_b"] and kept["format"] == 1
    # The project's current version and the other project's old one are written as ever.
    assert (root / "datasets" / "entities" / _current(root, "entities") / "conll.txt").exists()
    det = json.loads((_folder(root, "det") / "manifest.json").read_text())
    assert det["trainer_files"]["format"] == 2

    # Recorded once: the next run writes no file of the version and says it again.
    times = _times(old)
    again = _curate(lake)
    assert again.success
    assert _times(old) == times
    metadata = again.asset_materializations_for_node("kind_curated_dataset")[0].metadata
    assert list(metadata["trainer_files_not_rewritten"].value) == [f"entities/{old.name}"]


def test_a_manifest_naming_no_kind_is_rewritten_as_the_kind_its_rows_tell(aged):
    """Kind snapshots written before manifests named their kind were taken as categorical and
    never rewritten."""
    lake, root, written = aged
    for project in ("entities", "det", "transcripts"):
        path = _folder(root, project) / "manifest.json"
        stamp = path.stat().st_mtime_ns
        manifest = json.loads(path.read_text())
        assert (
            kind_of_columns(pl.read_parquet_schema(path.with_name("data.parquet")))
            == (manifest["kind"])
        )
        manifest.pop("kind")
        path.write_text(json.dumps(manifest, indent=2))
        os.utime(path, ns=(stamp, stamp))
    transcripts = _times(_folder(root, "transcripts"))

    assert _curate(lake).success
    for project, kind in (("entities", "spans"), ("det", "boxes")):
        folder = _folder(root, project)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["kind"] == kind
        assert manifest["kind_from"] == "data.parquet columns"
        assert manifest["trainer_files"]["format"] == TRAINER_FILES_FORMAT[kind]
        for name, data in written[project].items():
            if name not in ("manifest.json", "card.md"):
                assert (folder / name).read_bytes() == data, (project, name)
    # A kind without trainer files lists none, so nothing of it is read or written.
    assert _times(_folder(root, "transcripts")) == transcripts
