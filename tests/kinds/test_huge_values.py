"""Answers and boxes near the largest float: no overflow warning, identical boxes match, and
ordinary data computed bit for bit as before (digests of the results taken before the
overflow-safe arithmetic, so a change to any figure of ordinary data fails here). With no unit
the commands fuse such boxes, as nothing says where the image ends; `--coordinates` says it, and
they are quarantined as outside the image."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from annotation_pipelines.aggregation.boxes import BOX, aggregate_boxes, iou
from annotation_pipelines.aggregation.numeric import aggregate_numeric_kind
from annotation_pipelines.agreement.boxes import box_f1_at_iou, box_pair_distances
from annotation_pipelines.cli import main
from annotation_pipelines.loop.kind_posterior import numeric_confidence
from tests.kinds.synthetic_geo import scenes
from tests.kinds.test_numeric_kind import _biased

BOXES = pl.List(BOX)


def _digest(*frames: pl.DataFrame) -> str:
    """SHA-256 of every value's bytes (floats as their 8 bytes, not as printed)."""
    digest = hashlib.sha256()
    for frame in frames:
        for name in frame.columns:
            column = frame.get_column(name)
            digest.update(name.encode())
            if column.dtype.is_nested():
                flat = column.explode().struct.unnest()
                digest.update(_digest(flat).encode())
            elif column.dtype.is_numeric():
                digest.update(np.ascontiguousarray(column.cast(pl.Float64).to_numpy()).tobytes())
            else:
                digest.update("\x1f".join(map(str, column.to_list())).encode())
    return digest.hexdigest()[:16]


def _array_digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


NUMERIC_DIGESTS = {
    "mean": "bd5ac1c809abd184",
    "median": "ca15b0de072abab3",
    "trimmed_mean": "a70284b46e891011",
    "bias_noise": "ee69737e65b7eae4",
}


@pytest.mark.parametrize("method", sorted(NUMERIC_DIGESTS))
def test_numeric_results_on_ordinary_answers_are_unchanged(method: str) -> None:
    judgments, _, _ = _biased(seed=3, n_tasks=300)
    result = aggregate_numeric_kind(judgments, method=method)
    assert _digest(result.labels, result.annotators) == NUMERIC_DIGESTS[method]


HUGE = pl.DataFrame(
    {
        "task_id": ["t1"] * 3 + ["t2"] * 3 + ["t3"] * 3,
        "annotator_id": ["a", "b", "c"] * 3,
        "value": [1e200, 3e200, 2e200, 1e308, -1e308, 1.5e308, 1.0, 2.0, 3.0],
    }
)


