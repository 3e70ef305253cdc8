"""Per-user aggregates: folded once per event, evaluated into features as of any time.

This is the one definition of every feature (docs/features.md gives each formula). The
batch command, the streaming job, training snapshots and the API all call it:

* :func:`fold` adds a batch of accepted events (in arrival order) to the users'
  aggregate records, in place. Every field is a sufficient statistic updated in O(1)
  per event: counts, sums, first/last times, exponentially decayed sums (kept at the
  user's newest event time), the state of the user's current session, transition
  counts, a day bitmap, a KMV sketch of content ids and a capped category map. A
  batch's cost grows with its events, never with the users' history.
* :func:`evaluate` turns records into the spec's features *as of* a time. Recency,
  tenure, the decayed rates and the 30-day active days are functions of ``as_of``, so
  a user who stops acting ages: recency grows, rates fall, the trend goes to -1.

Folding a log in one call or in any sequence of pieces gives the same records: the
integer fields bit for bit, the decayed sums to float rounding (~1e-15 relative), since
each piece is combined at the newest event time. Sessions and transitions follow the
user's arrival order (one Kafka partition per user, in offset order), which the batch
command reproduces with the log's line order.

It needs numpy and pandas only (no Spark, Redis or Kafka).

Examples
--------
>>> import pandas as pd
>>> params = FeatureParams()
>>> ev = pd.DataFrame({"ts": [0, 60_000, 86_400_000], "event_type": ["view", "order", "x"],
...     "session_id": [None] * 3, "content_id": ["a", "b", "a"], "category": [None] * 3,
...     "dwell_ms": [None] * 3, "amount": [None, 20.0, None], "platform": ["ios"] * 3})
>>> aggs = empty(1)
>>> fold(aggs, np.zeros(3, dtype=np.int64), ev, params)
>>> f = evaluate(aggs, 3 * 86_400_000, params)
>>> [float(f[0, FEATURE_SPEC.index(n)]) for n in ("recency_days", "tenure_days",
...     "lifetime_sessions", "lifetime_spend", "content_breadth", "active_days")]
[2.0, 3.0, 2.0, 20.0, 2.0, 2.0]
"""

from __future__ import annotations

import functools
import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from segstream.core.contract import (
    ACTIVE_DAYS_WINDOW,
    DAY_MS,
    DEFAULT_EVENT_TYPE_ALIASES,
    DEFAULT_MOBILE_PLATFORMS,
    FEATURE_SPEC,
    KNOWN_EVENT_TYPES,
    RATE_WARMUP_FLOOR_DAYS,
)

PRIME_HOURS = (18, 22)  # 18:00 <= t < 23:00 UTC
N_TYPES = len(KNOWN_EVENT_TYPES) + 1  # canonical types + "other"
OTHER_TYPE = N_TYPES - 1
KMV_K = 32  # content ids: exact up to this many, then a k-minimum-values estimate
KMV_EMPTY = np.uint32(0xFFFFFFFF)
CATEGORY_SLOTS = 8  # categories counted exactly; later new ones count only in the total
DAY_BITS = 64

#: Decayed sums kept per half-life (index into the ``short``/``long`` fields).
SHORT = ("events", "sessions", "orders", "spend")
LONG = (*SHORT, "search", "cart", "prime", "mobile", "dwell_n", "dwell_sum", "dwell_sq")
_L = {name: i for i, name in enumerate(LONG)}

#: One user's record. ``events == 0`` marks an empty slot. Times are epoch ms.
#: Features derived from the fold's fields each time a record is evaluated although
#: they do not depend on as_of: not cached in ``static``, so records folded before they
#: existed evaluate to them too.
DERIVED_AT_READ = ("has_purchased",)
#: Features derived once per fold (cached in ``static``) and those evaluated on read
#: (the as-of features and ``DERIVED_AT_READ``), each in spec order.
STATIC_FEATURES = tuple(f.name for f in FEATURE_SPEC.features
                        if f.time != "as_of" and f.name not in DERIVED_AT_READ)
AS_OF_FEATURES = tuple(f.name for f in FEATURE_SPEC.features
                       if f.time == "as_of" or f.name in DERIVED_AT_READ)
#: (feature column, flag column) of the features that are null without their flag.
_NULLABLE = tuple((j, FEATURE_SPEC.given_columns[j]) for j, f in
                  enumerate(FEATURE_SPEC.features) if f.nullable)

