"""A project.json column `mapping` is read one way by every reader: `ingest --settings`, the
daily landing asset and the live loop. One that is not an object of canonical field → column
is an error naming the file and the field; before, a mapping that was not an object was
ignored (the run then blamed the export for missing columns), and an unknown field failed the
daily run without naming the project.json."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main
from annotation_pipelines.ingest.tables import ColumnMapping, project_mapping

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
ROWS = "question,worker,answer,submitted_at\nt1,a1,pos,2026-11-02T10:00:00Z\n"
SOURCE = "exports/p/project.json"
MAPPING = {"task_id": "question", "annotator_id": "worker", "label": "answer"}
BAD = [
    ("task_id=question", 'mapping: expected an object like {"task_id": "question"}, got str'),
    (["question"], 'mapping: expected an object like {"task_id": "question"}, got list'),
    ({"task": "question"}, "unknown canonical field(s) in column mapping: ['task']"),
    ({"task_id": 3}, "column mapping: 'task_id' must name a column, got 3"),
]


def test_a_mapping_is_an_object_of_canonical_fields():
    assert project_mapping({}, source=SOURCE) is None
    assert project_mapping({"mapping": None}, source=SOURCE) is None
    mapping = project_mapping({"mapping": MAPPING}, source=SOURCE)
    assert mapping == ColumnMapping(task_id="question", annotator_id="worker", label="answer")


@pytest.mark.parametrize(("given", "error"), BAD)
def test_a_mapping_that_is_not_one_names_the_file_and_the_field(tmp_path, given, error):
    with pytest.raises(ValueError) as raised:
        project_mapping({"mapping": given}, source=SOURCE)
    assert str(raised.value) == f"{SOURCE}: {error}"
    path = tmp_path / "answers.csv"
    path.write_text(ROWS)
    settings = tmp_path / "project.json"
    settings.write_text(json.dumps({"mapping": given}))
    result = CliRunner().invoke(
        main, ["ingest", str(path), "--format", "csv", "--settings", str(settings)]
    )
    assert result.exit_code == 2, result.output
    assert f"{settings}: {error}" in " ".join(result.stderr.split())


def _ingest(defs, instance, landing, mapping: object):
    (landing / SOURCE).write_text(json.dumps({"mapping": mapping}))
    path = "exports/p/csv/batch-1.csv"
    (landing / path).write_text(ROWS)
    instance.add_dynamic_partitions("export_files", [path])
    return defs.resolve_job_def("ingest_export_job").execute_in_process(
        partition_key=path, instance=instance, run_config=QUIET, raise_on_error=False
    )


@pytest.mark.parametrize(("given", "error"), BAD[::2])
def test_the_daily_ingest_fails_on_a_mapping_that_is_not_one_naming_the_file(env, given, error):
    defs, instance, landing = env
    run = _ingest(defs, instance, landing, given)
    assert not run.success
    failure = next(e for e in run.all_events if e.is_step_failure)
    assert f"{SOURCE}: {error}" in str(failure.step_failure_data.error)
    good = _ingest(defs, instance, landing, MAPPING)
    assert good.success
    metadata = good.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_loaded"].value == 1 and metadata["rows_quarantined"].value == 0
