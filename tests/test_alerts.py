"""The alert webhook against a real HTTP server on loopback: transient failures are retried
within a sensor tick's budget, a refused request is not, and a dead webhook costs bounded time."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest

from assets.common.alerts import (
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DEADLINE,
    WEBHOOK_MAX_WAIT,
    WEBHOOK_TIMEOUT,
    post_alerts,
    record_alert,
)
from resources.lake import LocalLake

ALERTS = [{"kind": "gate_failed", "severity": "ERROR", "message": "agreement below the floor"}]
# What a webhook that never answers may cost: every attempt times out, plus the waits between.
BUDGET = WEBHOOK_ATTEMPTS * WEBHOOK_TIMEOUT + (WEBHOOK_ATTEMPTS - 1) * WEBHOOK_MAX_WAIT


class Webhook:
    """A loopback HTTP server that answers POSTs from a script of (status, headers), the last
    entry repeating, and keeps what it received and when."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = script
        self.received: list[tuple[float, dict[str, object]]] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.received.append((time.monotonic(), body))
                outer.paths.append(self.path)
                index = min(len(outer.received), len(outer.script)) - 1
                status, headers = outer.script[index]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[type[Webhook]]:
    started: list[Webhook] = []

    def start(script: list[tuple[int, dict[str, str]]]) -> Webhook:
        started.append(Webhook(script))
        return started[-1]

    yield start  # type: ignore[misc]
    for server in started:
        server.close()


@pytest.fixture
def log(caplog) -> logging.Logger:
    caplog.set_level(logging.WARNING, logger="alerts-test")
    return logging.getLogger("alerts-test")


def lines(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_webhook_answering_503_twice_gets_the_alerts_on_the_third_attempt(
    webhook, log, caplog, tmp_path, monkeypatch
):
    hook = webhook([(503, {}), (503, {}), (200, {})])
    monkeypatch.setenv("ANNOTATION_PIPELINES_ALERT_WEBHOOK", hook.url)
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    record_alert(lake, ALERTS, log=log)
    assert [body for _, body in hook.received] == [{"alerts": ALERTS}] * 3
    assert pl.read_parquet(tmp_path / "lake" / "alerts" / "*.parquet")["kind"].to_list() == [
        "gate_failed"
    ]
    retries = [line for line in lines(caplog, logging.WARNING) if "webhook" in line]
    assert retries == [
        f"alert webhook {hook.url} attempt 1 of 3 failed: HTTP 503 Service Unavailable; retrying",
        f"alert webhook {hook.url} attempt 2 of 3 failed: HTTP 503 Service Unavailable; retrying",
    ]
    assert not lines(caplog, logging.ERROR)


def test_a_webhook_failing_every_attempt_logs_one_error_naming_the_url_and_the_cause(
    webhook, log, caplog
):
    hook = webhook([(500, {})])
    assert not post_alerts(hook.url, ALERTS, log=log)
    assert len(hook.received) == WEBHOOK_ATTEMPTS
    assert len(lines(caplog, logging.WARNING)) == WEBHOOK_ATTEMPTS - 1
    assert lines(caplog, logging.ERROR) == [
        f"alert webhook {hook.url} failed after 3 attempt(s): HTTP 500 Internal Server Error"
    ]


@pytest.mark.parametrize("status", [400, 401, 404, 413])
def test_a_client_error_is_not_retried(webhook, log, caplog, status):
    hook = webhook([(status, {"Retry-After": "1"})])
    assert not post_alerts(hook.url, ALERTS, log=log)
    assert len(hook.received) == 1
    assert not lines(caplog, logging.WARNING)
    [error] = lines(caplog, logging.ERROR)
    assert error.startswith(f"alert webhook {hook.url} failed after 1 attempt(s): HTTP {status}")


def test_a_429_waits_the_short_retry_after_and_gives_up_on_a_long_one(webhook, log, caplog):
    hook = webhook([(429, {"Retry-After": "1"}), (200, {})])
    assert post_alerts(hook.url, ALERTS, log=log)
    (first, _), (second, _) = hook.received
    assert second - first >= 0.9
    assert not lines(caplog, logging.ERROR)

    hook = webhook([(429, {"Retry-After": "60"}), (200, {})])
    started = time.monotonic()
    assert not post_alerts(hook.url, ALERTS, log=log)
    assert time.monotonic() - started < 1
    assert len(hook.received) == 1
    assert lines(caplog, logging.ERROR) == [
        f"alert webhook {hook.url} failed after 1 attempt(s): "
        "HTTP 429 Too Many Requests (Retry-After: 60)"
    ]


def test_a_webhook_that_is_down_costs_bounded_time_and_one_error(log, caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    started = time.monotonic()
    assert not post_alerts(url, ALERTS, log=log)
    assert time.monotonic() - started < BUDGET
    assert len(lines(caplog, logging.WARNING)) == WEBHOOK_ATTEMPTS - 1
    [error] = lines(caplog, logging.ERROR)
    assert error.startswith(f"alert webhook {url} failed after 3 attempt(s): ")
    assert "Connection refused" in error


def test_a_webhook_that_never_answers_costs_at_most_the_budget(log, caplog):
    # Accepts connections (the kernel's backlog) and never reads or answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        started = time.monotonic()
        assert not post_alerts(url, ALERTS, log=log)
        elapsed = time.monotonic() - started
    assert WEBHOOK_ATTEMPTS * WEBHOOK_TIMEOUT * 0.9 <= elapsed < BUDGET + 0.5
    [error] = lines(caplog, logging.ERROR)
    assert error.startswith(f"alert webhook {url} failed after 3 attempt(s): ")
    assert "timed out" in error


def test_a_webhook_whose_name_lookup_hangs_costs_at_most_the_deadline(log, caplog, monkeypatch):
    """No socket timeout bounds getaddrinfo: a resolver that never answers would hold the tick
    for as long as the system's resolver retries. The lookup is made to hang (the one stand-in
    here: a real hanging DNS server cannot be put in this process's resolver path)."""
    released = threading.Event()
    resolve = socket.getaddrinfo

    def hanging(host, *args, **kwargs):
        if host == "hook.hanging-dns.test":
            released.wait(60)
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    url = "http://hook.hanging-dns.test/hook"
    started = time.monotonic()
    try:
        assert not post_alerts(url, ALERTS, log=log)
        elapsed = time.monotonic() - started
    finally:
        released.set()
    assert WEBHOOK_DEADLINE - 0.1 <= elapsed < WEBHOOK_DEADLINE + 0.5
    assert lines(caplog, logging.ERROR) == [
        f"alert webhook {url} gave no answer within {WEBHOOK_DEADLINE:g} s (the host's name "
        "lookup or connection hangs); giving up"
    ]


def test_the_webhook_goes_through_the_proxy_the_environment_names(webhook, log, monkeypatch):
    proxy = webhook([(200, {})])  # answers as a forward proxy would, for any absolute URL
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy.url.removesuffix("/hook"))
    assert post_alerts("http://alerts.example.invalid/hook", ALERTS, log=log)
    assert [body for _, body in proxy.received] == [{"alerts": ALERTS}]
    assert proxy.paths == ["http://alerts.example.invalid/hook"]
