"""The read-only REST API over the lake, versioned under /v1.

Every answer that reads the lake carries an ETag made from the versions (size and modification
time) of the files it read, computed before reading them: a matching If-None-Match is answered
304 without touching the data, and a new materialization changes the tag on the next request.
Parsed files are cached under their version (see `annotation_pipelines.lake.LakeReader`), so
there is no stale cache to expire.
"""

import base64
import binascii
import datetime as dt
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, cast

import duckdb
import orjson
import polars as pl
from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotation_pipelines import lake as layout
from annotation_pipelines.api import parameters, problems
from annotation_pipelines.api.downloads import LakeFileResponse, RangeError
from annotation_pipelines.api.problems import Problem
from annotation_pipelines.api.tokens import TokenError, TokenStore
from annotation_pipelines.curation.masking import mask_personal_data
from annotation_pipelines.curation.privacy import pseudonymize
from annotation_pipelines.ingest.validation import DEFAULT_MAX_FIELD_BYTES
from annotation_pipelines.kinds import DEFAULT_KIND, VALUE_COLUMNS
from annotation_pipelines.lake import (
    FileVersion,
    LakeFileChanged,
    LakeFileError,
    LakeReader,
    content_tag,
)
from annotation_pipelines.settings import Settings, load_settings

_log = logging.getLogger(__name__)

API_VERSION = "v1"
DESCRIPTION = """Labels, quality, datasets and capacity from the annotation-pipelines lake.

Authenticate with `Authorization: Bearer <token>` (make one with
`annotation-pipelines token --scopes quality:read,...`). Errors are RFC 9457 problem details.
Responses carry an ETag; send it back in If-None-Match to get 304 when nothing changed.
Lists come in pages: pass an answer's `next_cursor` back as `cursor` for the next one (it is
null on the last). A cursor pages only what it was issued for: another endpoint, project, day,
range, filter or id is a 422 (a filter left out of the request is the cursor's). A capacity or
queue cursor is refused with 409 once its table is rewritten: start again without it. A labels
cursor is refused with 409 once a day it already served is rewritten: the problem names the day
(`rewritten_day`) and the `restart` range to page again. A query parameter an endpoint does not
take is a 422 naming it, and a filter value a capacity table does not hold is a 404 naming some
it does. A day with no data for the project (no partition that day, or none of its rows) is a
200 with no items, named in the answer's `days_without_data`, on every project endpoint; a day
that is not a date (YYYY-MM-DD) is a 422.
"""
DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
# A project, version or file name: one lake key segment (`lake.segment`), so a name the lake
# would refuse is a 422 naming the parameter, as any other bad name. No `..` (one dot at a time:
# the validator's regex has no look-ahead); the length is capped by NAME_MAX_LENGTH.
PROJECT_PATTERN = r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_=+-])*\.?$"
NAME_MAX_LENGTH = 128
# Each pattern in words: the validator's message quotes the regular expression.
PATTERN_WORDS = {
    DAY_PATTERN: "expected YYYY-MM-DD",
    PROJECT_PATTERN: "expected letters, digits and _ . = + -, starting with a letter or digit, "
    "without '..'",
}
# A dataset file's media type, by the end of its name.
FILE_MEDIA_TYPES = {
    "parquet": "application/vnd.apache.parquet",
    "jsonl": "application/x-ndjson",
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}
OTHER_FILE_MEDIA_TYPE = "application/octet-stream"
# The spec names what the card and the files are served as; FastAPI would say JSON.
CARD_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/markdown": {"schema": {"type": "string"}}}}
}
FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "content": {
            media.split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
            for media in [*FILE_MEDIA_TYPES.values(), OTHER_FILE_MEDIA_TYPE]
        }
    }
}


@dataclass(frozen=True)
class ProjectTables:
    """The lake tables a project's endpoints read: categorical projects have their own
    pipeline, every other kind shares one table per layer with a `kind` column."""

    labels: str
    quality: str
    scorecards: str
    queue: str


CATEGORICAL_TABLES = ProjectTables(
    labels="aggregated_labels",
    quality="quality_report",
    scorecards="annotator_scorecards",
    queue="reannotation_queue",
)
KIND_TABLES = ProjectTables(
    labels="kind_aggregated_labels",
    quality="kind_quality_report",
    scorecards="kind_scorecards",
    queue="kind_reannotation_queue",
)


QUALITY_TABLES = (CATEGORICAL_TABLES.quality, KIND_TABLES.quality)


# The day-partitioned tables the project endpoints read, for the readiness check.
SERVED_DAY_TABLES = tuple(
    dict.fromkeys(
        name
        for tables in (CATEGORICAL_TABLES, KIND_TABLES)
        for name in (tables.labels, tables.quality, tables.scorecards, tables.queue)
    )
)


def tables_for(kind: str) -> ProjectTables:
    return CATEGORICAL_TABLES if kind == DEFAULT_KIND else KIND_TABLES


def kind_label_columns(kind: str) -> tuple[str, ...]:
    """The columns a label of a non-categorical `kind` is served with, in order: the kind's
    value column(s) as its dataset snapshots export them, the numeric interval, the counts.
    kind_aggregated_labels holds every kind's columns, null outside their own kind."""
    bounds = ("lo", "hi") if kind == "numeric" else ()
    return ("task_id", "kind", *VALUE_COLUMNS[kind], "confidence", *bounds, "n_votes", "method")


# What builds an unpartitioned table a capacity endpoint serves, for its 404.
HOW_TO_BUILD = {
    "compute_capacity_forecast": "the weekly forecast_job (`dg launch --job forecast_job`)",
    "workforce_capacity_forecast": "the weekly forecast_job (`dg launch --job forecast_job`)",
    "workforce_plan": "the weekly forecast_job (`dg launch --job forecast_job`)",
    "procurement_plan": (
        "`dg launch --assets procurement_plan` (monthly on the 1st; it needs at least 42 days "
        "of compute_usage, and `make demo` builds it)"
    ),
}


@dataclass(frozen=True)
class PagedTable:
    """An unpartitioned table an endpoint serves in pages. `keys` order its rows (ties keep
    the file's order, which a cursor pinned to one file version makes stable); `column` names
    each row's series, which a client filters by as the query parameter `parameter` and which
    the endpoint's listing lists."""

    table: str
    keys: tuple[str, ...]
    column: str
    parameter: str
    listing: str  # the endpoint that lists the values of `parameter`


COMPUTE_FORECAST = PagedTable(
    "compute_capacity_forecast", ("id", "time"), "id", "id", "/v1/capacity/forecast/series"
)
WORKFORCE_FORECAST = PagedTable(
    "workforce_capacity_forecast",
    ("id", "time"),
    "id",
    "project",
    "/v1/workforce/forecast/projects",
)
WORKFORCE_PLAN = PagedTable(
    "workforce_plan", ("project",), "project", "project", "/v1/workforce/plan"
)
PROCUREMENT_PLAN = PagedTable(
    "procurement_plan",
    ("cluster", "accelerator_type", "scenario"),
    "cluster",
    "cluster",
    "/v1/capacity/procurement/clusters",
)
# How many of the values a table holds a 404 for an unknown one names.
UNKNOWN_SHOWN = 10


# What /v1/ready says of a failing check to a caller without a token.
NOT_READY = "not ready; a request with a bearer token is told which check failed"

# How long /v1/ready reuses its verdict on the lake's files: a probe every few seconds lists the
# served tables at most this often, and reads a footer only of a file version not read before.
READY_CHECK_SECONDS = 15.0


class Context:
    """What every request shares: settings, the lake reader, the token store, one DuckDB, the
    health of the lake's files."""

    def __init__(
        self,
        settings: Settings,
        reader: LakeReader | None = None,
        *,
        ready_check_seconds: float = READY_CHECK_SECONDS,
    ) -> None:
        self.settings = settings
        self.reader = reader or LakeReader.from_settings(
            settings, cache_entries=settings.api_cache_entries
        )
        self.tokens = TokenStore(settings.api_token_store)
        self.duckdb = duckdb.connect(":memory:")
        self.bodies = BodyCache(max_bytes=RESPONSE_CACHE_BYTES)
        self.health = LakeHealth(self.reader, every=ready_check_seconds)


class LakeHealth:
    """Whether the lake files the API serves can be read, for /v1/ready.

    A check reads the Parquet footer of the newest partition of every served table (and of
    every unpartitioned one), once per file version: a truncated or half-written file fails
    there. A file a request failed to read (a corrupt page behind a sound footer, an older
    partition) keeps the API unready until a later check reads it whole or finds it replaced or
    removed. Checks run at most every `every` seconds; between them the last verdict stands."""

    def __init__(self, reader: LakeReader, *, every: float) -> None:
        self._reader = reader
        self._every = every
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._sound: set[str] = set()  # tokens of the file versions whose footer was read
        self._broken: dict[str, LakeFileError] = {}  # by key: footers the last check failed
        self._failed: dict[str, LakeFileError] = {}  # by key: files requests failed to read

    def failed(self, error: LakeFileError) -> None:
        with self._lock:
            self._failed[error.key] = error

    def problems(self) -> list[LakeFileError]:
        """The served files that cannot be read, checking again when the verdict is due."""
        with self._lock:
            now = time.monotonic()
            due = self._checked_at is None or now - self._checked_at >= self._every
            if due:
                self._checked_at = now  # concurrent probes reuse the last verdict meanwhile
        if due:
            self._check()
        with self._lock:
            return list({**self._broken, **self._failed}.values())

    def _check(self) -> None:
        newest: list[FileVersion] = []
        for table in SERVED_DAY_TABLES:
            parts = self._reader.partitions(table)
            if parts:
                newest.append(parts[next(reversed(parts))])
        for table in HOW_TO_BUILD:
            version = self._reader.stat(layout.partition_key(table))
            if version is not None:
                newest.append(version)
        sound: set[str] = set()
        broken: dict[str, LakeFileError] = {}
        for version in newest:
            try:
                if version.token not in self._sound:
                    self._reader.check_footer(version)
                sound.add(version.token)
            except LakeFileError as error:
                broken[version.key] = error
        with self._lock:
            failed = dict(self._failed)
        still: dict[str, LakeFileError] = {}
        for key in failed:
            version = self._reader.stat(key)
            if version is None:
                continue  # removed: whatever replaces it is checked as any other file
            try:
                self._reader.frame(version)  # kept in the reader's cache for the next request
            except LakeFileError as error:
                still[key] = error
        with self._lock:
            self._sound, self._broken = sound, broken
            # A failure a request recorded during this check stands until the next one.
            self._failed = {
                **still,
                **{k: v for k, v in self._failed.items() if k not in failed},
            }


