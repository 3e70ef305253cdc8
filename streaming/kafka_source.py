"""A Kafka stream source on PySpark's Python Data Source API (format ``segstream_kafka``).

Same columns as Spark's JVM connector (``format("kafka")``): key, value, topic,
partition, offset, timestamp. Spark offsets are ``{"topic": {"partition": next}}``.

* starting offsets (``startingOffsets``): ``earliest``, ``latest`` or JSON
  ``{"events": {"0": 42}}`` (partitions not named start at the beginning);
* admission control: ``maxOffsetsPerTrigger`` -> ``ReadMaxRows``; the budget is shared
  across partitions in proportion to their backlog;
* ``Trigger.AvailableNow``: the end is measured once when the run starts, exactly (see
  :mod:`segstream.streaming.kafka_offsets`), so nothing is held back at the end of the run;
* partitions added to the topic are picked up from their beginning at the next batch;
* ``failOnDataLoss`` (default ``true``, as Spark's connector): when the checkpoint's
  offsets no longer point into the log (:func:`segstream.streaming.kafka_offsets.find_lost`: the
  topic created again — a new topic id, as after a restart of the embedded broker, which
  keeps no log —, a log that ends before the checkpoint, records deleted before they
  were read, a partition gone), the query stops with :class:`DataLossError` naming each
  partition, before reading anything: never a silent skip. ``false`` is the reset
  policy: those partitions are read from the beginning of their log as it is now (the
  new log of a recreated topic, whole), with a warning, and the batch records where it
  read from (``@reset_from``), so a replay reads the same. The users' Spark state is
  kept, so nothing is counted twice: an event that comes again (a producer replaying)
  is a duplicate or late by the usual rules;
* a broker that does not answer stops the query with ``KafkaUnavailable`` naming it;
  a restart resumes from the checkpoint;
* ``validate`` (``true``: the job's choice): each record goes through the event contract's
  validator inside ``read()``, so the query's columns are ``validate.VALIDATED_SCHEMA``
  and records cross from Python to the JVM once, already validated (a ``mapInArrow``
  after the source was a second crossing of every record);
* ``maxInputPartitions`` (the job passes Spark's default parallelism): Kafka partitions
  are read by at most this many tasks, balanced by records; at a few thousand records
  per batch the per-task overhead, not the reading, is the cost (4 -> 2 tasks took a
  steady 2k events/s batch from 1.13 s to 0.85 s here, docs/benchmarks.md).

The reader holds only options (strings); Kafka clients are opened where they run, and
cached per Python process: driver side one consumer for offsets; worker side, in
``read()``, one confluent-kafka consumer per partition number (see :func:`_reader`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import StructType

from segstream.adapters.kafka import KafkaUnavailable, exact_end_offsets, no_topic_auto_creation
from segstream.streaming.kafka_offsets import (
    Lost,
    Offsets,
    cap_rows,
    find_lost,
    from_spark,
    reset_from_of,
    to_spark,
    topic_id_of,
)
from segstream.streaming.validate import VALIDATED_DDL, validate_values

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
# A fetch's max wait is also the embedded broker's time to find the offset: tansu lists
# every record batch of the partition on each fetch and stops listing when the wait is
# over, so with 10 ms a fetch returned no records at all once a partition held ~20k
# batches (tests/streaming/test_kafka_source.py reads deep in a 40k-batch log).
# Kafka's default 500 ms covers ~300k batches there (40k list in ~60 ms: python -m
# benchmarks.fetch_wait), and costs nothing on real Kafka, which answers a fetch below
# the high watermark at once.
READ_MAX_WAIT_MS = 500
UNKNOWN_TOPIC = 3  # Kafka's UNKNOWN_TOPIC_OR_PARTITION error code

log = logging.getLogger("segstream.stream")
_consumers: dict[str, KafkaConsumer] = {}
_readers: dict[tuple[str, int], Any] = {}  # confluent_kafka.Consumer
#: where each reader's fetch queue is: (topic, next offset) after its last range, so a
#: range that starts there keeps the records already prefetched
_reader_at: dict[tuple[str, int], tuple[str, int]] = {}
_admins: dict[str, KafkaAdminClient] = {}


class DataLossError(RuntimeError):
    """The checkpoint's offsets no longer point into the log (see ``failOnDataLoss``)."""


