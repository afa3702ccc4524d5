"""Previews and reports never show an annotator's id, nor an id built from one."""

import polars as pl

from annotation_pipelines.curation.privacy import safe_for_display
from resources.lake import table_metadata


def test_safe_for_display_hides_ids_derived_from_annotator_ids():
    frame = pl.DataFrame(
        {
            "judgment_id": ["task-1/alice", "task-1/bob", "task-1/alice"],
            "annotator_id": ["alice", "bob", "alice"],
            "label": ["x", "y", "x"],
        }
    )
    shown = safe_for_display(frame, key=b"k1")
    text = shown.write_csv()
    assert "alice" not in text and "bob" not in text
    # Keyed and stable: one judgment keeps one display id, and the key matters.
    assert shown["judgment_id"][0] == shown["judgment_id"][2] != shown["judgment_id"][1]
    assert safe_for_display(frame, key=b"k2")["judgment_id"][0] != shown["judgment_id"][0]
    assert shown["label"].to_list() == ["x", "y", "x"]


def test_table_previews_hide_judgment_ids_built_from_annotator_ids(monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "preview-test-key")
    judgments = pl.DataFrame(
        {
            "judgment_id": ["t1/alice.smith", "t1/bob.jones"],
            "task_id": ["t1", "t1"],
            "annotator_id": ["alice.smith", "bob.jones"],
        }
    )
    preview = table_metadata(judgments)["preview"].value
    assert "alice" not in preview and "bob" not in preview
    assert "judgment_id" in preview and "t1" in preview
