"""The API over real HTTP: uvicorn on 127.0.0.1 serving a lake the demo graph produced."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import polars as pl
import pytest
from dagster import AssetKey
from fastapi.testclient import TestClient

from annotation_pipelines import lake as layout
from annotation_pipelines import schema
from annotation_pipelines.api import create_app
from annotation_pipelines.api.app import (
    DAY_DIGEST_WIDTH,
    NAME_MAX_LENGTH,
    LabelCursor,
    _decode_cursor,
    _encode_cursor,
    _label_cursor_max_length,
    approved,
    kind_label_columns,
)
from annotation_pipelines.api.tokens import issue_token
from annotation_pipelines.curation import MASK
from annotation_pipelines.curation.kinds import TRAINER_FILES_FORMAT
from annotation_pipelines.curation.privacy import pseudonymize
from annotation_pipelines.ingest.validation import DEFAULT_MAX_FIELD_BYTES
from annotation_pipelines.kinds import VALUE_COLUMNS
from annotation_pipelines.markdown import markdown_text
from annotation_pipelines.settings import load_settings
from annotation_pipelines.storage import atomic_write_parquet
from tests.api.conftest import (
    DAYS,
    KIND_PROJECTS,
    LATE_DAY,
    PROJECT,
    Served,
    built_lake,
    lake_copy,
    start_server,
)
from tests.curation.test_trainer_files_upgrade import _age
from tests.support import QUIET

ROOT = Path(__file__).resolve().parents[2]


def get(
    served: Served, path: str, *, token: str | None = "all", **kwargs: object
) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}))  # type: ignore[arg-type]
    if token is not None:
        headers["Authorization"] = f"Bearer {served.tokens.get(token, token)}"
    return httpx.get(f"{served.url}/v1{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    # Never a stack trace or a file system path.
    assert "Traceback" not in response.text and "/tmp" not in response.text
    assert str(ROOT) not in response.text
    return body


def test_health_with_a_token_names_the_freshest_partition_per_table(served):
    response = get(served, "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["lake_reachable"] is True
    assert body["tables"]["aggregated_labels"]["freshest_partition"] >= DAYS[-1]
    assert "updated_at" in body["tables"]["compute_capacity_forecast"]
    assert str(served.data) not in response.text
    assert get(served, "/ready", token=None).json()["status"] == "ready"
    assert httpx.get(f"{served.url}/docs").status_code == 200
    paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    assert "/v1/projects/{project}/labels" in paths and "/v1/capacity/forecast" in paths
    assert {
        "/v1/capacity/forecast/series",
        "/v1/capacity/procurement/clusters",
        "/v1/workforce/forecast/projects",
    } <= set(paths)
    forecast = {p["name"] for p in paths["/v1/capacity/forecast"]["get"]["parameters"]}
    assert {"id", "limit", "cursor"} <= forecast


def test_projects_lists_every_project_with_its_days(served):
    response = get(served, "/projects")
    assert response.status_code == 200
    items = {item["project"]: item for item in response.json()["items"]}
    lake_projects = pl.read_parquet(
        served.data / "lake" / layout.partition_key("quality_report", DAYS[0])
    )["project"]
    assert set(lake_projects) <= set(items)
    assert items[PROJECT]["first_day"] == DAYS[0]


def test_projects_of_every_kind_are_listed_with_their_kind(served):
    items = {item["project"]: item for item in get(served, "/projects").json()["items"]}
    assert items[PROJECT]["kind"] == "categorical"
    assert set(items[PROJECT]) == {"project", "kind", "first_day", "last_day", "days"}
    kind_report = pl.read_parquet(
        served.data / "lake" / layout.partition_key("kind_quality_report", DAYS[0])
    )
    assert set(kind_report["project"]) <= set(items)
    for project, kind in KIND_PROJECTS.items():
        assert items[project]["kind"] == kind and items[project]["first_day"] == DAYS[0]
    health = get(served, "/health").json()["tables"]
    assert health["kind_aggregated_labels"]["freshest_partition"] >= DAYS[-1]


def kind_lake_labels(served: Served, project: str, day: str) -> pl.DataFrame:
    lake = pl.read_parquet(
        served.data / "lake" / layout.partition_key("kind_aggregated_labels", day)
    )
    own = lake.filter(pl.col("project") == project).sort("task_id")
    return own.select(kind_label_columns(KIND_PROJECTS[project]))


@pytest.mark.parametrize("project", sorted(KIND_PROJECTS))
def test_kind_labels_carry_the_kind_value_columns_as_the_snapshots_export_them(served, project):
    kind = KIND_PROJECTS[project]
    response = get(served, f"/projects/{project}/labels", params={"day": DAYS[0], "limit": 5000})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    expected = kind_lake_labels(served, project, DAYS[0])
    assert items and len(items) == expected.height
    # The same JSON per row as the kind's data.jsonl: nested spans and boxes as objects.
    exported = [json.loads(line) for line in expected.write_ndjson().splitlines()]
    assert [
        {k: v for k, v in item.items() if k not in ("day", "gates_passed")} for item in items
    ] == exported
    assert all(item["day"] == DAYS[0] and item["kind"] == kind for item in items)
    other_values = {c for columns in VALUE_COLUMNS.values() for c in columns}
    other_values -= set(VALUE_COLUMNS[kind])
    assert not other_values & set(items[0])
    if kind == "spans":
        assert {"start", "end", "label", "confidence"} == set(items[0]["spans"][0])


def test_text_answers_are_served_masked_as_their_snapshots_export_them(tmp_path):
    # A `text` project's answer is annotator-written free text: /labels must not serve what
    # its dataset snapshot masks.
    lake = tmp_path / "data" / "lake"
    day = dt.date(2026, 11, 16)
    quality = lake / layout.partition_key("kind_quality_report", day.isoformat())
    quality.parent.mkdir(parents=True)
    pl.DataFrame(
        {"project": ["transcripts"], "day": [day], "kind": ["text"], "gates_passed": [True]}
    ).write_parquet(quality)
    answers = [
        "call me at +1 415-555-0132 or jane.doe@example.com",
        "nothing personal here",
    ]
    labels = lake / layout.partition_key("kind_aggregated_labels", day.isoformat())
    labels.parent.mkdir(parents=True)
    pl.DataFrame(
        {
            "task_id": ["t1", "t2"],
            "project": ["transcripts"] * 2,
            "kind": ["text"] * 2,
            "text": answers,
            "confidence": [0.9, 0.8],
            "n_votes": [3, 3],
            "method": ["medoid"] * 2,
        }
    ).write_parquet(labels)
    settings = dataclasses.replace(
        load_settings(),
        data_dir=tmp_path / "data",
        bucket=None,
        api_token_store=tmp_path / "tokens.json",
        phone_region="US",
    )
    token = issue_token(settings.api_token_store, scopes=["labels:read"])
    client = TestClient(create_app(settings), headers={"Authorization": f"Bearer {token}"})
    for _ in range(2):  # the second answer comes from the cached, already masked frame
        response = client.get("/v1/projects/transcripts/labels", params={"day": str(day)})
        assert response.status_code == 200, response.text
        texts = [item["text"] for item in response.json()["items"]]
        assert texts == [f"call me at {MASK} or {MASK}", answers[1]]


def test_kind_labels_page_and_filter_like_the_categorical_ones(served):
    project = "ratings"
    path = f"/projects/{project}/labels"
    params = {"start": DAYS[0], "end": DAYS[1], "limit": 7}
    pages = [get(served, path, params=params).json()]
    while pages[-1]["next_cursor"]:
        pages.append(
            get(served, path, params={**params, "cursor": pages[-1]["next_cursor"]}).json()
        )
    rows = [(item["day"], item["task_id"]) for page in pages for item in page["items"]]
    expected = [
        (day, task)
        for day in DAYS
        for task in kind_lake_labels(served, project, day)["task_id"].to_list()
    ]
    assert len(pages) > 2 and rows == expected
    confident = get(
        served, path, params={"day": DAYS[0], "limit": 5000, "min_confidence": 0.8}
    ).json()["items"]
    lake = kind_lake_labels(served, project, DAYS[0])
    assert len(confident) == lake.filter(pl.col("confidence") >= 0.8).height
    first = get(served, path, params={"day": DAYS[0], "limit": 5})
    again = get(
        served,
        path,
        params={"day": DAYS[0], "limit": 5},
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert again.status_code == 304
    assert_problem(get(served, path, token="quality"), 403)


def test_kind_quality_scorecards_and_queue(served):
    project = "detection"
    quality = get(
        served, f"/projects/{project}/quality", params={"start": DAYS[0], "end": DAYS[1]}
    ).json()
    assert [item["day"] for item in quality["items"]] == DAYS
    for item in quality["items"]:
        assert item["kind"] == "boxes" and isinstance(item["gates_passed"], bool)
        assert isinstance(item["failed_gates"], list)
        assert {"krippendorff_alpha", "distance", "gold_metric_name"} <= set(item)
    assert quality["summary"]["days"] == 2
    lake = pl.read_parquet(
        served.data / "lake" / layout.partition_key("kind_scorecards", DAYS[0])
    ).filter(pl.col("project") == project)
    raw_ids = set(lake["annotator_id"])
    shown = get(served, f"/projects/{project}/scorecards", token="quality", params={"day": DAYS[0]})
    assert shown.status_code == 200, shown.text
    ids = {item["annotator_id"] for item in shown.json()["items"]}
    expected = pseudonymize(lake.select("annotator_id"), key=served.settings.pseudonym_key)
    assert raw_ids and ids == set(expected["annotator_id"]) and not ids & raw_ids
    assert "box_looseness" in shown.json()["items"][0]
    raw = get(served, f"/projects/{project}/scorecards", token="raw", params={"day": DAYS[0]})
    assert {item["annotator_id"] for item in raw.json()["items"]} == raw_ids
    queue = get(served, f"/projects/{project}/queue", params={"day": DAYS[0], "limit": 3}).json()
    lake_queue = pl.read_parquet(
        served.data / "lake" / layout.partition_key("kind_reannotation_queue", DAYS[0])
    ).filter(pl.col("project") == project)
    assert queue["total"] == lake_queue.height and len(queue["items"]) == min(3, lake_queue.height)
    empty = get(served, f"/projects/{project}/scorecards", params={"day": "2020-01-01"}).json()
    assert empty["items"] == [] and empty["days_without_data"] == ["2020-01-01"]


def test_openapi_documents_the_kind_fields(served):
    paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    labels = paths["/v1/projects/{project}/labels"]["get"]["description"]
    assert all(f"`{column}`" in labels for columns in VALUE_COLUMNS.values() for column in columns)
    assert "`kind`" in paths["/v1/projects"]["get"]["description"]
    assert "`box_looseness`" in paths["/v1/projects/{project}/scorecards"]["get"]["description"]
    assert "`gold_metric_name`" in paths["/v1/projects/{project}/quality"]["get"]["description"]
    labels_get = paths["/v1/projects/{project}/labels"]["get"]
    assert "`gates_passed`" in labels_get["description"]
    assert "`held_back_days`" in labels_get["description"]
    [gated] = [p for p in labels_get["parameters"] if p["name"] == "gated"]
    assert gated["schema"]["type"] == "boolean" and "passed" in gated["description"]


def test_labels_page_has_the_documented_fields_and_honors_the_confidence_filter(served):
    response = get(served, f"/projects/{PROJECT}/labels", params={"day": DAYS[0], "limit": 50})
    assert response.status_code == 200
    body = response.json()
    assert len(body["items"]) == 50 and body["next_cursor"]
    assert {"task_id", "label", "confidence", "day"} <= set(body["items"][0])
    lake = pl.read_parquet(
        served.data / "lake" / layout.partition_key("aggregated_labels", DAYS[0])
    )
    expected = lake.filter(pl.col("project") == PROJECT).sort("task_id").head(50)
    assert [item["task_id"] for item in body["items"]] == expected["task_id"].to_list()
    confident = get(
        served,
        f"/projects/{PROJECT}/labels",
        params={"day": DAYS[0], "limit": 5000, "min_confidence": 0.9},
    ).json()["items"]
    assert confident and all(item["confidence"] >= 0.9 for item in confident)
    wanted = lake.filter((pl.col("project") == PROJECT) & (pl.col("confidence") >= 0.9))
    assert len(confident) == wanted.height


def _paged(served: Served, path: str, params: dict[str, object]) -> list[dict[str, object]]:
    pages = [get(served, path, params=params).json()]
    while pages[-1]["next_cursor"]:
        pages.append(
            get(served, path, params={**params, "cursor": pages[-1]["next_cursor"]}).json()
        )
    return pages


@pytest.mark.parametrize(
    ("project", "report"), [(PROJECT, "quality_report"), ("ratings", "kind_quality_report")]
)
def test_labels_carry_their_day_s_gate_verdict_and_gated_serves_only_passed_days(
    served, project, report
):
    path = f"/projects/{project}/labels"
    params = {"start": DAYS[0], "end": DAYS[1], "limit": 500}
    partition = served.data / "lake" / layout.partition_key(report, DAYS[1])
    original = pl.read_parquet(partition)
    verdicts = {
        day: pl.read_parquet(served.data / "lake" / layout.partition_key(report, day))
        .filter(pl.col("project") == project)["gates_passed"]
        .item()
        for day in DAYS
    }
    assert verdicts == dict.fromkeys(DAYS, True)  # the fixture's lenient gates
    before = get(served, path, params=params)
    assert before.json()["held_back_days"] == []
    assert {item["gates_passed"] for item in before.json()["items"]} == {True}
    try:
        # The day's quality gates fail when its report is rebuilt (as a stricter floor would).
        failed = original.with_columns(
            gates_passed=pl.when(pl.col("project") == project)
            .then(False)
            .otherwise(pl.col("gates_passed"))
        )
        atomic_write_parquet(failed, partition)
        fresh = get(served, path, params=params, headers={"If-None-Match": before.headers["etag"]})
        assert fresh.status_code == 200
        pages = _paged(served, path, params)
        assert all(page["held_back_days"] == [DAYS[1]] for page in pages)
        items = [item for page in pages for item in page["items"]]
        assert {(item["day"], item["gates_passed"]) for item in items} == {
            (DAYS[0], True),
            (DAYS[1], False),
        }
        gated = _paged(served, path, {**params, "gated": "true"})
        kept = [item for page in gated for item in page["items"]]
        assert len(gated) > 1 or len(kept) < 500
        assert kept == [item for item in items if item["day"] == DAYS[0]]
        assert all(page["held_back_days"] == [DAYS[1]] for page in gated)
        only_failed = get(served, path, params={"day": DAYS[1], "gated": "true"}).json()
        assert only_failed["items"] == [] and only_failed["next_cursor"] is None
        # A day with no quality report for the project is held back as the curated datasets
        # hold it back, though its items say null, not false.
        atomic_write_parquet(original.filter(pl.col("project") != project), partition)
        unreported = get(served, path, params={"day": DAYS[1], "limit": 5}).json()
        assert unreported["held_back_days"] == [DAYS[1]]
        assert {item["gates_passed"] for item in unreported["items"]} == {None}
    finally:
        atomic_write_parquet(original, partition)
    restored = get(served, path, params=params)
    assert {item["gates_passed"] for item in restored.json()["items"]} == {True}
    # Labels rewritten after their day's report (late rows) are not what it vouched for.
    table = "aggregated_labels" if report == "quality_report" else "kind_aggregated_labels"
    labels = served.data / "lake" / layout.partition_key(table, DAYS[1])
    stamp = labels.stat()
    later = partition.stat().st_mtime_ns + 1_000_000_000
    try:
        os.utime(labels, ns=(later, later))
        stale = get(served, path, params={"day": DAYS[1], "limit": 5}).json()
        assert stale["held_back_days"] == [DAYS[1]]
        assert {item["gates_passed"] for item in stale["items"]} == {None}
    finally:
        os.utime(labels, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


def test_quality_has_gate_results_per_day_in_the_range(served):
    body = get(
        served, f"/projects/{PROJECT}/quality", params={"start": DAYS[0], "end": DAYS[1]}
    ).json()
    assert [item["day"] for item in body["items"]] == DAYS
    for item in body["items"]:
        assert isinstance(item["gates_passed"], bool) and isinstance(item["failed_gates"], list)
        assert "krippendorff_alpha" in item
    assert body["summary"]["days"] == 2


def test_scorecards_are_pseudonymous_unless_the_token_allows_raw_ids(served):
    lake = pl.read_parquet(
        served.data / "lake" / layout.partition_key("annotator_scorecards", DAYS[0])
    ).filter(pl.col("project") == PROJECT)
    raw_ids = set(lake["annotator_id"])
    shown = get(served, f"/projects/{PROJECT}/scorecards", token="quality", params={"day": DAYS[0]})
    assert shown.status_code == 200
    ids = {item["annotator_id"] for item in shown.json()["items"]}
    expected = pseudonymize(lake.select("annotator_id"), key=served.settings.pseudonym_key)
    assert ids == set(expected["annotator_id"]) and not ids & raw_ids
    assert not any(raw in shown.text for raw in raw_ids)
    raw = get(served, f"/projects/{PROJECT}/scorecards", token="raw", params={"day": DAYS[0]})
    assert {item["annotator_id"] for item in raw.json()["items"]} == raw_ids
    assert raw.headers["etag"] != shown.headers["etag"]


def test_queue_and_capacity_endpoints(served):
    queue = get(served, f"/projects/{PROJECT}/queue", params={"day": DAYS[0], "limit": 3}).json()
    assert len(queue["items"]) <= 3 and queue["total"] >= len(queue["items"])
    forecast = get(served, "/capacity/forecast", params={"limit": 10}).json()
    assert len(forecast["items"]) == 10
    assert {"id", "time", "forecast", "lo_80", "hi_95"} <= set(forecast["items"][0])
    series = forecast["items"][0]["id"]
    one = get(served, "/capacity/forecast", params={"id": series}).json()["items"]
    assert one and {item["id"] for item in one} == {series}
    workforce = get(served, "/workforce/forecast", params={"project": PROJECT}).json()
    assert {item["id"] for item in workforce["items"]} == {PROJECT}
    plan = get(served, "/workforce/plan").json()["items"]
    assert PROJECT in {item["project"] for item in plan}
    missing = assert_problem(get(served, "/capacity/procurement"), 404)
    assert "dg launch --assets procurement_plan" in str(missing["detail"])


def test_procurement_404_asks_for_the_history_the_plan_needs():
    from annotation_pipelines.api.app import HOW_TO_BUILD
    from annotation_pipelines.forecasting.planning import MIN_HISTORY_DAYS

    # It asked for 35 days, and a lake with 35 to 41 then failed to build the plan.
    assert f"at least {MIN_HISTORY_DAYS} days of compute_usage" in HOW_TO_BUILD["procurement_plan"]


def test_procurement_plan_is_served_once_it_is_in_the_lake(served):
    key = served.data / "lake" / layout.partition_key("procurement_plan")
    atomic_write_parquet(pl.DataFrame({"id": ["a"], "to_procure": [3]}), key)
    try:
        assert get(served, "/capacity/procurement").json()["items"] == [
            {"id": "a", "to_procure": 3}
        ]
    finally:
        key.unlink()


SERIES = [f"s{i:02d}" for i in range(40)]
HOURS = 168


def wide_forecast(value: float = 1.0) -> pl.DataFrame:
    """40 series x 168 hours, the default horizon: more rows than a page of 5,000. The file
    holds the series out of order, so the pages' order is the API's, not the file's."""
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    ids = SERIES[::-1]
    frame = pl.DataFrame(
        {
            "id": [series for series in ids for _ in range(HOURS)],
            "time": [start + dt.timedelta(hours=h) for _ in ids for h in range(HOURS)],
            "forecast": value,
            "lo_80": 0.5,
            "hi_80": 1.5,
            "lo_95": 0.2,
            "hi_95": 2.0,
            "model": "seasonal_naive",
        }
    )
    return schema.conform(frame, schema.CAPACITY_FORECAST, name="compute_capacity_forecast")


