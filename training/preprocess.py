"""Fit the artefact's :class:`Preprocessor`: log1p, robust scaling, clipping.

``log1p`` applies where the feature spec flags ``heavy_tailed``; then each feature
is centred on its median and divided by its inter-quartile range (a feature whose
IQR is 0, e.g. a mostly-zero ratio, falls back to its standard deviation, then 1);
scaled values are clipped to ``[-clip, clip]`` so a single outlier cannot own a
centroid.

Examples
--------
>>> import numpy as np
>>> X = np.random.default_rng(0).lognormal(size=(500, len(FEATURE_SPEC)))
>>> pre = fit_preprocessor(X)
>>> z = pre.transform(X)
>>> bool(abs(np.median(z[:, 0])) < 1e-9), float(z.max()) <= 5.0
(True, True)
"""

from __future__ import annotations

import numpy as np

from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.core.segment_model import Preprocessor


def fit_preprocessor(X: np.ndarray, spec: FeatureSpec = FEATURE_SPEC,
                     clip: float = 5.0) -> Preprocessor:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(spec) or len(X) < 2:
        raise ValueError(f"need an (n >= 2, {len(spec)}) matrix in spec order, got {X.shape}")
    return robust_preprocessor(X, np.array([f.heavy_tailed for f in spec.features]), clip)


def robust_preprocessor(X: np.ndarray, log1p: np.ndarray | None = None,
                        clip: float = 5.0) -> Preprocessor:
    """Median/IQR scaling after ``log1p`` where the mask says (none by default)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"need an (n >= 2, d) matrix, got {X.shape}")
    mask = np.zeros(X.shape[1], dtype=bool) if log1p is None else np.asarray(log1p, dtype=bool)
    z = np.where(mask, np.log1p(np.maximum(X, 0.0)), X)
    center = np.median(z, axis=0)
    q25, q75 = np.percentile(z, [25, 75], axis=0)
    scale = q75 - q25
    std = z.std(axis=0)
    scale = np.where(scale > 1e-9, scale, np.where(std > 1e-9, std, 1.0))
    return Preprocessor(log1p=mask, center=center, scale=scale, clip=clip)


def inverse_transform(pre: Preprocessor, z: np.ndarray) -> np.ndarray:
    """Scaled space back to raw units (exact inside the clip range)."""
    x = np.asarray(z, dtype=np.float64) * pre.scale + pre.center
    out: np.ndarray = np.where(pre.log1p, np.expm1(x), x)
    return out
