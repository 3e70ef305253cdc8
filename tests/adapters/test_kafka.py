"""Kafka adapter against the real embedded broker."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from segstream.adapters.kafka import (
    Producer,
    count_records,
    exact_end_offsets,
    make_consumer,
    partitions_of,
)
from segstream.adapters.topic_reader import read_topic

pytestmark = pytest.mark.kafka


def test_exact_end_offsets_count_every_record(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("ends", partitions=3)
    producer = Producer(kafka_bootstrap)
    for i in range(3000):
        producer.send(topic, b"v%d" % i, key=b"k%d" % (i % 17))
    producer.flush()
    for i in range(7):  # a second, small batch: the last batch's base offset != end
        producer.send(topic, b"w%d" % i, key=b"k%d" % i)
    producer.flush()

    consumer = make_consumer(kafka_bootstrap)
    tps = partitions_of(consumer, topic)
    ends = exact_end_offsets(consumer, tps)
    consumer.close()
    assert sum(ends.values()) == 3007
    assert count_records(kafka_bootstrap, topic) == 3007
    values = sorted(r.value for r in read_topic(kafka_bootstrap, topic) if r.value)
    assert values == sorted([b"v%d" % i for i in range(3000)] + [b"w%d" % i for i in range(7)])


def test_empty_topic_counts_zero(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    assert count_records(kafka_bootstrap, topic_factory("empty", partitions=2)) == 0


def test_headers_and_keys_round_trip(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("hdr", partitions=1)
    producer = Producer(kafka_bootstrap)
    producer.send(topic, b"x", key=b"user-1", headers={"reason": b"late"})
    producer.flush()
    (rec,) = list(read_topic(kafka_bootstrap, topic))
    assert (rec.key, rec.value, rec.headers) == (b"user-1", b"x", {"reason": b"late"})


def test_a_reused_consumer_sees_the_new_end_not_a_stale_watermark(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("reuse", partitions=1)
    producer = Producer(kafka_bootstrap)
    consumer = make_consumer(kafka_bootstrap)
    tps = partitions_of(consumer, topic)
    try:
        for batch, expected in ((50, 50), (30, 80), (1, 81)):
            for i in range(batch):
                producer.send(topic, b"x%d" % i)
            producer.flush()
            assert exact_end_offsets(consumer, tps)[tps[0]] == expected
    finally:
        consumer.close()


def test_a_consumer_never_creates_the_topic_it_asks_for(kafka_bootstrap: str) -> None:
    """A restarted embedded broker has no topics: the updater's or detector's consumer
    following `features` must find it missing, not create it with the broker's default
    partition count (kafka-python 3.0 asks the broker to create every topic it follows,
    whatever its allow_auto_create_topics says)."""
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.errors import KafkaError

    name = f"absent-{os.getpid()}-{time.monotonic_ns()}"
    consumer = make_consumer(kafka_bootstrap, metadata_max_age_ms=200)
    try:
        with pytest.raises(KafkaError, match="does not exist"):
            partitions_of(consumer, name)
        consumer.assign([TopicPartition(name, 0)])  # followed: refreshed in the background
        consumer.poll(timeout_ms=1500)
    finally:
        consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert name not in admin.list_topics()
    finally:
        admin.close()
