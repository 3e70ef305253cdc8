"""``--k auto``: the largest k whose every segment comes back when refitted on other users.

For each candidate k the table (a seeded sample of at most ``sample_rows`` rows) is
fitted the way the model is (:func:`segstream.training.scaling.within_scaled`: the
within-segment scaling of that k and its k-means bootstrap), giving the *reference*
partition. Then ``resamples`` times, k-means (same k, same space, ``n_init``
restarts) is refitted on a random half of the rows and every row is assigned to its
nearest refitted centroid (the transfer by a classifier of Lange et al. 2004, so the
two partitions cover the same rows). Each reference segment scores the best Jaccard
overlap it finds among the refit's segments, averaged over the resamples (Hennig 2007,
*Cluster-wise assessment of cluster stability*; subsampling as in Ben-Hur, Elisseeff &
Guyon 2002). A k's **stability** is its weakest segment's score: one segment cut
arbitrarily out of a continuum is enough to make the k not stand for the data. A mean
ARI of the refits against the reference is kept beside it (``stability_ari``); it
averages over all rows, so one unstable segment among seven barely moves it.

The pick is the largest k whose stability is at least ``threshold`` (0.85, Hennig's
"highly stable"). One segment more than the structure has splits a real one along a
boundary that moves with the sample, and that segment's Jaccard falls; one fewer merges
two, which stays stable. So the largest stable k is the finest partition that
reproduces. On 2,000-user generated logs at 40 events per user (seeds 1-5) the
personas' k = 7 scored 0.926-0.968 and k = 8 0.507-0.760 (docs/training.md, *Choosing
k*). No k stable: the most stable k, ties to the best silhouette.

The four classical criteria are measured on each k's reference partition in its own
space and kept in the rows and votes for reading (silhouette, sampled, max;
Calinski-Harabasz max; Davies-Bouldin min; the inertia elbow, the "kneedle" rule), but
do not decide: on those logs silhouette and Davies-Bouldin vote 6 (two personas
merged), Calinski-Harabasz 4.

The refits run with one BLAS/OpenMP thread: on these small matrices the threads cost
more than they save (3.2 s against 4.3 s for a 2,000-user vote over k = 3..12, back to
back), and on the shared 2-core machine under other jobs' load threaded votes took
31-106 s where a one-thread vote took 4.8 s.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(m, 0.3, (150, 2)) for m in (0.0, 3.0, 6.0)])
>>> sel = select_k(X, range(2, 6), seed=0, spec=None, resamples=5)
>>> sel.best_k, sel.rule
(3, 'largest stable k')
>>> [round(r["stability"], 2) for r in sel.rows]  # k = 2: which two blobs merge varies
[0.7, 1.0, 0.64, 0.69]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.training.scaling import within_scaled
from segstream.training.scores import quality

#: a k is stable when its weakest segment's mean Jaccard reaches this (Hennig 2007)
STABLE_JACCARD = 0.85
#: refits per k, each on a random ``SUBSAMPLE`` share of the rows
RESAMPLES = 20
SUBSAMPLE = 0.5
#: the vote runs on a seeded sample of at most this many rows
SAMPLE_ROWS = 4000
#: k-means restarts of each refit (the model's bootstrap uses 10)
REFIT_N_INIT = 10


@dataclass
class KSelection:
    rows: list[dict[str, float]] = field(default_factory=list)  # one per k, with metrics
    votes: dict[str, int] = field(default_factory=dict)  # criterion -> k
    best_k: int = 0
    rule: str = ""  # how best_k was chosen
    threshold: float = STABLE_JACCARD


def elbow(ks: list[int], inertia: list[float]) -> int:
    if len(ks) < 3:
        return ks[0]
    x = (np.array(ks) - ks[0]) / (ks[-1] - ks[0])
    y = np.array(inertia, dtype=float)
    y = (y - y.min()) / max(y.max() - y.min(), 1e-12)
    line = 1.0 - x  # from (0, 1) to (1, 0)
    return int(ks[int(np.argmax(line - y))])


def best_jaccard(reference: np.ndarray, other: np.ndarray, k: int) -> np.ndarray:
    """Per reference segment 0..k-1: its largest Jaccard overlap with a segment of
    ``other`` (both label vectors over the same rows, labels in 0..k-1)."""
    both = np.bincount(reference * k + other, minlength=k * k).reshape(k, k).astype(float)
    union = both.sum(1)[:, None] + both.sum(0)[None, :] - both
    out: np.ndarray = np.where(union > 0, both / np.maximum(union, 1.0), 0.0).max(1)
    return out


def segment_stability(Z: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator,
                      *, resamples: int = RESAMPLES, fraction: float = SUBSAMPLE,
                      n_init: int = REFIT_N_INIT) -> tuple[np.ndarray, float]:
    """Per segment of the reference ``labels``: the mean over ``resamples`` refits (on a
    ``fraction`` of the rows of ``Z``, every row then assigned to its nearest refitted
    centroid) of its best Jaccard; and the refits' mean ARI against the reference."""
    size = int(fraction * len(Z))
    if size < 2 * k:
        raise ValueError(f"a {fraction:g} subsample of {len(Z)} rows has {size} rows; "
                         f"k={k} needs at least {2 * k}")
    jaccard = np.zeros(k)
    ari = 0.0
    for _ in range(resamples):
        rows = rng.choice(len(Z), size, replace=False)
        km = KMeans(k, n_init=n_init, random_state=int(rng.integers(2**31 - 1))).fit(Z[rows])
        refit = km.predict(Z)
        jaccard += best_jaccard(labels, refit, k)
        ari += adjusted_rand_score(labels, refit)
    return jaccard / resamples, ari / resamples


