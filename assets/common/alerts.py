"""Alerts shared by the sensors of several layers: a lake record, a log line, a webhook."""

import json
import urllib.request
from datetime import UTC, datetime
from typing import Protocol

import polars as pl

from annotation_pipelines.lake import alert_key
from annotation_pipelines.settings import load_settings
from resources.lake import Lake


class AlertLog(Protocol):
    """What an alert is logged to: a Dagster context's `log` (or any `logging.Logger`)."""

    def warning(self, msg: str, /) -> object: ...

    def error(self, msg: str, /) -> object: ...


def record_alert(lake: Lake, alerts: list[dict[str, object]], *, log: AlertLog) -> None:
    """Append alerts to the lake's alerts table, log them, and POST them to the webhook."""
    if not alerts:
        return
    stamp = datetime.now(UTC)
    frame = pl.DataFrame(alerts).with_columns(raised_at=pl.lit(stamp))
    lake.put_frame(alert_key(stamp), frame)
    for alert in alerts:
        log.warning(f"ALERT {alert['kind']}: {alert['message']}")
    url = load_settings().alert_webhook
    if url:
        body = json.dumps({"alerts": alerts}, default=str).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except OSError as error:  # the alert is already in the table and the log
            log.error(f"alert webhook {url} failed: {error}")