@contextmanager
def replaced_table(served: Served, table: str, frame: pl.DataFrame) -> Iterator[Path]:
    """`table` holds `frame` inside the block, and what it held before after it."""
    key = served.data / "lake" / layout.partition_key(table)
    original = pl.read_parquet(key) if key.exists() else None
    atomic_write_parquet(frame, key)
    try:
        yield key
    finally:
        if original is None:
            key.unlink()
        else:
            atomic_write_parquet(original, key)


def every_page(served: Served, path: str, params: dict[str, object]) -> list[dict[str, object]]:
    pages = [get(served, path, params=params).json()]
    while pages[-1]["next_cursor"]:
        cursor = pages[-1]["next_cursor"]
        pages.append(get(served, path, params={**params, "cursor": cursor}).json())
    return pages


def test_capacity_forecast_pages_40_series_of_168_hours_each_row_exactly_once(served):
    with replaced_table(served, "compute_capacity_forecast", wide_forecast()):
        # The default page: 5,000 rows, then the rest, which a client could not fetch before.
        pages = every_page(served, "/capacity/forecast", {})
        assert [len(page["items"]) for page in pages] == [5000, 1720]
        assert [page["truncated"] for page in pages] == [True, False]
        assert all(page["total"] == len(SERIES) * HOURS for page in pages)
        pages = every_page(served, "/capacity/forecast", {"limit": 1000})
        assert len(pages) == 7 and pages[-1]["next_cursor"] is None
        rows = [(item["id"], item["time"]) for page in pages for item in page["items"]]
        assert len(rows) == len(set(rows)) == len(SERIES) * HOURS
        assert rows == sorted(rows)  # (id, time) order, whatever the file's order
        assert {series for series, _ in rows} == set(SERIES)


