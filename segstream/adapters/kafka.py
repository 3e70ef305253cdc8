"""Kafka adapter: topic admin, a fast producer, exact end offsets (reading:
``segstream.adapters.topic_reader``).

Two clients, each where it is strongest (see README, dependencies):

* ``confluent-kafka`` (librdkafka) for producing: ~20x the rate of kafka-python.
* ``kafka-python`` for admin and for reading, including the Spark source, because
  it is pure Python and its offsets API is simple to reason about.

The embedded broker (tansu) answers ListOffsets(latest) with the base offset of the
*last record batch*, not the log end. :func:`exact_end_offsets` is exact on both
real Kafka and tansu: it seeks to that reported offset and reads one fetch, whose
response carries the true high watermark.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError


class KafkaUnavailable(RuntimeError):
    """The bootstrap servers did not answer."""


def wait_for_kafka(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Block until a metadata request succeeds or raise :class:`KafkaUnavailable`."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            admin.list_topics()
            admin.close()
            return
        except (KafkaError, OSError, ValueError) as exc:
            last = exc
            time.sleep(0.3)
    raise KafkaUnavailable(
        f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f} s ({last}); "
        "start one with `segstream stack up` or fix SEGSTREAM_KAFKA_BOOTSTRAP"
    )


def ensure_topics(bootstrap: str, names: list[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        created = []
        for name in missing:
            try:
                admin.create_topics(
                    [NewTopic(name, num_partitions=partitions, replication_factor=1)]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def make_consumer(bootstrap: str, **overrides: Any) -> KafkaConsumer:
    """A group-less consumer for assign/seek reading, with fetch sizes for throughput.

    It never creates a topic: reading a topic that is not there (a restarted embedded
    broker keeps no topics) must say so, not create it with the broker's default
    partition count before `stack up` creates it with the configured one."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "enable_auto_commit": False,
        "group_id": None,
        "fetch_max_bytes": 32 * 1024 * 1024,
        "max_partition_fetch_bytes": 8 * 1024 * 1024,
        "max_poll_records": 10_000,
        "request_timeout_ms": 30_000,
        "allow_auto_create_topics": False,
    }
    config.update(overrides)
    consumer = KafkaConsumer(**config)
    no_topic_auto_creation(consumer._cluster)
    return consumer


def no_topic_auto_creation(cluster: Any) -> None:
    """kafka-python 3.0 builds its metadata requests without the client's
    allow_auto_create_topics, so every refresh asks the broker to create the topics the
    client follows (a restarted embedded broker would get `events` back, with its default
    partition count, from the first reader). Pass a client's ClusterMetadata (``consumer._cluster``,
    ``admin._manager.cluster``)."""
    cluster.config["allow_auto_create_topics"] = False


def partitions_of(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise KafkaError(f"topic {topic!r} does not exist; run `segstream stack up` to create it")
    return [TopicPartition(topic, p) for p in sorted(parts)]


def exact_end_offsets(
    consumer: KafkaConsumer, tps: list[TopicPartition], timeout_s: float = 15.0
) -> dict[TopicPartition, int]:
    """Log-end offset per partition, exact on real Kafka and on tansu.

    Seeks each partition to the reported (possibly too low) end and takes the high
    watermark of a fetch made in this call. kafka-python keeps a partition's last
    high watermark across ``assign()`` calls, so the assignment is cleared first;
    otherwise a reused consumer would report a stale end. Leaves ``consumer``
    assigned to ``tps``; the caller re-seeks. Raises ``TimeoutError`` rather than
    guess when a partition's fetch does not answer.
    """
    if not tps:
        return {}
    consumer.assign([])  # fresh partition states: no high watermark left from before
    reported = consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, reported[tp])
    result: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(result) < len(tps):
        if time.monotonic() > deadline:
            missing = sorted(tp.partition for tp in tps if tp not in result)
            raise TimeoutError(
                f"no fetch answer for partitions {missing} of {tps[0].topic} within "
                f"{timeout_s:.0f} s; is the broker overloaded or the partition leaderless?")
        consumer.poll(timeout_ms=5, max_records=1)  # returns at its timeout when no records
        for tp in tps:
            hw = consumer.highwater(tp)
            if hw is not None and tp not in result:
                result[tp] = max(hw, reported[tp])
    return result


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int


def count_records(bootstrap: str, topic: str) -> int:
    """Records currently in ``topic`` (end - beginning, exact on tansu too)."""
    consumer = make_consumer(bootstrap)
    try:
        tps = partitions_of(consumer, topic)
        begin = consumer.beginning_offsets(tps)
        end = exact_end_offsets(consumer, tps)
        return sum(end[tp] - begin[tp] for tp in tps)
    finally:
        consumer.close()


class Producer:
    """Keyed JSON-bytes producer on librdkafka with delivery-error accounting.

    ``send`` never blocks for long: when the local queue is full it serves
    delivery callbacks and retries. ``close`` flushes and raises if any record
    failed, so nothing is lost silently.
    """

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        from confluent_kafka import Producer as _Producer

        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "compression.type": "none",
            "enable.idempotence": False,
            "acks": "all",
            # Callbacks only for failed records: a Python callback per delivered record
            # costs about as much as producing it.
            "delivery.report.only.error": True,
        }
        config.update(overrides)
        self._producer = _Producer(config)
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1
            self.last_error = str(err)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        hdrs: list[tuple[str, str | bytes | None]] | None = (
            list(headers.items()) if headers else None)
        while True:
            try:
                if hdrs is None:
                    self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                else:
                    self._producer.produce(topic, value, key, headers=hdrs,
                                           on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)
        self.sent += 1
        if self.sent % 10_000 == 0:
            self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise KafkaUnavailable(f"{remaining} records not delivered within {timeout_s} s")
        if self.failed:
            raise KafkaUnavailable(
                f"{self.failed} of {self.sent} records failed delivery: {self.last_error}"
            )

    def close(self) -> None:
        """Flush, then free the librdkafka client now, not when the garbage collector gets
        to it: until then it keeps reconnecting to a broker that may have stopped."""
        try:
            self.flush()
        finally:
            self._producer = None  # type: ignore[assignment]  # a send after close fails
