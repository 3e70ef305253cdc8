"""Compare clustering algorithms on the same preprocessed features.

KMeans (the model's bootstrap: full batch, k-means++, 10 restarts), MiniBatchKMeans,
GaussianMixture (soft; hard labels = argmax), HDBSCAN (noise
counted as its own label) and Ward agglomerative, each scored by silhouette
(sampled), Davies-Bouldin and, with a truth file, ARI against the personas.
HDBSCAN and Ward are O(n²) in memory/time, so they run on a seeded sample of at
most ``sample`` rows; the table says how many rows each used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from segstream.training.scores import silhouette_of


def compare(Z: np.ndarray, k: int, *, truth: np.ndarray | None = None, seed: int = 0,
            sample: int = 5000,
            progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans, MiniBatchKMeans
    from sklearn.metrics import adjusted_rand_score, davies_bouldin_score
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    small = np.sort(rng.choice(len(Z), size=min(sample, len(Z)), replace=False))
    algos: list[tuple[str, bool, Callable[[np.ndarray], np.ndarray]]] = [
        ("KMeans", False, lambda z: KMeans(k, n_init=10, random_state=seed).fit_predict(z)),
        ("MiniBatchKMeans", False, lambda z: MiniBatchKMeans(
            k, n_init=3, batch_size=1024, random_state=seed).fit_predict(z)),
        ("GaussianMixture", False, lambda z: GaussianMixture(
            k, covariance_type="diag", n_init=2, random_state=seed).fit(z).predict(z)),
        ("HDBSCAN", True, lambda z: HDBSCAN(min_cluster_size=max(10, len(z) // 100))
         .fit_predict(z)),
        ("Ward", True, lambda z: AgglomerativeClustering(k, linkage="ward").fit_predict(z)),
    ]
    rows = []
    for name, sampled, run in algos:
        if progress is not None:
            progress(name)
        idx = small if sampled else np.arange(len(Z))
        t0 = time.perf_counter()
        labels = run(Z[idx])
        seconds = time.perf_counter() - t0
        n_clusters = len(set(labels.tolist()) - {-1})
        row: dict[str, Any] = {"algorithm": name, "rows": len(idx), "clusters": n_clusters,
                               "noise_share": float((labels == -1).mean()),
                               "seconds": round(seconds, 3)}
        ok = len(np.unique(labels)) >= 2
        row["silhouette"] = silhouette_of(Z[idx], labels, seed=seed) if ok else float("nan")
        row["davies_bouldin"] = float(davies_bouldin_score(Z[idx], labels)) if ok else float(
            "nan")
        if truth is not None:
            row["ari"] = float(adjusted_rand_score(truth[idx], labels))
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c])
                                     for c in cols) + " |")
    return "\n".join(out) + "\n"
