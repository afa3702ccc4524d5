"""A numeric project's declared rating scale: the answers it can hold.

A project declares it in its settings (the landing zone's `exports/<project>/project.json`):

    "scale": {"min": 1, "max": 5, "step": 1}

`min` and `max` are finite numbers with min < max; `step` (optional, > 0) says the answers are
min, min + step, min + 2·step, ...; `integer` (optional, true or false) that they are whole
numbers. An answer outside the scale or off its steps is not a rating anyone could have given
on that scale (a typo, a unit mix-up, a client bug): ingest quarantines it as `outside_scale`,
and aggregation measures confidence against the declared range instead of estimating the range
from the answers. The commands take the same scale as text, `MIN:MAX` or `MIN:MAX:STEP`.

A declaration that is not a valid scale raises a ValueError naming the file and the field, as
a malformed `quality_gates` floor does: a scale nobody meant would quarantine good answers.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import polars as pl

from annotation_pipelines.numbers import finite

# The key of a project's settings that declares its scale.
SETTINGS_KEY = "scale"
_FIELDS = ("min", "max", "step", "integer")
# How far from a step an answer may be and still be on it, in steps: answers typed as decimals
# (0.3 on a 0.1 step) are not exact multiples in binary floating point.
_STEP_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RatingScale:
    """The answers a numeric project can hold: [low, high], on `step`s from `low`, whole
    numbers only when `integer`."""

    low: float
    high: float
    step: float | None = None
    integer: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"min and max must be finite numbers, got {self.low!r}, {self.high!r}")
        if not self.low < self.high:
            raise ValueError(f"min must be below max, got min {self.low:g} and max {self.high:g}")
        if self.step is not None and not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"step must be a finite number > 0, got {self.step!r}")

    @property
    def width(self) -> float:
        """max − min; two bounds near a float's limits give the largest float, not infinity."""
        spread = self.high - self.low
        return spread if math.isfinite(spread) else sys.float_info.max

    def describe(self) -> str:
        """How quarantine reasons and messages name it: "scale [1, 5] step 1"."""
        text = f"scale [{self.low:g}, {self.high:g}]"
        if self.step is not None:
            text += f" step {self.step:g}"
        if self.integer:
            text += " whole numbers"
        return text

    def outside(self, value: pl.Expr) -> pl.Expr:
        """True where `value` (a numeric expression) is not an answer on the scale; null stays
        null (a missing value is reported as missing, not as off the scale)."""
        number = value.cast(pl.Float64, strict=False)
        off = ~number.is_finite() | (number < self.low) | (number > self.high)
        if self.step is not None:
            steps = (number - self.low) / self.step
            off = off | ((steps - steps.round()).abs() > _STEP_TOLERANCE * steps.abs().clip(1.0))
        if self.integer:
            off = off | ((number - number.round()).abs() > _STEP_TOLERANCE * number.abs().clip(1.0))
        return off

    def settings(self) -> dict[str, object]:
        """The scale as a project's settings declare it (`project_scale` reads it back)."""
        declared: dict[str, object] = {"min": self.low, "max": self.high}
        if self.step is not None:
            declared["step"] = self.step
        if self.integer:
            declared["integer"] = True
        return declared

    @classmethod
    def parse(cls, text: str) -> RatingScale:
        """`MIN:MAX` or `MIN:MAX:STEP` (a command's option). ValueError saying what is wrong."""
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"expected MIN:MAX or MIN:MAX:STEP, got {text!r}")
        numbers = []
        for name, part in zip(("MIN", "MAX", "STEP"), parts, strict=False):
            try:
                number = float(part.strip())
            except ValueError:
                raise ValueError(f"{name} of {text!r}: {part!r} is not a number") from None
            if not math.isfinite(number):
                raise ValueError(f"{name} of {text!r}: expected a finite number, got {part!r}")
            numbers.append(number)
        try:
            return cls(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else None)
        except ValueError as error:
            raise ValueError(f"{text!r}: {error}") from None


def project_scale(settings: Mapping[str, object], *, source: str) -> RatingScale | None:
    """The scale a project's settings declare (their `scale` object); None without one.
    ValueError in one line naming `source` (the file) and the field otherwise."""
    given = settings.get(SETTINGS_KEY)
    if given is None:
        return None
    if not isinstance(given, Mapping):
        raise ValueError(
            f'{source}: {SETTINGS_KEY}: expected an object like {{"min": 1, "max": 5}}, '
            f"got {type(given).__name__}"
        )
    unknown = sorted(str(name) for name in given if name not in _FIELDS)
    if unknown:
        raise ValueError(
            f"{source}: {SETTINGS_KEY}.{unknown[0]}: unknown field (known: {', '.join(_FIELDS)})"
        )
    numbers: dict[str, float | None] = {}
    for name in ("min", "max", "step"):
        if name not in given:
            if name != "step":
                raise ValueError(f"{source}: {SETTINGS_KEY}.{name}: missing")
            numbers[name] = None
            continue
        number = finite(given[name])
        if number is None or (name == "step" and number <= 0):
            wanted = "a number > 0" if name == "step" else "a finite number"
            raise ValueError(
                f"{source}: {SETTINGS_KEY}.{name}: expected {wanted}, got {given[name]!r}"
            )
        numbers[name] = number
    integer = given.get("integer", False)
    if not isinstance(integer, bool):
        raise ValueError(
            f"{source}: {SETTINGS_KEY}.integer: expected true or false, got {integer!r}"
        )
    low, high = numbers["min"], numbers["max"]
    if low is None or high is None or not low < high:
        raise ValueError(
            f"{source}: {SETTINGS_KEY}: min must be below max, got min {given['min']!r} "
            f"and max {given['max']!r}"
        )
    return RatingScale(low, high, numbers["step"], integer)


def declared_scales(
    declarations: Iterable[tuple[str, object]], *, source: Callable[[str], str]
) -> dict[str, RatingScale]:
    """Project -> its scale, from (project, declared `scale` object) pairs, for those declaring
    one; the ValueError of `project_scale` names `source(project)`."""
    scales: dict[str, RatingScale] = {}
    for project, declared in declarations:
        scale = project_scale({SETTINGS_KEY: declared}, source=source(project))
        if scale is not None:
            scales[project] = scale
    return scales


def agreed_scale(
    declared: RatingScale | None, db: RatingScale | None, *, source: str, project: str
) -> RatingScale | None:
    """The one scale of `project`, declared in its project.json (`declared`, read from
    `source`), in the annotation DB's `projects.scale` (`db`), or in both alike. Two that
    differ are refused, a ValueError naming both, rather than either silently winning: one of
    them would quarantine answers nobody meant to."""
    if declared is not None and db is not None and declared != db:
        raise ValueError(
            f"{source}: {SETTINGS_KEY}: {declared.describe()} disagrees with the annotation "
            f"DB's projects.scale for {project!r} ({db.describe()}); declare one, or the same "
            "in both"
        )
    return declared if declared is not None else db
