"""Run statuses as the sensors ask about them: a run not started yet, one on its way, one that
may still write."""

from dagster import DagsterRunStatus

# Created and not started: such a run reads its inputs (and its config's files) when it starts.
NOT_STARTED_YET = (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED)
# Not started yet, or its worker is starting: on its way, not working yet.
ON_ITS_WAY = (*NOT_STARTED_YET, DagsterRunStatus.STARTING)
# On its way or working.
UNDERWAY = (*ON_ITS_WAY, DagsterRunStatus.STARTED)
# Underway or being canceled: a run that may still write what it writes.
UNFINISHED = (*UNDERWAY, DagsterRunStatus.CANCELING)
