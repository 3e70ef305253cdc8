"""Per-segment profiles: what the members are, in the units a marketer uses.

A profile is member statistics, never a centroid pushed back through the scaler:

* ``members``: per feature the median and quartiles of the raw values of the members
  it describes (a purchase feature: the members who bought), with how many they are;
* ``kpis``: share of users, share who bought, median orders / spend / order value of
  the buyers, median days since the last visit and the last purchase, the usual gap
  between visits, and the visits that pace would have made since the last one;
* ``rfm_groups``: how many members are in each RFM group (``segstream.core.rfm``);
* ``centroid_z``: the centroid in the model's scaled space, beside the medians, and
  ``distinguishing``: the features whose member mean sets the segment apart (z-scores
  against the population in scaled space), which the persona name draws on.

Names and descriptions come from :mod:`segstream.training.naming`; a YAML file can
override the name (and the description) per segment id::

    3: {name: "High-spend loyalists", description: "..."}
    5: "Decaying browsers"
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from segstream.core import rfm
from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.core.pace import usual_gap_days

TOP = 3


def member_stats(X: np.ndarray, spec: FeatureSpec = FEATURE_SPEC) -> dict[str, dict[str, Any]]:
    """Median, quartiles and count per feature over the rows each one describes."""
    out: dict[str, dict[str, Any]] = {}
    given = spec.given_columns
    for j, name in enumerate(spec.names):
        col = X[:, j] if given[j] < 0 else X[X[:, given[j]] == 1.0, j]
        col = col[~np.isnan(col)]
        if len(col) == 0:
            out[name] = {"n": 0, "median": None, "q25": None, "q75": None}
            continue
        q25, med, q75 = np.percentile(col, [25, 50, 75])
        out[name] = {"n": len(col), "median": float(med), "q25": float(q25),
                     "q75": float(q75)}
    return out


def visits_missed(X: np.ndarray, population_gap: float,
                  spec: FeatureSpec = FEATURE_SPEC) -> np.ndarray:
    """Per user, the visits their usual pace would have made since their last one:
    days since the last visit / their usual gap (the population's median gap for a
    user with one visit). Exponential for a user who comes at random at a steady pace
    (median ln 2); well above it for one who stopped."""
    gap = usual_gap_days(X, spec)
    gap = np.where(np.isnan(gap), population_gap, gap)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = X[:, spec.index("recency_days")] / np.maximum(gap, 1e-3)
    return out


def kpis(stats: dict[str, dict[str, Any]], size: int, n_total: int,
         missed: np.ndarray | None = None, gaps: np.ndarray | None = None) -> dict[str, Any]:
    def med(name: str) -> float | None:
        v = stats[name]["median"]
        return None if v is None else float(v)

    buyers = stats[rfm.F_FEATURE]["n"]
    return {
        "users": size, "share": size / max(n_total, 1),
        "buyer_share": buyers / max(size, 1),
        "median_orders": med(rfm.F_FEATURE), "median_spend": med(rfm.M_FEATURE),
        "median_order_value": med("avg_order_value"),
        "median_days_since_visit": med("recency_days"),
        "median_days_since_purchase": med(rfm.R_FEATURE),
        "median_tenure_days": med("tenure_days"),
        "median_visits_missed": _median(missed),
        "median_usual_gap_days": _median(gaps),
        "one_visit_share": (0.0 if gaps is None or len(gaps) == 0
                            else float(np.isnan(gaps).mean())),
    }


def _median(v: np.ndarray | None) -> float | None:
    v = None if v is None else v[~np.isnan(v)]
    return None if v is None or len(v) == 0 else float(np.median(v))


def build_profiles(X: np.ndarray, Z: np.ndarray, labels: np.ndarray, centroids: np.ndarray,
                   ids: tuple[int, ...], groups: list[str],
                   spec: FeatureSpec = FEATURE_SPEC) -> list[dict[str, Any]]:
    """One profile per centroid row; ``groups`` is each row's RFM group."""
    n = len(Z)
    mu, sd = Z.mean(0), Z.std(0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    group_arr = np.asarray(groups, dtype=object)
    gaps = usual_gap_days(X, spec)
    population_gap = float(np.nanmedian(gaps)) if (~np.isnan(gaps)).any() else 1.0
    missed = visits_missed(X, population_gap, spec)
    out = []
    for row, sid in enumerate(ids):
        members = labels == row
        size = int(members.sum())
        z = (Z[members].mean(0) - mu) / sd if size else np.zeros(len(mu))
        order = np.argsort(-np.abs(z))[:TOP]
        stats = member_stats(X[members], spec)
        counts = Counter(group_arr[members].tolist())
        out.append({
            "segment_id": int(sid),
            "size": size,
            "share": size / max(n, 1),
            "kpis": kpis(stats, size, n, missed[members], gaps[members]),
            "members": stats,
            "rfm_groups": {g: int(counts.get(g, 0)) for g in rfm.GROUPS},
            "centroid_z": {nm: float(v) for nm, v in zip(spec.names, centroids[row],
                                                         strict=True)},
            "z": {nm: round(float(v), 4) for nm, v in zip(spec.names, z, strict=True)},
            "distinguishing": [
                {"feature": spec.names[j], "z": round(float(z[j]), 3),
                 "direction": "high" if z[j] > 0 else "low"} for j in order
            ],
        })
    return out


def read_overrides(path: Path | None) -> dict[int, dict[str, str]]:
    if path is None:
        return {}
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping segment id -> name or "
                         "{{name, description}}, got {type(raw).__name__}")
    out: dict[int, dict[str, str]] = {}
    for key, value in raw.items():
        try:
            sid = int(key)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: key {key!r} is not a segment id (an integer)") from exc
        out[sid] = {"name": value} if isinstance(value, str) else {
            k: str(v) for k, v in dict(value).items()}
    return out