AGG_DTYPE = np.dtype([
    ("events", "<i8"),  # accepted events (also the record's version: it only grows)
    ("first_ms", "<i8"), ("last_ms", "<i8"),  # first and newest event time
    ("last_purchase_ms", "<i8"),  # -1: never purchased
    ("sessions", "<i8"), ("orders", "<i8"), ("spend", "<f8"),
    ("closed_session_ms", "<f8"),  # summed length of the sessions before the current one
    ("cur_start_ms", "<i8"), ("cur_end_ms", "<i8"),  # the current session
    ("cur_session", "<u8"),  # hash of its session_id, 0 for an inactivity-gap session
    ("last_type", "<i1"),  # canonical type of the last event (transitions)
    ("type_mask", "<u2"),  # canonical types ever used, one bit each
    ("kmv_saturated", "u1"),  # the content sketch has dropped a value: estimate
    ("day_bits", "<u8"),  # bit i: active on UTC day (last_ms day - i)
    ("short", "<f8", (len(SHORT),)),  # decayed sums at last_ms, short half-life
    ("long", "<f8", (len(LONG),)),  # decayed sums at last_ms, long half-life
    ("transitions", "<f4", (N_TYPES * N_TYPES,)),  # within-session (prev, next) type pairs
    ("kmv", "<u4", (KMV_K,)),  # the KMV_K smallest content-id hashes, KMV_EMPTY unused
    ("category_hash", "<u8", (CATEGORY_SLOTS,)),  # 0: free slot
    ("category_count", "<f4", (CATEGORY_SLOTS,)),
    ("categorised", "<f8"),  # events with a category, counted or not in a slot
    # the features that do not depend on as_of, derived from the fields above after
    # every fold (a cache: the API's hot path evaluates only the as-of features)
    ("static", "<f8", (len(STATIC_FEATURES),)),
])

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vocabulary:
    """How a log's own event types and platforms map onto the canonical ones.

    Matching is case-insensitive on trimmed values. ``event_types`` maps an alias to a
    canonical type (canonical names map to themselves); anything else is ``other``.
    """

    event_types: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_EVENT_TYPE_ALIASES))
    mobile_platforms: tuple[str, ...] = DEFAULT_MOBILE_PLATFORMS

    def __post_init__(self) -> None:
        bad = {a: c for a, c in self.event_types.items() if c not in KNOWN_EVENT_TYPES}
        if bad:
            raise ValueError(f"event type aliases {bad} map to unknown types; the canonical "
                             f"types are {KNOWN_EVENT_TYPES}")

    def type_codes(self) -> dict[str, int]:
        codes = {t: i for i, t in enumerate(KNOWN_EVENT_TYPES)}
        for alias, canonical in self.event_types.items():
            codes[alias.strip().lower()] = codes[canonical]
        return codes

    def canonical_types(self, values: Sequence[object] | np.ndarray) -> np.ndarray:
        """Canonical type code of each value (``OTHER_TYPE`` if not in the vocabulary)."""
        codes = self.type_codes()
        return _map_distinct(values, lambda v: codes.get(v, OTHER_TYPE), OTHER_TYPE)

    def is_mobile(self, values: Sequence[object] | np.ndarray) -> np.ndarray:
        mobile = {p.strip().lower() for p in self.mobile_platforms}
        return _map_distinct(values, lambda v: int(v in mobile), 0).astype(bool)


