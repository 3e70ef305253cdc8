"""The lag gauge counts records that arrived while a batch ran (streaming/lag.py).

The progress object is the shape of Spark's (``sources[0].endOffset`` /
``latestOffset`` as JSON); the offsets come from a real topic on the session broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from confluent_kafka import Producer

from segstream.streaming.lag import LagMeter, batch_offsets, behind

pytestmark = pytest.mark.kafka


def _progress(end: dict[str, int], latest: dict[str, int], topic: str) -> SimpleNamespace:
    """As the Python source reports it: with its bookkeeping (``@topic_ids``) entry."""
    ids = {"@topic_ids": {topic: "x"}}
    return SimpleNamespace(sources=[SimpleNamespace(
        endOffset=json.dumps({topic: end, **ids}), latestOffset=json.dumps({topic: latest}))])


def test_records_that_arrive_during_a_batch_are_lag(kafka_bootstrap: str,
                                                    topic_factory: Callable[..., str]) -> None:
    topic = topic_factory("lag", partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):  # 10 records on partition 0, 4 on partition 1
        producer.produce(topic, b"x", partition=0)
        if i < 4:
            producer.produce(topic, b"x", partition=1)
    assert producer.flush(30) == 0
    del producer
    # the batch read partition 0 up to 3 and all of partition 1, and planned it when
    # those were the ends: the source's own figure says nothing is behind
    progress = _progress({"0": 3, "1": 4}, {"0": 3, "1": 4}, topic)
    assert behind(*batch_offsets(progress)) == {(topic, "0"): 0, (topic, "1"): 0}
    meter = LagMeter(kafka_bootstrap)
    try:
        assert meter.lag(progress) == {(topic, "0"): 7, (topic, "1"): 0}
    finally:
        meter.close()


def test_without_a_broker_the_sources_figure_is_kept() -> None:
    meter = LagMeter("127.0.0.1:1", timeout_s=1)
    progress = _progress({"0": 3}, {"0": 5}, "events")
    assert meter.lag(progress) == {("events", "0"): 2}
    meter.close()
