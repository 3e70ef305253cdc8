"""Annotated dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from serving.errors import Unauthorized
from serving.state import AppState

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="One of the keys in SEGSTREAM_API_KEYS.")


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.serving
    return state


State = Annotated[AppState, Depends(get_state)]


def require_api_key(state: State,
                    key: Annotated[str | None, Security(_api_key_header)]) -> None:
    if not state.settings.api_auth_enabled:
        return
    if not state.key_ok(key):
        raise Unauthorized("missing or unknown API key: send one of the configured keys "
                           "in the X-API-Key header", field="header.X-API-Key")


ApiKey = Depends(require_api_key)
