"""How the API reads the lake: what a request lists, and what a corrupt file does to requests
and to readiness."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient
from pyarrow import fs as pafs

from annotation_pipelines import lake as layout
from annotation_pipelines.api import create_app
from annotation_pipelines.api.app import HOW_TO_BUILD, SERVED_DAY_TABLES, LakeHealth
from annotation_pipelines.api.tokens import issue_token
from annotation_pipelines.lake import FileVersion, LakeFileChanged, LakeFileError, LakeReader
from annotation_pipelines.settings import load_settings
from tests.api.conftest import DAYS, KIND_PROJECTS, PROJECT, Served, Server, start_server
from tests.api.test_api import assert_problem
from tests.services import moto_s3


def counting_client(served: Served) -> tuple[TestClient, Counter[str]]:
    """A client of a fresh app on the served lake, and the listings its reader makes, by
    table (the real listing runs; it is only counted)."""
    app = create_app(served.settings)
    reader = app.state.context.reader
    listed: Counter[str] = Counter()
    files = reader.files

    def counted(prefix: str) -> dict:
        listed[prefix.strip("/")] += 1
        return files(prefix)

    reader.files = counted
    client = TestClient(app, headers={"Authorization": f"Bearer {served.tokens['all']}"})
    return client, listed


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/projects/{PROJECT}/labels?start={DAYS[0]}&end={DAYS[1]}",
        f"/v1/projects/{PROJECT}/labels?gated=true",
        f"/v1/projects/{PROJECT}/quality",
        f"/v1/projects/{PROJECT}/scorecards",
        f"/v1/projects/{PROJECT}/queue",
        f"/v1/projects/{sorted(KIND_PROJECTS)[0]}/labels",
        f"/v1/projects/{sorted(KIND_PROJECTS)[0]}/quality",
        "/v1/projects",
    ],
)
def test_a_request_lists_each_table_once(served, path):
    client, listed = counting_client(served)
    for _ in range(2):  # the second request answers from cached frames: listings only
        listed.clear()
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert listed and max(listed.values()) == 1, dict(listed)


@pytest.fixture
def own_lake(served, tmp_path) -> Served:
    """A copy of the served lake this test may break, with the served settings and tokens."""
    shutil.copytree(served.data / "lake", tmp_path / "data" / "lake")
    settings = dataclasses.replace(served.settings, data_dir=tmp_path / "data")
    return dataclasses.replace(served, settings=settings, data=tmp_path / "data")


def newest_partition(lake: Path, table: str) -> tuple[str, str]:
    day = max(p.name.removeprefix("day=") for p in (lake / table).glob("day=*"))
    return day, layout.partition_key(table, day)


def truncate(path: Path) -> bytes:
    """Cut `path` to half its bytes, as a write that died halfway would; the original bytes."""
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])
    return original


def garble_pages(path: Path) -> bytes:
    """Overwrite every byte between the leading magic and the footer: the footer still reads,
    the data does not. The original bytes."""
    original = path.read_bytes()
    footer = int.from_bytes(original[-8:-4], "little") + 8
    path.write_bytes(original[:4] + b"\xab" * (len(original) - 4 - footer) + original[-footer:])
    with pytest.raises(pl.exceptions.ComputeError):
        pl.read_parquet(path)
    return original


def restore(path: Path, original: bytes) -> None:
    """Put the original bytes back as a new file (a rematerialization: a new version)."""
    staged = path.with_name(".restore")
    staged.write_bytes(original)
    os.replace(staged, path)


def fetch(server: Server, path: str, served: Served) -> httpx.Response:
    token = {"Authorization": f"Bearer {served.tokens['all']}"}
    return httpx.get(f"{server.url}/v1{path}", headers=token, timeout=30)


def test_ready_is_unavailable_while_a_newest_partition_is_truncated(own_lake):
    lake = own_lake.data / "lake"
    server = start_server(own_lake.settings, ready_check_seconds=0)
    try:
        assert fetch(server, "/ready", own_lake).json()["status"] == "ready"
        day, key = newest_partition(lake, "quality_report")
        original = truncate(lake / key)

        response = fetch(server, "/ready", own_lake)
        body = assert_problem(response, 503)
        assert body["detail"].startswith(f"partition {day} of quality_report ({key}) cannot")
        [error] = body["errors"]
        assert error["table"] == "quality_report" and error["partition"] == day
        assert error["file"] == key and "magic bytes" in error["error"]
        assert body["checks"] == {"lake": True, "tokens": True, "lake_files": False}
        # Liveness is not readiness: the process is fine, the lake is not.
        assert fetch(server, "/health", own_lake).json()["status"] == "ok"
        # Every project request reads the quality reports: a problem naming the file.
        failed = assert_problem(fetch(server, f"/projects/{PROJECT}/quality", own_lake), 503)
        [failure] = failed["errors"]
        assert {k: failure[k] for k in ("table", "partition", "file")} == {
            "table": "quality_report",
            "partition": day,
            "file": key,
        }
        assert len(assert_problem(fetch(server, "/ready", own_lake), 503)["errors"]) == 1

        restore(lake / key, original)
        assert fetch(server, "/ready", own_lake).json()["status"] == "ready"
        assert fetch(server, f"/projects/{PROJECT}/quality", own_lake).status_code == 200
    finally:
        server.stop()


def test_ready_without_a_token_says_only_not_ready(own_lake):
    lake = own_lake.data / "lake"
    app = create_app(own_lake.settings, ready_check_seconds=0)
    anonymous = TestClient(app)
    known = TestClient(app, headers={"Authorization": f"Bearer {own_lake.tokens['all']}"})
    assert anonymous.get("/v1/ready").json() == {"status": "ready"}
    assert known.get("/v1/ready").json()["checks"]["lake_files"] is True
    day, key = newest_partition(lake, "quality_report")
    truncate(lake / key)

    response = anonymous.get("/v1/ready")
    body = assert_problem(response, 503)
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    for secret in (key, day, "quality_report", "magic bytes", "lake_files"):
        assert secret not in response.text
    # An invalid token is refused, not answered as anonymous.
    invalid = anonymous.get("/v1/ready", headers={"Authorization": "Bearer not-a-token"})
    assert assert_problem(invalid, 401)["detail"] == "the bearer token is not valid"
    [error] = assert_problem(known.get("/v1/ready"), 503)["errors"]
    assert (error["table"], error["partition"], error["file"]) == ("quality_report", day, key)


def test_a_request_that_fails_to_read_a_file_makes_the_api_unready_until_it_reads(own_lake):
    lake = own_lake.data / "lake"
    every = 1.0
    server = start_server(own_lake.settings, ready_check_seconds=every)
    key = layout.partition_key("aggregated_labels", DAYS[0])  # not the newest: footers pass
    try:
        assert fetch(server, "/ready", own_lake).status_code == 200
        original = garble_pages(lake / key)
        time.sleep(every)
        assert fetch(server, "/ready", own_lake).status_code == 200  # its footer is sound

        response = fetch(server, f"/projects/{PROJECT}/labels?day={DAYS[0]}", own_lake)
        body = assert_problem(response, 503)
        assert body["detail"].startswith(f"partition {DAYS[0]} of aggregated_labels ({key})")
        assert body["errors"][0]["file"] == key
        # At once, not at the next check; and the next check, reading it again, keeps it so.
        assert assert_problem(fetch(server, "/ready", own_lake), 503)["errors"] == body["errors"]
        time.sleep(every)
        assert fetch(server, "/ready", own_lake).status_code == 503

        restore(lake / key, original)
        time.sleep(every)
        assert fetch(server, "/ready", own_lake).json()["status"] == "ready"
        response = fetch(server, f"/projects/{PROJECT}/labels?day={DAYS[0]}", own_lake)
        assert response.status_code == 200 and response.json()["items"]
    finally:
        server.stop()


def test_the_readiness_check_reads_each_file_version_s_footer_once(own_lake):
    lake = own_lake.data / "lake"
    reader = LakeReader(pafs.LocalFileSystem(), str(lake))
    footers: list[str] = []
    check_footer = reader.check_footer

    def counted(version: FileVersion) -> None:
        footers.append(version.key)
        check_footer(version)

    reader.check_footer = counted  # type: ignore[method-assign]
    health = LakeHealth(reader, every=0)
    assert health.problems() == []
    # The newest partition of each served table, and the whole tables present.
    tables = [key.split("/")[0] for key in footers]
    assert len(tables) == len(set(tables)) and set(SERVED_DAY_TABLES) <= set(tables)
    assert set(tables) - set(SERVED_DAY_TABLES) <= set(HOW_TO_BUILD)
    footers.clear()
    assert health.problems() == [] and footers == []  # versions already read: listings only

    _, key = newest_partition(lake, "kind_scorecards")
    original = truncate(lake / key)  # a new version: its footer is read once, and fails
    [error] = health.problems()
    assert footers == [key] and error.key == key

    # Between checks the verdict stands without touching the lake, even once the file is fixed.
    waiting = LakeHealth(reader, every=3600)
    assert [e.key for e in waiting.problems()] == [key]
    listed: list[str] = []
    files = reader.files
    reader.files = lambda prefix: listed.append(prefix) or files(prefix)  # type: ignore[method-assign]
    footers.clear()
    restore(lake / key, original)
    assert [e.key for e in waiting.problems()] == [key]
    assert footers == [] and listed == []


@pytest.mark.services
def test_on_s3_a_truncated_partition_makes_the_api_unready_and_is_named(
    served, monkeypatch, tmp_path
):
    import boto3

    with moto_s3(monkeypatch) as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="lake-api")
        lake = served.data / "lake"
        for table in (*SERVED_DAY_TABLES, *HOW_TO_BUILD):
            for path in (lake / table).rglob("*.parquet"):
                key = f"lake/{path.relative_to(lake)}"
                s3.put_object(Bucket="lake-api", Key=key, Body=path.read_bytes())
        settings = dataclasses.replace(
            served.settings,
            bucket="lake-api",
            lake_prefix="lake",
            s3_endpoint=endpoint,
            aws_region="us-east-1",
        )
        client = TestClient(
            create_app(settings, ready_check_seconds=0),
            headers={"Authorization": f"Bearer {served.tokens['all']}"},
        )
        assert client.get("/v1/ready").json()["status"] == "ready"
        day, key = newest_partition(lake, "kind_quality_report")
        original = (lake / key).read_bytes()
        s3.put_object(Bucket="lake-api", Key=f"lake/{key}", Body=original[: len(original) // 2])

        body = assert_problem(client.get("/v1/ready"), 503)
        assert [(e["table"], e["partition"], e["file"]) for e in body["errors"]] == [
            ("kind_quality_report", day, key)
        ]
        assert "lake-api" not in client.get("/v1/ready").text
        project = sorted(KIND_PROJECTS)[0]
        failed = assert_problem(client.get(f"/v1/projects/{project}/quality"), 503)
        assert failed["errors"][0]["file"] == key and "lake-api" not in str(failed)

        s3.put_object(Bucket="lake-api", Key=f"lake/{key}", Body=original)
        assert client.get("/v1/ready").json()["status"] == "ready"
        assert client.get(f"/v1/projects/{project}/quality").status_code == 200


@pytest.mark.services
def test_on_s3_a_bucket_that_does_not_exist_is_an_unreachable_lake(monkeypatch, tmp_path):
    """A mistyped bucket was a reachable, empty lake: /v1/ready said ready and every listing
    answered no items, where a local lake's missing folder is unready."""
    import boto3

    with moto_s3(monkeypatch) as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lake-api")
        store = tmp_path / "tokens.json"
        token = issue_token(store, scopes=["datasets:read"])

        def client_of(bucket: str) -> TestClient:
            settings = dataclasses.replace(
                load_settings(),
                bucket=bucket,
                lake_prefix="lake",
                s3_endpoint=endpoint,
                aws_region="us-east-1",
                api_token_store=store,
            )
            return TestClient(
                create_app(settings, ready_check_seconds=0),
                headers={"Authorization": f"Bearer {token}"},
            )

        mistyped = client_of("lake-apj")
        body = assert_problem(mistyped.get("/v1/ready"), 503)
        assert body["checks"]["lake"] is False and "lake-apj" not in str(body)
        health = mistyped.get("/v1/health").json()
        assert health["status"] == "degraded" and health["lake_reachable"] is False
        # A bucket with nothing under the prefix yet is an empty lake, as an empty folder is.
        assert client_of("lake-api").get("/v1/ready").json()["status"] == "ready"


