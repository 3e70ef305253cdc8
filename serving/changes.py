"""Segment-change detection: a small consumer of the ``features`` topic.

Why here and not in the streaming job's Redis sink: the streaming job is Spark and
knows no model; loading the champion into every Spark executor, reloading it there
and producing to Kafka from a foreachBatch would couple the feature pipeline to the
model registry and its release cycle. This consumer reuses serving's hot-reload
(:class:`ModelHolder`) and vectorised assignment, scales by partition, and can be
restarted or replayed independently (its offsets are in Redis).

Per feature update: assign under the champion, compare with the user's last
published segment ``seg:segment:{user}`` (``sid``, ``since`` = event time ms).
Hysteresis: a different segment is published only if the user has been in the
current one for at least ``segment_min_dwell_s`` (event time), so a user flapping
between two segments produces one change per dwell period, not one per update.
A user's first assignment is recorded, not published. Changes are produced (keyed
by user) and flushed before state and offsets are committed in one Redis
transaction: a crash republishes, never loses; ``change_id`` lets receivers dedupe.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import orjson

from segstream.config import Settings
from segstream.kafka import Producer, Record
from segstream.online_store import decode_feature_message
from serving import metrics
from serving.model_holder import ModelHolder
from serving.offsets import RedisOffsetReader
from serving.predict import assign, iso_ms

log = logging.getLogger(__name__)
STATE_PREFIX = "seg:segment:"


class ChangeDetector:
    def __init__(self, settings: Settings, holder: ModelHolder, redis: Any,
                 bootstrap: str) -> None:
        self.settings = settings
        self.holder = holder
        self.redis = redis
        self.reader = RedisOffsetReader(bootstrap, settings.topic_features, redis,
                                        "segment-changes")
        self.producer = Producer(bootstrap)
        self.dwell_ms = int(settings.segment_min_dwell_s * 1000)

    def decide(self, records: list[Record]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        """The changes to publish and the new per-user state (pure but for reads)."""
        served = self.holder.current
        if served is None:
            raise RuntimeError("no champion model loaded; cannot detect segment changes")
        msgs = [decode_feature_message(r.value) for r in records if r.value]
        if not msgs:
            return [], {}
        batch = assign(served, np.stack([m.record.vector for m in msgs]))
        users = list(dict.fromkeys(m.user_id for m in msgs))
        stored = dict(zip(users, self.redis.mget([STATE_PREFIX + u for u in users]),
                          strict=True))
        state = {u: (orjson.loads(v) if v else None) for u, v in stored.items()}
        changes = []
        for i, m in enumerate(msgs):
            sid, t = int(batch.segment_ids[i]), m.record.last_event_ms
            cur = state[m.user_id]
            if cur is None:
                state[m.user_id] = {"sid": sid, "since": t}
            elif cur["sid"] != sid:
                if t - cur["since"] >= self.dwell_ms:
                    row = int(batch.index[i])
                    changes.append({
                        "change_id": f"{m.user_id}:{t}:{sid}", "user_id": m.user_id,
                        "from_segment": cur["sid"], "to_segment": sid,
                        "persona": served.model.personas[row],
                        "model_version": served.version, "at": iso_ms(t), "ts_ms": t})
                    state[m.user_id] = {"sid": sid, "since": t}
                else:
                    metrics.SEGMENT_CHANGES_SUPPRESSED.inc()
        return changes, {STATE_PREFIX + u: orjson.dumps(s) for u, s in state.items() if s}

    def process(self, records: list[Record]) -> int:
        changes, new_state = self.decide(records)
        for c in changes:
            self.producer.send(self.settings.topic_segment_changes, orjson.dumps(c),
                               key=c["user_id"].encode())
        self.producer.flush()
        pipe = self.redis.pipeline(transaction=True)
        if new_state:
            pipe.mset(new_state)
        offsets = self.reader.commit_fields(records)
        if offsets:
            pipe.hset(self.reader.key, mapping=offsets)
        pipe.execute()
        metrics.SEGMENT_CHANGES.inc(len(changes))
        return len(changes)

    def run(self, stop: threading.Event, poll_s: float) -> None:
        last_poll = 0.0
        import time

        while not stop.is_set():
            if time.monotonic() - last_poll > poll_s:
                self.holder.refresh()
                last_poll = time.monotonic()
            records = self.reader.poll(500)
            if records:
                n = self.process(records)
                log.debug("%d feature updates, %d segment changes", len(records), n)

    def close(self) -> None:
        self.reader.close()
