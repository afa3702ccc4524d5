"""`make backfill`'s check of FROM and TO before Dagster queues anything.

`python -m assets.common.backfill_range FROM TO` exits 2 with one line saying what is wrong
when the range is not one of daily partitions: Dagster's own answers name neither the rule
nor the setting behind it (`ValueError: max() arg is an empty sequence` for a reversed range,
`invalid value 2026-08-31 for from` for a day before the start date).
"""

import sys
from datetime import UTC, datetime

from annotation_pipelines.settings import is_day
from assets.common.partitions import START_DATE, daily_partitions


def range_error(start: str, end: str, *, now: datetime | None = None) -> str | None:
    """Why FROM=`start` TO=`end` is not a range of daily partitions, or None."""
    for name, day in (("FROM", start), ("TO", end)):
        if not is_day(day):
            return f"{name}={day}: expected YYYY-MM-DD"
    if start > end:
        return f"FROM={start} is after TO={end}"
    if start < START_DATE:
        return (
            f"FROM={start} is before the first daily partition, {START_DATE} "
            "(ANNOTATION_PIPELINES_START_DATE)"
        )
    keys = daily_partitions.get_partition_keys(current_time=now or datetime.now(UTC))
    last = keys[-1] if keys else None
    if last is None or end > last:
        return (
            f"TO={end} is after the last daily partition, {last or 'none yet'}: a day is a "
            "partition once it has ended (UTC)"
        )
    return None


if __name__ == "__main__":
    error = range_error(*sys.argv[1:3])
    if error is not None:
        print(f"make backfill: {error}", file=sys.stderr)
        sys.exit(2)
