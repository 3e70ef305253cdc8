"""The per-group step without Spark: arrival rules, split invariance, feature isolation.

These are the properties that make stream == batch: whatever micro-batches a log is
split into, the step ends with the features of one call over the whole log, and a
user's features never depend on which other users share a call.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.events import Rejection, validate_event
from segstream.generator import GeneratorConfig, generate
from streaming.arrivals import classify
from streaming.features import EVENT_COLUMNS, user_features
from streaming.state import GroupState, advance

WATERMARK_MS = 600_000
PARAMS: dict[str, Any] = {"watermark_ms": WATERMARK_MS, "window_days": 30,
                          "session_gap_minutes": 30.0}


def valid_records(**cfg: Any) -> pd.DataFrame:
    """A generated log's valid records in log order, as the validator emits them."""
    log = generate(GeneratorConfig(**cfg))
    rows = []
    for offset, value in enumerate(log.values):
        ev = validate_event(value)
        if not isinstance(ev, Rejection):
            rows.append({**{c: ev[c] for c in EVENT_COLUMNS}, "value": value,
                         "partition": 0, "offset": offset})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return valid_records(users=12, events=1500, seed=4, duplicate_rate=0.04, late_rate=0.04)


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Records with every validated column (absent optional fields are null)."""
    return pd.DataFrame(rows).reindex(columns=[*EVENT_COLUMNS, "partition", "offset"])


def run_in_pieces(records: pd.DataFrame, cuts: list[int]) -> tuple[pd.DataFrame, list[int], int]:
    """Advance one group through the pieces; the last features emitted per user, the
    late offsets and the duplicate count, as the sinks would see them."""
    state, latest, late, dups = GroupState.empty(), {}, [], 0
    bounds = [0, *sorted(set(cuts)), len(records)]
    for lo, hi in itertools.pairwise(bounds):
        if hi <= lo:
            continue
        state = GroupState.decode(state.encode())  # as the checkpoint hands it back
        state, step = advance(state, records.iloc[lo:hi], **PARAMS)
        latest.update({r["user_id"]: r for r in step.features.to_dict("records")})
        late += step.late["offset"].tolist()
        dups += step.duplicates
    out = pd.DataFrame(list(latest.values())).sort_values("user_id").reset_index(drop=True)
    return out, late, dups


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 1500), max_size=8))
def test_any_split_into_micro_batches_ends_with_the_one_call_result(
        records: pd.DataFrame, cuts: list[int]) -> None:
    whole, whole_late, whole_dups = run_in_pieces(records, [])
    split, split_late, split_dups = run_in_pieces(records, cuts)
    assert whole_late and whole_dups  # the log has both, so the rules are exercised
    assert (split_late, split_dups) == (whole_late, whole_dups)
    pd.testing.assert_frame_equal(split, whole, check_exact=False, rtol=1e-12, atol=1e-12)


def test_features_of_a_user_ignore_other_users_and_row_order(records: pd.DataFrame) -> None:
    accepted = classify(records, kept=records.iloc[:0], newest=pd.Series(dtype="int64"),
                        watermark_ms=WATERMARK_MS).accepted[list(EVENT_COLUMNS)]
    together = user_features(accepted, window_days=30, session_gap_minutes=30).set_index(
        "user_id")
    rng = np.random.default_rng(0)
    for user, rows in accepted.groupby("user_id"):
        alone = user_features(rows.sample(frac=1.0, random_state=rng), window_days=30,
                              session_gap_minutes=30).set_index("user_id")
        # bit for bit: every sum runs over the user's own rows in (ts, event_id) order
        assert alone.loc[user].equals(together.loc[user]), user


def test_arrival_rules_carry_across_calls() -> None:
    def rec(event_id: str, ts: int, offset: int) -> dict[str, Any]:
        return {"user_id": "u", "event_id": event_id, "ts": ts, "event_type": "page_view",
                "partition": 0, "offset": offset}

    t = 1_790_000_000_000
    state, first = advance(GroupState.empty(), frame([rec("a", t, 0)]), **PARAMS)
    assert first.features["last_event_ms"].tolist() == [t]
    # the next micro-batch: a duplicate of the kept event, a record 11 minutes behind
    # the newest one (late), and one 9 minutes behind (on time)
    state, second = advance(state, frame([
        rec("a", t + 5, 1), rec("old", t - 11 * 60_000, 2), rec("b", t - 9 * 60_000, 3)]),
        **PARAMS)
    assert second.duplicates == 1
    assert second.late["event_id"].tolist() == ["old"]
    assert sorted(state.window["event_id"]) == ["a", "b"]
    # the duplicate's newer time counts for the watermark: "c" is 10 min + 1 ms behind it
    state, third = advance(state, frame([rec("c", t + 5 - 600_001, 4)]), **PARAMS)
    assert third.late["event_id"].tolist() == ["c"] and third.features.empty
    assert int(state.newest["u"]) == t + 5


def test_the_window_is_trimmed_to_each_users_last_30_days() -> None:
    day = 86_400_000
    t = 1_790_000_000_000
    rows = [{"user_id": u, "event_id": f"{u}{i}", "ts": ts, "event_type": "page_view",
             "partition": 0, "offset": i}
            for i, (u, ts) in enumerate([("old", t - 40 * day), ("u", t - 40 * day),
                                         ("u", t - 31 * day), ("u", t - 29 * day), ("u", t)])]
    state, step = advance(GroupState.empty(), frame(rows), **PARAMS)
    kept = state.window.groupby("user_id")["ts"].apply(list).to_dict()
    # "old" keeps its last event: a user's window is relative to its own last event
    assert kept == {"old": [t - 40 * day], "u": [t - 29 * day, t]}
    assert step.features.set_index("user_id").loc["u", "active_days"] == 2.0
