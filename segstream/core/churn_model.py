"""The churn-risk artefact: a calibrated gradient-boosted tree ensemble scored with numpy.

training/ fits scikit-learn's ``HistGradientBoostingClassifier`` with a calibration map
(``training/churn_fit.py``) and copies what predicting needs into this artefact: every
tree's nodes (split feature, threshold, where a missing value goes, children, the
expected score at the node), the baseline score and the calibration map. Scoring walks
all trees at once, one vectorised numpy step per tree level, so serving needs neither
scikit-learn nor its per-call overhead (a test checks that both give the same numbers).

**Risk** is the calibrated probability that a user has no accepted event (label
``activity``) or no purchase (``purchase``) in the ``horizon_days`` after as_of:
``calibrate(baseline + sum of the user's leaf values)``. **Bands**: ``low`` below
``band_edges[0]``, ``high`` from ``band_edges[1]`` on, ``medium`` between.

**Reasons**: along each tree's path, the change in the expected score from a node to
its child is credited to the node's split feature (Saabas's path attribution); summed
over trees, it is each feature's part of the user's score above the baseline. The
largest parts above ``MIN_REASON_WEIGHT`` are the reasons, told in words and units next
to the user's own pace or the median of the users who stayed (``feature_stats``, from
the training rows).

Examples
--------
>>> trees = Trees(feature=np.array([0, 0, 0]), threshold=np.array([5.0, 0.0, 0.0]),
...               missing_left=np.array([False, False, False]), left=np.array([1, 1, 2]),
...               right=np.array([2, 1, 2]), value=np.array([0.0, -1.0, 1.0]),
...               roots=np.array([0]), depth=1)
>>> m = ChurnModel(spec_version="v0", feature_names=("recency_days",), trees=trees,
...                baseline=0.0, calibration=Calibration("sigmoid", a=-1.0, b=0.0),
...                band_edges=(0.3, 0.6))
>>> s = m.score(np.array([[2.0], [9.0], [np.nan]]))
>>> s.risk.round(3).tolist(), s.bands
([0.269, 0.731, 0.731], ['low', 'high', 'high'])
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from segstream.core.contract import FEATURE_SPEC, PURCHASED, Feature, FeatureSpec
from segstream.core.jsonable import json_default
from segstream.core.pace import usual_gap_days, usual_order_gap_days

ARTEFACT_FILE = "churn_model.npz"
META_FILE = "churn_model.json"

ChurnLabel = Literal["activity", "purchase"]
CHURN_LABELS: tuple[str, ...] = ChurnLabel.__args__  # type: ignore[attr-defined]
BANDS: tuple[str, ...] = ("low", "medium", "high")
#: What a churned user did not do in the horizon, per label (words for messages).
LABEL_WORDS = {"activity": "no accepted event", "purchase": "no purchase"}
#: How many reasons :meth:`ChurnModel.score` gives by default.
TOP_REASONS = 3
#: A feature is a reason when it adds at least this much to the raw score (log-odds):
#: smaller parts move the risk by well under a percentage point.
MIN_REASON_WEIGHT = 0.02
#: The features whose reasons compare with the user's own pace.
RECENCY, PURCHASE_RECENCY = "recency_days", "purchase_recency_days"
#: Model inputs never told as reasons: the account's age is no behaviour, and the
#: training rows it would be compared with were all younger than the users scored later.
NOT_REASONS = frozenset({"tenure_days"})


def label_definition(label: str, horizon_days: float) -> dict[str, Any]:
    """The label as stored with a model: what churned means, in words too."""
    if label not in CHURN_LABELS:
        raise ValueError(f"churn label must be one of {CHURN_LABELS}, got {label!r}")
    return {"label": label, "horizon_days": float(horizon_days),
            "definition": f"churned at T: {LABEL_WORDS[label]} in the {horizon_days:g} "
                          "days after T"}


@dataclass(frozen=True)
class Trees:
    """All trees' nodes in flat arrays. At a leaf, ``left == right ==`` the leaf itself,
    so a walk that reached it stays there; ``value`` is the expected raw score at a node
    (a leaf's is its output)."""

    feature: np.ndarray  # int64: split feature column (any valid column at a leaf)
    threshold: np.ndarray  # float64: go left when x <= threshold
    missing_left: np.ndarray  # bool: where NaN goes
    left: np.ndarray  # int64 node index
    right: np.ndarray  # int64 node index
    value: np.ndarray  # float64
    roots: np.ndarray  # int64: each tree's root node
    depth: int  # the deepest leaf's depth: steps every walk takes

    def walk(self, X: np.ndarray, contributions: bool = False
             ) -> tuple[np.ndarray, np.ndarray | None]:
        """(leaf node per row and tree, per-feature path contributions or None)."""
        n, d = X.shape
        idx = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        rows = np.arange(n)[:, None]
        contrib = np.zeros(n * d) if contributions else None
        flat = (rows * d) if contributions else None
        for _ in range(self.depth):
            f = self.feature[idx]
            x = X[rows, f]
            nan = np.isnan(x)
            go_left = np.where(nan, self.missing_left[idx], x <= self.threshold[idx])
            nxt = np.where(go_left, self.left[idx], self.right[idx])
            if contrib is not None and flat is not None:
                step = self.value[nxt] - self.value[idx]  # 0 where a leaf stays put
                contrib += np.bincount((flat + f).ravel(), weights=step.ravel(),
                                       minlength=n * d)
            idx = nxt
        return idx, None if contrib is None else contrib.reshape(n, d)


@dataclass(frozen=True)
class Calibration:
    """Raw score -> probability: ``isotonic`` (piecewise linear through ``x``, ``y``,
    clipped at the ends: scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``) or
    ``sigmoid`` (Platt: ``1 / (1 + exp(a * s + b))``)."""

    method: Literal["isotonic", "sigmoid"]
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    a: float = 0.0
    b: float = 0.0

    def __call__(self, score: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            out: np.ndarray = np.interp(score, self.x, self.y)
            return out
        return 1.0 / (1.0 + np.exp(self.a * score + self.b))


@dataclass(frozen=True)
class ChurnScores:
    """Risk, band and reasons of each scored row (row order of the input)."""

    risk: np.ndarray  # float64 in [0, 1]
    band_index: np.ndarray  # int64: index into BANDS
    reason_cols: np.ndarray  # n x top feature columns, strongest first (-1: none)
    reason_weights: np.ndarray  # their share of the raw score (> 0)
    reasons: list[list[str]]  # the reasons in words and units

    @property
    def bands(self) -> list[str]:
        return [BANDS[i] for i in self.band_index.tolist()]

    def rows(self, feature_names: tuple[str, ...]) -> list[dict[str, Any]]:
        """One dict per row: ``risk``, ``band``, ``reasons`` (feature, weight, text)."""
        out = []
        for i, (r, b) in enumerate(zip(self.risk.tolist(), self.bands, strict=True)):
            reasons = [{"feature": feature_names[j], "weight": w, "text": t}
                       for j, w, t in zip(self.reason_cols[i].tolist(),
                                          self.reason_weights[i].tolist(), self.reasons[i],
                                          strict=False) if j >= 0]
            out.append({"risk": r, "band": b, "reasons": reasons})
        return out


@dataclass
class ChurnModel:
    spec_version: str
    feature_names: tuple[str, ...]
    trees: Trees
    baseline: float  # raw score before any tree
    calibration: Calibration
    band_edges: tuple[float, float]
    label: dict[str, Any] = field(default_factory=lambda: label_definition("activity", 14))
    #: per feature: {"stayed": [q25, median, q75], "churned": [...]} over training rows
    feature_stats: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # feature_params, times, tables
    version: str | None = None  # registry version, set by the loader

    def __post_init__(self) -> None:
        lo, hi = self.band_edges
        if not 0.0 < lo < hi < 1.0:
            raise ValueError(f"band edges must satisfy 0 < low < high < 1, got {self.band_edges}")

    def check_spec(self, spec: FeatureSpec = FEATURE_SPEC) -> None:
        spec.check_version(self.spec_version, what="the churn model")
        if tuple(self.feature_names) != spec.names:
            raise ValueError(
                f"the churn model's features {self.feature_names} differ from spec {spec.names}")

    @property
    def fingerprint(self) -> int | None:
        """The feature params fingerprint of the rows it was trained on."""
        fp = (self.info.get("feature_params") or {}).get("fingerprint")
        return None if fp is None else int(fp)

    def check(self, fingerprint: int, spec: FeatureSpec = FEATURE_SPEC) -> None:
        """Refuse features of another spec or of other feature params (half-lives,
        session gap, vocabulary: ``FeatureParams.fingerprint``), naming both."""
        self.check_spec(spec)
        if self.fingerprint != fingerprint:
            mine = "unknown" if self.fingerprint is None else f"{self.fingerprint:08x}"
            raise ValueError(f"churn model version {self.version} was trained on feature params "
                             f"{mine}, the features here use {fingerprint:08x}; train it again "
                             "(`segstream churn train`) on records of these params")

    # --- scoring ---------------------------------------------------------------
    def _matrix(self, X: np.ndarray) -> np.ndarray:
        x = np.asarray(X, dtype=np.float64)
        x = x.reshape(1, -1) if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected an (n, {len(self.feature_names)}) matrix of features "
                             f"in spec order, got shape {np.shape(X)}")
        return x

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The uncalibrated score (log-odds of the trees) of each row."""
        x = self._matrix(X)
        leaves, _ = self.trees.walk(x)
        out: np.ndarray = self.baseline + self.trees.value[leaves].sum(1)
        return out

    def risk(self, X: np.ndarray) -> np.ndarray:
        """Calibrated churn probability of each row of features (spec order)."""
        out: np.ndarray = np.clip(self.calibration(self.raw(X)), 0.0, 1.0)
        return out

    def band_index(self, risk: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.searchsorted(np.asarray(self.band_edges), risk, side="right")
        return out

    def score(self, X: np.ndarray, reasons: int = TOP_REASONS) -> ChurnScores:
        """Risk, band and up to ``reasons`` reasons (words and units) of each row of
        evaluated features (``n x d`` float64 in spec order, all as of one time)."""
        x = self._matrix(X)
        leaves, contrib = self.trees.walk(x, contributions=reasons > 0)
        raw = self.baseline + self.trees.value[leaves].sum(1)
        risk = np.clip(self.calibration(raw), 0.0, 1.0)
        bands = self.band_index(risk)
        if contrib is None:
            empty = np.zeros((len(x), 0))
            return ChurnScores(risk, bands, empty.astype(np.int64), empty,
                               [[] for _ in range(len(x))])
        cols, weights, texts = self._reasons(x, contrib, reasons)
        return ChurnScores(risk, bands, cols, weights, texts)

    def _reasons(self, x: np.ndarray, contrib: np.ndarray, top: int
                 ) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        order = np.argsort(-contrib, axis=1, kind="stable")
        cols = np.full((len(x), top), -1, dtype=np.int64)
        weights = np.zeros((len(x), top))
        texts: list[list[str]] = []
        spec = {f.name: f for f in FEATURE_SPEC.features}
        nan = np.full(len(x), np.nan)
        full = tuple(self.feature_names) == FEATURE_SPEC.names
        gap = usual_gap_days(x) if full else nan
        order_gap = usual_order_gap_days(x) if full else nan
        flag = self.feature_names.index(PURCHASED) if PURCHASED in self.feature_names else -1
        bought = x[:, flag] > 0.5 if flag >= 0 else np.ones(len(x), dtype=bool)
        for i in range(len(x)):
            said: list[str] = []
            for j in order[i].tolist():
                w = float(contrib[i, j])
                if w < MIN_REASON_WEIGHT or len(said) == top:
                    break
                name = self.feature_names[j]
                if name in NOT_REASONS:
                    continue
                text = reason_text(spec[name], float(x[i, j]), self.feature_stats,
                                   gap=float(gap[i]), order_gap=float(order_gap[i]),
                                   bought=bool(bought[i]))
                if text in said:  # "never purchased" from two purchase features
                    continue
                cols[i, len(said)], weights[i, len(said)] = j, w
                said.append(text)
            texts.append(said)
        return cols, weights, texts

    # --- persistence -----------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        t, c = self.trees, self.calibration
        np.savez(directory / ARTEFACT_FILE, feature=t.feature, threshold=t.threshold,
                 missing_left=t.missing_left, left=t.left, right=t.right, value=t.value,
                 roots=t.roots, cal_x=c.x, cal_y=c.y)
        meta = {
            "spec_version": self.spec_version, "feature_names": list(self.feature_names),
            "depth": t.depth, "baseline": self.baseline,
            "calibration": {"method": c.method, "a": c.a, "b": c.b},
            "band_edges": list(self.band_edges), "label": self.label,
            "feature_stats": self.feature_stats, "metrics": self.metrics, "info": self.info,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1, default=json_default))
        return directory

    @classmethod
    def load(cls, directory: Path, version: str | None = None) -> ChurnModel:
        meta = json.loads((directory / META_FILE).read_text())
        with np.load(directory / ARTEFACT_FILE) as npz:
            a = {key: npz[key] for key in npz.files}
        trees = Trees(a["feature"].astype(np.int64), a["threshold"].astype(np.float64),
                      a["missing_left"].astype(bool), a["left"].astype(np.int64),
                      a["right"].astype(np.int64), a["value"].astype(np.float64),
                      a["roots"].astype(np.int64), int(meta["depth"]))
        cal = meta["calibration"]
        return cls(spec_version=meta["spec_version"],
                   feature_names=tuple(meta["feature_names"]), trees=trees,
                   baseline=float(meta["baseline"]),
                   calibration=Calibration(cal["method"], a["cal_x"], a["cal_y"],
                                           float(cal["a"]), float(cal["b"])),
                   band_edges=(float(meta["band_edges"][0]), float(meta["band_edges"][1])),
                   label=meta["label"], feature_stats=meta["feature_stats"],
                   metrics=meta["metrics"], info=meta["info"], version=version)


# ------------------------------------------------------------------ reasons in words


def _parts(value: float, f: Feature) -> tuple[str, str]:
    """(number, unit suffix) of a feature value for a person."""
    if f.kind == "days":
        return (f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"), " days"
    if f.kind == "ratio":
        return f"{value:.0%}", ""
    if f.kind == "money":
        return f"{value:,.2f}", f" {f.unit}"
    if f.kind == "flag":
        return ("yes" if value > 0.5 else "no"), ""
    if f.kind == "score" and f.unit.startswith("ratio"):
        return f"{value:+.2f}", ""
    if f.kind == "rate":
        return f"{value:.2f}", f" {f.unit}"
    return f"{value:.3g}", f" {f.unit}"


def fmt(value: float, f: Feature) -> str:
    """A feature value in its unit, for a person.

    >>> fmt(19.2, FEATURE_SPEC.features[FEATURE_SPEC.index("recency_days")])
    '19 days'
    >>> fmt(0.125, FEATURE_SPEC.features[FEATURE_SPEC.index("mobile_share")])
    '12%'
    >>> fmt(1.0, FEATURE_SPEC.features[FEATURE_SPEC.index("lifetime_sessions")])
    '1 session'
    """
    number, unit = _parts(value, f)
    if number == "1" and unit.endswith("s"):
        unit = unit[:-1]
    return number + unit


def fmt_range(low: float, high: float, f: Feature) -> str:
    """``low to high unit`` (one value when both read the same).

    >>> fmt_range(0.31, 0.8, FEATURE_SPEC.features[FEATURE_SPEC.index("session_rate_long")])
    '0.31 to 0.80 sessions/day'
    """
    a, b = _parts(low, f)[0], _parts(high, f)[0]
    return fmt(high, f) if a == b else f"{a} to {fmt(high, f)}"


def reason_text(f: Feature, value: float,
                stats: dict[str, dict[str, list[float | None]]], *, gap: float = math.nan,
                order_gap: float = math.nan, bought: bool = True) -> str:
    """One reason in words: the user's value of feature ``f`` in its unit, against their
    own usual gap (the two recencies: ``segstream.core.pace``) or the middle half of the
    users who stayed (``stats``: quartiles; low or high against their median).

    >>> recency = FEATURE_SPEC.features[FEATURE_SPEC.index("recency_days")]
    >>> reason_text(recency, 19.0, {}, gap=3.0)
    'no visit for 19 days; usual gap 3.0 days'
    >>> trend = FEATURE_SPEC.features[FEATURE_SPEC.index("engagement_trend")]
    >>> reason_text(trend, -0.8, {"engagement_trend": {"stayed": [-0.1, 0.02, 0.1]}})
    'low engagement trend: -0.80 (users who stayed: -0.10 to +0.10)'
    >>> bought = FEATURE_SPEC.features[FEATURE_SPEC.index("purchase_recency_days")]
    >>> reason_text(bought, 40.0, {}, order_gap=12.0)
    'no purchase for 40 days; usual gap between orders 12 days'
    >>> reason_text(bought, math.nan, {}, bought=False)
    'never purchased'
    """
    if (f.given is not None and not bought) or (f.name == PURCHASED and value < 0.5):
        return "never purchased"
    if math.isnan(value):
        return f"{f.name.replace('_', ' ')} unknown"
    if f.name == RECENCY:
        if gap > 0:
            return f"no visit for {fmt(value, f)}; usual gap {fmt(gap, f)}"
        return f"no visit for {fmt(value, f)}, after a single visit"
    if f.name == PURCHASE_RECENCY:
        if order_gap > 0:
            return (f"no purchase for {fmt(value, f)}; usual gap between orders "
                    f"{fmt(order_gap, f)}")
        return f"no purchase for {fmt(value, f)}, after a single order"
    words = f.name.replace("_", " ")
    low, median, high = (stats.get(f.name) or {}).get("stayed") or [None, None, None]
    if low is None or median is None or high is None:
        return f"{words}: {fmt(value, f)}"
    side = "low " if value < median else "high " if value > median else ""
    return f"{side}{words}: {fmt(value, f)} (users who stayed: {fmt_range(low, high, f)})"
