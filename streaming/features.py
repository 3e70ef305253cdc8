"""The feature transform: accepted events -> one feature row per user (pure numpy).

``user_features(events, window_days=..., session_gap_minutes=...)`` is the one
definition of every feature (docs/features.md gives each formula). The batch command and
the streaming job both call it from the same per-bucket step (``streaming.state``), so
they agree by construction; it needs no Spark and is tested on its own.

Reference time: a user's features are "as of" that user's last accepted event
(``last_event_ms``); the window is ``(last_event_ms - window, last_event_ms]``. A user's
features depend only on that user's own events, never on the wall clock or on other
users: every per-user quantity below is a reduction over that user's rows, in
``(ts, event_id)`` order, so the same events give the same numbers however the stream
was split into micro-batches and whoever else shared the call.

How: one sort by ``(user, ts, event_id)``, then every feature is a grouped count, sum,
max or distinct count over integer user codes (``np.bincount``, ``np.unique``), with no
per-user Python loop. It replaced a Spark higher-order-function version that cost
~94 µs per event here (docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segstream.contract import FEATURE_SPEC, KNOWN_EVENT_TYPES, MOBILE_PLATFORMS, FeatureSpec

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
PRIME_HOURS = (18, 22)  # 18:00 <= t < 23:00 UTC
TREND_DAYS = 7

#: Columns the transform reads.
EVENT_COLUMNS: tuple[str, ...] = (
    "user_id", "event_id", "ts", "event_type", "session_id", "content_id", "category",
    "dwell_ms", "amount", "platform",
)
#: Columns of the result, in order.
OUTPUT_COLUMNS: tuple[str, ...] = ("user_id", *FEATURE_SPEC.names, "last_event_ms",
                                   "spec_version")


def _codes(values: np.ndarray, *, sort: bool = False) -> np.ndarray:
    """Integer codes of a column (-1 for null); ``sort`` keeps the values' order."""
    codes: np.ndarray = pd.factorize(values, sort=sort)[0]
    return codes.astype(np.int64)


