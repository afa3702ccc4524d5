"""Unknown parameters and numbers out of range, over real HTTP on the demo lake."""

from __future__ import annotations

from typing import cast

import pytest

from tests.api.conftest import DAYS, PROJECT
from tests.api.test_api import assert_problem, get


def errors(body: dict[str, object]) -> list[dict[str, object]]:
    return cast(list[dict[str, object]], body["errors"])


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
