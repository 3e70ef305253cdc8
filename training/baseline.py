"""The drift baseline stored in each model, and PSI against it.

Shape (what serving/drift.py reads)::

    {"features": {name: {"edges": [e0..en], "proportions": [p1..pn]}},
     "segment_shares": {"<segment id>": share},
     "distance": {"mean": .., "p50": .., "p90": .., "p99": .., "edges": [..],
                  "proportions": [..]}}

Edges are quantiles of the training rows in raw units (ties merged); the outer
bins are open-ended, so a row below ``e0`` counts in the first bin.

Features that grow with a user's age (``Feature.grows_with_age``: tenure, lifetime
totals) get no baseline, so neither the update's drift trigger nor the API's PSI
metrics see them: with the same behaviour, an older user base shifts them (tenure's PSI
was 2.7 between day 24 and day 30 of one stationary generated log, every other
feature's under 0.2; tests/training/test_drift_baseline.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segstream.contract import FEATURE_SPEC, FeatureSpec

BINS = 10
EPS = 1e-4


def _bins(values: np.ndarray, bins: int = BINS) -> dict[str, list[float]]:
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 3:  # (almost) constant: one split at the value
        v = float(edges[0])
        edges = np.array([v - 1.0, v, v + 1.0])
    counts = np.bincount(np.searchsorted(edges[1:-1], values, side="right"),
                         minlength=len(edges) - 1).astype(float)
    return {"edges": edges.tolist(), "proportions": (counts / counts.sum()).tolist()}


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


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, float), EPS)
    a = np.maximum(np.asarray(actual, float), EPS)
    e, a = e / e.sum(), a / a.sum()
    return float(((a - e) * np.log(a / e)).sum())


def feature_psi(baseline: dict[str, Any], X: np.ndarray,
                spec: FeatureSpec = FEATURE_SPEC) -> dict[str, float]:
    """PSI of each baselined feature of ``X`` (raw units) against the baseline."""
    out = {}
    for j, name in enumerate(spec.names):
        b = (baseline.get("features") or {}).get(name)
        if not b:
            continue
        edges = np.asarray(b["edges"])
        counts = np.bincount(np.searchsorted(edges[1:-1], X[:, j], side="right"),
                             minlength=len(edges) - 1).astype(float)
        out[name] = psi(np.asarray(b["proportions"]), counts)
    return out
