"""Annotated dependencies shared by the routers, and the API key check.

The key itself is checked in :class:`segstream.serving.middleware.ServingMiddleware` (cheaper
than a dependency on the hot path); :data:`api_key_scheme` declares it in OpenAPI.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from segstream.serving.state import AppState

api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="One of the keys in SEGSTREAM_API_KEYS.")


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.serving
    return state


State = Annotated[AppState, Depends(get_state)]


def key_checker(keys: tuple[bytes, ...]) -> Callable[[str | None], bool]:
    """Constant-time comparison against every configured key (no early exit)."""

    def check(presented: str | None) -> bool:
        if presented is None:
            return False
        given = presented.encode()
        ok = False
        for key in keys:
            ok |= hmac.compare_digest(given, key)
        return ok

    return check
