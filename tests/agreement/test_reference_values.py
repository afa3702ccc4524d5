"""Exact published values (shared/reference/agreement.md) and hand-derived ones."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from annotation_pipelines.agreement import (
    agreement_intervals,
    agreement_summary,
    fleiss_kappa,
    krippendorff_alpha,
    percent_agreement,
)
from tests.agreement.conftest import FLEISS_WIKIPEDIA, frame


@pytest.mark.parametrize(
    ("level", "expected"),
    [("nominal", 0.743421), ("ordinal", 0.815388), ("interval", 0.849107), ("ratio", 0.797403)],
)
def test_krippendorff_2011_all_levels(krippendorff_2011, level, expected):
    assert krippendorff_alpha(krippendorff_2011, level=level) == pytest.approx(expected, abs=1e-6)


def test_unpairable_unit_drops_out(krippendorff_2011):
    without_unit_12 = krippendorff_2011.filter(pl.col("task_id") != "unit12")
    for level in ("nominal", "ordinal", "interval", "ratio"):
        assert krippendorff_alpha(without_unit_12, level) == pytest.approx(
            krippendorff_alpha(krippendorff_2011, level), abs=1e-12
        )


def test_fleiss_wikipedia(fleiss_wikipedia):
    assert fleiss_kappa(fleiss_wikipedia) == pytest.approx(0.209931, abs=1e-6)
    assert percent_agreement(fleiss_wikipedia) == pytest.approx(0.378022, abs=1e-6)
    assert fleiss_kappa(fleiss_wikipedia) == pytest.approx(
        statsmodels_fleiss_kappa(np.array(FLEISS_WIKIPEDIA)), abs=1e-12
    )


def test_toy_crowd_alpha(toy_crowd):
    assert krippendorff_alpha(toy_crowd) == pytest.approx(0.14219114219114215, abs=1e-12)


def test_fleiss_unequal_raters_hand_derived():
    # t1: a a b (P=1/3), t2: a b (P=0), t3: b b b b (P=1), t4: a (one rating: drops out).
    # P̄ = 4/9; pooled p_a = 3/9, p_b = 6/9, P̄e = 5/9; kappa = (4/9 − 5/9)/(4/9) = −1/4.
    judgments = frame(
        [
            ("t1", "r1", "a"), ("t1", "r2", "a"), ("t1", "r3", "b"),
            ("t2", "r1", "a"), ("t2", "r4", "b"),
            ("t3", "r1", "b"), ("t3", "r2", "b"), ("t3", "r3", "b"), ("t3", "r4", "b"),
            ("t4", "r2", "a"),
        ]
    )  # fmt: skip
    assert fleiss_kappa(judgments) == pytest.approx(-0.25, abs=1e-12)
    assert percent_agreement(judgments) == pytest.approx(4 / 9, abs=1e-12)


def test_undefined_statistics_are_nan():
    one_value = frame([("t1", "a", "x"), ("t1", "b", "x"), ("t2", "a", "x"), ("t2", "b", "x")])
    assert math.isnan(krippendorff_alpha(one_value))
    assert math.isnan(fleiss_kappa(one_value))
    assert percent_agreement(one_value) == 1.0
    no_pairs = frame([("t1", "a", "x"), ("t2", "a", "y")])
    assert math.isnan(krippendorff_alpha(no_pairs))
    summary = agreement_summary(no_pairs)
    assert summary["krippendorff_alpha"] is None and summary["n_pairable_tasks"] == 0


def test_numeric_levels_name_the_offending_label(krippendorff_2011):
    bad = pl.concat([krippendorff_2011, frame([("unit1", "coderE", "high")])])
    for level in ("ordinal", "interval", "ratio"):
        with pytest.raises(ValueError, match=r"label 'high' is not a finite number"):
            krippendorff_alpha(bad, level)
    assert math.isfinite(krippendorff_alpha(bad, "nominal"))


def test_unknown_level_and_missing_column(krippendorff_2011):
    with pytest.raises(ValueError, match="level must be one of"):
        krippendorff_alpha(krippendorff_2011, "cardinal")
    with pytest.raises(ValueError, match=r"missing column.*'label'"):
        fleiss_kappa(krippendorff_2011.drop("label"))


def test_missing_labels_are_missing_values(krippendorff_2011):
    with_nulls = pl.concat(
        [
            krippendorff_2011,
            pl.DataFrame(
                {"task_id": ["unit1"], "annotator_id": ["coderC"], "label": [None]},
                schema=krippendorff_2011.schema,
            ),
        ]
    )
    assert krippendorff_alpha(with_nulls, "interval") == pytest.approx(0.849107, abs=1e-6)


def test_numeric_label_column_matches_text(krippendorff_2011):
    numeric = krippendorff_2011.with_columns(pl.col("label").cast(pl.Int64))
    for level in ("nominal", "ordinal", "interval", "ratio"):
        assert krippendorff_alpha(numeric, level) == pytest.approx(
            krippendorff_alpha(krippendorff_2011, level), abs=1e-12
        )


def test_bootstrap_interval_brackets_the_estimate_and_is_reproducible(fleiss_wikipedia):
    first = agreement_intervals(fleiss_wikipedia, n_resamples=300, seed=7)
    second = agreement_intervals(fleiss_wikipedia, n_resamples=300, seed=7)
    assert first.equals(second)
    for row in first.iter_rows(named=True):
        assert row["ci_low"] <= row["value"] <= row["ci_high"], row
        assert row["ci_low"] < row["ci_high"]
    wider = agreement_intervals(fleiss_wikipedia, n_resamples=300, seed=7, confidence=0.99)
    assert (wider["ci_high"] - wider["ci_low"] >= first["ci_high"] - first["ci_low"]).all()


@pytest.mark.parametrize("dense_max_values", [0, 64])
def test_task_weights_equal_duplicated_tasks(krippendorff_2011, monkeypatch, dense_max_values):
    # Weighting every task by 3 must equal literally triplicating the data under new ids, and
    # weighting one task by 0 must equal dropping it.
    from annotation_pipelines.agreement import metrics
    from annotation_pipelines.agreement._encoding import task_value_counts
    from annotation_pipelines.agreement.metrics import AlphaKernel, FleissKernel

    monkeypatch.setattr(metrics, "_DENSE_MAX_VALUES", dense_max_values)
    copies = [
        krippendorff_2011.with_columns(pl.col("task_id") + f"-copy{copy}") for copy in range(3)
    ]
    tripled = pl.concat(copies)
    for level in ("nominal", "ordinal", "interval", "ratio"):
        counts = task_value_counts(krippendorff_2011, level=level)
        alpha = AlphaKernel(counts, level)
        assert alpha(np.full(counts.n_tasks, 3.0)) == pytest.approx(
            krippendorff_alpha(tripled, level), abs=1e-12
        )
        for dropped in range(counts.n_tasks):
            weights = np.ones(counts.n_tasks)
            weights[dropped] = 0.0
            rows = counts.task != dropped
            unit = [
                task
                for task in krippendorff_2011.get_column("task_id").unique().to_list()
                if krippendorff_alpha(krippendorff_2011.filter(pl.col("task_id") != task), level)
                == pytest.approx(alpha(weights), abs=1e-12)
            ]
            assert unit, (level, dropped, rows.sum())
    counts = task_value_counts(krippendorff_2011)
    assert FleissKernel(counts)(np.full(counts.n_tasks, 3.0)) == pytest.approx(
        fleiss_kappa(tripled), abs=1e-12
    )


def test_exact_fallback_path_gives_the_same_counts(krippendorff_2011, monkeypatch):
    from annotation_pipelines.agreement import _encoding

    expected = {level: krippendorff_alpha(krippendorff_2011, level) for level in _encoding.LEVELS}
    monkeypatch.setattr(_encoding, "_MAX_VALUE_BITS", 0)
    for level, value in expected.items():
        assert krippendorff_alpha(krippendorff_2011, level) == pytest.approx(value, abs=1e-12)


def test_hash_collisions_are_detected_and_resolved_exactly(toy_crowd, monkeypatch):
    # Simulate the worst collision: the primary hash sends every id to the same value.
    from annotation_pipelines.agreement import _encoding

    expected = krippendorff_alpha(toy_crowd)
    original = pl.Expr.hash

    def colliding(self, seed=0, *args, **kwargs):
        hashed = original(self, seed, *args, **kwargs)
        return hashed * 0 if seed == _encoding._SEED_PRIMARY else hashed

    monkeypatch.setattr(pl.Expr, "hash", colliding)
    # The exact string-view paths would not hash at all: take the hashed path on purpose.
    monkeypatch.setattr(_encoding, "_exact_task_keys", lambda tasks, bits: None)
    monkeypatch.setattr(_encoding, "_short_text_codes", lambda labels: None)
    assert krippendorff_alpha(toy_crowd) == pytest.approx(expected, abs=1e-12)
    codes, first = _encoding.factorize(toy_crowd.get_column("annotator_id"))
    assert len(first) == 5 and len(set(codes.tolist())) == 5
