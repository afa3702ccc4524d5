"""`live_quality_state`: running scorecards and task posteriors, a few seconds behind the DB.

The asset reads the annotation DB's changes since the stream position stored in the lake, folds
them into each project's live state (`loop.live.update`), writes the resulting requests and
blocks to the annotation DB, and commits the states and the new stream position together
(`Lake.commit`). Exactly once follows from that: a run that dies before its commit leaves the
old position, and the next run reads the same rows again; the ledger drops what it already
holds. Runs may overlap (the sensor launches the next while one works); the annotation DB's
advisory lock lets one at a time read, update and commit. The daily layers stay the record.
"""

from collections.abc import Callable
from datetime import UTC, datetime

import polars as pl
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from annotation_pipelines.loop.live import (
    ANNOTATOR_ACTIONS,
    TASK_REQUESTS,
    LiveOptions,
    label_studio_requests,
    load_state,
    load_stream,
    open_requests,
    state_files,
    state_prefix,
    stream_files,
    update_projects,
)
from annotation_pipelines.loop.policy import PolicyOptions
from assets.common.alerts import record_alert
from resources.annotation_db import AnnotationDatabase
from resources.lake import Lake

LIVE_GROUP = "live"


class LiveConfig(Config):
    """Set by the sensor; the thresholds are the project lead's (see `LiveOptions`)."""

    until: str | None = Field(
        default=None, description="Window end the sensor saw (the run reads at least to it)."
    )
    min_judgments: int = 30
    min_gold: int = 10
    min_gold_accuracy: float = 0.6
    max_spammer_score: float = 0.8
    min_agreement: float = 0.6
    min_votes: int = 3
    max_votes: int = 15
    target_confidence: float = 0.98

    def options(self) -> LiveOptions:
        return LiveOptions(
            min_judgments=self.min_judgments,
            min_gold=self.min_gold,
            min_gold_accuracy=self.min_gold_accuracy,
            max_spammer_score=self.max_spammer_score,
            min_agreement=self.min_agreement,
            policy=PolicyOptions(
                min_votes=self.min_votes,
                max_votes=self.max_votes,
                target_confidence=self.target_confidence,
            ),
        )


def _reader(lake: Lake) -> Callable[[str], bytes | None]:
    return lambda key: lake.get(key) if lake.exists(key) else None


@asset(
    group_name=LIVE_GROUP,
    kinds={"postgres", "polars"},
    description=(
        "Running annotator scorecards and per-task posteriors per project, updated from the "
        "annotation DB's change stream within a minute; blocks and task requests written back."
    ),
)
def live_quality_state(
    context: AssetExecutionContext,
    config: LiveConfig,
    annotation_db: AnnotationDatabase,
    lake: Lake,
) -> MaterializeResult:
    options = config.options()
    with annotation_db.live_lock():
        lake.recover()
        since, seen = load_stream(_reader(lake))
        extract = annotation_db.extract_live(since=since, seen=seen)
        judgments, gold = extract.result.judgments, extract.result.gold
        projects = set(judgments["project"].unique()) | set(gold["project"].unique())
        states = {p: load_state(p, _reader(lake)) for p in sorted(projects)}
        now = datetime.now(UTC)
        states, events = update_projects(
            states, judgments, gold, options, watermark=extract.until, now=now
        )
        requests = pl.concat(
            [pl.DataFrame(schema=TASK_REQUESTS), *(e.task_requests for e in events.values())]
        )
        actions = pl.concat(
            [
                pl.DataFrame(schema=ANNOTATOR_ACTIONS),
                *(e.annotator_actions for e in events.values()),
            ]
        )
        # The DB first: a crash after it re-runs this version, whose decisions the DB already
        # holds (same decision_id); a crash before the lake commit loses nothing.
        written = annotation_db.write_requests(task_requests=requests, annotator_actions=actions)
        record_alert(lake, [a for e in events.values() for a in e.alerts], log=context.log)
        writes = stream_files(extract.until, extract.seen)
        for project, state in states.items():
            writes.update(state_files(state))
            pending = open_requests(state, options, now=now)
            writes[f"{state_prefix(project)}/requests.json"] = label_studio_requests(pending)
        lake.commit(writes)
    # A Datetime column's min is a datetime, or None when the frame is empty.
    first = judgments["submitted_at"].min()
    lag = (now - first).total_seconds() if isinstance(first, datetime) else 0.0
    context.log.info(
        f"live ({since}, {extract.until}]: {judgments.height} judgment(s), "
        f"{written['task_requests']} request(s), {written['annotator_actions']} block(s)"
    )
    return MaterializeResult(
        metadata={
            "watermark": MetadataValue.text(extract.until.isoformat()),
            "judgments": MetadataValue.int(judgments.height),
            "new_judgments": MetadataValue.int(sum(e.new_judgments for e in events.values())),
            "task_requests_written": MetadataValue.int(written["task_requests"]),
            "blocks_written": MetadataValue.int(written["annotator_actions"]),
            "oldest_judgment_lag_s": MetadataValue.float(float(lag)),
            "versions": MetadataValue.json({p: s.version for p, s in states.items()}),
        }
    )
