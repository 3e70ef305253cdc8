"""Fit the churn model: scikit-learn's HistGradientBoostingClassifier on the spec's
features, calibrated, copied into the numpy artefact (``segstream/core/churn_model.py``).

* **Inputs**: the 28 features in spec order, as evaluated (``NaN`` where the spec says a
  feature has no value, e.g. days since the purchase of a user who never bought: HGB
  sends missing values down the side that fits best). ``recency_days`` (and, for the
  purchase label, ``purchase_recency_days``) is constrained monotone: more silence
  never lowers the risk, so a reason "no visit for 19 days" always points up.
* **Trees**: ``HGB_PARAMS`` (100 trees of depth <= 2, learning rate 0.05, leaves of
  >= 40 rows, L2 1.0), no early stopping, seeded. Depth 2 (a pair of features per tree
  at most) generalises across time, where the test users are older than any training
  user: on CDNOW at 181 days depth 4 ranked below the RFM score and depth 2 above it;
  on generated logs the two are within 0.003 of ROC AUC (docs/benchmarks.md). The
  numpy walk is 2 steps.
* **Calibration**: ``CalibratedClassifierCV(method, ensemble=False)`` on 3 folds of
  *users* (``GroupKFold``: a user's snapshots stay in one fold, so no fold calibrates
  on scores of rows whose user it was fitted on); the final trees are fitted on every
  training row, the map on the out-of-fold scores. ``sigmoid`` (the default) keeps the
  trees' ranking; ``isotonic``'s steps tie the riskiest users, which cost PR AUC on
  every benchmark set (docs/benchmarks.md).
* **Threads**: the fit runs on one OpenMP thread (``FIT_THREADS``).
* **Feature statistics** for the reasons: quartiles of each feature among the training
  rows that stayed and that churned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segstream.core.churn_model import Calibration, ChurnModel, Trees, label_definition
from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.training.churn_data import ChurnExamples

HGB_PARAMS: dict[str, Any] = {"max_iter": 100, "learning_rate": 0.05, "max_depth": 2,
                              "max_leaf_nodes": 4, "min_samples_leaf": 40,
                              "l2_regularization": 1.0, "early_stopping": False}
CALIBRATION_FOLDS = 3
#: HGB's OpenMP threads while fitting. One: on a shared 2-core machine its waiting
#: threads made a 3,000-row fit take 6.2 s instead of 0.08 s.
FIT_THREADS = 1
#: Features whose larger value never lowers the risk, per label.
MONOTONE_UP = {"activity": ("recency_days",),
               "purchase": ("recency_days", "purchase_recency_days")}


def trees_from_hgb(hgb: Any) -> tuple[Trees, float]:
    """The fitted binary HGB's trees as flat arrays, and its baseline raw score."""
    feature, threshold, missing, left, right, value, roots = [], [], [], [], [], [], []
    offset, depth = 0, 0
    shrink = float(hgb.learning_rate)
    for (predictor,) in hgb._predictors:  # one tree per iteration for a binary target
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not supported by the numpy walker")
        n = len(nodes)
        own = np.arange(offset, offset + n, dtype=np.int64)
        leaf = nodes["is_leaf"].astype(bool)
        feature.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64))
        threshold.append(nodes["num_threshold"].astype(np.float64))
        missing.append(nodes["missing_go_to_left"].astype(bool))
        left.append(np.where(leaf, own, nodes["left"].astype(np.int64) + offset))
        right.append(np.where(leaf, own, nodes["right"].astype(np.int64) + offset))
        # leaves hold shrunk values; a split node's value is its unshrunk Newton step
        value.append(np.where(leaf, nodes["value"], nodes["value"] * shrink))
        roots.append(offset)
        depth = max(depth, int(nodes["depth"][leaf].max()))
        offset += n
    trees = Trees(np.concatenate(feature), np.concatenate(threshold), np.concatenate(missing),
                  np.concatenate(left), np.concatenate(right), np.concatenate(value),
                  np.asarray(roots, dtype=np.int64), depth)
    return trees, float(np.asarray(hgb._baseline_prediction).ravel()[0])


