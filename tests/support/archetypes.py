"""Users whose records are folded from real events of three behavioural archetypes
(window shoppers, big spenders, night owls) by the streaming step, stored in Redis as
the streaming job's sink writes them."""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import pandas as pd

from segstream.adapters.online_store import encode_record
from segstream.adapters.redis_keys import feature_key
from segstream.core.aggregates import FeatureParams, evaluate
from segstream.streaming.step import EVENT_COLUMNS, GroupState, log_aggregates

PARAMS = FeatureParams()  # what Settings() evaluates with by default
DAY, HOUR, MINUTE = 86_400_000, 3_600_000, 60_000
WATERMARK_MS = 10 * MINUTE
_FIRST_SAMPLED_MS = int(time.time() * 1000)  # "now" of the default sample, one per run


def _event(user: str, n: int, ts: int, typ: str, *, dwell: float | None = None,
           amount: float | None = None, platform: str = "web", content: str | None = None,
           category: str | None = None) -> dict[str, Any]:
    return {"user_id": user, "event_id": f"{user}-{n}", "ts": int(ts), "event_type": typ,
            "session_id": None, "content_id": content, "category": category,
            "dwell_ms": dwell, "amount": amount, "platform": platform}


def archetype_events(row: int, user: str, end_ms: int, rng: np.random.Generator,
                     intensity: float = 1.0) -> list[dict[str, Any]]:
    """Two weeks of one archetype's events on the UTC days before ``end_ms``'s day, and
    a last event at exactly ``end_ms``. ``intensity`` multiplies amounts and dwell."""
    day0 = end_ms // DAY
    out: list[dict[str, Any]] = []

    def add(ts: int, typ: str, **kw: Any) -> None:
        out.append(_event(user, len(out), ts, typ, **kw))

    for back in range(14, 0, -1):
        day = (day0 - back) * DAY
        if row == 0:  # window shoppers: daily morning browsing and search, desktop
            start = day + int(rng.integers(8, 12)) * HOUR
            for j, typ in enumerate(("page_view", "search", "content_view", "search")):
                add(start + j * MINUTE, typ, dwell=float(rng.uniform(5e3, 15e3)) * intensity,
                    content=f"p{rng.integers(0, 60)}", category=f"cat{rng.integers(0, 6)}")
        elif row == 1 and back % 2 == 0:  # big spenders: a purchase every other day
            start = day + int(rng.integers(12, 15)) * HOUR
            add(start, "content_view", content=f"p{rng.integers(0, 5)}", category="lux")
            add(start + MINUTE, "add_to_cart", category="lux")
            add(start + 2 * MINUTE, "purchase", category="lux",
                amount=float(rng.uniform(600, 1000)) * intensity)
        elif row == 2:  # night owls: evening plays with long dwell, on mobile
            start = day + int(rng.integers(19, 22)) * HOUR
            for j in range(3):
                add(start + j * 10 * MINUTE, "play", platform="ios", category="video",
                    dwell=float(rng.uniform(2e6, 4e6)) * intensity,
                    content=f"s{rng.integers(0, 4)}")
    last = {0: ("page_view", "web"), 1: ("content_view", "web"), 2: ("play", "ios")}[row]
    add(end_ms, last[0], platform=last[1])
    return out


def fold_events(events: list[dict[str, Any]]) -> GroupState:
    """Every user's aggregates, folded by the streaming step (events in arrival order)."""
    frame = pd.DataFrame(events).reindex(columns=list(EVENT_COLUMNS))
    frame["partition"], frame["offset"] = 0, np.arange(len(frame))
    return log_aggregates(frame, watermark_ms=WATERMARK_MS, params=PARAMS)


def users_state(rows: dict[str, int], end_ms: int | dict[str, int], *, seed: int = 0,
                intensity: float = 1.0) -> GroupState:
    """Aggregates of users ``{user_id: archetype row}`` whose last event is ``end_ms``."""
    rng = np.random.default_rng(seed)
    events: list[dict[str, Any]] = []
    for user, row in rows.items():
        end = end_ms[user] if isinstance(end_ms, dict) else end_ms
        events += archetype_events(row, user, end, rng, intensity)
    return fold_events(events)


def write_records(client: Any, state: GroupState, updated_ms: int | None = None) -> None:
    """Each user's record in Redis, as the streaming job's sink writes it."""
    pipe = client.pipeline(transaction=False)
    for i, user in enumerate(state.users):
        agg = state.aggs[i]
        upd = updated_ms if updated_ms is not None else int(agg["last_ms"])
        pipe.hset(feature_key(str(user)), mapping=encode_record(agg, PARAMS, updated_ms=upd))
    pipe.execute()


def put_users(client: Any, rows: dict[str, int], *, end_ms: int | dict[str, int] | None = None,
              updated_ms: int | None = None, seed: int = 0, intensity: float = 1.0
              ) -> GroupState:
    """Fold and store users ``{user_id: archetype row}`` whose last event is ``end_ms``
    (one time or one per user; default: a minute ago)."""
    end = end_ms if end_ms is not None else int(time.time() * 1000) - MINUTE
    state = users_state(rows, end, seed=seed, intensity=intensity)
    write_records(client, state, updated_ms)
    return state


def recent_ends(users: list[str], seed: int, at_ms: int | None = None) -> dict[str, int]:
    """A last-event time for each user within the two hours before ``at_ms`` (now)."""
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000) if at_ms is None else at_ms
    return {u: now - int(rng.integers(MINUTE, 2 * HOUR)) for u in users}


def archetype_sample(per_row: int = 60, at_ms: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``per_row`` users of each archetype, each last active in the two hours
    before ``at_ms``, evaluated at ``at_ms``: (X, rows). Default now: what a lookup of
    users active a minute ago sees. A test whose users are active at a fixed time passes
    that time, or the hour of day the suite runs at would move its users across the
    centroids (the archetypes' sessions sit at hours of the day)."""
    return _sample(per_row, _FIRST_SAMPLED_MS if at_ms is None else at_ms)


@functools.cache
def _sample(per_row: int, at_ms: int) -> tuple[np.ndarray, np.ndarray]:
    rows = {f"s{i}": i % 3 for i in range(3 * per_row)}
    state = users_state(rows, recent_ends(list(rows), seed=4, at_ms=at_ms), seed=5)
    X = evaluate(state.aggs, at_ms, PARAMS)
    return X, np.array([rows[str(u)] for u in state.users])
