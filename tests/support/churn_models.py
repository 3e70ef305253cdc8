"""A churn model built directly (no fit): stumps on ``recency_days``, so the risk of a
user who stays silent rises step by step with time, and one on ``engagement_trend``."""

from __future__ import annotations

import numpy as np

from segstream.core.aggregates import FeatureParams
from segstream.core.churn_model import Calibration, ChurnModel, Trees, label_definition
from segstream.core.contract import FEATURE_SPEC
from tests.support.archetypes import PARAMS

#: recency_days thresholds: each one passed adds RECENCY_STEP to the raw score
RECENCY_STEPS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
RECENCY_STEP = 0.8
BASELINE = -3.0
BAND_EDGES = (0.3, 0.6)


def _stump(feature: int, threshold: float, left: float, right: float, base: int
           ) -> dict[str, list[float]]:
    mid = (left + right) / 2
    return {"feature": [feature, feature, feature], "threshold": [threshold, 0.0, 0.0],
            "missing_left": [False, False, False], "left": [base + 1, base + 1, base + 2],
            "right": [base + 2, base + 1, base + 2], "value": [mid, left, right]}


def make_churn_model(params: FeatureParams | None = PARAMS, spec_version: str | None = None
                     ) -> ChurnModel:
    """Risk = sigmoid(BASELINE + RECENCY_STEP per recency threshold passed + 0.5 if the
    engagement trend is negative); ``params=None``: records none (refused)."""
    rec = FEATURE_SPEC.index("recency_days")
    trend = FEATURE_SPEC.index("engagement_trend")
    parts = [_stump(rec, t, 0.0, RECENCY_STEP, 3 * i) for i, t in enumerate(RECENCY_STEPS)]
    parts.append(_stump(trend, 0.0, 0.5, 0.0, 3 * len(parts)))
    cols = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    trees = Trees(feature=cols["feature"].astype(np.int64), threshold=cols["threshold"],
                  missing_left=cols["missing_left"].astype(bool),
                  left=cols["left"].astype(np.int64), right=cols["right"].astype(np.int64),
                  value=cols["value"].astype(np.float64),
                  roots=np.arange(0, 3 * len(parts), 3, dtype=np.int64), depth=1)
    return ChurnModel(
        spec_version=spec_version or FEATURE_SPEC.version, feature_names=FEATURE_SPEC.names,
        trees=trees, baseline=BASELINE, calibration=Calibration("sigmoid", a=-1.0, b=0.0),
        band_edges=BAND_EDGES, label=label_definition("activity", 14),
        info={} if params is None else {"feature_params": params.describe()})