def _map_distinct(values: Sequence[object] | np.ndarray, f: Callable[[str], int],
                  missing: int) -> np.ndarray:
    """``f`` of each value's trimmed lower-case text, computed once per distinct value
    (a log has a handful of event types and platforms, and many events)."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    table = np.array([f(str(u).strip().lower()) for u in uniques] + [missing],
                     dtype=np.int64)
    out: np.ndarray = table[codes]  # code -1 (null) takes the last entry: missing
    return out


#: The version of the fold, what a record's contents depend on besides its layout
#: (RECORD_VERSION) and the params. Spec v3 changed only how a record is evaluated
#: (docs/features.md), so v3 keeps v2's fold: the records a v2 stream wrote, and its
#: checkpointed state, read as they are. Models are checked against the spec version
#: on their own (SegmentModel), so a v2 model is still refused.
FOLD_VERSION = "v2"


@dataclass(frozen=True)
class FeatureParams:
    """What the fold and the evaluation depend on besides the events. Records carry
    :attr:`fingerprint`; evaluating a record made with other params is refused."""

    half_life_short_days: float = 7.0
    half_life_long_days: float = 30.0
    session_gap_minutes: float = 30.0
    vocabulary: Vocabulary = field(default_factory=Vocabulary)

    def __post_init__(self) -> None:
        if not 0 < self.half_life_short_days < self.half_life_long_days:
            raise ValueError(
                f"half lives must satisfy 0 < short < long, got short="
                f"{self.half_life_short_days}, long={self.half_life_long_days}")
        if self.session_gap_minutes <= 0:
            raise ValueError(f"session_gap_minutes must be > 0, got {self.session_gap_minutes}")

    @functools.cached_property  # frozen: computed once (it is on every decode's path)
    def fingerprint(self) -> int:
        """A 32-bit id of these params (and the fold version), stored in every record."""
        v = self.vocabulary
        text = repr((FOLD_VERSION, self.half_life_short_days, self.half_life_long_days,
                     self.session_gap_minutes, sorted(v.type_codes().items()),
                     sorted(p.strip().lower() for p in v.mobile_platforms)))
        return zlib.crc32(text.encode())

    def describe(self) -> dict[str, object]:
        """JSON-able params, recorded with a model."""
        return {"spec_version": FEATURE_SPEC.version, "fingerprint": self.fingerprint,
                "half_life_short_days": self.half_life_short_days,
                "half_life_long_days": self.half_life_long_days,
                "session_gap_minutes": self.session_gap_minutes}


def empty(n: int) -> np.ndarray:
    """``n`` empty records."""
    aggs = np.zeros(n, dtype=AGG_DTYPE)
    aggs["last_purchase_ms"] = -1
    aggs["kmv"] = KMV_EMPTY
    return aggs


def _hash(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hash of each non-null string, presence mask). Deterministic across
    processes: pandas' SipHash with its fixed default key."""
    s = pd.Series(values, dtype=object)
    present = s.notna().to_numpy()
    h = np.zeros(len(s), dtype=np.uint64)
    if present.any():
        h[present] = pd.util.hash_array(s[present].astype(str).to_numpy(dtype=object))
        h[present] |= np.uint64(1)  # never 0: 0 means "none"
    return h, present


def _group_shift(values: np.ndarray, first: np.ndarray, fill: np.ndarray | int
                 ) -> np.ndarray:
    """Each row's predecessor within its user (rows sorted by user); ``fill`` for the
    first row of a user (``first`` marks those rows)."""
    out = np.empty_like(values)
    out[1:] = values[:-1]
    out[first] = fill
    return out


