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

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segstream.core import rfm
from segstream.core.contract import FEATURE_SPEC, PURCHASED, FeatureSpec
from segstream.core.jsonable import json_default

ARTEFACT_FILE = "segment_model.npz"
META_FILE = "segment_model.json"


def squared_distances(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``|z_i - c_j|²`` for every row and centroid: ``|z|² - 2 z·c + |c|²``, one matrix
    product for all rows (floored at 0 against rounding).

    >>> squared_distances(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0]])).ravel()
    array([ 0., 25.])
    """
    z = np.asarray(z, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    d2 = (z * z).sum(1)[:, None] - 2.0 * (z @ c.T) + (c * c).sum(1)[None, :]
    out: np.ndarray = np.maximum(d2, 0.0, out=d2)
    return out


@dataclass(frozen=True)
class Preprocessor:
    """log1p on heavy-tailed features, scaling, clipping (all fitted in training), and
    the conditional features placed at their centre for users without their flag.

    ``given`` is, per feature, the column of the flag it is conditional on (-1: none;
    ``FeatureSpec.given_columns``): where that flag is not set (a user who never bought)
    the scaled value is 0, the flagged users' centre, so the feature neither separates
    nor pulls those users, and the flag's own column does. A missing value (``NaN``,
    only ever a nullable feature without its flag) is also 0.
    """

    log1p: np.ndarray  # bool per feature
    center: np.ndarray  # median after log1p (of the flagged users for a conditional one)
    scale: np.ndarray  # spread after log1p (never 0)
    clip: float = 5.0  # scaled values are clipped to [-clip, clip]
    given: np.ndarray | None = None  # flag column per feature, -1 none; None: no flags

    def __post_init__(self) -> None:
        # Derived once: the hot path transforms 1..n rows in place with these.
        object.__setattr__(self, "_heavy", np.flatnonzero(np.asarray(self.log1p, dtype=bool)))
        object.__setattr__(self, "_center", np.asarray(self.center, dtype=np.float64))
        object.__setattr__(self, "_inv_scale", 1.0 / np.asarray(self.scale, dtype=np.float64))
        n = len(np.asarray(self.center))
        given = (np.full(n, -1, dtype=np.int64) if self.given is None
                 else np.asarray(self.given, dtype=np.int64))
        object.__setattr__(self, "_given", given)
        object.__setattr__(self, "_cond", np.flatnonzero(given >= 0))
        object.__setattr__(self, "_flag_of", given[given >= 0])

    @property
    def given_columns(self) -> np.ndarray:
        """Per feature, its flag's column (-1: none)."""
        out: np.ndarray = self._given  # type: ignore[attr-defined]
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scaled copy of ``x`` (rows of raw features)."""
        z = np.array(x, dtype=np.float64, ndmin=2)  # a copy, transformed in place below
        cond = self._cond  # type: ignore[attr-defined]
        flag_of: np.ndarray = self._flag_of  # type: ignore[attr-defined]
        off = ~(z[:, flag_of] > 0.5) if len(cond) else None  # a centroid's may be 0.97
        h = self._heavy  # type: ignore[attr-defined]
        z[:, h] = np.log1p(np.maximum(z[:, h], 0.0))
        z -= self._center  # type: ignore[attr-defined]
        z *= self._inv_scale  # type: ignore[attr-defined]
        np.minimum(z, self.clip, out=z)  # np.clip is several times slower on small arrays
        np.maximum(z, -self.clip, out=z)
        if off is not None and off.any():
            zc = z[:, cond]
            zc[off] = 0.0
            z[:, cond] = zc
        if np.isnan(z).any():
            z[np.isnan(z)] = 0.0
        return z


@dataclass(frozen=True)
class Assignment:
    index: np.ndarray  # row of the nearest centroid
    segment_ids: np.ndarray  # stable id of that centroid
    distances: np.ndarray  # distance to it, in scaled space
    probabilities: np.ndarray  # soft membership, rows sum to 1, columns in centroid order
    z: np.ndarray  # the scaled rows
    reason_cols: np.ndarray  # n x top feature columns, strongest reason first
    reason_weights: np.ndarray  # their weights (only positive ones are reasons)


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
    rfm_edges: dict[str, list[float]] = field(default_factory=dict)  # core/rfm.py
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

    def assign(self, x: np.ndarray, reasons: int = 0) -> Assignment:
        """Nearest centroid for each row of raw (unscaled) features, vectorised.

        With ``reasons=n``, also the n features that most separate each row's segment
        from the runner-up: per feature j, ``(z_j - c2_j)² - (z_j - c1_j)²`` where c1
        is the assigned centroid and c2 the second nearest; the largest positive terms
        are the features that pull the user into c1 rather than c2.
        """
        z = self.preprocessor.transform(x)
        c = self.centroids
        d2 = squared_distances(z, c)
        rows = np.arange(len(z))
        if reasons and self.k > 1:
            order = np.argpartition(d2, 1, axis=1)
            idx = order[:, 0]
            contrib = (z - c[order[:, 1]]) ** 2 - (z - c[idx]) ** 2
        else:
            idx = d2.argmin(1)
            contrib = z * z - (z - c[idx]) ** 2 if reasons else np.zeros((len(z), 0))
        best = d2[rows, idx]
        # softmax of -d²/T, shifted by the row minimum (the assigned centroid) for stability
        p = np.exp((best[:, None] - d2) * (1.0 / max(self.temperature, 1e-12)))
        p /= p.sum(1, keepdims=True)
        cols = np.argsort(-contrib, axis=1, kind="stable")[:, :reasons]
        weights = contrib[rows[:, None], cols]
        ids = np.asarray(self.segment_ids)[idx]
        return Assignment(idx, ids, np.sqrt(best), p, z, cols, weights)

    def rfm(self, x: np.ndarray) -> list[tuple[int | None, int | None, int | None, str]]:
        """(R, F, M, group) of each row of raw features (``segstream.core.rfm``)."""
        x = np.atleast_2d(x)
        if not self.rfm_edges:
            return [(None, None, None, rfm.PROSPECT)] * len(x)
        cols = self._rfm_columns
        return rfm.score(self._rfm_arrays, *(x[:, j] for j in cols))

    @functools.cached_property
    def _rfm_columns(self) -> tuple[int, int, int, int]:
        col = {n: j for j, n in enumerate(self.feature_names)}
        return (col[rfm.R_FEATURE], col[rfm.F_FEATURE], col[rfm.M_FEATURE], col[PURCHASED])

    @functools.cached_property
    def _rfm_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.rfm_edges.items()}

    def reasons(self, x: np.ndarray, top: int = 3) -> list[dict[str, Any]]:
        """The reasons of :meth:`assign` for one row, as dicts (see there)."""
        a = self.assign(x, reasons=top)
        return reason_dicts(self, a, 0, np.atleast_2d(x)[0])

    # --- persistence -----------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        p = self.preprocessor
        np.savez(directory / ARTEFACT_FILE, centroids=self.centroids, log1p=p.log1p,
                 center=p.center, scale=p.scale, given=p.given_columns)
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
            "rfm_edges": self.rfm_edges,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1, default=json_default))
        return directory

    @classmethod
    def load(cls, directory: Path, version: str | None = None) -> SegmentModel:
        meta = json.loads((directory / META_FILE).read_text())
        with np.load(directory / ARTEFACT_FILE) as npz:  # read fully, close the file
            arrays = {key: npz[key] for key in npz.files}
        pre = Preprocessor(arrays["log1p"].astype(bool), arrays["center"], arrays["scale"],
                           float(meta["clip"]), arrays.get("given"))
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
            rfm_edges=meta.get("rfm_edges") or {},
            version=version,
        )


def reason_dicts(model: SegmentModel, a: Assignment, row: int, raw: np.ndarray
                 ) -> list[dict[str, Any]]:
    """Row ``row`` of an assignment's reasons: feature, raw value, z, direction, weight."""
    out = []
    z = a.z[row]
    given = model.preprocessor.given_columns
    for j, w in zip(a.reason_cols[row].tolist(), a.reason_weights[row].tolist(), strict=True):
        if w <= 0:
            break
        if np.isnan(raw[j]) or (given[j] >= 0 and not raw[given[j]] > 0.5):
            continue  # a purchase feature of a user who never bought explains nothing
        zj = float(z[j])
        out.append({"feature": model.feature_names[j], "value": float(raw[j]), "z": zj,
                    "direction": "high" if zj > 0 else "low", "weight": w})
    return out
