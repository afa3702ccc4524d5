"""Polars scalar results narrowed to the type their column holds, or an error naming them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from annotation_pipelines.forecasting.scalars import as_date, as_datetime, as_float, as_int


def test_numbers_convert_like_the_builtins() -> None:
    assert as_float(pl.Series([1.5, 2.5]).max(), what="x") == 2.5
    assert as_float(Decimal("0.25"), what="x") == 0.25
    assert as_int(pl.Series([3, 9]).max(), what="x") == 9
    assert as_int(pl.Series([2.0, 4.0]).median(), what="x") == 3


def test_dates_pass_through() -> None:
    day = dt.date(2025, 3, 1)
    moment = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC)
    assert as_date(pl.Series([day]).max(), what="x") == day
    assert as_datetime(pl.Series([moment]).max(), what="x") == moment


@pytest.mark.parametrize(
    ("convert", "value"),
    [(as_float, None), (as_int, "7"), (as_date, 3), (as_datetime, dt.date(2025, 1, 1))],
)
def test_the_wrong_type_names_the_value(convert: object, value: object) -> None:
    assert callable(convert)
    with pytest.raises(TypeError, match="peak demand: expected"):
        convert(value, what="peak demand")
