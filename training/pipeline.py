"""Fit, gate, register, promote: the steps `train` and `update` share."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from segstream.config import Settings
from segstream.segment_model import SegmentModel
from training.gates import GatePolicy, check_gates
from training.registry import GateResult, Registry


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
    """Gate ``candidate`` against ``champion`` on ``X_eval``; register; promote if it passed."""
    gate = check_gates(candidate, X_eval, champion, policy_of(settings))
    tags = {"next_segment_id": str(candidate.info.get("next_segment_id", "")),
            **(extra_tags or {})}
    version = registry.register(candidate, gate=gate, kind=kind, tags=tags)
    promoted = False
    if promote and gate.passed:
        registry.set_alias(version)
        promoted = True
    return Published(version, gate, promoted, candidate)
