"""Serving fixtures: the API run by a real uvicorn server on a free loopback port, on
the test Redis. The users (records folded from real events of three archetypes), the
model of those archetypes and the API's runner are in tests/support/ (archetypes.py,
models.py, api.py); the webhook receivers' fixture is in tests/conftest.py."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from segstream.config import Settings
from segstream.serving.model_source import ModelSource, StaticSource
from tests.support.api import API_KEY, Api, run_api
from tests.support.models import make_model


@pytest.fixture
def api_factory(settings_factory: Callable[..., Settings], redis_client: Any
                ) -> Iterator[Callable[..., Api]]:
    """``api_factory(source=None, **settings)``: a running API on the test Redis."""
    stack = contextlib.ExitStack()

    def make(source: ModelSource | None = None, **overrides: Any) -> Api:
        base: dict[str, Any] = {"api_keys": [API_KEY], "api_model_poll_s": 0.2}
        base.update(overrides)
        settings = settings_factory(**base)
        src = source if source is not None else StaticSource(make_model(), "1")
        url = stack.enter_context(run_api(settings, src))
        return Api(url, settings, src, {"X-API-Key": API_KEY})

    with stack:
        yield make
