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
    """An immutable bundle around one model version: swapped as a whole on reload."""

    model: SegmentModel
    version: str
    loaded_at: float
    baseline: Baseline
    segment_keys: tuple[str, ...]  # segment ids as text (JSON keys, metric labels)
    row_of: dict[int, int] = field(default_factory=dict)  # segment id -> centroid row

    @classmethod
    def build(cls, model: SegmentModel, version: str) -> Served:
        model.check_spec(FEATURE_SPEC)
        ids = tuple(int(s) for s in model.segment_ids)
        return cls(model, version, time.time(), baseline_of(model),
                   tuple(str(s) for s in ids), {s: i for i, s in enumerate(ids)})

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
    model = served.model
    a = model.assign(x)
    z = model.preprocessor.transform(np.atleast_2d(x))
    c = model.centroids
    if model.k > 1:
        d2 = ((z[:, None, :] - c[None, :, :]) ** 2).sum(2)
        second = np.argsort(d2, axis=1)[:, 1]
        c2 = c[second]
    else:
        c2 = np.zeros_like(z)
    c1 = c[a.index]
    contrib = (z - c2) ** 2 - (z - c1) ** 2
    top = min(TOP_REASONS, z.shape[1])
    cols = np.argsort(-contrib, axis=1)[:, :top]  # same sort as SegmentModel.reasons
    weights = np.take_along_axis(contrib, cols, axis=1)
    return Batch(a.index, a.segment_ids, a.distances, a.probabilities, cols, weights, z)


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