def test_a_labels_request_digests_each_day_of_its_range_once(served, monkeypatch):
    # The cursor check, the body cache key and the next cursor all need the days' digests: one
    # computation per day and request serves the three.
    from annotation_pipelines.api import app as api

    digested: list[tuple[object, ...]] = []
    fingerprint = api._version_fingerprint

    def counted(*versions: FileVersion | None, width: int = 16) -> str:
        digested.append(versions)
        return fingerprint(*versions, width=width)

    monkeypatch.setattr(api, "_version_fingerprint", counted)
    path = f"/v1/projects/{PROJECT}/labels"
    params = {"start": DAYS[0], "end": DAYS[1], "limit": 50}
    client, _ = counting_client(served)
    first = client.get(path, params=params)
    assert first.status_code == 200, first.text
    assert len(digested) == len(DAYS)
    digested.clear()
    # A fresh app, so the page is built rather than answered from the body cache.
    client, _ = counting_client(served)
    second = client.get(path, params={**params, "cursor": first.json()["next_cursor"]})
    assert second.status_code == 200, second.text
    assert len(digested) == len(DAYS)


def test_a_file_gone_between_listing_and_reading_is_a_lake_file_error(tmp_path):
    # The listing and the read are two calls: a file deleted between them (a snapshot pruned,
    # a card rewritten) must give the 503 naming the file, not a bare 500 of FileNotFoundError.
    import asyncio

    from annotation_pipelines.api.downloads import LakeFileResponse

    key = "datasets/sentiment/v1/card.md"
    (tmp_path / key).parent.mkdir(parents=True)
    (tmp_path / key).write_text("# card")
    reader = LakeReader(pafs.LocalFileSystem(), str(tmp_path))
    version = reader.files("datasets")[key]
    (tmp_path / key).unlink()
    for read in (lambda: reader.read_bytes(key), lambda: reader.open(version)):
        with pytest.raises(LakeFileError) as raised:
            read()
        assert raised.value.key == key and str(tmp_path) not in str(raised.value)
    # A download fails before its status line is sent, so the app can still answer 503.
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    response = LakeFileResponse(reader, version, headers={}, media_type="text/markdown")
    scope = {"type": "http", "method": "GET", "headers": [], "path": "/"}
    with pytest.raises(LakeFileError):
        asyncio.run(response(scope, receive, send))  # type: ignore[arg-type]
    assert sent == []