def lake_file_problem(error: LakeFileError) -> tuple[str, dict[str, object]]:
    """The detail and the error item of a problem body naming an unreadable lake file."""
    where = f"partition {error.partition} of {error.table}" if error.partition else error.table
    detail = f"{where} ({error.key}) cannot be read: {error.cause}; rematerialize it"
    item: dict[str, object] = {
        "table": error.table,
        "partition": error.partition,
        "file": error.key,
        "error": error.cause,
    }
    return detail, item


# Responses -----------------------------------------------------------------------------------

# Serialized answers kept per process: a page of 1,000 labels is about 160 kB.
RESPONSE_CACHE_BYTES = 64 << 20


class BodyCache:
    """Response bodies keyed by the file versions and parameters they were made from, bounded
    by their total size, least recently used first out. A key names every file version the
    body read, so a new materialization is a new key and a stale body is never served."""

    def __init__(self, *, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._bodies: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...], build: Callable[[], bytes]) -> bytes:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
                return body
        body = build()
        if len(body) > self._max_bytes // 8:
            return body  # one huge answer must not flush everything else
        with self._lock:
            if key not in self._bodies:
                self._bodies[key] = body
                self._bytes += len(body)
            while self._bytes > self._max_bytes:
                _, evicted = self._bodies.popitem(last=False)
                self._bytes -= len(evicted)
        return body


def _json_bytes(value: object) -> bytes:
    return orjson.dumps(value, default=str)


def _frame_json(frame: pl.DataFrame) -> bytes:
    # Polars writes rows straight to JSON (dates as ISO text, NaN as null), much faster than
    # building Python dicts for a page of a thousand rows.
    return frame.write_json().encode() if frame.height else b"[]"


def _items_body(frame: pl.DataFrame, **extra: object) -> bytes:
    parts = [b'{"items":', _frame_json(frame)]
    for name, value in extra.items():
        parts += [b",", _json_bytes(name), b":", _json_bytes(value)]
    parts.append(b"}")
    return b"".join(parts)


def _conditional(
    request: Request, versions: Iterable[FileVersion | str], *, variant: str = ""
) -> tuple[str, Response | None]:
    """The ETag of this request's answer, and a 304 when the client already has it."""
    query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
    tokens = [request.url.path, query, variant]
    tokens += [v.token if isinstance(v, FileVersion) else v for v in versions]
    tag = f'"{content_tag(tokens)}"'
    matches = request.headers.get("if-none-match", "")
    if tag in [candidate.strip().removeprefix("W/") for candidate in matches.split(",")]:
        return tag, Response(status_code=304, headers=_cache_headers(tag))
    return tag, None


def _cache_headers(tag: str) -> dict[str, str]:
    # Clients may keep a copy but must revalidate each time: a new materialization shows at once.
    return {"ETag": tag, "Cache-Control": "private, no-cache"}


def _answer(body: bytes, tag: str, *, media_type: str = "application/json") -> Response:
    return Response(content=body, media_type=media_type, headers=_cache_headers(tag))


# Parameters ----------------------------------------------------------------------------------


