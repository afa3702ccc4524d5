"""Typed views of Polars scalar results.

`Series.max()`, `.min()`, `.first()` and friends are typed as any Python literal (or None);
these narrow one to the type the column holds, and name the value when it is not that type.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal


def as_float(value: object, *, what: str) -> float:
    """`value` (an int, float or Decimal) as a float; TypeError naming `what` otherwise."""
    if not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"{what}: expected a number, got {value!r}")
    return float(value)


def as_int(value: object, *, what: str) -> int:
    """`value` (an int, float or Decimal) as an int; TypeError naming `what` otherwise."""
    if not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"{what}: expected a number, got {value!r}")
    return int(value)


def as_date(value: object, *, what: str) -> dt.date:
    """`value` (a date, or a datetime which is one) unchanged; TypeError naming `what` otherwise."""
    if not isinstance(value, dt.date):
        raise TypeError(f"{what}: expected a date, got {value!r}")
    return value


def as_datetime(value: object, *, what: str) -> dt.datetime:
    """`value` (a datetime) unchanged; TypeError naming `what` otherwise."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{what}: expected a datetime, got {value!r}")
    return value
