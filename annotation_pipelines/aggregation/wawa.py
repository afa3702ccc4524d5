"""Wawa (Worker Agreement With Aggregate).

As in crowd-kit (Ustalov et al., "Learning from Crowds with Crowd-Kit", JOSS 9(96), 2024),
after the Appen/CrowdFlower practice of trusting annotators by their agreement with the crowd.

Model: first a plain majority vote; each annotator's skill is the share of their answers that
agree with it; the final label is the vote weighted by those skills. Ties follow the majority
vote tie rule (the label that sorts first).
"""

from __future__ import annotations

from annotation_pipelines.aggregation.encoding import Encoded
from annotation_pipelines.aggregation.kernel import DEFAULT_OPTIONS, FitOptions
from annotation_pipelines.aggregation.majority_vote import (
    agreement_with,
    class_preference,
    weighted_vote,
)
from annotation_pipelines.aggregation.result import Fitted


def fit_wawa(encoded: Encoded, options: FitOptions = DEFAULT_OPTIONS) -> Fitted:
    """Two passes, no options apply."""
    preference = class_preference(encoded)
    _, decided, _ = weighted_vote(encoded, None, preference)
    skills = agreement_with(encoded, decided)
    posteriors, decided, ties = weighted_vote(encoded, skills[encoded.annotators], preference)
    return Fitted(posteriors=posteriors, skills=skills, decided=decided, ties=ties)
