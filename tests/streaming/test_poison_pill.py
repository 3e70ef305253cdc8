"""A record too large for the DLQ topic cannot stop the stream.

A 10 MB record (valid JSON, a large ``properties`` object) that the broker accepts is
rejected by the validator as ``record_too_large``. Before the fix the sink produced all
10 MB to ``events.dlq``, librdkafka refused it (MSG_SIZE_TOO_LARGE), the batch failed,
and every restart failed on the same batch. Now the DLQ holds a bounded excerpt with the
size and hash, the full bytes are in the dead-letter store, and the records around it
are processed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from segstream.adapters.dead_letters import DLQ_EXCERPT_BYTES, DeadLetterStore
from segstream.adapters.kafka import Producer
from segstream.adapters.topic_reader import read_topic
from segstream.core.contract import (
    DLQ_HEADER_ORIGINAL_BYTES,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SHA256,
    DLQ_HEADER_STORED,
)
from segstream.core.events import Rejection, validate_event
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.job import run
from tests.support.streaming import job_settings, redis_records

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

PILL_BYTES = 10 * 1024 * 1024


def test_a_10_mb_record_is_dead_lettered_and_the_records_around_it_are_processed(
        spark: Any, kafka_bootstrap: str, stream_redis_url: str, tmp_path: Path
        ) -> None:
    log = generate(GeneratorConfig(users=12, events=300, seed=5, days=3))
    settings = job_settings(tmp_path, kafka_bootstrap, stream_redis_url, "pill",
                            stream_max_records_per_trigger=1000)
    first = orjson.loads(log.values[0])
    pill = orjson.dumps({"user_id": "u-pill", "ts": first["ts"], "event_type": "view",
                         "properties": {"blob": "x" * PILL_BYTES}})
    # the producer's own limit (1 MB) is raised so that the broker gets the record
    producer = Producer(kafka_bootstrap, **{"message.max.bytes": 16 * 1024 * 1024})
    half = len(log.values) // 2
    for key, value in zip(log.keys[:half], log.values[:half], strict=True):
        producer.send(settings.topic_events, value, key=key)
    producer.send(settings.topic_events, pill, key=b"u-pill")
    for key, value in zip(log.keys[half:], log.values[half:], strict=True):
        producer.send(settings.topic_events, value, key=key)
    producer.flush()
    del producer

    client = redis.Redis.from_url(stream_redis_url)
    client.flushdb()
    run(spark, settings, bootstrap=kafka_bootstrap, redis_url=stream_redis_url,
        available_now=True)

    dlq = list(read_topic(kafka_bootstrap, settings.topic_dlq))
    assert [r.headers[DLQ_HEADER_REASON] for r in dlq] == [b"record_too_large"]
    letter = dlq[0]
    assert letter.value == pill[:DLQ_EXCERPT_BYTES]
    assert int(letter.headers[DLQ_HEADER_ORIGINAL_BYTES]) == len(pill)
    assert letter.headers[DLQ_HEADER_SHA256].decode() == hashlib.sha256(pill).hexdigest()
    stored = DeadLetterStore(settings.dead_letter_dir).read(
        letter.headers[DLQ_HEADER_STORED].decode())
    assert stored["value"].tolist() == [pill] and stored["key"].tolist() == [b"u-pill"]

    # every other record went through: each user's event count is its valid events
    valid = [ev for v in log.values if not isinstance(ev := validate_event(v), Rejection)]
    assert len(valid) == len(log.values)
    expected: dict[str, int] = {}
    for ev in valid:
        expected[ev["user_id"]] = expected.get(ev["user_id"], 0) + 1
    online = redis_records(client, settings)
    assert {u: r.events for u, r in online.items()} == expected
