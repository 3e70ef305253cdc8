"""Turn a feature table into a complete :class:`SegmentModel`.

``fit_model`` is the bootstrap/refit path (fit the within-segment-scaled
preprocessor and the full-batch k-means bootstrap on the table, see
:mod:`segstream.training.scaling`); ``model_from_centroids`` finishes a model from
centroids that incremental updates produced (the parent's preprocessor is kept). Both go through
:func:`finish`, which matches stable ids to the parent, builds profiles, persona
names, the drift baseline and the metrics.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from segstream.core import rfm
from segstream.core.contract import FEATURE_SPEC, PURCHASED
from segstream.core.segment_model import Preprocessor, SegmentModel, squared_distances
from segstream.training.baseline import build_baseline
from segstream.training.data import FeatureTable
from segstream.training.ids import match_ids
from segstream.training.naming import name_segments
from segstream.training.preprocess import inverse_transform
from segstream.training.profiles import build_profiles
from segstream.training.scaling import within_scaled
from segstream.training.scores import quality

#: a new centroid farther than this many cluster radii (RMS distance of rows to
#: their centroid) from its best parent match is a new segment
ID_MATCH_RADII = 1.0


def fit_model(table: FeatureTable, k: int, *, seed: int = 0, parent: SegmentModel | None = None,
              next_id: int = 1, kind: str = "bootstrap",
              overrides: dict[int, dict[str, str]] | None = None) -> SegmentModel:
    _check_params(table)
    if len(table) < max(2 * k, 10):
        raise ValueError(f"{len(table)} rows are too few to fit k={k} segments; "
                         f"need at least {max(2 * k, 10)}")
    pre, km = within_scaled(table.X, k, seed=seed)
    return finish(table, pre, km.cluster_centers_, km.counts_, parent=parent, next_id=next_id,
                  kind=kind, seed=seed, overrides=overrides)


def model_from_centroids(table: FeatureTable, parent: SegmentModel, centroids: np.ndarray,
                         weights: np.ndarray, *, seed: int = 0, kind: str = "incremental",
                         next_id: int = 1,
                         overrides: dict[int, dict[str, str]] | None = None) -> SegmentModel:
    return finish(table, parent.preprocessor, centroids, weights, parent=parent,
                  next_id=next_id, kind=kind, seed=seed, overrides=overrides)


def _check_params(table: FeatureTable) -> None:
    if table.feature_params is None:
        raise ValueError(f"the feature table {table.source!r} does not say which feature params "
                         "(half-lives, session gap, vocabulary) its rows were computed with; "
                         "read it with segstream.training.data, which checks and records them")


def finish(table: FeatureTable, pre: Preprocessor, centroids: np.ndarray, weights: np.ndarray,
           *, parent: SegmentModel | None, next_id: int, kind: str, seed: int,
           overrides: dict[int, dict[str, str]] | None = None) -> SegmentModel:
    _check_params(table)
    Z = pre.transform(table.X)
    c = np.asarray(centroids, dtype=np.float64)
    d2 = squared_distances(Z, c)
    labels = d2.argmin(1)
    own = d2[np.arange(len(Z)), labels]
    temperature = float(max(own.mean(), 1e-6))
    retired: list[int] = []
    if parent is not None:
        # the parent's centroids, seen through the new preprocessor
        old = pre.transform(inverse_transform(parent.preprocessor, parent.centroids))
        next_id = max(next_id, int(parent.info.get("next_segment_id", 0)),
                      max(parent.segment_ids) + 1)
        m = match_ids(old, parent.segment_ids, c, next_id=next_id,
                      max_distance=ID_MATCH_RADII * float(np.sqrt(temperature)))
        ids, next_id, new_ids, shifts = m.ids, m.next_id, m.new, m.distances
        retired = [*parent.info.get("retired_ids", []), *m.retired]
    else:
        ids = tuple(range(next_id, next_id + len(c)))
        new_ids, shifts = ids, {}
        next_id += len(c)
    edges = rfm_edges(table.X)
    groups = [g for *_, g in rfm.score(edges, *_rfm_columns(table.X))] if edges else (
        [rfm.PROSPECT] * len(table))
    profiles = build_profiles(table.X, Z, labels, c, ids, groups)
    personas = name_segments(profiles, table.X, overrides,
                             parent.profiles if parent is not None else None)
    metrics = quality(Z, labels, c, seed=seed)
    start, end = table.data_range
    info: dict[str, Any] = {
        "k": len(c), "kind": kind, "rows": len(table), "data_start_ms": start,
        "data_end_ms": end, "source": table.source,
        "parent": parent.version if parent is not None else None,
        "next_segment_id": next_id, "retired_ids": sorted(set(retired)),
        "new_segment_ids": list(new_ids),
        "id_shifts": {str(k): round(v, 5) for k, v in shifts.items()},
        "cluster_weights": [float(w) for w in weights],
        "seed": seed, "trained_at_ms": int(time.time() * 1000),
        # serving refuses a model whose params fingerprint is not its own
        "feature_params": dict(table.feature_params or {}), "as_of_ms": table.as_of_ms,
    }
    return SegmentModel(
        spec_version=FEATURE_SPEC.version, feature_names=FEATURE_SPEC.names, preprocessor=pre,
        centroids=c.copy(), segment_ids=ids, personas=personas, temperature=temperature,
        profiles=profiles, baseline=build_baseline(table.X, labels, np.sqrt(own), ids),
        metrics=metrics, info=info, rfm_edges=edges,
    )


def _rfm_columns(X: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(X[:, FEATURE_SPEC.index(n)] for n in (
        rfm.R_FEATURE, rfm.F_FEATURE, rfm.M_FEATURE, PURCHASED))


def rfm_edges(X: np.ndarray) -> dict[str, list[float]]:
    """RFM quintile edges fitted on the purchasers of ``X`` (none: no edges)."""
    r, f, m, bought = _rfm_columns(X)
    buyers = bought == 1.0
    return rfm.fit_edges(r[buyers], f[buyers], m[buyers]) if buyers.sum() >= 5 else {}
