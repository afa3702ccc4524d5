"""The daily kind aggregation of a numeric project with a declared scale, as a real Dagster
materialization over a local lake and landing zone: answers no ingest checked (the annotation
DB's, the generator's) that fall outside the project.json's scale are set aside and counted,
the scale's range is the one confidence reads; in a project without a scale the model sets
such an answer aside as a gross error, counted in the metadata."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import polars as pl

from annotation_pipelines.aggregation.numeric import aggregate_numeric_kind
from annotation_pipelines.ingest import ingest_bytes
from annotation_pipelines.lake import ANNOTATION_DB_SCALES_KEY
from annotation_pipelines.scale import RatingScale
from resources.lake import LocalLake
from tests.aggregation.kind_day import materialize_kind_day

DAY = date(2026, 11, 2)
ANSWERS = {"t1": (3, 4, 3), "t2": (5, 5, 4), "t3": (2, 1e200, 2)}


def _judgments(project: str) -> pl.DataFrame:
    lines = [
        {
            "judgment_id": f"{task}-{rater}",
            "task_id": task,
            "annotator_id": rater,
            "kind": "numeric",
            "value": value,
            "submitted_at": f"{DAY}T10:00:00Z",
        }
        for task, values in ANSWERS.items()
        for rater, value in zip("abc", values, strict=True)
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    result = ingest_bytes(data, format="jsonl", source_file="db", project=project)
    return result.judgments


def _aggregate(
    tmp_path, settings: dict[str, dict], db_scales: dict[str, dict] | None = None
) -> tuple[pl.DataFrame | None, dict]:
    """(the day's kind_aggregated_labels, the materialization's metadata), or (None,
    {"failure": the run}) when it failed. `db_scales`: the annotation DB's, as the daily
    extract records them."""
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    if db_scales is not None:
        lake.put(ANNOTATION_DB_SCALES_KEY, json.dumps(db_scales).encode())
    landing = tmp_path / "landing"
    for project, content in settings.items():
        (landing / "exports" / project / "jsonl").mkdir(parents=True)
        (landing / "exports" / project / "project.json").write_text(json.dumps(content))
    day = DAY.isoformat()
    judgments = pl.concat([_judgments("scaled"), _judgments("unscaled")])
    result = materialize_kind_day(lake, judgments, day=day, landing=landing, raise_on_error=False)
    metadata = {}
    if result.success:
        [event] = [
            e
            for e in result.get_asset_materialization_events()
            if e.asset_key.path == ["kind_aggregated_labels"]
        ]
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    return (lake.read_table("kind_aggregated_labels", day=day) if result.success else None), (
        metadata or {"failure": result}
    )


def test_a_declared_scale_sets_unchecked_answers_off_it_aside_and_is_the_range(tmp_path):
    scale = {"min": 1, "max": 5, "step": 1}
    labels, metadata = _aggregate(tmp_path, {"scaled": {"scale": scale}, "unscaled": {}})
    assert metadata["outside_scale"] == {
        "scaled": {"scale": "scale [1, 5] step 1", "judgments": 1, "gold": 0, "first": ["t3-b"]}
    }
    scaled = labels.filter(pl.col("project") == "scaled").sort("task_id")
    np.testing.assert_allclose(scaled["value"], [3.33, 4.67, 2.0], atol=0.35)
    assert scaled["confidence"].min() > 0.5
    on_scale = (
        _judgments("scaled").filter(pl.col("value") < 10).select("task_id", "annotator_id", "value")
    )
    expected = aggregate_numeric_kind(on_scale, scale=RatingScale(1, 5, 1)).labels.sort("task_id")
    np.testing.assert_allclose(scaled["confidence"], expected["confidence"], rtol=1e-12)
    # Without a scale the model sets the 1e200 aside as a gross error, and the day says so.
    unscaled = labels.filter(pl.col("project") == "unscaled").sort("task_id")
    plain = aggregate_numeric_kind(
        _judgments("unscaled").select("task_id", "annotator_id", "value")
    ).labels.sort("task_id")
    np.testing.assert_allclose(unscaled["value"], plain["value"], rtol=1e-12)
    np.testing.assert_allclose(unscaled["value"], [3.33, 4.67, 2.0], atol=0.35)
    assert unscaled["confidence"].min() > 0.5
    assert metadata["gross_errors"] == {
        "unscaled": {"method": "bias_noise", "judgments": 1, "first": ["t3-b"]}
    }


def test_a_scale_that_is_not_one_fails_the_day_naming_the_file_and_the_field(tmp_path):
    labels, metadata = _aggregate(tmp_path, {"scaled": {"scale": {"min": 1, "max": "five"}}})
    assert labels is None
    failure = metadata["failure"]
    [event] = [e for e in failure.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "exports/scaled/project.json: scale.max: expected a finite number, got 'five'" in str(
        event.step_failure_data.error
    )


def test_a_scale_the_annotation_db_declares_is_read_as_project_jsons_is(tmp_path):
    scale = {"min": 1, "max": 5, "step": 1}
    labels, metadata = _aggregate(tmp_path, {"scaled": {}}, db_scales={"scaled": scale})
    assert metadata["outside_scale"] == {
        "scaled": {"scale": "scale [1, 5] step 1", "judgments": 1, "gold": 0, "first": ["t3-b"]}
    }
    scaled = labels.filter(pl.col("project") == "scaled").sort("task_id")
    assert scaled["value"].max() <= 5.0 and scaled["confidence"].min() > 0.5
    # Declared alike in both: the same scale.
    same, alike = _aggregate(
        tmp_path / "alike", {"scaled": {"scale": scale}}, db_scales={"scaled": scale}
    )
    assert alike["outside_scale"] == metadata["outside_scale"]
    assert same.equals(labels)


def test_a_project_json_scale_the_annotation_db_contradicts_fails_the_day_naming_both(tmp_path):
    labels, metadata = _aggregate(
        tmp_path,
        {"scaled": {"scale": {"min": 0, "max": 10}}},
        db_scales={"scaled": {"min": 1, "max": 5, "step": 1}},
    )
    assert labels is None
    [event] = [e for e in metadata["failure"].all_events if e.event_type_value == "STEP_FAILURE"]
    assert (
        "exports/scaled/project.json: scale: scale [0, 10] disagrees with the annotation DB's "
        "projects.scale for 'scaled' (scale [1, 5] step 1); declare one, or the same in both"
    ) in str(event.step_failure_data.error)