def _per_user_counts(u: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner of each distinct (user, code), how often it occurs), codes >= 0 only.
    Codes and user codes are below the row count, so the combined key cannot overflow."""
    ok = codes >= 0
    width = int(codes.max()) + 1 if ok.any() else 1
    keys, counts = np.unique(u[ok] * width + codes[ok], return_counts=True)
    return keys // width, counts


def _per_user_distinct(u: np.ndarray, codes: np.ndarray, n_users: int) -> np.ndarray:
    """Distinct non-negative ``codes`` per user."""
    return np.bincount(_per_user_counts(u, codes)[0], minlength=n_users)


def _per_user_max(u: np.ndarray, values: np.ndarray, n_users: int, fill: int) -> np.ndarray:
    out = np.full(n_users, fill, dtype=np.int64)
    np.maximum.at(out, u, values)
    return out


def _sessions(u: np.ndarray, ts: np.ndarray, sid: np.ndarray, types: np.ndarray,
              n_users: int, gap_ms: float) -> dict[str, np.ndarray]:
    """Sessions of rows sorted by (user, ts, event_id): ``session_id`` when present,
    else an inactivity gap. Returns per-user session count, summed in-session steps
    (ms), start of the last gap session, and the within-session transition pairs."""
    gap = np.flatnonzero(sid < 0)
    # rows with a session_id, ordered by (user, session_id, ts, event_id): a stable
    # sort by (user, sid) keeps the (ts, event_id) order inside each session
    tagged = np.flatnonzero(sid >= 0)
    tagged = tagged[np.lexsort((sid[tagged], u[tagged]))]
    sessions = np.zeros(n_users, dtype=np.int64)
    steps_ms = np.zeros(n_users)
    pair_users, pair_prev, pair_next = [], [], []
    last_gap_start = np.full(n_users, -1, dtype=np.int64)
    for rows, by_gap in ((gap, True), (tagged, False)):
        if not len(rows):
            continue
        uu, tt = u[rows], ts[rows]
        new = np.ones(len(rows), dtype=bool)
        if by_gap:
            new[1:] = (uu[1:] != uu[:-1]) | (np.diff(tt) > gap_ms)
            np.maximum.at(last_gap_start, uu[new], tt[new])
        else:
            ss = sid[rows]
            new[1:] = (uu[1:] != uu[:-1]) | (ss[1:] != ss[:-1])
        sessions += np.bincount(uu[new], minlength=n_users)
        step = np.diff(tt, prepend=tt[0])
        step[new] = 0
        steps_ms += np.bincount(uu, weights=step, minlength=n_users)
        inner = np.flatnonzero(~new)  # each has a predecessor in its session
        pair_users.append(uu[inner])
        pair_prev.append(types[rows][inner - 1])
        pair_next.append(types[rows][inner])
    n_types = int(types.max()) + 1 if len(types) else 1
    pairs = (np.concatenate(pair_prev) * n_types + np.concatenate(pair_next)
             if pair_prev else np.zeros(0, dtype=np.int64))
    return {"sessions": sessions, "steps_ms": steps_ms, "last_gap_start": last_gap_start,
            "pair_users": np.concatenate(pair_users) if pair_users else pairs,
            "pairs": _codes(pairs, sort=True) if len(pairs) else pairs}


def user_features(events: pd.DataFrame, *, window_days: int, session_gap_minutes: float,
                  spec: FeatureSpec = FEATURE_SPEC) -> pd.DataFrame:
    """One row per user of ``events`` (accepted, deduplicated, ``EVENT_COLUMNS``):
    ``user_id``, every spec feature (float64), ``last_event_ms``, ``spec_version``.

    >>> ev = pd.DataFrame({"user_id": ["u", "u"], "event_id": ["a", "b"],
    ...     "ts": [1_790_000_000_000, 1_790_000_060_000], "event_type": ["search", "purchase"],
    ...     "session_id": [None, None], "content_id": [None, None], "category": [None, None],
    ...     "dwell_ms": [None, None], "amount": [None, 20.0], "platform": ["ios", "web"]})
    >>> f = user_features(ev, window_days=30, session_gap_minutes=30).iloc[0]
    >>> [float(f[k]) for k in ("frequency", "monetary", "session_duration", "mobile_share")]
    [1.0, 20.0, 60.0, 0.5]
    """
    if events.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in OUTPUT_COLUMNS}).astype(
            {"user_id": object, "last_event_ms": "int64", "spec_version": object})
    user_codes, users = pd.factorize(events["user_id"])
    ts_all = events["ts"].to_numpy(np.int64)
    order = np.lexsort((_codes(events["event_id"].to_numpy(), sort=True), ts_all, user_codes))
    u, ts = user_codes[order].astype(np.int64), ts_all[order]
    n_users = len(users)
    last_row = np.flatnonzero(np.r_[u[1:] != u[:-1], True])
    T = ts[last_row]  # rows are sorted by user code, so T[k] belongs to user k
    keep = ts > T[u] - window_days * DAY_MS
    rows = order[keep]
    u, ts = u[keep], ts[keep]

    def col(name: str) -> np.ndarray:
        return events[name].to_numpy()[rows]

    types = _codes(col("event_type"), sort=True)
    sid = _codes(col("session_id"), sort=True)
    s = _sessions(u, ts, sid, types, n_users, session_gap_minutes * 60_000.0)
    n = np.bincount(u, minlength=n_users).astype(np.float64)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(u[mask], minlength=n_users).astype(np.float64)

    # transitions: entropy H = log2 t - sum(c log2 c) / t, c = count of a pair, t = all pairs
    p_users, p_counts = _per_user_counts(s["pair_users"], s["pairs"])
    t_n = np.bincount(p_users, weights=p_counts, minlength=n_users)
    t_s = np.bincount(p_users, weights=p_counts * np.log2(p_counts), minlength=n_users)
    entropy = np.zeros(n_users)
    has_pairs = t_n > 0
    entropy[has_pairs] = np.log2(t_n[has_pairs]) - t_s[has_pairs] / t_n[has_pairs]
    # the latest event of any session other than the last event's own session
    last_sid = sid[np.flatnonzero(np.r_[u[1:] != u[:-1], True])]
    own_gap = last_sid[u] < 0
    other = np.where(own_gap, (sid >= 0) | (ts < s["last_gap_start"][u]),
                     (sid < 0) | (sid != last_sid[u]))
    prev_end = _per_user_max(u[other], ts[other], n_users, fill=-1)
    # money and dwell
    event_type = col("event_type")
    purchase = event_type == "purchase"
    amount = pd.to_numeric(pd.Series(col("amount")), errors="coerce").to_numpy(np.float64)
    monetary = np.bincount(u, weights=np.where(purchase, np.nan_to_num(amount), 0.0),
                           minlength=n_users)
    purchases = count(purchase)
    dwell = pd.to_numeric(pd.Series(col("dwell_ms")), errors="coerce").to_numpy(np.float64)
    has_dwell = ~np.isnan(dwell)
    x, xu = dwell[has_dwell] / 1000.0, u[has_dwell]
    d_n = np.bincount(xu, minlength=n_users).astype(np.float64)
    d_mean = np.divide(np.bincount(xu, weights=x, minlength=n_users), d_n,
                       out=np.zeros(n_users), where=d_n > 0)
    d_var = np.divide(np.bincount(xu, weights=(x - d_mean[xu]) ** 2, minlength=n_users), d_n,
                      out=np.zeros(n_users), where=d_n > 0)
    # categories
    cats = _codes(col("category"))
    c_users, c_counts = _per_user_counts(u, cats)
    c_top = np.zeros(n_users)
    np.maximum.at(c_top, c_users, c_counts.astype(np.float64))
    c_n = count(cats >= 0)
    # time shares
    hour = (ts % DAY_MS) // HOUR_MS
    recent = count(ts > T[u] - TREND_DAYS * DAY_MS)
    earlier = count((ts <= T[u] - TREND_DAYS * DAY_MS) & (ts > T[u] - 2 * TREND_DAYS * DAY_MS))
    sessions = s["sessions"].astype(np.float64)

    formulas: dict[str, np.ndarray] = {
        "recency_days": np.where(prev_end >= 0, (T - prev_end) / DAY_MS, float(window_days)),
        "frequency": sessions,
        "monetary": monetary,
        "avg_order_value": np.divide(monetary, purchases, out=np.zeros(n_users),
                                     where=purchases > 0),
        "events_per_session": n / sessions,
        "session_duration": s["steps_ms"] / 1000.0 / sessions,
        "dwell_mean": d_mean,
        "dwell_variance": d_var,
        "path_complexity": entropy,
        "adoption_breadth": np.minimum(
            _per_user_distinct(u, types, n_users) / float(len(KNOWN_EVENT_TYPES)), 1.0),
        "content_breadth": _per_user_distinct(u, _codes(col("content_id")), n_users
                                              ).astype(np.float64),
        "search_ratio": count(event_type == "search") / n,
        "cart_ratio": count(event_type == "add_to_cart") / n,
        "purchase_ratio": purchases / n,
        "prime_time_share": count((hour >= PRIME_HOURS[0]) & (hour <= PRIME_HOURS[1])) / n,
        "mobile_share": count(pd.Series(col("platform")).isin(MOBILE_PLATFORMS).to_numpy()) / n,
        "top_category_share": np.divide(c_top, c_n, out=np.zeros(n_users), where=c_n > 0),
        "active_days": _per_user_distinct(u, ts // DAY_MS - ts.min() // DAY_MS, n_users
                                          ).astype(np.float64),
        "engagement_trend": (recent - earlier) / (recent + earlier),
    }
    if set(formulas) != set(spec.names):
        raise ValueError(
            f"feature formulas {sorted(formulas)} do not match spec {spec.version} "
            f"{sorted(spec.names)}: update streaming/features.py and docs/features.md")
    return pd.DataFrame({  # at once: 21 column inserts were ~10 % of a group's step
        "user_id": np.asarray(users, dtype=object),
        **{name: formulas[name].astype(np.float64) for name in spec.names},
        "last_event_ms": T, "spec_version": spec.version})
