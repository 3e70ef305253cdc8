"""Kafka offsets for the stream reader (driver side): Spark's offset JSON, admission
control, and the data-loss check.

Offsets as Spark stores them: ``{"topic": {"partition": next offset}}``, plus two keys
that no topic can be named (``@`` is not allowed in a Kafka topic name):

* ``"@topic_ids": {"topic": "<uuid>"}`` — the topic's id (KIP-516) when the offsets
  were taken. A topic deleted and created again, or a broker that lost its log and had
  its topics created again (the embedded broker keeps no log across restarts), has a
  new id: the offsets belong to a log that is gone even where they still look valid;
* ``"@reset_from": {"topic": {"partition": offset}}`` — on a batch's end offsets only,
  where the batch reads a partition from instead of the previous end, after a data-loss
  reset (``failOnDataLoss=false``). Kept in Spark's offset log, so a replayed batch
  reads the same ranges.

The log end is measured exactly by ``segstream.adapters.kafka.exact_end_offsets`` (the embedded
broker's ListOffsets(latest) answers the base offset of the last record batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition

#: Spark's offset JSON (see the module docstring).
Offsets = dict[str, Any]
TOPIC_IDS = "@topic_ids"
RESET_FROM = "@reset_from"


def to_spark(offsets: Mapping[TopicPartition, int], *, topic_ids: Mapping[str, str] | None
             = None, reset_from: Mapping[TopicPartition, int] | None = None) -> Offsets:
    out: Offsets = {}
    for tp, off in sorted(offsets.items()):
        out.setdefault(tp.topic, {})[str(tp.partition)] = int(off)
    if topic_ids:
        out[TOPIC_IDS] = dict(topic_ids)
    if reset_from:
        out[RESET_FROM] = to_spark(reset_from)
    return out


def from_spark(offsets: Mapping[str, Any]) -> dict[TopicPartition, int]:
    """The partition offsets (the ``@`` keys left out).

    >>> from_spark({"t": {"0": 5}, TOPIC_IDS: {"t": "x"}})
    {TopicPartition(topic='t', partition=0): 5}
    """
    return {TopicPartition(topic, int(p)): int(off)
            for topic, parts in offsets.items() if not topic.startswith("@")
            for p, off in parts.items()}


def topic_id_of(offsets: Mapping[str, Any], topic: str) -> str | None:
    ids = offsets.get(TOPIC_IDS) or {}
    return ids.get(topic)  # type: ignore[no-any-return]


def reset_from_of(offsets: Mapping[str, Any]) -> dict[TopicPartition, int]:
    return from_spark(offsets.get(RESET_FROM) or {})


@dataclass(frozen=True)
class Lost:
    """A partition whose checkpointed offset no longer points into its log."""

    tp: TopicPartition
    expected: int  # the next offset the checkpoint would read
    log_begin: int | None  # None: the partition is gone
    log_end: int | None
    why: str

    def describe(self) -> str:
        where = f"partition {self.tp.partition} at {self.expected}"
        if self.log_begin is None:
            return f"{where}: {self.why}"
        return f"{where} (log now {self.log_begin}..{self.log_end}): {self.why}"


def find_lost(known: Mapping[TopicPartition, int], begin: Mapping[TopicPartition, int],
              end: Mapping[TopicPartition, int], *, recorded_id: str | None,
              current_id: str | None) -> list[Lost]:
    """The partitions of ``known`` (the checkpoint's next offsets) whose records the
    stream can no longer read as they were, given each partition's log ``begin`` and
    ``end`` now and the topic's id when the offsets were taken and now.

    >>> a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    >>> [x.why for x in find_lost({a: 5, b: 9}, {a: 0, b: 0}, {a: 7, b: 3},
    ...                           recorded_id="x", current_id="x")]
    ['the log ends before it: the log was reset or truncated']
    >>> [x.why for x in find_lost({a: 5}, {a: 6}, {a: 9}, recorded_id=None, current_id="x")]
    ['the log starts after it: records were deleted before the stream read them']
    >>> len(find_lost({a: 5, b: 9}, {a: 0, b: 0}, {a: 70, b: 90}, recorded_id="x",
    ...               current_id="y"))  # recreated: every partition, whatever its end
    2
    >>> find_lost({a: 5}, {a: 0}, {a: 5}, recorded_id="x", current_id="x")
    []
    """
    recreated = recorded_id is not None and current_id is not None and recorded_id != current_id
    lost = []
    for tp, off in sorted(known.items()):
        if tp not in end:
            lost.append(Lost(tp, off, None, None, "the partition is gone"))
        elif recreated:
            lost.append(Lost(tp, off, begin[tp], end[tp], f"the topic was created again "
                             f"(id {recorded_id} -> {current_id}): its old log is gone"))
        elif off > end[tp]:
            lost.append(Lost(tp, off, begin[tp], end[tp],
                             "the log ends before it: the log was reset or truncated"))
        elif off < begin[tp]:
            lost.append(Lost(tp, off, begin[tp], end[tp], "the log starts after it: "
                             "records were deleted before the stream read them"))
    return lost


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
