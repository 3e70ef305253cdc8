"""Stand-in feature tables drawn around each generator persona (tests only).

Until streaming/'s batch features exist this gives training a labelled feature
table of the right shape (user_id, FEATURE_SPEC columns, last_event_ms,
spec_version). It approximates what each persona's events would produce; it is
NOT the feature computation (that lives in streaming/ only) and nothing in
training/ imports it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from segstream.contract import FEATURE_SPEC
from segstream.personas import DRIFT_MOBILE_BOOST, DRIFT_MOVES, PERSONAS, Persona

KNOWN = 8


def _mean_vector(p: Persona, *, mobile_boost: float = 0.0) -> np.ndarray:
    mix = p.event_mix
    total = sum(mix.values())
    share = {k: v / total for k, v in mix.items()}
    ent = -sum(v * math.log2(v) for v in share.values())
    active = 1.0 - p.start_late
    freq = p.sessions_per_day * 30 * active + 1
    purchase = share.get("purchase", 0.0)
    dwell_mean = p.dwell_median_s * math.exp(p.dwell_sigma**2 / 2)
    values = [
        min(30.0, (8.0 if p.trend < 0 else 1.0) / p.sessions_per_day),
        freq,
        freq * p.events_per_session * purchase * p.amount_median,
        p.amount_median if purchase else 0.0,
        p.events_per_session,
        p.events_per_session * p.gap_mean_s,
        dwell_mean,
        dwell_mean**2 * (math.exp(p.dwell_sigma**2) - 1),
        1.2 * ent,
        len(mix) / KNOWN,
        min(200.0, freq * p.events_per_session * 0.5),
        share.get("search", 0.0),
        share.get("add_to_cart", 0.0),
        purchase,
        p.prime_time,
        min(0.95, p.mobile + mobile_boost),
        1.0 / (1.0 + 2.0 * p.category_alpha),
        min(30.0, freq * 0.8),
        math.tanh(p.trend / 2),
    ]
    assert len(values) == len(FEATURE_SPEC)
    return np.array(values)


def persona_features(
    users: int = 3000, seed: int = 0, *, after_drift: bool = False, noise: float = 0.25,
    start_ms: int = 1_790_000_000_000,
) -> tuple[pd.DataFrame, np.ndarray]:
    """(feature table, persona label per row); ``after_drift`` moves users as the generator does."""
    rng = np.random.default_rng(seed)
    shares = np.array([p.share for p in PERSONAS])
    idx = rng.choice(len(PERSONAS), size=users, p=shares / shares.sum())
    labels = np.array([PERSONAS[i].name for i in idx], dtype=object)
    by_name = {p.name: p for p in PERSONAS}
    if after_drift:
        moves = rng.random(users) < 0.5
        labels = np.array([DRIFT_MOVES.get(lab, lab) if m else lab
                           for lab, m in zip(labels, moves, strict=True)], dtype=object)
    boost = DRIFT_MOBILE_BOOST if after_drift else 0.0
    means = {name: _mean_vector(p, mobile_boost=boost) for name, p in by_name.items()}
    kinds = [f.kind for f in FEATURE_SPEC.features]
    rows = np.empty((users, len(FEATURE_SPEC)))
    for i, lab in enumerate(labels):
        mu = means[lab]
        for j, kind in enumerate(kinds):
            if kind == "ratio":
                rows[i, j] = np.clip(mu[j] + rng.normal(0, 0.04), 0.0, 1.0)
            elif kind == "score":
                rows[i, j] = mu[j] + rng.normal(0, 0.08)
            else:
                rows[i, j] = mu[j] * rng.lognormal(0.0, noise)
    frame = pd.DataFrame(rows, columns=list(FEATURE_SPEC.names))
    frame.insert(0, "user_id", [f"u{seed}-{i:06d}" for i in range(users)])
    frame["last_event_ms"] = start_ms + rng.integers(0, 30 * 86_400_000, users)
    frame["spec_version"] = FEATURE_SPEC.version
    return frame, labels
