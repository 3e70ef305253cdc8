"""Which Redis client to open for a URL: a Redis Cluster (``redis_cluster`` setting)
or one server, over TCP (``redis://``) or TLS (``rediss://``). Both are redis-py's own
clients, so cluster slot routing, MOVED/ASK redirects and TLS are redis-py's."""

from __future__ import annotations

from typing import Any


def sync_redis(url: str, *, cluster: bool = False, **kwargs: Any) -> Any:
    """``redis.Redis`` or, for a cluster, ``redis.RedisCluster`` seeded by ``url``."""
    import redis

    if cluster:
        return redis.RedisCluster.from_url(url, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def async_redis(url: str, *, cluster: bool = False, **kwargs: Any) -> Any:
    """The asyncio counterparts (``redis.asyncio.Redis`` / ``RedisCluster``)."""
    import redis.asyncio

    if cluster:
        return redis.asyncio.RedisCluster.from_url(url, **kwargs)
    return redis.asyncio.Redis.from_url(url, **kwargs)
