"""Real local services for tests: a throwaway PostgreSQL database, a moto S3 server, and the
helpers that start, stop, wait for and query Dagster's own processes.

Both are real network peers on 127.0.0.1 (real SQL, real HTTP + boto3), started by the test
when they are down; a test skips with the reason only when a service cannot be started here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def ensure_postgres() -> None:
    if _postgres_up():
        return
    versions = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").exists() else []
    if versions and shutil.which("pg_ctlcluster"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main", "start"],
            check=False,
            capture_output=True,
            timeout=60,
        )
    if not _postgres_up():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is down and could not be started here")


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A uniquely named database, dropped afterwards; yields its name."""
    import psycopg

    ensure_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated_before(dsn: str, version: int, *, schema: str | None = None) -> None:
    """The migration files before `version` run in order, as `psql -f` would: the database as a
    release before `version` left it (`schema` created and used when given)."""
    import psycopg

    from annotation_pipelines.ingest.postgres import migration_files

    with psycopg.connect(dsn, autocommit=True) as connection:
        if schema is not None:
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            connection.execute(f"SET search_path TO {schema}")
        for number, path in migration_files():
            if number < version:
                connection.execute(path.read_text())


def migrate_at_once(dsn: str, *, schema: str, sessions: int = 4) -> list[str]:
    """`apply_schema` from `sessions` threads released together, as runs starting at once on a
    new or upgraded database call it; the errors they raised, as `Type: message`."""
    import threading

    from annotation_pipelines.ingest.postgres import apply_schema

    start = threading.Barrier(sessions)
    failures: list[str] = []

    def migrate() -> None:
        start.wait()
        try:
            apply_schema(dsn, schema=schema)
        except Exception as error:
            failures.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=migrate) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1; yields its endpoint URL, with dummy credentials set."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        below = [child for parent in frontier for child in children.get(parent, [])]
        found.extend(below)
        frontier = below
    return found


def stop_tree(process: subprocess.Popen, *, grace: float = 30.0) -> None:
    """Stop a service started with `start_new_session=True` and everything it started.

    Its process group gets SIGTERM, then SIGKILL after `grace` s; then any descendant still
    alive gets SIGKILL. Dagster's daemon and webserver start their code servers in sessions of
    their own, out of reach of the group signal: without this they outlive the test (about
    420 MB each).
    """
    below = descendants(process.pid)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        # SIGKILL cannot be refused; this only waits for the kernel to reap the process.
        process.wait(timeout=30)
    deadline = time.monotonic() + 5
    for pid in below:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.5) -> T:
    """`predicate()`'s first truthy value, polled every `interval` s for up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    """The `data` of a `dagster-webserver`'s GraphQL reply (what the UI reads)."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


def code_loaded(url: str) -> bool:
    """Whether the webserver at `url` is up with every code location loaded."""
    query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
    try:
        entries = graphql(url, query)["workspaceOrError"]["locationEntries"]
    except OSError:
        return False
    return bool(entries) and all(entry["loadStatus"] == "LOADED" for entry in entries)


@contextmanager
def tool_and_pipelines_roles(database: str) -> Iterator[tuple[str, str]]:
    """`database` brought to migration 5 by the superuser, the tool's own role owning
    `judgments` and `gold_labels`, and a pipelines' role that may read and write every table
    (create in the schema, see every session) and owns the write-back's tables but neither of
    those; yields (tool DSN, pipelines
    DSN). The roles are dropped afterwards."""
    import psycopg

    suffix = uuid.uuid4().hex[:8]
    tool, pipelines = f"tool_{suffix}", f"pipelines_{suffix}"
    owner = f"postgresql://postgres@127.0.0.1:5432/{database}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
        for role in (tool, pipelines):
            connection.execute(f"CREATE ROLE {role} LOGIN")
        # It sees the other sessions' transactions: the extract's safe bound is theirs, not
        # the clock less a lag.
        connection.execute(f"GRANT pg_read_all_stats TO {pipelines}")
    try:
        migrated_before(owner, 6)
        with psycopg.connect(owner, autocommit=True) as connection:
            for statement in (
                f"ALTER TABLE judgments OWNER TO {tool}",
                f"ALTER TABLE gold_labels OWNER TO {tool}",
                # The write-back's own tables and function are the pipelines', as when the
                # pipelines' role applied migrations 2-5 itself: later migrations alter them.
                f"ALTER TABLE task_requests OWNER TO {pipelines}",
                f"ALTER TABLE annotator_actions OWNER TO {pipelines}",
                f"ALTER TABLE annotation_pipelines_migrations OWNER TO {pipelines}",
                f"ALTER FUNCTION annotator_actions_keep_revoked() OWNER TO {pipelines}",
                f"GRANT USAGE ON SCHEMA public TO {tool}",
                f"GRANT CREATE, USAGE ON SCHEMA public TO {pipelines}",
                f'GRANT CREATE ON DATABASE "{database}" TO {pipelines}',
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
                f"TO {pipelines}",
                f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {pipelines}",
                f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {tool}",
                f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {tool}",
            ):
                connection.execute(statement)
        yield (
            f"postgresql://{tool}@127.0.0.1:5432/{database}",
            f"postgresql://{pipelines}@127.0.0.1:5432/{database}",
        )
    finally:
        with psycopg.connect(owner, autocommit=True) as connection:
            for role in (tool, pipelines):
                connection.execute(f"REASSIGN OWNED BY {role} TO postgres")
                connection.execute(f"DROP OWNED BY {role}")
        with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
            for role in (tool, pipelines):
                connection.execute(f"DROP ROLE IF EXISTS {role}")
