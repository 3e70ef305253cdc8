"""Re-scoring users whom time alone moves: the detector's clock and the sweep's reader.

A user's features age with no event (recency grows, decayed rates fall), so a user who
simply stops coming can cross into another segment without any message on the
``features`` topic. The change detector therefore re-evaluates *every* stored record
once per ``rescore_interval_s`` of its clock (docs/serving.md, "Lapsing users", says
why a sweep over the online store and what it costs).

:class:`DetectorClock` is "now" by the ``clock`` setting:

* ``event``: the stream time, the newest ``last_event_ms`` seen so far on the topic
  (replays and backfills: a log of last year ages users as of last year). Unknown
  until the first message: no sweep before that. A message is evaluated as of the
  stream time *of its partition* (the newest event seen so far there; all of a user's
  messages are in one partition): while partitions are unevenly behind (a backlog), a
  record from a lagging partition is not aged by the time another partition reached,
  which would report spurious lapses that its next message undoes. Sweeps and the
  hysteresis use the newest time over all partitions.
* ``wall``: the wall clock (live) for all of that.

It is persisted in the detector's offsets hash (fields ``clock:stream_ms``,
``clock:partition:<p>`` and ``clock:swept_ms``, in the same Redis transaction as the
offsets), so a restarted detector keeps its stream time and does not sweep early. The
API reads ``clock:stream_ms`` from there too when ``clock = event`` (its "now").

:func:`scan_chunks` reads the store in chunks: ``SCAN MATCH seg:features:*`` then, in
one pipelined round trip per chunk, ``HGET agg`` of each key and ``MGET`` of the users'
last published segments.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np

from segstream.adapters.redis_keys import (
    FEATURES_PATTERN,
    offsets_key,
    segment_key,
    user_of_feature_key,
)
from segstream.core.aggregates import FeatureParams, decode_lenient
from segstream.serving import metrics

log = logging.getLogger(__name__)
DETECTOR_NAME = "segment-changes"  # its offsets and clock: ``seg:offsets:segment-changes``
DETECTOR_KEY = offsets_key(DETECTOR_NAME)
CLOCK_STREAM = "clock:stream_ms"
CLOCK_PARTITION = "clock:partition:"
CLOCK_SWEPT = "clock:swept_ms"
SWEEP_CHUNK = 1000  # SCAN COUNT hint and pipeline size of one sweep chunk


class DetectorClock:
    def __init__(self, mode: Literal["wall", "event"], interval_s: float,
                 stored: Mapping[bytes, bytes], wall_ms: Any = None) -> None:
        import time

        self.mode = mode
        self.interval_ms = int(interval_s * 1000)
        self._wall = wall_ms or (lambda: int(time.time() * 1000))
        raw_stream, raw_swept = stored.get(CLOCK_STREAM.encode()), stored.get(
            CLOCK_SWEPT.encode())
        self.stream_ms: int | None = None if raw_stream is None else int(raw_stream)
        self.swept_ms: int | None = None if raw_swept is None else int(raw_swept)
        prefix = CLOCK_PARTITION.encode()
        self.partition_ms = {int(k[len(prefix):]): int(v) for k, v in stored.items()
                             if k.startswith(prefix)}

    def now(self) -> int | None:
        """The clock's time; ``None`` on the event clock before any message."""
        return self._wall() if self.mode == "wall" else self.stream_ms

    def advance(self, last_ms: np.ndarray, partitions: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """(the clock, the partition's clock) at each of a batch's messages (in poll
        order), moving both on. On the wall clock both are the wall clock."""
        n = len(last_ms)
        if self.mode == "wall":
            wall = np.full(n, self._wall(), dtype=np.int64)
            return wall, wall
        last = np.asarray(last_ms, dtype=np.int64)
        now = np.maximum.accumulate(np.maximum(last, -1 if self.stream_ms is None
                                               else self.stream_ms))
        local = np.empty(n, dtype=np.int64)
        for p in np.unique(partitions).tolist():
            mine = partitions == p
            local[mine] = np.maximum.accumulate(np.maximum(last[mine],
                                                           self.partition_ms.get(p, -1)))
            self.partition_ms[p] = int(local[mine][-1])
        if n:
            self.stream_ms = int(now[-1])
        return now, local

    def due(self) -> int | None:
        """The time to sweep at if a sweep is due, else ``None``. The first time the
        clock is known only starts the interval (nothing to compare with yet)."""
        now = self.now()
        if now is None:
            return None
        if self.swept_ms is None:
            self.swept_ms = now
            return None
        return now if now - self.swept_ms >= self.interval_ms else None

    def fields(self) -> dict[str, int]:
        """What to persist with the offsets."""
        out = {}
        if self.stream_ms is not None:
            out[CLOCK_STREAM] = self.stream_ms
        if self.swept_ms is not None:
            out[CLOCK_SWEPT] = self.swept_ms
        out.update({f"{CLOCK_PARTITION}{p}": t for p, t in self.partition_ms.items()})
        return out


def _count_skip() -> None:
    metrics.CHANGE_RECORDS_SKIPPED.labels("record_mismatch").inc()


def scan_chunks(redis: Any, params: FeatureParams, chunk: int = SWEEP_CHUNK
                ) -> Iterator[tuple[list[str], np.ndarray, list[bytes | None]]]:
    """(users, their aggregates, their stored segment state) for every record in Redis,
    a chunk at a time. SCAN may return a key twice; a user seen twice is simply
    re-evaluated (the decision is idempotent). ``scan_iter`` walks every master of a
    Redis Cluster; one GET per state key, as a user's keys need not share a slot."""
    keys: list[bytes] = []
    for key in redis.scan_iter(match=FEATURES_PATTERN, count=chunk):
        keys.append(key)
        if len(keys) >= chunk:
            yield from _chunk(redis, params, keys)
            keys = []
    if keys:
        yield from _chunk(redis, params, keys)


def _chunk(redis: Any, params: FeatureParams, keys: list[bytes]
           ) -> Iterator[tuple[list[str], np.ndarray, list[bytes | None]]]:
    users = [user_of_feature_key(k) for k in keys]
    pipe = redis.pipeline(transaction=False)
    for k in keys:
        pipe.hget(k, "agg")
    for u in users:
        pipe.get(segment_key(u))
    replies = pipe.execute()
    blobs, states = replies[:len(keys)], replies[len(keys):]
    ok, aggs = decode_lenient(users, blobs, params, source="Redis", on_skip=_count_skip)
    if ok:
        yield [users[i] for i in ok], aggs, [states[i] for i in ok]
