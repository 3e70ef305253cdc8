"""The CMS hook: segment -> content templates per placement, and holdout arms.

Mapping (YAML, ``api_personalization_file``; the built-in one below otherwise)::

    experiments:
      personalization-v1: {holdout: 0.1}      # share of users given the control experience
    placements:
      homepage:
        experiment: personalization-v1        # optional
        default: [home-generic]               # control arm, and segments not listed
        segments:                             # keys: segment id or persona name
          "3": [home-vip, home-loyalty]
          Bargain hunters: [home-deals]
        auto: false      # true: unlisted segments get "<placement>-<persona-slug>"

The arm is deterministic: ``sha256("<experiment>:<user>")`` read as a number in
[0, 1); below the holdout share -> ``control``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Arm = Literal["treatment", "control"]

BUILTIN: dict[str, Any] = {
    "experiments": {"personalization-v1": {"holdout": 0.1}},
    "placements": {
        "homepage": {"experiment": "personalization-v1", "default": ["home-generic"],
                     "auto": True},
        "email": {"default": ["email-weekly-digest"], "auto": True},
    },
}


class MappingError(ValueError):
    """The personalization YAML is malformed; the message names the path."""


@dataclass(frozen=True)
class Placement:
    name: str
    default: tuple[str, ...]
    by_segment: dict[str, tuple[str, ...]] = field(default_factory=dict)
    experiment: str | None = None
    auto: bool = False

    def templates(self, segment_id: int, persona: str) -> tuple[str, ...]:
        hit = self.by_segment.get(str(segment_id)) or self.by_segment.get(persona)
        if hit:
            return hit
        if self.auto:
            return (f"{self.name}-{slug(persona)}",)
        return self.default


@dataclass(frozen=True)
class Mapping:
    placements: dict[str, Placement]
    holdouts: dict[str, float]

    def arm(self, experiment: str, user_id: str) -> Arm:
        return assign_arm(experiment, user_id, self.holdouts.get(experiment, 0.0))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "segment"


def assign_arm(experiment: str, user_id: str, holdout: float) -> Arm:
    """
    >>> assign_arm("exp", "u1", 0.0), assign_arm("exp", "u1", 1.0)
    ('treatment', 'control')
    """
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return "control" if u < holdout else "treatment"


def _templates(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise MappingError(f"{where}: expected a template name or a non-empty list of names")


def parse_mapping(raw: Any) -> Mapping:
    if not isinstance(raw, dict) or not isinstance(raw.get("placements"), dict):
        raise MappingError("the mapping needs a `placements:` object")
    holdouts: dict[str, float] = {}
    for exp, conf in (raw.get("experiments") or {}).items():
        share = (conf or {}).get("holdout", 0.0) if isinstance(conf, dict) else None
        if not isinstance(share, int | float) or not 0.0 <= float(share) <= 1.0:
            raise MappingError(f"experiments.{exp}.holdout: expected a share in [0, 1]")
        holdouts[str(exp)] = float(share)
    placements = {}
    for name, conf in raw["placements"].items():
        if not isinstance(conf, dict):
            raise MappingError(f"placements.{name}: expected an object")
        exp = conf.get("experiment")
        if exp is not None and exp not in holdouts:
            raise MappingError(f"placements.{name}.experiment: {exp!r} is not declared "
                               f"under experiments ({sorted(holdouts)})")
        segs = {str(k): _templates(v, f"placements.{name}.segments.{k}")
                for k, v in (conf.get("segments") or {}).items()}
        placements[str(name)] = Placement(
            str(name), _templates(conf.get("default", []), f"placements.{name}.default"),
            segs, exp, bool(conf.get("auto", False)))
    return Mapping(placements, holdouts)


def load_mapping(path: Path | None) -> Mapping:
    if path is None:
        return parse_mapping(BUILTIN)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"cannot read personalization mapping {path}: {exc}") from exc
    return parse_mapping(raw)
