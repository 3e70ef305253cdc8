"""Where a micro-batch's results go: Redis, the `features` topic, Parquet history, the DLQ.

What is written is each touched user's aggregate record (``aggregates.encode`` bytes),
never evaluated features: readers evaluate it as of their own time.

* Redis: the hash of ``segstream.adapters.online_store`` (``agg``, ``n``, ``ts``, ``upd``),
  through ``online_store.UPSERT_LUA``, pipelined, with TTL.
* `features` topic: key = user id, value = the ``agg`` bytes, header ``upd`` = the
  write time (``online_store.HEADER_UPDATED``).
* Parquet history: one file per batch (``segstream.adapters.history``).

Idempotent per batch id, so a batch replayed after a crash changes nothing:

* Redis: ``UPSERT_LUA`` skips an update older than the stored record by ``(ts, n)``;
  a replayed batch writes the same values again.
* Parquet history: one file per batch id, written to a temporary name and renamed.
* Dead letters: bounded on the topic (``segstream.adapters.dead_letters``); an oversized one's
  full bytes go first to the dead-letter store, one file per batch id.
* Kafka (`features`, `events.dlq`): a marker file under the checkpoint records the
  last batch id whose records were flushed; a replay of that batch or an older one
  sends nothing. A crash between the flush and the marker resends that one batch
  (at-least-once on the topics; consumers key by user and keep the newest record by
  ``(last_ms, events)``).

A Redis outage during a batch is retried with backoff for ``redis_retry_s`` (the upserts
are idempotent, so a retried pipeline changes nothing it already wrote); past that the
batch fails, the query stops with the error, and a restart replays the batch from the
checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segstream.adapters import history
from segstream.adapters.dead_letters import DeadLetter, DeadLetterStore, bounded_records
from segstream.adapters.online_store import FIELDS, HEADER_UPDATED, UPSERT_LUA
from segstream.adapters.redis_keys import feature_key

log = logging.getLogger("segstream.stream")
REDIS_PIPELINE_SIZE = 2000
REDIS_TIMEOUT_S = 10.0  # one pipelined round trip of 2000 upserts takes milliseconds


@dataclass
class SinkResult:
    redis_written: int = 0
    redis_stale: int = 0
    kafka_skipped: bool = False


class KafkaMarker:
    """The last batch id whose Kafka records were flushed (a file under the checkpoint)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self) -> int:
        try:
            return int(self.path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return -1

    def set(self, batch_id: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(batch_id))
        os.replace(tmp, self.path)


def hash_fields(agg: bytes, events: int, last_event_ms: int, updated_ms: int
                ) -> dict[str, bytes]:
    """The Redis hash of one record from its encoded bytes: what
    ``online_store.encode_record`` gives for the decoded record (a test checks it),
    without decoding and re-encoding every record of a batch."""
    values = (agg, str(events).encode(), str(last_event_ms).encode(),
              str(updated_ms).encode())
    return dict(zip(FIELDS, values, strict=True))


class Sinks:
    def __init__(self, *, redis_url: str, bootstrap: str, topic_features: str, topic_dlq: str,
                 ttl_s: int, history_dir: Path, marker: KafkaMarker,
                 dead_letters: DeadLetterStore, cluster: bool = False,
                 redis_retry_s: float = 60.0) -> None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from segstream.adapters.kafka import Producer
        from segstream.adapters.redis_connect import sync_redis

        # a cluster pipeline sends each master its keys' upserts (one key per script call).
        # A timeout, so a hung Redis raises instead of blocking the batch forever, and
        # no redis-py retries: the retry policy is this class's (redis_retry_s)
        self.redis = sync_redis(redis_url, cluster=cluster, socket_timeout=REDIS_TIMEOUT_S,
                                socket_connect_timeout=REDIS_TIMEOUT_S,
                                retry=Retry(NoBackoff(), 0))
        self.cluster = cluster
        self.upsert = self.redis.register_script(UPSERT_LUA)
        self.producer = Producer(bootstrap)
        self.topic_features = topic_features
        self.topic_dlq = topic_dlq
        self.ttl_s = ttl_s
        self.history_dir = history_dir
        self.marker = marker
        self.dead_letters = dead_letters
        self.redis_retry_s = redis_retry_s

    def write(self, batch_id: int, records: pd.DataFrame, dead: pd.DataFrame, now_ms: int
              ) -> SinkResult:
        """``records``: ``state.RECORD_COLUMNS`` (one row per touched user); ``dead``:
        ``state.DEAD_COLUMNS``."""
        result = SinkResult()
        users = records["user_id"].tolist()
        aggs = [bytes(a) for a in records["agg"]]
        events = records["events"].astype(np.int64).tolist()
        last = records["last_event_ms"].astype(np.int64).tolist()
        self._redis(users, aggs, events, last, now_ms, result)
        history.write_batch(self.history_dir, batch_id, pd.DataFrame({
            "user_id": users, "agg": aggs, "events": events, "last_event_ms": last,
            "updated_ms": now_ms, "batch_id": batch_id}, columns=list(history.COLUMNS)))
        if batch_id <= self.marker.get():
            result.kafka_skipped = True
            return result
        upd = {HEADER_UPDATED: str(now_ms).encode()}
        for user, agg in zip(users, aggs, strict=True):
            self.producer.send(self.topic_features, agg, key=user.encode(), headers=upd)
        letters = [DeadLetter(
            key=None if row["key"] is None else bytes(row["key"]),
            value=None if row["value"] is None else bytes(row["value"]),  # None: tombstone
            reason=str(row["reason"]), detail=str(row["detail"] or ""),
            source=f"{row['topic']}:{row['partition']}@{row['offset']}",
        ) for row in dead.to_dict("records")]
        for rec in bounded_records(letters, self.dead_letters,
                                   f"stream/batch={batch_id:09d}"):
            self.producer.send(self.topic_dlq, rec.value, key=rec.key, headers=rec.headers)
        self.producer.flush()
        self.marker.set(batch_id)
        return result

    def _redis(self, users: list[str], aggs: list[bytes], events: list[int], last: list[int],
               now_ms: int, result: SinkResult) -> None:
        """The upserts, retried while Redis is unreachable for up to ``redis_retry_s``."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        deadline = time.monotonic() + self.redis_retry_s
        delay, retried = 0.1, False
        while True:
            attempt = SinkResult()
            try:
                self._upsert(users, aggs, events, last, now_ms, attempt)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    raise RuntimeError(
                        f"Redis unreachable for {self.redis_retry_s:.0f} s ({exc}); the batch "
                        "is not committed: restart the job when Redis is back, it resumes "
                        "from the checkpoint") from exc
                log.warning("Redis unreachable (%s): retrying the batch's writes in %.1f s",
                            exc, delay)
                time.sleep(delay)
                delay, retried = min(delay * 2, 5.0), True
                continue
            if retried:
                log.warning("Redis is back: the batch's writes went through")
            result.redis_written += attempt.redis_written
            result.redis_stale += attempt.redis_stale
            return

    def _upsert(self, users: list[str], aggs: list[bytes], events: list[int], last: list[int],
                now_ms: int, result: SinkResult) -> None:
        for lo in range(0, len(users), REDIS_PIPELINE_SIZE):
            pipe = self.redis.pipeline(transaction=False)
            for i in range(lo, min(lo + REDIS_PIPELINE_SIZE, len(users))):
                fields = hash_fields(aggs[i], events[i], last[i], now_ms)
                args = [*(fields[f] for f in FIELDS), self.ttl_s]
                if self.cluster:  # redis-py blocks script calls in a cluster pipeline
                    pipe.execute_command("EVAL", UPSERT_LUA, 1, feature_key(users[i]), *args)
                else:
                    self.upsert(keys=[feature_key(users[i])], args=args, client=pipe)
            written: list[Any] = pipe.execute()
            result.redis_written += sum(int(x) for x in written)
            result.redis_stale += sum(1 for x in written if int(x) == 0)

    def close(self, flush_timeout_s: float = 60.0) -> None:
        """Flush and free the clients; the clients are freed even when the flush fails
        (a librdkafka client left to the garbage collector reconnects forever)."""
        try:
            self.producer.flush(flush_timeout_s)
        finally:
            self.producer = None  # type: ignore[assignment]
            self.redis.close()
