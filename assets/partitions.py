"""Partitions shared by every per-day layer."""

import os

from dagster import DailyPartitionsDefinition, DynamicPartitionsDefinition

# The first day the platform holds data for; overridable so a deployment with older history
# (or a test) can move it without a code change.
START_DATE = os.environ.get("ANNOTATION_PIPELINES_START_DATE", "2026-09-01")

daily_partitions = DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")

# Annotation projects appear in the source over time; a sensor adds each new one.
project_partitions = DynamicPartitionsDefinition(name="projects")
