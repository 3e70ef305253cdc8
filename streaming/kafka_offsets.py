"""Exact Kafka offsets for the stream reader (driver side), over kafka-python.

``log_end_offsets`` is exact on real Kafka and on the embedded broker (tansu), whose
ListOffsets(latest) answers the base offset of the *last record batch*: it seeks each
partition to that reported offset and takes the high watermark of a fetch made in this
call. kafka-python keeps a partition's last high watermark across ``assign()`` calls,
so the assignment is cleared first; otherwise a stale watermark from an earlier call
would be taken for the end. The driver keeps one consumer for the life of the query.
"""

from __future__ import annotations

from collections.abc import Mapping

from kafka import TopicPartition

#: Offsets as Spark stores them: {"topic": {"partition": next offset}} (JSON-safe).
Offsets = dict[str, dict[str, int]]


def to_spark(offsets: Mapping[TopicPartition, int]) -> Offsets:
    out: Offsets = {}
    for tp, off in sorted(offsets.items()):
        out.setdefault(tp.topic, {})[str(tp.partition)] = int(off)
    return out


def from_spark(offsets: Mapping[str, Mapping[str, int]]) -> dict[TopicPartition, int]:
    return {TopicPartition(topic, int(p)): int(off)
            for topic, parts in offsets.items() for p, off in parts.items()}


def cap_rows(
    start: Mapping[TopicPartition, int], end: Mapping[TopicPartition, int], max_rows: int
) -> dict[TopicPartition, int]:
    """Admission control: move at most ``max_rows`` offsets past ``start``, shared out in
    proportion to each partition's backlog (as Spark's Kafka source does).

    >>> a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    >>> cap_rows({a: 0, b: 0}, {a: 30, b: 10}, 8) == {a: 6, b: 2}
    True
    >>> cap_rows({a: 0, b: 0}, {a: 3, b: 1}, 8) == {a: 3, b: 1}
    True
    """
    lag = {tp: max(end[tp] - start.get(tp, 0), 0) for tp in end}
    total = sum(lag.values())
    if total <= max_rows:
        return dict(end)
    take = {tp: lag[tp] * max_rows // total for tp in end}
    left = max_rows - sum(take.values())
    for tp in sorted(end, key=lambda t: (-(lag[t] - take[t]), t.partition)):
        if left <= 0:
            break
        if take[tp] < lag[tp]:
            take[tp] += 1
            left -= 1
    return {tp: start.get(tp, 0) + take[tp] for tp in end}