def test_capacity_forecast_filters_by_series_and_lists_the_series(served):
    with replaced_table(served, "compute_capacity_forecast", wide_forecast()):
        listed = every_page(served, "/capacity/forecast/series", {"limit": 15})
        assert [len(page["items"]) for page in listed] == [15, 15, 10]
        items = [item for page in listed for item in page["items"]]
        assert [item["id"] for item in items] == SERIES
        assert all(item["rows"] == HOURS for item in items)
        assert items[0]["first_time"].startswith("2026-12-01T00:00:00")
        assert items[0]["last_time"].startswith("2026-12-07T23:00:00")
        # The last series, past the first page of the whole table, by its listed id.
        last = every_page(served, "/capacity/forecast", {"id": SERIES[-1], "limit": 100})
        assert [len(page["items"]) for page in last] == [100, 68]
        assert {item["id"] for page in last for item in page["items"]} == {SERIES[-1]}
        assert last[0]["total"] == HOURS
        # A cursor keeps the series it was issued for, and refuses another.
        cursor = last[0]["next_cursor"]
        kept = get(served, "/capacity/forecast", params={"cursor": cursor}).json()
        assert {item["id"] for item in kept["items"]} == {SERIES[-1]}
        other = get(served, "/capacity/forecast", params={"id": SERIES[0], "cursor": cursor})
        assert assert_problem(other, 422)["errors"][0]["parameter"] == "cursor"
        # A listing cursor does not page the table, nor the table's cursor the listing.
        foreign = get(served, "/capacity/forecast", params={"cursor": listed[0]["next_cursor"]})
        assert assert_problem(foreign, 422)["errors"][0]["parameter"] == "cursor"
        foreign = get(served, "/capacity/forecast/series", params={"cursor": cursor})
        assert_problem(foreign, 422)
        # A cursor edited to point past the last row is not one the API issued.
        fields = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        edited = json.dumps({**fields, "at": HOURS}).encode()
        past = base64.urlsafe_b64encode(edited).decode().rstrip("=")
        assert_problem(get(served, "/capacity/forecast", params={"cursor": past}), 422)


