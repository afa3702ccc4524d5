"""Download time of a 64 MB dataset file from an S3 lake (a moto server): whole, and its last
10 % by `Range` (a resumed download). In process through Starlette's test client, 5 runs each,
medians.

    .venv/bin/python benchmarks/bench_api_downloads.py DATA_DIR

DATA_DIR holds a `lake` with a sentiment snapshot and its quality reports (the API tests' lake:
tests/api/conftest.py `make_lake`); its `train.parquet` is replaced by 64 MB of random bytes.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from annotation_pipelines.api import create_app
from annotation_pipelines.api.tokens import issue_token
from annotation_pipelines.settings import load_settings
from tests.services import free_port

BUCKET = "bench-lake"
SIZE = 64 << 20
RUNS = 5


def _upload(s3: object, lake: Path, blob: bytes) -> Path:
    """The sentiment snapshots and the quality reports into the bucket; returns the train
    split's path under `datasets`, whose content is `blob`."""
    target = None
    for folder in (lake / "datasets" / "sentiment", lake / "quality_report"):
        for path in folder.rglob("*"):
            if not path.is_file():
                continue
            body = path.read_bytes()
            if path.name == "train.parquet":
                body, target = blob, path.relative_to(lake / "datasets")
            key = f"lake/{path.relative_to(lake)}"
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)  # type: ignore[attr-defined]
    assert target is not None, f"{lake}: no sentiment snapshot"
    return target


def _timed(client: TestClient, url: str, headers: dict[str, str]) -> tuple[Any, float]:
    seconds = []
    for _ in range(RUNS):
        start = time.perf_counter()
        response = client.get(url, headers=headers)
        seconds.append(time.perf_counter() - start)
    return response, statistics.median(seconds)


def main(data: Path) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=(port := free_port()), verbose=False)
    server.start()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        blob = os.urandom(SIZE)
        project, version, name = _upload(s3, data / "lake", blob).parts
        store = Path(tempfile.mkdtemp()) / "tokens.json"
        token = issue_token(store, scopes=["datasets:read"])
        settings = dataclasses.replace(
            load_settings(),
            bucket=BUCKET,
            lake_prefix="lake",
            s3_endpoint=endpoint,
            aws_region="us-east-1",
            api_token_store=store,
        )
        client = TestClient(create_app(settings), headers={"Authorization": f"Bearer {token}"})
        url = f"/v1/datasets/{project}/{version}/files/{name}"
        whole, seconds = _timed(client, url, {})
        assert whole.content == blob, whole.status_code
        print(f"whole {SIZE >> 20} MB: {whole.status_code}, median {seconds:.2f} s")
        tail = {"Range": f"bytes={SIZE - SIZE // 10}-"}
        part, seconds = _timed(client, url, tail)
        print(f"last 10 %: {part.status_code}, {len(part.content):,} bytes, median {seconds:.2f} s")
    finally:
        server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
