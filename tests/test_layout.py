"""The layout's promises: one folder per layer that assembles itself, no cycles, public APIs only.

The walks here read the folders on disk, not the collector in `assets/definitions.py`, so an
object the collector misses (a layer folder without `__init__.py`, a kind it does not know)
fails here.
"""

import ast
import importlib
from pathlib import Path

import pytest
from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    JobDefinition,
    ScheduleDefinition,
    SensorDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from assets.definitions import build_definitions

ROOT = Path(__file__).resolve().parents[1]
NOT_LAYERS = {"common"}

# Taken from main before the layout change (`build_definitions()` on the flat `assets/`), so the
# move keeps every name the UI, the instance's run history and the sensors' cursors refer to.
ASSET_KEYS = {
    "aggregated_labels",
    "annotation_db_changes",
    "annotator_pair_agreement",
    "annotator_scorecards",
    "annotator_skill",
    "compute_capacity_forecast",
    "compute_usage",
    "curated_dataset",
    "dataset_versions",
    "gold_labels",
    "gold_sets",
    "judgments",
    "kind_aggregated_labels",
    "kind_annotator_reliability",
    "kind_curated_dataset",
    "kind_item_scores",
    "kind_quality_report",
    "kind_reannotation_queue",
    "kind_scorecards",
    "kind_task_requests",
    "label_drift",
    "landing_exports",
    "live_quality_state",
    "procurement_plan",
    "quality_report",
    "raw_tasks",
    "reannotation_queue",
    "workforce_capacity_forecast",
    "workforce_throughput_daily",
}
CHECK_KEYS = {
    "annotation_db_changes:quarantine_share",
    "annotation_db_changes:rows_reconcile",
    "landing_exports:quarantine_share",
    "landing_exports:rows_reconcile",
    "kind_quality_report:agreement_floor",
    "kind_quality_report:flagged_annotator_share",
    "kind_quality_report:gold_accuracy_floor",
    "kind_quality_report:row_counts_sane",
    "quality_report:agreement_floor",
    "quality_report:flagged_annotator_share",
    "quality_report:gold_accuracy_floor",
    "quality_report:row_counts_sane",
}
JOB_NAMES = {
    "aggregation_job",
    "compute_usage_job",
    "curation_job",
    "daily_annotation_job",
    "forecast_job",
    "gold_sets_job",
    "ingest_export_job",
    "kind_curation_job",
    "lake_maintenance_job",
    "live_compaction_job",
    "live_kind_fit_job",
    "live_quality_job",
    "quality_job",
    "raw_job",
    "workforce_job",
}
SCHEDULE_NAMES = {
    "daily_annotation_schedule",
    "daily_compute_usage_schedule",
    "daily_lake_maintenance_schedule",
    "weekly_forecast_schedule",
}
SENSOR_NAMES = {
    "automation_sensor",
    "floor_change_sensor",
    "gold_set_sensor",
    "landing_zone_sensor",
    "live_quality_sensor",
    "project_sensor",
    "quality_alert_sensor",
    "run_failure_alert_sensor",
    "run_summary_sensor",
    "scorecard_history_sensor",
    "staged_days_sensor",
}
# What the daily job ran when it was "everything but forecasting, sources, curation and
# compute_usage": the same assets, now named by their groups.
DAILY_ASSETS = {
    "raw_tasks",
    "judgments",
    "gold_labels",
    "aggregated_labels",
    "annotator_skill",
    "quality_report",
    "annotator_scorecards",
    "reannotation_queue",
    "annotator_pair_agreement",
    "label_drift",
    "workforce_throughput_daily",
    # Every non-categorical kind, in the same daily groups.
    "kind_aggregated_labels",
    "kind_item_scores",
    "kind_annotator_reliability",
    "kind_quality_report",
    "kind_scorecards",
    "kind_reannotation_queue",
    "kind_task_requests",
}

ASSET_JOB = type(define_asset_job("_type_probe"))
PARTITIONED_SCHEDULE = type(build_schedule_from_partitioned_job(define_asset_job("_type_probe")))
DAGSTER_KINDS = (
    AssetsDefinition,
    AssetChecksDefinition,
    JobDefinition,
    ASSET_JOB,
    ScheduleDefinition,
    PARTITIONED_SCHEDULE,
    SensorDefinition,
)


@pytest.fixture(scope="module")
def defs():
    return build_definitions(profile="local")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_files() -> list[Path]:
    return sorted(
        path
        for path in (ROOT / "assets").glob("*/**/*.py")
        if path.relative_to(ROOT / "assets").parts[0] not in NOT_LAYERS
    )


def test_every_layer_folder_is_a_package():
    # pkgutil does not descend into a folder without __init__.py: its objects would be lost.
    for folder in sorted(p.parent for p in layer_files()):
        assert (folder / "__init__.py").exists(), f"{folder}: missing __init__.py"


