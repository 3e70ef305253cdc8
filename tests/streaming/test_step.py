"""The per-group step without Spark (streaming/step.py): split invariance through the
checkpoint's encode/decode, a hand-checked user at two as-of times, bounded dedupe
state, state bytes per user, idle expiry.

Split invariance is what makes stream == batch: the stream calls ``advance`` once per
touched group per micro-batch, the batch command once per group over the whole log.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.core.aggregates import AGG_DTYPE, FeatureParams
from segstream.core.contract import FEATURE_SPEC
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.step import EVENT_COLUMNS, GroupState, advance, features_frame, valid_frame
from tests.support.streaming import assert_same_records

WATERMARK_MS = 600_000
PARAMS = FeatureParams()
DAY = 86_400_000
MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z, a UTC midnight


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    log = generate(GeneratorConfig(users=12, events=1500, seed=4, duplicate_rate=0.04,
                                   late_rate=0.04, malformed_rate=0.02))
    return valid_frame(log.values)


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Records with every validated column (absent optional fields are null)."""
    out = pd.DataFrame([{"partition": 0, "offset": i, **r} for i, r in enumerate(rows)])
    return out.reindex(columns=[*EVENT_COLUMNS, "partition", "offset"])


def run_in_pieces(records: pd.DataFrame, cuts: list[int], **kw: Any
                  ) -> tuple[GroupState, dict[str, np.void], list[int], int]:
    """Advance one group through the pieces, through encode/decode in between as the
    checkpoint does; the state, the last record emitted per user, late offsets, dups."""
    state, emitted, late, dups = GroupState.empty(), {}, [], 0
    for lo, hi in itertools.pairwise([0, *sorted(set(cuts)), len(records)]):
        if hi <= lo:
            continue
        state = GroupState.decode(state.encode())
        step = advance(state, records.iloc[lo:hi], watermark_ms=WATERMARK_MS, params=PARAMS,
                       **kw)
        emitted.update(zip(step.users, step.aggs, strict=True))
        late += step.late["offset"].tolist()
        dups += step.duplicates
    return state, emitted, late, dups


def by_user(state: GroupState) -> np.ndarray:
    return state.aggs[np.argsort(np.asarray(state.users, dtype=str), kind="stable")]


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 1600), max_size=10))
def test_any_split_into_micro_batches_ends_in_the_one_call_aggregates(
        records: pd.DataFrame, cuts: list[int]) -> None:
    whole, whole_emitted, whole_late, whole_dups = run_in_pieces(records, [])
    split, split_emitted, split_late, split_dups = run_in_pieces(records, cuts)
    assert whole_late and whole_dups  # the log has both, so the rules are exercised
    assert (split_late, split_dups) == (whole_late, whole_dups)
    assert sorted(split.users) == sorted(whole.users)
    assert_same_records(by_user(split), by_user(whole))
    # what the sinks saw last per user is the final record
    users = sorted(whole.users)
    assert_same_records(np.array([split_emitted[u] for u in users]),
                        np.array([whole_emitted[u] for u in users]))
    assert_same_records(np.array([split_emitted[u] for u in users]), by_user(whole))


@settings(max_examples=120, deadline=None)
@given(log=st.lists(st.tuples(st.sampled_from("uv"), st.sampled_from(["a", "b", "c"]),
                              st.integers(0, 60), st.sampled_from(["page_view", "purchase"])),
                    min_size=1, max_size=40),
       cuts=st.lists(st.integers(0, 40), max_size=6))
def test_any_split_of_any_log_decides_and_folds_as_one_call(
        log: list[tuple[str, str, int, str]], cuts: list[int]) -> None:
    """Ids reused within and beyond the horizon, records far behind (late): the stream
    keeps only the ids inside the horizon and still decides as one call does."""
    records = frame([{"user_id": u, "event_id": e, "ts": T0 + m * MIN, "event_type": typ,
                      "amount": 1.0} for u, e, m, typ in log])
    whole, _, whole_late, whole_dups = run_in_pieces(records, [])
    split, _, split_late, split_dups = run_in_pieces(records, cuts)
    assert (split_late, split_dups) == (whole_late, whole_dups)
    assert sorted(split.users) == sorted(whole.users)
    assert_same_records(by_user(split), by_user(whole))


