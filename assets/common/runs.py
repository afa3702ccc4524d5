"""Run statuses as the sensors ask about them (a run not started yet, one on its way, one that
may still write), and the tags the daemon puts on the runs it launches."""

from dagster import DagsterRunStatus

# Created and not started: such a run reads its inputs (and its config's files) when it starts.
NOT_STARTED_YET = (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED)
# Not started yet, or its worker is starting: on its way, not working yet.
ON_ITS_WAY = (*NOT_STARTED_YET, DagsterRunStatus.STARTING)
# On its way or working.
UNDERWAY = (*ON_ITS_WAY, DagsterRunStatus.STARTED)
# Underway or being canceled: a run that may still write what it writes.
UNFINISHED = (*UNDERWAY, DagsterRunStatus.CANCELING)

# The daemon's tags: the run key of a sensor's run (kept by its retries), and on a failed run
# whether it will be retried and, once it has been, the retry's run id.
RUN_KEY_TAG = "dagster/run_key"
WILL_RETRY_TAG = "dagster/will_retry"
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"
