"""The API's Redis client, chosen by settings: the own pipelined client
(:mod:`segstream.serving.redis_pipe`) for one plain ``redis://`` server, where it is the fastest
(docs/serving.md), and redis-py's maintained asyncio clients for a Redis Cluster
(``redis_cluster``) or TLS (``rediss://``), which the own client does not speak.

Both answer ``execute`` / ``execute_many`` with raw replies and raise the same two
errors, so the routes do not know which one runs."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

from segstream.adapters.redis_connect import async_redis
from segstream.serving.redis_pipe import PipelinedRedis, RedisCommandError, RedisUnavailable


class AsyncRedis(Protocol):
    async def execute(self, *args: Any) -> Any: ...
    async def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]: ...
    async def close(self) -> None: ...


class MaintainedRedis:
    """redis-py asyncio (``Redis`` or ``RedisCluster``) behind the ``execute`` API; a
    cluster pipeline sends each node its keys' commands and returns replies in order."""

    def __init__(self, url: str, *, cluster: bool, timeout_s: float = 2.0) -> None:
        self.cluster = cluster
        parsed = urlsplit(url)  # host:port only, never the password: it goes in messages
        self.where = f"{parsed.hostname}:{parsed.port or 6379}"
        self.client = async_redis(url, cluster=cluster, socket_timeout=timeout_s,
                                  socket_connect_timeout=timeout_s)

    async def execute(self, *args: Any) -> Any:
        if str(args[0]).upper() == "PING":  # redis-py maps the reply to a bool
            return b"PONG" if await self._call(self.client.ping()) else None
        return _raw(await self._call(self.client.execute_command(*args)))

    async def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        pipe = self.client.pipeline(transaction=False)
        for cmd in commands:
            pipe.execute_command(*cmd)
        return [_raw(r) for r in await self._call(pipe.execute(raise_on_error=True))]

    async def _call(self, awaitable: Any) -> Any:
        from redis.exceptions import RedisClusterException, RedisError, ResponseError

        try:
            return await awaitable
        except ResponseError as exc:
            raise RedisCommandError(str(exc)) from exc
        except (RedisError, RedisClusterException, OSError) as exc:
            raise RedisUnavailable(f"redis at {self.where} unavailable: {exc}") from exc

    async def close(self) -> None:
        await self.client.aclose()


def _raw(reply: Any) -> Any:
    """The RESP2 reply redis-py parsed: HGETALL's dict back to its flat field list."""
    if isinstance(reply, dict):
        return [x for kv in reply.items() for x in kv]
    return reply


def open_redis(url: str, *, cluster: bool = False, timeout_s: float = 2.0) -> AsyncRedis:
    if cluster or not url.startswith("redis://"):
        return MaintainedRedis(url, cluster=cluster, timeout_s=timeout_s)
    return PipelinedRedis(url, timeout_s=timeout_s)
