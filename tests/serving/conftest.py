"""Serving fixtures: users whose records are folded from real events (three behavioural
archetypes), a model whose centroids are those archetypes' evaluated features, a local
webhook receiver, and the API run by a real uvicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from segstream.aggregates import FeatureParams, evaluate
from segstream.config import Settings
from segstream.contract import FEATURE_SPEC
from segstream.online_store import encode_record, feature_key
from segstream.segment_model import Preprocessor, SegmentModel
from segstream.stack import free_port
from serving.model_source import ModelSource, StaticSource
from serving.webhooks import SIGNATURE_HEADER
from streaming.step import EVENT_COLUMNS, GroupState, log_aggregates
from training.baseline import build_baseline  # the baseline shape training stores

API_KEY = "k-test-0123456789"
WEBHOOK_SECRET = "whsec-test-0123456789"
SEGMENT_IDS = (10, 20, 30)
PERSONAS = ("Window shoppers", "Big spenders", "Night owls")
PARAMS = FeatureParams()  # what Settings() evaluates with by default
DAY, HOUR, MINUTE = 86_400_000, 3_600_000, 60_000
WATERMARK_MS = 10 * MINUTE


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


def recent_ends(users: list[str], seed: int) -> dict[str, int]:
    """A last-event time for each user within the last two hours."""
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000)
    return {u: now - int(rng.integers(MINUTE, 2 * HOUR)) for u in users}


@functools.cache
def archetype_sample(per_row: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``per_row`` users of each archetype, each last active in the last two
    hours, evaluated now (what a lookup sees): (X, rows)."""
    rows = {f"s{i}": i % 3 for i in range(3 * per_row)}
    state = users_state(rows, recent_ends(list(rows), seed=4), seed=5)
    X = evaluate(state.aggs, int(time.time() * 1000), PARAMS)
    return X, np.array([rows[str(u)] for u in state.users])


def make_model(centroid_shift: float = 0.0, segment_ids: tuple[int, ...] = SEGMENT_IDS,
               params: FeatureParams | None = PARAMS) -> SegmentModel:
    """Nearest-centroid model of the three archetypes (ids ``segment_ids``, personas
    ``PERSONAS``); ``params=None`` records no feature params (an old model)."""
    X, labels = archetype_sample()
    heavy = np.array([f.heavy_tailed for f in FEATURE_SPEC.features])
    L = np.where(heavy, np.log1p(np.maximum(X, 0.0)), X)
    std = L.std(0)
    pre = Preprocessor(log1p=heavy, center=np.median(L, 0),
                       scale=np.where(std > 1e-9, std, 1.0))
    Z = pre.transform(X)
    centroids = np.stack([Z[labels == r].mean(0) for r in range(3)]) + centroid_shift
    d2 = ((Z[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert (d2.argmin(1) == labels).all(), "the archetypes must be separable"
    own = d2[np.arange(len(Z)), labels]
    return SegmentModel(
        spec_version=FEATURE_SPEC.version, feature_names=FEATURE_SPEC.names,
        preprocessor=pre, centroids=centroids, segment_ids=segment_ids, personas=PERSONAS,
        temperature=float(own.mean()),
        profiles=[{"size": s, "share": s / 1000} for s in (500, 300, 200)],
        baseline=build_baseline(X, labels, np.sqrt(own), segment_ids),
        info={} if params is None else {"feature_params": params.describe()},
    )


def lapsing_model(after_days: float = 200.0) -> SegmentModel:
    """:func:`make_model` plus a fourth segment, 40 "Lapsed": the archetypes' users
    ``after_days`` later with no event (time alone moves a user there)."""
    import dataclasses

    base = make_model()
    rows = {f"l{i}": i % 3 for i in range(60)}
    state = users_state(rows, recent_ends(list(rows), seed=6), seed=7)
    later = evaluate(state.aggs, int(time.time() * 1000) + int(after_days * DAY), PARAMS)
    lapsed = base.preprocessor.transform(later).mean(0)
    return dataclasses.replace(
        base, centroids=np.vstack([base.centroids, lapsed]),
        segment_ids=(*base.segment_ids, 40), personas=(*base.personas, "Lapsed"),
        profiles=[*base.profiles, {"size": 100, "share": 0.1}])


@dataclass
class Api:
    url: str
    settings: Settings
    source: ModelSource
    headers: dict[str, str]


@contextlib.contextmanager
def run_api(settings: Settings, source: ModelSource) -> Iterator[str]:
    """Serve ``create_app`` with uvicorn in a thread; yields the base URL."""
    import uvicorn

    from serving.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(settings, source), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api_factory(settings_factory: Callable[..., Settings], redis_client: Any
                ) -> Iterator[Callable[..., Api]]:
    """``api_factory(source=None, **settings)``: a running API on the test Redis."""
    stack = contextlib.ExitStack()

    def make(source: ModelSource | None = None, **overrides: Any) -> Api:
        base: dict[str, Any] = {"api_keys": [API_KEY], "api_model_poll_s": 0.2}
        base.update(overrides)
        settings = settings_factory(**base)
        src = source if source is not None else StaticSource(make_model(), "1")
        url = stack.enter_context(run_api(settings, src))
        return Api(url, settings, src, {"X-API-Key": API_KEY})

    with stack:
        yield make


class Receiver:
    """A CMS stand-in: checks the HMAC itself, answers 503 for the first ``fail`` calls."""

    def __init__(self, port: int, fail: int = 0, secret: str = WEBHOOK_SECRET) -> None:
        self.port, self.fail = port, fail
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                parts = dict(p.split("=", 1) for p in self.headers[SIGNATURE_HEADER].split(","))
                expect = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body,
                                  hashlib.sha256).hexdigest()
                receiver.calls += 1
                if not hmac.compare_digest(expect, parts["v1"]):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                elif receiver.calls <= receiver.fail:
                    self.send_response(503)
                else:
                    receiver.received.append(orjson.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for r in started:
        r.stop()
