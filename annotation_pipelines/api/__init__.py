"""The read-only REST API over the lake (FastAPI; no Dagster). `create_app` builds it."""

from annotation_pipelines.api.app import create_app

__all__ = ["create_app"]
