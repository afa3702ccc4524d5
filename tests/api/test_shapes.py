"""One shape per kind of answer: dataset files, days without data, and what health tells whom."""

from __future__ import annotations

import json
import os

import httpx
import polars as pl
import pytest

from annotation_pipelines import lake as layout
from tests.api.conftest import DAYS, KIND_PROJECTS, PROJECT
from tests.api.test_api import _rewritten, assert_problem, get

# A valid day before the lake's first: no table has a partition for it.
EMPTY_DAY = "2026-11-15"
KIND_PROJECT = sorted(KIND_PROJECTS)[0]


def test_every_dataset_answer_lists_files_as_name_url_and_size(served):
    """The listings gave bare names and `/latest`, `/{version}` objects: a client handling one
    answer could not read the other."""
    latest = get(served, f"/datasets/{PROJECT}/latest").json()
    version = latest["version_id"]
    folder = served.data / "lake" / layout.dataset_prefix(PROJECT, version)
    base = f"{served.url}/v1/datasets/{PROJECT}/{version}"
    expected = [
        {"name": path.name, "url": f"{base}/files/{path.name}", "size": path.stat().st_size}
        for path in sorted(folder.iterdir())
        if not path.name.startswith(".")
    ]
    answers = [
        *[item for item in get(served, "/datasets").json()["items"] if item["project"] == PROJECT],
        *get(served, f"/datasets/{PROJECT}").json()["items"],
        latest,
        get(served, f"/datasets/{PROJECT}/{version}").json(),
    ]
    assert len(answers) == 4
    for answer in answers:
        assert answer["files"] == expected
        assert answer["card_url"] == f"/v1/datasets/{PROJECT}/{version}/card"
    headers = {"Authorization": f"Bearer {served.tokens['all']}"}
    for item in answers[0]["files"]:
        download = httpx.get(item["url"], headers=headers)
        assert download.status_code == 200 and len(download.content) == item["size"]
    docs = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    for path in ("/v1/datasets", "/v1/datasets/{project}", "/v1/datasets/{project}/latest"):
        assert "`{name, url, size}`" in docs[path]["get"]["description"], path


def _day_params(endpoint: str, day: str) -> dict[str, str]:
    return {"start": day, "end": day} if endpoint == "quality" else {"day": day}


@pytest.mark.parametrize("project", [PROJECT, KIND_PROJECT])
@pytest.mark.parametrize("endpoint", ["labels", "quality", "scorecards", "queue"])
def test_a_day_without_data_is_an_empty_page_that_says_so(served, endpoint, project):
    """It was 200-empty on `/labels` and `/quality` but 404 on `/scorecards` and `/queue`."""
    path = f"/projects/{project}/{endpoint}"
    empty = get(served, path, params=_day_params(endpoint, EMPTY_DAY))
    assert empty.status_code == 200, empty.text
    body = empty.json()
    assert body["items"] == [] and body["days_without_data"] == [EMPTY_DAY]
    full = get(served, path, params=_day_params(endpoint, DAYS[0])).json()
    assert full["items"] and full["days_without_data"] == []


@pytest.mark.parametrize("endpoint", ["labels", "quality", "scorecards", "queue"])
@pytest.mark.parametrize("day", ["2026-02-30", "2026-13-01", "20261116", "yesterday"])
def test_a_malformed_day_is_a_422_naming_it_on_every_endpoint(served, endpoint, day):
    body = assert_problem(
        get(served, f"/projects/{PROJECT}/{endpoint}", params=_day_params(endpoint, day)), 422
    )
    assert {error["parameter"] for error in body["errors"]} <= {"day", "start", "end"}


def test_a_range_names_its_days_without_data(served):
    params = {"start": EMPTY_DAY, "end": DAYS[1]}
    for endpoint in ("labels", "quality"):
        body = get(served, f"/projects/{PROJECT}/{endpoint}", params=params).json()
        assert body["days_without_data"] == [EMPTY_DAY], endpoint
        assert {item["day"] for item in body["items"]} == set(DAYS), endpoint


@pytest.mark.parametrize(
    ("endpoint", "table"),
    [("labels", "aggregated_labels"), ("scorecards", "annotator_scorecards")],
)
def test_a_day_whose_partition_holds_no_row_of_the_project_has_no_data(served, endpoint, table):
    partition = served.data / "lake" / layout.partition_key(table, DAYS[0])
    others = pl.read_parquet(partition).filter(pl.col("project") != PROJECT)
    with _rewritten(partition, others):
        body = get(served, f"/projects/{PROJECT}/{endpoint}", params={"day": DAYS[0]}).json()
    assert body["items"] == [] and body["days_without_data"] == [DAYS[0]]


def test_health_without_a_token_says_only_that_the_api_is_up(served):
    """It listed every lake table to anyone: a load balancer needs to know only that it is up."""
    bare = get(served, "/health", token=None)
    assert bare.status_code == 200 and bare.json() == {"status": "ok"}
    assert "aggregated_labels" not in bare.text
    detailed = get(served, "/health", token="quality").json()
    assert detailed["status"] == "ok" and detailed["lake_reachable"] is True
    assert detailed["tables"]["aggregated_labels"]["freshest_partition"] >= DAYS[-1]
    assert_problem(get(served, "/health", token="ap_0000_not-a-token"), 401)
    docs = httpx.get(f"{served.url}/openapi.json").json()["paths"]["/v1/health"]["get"]
    assert "token" in docs["description"]


def test_a_categorical_version_keeps_when_it_was_made_when_its_files_are_copied(served):
    """A categorical manifest had no `created_at`, so its version was dated by the manifest's
    write time: a lake copied to another bucket or restored from a backup dated every version
    at the copy, and "oldest first" and `/latest?approved=true`'s newest approved followed the
    copy's order."""
    latest = get(served, f"/datasets/{PROJECT}/latest").json()
    manifest = (
        served.data / "lake" / layout.dataset_prefix(PROJECT, latest["version_id"])
    ) / "manifest.json"
    made = json.loads(manifest.read_text())["created_at"]
    assert latest["created_at"] == made
    stamp = manifest.stat().st_mtime_ns
    try:
        later = stamp + 86_400 * 10**9
        os.utime(manifest, ns=(later, later))
        assert get(served, f"/datasets/{PROJECT}/latest").json()["created_at"] == made
    finally:
        os.utime(manifest, ns=(stamp, stamp))
