"""The aggregate fold and the as-of evaluation against a plain per-event reference.

The reference below is written from docs/features.md, event by event in Python, with
the decayed sums computed directly at as_of (sum of w * 2^(-(as_of - ts) / h)), not
re-anchored as the fold does. The fold must agree with it, must give the same records
for any split of a log, and the one-record fast path must equal the vectorised one.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.core.aggregates import (
    AGG_DTYPE,
    RECORD_DTYPE,
    RECORD_VERSION,
    AsOfBeforeLastEvent,
    FeatureParams,
    RecordMismatch,
    Vocabulary,
    decode,
    empty,
    encode,
    evaluate,
    evaluate_one,
    fold,
)
from segstream.core.contract import FEATURE_SPEC, KNOWN_EVENT_TYPES
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.step import valid_frame

DAY = 86_400_000
PARAMS = FeatureParams()
COLUMNS = ["ts", "event_type", "session_id", "content_id", "category", "dwell_ms",
           "amount", "platform"]



def _var(mean_sq: float, mean: float) -> float:
    """E[x²] - E[x]², rounding below 1e-12 of E[x]² taken as 0 (aggregates.VARIANCE_RESOLUTION)."""
    v = mean_sq - mean**2
    return v if v > 1e-12 * mean**2 else 0.0

def reference(events: list[dict[str, Any]], as_of: int, p: FeatureParams) -> dict[str, float]:
    """One user's features at ``as_of`` from their events in arrival order."""
    codes = p.vocabulary.type_codes()
    mobile = {m.lower() for m in p.vocabulary.mobile_platforms}
    sessions: list[list[int]] = []
    newest, prev_sid, prev_type = None, None, None
    pairs: Counter[tuple[int, int]] = Counter()
    session_starts, types_seen, contents, days = [], set(), set(), set()
    cats: dict[str, int] = {}
    categorised = 0
    for e in events:
        t = int(e["ts"])
        typ = codes.get(str(e["event_type"]).strip().lower(), len(KNOWN_EVENT_TYPES))
        sid = e.get("session_id")
        new = (newest is None or sid != prev_sid
               or (sid is None and t - newest > p.session_gap_minutes * 60_000))
        if new:
            sessions.append([t, t])
            session_starts.append(t)
        else:
            sessions[-1] = [min(sessions[-1][0], t), max(sessions[-1][1], t)]
            pairs[(prev_type, typ)] += 1  # type: ignore[index]
        newest = t if newest is None else max(newest, t)
        prev_sid, prev_type = sid, typ
        if typ < len(KNOWN_EVENT_TYPES):
            types_seen.add(typ)
        if e.get("content_id") is not None:
            contents.add(e["content_id"])
        days.add(t // DAY)
        if e.get("category") is not None:
            categorised += 1
            if e["category"] in cats or len(cats) < 8:
                cats[e["category"]] = cats.get(e["category"], 0) + 1

    def decayed(h: float, value: Any) -> float:
        return sum(value(e) * 2.0 ** (-(as_of - int(e["ts"])) / (h * DAY)) for e in events)

    def kind(name: str) -> Any:
        return lambda e: float(codes.get(str(e["event_type"]).strip().lower()) ==
                               KNOWN_EVENT_TYPES.index(name))

    def spend(e: dict[str, Any]) -> float:
        return kind("purchase")(e) * (e.get("amount") or 0.0)

    def dwell(power: int) -> Any:
        return lambda e: 0.0 if e.get("dwell_ms") is None else (e["dwell_ms"] / 1000) ** power

    hs, hl = p.half_life_short_days, p.half_life_long_days
    sessions_decayed = {h: sum(2.0 ** (-(as_of - s) / (h * DAY)) for s in session_starts)
                        for h in (hs, hl)}
    ln2 = math.log(2)
    # a rate: the decayed sum over what T days of history can have built up (T >= 1 day)
    warm = max((as_of - min(int(e["ts"]) for e in events)) / DAY, 1.0)
    per = {h: ln2 / h / (1 - 2.0 ** (-warm / h)) for h in (hs, hl)}
    ev_s, ev_l = decayed(hs, lambda e: 1.0) * per[hs], decayed(hl, lambda e: 1.0) * per[hl]
    dn = decayed(hl, lambda e: float(e.get("dwell_ms") is not None))
    dmean = decayed(hl, dwell(1)) / dn if dn else 0.0
    purchases = [int(e["ts"]) for e in events if kind("purchase")(e)]
    total_pairs = sum(pairs.values())
    hour_prime = lambda e: float(18 <= (int(e["ts"]) % DAY) // 3_600_000 <= 22)  # noqa: E731
    n_orders = len(purchases)
    lifetime_spend = sum(spend(e) for e in events)
    return {
        "recency_days": (as_of - max(int(e["ts"]) for e in events)) / DAY,
        "has_purchased": float(bool(purchases)),
        "purchase_recency_days": (as_of - max(purchases)) / DAY if purchases else math.nan,
        "tenure_days": (as_of - min(int(e["ts"]) for e in events)) / DAY,
        "lifetime_sessions": len(sessions),
        "lifetime_orders": n_orders,
        "lifetime_spend": lifetime_spend,
        "avg_order_value": lifetime_spend / n_orders if n_orders else math.nan,
        "session_rate_short": sessions_decayed[hs] * per[hs],
        "session_rate_long": sessions_decayed[hl] * per[hl],
        "order_rate_short": decayed(hs, kind("purchase")) * per[hs],
        "order_rate_long": decayed(hl, kind("purchase")) * per[hl],
        "spend_rate_short": decayed(hs, spend) * per[hs],
        "spend_rate_long": decayed(hl, spend) * per[hl],
        "engagement_trend": (ev_s - ev_l) / (ev_s + ev_l),
        "events_per_session": len(events) / len(sessions),
        "session_duration": sum(b - a for a, b in sessions) / 1000 / len(sessions),
        "dwell_mean": dmean,
        "dwell_variance": _var(decayed(hl, dwell(2)) / dn, dmean) if dn else 0.0,
        "path_complexity": -sum(c / total_pairs * math.log2(c / total_pairs)
                                for c in pairs.values()) if total_pairs else 0.0,
        "adoption_breadth": len(types_seen) / len(KNOWN_EVENT_TYPES),
        "content_breadth": float(len(contents)),
        "search_ratio": decayed(hl, kind("search")) / decayed(hl, lambda e: 1.0),
        "cart_ratio": decayed(hl, kind("add_to_cart")) / decayed(hl, lambda e: 1.0),
        "purchase_ratio": decayed(hl, kind("purchase")) / decayed(hl, lambda e: 1.0),
        "prime_time_share": decayed(hl, hour_prime) / decayed(hl, lambda e: 1.0),
        "mobile_share": decayed(hl, lambda e: float(str(e.get("platform")).lower() in mobile))
        / decayed(hl, lambda e: 1.0),
        "top_category_share": max(cats.values()) / categorised if categorised else 0.0,
        "active_days": float(sum(as_of // DAY - 30 < d <= as_of // DAY for d in days)),
    }


def fold_log(frame: pd.DataFrame, p: FeatureParams = PARAMS) -> tuple[np.ndarray, list[str]]:
    users = sorted(frame["user_id"].unique())
    rows = pd.Index(users).get_indexer(frame["user_id"])
    aggs = empty(len(users))
    fold(aggs, rows, frame, p)
    return aggs, users


def assert_close(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-9) -> None:
    np.testing.assert_allclose(actual, expected, rtol=rel, atol=1e-12)


@pytest.fixture(scope="module")
def log_frame() -> pd.DataFrame:
    # late records arrive out of event-time order: the fold must not depend on it
    log = generate(GeneratorConfig(users=25, events=1200, seed=8, late_rate=0.03))
    return valid_frame(log.values)


@pytest.mark.parametrize("days_after", [0, 3, 45])
def test_fold_and_evaluate_equal_the_per_event_reference(log_frame: pd.DataFrame,
                                                         days_after: int) -> None:
    aggs, users = fold_log(log_frame)
    as_of = int(log_frame["ts"].max()) + days_after * DAY
    got = evaluate(aggs, as_of, PARAMS)
    for i, user in enumerate(users):
        events = log_frame[log_frame["user_id"] == user][COLUMNS].to_dict("records")
        events = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in e.items()} for e in events]
        ref = reference(events, as_of, PARAMS)
        if ref["content_breadth"] >= 32:  # the sketch estimates past 32 (tested below)
            ref["content_breadth"] = got[i, FEATURE_SPEC.index("content_breadth")]
        assert_close(got[i], np.array([ref[n] for n in FEATURE_SPEC.names]))


def test_a_silent_user_ages_recency_grows_rates_and_trend_fall(log_frame: pd.DataFrame) -> None:
    aggs, _ = fold_log(log_frame)
    end = int(log_frame["ts"].max())
    f = [evaluate(aggs[:1], end + d * DAY, PARAMS)[0] for d in (0, 10, 100, 2000)]
    col = FEATURE_SPEC.index
    for a, b in itertools.pairwise(f):
        assert b[col("recency_days")] > a[col("recency_days")]
        assert b[col("session_rate_short")] < a[col("session_rate_short")]
        assert b[col("engagement_trend")] < a[col("engagement_trend")]
        assert b[col("lifetime_sessions")] == a[col("lifetime_sessions")]  # lifetime stays
    assert f[-1][col("engagement_trend")] == pytest.approx(-1.0)  # past underflow of both
    assert f[-1][col("active_days")] == 0.0


@pytest.mark.parametrize("days", [1, 3, 10])
def test_a_steady_new_user_has_its_rate_and_no_trend(days: int) -> None:
    """A user with one session every 6 hours since it arrived has a rate of 4 a day, as
    soon as it has 1 day of history: the decayed sums are divided by what that history
    can have built up. Undivided, a 3-day-old user's rates read 1.0 (short) and 0.27
    (long) a day and its trend +0.58, as if it were speeding up (spec v2)."""
    t0 = 1_780_000_000_000
    times = [t0 + i * DAY // 4 for i in range(days * 4)]
    log = [orjson.dumps({"user_id": "u", "ts": t, "event_type": "page_view",
                         "event_id": f"e{i}", "session_id": f"s{i}"}) for i, t in enumerate(times)]
    aggs, _ = fold_log(valid_frame(log))
    got = evaluate(aggs, times[-1] + DAY // 4, PARAMS)[0]
    col = FEATURE_SPEC.index
    assert got[col("session_rate_short")] == pytest.approx(4.0, rel=0.1)
    assert got[col("session_rate_long")] == pytest.approx(4.0, rel=0.1)
    assert abs(got[col("engagement_trend")]) < 0.05


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, 1200), max_size=6))
def test_any_split_of_a_log_folds_to_the_same_records(log_frame: pd.DataFrame,
                                                      cuts: list[int]) -> None:
    whole, users = fold_log(log_frame)
    rows = pd.Index(users).get_indexer(log_frame["user_id"])
    pieces = empty(len(users))
    bounds = [0, *sorted(set(cuts)), len(log_frame)]
    for lo, hi in itertools.pairwise(bounds):
        fold(pieces, rows[lo:hi], log_frame.iloc[lo:hi], PARAMS)
        pieces = decode(encode(pieces, PARAMS), PARAMS)  # as a checkpoint hands it back
    for name in AGG_DTYPE.names or ():
        if whole[name].dtype.kind == "f":
            assert_close(pieces[name], whole[name])
        else:
            np.testing.assert_array_equal(pieces[name], whole[name], err_msg=name)


@settings(max_examples=60, deadline=None)
@given(days_after=st.floats(0, 5000), user=st.integers(0, 24))
def test_the_one_record_path_equals_the_vectorised_one(log_frame: pd.DataFrame,
                                                        days_after: float, user: int) -> None:
    aggs, _ = fold_log(log_frame)
    user %= len(aggs)
    as_of = int(log_frame["ts"].max() + days_after * DAY)
    assert_close(evaluate_one(aggs[user], as_of, PARAMS), evaluate(aggs[user:user + 1],
                                                                   as_of, PARAMS)[0], 1e-12)


def content_breadth(ids: list[str]) -> float:
    ev = pd.DataFrame({"ts": np.arange(len(ids)) * 1000, "event_type": "play",
                       "session_id": None, "content_id": ids, "category": None,
                       "dwell_ms": None, "amount": None, "platform": None})
    aggs = empty(1)
    fold(aggs, np.zeros(len(ids), dtype=np.int64), ev, PARAMS)
    return float(evaluate(aggs, len(ids) * 1000, PARAMS)[0, FEATURE_SPEC.index(
        "content_breadth")])


def test_content_sketch_is_exact_to_32_then_an_unbiased_estimate() -> None:
    assert content_breadth([f"c{i % 20}" for i in range(300)]) == 20
    assert content_breadth([f"c{i}" for i in range(32)]) == 32
    # KMV with k = 32: relative standard error ~ 1 / sqrt(30), no bias
    errors = np.array([content_breadth([f"s{s}-{i}" for i in range(2000)]) / 2000 - 1
                       for s in range(30)])
    assert abs(errors.mean()) < 0.1
    assert 0.1 < errors.std() < 0.3


def test_vocabulary_maps_a_logs_own_names() -> None:
    ev = pd.DataFrame({"ts": [0, 1000, 2000], "event_type": ["View", "cart_add", "order"],
                       "session_id": None, "content_id": None, "category": None,
                       "dwell_ms": None, "amount": [None, None, 5.0],
                       "platform": ["mobile", "tablet", "web"]})
    aggs = empty(1)
    fold(aggs, np.zeros(3, dtype=np.int64), ev, PARAMS)
    f = dict(zip(FEATURE_SPEC.names, evaluate(aggs, 2000, PARAMS)[0], strict=True))
    assert f["lifetime_orders"] == 1 and f["lifetime_spend"] == 5.0
    assert f["adoption_breadth"] == 3 / len(KNOWN_EVENT_TYPES)
    assert f["mobile_share"] == pytest.approx(2 / 3)
    other = FeatureParams(vocabulary=Vocabulary(event_types={}, mobile_platforms=("ios",)))
    aggs = empty(1)
    fold(aggs, np.zeros(3, dtype=np.int64), ev, other)
    g = dict(zip(FEATURE_SPEC.names, evaluate(aggs, 2000, other)[0], strict=True))
    assert g["lifetime_orders"] == 0 and g["mobile_share"] == 0.0 and g["adoption_breadth"] == 0


def test_as_of_before_the_newest_event_and_foreign_records_are_refused(
        log_frame: pd.DataFrame) -> None:
    aggs, _ = fold_log(log_frame)
    with pytest.raises(AsOfBeforeLastEvent, match="before the user's newest folded event"):
        evaluate(aggs, int(aggs["last_ms"].min()) - 1, PARAMS)
    with pytest.raises(AsOfBeforeLastEvent):
        evaluate_one(aggs[0], int(aggs["last_ms"][0]) - 1, PARAMS)
    blobs = encode(aggs, PARAMS)
    with pytest.raises(RecordMismatch, match="half-lives"):
        decode(blobs, FeatureParams(half_life_short_days=3.0))
    with pytest.raises(RecordMismatch, match="bytes"):
        decode([blobs[0][:-1]], PARAMS)


@pytest.mark.parametrize("cuts", [[], [5], [3, 11, 12]])
def test_categories_past_the_eight_slots_count_only_in_the_total(cuts: list[int]) -> None:
    # c0..c9 first arrive in that order; c9 (a 10th category) is the most frequent
    cats = [f"c{i}" for i in range(10)] + ["c9"] * 6 + ["c0"] * 2
    ev = pd.DataFrame({"ts": np.arange(len(cats)) * 1000, "event_type": "page_view",
                       "session_id": None, "content_id": None, "category": cats,
                       "dwell_ms": None, "amount": None, "platform": None})
    aggs = empty(1)
    bounds = [0, *cuts, len(ev)]
    for lo, hi in itertools.pairwise(bounds):
        fold(aggs, np.zeros(hi - lo, dtype=np.int64), ev.iloc[lo:hi], PARAMS)
    events = [{**e, "ts": int(e["ts"])} for e in ev[COLUMNS].to_dict("records")]
    expected = reference(events, len(cats) * 1000, PARAMS)["top_category_share"]
    got = evaluate(aggs, len(cats) * 1000, PARAMS)[0, FEATURE_SPEC.index("top_category_share")]
    assert got == pytest.approx(expected) == pytest.approx(3 / len(cats))  # c0: 3 of 18


def test_records_written_by_a_v2_stream_read_in_v3() -> None:
    """Spec v3 changed only the evaluation, so the records a v2 stream stored must still
    decode: otherwise an upgrade refuses every stored user until its next event. 6f2c73d9
    is the default params' fingerprint as the v2 code (commit 10997f1) computed it."""
    record = np.zeros(1, dtype=RECORD_DTYPE)
    record["version"], record["fingerprint"] = RECORD_VERSION, 0x6F2C73D9
    record["agg"] = empty(1)
    assert decode([record.tobytes()], FeatureParams()).shape == (1,)
