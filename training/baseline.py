"""The drift baseline stored in each model, and PSI against it (``segstream.core.drift``).

Shape (what serving/drift_window.py reads)::

    {"features": {name: {"edges": [e0..en], "proportions": [p1..pn]}},
     "segment_shares": {"<segment id>": share},
     "distance": {"mean": .., "p50": .., "p90": .., "p99": .., "edges": [..],
                  "proportions": [..]}}

Edges are quantiles of the training rows in raw units (ties merged); the outer
bins are open-ended, so a row below ``e0`` counts in the first bin.

Features that grow with a user's age (``Feature.grows_with_age``: tenure, lifetime
totals) get no baseline, so neither the update's drift trigger nor the API's PSI
metrics see them: with the same behaviour, an older user base shifts them
(tests/training/test_drift_baseline.py shows tenure drifting on a stationary log).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.core.drift import bin_counts, psi, quantile_bins


def _bins(values: np.ndarray) -> dict[str, list[float]]:
    edges, proportions = quantile_bins(values)
    return {"edges": edges, "proportions": proportions}


def build_baseline(X: np.ndarray, labels: np.ndarray, distances: np.ndarray,
                   ids: tuple[int, ...], spec: FeatureSpec = FEATURE_SPEC) -> dict[str, Any]:
    shares = np.bincount(labels, minlength=len(ids)) / max(len(labels), 1)
    dist: dict[str, Any] = dict(_bins(distances))
    dist.update(mean=float(distances.mean()), p50=float(np.quantile(distances, 0.5)),
                p90=float(np.quantile(distances, 0.9)), p99=float(np.quantile(distances, 0.99)))
    return {
        "features": {f.name: _bins(X[:, j]) for j, f in enumerate(spec.features)
                     if not f.grows_with_age},
        "segment_shares": {str(s): float(v) for s, v in zip(ids, shares, strict=True)},
        "distance": dist,
        "rows": len(X),
    }


def feature_psi(baseline: dict[str, Any], X: np.ndarray,
                spec: FeatureSpec = FEATURE_SPEC) -> dict[str, float]:
    """PSI of each baselined feature of ``X`` (raw units) against the baseline."""
    out = {}
    for j, name in enumerate(spec.names):
        b = (baseline.get("features") or {}).get(name)
        if not b:
            continue
        out[name] = psi(b["proportions"], bin_counts(b["edges"], X[:, j]))
    return out
