"""Jobs of the aggregation layer.

One job per layer, so an operator can launch one layer from the launchpad with its typed
config, e.g. re-aggregate a day with another method:
  ops: {aggregated_labels: {config: {methods_per_project: {toxicity: glad}}}}
"""

from dagster import AssetSelection, define_asset_job

aggregation_job = define_asset_job(
    "aggregation_job",
    selection=AssetSelection.groups("aggregation"),
    description="Re-aggregate one day (config: method, methods_per_project, max_iter, tol).",
)
