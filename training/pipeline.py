"""Fit, gate, register, promote: the steps `train` and `update` share."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from segstream.adapters.registry import GateResult, Registry
from segstream.config import Settings
from segstream.core.contract import FEATURE_SPEC
from segstream.core.segment_model import SegmentModel
from segstream.training.gates import GatePolicy, check_gates


def policy_of(settings: Settings) -> GatePolicy:
    return GatePolicy(margin=settings.gate_silhouette_margin, min_share=settings.gate_min_share,
                      seed=settings.random_seed)


def next_segment_id(registry: Registry) -> int:
    """One more than any segment id (kept or retired) any version ever used."""
    top = 0
    for v in registry.versions():
        ids = [int(i) for i in json.loads(v.tags.get("segment_ids", "[]"))]
        top = max([top, *ids, (v.tag_int("next_segment_id") or 1) - 1])
    return top + 1


def params_fingerprint(model: SegmentModel) -> int | None:
    """The feature params fingerprint the model was fitted on (None: not recorded)."""
    fp = (model.info.get("feature_params") or {}).get("fingerprint")
    return None if fp is None else int(fp)


def same_features(model: SegmentModel, fingerprint: int | None) -> bool:
    """Whether ``model`` reads features of this spec version and params fingerprint: only
    then can it be a parent (ids matched in its space) or be compared in the gates."""
    return (model.spec_version == FEATURE_SPEC.version and fingerprint is not None
            and params_fingerprint(model) == fingerprint)


def champion_or_none(registry: Registry) -> SegmentModel | None:
    version = registry.champion_version()
    return None if version is None else registry.load(version)


@dataclass(frozen=True)
class Published:
    version: str
    gate: GateResult
    promoted: bool
    model: SegmentModel


def publish(registry: Registry, candidate: SegmentModel, X_eval: np.ndarray,
            settings: Settings, *, champion: SegmentModel | None, kind: str,
            promote: bool = True, extra_tags: dict[str, str] | None = None) -> Published:
    """Gate ``candidate`` against ``champion`` on ``X_eval``; register; promote if it passed.

    A champion on other features (spec version or params) is not compared: serving
    refuses it anyway, so any candidate that passes its own gates may replace it.
    """
    if champion is not None and not same_features(champion, params_fingerprint(candidate)):
        champion = None
    gate = check_gates(candidate, X_eval, champion, policy_of(settings))
    tags = {"next_segment_id": str(candidate.info.get("next_segment_id", "")),
            **(extra_tags or {})}
    version = registry.register(candidate, gate=gate, kind=kind, tags=tags)
    promoted = False
    if promote and gate.passed:
        registry.set_alias(version)
        promoted = True
    return Published(version, gate, promoted, candidate)
