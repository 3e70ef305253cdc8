"""Per-segment profiles and generated persona names.

A profile: stable id, size and share, the centroid in original units, the member
median, and the features that set the segment apart: z-scores of the segment mean
against the population, in scaled space. Names are generated from the top
distinguishing features and the spec's own feature names (no feature name is typed
here), e.g. "Low purchase recency days & high avg order value - users"; a YAML file can
override the name (and add a description) per segment id::

    3: {name: "High-spend loyalists", description: "..."}
    5: "Decaying browsers"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.core.segment_model import Preprocessor
from segstream.training.preprocess import inverse_transform

TOP = 3


def label(name: str) -> str:
    return name.replace("_", " ")


def build_profiles(X: np.ndarray, Z: np.ndarray, labels: np.ndarray, centroids: np.ndarray,
                   ids: tuple[int, ...], pre: Preprocessor,
                   spec: FeatureSpec = FEATURE_SPEC) -> list[dict[str, Any]]:
    n = len(Z)
    mu, sd = Z.mean(0), Z.std(0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    raw_centroids = inverse_transform(pre, centroids)
    out = []
    for row, sid in enumerate(ids):
        members = labels == row
        size = int(members.sum())
        z = (Z[members].mean(0) - mu) / sd if size else np.zeros(len(mu))
        order = np.argsort(-np.abs(z))[:TOP]
        out.append({
            "segment_id": int(sid),
            "size": size,
            "share": size / max(n, 1),
            "centroid": {nm: float(v) for nm, v in zip(spec.names, raw_centroids[row],
                                                       strict=True)},
            "median": {nm: float(v) for nm, v in zip(
                spec.names, np.median(X[members], 0) if size else raw_centroids[row],
                strict=True)},
            "z": {nm: round(float(v), 4) for nm, v in zip(spec.names, z, strict=True)},
            "distinguishing": [
                {"feature": spec.names[j], "z": round(float(z[j]), 3),
                 "direction": "high" if z[j] > 0 else "low"} for j in order
            ],
        })
    return out


def generated_name(profile: dict[str, Any], spec: FeatureSpec = FEATURE_SPEC) -> str:
    top = profile["distinguishing"][:2]
    if not top:
        return "Average users"
    first, *rest = top
    words = f"{first['direction'].capitalize()} {label(first['feature'])}"
    if rest:
        second = rest[0]
        joiner = "&" if second["direction"] == first["direction"] else f"& {second['direction']}"
        words += f" {joiner} {label(second['feature'])}"
    counts = [profile["z"][f.name] for f in spec.features if f.kind == "count"]
    activity = float(np.mean(counts)) if counts else 0.0
    noun = "heavy users" if activity > 0.5 else "light users" if activity < -0.5 else "users"
    return f"{words} - {noun}"


def name_segments(profiles: list[dict[str, Any]],
                  overrides: dict[int, dict[str, str]] | None = None) -> tuple[str, ...]:
    """One unique name per profile: override, else generated (de-duplicated by id)."""
    names: list[str] = []
    for p in profiles:
        sid = int(p["segment_id"])
        o = (overrides or {}).get(sid)
        name = o["name"] if o and o.get("name") else generated_name(p)
        if o and o.get("description"):
            p["description"] = o["description"]
        p["name_source"] = "override" if o and o.get("name") else "generated"
        if name in names:
            name = f"{name} #{sid}"
        p["name"] = name
        names.append(name)
    return tuple(names)


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
