"""Pure-ASGI middleware (no BaseHTTPMiddleware overhead): request metrics per route
template and status, and the request-body size bound (413 as JSON)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segstream.serving import metrics
from segstream.serving.errors import PayloadTooLarge, Unauthorized, error_response


class ServingMiddleware:
    """``key_ok`` checks the API key of /v1 requests here rather than in a FastAPI
    dependency: a dependency costs a solve pass per request (~8% of a lookup in the
    profile, docs/serving.md); the OpenAPI schema still declares the scheme."""

    def __init__(self, app: ASGIApp, max_body_bytes: int,
                 key_ok: Callable[[str | None], bool] | None = None) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.key_ok = key_ok
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if self.key_ok is not None and scope["path"].startswith("/v1/"):
            presented = None
            for name, value in scope["headers"]:
                if name == b"x-api-key":
                    presented = value.decode("latin-1")
                    break
            if not self.key_ok(presented):
                err = Unauthorized("missing or unknown API key: send one of the configured "
                                   "keys in the X-API-Key header", field="header.X-API-Key")
                await error_response(err)(scope, receive, send_wrapper)
                self._record(scope, status[0], start)
                return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            buffered = await self._read_bounded(scope, receive)
            if isinstance(buffered, PayloadTooLarge):
                await error_response(buffered)(scope, receive, send_wrapper)
                self._record(scope, status[0], start)
                return
            receive = buffered
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._record(scope, status[0], start)

    def _record(self, scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        key = (path, scope["method"], str(status))
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (metrics.REQUESTS.labels(*key),
                                              metrics.LATENCY.labels(*key))
        children[0].inc()
        children[1].observe(time.perf_counter() - start)

    async def _read_bounded(self, scope: Scope, receive: Receive
                            ) -> Receive | PayloadTooLarge:
        """Read the whole body (bodies here are small) or refuse it past the limit."""
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return PayloadTooLarge(f"request body of {int(value)} bytes exceeds the "
                                       f"limit of {limit} (api_max_body_bytes)", field="body")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message])
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return PayloadTooLarge(f"request body exceeds the limit of {limit} bytes "
                                       "(api_max_body_bytes)", field="body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return _replay([{"type": "http.request", "body": b"".join(chunks),
                         "more_body": False}], then=receive)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()  # e.g. http.disconnect
        return {"type": "http.disconnect"}
    return replay
