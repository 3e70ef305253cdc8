"""Every Prometheus metric of the streaming job, in one module.

The driver updates them once per micro-batch (:func:`observe_batch`, called by the
query listener in streaming/job.py) from Spark's progress report (rows, durations, the
source's offsets) and the batch function's counts (users written, dead letters by
reason, duplicates, expired users, stale Redis writes). ``segstream stream
--metrics-port N`` serves them on ``metrics_host:N``
(``segstream.adapters.metrics_server.serve_metrics``).

Own registry: the job's endpoint shows the job's metrics only, and nothing leaks into
the API's registry when both run in one test process. Labels are bounded: ``reason``
is one of ``contract.DLQ_REASONS`` (``late`` among them), ``topic``/``partition`` the
partitions of the events topic. A user id is never a label.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from segstream.adapters.metric_names import sample_names
from segstream.core.contract import DLQ_REASONS

PREFIX = "segstream_stream"
REGISTRY = CollectorRegistry()
BATCH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
OTHER_REASON = "other"  # a reason the contract does not list (kept out of the label set)

INPUT = Counter(f"{PREFIX}_input_records", "Records read from the events topic.",
                registry=REGISTRY)
BATCHES = Counter(f"{PREFIX}_batches", "Micro-batches completed.", registry=REGISTRY)
USERS = Counter(f"{PREFIX}_users_updated", "User records written to the sinks (one per "
                "user touched by a batch).", registry=REGISTRY)
DLQ = Counter(f"{PREFIX}_dlq_records", "Records dead-lettered to the DLQ topic, by "
              "reason (late: behind the user's watermark).", ["reason"], registry=REGISTRY)
DUPLICATES = Counter(f"{PREFIX}_duplicate_records", "Records dropped as repeats of an "
                     "event id already folded.", registry=REGISTRY)
EXPIRED = Counter(f"{PREFIX}_expired_users", "Users whose idle state was dropped "
                  "(stream_state_expiry_days).", registry=REGISTRY)
REDIS_STALE = Counter(f"{PREFIX}_redis_stale_writes", "Redis upserts skipped because the "
                      "stored record was as new or newer (a batch replayed after a "
                      "restart).", registry=REGISTRY)
BATCH_DURATION = Histogram(f"{PREFIX}_batch_duration_seconds", "Wall time of one "
                           "micro-batch, planning to commit (Spark's batchDuration).",
                           buckets=BATCH_BUCKETS, registry=REGISTRY)
INPUT_RATE = Gauge(f"{PREFIX}_input_rows_per_second", "Rows arrived per second over the "
                   "last trigger interval (Spark's inputRowsPerSecond).", registry=REGISTRY)
PROCESSED_RATE = Gauge(f"{PREFIX}_processed_rows_per_second", "Rows per second of batch "
                       "processing time in the last batch (Spark's "
                       "processedRowsPerSecond): the job's headroom.", registry=REGISTRY)
LAG = Gauge(f"{PREFIX}_partition_lag_records", "Records behind the partition's end after "
            "the last batch (latest offset the source saw - the batch's end offset).",
            ["topic", "partition"], registry=REGISTRY)
LAST_BATCH = Gauge(f"{PREFIX}_last_batch_timestamp_seconds", "Wall time the last "
                   "micro-batch was reported done.", registry=REGISTRY)
LAST_REPORT = Gauge(f"{PREFIX}_last_report_timestamp_seconds", "Wall time of the query's "
                    "last report: a finished batch, or Spark's idle report (every 10 s "
                    "without new data). Minutes old: a batch hangs.", registry=REGISTRY)

ALL = (INPUT, BATCHES, USERS, DLQ, DUPLICATES, EXPIRED, REDIS_STALE, BATCH_DURATION,
       INPUT_RATE, PROCESSED_RATE, LAG, LAST_BATCH, LAST_REPORT)

for _reason in DLQ_REASONS:  # every reason at 0 from the start: rate() sees the first one
    DLQ.labels(_reason)


def observe_batch(*, rows: int, duration_s: float, input_rate: float, processed_rate: float,
                  users: int, dead: Mapping[str, int], duplicates: int, expired: int,
                  redis_stale: int, lag: Mapping[tuple[str, str], int],
                  now: float | None = None) -> None:
    """One finished micro-batch. ``lag``: records behind per (topic, partition)."""
    BATCHES.inc()
    INPUT.inc(rows)
    BATCH_DURATION.observe(duration_s)
    INPUT_RATE.set(input_rate)
    PROCESSED_RATE.set(processed_rate)
    USERS.inc(users)
    for reason, n in dead.items():
        DLQ.labels(reason if reason in DLQ_REASONS else OTHER_REASON).inc(n)
    DUPLICATES.inc(duplicates)
    EXPIRED.inc(expired)
    REDIS_STALE.inc(redis_stale)
    for (topic, partition), behind in lag.items():
        LAG.labels(topic, partition).set(behind)
    LAST_BATCH.set(time.time() if now is None else now)
    observe_alive(now)


def observe_alive(now: float | None = None) -> None:
    """The query reported (a batch or an idle tick): it is not hung."""
    LAST_REPORT.set(time.time() if now is None else now)


def exported_names() -> set[str]:
    """Every sample name this module can export (for the dashboard/alert tests)."""
    return sample_names(ALL)