def calibration_from(calibrator: Any, method: str) -> Calibration:
    if method == "isotonic":
        return Calibration("isotonic", np.asarray(calibrator.X_thresholds_, dtype=np.float64),
                           np.asarray(calibrator.y_thresholds_, dtype=np.float64))
    return Calibration("sigmoid", a=float(calibrator.a_), b=float(calibrator.b_))


def feature_stats(X: np.ndarray, y: np.ndarray, spec: FeatureSpec = FEATURE_SPEC
                  ) -> dict[str, dict[str, list[float | None]]]:
    """Per feature, quartiles of the known values among rows that stayed and churned."""
    out: dict[str, dict[str, list[float | None]]] = {}
    for j, name in enumerate(spec.names):
        out[name] = {}
        for key, rows in (("stayed", y == 0), ("churned", y == 1)):
            v = X[rows, j]
            v = v[~np.isnan(v)]
            out[name][key] = (np.percentile(v, [25, 50, 75]).round(6).tolist() if len(v)
                              else [None, None, None])
    return out


def fit_estimator(train: ChurnExamples, *, calibration: str = "sigmoid", seed: int = 42,
                  spec: FeatureSpec = FEATURE_SPEC) -> Any:
    """The fitted ``CalibratedClassifierCV`` (one HGB on every row + one calibrator)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import GroupKFold
    from threadpoolctl import threadpool_limits

    if len(np.unique(train.y)) < 2:
        raise ValueError(f"the training rows ({len(train):,} of {len(train.times)} snapshot "
                         "times) are all one class; a churn model needs churned and active "
                         "users")
    up = {spec.index(n) for n in MONOTONE_UP[train.label]}
    hgb = HistGradientBoostingClassifier(
        **HGB_PARAMS, random_state=seed,
        monotonic_cst=[1 if j in up else 0 for j in range(len(spec))])
    folds = list(GroupKFold(n_splits=CALIBRATION_FOLDS).split(
        train.X, train.y, groups=train.user_ids))
    est = CalibratedClassifierCV(hgb, method=calibration, cv=folds, ensemble=False)
    with threadpool_limits(FIT_THREADS, user_api="openmp"):
        est.fit(train.X, train.y)
    return est


def to_artefact(est: Any, train: ChurnExamples, *, calibration: str,
                band_edges: tuple[float, float], spec: FeatureSpec = FEATURE_SPEC
                ) -> ChurnModel:
    (pair,) = est.calibrated_classifiers_
    trees, baseline = trees_from_hgb(pair.estimator)
    first, last = min(train.times), max(train.times)
    return ChurnModel(
        spec_version=spec.version, feature_names=spec.names, trees=trees, baseline=baseline,
        calibration=calibration_from(pair.calibrators[0], calibration),
        band_edges=(float(band_edges[0]), float(band_edges[1])),
        label=label_definition(train.label, train.horizon_days),
        feature_stats=feature_stats(train.X, train.y, spec),
        info={"feature_params": train.feature_params, "train_times_ms": train.times,
              "as_of_ms": last, "data_start_ms": first, "rows": len(train),
              "users": len(np.unique(train.user_ids)),
              "train_churn_rate": round(train.churn_rate, 6),
              "hgb_params": HGB_PARAMS, "trees": len(trees.roots), "depth": trees.depth})


def fit_churn(train: ChurnExamples, *, calibration: str = "sigmoid",
              band_edges: tuple[float, float] = (0.3, 0.6), seed: int = 42,
              spec: FeatureSpec = FEATURE_SPEC) -> ChurnModel:
    """Fit on the training rows and return the numpy artefact."""
    est = fit_estimator(train, calibration=calibration, seed=seed, spec=spec)
    return to_artefact(est, train, calibration=calibration, band_edges=band_edges, spec=spec)
