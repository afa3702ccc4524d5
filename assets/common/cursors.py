"""Sensor cursors: every sensor keeps its state as one JSON object.

With a cursor a restart neither reprocesses nor misses anything, and every run request carries
a run key, so a tick evaluated twice launches nothing twice.
"""

import json


def load_cursor(cursor: str | None) -> dict:
    """The state a sensor stored in its cursor (empty on the first tick)."""
    return json.loads(cursor) if cursor else {}