def _parse_day(value: str, *, parameter: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Problem(
            422,
            f"{parameter}={value!r} is not a date (YYYY-MM-DD)",
            errors=[{"parameter": parameter, "message": "expected YYYY-MM-DD"}],
        ) from None


def _range(
    start: str | None,
    end: str | None,
    *,
    available: list[str],
    max_days: int,
    from_cursor: bool = False,
) -> tuple[str, str]:
    """[start, end] as ISO days: defaults to the week ending at the freshest partition.

    A refusal names the parameter to change in `errors`, as every other 422 does: the range's
    own (`start`, `end`), or `cursor` for the range a cursor carries."""
    last = _parse_day(end, parameter="end") if end else None
    first = _parse_day(start, parameter="start") if start else None
    if last is None:
        last = dt.date.fromisoformat(available[-1]) if available else dt.date.today()
        if first is not None and first > last:
            last = first
    if first is None:
        first = last - dt.timedelta(days=min(max_days, 7) - 1)
    if first > last:
        raise Problem(
            422,
            f"start={first} is after end={last}",
            errors=[{"parameter": "cursor" if from_cursor else "start", "message": "after end"}],
        )
    if (last - first).days + 1 > max_days:
        spans = (last - first).days + 1
        raise Problem(
            422,
            f"the range {first}..{last} spans {spans} days; at most {max_days} per request",
            errors=[
                {
                    "parameter": "cursor" if from_cursor else "end" if end else "start",
                    "message": f"the range spans {spans} days; at most {max_days}",
                }
            ],
        )
    return first.isoformat(), last.isoformat()


def days_without_data(first: str, last: str, with_data: Iterable[str]) -> list[str]:
    """The days from `first` through `last` (ISO days) not in `with_data`: an answer's
    `days_without_data`, which every project endpoint gives, so that an empty page of a day
    the lake holds nothing for the project is told apart from a filter that left no rows."""
    have = set(with_data)
    origin, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    days = (origin + dt.timedelta(n) for n in range((end - origin).days + 1))
    return [day.isoformat() for day in days if day.isoformat() not in have]


# Hex digits of one day's digest in a labels cursor: enough that a rewrite goes unnoticed once
# in four billion, short enough that a 92-day range keeps the cursor well under 2 KB.
DAY_DIGEST_WIDTH = 8

# The endpoints whose cursors are not named after a table (the capacity ones are).
LABELS_VIEW = "labels"
QUEUE_VIEW = "queue"


def _opaque(fields: object) -> str:
    """A cursor as a client holds it: its fields' JSON, base64url without padding."""
    return base64.urlsafe_b64encode(_json_bytes(fields)).decode().rstrip("=")


def _opened(cursor: str) -> object:
    """The fields of an `_opaque` cursor; what is not one raises one of `_NOT_A_CURSOR`."""
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


# What a cursor that is not one the API issued raises while it is read.
_NOT_A_CURSOR = (binascii.Error, ValueError, TypeError, UnicodeDecodeError)


def _malformed() -> Problem:
    return Problem(
        422,
        "cursor is not one this API issued; start again without it",
        errors=[{"parameter": "cursor", "message": "malformed cursor"}],
    )


def _open_cursor(cursor: str, *, view: str) -> dict[str, object]:
    """The fields of a cursor the endpoint `view` issued. Every cursor names the endpoint that
    issued it (`view`) and holds what its rows were chosen by (`of`: the project, day or
    version, filters); one of another endpoint is a 422, never read as a position in rows it
    does not index."""
    try:
        fields = _opened(cursor)
    except _NOT_A_CURSOR:
        raise _malformed() from None
    if isinstance(fields, list) and view == LABELS_VIEW:
        # Such a cursor does not say which project it pages: read on another project it served
        # nothing, or that project's rows again, as if they were the rest.
        raise Problem(
            422,
            "the cursor was issued by an earlier version of this API and does not say which "
            "project it pages; start again without it",
            errors=[{"parameter": "cursor", "message": "cursor of an earlier API version"}],
        )
    if not (
        isinstance(fields, dict)
        and isinstance(fields.get("view"), str)
        and isinstance(fields.get("of"), dict)
    ):
        raise _malformed()
    if fields["view"] != view:
        raise Problem(
            422,
            "the cursor belongs to another endpoint; start again without it",
            errors=[{"parameter": "cursor", "message": "cursor of another endpoint"}],
        )
    return fields


def _held_to(
    bound: Mapping[str, object],
    asked: Mapping[str, object],
    *,
    fixed: frozenset[str] = frozenset(),
    called: dict[str, str] | None = None,
) -> None:
    """Refuses (422) a cursor used with another value of what it is `bound` to. `asked` holds
    the request's values, None where the request leaves them to the cursor; `fixed` names
    path parameters, which a request cannot leave out; `called` names a value in the message
    (`start` and `end` are the "day range")."""
    for name, value in asked.items():
        if name not in bound:
            raise _malformed()
        if value is None or value == bound[name]:
            continue
        what = (called or {}).get(name, name)
        advice = "start again without it" if name in fixed else f"drop it or the {what}"
        raise Problem(
            422,
            f"the cursor belongs to another {what}; {advice}",
            errors=[{"parameter": "cursor", "message": f"another {what}"}],
        )


@dataclass(frozen=True)
class LabelCursor:
    """Where the next page of labels starts: what the pages hold (the project, the range and
    the filters of the request that issued it), the keyset position (day, task_id), and
    `served`, one digest per day from `start` through `day` of the versions of that day's
    labels and quality report when the cursor was issued."""

    project: str
    start: str
    end: str
    min_confidence: float
    gated: bool
    day: str
    task_id: str
    served: str

    def bound(self) -> dict[str, object]:
        return {
            "project": self.project,
            "start": self.start,
            "end": self.end,
            "min_confidence": self.min_confidence,
            "gated": self.gated,
        }


def _label_cursor_max_length(max_days: int) -> int:
    """The longest labels cursor the API issues: base64 of its JSON, with the longest project
    name, a task id of the longest field ingest keeps (JSON may double it with escapes) and a
    digest per day of the longest range served, so no cursor it gives is refused when sent
    back."""
    longest = 256 + NAME_MAX_LENGTH + 2 * DEFAULT_MAX_FIELD_BYTES + DAY_DIGEST_WIDTH * max_days
    return 4 * math.ceil(longest / 3)


def _encode_cursor(cursor: LabelCursor) -> str:
    return _opaque(
        {
            "view": LABELS_VIEW,
            "of": cursor.bound(),
            "day": cursor.day,
            "task_id": cursor.task_id,
            "served": cursor.served,
        }
    )


def _decode_cursor(cursor: str) -> LabelCursor:
    fields = _open_cursor(cursor, view=LABELS_VIEW)
    bound = fields["of"]
    try:
        if set(fields) != {"view", "of", "day", "task_id", "served"} or not isinstance(bound, dict):
            raise TypeError
        if set(bound) != {"project", "start", "end", "min_confidence", "gated"}:
            raise TypeError
        project, start, end = bound["project"], bound["start"], bound["end"]
        day, task_id, served = fields["day"], fields["task_id"], fields["served"]
        min_confidence, gated = bound["min_confidence"], bound["gated"]
        if not all(isinstance(value, str) for value in (project, start, end, day, task_id)):
            raise TypeError
        first, _, current = (dt.date.fromisoformat(str(value)) for value in (start, end, day))
        # bool is an int to Python: the flag must be one, the threshold must not.
        if not isinstance(gated, bool) or isinstance(min_confidence, bool):
            raise TypeError
        if not isinstance(min_confidence, int | float) or not 0 <= min_confidence <= 1:
            raise TypeError
        days = (current - first).days + 1
        if not isinstance(served, str) or days < 1 or len(served) != days * DAY_DIGEST_WIDTH:
            raise TypeError
        if served.strip("0123456789abcdef"):
            raise ValueError
    except _NOT_A_CURSOR:
        raise _malformed() from None
    return LabelCursor(
        str(project),
        str(start),
        str(end),
        float(min_confidence),
        gated,
        str(day),
        str(task_id),
        served,
    )


@dataclass(frozen=True)
class PageCursor:
    """Where the next page of a paged table starts: the view it pages (a table, a table's
    listing, a project's queue), what the rows were chosen by (`bound`: the filter, project
    or day of the request that issued it), the fingerprint of the file version it was issued
    for, and the row offset in that version's order."""

    view: str
    bound: dict[str, str | None]
    version: str
    offset: int


def _version_fingerprint(*versions: FileVersion | None, width: int = 16) -> str:
    # A digest, not the tokens: a token names the lake key, which a client need not learn.
    return content_tag([version.token if version else "-" for version in versions])[:width]


def _encode_page_cursor(cursor: PageCursor) -> str:
    return _opaque(
        {"view": cursor.view, "of": cursor.bound, "version": cursor.version, "at": cursor.offset}
    )


def _decode_page_cursor(cursor: str, *, view: str) -> PageCursor:
    fields = _open_cursor(cursor, view=view)
    try:
        if set(fields) != {"view", "of", "version", "at"}:
            raise TypeError
        bound, version, offset = fields["of"], fields["version"], fields["at"]
        if not isinstance(bound, dict) or not isinstance(version, str):
            raise TypeError
        if not all(value is None or isinstance(value, str) for value in bound.values()):
            raise TypeError
        # bool is an int to Python; a cursor the API issued always holds a positive offset.
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 1:
            raise TypeError
    except _NOT_A_CURSOR:
        raise _malformed() from None
    return PageCursor(view, bound, version, offset)


def _page_body(
    frame: pl.DataFrame,
    *,
    offset: int,
    limit: int,
    cursor_at: Callable[[int], str],
    **extra: object,
) -> bytes:
    """`limit` rows of `frame` from `offset`, with `extra` fields, the `total` rows, whether
    more follow and the cursor of the next page (`cursor_at` its offset), null on the last."""
    following = offset + limit
    next_cursor = cursor_at(following) if following < frame.height else None
    return _items_body(
        frame.slice(offset, limit),
        **extra,
        total=frame.height,
        truncated=next_cursor is not None,
        next_cursor=next_cursor,
    )


def _check_offset(offset: int, rows: int) -> None:
    if offset and offset >= rows:
        # Only a cursor made by hand points at or past the end: the last page has none.
        raise Problem(
            422,
            "cursor is not one this API issued; start again without it",
            errors=[{"parameter": "cursor", "message": "cursor past the last row"}],
        )


# The application -----------------------------------------------------------------------------


class NoSniffing:
    """Every answer says `X-Content-Type-Options: nosniff`: a body holds what annotators wrote
    (a card's labels, served inline as Markdown), and a browser must never guess it is HTML.
    Plain ASGI rather than an `http` middleware, which would put a task and a queue between
    every endpoint and the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_marked)


_DEFAULT_PAGE = 1000


def create_app(
    settings: Settings | None = None,
    *,
    reader: LakeReader | None = None,
    ready_check_seconds: float = READY_CHECK_SECONDS,
) -> FastAPI:
    """The API on `settings`' lake (default: the process's settings)."""
    context = Context(settings or load_settings(), reader, ready_check_seconds=ready_check_seconds)
    app = FastAPI(
        title="annotation-pipelines API",
        version=API_VERSION,
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
        # Every endpoint refuses the query parameters it does not take (see `parameters`).
        dependencies=[Depends(parameters.refuse_unknown)],
        responses=problems.OPENAPI_RESPONSES,
    )
    app.state.context = context
    problems.install(app, describe=_describe)

    @app.exception_handler(LakeFileError)
    async def _unreadable(request: Request, error: LakeFileError) -> Response:
        # The file stays broken for every request that needs it: unready until it is fixed.
        # One replaced under a request, or not given this time, is not broken.
        if not isinstance(error, LakeFileChanged):
            context.health.failed(error)
        detail, item = lake_file_problem(error)
        return problems.problem_response(request, 503, detail, errors=[item])

    @app.exception_handler(TokenError)
    async def _tokens_unreadable(request: Request, error: TokenError) -> Response:
        # A store edited into a bad shape locks everyone out until it is fixed: an outage of
        # the API's own files (503, as /v1/ready says), named in the server log, not the body.
        _log.error("%s", error)
        return problems.problem_response(
            request, 503, "the token store cannot be read; the server log names the entry"
        )

    if context.settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(context.settings.api_cors_origins),
            allow_methods=["GET", "HEAD"],
            # Range and If-Range resume a download; its answer says which part it holds.
            allow_headers=["Authorization", "If-None-Match", "Range", "If-Range"],
            expose_headers=["ETag", "Content-Range", "Accept-Ranges", "Content-Disposition"],
        )
    app.add_middleware(NoSniffing)
    _routes(app, context)
    _answer_head_as_get(app)
    return app


def _describe(request: Request, parameter: str, error: Mapping[str, Any]) -> str | None:
    """A parameter's error in words where the validator's message is a regular expression or
    names one bound of a range."""
    if error["type"] == "string_pattern_mismatch":
        return PATTERN_WORDS.get(str((error.get("ctx") or {}).get("pattern")))
    return parameters.range_message(request, parameter, str(error["type"]))


def _answer_head_as_get(app: FastAPI) -> None:
    """HEAD on every GET endpoint that has no HEAD of its own: the same checks and headers,
    the body left out by the server (uvicorn sends none for HEAD). HTTP asks it wherever GET
    is answered, and uptime checkers and caches probe with it; FastAPI, unlike Starlette's own
    routes, adds no HEAD. Left out of the OpenAPI spec, where it would double every path."""
    routes = [route for route in app.routes if isinstance(route, APIRoute)]
    own_head = {route.path for route in routes if "HEAD" in (route.methods or ())}
    for route in routes:
        if "GET" in (route.methods or ()) and route.path not in own_head:
            app.add_api_route(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                response_class=route.response_class,
                name=f"{route.name}_head",
                include_in_schema=False,
            )


def _routes(app: FastAPI, context: Context) -> None:
    reader = context.reader
    settings = context.settings

    # The token checks are `async`: they do no lake I/O (the store is one small local file,
    # re-read only when it changes), so they run on the event loop instead of taking a
    # threadpool hop each. The hot read endpoints (labels, scorecards) are `async` and go
    # through `on_lake`; the others are synchronous and run in the threadpool.
    async def caller(request: Request) -> frozenset[str]:
        return authenticated(request)

    def authenticated(request: Request) -> frozenset[str]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="annotation-pipelines"'}
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(401, "a bearer token is required", headers=challenge)
        scopes = context.tokens.scopes(token.strip())
        if scopes is None:
            raise Problem(401, "the bearer token is not valid", headers=challenge)
        return scopes

    def scope(name: str) -> Callable[[frozenset[str]], Awaitable[frozenset[str]]]:
        async def check(scopes: Annotated[frozenset[str], Depends(caller)]) -> frozenset[str]:
            if name not in scopes:
                raise Problem(403, f"the token lacks the scope {name!r}")
            return scopes

        return check

    async def on_lake(work: Callable[[], Response]) -> Response:
        """Run `work`, which reads the lake, where it costs least. On a local lake a request
        is a few stat calls and slices of cached frames, tens of microseconds, so it runs on
        the event loop: a threadpool hop would cost more than the work and its GIL handoffs
        show in the tail latency. On S3 a listing is a network round trip: the threadpool."""
        if reader.is_local:
            return work()
        return await run_in_threadpool(work)

    def projects_index() -> tuple[dict[str, dict[str, FileVersion]], dict[str, dict[str, object]]]:
        """The quality reports of both pipelines (categorical and every other kind), by table
        and day, and every project they name with its kind and first and last reported day.
        A request lists each quality table here, once, and passes the listing on."""
        reports = {table: reader.partitions(table) for table in QUALITY_TABLES}
        categorical = list(reports[CATEGORICAL_TABLES.quality].values())
        kinds = list(reports[KIND_TABLES.quality].values())
        versions = [*categorical, *kinds]

        def build() -> dict[str, dict[str, object]]:
            reports = []
            report = reader.frames(categorical)
            if report.height:
                reports.append(report.select("project", "day", kind=pl.lit(DEFAULT_KIND)))
            report = reader.frames(kinds)
            if report.height:
                reports.append(report.select("project", "day", "kind"))
            if not reports:
                return {}
            summary = (
                pl.concat(reports)
                .group_by("project")
                .agg(
                    kind=pl.col("kind").sort().first(),
                    first_day=pl.col("day").min().cast(pl.String),
                    last_day=pl.col("day").max().cast(pl.String),
                    days=pl.col("day").n_unique(),
                )
                .sort("project")
            )
            return {row["project"]: row for row in summary.iter_rows(named=True)}

        return reports, reader.cached(("projects", *[v.token for v in versions]), build)

    def known_project(project: str) -> tuple[ProjectTables, dict[str, FileVersion]]:
        """The tables of `project` (by its kind) and the day partitions of its quality table;
        404 when no quality report names it."""
        reports, index = projects_index()
        if project not in index:
            raise Problem(404, f"no project {project!r} in the lake")
        tables = tables_for(str(index[project]["kind"]))
        return tables, reports[tables.quality]

    ProjectPath = Annotated[
        str,
        Path(pattern=PROJECT_PATTERN, max_length=NAME_MAX_LENGTH, description="The project name."),
    ]
    Day = Annotated[str | None, Query(pattern=DAY_PATTERN, description="YYYY-MM-DD")]
    Limit = Annotated[int, Query(ge=1, le=settings.api_max_page_size, description="Rows per page.")]
    # An operator's lower cap bounds the default page too, not only a `limit` asked for.
    default_page = min(_DEFAULT_PAGE, settings.api_max_page_size)
    PageCursorParameter = Annotated[
        str | None,
        Query(
            max_length=2048,
            description="`next_cursor` of the previous page; omit it for the first page.",
        ),
    ]

    # Health -------------------------------------------------------------------------------

    @app.get(f"/{API_VERSION}/health", tags=["health"])
    async def health(request: Request) -> Response:
        """Liveness: `{"status": "ok"}` while the process answers, for a load balancer; no
        token needed, and nothing else is said without one.

        With a valid bearer token (any scope) the answer also has `lake_reachable` and
        `tables`, the freshest partition and last write of every lake table (`status` is
        `degraded` when the lake cannot be reached). An invalid token is a 401."""
        if "authorization" not in request.headers:
            return Response(_json_bytes({"status": "ok"}), media_type="application/json")
        await caller(request)

        def detailed() -> Response:
            reachable = reader.reachable()
            body = {
                "status": "ok" if reachable else "degraded",
                "lake_reachable": reachable,
                "tables": reader.freshest() if reachable else {},
            }
            return Response(_json_bytes(body), media_type="application/json")

        return await on_lake(detailed)

    @app.get(f"/{API_VERSION}/ready", tags=["health"])
    def ready(request: Request) -> Response:
        """Ready to serve: the lake is reachable, the token store is readable, and the files
        the API serves can be read (the newest partition of each table, checked every 15 s at
        most, and any file a request failed to read). Otherwise 503 with a problem body.

        No token needed: without one the answer says only ready or not ready. With a valid
        bearer token (any scope) it also has the `checks`, and a 503 names each unreadable
        file (table, partition, file, error). An invalid token is a 401."""
        # The lake's table names, partitions and file keys are for callers the API knows; a
        # probe without a token learns only whether to route traffic here.
        detailed = "authorization" in request.headers
        if detailed:
            authenticated(request)
        checks = {"lake": reader.reachable(), "tokens": context.tokens.readable()}
        unreadable: list[LakeFileError] = []
        if checks["lake"]:
            try:
                unreadable = context.health.problems()
            except OSError:  # the listing itself failed
                checks["lake"] = False
            checks["lake_files"] = checks["lake"] and not unreadable
        if all(checks.values()):
            body: dict[str, object] = {"status": "ready"}
            if detailed:
                body["checks"] = checks
            return Response(_json_bytes(body), media_type="application/json")
        if not detailed:
            return problems.problem_response(request, 503, NOT_READY)
        found = [lake_file_problem(error) for error in unreadable]
        failing = [name for name, ok in checks.items() if not ok]
        detail = "; ".join(d for d, _ in found) or f"not ready: {', '.join(failing)} failed"
        return problems.problem_response(
            request, 503, detail, errors=[item for _, item in found], extensions={"checks": checks}
        )

    # Projects -----------------------------------------------------------------------------

    @app.get(f"/{API_VERSION}/projects", tags=["projects"])
    def projects(request: Request, _: Annotated[frozenset[str], Depends(caller)]) -> Response:
        """Every project in the lake, with its `kind` (categorical, multilabel, numeric,
        ranking, pairwise, spans, boxes, text) and the days it has quality reports for."""
        reports, index = projects_index()
        versions = [v for table in reports.values() for v in table.values()]
        tag, cached = _conditional(request, versions)
        return cached or _answer(_json_bytes({"items": list(index.values())}), tag)

    # Labels -------------------------------------------------------------------------------

    def labels_by_project(version: FileVersion) -> dict[str, pl.DataFrame]:
        def build() -> dict[str, pl.DataFrame]:
            frame = reader.frame(version)
            return {
                key[0]: own_columns(part).sort("task_id")
                for key, part in frame.partition_by("project", as_dict=True).items()
            }

        return reader.cached(("labels", version.token), build)

    def own_columns(labels: pl.DataFrame) -> pl.DataFrame:
        """One project's labels without the columns of the kinds it is not (a categorical
        table has no `kind` column and is served as it is). A `text` project's answers are
        annotator-written free text, masked as its dataset snapshots mask them; this runs once
        per file version, whose parsed pages are cached."""
        if "kind" not in labels.columns or labels.height == 0:
            return labels
        kind = str(labels["kind"][0])
        wanted = kind_label_columns(kind)
        own = labels.select([column for column in (*wanted, "project") if column in labels.columns])
        if kind == "text":
            own, _ = mask_personal_data(
                own, columns=("text",), phone_region=settings.phone_region, structured=True
            )
        return own

    def label_page(
        project: str,
        *,
        days: list[tuple[str, FileVersion]],
        first: str,
        last: str,
        after: tuple[str, str | None],
        min_confidence: float,
        gated: bool,
        limit: int,
        verdicts: dict[str, bool],
        held_back_days: list[str],
        without_data: list[str],
        served_through: Callable[[str], str],
    ) -> bytes:
        """One page of labels as JSON: rows after the keyset position `after`, in (day,
        task_id) order, each with its day's gate verdict, with the cursor of the next page
        when there is one, which carries `served_through(its day)`."""
        after_day, after_task = after
        pages: list[pl.DataFrame] = []
        taken = 0
        for current, version in days:
            frame = labels_by_project(version).get(project)
            if frame is None:
                continue
            if current == after_day and after_task is not None:
                frame = frame.slice(frame["task_id"].search_sorted(after_task, side="right"))
            if min_confidence > 0:
                frame = frame.filter(pl.col("confidence") >= min_confidence)
            frame = frame.head(limit + 1 - taken)
            if frame.height:
                pages.append(
                    frame.drop("project").with_columns(
                        day=pl.lit(current),
                        gates_passed=pl.lit(verdicts.get(current), dtype=pl.Boolean),
                    )
                )
                taken += frame.height
            if taken > limit:
                break
        page = pl.concat(pages) if pages else pl.DataFrame()
        next_cursor = None
        if page.height > limit:
            page = page.head(limit)
            last_row = page.row(-1, named=True)
            next_cursor = _encode_cursor(
                LabelCursor(
                    project=project,
                    start=first,
                    end=last,
                    min_confidence=min_confidence,
                    gated=gated,
                    day=last_row["day"],
                    task_id=last_row["task_id"],
                    served=served_through(last_row["day"]),
                )
            )
        return _items_body(
            page,
            project=project,
            start=first,
            end=last,
            next_cursor=next_cursor,
            held_back_days=held_back_days,
            days_without_data=without_data,
        )

    def gate_verdicts(
        reports: dict[str, FileVersion], days: list[str], project: str
    ) -> dict[str, bool]:
        """`gates_passed` of `project` on each of `days` that its quality `reports` have."""
        found = {}
        for day in days:
            if day not in reports:
                continue

            def build(version: FileVersion = reports[day]) -> dict[str, bool]:
                frame = reader.frame(version)
                if "gates_passed" not in frame.columns:
                    return {}
                return dict(frame.select("project", "gates_passed").iter_rows())

            verdict = reader.cached(("gates", reports[day].token), build).get(project)
            if verdict is not None:
                found[day] = bool(verdict)
        return found

    @app.get(f"/{API_VERSION}/projects/{{project}}/labels", tags=["labels"])
    async def labels(
        request: Request,
        project: ProjectPath,
        _: Annotated[frozenset[str], Depends(scope("labels:read"))],
        day: Day = None,
        start: Day = None,
        end: Day = None,
        min_confidence: Annotated[
            float,
            Query(
                ge=0.0,
                le=1.0,
                allow_inf_nan=False,
                description="Only labels at least this confident (0 to 1).",
            ),
        ] = 0.0,
        limit: Limit = default_page,
        cursor: Annotated[
            str | None, Query(max_length=_label_cursor_max_length(settings.api_max_days))
        ] = None,
        gated: Annotated[
            bool,
            Query(description="Only days whose quality gates passed (`gates_passed` true)."),
        ] = False,
    ) -> Response:
        """Aggregated labels of a project, by day (or a day range), ordered by (day, task_id).

        Pages follow `next_cursor`, a keyset position: a partition landing while a client
        pages never shifts or repeats rows of the pages already read. A cursor also holds a
        digest of the days it has served (through the day of its last row): once one of them
        is rewritten (late rows rebuild its labels, or a re-run quality report changes its
        verdict), the cursor is answered 409 with the earliest such day as `rewritten_day` and
        `restart`, the `start` and `end` to page again from that day without cursor (or start
        again without cursor). A day after the cursor's is served as it is when reached.

        A cursor pages only the project, range, `min_confidence` and `gated` it was issued
        for: left out of the request they are the cursor's, and another value (or another
        project, or a cursor of another endpoint) is a 422. A cursor of an earlier version of
        the API, which did not hold its project, is a 422 too: start again without it.

        Every item has `gates_passed`, its day's quality gate verdict (as `/quality` gives
        it): false for a day whose gates failed, which the curated datasets hold back, null
        for a day with no quality report yet. The page's `held_back_days` lists the days of
        the range the curated datasets hold back: those whose gates failed and those with no
        quality report. With `gated=true` only the days whose gates passed are served.
        `days_without_data` lists the days of the range that hold no label of the project (no
        partition, or none of its rows): a range of such days is a 200 with no items.

        A categorical project's item has `task_id`, `label`, `confidence`, `n_votes`, `is_tie`,
        `method`, `day`. Any other kind's item has `task_id`, `kind`, the kind's value
        field(s) in the JSON its dataset snapshots export, `confidence`, `n_votes`, `method`,
        `day`:

        - multilabel: `labels`, a list of labels;
        - numeric: `value`, with its interval `lo`, `hi`;
        - ranking: `ranking`, item ids best first;
        - pairwise: `left`, `right`, `winner` (`left`, `right` or `tie`);
        - spans: `spans`, a list of `{start, end, label, confidence}` (character offsets, end
          exclusive);
        - boxes: `boxes`, a list of `{label, x_min, y_min, x_max, y_max, confidence}`;
        - text: `text`, with e-mail addresses and phone numbers (read in the configured phone
          region) masked as `[redacted]`, as its dataset snapshots export it.
        """
        return await on_lake(
            lambda: labels_answer(
                request,
                project,
                day=day,
                start=start,
                end=end,
                min_confidence=min_confidence,
                limit=limit,
                cursor=cursor,
                gated=gated,
            )
        )

    def labels_answer(
        request: Request,
        project: str,
        *,
        day: str | None,
        start: str | None,
        end: str | None,
        min_confidence: float,
        limit: int,
        cursor: str | None,
        gated: bool,
    ) -> Response:
        tables, reports = known_project(project)
        parts = reader.partitions(tables.labels)
        if day is not None and (start or end):
            raise Problem(
                422,
                "give either day or start/end, not both",
                errors=[{"parameter": "day", "message": "given with start/end; give one"}],
            )
        served: str | None = None
        if cursor is not None:
            position = _decode_cursor(cursor)
            # A filter the request leaves out is the cursor's; one it gives must be the same.
            given = request.query_params
            _held_to(
                position.bound(),
                {
                    "project": project,
                    "start": day or start,
                    "end": day or end,
                    "min_confidence": min_confidence if "min_confidence" in given else None,
                    "gated": gated if "gated" in given else None,
                },
                fixed=frozenset({"project"}),
                called={"start": "day range", "end": "day range"},
            )
            first, last, after_day = position.start, position.end, position.day
            after_task: str | None = position.task_id
            served = position.served
            min_confidence, gated = position.min_confidence, position.gated
            # The API only issues cursors for ranges it served, but a client can make one: its
            # range is held to the same limits as a range asked for directly.
            _range(
                first, last, available=list(parts), max_days=settings.api_max_days,
                from_cursor=True,
            )  # fmt: skip
        else:
            if day is not None:
                _parse_day(day, parameter="day")
                first = last = day
            else:
                first, last = _range(
                    start, end, available=list(parts), max_days=settings.api_max_days
                )
                if start is None and end is None:
                    first = last  # no range asked: the freshest day
            after_day, after_task = first, None

        origin = dt.date.fromisoformat(first)
        # Each day from `first` with the digest of its labels and quality report versions,
        # through the last day any digest is asked of (the range's, or a cursor's past it):
        # computed once per request, when first asked, and sliced per `through`.
        digests: list[tuple[str, str]] = []

        def day_digests(through: str) -> list[tuple[str, str]]:
            """Each day from `first` through `through` (the days a cursor at `through` has
            served) with its digest."""
            days = (dt.date.fromisoformat(through) - origin).days + 1
            if not digests:
                every = max(days, (dt.date.fromisoformat(max(last, after_day)) - origin).days + 1)
                digests.extend(
                    (d, _version_fingerprint(parts.get(d), reports.get(d), width=DAY_DIGEST_WIDTH))
                    for d in ((origin + dt.timedelta(n)).isoformat() for n in range(every))
                )
            return digests[: max(days, 0)]

        def served_through(through: str) -> str:
            return "".join(digest for _, digest in day_digests(through))

        if served is not None:
            # The pages already read hold these days as they were: rows of a day rewritten since
            # (late rows, a re-run aggregation or quality report) would be mixed with the old
            # ones without the client knowing, so it is told which day to read again. A day
            # after the cursor's is read in its new version, as a partition landing is.
            for n, (rewritten, digest) in enumerate(day_digests(after_day)):
                if served[n * DAY_DIGEST_WIDTH : (n + 1) * DAY_DIGEST_WIDTH] == digest:
                    continue
                raise Problem(
                    409,
                    f"labels of {rewritten}, a day this cursor already served, were rewritten "
                    "(late rows, a re-run aggregation or quality report) after it was issued; "
                    f"page again from that day with start={rewritten}&end={last} without "
                    "cursor, or start again without cursor",
                    errors=[{"parameter": "cursor", "message": "cursor of a rewritten day"}],
                    extensions={
                        "rewritten_day": rewritten,
                        "restart": {"start": rewritten, "end": last},
                    },
                )
        in_range = [d for d in parts if first <= d <= last]
        verdicts = gate_verdicts(reports, in_range, project)
        # Labels rewritten after their day's report (late rows, a re-run aggregation) are not
        # what the verdict saw: no verdict until the report is rebuilt, as for the snapshots.
        verdicts = {
            d: passed for d, passed in verdicts.items() if parts[d].mtime_ns <= reports[d].mtime_ns
        }
        # The curated datasets hold back every judged day without a passing verdict.
        held_back = [d for d in in_range if verdicts.get(d) is not True]
        days = [d for d in in_range if d >= after_day and (verdicts.get(d) or not gated)]
        # A day's gate verdict is part of the answer: a re-run quality report is a new ETag.
        # Every day's labels are too (whether it holds rows of the project), served or not.
        versions = tuple(
            [parts[d].token for d in in_range]
            + [reports[d].token for d in in_range if d in reports]
        )
        tag, cached = _conditional(request, versions)
        if cached:
            return cached
        key = (
            "labels",
            project,
            first,
            last,
            after_day,
            after_task,
            min_confidence,
            limit,
            gated,
            # The next cursor's digest covers days whose labels are not in `versions` (those
            # before this page's, those `gated` leaves out).
            served_through(last),
        )

        def build() -> bytes:
            return label_page(
                project,
                days=[(d, parts[d]) for d in days],
                first=first,
                last=last,
                after=(after_day, after_task),
                min_confidence=min_confidence,
                gated=gated,
                limit=limit,
                verdicts=verdicts,
                held_back_days=held_back,
                without_data=days_without_data(
                    first,
                    last,
                    (d for d in in_range if project in reader.distinct(parts[d], "project")),
                ),
                served_through=served_through,
            )

        body = context.bodies.get((*key, *versions), build)
        return _answer(body, tag)

    # Quality ------------------------------------------------------------------------------

    @app.get(f"/{API_VERSION}/projects/{{project}}/quality", tags=["quality"])
    def quality(
        request: Request,
        project: ProjectPath,
        _: Annotated[frozenset[str], Depends(scope("quality:read"))],
        start: Day = None,
        end: Day = None,
    ) -> Response:
        """Quality summaries of a project over a day range, each day with its gate results.
        A non-categorical project's days carry its `kind`, the agreement `distance` and its
        gold metric (`gold_metric_name`, `gold_metric`; `gold_accuracy` is the same figure on
        [0, 1]) instead of the categorical Fleiss' kappa and percent agreement.
        `days_without_data` lists the days of the range with no quality report of the project.
        `summary` counts the reported `days`: `days_passed` and `days_failed` by their gates,
        and `days_without_verdict` those whose report has no gate verdict (`gates_passed`
        null: reports older than the gates), counted in neither."""
        reports = known_project(project)[1]
        first, last = _range(start, end, available=list(reports), max_days=settings.api_max_days)
        parts = {d: v for d, v in reports.items() if first <= d <= last}
        tag, cached = _conditional(request, parts.values())
        if cached:
            return cached
        report = reader.frames(parts.values())
        rows: pl.DataFrame = pl.DataFrame()
        if report.height:
            # Parameterized SQL over the day range, in process; nothing from the request is
            # ever spliced into the query text.
            cursor = context.duckdb.cursor()
            try:
                cursor.register("quality_report", report.to_arrow())
                # A relation, not a DB-API result: DuckDB hands its Arrow over without copying.
                table = cursor.sql(
                    "SELECT * FROM quality_report WHERE project = ? "
                    "AND day BETWEEN CAST(? AS DATE) AND CAST(? AS DATE) ORDER BY day",
                    params=[project, first, last],
                ).to_arrow_table()
                rows = pl.DataFrame(pl.from_arrow(table))
            finally:
                cursor.close()
        if rows.height:
            rows = rows.with_columns(
                failed_gates=pl.col("failed_gates")
                .fill_null("")
                .str.split(",")
                .list.eval(pl.element().filter(pl.element() != ""))
            )
        passed = int(rows["gates_passed"].sum()) if rows.height else 0
        # A report older than the gates has no verdict: neither passed nor failed.
        unjudged = int(rows["gates_passed"].is_null().sum()) if rows.height else 0
        summary = {
            "days": rows.height,
            "days_passed": passed,
            "days_failed": rows.height - passed - unjudged,
            "days_without_verdict": unjudged,
        }
        reported = rows["day"].cast(pl.String).to_list() if rows.height else []
        body = _items_body(
            rows,
            project=project,
            start=first,
            end=last,
            summary=summary,
            days_without_data=days_without_data(first, last, reported),
        )
        return _answer(body, tag)

    def one_day(table: str, day: str | None) -> tuple[str, FileVersion | None]:
        """The day asked for (default: the table's freshest, today before it has any) and its
        partition of `table`, None when the lake has none: a day without data is an empty
        answer that says so, as on the range endpoints, not a 404."""
        parts = reader.partitions(table)
        if day is None:
            day = next(reversed(parts)) if parts else dt.date.today().isoformat()
        _parse_day(day, parameter="day")
        return day, parts.get(day)

    @app.get(f"/{API_VERSION}/projects/{{project}}/scorecards", tags=["quality"])
    async def scorecards(
        request: Request,
        project: ProjectPath,
        scopes: Annotated[frozenset[str], Depends(scope("quality:read"))],
        day: Day = None,
    ) -> Response:
        """Annotator scorecards of a project for a day (default: the freshest). Annotator ids
        are pseudonyms, the same as in the reports, unless the token has `annotators:raw`.

        A categorical scorecard's `consensus_agreement` and `spammer_score` read only the
        `n_consensus_compared` judgments on tasks someone else judged too or with gold; both are
        null when there are none (a lone annotator's consensus is their own vote).

        A non-categorical project's scorecard has `kind`, `reliability`, `consensus_agreement`,
        `consensus_alpha`, the kind's gold metric (`gold_metric_name`, `gold_metric`,
        `gold_score` on [0, 1]), `box_looseness` (boxes) and `rating_bias` (numeric), with
        `flagged` and `flag_reason` as for categorical projects. Its `consensus_agreement` and
        `consensus_alpha` read only the `n_consensus_compared` judgments on the same tasks, and
        are null when there are none. A scorecard written before that count was kept has no
        `n_consensus_compared` and compared every judgment.

        A day with no scorecard of the project is a 200 with no items and `days_without_data`
        naming it (empty when the day has data)."""
        return await on_lake(lambda: scorecards_answer(request, project, scopes=scopes, day=day))

    def scorecards_answer(
        request: Request, project: str, *, scopes: frozenset[str], day: str | None
    ) -> Response:
        day, version = one_day(known_project(project)[0].scorecards, day)
        raw = "annotators:raw" in scopes
        tag, cached = _conditional(request, [version] if version else [], variant=f"raw={raw}")
        if cached:
            return cached
        if version is None:
            body = _items_body(
                pl.DataFrame(),
                project=project,
                day=day,
                raw_annotator_ids=raw,
                days_without_data=[day],
            )
            return _answer(body, tag)

        def build(version: FileVersion = version) -> bytes:
            frame = reader.frame(version).filter(pl.col("project") == project).drop("project")
            if not raw:
                frame = pseudonymize(frame, key=settings.pseudonym_key).drop(
                    "annotator_pseudonym", strict=False
                )
            return _items_body(
                frame,
                project=project,
                day=day,
                raw_annotator_ids=raw,
                days_without_data=[] if frame.height else [day],
            )

        return _answer(reader.cached(("scorecards", version.token, project, raw), build), tag)

    @app.get(f"/{API_VERSION}/projects/{{project}}/queue", tags=["quality"])
    def queue(
        request: Request,
        project: ProjectPath,
        _: Annotated[frozenset[str], Depends(scope("quality:read"))],
        day: Day = None,
        limit: Limit = default_page,
        cursor: PageCursorParameter = None,
    ) -> Response:
        """The re-annotation queue of a project for a day (default: the freshest), in the
        order tasks should go back, highest priority first. A non-categorical project's item
        has `kind`, `task_id`, `confidence`, `n_judgments`, the policy's `decision` and
        `reason`, and `priority`.

        `limit` tasks per page; the answer has `total` (tasks queued that day), `truncated`
        (more pages follow) and `next_cursor`: pass it as `cursor` for the next page, which
        continues the cursor's day (null on the last page). A cursor continues only the
        version of the queue it was issued for: once the day's queue is rewritten it is
        answered 409, and paging starts again without it. A cursor of another project, day or
        endpoint is a 422. A day with no queue for the project is a 200 with no items and
        `days_without_data` naming it (empty when the day has data)."""
        tables = known_project(project)[0]
        position = None
        if cursor is not None:
            position = _decode_page_cursor(cursor, view=QUEUE_VIEW)
            _held_to(position.bound, {"project": project, "day": day}, fixed=frozenset({"project"}))
            day = position.bound["day"]
        day, version = one_day(tables.queue, day)
        fingerprint = _version_fingerprint(version)
        if position is not None and position.version != fingerprint:
            raise Problem(
                409,
                f"the re-annotation queue of {day} was rewritten after this cursor was issued; "
                "start again without cursor to page the new version",
                errors=[{"parameter": "cursor", "message": "cursor of a replaced version"}],
            )
        tag, cached = _conditional(request, [version] if version else [])
        if cached:
            return cached

        def rows(version: FileVersion) -> pl.DataFrame:
            return reader.frame(version).filter(pl.col("project") == project).drop("project")

        frame = (
            reader.cached(("queue", version.token, project), lambda: rows(version))
            if version is not None
            else pl.DataFrame()
        )
        offset = position.offset if position is not None else 0
        _check_offset(offset, frame.height)

        def cursor_at(following: int) -> str:
            bound: dict[str, str | None] = {"project": project, "day": day}
            return _encode_page_cursor(PageCursor(QUEUE_VIEW, bound, fingerprint, following))

        body = _page_body(
            frame,
            offset=offset,
            limit=limit,
            cursor_at=cursor_at,
            project=project,
            day=day,
            days_without_data=[] if frame.height else [day],
        )
        return _answer(body, tag)

    # Datasets -----------------------------------------------------------------------------

    def snapshots(project: str | None = None) -> tuple[list[FileVersion], list[dict[str, object]]]:
        """Every snapshot (of one project), oldest first, from the manifests."""
        prefix = layout.dataset_prefix(project) if project else f"{layout.DATASETS}/"
        files = reader.files(prefix)
        manifests = [v for k, v in files.items() if k.endswith(f"/{layout.MANIFEST_FILE}")]
        pointers = [v for k, v in files.items() if k.endswith(f"/{layout.CURRENT_FILE}")]

        def build() -> list[dict[str, object]]:
            current = {}
            for pointer in pointers:
                project_name = pointer.key[len(layout.DATASETS) + 1 :].split("/", 1)[0]
                current[project_name] = json.loads(reader.read_bytes(pointer.key))["version_id"]
            found = []
            for version in manifests:
                manifest = json.loads(reader.read_bytes(version.key))
                folder = version.key.rsplit("/", 1)[0] + "/"
                # A manifest rewritten with its trainer files says when its version was made.
                created = layout.manifest_created_at(manifest, version.modified)
                found.append(
                    {
                        "project": manifest["project"],
                        "version_id": manifest["version_id"],
                        "created_at": created.isoformat(),
                        "approved": approved(manifest),
                        "current": current.get(manifest["project"]) == manifest["version_id"],
                        "method": manifest.get("method"),
                        "rows": manifest.get("rows"),
                        "splits": manifest.get("splits", {}),
                        # Null for a manifest written before it named its filters.
                        "filters": manifest.get("filters"),
                        "held_back_days": manifest.get("held_back_days", []),
                        "files": [
                            {"name": key[len(folder) :], "size": files[key].size}
                            for key in sorted(files)
                            if key.startswith(folder)
                        ],
                        "trainer_files": manifest.get("trainer_files"),
                        "_created": created,
                        "_days": sorted(manifest.get("input_judgment_versions", {})),
                    }
                )
            found.sort(key=lambda item: (item["_created"], item["version_id"]))
            return found

        key = ("snapshots", prefix, *sorted(v.token for v in files.values()))
        reports, judged = judged_now(reader.cached(key, build))
        return list(files.values()) + reports, judged

    def judged_now(
        found: list[dict[str, object]],
    ) -> tuple[list[FileVersion], list[dict[str, object]]]:
        """The snapshots with `failed_since`: their days whose gates fail now although they did
        not when the snapshot was written (a day re-checked since), and `unjudged_days`: their
        days with no gate verdict (no quality report for the project). Either makes a snapshot
        unapproved. Returns the quality reports read too, which are part of the answer's ETag."""
        listing, index = projects_index() if found else ({}, {})
        reports: dict[str, dict[str, FileVersion]] = {}
        judged = []
        for snapshot in found:
            project = str(snapshot["project"])
            if project not in reports:
                known = index.get(project)
                reports[project] = (
                    listing[tables_for(str(known["kind"])).quality] if known is not None else {}
                )
            days = [str(day) for day in cast(list[str], snapshot["_days"])]
            held = set(cast(list[str], snapshot["held_back_days"]))
            verdicts = gate_verdicts(reports[project], days, project)
            failed = [d for d in days if verdicts.get(d) is False and d not in held]
            unjudged = [d for d in days if d not in verdicts and d not in held]
            judged.append(
                {
                    **snapshot,
                    "approved": bool(snapshot["approved"]) and not failed and not unjudged,
                    "failed_since": failed,
                    "unjudged_days": unjudged,
                }
            )
        return [v for per_day in reports.values() for v in per_day.values()], judged

    def snapshot_files(snapshot: dict[str, object]) -> list[str]:
        """The names of the snapshot's files, in name order."""
        return [str(item["name"]) for item in cast(list[dict[str, object]], snapshot["files"])]

    def public(request: Request, snapshot: dict[str, object]) -> dict[str, object]:
        """A snapshot as every dataset endpoint gives it: its manifest fields, `card_url`, and
        `files` as `{name, url, size}` (url absolute, size in bytes), in name order."""
        base = f"/{API_VERSION}/datasets/{snapshot['project']}/{snapshot['version_id']}"
        files = [
            {
                "name": item["name"],
                "url": str(
                    request.url_for(
                        "dataset_file",
                        project=snapshot["project"],
                        version=snapshot["version_id"],
                        name=item["name"],
                    )
                ),
                "size": item["size"],
            }
            for item in cast(list[dict[str, object]], snapshot["files"])
        ]
        fields = {k: v for k, v in snapshot.items() if not k.startswith("_")}
        return {**fields, "files": files, "card_url": f"{base}/card"}

    @app.get(f"/{API_VERSION}/datasets", tags=["datasets"])
    def datasets(
        request: Request, _: Annotated[frozenset[str], Depends(scope("datasets:read"))]
    ) -> Response:
        """Every dataset snapshot of every project, oldest first. Each has `files` as
        `{name, url, size}` objects and `card_url`, as `/latest` and `/{version}` give them,
        and `filters`: what selected its rows (`min_confidence`, `include_gold`,
        `split_ratios`, ...), as its manifest names them; null for a snapshot written before
        manifests named them."""
        versions, found = snapshots()
        tag, cached = _conditional(request, versions)
        if cached:
            return cached
        return _answer(_json_bytes({"items": [public(request, s) for s in found]}), tag)

    def project_snapshots(project: str) -> tuple[list[FileVersion], list[dict[str, object]]]:
        versions, found = snapshots(project)
        if not found:
            known_project(project)
            raise Problem(404, f"project {project!r} has no dataset snapshot yet")
        return versions, found

    @app.get(f"/{API_VERSION}/datasets/{{project}}", tags=["datasets"])
    def dataset_versions(
        request: Request,
        project: ProjectPath,
        _: Annotated[frozenset[str], Depends(scope("datasets:read"))],
    ) -> Response:
        """A project's snapshots, oldest first, each with `files` as `{name, url, size}`
        objects and `card_url`, as `/latest` and `/{version}` give them, and `filters` (what
        selected its rows, as its manifest names them; null for a snapshot written before
        manifests named them): two snapshots of the same days differ in rows by them."""
        versions, found = project_snapshots(project)
        tag, cached = _conditional(request, versions)
        if cached:
            return cached
        return _answer(_json_bytes({"items": [public(request, s) for s in found]}), tag)

    def snapshot_answer(
        request: Request, versions: list[FileVersion], snapshot: dict[str, object]
    ) -> Response:
        card_key = layout.dataset_card_key(str(snapshot["project"]), str(snapshot["version_id"]))
        tag, cached = _conditional(request, versions)
        if cached:
            return cached
        has_card = layout.CARD_FILE in snapshot_files(snapshot)
        card = reader.read_bytes(card_key).decode() if has_card else None
        return _answer(_json_bytes({**public(request, snapshot), "card": card}), tag)

    @app.get(f"/{API_VERSION}/datasets/{{project}}/latest", tags=["datasets"])
    def latest_dataset(
        request: Request,
        project: ProjectPath,
        _: Annotated[frozenset[str], Depends(scope("datasets:read"))],
        approved_only: Annotated[
            bool, Query(alias="approved", description="Only snapshots whose gates all passed.")
        ] = False,
    ) -> Response:
        """The project's current snapshot, the one its last curation run produced (with
        `approved=true`: that one if approved, else the newest approved one): the fields the
        listings give (`files` as `{name, url, size}` objects, `card_url`) and the `card`
        text."""
        versions, found = project_snapshots(project)
        candidates = [s for s in found if s["approved"]] if approved_only else found
        if not candidates:
            raise Problem(404, f"project {project!r} has no approved snapshot")
        # The version the project's last curation produced, although an older content's folder
        # is older; without a pointer (or when it is not approved), the newest folder.
        current = [s for s in candidates if s["current"]]
        return snapshot_answer(request, versions, (current or candidates)[-1])

    def find_snapshot(project: str, version: str) -> tuple[list[FileVersion], dict[str, object]]:
        versions, found = project_snapshots(project)
        for snapshot in found:
            if snapshot["version_id"] == version:
                return versions, snapshot
        raise Problem(404, f"project {project!r} has no snapshot {version!r}")

    VersionPath = Annotated[str, Path(pattern=PROJECT_PATTERN, max_length=NAME_MAX_LENGTH)]

    @app.get(f"/{API_VERSION}/datasets/{{project}}/{{version}}", tags=["datasets"])
    def dataset_version(
        request: Request,
        project: ProjectPath,
        version: VersionPath,
        _: Annotated[frozenset[str], Depends(scope("datasets:read"))],
    ) -> Response:
        """One snapshot: the fields the listings give (`files` as `{name, url, size}`
        objects, `card_url`) and the `card` text."""
        versions, snapshot = find_snapshot(project, version)
        return snapshot_answer(request, versions, snapshot)

    @app.get(
        f"/{API_VERSION}/datasets/{{project}}/{{version}}/card",
        tags=["datasets"],
        response_class=Response,
        responses=CARD_RESPONSES,
    )
    def dataset_card(
        request: Request,
        project: ProjectPath,
        version: VersionPath,
        _: Annotated[frozenset[str], Depends(scope("datasets:read"))],
    ) -> Response:
        """The snapshot's dataset card (Markdown)."""
        versions, _snapshot = find_snapshot(project, version)
        tag, cached = _conditional(request, versions)
        if cached:
            return cached
        body = reader.read_bytes(layout.dataset_card_key(project, version))
        return _answer(body, tag, media_type="text/markdown; charset=utf-8")

    @app.get(
        f"/{API_VERSION}/datasets/{{project}}/{{version}}/files/{{name}}",
        tags=["datasets"],
        name="dataset_file",
        response_class=Response,
        responses=FILE_RESPONSES,
    )
    def dataset_file(
        request: Request,
        project: ProjectPath,
        version: VersionPath,
        name: VersionPath,
        _: Annotated[frozenset[str], Depends(scope("datasets:read"))],
    ) -> Response:
        """One file of a snapshot (a split as Parquet or JSON Lines, the card, the manifest),
        as an attachment, from a local or an S3 lake alike.

        `HEAD` answers the same headers without the body (`Content-Length`, `ETag`,
        `Last-Modified`, `Accept-Ranges: bytes`). A `Range: bytes=...` request is answered
        206 with `Content-Range` (several ranges as `multipart/byteranges`), so a download can
        resume; a range starting past the end is a 416 with `Content-Range: bytes */<size>`,
        a malformed one a 400. With `If-Range` (the `ETag` or `Last-Modified` of the copy a
        client holds) a file changed since is sent whole. A range in another unit is ignored.
        """
        versions, snapshot = find_snapshot(project, version)
        if name not in snapshot_files(snapshot):
            raise Problem(404, f"snapshot {version!r} has no file {name!r}")
        key = layout.dataset_prefix(project, version) + name
        file_version = next(v for v in versions if v.key == key)
        tag, cached = _conditional(request, [file_version])
        if cached:
            return cached
        media = FILE_MEDIA_TYPES.get(name.rsplit(".", 1)[-1], OTHER_FILE_MEDIA_TYPE)
        headers = {
            **_cache_headers(tag),
            "Content-Disposition": f'attachment; filename="{project}-{version}-{name}"',
        }
        response = LakeFileResponse(reader, file_version, headers=headers, media_type=media)
        try:
            response.check_range(request.headers.get("range"), request.headers.get("if-range"))
        except RangeError as error:
            extra = {"Content-Range": f"bytes */{error.size}"} if error.status == 416 else {}
            raise Problem(error.status, str(error), headers=extra) from None
        return response

    # The same answer without its body: a client learns the size and version before fetching.
    app.head(
        f"/{API_VERSION}/datasets/{{project}}/{{version}}/files/{{name}}",
        tags=["datasets"],
        name="dataset_file_head",
        summary="Dataset File Headers",
        response_class=Response,
        responses=FILE_RESPONSES,
    )(dataset_file)

    # Capacity -----------------------------------------------------------------------------

    def table_version(table: str) -> FileVersion:
        version = reader.stat(layout.partition_key(table))
        if version is None:
            how = HOW_TO_BUILD.get(table, f"`dg launch --assets {table}`")
            raise Problem(404, f"{table} is not in the lake yet; materialize it with {how}")
        return version

    def ordered_rows(paged: PagedTable, version: FileVersion) -> pl.DataFrame:
        """The table's rows in page order: by its key columns, ties in file order."""

        def build() -> pl.DataFrame:
            frame = reader.frame(version)
            keys = [key for key in paged.keys if key in frame.columns]
            return frame.sort(keys, maintain_order=True, nulls_last=True) if keys else frame

        return reader.cached(("paged", paged.table, version.token), build)

    def series_rows(paged: PagedTable, version: FileVersion) -> pl.DataFrame:
        """One row per series of the table, in the order its pages serve them: the series
        (named as the parameter that filters by it), its row count and, for a time series,
        its first and last time."""

        def build() -> pl.DataFrame:
            frame = reader.frame(version)
            if paged.column not in frame.columns:
                return pl.DataFrame(schema={paged.parameter: pl.String, "rows": pl.UInt32})
            aggregates = [pl.len().alias("rows")]
            if "time" in frame.columns:
                aggregates += [
                    pl.col("time").min().alias("first_time"),
                    pl.col("time").max().alias("last_time"),
                ]
            return (
                frame.group_by(paged.column)
                .agg(aggregates)
                .sort(paged.column, nulls_last=True)
                .rename({paged.column: paged.parameter})
            )

        return reader.cached(("paged-series", paged.table, version.token), build)

    def unknown_series(paged: PagedTable, version: FileVersion, value: str) -> Problem:
        """A 404 for a filter value the table holds no row of, naming some it holds: an empty
        page would read as "no data yet" for a typo."""
        known = series_rows(paged, version)[paged.parameter].cast(pl.String).to_list()
        shown = ", ".join(repr(name) for name in known[:UNKNOWN_SHOWN])
        more = f" and {len(known) - UNKNOWN_SHOWN} more" if len(known) > UNKNOWN_SHOWN else ""
        holds = f"it holds {shown}{more}" if known else "it holds none"
        return Problem(
            404,
            f"no {paged.parameter} {value!r} in {paged.table}; {holds} ({paged.listing} "
            "lists them)",
            errors=[{"parameter": paged.parameter, "message": f"unknown {paged.parameter}"}],
            extensions={"known": known[:UNKNOWN_SHOWN]},
        )

    def whole_table(
        request: Request,
        paged: PagedTable,
        *,
        value: str | None,
        limit: int,
        cursor: str | None,
        listing: bool = False,
    ) -> Response:
        """One page of an unpartitioned table (or, with `listing`, of its series), with the
        cursor of the next page. A cursor holds a fingerprint of the file version it was
        issued for: once the table is rewritten it is refused (409) rather than continued in
        another version's rows, which would skip or repeat some."""
        version = table_version(paged.table)
        view = f"{paged.table}/series" if listing else paged.table
        fingerprint = _version_fingerprint(version)
        offset = 0
        if cursor is not None:
            position = _decode_page_cursor(cursor, view=view)
            if not listing:
                _held_to(position.bound, {paged.parameter: value})
                value = position.bound[paged.parameter]
            if position.version != fingerprint:
                raise Problem(
                    409,
                    f"{paged.table} was rewritten after this cursor was issued; start again "
                    "without cursor to page the new version",
                    errors=[{"parameter": "cursor", "message": "cursor of a replaced version"}],
                )
            offset = position.offset
        tag, cached = _conditional(request, [version])
        if cached:
            return cached
        frame = series_rows(paged, version) if listing else ordered_rows(paged, version)
        if value is not None:
            frame = (
                frame.filter(pl.col(paged.column).cast(pl.String) == value)
                if paged.column in frame.columns
                else frame.clear()
            )
            if not frame.height:
                raise unknown_series(paged, version, value)
        _check_offset(offset, frame.height)
        bound: dict[str, str | None] = {} if listing else {paged.parameter: value}

        def build() -> bytes:
            return _page_body(
                frame,
                offset=offset,
                limit=limit,
                cursor_at=lambda following: _encode_page_cursor(
                    PageCursor(view, bound, fingerprint, following)
                ),
                updated_at=version.modified.isoformat(),
            )

        key = ("paged", view, value, offset, limit, version.token)
        return _answer(context.bodies.get(key, build), tag)

    Capacity = Annotated[frozenset[str], Depends(scope("capacity:read"))]
    ProjectFilter = Annotated[
        str | None,
        Query(
            pattern=PROJECT_PATTERN,
            max_length=NAME_MAX_LENGTH,
            description="Only this project's rows.",
        ),
    ]

    @app.get(f"/{API_VERSION}/capacity/forecast", tags=["capacity"])
    def compute_forecast(
        request: Request,
        _: Capacity,
        series: Annotated[
            str | None,
            Query(
                alias="id",
                max_length=256,
                description="Only this series (ids from /v1/capacity/forecast/series).",
            ),
        ] = None,
        limit: Limit = settings.api_max_page_size,
        cursor: PageCursorParameter = None,
    ) -> Response:
        """The latest accelerator demand forecast, per series and hour, with 80/95% intervals.

        Rows come in (`id`, `time`) order, `limit` per page. The answer has `items`, `total`
        (rows matching the filter), `truncated` (more pages follow), `updated_at` (when the
        forecast was written) and `next_cursor`: pass it as `cursor` for the next page; it
        is null on the last page. A cursor continues only the forecast it was issued for:
        once the weekly forecast_job rewrites it, the cursor is answered 409 and paging starts
        again without it. A malformed cursor, one of another endpoint or another `id`, or an
        unknown parameter (there is no `offset`) is a 422 naming the parameter. An `id` the
        forecast does not hold is a 404 naming some it does;
        `/v1/capacity/forecast/series` lists the series ids."""
        return whole_table(request, COMPUTE_FORECAST, value=series, limit=limit, cursor=cursor)

    @app.get(f"/{API_VERSION}/capacity/forecast/series", tags=["capacity"])
    def compute_forecast_series(
        request: Request,
        _: Capacity,
        limit: Limit = settings.api_max_page_size,
        cursor: PageCursorParameter = None,
    ) -> Response:
        """The series of the latest accelerator demand forecast (hierarchy nodes included), in
        `id` order: each `id` with its number of `rows` and its `first_time` and `last_time`.
        Paged as /v1/capacity/forecast is, with `next_cursor`."""
        return whole_table(
            request, COMPUTE_FORECAST, value=None, limit=limit, cursor=cursor, listing=True
        )

    @app.get(f"/{API_VERSION}/capacity/procurement", tags=["capacity"])
    def procurement_plan(
        request: Request,
        _: Capacity,
        cluster: Annotated[
            str | None, Query(max_length=256, description="Only this cluster's rows.")
        ] = None,
        limit: Limit = settings.api_max_page_size,
        cursor: PageCursorParameter = None,
    ) -> Response:
        """The procurement plan: accelerators to order per cluster, accelerator type and
        scenario (P50, P90), with the date each runs short, the order-by date and the cost.

        Rows come in (`cluster`, `accelerator_type`, `scenario`) order and page with
        `next_cursor` as /v1/capacity/forecast does (409 once the plan is rewritten).
        `/v1/capacity/procurement/clusters` lists the clusters; a `cluster` the plan does not
        hold is a 404 naming some it does."""
        return whole_table(request, PROCUREMENT_PLAN, value=cluster, limit=limit, cursor=cursor)

    @app.get(f"/{API_VERSION}/capacity/procurement/clusters", tags=["capacity"])
    def procurement_clusters(
        request: Request,
        _: Capacity,
        limit: Limit = settings.api_max_page_size,
        cursor: PageCursorParameter = None,
    ) -> Response:
        """The clusters of the procurement plan, in order, each with its number of `rows`.
        Paged with `next_cursor`."""
        return whole_table(
            request, PROCUREMENT_PLAN, value=None, limit=limit, cursor=cursor, listing=True
        )

    @app.get(f"/{API_VERSION}/workforce/forecast", tags=["capacity"])
    def workforce_forecast(
        request: Request,
        _: Capacity,
        project: ProjectFilter = None,
        limit: Limit = settings.api_max_page_size,
        cursor: PageCursorParameter = None,
    ) -> Response:
        """The latest task volume forecast per project, with intervals; a row's `id` is its
        project. Rows come in (`id`, `time`) order and page with `next_cursor` as
        /v1/capacity/forecast does (409 once the forecast is rewritten).
        `/v1/workforce/forecast/projects` lists the projects; a `project` the forecast does
        not hold is a 404 naming some it does."""
        return whole_table(request, WORKFORCE_FORECAST, value=project, limit=limit, cursor=cursor)

    @app.get(f"/{API_VERSION}/workforce/forecast/projects", tags=["capacity"])
    def workforce_forecast_projects(
        request: Request,
        _: Capacity,
        limit: Limit = settings.api_max_page_size,
        cursor: PageCursorParameter = None,
    ) -> Response:
        """The projects of the latest task volume forecast, in order: each `project` with its
        number of `rows` and its `first_time` and `last_time`. Paged with `next_cursor`."""
        return whole_table(
            request, WORKFORCE_FORECAST, value=None, limit=limit, cursor=cursor, listing=True
        )

    @app.get(f"/{API_VERSION}/workforce/plan", tags=["capacity"])
    def workforce_plan(
        request: Request,
        _: Capacity,
        project: ProjectFilter = None,
        limit: Limit = settings.api_max_page_size,
        cursor: PageCursorParameter = None,
    ) -> Response:
        """Per project: annotator-hours needed per week, the gap, the backlog clear date, risk.
        One row per project, in `project` order, paged with `next_cursor` as
        /v1/capacity/forecast does (409 once the plan is rewritten). A `project` the plan
        does not hold is a 404 naming some it does."""
        return whole_table(request, WORKFORCE_PLAN, value=project, limit=limit, cursor=cursor)


def approved(manifest: dict[str, object]) -> bool:
    """A snapshot is approved when it holds rows and the quality gates passed on every day it
    covers: the curated dataset holds back a day whose gates failed and records it in
    `held_back_days`, so a snapshot with no day held back is one whose gates all passed. An
    empty snapshot (every day held back, or curated while its days were being rebuilt) vouches
    for nothing."""
    rows = manifest.get("rows", manifest.get("selected", 1))  # kind snapshots count `selected`
    return not manifest.get("held_back_days") and bool(rows)
