"""Alerts shared by the sensors of several layers: a lake record, a log line, a webhook."""

import hashlib
import json
import logging
import threading
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

import polars as pl
import urllib3
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import HTTPError, MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from annotation_pipelines.lake import alert_key, alert_record_key
from annotation_pipelines.settings import load_settings
from resources.lake import Lake, parquet_bytes

# The webhook is called inside a sensor tick, which must stay short. At most WEBHOOK_ATTEMPTS
# attempts of at most WEBHOOK_TIMEOUT s each, and at most WEBHOOK_MAX_WAIT s between two
# (backoff or the server's Retry-After), so a dead, slow or throttling webhook holds the tick at
# most 3 × 1.5 s + 2 × 1 s = 6.5 s. A Retry-After longer than that wait is not honoured by
# hammering sooner: the POST gives up (the alert is already in the alerts table and the log).
WEBHOOK_ATTEMPTS = 3
WEBHOOK_TIMEOUT = 1.5
WEBHOOK_MAX_WAIT = 1
# urllib3's timeouts start once a connection is being made: the host's name lookup before it
# (getaddrinfo, which no socket option bounds) is not counted. The POST runs in a thread the
# tick waits for at most the budget above plus a little, so a resolver that hangs costs the
# same bounded time as a dead webhook.
WEBHOOK_DEADLINE = (
    WEBHOOK_ATTEMPTS * WEBHOOK_TIMEOUT + (WEBHOOK_ATTEMPTS - 1) * WEBHOOK_MAX_WAIT + 0.5
)
# Transient answers only: a 4xx other than 429 says the request itself is wrong.
WEBHOOK_RETRY_STATUSES = frozenset({429, *range(500, 600)})


class AlertLog(Protocol):
    """What an alert is logged to: a Dagster context's `log` (or any `logging.Logger`)."""

    def warning(self, msg: str, /) -> object: ...

    def error(self, msg: str, /) -> object: ...


def record_alert(
    lake: Lake, alerts: list[dict[str, object]], *, log: AlertLog
) -> list[dict[str, object]]:
    """Append to the lake's alerts table the `alerts` it does not hold yet, log them and POST
    them to the webhook; return those. A sensor is evaluated more than once from one cursor (a
    `dagster sensor preview` keeps no cursor, a tick that failed before its cursor was stored
    runs again), and each evaluation finds the same alerts: each is an object named by its
    identity, written and announced by the first evaluation only."""
    stamp = datetime.now(UTC)
    new = []
    for alert in alerts:
        key = alert_record_key(alert_identity(alert))
        if lake.exists(key):
            continue
        frame = pl.DataFrame([alert]).with_columns(raised_at=pl.lit(stamp))
        lake.put(key, parquet_bytes(frame))
        new.append(alert)
    announce_alerts(new, log=log)
    return new


