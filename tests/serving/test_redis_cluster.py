"""The API on a real 3-master Redis Cluster (``redis_cluster=true``): single and batch
lookups whose users live on every master, and the clients' choice by settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from segstream.online_store import feature_key
from serving.redis_client import MaintainedRedis, open_redis
from serving.redis_pipe import PipelinedRedis, RedisUnavailable
from tests.clusters import redis_cluster
from tests.serving.conftest import Api, put_users

pytestmark = [pytest.mark.redis, pytest.mark.slow]
ROWS = {f"user-{i}": i % 3 for i in range(30)}  # 30 keys: slots on all three masters


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    with redis_cluster(tmp_path_factory.mktemp("rc")) as nodes:
        yield nodes


@pytest.fixture
def cluster(seeds: list[str]) -> Iterator[Any]:
    client = redis.RedisCluster.from_url(f"redis://{seeds[0]}")
    client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    yield client
    client.close()


def _masters_holding(client: Any, users: list[str]) -> set[str]:
    return {client.get_node_from_key(feature_key(u)).name for u in users}


def test_single_and_batch_lookups_on_a_cluster(api_factory: Callable[..., Api], cluster: Any,
                                               seeds: list[str]) -> None:
    put_users(cluster, ROWS)
    assert len(_masters_holding(cluster, list(ROWS))) == 3
    api = api_factory(redis_url=f"redis://{seeds[1]}", redis_cluster=True)
    for user, row in ROWS.items():
        r = httpx.get(f"{api.url}/v1/users/{user}/segment", headers=api.headers)
        assert r.status_code == 200, r.text
        assert r.json()["segment_id"] == (10, 20, 30)[row]
    ids = [*ROWS, "ghost"]
    r = httpx.post(f"{api.url}/v1/users/segments:batch", json={"user_ids": ids},
                   headers=api.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [a["user_id"] for a in body["results"]] == list(ROWS)
    assert [a["segment_id"] for a in body["results"]] == [(10, 20, 30)[v] for v in ROWS.values()]
    assert body["missing"] == ["ghost"]
    assert httpx.get(f"{api.url}/readyz").status_code == 200


def test_client_is_chosen_by_url_and_setting(seeds: list[str]) -> None:
    assert isinstance(open_redis("redis://127.0.0.1:6379/0"), PipelinedRedis)
    tls = open_redis("rediss://127.0.0.1:6380/0")
    assert isinstance(tls, MaintainedRedis) and not tls.cluster
    assert isinstance(open_redis(f"redis://{seeds[0]}", cluster=True), MaintainedRedis)


def test_cluster_client_down_raises_redis_unavailable(tmp_path: Path) -> None:
    from segstream.stack import free_port

    client = open_redis(f"redis://127.0.0.1:{free_port()}", cluster=True, timeout_s=0.5)

    async def lookup() -> None:
        await client.execute_many([("HMGET", feature_key("u"), "agg")])

    with pytest.raises(RedisUnavailable):
        asyncio.run(lookup())