def test_a_cursor_of_a_rewritten_forecast_is_refused_not_mixed(served):
    with replaced_table(served, "compute_capacity_forecast", wide_forecast()) as key:
        first = get(served, "/capacity/forecast", params={"limit": 1000}).json()
        before = key.stat().st_mtime_ns
        atomic_write_parquet(wide_forecast(2.0), key)  # the weekly forecast_job runs again
        assert key.stat().st_mtime_ns != before
        stale = get(served, "/capacity/forecast", params={"cursor": first["next_cursor"]})
        body = assert_problem(stale, 409)
        assert "start again without cursor" in str(body["detail"])
        assert body["errors"] == [
            {"parameter": "cursor", "message": "cursor of a replaced version"}
        ]
        again = every_page(served, "/capacity/forecast", {"limit": 1000})
        values = {item["forecast"] for page in again for item in page["items"]}
        assert values == {2.0}


def test_workforce_and_procurement_endpoints_page_and_list_their_series(served):
    projects = get(served, "/workforce/forecast/projects", params={"limit": 1}).json()
    listed = every_page(served, "/workforce/forecast/projects", {"limit": 1})
    names = [item["project"] for page in listed for item in page["items"]]
    assert PROJECT in names and names == sorted(names) and projects["total"] == len(names)
    pages = every_page(served, "/workforce/forecast", {"limit": 5})
    rows = [(item["id"], item["time"]) for page in pages for item in page["items"]]
    assert rows == sorted(set(rows)) and len(rows) == pages[0]["total"]
    own = every_page(served, "/workforce/forecast", {"project": PROJECT, "limit": 2})
    count = next(
        item["rows"] for page in listed for item in page["items"] if item["project"] == PROJECT
    )
    assert sum(len(page["items"]) for page in own) == count
    plan = every_page(served, "/workforce/plan", {"limit": 1})
    assert [item["project"] for page in plan for item in page["items"]] == sorted(names)
    procurement = pl.DataFrame(
        {
            "cluster": ["west", "east", "east", "west"],
            "accelerator_type": ["a100", "h100", "a100", "a100"],
            "scenario": ["P90", "P50", "P50", "P50"],
            "to_order": [4, 1, 2, 3],
        }
    )
    with replaced_table(served, "procurement_plan", procurement):
        pages = every_page(served, "/capacity/procurement", {"limit": 3})
        assert [item["to_order"] for page in pages for item in page["items"]] == [2, 1, 3, 4]
        west = get(served, "/capacity/procurement", params={"cluster": "west"}).json()
        assert [item["to_order"] for item in west["items"]] == [3, 4]
        clusters = get(served, "/capacity/procurement/clusters").json()["items"]
        assert clusters == [{"cluster": "east", "rows": 2}, {"cluster": "west", "rows": 2}]


def _page_cursor(view: str, offset: int) -> str:
    """A cursor of the capacity endpoints' shape, made by hand."""
    raw = json.dumps({"view": view, "of": {}, "version": "0" * 16, "at": offset})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def test_datasets_latest_version_card_and_files(served):
    versions = pl.read_parquet(served.data / "lake" / layout.partition_key("dataset_versions"))
    [version] = versions.filter(pl.col("project") == PROJECT)["version_id"].to_list()
    listed = get(served, "/datasets").json()["items"]
    assert [item["version_id"] for item in listed if item["project"] == PROJECT] == [version]
    latest = get(served, f"/datasets/{PROJECT}/latest")
    assert latest.status_code == 200
    body = latest.json()
    assert body["version_id"] == version and body["approved"] is True
    assert body["card"].startswith("#") or len(body["card"]) > 20
    assert (
        get(served, f"/datasets/{PROJECT}/latest", params={"approved": "true"}).json()["version_id"]
        == version
    )
    names = {item["name"]: item["url"] for item in body["files"]}
    assert {"manifest.json", "card.md", "train.parquet", "train.jsonl"} <= set(names)
    download = httpx.get(
        names["train.parquet"], headers={"Authorization": f"Bearer {served.tokens['all']}"}
    )
    assert download.status_code == 200
    folder = served.data / "lake" / layout.dataset_prefix(PROJECT, version)
    assert pl.read_parquet(io.BytesIO(download.content)).equals(
        pl.read_parquet(folder / "train.parquet")
    )
    card = get(served, f"/datasets/{PROJECT}/{version}/card")
    assert card.text == (folder / "card.md").read_text()
    assert get(served, f"/datasets/{PROJECT}/{version}").json()["version_id"] == version
    assert_problem(get(served, f"/datasets/{PROJECT}/{version}/files/nothing.parquet"), 404)
    assert_problem(get(served, f"/datasets/{PROJECT}/0000/card"), 404)


