"""Where a micro-batch's results go: Redis, the `features` topic, Parquet history, the DLQ.

Idempotent per batch id, so a batch replayed after a crash changes nothing:

* Redis: every write goes through ``online_store.UPSERT_LUA`` (an update older than
  the stored ``ts`` is skipped); a replayed batch writes the same values again.
* Parquet history: one file per batch id, written to a temporary name and renamed.
* Kafka (`features`, `events.dlq`): a marker file under the checkpoint records the
  last batch id whose records were flushed; a replay of that batch or an older one
  sends nothing. A crash between the flush and the marker resends that one batch
  (at-least-once on the topics; consumers key by user and keep the newest
  ``last_event_ms``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segstream.contract import (
    DLQ_HEADER_DETAIL,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SOURCE,
    FEATURE_SPEC,
)
from segstream.online_store import UPSERT_LUA, VECTOR_DTYPE, encode_feature_message, feature_key

REDIS_PIPELINE_SIZE = 2000


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


class Sinks:
    def __init__(self, *, redis_url: str, bootstrap: str, topic_features: str, topic_dlq: str,
                 ttl_s: int, history_dir: Path, marker: KafkaMarker) -> None:
        import redis

        from segstream.kafka import Producer

        self.redis = redis.Redis.from_url(redis_url)
        self.upsert = self.redis.register_script(UPSERT_LUA)
        self.producer = Producer(bootstrap)
        self.topic_features = topic_features
        self.topic_dlq = topic_dlq
        self.ttl_s = ttl_s
        self.history_dir = history_dir
        self.marker = marker

    def write(self, batch_id: int, features: pd.DataFrame, dead: pd.DataFrame, now_ms: int
              ) -> SinkResult:
        result = SinkResult()
        vectors = features[list(FEATURE_SPEC.names)].to_numpy(dtype=VECTOR_DTYPE)
        users = features["user_id"].tolist()
        last = features["last_event_ms"].astype(np.int64).tolist()
        self._redis(users, vectors, last, now_ms, result)
        self._history(batch_id, features.assign(updated_ms=now_ms))
        if batch_id <= self.marker.get():
            result.kafka_skipped = True
            return result
        for user, vec, ts in zip(users, vectors, last, strict=True):
            self.producer.send(self.topic_features, encode_feature_message(
                user, vec, last_event_ms=ts, updated_ms=now_ms), key=user.encode())
        for row in dead.to_dict("records"):
            value = row["value"]  # None for a tombstone: dead-lettered as one
            self.producer.send(self.topic_dlq, None if value is None else bytes(value),
                               key=row["key"], headers={
                DLQ_HEADER_REASON: str(row["reason"]).encode(),
                DLQ_HEADER_DETAIL: str(row["detail"] or "").encode(),
                DLQ_HEADER_SOURCE: f"{row['topic']}:{row['partition']}@{row['offset']}".encode(),
            })
        self.producer.flush()
        self.marker.set(batch_id)
        return result

    def _redis(self, users: list[str], vectors: np.ndarray, last: list[int], now_ms: int,
               result: SinkResult) -> None:
        spec = FEATURE_SPEC.version.encode()
        upd = str(now_ms).encode()
        for lo in range(0, len(users), REDIS_PIPELINE_SIZE):
            pipe = self.redis.pipeline(transaction=False)
            for i in range(lo, min(lo + REDIS_PIPELINE_SIZE, len(users))):
                self.upsert(keys=[feature_key(users[i])],
                            args=[vectors[i].tobytes(), spec, str(last[i]).encode(), upd,
                                  self.ttl_s], client=pipe)
            written: list[Any] = pipe.execute()
            result.redis_written += sum(int(x) for x in written)
            result.redis_stale += sum(1 for x in written if int(x) == 0)

    def _history(self, batch_id: int, features: pd.DataFrame) -> None:
        if features.empty:
            return
        self.history_dir.mkdir(parents=True, exist_ok=True)
        final = self.history_dir / f"batch={batch_id:09d}.parquet"
        tmp = final.with_suffix(".tmp")
        features.to_parquet(tmp, index=False)
        os.replace(tmp, final)

    def close(self) -> None:
        self.producer.flush()
        self.producer = None  # type: ignore[assignment]  # free the librdkafka client now
        self.redis.close()
