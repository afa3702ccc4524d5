"""The capacity-planning config file: lead time, target utilization, prices, planned launches.

A TOML file (`examples/capacity.toml` documents every field); its path comes from settings
(ANNOTATION_PIPELINES_CAPACITY_CONFIG), the example being the default. Errors name the file
and the field.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from annotation_pipelines.forecasting.scenarios import Launch
from annotation_pipelines.forecasting.telemetry import WORKLOAD_CLASSES

EXAMPLE = Path(__file__).resolve().parent / "examples" / "capacity.toml"
# A key outside these was skipped and its default used (`lead_time_week = 20` planned on 16
# weeks), so a misspelling is an error.
KEYS = (
    "lead_time_weeks",
    "horizon_weeks",
    "target_utilization",
    "accelerator_hour_price",
    "annotator_hour_price",
    "project_tier",
    "launches",
)
LAUNCH_KEYS = (
    "name",
    "series_id",
    "start",
    "accelerators",
    "ramp_days",
    "workload_class",
    "accelerator_type",
)
# Target utilization is looked up by a series' class; "unknown" is a series that reports none.
CLASSES = (*WORKLOAD_CLASSES, "unknown")
# The target of a class the table leaves out and that "unknown" does not set either.
DEFAULT_UTILIZATION = 0.8
# The plan forecasts every day of the horizon for every series and node: two years is as far
# as a procurement cycle looks (100,000 weeks would be 700,000 days per series).
MAX_HORIZON_WEEKS = 104


class CapacityConfigError(ValueError):
    """The config file is malformed; the message names the file and the field."""


@dataclass(frozen=True, kw_only=True)
class CapacityConfig:
    lead_time_weeks: int = 16
    horizon_weeks: int = 26
    target_utilization: dict[str, float] = field(
        default_factory=lambda: {"unknown": DEFAULT_UTILIZATION}
    )
    accelerator_hour_price: dict[str, float] = field(default_factory=dict)
    annotator_hour_price: dict[str, float] = field(default_factory=dict)
    project_tier: dict[str, str] = field(default_factory=dict)
    launches: tuple[Launch, ...] = ()
    source: str = "capacity config"  # the file it was read from, for error messages

    def check_launches(self, profiles: Mapping[str, tuple[str, str]]) -> None:
        """Each launch lands on a series the telemetry has (`profiles`: series id -> (workload
        class, accelerator type)) and says nothing about the series that contradicts it: its
        demand is added to that series' band, class and type."""
        for index, launch in enumerate(self.launches, start=1):
            where = f"{self.source}: launches[{index}]"
            if launch.series_id not in profiles:
                raise CapacityConfigError(
                    f"{where}.series_id: no telemetry series {launch.series_id!r} (have "
                    f"{', '.join(sorted(profiles))}); a launch adds demand to a series it has"
                )
            workload_class, accelerator_type = profiles[launch.series_id]
            # A series that reports no type or class ("unknown") contradicts no launch.
            if launch.accelerator_type not in (None, accelerator_type, "unknown") and (
                accelerator_type != "unknown"
            ):
                raise CapacityConfigError(
                    f"{where}.accelerator_type: {launch.accelerator_type!r}, but series "
                    f"{launch.series_id!r} runs on {accelerator_type}"
                )
            if launch.workload_class not in (None, workload_class, "unknown") and (
                workload_class != "unknown"
            ):
                raise CapacityConfigError(
                    f"{where}.workload_class: {launch.workload_class!r}, but series "
                    f"{launch.series_id!r} is {workload_class}"
                )

    def launches_under_way(self, *, first_day: dt.date) -> list[str]:
        """A note per launch that started before `first_day` (the first forecast day)."""
        return [
            f"{launch.name} (started {launch.start}): only the rest of its ramp is added; the "
            "telemetry holds what it brought so far"
            for launch in self.launches
            if launch.start < first_day
        ]

    def launches_after_horizon(self, *, first_day: dt.date) -> list[str]:
        """A note per launch that starts after the last forecast day: it adds nothing to this
        plan, which must say so rather than count it among its launches."""
        last_day = first_day + dt.timedelta(days=7 * self.horizon_weeks - 1)
        return [
            f"{launch.name} (starts {launch.start}): after the last forecast day "
            f"({last_day}), so not in this plan"
            for launch in self.launches
            if launch.start > last_day
        ]

    def utilization(self, workload_class: str | None) -> float:
        table = self.target_utilization
        return table.get(workload_class or "unknown", table.get("unknown", DEFAULT_UTILIZATION))

    def unlisted_classes(self, classes: Mapping[str, list[str]]) -> list[str]:
        """A note per workload class (`classes`: class -> its series) with no target of its
        own: it is planned at "unknown"'s, or the built-in default, which the plan must name
        rather than pass off as the class's (an inference series at 0.80 instead of 0.60 is a
        third fewer accelerators)."""
        notes = []
        for workload_class in sorted(classes):
            if workload_class in self.target_utilization:
                continue
            target = self.utilization(workload_class)
            if workload_class == "unknown":
                used = f"the built-in {target:.2f}"
            elif "unknown" in self.target_utilization:
                used = f"unknown's {target:.2f}"
            else:
                used = f"the built-in {target:.2f} (no unknown target either)"
            series = ", ".join(sorted(classes[workload_class]))
            notes.append(
                f"workload class {workload_class} (series {series}) has no target "
                f"in [target_utilization] of {Path(self.source).name}: planned "
                f"at {used}"
            )
        return notes

    def accelerator_price(self, accelerator_type: str | None) -> float | None:
        """The type's price; "unknown" prices only series that report no type (a named type
        missing from the table is unpriced, not priced as some other accelerator)."""
        return self.accelerator_hour_price.get(accelerator_type or "unknown")

    def annotator_price(self, project: str) -> float | None:
        tier = self.project_tier.get(project, "standard")
        return self.annotator_hour_price.get(tier)


