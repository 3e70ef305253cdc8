"""The drift baseline watches behaviour, not the age of the user base.

One stationary generated population, snapshotted at 80 % of its log and at its end:
the same behaviour, five days older. Tenure and the lifetime totals shift by age alone
(tenure's PSI is far above the refit threshold), so they have no baseline, and no
remaining feature passes the threshold. A population whose behaviour changes at half
its log still passes it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from segstream.config import Settings
from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.streaming.step import log_aggregates
from segstream.training.baseline import build_baseline, feature_psi
from segstream.training.data import table_from_aggregates
from tests.support.real_logs import PARAMS, WATERMARK_MS, RealLog, real_log

THRESHOLD = Settings().drift_psi_threshold
AGES = {f.name for f in FEATURE_SPEC.features if f.grows_with_age}


def _tables(r: RealLog, at: float) -> tuple[np.ndarray, np.ndarray]:
    """Every user's features at fraction ``at`` of the log and at its end."""
    start = int(r.valid["ts"].min())
    t = start + int((r.end_ms - start) * at)
    early = log_aggregates(r.valid[r.valid["ts"] <= t], watermark_ms=WATERMARK_MS,
                           params=PARAMS)
    a = table_from_aggregates(np.asarray(early.users, dtype=object), early.aggs, t, PARAMS,
                              "generated").X
    return a, r.table().X


def _psi(r: RealLog, at: float) -> tuple[dict[str, float], dict[str, float]]:
    """PSI of the end against a baseline at ``at``: (the baseline's features, what a
    baseline of every feature would see)."""
    a, b = _tables(r, at)
    ones, zeros = np.ones(len(a)), np.zeros(len(a), dtype=int)
    kept = feature_psi(build_baseline(a, zeros, ones, (0,)), b)
    every = FeatureSpec(FEATURE_SPEC.version, tuple(
        replace(f, grows_with_age=False) for f in FEATURE_SPEC.features))
    return kept, feature_psi(build_baseline(a, zeros, ones, (0,), every), b, every)


def test_an_older_but_unchanged_population_does_not_trigger_drift() -> None:
    kept, everything = _psi(real_log(600, 60_000, seed=2), 0.8)
    assert everything["tenure_days"] > 4 * THRESHOLD  # what used to trigger a refit
    assert AGES and not AGES & set(kept)
    assert set(kept) == set(FEATURE_SPEC.names) - AGES
    assert max(kept.values()) < THRESHOLD, kept


def test_a_population_whose_behaviour_changes_still_triggers_drift() -> None:
    kept, _ = _psi(real_log(600, 60_000, seed=3, drift_at=0.5), 0.5)
    assert max(kept.values()) > THRESHOLD, kept
