"""Cursors bound to what they page, unknown parameters and ids, and the queue's pages, over real
HTTP on the demo lake."""

from __future__ import annotations

import base64
import json
from typing import cast

import polars as pl
import pytest

from annotation_pipelines import lake as layout
from annotation_pipelines.storage import atomic_write_parquet
from tests.api.conftest import DAYS, PROJECT, Served
from tests.api.test_api import assert_problem, every_page, get, replaced_table, wide_forecast


def categorical_projects(served: Served) -> list[str]:
    items = get(served, "/projects").json()["items"]
    return [item["project"] for item in items if item["kind"] == "categorical"]


def first_labels_cursor(served: Served, project: str, **params: object) -> str:
    page = get(served, f"/projects/{project}/labels", params={"limit": 5, **params}).json()
    assert page["next_cursor"], page
    return str(page["next_cursor"])


def errors(body: dict[str, object]) -> list[dict[str, object]]:
    return cast(list[dict[str, object]], body["errors"])


def refused_cursor(response, message: str) -> str:
    body = assert_problem(response, 422)
    assert body["errors"] == [{"parameter": "cursor", "message": message}], body
    return str(body["detail"])


# Cursors ----------------------------------------------------------------------------------


def test_a_labels_cursor_is_refused_on_another_project(served):
    other = next(p for p in categorical_projects(served) if p != PROJECT)
    params = {"day": DAYS[0], "limit": 5}
    mine = first_labels_cursor(served, PROJECT, day=DAYS[0])
    # It served an empty last page, which reads as "the project has no more labels".
    foreign = get(served, f"/projects/{other}/labels", params={**params, "cursor": mine})
    assert "another project" in refused_cursor(foreign, "another project")
    # The other way round it served the project's first rows again, as if they were the rest.
    theirs = first_labels_cursor(served, other, day=DAYS[0])
    foreign = get(served, f"/projects/{PROJECT}/labels", params={**params, "cursor": theirs})
    refused_cursor(foreign, "another project")
    # On a project of another kind it was a 409 saying a day was rewritten; none was.
    foreign = get(served, "/projects/detection/labels", params={**params, "cursor": mine})
    refused_cursor(foreign, "another project")


def test_a_labels_cursor_keeps_its_filters_and_refuses_others(served):
    path = f"/projects/{PROJECT}/labels"
    params = {"day": DAYS[0], "limit": 5, "min_confidence": 0.9}
    cursor = first_labels_cursor(served, PROJECT, day=DAYS[0], min_confidence=0.9)
    again = get(served, path, params={**params, "cursor": cursor}).json()
    # Left out, the filters are the cursor's: the same page as with them.
    alone = get(served, path, params={"cursor": cursor, "limit": 5}).json()
    assert alone["items"] == again["items"] and alone["next_cursor"] == again["next_cursor"]
    assert all(item["confidence"] >= 0.9 for item in alone["items"])
    other = get(served, path, params={**params, "min_confidence": 0.5, "cursor": cursor})
    assert "min_confidence" in refused_cursor(other, "another min_confidence")
    other = get(served, path, params={**params, "gated": "true", "cursor": cursor})
    refused_cursor(other, "another gated")
    other = get(served, path, params={**params, "day": DAYS[1], "cursor": cursor})
    refused_cursor(other, "another day range")


def test_a_cursor_is_refused_by_every_other_endpoint(served):
    labels = first_labels_cursor(served, PROJECT, day=DAYS[0])
    queue = get(served, f"/projects/{PROJECT}/queue", params={"day": DAYS[0], "limit": 2}).json()
    forecast = get(served, "/capacity/forecast", params={"limit": 2}).json()
    cursors = {
        f"/projects/{PROJECT}/labels": labels,
        f"/projects/{PROJECT}/queue": queue["next_cursor"],
        "/capacity/forecast": forecast["next_cursor"],
    }
    for path in cursors:
        for issuer, cursor in cursors.items():
            if issuer != path:
                refused = get(served, path, params={"cursor": cursor})
                refused_cursor(refused, "cursor of another endpoint")


def test_a_labels_cursor_of_an_earlier_api_is_refused_as_unbound(served):
    # The earlier shape: [start, end, day, task_id, digest], with no project to check.
    raw = json.dumps([DAYS[0], DAYS[0], DAYS[0], "", "0" * 8]).encode()
    older = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    refused = get(served, f"/projects/{PROJECT}/labels", params={"cursor": older})
    assert "start again without it" in refused_cursor(refused, "cursor of an earlier API version")


# The queue's pages ------------------------------------------------------------------------


def lake_queue(served: Served, day: str) -> pl.DataFrame:
    path = served.data / "lake" / layout.partition_key("reannotation_queue", day)
    return pl.read_parquet(path).filter(pl.col("project") == PROJECT)


