"""Partitions shared by every per-day layer."""

from dagster import DailyPartitionsDefinition, DynamicPartitionsDefinition

from annotation_pipelines.settings import load_settings

# The first day the platform holds data for (see settings: where the data starts), so an
# empty history does not show as months of missing partitions.
START_DATE = load_settings().start_date

daily_partitions = DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")

# Annotation projects appear in the source over time; a sensor adds each new one. The name is
# a constant because the instance's dynamic-partition calls take it as a plain `str`.
PROJECT_PARTITIONS = "projects"
project_partitions = DynamicPartitionsDefinition(name=PROJECT_PARTITIONS)
