"""Run crowd-kit 1.4.2 (a test dependency) on canonical judgments, in the same test."""

from __future__ import annotations

import polars as pl


def crowdkit_labels(judgments: pl.DataFrame, method: str) -> pl.DataFrame:
    from crowdkit.aggregation import (
        GLAD,
        MACE,
        DawidSkene,
        MajorityVote,
        OneCoinDawidSkene,
        Wawa,
        ZeroBasedSkill,
    )

    frame = judgments.rename({"task_id": "task", "annotator_id": "worker"}).to_pandas()
    if method in ("wawa", "zero_based_skill"):
        # crowd-kit 1.4.2's predict() calls sklearn's check_is_fitted, which fails with
        # scikit-learn >= 1.6; apply the fitted skills the way its _apply does.
        model = Wawa() if method == "wawa" else ZeroBasedSkill()
        predicted = MajorityVote().fit(frame, skills=model.fit(frame).skills_).labels_
    else:
        model = {
            "majority_vote": MajorityVote,
            "dawid_skene": DawidSkene,
            "one_coin_dawid_skene": OneCoinDawidSkene,
            "glad": GLAD,
            "mace": MACE,
        }[method]()
        predicted = model.fit_predict(frame)
    return pl.DataFrame(
        {"task_id": predicted.index.astype(str).tolist(), "label": predicted.astype(str).tolist()}
    )
