"""Jobs of the sources layer: stage one export file; stage the gold sets."""

from dagster import AssetSelection, define_asset_job

# An ingest takes seconds to minutes: run monitoring fails one still running after 30 minutes
# (its worker died, on a launcher that cannot tell), and the landing sensor then retries it.
INGEST_MAX_RUNTIME_SECONDS = 1800

ingest_export_job = define_asset_job(
    "ingest_export_job",
    selection=AssetSelection.assets("landing_exports"),
    description="Validate and stage one export file from the landing zone.",
    tags={"dagster/max_runtime": str(INGEST_MAX_RUNTIME_SECONDS)},
)
gold_sets_job = define_asset_job(
    "gold_sets_job",
    selection=AssetSelection.assets("gold_sets"),
    description="Stage the maintained gold sets from the landing zone.",
)
