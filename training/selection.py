"""``--k auto``: fit a range of k and let four criteria vote.

silhouette (max), Calinski-Harabasz (max), Davies-Bouldin (min) and the inertia
elbow (the k farthest below the straight line from the first to the last point of
the normalised inertia curve, the "kneedle" rule). The k with most votes wins; a tie
goes to the best silhouette among the tied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from segstream.training.kmeans import DecayingKMeans
from segstream.training.scores import quality


@dataclass
class KSelection:
    rows: list[dict[str, float]] = field(default_factory=list)  # one per k, with metrics
    votes: dict[str, int] = field(default_factory=dict)  # criterion -> k
    best_k: int = 0


def elbow(ks: list[int], inertia: list[float]) -> int:
    if len(ks) < 3:
        return ks[0]
    x = (np.array(ks) - ks[0]) / (ks[-1] - ks[0])
    y = np.array(inertia, dtype=float)
    y = (y - y.min()) / max(y.max() - y.min(), 1e-12)
    line = 1.0 - x  # from (0, 1) to (1, 0)
    return int(ks[int(np.argmax(line - y))])


def select_k(Z: np.ndarray, k_range: range, *, seed: int = 0,
             progress: Callable[[int], None] | None = None) -> KSelection:
    """Z is the preprocessed (scaled) matrix."""
    sel = KSelection()
    for k in k_range:
        km = DecayingKMeans(n_clusters=k, random_state=seed, n_init=2).fit(Z)
        row = quality(Z, km.labels_, km.cluster_centers_, seed=seed)
        sel.rows.append(row)
        if progress is not None:
            progress(k)
    ks = [int(r["k"]) for r in sel.rows]
    sil = [r["silhouette"] for r in sel.rows]
    sel.votes = {
        "silhouette": ks[int(np.argmax(sil))],
        "calinski_harabasz": ks[int(np.argmax([r["calinski_harabasz"] for r in sel.rows]))],
        "davies_bouldin": ks[int(np.argmin([r["davies_bouldin"] for r in sel.rows]))],
        "elbow": elbow(ks, [r["inertia"] for r in sel.rows]),
    }
    tally: dict[int, int] = {}
    for k in sel.votes.values():
        tally[k] = tally.get(k, 0) + 1
    top = max(tally.values())
    tied = [k for k, v in tally.items() if v == top]
    sel.best_k = max(tied, key=lambda k: sil[ks.index(k)])
    return sel
