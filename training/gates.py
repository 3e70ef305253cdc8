"""Quality gates a candidate passes before it may become the champion.

1. spec: the candidate's feature spec version and names equal this code's.
2. no empty segment and no collapsed one: every segment holds at least
   ``min_share`` of the evaluation rows, and no two centroids sit closer than
   ``collapse_distance`` (scaled units).
3. silhouette not worse than the champion's by more than ``margin``; both are
   measured on the same evaluation rows, each in its own scaled space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segstream.adapters.registry import GateResult
from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.core.segment_model import SegmentModel, squared_distances
from segstream.training.scores import silhouette_of


@dataclass(frozen=True)
class GatePolicy:
    margin: float = 0.02
    min_share: float = 0.005
    collapse_distance: float = 0.25
    seed: int = 0


def check_gates(candidate: SegmentModel, X: np.ndarray, champion: SegmentModel | None,
                policy: GatePolicy, spec: FeatureSpec = FEATURE_SPEC) -> GateResult:
    reasons: list[str] = []
    checks: dict[str, object] = {}
    try:
        candidate.check_spec(spec)
        checks["spec"] = candidate.spec_version
    except ValueError as exc:
        reasons.append(f"spec mismatch: {exc}")
        return GateResult(False, tuple(reasons), checks)
    a = candidate.assign(X)
    counts = np.bincount(a.index, minlength=candidate.k)
    shares = counts / max(len(X), 1)
    checks["min_share"] = float(shares.min())
    for row, share in enumerate(shares):
        sid = candidate.segment_ids[row]
        if counts[row] == 0:
            reasons.append(f"segment {sid} is empty on {len(X)} evaluation rows")
        elif share < policy.min_share:
            reasons.append(f"segment {sid} collapsed: share {share:.4f} < {policy.min_share}")
    c = candidate.centroids
    d = np.sqrt(squared_distances(c, c)) + np.eye(len(c)) * 1e9
    i, j = np.unravel_index(int(d.argmin()), d.shape)
    checks["closest_centroids"] = float(d[i, j])
    if d[i, j] < policy.collapse_distance:
        reasons.append(f"segments {candidate.segment_ids[i]} and {candidate.segment_ids[j]} "
                       f"collapsed: centroids {d[i, j]:.3f} apart < {policy.collapse_distance}")
    z = candidate.preprocessor.transform(X)
    sil = silhouette_of(z, a.index, seed=policy.seed)
    checks["silhouette"] = sil
    if champion is not None:
        try:
            champion.check_spec(spec)
            zc = champion.preprocessor.transform(X)
            champ_sil = silhouette_of(zc, champion.assign(X).index, seed=policy.seed)
        except ValueError:
            champ_sil = -1.0  # a champion on another spec cannot be compared; it must go
        checks["champion_silhouette"] = champ_sil
        checks["champion_version"] = champion.version
        if sil < champ_sil - policy.margin:
            reasons.append(f"silhouette {sil:.4f} is worse than champion {champion.version}'s "
                           f"{champ_sil:.4f} by more than {policy.margin}")
    return GateResult(not reasons, tuple(reasons), checks)