def alert_identity(alert: dict[str, object]) -> str:
    """What an alert says (kind, check, day, severity, the run that raised it, its message), as
    a digest: the same failure seen again by another evaluation has the same identity."""
    text = json.dumps(alert, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def alert_objects(alerts: list[dict[str, object]]) -> dict[str, bytes]:
    """The alerts table's object holding `alerts` (none without any), for a run to commit with
    the state that raised them (`Lake.commit`): a run that never commits records none."""
    if not alerts:
        return {}
    stamp = datetime.now(UTC)
    frame = pl.DataFrame(alerts).with_columns(raised_at=pl.lit(stamp))
    return {alert_key(stamp): parquet_bytes(frame)}


def announce_alerts(alerts: list[dict[str, object]], *, log: AlertLog) -> None:
    """Log `alerts` and POST them to the webhook: once they are recorded (committed)."""
    if not alerts:
        return
    for alert in alerts:
        log.warning(f"ALERT {alert['kind']}: {alert['message']}")
    url = load_settings().alert_webhook
    if url:
        post_alerts(url, alerts, log=log)


class _WebhookRetry(Retry):
    """urllib3's retry policy for the webhook: logs each failed attempt that will be retried,
    and gives up on a Retry-After longer than a sensor tick can wait."""

    # urllib3 would also retry a 413 that carries a Retry-After; a too-large body stays too large.
    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

    def __init__(self, *args: Any, url: str = "", log: AlertLog | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.url = url
        self.log = log
        # The causes of the failed attempts, shared by the copies urllib3 makes per attempt.
        self.failures: list[str] = []

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.url, retry.log, retry.failures = self.url, self.log, self.failures
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        cause = _answer(response) if response is not None else str(error)
        self.failures.append(cause)
        wait = _retry_after(response)
        if wait is not None and wait > WEBHOOK_MAX_WAIT:
            raise MaxRetryError(_pool, url, ResponseError(cause))  # type: ignore[arg-type]
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.log is not None:
            self.log.warning(
                f"alert webhook {self.url} attempt {len(retry.history)} of {WEBHOOK_ATTEMPTS} "
                f"failed: {cause}; retrying"
            )
        return retry


def _not_a_webhook_retry(record: logging.LogRecord) -> bool:
    # urllib3 logs its own warning per retried connection error; ours already names the attempt.
    args = record.args if isinstance(record.args, tuple) else ()
    return not (args and isinstance(args[0], _WebhookRetry))


logging.getLogger("urllib3.connectionpool").addFilter(_not_a_webhook_retry)


def _retry_after(response: BaseHTTPResponse | None) -> float | None:
    if response is None or not response.headers.get("Retry-After"):
        return None
    try:
        return Retry(retry_after_max=Retry.DEFAULT_RETRY_AFTER_MAX).get_retry_after(response)
    except HTTPError:  # unparseable: backoff as if there were none
        return None


def _answer(response: BaseHTTPResponse) -> str:
    text = f"HTTP {response.status} {response.reason or ''}".rstrip()
    if wait := response.headers.get("Retry-After"):
        text += f" (Retry-After: {wait})"
    return text


def _pool_for(url: str) -> urllib3.PoolManager:
    """A pool that goes through the proxy the environment names for `url`, as urllib does."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy)
    return urllib3.PoolManager()


class _HeldLog:
    """The lines of a POST running in its own thread, logged by the caller once it returns in
    time: a late thread never writes to a log its tick has closed."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def warning(self, msg: str, /) -> object:
        self.lines.append(("warning", msg))
        return None

    def error(self, msg: str, /) -> object:
        self.lines.append(("error", msg))
        return None


def post_alerts(url: str, alerts: list[dict[str, object]], *, log: AlertLog) -> bool:
    """POST `alerts` to the webhook at `url`, retrying transient failures within the budget
    above, the name lookup included (`WEBHOOK_DEADLINE`); True when the webhook took them.
    Every failure is logged, none is raised: the alerts are already in the lake's alerts table
    and the log. A POST still running at the deadline is left to finish on its own (it may yet
    deliver: a duplicate alert beats a lost one) and reported as failed."""
    held = _HeldLog()
    outcome: list[bool] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_post(url, alerts, log=held)),
        name="alert-webhook",
        daemon=True,
    )
    worker.start()
    worker.join(WEBHOOK_DEADLINE)
    if worker.is_alive():
        log.error(
            f"alert webhook {url} gave no answer within {WEBHOOK_DEADLINE:g} s (the host's name "
            "lookup or connection hangs); giving up"
        )
        return False
    for level, line in held.lines:
        getattr(log, level)(line)
    return bool(outcome and outcome[0])


def _post(url: str, alerts: list[dict[str, object]], *, log: AlertLog) -> bool:
    body = json.dumps({"alerts": alerts}, default=str).encode()
    retry = _WebhookRetry(
        total=WEBHOOK_ATTEMPTS - 1,
        other=0,  # TLS, proxy and protocol setup errors are not transient
        redirect=False,
        allowed_methods=None,  # a POST too: a duplicate alert beats a lost one
        status_forcelist=WEBHOOK_RETRY_STATUSES,
        backoff_factor=WEBHOOK_MAX_WAIT / 2,
        backoff_max=WEBHOOK_MAX_WAIT,
        retry_after_max=WEBHOOK_MAX_WAIT,
        raise_on_status=False,
        url=url,
        log=log,
    )
    try:
        response = _pool_for(url).request(
            "POST",
            url,
            body=body,
            headers={"Content-Type": "application/json"},
            retries=retry,
            timeout=urllib3.Timeout(total=WEBHOOK_TIMEOUT),
        )
    except (HTTPError, OSError, ValueError) as error:
        cause = error.reason if isinstance(error, MaxRetryError) else error
        attempts = max(1, len(retry.failures))
        log.error(f"alert webhook {url} failed after {attempts} attempt(s): {cause}")
        return False
    if 200 <= response.status < 300:
        return True
    attempts = len(response.retries.history) + 1 if response.retries else 1
    log.error(f"alert webhook {url} failed after {attempts} attempt(s): {_answer(response)}")
    return False
