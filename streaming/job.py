"""The streaming job: Kafka `events` -> validate -> per-group state (arrival rules, the
aggregate fold) -> each touched user's aggregate record to Redis, the `features` topic
and the Parquet history; rejects and late -> `events.dlq`.

read and validate (``read_events``: inside the Python source's ``read()``, or a
``mapInArrow`` after Spark's JVM source) -> the state step (``make_update``) -> write
(``Sinks``), one ``foreachBatch`` per micro-batch.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
import time
import weakref
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.listener import StreamingQueryListener
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.state import GroupStateTimeout

from segstream.adapters.dead_letters import DeadLetterStore
from segstream.config import Settings
from segstream.streaming import metrics
from segstream.streaming.durations import duration_ms
from segstream.streaming.lag import LagMeter
from segstream.streaming.late_bytes import LateBytes
from segstream.streaming.sinks import KafkaMarker, Sinks
from segstream.streaming.spark_state import (
    DEAD_COLUMNS,
    OUTPUT_SCHEMA,
    RECORD_COLUMNS,
    STATE_SCHEMA,
    make_update,
    validated,
    with_bucket,
)

log = logging.getLogger("segstream.stream")


#: sessions the Python source is registered in (registering again logs a warning)
_REGISTERED: weakref.WeakSet[SparkSession] = weakref.WeakSet()


class SourceUnavailable(RuntimeError):
    """The requested Kafka source cannot be used here; the message says what to do."""


def read_events(spark: SparkSession, settings: Settings, bootstrap: str, source: str
                ) -> DataFrame:
    """The `events` topic, validated (``validate.VALIDATED_SCHEMA``)."""
    if source == "python":
        from segstream.streaming.kafka_source import FORMAT, KafkaSource

        if spark not in _REGISTERED:
            spark.dataSource.register(KafkaSource)
            _REGISTERED.add(spark)
        fmt = FORMAT
    else:
        fmt = "kafka"
    reader = (spark.readStream.format(fmt)
              .option("kafka.bootstrap.servers", bootstrap)
              .option("subscribe", settings.topic_events)
              .option("startingOffsets", settings.stream_starting_offsets)
              .option("maxOffsetsPerTrigger", str(settings.stream_max_records_per_trigger)))
    if source == "python":  # one read task per core at most (see kafka_source)
        reader = reader.option("maxInputPartitions",
                               str(spark.sparkContext.defaultParallelism))
        reader = reader.option("validate", "true")
    reader = reader.option("failOnDataLoss", str(settings.stream_fail_on_data_loss).lower())
    try:
        df = reader.load()
    except Exception as exc:
        if source == "kafka" and "kafka" in str(exc).lower():
            raise SourceUnavailable(
                "--source kafka needs Spark's Kafka connector (spark-sql-kafka-0-10 jar, e.g. "
                "spark.jars.packages), which is not installed here; use --source python"
            ) from exc
        raise
    return df if source == "python" else validated(df)


def transform(events: DataFrame, settings: Settings) -> DataFrame:
    """Validated records -> the state function's output (kind = record/late/rejected/
    duplicates/expired)."""
    expiry = settings.stream_state_expiry_days
    update = make_update(watermark_ms=duration_ms(settings.stream_watermark),
                         params=settings.feature_params(),
                         expiry_ms=None if expiry is None else int(expiry * 86_400_000))
    grouped = with_bucket(events, settings.stream_state_buckets).groupBy("bucket")
    return grouped.applyInPandasWithState(
        update, outputStructType=OUTPUT_SCHEMA, stateStructType=STATE_SCHEMA,
        # No timeout: a timeout makes Spark run empty batches forever, so an available-now
        # run would never end. A user's state has a fixed size; idle users are dropped by
        # stream_state_expiry_days when their group is next touched.
        outputMode="update", timeoutConf=GroupStateTimeout.NoTimeout)


@dataclass
class BatchStats:
    users: int = 0
    dead: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    expired: int = 0
    redis_stale: int = 0
    seconds: float = 0.0


class BatchWriter:
    """The ``foreachBatch`` function: the touched users' records and dead letters to the
    sinks."""

    def __init__(self, settings: Settings, sinks: Sinks, late_bytes: LateBytes) -> None:
        self.settings = settings
        self.sinks = sinks
        self.late_bytes = late_bytes
        self.stats: dict[int, BatchStats] = {}

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        t0 = time.monotonic()
        # One action: the output is small (a row per touched user, dead letters, counts).
        out = batch.toArrow().to_pandas()
        t_compute = time.monotonic() - t0
        kind = out["kind"]
        records = out[kind == "record"][list(RECORD_COLUMNS)].reset_index(drop=True)
        dead = out[kind.isin(["late", "rejected"])][list(DEAD_COLUMNS)].reset_index(drop=True)
        dead = self.late_bytes.fill(dead)
        # upd is the wall clock: when the record was written, whatever clock readers use
        result = self.sinks.write(batch_id, records, dead, int(time.time() * 1000))
        log.debug("batch %d: read+validate+state %.2f s, sinks %.2f s", batch_id,
                  t_compute, time.monotonic() - t0 - t_compute)
        self.stats[batch_id] = BatchStats(
            users=len(records),
            dead={str(k): int(v) for k, v in dead["reason"].value_counts().items()},
            duplicates=int(out.loc[kind == "duplicates", "count"].sum()),
            expired=int(out.loc[kind == "expired", "count"].sum()),
            redis_stale=result.redis_stale, seconds=time.monotonic() - t0)


class BatchLogger(StreamingQueryListener):  # type: ignore[misc]
    """Per micro-batch: one log line (rows, rows/s, DLQ count, lag per partition) and the
    Prometheus metrics of streaming/metrics.py."""

    def __init__(self, writer: BatchWriter, lag: LagMeter) -> None:
        self.writer = writer
        self.lag_meter = lag

    def onQueryStarted(self, event: Any) -> None:
        log.info("stream started: id=%s", event.id)
        metrics.observe_alive()

    def onQueryProgress(self, event: Any) -> None:
        p = event.progress
        stats = self.writer.stats.pop(p.batchId, BatchStats())
        lag = self.lag_meter.lag(p)
        dlq = sum(stats.dead.values())
        log.info(
            "batch %d: %d rows in %.2f s (%.0f rows/s), %d users updated, DLQ %d %s, "
            "duplicates %d, expired %d, lag %s, ms %s",
            p.batchId, p.numInputRows, (p.batchDuration or 0) / 1000.0,
            p.processedRowsPerSecond or 0.0, stats.users, dlq, stats.dead or "",
            stats.duplicates, stats.expired,
            {f"{t}:{part}": n for (t, part), n in lag.items()} or "-", p.durationMs)
        metrics.observe_batch(
            rows=int(p.numInputRows or 0), duration_s=(p.batchDuration or 0) / 1000.0,
            input_rate=float(p.inputRowsPerSecond or 0.0),
            processed_rate=float(p.processedRowsPerSecond or 0.0), users=stats.users,
            dead=stats.dead, duplicates=stats.duplicates, expired=stats.expired,
            redis_stale=stats.redis_stale, lag=lag)

    def onQueryIdle(self, event: Any) -> None:
        metrics.observe_alive()  # a caught-up job reports idle every 10 s: not hung

    def onQueryTerminated(self, event: Any) -> None:
        log.info("stream stopped: id=%s%s", event.id,
                 f" error: {event.exception}" if event.exception else "")


def make_sinks(settings: Settings, *, bootstrap: str, redis_url: str) -> Sinks:
    """The job's sinks for these settings (Redis, the features topic, the Parquet
    history, the DLQ), its marker inside the checkpoint."""
    checkpoint = settings.checkpoint_dir
    return Sinks(redis_url=redis_url, bootstrap=bootstrap,
                 topic_features=settings.topic_features, topic_dlq=settings.topic_dlq,
                 ttl_s=settings.feature_ttl_s, history_dir=settings.history_dir,
                 cluster=settings.redis_cluster,
                 dead_letters=DeadLetterStore(settings.dead_letter_dir),
                 redis_retry_s=settings.stream_redis_retry_s,
                 # inside the checkpoint: deleting the checkpoint (batch ids restart at 0)
                 # must also forget which batches reached Kafka
                 marker=KafkaMarker(checkpoint / "segstream" / "kafka-sinks"))


def start(spark: SparkSession, settings: Settings, *, bootstrap: str, redis_url: str,
          source: str = "python", trigger: str | None = None, available_now: bool = False
          ) -> tuple[StreamingQuery, BatchWriter, BatchLogger]:
    """Start the query; the caller waits for it (``run`` does, with SIGTERM handling)."""
    checkpoint = settings.checkpoint_dir
    sinks = make_sinks(settings, bootstrap=bootstrap, redis_url=redis_url)
    writer = BatchWriter(settings, sinks, LateBytes(bootstrap, settings.topic_events))
    listener = BatchLogger(writer, LagMeter(bootstrap))
    spark.streams.addListener(listener)
    out = transform(read_events(spark, settings, bootstrap, source), settings).writeStream
    out = out.foreachBatch(writer).option("checkpointLocation", str(checkpoint))
    out = out.outputMode("update").queryName("segstream-features")
    if available_now:
        out = out.trigger(availableNow=True)
    else:
        out = out.trigger(processingTime=trigger or settings.stream_trigger)
    return out.start(), writer, listener


def run(spark: SparkSession, settings: Settings, *, bootstrap: str, redis_url: str,
        source: str = "python", trigger: str | None = None, available_now: bool = False
        ) -> None:
    """Run until done (available-now), or until SIGTERM/SIGINT: then finish the batch in
    flight, so its offsets, state and sinks are committed together, and stop."""
    query, writer, listener = start(spark, settings, bootstrap=bootstrap, redis_url=redis_url,
                          source=source, trigger=trigger, available_now=available_now)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the batch in flight", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while query.isActive:
            if stop.is_set() and not query.status.get("isTriggerActive", False):
                query.stop()
                break
            time.sleep(0.2)
        try:
            query.awaitTermination()
        except StreamingQueryException as exc:
            raise StreamFailed(failure_reason(str(exc))) from exc
        if query.exception() is not None:
            raise StreamFailed(failure_reason(str(query.exception())))
    except BaseException:
        _stop(spark, query, listener, previous)
        # the failed batch's unsent records are replayed from the checkpoint: a short,
        # quiet flush, so its error cannot hide the cause or keep the user waiting
        with contextlib.suppress(Exception):
            writer.sinks.close(flush_timeout_s=5.0)
        raise
    _stop(spark, query, listener, previous)
    writer.sinks.close()  # after a clean stop, a record not delivered is an error


def _stop(spark: SparkSession, query: StreamingQuery, listener: BatchLogger,
          handlers: dict[signal.Signals, Any]) -> None:
    if query.isActive:
        query.stop()
    for s, handler in handlers.items():
        signal.signal(s, handler)
    spark.streams.removeListener(listener)
    listener.lag_meter.close()
    listener.writer.late_bytes.close()


class StreamFailed(RuntimeError):
    """The query stopped on an error; the message is its cause, without Spark's wrapping."""


_CAUSE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception|Unavailable)): (.+)$", re.M)


def failure_reason(message: str) -> str:
    r"""The innermost exception line of a Spark streaming failure (a foreachBatch error
    arrives as a JVM exception that embeds the Python traceback).

    >>> failure_reason("[STREAM_FAILED] ... Traceback (most recent call last):\n"
    ...                "  File \"sinks.py\", line 1\nRuntimeError: Redis unreachable for 2 s")
    'the streaming query failed: RuntimeError: Redis unreachable for 2 s'
    """
    causes = _CAUSE.findall(message)
    cause = f"{causes[-1][0]}: {causes[-1][1]}" if causes else message.strip()[:2000]
    return f"the streaming query failed: {cause}"
