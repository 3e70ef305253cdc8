"""Hot reload from the real MLflow registry under concurrent requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from segstream.config import Settings
from segstream.core.segment_model import SegmentModel
from segstream.serving import metrics
from segstream.serving.model_source import RegistrySource
from tests.support.api import Api
from tests.support.archetypes import put_users
from tests.support.models import make_model, model_registry

pytestmark = [pytest.mark.redis, pytest.mark.mlflow]


class FlakySource:
    """Wraps the real registry source; ``down=True`` makes it raise like an unreachable
    tracking server. A fake on purpose: an embedded sqlite registry cannot be made
    unreachable from outside while its connection pool stays open."""

    def __init__(self, inner: RegistrySource) -> None:
        self.inner = inner
        self.down = False

    def champion_version(self) -> str | None:
        if self.down:
            raise ConnectionError("registry unreachable (injected)")
        return self.inner.champion_version()

    def load(self, version: str) -> SegmentModel:
        if self.down:
            raise ConnectionError("registry unreachable (injected)")
        return self.inner.load(version)


def test_hot_reload_under_concurrent_requests(
    api_factory: Callable[..., Api], settings_factory: Callable[..., Settings],
    redis_client: Any, tmp_path: Path,
) -> None:
    settings = settings_factory()
    registry = model_registry(settings)
    v1 = registry.register(make_model())
    registry.set_alias(v1, "champion")
    put_users(redis_client, {f"user-{row}": row for row in range(3)})
    api = api_factory(RegistrySource(settings), api_model_poll_s=0.1)
    reloads_before = metrics.MODEL_RELOADS._value.get()

    # (sent, received, version) per request: with 16 requests in flight, completion
    # order alone does not say which request was served after the swap.
    async def load() -> tuple[list[int], list[tuple[float, float, str]]]:
        statuses: list[int] = []
        served: list[tuple[float, float, str]] = []
        stop = asyncio.Event()
        clock = asyncio.get_running_loop().time

        async def worker(client: httpx.AsyncClient, n: int) -> None:
            while not stop.is_set():
                sent = clock()
                r = await client.get(f"/v1/users/user-{n % 3}/segment")
                statuses.append(r.status_code)
                if r.status_code == 200:
                    served.append((sent, clock(), r.json()["model_version"]))

        async with httpx.AsyncClient(base_url=api.url, headers=api.headers) as client:
            tasks = [asyncio.create_task(worker(client, n)) for n in range(16)]
            await asyncio.sleep(0.5)

            def promote() -> str:
                v2 = registry.register(make_model(centroid_shift=0.01))
                registry.set_alias(v2, "champion")
                return str(v2)

            v2 = await asyncio.to_thread(promote)
            for _ in range(300):  # until the new version is served, then a bit more
                if served and served[-1][2] == v2:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
        return statuses, served

    statuses, served = asyncio.run(load())
    assert statuses and set(statuses) == {200}, "every request succeeded through the swap"
    versions = [version for _, _, version in served]
    assert versions[0] == v1
    assert versions[-1] != v1
    first_new = min(received for _, received, version in served if version == versions[-1])
    after = {version for sent, _, version in served if sent > first_new}
    assert after == {versions[-1]}, "no request sent after the swap went back to the old model"
    assert metrics.MODEL_RELOADS._value.get() >= reloads_before + 1
    ready = httpx.get(f"{api.url}/readyz").json()
    assert ready["details"]["model_version"] == versions[-1]


def test_registry_down_keeps_last_good_model(
    api_factory: Callable[..., Api], settings_factory: Callable[..., Settings],
    redis_client: Any,
) -> None:
    settings = settings_factory()
    registry = model_registry(settings)
    v1 = registry.register(make_model())
    registry.set_alias(v1, "champion")
    put_users(redis_client, {"u": 1})
    source = FlakySource(RegistrySource(settings))
    api = api_factory(source, api_model_poll_s=0.05)
    failures = metrics.MODEL_RELOAD_FAILURES._value.get()
    source.down = True
    for _ in range(100):
        details = httpx.get(f"{api.url}/readyz").json()["details"]
        if not details["registry_ok"]:
            break
        asyncio.run(asyncio.sleep(0.05))
    r = httpx.get(f"{api.url}/readyz")
    assert r.status_code == 200, "still ready: it serves the last good model"
    details = r.json()["details"]
    assert details["serving_last_good_model"] is True
    assert "registry unreachable" in details["registry_error"]
    assert details["model_version"] == v1
    assert metrics.MODEL_RELOAD_FAILURES._value.get() > failures
    assert metrics.REGISTRY_UP._value.get() == 0
    lookup = httpx.get(f"{api.url}/v1/users/u/segment", headers=api.headers)
    assert lookup.status_code == 200 and lookup.json()["model_version"] == v1
    source.down = False
    for _ in range(100):
        if httpx.get(f"{api.url}/readyz").json()["details"]["registry_ok"]:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert httpx.get(f"{api.url}/readyz").json()["details"]["registry_error"] is None


def test_empty_registry_is_not_ready(api_factory: Callable[..., Api],
                                     settings_factory: Callable[..., Settings]) -> None:
    api = api_factory(RegistrySource(settings_factory()))
    r = httpx.get(f"{api.url}/readyz")
    assert r.status_code == 503
    assert "no champion" in r.json()["details"]["registry_error"]
    r = httpx.get(f"{api.url}/v1/users/u/segment", headers=api.headers)
    assert r.status_code == 503