def test_every_module_level_dagster_object_in_a_layer_is_in_defs(defs):
    loaded = [*defs.assets, *defs.asset_checks, *defs.jobs, *defs.schedules, *defs.sensors]
    loaded_ids = {id(obj) for obj in loaded}
    found = 0
    for path in layer_files():
        module = importlib.import_module(_module_name(path))
        for name, value in vars(module).items():
            if isinstance(value, DAGSTER_KINDS):
                found += 1
                assert id(value) in loaded_ids, f"{path}: {name} is not in the Definitions"
    assert found >= len(JOB_NAMES) + len(SCHEDULE_NAMES) + len(SENSOR_NAMES)


def test_defs_lists_exactly_the_names_of_before_the_move(defs):
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in defs.resolve_all_asset_keys()} == ASSET_KEYS
    assert {key.to_user_string() for key in graph.asset_check_keys} == CHECK_KEYS
    assert {job.name for job in defs.jobs} == JOB_NAMES
    assert {schedule.name for schedule in defs.schedules} == SCHEDULE_NAMES
    assert {sensor.name for sensor in defs.sensors} == SENSOR_NAMES


def test_daily_job_runs_the_per_day_layers_by_group(defs):
    job = defs.resolve_job_def("daily_annotation_job")
    assert {key.to_user_string() for key in job.asset_layer.selected_asset_keys} == DAILY_ASSETS
    groups = {spec.group_name for spec in defs.resolve_all_asset_specs()}
    daily_groups = {
        spec.group_name
        for spec in defs.resolve_all_asset_specs()
        if spec.key.to_user_string() in DAILY_ASSETS
    }
    # Every asset of a daily group is in the job, none of any other group: a group, not a list.
    assert daily_groups == {"raw", "aggregation", "quality", "workforce"} < groups
    for spec in defs.resolve_all_asset_specs():
        assert (spec.group_name in daily_groups) == (spec.key.to_user_string() in DAILY_ASSETS)
    # The Jobs page tells the truth about what the job runs.
    assert all(group in job.description for group in daily_groups), job.description


def test_every_asset_names_its_owner_kinds_and_purpose_in_the_catalog(defs):
    # A project lead finds their tables from the catalog alone: who owns it, what it is, how it
    # is stored.
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.owners, f"{name}: no owner"
        assert all(owner.startswith("team:") for owner in spec.owners), (name, spec.owners)
        assert spec.kinds, f"{name}: no kinds"
        assert spec.description, f"{name}: no description"


def test_every_job_schedule_and_sensor_says_what_it_does(defs):
    for definition in [*defs.jobs, *defs.schedules, *defs.sensors]:
        assert definition.description, f"{definition.name}: no description"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_the_engine_imports_neither_dagster_nor_the_code_location():
    forbidden = ("dagster", "dagster_aws", "dagster_postgres", "assets", "resources")
    for path in sorted((ROOT / "annotation_pipelines").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in forbidden, f"{path.relative_to(ROOT)} imports {name}"


def test_the_code_location_and_resources_use_public_dagster_apis_only():
    for folder in ("assets", "resources"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in _imports(path):
                assert not name.startswith("dagster._"), f"{path.relative_to(ROOT)} imports {name}"


def test_resources_do_not_import_the_code_location():
    # assets → resources → engine, one way: a resource importing an asset module is a cycle.
    for path in sorted((ROOT / "resources").rglob("*.py")):
        for name in _imports(path):
            assert name.split(".")[0] != "assets", f"{path.relative_to(ROOT)} imports {name}"


def test_lake_keys_are_named_in_the_lake_module_only():
    # Every lake key is built by a named function in resources/lake.py; an f-string of a lake
    # folder inside an asset module is a second, drifting copy of the layout.
    folders = ("staging/", "quarantine/", "state/", "reports/", "datasets/", "alerts/", "run_summ")
    for path in sorted((ROOT / "assets").rglob("*.py")):
        if path.name == "demo.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not node.value.startswith(folders), (
                    f"{path.relative_to(ROOT)}:{node.lineno}: lake key {node.value!r}"
                )


# Tables one step builds together and commits as one (the quality tables and their HTML pages in
# one lake commit; labels with the skills of the same fit; gold keyed to the same deduplicated
# judgments): materialized together or not at all. The README's command-line recipe lists them.
BUILT_TOGETHER = {
    "raw_annotations": {"gold_labels", "judgments", "raw_tasks"},
    "aggregated_labels": {"aggregated_labels", "annotator_skill"},
    "kind_aggregated_labels": {
        "kind_aggregated_labels",
        "kind_annotator_reliability",
        "kind_item_scores",
    },
    "quality": {
        "annotator_pair_agreement",
        "annotator_scorecards",
        "label_drift",
        "quality_report",
        "reannotation_queue",
    },
    "kind_quality": {"kind_quality_report", "kind_reannotation_queue", "kind_scorecards"},
}


def test_the_assets_built_together_are_the_ones_the_readme_lists(defs):
    together = {
        node.node_def.name: {key.to_user_string() for key in node.keys}
        for node in defs.resolve_asset_graph().assets_defs
        if len(node.keys) > 1 and not node.can_subset
    }
    assert together == BUILT_TOGETHER
