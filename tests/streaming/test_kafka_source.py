"""The Kafka stream source: every record in exactly one micro-batch, on the real broker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segstream.adapters.kafka import Producer
from segstream.streaming.kafka_source import FORMAT, KafkaSource

pytestmark = [pytest.mark.spark, pytest.mark.kafka]


def _run(spark: Any, bootstrap: str, topic: str, checkpoint: Path, max_rows: int,
         starting: str = "earliest") -> list[list[tuple[int, int, bytes]]]:
    spark.dataSource.register(KafkaSource)
    batches: list[list[tuple[int, int, bytes]]] = []

    def collect(df: Any, _batch_id: int) -> None:
        batches.append([(r["partition"], r["offset"], bytes(r["value"]))
                        for r in df.select("partition", "offset", "value").collect()])

    query = (spark.readStream.format(FORMAT).option("kafka.bootstrap.servers", bootstrap)
             .option("subscribe", topic).option("startingOffsets", starting)
             .option("maxOffsetsPerTrigger", str(max_rows))
             .option("maxInputPartitions", "2").load()  # several partitions per task
             .writeStream.foreachBatch(collect).option("checkpointLocation", str(checkpoint))
             .trigger(availableNow=True).start())
    query.awaitTermination()
    assert query.exception() is None
    return [b for b in batches if b]


def _send(bootstrap: str, topic: str, values: list[bytes], flushes: int) -> None:
    producer = Producer(bootstrap)
    step = len(values) // flushes
    for lo in range(0, len(values), step):
        for i, v in enumerate(values[lo:lo + step]):
            producer.send(topic, v, key=str((lo + i) % 11).encode())
        producer.flush()  # one record batch per flush and partition
    del producer  # destroy the librdkafka client now, not after the broker has stopped


def test_every_record_exactly_once_then_only_new_ones(
    spark: Any, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("src", partitions=3)
    first = [f"a{i}".encode() for i in range(1200)]
    _send(kafka_bootstrap, topic, first, flushes=4)
    batches = _run(spark, kafka_bootstrap, topic, tmp_path / "cp", max_rows=250)
    seen = [rec for batch in batches for rec in batch]
    assert sorted(v for _, _, v in seen) == sorted(first)  # none lost, none twice
    assert len({(p, o) for p, o, _ in seen}) == len(seen)
    assert all(len(b) <= 250 for b in batches) and len(batches) >= 1200 // 250
    # the same checkpoint later: exactly the records produced since, nothing held back
    second = [f"b{i}".encode() for i in range(300)]
    _send(kafka_bootstrap, topic, second, flushes=3)
    again = [rec for b in _run(spark, kafka_bootstrap, topic, tmp_path / "cp", 250) for rec in b]
    assert sorted(v for _, _, v in again) == sorted(second)


def test_latest_and_explicit_starting_offsets(
    spark: Any, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("src", partitions=2)
    values = [f"c{i}".encode() for i in range(100)]
    _send(kafka_bootstrap, topic, values, flushes=2)
    assert _run(spark, kafka_bootstrap, topic, tmp_path / "latest", 1000, "latest") == []
    explicit = f'{{"{topic}": {{"0": 10}}}}'  # partition 1 not named: from its beginning
    got = [r for b in _run(spark, kafka_bootstrap, topic, tmp_path / "json", 1000, explicit)
           for r in b]
    assert min(o for p, o, _ in got if p == 0) == 10
    assert len(got) == len(values) - 10


@pytest.mark.kafka
def test_partition_unknown_to_the_checkpoint_is_read_from_its_beginning(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    # The embedded broker cannot add partitions (no CreatePartitions), so the new
    # partition is shown the way the reader meets one: absent from the start offsets.
    from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

    from segstream.streaming.kafka_source import KafkaStreamReader

    topic = topic_factory("src", partitions=3)
    _send(kafka_bootstrap, topic, [f"d{i}".encode() for i in range(99)], flushes=3)
    reader = KafkaStreamReader({"kafka.bootstrap.servers": kafka_bootstrap,
                                "subscribe": topic})
    end = reader.latestOffset({topic: {"0": 0, "1": 0}}, ReadAllAvailable())
    assert set(end[topic]) == {"0", "1", "2"} and sum(end[topic].values()) == 99
    ranges = [r for task in reader.partitions({topic: {"0": 0, "1": 0}}, end)
              for r in task.ranges]
    assert {(r.partition, r.start) for r in ranges} == {(0, 0), (1, 0), (2, 0)}
    capped = reader.latestOffset({topic: {"0": 0, "1": 0, "2": 0}}, ReadMaxRows(30))
    assert sum(capped[topic].values()) == 30


def test_a_range_deep_in_a_long_log_is_read(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """The 10-minute soak's stuck reader. The embedded broker lists a partition's record
    batches on every fetch and stops when the fetch's max wait is over: with the 10 ms
    wait the reader had, a fetch deep in a log of ~20k batches returned no records, and
    the reader waited for them forever while the broker answered every offset query."""
    from segstream.streaming.kafka_source import KafkaRange, read_range

    topic = topic_factory("deep", partitions=1)
    producer = Producer(kafka_bootstrap, **{"linger.ms": 0, "batch.num.messages": 1})
    for i in range(40_000):  # one record batch each
        producer.send(topic, b"v%d" % i, key=b"k")
    producer.close()
    got: list[Any] = []
    wanted = KafkaRange(topic, 0, 39_000, 40_000)
    reader = threading.Thread(target=lambda: got.extend(read_range(kafka_bootstrap, wanted)),
                              daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "no records came back from deep in the log within 60 s"
    assert [o for b in got for o in b.column("offset").to_pylist()] == list(range(39_000, 40_000))
