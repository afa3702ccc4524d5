"""`live_compaction_job`: the merges of live state segments too large for a live run.

A live run merges segments inline only up to `LIVE_COMPACTION.max_inline_rows` rows; a larger
merge (the ledger's millions of rows a few times a day) is left listed as due, and the live
sensor launches this job for it. The job builds each merge without the live lock (listed
segments are immutable: a live run only appends new ones and merges small ones after them),
writes the merged segment under its new key, and then, under the annotation DB's advisory
lock that serializes the live runs, commits `state.json` listing it in place of its parts
(`Lake.commit`, the parts deleted). The commit is checked against the listing stored at that
moment, so it is safe whatever ran in between: a listing that no longer holds the parts in a
row (another maintenance run merged them) commits nothing. A job killed before its commit
leaves an unlisted segment object, which the next run of the same merge rewrites: the daemon
retries a failed run (`LIVE_RETRY_TAGS`).
"""

from dagster import Config, OpExecutionContext, job, op
from pydantic import Field

from annotation_pipelines.loop.live import (
    LIVE_COMPACTION,
    LIVE_PREFIX,
    LedgerCompaction,
    merge_objects,
    plan_merge,
)
from assets.live.jobs import LIVE_RETRY_TAGS
from resources.annotation_db import AnnotationDatabase
from resources.lake import Lake

# A compaction run merges at most a few million rows; one still running after this is stuck.
COMPACTION_MAX_RUNTIME_SECONDS = 1800


class CompactionConfig(Config):
    """Set by the live sensor; the sizes are `LIVE_COMPACTION`'s, which the live runs use."""

    projects: list[str] = Field(
        default_factory=list, description="Projects with a merge due (empty: every project)."
    )
    fan_in: int = LIVE_COMPACTION.fan_in
    base_rows: int = LIVE_COMPACTION.base_rows
    max_inline_rows: int | None = LIVE_COMPACTION.max_inline_rows

    def compaction(self) -> LedgerCompaction:
        return LedgerCompaction(
            fan_in=self.fan_in, base_rows=self.base_rows, max_inline_rows=self.max_inline_rows
        )


def live_projects(lake: Lake) -> list[str]:
    """Projects with a stored live state."""
    found = set()
    for key in lake.list_keys(f"{LIVE_PREFIX}/"):
        parts = key.split("/")
        # The stream position's folder (`_stream`) is no project's: names start alphanumeric.
        if len(parts) == 3 and parts[2] == "state.json" and not parts[1].startswith("_"):
            found.add(parts[1])
    return sorted(found)


@op(
    description=(
        "Merge the live state segments a live run left for maintenance (too large to merge "
        "within a run), committed under the live lock."
    )
)
def compact_live_state(
    context: OpExecutionContext,
    config: CompactionConfig,
    lake: Lake,
    annotation_db: AnnotationDatabase,
) -> None:
    compaction = config.compaction()

    read = lake.get_if_exists
    for project in config.projects or live_projects(lake):
        while (merge := plan_merge(project, read, compaction)) is not None:
            # Written before the lock: keys no listing holds yet, so no reader sees them.
            for key, data in merge.objects.items():
                lake.put(key, data)
            with annotation_db.live_lock() as lock:
                lake.recover()
                objects = merge_objects(read, merge)
                if objects is not None:
                    writes = {k: v for k, v in objects.writes.items() if k not in merge.objects}
                    lock.verify()
                    lake.commit(writes, deletes=objects.deletes)
            if objects is None:
                context.log.info(f"{project}: {merge.merged.key} merged by another run meanwhile")
                break
            context.log.info(
                f"{project}: {len(merge.parts)} {merge.table} segment(s) merged into "
                f"{merge.merged.key} ({merge.merged.rows:,} rows)"
            )


@job(
    description="Merge the large live state segments off the live runs' path.",
    tags={"dagster/max_runtime": str(COMPACTION_MAX_RUNTIME_SECONDS), **LIVE_RETRY_TAGS},
)
def live_compaction_job() -> None:
    compact_live_state()
