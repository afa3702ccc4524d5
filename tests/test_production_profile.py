"""The production profile for real: a PostgreSQL-backed Dagster instance and the lake and
landing zone on S3 (dagster-aws's S3 resource against a moto server), running the same asset
code as the local profile, with the same results."""

from datetime import date
from pathlib import Path

import boto3
import polars as pl
import pytest
import yaml
from dagster import AssetSelection, DagsterInstance

from annotation_pipelines.synthetic import generate_workload
from assets.definitions import build_definitions
from tests.services import fresh_database, moto_s3

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-10"
RUN_CONFIG = {
    "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    "ops": {"quality": {"config": {"min_alpha": 0.0, "min_gold_accuracy": 0.0}}},
}


def production_instance(home: Path, monkeypatch: pytest.MonkeyPatch, database: str):
    """dagster.production.yaml as shipped, but runs launched in this process (no ECS here)."""
    config = yaml.safe_load((ROOT / "dagster.production.yaml").read_text())
    config["run_launcher"] = {
        "module": "dagster.core.launcher",
        "class": "DefaultRunLauncher",
    }
    config.pop("compute_logs")
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": database,
    }.items():
        monkeypatch.setenv(name, value)
    return DagsterInstance.from_config(str(home))


def test_postgres_instance_and_s3_lake_run_the_same_graph(tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    generate_workload(landing / "synthetic", judgments=6_000, start=date(2026, 11, 10), days=1)
    with fresh_database("dagster_instance") as database, moto_s3(monkeypatch) as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="annotations")
        for path in landing.rglob("*.parquet"):
            s3.upload_file(str(path), "annotations", f"landing/{path.relative_to(landing)}")
        monkeypatch.setenv("ANNOTATION_PIPELINES_BUCKET", "annotations")
        monkeypatch.setenv("ANNOTATION_PIPELINES_S3_ENDPOINT", endpoint)
        monkeypatch.setenv("ANNOTATION_PIPELINES_PROFILE", "production")
        monkeypatch.setenv("ANNOTATION_PIPELINES_PSEUDONYM_KEY", "production-test-key")
        instance = production_instance(tmp_path / "home", monkeypatch, database)
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            defs = build_definitions(profile="production")
            job = defs.resolve_job_def("daily_annotation_job")
            result = job.execute_in_process(
                partition_key=DAY, instance=instance, run_config=RUN_CONFIG
            )
            assert result.success
            # The run and its materializations are in PostgreSQL.
            [run] = instance.get_runs()
            assert run.run_id == result.run_id
            keys = [
                item["Key"]
                for item in s3.list_objects_v2(Bucket="annotations", Prefix="lake/")["Contents"]
            ]
            assert f"lake/aggregated_labels/day={DAY}/data.parquet" in keys
            assert any(key.startswith(f"lake/reports/quality/day={DAY}/") for key in keys)
            remote = s3.get_object(
                Bucket="annotations", Key=f"lake/aggregated_labels/day={DAY}/data.parquet"
            )["Body"].read()
            # A project's own floor is read from the S3 landing zone's project.json, by a
            # rebuild with the default config as much as by a configured run.
            s3.put_object(
                Bucket="annotations",
                Key="landing/exports/sentiment/project.json",
                Body=b'{"quality_gates": {"min_alpha": 0.99}}',
            )
            rebuild = defs.resolve_job_def("quality_job").execute_in_process(
                partition_key=DAY, instance=instance, run_config={"loggers": RUN_CONFIG["loggers"]}
            )
            [agreement] = [
                check
                for check in rebuild.get_asset_check_evaluations()
                if check.check_name == "agreement_floor"
                and check.asset_key.to_user_string() == "quality_report"
            ]
            assert "sentiment: alpha" in agreement.description
            assert "< floor 0.99 (project.json)" in agreement.description
        finally:
            instance.dispose()

    # The same asset code on the local profile gives the same labels. Only the labels and what
    # they are built from run here: the whole daily job on the local profile is test_graph.py's.
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path))
    local = DagsterInstance.ephemeral()
    local_defs = build_definitions(profile="local")
    labels = AssetSelection.assets("aggregated_labels").upstream().required_multi_asset_neighbors()
    assert (
        local_defs.resolve_job_def("daily_annotation_job")
        .execute_in_process(
            partition_key=DAY,
            instance=local,
            run_config={"loggers": RUN_CONFIG["loggers"]},
            asset_selection=list(labels.resolve(local_defs.resolve_asset_graph())),
        )
        .success
    )
    mine = pl.read_parquet(tmp_path / "lake" / "aggregated_labels" / f"day={DAY}" / "data.parquet")
    assert mine.equals(pl.read_parquet(remote))
