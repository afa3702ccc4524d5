"""Real crowd data sets (read in place from shared/data) against the krippendorff package."""

from __future__ import annotations

import krippendorff
import numpy as np
import polars as pl
import pytest

from annotation_pipelines.agreement import (
    agreement_summary,
    cohen_kappa_matrix,
    fleiss_kappa,
    krippendorff_alpha,
)
from tests.realdata import ALL_CROWD, load_crowd


def dense_reliability_matrix(judgments: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    # The reference library only accepts coders × units; build it for its side only.
    domain = sorted(judgments.get_column("label").unique().to_list())
    coded = judgments.with_columns(
        pl.col("annotator_id").rank("dense").cast(pl.Int64).alias("row") - 1,
        pl.col("task_id").rank("dense").cast(pl.Int64).alias("column") - 1,
        pl.col("label").replace_strict(domain, list(range(len(domain)))).alias("code"),
    )
    matrix = np.full((coded["row"].max() + 1, coded["column"].max() + 1), np.nan)
    matrix[coded["row"].to_numpy(), coded["column"].to_numpy()] = coded["code"].to_numpy()
    return matrix, domain


@pytest.mark.realdata
@pytest.mark.parametrize("name", ALL_CROWD)
def test_alpha_on_real_crowd_data_equals_krippendorff(name):
    judgments, _ = load_crowd(name)
    judgments = judgments.unique(["task_id", "annotator_id"], keep="first", maintain_order=True)
    matrix, _ = dense_reliability_matrix(judgments)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert krippendorff_alpha(judgments) == pytest.approx(expected, abs=1e-9)
    summary = agreement_summary(judgments, n_resamples=100)
    assert summary["krippendorff_alpha_low"] <= summary["krippendorff_alpha"]
    assert summary["krippendorff_alpha"] <= summary["krippendorff_alpha_high"]
    assert -1.0 <= fleiss_kappa(judgments) <= 1.0
    pairs = cohen_kappa_matrix(judgments, min_overlap=20)
    assert pairs.height > 0 and pairs["kappa"].drop_nulls().is_between(-1.0, 1.0).all()
