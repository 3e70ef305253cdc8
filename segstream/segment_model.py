"""The model artefact: preprocessing + centroids + stable segment ids + personas.

This is the contract between training/ (which fits and registers it) and serving/
(which loads the champion and predicts). It needs only numpy, so serving predicts
with a vectorised nearest-centroid search (~µs) instead of scikit-learn's
per-call input validation (~200 µs).

Soft membership (``probabilities``) is a softmax over negative squared distances,
scaled by ``temperature`` (the mean squared distance of training rows to their own
centroid): ``p_k ∝ exp(-d_k² / temperature)``. A user sitting on a centroid gets
~1 for it; one half-way between two gets ~0.5 each.

Examples
--------
>>> import numpy as np
>>> pre = Preprocessor(log1p=np.array([False, False]), center=np.zeros(2), scale=np.ones(2))
>>> m = SegmentModel(spec_version="v1", feature_names=("a", "b"), preprocessor=pre,
...                  centroids=np.array([[0.0, 0.0], [4.0, 4.0]]), segment_ids=(7, 9),
...                  personas=("Quiet", "Busy"), temperature=1.0)
>>> out = m.assign(np.array([[0.1, 0.0], [3.9, 4.2]]))
>>> out.segment_ids.tolist(), out.index.tolist()
([7, 9], [0, 1])
>>> round(float(out.probabilities[0, 0]), 3)
1.0
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segstream.contract import FEATURE_SPEC, FeatureSpec

ARTEFACT_FILE = "segment_model.npz"
META_FILE = "segment_model.json"


@dataclass(frozen=True)
class Preprocessor:
    """log1p on heavy-tailed features, robust scaling, clipping (all fitted in training)."""

    log1p: np.ndarray  # bool per feature
    center: np.ndarray  # median after log1p
    scale: np.ndarray  # IQR after log1p (never 0)
    clip: float = 5.0  # scaled values are clipped to [-clip, clip]

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        z = np.where(self.log1p, np.log1p(np.maximum(x, 0.0)), x)
        z = (z - self.center) / self.scale
        out: np.ndarray = np.clip(z, -self.clip, self.clip)
        return out


@dataclass(frozen=True)
class Assignment:
    index: np.ndarray  # row of the nearest centroid
    segment_ids: np.ndarray  # stable id of that centroid
    distances: np.ndarray  # distance to it, in scaled space
    probabilities: np.ndarray  # soft membership, rows sum to 1, columns in centroid order


@dataclass
class SegmentModel:
    spec_version: str
    feature_names: tuple[str, ...]
    preprocessor: Preprocessor
    centroids: np.ndarray  # k x d, scaled space
    segment_ids: tuple[int, ...]  # stable id of each centroid row
    personas: tuple[str, ...]
    temperature: float = 1.0
    profiles: list[dict[str, Any]] = field(default_factory=list)  # one per centroid row
    baseline: dict[str, Any] = field(default_factory=dict)  # drift baseline (see training)
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # k, data range, parent, ...
    version: str | None = None  # registry version, set by the loader

    def check_spec(self, spec: FeatureSpec = FEATURE_SPEC) -> None:
        spec.check_version(self.spec_version, what="the model")
        if tuple(self.feature_names) != spec.names:
            raise ValueError(
                f"the model's features {self.feature_names} differ from spec {spec.names}"
            )

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, x: np.ndarray) -> Assignment:
        """Nearest centroid for each row of raw (unscaled) features, vectorised."""
        z = self.preprocessor.transform(np.atleast_2d(x))
        # |z - c|² = |z|² - 2 z·c + |c|²: one matrix product for all rows
        c = self.centroids
        d2 = (z * z).sum(1)[:, None] - 2.0 * z @ c.T + (c * c).sum(1)[None, :]
        np.maximum(d2, 0.0, out=d2)
        idx = d2.argmin(1)
        logits = -d2 / max(self.temperature, 1e-12)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        ids = np.asarray(self.segment_ids)[idx]
        return Assignment(idx, ids, np.sqrt(d2[np.arange(len(idx)), idx]), p)

    def reasons(self, x: np.ndarray, top: int = 3) -> list[dict[str, Any]]:
        """The features that most separate this user's segment from the runner-up.

        Per feature j: ``(z_j - c2_j)² - (z_j - c1_j)²`` where c1 is the assigned
        centroid and c2 the second nearest; the largest positive terms are the
        features that pull the user into c1 rather than c2.
        """
        z = self.preprocessor.transform(np.atleast_2d(x))[0]
        d2 = ((self.centroids - z) ** 2).sum(1)
        order = np.argsort(d2)
        c1 = self.centroids[order[0]]
        c2 = self.centroids[order[1]] if self.k > 1 else np.zeros_like(c1)
        contrib = (z - c2) ** 2 - (z - c1) ** 2
        best = np.argsort(-contrib)[:top]
        raw = np.atleast_2d(x)[0]
        return [
            {
                "feature": self.feature_names[j],
                "value": float(raw[j]),
                "z": float(z[j]),
                "direction": "high" if z[j] > 0 else "low",
                "weight": float(contrib[j]),
            }
            for j in best
            if contrib[j] > 0
        ]

    # --- persistence -----------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        p = self.preprocessor
        np.savez(directory / ARTEFACT_FILE, centroids=self.centroids, log1p=p.log1p,
                 center=p.center, scale=p.scale)
        meta = {
            "spec_version": self.spec_version,
            "feature_names": list(self.feature_names),
            "segment_ids": [int(s) for s in self.segment_ids],
            "personas": list(self.personas),
            "temperature": self.temperature,
            "clip": p.clip,
            "profiles": self.profiles,
            "baseline": self.baseline,
            "metrics": self.metrics,
            "info": self.info,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1, default=_json_default))
        return directory

    @classmethod
    def load(cls, directory: Path, version: str | None = None) -> SegmentModel:
        meta = json.loads((directory / META_FILE).read_text())
        with np.load(directory / ARTEFACT_FILE) as npz:  # read fully, close the file
            arrays = {key: npz[key] for key in npz.files}
        pre = Preprocessor(arrays["log1p"].astype(bool), arrays["center"], arrays["scale"],
                           float(meta["clip"]))
        return cls(
            spec_version=meta["spec_version"],
            feature_names=tuple(meta["feature_names"]),
            preprocessor=pre,
            centroids=arrays["centroids"],
            segment_ids=tuple(meta["segment_ids"]),
            personas=tuple(meta["personas"]),
            temperature=float(meta["temperature"]),
            profiles=meta["profiles"],
            baseline=meta["baseline"],
            metrics=meta["metrics"],
            info=meta["info"],
            version=version,
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
