"""A Kafka stream source on PySpark's Python Data Source API (format ``segstream_kafka``).

Same columns as Spark's JVM connector (``format("kafka")``): key, value, topic,
partition, offset, timestamp. Spark offsets are ``{"topic": {"partition": next}}``.

* starting offsets (``startingOffsets``): ``earliest``, ``latest`` or JSON
  ``{"events": {"0": 42}}`` (partitions not named start at the beginning);
* admission control: ``maxOffsetsPerTrigger`` -> ``ReadMaxRows``; the budget is shared
  across partitions in proportion to their backlog;
* ``Trigger.AvailableNow``: the end is measured once when the run starts, exactly (see
  :mod:`streaming.kafka_offsets`), so nothing is held back at the end of the run;
* partitions added to the topic are picked up from their beginning at the next batch;
* ``maxInputPartitions`` (the job passes Spark's default parallelism): Kafka partitions
  are read by at most this many tasks, balanced by records; at a few thousand records
  per batch the per-task overhead, not the reading, is the cost (4 -> 2 tasks took a
  steady 2k events/s batch from 1.13 s to 0.85 s here, docs/benchmarks.md).

The reader holds only options (strings); Kafka clients are opened where they run: one
cached consumer per Python process, driver side for offsets, worker side in ``read()``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from kafka import KafkaConsumer, TopicPartition
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import StructType

from segstream.kafka import exact_end_offsets
from streaming.kafka_offsets import Offsets, cap_rows, from_spark, to_spark

FORMAT = "segstream_kafka"
SCHEMA = ("key binary, value binary, topic string, partition int, offset long, "
          "timestamp timestamp")
ARROW_SCHEMA = pa.schema([
    ("key", pa.binary()), ("value", pa.binary()), ("topic", pa.string()),
    ("partition", pa.int32()), ("offset", pa.int64()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
])
ROWS_PER_ARROW_BATCH = 20_000
STALL_TIMEOUT_S = 60.0

_consumers: dict[str, KafkaConsumer] = {}


def _consumer(bootstrap: str) -> KafkaConsumer:
    """One consumer per process and bootstrap (Python workers are reused across tasks)."""
    consumer = _consumers.get(bootstrap)
    if consumer is None:
        from segstream.kafka import make_consumer

        # fetch_max_wait_ms: measuring the log end fetches at the end, where the broker
        # waits this long for data; 100 -> 10 ms took exact_end_offsets from ~135 to ~35 ms
        consumer = make_consumer(bootstrap, fetch_max_wait_ms=10, metadata_max_age_ms=3000)
        _consumers[bootstrap] = consumer
    return consumer


@dataclass(frozen=True)
class KafkaRange(InputPartition):  # type: ignore[misc]
    topic: str
    partition: int
    start: int
    end: int


@dataclass(frozen=True)
class KafkaTask(InputPartition):  # type: ignore[misc]
    """What one Spark task reads: one or more partition ranges, in order."""

    ranges: tuple[KafkaRange, ...]


def group_ranges(ranges: Sequence[KafkaRange], max_tasks: int | None) -> list[KafkaTask]:
    """At most ``max_tasks`` tasks, balanced by record count (largest range first).

    >>> rs = [KafkaRange("t", p, 0, n) for p, n in enumerate([50, 10, 40, 30])]
    >>> [[r.partition for r in t.ranges] for t in group_ranges(rs, 2)]
    [[0, 1], [2, 3]]
    >>> len(group_ranges(rs, None)), len(group_ranges(rs[:1], 4))
    (4, 1)
    """
    n_tasks = len(ranges) if not max_tasks else min(max_tasks, len(ranges))
    bins: list[list[KafkaRange]] = [[] for _ in range(n_tasks)]
    loads = [0] * n_tasks
    for r in sorted(ranges, key=lambda r: r.end - r.start, reverse=True):
        i = loads.index(min(loads))
        bins[i].append(r)
        loads[i] += r.end - r.start
    return [KafkaTask(tuple(sorted(b, key=lambda r: r.partition))) for b in bins if b]


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):  # type: ignore[misc]
    def __init__(self, options: dict[str, str]) -> None:
        options = {k.lower(): v for k, v in options.items()}  # Spark options ignore case
        try:
            self.bootstrap = options["kafka.bootstrap.servers"]
            self.topic = options["subscribe"]
        except KeyError as exc:
            raise ValueError(f"option {exc.args[0]!r} is required by {FORMAT}") from exc
        self.starting = options.get("startingoffsets", "earliest")
        max_rows = options.get("maxoffsetspertrigger")
        self.max_rows = int(max_rows) if max_rows else None
        max_tasks = options.get("maxinputpartitions")
        self.max_tasks = int(max_tasks) if max_tasks else None
        self.target: Offsets | None = None  # set by prepareForTriggerAvailableNow
        self.measured: Offsets | None = None  # last measured log end, for lag reporting

    # ---------------------------------------------------------------- driver side
    def _partitions(self) -> list[TopicPartition]:
        consumer = _consumer(self.bootstrap)
        parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            raise ValueError(f"topic {self.topic!r} does not exist on {self.bootstrap}; "
                             "create it (`segstream stack up`) or fix SEGSTREAM_TOPIC_EVENTS")
        return [TopicPartition(self.topic, p) for p in sorted(parts)]

    def _end(self) -> dict[TopicPartition, int]:
        consumer = _consumer(self.bootstrap)
        end = exact_end_offsets(consumer, self._partitions())
        consumer.assign([])  # the shared driver consumer only serves metadata between calls
        self.measured = to_spark(end)
        return end

    def initialOffset(self) -> Offsets:
        tps = self._partitions()
        consumer = _consumer(self.bootstrap)
        begin = consumer.beginning_offsets(tps)
        if self.starting == "earliest":
            return to_spark(begin)
        if self.starting == "latest":
            return to_spark(self._end())
        try:
            given = from_spark(json.loads(self.starting))
        except (ValueError, AttributeError, TypeError) as exc:
            raise ValueError(
                f"startingOffsets={self.starting!r}: use earliest, latest or JSON like "
                f'{{"{self.topic}": {{"0": 42}}}}') from exc
        return to_spark({tp: given.get(tp, begin[tp]) for tp in tps})

    def prepareForTriggerAvailableNow(self) -> None:
        self.target = to_spark(self._end())

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_rows) if self.max_rows else ReadAllAvailable()

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        begin = from_spark(start)
        if self.target is not None:
            end = from_spark(self.target)
        else:
            end = self._end()
            consumer = _consumer(self.bootstrap)
            new = [tp for tp in end if tp not in begin]
            if new:  # partitions added since the last batch start at their beginning
                begin.update(consumer.beginning_offsets(new))
        end = {tp: max(end[tp], begin.get(tp, 0)) for tp in end}
        for tp, off in begin.items():  # never move a known partition backwards
            end.setdefault(tp, off)
        if isinstance(limit, ReadMaxRows):
            end = cap_rows(begin, end, limit.max_rows)
        return to_spark(end)

    def reportLatestOffset(self) -> Offsets | None:
        return self.measured  # lag = this - the batch's end offset (no extra broker call)

    def partitions(self, start: Offsets, end: Offsets) -> Sequence[KafkaTask]:
        begin = from_spark(start)
        ranges = [KafkaRange(tp.topic, tp.partition, begin.get(tp, 0), off)
                  for tp, off in sorted(from_spark(end).items()) if off > begin.get(tp, 0)]
        return group_ranges(ranges, self.max_tasks)

    def commit(self, end: Offsets) -> None:
        pass  # Spark's checkpoint holds the offsets; nothing to commit on the broker

    # ---------------------------------------------------------------- worker side
    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, KafkaTask)
        for r in partition.ranges:
            yield from read_range(self.bootstrap, r)


def read_range(bootstrap: str, r: KafkaRange) -> Iterator[pa.RecordBatch]:
    """Exactly the records with ``r.start <= offset < r.end``, as Arrow batches."""
    consumer = _consumer(bootstrap)
    tp = TopicPartition(r.topic, r.partition)
    consumer.assign([tp])
    consumer.seek(tp, r.start)
    cols: list[list[Any]] = [[], [], [], [], []]
    position = r.start
    progress_at = time.monotonic()
    while position < r.end:
        batches = consumer.poll(timeout_ms=200, max_records=ROWS_PER_ARROW_BATCH)
        for msg in batches.get(tp, []):
            if msg.offset >= r.end:
                break
            if msg.offset < r.start:
                continue
            cols[0].append(msg.key)
            cols[1].append(msg.value)
            cols[2].append(msg.offset)
            cols[3].append(msg.timestamp * 1000 if msg.timestamp is not None
                           and msg.timestamp >= 0 else None)
        new_position = consumer.position(tp)
        if new_position > position:
            position, progress_at = new_position, time.monotonic()
        elif time.monotonic() - progress_at > STALL_TIMEOUT_S:
            raise TimeoutError(
                f"{r.topic}[{r.partition}] stuck at offset {position} of {r.end} for "
                f"{STALL_TIMEOUT_S:.0f} s; was the topic deleted or truncated?")
        if len(cols[0]) >= ROWS_PER_ARROW_BATCH:
            yield _batch(r, cols)
            cols = [[], [], [], [], []]
    if cols[0]:
        yield _batch(r, cols)


def _batch(r: KafkaRange, cols: list[list[Any]]) -> pa.RecordBatch:
    n = len(cols[0])
    return pa.RecordBatch.from_arrays([
        pa.array(cols[0], pa.binary()), pa.array(cols[1], pa.binary()),
        pa.array([r.topic] * n, pa.string()), pa.array([r.partition] * n, pa.int32()),
        pa.array(cols[2], pa.int64()), pa.array(cols[3], pa.timestamp("us", tz="UTC")),
    ], schema=ARROW_SCHEMA)


class KafkaSource(DataSource):  # type: ignore[misc]
    """``spark.readStream.format("segstream_kafka").option("subscribe", topic)...``"""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KafkaStreamReader(dict(self.options))
