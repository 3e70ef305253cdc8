"""Redis down, hung, then back, seen from the API (real redis-server owned by the test,
real uvicorn server): while Redis is gone every lookup route answers 503 with a JSON
body that says the feature store is unavailable, within the client timeout; /readyz is
503 naming Redis; /healthz stays 200. When redis-server is started again on the same
port (its append-only file brings the records back), the same API process serves 200
again with no restart. Both Redis clients of the API are covered: the own pipelined
client (``redis://``) and redis-py (``rediss://``, TLS)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from segstream.config import Settings
from segstream.serving import metrics
from segstream.serving.model_source import StaticSource
from segstream.sources.stack import free_port
from tests.support.api import API_KEY, run_api
from tests.support.archetypes import put_users
from tests.support.models import make_model
from tests.support.servers import OwnRedis

pytestmark = pytest.mark.redis
HEADERS = {"X-API-Key": API_KEY}
CLIENT_TIMEOUT_S = 2.0  # serving.redis_client.open_redis's default
USERS = {"user-0": 0, "user-1": 1, "user-2": 2}


def _lookups(url: str) -> dict[str, httpx.Response]:
    """One call of each route that reads Redis."""
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as c:
        return {
            "single": c.get("/v1/users/user-1/segment"),
            "batch": c.post("/v1/users/segments:batch",
                            json={"user_ids": ["user-0", "user-2", "ghost"]}),
            "features": c.get("/v1/users/user-2/features"),
        }


def _assert_served(url: str) -> None:
    got = _lookups(url)
    assert {k: r.status_code for k, r in got.items()} == dict.fromkeys(got, 200), {
        k: r.text for k, r in got.items()}
    assert got["single"].json()["segment_id"] == 20
    assert [a["segment_id"] for a in got["batch"].json()["results"]] == [10, 30]
    assert got["batch"].json()["missing"] == ["ghost"]
    assert got["features"].json()["user_id"] == "user-2"


def _assert_unavailable(url: str, where: str) -> None:
    """Every Redis route 503 with an error body naming the Redis address ``where``, each
    within the client timeout; /readyz 503 naming Redis; /healthz 200."""
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as c:
        for name, call in (
            ("single", lambda: c.get("/v1/users/user-1/segment")),
            ("batch", lambda: c.post("/v1/users/segments:batch",
                                     json={"user_ids": ["user-0", "user-2"]})),
            ("features", lambda: c.get("/v1/users/user-2/features")),
        ):
            t0 = time.monotonic()
            r = call()
            took = time.monotonic() - t0
            assert r.status_code == 503, (name, r.status_code, r.text)
            assert r.headers["content-type"] == "application/json"
            err = r.json()["error"]
            assert err["code"] == "unavailable", (name, err)
            assert "feature store is unavailable" in err["message"], (name, err)
            assert where in err["message"], (name, err)
            assert took < CLIENT_TIMEOUT_S + 1.5, f"{name} took {took:.1f} s"
        ready = c.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False and body["details"]["redis"] is False
        assert where in body["details"]["redis_error"], body
        assert body["details"]["model_version"] == "1", "the model is still loaded"
        assert c.get("/healthz").status_code == 200


def _wait_served(url: str, timeout_s: float = 15.0) -> float:
    """Seconds until a lookup is 200 again (the API recovers by itself)."""
    t0 = time.monotonic()
    while True:
        r = httpx.get(f"{url}/v1/users/user-1/segment", headers=HEADERS, timeout=30)
        if r.status_code == 200:
            return time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert time.monotonic() - t0 < timeout_s, "the API did not recover"
        time.sleep(0.1)


@pytest.fixture(params=["own-client", "redis-py-tls"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnRedis]:
    tls = None
    if request.param == "redis-py-tls":
        from tests.support.tls import tls_files

        certs = tmp_path / "certs"
        certs.mkdir()
        tls = tls_files(certs)
    own = OwnRedis(free_port(), tmp_path / "own-redis", tls)
    own.start()
    yield own
    own.stop()


@pytest.fixture
def api_url(server: OwnRedis, settings_factory: Any) -> Iterator[str]:
    put_users(redis.Redis.from_url(server.url), USERS)
    settings: Settings = settings_factory(redis_url=server.url, api_keys=[API_KEY])
    with run_api(settings, StaticSource(make_model(), "1")) as url:
        yield url


def _redis_errors() -> float:
    return sum(s.value for m in metrics.REDIS_ERRORS.collect() for s in m.samples
               if s.name.endswith("_total"))


def test_redis_stopped_then_restarted(server: OwnRedis, api_url: str) -> None:
    _assert_served(api_url)
    errors = _redis_errors()
    server.stop()
    _assert_unavailable(api_url, f"127.0.0.1:{server.port}")
    assert _redis_errors() > errors, "the failures are counted"
    server.start()  # same port, same append-only file: the records are back
    assert _wait_served(api_url) < 5.0
    _assert_served(api_url)
    assert httpx.get(f"{api_url}/readyz").status_code == 200


def test_redis_hung_answers_503_within_the_timeout_then_recovers(
        server: OwnRedis, api_url: str) -> None:
    _assert_served(api_url)
    server.pause()  # SIGSTOP: the port still accepts connections, nothing answers
    try:
        _assert_unavailable(api_url, f"127.0.0.1:{server.port}")
    finally:
        server.resume()
    assert _wait_served(api_url) < 5.0
    _assert_served(api_url)
