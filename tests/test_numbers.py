"""A figure that is not a finite number is null, whichever module reports it."""

import math

import numpy as np
import pytest

from annotation_pipelines.numbers import finite


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1.0),
        (0.25, 0.25),
        (np.float64(0.5), 0.5),
        (np.float32(0.5), 0.5),
        (np.int64(3), 3.0),
        (math.nan, None),
        (np.float64("-inf"), None),
        (10**400, None),
        (True, None),
        (np.True_, None),
        ("3", None),
        (None, None),
    ],
)
def test_finite_is_a_plain_float_or_none(value, expected):
    result = finite(value)
    assert result == expected and (result is None or type(result) is float)