def _consumer(bootstrap: str) -> KafkaConsumer:
    """The consumer for offsets, one per process and bootstrap: the driver's, and a
    worker's when a stalled read checks the log (:func:`_still_in_log`).

    Measuring the log end fetches at the end, where the broker waits the fetch's max wait
    for data: 100 -> 10 ms took exact_end_offsets from ~135 to ~35 ms. Only the high
    watermark of that fetch is used, which tansu answers however short the wait."""
    from segstream.adapters.kafka import make_consumer

    consumer = _consumers.get(bootstrap)
    if consumer is None:
        # No silent offset reset: an out-of-range fetch raises instead of jumping to the end.
        consumer = _consumers[bootstrap] = make_consumer(
            bootstrap, fetch_max_wait_ms=10, metadata_max_age_ms=3000,
            auto_offset_reset="none")
    return consumer


def _reader(bootstrap: str, partition: int) -> Any:
    """A worker's consumer for reading ranges: one per process, bootstrap and partition
    number (Python workers are reused across tasks), as Spark's own Kafka connector keeps
    one per topic-partition. confluent-kafka (librdkafka): it decodes in C and prefetches,
    3.9-5.6x kafka-python's rate here (``python -m benchmarks.reader``). One consumer per
    partition, so the prefetch of one partition never holds up a fetch of another; keyed
    by partition number, not topic, so a process that reads many topics (the tests) keeps
    no more consumers than partitions."""
    from confluent_kafka import Consumer

    key = (bootstrap, partition)
    consumer = _readers.get(key)
    if consumer is None:
        consumer = _readers[key] = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "segstream-source",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            # an out-of-range position is an error (data loss), never a silent jump
            "auto.offset.reset": "error", "fetch.wait.max.ms": READ_MAX_WAIT_MS,
            "allow.auto.create.topics": False, "log.connection.close": False,
            "logger": log})
    return consumer


def close_clients(bootstrap: str | None = None) -> None:
    """Close this process's cached clients (of ``bootstrap``, or all), e.g. before the
    broker they talk to is stopped: otherwise they go on reconnecting."""
    caches: tuple[dict[Any, Any], ...] = (_consumers, _readers, _admins)
    for cache in caches:
        for key in list(cache):
            if bootstrap in (None, key[0] if isinstance(key, tuple) else key):
                cache.pop(key).close()
    for key in list(_reader_at):
        if bootstrap in (None, key[0]):
            del _reader_at[key]


