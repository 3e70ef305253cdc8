"""The hot path around the model: one vectorised :meth:`SegmentModel.assign` for
1..n rows (with reasons) and one :meth:`SegmentModel.rfm` of the same rows, and the
response dicts built directly (no pydantic on the way out; orjson serialises).

:meth:`Served.build` is the model/feature guard: a model is served only if it was
fitted on this feature spec version *and* on features made with these feature
params (half-lives, session gap, vocabulary): the same record evaluates to other
values under other params, so the centroids would not mean what they meant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from segstream.core import rfm
from segstream.core.aggregates import FeatureParams
from segstream.core.contract import FEATURE_SPEC
from segstream.core.segment_model import Assignment, SegmentModel, reason_dicts
from segstream.core.times import format_time
from segstream.serving.drift_window import Baseline, baseline_of

TOP_REASONS = 3
#: (R, F, M, group) of one row, as :meth:`SegmentModel.rfm` gives it
RfmScore = tuple[int | None, int | None, int | None, str]
PROSPECT: RfmScore = (None, None, None, rfm.PROSPECT)


class ModelParamsMismatch(ValueError):
    """The model was fitted on features made with other feature params (or says not)."""


def check_params(model: SegmentModel, params: FeatureParams, version: str) -> None:
    """Refuse a model whose recorded ``info["feature_params"]`` fingerprint differs."""
    recorded = model.info.get("feature_params")
    if not isinstance(recorded, dict) or "fingerprint" not in recorded:
        raise ModelParamsMismatch(
            f"model version {version} records no feature_params (fitted before feature "
            f"spec {FEATURE_SPEC.version} params were recorded); retrain it with "
            f"`segstream train` so that it records them (this process uses "
            f"{params.describe()})")
    if int(recorded["fingerprint"]) != params.fingerprint:
        raise ModelParamsMismatch(
            f"model version {version} was fitted on features with params {recorded}, "
            f"this process evaluates with {params.describe()} (settings "
            "feature_half_life_*_days, session_gap_minutes, vocab_*); use the training "
            "settings or retrain")


@dataclass(frozen=True)
class Served:
    """An immutable bundle around one model version: swapped as a whole on reload."""

    model: SegmentModel
    version: str
    loaded_at: float
    baseline: Baseline
    segment_keys: tuple[str, ...]  # segment ids as text (JSON keys, metric labels)
    row_of: dict[int, int]  # segment id -> centroid row

    @classmethod
    def build(cls, model: SegmentModel, version: str, params: FeatureParams) -> Served:
        """Wrap ``model``; refuses another spec version or other feature params."""
        model.check_spec(FEATURE_SPEC)
        check_params(model, params, version)
        ids = tuple(int(s) for s in model.segment_ids)
        return cls(model, version, time.time(), baseline_of(model),
                   tuple(str(s) for s in ids), {s: i for i, s in enumerate(ids)})

    def largest_segment(self) -> int:
        sizes = [float(p.get("size", p.get("share", 0.0))) for p in self.model.profiles]
        if len(sizes) == self.model.k and any(sizes):
            return int(self.model.segment_ids[int(np.argmax(sizes))])
        return int(self.model.segment_ids[0])


def assign(served: Served, x: np.ndarray) -> Assignment:
    return served.model.assign(x, reasons=TOP_REASONS)


def rfm_body(score: RfmScore) -> dict[str, Any]:
    """The ``schemas.Rfm`` shape of one (R, F, M, group).

    >>> rfm_body((5, 4, 4, "Champions")), rfm_body(PROSPECT)["group"]
    ({'r': 5, 'f': 4, 'm': 4, 'group': 'Champions'}, 'Prospect')
    """
    return {"r": score[0], "f": score[1], "m": score[2], "group": score[3]}


def answer(served: Served, batch: Assignment, row: int, x: np.ndarray, *, user_id: str | None,
           as_of_ms: int | None, updated_ms: int | None, stale_after_s: float, now: float,
           score: RfmScore, churn: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of one assignment (the shape of ``schemas.SegmentAnswer``);
    ``churn``: the churn body of the same row (``serving/churn.py``), or null."""
    model = served.model
    keys = served.segment_keys
    idx = int(batch.index[row])
    probs = batch.probabilities[row].tolist()
    reasons = reason_dicts(model, batch, row, x)
    out: dict[str, Any] = {
        "user_id": user_id,
        "segment_id": int(batch.segment_ids[row]),
        "persona": model.personas[idx],
        "probabilities": dict(zip(keys, probs, strict=True)),
        "distance": float(batch.distances[row]),
        "reasons": reasons,
        "model_version": served.version,
        "feature_spec": model.spec_version,
        "as_of": None if as_of_ms is None else format_time(as_of_ms),
        "features_updated_at": None,
        "stale": False,
        "cold_start": False,
        "rfm": rfm_body(score),
        "churn": churn,
    }
    if updated_ms is not None:
        out["features_updated_at"] = format_time(updated_ms)
        out["stale"] = now - updated_ms / 1000.0 > stale_after_s
    return out
