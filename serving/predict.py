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
from segstream.core.segment_model import Assignment, SegmentModel
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


def reason_lists(model: SegmentModel, a: Assignment, x: np.ndarray
                 ) -> list[list[dict[str, Any]]]:
    """Every row's reasons (what :func:`~segstream.core.segment_model.reason_dicts`
    gives for one row), picked for all rows with array indexing: a positive weight,
    stopping at the first that is not, and no purchase feature of a user who never
    bought (nor a missing value); a test compares the two."""
    n, top = a.reason_cols.shape
    if n == 0 or top == 0:
        return [[] for _ in range(n)]
    rows = np.arange(n)[:, None]
    cols = a.reason_cols
    raw = x[rows, cols]
    given = model.preprocessor.given_columns[cols]
    keep = np.cumprod(a.reason_weights > 0, axis=1).astype(bool) & ~np.isnan(raw)
    keep &= (given < 0) | (x[rows, np.maximum(given, 0)] > 0.5)
    names = model.feature_names
    out: list[list[dict[str, Any]]] = []
    for c_row, r_row, z_row, w_row, k_row in zip(
            cols.tolist(), raw.tolist(), a.z[rows, cols].tolist(), a.reason_weights.tolist(),
            keep.tolist(), strict=True):
        out.append([{"feature": names[c], "value": r, "z": z,
                     "direction": "high" if z > 0 else "low", "weight": w}
                    for c, r, z, w, k in zip(c_row, r_row, z_row, w_row, k_row, strict=True)
                    if k])
    return out


def answers(served: Served, a: Assignment, x: np.ndarray, *, user_ids: list[str] | list[None],
            as_of_ms: list[int] | list[None], updated_ms: list[int] | list[None],
            stale_after_s: float, now: float, scores: list[RfmScore],
            churn: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The JSON bodies (the shape of ``schemas.SegmentAnswer``) of every row of one
    assignment: each array turned into Python values once, times formatted once per
    distinct value; ``churn``: each row's churn body (``serving/churn.py``) or null."""
    model = served.model
    keys, personas = served.segment_keys, model.personas
    version, spec = served.version, model.spec_version
    reasons = reason_lists(model, a, x)
    texts: dict[int, str] = {}

    def fmt(ms: int | None) -> str | None:
        if ms is None:
            return None
        text = texts.get(ms)
        if text is None:
            text = texts[ms] = format_time(ms)
        return text

    out = []
    for i, (idx, seg, dist, probs) in enumerate(zip(
            a.index.tolist(), a.segment_ids.tolist(), a.distances.tolist(),
            a.probabilities.tolist(), strict=True)):
        upd = updated_ms[i]
        out.append({
            "user_id": user_ids[i],
            "segment_id": seg,
            "persona": personas[idx],
            "probabilities": dict(zip(keys, probs, strict=True)),
            "distance": dist,
            "reasons": reasons[i],
            "model_version": version,
            "feature_spec": spec,
            "as_of": fmt(as_of_ms[i]),
            "features_updated_at": fmt(upd),
            "stale": upd is not None and now - upd / 1000.0 > stale_after_s,
            "cold_start": False,
            "rfm": rfm_body(scores[i]),
            "churn": churn[i],
        })
    return out
