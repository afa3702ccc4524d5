"""Jobs of the operations layer: the lake's daily housekeeping."""

from dagster import (
    DefaultScheduleStatus,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from assets.common.schedules import SCHEDULE_TIMEZONE
from resources.lake import Lake


@op(
    description=(
        "Finish commits whose writer died after their marker, then remove what commits that "
        "never got one staged and the temporaries of killed writes, once they are an hour old "
        "(younger ones may be a writer's still at work, so runs may commit meanwhile)."
    )
)
def maintain_lake(context: OpExecutionContext, lake: Lake) -> None:
    removed = lake.maintain()
    for key in removed:
        context.log.info(f"removed {key}")
    context.log.info(f"lake maintenance: {len(removed)} orphaned object(s) removed")


@job(description="Sweep the lake of what failed or killed commits and writes left behind.")
def lake_maintenance_job() -> None:
    maintain_lake()


daily_lake_maintenance_schedule = ScheduleDefinition(
    name="daily_lake_maintenance_schedule",
    job=lake_maintenance_job,
    # After the daily runs of 01:00 have committed, in the hours when fewest runs commit.
    cron_schedule="30 4 * * *",
    execution_timezone=SCHEDULE_TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING,
    description="The lake's housekeeping once a day.",
)
