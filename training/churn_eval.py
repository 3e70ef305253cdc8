"""Measure a churn model on held-out rows, next to baselines on the same rows, and gate it.

* **Measures** (scikit-learn): ROC AUC, PR AUC (average precision), Brier score, log
  loss; the calibration table (10 equal-width bins of predicted risk: rows, mean
  predicted, observed churn rate) and the bands table (rows and observed churn rate per
  band).
* **Baselines**, scored on the same rows and fitted on no label:
  ``recency``: days since the last accepted event (label ``activity``) or purchase
  (``purchase``; a user who never bought ranks last); ``rfm``: the RFM quintile score
  R + F + M (``segstream/core/rfm.py``, edges fitted on the rows scored: the customer
  base as of T), R and F from visits and sessions for ``activity``, from purchases and
  orders for ``purchase`` (where a user who never bought scores 0, below every buyer);
  ``base_rate``: the training churn rate for everyone (the Brier score to beat).
  BG/NBD needs the ``lifetimes`` library and lives in ``benchmarks/churn.py``.
* **Gates** (:func:`gate`): ROC AUC above each baseline's and the champion churn model's
  (scored on the same rows) by more than the margin, and a Brier score below the base
  rate's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segstream.adapters.registry import GateResult
from segstream.core import rfm
from segstream.core.churn_model import BANDS, ChurnModel
from segstream.core.contract import FEATURE_SPEC, PURCHASED, FeatureSpec
from segstream.training.churn_data import ChurnExamples


def measures(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier score and log loss of churn probabilities ``p``."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    two = len(np.unique(y)) == 2
    return {"roc_auc": float(roc_auc_score(y, p)) if two else float("nan"),
            "pr_auc": float(average_precision_score(y, p)) if two else float("nan"),
            "brier": float(brier_score_loss(y, p)),
            "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
            "churn_rate": float(np.mean(y)), "rows": float(len(y))}


def ranking(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """ROC AUC and PR AUC of a score that is higher for likelier churn."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    s = np.asarray(score, dtype=np.float64)
    finite = np.isfinite(s)
    s = np.where(finite, s, (s[finite].max() if finite.any() else 0.0) + 1.0)
    return {"roc_auc": float(roc_auc_score(y, s)), "pr_auc": float(average_precision_score(y, s))}


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Rows, mean predicted risk and observed churn rate per bin of predicted risk."""
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        rows = which == b
        if rows.any():
            out.append({"from": b / bins, "to": (b + 1) / bins, "rows": int(rows.sum()),
                        "predicted": float(p[rows].mean()), "observed": float(y[rows].mean())})
    return out


def band_table(y: np.ndarray, p: np.ndarray, edges: tuple[float, float]
               ) -> list[dict[str, Any]]:
    """Share of rows and observed churn rate per band."""
    which = np.searchsorted(np.asarray(edges), p, side="right")
    lows = (0.0, *edges)
    highs = (*edges, 1.0)
    return [{"band": name, "from": lows[i], "to": highs[i], "rows": int((which == i).sum()),
             "share": float((which == i).mean()),
             "observed": float(y[which == i].mean()) if (which == i).any() else None}
            for i, name in enumerate(BANDS)]


def baseline_scores(rows: ChurnExamples, spec: FeatureSpec = FEATURE_SPEC
                    ) -> dict[str, np.ndarray]:
    """Churn scores (higher: likelier) of the label-free baselines on ``rows``."""
    X, col = rows.X, spec.index
    if rows.label == "purchase":
        r, f, bought = X[:, col(rfm.R_FEATURE)], X[:, col(rfm.F_FEATURE)], X[:, col(PURCHASED)]
    else:
        r, f = X[:, col("recency_days")], X[:, col("lifetime_sessions")]
        bought = np.ones(len(X))
    m = X[:, col(rfm.M_FEATURE)]
    have = bought == 1.0
    total = np.zeros(len(X))
    if have.any():
        edges = rfm.fit_edges(r[have], f[have], m[have])
        scored = rfm.score(edges, np.nan_to_num(r), f, m, bought)
        total = np.array([0.0 if s[0] is None else float(s[0] + s[1] + s[2])  # type: ignore[operator]
                          for s in scored])
    recency = np.where(np.isnan(r), np.inf, r)
    return {"recency": recency, "rfm": -total}


@dataclass
class Evaluation:
    """Everything measured on one set of held-out rows."""

    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    calibration: list[dict[str, float]]
    bands: list[dict[str, Any]]
    times_ms: list[int] = field(default_factory=list)

    def as_info(self) -> dict[str, Any]:
        return {"baselines": self.baselines, "calibration": self.calibration,
                "bands": self.bands, "test_times_ms": self.times_ms}


def evaluate(model: ChurnModel, rows: ChurnExamples, base_rate: float) -> Evaluation:
    """The model and the baselines on ``rows``; ``base_rate``: the training churn rate."""
    p = model.risk(rows.X)
    y = rows.y.astype(np.int64)
    base = {name: ranking(y, s) for name, s in baseline_scores(rows).items()}
    base["base_rate"] = {"brier": measures(y, np.full(len(y), base_rate))["brier"]}
    return Evaluation(measures(y, p), base, calibration_table(y, p),
                      band_table(y, p, model.band_edges), rows.times)


def comparable(champion: ChurnModel, candidate: ChurnModel) -> str | None:
    """Why the champion cannot be compared with the candidate (None: it can)."""
    if champion.spec_version != candidate.spec_version:
        return f"spec {champion.spec_version} (candidate {candidate.spec_version})"
    if champion.fingerprint != candidate.fingerprint:
        return (f"feature params {champion.fingerprint:08x} (candidate "
                f"{candidate.fingerprint:08x})" if champion.fingerprint is not None
                and candidate.fingerprint is not None else "unknown feature params")
    for key in ("label", "horizon_days"):
        if champion.label.get(key) != candidate.label.get(key):
            return f"{key} {champion.label.get(key)} (candidate {candidate.label.get(key)})"
    return None


def gate(ev: Evaluation, margin: float = 0.0, champion: dict[str, Any] | None = None
         ) -> GateResult:
    """The candidate's gates; ``champion``: ``{"version", "roc_auc"}`` on the same rows."""
    auc = ev.metrics["roc_auc"]
    reasons: list[str] = []
    checks: dict[str, Any] = {"roc_auc": auc, "margin": margin}
    others = {f"{name} baseline": b["roc_auc"] for name, b in ev.baselines.items()
              if "roc_auc" in b}
    if champion is not None:
        others[f"champion version {champion['version']}"] = champion["roc_auc"]
        checks["champion"] = champion
    for what, other in others.items():
        checks[what] = other
        if not auc - other > margin:
            reasons.append(f"ROC AUC {auc:.4f} does not beat the {what} ({other:.4f}) by more "
                           f"than {margin:g}")
    brier, base = ev.metrics["brier"], ev.baselines["base_rate"]["brier"]
    checks["brier"], checks["base_rate_brier"] = brier, base
    if not brier < base:
        reasons.append(f"Brier score {brier:.4f} is not below the base rate's ({base:.4f})")
    if not np.isfinite(auc):
        reasons.append("the test rows are all one class: ROC AUC is undefined")
    return GateResult(not reasons, tuple(reasons), checks)


