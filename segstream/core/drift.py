"""Drift math shared by training (the baseline, the update's drift trigger) and serving
(the API's PSI and segment-share metrics).

* **Bins**: equal-mass bins between quantiles of the training rows in raw units (ties
  merged); the outer bins are open-ended, so a value below the first edge counts in the
  first bin.
* **PSI**: ``sum((a - e) * ln(a / e))`` over the bins, ``e`` the expected (baseline)
  proportions, ``a`` the actual ones, both floored at :data:`EPS`. Rule of thumb:
  < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant shift.
* **Jensen-Shannon divergence** (base 2, in [0, 1]) of two share vectors.

>>> edges, props = quantile_bins(np.arange(100.0), bins=4)
>>> [round(p, 2) for p in props]
[0.25, 0.25, 0.25, 0.25]
>>> psi(props, props)
0.0
>>> round(psi(props, bin_counts(edges, np.arange(50.0))), 3)
6.215
"""

from __future__ import annotations

import numpy as np

BINS = 10
EPS = 1e-4


def quantile_bins(values: np.ndarray, bins: int = BINS) -> tuple[list[float], list[float]]:
    """Edges (``bins + 1`` at most) and the proportion of ``values`` in each bin;
    missing values (NaN: a feature a user has no value of) are left out."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return [-1.0, 0.0, 1.0], [0.5, 0.5]
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 3:  # (almost) constant: one split at the value
        v = float(edges[0])
        edges = np.array([v - 1.0, v, v + 1.0])
    counts = bin_counts(edges, values)
    return edges.tolist(), (counts / counts.sum()).tolist()


def bin_counts(edges: np.ndarray | list[float], values: np.ndarray) -> np.ndarray:
    """How many ``values`` fall in each bin of ``edges`` (outer bins open-ended;
    missing values are not counted)."""
    edges = np.asarray(edges, dtype=float)
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return np.bincount(np.searchsorted(edges[1:-1], values, side="right"),
                       minlength=len(edges) - 1).astype(float)


def psi(expected: np.ndarray | list[float], actual: np.ndarray | list[float]) -> float:
    """Population stability index of ``actual`` against ``expected`` (counts or
    proportions; each is normalised after flooring at :data:`EPS`)."""
    e = np.maximum(np.asarray(expected, dtype=float), EPS)
    a = np.maximum(np.asarray(actual, dtype=float), EPS)
    e, a = e / e.sum(), a / a.sum()
    return float(((a - e) * np.log(a / e)).sum())


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2) of two share or count vectors."""
    p = np.asarray(p, dtype=float) / np.sum(p)
    q = np.asarray(q, dtype=float) / np.sum(q)
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float((x[mask] * np.log2(x[mask] / m[mask])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)
