"""A user's own pace, from their evaluated features: the usual gap between visits and
between orders while they came. Segment profiles (``training/profiles.py``) and churn
reasons (``segstream/core/churn_model.py``) both read it from here.

>>> from segstream.core.contract import FEATURE_SPEC
>>> x = np.zeros((2, len(FEATURE_SPEC)))
>>> i = FEATURE_SPEC.index
>>> x[:, i("tenure_days")], x[:, i("recency_days")] = [20.0, 5.0], [2.0, 1.0]
>>> x[:, i("lifetime_sessions")] = [7.0, 1.0]
>>> usual_gap_days(x).tolist()
[3.0, nan]
"""

from __future__ import annotations

import numpy as np

from segstream.core.contract import FEATURE_SPEC, FeatureSpec


def usual_gap_days(X: np.ndarray, spec: FeatureSpec = FEATURE_SPEC) -> np.ndarray:
    """Per user, the mean days between their visits while they came: (first to last
    visit) / (sessions - 1); NaN for a user with one visit (no pace to know)."""
    sessions = X[:, spec.index("lifetime_sessions")]
    span = X[:, spec.index("tenure_days")] - X[:, spec.index("recency_days")]
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = np.where(sessions >= 2, span / (sessions - 1), np.nan)
    return out


def usual_order_gap_days(X: np.ndarray, spec: FeatureSpec = FEATURE_SPEC) -> np.ndarray:
    """Per user, the mean days between orders: (first event to last purchase) /
    (orders - 1), exact when the first event is the first order (a purchase log); NaN
    with fewer than two orders."""
    orders = X[:, spec.index("lifetime_orders")]
    span = X[:, spec.index("tenure_days")] - X[:, spec.index("purchase_recency_days")]
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = np.where(orders >= 2, span / (orders - 1), np.nan)
    return out
