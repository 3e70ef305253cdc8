"""A small auto-pipelining asyncio Redis client for the lookup hot path.

Every command issued in the same event-loop turn is written to one socket in one
``write`` and the replies are parsed by hiredis (C) and handed back in order. With
32 concurrent requests that is one syscall and one Redis read for 32 lookups, where
redis.asyncio's connection pool does a write + read per command (docs/serving.md,
"Where the time goes"). It speaks RESP2 over one TCP connection, reconnects on the
next command after a failure and fails every in-flight command with
:class:`RedisUnavailable` when the connection drops, so no request hangs on a dead
socket. Only what serving needs: ``execute`` and ``execute_many``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast
from urllib.parse import urlparse

import hiredis

#: the largest slice of a read fed to hiredis at once (see ``data_received``)
FEED_BYTES = 8192


class RedisUnavailable(ConnectionError):
    """Redis could not be reached or the connection dropped mid-command."""


class RedisCommandError(RuntimeError):
    """Redis answered a command with an error reply."""


class _Waiter:
    """The replies one ``execute_many`` waits for: one future per call, not per command."""

    __slots__ = ("count", "future", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []


class _Protocol(asyncio.Protocol):
    def __init__(self, where: str) -> None:
        self.where = where  # host:port, for error messages
        self.reader = hiredis.Reader()
        self.pending: deque[_Waiter] = deque()
        self.transport: asyncio.Transport | None = None
        self.buffer: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        # hiredis moves the unread rest of its buffer to the front after each reply past
        # its first kB: a 100 kB read of 1 kB replies costs ~250 us fed at once, ~40 us
        # fed in 8 kB slices (docs/serving.md, "Hot path")
        size = len(data)
        for start in range(0, size, FEED_BYTES):
            self.reader.feed(data, start, min(FEED_BYTES, size - start))
            self._replies()

    def _replies(self) -> None:
        pending = self.pending
        gets = self.reader.gets
        while True:
            reply = gets()
            if reply is False:
                return
            waiter = pending[0]
            replies = waiter.replies
            replies.append(reply)
            if len(replies) < waiter.count:
                continue
            pending.popleft()
            fut = waiter.future
            if fut.done():  # timed out or cancelled: its replies are dropped in step
                continue
            error = next((r for r in replies if isinstance(r, hiredis.ReplyError)), None)
            if error is not None:
                fut.set_exception(RedisCommandError(str(error)))
            else:
                fut.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self.pending:
            fut = self.pending.popleft().future
            if not fut.done():
                fut.set_exception(RedisUnavailable(f"redis connection to {self.where} lost: "
                                                   f"{exc}"))

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.buffer and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.buffer))
        self.buffer.clear()


class PipelinedRedis:
    """``await r.execute("HMGET", key, "vec")``; concurrent calls share one write."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        parsed = urlparse(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.db = int((parsed.path or "/0").lstrip("/") or 0)
        self.password = parsed.password
        self.username = parsed.username
        self.timeout_s = timeout_s
        self._proto: _Protocol | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        async with self._lock:
            if self._proto is not None and not self._proto.closed:
                return self._proto
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.timeout_s):
                    _, proto = await loop.create_connection(
                        lambda: _Protocol(f"{self.host}:{self.port}"), self.host, self.port)
            except (OSError, TimeoutError) as exc:
                raise RedisUnavailable(
                    f"cannot connect to redis at {self.host}:{self.port}: {exc}") from exc
            self._proto = proto
            if self.password:
                auth = (self.username, self.password) if self.username else (self.password,)
                await self._send(proto, [("AUTH", *auth)])
            if self.db:
                await self._send(proto, [("SELECT", str(self.db))])
            return proto

    async def _send(self, proto: _Protocol, commands: list[tuple[Any, ...]]) -> list[Any]:
        loop = asyncio.get_running_loop()
        pack = hiredis.pack_command
        proto.buffer.extend([pack(cmd) for cmd in commands])
        fut: asyncio.Future[list[Any]] = loop.create_future()
        proto.pending.append(_Waiter(fut, len(commands)))
        if not proto.flush_scheduled:
            proto.flush_scheduled = True
            loop.call_soon(proto.flush)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await fut
        except TimeoutError as exc:
            # a reply that never comes leaves the stream out of step: drop the connection
            if proto.transport is not None:
                proto.transport.abort()
            raise RedisUnavailable(f"redis at {self.host}:{self.port} did not answer within "
                                   f"{self.timeout_s} s") from exc

    async def execute(self, *args: Any) -> Any:
        proto = await self._connection()
        return (await self._send(proto, [args]))[0]

    async def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Several commands in one write and one round trip; replies in order."""
        if not commands:
            return []
        proto = await self._connection()
        return await self._send(proto, commands)

    async def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
