"""Cluster-quality metrics on a seeded sample (silhouette is O(n²): sampled)."""

from __future__ import annotations

import numpy as np

SILHOUETTE_SAMPLE = 3000


def quality(Z: np.ndarray, labels: np.ndarray, centers: np.ndarray, *,
            seed: int = 0, sample: int = SILHOUETTE_SAMPLE) -> dict[str, float]:
    """silhouette (sampled), Calinski-Harabasz, Davies-Bouldin, inertia, smallest share."""
    from sklearn.metrics import (
        calinski_harabasz_score,
        davies_bouldin_score,
        silhouette_score,
    )

    n = len(Z)
    k = len(centers)
    counts = np.bincount(labels, minlength=k)
    out: dict[str, float] = {
        "rows": float(n),
        "k": float(k),
        "inertia": float(((Z - centers[labels]) ** 2).sum()),
        "min_share": float(counts.min() / max(n, 1)),
    }
    out["inertia_per_row"] = out["inertia"] / max(n, 1)
    used = int((counts > 0).sum())
    if used < 2 or n <= used:
        out.update(silhouette=-1.0, calinski_harabasz=0.0, davies_bouldin=float("inf"))
        return out
    rng = np.random.default_rng(seed)
    idx = rng.choice(n, size=min(sample, n), replace=False)
    if len(np.unique(labels[idx])) >= 2:
        out["silhouette"] = float(silhouette_score(Z[idx], labels[idx]))
    else:
        out["silhouette"] = -1.0
    out["calinski_harabasz"] = float(calinski_harabasz_score(Z, labels))
    out["davies_bouldin"] = float(davies_bouldin_score(Z, labels))
    return out


def silhouette_of(Z: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                  sample: int = SILHOUETTE_SAMPLE) -> float:
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(Z), size=min(sample, len(Z)), replace=False)
    if len(np.unique(labels[idx])) < 2:
        return -1.0
    return float(silhouette_score(Z[idx], labels[idx]))
