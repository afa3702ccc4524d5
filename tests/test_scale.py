import math

import polars as pl
import pytest

from annotation_pipelines.scale import RatingScale, agreed_scale, project_scale

SOURCE = "exports/ratings/project.json"


def test_a_declared_scale_reads_min_max_and_the_optional_step_and_integer():
    assert project_scale({}, source=SOURCE) is None
    assert project_scale({"scale": {"min": 1, "max": 5}}, source=SOURCE) == RatingScale(1.0, 5.0)
    declared = project_scale(
        {"scale": {"min": 0, "max": 1, "step": 0.1, "integer": False}}, source=SOURCE
    )
    assert declared == RatingScale(0.0, 1.0, 0.1)
    assert project_scale(
        {"scale": {"min": 1, "max": 10, "integer": True}}, source=SOURCE
    ) == RatingScale(1.0, 10.0, None, True)


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        ([1, 5], "scale: expected an object like"),
        ({"min": 5, "max": 1}, "scale: min must be below max, got min 5 and max 1"),
        ({"min": 3, "max": 3}, "scale: min must be below max"),
        ({"min": "1", "max": 5}, "scale.min: expected a finite number, got '1'"),
        ({"min": 1, "max": float("inf")}, "scale.max: expected a finite number, got inf"),
        ({"min": float("nan"), "max": 5}, "scale.min: expected a finite number, got nan"),
        ({"min": True, "max": 5}, "scale.min: expected a finite number, got True"),
        ({"min": 1, "max": 10**400}, "scale.max: expected a finite number"),
        ({"max": 5}, "scale.min: missing"),
        ({"min": 1, "max": 5, "step": 0}, "scale.step: expected a number > 0, got 0"),
        ({"min": 1, "max": 5, "integer": "yes"}, "scale.integer: expected true or false"),
        ({"min": 1, "max": 5, "maximum": 5}, "scale.maximum: unknown field"),
    ],
)
def test_a_bad_declaration_names_the_file_and_the_field(scale, message):
    with pytest.raises(ValueError, match="^" + SOURCE) as error:
        project_scale({"scale": scale}, source=SOURCE)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_option_text_is_min_max_and_an_optional_step():
    assert RatingScale.parse("1:5") == RatingScale(1.0, 5.0)
    assert RatingScale.parse("-2:2:0.5") == RatingScale(-2.0, 2.0, 0.5)
    for text, message in [
        ("5", "expected MIN:MAX or MIN:MAX:STEP"),
        ("1:5:1:1", "expected MIN:MAX or MIN:MAX:STEP"),
        ("a:5", "MIN of 'a:5': 'a' is not a number"),
        ("1:inf", "MAX of '1:inf': expected a finite number"),
        ("nan:5", "MIN of 'nan:5': expected a finite number"),
        ("5:1", "'5:1': min must be below max"),
        ("1:5:0", "'1:5:0': step must be a finite number > 0"),
        ("1:5:-1", "step must be a finite number > 0"),
    ]:
        with pytest.raises(ValueError) as error:
            RatingScale.parse(text)
        assert message in str(error.value), text


def test_answers_outside_the_range_or_off_its_steps_are_outside():
    values = [1.0, 5.0, 3.0, 0.5, 5.5, 1e200, -1e200, math.nan, math.inf, 2.5, None]
    frame = pl.DataFrame({"value": values}, schema={"value": pl.Float64})

    def outside(scale: RatingScale) -> list[bool | None]:
        return frame.select(scale.outside(pl.col("value"))).to_series().to_list()

    ranged = [False, False, False, True, True, True, True, True, True, False, None]
    assert outside(RatingScale(1, 5)) == ranged
    stepped = [*ranged[:9], True, None]
    assert outside(RatingScale(1, 5, 1.0)) == stepped
    assert outside(RatingScale(1, 5, integer=True)) == stepped
    # Decimal steps are not exact in binary: 0.3 is on a 0.1 step, 0.35 is not.
    tenths = pl.DataFrame({"value": [0.0, 0.3, 0.7, 1.0, 0.35]})
    assert tenths.select(RatingScale(0, 1, 0.1).outside(pl.col("value"))).to_series().to_list() == [
        False,
        False,
        False,
        False,
        True,
    ]


def test_it_describes_itself_as_quarantine_reasons_name_it():
    assert RatingScale(1, 5).describe() == "scale [1, 5]"
    assert RatingScale(0, 1, 0.25).describe() == "scale [0, 1] step 0.25"
    assert RatingScale(1, 10, integer=True).describe() == "scale [1, 10] whole numbers"
    assert RatingScale(-1e308, 1e308).width == pytest.approx(1.7976931348623157e308)


@pytest.mark.parametrize(
    "scale", [RatingScale(1, 5), RatingScale(0, 1, 0.1), RatingScale(1, 10, None, True)]
)
def test_a_scale_recorded_as_settings_reads_back_the_same(scale):
    assert project_scale({"scale": scale.settings()}, source=SOURCE) == scale


def test_a_project_has_one_scale_wherever_it_is_declared():
    five, ten = RatingScale(1, 5, 1), RatingScale(0, 10)
    kwargs = {"source": SOURCE, "project": "ratings"}
    assert agreed_scale(None, None, **kwargs) is None
    assert agreed_scale(five, None, **kwargs) == five
    assert agreed_scale(None, five, **kwargs) == five
    assert agreed_scale(five, RatingScale(1.0, 5.0, 1.0), **kwargs) == five
    with pytest.raises(ValueError, match=r"^exports/ratings/project.json: scale: scale \[0, 10\] "):
        agreed_scale(ten, five, **kwargs)
