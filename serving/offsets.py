"""A group-less Kafka reader whose offsets live in Redis.

The segment-change detector and the webhook dispatcher read whole topics with
``assign`` (no consumer-group join: ~20 s on the embedded broker) and commit the next
offset per partition to ``seg:offsets:<name>`` only after their side effects are
durable, so a crash replays (at-least-once) and never skips. One instance per name.
"""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition

from segstream.kafka import Record, exact_end_offsets, make_consumer, partitions_of


class RedisOffsetReader:
    def __init__(self, bootstrap: str, topic: str, redis: Any, name: str) -> None:
        self.redis = redis
        self.key = f"seg:offsets:{name}"
        self.consumer = make_consumer(bootstrap, max_poll_records=500)
        self.tps = partitions_of(self.consumer, topic)
        self.consumer.assign(self.tps)
        stored = self.redis.hgetall(self.key)
        begin = self.consumer.beginning_offsets(self.tps)
        for tp in self.tps:
            raw = stored.get(f"{tp.topic}:{tp.partition}".encode())
            self.consumer.seek(tp, int(raw) if raw is not None else begin[tp])

    def poll(self, timeout_ms: int = 500) -> list[Record]:
        out = []
        for msgs in self.consumer.poll(timeout_ms=timeout_ms).values():
            for m in msgs:
                out.append(Record(m.topic, m.partition, m.offset, m.key, m.value,
                                  dict(m.headers or []), m.timestamp))
        return out

    def commit_fields(self, records: list[Record]) -> dict[str, int]:
        """``{topic:partition: next offset}`` for the caller's Redis transaction."""
        nxt: dict[str, int] = {}
        for r in records:
            key = f"{r.topic}:{r.partition}"
            nxt[key] = max(nxt.get(key, 0), r.offset + 1)
        return nxt

    def end_offsets(self) -> dict[TopicPartition, int]:
        """The exact end of every partition now (for a bounded run); positions kept."""
        positions = {tp: self.consumer.position(tp) for tp in self.tps}
        end = exact_end_offsets(self.consumer, self.tps)
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset)
        return end

    def reached(self, end: dict[TopicPartition, int]) -> bool:
        return all(self.consumer.position(tp) >= end[tp] for tp in self.tps)

    def rewind(self, records: list[Record]) -> None:
        """Seek back to the first of ``records`` per partition (to retry them)."""
        first: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
        for tp, offset in first.items():
            self.consumer.seek(tp, offset)

    def close(self) -> None:
        self.consumer.close()
