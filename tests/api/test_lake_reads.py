"""How the API reads the lake: what a request lists, and what a corrupt file does to requests
and to readiness."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient

from annotation_pipelines.api import create_app
from tests.api.conftest import DAYS, KIND_PROJECTS, PROJECT, Served


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
