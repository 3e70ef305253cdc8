"""The own pipelined client's failure paths on a real redis-server: nothing listening,
the server gone mid-connection and back, a reply that never comes (CLIENT PAUSE), an
error reply; each ends in RedisUnavailable / RedisCommandError, never a hang, and the
next command after it gets its own reply."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from segstream.adapters.endpoints import Service
from segstream.serving.redis_pipe import PipelinedRedis, RedisCommandError, RedisUnavailable
from segstream.sources.stack import free_port, start_redis, stop_service

pytestmark = pytest.mark.redis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Service]:
    svc = start_redis(free_port(), tmp_path / "r", tmp_path / "r.log")
    yield svc
    stop_service(svc)


def test_nothing_listening_is_unavailable_naming_the_address() -> None:
    port = free_port()
    client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    with pytest.raises(RedisUnavailable, match=f"127.0.0.1:{port}"):
        asyncio.run(client.execute("PING"))


def test_server_gone_then_back_fails_then_reconnects(server: Service, tmp_path: Path
                                                     ) -> None:
    url = server.address
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    async def scenario() -> None:
        client = PipelinedRedis(url, timeout_s=1.0)
        await client.execute("SET", "k", "v1")
        stop_service(server)
        with pytest.raises(RedisUnavailable):
            await client.execute_many([("GET", "k"), ("GET", "k")])
        again = start_redis(port, tmp_path / "r2", tmp_path / "r2.log")
        try:
            assert await client.execute("SET", "k", "v2") == b"OK"
            assert await client.execute("GET", "k") == b"v2"
        finally:
            await client.close()
            stop_service(again)

    asyncio.run(scenario())


def test_a_reply_that_never_comes_times_out_and_the_stream_stays_in_step(
        server: Service) -> None:
    redis.Redis.from_url(server.address).set("k", "v")

    async def scenario() -> None:
        client = PipelinedRedis(server.address, timeout_s=0.4)
        assert await client.execute("PING") == b"PONG"
        redis.Redis.from_url(server.address).execute_command("CLIENT", "PAUSE", 1200, "ALL")
        with pytest.raises(RedisUnavailable, match="did not answer"):
            await client.execute("GET", "k")
        await asyncio.sleep(1.0)
        # the late reply of the timed-out GET must not be handed to this command
        assert await client.execute("ECHO", "mine") == b"mine"
        await client.close()

    asyncio.run(scenario())


def test_error_reply_is_a_command_error_and_the_connection_is_reused(server: Service
                                                                     ) -> None:
    async def scenario() -> None:
        client = PipelinedRedis(server.address)
        await client.execute("SET", "s", "x")
        replies = client.execute_many([("HGET", "s", "f"), ("GET", "s")])
        with pytest.raises(RedisCommandError, match="WRONGTYPE"):
            await replies
        assert await client.execute("GET", "s") == b"x"
        await client.close()

    asyncio.run(scenario())