def test_the_queue_pages_every_task_once_in_its_order(served):
    path = f"/projects/{PROJECT}/queue"
    lake = lake_queue(served, DAYS[0])
    assert lake.height > 25
    pages = every_page(served, path, {"day": DAYS[0], "limit": 10})
    assert len(pages) == -(-lake.height // 10)
    assert [page["truncated"] for page in pages] == [True] * (len(pages) - 1) + [False]
    assert all(page["total"] == lake.height and page["day"] == DAYS[0] for page in pages)
    tasks = [item["task_id"] for page in pages for item in cast(list[dict], page["items"])]
    assert tasks == lake["task_id"].to_list()  # the queue's order, each task once
    # A cursor goes on with its day although the request leaves it out, and no other.
    cursor = pages[0]["next_cursor"]
    alone = get(served, path, params={"cursor": cursor, "limit": 10}).json()
    assert alone["items"] == pages[1]["items"] and alone["day"] == DAYS[0]
    refused_cursor(get(served, path, params={"day": DAYS[1], "cursor": cursor}), "another day")
    other = next(p for p in categorical_projects(served) if p != PROJECT)
    refused = get(served, f"/projects/{other}/queue", params={"cursor": cursor})
    refused_cursor(refused, "another project")


def test_a_queue_cursor_of_a_rewritten_day_is_refused_not_mixed(served):
    path = f"/projects/{PROJECT}/queue"
    first = get(served, path, params={"day": DAYS[0], "limit": 10}).json()
    key = served.data / "lake" / layout.partition_key("reannotation_queue", DAYS[0])
    original = pl.read_parquet(key)
    atomic_write_parquet(original.reverse(), key)
    try:
        stale = get(served, path, params={"cursor": first["next_cursor"]})
        body = assert_problem(stale, 409)
        assert body["errors"] == [
            {"parameter": "cursor", "message": "cursor of a replaced version"}
        ]
    finally:
        atomic_write_parquet(original, key)


# Unknown parameters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "unknown"),
    [
        (f"/projects/{PROJECT}/labels", {"day": DAYS[0], "offset": 5}, "offset"),
        (f"/projects/{PROJECT}/labels", {"day": DAYS[0], "min_confidnce": 0.9}, "min_confidnce"),
        (f"/projects/{PROJECT}/quality", {"project": PROJECT}, "project"),
        (f"/projects/{PROJECT}/scorecards", {"limit": 2}, "limit"),
        (f"/projects/{PROJECT}/queue", {"page": 2}, "page"),
        ("/projects", {"kind": "boxes"}, "kind"),
        ("/datasets", {"project": PROJECT}, "project"),
        (f"/datasets/{PROJECT}", {"limit": 1}, "limit"),
        (f"/datasets/{PROJECT}/latest", {"aproved": "true"}, "aproved"),
        ("/health", {"verbose": 1}, "verbose"),
        ("/capacity/forecast", {"offset": 100}, "offset"),
    ],
)
def test_every_endpoint_refuses_a_parameter_it_does_not_take(served, path, params, unknown):
    body = assert_problem(get(served, path, params=params), 422)
    assert [error["parameter"] for error in errors(body)] == [unknown]
    assert str(body["detail"]).startswith(f"unknown parameter(s): {unknown}")
    assert "this endpoint takes" in str(body["detail"])


def test_an_unknown_parameter_names_the_one_meant_and_a_paging_word_the_cursor(served):
    path = f"/projects/{PROJECT}/labels"
    typo = assert_problem(get(served, path, params={"min_confidnce": 0.9}), 422)
    assert errors(typo)[0]["message"] == "unknown parameter; did you mean min_confidence?"
    offset = assert_problem(get(served, path, params={"offset": 5}), 422)
    assert "page with `cursor`" in str(offset["detail"])
    assert "min_confidence" in str(offset["detail"])  # what the endpoint takes
    none = assert_problem(get(served, "/datasets", params={"x": 1}), 422)
    assert "takes no query parameter" in str(none["detail"])


# Unknown ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parameter", "listing"),
    [
        ("/capacity/forecast", "id", "/v1/capacity/forecast/series"),
        ("/workforce/forecast", "project", "/v1/workforce/forecast/projects"),
        ("/workforce/plan", "project", "/v1/workforce/plan"),
    ],
)
def test_an_unknown_id_is_a_404_naming_it_and_some_known_ones(served, path, parameter, listing):
    body = assert_problem(get(served, path, params={parameter: "nope"}), 404)
    detail = str(body["detail"])
    assert f"no {parameter} 'nope'" in detail and listing in detail
    known = body["known"]
    assert isinstance(known, list) and known and all(f"'{name}'" in detail for name in known)
    assert body["errors"] == [{"parameter": parameter, "message": f"unknown {parameter}"}]
    # A known one is served as before.
    assert get(served, path, params={parameter: known[0]}).json()["items"]


def test_an_unknown_procurement_cluster_is_a_404_naming_the_clusters(served):
    plan = pl.DataFrame(
        {"cluster": ["west", "east"], "accelerator_type": ["a100", "h100"], "scenario": "P50"}
    )
    with replaced_table(served, "procurement_plan", plan):
        body = assert_problem(get(served, "/capacity/procurement", params={"cluster": "nope"}), 404)
        assert body["known"] == ["east", "west"]
        assert "'east', 'west'" in str(body["detail"])


def test_a_404_for_an_unknown_id_names_ten_of_many(served):
    with replaced_table(served, "compute_capacity_forecast", wide_forecast()):
        body = assert_problem(get(served, "/capacity/forecast", params={"id": "s99"}), 404)
        assert body["known"] == [f"s{i:02d}" for i in range(10)]
        assert "and 30 more" in str(body["detail"])


# Number parameters ------------------------------------------------------------------------

BETWEEN = "must be a number between 0 and 1"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_confidence": "nan"}, f"{BETWEEN} (nan is not a number, infinity is out of range)"),
        ({"min_confidence": "inf"}, f"{BETWEEN} (nan is not a number, infinity is out of range)"),
        ({"min_confidence": 2}, "must be a number between 0 and 1"),
        ({"min_confidence": "high"}, "must be a number between 0 and 1"),
        ({"limit": 0}, "must be an integer between 1 and 5000"),
    ],
)
def test_a_number_out_of_its_range_is_refused_in_the_range_s_words(served, params, message):
    path = f"/projects/{PROJECT}/labels"
    body = assert_problem(get(served, path, params={"day": DAYS[0], **params}), 422)
    [name] = params
    assert body["errors"] == [{"parameter": name, "message": message}]
    assert str(body["detail"]) == f"invalid parameter(s): {name}: {message}"
