"""Fixtures: export files built in tmp_path, and a throwaway Postgres database per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.services import fresh_database

NOW = "2026-06-01T00:00:00+00:00"
LABELS = ["pos", "neg", "neutral"]


def annotation(
    annotation_id: int,
    annotator: object,
    label: object,
    created_at: str = "2026-05-01T10:00:00.000000Z",
    **extra: object,
) -> dict:
    record = {
        "id": annotation_id,
        "completed_by": annotator,
        "lead_time": 3.5,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": created_at,
        "updated_at": created_at,
        "result": [
            {
                "from_name": "sentiment",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [label]},
            }
        ],
    }
    record.update(extra)
    return record


def label_studio_tasks() -> list[dict]:
    """Two tasks, eight annotations: 4 judgments + 1 gold load, 3 are quarantined."""
    return [
        {
            "id": 101,
            "data": {"text": "great product"},
            "created_at": "2026-05-01T09:00:00Z",
            "project": 7,
            "annotations": [
                annotation(1, 11, "pos"),
                annotation(2, 12, "pos"),
                annotation(3, 13, "neg", ground_truth=True),
                annotation(4, 14, "pos", was_cancelled=True),
            ],
        },
        {
            "id": 102,
            "data": {"text": "meh"},
            "project": 7,
            "annotations": [
                annotation(5, 11, "neutral"),
                annotation(6, 12, "neg", created_at="2026-05-02T10:00:00Z"),
                # annotator 12 again on the same task, earlier: the duplicate that loses
                annotation(7, 12, "pos", created_at="2026-05-01T10:00:00Z"),
                annotation(8, {"id": 15, "email": "x@example.com"}, "neutral"),
            ],
        },
    ]


def write_label_studio(path: Path, tasks: list[dict] | None = None) -> Path:
    path.write_text(json.dumps(tasks if tasks is not None else label_studio_tasks(), indent=2))
    return path


# ---------------------------------------------------------------- Postgres


@pytest.fixture(scope="session")
def postgres_dsn():
    """A uniquely named database on the local server, dropped after the session."""
    with fresh_database("ingest_test") as name:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """Definitions, an instance and a landing zone with one project `p`'s CSV folder."""
    from dagster import DagsterInstance

    from assets.definitions import build_definitions

    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "test-key")
    landing = tmp_path / "data" / "landing"
    (landing / "exports" / "p" / "csv").mkdir(parents=True)
    defs = build_definitions(profile="local")
    # In memory: the same SQL event log the sensors read, without the on-disk one's engine and
    # connection per stored event.
    instance = DagsterInstance.ephemeral()
    yield defs, instance, landing
    instance.dispose()