def select_k(X: np.ndarray, k_range: range, *, seed: int = 0,
             spec: FeatureSpec | None = FEATURE_SPEC, threshold: float = STABLE_JACCARD,
             resamples: int = RESAMPLES, fraction: float = SUBSAMPLE,
             sample_rows: int = SAMPLE_ROWS, n_init: int = REFIT_N_INIT,
             progress: Callable[[int], None] | None = None) -> KSelection:
    """Vote on the raw feature matrix ``X`` (spec order; ``spec=None``: any columns,
    robust scaling as the start of the within-segment scaling). Deterministic given
    ``seed``; each k's row depends on ``seed`` and k only, not on the other k tried."""
    with threadpool_limits(1):  # one thread: see the module docstring
        return _select_k(np.asarray(X, dtype=np.float64), k_range, seed=seed, spec=spec,
                         threshold=threshold, resamples=resamples, fraction=fraction,
                         sample_rows=sample_rows, n_init=n_init, progress=progress)


def _select_k(X: np.ndarray, k_range: range, *, seed: int, spec: FeatureSpec | None,
              threshold: float, resamples: int, fraction: float, sample_rows: int,
              n_init: int, progress: Callable[[int], None] | None) -> KSelection:
    if not k_range:
        raise ValueError(f"no k to choose from: {k_range}")
    if len(X) > sample_rows:
        X = X[np.sort(np.random.default_rng(seed).choice(len(X), sample_rows, replace=False))]
    if int(fraction * len(X)) < 2 * max(k_range):
        raise ValueError(f"{len(X)} rows are too few to vote up to k={max(k_range)}: a "
                         f"{fraction:g} subsample needs at least {2 * max(k_range)} rows, "
                         f"so at least {int(np.ceil(2 * max(k_range) / fraction))} rows")
    sel = KSelection(threshold=threshold)
    for k in k_range:
        pre, km = within_scaled(X, k, seed=seed, spec=spec)
        Z = pre.transform(X)
        per_segment, ari = segment_stability(
            Z, km.labels_, k, np.random.default_rng([seed, k]), resamples=resamples,
            fraction=fraction, n_init=n_init)
        row = quality(Z, km.labels_, km.cluster_centers_, seed=seed)
        row.update(stability=float(per_segment.min()), stability_mean=float(per_segment.mean()),
                   stability_ari=float(ari))
        sel.rows.append(row)
        if progress is not None:
            progress(k)
    ks = [int(r["k"]) for r in sel.rows]
    sil = [r["silhouette"] for r in sel.rows]
    stability = [r["stability"] for r in sel.rows]
    stable = [k for k, s in zip(ks, stability, strict=True) if s >= threshold]
    if stable:
        best, rule = max(stable), "largest stable k"
    else:
        best = max(ks, key=lambda k: (stability[ks.index(k)], sil[ks.index(k)]))
        rule = f"no k stable (>= {threshold:g}): the most stable"
    sel.votes = {
        "stability": best,
        "silhouette": ks[int(np.argmax(sil))],
        "calinski_harabasz": ks[int(np.argmax([r["calinski_harabasz"] for r in sel.rows]))],
        "davies_bouldin": ks[int(np.argmin([r["davies_bouldin"] for r in sel.rows]))],
        "elbow": elbow(ks, [r["inertia"] for r in sel.rows]),
    }
    sel.best_k, sel.rule = best, rule
    return sel