def _admin(bootstrap: str) -> KafkaAdminClient:
    """The driver's admin client: fresh topic metadata (partitions and topic id) per call."""
    admin = _admins.get(bootstrap)
    if admin is None:
        admin = _admins[bootstrap] = KafkaAdminClient(bootstrap_servers=bootstrap,
                                                      request_timeout_ms=30_000)
        no_topic_auto_creation(admin._manager.cluster)
    return admin


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
        self.fail_on_data_loss = options.get("failondataloss", "true").lower() != "false"
        self.validate = _validates(options)
        self.target: Offsets | None = None  # set by prepareForTriggerAvailableNow
        self.measured: Offsets | None = None  # last measured log end, for lag reporting

    # ---------------------------------------------------------------- driver side
    @contextlib.contextmanager
    def _broker(self, doing: str) -> Iterator[None]:
        """A broker that does not answer stops the query with a message naming it."""
        try:
            yield
        except (KafkaError, TimeoutError, OSError) as exc:
            raise KafkaUnavailable(
                f"the Kafka broker at {self.bootstrap} did not answer while the stream "
                f"{doing} of topic {self.topic!r} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}); the stream stopped before reading "
                "on. Start the broker (`segstream stack up`) and run the job again: it "
                "resumes from its checkpoint") from exc

    def _describe(self) -> tuple[list[TopicPartition], str | None]:
        """The topic's partitions and id, from fresh metadata."""
        with self._broker("read the metadata"):
            (meta,) = _admin(self.bootstrap).describe_topics([self.topic])
        if meta["error_code"] == UNKNOWN_TOPIC or not meta["partitions"]:
            raise ValueError(f"topic {self.topic!r} does not exist on {self.bootstrap}; "
                             "create it (`segstream stack up`) or fix SEGSTREAM_TOPIC_EVENTS")
        if meta["error_code"]:
            raise KafkaUnavailable(f"the Kafka broker at {self.bootstrap} answered error "
                                   f"code {meta['error_code']} for topic {self.topic!r}")
        parts = sorted(int(p["partition_index"]) for p in meta["partitions"])
        topic_id = meta.get("topic_id")
        return [TopicPartition(self.topic, p) for p in parts], (
            str(topic_id) if topic_id else None)

    def _partitions(self) -> list[TopicPartition]:
        return self._describe()[0]

    def _end(self, tps: list[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        consumer = _consumer(self.bootstrap)
        with self._broker("measured the end"):
            end = exact_end_offsets(consumer, tps if tps is not None else self._partitions())
            consumer.assign([])  # the shared driver consumer only serves metadata between calls
        self.measured = to_spark(end)
        return end

    def _begin(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        with self._broker("read the log start"):
            return dict(_consumer(self.bootstrap).beginning_offsets(tps))

    def initialOffset(self) -> Offsets:
        tps, topic_id = self._describe()
        ids = {self.topic: topic_id} if topic_id else None
        begin = self._begin(tps)
        if self.starting == "earliest":
            return to_spark(begin, topic_ids=ids)
        if self.starting == "latest":
            return to_spark(self._end(tps), topic_ids=ids)
        try:
            given = from_spark(json.loads(self.starting))
        except (ValueError, AttributeError, TypeError) as exc:
            raise ValueError(
                f"startingOffsets={self.starting!r}: use earliest, latest or JSON like "
                f'{{"{self.topic}": {{"0": 42}}}}') from exc
        return to_spark({tp: given.get(tp, begin[tp]) for tp in tps}, topic_ids=ids)

    def prepareForTriggerAvailableNow(self) -> None:
        self.target = to_spark(self._end())

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_rows) if self.max_rows else ReadAllAvailable()

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        known = from_spark(start)
        tps, topic_id = self._describe()
        log_begin = self._begin(tps)
        end = from_spark(self.target) if self.target is not None else self._end(tps)
        lost = find_lost(known, log_begin, end, recorded_id=topic_id_of(start, self.topic),
                         current_id=topic_id)
        reset_from = self._on_data_loss(lost, log_begin)
        begin = {tp: off for tp, off in known.items() if tp in end}
        begin.update(reset_from)
        for tp in tps:  # partitions added since the last batch start at their beginning
            begin.setdefault(tp, log_begin[tp])
        end = {tp: max(off, begin.get(tp, 0)) for tp, off in end.items()}  # never backwards
        if isinstance(limit, ReadMaxRows):
            end = cap_rows(begin, end, limit.max_rows)
        return to_spark(end, topic_ids={self.topic: topic_id} if topic_id else None,
                        reset_from=reset_from)

    def _on_data_loss(self, lost: list[Lost], log_begin: dict[TopicPartition, int]
                      ) -> dict[TopicPartition, int]:
        """Raise :class:`DataLossError`, or (``failOnDataLoss=false``) the offsets the lost
        partitions are read from instead: the beginning of their log now."""
        if not lost:
            return {}
        what = "; ".join(x.describe() for x in lost)
        if self.fail_on_data_loss:
            raise DataLossError(
                f"topic {self.topic!r} on {self.bootstrap}: the checkpoint's offsets no "
                f"longer point into the log ({what}). Reading on from them would skip "
                "records or mix two logs, so the stream stopped before reading. To read "
                "those partitions from the beginning of their log as it is now, run the "
                "job with SEGSTREAM_STREAM_FAIL_ON_DATA_LOSS=false (the source option "
                "failOnDataLoss=false): the users' aggregates "
                "in the checkpoint are kept (deleting the checkpoint would lose them)")
        log.warning("data loss on topic %r, failOnDataLoss=false: reading from the "
                    "beginning of the log: %s", self.topic, what)
        return {x.tp: log_begin[x.tp] for x in lost if x.tp in log_begin}

    def reportLatestOffset(self) -> Offsets | None:
        return self.measured  # lag = this - the batch's end offset (no extra broker call)

    def partitions(self, start: Offsets, end: Offsets) -> Sequence[KafkaTask]:
        begin = from_spark(start)
        begin.update(reset_from_of(end))  # a data-loss reset reads from there instead
        ranges = [KafkaRange(tp.topic, tp.partition, begin.get(tp, 0), off)
                  for tp, off in sorted(from_spark(end).items()) if off > begin.get(tp, 0)]
        return group_ranges(ranges, self.max_tasks)

    def commit(self, end: Offsets) -> None:
        pass  # Spark's checkpoint holds the offsets; nothing to commit on the broker

    # ---------------------------------------------------------------- worker side
    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, KafkaTask)
        for r in partition.ranges:
            if self.validate:
                for keys, values, offsets, _ in read_chunks(self.bootstrap, r):
                    yield validate_values(values, keys=keys, topic=r.topic,
                                          partition=r.partition, offsets=offsets)
            else:
                for chunk in read_chunks(self.bootstrap, r):
                    yield _batch(r, chunk)


def read_range(bootstrap: str, r: KafkaRange) -> Iterator[pa.RecordBatch]:
    """Exactly the records with ``r.start <= offset < r.end``, as Arrow batches
    (``SCHEMA``)."""
    for chunk in read_chunks(bootstrap, r):
        yield _batch(r, chunk)


Chunk = tuple[list[Any], list[Any], list[int], list[Any]]  # keys, values, offsets, µs


def read_chunks(bootstrap: str, r: KafkaRange) -> Iterator[Chunk]:
    """Exactly the records with ``r.start <= offset < r.end``, in chunks of at most
    ``ROWS_PER_ARROW_BATCH``."""
    from confluent_kafka import TopicPartition as Assignment

    key = (bootstrap, r.partition)
    consumer = _reader(bootstrap, r.partition)
    if _reader_at.pop(key, None) != (r.topic, r.start):
        consumer.assign([Assignment(r.topic, r.partition, r.start)])
    cols: Chunk = ([], [], [], [])
    position, overshot = r.start, False
    progress_at = time.monotonic()
    while position < r.end:
        for msg in consumer.consume(num_messages=min(ROWS_PER_ARROW_BATCH, r.end - position),
                                    timeout=0.2):
            if msg.error() is not None:
                _on_read_error(msg.error(), position, r)
                continue
            offset = msg.offset()
            if offset >= r.end:  # past a gap (compaction, a transaction marker): this
                position, overshot = r.end, True  # record is the next range's, consumed
                break
            if offset < r.start:
                continue
            cols[0].append(msg.key())
            cols[1].append(msg.value())
            cols[2].append(offset)
            kind, ms = msg.timestamp()
            cols[3].append(ms * 1000 if kind and ms >= 0 else None)
            position = offset + 1
            progress_at = time.monotonic()
        if position < r.end and time.monotonic() - progress_at > STALL_TIMEOUT_S:
            _still_in_log(bootstrap, position, r)
            log.warning("%s[%d]: no record for %.0f s at offset %d of %d, which is still in "
                        "the log: the broker is slow; waiting", r.topic, r.partition,
                        STALL_TIMEOUT_S, position, r.end)
            consumer.assign([Assignment(r.topic, r.partition, position)])
            progress_at = time.monotonic()
        if len(cols[0]) >= ROWS_PER_ARROW_BATCH:
            yield cols
            cols = ([], [], [], [])
    if not overshot:
        _reader_at[key] = (r.topic, r.end)
    if cols[0]:
        yield cols


def _on_read_error(error: Any, position: int, r: KafkaRange) -> None:
    """A consume error: an offset out of range is data loss; others (a broker
    reconnecting) are retried by librdkafka, and a read that stops progressing is
    checked against the log after STALL_TIMEOUT_S."""
    from confluent_kafka import KafkaError as RdKafkaError

    if error.code() in (RdKafkaError._AUTO_OFFSET_RESET, RdKafkaError.OFFSET_OUT_OF_RANGE):
        raise DataLossError(
            f"{r.topic}[{r.partition}]: offset {position} is no longer in the log "
            f"(planned {r.start}..{r.end}): records were deleted or the log was reset "
            "while the batch ran; the stream stopped (see failOnDataLoss)")
    log.debug("%s[%d]: consume error at offset %d: %s", r.topic, r.partition, position, error)


def _still_in_log(bootstrap: str, position: int, r: KafkaRange) -> None:
    """A read that makes no progress: records gone from the log are data loss; records
    still there mean a slow broker, worth waiting for (a timeout here once stopped the
    10-minute soak's job while nothing was lost; that stall was the fetch wait, see
    READ_MAX_WAIT_MS). A broker that does not answer raises, naming itself. The log's
    bounds are measured as the driver measures them, with the same consumer
    (:func:`_consumer`, opened in this process at the first stall)."""
    consumer = _consumer(bootstrap)
    tp = TopicPartition(r.topic, r.partition)
    try:
        begin = consumer.beginning_offsets([tp])[tp]
        end = exact_end_offsets(consumer, [tp], timeout_s=STALL_TIMEOUT_S)[tp]
    except (KafkaError, TimeoutError) as exc:
        raise KafkaUnavailable(
            f"{r.topic}[{r.partition}]: no record for {STALL_TIMEOUT_S:.0f} s at offset "
            f"{position} of {r.end}, and the broker does not answer ({exc})") from exc
    finally:
        consumer.assign([])
    if not begin <= position < end:
        raise DataLossError(
            f"{r.topic}[{r.partition}]: offset {position} is no longer in the log (now "
            f"{begin}..{end}, planned {r.start}..{r.end}): records were deleted or the log "
            "was reset while the batch ran; the stream stopped (see failOnDataLoss)")


def _batch(r: KafkaRange, cols: Chunk) -> pa.RecordBatch:
    n = len(cols[0])
    return pa.RecordBatch.from_arrays([
        pa.array(cols[0], pa.binary()), pa.array(cols[1], pa.binary()),
        pa.array([r.topic] * n, pa.string()), pa.array([r.partition] * n, pa.int32()),
        pa.array(cols[2], pa.int64()), pa.array(cols[3], pa.timestamp("us", tz="UTC")),
    ], schema=ARROW_SCHEMA)


def _validates(options: Any) -> bool:
    lowered = {str(k).lower(): str(v) for k, v in dict(options).items()}
    return lowered.get("validate", "false").lower() == "true"


class KafkaSource(DataSource):  # type: ignore[misc]
    """``spark.readStream.format("segstream_kafka").option("subscribe", topic)...``"""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> str:
        return VALIDATED_DDL if _validates(self.options) else SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KafkaStreamReader(dict(self.options))
