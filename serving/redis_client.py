"""The API's Redis client, chosen by settings: the own pipelined client
(:mod:`segstream.serving.redis_pipe`) for one plain ``redis://`` server, where it is the fastest
(docs/benchmarks.md), and valkey-glide (maintained, Rust core) for a Redis Cluster
(``redis_cluster``) or TLS (``rediss://``), which the own client does not speak; glide
served the API 1.3x faster than redis-py's asyncio cluster client in the same run.
redis-py's client stays behind ``client="redis-py"`` for that comparison.

Both answer ``execute`` / ``execute_many`` with raw replies and raise the same two
errors, so the routes do not know which one runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

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


class GlideRedis:
    """valkey-glide (Rust core, its own multiplexed connections, cluster routing, TLS)
    behind the ``execute`` API; RESP2, so replies are the raw ones the others give. A
    non-atomic batch sends each node its keys' commands and returns replies in order.
    ``rediss://`` URLs take the CA from ``?ssl_ca_certs=`` as redis-py's do."""

    def __init__(self, url: str, *, cluster: bool, timeout_s: float = 2.0) -> None:
        parsed = urlsplit(url)
        self.cluster = cluster
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.where = f"{self.host}:{self.port}"
        self.tls = parsed.scheme == "rediss"
        self.db = int((parsed.path or "/0").lstrip("/") or 0)
        self.username, self.password = parsed.username, parsed.password
        query = parse_qs(parsed.query)
        cas = query.get("ssl_ca_certs")
        self.ca_file = cas[0] if cas else None
        self.timeout_s = timeout_s
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                import glide

                tls = (glide.TlsAdvancedConfiguration(
                    root_pem_cacerts=Path(self.ca_file).read_bytes())
                    if self.tls and self.ca_file else None)
                ms = int(self.timeout_s * 1000)
                common: dict[str, Any] = {
                    "addresses": [glide.NodeAddress(self.host, self.port)],
                    "use_tls": self.tls, "request_timeout": ms,
                    "protocol": glide.ProtocolVersion.RESP2,
                    "credentials": glide.ServerCredentials(self.password, self.username)
                    if self.password else None}
                try:
                    if self.cluster:
                        config: Any = glide.GlideClusterClientConfiguration(
                            **common, advanced_config=glide.AdvancedGlideClusterClientConfiguration(
                                connection_timeout=ms, tls_config=tls))
                        client: Any = await asyncio.wait_for(
                            glide.GlideClusterClient.create(config), self.timeout_s)
                    else:
                        config = glide.GlideClientConfiguration(
                            **common, database_id=self.db or None,
                            advanced_config=glide.AdvancedGlideClientConfiguration(
                                connection_timeout=ms, tls_config=tls))
                        client = await asyncio.wait_for(glide.GlideClient.create(config),
                                                        self.timeout_s)
                except (glide.GlideError, OSError, TimeoutError) as exc:
                    raise RedisUnavailable(f"cannot connect to redis at {self.where}: "
                                           f"{type(exc).__name__}: {exc}") from exc
                self._client = client
        return self._client

    async def execute(self, *args: Any) -> Any:
        client = await self._connection()
        return _raw(await self._call(client.custom_command([_arg(a) for a in args])))

    async def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        import glide

        client = await self._connection()
        batch: Any = glide.ClusterBatch(is_atomic=False) if self.cluster \
            else glide.Batch(is_atomic=False)
        for cmd in commands:
            batch.custom_command([_arg(a) for a in cmd])
        replies = await self._call(client.exec(batch, raise_on_error=True))
        return [_raw(r) for r in replies or []]

    async def _call(self, awaitable: Any) -> Any:
        import glide

        try:
            return await awaitable
        except (glide.TimeoutError, glide.ConnectionError, glide.ClosingError) as exc:
            raise RedisUnavailable(f"redis at {self.where} unavailable: "
                                   f"{type(exc).__name__}: {exc}") from exc
        except glide.RequestError as exc:
            raise RedisCommandError(str(exc)) from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _arg(value: Any) -> str | bytes:
    return value if isinstance(value, (str, bytes)) else str(value)


#: the clients ``open_redis`` can give (``auto``: the own pipelined client for one
#: plain ``redis://`` server, valkey-glide for a cluster or TLS; ``redis-py`` only to
#: compare, docs/benchmarks.md)
CLIENTS = ("auto", "own", "redis-py", "glide")


def open_redis(url: str, *, cluster: bool = False, timeout_s: float = 2.0,
               client: str = "auto") -> AsyncRedis:
    if client == "redis-py":
        return MaintainedRedis(url, cluster=cluster, timeout_s=timeout_s)
    if client == "glide" or cluster or not url.startswith("redis://"):
        return GlideRedis(url, cluster=cluster, timeout_s=timeout_s)
    return PipelinedRedis(url, timeout_s=timeout_s)
