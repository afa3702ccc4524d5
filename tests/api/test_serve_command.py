"""`annotation-pipelines serve` as a process: what it says on start-up and how it sits behind a
TLS-terminating proxy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.api.conftest import free_port

CLI = Path(sys.executable).with_name("annotation-pipelines")


@contextmanager
def serve(env: dict[str, str], *options: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """(base URL, process) of `serve` on a free port, stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port), *options],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/v1/ready", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start: {process.stdout.read()}") from None  # type: ignore[union-attr]
                time.sleep(0.2)
        yield url, process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_names_an_s3_lake_by_its_bucket_prefix_and_endpoint(tmp_path):
    # It said "Serving the local lake" of a lake in a bucket: the profile, not the place.
    env = {
        "ANNOTATION_PIPELINES_BUCKET": "annotations",
        "ANNOTATION_PIPELINES_LAKE_PREFIX": "team/lake/",
        "ANNOTATION_PIPELINES_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "ANNOTATION_PIPELINES_API_TOKEN_STORE": str(tmp_path / "tokens.json"),
        "AWS_REGION": "us-east-1",
    }
    with serve(env) as (_, process):
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=15)[0]
    first = output.splitlines()[0]
    endpoint = env["ANNOTATION_PIPELINES_S3_ENDPOINT"]
    assert first.startswith(f"Serving the lake at s3://annotations/team/lake ({endpoint})"), first