def fold(aggs: np.ndarray, rows: np.ndarray, events: pd.DataFrame, params: FeatureParams
         ) -> None:
    """Fold accepted ``events`` into ``aggs`` in place; event i belongs to record
    ``rows[i]``. Events must be in each user's arrival order (the frame's order).

    Columns read: ``ts`` (epoch ms), ``event_type``, ``session_id``, ``content_id``,
    ``category``, ``dwell_ms``, ``amount``, ``platform``.
    """
    if len(events) == 0:
        return
    order = np.argsort(rows, kind="stable")  # by user, arrival order kept inside
    r = np.asarray(rows)[order]
    ur, start = np.unique(r, return_index=True)
    u = np.repeat(np.arange(len(ur)), np.diff(np.r_[start, len(r)]))
    first = np.zeros(len(r), dtype=bool)
    first[start] = True
    last_row = np.r_[start[1:] - 1, len(r) - 1]
    A = aggs[ur]  # a copy; written back at the end
    fresh = A["events"] == 0

    def col(name: str) -> np.ndarray:
        return events[name].to_numpy()[order]

    ts = col("ts").astype(np.int64)
    vocab = params.vocabulary
    types = vocab.canonical_types(col("event_type"))
    session, _ = _hash(col("session_id"))
    amount = np.nan_to_num(pd.to_numeric(pd.Series(col("amount")), errors="coerce"
                                         ).to_numpy(np.float64))
    dwell = pd.to_numeric(pd.Series(col("dwell_ms")), errors="coerce").to_numpy(np.float64)
    purchase = types == KNOWN_EVENT_TYPES.index("purchase")

    # --- sessions: a new one when the session_id changes, or, without one, after a gap
    # of more than session_gap_minutes since the user's newest event so far
    newest_before = np.maximum(_group_shift(  # fresh users' last_ms is 0: no effect
        pd.Series(ts).groupby(u).cummax().to_numpy(np.int64), first, 0), A["last_ms"][u])
    prev_session = _group_shift(session, first, A["cur_session"][u[start]])
    prev_type = _group_shift(types, first, A["last_type"][u[start]].astype(np.int64))
    gap_ms = params.session_gap_minutes * 60_000.0
    new = (session != prev_session) | ((session == 0) & (ts - newest_before > gap_ms))
    new[start[fresh]] = True
    sess_no = pd.Series(new.astype(np.int64)).groupby(u).cumsum().to_numpy()
    # (user, session number) runs are contiguous: rows are sorted by user, numbers rise
    run = np.flatnonzero(np.r_[True, (u[1:] != u[:-1]) | (sess_no[1:] != sess_no[:-1])])
    run_u, run_no = u[run], sess_no[run]
    run_min = np.minimum.reduceat(ts, run)
    run_max = np.maximum.reduceat(ts, run)
    cont = run_no == 0  # continues the stored current session
    run_min[cont] = np.minimum(run_min[cont], A["cur_start_ms"][run_u[cont]])
    run_max[cont] = np.maximum(run_max[cont], A["cur_end_ms"][run_u[cont]])
    run_last = np.r_[run_u[1:] != run_u[:-1], True]
    closed = np.bincount(run_u[~run_last], weights=(run_max - run_min)[~run_last],
                         minlength=len(ur))
    ended = ~fresh & new[start]  # the stored current session ended before this batch
    closed[ended] += (A["cur_end_ms"] - A["cur_start_ms"])[ended]
    A["closed_session_ms"] += closed
    A["cur_start_ms"] = run_min[run_last]
    A["cur_end_ms"] = run_max[run_last]
    A["cur_session"] = session[last_row]
    A["sessions"] += np.bincount(u[new], minlength=len(ur))
    inner = ~new
    np.add.at(A["transitions"], (u[inner], prev_type[inner] * N_TYPES + types[inner]), 1.0)
    A["last_type"] = types[last_row]
    A["type_mask"] |= np.bitwise_or.reduceat(
        np.where(types < OTHER_TYPE, np.left_shift(1, np.minimum(types, 15)), 0), start
    ).astype(np.uint16)

    # --- lifetime counts and times
    batch_max = np.maximum.reduceat(ts, start)
    new_last = np.where(fresh, batch_max, np.maximum(A["last_ms"], batch_max))
    A["first_ms"] = np.where(fresh, np.minimum.reduceat(ts, start),
                             np.minimum(A["first_ms"], np.minimum.reduceat(ts, start)))
    A["orders"] += np.bincount(u[purchase], minlength=len(ur))
    A["spend"] += np.bincount(u, weights=np.where(purchase, amount, 0.0), minlength=len(ur))
    p_last = np.full(len(ur), -1, dtype=np.int64)
    np.maximum.at(p_last, u[purchase], ts[purchase])
    A["last_purchase_ms"] = np.maximum(A["last_purchase_ms"], p_last)

    # --- decayed sums, re-anchored at the new newest time
    hour = (ts % DAY_MS) // 3_600_000
    has_dwell = ~np.isnan(dwell)
    dwell_s = np.where(has_dwell, dwell / 1000.0, 0.0)
    values = np.column_stack([
        np.ones(len(ts)), new, purchase, np.where(purchase, amount, 0.0),
        types == KNOWN_EVENT_TYPES.index("search"),
        types == KNOWN_EVENT_TYPES.index("add_to_cart"),
        (hour >= PRIME_HOURS[0]) & (hour <= PRIME_HOURS[1]),
        vocab.is_mobile(col("platform")), has_dwell, dwell_s, dwell_s * dwell_s,
    ]).astype(np.float64)
    age_state = np.where(fresh, 0, new_last - A["last_ms"]).astype(np.float64)
    age_rows = (new_last[u] - ts).astype(np.float64)
    for name, half_life, width in (("short", params.half_life_short_days, len(SHORT)),
                                   ("long", params.half_life_long_days, len(LONG))):
        h_ms = half_life * DAY_MS
        w = np.exp2(-age_rows / h_ms)
        added = np.add.reduceat(values[:, :width] * w[:, None], start, axis=0)
        A[name] = A[name] * np.exp2(-age_state / h_ms)[:, None] + added

    # --- active days: bit i of day_bits is the day (newest day - i)
    old_day = A["last_ms"] // DAY_MS
    new_day = new_last // DAY_MS
    shift = (new_day - old_day).astype(np.uint64)
    kept = np.where(fresh | (shift >= DAY_BITS), np.uint64(0),
                    np.left_shift(A["day_bits"], np.minimum(shift, np.uint64(DAY_BITS - 1))))
    back = new_day[u] - ts // DAY_MS
    bits = np.where(back < DAY_BITS,
                    np.left_shift(np.uint64(1), np.clip(back, 0, DAY_BITS - 1).astype(np.uint64)),
                    np.uint64(0))
    A["day_bits"] = kept | np.bitwise_or.reduceat(bits, start)
    A["last_ms"] = new_last

    _fold_content(A, u, col("content_id"))
    _fold_categories(A, u, col("category"))
    A["events"] += np.diff(np.r_[start, len(r)])
    A["static"] = static_features(A)
    aggs[ur] = A


