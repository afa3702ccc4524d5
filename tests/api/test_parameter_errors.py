"""Every 422 names the parameter to change, a parameter given twice is refused rather than read
once, and a 416 has the title its status has, over real HTTP on the demo lake."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import DAYS, PROJECT
from tests.api.test_api import _cursor, assert_problem, get


@pytest.mark.parametrize(
    ("path", "query", "parameter"),
    [
        # The validator kept the last value: a client asking for two days got one, told nothing.
        (f"/projects/{PROJECT}/labels", [("day", DAYS[0]), ("day", DAYS[1])], "day"),
        (
            f"/projects/{PROJECT}/labels",
            [("min_confidence", "0.9"), ("min_confidence", "0")],
            "min_confidence",
        ),
        (f"/projects/{PROJECT}/quality", [("start", DAYS[0]), ("start", DAYS[1])], "start"),
        (f"/projects/{PROJECT}/queue", [("limit", "1"), ("limit", "2")], "limit"),
        ("/capacity/forecast", [("limit", "5"), ("limit", "5")], "limit"),
        (f"/datasets/{PROJECT}/latest", [("approved", "true"), ("approved", "false")], "approved"),
    ],
)
def test_a_parameter_given_twice_is_a_422_naming_it(served, path, query, parameter):
    body = assert_problem(get(served, path, params=query), 422)
    assert f"given more than once: {parameter}" in str(body["detail"])
    assert body["errors"] == [{"parameter": parameter, "message": "given 2 times; give it once"}]


def test_a_parameter_given_once_is_served_as_before(served):
    response = get(served, f"/projects/{PROJECT}/labels", params=[("day", DAYS[1])])
    assert response.status_code == 200, response.text
    assert {item["day"] for item in response.json()["items"]} == {DAYS[1]}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"start": DAYS[1], "end": DAYS[0]}, "start"),
        ({"start": "2020-01-01", "end": DAYS[1]}, "end"),
        ({"start": "2020-01-01"}, "start"),
        ({"day": DAYS[0], "start": DAYS[0], "end": DAYS[1]}, "day"),
    ],
)
def test_a_refused_day_range_names_its_parameter(served, params, parameter):
    # These 422s had no `errors`, unlike every other one: a client reading
    # errors[].parameter found nothing to correct.
    for endpoint in ("labels", "quality"):
        if endpoint == "quality" and "day" in params:
            continue
        body = assert_problem(get(served, f"/projects/{PROJECT}/{endpoint}", params=params), 422)
        assert [error["parameter"] for error in body["errors"]] == [parameter], body


@pytest.mark.parametrize(("start", "end"), [("2000-01-01", "2099-12-31"), (DAYS[1], DAYS[0])])
def test_a_hand_made_cursor_with_a_refused_range_names_the_cursor(served, start, end):
    params = {"cursor": _cursor(start, end)}
    body = assert_problem(get(served, f"/projects/{PROJECT}/labels", params=params), 422)
    assert [error["parameter"] for error in body["errors"]] == ["cursor"], body


def test_a_range_past_the_end_of_a_file_is_titled_as_its_status(served):
    listing = get(served, f"/datasets/{PROJECT}/latest").json()
    url = listing["files"][0]["url"]
    size = listing["files"][0]["size"]
    path = url.split("/v1", 1)[1]
    body = assert_problem(get(served, path, headers={"Range": f"bytes={size + 10}-"}), 416)
    assert body["title"] == "Range not satisfiable"


_JSON_TYPES = {
    "string": str,
    "integer": int,
    "array": list,
    "object": dict,
}


def test_the_spec_documents_the_422_every_endpoint_sends(served):
    """The spec listed FastAPI's validation error, `application/json` with `detail` as a list
    of `{loc, msg, type}`, while every 422 is a problem-details body with `detail` as text and
    `errors` as `{parameter, message}`: a client generated from /openapi.json could not read
    the error that says which parameter to change."""
    spec = httpx.get(f"{served.url}/openapi.json").json()
    refused = get(served, "/projects/sentiment/labels", params={"min_confidnce": "0.9"})
    body = assert_problem(refused, 422)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            documented = operation["responses"].get("422")
            assert documented is not None, (method, path)
            assert list(documented["content"]) == ["application/problem+json"], (method, path)
            schema = documented["content"]["application/problem+json"]["schema"]
            assert set(schema["required"]) <= set(body), (method, path)
            for name, value in body.items():
                kind = schema["properties"][name]["type"]
                assert isinstance(value, _JSON_TYPES[kind]), (method, path, name)
            error = schema["properties"]["errors"]["items"]
            assert set(error["required"]) == set(body["errors"][0]), (method, path)  # type: ignore[index]
    assert "HTTPValidationError" not in spec.get("components", {}).get("schemas", {})


@pytest.mark.parametrize(
    "path", [f"/projects/{PROJECT}/labels", f"/datasets/{PROJECT}/latest", "/health"]
)
def test_a_method_not_allowed_lists_every_method_the_path_answers(served, path):
    """`Allow` said `GET` alone although every GET endpoint answers HEAD too: HTTP asks a 405
    to list every method the resource takes."""
    headers = {"Authorization": f"Bearer {served.tokens['all']}"}
    refused = httpx.post(f"{served.url}/v1{path}", headers=headers)
    assert_problem(refused, 405)
    allowed = {method.strip() for method in refused.headers["allow"].split(",")}
    assert allowed == {"GET", "HEAD"}
    assert get(served, path).status_code == 200
    assert httpx.head(f"{served.url}/v1{path}", headers=headers).status_code == 200


def test_a_dataset_file_allows_get_and_head(served):
    url = get(served, f"/datasets/{PROJECT}/latest").json()["files"][0]["url"]
    refused = httpx.delete(url, headers={"Authorization": f"Bearer {served.tokens['all']}"})
    assert_problem(refused, 405)
    assert {method.strip() for method in refused.headers["allow"].split(",")} == {"GET", "HEAD"}


@pytest.mark.parametrize(
    ("path", "params", "parameter", "words"),
    [
        (f"/projects/{PROJECT}/labels", {"day": "26-11-30"}, "day", "expected YYYY-MM-DD"),
        (f"/projects/{PROJECT}/quality", {"start": ""}, "start", "expected YYYY-MM-DD"),
        (f"/datasets/{PROJECT}/v..1", {}, "version", "letters, digits"),
        ("/projects/-sentiment/labels", {}, "project", "starting with a letter or digit"),
        ("/workforce/plan", {"project": "a b"}, "project", "letters, digits"),
    ],
)
def test_a_malformed_name_or_day_is_refused_in_words(served, path, params, parameter, words):
    """The message quoted the regular expression (`String should match pattern
    '^[A-Za-z0-9](?:\\.?[A-Za-z0-9_=+-])*\\.?$'`), which tells a client little."""
    body = assert_problem(get(served, path, params=params), 422)
    assert body["errors"][0]["parameter"] == parameter  # type: ignore[index]
    assert words in body["errors"][0]["message"]  # type: ignore[index]
    assert "pattern" not in str(body["detail"]) and "^" not in str(body["detail"])
