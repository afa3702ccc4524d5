"""Errors as RFC 9457 problem details: one JSON shape, no stack trace, no path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    416: "Range not satisfiable",
    422: "Invalid parameter",
    500: "Internal error",
    503: "Unavailable",
}
# The body every error has, as the OpenAPI spec gives it: a client generated from the spec reads
# a 422 as what is sent, not as FastAPI's own validation error (`detail` as a list).
SCHEMA: dict[str, object] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["parameter", "message"],
                "properties": {
                    "parameter": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}
# Every endpoint refuses a parameter it does not take, so every one may answer 422.
OPENAPI_RESPONSES: dict[int | str, dict[str, object]] = {
    422: {
        "description": "A parameter to change, named in `errors`",
        "content": {MEDIA_TYPE: {"schema": SCHEMA}},
    }
}


class Problem(Exception):
    """Raise to answer with a problem-details body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, object]] | None = None,
        extensions: dict[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors
        # Members a client can act on without parsing `detail` (RFC 9457 extension members).
        self.extensions = extensions


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, object]] | None = None,
    extensions: dict[str, object] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    for name, value in (extensions or {}).items():
        body.setdefault(name, value)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method a route on the request's path answers, for a 405's `Allow`."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install(
    app: FastAPI,
    *,
    describe: Callable[[Request, str, Mapping[str, Any]], str | None] | None = None,
) -> None:
    """Route every error, ours, FastAPI's and unexpected ones, to a problem-details body.
    `describe(request, parameter, validator error)` may word a parameter's error better than
    the validator does (None keeps the validator's message)."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(
            request,
            error.status,
            error.detail,
            headers=error.headers,
            errors=error.errors,
            extensions=error.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # The location and message of each error; never the input echoed back.
        errors: list[dict[str, object]] = []
        for item in error.errors():
            parameter = ".".join(str(part) for part in item["loc"][1:])
            worded = describe(request, parameter, item) if describe else None
            errors.append({"parameter": parameter, "message": worded or item["msg"]})
        detail = "; ".join(f"{item['parameter']}: {item['message']}" for item in errors)
        return problem_response(request, 422, f"invalid parameter(s): {detail}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, str) else TITLES.get(error.status_code)
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Starlette names the methods of the first route on the path only; HEAD is a route
            # of its own beside each GET.
            headers["Allow"] = _allowed_methods(request)
        return problem_response(request, error.status_code, str(detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # The trace goes to the server's log (Starlette re-raises to uvicorn), never the body.
        return problem_response(request, 500, "the server could not answer this request")