def test_authentication_and_scopes(served):
    path = f"/projects/{PROJECT}/labels"
    missing = get(served, path, token=None)
    assert_problem(missing, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_problem(get(served, path, token="ap_0000_not-a-token"), 401)
    assert_problem(get(served, path, token=served.tokens["all"][:-2] + "xx"), 401)
    assert_problem(get(served, path, headers={"Authorization": "Basic abc"}, token=None), 401)
    assert_problem(get(served, path, token="quality"), 403)
    assert_problem(get(served, "/datasets", token="quality"), 403)
    assert_problem(get(served, "/capacity/forecast", token="raw"), 403)


def _cursor(start: str, end: str, served: object = "0" * DAY_DIGEST_WIDTH) -> str:
    """A labels cursor of the API's shape, made by hand: what it pages (the project, the range,
    the filters), the keyset position, the digest of the days served."""
    bound = {
        "project": PROJECT,
        "start": start,
        "end": end,
        "min_confidence": 0.0,
        "gated": False,
    }
    fields = {"view": "labels", "of": bound, "day": start, "task_id": "", "served": served}
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/projects/unknown/labels", {}, 404),
        ("/projects/unknown/scorecards", {}, 404),
        ("/projects/..%2F..%2Fetc/labels", {}, 404),
        (f"/projects/{PROJECT}/labels", {"day": "2026-13-01"}, 422),
        (f"/projects/{PROJECT}/labels", {"day": "yesterday"}, 422),
        (f"/projects/{PROJECT}/labels", {"limit": 0}, 422),
        (f"/projects/{PROJECT}/labels", {"limit": 10**6}, 422),
        (f"/projects/{PROJECT}/labels", {"min_confidence": 2}, 422),
        (f"/projects/{PROJECT}/labels", {"cursor": "not-a-cursor"}, 422),
        (f"/projects/{PROJECT}/labels", {"day": DAYS[0], "start": DAYS[0]}, 422),
        (f"/projects/{PROJECT}/labels", {"start": "2026-01-01", "end": "2026-12-31"}, 422),
        (f"/projects/{PROJECT}/quality", {"start": "2026-11-17", "end": "2026-11-16"}, 422),
        ("/projects/unknown/scorecards", {"day": "2020-01-01"}, 404),
        ("/projects/x' OR '1'='1/labels", {}, 422),
        # Names the lake refuses as a key segment are refused as parameters, as other bad names.
        ("/projects/a..b/labels", {}, 422),
        ("/datasets/a..b", {}, 422),
        ("/datasets/a..b/latest", {}, 422),
        (f"/datasets/{PROJECT}/v..1", {}, 422),
        (f"/datasets/{PROJECT}/v1/files/card..md", {}, 422),
        # A cursor made by hand carries a range no request may ask for.
        (f"/projects/{PROJECT}/labels", {"cursor": _cursor("2000-01-01", "2099-12-31")}, 422),
        (f"/projects/{PROJECT}/labels", {"cursor": _cursor(DAYS[1], DAYS[0])}, 422),
        # A digest of the days served is eight hex digits a day, no other length or text.
        (f"/projects/{PROJECT}/labels", {"cursor": _cursor(DAYS[0], DAYS[1], "0" * 7)}, 422),
        (f"/projects/{PROJECT}/labels", {"cursor": _cursor(DAYS[0], DAYS[1], "0x" * 4)}, 422),
        (f"/projects/{PROJECT}/labels", {"cursor": _cursor(DAYS[0], DAYS[1], 12345678)}, 422),
        (f"/projects/{PROJECT}/labels", {"cursor": _cursor(DAYS[0], DAYS[1], None)}, 422),
        ("/no/such/route", {}, 404),
        # The capacity endpoints page with a cursor too, and say so of anything else.
        ("/capacity/forecast", {"cursor": "not-a-cursor"}, 422),
        ("/capacity/forecast", {"cursor": _cursor(DAYS[0], DAYS[1])}, 422),
        ("/capacity/forecast", {"cursor": _page_cursor("compute_capacity_forecast", 0)}, 422),
        ("/capacity/forecast", {"cursor": _page_cursor("workforce_plan", 5)}, 422),
        ("/capacity/forecast", {"offset": 100}, 422),
        ("/capacity/forecast/series", {"id": "s00"}, 422),
        ("/workforce/forecast", {"cursor": "e30"}, 422),
        ("/workforce/plan", {"cursor": "x"}, 422),
        (f"/projects/{PROJECT}/labels", {"cursor": _page_cursor("workforce_plan", 5)}, 422),
    ],
)
def test_errors_are_problem_details(served, path, params, status):
    body = assert_problem(get(served, path, params=params), status)
    if status == 422:
        assert body["detail"]
        if path.startswith("/capacity") or path.startswith("/workforce"):
            # Which parameter is wrong: the cursor, or the one the endpoint does not take.
            wrong = "cursor" if "cursor" in params else next(iter(params))
            assert [error["parameter"] for error in body["errors"]] == [wrong]
        if ".." in path:
            assert body["errors"] and all(error["parameter"] for error in body["errors"])


