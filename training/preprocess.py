"""Fit the artefact's :class:`Preprocessor`: log1p, robust scaling, clipping, flags.

``log1p`` applies where the feature spec flags ``heavy_tailed``; then each feature
is centred on its median and divided by its inter-quartile range (a feature whose
IQR is 0, e.g. a mostly-zero ratio, falls back to its standard deviation, then 1).

* **Conditional features** (``Feature.given``: the purchase features, given
  ``has_purchased``) are centred and scaled on the users with the flag only; the
  others sit at that centre (``Preprocessor.given``). Without this, the 60 % of users
  who never bought set the median (0 orders, 0 spend) and every buyer lands far out.
* **Flags** are 0 or :data:`FLAG_Z`: one flag separates its two groups by that many
  scaled units, about the spread of a whole feature between its quartiles twice over,
  so k-means keeps buyers and non-buyers apart without the flag owning the distance.
* **The clip bound.** Scaled values are clipped to ``[-clip, clip]`` so that a single
  outlier cannot own a centroid, and no scale is ever so small that more than
  :data:`MAX_CLIPPED_SHARE` of the users it applies to are at the clip: a clip is for
  outliers, not for a population (:func:`clip_floor`; tests/training/test_fit.py).

Examples
--------
>>> import numpy as np
>>> X = np.random.default_rng(0).lognormal(size=(500, len(FEATURE_SPEC)))
>>> X[:, FEATURE_SPEC.index("has_purchased")] = np.arange(500) % 2
>>> pre = fit_preprocessor(X)
>>> z = pre.transform(X)
>>> bool(abs(np.median(z[:, 0])) < 1e-9), float(z.max()) <= 5.0
(True, True)
>>> sorted(set(z[:, FEATURE_SPEC.index("has_purchased")].tolist()))
[0.0, 3.0]
"""

from __future__ import annotations

import numpy as np

from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.core.segment_model import Preprocessor

#: the scaled distance between a user with a flag and one without
FLAG_Z = 3.0
#: the largest share of the users a feature applies to that may sit at the clip
MAX_CLIPPED_SHARE = 0.05


def fit_preprocessor(X: np.ndarray, spec: FeatureSpec = FEATURE_SPEC,
                     clip: float = 5.0) -> Preprocessor:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(spec) or len(X) < 2:
        raise ValueError(f"need an (n >= 2, {len(spec)}) matrix in spec order, got {X.shape}")
    pre = robust_preprocessor(X, np.array([f.heavy_tailed for f in spec.features]), clip,
                              given=np.array(spec.given_columns))
    flags = [j for j, f in enumerate(spec.features) if f.kind == "flag"]
    center, scale = pre.center.copy(), pre.scale.copy()
    center[flags], scale[flags] = 0.0, 1.0 / FLAG_Z
    return Preprocessor(pre.log1p, center, np.maximum(scale, clip_floor(X, pre, flags)),
                        clip, pre.given_columns)


def robust_preprocessor(X: np.ndarray, log1p: np.ndarray | None = None, clip: float = 5.0,
                        given: np.ndarray | None = None) -> Preprocessor:
    """Median/IQR scaling after ``log1p`` where the mask says (none by default); a
    feature with a ``given`` flag column is centred and scaled on the flagged rows."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"need an (n >= 2, d) matrix, got {X.shape}")
    mask = np.zeros(X.shape[1], dtype=bool) if log1p is None else np.asarray(log1p, dtype=bool)
    given = np.full(X.shape[1], -1) if given is None else np.asarray(given, dtype=np.int64)
    z = np.where(mask, np.log1p(np.maximum(X, 0.0)), X)
    center, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    for j in range(X.shape[1]):
        col = z[applies_to(X, given, j), j]
        col = col[~np.isnan(col)]
        if len(col) < 2:
            continue
        center[j] = np.median(col)
        q25, q75 = np.percentile(col, [25, 75])
        spread = q75 - q25 if q75 - q25 > 1e-9 else col.std()
        scale[j] = spread if spread > 1e-9 else 1.0
    return Preprocessor(log1p=mask, center=center, scale=scale, clip=clip, given=given)


def applies_to(X: np.ndarray, given: np.ndarray, j: int) -> np.ndarray:
    """The rows feature ``j`` describes: all, or those with its flag."""
    return np.ones(len(X), dtype=bool) if given[j] < 0 else X[:, given[j]] == 1.0


def clip_floor(X: np.ndarray, pre: Preprocessor, exempt: list[int] | None = None
               ) -> np.ndarray:
    """The smallest scale per feature that leaves at most :data:`MAX_CLIPPED_SHARE` of
    the rows it applies to beyond the clip: that quantile of ``|value - centre|``
    (after log1p) divided by the clip. ``exempt`` columns get 0 (no floor)."""
    z = np.where(pre.log1p, np.log1p(np.maximum(X, 0.0)), X)
    given = pre.given_columns
    floor = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        if exempt and j in exempt:
            continue
        dev = np.abs(z[applies_to(X, given, j), j] - pre.center[j])
        dev = dev[~np.isnan(dev)]
        if len(dev):  # just above, so that users tied at that quantile stay inside
            floor[j] = (np.quantile(dev, 1.0 - MAX_CLIPPED_SHARE, method="higher") / pre.clip
                        * (1 + 1e-6))
    return floor


def clipped_shares(X: np.ndarray, pre: Preprocessor) -> np.ndarray:
    """Per feature, the share of the rows it applies to whose scaled value is at the
    clip (what :data:`MAX_CLIPPED_SHARE` bounds)."""
    Z = pre.transform(X)
    given = pre.given_columns
    out = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        rows = applies_to(X, given, j)
        if rows.any():
            out[j] = float((np.abs(Z[rows, j]) >= pre.clip - 1e-9).mean())
    return out


def inverse_transform(pre: Preprocessor, z: np.ndarray) -> np.ndarray:
    """Scaled space back to raw units (exact inside the clip range)."""
    x = np.asarray(z, dtype=np.float64) * pre.scale + pre.center
    out: np.ndarray = np.where(pre.log1p, np.expm1(x), x)
    return out
