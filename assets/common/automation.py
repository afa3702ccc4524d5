"""Declarative automation shared by the downstream layers."""

from dagster import AutomationCondition

# Rebuild a partition when any upstream partition it reads was updated, once nothing upstream
# is still running. Unlike `eager()` there is no "latest time window only" clause (late data for
# an older day must propagate too) and no "all deps present" clause (a per-project snapshot
# never has every day since the start date).
REBUILD_ON_UPSTREAM_CHANGE = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("rebuild_on_upstream_change")