def test_etag_gives_304_and_a_new_materialization_is_visible_at_once(served):
    path = f"/projects/{PROJECT}/labels"
    params = {"day": DAYS[1], "limit": 5}
    first = get(served, path, params=params)
    tag = first.headers["etag"]
    again = get(served, path, params=params, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.headers["etag"] == tag
    partition = served.data / "lake" / layout.partition_key("aggregated_labels", DAYS[1])
    original = pl.read_parquet(partition)
    task = first.json()["items"][0]["task_id"]
    try:
        changed = original.with_columns(
            label=pl.when(pl.col("task_id") == task)
            .then(pl.lit("relabelled"))
            .otherwise(pl.col("label"))
        )
        atomic_write_parquet(changed, partition)
        fresh = get(served, path, params=params, headers={"If-None-Match": tag})
        assert fresh.status_code == 200 and fresh.headers["etag"] != tag
        assert fresh.json()["items"][0]["label"] == "relabelled"
    finally:
        atomic_write_parquet(original, partition)


def test_pagination_is_consistent_while_a_new_partition_lands(served):
    path = f"/projects/{PROJECT}/labels"
    params = {"start": DAYS[0], "end": LATE_DAY, "limit": 100}
    pages = [get(served, path, params=params).json()]
    landed = False
    while pages[-1]["next_cursor"]:
        if len(pages) == 2 and not landed:
            served.materialize_day(LATE_DAY)  # lands while the client is on page 2
            landed = True
        pages.append(
            get(served, path, params={**params, "cursor": pages[-1]["next_cursor"]}).json()
        )
    assert landed
    rows = [(item["day"], item["task_id"]) for page in pages for item in page["items"]]
    assert rows == sorted(rows) and len(rows) == len(set(rows))
    # Reading the whole range again afterwards gives exactly the rows the pages gave.
    lake = served.data / "lake"
    expected = sorted(
        (day, task)
        for day in [*DAYS, LATE_DAY]
        for task in pl.read_parquet(lake / layout.partition_key("aggregated_labels", day))
        .filter(pl.col("project") == PROJECT)["task_id"]
        .to_list()
    )
    assert rows == expected
    # A cursor only continues the range it was issued for.
    other = {"start": DAYS[1], "end": LATE_DAY, "cursor": pages[0]["next_cursor"]}
    assert_problem(get(served, path, params=other), 422)


@contextmanager
def _rewritten(path: Path, frame: pl.DataFrame | None = None) -> Iterator[None]:
    """`path` rewritten as a materialization would (with `frame`, or as it is), then put back
    byte for byte with its modification time, so its version is the one it had before."""
    original, stamp = path.read_bytes(), path.stat()
    atomic_write_parquet(pl.read_parquet(path) if frame is None else frame, path)
    assert path.stat().st_mtime_ns != stamp.st_mtime_ns
    try:
        yield
    finally:
        spare = path.with_name(f"{path.name}.restore")
        spare.write_bytes(original)
        os.utime(spare, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        spare.replace(path)


def _day_rows(served: Served, day: str) -> list[str]:
    lake = served.data / "lake" / layout.partition_key("aggregated_labels", day)
    return sorted(pl.read_parquet(lake).filter(pl.col("project") == PROJECT)["task_id"].to_list())


def _labels_partition(served: Served, table: str, day: str) -> Path:
    return served.data / "lake" / layout.partition_key(table, day)


def test_a_labels_cursor_is_refused_once_a_day_it_served_is_rewritten(served):
    path = f"/projects/{PROJECT}/labels"
    params = {"start": DAYS[0], "end": DAYS[1], "limit": 50}
    first = get(served, path, params=params).json()
    assert {item["day"] for item in first["items"]} == {DAYS[0]}
    # A page reaching into the second day: the first is served whole, the second in part.
    into_second = {**params, "limit": len(_day_rows(served, DAYS[0])) - 50 + 10}
    second = get(served, path, params={**into_second, "cursor": first["next_cursor"]}).json()
    assert second["items"][-1]["day"] == DAYS[1] and second["next_cursor"]
    with _rewritten(_labels_partition(served, "aggregated_labels", DAYS[0])):  # late rows
        for cursor in (first["next_cursor"], second["next_cursor"]):
            stale = get(served, path, params={**params, "cursor": cursor})
            body = assert_problem(stale, 409)
            assert DAYS[0] in str(body["detail"]) and "without cursor" in str(body["detail"])
            assert f"start={DAYS[0]}" in str(body["detail"])
            assert body["rewritten_day"] == DAYS[0]
            assert body["restart"] == {"start": DAYS[0], "end": DAYS[1]}
            assert body["errors"] == [
                {"parameter": "cursor", "message": "cursor of a rewritten day"}
            ]
        # Paging again from the day named reads every row of the range once.
        restart = {**params, **body["restart"]}
        pages = _paged(served, path, restart)
        rows = [(item["day"], item["task_id"]) for page in pages for item in page["items"]]
        assert rows == [(day, task) for day in DAYS for task in _day_rows(served, day)]
    # A rewrite of the second day once its page was served is refused too.
    with _rewritten(_labels_partition(served, "aggregated_labels", DAYS[1])):
        stale = get(served, path, params={**params, "cursor": second["next_cursor"]})
        assert assert_problem(stale, 409)["rewritten_day"] == DAYS[1]
        # A cursor still in the first day has not read the second: it goes on.
        assert get(served, path, params={**params, "cursor": first["next_cursor"]}).is_success
    # Put back as it was, the day is the one the cursors served: they go on.
    assert get(served, path, params={**params, "cursor": second["next_cursor"]}).is_success


def test_a_day_rewritten_before_the_cursor_reaches_it_is_served_new(served):
    path = f"/projects/{PROJECT}/labels"
    params = {"start": DAYS[0], "end": DAYS[1], "limit": 50}
    first = get(served, path, params=params).json()
    assert {item["day"] for item in first["items"]} == {DAYS[0]}
    partition = _labels_partition(served, "aggregated_labels", DAYS[1])
    original = pl.read_parquet(partition)
    task = _day_rows(served, DAYS[1])[0]
    relabelled = original.with_columns(
        label=pl.when((pl.col("task_id") == task) & (pl.col("project") == PROJECT))
        .then(pl.lit("relabelled"))
        .otherwise(pl.col("label"))
    )
    with _rewritten(partition, relabelled):
        pages = [first]
        while pages[-1]["next_cursor"]:
            following = get(served, path, params={**params, "cursor": pages[-1]["next_cursor"]})
            assert following.status_code == 200, following.text
            pages.append(following.json())
    items = [item for page in pages for item in page["items"]]
    assert [(item["day"], item["task_id"]) for item in items] == [
        (day, task) for day in DAYS for task in _day_rows(served, day)
    ]
    assert [item["label"] for item in items if item["task_id"] == task] == ["relabelled"]


@pytest.mark.parametrize("gated", [False, True])
def test_a_re_run_quality_report_of_a_served_day_refuses_the_cursor(served, gated):
    path = f"/projects/{PROJECT}/labels"
    params = {"start": DAYS[0], "end": DAYS[1], "limit": 50, "gated": str(gated).lower()}
    first = get(served, path, params=params).json()
    assert {(item["day"], item["gates_passed"]) for item in first["items"]} == {(DAYS[0], True)}
    report = _labels_partition(served, "quality_report", DAYS[0])
    failed = pl.read_parquet(report).with_columns(
        gates_passed=pl.when(pl.col("project") == PROJECT)
        .then(False)
        .otherwise(pl.col("gates_passed"))
    )
    for rerun in (None, failed):  # re-run as it was, or with gates that now fail
        with _rewritten(report, rerun):
            stale = get(served, path, params={**params, "cursor": first["next_cursor"]})
            body = assert_problem(stale, 409)
            assert body["rewritten_day"] == DAYS[0] and DAYS[0] in str(body["detail"])
    # A re-run report of a day not yet reached is no conflict.
    with _rewritten(_labels_partition(served, "quality_report", DAYS[1]), None):
        assert get(served, path, params={**params, "cursor": first["next_cursor"]}).is_success


def test_token_command_prints_a_token_once_and_stores_only_its_hash(served, tmp_path):
    store = tmp_path / "tokens.json"
    env = {**os.environ, "ANNOTATION_PIPELINES_API_TOKEN_STORE": str(store)}
    command = [str(Path(sys.executable).parent / "annotation-pipelines"), "token"]
    done = subprocess.run(
        [*command, "--scopes", "quality:read,datasets:read"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    token = done.stdout.strip()
    assert token.startswith("ap_") and len(token) > 40
    stored = store.read_text()
    assert token not in stored and token.split("_", 2)[2] not in stored
    assert json.loads(stored)[0]["scopes"] == ["datasets:read", "quality:read"]
    assert oct(store.stat().st_mode)[-3:] == "600"
    bad = subprocess.run(
        [*command, "--scopes", "everything:write"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "everything:write" in bad.stderr
    # The running API reads the store it was configured with; a token added there works at once.
    served_store = served.settings.api_token_store
    env["ANNOTATION_PIPELINES_API_TOKEN_STORE"] = str(served_store)
    fresh = subprocess.run(
        [*command, "--scopes", "datasets:read"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.strip()
    assert get(served, "/datasets", token=fresh).status_code == 200


def test_cors_is_off_by_default_and_on_for_configured_origins(served):
    origin = {"Origin": "https://dashboard.example"}
    plain = get(served, "/health", token=None, headers=origin)
    assert "access-control-allow-origin" not in plain.headers
    import dataclasses

    allowed = start_server(
        dataclasses.replace(served.settings, api_cors_origins=("https://dashboard.example",))
    )
    try:
        response = httpx.get(f"{allowed.url}/v1/health", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://dashboard.example"
    finally:
        allowed.stop()


def test_a_lower_page_cap_bounds_the_default_page_of_labels_and_queue(served):
    import dataclasses

    capped = start_server(dataclasses.replace(served.settings, api_max_page_size=10))
    try:
        headers = {"Authorization": f"Bearer {served.tokens['all']}"}
        for path in (f"/projects/{PROJECT}/labels", f"/projects/{PROJECT}/queue"):
            response = httpx.get(
                f"{capped.url}/v1{path}", params={"day": DAYS[-1]}, headers=headers, timeout=30
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["items"]) == 10 and body["next_cursor"], path
    finally:
        capped.stop()


def test_an_empty_snapshot_is_not_approved():
    # Every day held back, or curated while its days were being rebuilt: nothing to vouch for.
    assert approved({"held_back_days": [], "rows": 120})
    assert not approved({"held_back_days": ["2026-11-29"], "rows": 120})
    assert not approved({"held_back_days": [], "rows": 0})
    assert not approved({"held_back_days": [], "selected": 0})


def test_latest_is_the_snapshot_the_last_materialization_produced(served):
    # A trial with a stricter filter writes a new version; going back to the defaults
    # produces the first content again, whose immutable folder is older. The dataset a
    # consumer gets as "latest" must be the one the project's curation produced last.
    project = "intent"
    served.instance.add_dynamic_partitions("projects", [project])  # type: ignore[attr-defined]

    def curate(config: dict) -> str:
        job = served.defs.resolve_job_def("curation_job")  # type: ignore[attr-defined]
        result = job.execute_in_process(
            partition_key=project,
            instance=served.instance,
            run_config={**QUIET, "ops": {"curated_dataset": {"config": config}}},
        )
        assert result.success
        event = result.get_asset_materialization_events()[0]
        return str(event.materialization.metadata["version_id"].value)

    default = curate({})
    strict = curate({"min_confidence": 0.95})
    assert strict != default
    assert get(served, f"/datasets/{project}/latest").json()["version_id"] == strict
    assert curate({}) == default
    latest = get(served, f"/datasets/{project}/latest").json()
    assert latest["version_id"] == default and latest["current"] is True
    listed = get(served, f"/datasets/{project}").json()["items"]
    assert [item["current"] for item in listed] == [
        item["version_id"] == default for item in listed
    ]
    approved = get(served, f"/datasets/{project}/latest", params={"approved": "true"}).json()
    assert approved["version_id"] == default


def test_a_snapshot_whose_day_failed_its_gates_later_is_no_longer_approved(served):
    # Approval was judged when the snapshot was written; a day re-checked since then (late data,
    # a stricter floor) can fail. A consumer asking for an approved snapshot must not get one
    # that holds a day whose gates fail now.
    project = "toxicity"
    served.instance.add_dynamic_partitions("projects", [project])  # type: ignore[attr-defined]
    job = served.defs.resolve_job_def("curation_job")  # type: ignore[attr-defined]
    result = job.execute_in_process(
        partition_key=project, instance=served.instance, run_config=QUIET
    )
    version = str(
        result.get_asset_materialization_events()[0].materialization.metadata["version_id"].value
    )
    path = f"/datasets/{project}/latest"
    answer = get(served, path)
    before, tag = answer.json(), answer.headers["etag"]
    assert before["version_id"] == version and before["approved"] is True
    assert before["failed_since"] == []
    partition = served.data / "lake" / layout.partition_key("quality_report", DAYS[1])
    original = pl.read_parquet(partition)
    failing = pl.col("project") == project
    try:
        atomic_write_parquet(
            original.with_columns(
                gates_passed=pl.when(failing).then(False).otherwise(pl.col("gates_passed")),
                failed_gates=pl.when(failing)
                .then(pl.lit("agreement_floor"))
                .otherwise("failed_gates"),
            ),
            partition,
        )
        fresh = get(served, path, headers={"If-None-Match": tag})
        assert fresh.status_code == 200
        after = fresh.json()
        assert after["approved"] is False and after["failed_since"] == [DAYS[1]]
        assert_problem(get(served, path, params={"approved": "true"}), 404)
        listed = get(served, "/datasets").json()["items"]
        assert [i["approved"] for i in listed if i["version_id"] == version] == [False]
    finally:
        atomic_write_parquet(original, partition)
    assert get(served, path).json()["approved"] is True


def test_a_snapshot_holding_a_day_without_a_verdict_is_not_approved(served):
    # A day with judgments but no quality report (quality not run yet, or its report removed)
    # has passed no gate: a snapshot that holds it vouches for nothing about that day.
    project = "toxicity"
    served.instance.add_dynamic_partitions("projects", [project])  # type: ignore[attr-defined]
    job = served.defs.resolve_job_def("curation_job")  # type: ignore[attr-defined]
    assert job.execute_in_process(
        partition_key=project, instance=served.instance, run_config=QUIET
    ).success
    path = f"/datasets/{project}/latest"
    before = get(served, path).json()
    assert before["approved"] is True and before["unjudged_days"] == []
    partition = served.data / "lake" / layout.partition_key("quality_report", DAYS[1])
    original = pl.read_parquet(partition)
    try:
        atomic_write_parquet(original.filter(pl.col("project") != project), partition)
        after = get(served, path).json()
        assert after["approved"] is False and after["unjudged_days"] == [DAYS[1]]
        assert after["failed_since"] == []
        assert_problem(get(served, path, params={"approved": "true"}), 404)
    finally:
        atomic_write_parquet(original, partition)
    assert get(served, path).json()["approved"] is True


def test_kind_snapshot_files_are_served_as_written_with_their_media_types(served):
    job = served.defs.resolve_job_def("kind_curation_job")  # type: ignore[attr-defined]
    assert job.execute_in_process(instance=served.instance, run_config=QUIET).success
    latest = get(served, "/datasets/entities/latest").json()
    assert latest["current"] is True
    names = {item["name"]: item["url"] for item in latest["files"]}
    assert {"conll.txt", "train.conll.txt", "spans.jsonl", "train.parquet", "data.parquet"} <= set(
        names
    )
    folder = served.data / "lake" / layout.dataset_prefix("entities", latest["version_id"])
    headers = {"Authorization": f"Bearer {served.tokens['all']}"}
    expected = {
        "train.conll.txt": "text/plain; charset=utf-8",
        "spans.jsonl": "application/x-ndjson",
        "train.parquet": "application/vnd.apache.parquet",
    }
    for name, media in expected.items():
        answer = httpx.get(names[name], headers=headers)
        assert answer.status_code == 200 and answer.headers["content-type"] == media, name
        assert answer.content == (folder / name).read_bytes(), name


def test_a_snapshot_whose_trainer_files_are_rewritten_keeps_its_id_and_created_at(served):
    job = served.defs.resolve_job_def("kind_curation_job")  # type: ignore[attr-defined]
    assert job.execute_in_process(instance=served.instance, run_config=QUIET).success
    latest = get(served, "/datasets/entities/latest").json()
    version = latest["version_id"]
    folder = served.data / "lake" / layout.dataset_prefix("entities", version)
    # Whole seconds, which every clock the lake's times pass through holds exactly.
    made = dt.datetime.fromtimestamp((folder / "manifest.json").stat().st_mtime_ns // 10**9, dt.UTC)
    _age(folder, made=made)
    listed = get(served, "/datasets/entities").json()["items"]
    old = next(item for item in listed if item["version_id"] == version)
    assert old["trainer_files"] is None and old["created_at"] == made.isoformat()

    assert job.execute_in_process(instance=served.instance, run_config=QUIET).success
    after = get(served, "/datasets/entities").json()["items"]
    assert [item["version_id"] for item in after] == [item["version_id"] for item in listed]
    new = next(item for item in after if item["version_id"] == version)
    assert new["created_at"] == old["created_at"] and new["current"] is True
    assert new["trainer_files"]["format"] == TRAINER_FILES_FORMAT["spans"]
    assert new["trainer_files"]["previous_format"] == 1
    conll = get(served, f"/datasets/entities/{version}/files/conll.txt")
    assert conll.content.startswith(b"-DOCSTART- O\n")
    assert hashlib.sha256(conll.content).hexdigest() == new["trainer_files"]["sha256"]["conll.txt"]
    versions_job = served.defs.resolve_implicit_global_asset_job_def().get_subset(  # type: ignore[attr-defined]
        asset_selection={AssetKey("dataset_versions")}
    )
    assert versions_job.execute_in_process(instance=served.instance, run_config=QUIET).success
    table = pl.read_parquet(served.data / "lake" / layout.partition_key("dataset_versions"))
    assert table.filter(pl.col("version_id") == version)["created_at"].to_list() == [made]


def test_dataset_versions_says_each_snapshots_kind(served):
    job = served.defs.resolve_job_def("kind_curation_job")  # type: ignore[attr-defined]
    assert job.execute_in_process(instance=served.instance, run_config=QUIET).success
    versions_job = served.defs.resolve_implicit_global_asset_job_def().get_subset(  # type: ignore[attr-defined]
        asset_selection={AssetKey("dataset_versions")}
    )
    assert versions_job.execute_in_process(instance=served.instance, run_config=QUIET).success
    table = pl.read_parquet(served.data / "lake" / layout.partition_key("dataset_versions"))
    kinds = dict(table.select("project", "kind").unique().iter_rows())
    assert kinds[PROJECT] == "categorical"
    for project, kind in KIND_PROJECTS.items():
        assert kinds[project] == kind
    # Each kind's version lists the filters its manifest names, as the categorical ones do.
    for row in table.iter_rows(named=True):
        manifest = json.loads(
            (
                served.data
                / "lake"
                / layout.dataset_prefix(row["project"], row["version_id"])
                / "manifest.json"
            ).read_text()
        )
        assert json.loads(row["filters"]) == manifest["filters"], row["project"]


def test_versions_built_with_other_filters_say_which_in_table_preview_and_api(
    tmp_path_factory, tmp_path
):
    """Two versions of one project from the same days, `min_confidence` 0.7 and 0.9, listed
    different row counts and only their manifests said why."""
    with lake_copy(built_lake(tmp_path_factory), tmp_path) as (defs, instance, data):
        strict = {**QUIET, "ops": {"curated_dataset": {"config": {"min_confidence": 0.9}}}}
        assert (
            defs.resolve_job_def("curation_job")  # type: ignore[attr-defined]
            .execute_in_process(partition_key=PROJECT, instance=instance, run_config=strict)
            .success
        )
        assert (
            defs.resolve_job_def("kind_curation_job")  # type: ignore[attr-defined]
            .execute_in_process(instance=instance, run_config=QUIET)
            .success
        )
        lake = data / "lake"
        # A version written before manifests carried its filters, its write time kept.
        [old] = (lake / layout.dataset_prefix("ratings")).glob("*/manifest.json")
        stamp = old.stat().st_mtime_ns
        manifest = json.loads(old.read_text())
        del manifest["filters"]
        old.write_text(json.dumps(manifest, indent=2))
        os.utime(old, ns=(stamp, stamp))
        listed = (
            defs.resolve_implicit_global_asset_job_def()  # type: ignore[attr-defined]
            .get_subset(asset_selection={AssetKey("dataset_versions")})
            .execute_in_process(instance=instance, run_config=QUIET)
        )
        assert listed.success
        table = pl.read_parquet(lake / layout.partition_key("dataset_versions"))
        assert table.schema["filters"] == pl.String
        manifests = {
            path.parent.name: json.loads(path.read_text())
            for path in (lake / layout.DATASETS).glob("*/*/manifest.json")
        }
        assert set(table["version_id"]) == set(manifests)
        for row in table.iter_rows(named=True):
            written = manifests[row["version_id"]].get("filters")
            assert (None if row["filters"] is None else json.loads(row["filters"])) == written
        assert table.filter(pl.col("project") == "ratings")["filters"].to_list() == [None]
        ours = table.filter(pl.col("project") == PROJECT)
        confidence = {
            json.loads(f)["min_confidence"]: n for f, n in ours.select("filters", "rows").rows()
        }
        assert set(confidence) == {0.7, 0.9} and confidence[0.9] < confidence[0.7]
        [event] = listed.get_asset_materialization_events()
        preview = event.materialization.metadata["versions"].value
        assert "| filters |" in preview
        for text in ours["filters"]:
            assert markdown_text(text) in preview

        settings = dataclasses.replace(load_settings(), api_token_store=tmp_path / "tokens.json")
        token = issue_token(settings.api_token_store, scopes=["datasets:read"])
        client = TestClient(create_app(settings), headers={"Authorization": f"Bearer {token}"})
        for path in ("/v1/datasets", f"/v1/datasets/{PROJECT}", "/v1/datasets/ratings"):
            items = client.get(path).json()["items"]
            assert items, path
            for item in items:
                written = manifests[item["version_id"]].get("filters")
                assert item["filters"] == written, (path, item["version_id"])
        [unknown] = client.get("/v1/datasets/ratings").json()["items"]
        assert "filters" in unknown and unknown["filters"] is None
        latest = client.get(f"/v1/datasets/{PROJECT}/latest").json()
        assert latest["filters"]["min_confidence"] == 0.9
        docs = client.get("/openapi.json").json()["paths"]
        for path in ("/v1/datasets", "/v1/datasets/{project}"):
            assert "`filters`" in docs[path]["get"]["description"], path


def test_an_unreadable_token_store_makes_requests_unavailable_not_failed(tmp_path):
    # A store edited by hand into a bad shape is an outage of the API's own files, like an
    # unreadable partition: 503, so clients retry and monitors see the store, not a bug.
    settings = dataclasses.replace(
        load_settings(),
        data_dir=tmp_path / "data",
        bucket=None,
        api_token_store=tmp_path / "tokens.json",
    )
    token = issue_token(settings.api_token_store, scopes=["labels:read"])
    entries = json.loads(settings.api_token_store.read_text())
    del entries[0]["salt"]
    settings.api_token_store.write_text(json.dumps(entries))
    client = TestClient(create_app(settings), headers={"Authorization": f"Bearer {token}"})
    response = client.get("/v1/projects")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "token store" in response.json()["detail"]
    assert str(tmp_path) not in response.text


@pytest.mark.parametrize("max_days", [92, 400])
def test_the_longest_labels_cursor_issued_is_accepted_back(max_days):
    # A digest per day served and the longest task id ingest keeps (JSON-escaped quotes double
    # it): a cursor past the parameter's limit was refused with a 422 on the next page.
    first = dt.date(2026, 1, 1)
    last = first + dt.timedelta(days=max_days - 1)
    cursor = _encode_cursor(
        LabelCursor(
            project="p" * NAME_MAX_LENGTH,
            start=first.isoformat(),
            end=last.isoformat(),
            min_confidence=0.1 + 0.2,  # the longest a float is written
            gated=False,
            day=last.isoformat(),
            task_id='"' * DEFAULT_MAX_FIELD_BYTES,
            served="0" * DAY_DIGEST_WIDTH * max_days,
        )
    )
    assert len(cursor) <= _label_cursor_max_length(max_days)
    assert _decode_cursor(cursor).task_id == '"' * DEFAULT_MAX_FIELD_BYTES


def test_every_answer_forbids_content_sniffing(tmp_path):
    """A card serves annotators' labels inline as Markdown: no answer may be guessed as HTML."""
    settings = dataclasses.replace(
        load_settings(), data_dir=tmp_path / "data", api_token_store=tmp_path / "tokens.json"
    )
    token = issue_token(settings.api_token_store, scopes=["datasets:read"])
    client = TestClient(create_app(settings))
    bearer = {"Authorization": f"Bearer {token}"}
    answers = [
        client.get("/v1/health"),
        client.get("/v1/datasets"),  # 401: no token
        client.get("/v1/datasets/p/v/card", headers=bearer),  # 404
        client.get("/v1/datasets/p%3Cb%3E/v/card", headers=bearer),  # 422
    ]
    assert [a.status_code for a in answers] == [200, 401, 404, 422]
    assert all(a.headers["x-content-type-options"] == "nosniff" for a in answers)


def test_quality_counts_days_without_a_gate_verdict_apart_from_failed_days(tmp_path):
    # A report older than the gates has no verdict (`gates_passed` null): it neither passed
    # nor failed, and counting it failed tells a reader the gates failed that day.
    lake = tmp_path / "data" / "lake"
    days = [dt.date(2026, 11, 16) + dt.timedelta(days=n) for n in range(3)]
    for day, verdict in zip(days, [True, False, None], strict=True):
        path = lake / layout.partition_key("kind_quality_report", day.isoformat())
        path.parent.mkdir(parents=True)
        pl.DataFrame(
            {
                "project": ["ratings"],
                "day": [day],
                "kind": ["numeric"],
                "gates_passed": [verdict],
                "failed_gates": ["" if verdict else None],
            },
            schema_overrides={"gates_passed": pl.Boolean, "failed_gates": pl.String},
        ).write_parquet(path)
    settings = dataclasses.replace(
        load_settings(), data_dir=tmp_path / "data", bucket=None,
        api_token_store=tmp_path / "tokens.json",
    )  # fmt: skip
    token = issue_token(settings.api_token_store, scopes=["quality:read"])
    client = TestClient(create_app(settings), headers={"Authorization": f"Bearer {token}"})
    response = client.get(
        "/v1/projects/ratings/quality", params={"start": str(days[0]), "end": str(days[-1])}
    )
    assert response.status_code == 200, response.text
    assert response.json()["summary"] == {
        "days": 3, "days_passed": 1, "days_failed": 1, "days_without_verdict": 1,
    }  # fmt: skip
    description = client.get("/openapi.json").json()["paths"]["/v1/projects/{project}/quality"]
    assert "`days_without_verdict`" in description["get"]["description"]
