"""Drift of served traffic against the champion's training baseline.

Each worker keeps the last ``window`` served feature vectors and their segments in
a ring buffer (an O(d) copy per request); a background task turns it into

* **PSI per feature**: ``sum((a - e) * ln(a / e))`` over the baseline's bins, where
  ``e`` are the baseline proportions and ``a`` the window's (both floored at 1e-4).
  Rule of thumb: < 0.1 stable, 0.1–0.25 moderate, > 0.25 significant shift.
* **segment-share Jensen–Shannon divergence** (base 2, in [0, 1]) of the window's
  segment shares vs the baseline shares.

Baseline shape read from ``SegmentModel.baseline`` (training writes it)::

    {"features": {name: {"edges": [e0..en], "proportions": [p1..pn]}},   # or
     "feature_quantiles": {name: [q0..qn]},          # equal-mass bins between quantiles
     "segment_shares": {"<segment id>": share}}

Edges are in raw feature units; the outer bins are open-ended. Features without a
baseline get no PSI (and ``/readyz`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segstream.segment_model import SegmentModel

EPS = 1e-4


@dataclass(frozen=True)
class Baseline:
    features: tuple[str, ...]  # spec order, only those with a baseline
    columns: tuple[int, ...]  # their column in the vector
    inner_edges: tuple[np.ndarray, ...]  # edges[1:-1]: searchsorted gives the bin
    expected: tuple[np.ndarray, ...]
    segment_shares: np.ndarray | None  # in centroid-row order

    @property
    def complete(self) -> bool:
        return bool(self.features) and self.segment_shares is not None


def baseline_of(model: SegmentModel) -> Baseline:
    raw: dict[str, Any] = model.baseline or {}
    names, cols, edges_out, expected = [], [], [], []
    per_feature = raw.get("features") or {}
    quantiles = raw.get("feature_quantiles") or raw.get("quantiles") or {}
    for col, name in enumerate(model.feature_names):
        edges: np.ndarray | None = None
        props: np.ndarray | None = None
        spec = per_feature.get(name)
        if isinstance(spec, dict) and "edges" in spec:
            edges = np.asarray(spec["edges"], dtype=float)
            raw_p = spec.get("proportions", spec.get("counts"))
            props = None if raw_p is None else np.asarray(raw_p, dtype=float)
        elif name in quantiles:
            edges = np.unique(np.asarray(quantiles[name], dtype=float))
        if edges is None or len(edges) < 3:
            continue
        if props is None or len(props) != len(edges) - 1:
            props = np.full(len(edges) - 1, 1.0 / (len(edges) - 1))
        props = np.maximum(props / props.sum(), EPS)
        names.append(name)
        cols.append(col)
        edges_out.append(edges[1:-1])
        expected.append(props / props.sum())
    shares = raw.get("segment_shares") or raw.get("segment_share")
    share_vec: np.ndarray | None = None
    if isinstance(shares, dict):
        share_vec = np.array([float(shares.get(str(s)) or shares.get(s) or 0.0)
                              for s in model.segment_ids])
    elif model.profiles and all("share" in p for p in model.profiles):
        share_vec = np.array([float(p["share"]) for p in model.profiles])
    if share_vec is not None and share_vec.sum() > 0:
        share_vec = share_vec / share_vec.sum()
    else:
        share_vec = None
    return Baseline(tuple(names), tuple(cols), tuple(edges_out), tuple(expected), share_vec)


def psi(actual: np.ndarray, expected: np.ndarray) -> float:
    a = np.maximum(actual, EPS)
    a = a / a.sum()
    return float(((a - expected) * np.log(a / expected)).sum())


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float((x[mask] * np.log2(x[mask] / m[mask])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


class DriftWindow:
    """Ring buffer of recent served vectors and segment rows (one per worker)."""

    def __init__(self, size: int, dim: int) -> None:
        self.size = size
        self.rows = np.zeros((size, dim))
        self.segment_rows = np.zeros(size, dtype=np.int64)
        self.pos = 0
        self.count = 0

    def add(self, x: np.ndarray, idx: np.ndarray) -> None:
        n = len(x)
        if n >= self.size:
            x, idx, n = x[-self.size:], idx[-self.size:], self.size
        end = self.pos + n
        if end <= self.size:
            self.rows[self.pos:end] = x
            self.segment_rows[self.pos:end] = idx
        else:
            first = self.size - self.pos
            self.rows[self.pos:] = x[:first]
            self.segment_rows[self.pos:] = idx[:first]
            self.rows[: n - first] = x[first:]
            self.segment_rows[: n - first] = idx[first:]
        self.pos = end % self.size
        self.count = min(self.count + n, self.size)

    def reset(self) -> None:
        self.pos = self.count = 0

    def compute(self, baseline: Baseline, k: int) -> tuple[dict[str, float], float | None]:
        """PSI per baselined feature and the segment-share JS divergence of the window."""
        if self.count == 0:
            return {}, None
        rows = self.rows[: self.count]
        out = {}
        for name, col, edges, expected in zip(baseline.features, baseline.columns,
                                              baseline.inner_edges, baseline.expected,
                                              strict=True):
            bins = np.searchsorted(edges, rows[:, col], side="right")
            counts = np.bincount(bins, minlength=len(expected)).astype(float)
            out[name] = psi(counts / counts.sum(), expected)
        js = None
        if baseline.segment_shares is not None:
            counts = np.bincount(self.segment_rows[: self.count], minlength=k).astype(float)
            js = js_divergence(counts, baseline.segment_shares)
        return out, js