def _fold_content(A: np.ndarray, u: np.ndarray, content: np.ndarray) -> None:
    """KMV sketch: the KMV_K smallest 32-bit hashes of a user's distinct content ids."""
    h, present = _hash(content)
    if not present.any():
        return
    h32 = (h[present] & np.uint64(0xFFFFFFFF)) % np.uint64(0xFFFFFFFF)  # below KMV_EMPTY
    stored_u, stored_slot = np.nonzero(A["kmv"] != KMV_EMPTY)
    keys = np.unique(np.r_[
        (u[present].astype(np.uint64) << np.uint64(32)) | h32,
        (stored_u.astype(np.uint64) << np.uint64(32))
        | A["kmv"][stored_u, stored_slot].astype(np.uint64)])
    ku = (keys >> np.uint64(32)).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, ku[1:] != ku[:-1]])
    rank = np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    touched = ku[starts]
    A["kmv_saturated"][touched] |= (np.diff(np.r_[starts, len(keys)]) > KMV_K)
    A["kmv"][touched] = KMV_EMPTY
    keep = rank < KMV_K
    A["kmv"][ku[keep], rank[keep]] = (keys[keep] & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _ranks(groups: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal, sorted ``groups``."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    out: np.ndarray = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts,
                                                                              len(groups)]))
    return out


def _fold_categories(A: np.ndarray, u: np.ndarray, category: np.ndarray) -> None:
    """Counts of the first CATEGORY_SLOTS distinct categories of each user (by first
    arrival); later new categories count only in ``categorised``."""
    h, present = _hash(category)
    if not present.any():
        return
    pos = np.flatnonzero(present)  # rows are in each user's arrival order
    pu, ph = u[pos], h[pos]
    A["categorised"] += np.bincount(pu, minlength=len(A))
    # distinct (user, category) pairs: count and first arrival
    order = np.lexsort((pos, ph, pu))
    pu, ph, pos = pu[order], ph[order], pos[order]
    first = np.flatnonzero(np.r_[True, (pu[1:] != pu[:-1]) | (ph[1:] != ph[:-1])])
    n = np.diff(np.r_[first, len(pu)]).astype(np.float32)
    pu, ph, pos = pu[first], ph[first], pos[first]
    stored = A["category_hash"][pu]  # pairs x slots
    match = stored == ph[:, None]
    known = match.any(1)
    if known.any():
        np.add.at(A["category_count"], (pu[known], match[known].argmax(1)), n[known])
    new = np.flatnonzero(~known)
    if len(new):
        new = new[np.lexsort((pos[new], pu[new]))]  # by user, then first arrival
        nu = pu[new]
        slots = (A["category_hash"] != 0).sum(1)[nu] + _ranks(nu)
        ok = slots < CATEGORY_SLOTS
        A["category_hash"][nu[ok], slots[ok]] = ph[new][ok]
        A["category_count"][nu[ok], slots[ok]] = n[new][ok]


# ------------------------------------------------------------------- evaluation


class AsOfBeforeLastEvent(ValueError):
    """``as_of`` is earlier than a record's newest folded event."""


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)
    return out


def _distinct_content(A: np.ndarray) -> np.ndarray:
    kmv = A["kmv"]
    n = (kmv != KMV_EMPTY).sum(1).astype(np.float64)
    sat = A["kmv_saturated"].astype(bool)
    if sat.any():  # (k - 1) / (k-th smallest hash as a share of the hash range)
        kth = kmv[sat, KMV_K - 1].astype(np.float64) + 1.0
        n[sat] = (KMV_K - 1) / (kth / 2.0**32)
    out: np.ndarray = n
    return out


def _entropy(counts: np.ndarray) -> np.ndarray:
    c = counts.astype(np.float64)
    t = c.sum(1)
    c_log = np.where(c > 0, c * np.log2(np.where(c > 0, c, 1.0)), 0.0).sum(1)
    return np.where(t > 0, np.log2(np.where(t > 0, t, 1.0)) - _safe_div(c_log, t), 0.0)


#: E[x²] - E[x]² below this share of E[x]² is rounding, not spread: the decayed sums of a
#: fold in pieces and of one fold differ in their last bits, which the subtraction would
#: turn into a variance of 2^28 s² for identical dwells of ~10^12 s.
VARIANCE_RESOLUTION = 1e-12


def _variance(mean_sq: np.ndarray, mean: np.ndarray) -> np.ndarray:
    var = mean_sq - mean**2
    out: np.ndarray = np.where(var > VARIANCE_RESOLUTION * mean**2, var, 0.0)
    return out


