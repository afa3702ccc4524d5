"""`--models` that names nothing is a usage error, not the default rule run silently."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from annotation_pipelines.forecasting.command import forecast_command


@pytest.mark.parametrize("models", ["", ",", " , ,"])
def test_models_naming_nothing_is_a_usage_error_before_the_input_is_read(tmp_path, models):
    # The input does not exist: the option is refused before it would be read.
    run = CliRunner().invoke(
        forecast_command,
        [str(tmp_path / "absent.csv"), "--time-col", "time", "--value-col", "value",
         "--models", models],
    )  # fmt: skip
    assert run.exit_code == 2, run.output
    assert "--models" in run.output and "names no model" in run.output
