"""The hot path's arithmetic: one vectorised assignment for 1..n rows, and the
response dicts built directly (no pydantic on the way out; orjson serialises).

``reasons`` uses the formula of :meth:`SegmentModel.reasons` (per feature,
``(z - c2)² - (z - c1)²`` against the runner-up centroid) but for all rows at once;
a test pins it to the model's own method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from segstream.contract import FEATURE_SPEC
from segstream.segment_model import SegmentModel
from serving.drift import Baseline, baseline_of

TOP_REASONS = 3


@dataclass(frozen=True)
class Served:
    """An immutable bundle around one model version: swapped as a whole on reload.

    Holds the model's arrays pre-arranged for the hot path (heavy-tailed columns,
    centroid norms), so one assignment is a dozen numpy calls on 1..n rows.
    """

    model: SegmentModel
    version: str
    loaded_at: float
    baseline: Baseline
    segment_keys: tuple[str, ...]  # segment ids as text (JSON keys, metric labels)
    row_of: dict[int, int] = field(default_factory=dict)  # segment id -> centroid row
    heavy: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    center: np.ndarray = field(default_factory=lambda: np.zeros(0))
    inv_scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    centroids_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    centroid_norms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def build(cls, model: SegmentModel, version: str) -> Served:
        model.check_spec(FEATURE_SPEC)
        ids = tuple(int(s) for s in model.segment_ids)
        pre = model.preprocessor
        c = np.ascontiguousarray(model.centroids, dtype=np.float64)
        return cls(model, version, time.time(), baseline_of(model),
                   tuple(str(s) for s in ids), {s: i for i, s in enumerate(ids)},
                   heavy=np.flatnonzero(np.asarray(pre.log1p, dtype=bool)),
                   center=np.asarray(pre.center, dtype=np.float64),
                   inv_scale=1.0 / np.asarray(pre.scale, dtype=np.float64),
                   centroids_t=np.ascontiguousarray(c.T), centroid_norms=(c * c).sum(1),
                   ids=np.asarray(ids, dtype=np.int64))

    def largest_segment(self) -> int:
        sizes = [float(p.get("size", p.get("share", 0.0))) for p in self.model.profiles]
        if len(sizes) == self.model.k and any(sizes):
            return int(self.model.segment_ids[int(np.argmax(sizes))])
        return int(self.model.segment_ids[0])


@dataclass(frozen=True)
class Batch:
    """Assignment of n rows: what the response builder and the metrics need."""

    index: np.ndarray
    segment_ids: np.ndarray
    distances: np.ndarray
    probabilities: np.ndarray
    reason_cols: np.ndarray  # n x TOP_REASONS feature columns, best first
    reason_weights: np.ndarray
    z: np.ndarray


def assign(served: Served, x: np.ndarray) -> Batch:
    """:meth:`SegmentModel.assign` + ``reasons`` for all rows in one pass (a test pins
    both to the model's own methods)."""
    model = served.model
    z = np.array(x, dtype=np.float64, ndmin=2)  # a copy: transformed in place
    h = served.heavy
    z[:, h] = np.log1p(np.maximum(z[:, h], 0.0))
    z -= served.center
    z *= served.inv_scale
    clip = model.preprocessor.clip
    np.minimum(z, clip, out=z)  # np.clip is several times slower on small arrays
    np.maximum(z, -clip, out=z)
    d2 = (z * z).sum(1)[:, None] - 2.0 * (z @ served.centroids_t) + served.centroid_norms
    np.maximum(d2, 0.0, out=d2)
    rows = np.arange(len(z))
    if model.k > 1:
        order = np.argpartition(d2, 1, axis=1)
        idx, second = order[:, 0], order[:, 1]
        c = model.centroids
        c1, c2 = c[idx], c[second]
        contrib = (z - c2) ** 2 - (z - c1) ** 2
    else:
        idx = np.zeros(len(z), dtype=np.intp)
        contrib = z * z - (z - model.centroids[0]) ** 2
    best = d2[rows, idx]
    # softmax of -d2/T, shifted by the row minimum (the assigned centroid) for stability
    p = np.exp((best[:, None] - d2) * (1.0 / max(model.temperature, 1e-12)))
    p /= p.sum(1, keepdims=True)
    top = min(TOP_REASONS, z.shape[1])
    cols = np.argsort(-contrib, axis=1)[:, :top]  # same sort as SegmentModel.reasons
    weights = contrib[rows[:, None], cols]
    return Batch(idx, served.ids[idx], np.sqrt(best), p, cols, weights, z)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, UTC).isoformat(timespec="milliseconds")


def answer(served: Served, batch: Batch, row: int, x: np.ndarray, *, user_id: str | None,
           updated_ms: int | None, stale_after_s: float, now: float) -> dict[str, Any]:
    """The JSON body of one assignment (the shape of ``schemas.SegmentAnswer``)."""
    model = served.model
    names = model.feature_names
    keys = served.segment_keys
    idx = int(batch.index[row])
    probs = batch.probabilities[row].tolist()
    reasons = []
    z = batch.z[row]
    for j, w in zip(batch.reason_cols[row].tolist(), batch.reason_weights[row].tolist(),
                    strict=True):
        if w <= 0:
            break
        zj = float(z[j])
        reasons.append({"feature": names[j], "value": float(x[j]), "z": zj,
                        "direction": "high" if zj > 0 else "low", "weight": w})
    out: dict[str, Any] = {
        "user_id": user_id,
        "segment_id": int(batch.segment_ids[row]),
        "persona": model.personas[idx],
        "probabilities": dict(zip(keys, probs, strict=True)),
        "distance": float(batch.distances[row]),
        "reasons": reasons,
        "model_version": served.version,
        "feature_spec": model.spec_version,
        "features_updated_at": None,
        "stale": False,
        "cold_start": False,
    }
    if updated_ms is not None:
        out["features_updated_at"] = iso_ms(updated_ms)
        out["stale"] = now - updated_ms / 1000.0 > stale_after_s
    return out
