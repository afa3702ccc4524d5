"""A million judgments against the reference library (run with `-m scale`)."""

from __future__ import annotations

import krippendorff
import numpy as np
import polars as pl
import pytest

from annotation_pipelines.agreement import agreement_summary, krippendorff_alpha


@pytest.mark.scale
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_million_judgments_equal_krippendorff(level):
    generator = np.random.default_rng(11)
    n_tasks, n_annotators, votes = 200_000, 500, 5
    truth = generator.integers(1, 6, n_tasks)
    annotators = (
        generator.integers(0, n_annotators, n_tasks)[:, None] + 7 * np.arange(votes)[None, :]
    ) % n_annotators
    noisy = generator.random((n_tasks, votes)) < 0.3
    labels = np.where(noisy, generator.integers(1, 6, (n_tasks, votes)), truth[:, None])
    judgments = pl.DataFrame(
        {
            "task_id": np.repeat(np.arange(n_tasks), votes).astype(str),
            "annotator_id": annotators.ravel().astype(str),
            "label": labels.ravel().astype(str),
        }
    ).sample(fraction=1.0, shuffle=True, seed=3)
    matrix = np.full((n_annotators, n_tasks), np.nan)
    matrix[annotators.ravel(), np.repeat(np.arange(n_tasks), votes)] = labels.ravel()
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
    assert krippendorff_alpha(judgments, level) == pytest.approx(expected, abs=1e-9)
    summary = agreement_summary(judgments, level=level, n_resamples=20)
    assert summary["krippendorff_alpha_low"] < expected < summary["krippendorff_alpha_high"]