def test_a_silent_user_ages_hand_computed_at_two_as_of_times() -> None:
    t = [T0 + 10 * 60 * MIN, T0 + 10 * 60 * MIN + 5 * MIN,  # day 0, 10:00 and 10:05
         T0 + 3 * DAY + 12 * 60 * MIN, T0 + 3 * DAY + 12 * 60 * MIN + 10 * MIN]  # day 3
    rows = [{"user_id": "a", "event_id": f"e{i}", "ts": ts, "event_type": typ,
             "amount": amount, "platform": "ios"}
            for i, (ts, typ, amount) in enumerate(zip(
                t, ["page_view", "purchase", "page_view", "purchase"],
                [None, 30.0, None, 10.0], strict=True))]
    state = GroupState.empty()
    advance(state, frame(rows), watermark_ms=WATERMARK_MS, params=PARAMS)
    sessions, orders, spend = [t[0], t[2]], [t[1], t[3]], [30.0, 10.0]

    def rate(h: float, times: list[int], weights: list[float] | None = None,
             as_of: int = 0) -> float:
        w = weights or [1.0] * len(times)
        warm = 1 - 2 ** (-max((as_of - t[0]) / DAY, 1.0) / h)  # history since the first event
        return math.log(2) / h / warm * sum(
            wi * 2 ** (-(as_of - ti) / (h * DAY)) for wi, ti in zip(w, times, strict=True))

    def expected(as_of: int, active_days: float) -> dict[str, float]:
        s, lo = rate(7, t, as_of=as_of), rate(30, t, as_of=as_of)
        return {
            "recency_days": (as_of - t[3]) / DAY, "purchase_recency_days": (as_of - t[3]) / DAY,
            "tenure_days": (as_of - t[0]) / DAY, "lifetime_sessions": 2.0,
            "lifetime_orders": 2.0, "lifetime_spend": 40.0, "avg_order_value": 20.0,
            "session_rate_short": rate(7, sessions, as_of=as_of),
            "session_rate_long": rate(30, sessions, as_of=as_of),
            "order_rate_short": rate(7, orders, as_of=as_of),
            "order_rate_long": rate(30, orders, as_of=as_of),
            "spend_rate_short": rate(7, orders, spend, as_of=as_of),
            "spend_rate_long": rate(30, orders, spend, as_of=as_of),
            "engagement_trend": (s - lo) / (s + lo),
            "events_per_session": 2.0, "session_duration": (5 + 10) * 60 / 2,
            "purchase_ratio": 0.5 * rate(30, orders, as_of=t[3]) / (0.5 * rate(30, t, as_of=t[3])),
            "mobile_share": 1.0, "adoption_breadth": 2 / 8, "active_days": active_days,
        }

    soon, later = T0 + 4 * DAY, T0 + 31 * DAY + 12 * 60 * MIN
    got = {as_of: features_frame(state, as_of, PARAMS).iloc[0] for as_of in (soon, later)}
    # day 31: the 30 days up to as_of are days 2..31, so day 0 no longer counts
    for as_of, active in ((soon, 2.0), (later, 1.0)):
        for name, value in expected(as_of, active).items():
            assert got[as_of][name] == pytest.approx(value, rel=1e-12), (as_of, name)
        assert got[as_of]["as_of_ms"] == as_of and got[as_of]["last_event_ms"] == t[3]
    a, b = got[soon], got[later]
    assert b["recency_days"] - a["recency_days"] == pytest.approx((later - soon) / DAY)
    for name in ("session_rate_short", "session_rate_long", "order_rate_short",
                 "spend_rate_long", "engagement_trend", "active_days"):
        assert b[name] < a[name], name
    for name in (f.name for f in FEATURE_SPEC.features if f.time != "as_of"):
        assert b[name] == a[name], name  # lifetime and decayed shares do not age


