"""Helpers of the streaming tests: a private Redis database, producing a generated log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from segstream.generator import GeneratedLog
from segstream.kafka import Producer
from tests.conftest import flushed_redis

STREAM_REDIS_DB = 7  # other suites flush db 0 between their tests


@pytest.fixture(scope="session")
def stream_redis_url(redis_url: str) -> str:
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    return f"{base}/{STREAM_REDIS_DB}"


@pytest.fixture
def stream_redis(stream_redis_url: str) -> Iterator[Any]:
    yield from flushed_redis(stream_redis_url)


def produce(bootstrap: str, topic: str, log: GeneratedLog, chunks: int = 1) -> None:
    """Send the log in order, keyed as generated; several flushes make several record
    batches per partition (the embedded broker under-reports the end of the last one)."""
    producer = Producer(bootstrap)
    step = max(len(log.values) // chunks, 1)
    for lo in range(0, len(log.values), step):
        for key, value in zip(log.keys[lo:lo + step], log.values[lo:lo + step], strict=True):
            producer.send(topic, value, key=key)
        producer.flush()
    del producer  # destroy the librdkafka client now, not after the broker has stopped
