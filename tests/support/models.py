"""Segment models for the tests: a nearest-centroid model whose centroids are the
archetypes' evaluated features (tests/support/archetypes.py), one with a fourth
"Lapsed" segment, and the MLflow registry they are registered in."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from segstream.config import Settings
from segstream.core.aggregates import FeatureParams, evaluate
from segstream.core.contract import FEATURE_SPEC
from segstream.core.segment_model import Preprocessor, SegmentModel
from segstream.training.baseline import build_baseline  # the baseline shape training stores
from tests.support.archetypes import DAY, PARAMS, archetype_sample, recent_ends, users_state

SEGMENT_IDS = (10, 20, 30)
PERSONAS = ("Window shoppers", "Big spenders", "Night owls")


def make_model(centroid_shift: float = 0.0, segment_ids: tuple[int, ...] = SEGMENT_IDS,
               params: FeatureParams | None = PARAMS, at_ms: int | None = None) -> SegmentModel:
    """Nearest-centroid model of the three archetypes (ids ``segment_ids``, personas
    ``PERSONAS``) sampled at ``at_ms`` (``archetype_sample``); ``params=None`` records no
    feature params (an old model)."""
    X, labels = archetype_sample(at_ms=at_ms)
    heavy = np.array([f.heavy_tailed for f in FEATURE_SPEC.features])
    L = np.where(heavy, np.log1p(np.maximum(X, 0.0)), X)
    std = L.std(0)
    pre = Preprocessor(log1p=heavy, center=np.median(L, 0),
                       scale=np.where(std > 1e-9, std, 1.0))
    Z = pre.transform(X)
    centroids = np.stack([Z[labels == r].mean(0) for r in range(3)]) + centroid_shift
    d2 = ((Z[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert (d2.argmin(1) == labels).all(), "the archetypes must be separable"
    own = d2[np.arange(len(Z)), labels]
    return SegmentModel(
        spec_version=FEATURE_SPEC.version, feature_names=FEATURE_SPEC.names,
        preprocessor=pre, centroids=centroids, segment_ids=segment_ids, personas=PERSONAS,
        temperature=float(own.mean()),
        profiles=[{"size": s, "share": s / 1000} for s in (500, 300, 200)],
        baseline=build_baseline(X, labels, np.sqrt(own), segment_ids),
        info={} if params is None else {"feature_params": params.describe()},
    )


def lapsing_model(after_days: float = 200.0, at_ms: int | None = None) -> SegmentModel:
    """:func:`make_model` plus a fourth segment, 40 "Lapsed": the archetypes' users
    ``after_days`` after ``at_ms`` (now) with no event (time alone moves a user there)."""
    import dataclasses

    base = make_model(at_ms=at_ms)
    now = int(time.time() * 1000) if at_ms is None else at_ms
    rows = {f"l{i}": i % 3 for i in range(60)}
    state = users_state(rows, recent_ends(list(rows), seed=6, at_ms=now), seed=7)
    later = evaluate(state.aggs, now + int(after_days * DAY), PARAMS)
    lapsed = base.preprocessor.transform(later).mean(0)
    return dataclasses.replace(
        base, centroids=np.vstack([base.centroids, lapsed]),
        segment_ids=(*base.segment_ids, 40), personas=(*base.personas, "Lapsed"),
        profiles=[*base.profiles, {"size": 100, "share": 0.1}])


def model_registry(settings: Settings) -> Any:
    """The MLflow model registry of ``settings`` (imported here: MLflow is slow to load)."""
    from segstream.adapters.registry import Registry

    return Registry(settings)