def static_features(A: np.ndarray) -> np.ndarray:
    """The features that do not change with as_of (``STATIC_FEATURES`` order)."""
    L = A["long"]
    events_l = L[:, 0]
    sessions = A["sessions"].astype(np.float64)
    session_ms = A["closed_session_ms"] + (A["cur_end_ms"] - A["cur_start_ms"])
    dwell_mean = _safe_div(L[:, _L["dwell_sum"]], L[:, _L["dwell_n"]])
    formulas: dict[str, np.ndarray] = {
        "lifetime_sessions": sessions,
        "lifetime_orders": A["orders"].astype(np.float64),
        "lifetime_spend": A["spend"],
        "avg_order_value": _safe_div(A["spend"], A["orders"].astype(np.float64)),
        "events_per_session": _safe_div(A["events"].astype(np.float64), sessions),
        "session_duration": _safe_div(session_ms / 1000.0, sessions),
        "dwell_mean": dwell_mean,
        "dwell_variance": _variance(_safe_div(L[:, _L["dwell_sq"]], L[:, _L["dwell_n"]]),
                                    dwell_mean),
        "path_complexity": _entropy(A["transitions"]),
        "adoption_breadth": np.bitwise_count(A["type_mask"]) / float(len(KNOWN_EVENT_TYPES)),
        "content_breadth": _distinct_content(A),
        "search_ratio": _safe_div(L[:, _L["search"]], events_l),
        "cart_ratio": _safe_div(L[:, _L["cart"]], events_l),
        "purchase_ratio": _safe_div(L[:, _L["orders"]], events_l),
        "prime_time_share": _safe_div(L[:, _L["prime"]], events_l),
        "mobile_share": _safe_div(L[:, _L["mobile"]], events_l),
        "top_category_share": _safe_div(A["category_count"].max(1).astype(np.float64),
                                        A["categorised"]),
    }
    _check_formulas(formulas, STATIC_FEATURES)
    return np.column_stack([formulas[name] for name in STATIC_FEATURES])


_LN2 = math.log(2.0)


def _as_of_features(A: np.ndarray, as_of: np.ndarray, params: FeatureParams
                    ) -> dict[str, np.ndarray]:
    """The features that are functions of as_of: recency, tenure, decayed rates."""
    last = A["last_ms"]
    age_ms = (as_of - last).astype(np.float64)
    hs, hl = params.half_life_short_days, params.half_life_long_days
    # a steady r per day over T days sums to r * h / ln 2 * (1 - 2^(-T/h)): report r
    warm_days = np.maximum((as_of - A["first_ms"]) / DAY_MS, RATE_WARMUP_FLOOR_DAYS)
    ws, wl = -np.expm1(-warm_days * (_LN2 / hs)), -np.expm1(-warm_days * (_LN2 / hl))
    S = A["short"][:, :4] * (np.exp2(-age_ms / (hs * DAY_MS)) * (_LN2 / hs) / ws)[:, None]
    L = A["long"][:, :4] * (np.exp2(-age_ms / (hl * DAY_MS)) * (_LN2 / hl) / wl)[:, None]
    # trend: tanh(log(short rate / long rate) / 2) = (s - l) / (s + l), in log space so
    # that it keeps falling towards -1 after both rates underflow
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = (np.log(A["short"][:, 0] / (hs * ws)) - np.log(A["long"][:, 0] / (hl * wl))
                     - age_ms * (_LN2 * (1 / hs - 1 / hl) / DAY_MS))
    trend = np.where(np.isfinite(log_ratio), np.tanh(log_ratio / 2.0),
                     np.where(A["long"][:, 0] > 0, -1.0, 0.0))
    days_back = as_of // DAY_MS - last // DAY_MS  # days from the newest active day
    width = np.clip(ACTIVE_DAYS_WINDOW - days_back, 0, DAY_BITS - 1).astype(np.uint64)
    mask = np.left_shift(np.uint64(1), width) - np.uint64(1)
    p_days = (as_of - A["last_purchase_ms"]) / DAY_MS
    formulas = {
        "recency_days": age_ms / DAY_MS,
        "has_purchased": (A["last_purchase_ms"] >= 0).astype(np.float64),
        "purchase_recency_days": p_days,
        "tenure_days": (as_of - A["first_ms"]) / DAY_MS,
        "session_rate_short": S[:, 1], "session_rate_long": L[:, 1],
        "order_rate_short": S[:, 2], "order_rate_long": L[:, 2],
        "spend_rate_short": S[:, 3], "spend_rate_long": L[:, 3],
        "engagement_trend": trend,
        "active_days": np.bitwise_count(A["day_bits"] & mask).astype(np.float64),
    }
    _check_formulas(formulas, AS_OF_FEATURES)
    return formulas


def _check_formulas(formulas: Mapping[str, np.ndarray], names: tuple[str, ...]) -> None:
    if set(formulas) != set(names):
        raise ValueError(
            f"feature formulas {sorted(formulas)} do not match spec {FEATURE_SPEC.version} "
            f"{sorted(names)}: update segstream/core/aggregates.py and docs/features.md")


