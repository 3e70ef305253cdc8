"""Serving on a real 3-master Redis Cluster (``redis_cluster=true``): single and batch
lookups whose users live on every master, the change detector's sweep, the experiments
store, and the clients' choice by settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from segstream.adapters.redis_keys import feature_key
from segstream.adapters.topic_reader import read_topic
from segstream.config import Settings
from segstream.core.times import format_time
from segstream.serving.changes import ChangeDetector
from segstream.serving.model_holder import ModelHolder
from segstream.serving.model_source import StaticSource
from segstream.serving.redis_client import GlideRedis, MaintainedRedis, open_redis
from segstream.serving.redis_pipe import PipelinedRedis, RedisUnavailable
from segstream.serving.rescore import CLOCK_STREAM
from segstream.sources.clusters import redis_cluster
from tests.support.api import Api
from tests.support.archetypes import PARAMS, put_users, users_state, write_records
from tests.support.models import lapsing_model
from tests.support.webhooks import T0, produce_records

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.slow]
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
    assert isinstance(tls, GlideRedis) and not tls.cluster and tls.tls
    assert isinstance(open_redis(f"redis://{seeds[0]}", cluster=True), GlideRedis)
    assert isinstance(open_redis(f"redis://{seeds[0]}", cluster=True, client="redis-py"),
                      MaintainedRedis)


def test_cluster_client_down_raises_redis_unavailable(tmp_path: Path) -> None:
    from segstream.sources.stack import free_port

    client = open_redis(f"redis://127.0.0.1:{free_port()}", cluster=True, timeout_s=0.5)

    async def lookup() -> None:
        await client.execute_many([("HMGET", feature_key("u"), "agg")])

    with pytest.raises(RedisUnavailable):
        asyncio.run(lookup())


def test_detector_sweep_covers_every_master(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    kafka_bootstrap: str, cluster: Any, api_factory: Callable[..., Api], seeds: list[str],
) -> None:
    """A sweep walks the records on all three masters: every lapsed user's change is
    published once, each user's state key is written on its own slot, and the API
    counts the migrations from the hashes wherever they live."""
    features, changes = topic_factory("features", partitions=1), topic_factory("changes")
    settings = settings_factory(topic_features=features, topic_segment_changes=changes,
                                clock="event", rescore_interval_s=3600,
                                segment_min_dwell_s=0, redis_cluster=True)
    day, hour = 86_400_000, 3_600_000
    users = {f"u{i}": i % 3 for i in range(30)}
    write_records(cluster, users_state(users, T0, seed=1))
    assert len(_masters_holding(cluster, list(users))) == 3
    holder = ModelHolder(StaticSource(lapsing_model(at_ms=T0), "1"), PARAMS)
    detector = ChangeDetector(settings, holder, cluster, kafka_bootstrap)
    detector.sweep_chunk_size = 7

    def tick(at: int) -> None:  # another user's event moves the stream time to ``at``
        produce_records(kafka_bootstrap, features,
                        [("tick", users_state({"tick": 0}, at).aggs[0])])

    tick(T0)
    assert detector.run_available_now(timeout_s=60) == 0  # the clock starts
    tick(T0 + hour + 1)
    assert detector.run_available_now(timeout_s=60) == 0  # first segments recorded
    assert sum(1 for _ in cluster.scan_iter("seg:segment:u*")) == 30
    tick(T0 + 200 * day)  # 200 days of silence: time alone moves all thirty
    assert detector.run_available_now(timeout_s=60) == 30
    detector.close()
    moved = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, changes)]
    assert sorted(c["user_id"] for c in moved if c["user_id"] != "tick") == sorted(users)
    assert int(cluster.hget(detector.reader.key, CLOCK_STREAM)) == T0 + 200 * day
    api = api_factory(redis_url=f"redis://{seeds[2]}", redis_cluster=True)
    r = httpx.get(f"{api.url}/v1/segments/migrations", headers=api.headers,
                  params={"since": format_time(T0), "until": format_time(T0 + 200 * day + 1)})
    assert r.status_code == 422  # over 31 days
    r = httpx.get(f"{api.url}/v1/segments/migrations", headers=api.headers,
                  params={"since": format_time(T0 + 199 * day),
                          "until": format_time(T0 + 201 * day)})
    assert r.status_code == 200, r.text
    assert r.json()["changes"] == r.json()["segment_changes"] == 30
    assert {(c["from_segment"], c["to_segment"], c["count"]) for c in r.json()["segments"]} == {
        (10, 40, 10), (20, 40, 10), (30, 40, 10)}


MAPPING = """
experiments:
  hp-test: {holdout: 0.5}
placements:
  homepage:
    experiment: hp-test
    default: [home-generic]
"""


def test_experiments_store_on_a_cluster(api_factory: Callable[..., Api], cluster: Any,
                                        seeds: list[str], tmp_path: Path) -> None:
    """Exposures and conversions run Lua over several keys of one experiment: the hash
    tag puts them in one slot, so the counts are the same as on one server."""
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING)
    put_users(cluster, {f"u{i}": i % 3 for i in range(40)})
    api = api_factory(redis_url=f"redis://{seeds[2]}", redis_cluster=True,
                      api_personalization_file=path)
    with httpx.Client(base_url=api.url, headers=api.headers) as c:
        arms = [c.get(f"/v1/users/u{i}/personalization",
                      params={"placement": "homepage"}).json()["arm"] for i in range(40)]
        for i in range(0, 40, 4):
            r = c.post("/v1/conversions", json={"user_id": f"u{i}", "experiment_id": "hp-test"})
            assert r.status_code == 201 and r.json()["counted"] is True, r.text
        report = c.get("/v1/experiments/hp-test/uplift").json()
    nt = arms.count("treatment")
    xt = sum(1 for i in range(0, 40, 4) if arms[i] == "treatment")
    overall = report["overall"]
    assert overall["treatment"]["exposed"] == nt and overall["treatment"]["converted"] == xt
    assert overall["control"]["exposed"] == 40 - nt
    assert overall["control"]["converted"] == 10 - xt
    assert len({cluster.keyslot(k) for k in cluster.scan_iter("seg:exp:*")}) == 1
