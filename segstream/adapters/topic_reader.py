"""The one group-less Kafka reader: every partition of a topic by ``assign`` (no
consumer-group join, which takes ~20 s on the embedded broker), from offsets kept in an
:class:`OffsetStore`, with the exact end of each partition for bounded runs.

Readers save their offsets only after their side effects are durable, so a crash
replays (at-least-once) and never skips. Two stores:

* :class:`RedisOffsets`: a hash ``seg:offsets:<name>`` of ``topic:partition`` -> next
  offset, whose fields a caller can write in the same Redis transaction as its own
  state (the change detector, the webhook dispatcher);
* :class:`FileOffsets`: a JSON file of ``partition`` -> next offset (the model
  updater, which keeps its state in the registry, not in Redis).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from segstream.adapters.kafka import Record, exact_end_offsets, make_consumer, partitions_of
from segstream.adapters.redis_keys import offsets_key


class OffsetStore(Protocol):
    def load(self, topic: str) -> dict[int, int]:
        """Saved next offset per partition (absent: from the beginning)."""
        ...

    def save(self, topic: str, positions: dict[int, int]) -> None: ...


class FileOffsets:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, topic: str) -> dict[int, int]:
        if not self.path.exists():
            return {}
        return {int(p): int(o) for p, o in json.loads(self.path.read_text()).items()}

    def save(self, topic: str, positions: dict[int, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(p): o for p, o in positions.items()}))
        tmp.replace(self.path)


class RedisOffsets:
    def __init__(self, redis: Any, name: str) -> None:
        self.redis = redis
        self.key = offsets_key(name)

    def load(self, topic: str) -> dict[int, int]:
        out = {}
        for field, value in self.redis.hgetall(self.key).items():
            t, _, p = (field.decode() if isinstance(field, bytes) else field).rpartition(":")
            if t == topic and p.isdigit():
                out[int(p)] = int(value)
        return out

    def save(self, topic: str, positions: dict[int, int]) -> None:
        self.redis.hset(self.key, mapping=self.fields(topic, positions))

    @staticmethod
    def fields(topic: str, positions: dict[int, int]) -> dict[str, int]:
        """The hash fields of ``positions``, for a caller's own transaction."""
        return {f"{topic}:{p}": o for p, o in positions.items()}


class TopicReader:
    """Reads ``topic`` from the offsets in ``store`` (none: from the beginning)."""

    def __init__(self, bootstrap: str, topic: str, store: OffsetStore | None = None,
                 **consumer_config: Any) -> None:
        self.topic = topic
        self.store = store
        self.consumer = make_consumer(bootstrap, **consumer_config)
        self.tps = partitions_of(self.consumer, topic)
        self.consumer.assign(self.tps)
        saved = store.load(topic) if store is not None else {}
        begin = self.consumer.beginning_offsets(self.tps)
        for tp in self.tps:  # a saved offset the log no longer holds starts at its beginning
            self.consumer.seek(tp, max(saved.get(tp.partition, 0), begin[tp]))

    def poll(self, timeout_ms: int = 500, max_records: int | None = None) -> list[Record]:
        out = []
        for msgs in self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records).values():
            for m in msgs:
                out.append(Record(m.topic, m.partition, m.offset, m.key, m.value,
                                  dict(m.headers or []), m.timestamp))
        return out

    def positions(self) -> dict[int, int]:
        return {tp.partition: self.consumer.position(tp) for tp in self.tps}

    def save(self) -> None:
        """Store the current positions (everything polled so far is done)."""
        if self.store is not None:
            self.store.save(self.topic, self.positions())

    def end_offsets(self) -> dict[int, int]:
        """The exact end of every partition now (for a bounded run); positions kept."""
        positions = {tp: self.consumer.position(tp) for tp in self.tps}
        end = exact_end_offsets(self.consumer, self.tps)
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset)
        return {tp.partition: o for tp, o in end.items()}

    def reached(self, end: dict[int, int]) -> bool:
        return all(self.consumer.position(tp) >= end[tp.partition] for tp in self.tps)

    def close(self) -> None:
        self.consumer.close()


class RedisOffsetReader(TopicReader):
    """A reader whose offsets are the hash ``key``, committed by the caller with
    :meth:`commit_fields` inside its own Redis transaction."""

    def __init__(self, bootstrap: str, topic: str, redis: Any, name: str) -> None:
        self.offsets = RedisOffsets(redis, name)
        self.key = self.offsets.key
        super().__init__(bootstrap, topic, self.offsets, max_poll_records=500)

    def commit_fields(self, records: Iterable[Record]) -> dict[str, int]:
        """``{topic:partition: next offset}`` of ``records``."""
        return RedisOffsets.fields(self.topic, next_offsets(records))


def next_offsets(records: Iterable[Record]) -> dict[int, int]:
    """Per partition, the offset after the last of ``records``."""
    nxt: dict[int, int] = {}
    for r in records:
        nxt[r.partition] = max(nxt.get(r.partition, 0), r.offset + 1)
    return nxt


def read_topic(bootstrap: str, topic: str, timeout_ms: int = 60_000) -> Iterator[Record]:
    """Every record of ``topic`` from the beginning to the end measured at call time."""
    reader = TopicReader(bootstrap, topic)
    try:
        end = reader.end_offsets()
        waited = 0
        while not reader.reached(end):
            if waited > timeout_ms:
                raise TimeoutError(f"reading {topic}: partitions not at their end after "
                                   f"{timeout_ms / 1000:.0f} s")
            records = reader.poll(timeout_ms=500)
            waited = 0 if records else waited + 500
            yield from (r for r in records if r.offset < end[r.partition])
    finally:
        reader.close()