_STATIC_COLS = np.array([FEATURE_SPEC.index(n) for n in STATIC_FEATURES], dtype=np.int64)


def evaluate(aggs: np.ndarray, as_of_ms: int | np.ndarray, params: FeatureParams
             ) -> np.ndarray:
    """Features of each record as of ``as_of_ms`` (one time, or one per record): an
    ``(n, len(FEATURE_SPEC))`` float64 matrix in spec order.

    ``as_of`` earlier than a record's newest event is refused
    (:class:`AsOfBeforeLastEvent`): the record already holds later events.
    """
    A = np.atleast_1d(aggs)
    n = len(A)
    as_of = np.broadcast_to(np.asarray(as_of_ms, dtype=np.int64), (n,))
    early = as_of < A["last_ms"]
    if early.any():
        i = int(np.argmax(early))
        raise AsOfBeforeLastEvent(
            f"as_of {int(as_of[i])} ms is before the user's newest folded event "
            f"{int(A['last_ms'][i])} ms; features before that come from a snapshot of the "
            "history, not from the current record")
    out = np.empty((n, len(FEATURE_SPEC)), dtype=np.float64)
    out[:, _STATIC_COLS] = A["static"]
    for name, values in _as_of_features(A, as_of, params).items():
        out[:, FEATURE_SPEC.index(name)] = values
    for col, flag in _NULLABLE:  # no purchase: no days since it, no order value
        out[out[:, flag] == 0.0, col] = np.nan
    return out


_AS_OF_COLS = np.array([FEATURE_SPEC.index(n) for n in AS_OF_FEATURES], dtype=np.int64)