def segment_risk(segments: Any, rows: ChurnExamples, risk: np.ndarray) -> list[dict[str, Any]]:
    """Per segment of ``segments`` (a SegmentModel of the same features): rows, mean
    predicted risk and observed churn rate."""
    assigned = segments.assign(rows.X).segment_ids
    names = dict(zip(segments.segment_ids, segments.personas, strict=True))
    out = []
    for sid in sorted(set(assigned.tolist())):
        m = assigned == sid
        out.append({"segment_id": int(sid), "persona": names.get(sid, ""),
                    "rows": int(m.sum()), "mean_risk": float(risk[m].mean()),
                    "observed": float(rows.y[m].mean())})
    return out


def churn_by_segment(churn: ChurnModel, X: np.ndarray, assigned: np.ndarray,
                     segment_ids: Sequence[int], top: int = 2) -> list[dict[str, Any]]:
    """Per segment of ``segment_ids`` (in that order), of the users ``X`` whose segment is
    ``assigned``: ``users``, ``mean_risk``, ``high_share`` (in the high band) and the
    ``top`` reasons most often among their members' reasons, each ``{"feature", "text"
    (one member's words), "share" (of the members that have it)}``."""
    scores = churn.score(X)
    high = scores.band_index == BANDS.index("high")
    out = []
    for sid in segment_ids:
        rows = np.flatnonzero(assigned == sid)
        counts: Counter[int] = Counter()
        example: dict[int, str] = {}
        for i in rows.tolist():
            for j, text in zip(scores.reason_cols[i].tolist(), scores.reasons[i],
                               strict=False):
                counts[j] += 1
                example.setdefault(j, text)
        n = len(rows)
        out.append({"segment_id": int(sid), "users": n,
                    "mean_risk": float(scores.risk[rows].mean()) if n else None,
                    "high_share": float(high[rows].mean()) if n else None,
                    "reasons": [{"feature": churn.feature_names[j], "text": example[j],
                                 "share": c / n} for j, c in counts.most_common(top)]})
    return out