def test_dedupe_state_holds_only_ids_inside_the_watermark_horizon() -> None:
    # one event every 4 minutes for 2 hours: the horizon (10 min) holds the last 3
    rows = [{"user_id": "u", "event_id": f"e{i}", "ts": T0 + 4 * MIN * i,
             "event_type": "page_view"} for i in range(31)]
    state = GroupState.empty()
    advance(state, frame(rows), watermark_ms=WATERMARK_MS, params=PARAMS)
    newest = T0 + 4 * MIN * 30
    assert state.recent["event_id"].tolist() == ["e28", "e29", "e30"]
    assert (state.recent["ts"] >= newest - WATERMARK_MS).all()
    # a resent id inside the horizon is a duplicate; one behind it is late, so the
    # forgotten ids were never needed
    step = advance(state, frame([{**rows[29], "offset": 40}, {**rows[5], "offset": 41}]),
                   watermark_ms=WATERMARK_MS, params=PARAMS)
    assert step.duplicates == 1 and step.late["event_id"].tolist() == ["e5"]
    assert len(step.users) == 0 and int(state.aggs["events"][0]) == 31


def state_bytes_per_user(days: float, users: int = 200, seed: int = 3) -> float:
    log = generate(GeneratorConfig(users=users, events=users * 100, seed=seed, days=days))
    state = GroupState.empty()
    advance(state, valid_frame(log.values), watermark_ms=WATERMARK_MS, params=PARAMS)
    return len(state.encode()) / len(state.users)


def test_state_bytes_per_user_do_not_grow_with_history() -> None:
    one, sixty = state_bytes_per_user(1.0), state_bytes_per_user(60.0)
    print(f"\nstate bytes per user (100 events/user): 1 day of history {one:.0f}, "
          f"60 days {sixty:.0f}; aggregate record {AGG_DTYPE.itemsize}")
    # the record has a fixed size; only the ids inside the horizon and the pickled
    # index vary, with the users' recent activity, not with the length of the history
    assert AGG_DTYPE.itemsize < min(one, sixty) and max(one, sixty) < 1.5 * AGG_DTYPE.itemsize
    assert abs(sixty - one) < 0.1 * one


def test_idle_users_expire_but_their_last_events_are_emitted() -> None:
    expiry = 7 * DAY
    state = GroupState.empty()
    advance(state, frame([
        {"user_id": "idle", "event_id": "i0", "ts": T0, "event_type": "page_view"},
        {"user_id": "busy", "event_id": "b0", "ts": T0, "event_type": "page_view"}]),
        watermark_ms=WATERMARK_MS, params=PARAMS, expiry_ms=expiry)
    step = advance(state, frame([
        {"user_id": "busy", "event_id": "b1", "ts": T0 + 8 * DAY, "event_type": "page_view"}]),
        watermark_ms=WATERMARK_MS, params=PARAMS, expiry_ms=expiry)
    assert step.expired == 1 and list(state.users) == ["busy"]
    assert set(state.newest.index) == {"busy"} and set(state.recent["user_id"]) == {"busy"}
    # a touched user that expires in the same step still reaches the sinks
    step = advance(state, frame([
        {"user_id": "busy", "event_id": "b2", "ts": T0 + 8 * DAY + MIN, "event_type": "x"},
        {"user_id": "new", "event_id": "n0", "ts": T0 + 20 * DAY, "event_type": "x"}]),
        watermark_ms=WATERMARK_MS, params=PARAMS, expiry_ms=expiry)
    assert step.expired == 1 and sorted(step.users) == ["busy", "new"]
    assert dict(zip(step.users, step.aggs["events"].tolist(), strict=True)) == {
        "busy": 3, "new": 1}
    assert list(state.users) == ["new"]
    # an expired user who comes back starts from an empty record
    step = advance(state, frame([
        {"user_id": "idle", "event_id": "i1", "ts": T0 + 21 * DAY, "event_type": "x"}]),
        watermark_ms=WATERMARK_MS, params=PARAMS, expiry_ms=expiry)
    assert list(step.users) == ["idle"] and int(step.aggs["events"][0]) == 1
    assert int(step.aggs["first_ms"][0]) == T0 + 21 * DAY