def evaluate_one(agg: np.void, as_of_ms: int, params: FeatureParams) -> np.ndarray:
    """:func:`evaluate` of one record, in plain Python arithmetic.

    The API's hot path: numpy's per-call overhead makes :func:`evaluate` cost ~100 µs
    for one row, this ~10 µs (docs/benchmarks.md). Same formulas as
    ``_as_of_features``; a test checks that both agree on random records.
    """
    last = int(agg["last_ms"])
    if as_of_ms < last:
        raise AsOfBeforeLastEvent(
            f"as_of {as_of_ms} ms is before the user's newest folded event {last} ms; "
            "features before that come from a snapshot of the history, not from the "
            "current record")
    age = float(as_of_ms - last)
    hs, hl = params.half_life_short_days, params.half_life_long_days
    short, long = agg["short"].tolist(), agg["long"].tolist()
    warm_days = max((as_of_ms - int(agg["first_ms"])) / DAY_MS, RATE_WARMUP_FLOOR_DAYS)
    ws, wl = -math.expm1(-warm_days * (_LN2 / hs)), -math.expm1(-warm_days * (_LN2 / hl))
    ds = 2.0 ** (-age / (hs * DAY_MS)) * (_LN2 / hs) / ws
    dl = 2.0 ** (-age / (hl * DAY_MS)) * (_LN2 / hl) / wl
    if short[0] > 0 and long[0] > 0:
        log_ratio = (math.log(short[0] / (hs * ws)) - math.log(long[0] / (hl * wl))
                     - age * (_LN2 * (1 / hs - 1 / hl) / DAY_MS))
        trend = math.tanh(log_ratio / 2.0)
    else:
        trend = -1.0 if long[0] > 0 else 0.0
    width = min(max(ACTIVE_DAYS_WINDOW - (as_of_ms // DAY_MS - last // DAY_MS), 0),
                DAY_BITS - 1)
    lp = int(agg["last_purchase_ms"])
    values = {
        "recency_days": age / DAY_MS,
        "has_purchased": float(lp >= 0),
        "purchase_recency_days": (as_of_ms - lp) / DAY_MS,
        "tenure_days": (as_of_ms - int(agg["first_ms"])) / DAY_MS,
        "session_rate_short": short[1] * ds, "session_rate_long": long[1] * dl,
        "order_rate_short": short[2] * ds, "order_rate_long": long[2] * dl,
        "spend_rate_short": short[3] * ds, "spend_rate_long": long[3] * dl,
        "engagement_trend": trend,
        "active_days": float((int(agg["day_bits"]) & ((1 << width) - 1)).bit_count()),
    }
    out = np.empty(len(FEATURE_SPEC), dtype=np.float64)
    out[_STATIC_COLS] = agg["static"]
    out[_AS_OF_COLS] = [values[name] for name in AS_OF_FEATURES]
    for col, flag in _NULLABLE:
        if out[flag] == 0.0:
            out[col] = math.nan
    return out


# ------------------------------------------------------------------ encoding

RECORD_VERSION = 2
#: A stored record: layout version, params fingerprint, the packed fields (no padding).
RECORD_DTYPE = np.dtype([("version", "u1"), ("fingerprint", "<u4"), ("agg", AGG_DTYPE)])
RECORD_BYTES = RECORD_DTYPE.itemsize


class RecordMismatch(ValueError):
    """A stored record has another layout version or other feature params."""


def encode(aggs: np.ndarray, params: FeatureParams) -> list[bytes]:
    """Each record as compact bytes: version, params fingerprint, the packed fields."""
    recs = np.zeros(len(np.atleast_1d(aggs)), dtype=RECORD_DTYPE)
    recs["version"], recs["fingerprint"], recs["agg"] = (
        RECORD_VERSION, params.fingerprint, aggs)
    raw = recs.tobytes()
    return [raw[i:i + RECORD_BYTES] for i in range(0, len(raw), RECORD_BYTES)]


def decode(blobs: Sequence[bytes], params: FeatureParams) -> np.ndarray:
    """Records from :func:`encode`'s bytes; refuses another version or other params."""
    sizes = {len(b) for b in blobs}
    if sizes - {RECORD_BYTES}:
        raise RecordMismatch(f"an aggregate record has {sorted(sizes - {RECORD_BYTES})[0]} "
                             f"bytes, layout v{RECORD_VERSION} has {RECORD_BYTES}; recompute "
                             "the features with this version")
    recs = np.frombuffer(b"".join(blobs), dtype=RECORD_DTYPE)
    want = params.fingerprint
    bad = (recs["version"] != RECORD_VERSION) | (recs["fingerprint"] != want)
    if bad.any():
        i = int(np.argmax(bad))
        raise RecordMismatch(
            f"an aggregate record has layout v{int(recs['version'][i])}, params "
            f"{int(recs['fingerprint'][i]):08x}; this process uses v{RECORD_VERSION}, "
            f"{want:08x} (feature half-lives, session gap, vocabulary): use the streaming "
            "job's settings or recompute the features")
    return recs["agg"].copy()


def decode_each(blobs: Sequence[bytes], params: FeatureParams
                ) -> tuple[list[int], np.ndarray, list[tuple[int, RecordMismatch]]]:
    """:func:`decode`, record by record where needed: (positions of the decodable
    records, their aggregates, (position, error) of the others). One vectorised call
    when all decode; a reader that must not stop on one stray record uses this and
    reports the rest.

    >>> p = FeatureParams()
    >>> ok, aggs, bad = decode_each([encode(empty(1), p)[0], b"junk"], p)
    >>> ok, len(aggs), [(i, type(e).__name__) for i, e in bad]
    ([0], 1, [(1, 'RecordMismatch')])
    """
    try:
        return list(range(len(blobs))), decode(blobs, params), []
    except RecordMismatch:
        pass
    ok: list[int] = []
    parts: list[np.ndarray] = []
    bad: list[tuple[int, RecordMismatch]] = []
    for i, blob in enumerate(blobs):
        try:
            parts.append(decode([blob], params))
            ok.append(i)
        except RecordMismatch as exc:
            bad.append((i, exc))
    return ok, (np.concatenate(parts) if parts else empty(0)), bad


def decode_lenient(users: Sequence[str], blobs: Sequence[bytes | None], params: FeatureParams,
                   *, source: str, on_skip: Callable[[], None] | None = None,
                   require_one: bool = False) -> tuple[list[int], np.ndarray]:
    """(positions of the decodable records, their aggregates), vectorised, for a reader
    that must not stop on one stray record. Absent records (``None``) are dropped;
    records of other params or layout are skipped with a warning naming the user and
    ``source`` (and ``on_skip`` called, e.g. to count them), so a systematic mismatch
    shows in the log while one stray passes. With ``require_one`` (a whole source read
    at once), none decoding is a setting, not a stray: the first error is raised,
    naming ``source``.

    >>> p = FeatureParams()
    >>> decode_lenient(["a", "b", "c"], [encode(empty(1), p)[0], None, b"junk"], p,
    ...                source="test")[0]
    [0]
    """
    keep = [i for i, b in enumerate(blobs) if b is not None]
    ok, aggs, bad = decode_each([blobs[i] for i in keep], params)  # type: ignore[misc]
    if bad and not ok and require_one:
        raise RecordMismatch(f"a record on {source}: {bad[0][1]}")
    for j, exc in bad:
        if on_skip is not None:
            on_skip()
        _log.warning("skipped the record of user %r on %s: %s", users[keep[j]], source, exc)
    return [keep[j] for j in ok], aggs
