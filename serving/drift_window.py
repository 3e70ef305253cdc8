"""Drift of served traffic against the champion's training baseline.

Each worker keeps the last ``window`` served feature vectors and their segments in
a ring buffer (an O(d) copy per request); a background task turns it into

* **PSI per feature** over the baseline's bins, the baseline's proportions expected;
* **segment-share Jensen–Shannon divergence** of the window's segment shares against
  the baseline's (both from ``segstream.core.drift``).

The baseline is ``SegmentModel.baseline``, as ``training/baseline.py`` writes it::

    {"features": {name: {"edges": [e0..en], "proportions": [p1..pn]}},
     "segment_shares": {"<segment id>": share}}

Edges are in raw feature units; the outer bins are open-ended. Features without a
baseline get no PSI (and ``/readyz`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segstream.core.drift import EPS, bin_counts, js_divergence, psi
from segstream.core.segment_model import SegmentModel


@dataclass(frozen=True)
class Baseline:
    features: tuple[str, ...]  # spec order, only those with a baseline
    columns: tuple[int, ...]  # their column in the vector
    edges: tuple[np.ndarray, ...]
    expected: tuple[np.ndarray, ...]
    segment_shares: np.ndarray | None  # in centroid-row order

    @property
    def complete(self) -> bool:
        return bool(self.features) and self.segment_shares is not None


def baseline_of(model: SegmentModel) -> Baseline:
    raw: dict[str, Any] = model.baseline or {}
    names, cols, edges_out, expected = [], [], [], []
    per_feature = raw.get("features") or {}
    for col, name in enumerate(model.feature_names):
        spec = per_feature.get(name)
        if not spec or len(spec["edges"]) < 3:
            continue
        props = np.maximum(np.asarray(spec["proportions"], dtype=float), EPS)
        names.append(name)
        cols.append(col)
        edges_out.append(np.asarray(spec["edges"], dtype=float))
        expected.append(props / props.sum())
    shares = raw.get("segment_shares") or {}
    share_vec = np.array([float(shares.get(str(s), 0.0)) for s in model.segment_ids])
    return Baseline(tuple(names), tuple(cols), tuple(edges_out), tuple(expected),
                    share_vec / share_vec.sum() if share_vec.sum() > 0 else None)


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
                                              baseline.edges, baseline.expected, strict=True):
            out[name] = psi(expected, bin_counts(edges, rows[:, col]))
        js = None
        if baseline.segment_shares is not None:
            counts = np.bincount(self.segment_rows[: self.count], minlength=k).astype(float)
            js = js_divergence(counts, baseline.segment_shares)
        return out, js
