"""What the layers' cron schedules share."""

from annotation_pipelines.settings import load_settings

# The day closes at midnight in this zone, so a schedule's "morning" is the morning there.
SCHEDULE_TIMEZONE = load_settings().timezone
