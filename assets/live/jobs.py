"""The live layer's job: one small run per batch of new judgments."""

from dagster import AssetSelection, define_asset_job

# A live run reads a few seconds of judgments; one still running after 10 minutes is stuck.
LIVE_MAX_RUNTIME_SECONDS = 600
# Every live-layer run (this job, compaction, kind fits) lands whole or not at all, so the
# daemon launches a failed one again (`run_retries` in dagster.yaml) instead of leaving it to the
# live state's next move. A fault that outlives two retries is not transient: it stays failed.
# Step failures are retried too, whatever the instance default: the op raising on a
# lost connection is the common transient failure here.
LIVE_MAX_RETRIES = 2
LIVE_RETRY_TAGS = {
    "dagster/max_retries": str(LIVE_MAX_RETRIES),
    "dagster/retry_on_asset_or_op_failure": "true",
}

live_quality_job = define_asset_job(
    "live_quality_job",
    selection=AssetSelection.assets("live_quality_state"),
    description="Fold the judgments that arrived since the last tick into the live state.",
    tags={"dagster/max_runtime": str(LIVE_MAX_RUNTIME_SECONDS), **LIVE_RETRY_TAGS},
)
