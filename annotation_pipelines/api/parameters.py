"""Query parameters as each endpoint declares them, read from its route: one check refuses the
names an endpoint does not take, and a bounded number's error says its range."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterator, Mapping

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from annotation_pipelines.api.problems import Problem

# The validator's errors about a number's value, which a bounded number's range answers better.
NUMBER_ERRORS = frozenset(
    {
        "int_parsing",
        "int_from_float",
        "float_parsing",
        "finite_number",
        "greater_than_equal",
        "less_than_equal",
    }
)
# Names clients page with elsewhere: an endpoint that pages with a cursor says so to them.
PAGING_WORDS = frozenset(
    {"offset", "page", "skip", "page_size", "per_page", "after", "start_after"}
)


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


Declared = dict[str, tuple[type | None, float | None, float | None]]
# By route (which is not hashable), with the route: an id is not reused while it is kept.
_DECLARED: dict[int, tuple[APIRoute, Declared]] = {}


def declared(route: APIRoute) -> Declared:
    """The query parameters `route` takes, by the name a client sends (its alias), each with
    its type and its bounds (None where it has none)."""
    known = _DECLARED.get(id(route))
    if known is None or known[0] is not route:
        known = _DECLARED[id(route)] = (route, _declared(route))
    return known[1]


def _declared(route: APIRoute) -> Declared:
    found: Declared = {}
    for dependant in _dependants(route.dependant):
        for field in dependant.query_params:
            low = high = None
            for constraint in field.field_info.metadata:
                low = getattr(constraint, "ge", low)
                high = getattr(constraint, "le", high)
            kind = field.field_info.annotation
            found[field.alias] = (kind if isinstance(kind, type) else None, low, high)
    return found


async def refuse_unknown(request: Request) -> None:
    """A 422 naming every query parameter the endpoint does not take: ignored, a typo'd filter
    would serve every row, and an `offset` the first page again as the next one."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    taken = declared(route)
    unknown = sorted(set(request.query_params) - set(taken))
    if not unknown:
        _refuse_repeated(request)
        return
    pages = "cursor" in taken and PAGING_WORDS & set(unknown)
    names = ", ".join(sorted(taken)) or "no query parameter"
    raise Problem(
        422,
        f"unknown parameter(s): {', '.join(unknown)}"
        + ("; page with `cursor`" if pages else "")
        + f" (this endpoint takes {names})",
        errors=[{"parameter": name, "message": _unknown(name, taken)} for name in unknown],
    )


def _refuse_repeated(request: Request) -> None:
    """A 422 naming every parameter given more than once: every one the API takes is a single
    value, and the validator kept the last silently (`day=A&day=B` served B alone)."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if not repeated:
        return
    raise Problem(
        422,
        f"parameter(s) given more than once: {', '.join(repeated)}; each takes one value "
        "(for several days use start and end)",
        errors=[
            {"parameter": name, "message": f"given {counts[name]} times; give it once"}
            for name in repeated
        ],
    )


def _unknown(name: str, taken: Mapping[str, object]) -> str:
    near = difflib.get_close_matches(name, list(taken), n=1)
    return f"unknown parameter; did you mean {near[0]}?" if near else "unknown parameter"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def range_message(request: Request, parameter: str, error_type: str) -> str | None:
    """What a bounded number parameter must be, when `error_type` is about its value: the
    validator's own message names one bound only ("less than or equal to 1" for a `nan`)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return None
    kind, low, high = declared(route).get(parameter, (None, None, None))
    if error_type not in NUMBER_ERRORS or kind not in (int, float):
        return None
    if low is None or high is None:
        return None
    what = "an integer" if kind is int else "a number"
    message = f"must be {what} between {_number(low)} and {_number(high)}"
    if error_type == "finite_number":
        message += " (nan is not a number, infinity is out of range)"
    return message
