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

from annotation_pipelines.api.tokens import issue_token
from tests.api.conftest import PROJECT, SEED, built_lake, free_port

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


def test_file_urls_behind_a_trusted_proxy_say_https(tmp_path_factory):
    source = built_lake(tmp_path_factory)
    store = tmp_path_factory.mktemp("proxy") / "tokens.json"
    token = issue_token(store, scopes=["datasets:read"])
    env = {
        "ANNOTATION_PIPELINES_DATA_DIR": str(source / "data"),
        "ANNOTATION_PIPELINES_PSEUDONYM_KEY": f"test-key-{SEED}",
        "ANNOTATION_PIPELINES_API_TOKEN_STORE": str(store),
    }
    forwarded = {
        "Authorization": f"Bearer {token}",
        "X-Forwarded-Proto": "https",
        # The proxy passes on the host the client asked for (nginx: proxy_set_header Host).
        "Host": "data.example.org",
    }
    # A proxy that sends its upstream's name as Host says the client's in X-Forwarded-Host.
    # One that appends to the header keeps what the client sent on the left: the value the
    # adjacent proxy wrote, the last, is the one believed.
    relayed = {
        "Authorization": f"Bearer {token}",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example, data.example.org",
    }
    path = f"/v1/datasets/{PROJECT}/latest"

    def urls(base: str, headers: dict[str, str]) -> list[str]:
        files = httpx.get(f"{base}{path}", headers=headers, timeout=30).json()["files"]
        assert files
        return [f["url"] for f in files]

    # The default trusts a proxy on this machine, where the test's requests come from.
    with serve(env) as (url, _):
        for headers in (forwarded, relayed):
            assert all(u.startswith("https://data.example.org/v1/") for u in urls(url, headers))
        # A forwarded host that is no host is not put in the URLs.
        injected = {**relayed, "X-Forwarded-Host": "evil.example/phish?"}
        assert all(u.startswith(f"https://{url[7:]}/v1/") for u in urls(url, injected))
    # Headers from an address that is not a trusted proxy are not believed.
    with serve(env, "--forwarded-allow-ips", "10.1.2.3") as (url, _):
        assert all(u.startswith("http://data.example.org/v1/") for u in urls(url, forwarded))
        assert all(u.startswith(f"{url}/v1/") for u in urls(url, relayed))