def load_capacity_config(path: Path | str = EXAMPLE) -> CapacityConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise CapacityConfigError(f"{path}: capacity config not found") from error
    except OSError as error:  # a directory, no permission: Python's error names no config
        raise CapacityConfigError(
            f"{path}: capacity config cannot be read: {error.strerror or error}"
        ) from error
    except UnicodeDecodeError as error:
        raise CapacityConfigError(
            f"{path}: not UTF-8 text (byte {error.start}); TOML files are UTF-8"
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise CapacityConfigError(f"{path}: not valid TOML: {error}") from error

    def known(keys: dict[str, object], allowed: tuple[str, ...], where: str) -> None:
        unknown = [key for key in keys if key not in allowed]
        if unknown:
            raise CapacityConfigError(
                f"{path}: {where}unknown key {unknown[0]!r}; expected one of {', '.join(allowed)}"
            )

    known(raw, KEYS, "")

    def number(value: object, where: str, *, low: float = 0.0, high: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CapacityConfigError(f"{path}: {where}: expected a number, found {value!r}")
        # TOML has nan and inf; both pass a bound check (nan compares false) and plan nonsense.
        if not math.isfinite(value):
            raise CapacityConfigError(f"{path}: {where}: {value} is not a finite number")
        if value < low or (high is not None and value > high):
            bound = f"[{low}, {high}]" if high is not None else f">= {low}"
            raise CapacityConfigError(f"{path}: {where}: {value} is outside {bound}")
        return float(value)

    def identifier(value: object, where: str) -> str:
        # str() made `series_id = 5` "5" and `name = {x = 1}` "{'x': 1}"; a type of 100 or
        # ["L4"] went into the plan as it was.
        if not isinstance(value, str) or not value.strip():
            raise CapacityConfigError(f"{path}: {where}: expected a name, found {value!r}")
        return value

    def whole(value: object, where: str, *, low: float = 0.0) -> int:
        found = number(value, where, low=low)
        if not found.is_integer():
            raise CapacityConfigError(f"{path}: {where}: {value} is not a whole number")
        return int(found)

    def table(name: str, *, low: float = 0.0, high: float | None = None) -> dict[str, float]:
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise CapacityConfigError(f"{path}: [{name}]: expected a table")
        return {k: number(v, f"{name}.{k}", low=low, high=high) for k, v in values.items()}

    utilization = table("target_utilization", low=0.01, high=1.0)
    for name in utilization:
        if name not in CLASSES:
            raise CapacityConfigError(
                f"{path}: target_utilization.{name}: unknown workload class; expected one of "
                f"{', '.join(CLASSES)}"
            )
    launches: list[Launch] = []
    # One launch may span series under one name; on one series a name says which launch it
    # is, so a repeat is a block given twice, which added its accelerators twice.
    named: dict[tuple[str, str], int] = {}
    entries = raw.get("launches", [])
    if not isinstance(entries, list):
        raise CapacityConfigError(
            f"{path}: launches: expected an array of tables ([[launches]] per launch), found "
            f"{type(entries).__name__}"
        )
    for index, entry in enumerate(entries, start=1):
        where = f"launches[{index}]"
        if not isinstance(entry, dict):
            raise CapacityConfigError(f"{path}: {where}: expected a table, found {entry!r}")
        known(entry, LAUNCH_KEYS, f"{where}: ")
        workload_class = entry.get("workload_class")
        if workload_class is not None and workload_class not in CLASSES:
            raise CapacityConfigError(
                f"{path}: {where}.workload_class: {workload_class!r} is not a workload class; "
                f"expected one of {', '.join(CLASSES)}"
            )
        for required in ("name", "series_id", "start", "accelerators"):
            if required not in entry:
                raise CapacityConfigError(f"{path}: {where}: missing field {required!r}")
        launch_name = identifier(entry["name"], f"{where}.name")
        series_id = identifier(entry["series_id"], f"{where}.series_id")
        accelerator_type = entry.get("accelerator_type")
        if accelerator_type is not None:
            accelerator_type = identifier(accelerator_type, f"{where}.accelerator_type")
        if (launch_name, series_id) in named:
            raise CapacityConfigError(
                f"{path}: {where}.name: {launch_name!r} on series {series_id!r} is "
                f"launches[{named[launch_name, series_id]}] too; give each launch its own name"
            )
        named[launch_name, series_id] = index
        start = entry["start"]
        if isinstance(start, str):
            try:
                start = dt.date.fromisoformat(start)
            except ValueError as error:
                raise CapacityConfigError(
                    f"{path}: {where}.start: {start!r} is not a YYYY-MM-DD date"
                ) from error
        # A TOML date-time is a datetime, itself a date to isinstance, and crashed the plan
        # comparing it with the forecast's days: refused rather than cut to its day unsaid.
        if isinstance(start, dt.datetime):
            raise CapacityConfigError(
                f"{path}: {where}.start: {start} is a date and time; give the day alone "
                f"(start = {start.date().isoformat()})"
            )
        if not isinstance(start, dt.date):
            raise CapacityConfigError(f"{path}: {where}.start: expected a date, found {start!r}")
        launches.append(
            Launch(
                name=launch_name,
                series_id=series_id,
                start=start,
                accelerators=number(entry["accelerators"], f"{where}.accelerators"),
                ramp_days=whole(entry.get("ramp_days", 14), f"{where}.ramp_days"),
                workload_class=workload_class,
                accelerator_type=accelerator_type,
            )
        )
    tiers = raw.get("project_tier", {})
    annotator_prices = table("annotator_hour_price")
    if not isinstance(tiers, dict):
        raise CapacityConfigError(f"{path}: [project_tier]: expected a table")
    for project, tier in tiers.items():
        if not isinstance(tier, str):
            raise CapacityConfigError(
                f"{path}: project_tier.{project}: expected a tier name, found {tier!r}"
            )
        # A tier exists to be priced: one without a price is a typo or a missing table, found
        # here rather than as a blank cost months later. Projects not listed are `standard`,
        # whose price may be missing; the plan names those instead (`costs.unpriced_tiers`).
        if tier not in annotator_prices:
            raise CapacityConfigError(
                f"{path}: project_tier.{project}: {tier!r} has no price in "
                f"[annotator_hour_price] ({', '.join(annotator_prices) or 'empty'})"
            )
    lead_time_weeks = whole(raw.get("lead_time_weeks", 16), "lead_time_weeks")
    horizon_weeks = whole(raw.get("horizon_weeks", 26), "horizon_weeks", low=1)
    if horizon_weeks > MAX_HORIZON_WEEKS:
        raise CapacityConfigError(
            f"{path}: horizon_weeks: {horizon_weeks} weeks is more than {MAX_HORIZON_WEEKS} "
            "(two years), the furthest the plan forecasts every day of"
        )
    if lead_time_weeks >= horizon_weeks:
        raise CapacityConfigError(
            f"{path}: lead_time_weeks: {lead_time_weeks} weeks is not shorter than horizon_weeks "
            f"({horizon_weeks}): an order would arrive after the last forecast day, so nothing "
            "says how many it takes; plan further ahead"
        )
    return CapacityConfig(
        lead_time_weeks=lead_time_weeks,
        horizon_weeks=horizon_weeks,
        target_utilization=utilization or {"unknown": DEFAULT_UTILIZATION},
        accelerator_hour_price=table("accelerator_hour_price"),
        annotator_hour_price=annotator_prices,
        project_tier={str(k): str(v) for k, v in tiers.items()},
        launches=tuple(launches),
        source=str(path),
    )