def test_on_s3_a_file_replaced_while_it_is_streamed_fails_instead_of_mixing_versions(
    monkeypatch,
):
    """Downloads are streamed in ranged GETs; each range after the first is conditional on
    the first one's ETag, so a rewrite between two ranges cannot splice two versions under
    the first one's Content-Length and ETag."""
    import boto3

    key = "datasets/p/v0001/train.jsonl"
    first, second = b"a" * (3 << 20), b"b" * (3 << 20)
    with moto_s3(monkeypatch) as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="lake-pinned")
        s3.put_object(Bucket="lake-pinned", Key=f"lake/{key}", Body=first)
        settings = dataclasses.replace(
            load_settings(),
            bucket="lake-pinned",
            lake_prefix="lake",
            s3_endpoint=endpoint,
            aws_region="us-east-1",
        )
        reader = LakeReader.from_settings(settings)
        version = reader.files("datasets")[key]
        handle = reader.open(version)
        assert handle.read(1 << 20) == first[: 1 << 20]
        s3.put_object(Bucket="lake-pinned", Key=f"lake/{key}", Body=second)
        with pytest.raises(Exception, match=r"PreconditionFailed|412"):
            handle.read(1 << 20)
        # Opened again, the new version reads whole, as one version.
        assert reader.open(reader.files("datasets")[key]).read() == second
        # A listing older than the file's replacement is refused before anything is sent (the
        # API answers 503, not another version's bytes under the listed one's ETag), whether
        # the new file's size differs or not; the file is not broken, so the lake stays ready.
        listed = reader.files("datasets")[key]
        time.sleep(1.1)  # S3 keeps modification times to the second
        s3.put_object(Bucket="lake-pinned", Key=f"lake/{key}", Body=first)
        with pytest.raises(LakeFileChanged, match="replaced since it was listed"):
            reader.open(listed)
        s3.put_object(Bucket="lake-pinned", Key=f"lake/{key}", Body=b"c" * 10)
        with pytest.raises(LakeFileChanged, match="replaced since it was listed"):
            reader.open(version)
