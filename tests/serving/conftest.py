"""Serving fixtures: a small handmade model, users written to the real Redis, and
the API run by a real uvicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from segstream.config import Settings
from segstream.contract import FEATURE_SPEC
from segstream.online_store import encode_record, feature_key
from segstream.segment_model import Preprocessor, SegmentModel
from segstream.stack import free_port
from serving.model_source import ModelSource, StaticSource
from training.baseline import build_baseline  # the baseline shape training stores

API_KEY = "k-test-0123456789"
SEGMENT_IDS = (10, 20, 30)
PERSONAS = ("Window shoppers", "Big spenders", "Night owls")
_KINDS = [f.kind for f in FEATURE_SPEC.features]
MONEY = [i for i, k in enumerate(_KINDS) if k == "money"]
RATIOS = [i for i, k in enumerate(_KINDS) if k == "ratio"]
DURATIONS = [i for i, k in enumerate(_KINDS) if k == "duration"]


def prototypes() -> np.ndarray:
    """Raw feature vectors at the heart of each test segment (derived by kind)."""
    base = np.array(FEATURE_SPEC.defaults, dtype=float)
    shopper = base.copy()
    spender = base.copy()
    spender[MONEY] = 800.0
    spender[RATIOS[-1]] = 0.95
    owl = base.copy()
    owl[DURATIONS] = 3000.0
    owl[RATIOS[0]] = 0.9
    return np.stack([shopper, spender, owl])


def make_model(centroid_shift: float = 0.0, segment_ids: tuple[int, ...] = SEGMENT_IDS
               ) -> SegmentModel:
    heavy = np.array([f.heavy_tailed for f in FEATURE_SPEC.features])
    defaults = np.array(FEATURE_SPEC.defaults, dtype=float)
    center = np.where(heavy, np.log1p(defaults), defaults)
    pre = Preprocessor(log1p=heavy, center=center, scale=np.ones(len(FEATURE_SPEC)))
    centroids = pre.transform(prototypes()) + centroid_shift
    rng = np.random.default_rng(7)
    sample = np.repeat(prototypes(), 400, axis=0) * rng.uniform(0.8, 1.2, (1200, 19))
    labels = np.repeat(np.arange(3), 400)
    baseline = build_baseline(sample, labels, rng.uniform(0, 1, 1200), segment_ids)
    return SegmentModel(
        spec_version=FEATURE_SPEC.version, feature_names=FEATURE_SPEC.names,
        preprocessor=pre, centroids=centroids, segment_ids=segment_ids, personas=PERSONAS,
        temperature=1.0,
        profiles=[{"size": s, "share": s / 1000} for s in (500, 300, 200)],
        baseline=baseline,
    )


def user_vector(segment_row: int, rng: np.random.Generator | None = None) -> np.ndarray:
    v = prototypes()[segment_row]
    if rng is not None:
        v = v * rng.uniform(0.9, 1.1, v.shape)
    return v


def put_user(client: Any, user_id: str, vector: np.ndarray, updated_ms: int | None = None
             ) -> None:
    now = int(time.time() * 1000)
    rec = encode_record(vector, last_event_ms=now, updated_ms=updated_ms or now)
    client.hset(feature_key(user_id), mapping=rec)


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
