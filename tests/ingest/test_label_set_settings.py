"""A project.json `label_set` is read one way by every reader: `ingest --settings`, the daily
landing asset, the live loop and gold sets. One that is not a list of labels is an error naming
the file and the field; before, the daily ingest read `"pos,neg"` as the labels p, o, s, …
and quarantined every judgment as unknown_label, while `ingest --settings` ignored it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main
from annotation_pipelines.ingest.validation import project_label_order, project_label_set

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
ROWS = (
    "task_id,annotator_id,label,submitted_at\n"
    "t1,a1,pos,2026-11-02T10:00:00Z\nt1,a2,neg,2026-11-02T11:00:00Z\n"
)
SOURCE = "exports/p/project.json"


@pytest.mark.parametrize(
    ("settings", "labels"),
    [
        ({}, None),
        ({"label_set": None}, None),
        ({"label_set": ["pos", "neg"]}, ["pos", "neg"]),
        # Numbers are read as a CSV cell spells them.
        ({"label_set": [1, 2.0, 2.5]}, ["1", "2", "2.5"]),
    ],
)
def test_a_label_set_is_a_list_of_labels(settings, labels):
    assert project_label_set(settings, source=SOURCE) == labels


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("pos,neg", 'label_set: expected a list of labels like ["pos", "neg"], got str'),
        ({"pos": 1}, 'label_set: expected a list of labels like ["pos", "neg"], got dict'),
        (["pos", None], "label_set[1]: expected a label (text or a number), got None"),
        (["pos", True], "label_set[1]: expected a label (text or a number), got True"),
        (["pos", ["neg"]], "label_set[1]: expected a label (text or a number), got ['neg']"),
        (["pos", " "], "label_set[1]: expected a label (text or a number), got ' '"),
        # An empty set allows no label, so every judgment would be quarantined.
        ([], 'label_set: expected at least one label like ["pos", "neg"], got []'),
    ],
)
def test_a_label_set_that_is_not_one_names_the_file_and_the_field(tmp_path, given, error):
    with pytest.raises(ValueError) as raised:
        project_label_set({"label_set": given}, source=SOURCE)
    assert str(raised.value) == f"{SOURCE}: {error}"
    # The command that checks a file as the landing zone would says so (usage error, 2).
    path = tmp_path / "answers.csv"
    path.write_text(ROWS)
    settings = tmp_path / "project.json"
    settings.write_text(json.dumps({"label_set": given}))
    result = CliRunner().invoke(
        main, ["ingest", str(path), "--format", "csv", "--settings", str(settings)]
    )
    assert result.exit_code == 2, result.output
    assert f"{settings}: {error}" in " ".join(result.stderr.split())


def _ingest(defs, instance, landing, label_set: object):
    (landing / SOURCE).write_text(json.dumps({"label_set": label_set}))
    path = "exports/p/csv/batch-1.csv"
    (landing / path).write_text(ROWS)
    instance.add_dynamic_partitions("export_files", [path])
    return defs.resolve_job_def("ingest_export_job").execute_in_process(
        partition_key=path, instance=instance, run_config=QUIET, raise_on_error=False
    )


def test_the_daily_ingest_fails_on_a_label_set_that_is_not_one_naming_the_file(env):
    defs, instance, landing = env
    run = _ingest(defs, instance, landing, "pos,neg")
    assert not run.success
    failure = next(e for e in run.all_events if e.is_step_failure)
    assert f"{SOURCE}: label_set: expected a list of labels" in str(failure.step_failure_data.error)
    # A well-formed one checks the labels as before.
    good = _ingest(defs, instance, landing, ["pos", "neg"])
    assert good.success
    metadata = good.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_loaded"].value == 2 and metadata["rows_quarantined"].value == 0


@pytest.mark.parametrize(
    ("settings", "order"),
    [
        ({"label_set": ["bad", "ok", "good"]}, None),
        ({"label_set": ["bad", "ok", "good"], "ordinal": False}, None),
        # The set's own order, lowest first, not text order.
        ({"label_set": ["bad", "ok", "good"], "ordinal": True}, ["bad", "ok", "good"]),
        ({"label_set": [1, 2, 3], "ordinal": True}, ["1", "2", "3"]),
    ],
)
def test_an_ordinal_project_declares_its_labels_order_in_the_label_set(settings, order):
    assert project_label_order(settings, source=SOURCE) == order


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"label_set": ["a", "b"], "ordinal": "yes"}, "ordinal: expected true or false, got 'yes'"),
        (
            {"ordinal": True},
            'ordinal: true needs a label_set listing the labels lowest first, like ["bad", '
            '"ok", "good"]',
        ),
        (
            {"label_set": ["bad", "ok", "bad"], "ordinal": True},
            "label_set[2]: 'bad' is listed twice; an ordinal set ranks each label once",
        ),
    ],
)
def test_an_ordinal_declaration_that_is_not_one_names_the_file_and_the_field(settings, error):
    with pytest.raises(ValueError) as raised:
        project_label_order(settings, source=SOURCE)
    assert str(raised.value) == f"{SOURCE}: {error}"
