"""Fixtures of the streaming tests: a private Redis database. Their helpers (a job's
settings and topics, producing a log, comparing Redis with the batch features) are in
tests/support/streaming.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.servers import flushed_redis

STREAM_REDIS_DB = 7  # other suites flush db 0 between their tests


@pytest.fixture(scope="session")
def stream_redis_url(redis_url: str) -> str:
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    return f"{base}/{STREAM_REDIS_DB}"


@pytest.fixture
def stream_redis(stream_redis_url: str) -> Iterator[Any]:
    yield from flushed_redis(stream_redis_url)


