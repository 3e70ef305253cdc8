"""Records behind the log end, measured when a micro-batch is done.

The source's own figure (its latest offset when it planned the batch, minus the
batch's end) is non-zero only when ``stream_max_records_per_trigger`` cut the batch
short: records that arrive while a batch runs never show in it, so under a steady
load it reads 0 while thousands wait. The listener therefore asks the broker for each
partition's end after the batch, exactly (``segstream.adapters.kafka.exact_end_offsets``,
right on the embedded broker too), one call per batch, and falls back to the source's
figure if the broker does not answer in time.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from segstream.adapters.kafka import exact_end_offsets, make_consumer
from segstream.streaming.kafka_offsets import from_spark

log = logging.getLogger("segstream.stream")
Lag = dict[tuple[str, str], int]
Offsets = dict[TopicPartition, int]


def batch_offsets(progress: Any) -> tuple[Offsets, Offsets]:
    """(the batch's end offsets, the source's latest offsets) per partition; the
    source's bookkeeping entries (``@``-keys, ``kafka_offsets``) are left out."""
    try:
        src = progress.sources[0]
        return (from_spark(json.loads(src.endOffset or "{}")),
                from_spark(json.loads(src.latestOffset or "{}")))
    except (IndexError, ValueError, TypeError, AttributeError):
        return {}, {}


def behind(end: Offsets, latest: Offsets) -> Lag:
    """``latest - end`` per partition, never negative.

    >>> tp0, tp1 = TopicPartition("events", 0), TopicPartition("events", 1)
    >>> behind({tp0: 5, tp1: 7}, {tp0: 9, tp1: 7})
    {('events', '0'): 4, ('events', '1'): 0}
    """
    return {(tp.topic, str(tp.partition)): max(off - end.get(tp, 0), 0)
            for tp, off in sorted(latest.items())}


class LagMeter:
    """One driver-side consumer that measures partition ends after each batch."""

    def __init__(self, bootstrap: str, timeout_s: float = 5.0) -> None:
        self.bootstrap, self.timeout_s = bootstrap, timeout_s
        self._consumer: Any = None

    def lag(self, progress: Any) -> Lag:
        end, reported = batch_offsets(progress)
        if not end:
            return {}
        try:
            if self._consumer is None:
                ms = int(self.timeout_s * 1000)
                self._consumer = make_consumer(self.bootstrap, request_timeout_ms=ms,
                                               bootstrap_timeout_ms=ms)
            ends = exact_end_offsets(self._consumer, sorted(end), timeout_s=self.timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.debug("partition ends not measured (%s): the source's figure instead", exc)
            return behind(end, reported)
        return behind(end, ends)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
