"""Annotation workforce: throughput and backlog per project and day, and the hours an SLA needs.

Model (a fluid approximation of the annotation queue, the staffing-from-forecast framing of
Gans, Koole & Mandelbaum, 2003, "Telephone call centers: tutorial, review and research
prospects"): tasks arrive per project per day; a task is done when `overlap` distinct annotators
have judged it; annotators produce judgments at a measured rate (judgments per annotator-hour,
from the judgments' own `duration_s`). The daily task volume is forecast with the backtested
`forecaster.forecast` (daily, weekly season; Hyndman & Athanasopoulos, "Forecasting: principles and
practice", 3rd ed., ch. 5 for the naive fallbacks). Meeting an SLA of `sla_days` then needs,
per week, the hours for the forecast arrivals (`tasks × overlap / rate`) plus the hours that
clear today's backlog within `sla_days`; the backlog clears at current staffing on the first
day that arrivals-to-date minus capacity-to-date drain it to zero.

Modules: `settings` (per-project overlap and SLA), `throughput` (per project and day),
`volume` (the daily task-volume forecast, with fallbacks for short histories) and `plan`
(hours needed, backlog clear date, risk).
"""

from annotation_pipelines.forecasting.workforce.plan import (
    PLAN_COLUMNS,
    WorkforceForecast,
    workforce_forecast,
)
from annotation_pipelines.forecasting.workforce.settings import project_settings
from annotation_pipelines.forecasting.workforce.throughput import (
    THROUGHPUT_COLUMNS,
    workforce_throughput,
)

__all__ = [
    "PLAN_COLUMNS",
    "THROUGHPUT_COLUMNS",
    "WorkforceForecast",
    "project_settings",
    "workforce_forecast",
    "workforce_throughput",
]
