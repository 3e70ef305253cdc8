"""Helpers of the streaming tests: a private Redis database, producing a generated log."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from segstream.config import Settings
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


def job_env(settings: Settings, kafka_bootstrap: str, redis_url: str, **extra: Any
            ) -> dict[str, str]:
    """The environment of a `segstream stream` subprocess on these settings' data dir and
    topics (``extra``: more settings, by field name)."""
    fields = {"data_dir": settings.data_dir, "kafka_bootstrap": kafka_bootstrap,
              "redis_url": redis_url, "topic_events": settings.topic_events,
              "topic_dlq": settings.topic_dlq, "topic_features": settings.topic_features,
              "spark_shuffle_partitions": 2, **extra}
    return {**os.environ, **{f"SEGSTREAM_{k.upper()}": str(v) for k, v in fields.items()}}
