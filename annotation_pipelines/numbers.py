"""Numbers as the tables and JSON hold them: a figure that is not a finite number is null."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any


def finite(value: Any) -> float | None:
    """`value` as a finite float, None for anything else: NaN, ±inf, a boolean, a non-number,
    an integer beyond a float's range (JSON has no limit on digits; `float` raises on them).
    NumPy's scalars are numbers like Python's."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