@pytest.mark.parametrize("method", ["mean", "median", "trimmed_mean", "bias_noise"])
def test_numeric_annotator_statistics_near_the_largest_float_do_not_overflow(method: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = aggregate_numeric_kind(HUGE, method=method)
    annotators = result.annotators
    assert annotators["bias"].is_finite().all(), annotators
    assert annotators["noise_sd"].is_finite().all(), annotators
    assert (annotators["noise_sd"] > 0).all(), annotators
    assert annotators["reliability"].is_not_nan().all(), annotators
    labels = result.labels
    assert labels["confidence"].is_finite().all(), labels


def test_plain_statistics_scale_exactly_by_a_power_of_two() -> None:
    # Fitted divided by a power of two and multiplied back: the same figures, scaled.
    judgments, _, _ = _biased(seed=1, n_tasks=50)
    unit = 2.0**450  # past the scaling threshold, with reliabilities that stay normal
    small = aggregate_numeric_kind(judgments, method="mean")
    large = aggregate_numeric_kind(judgments.with_columns(pl.col("value") * unit), method="mean")
    for name in ("bias", "noise_sd"):
        np.testing.assert_array_equal(large.annotators[name], small.annotators[name] * unit)
    np.testing.assert_array_equal(large.labels["confidence"], small.labels["confidence"])
    np.testing.assert_allclose(
        large.annotators["reliability"] * unit * unit, small.annotators["reliability"], rtol=1e-15
    )


def test_numeric_confidence_of_an_interval_wider_than_the_largest_float() -> None:
    lo, hi = np.array([-1e308, 1.0]), np.array([1.5e308, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        confidence = numeric_confidence(lo, hi, tolerance=1e307)
    assert 0.0 < confidence[0] < 1.0
    rng = np.random.default_rng(0)
    lo = rng.normal(0, 3, 1000)
    hi = lo + rng.exponential(2, 1000)
    assert _array_digest(numeric_confidence(lo, hi, tolerance=0.25)) == CONFIDENCE_DIGEST


CONFIDENCE_DIGEST = "85abf421e001bcc1"


def _box(x0: float, y0: float, x1: float, y1: float, label: str = "car") -> dict:
    return {"label": label, "x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1}


HUGE_BOXES = [
    _box(-1e308, -1e308, 1e308, 1e308),
    _box(1e300, 1e300, 1.5e308, 1.6e308),
    _box(0.0, 0.0, 1.7e308, 1.0),
    _box(-1e308, 5.0, 1e308, 9.0),
]


def test_identical_huge_boxes_have_iou_one() -> None:
    coordinates = np.array([[b["x_min"], b["y_min"], b["x_max"], b["y_max"]] for b in HUGE_BOXES])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert iou(coordinates, coordinates).tolist() == [1.0] * len(HUGE_BOXES)
        shifted = coordinates.copy()
        shifted[0, 0] = 0.0  # half the first box: IoU 0.5
        assert iou(coordinates, shifted)[0] == pytest.approx(0.5)
        values = pl.Series([[b] for b in HUGE_BOXES], dtype=BOXES)
        assert box_pair_distances(values, values).tolist() == [0.0] * len(HUGE_BOXES)
        assert box_f1_at_iou(values, values).tolist() == [1.0] * len(HUGE_BOXES)


def test_identical_huge_boxes_fuse_into_one() -> None:
    rows = [
        (f"t{index}", annotator, [box])
        for index, box in enumerate(HUGE_BOXES)
        for annotator in ("a", "b", "c")
    ]
    judgments = pl.DataFrame(
        rows,
        schema={"task_id": pl.String, "annotator_id": pl.String, "boxes": BOXES},
        orient="row",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = aggregate_boxes(judgments)
    for index, box in enumerate(HUGE_BOXES):
        fused = result.labels.filter(pl.col("task_id") == f"t{index}")["boxes"][0].to_list()
        assert len(fused) == 1, fused
        # A weighted mean of equal coordinates, rounded as ordinary ones are.
        assert fused[0]["label"] == box["label"]
        for name in ("x_min", "y_min", "x_max", "y_max"):
            assert fused[0][name] == pytest.approx(box[name], rel=1e-12)
        assert fused[0]["confidence"] == pytest.approx(1.0, abs=1e-12)
    assert result.annotators["mean_iou"].to_list() == pytest.approx([1.0] * 3, abs=1e-12)
    assert result.annotators["looseness"].to_list() == pytest.approx([0.0] * 3, abs=1e-12)


BOX_DIGESTS = {
    "fusion": "efd4bd81f63dc295",
    "gold": "c862b9002a1dc449",
    "agreement": "b9b9ceb840d2839d",
    "iou": "b3d246af5fbc03fe",
}


def test_box_results_on_ordinary_boxes_are_unchanged() -> None:
    truth, judgments = scenes(60, seed=5)
    fused = aggregate_boxes(judgments)
    assert _digest(fused.labels, fused.annotators) == BOX_DIGESTS["fusion"]
    anchored = aggregate_boxes(judgments, gold=truth.head(20))
    assert _digest(anchored.labels, anchored.annotators) == BOX_DIGESTS["gold"]
    good = judgments.filter(pl.col("annotator_id") == "good_1")["boxes"]
    loose = judgments.filter(pl.col("annotator_id") == "loose")["boxes"]
    assert (
        _array_digest(box_pair_distances(good, loose), box_f1_at_iou(good, loose))
        == BOX_DIGESTS["agreement"]
    )
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 640, size=(2, 2000, 2, 2))
    a, b = (np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1) for c in corners)
    assert _array_digest(iou(a, b), iou(a, a)) == BOX_DIGESTS["iou"]


def test_the_commands_print_no_overflow_warning(tmp_path: Path) -> None:
    numeric = tmp_path / "numeric.csv"
    HUGE.write_csv(numeric)
    boxes = tmp_path / "boxes.jsonl"
    boxes.write_text(
        "".join(
            json.dumps({"task_id": f"t{index}", "annotator_id": annotator, "boxes": [box]}) + "\n"
            for index, box in enumerate(HUGE_BOXES)
            for annotator in ("a", "b")
        )
    )
    runs = [
        ["aggregate", str(numeric), "--kind", "numeric", "--method", "mean"],
        ["replay", str(numeric), "--kind", "numeric", "--method", "mean"],
        ["agreement", str(numeric), "--kind", "numeric"],
        ["aggregate", str(boxes), "--kind", "boxes"],
        ["replay", str(boxes), "--kind", "boxes"],
        ["agreement", str(boxes), "--kind", "boxes"],
    ]
    for args in runs:
        # A warning turned into an error fails the command (pytest would only record it).
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
    result = CliRunner().invoke(main, ["aggregate", str(boxes), "--kind", "boxes"])
    for line in io.StringIO(result.stdout):
        fused = json.loads(line)["boxes"]
        assert len(fused) == 1 and fused[0]["confidence"] == pytest.approx(1.0, abs=1e-12), line


@pytest.mark.parametrize("unit", ["percent", "pixel"])
def test_a_declared_unit_quarantines_the_huge_boxes_in_every_command(
    tmp_path: Path, unit: str
) -> None:
    # With a unit the image ends somewhere: every huge box lies outside it (a 640×480 image in
    # pixels), while the test above pins that, with no unit, they are fused.
    size = {"image_width": 640, "image_height": 480} if unit == "pixel" else {}
    ordinary = [("t9", annotator, _box(10.0, 10.0, 40.0, 40.0)) for annotator in ("a", "b")]
    rows = [
        (f"t{index}", annotator, box)
        for index, box in enumerate(HUGE_BOXES)
        for annotator in ("a", "b")
    ] + ordinary
    boxes = tmp_path / "boxes.jsonl"
    boxes.write_text(
        "".join(
            json.dumps({"task_id": task, "annotator_id": annotator, "boxes": [box], **size}) + "\n"
            for task, annotator, box in rows
        )
    )
    huge = 2 * len(HUGE_BOXES)
    for command in ("aggregate", "replay", "agreement"):
        args = [command, str(boxes), "--kind", "boxes", "--coordinates", unit]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (command, result.output, result.exception)
        assert f"{boxes}: {huge} of {len(rows)} rows quarantined" in result.stderr, result.stderr
        assert "row 1 (line 1), field 'boxes': outside_image: boxes: box 1 has x_min -1e+308" in (
            result.stderr
        ), result.stderr
    result = CliRunner().invoke(
        main, ["aggregate", str(boxes), "--kind", "boxes", "--coordinates", unit]
    )
    assert [json.loads(line)["task_id"] for line in io.StringIO(result.stdout)] == ["t9"]
