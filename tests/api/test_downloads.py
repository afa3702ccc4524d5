"""Dataset downloads: HEAD, byte ranges and If-Range, from a local and an S3 lake."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from annotation_pipelines import lake as layout
from annotation_pipelines.api import create_app
from annotation_pipelines.api.app import QUALITY_TABLES
from tests.api.conftest import PROJECT, Served
from tests.api.test_api import assert_problem, get
from tests.services import moto_s3

NAME = "train.parquet"

# A request: (method, headers) -> the answer.
Fetch = Callable[[str, dict[str, str]], httpx.Response]


def snapshot_file(served: Served) -> tuple[str, Path]:
    """The download path (under /v1) of the current sentiment snapshot's train split, and the
    file in the lake."""
    version = get(served, f"/datasets/{PROJECT}/latest").json()["version_id"]
    folder = served.data / "lake" / layout.dataset_prefix(PROJECT, version)
    return f"/datasets/{PROJECT}/{version}/files/{NAME}", folder / NAME


def check_downloads(fetch: Fetch, content: bytes) -> None:
    """What a download answers, wherever the lake is."""
    size = len(content)
    whole = fetch("GET", {})
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(size)

    head = fetch("HEAD", {})
    assert head.status_code == 200 and head.content == b""
    for header in ("content-length", "content-type", "etag", "content-disposition"):
        assert head.headers[header] == whole.headers[header], header
    assert head.headers["accept-ranges"] == "bytes"

    part = fetch("GET", {"Range": "bytes=4-103"})
    assert part.status_code == 206 and part.content == content[4:104]
    assert part.headers["content-range"] == f"bytes 4-103/{size}"
    assert part.headers["content-length"] == "100"
    assert part.headers["etag"] == whole.headers["etag"]

    tail = fetch("GET", {"Range": "bytes=-8"})  # a Parquet file ends with its footer's length
    assert tail.status_code == 206 and tail.content == content[-8:]
    assert tail.headers["content-range"] == f"bytes {size - 8}-{size - 1}/{size}"
    rest = fetch("GET", {"Range": f"bytes={size - 10}-"})
    assert rest.status_code == 206 and rest.content == content[-10:]

    head_part = fetch("HEAD", {"Range": "bytes=0-9"})
    assert head_part.status_code == 206 and head_part.content == b""
    assert head_part.headers["content-range"] == f"bytes 0-9/{size}"

    beyond = fetch("GET", {"Range": f"bytes={size}-"})
    body = assert_problem(beyond, 416)
    assert beyond.headers["content-range"] == f"bytes */{size}"
    assert str(size) in str(body["detail"])

    # A resumed download whose copy is of another version gets the whole new file.
    stale = fetch("GET", {"Range": "bytes=0-9", "If-Range": '"another-version"'})
    assert stale.status_code == 200 and stale.content == content
    fresh = fetch("GET", {"Range": "bytes=0-9", "If-Range": whole.headers["etag"]})
    assert fresh.status_code == 206 and fresh.content == content[:10]

    # A range unit the API does not know is ignored, as HTTP asks.
    other_unit = fetch("GET", {"Range": "items=0-9"})
    assert other_unit.status_code == 200 and other_unit.content == content

    unchanged = fetch("GET", {"If-None-Match": whole.headers["etag"]})
    assert unchanged.status_code == 304


def test_a_download_answers_head_and_byte_ranges(served):
    """Downloads ignored Range (a resumed download fetched everything again) and answered HEAD
    with 405."""
    path, file = snapshot_file(served)
    headers = {"Authorization": f"Bearer {served.tokens['all']}"}

    def fetch(method: str, extra: dict[str, str]) -> httpx.Response:
        return httpx.request(
            method, f"{served.url}/v1{path}", headers={**headers, **extra}, timeout=30
        )

    check_downloads(fetch, file.read_bytes())
    # HEAD is checked as GET is: no token, no file.
    assert httpx.head(f"{served.url}/v1{path}").status_code == 401
    operations = httpx.get(f"{served.url}/openapi.json").json()["paths"][
        "/v1/datasets/{project}/{version}/files/{name}"
    ]
    assert {"get", "head"} <= set(operations)
    assert "Range" in operations["get"]["description"]


def test_every_get_endpoint_answers_head_with_its_headers_and_no_body(served):
    """HTTP asks a server to answer HEAD wherever it answers GET (uptime checkers and caches
    probe with it); every endpoint but the dataset files answered 405."""
    headers = {"Authorization": f"Bearer {served.tokens['all']}"}
    for path in ("/health", "/ready", "/projects", f"/datasets/{PROJECT}/latest", "/datasets"):
        got = httpx.get(f"{served.url}/v1{path}", headers=headers, timeout=30)
        head = httpx.head(f"{served.url}/v1{path}", headers=headers, timeout=30)
        assert got.status_code == 200, (path, got.text)
        assert head.status_code == 200, (path, head.status_code)
        assert head.content == b"", path
        for name in ("content-type", "content-length", "etag"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    # Checked as GET is: no token, no answer; an unknown parameter, a 422.
    assert httpx.head(f"{served.url}/v1/projects", timeout=30).status_code == 401
    unknown = httpx.head(f"{served.url}/v1/projects?offset=3", headers=headers, timeout=30)
    assert unknown.status_code == 422 and unknown.content == b""
    # The spec lists HEAD where it differs from GET (the files' ranges) and nowhere else.
    paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    assert "head" not in paths["/v1/projects"]


@pytest.mark.services
def test_a_download_from_an_s3_lake_answers_head_and_byte_ranges(served, monkeypatch):
    import boto3

    path, file = snapshot_file(served)
    lake = served.data / "lake"
    with moto_s3(monkeypatch) as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="lake-downloads")
        for folder in (lake / layout.DATASETS / PROJECT, *(lake / t for t in QUALITY_TABLES)):
            for local in folder.rglob("*"):
                if local.is_file():
                    key = f"lake/{local.relative_to(lake)}"
                    s3.put_object(Bucket="lake-downloads", Key=key, Body=local.read_bytes())
        settings = dataclasses.replace(
            served.settings,
            bucket="lake-downloads",
            lake_prefix="lake",
            s3_endpoint=endpoint,
            aws_region="us-east-1",
        )
        client = TestClient(
            create_app(settings), headers={"Authorization": f"Bearer {served.tokens['all']}"}
        )

        def fetch(method: str, extra: dict[str, str]) -> httpx.Response:
            return client.request(method, f"/v1{path}", headers=extra)

        check_downloads(fetch, file.read_bytes())
        assert "lake-downloads" not in fetch("GET", {"Range": "bytes=999999999-"}).text


def test_a_browser_on_an_allowed_origin_may_ask_for_ranges_and_read_them(served):
    path, file = snapshot_file(served)
    origin = "https://dashboard.example"
    settings = dataclasses.replace(served.settings, api_cors_origins=(origin,))
    client = TestClient(create_app(settings))
    preflight = client.options(
        f"/v1{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "HEAD",
            "Access-Control-Request-Headers": "authorization, range, if-range",
        },
    )
    assert preflight.status_code == 200, preflight.text
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert {"range", "if-range"} <= {name.strip() for name in allowed.split(",")}
    headers = {"Origin": origin, "Authorization": f"Bearer {served.tokens['all']}"}
    part = client.get(f"/v1{path}", headers={**headers, "Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == file.read_bytes()[:10]
    exposed = {h.strip().lower() for h in part.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "content-range", "accept-ranges", "content-disposition"} <= exposed


def test_the_spec_gives_the_media_types_the_card_and_the_files_are_served_as(served):
    """The spec said both answer `application/json`: a client generated from it parsed a
    Parquet file or the Markdown card as JSON."""
    spec = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    headers = {"Authorization": f"Bearer {served.tokens['all']}"}
    latest = get(served, f"/datasets/{PROJECT}/latest").json()
    card = httpx.get(f"{served.url}{latest['card_url']}", headers=headers)
    documented = spec["/v1/datasets/{project}/{version}/card"]["get"]["responses"]["200"]
    assert list(documented["content"]) == [card.headers["content-type"].split(";")[0]]
    operations = spec["/v1/datasets/{project}/{version}/files/{name}"]
    served_types = {
        httpx.head(item["url"], headers=headers).headers["content-type"].split(";")[0]
        for item in latest["files"]
    }
    assert len(served_types) > 2
    for method in ("get", "head"):
        documented = operations[method]["responses"]["200"]
        assert "application/json" in served_types
        assert served_types <= set(documented["content"]), method
        assert documented["content"]["application/vnd.apache.parquet"]["schema"] == {
            "type": "string",
            "format": "binary",
        }
