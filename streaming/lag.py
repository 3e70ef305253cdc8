"""Records behind the log end, measured when a micro-batch is done.

The source's own figure (its latest offset when it planned the batch, minus the
batch's end) is non-zero only when ``stream_max_records_per_trigger`` cut the batch
short: records that arrive while a batch runs never show in it. The soak found the
gauge at 0 for a whole run while 1.4k–5.6k records waited (docs/benchmarks.md). So the
listener asks the broker for each partition's end after the batch, exactly
(``segstream.kafka.exact_end_offsets``, right on the embedded broker too), one call per
batch, and falls back to the source's figure if the broker does not answer in time.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from segstream.kafka import exact_end_offsets, make_consumer

log = logging.getLogger("segstream.stream")
Lag = dict[tuple[str, str], int]


def batch_offsets(progress: Any) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """(the batch's end offsets, the source's latest offsets), per topic and partition."""
    try:
        src = progress.sources[0]
        return json.loads(src.endOffset or "{}"), json.loads(src.latestOffset or "{}")
    except (IndexError, ValueError, TypeError):
        return {}, {}


def behind(end: dict[str, dict[str, int]], latest: dict[str, dict[str, int]]) -> Lag:
    """``latest - end`` per partition, never negative.

    >>> behind({"events": {"0": 5, "1": 7}}, {"events": {"0": 9, "1": 7}})
    {('events', '0'): 4, ('events', '1'): 0}
    """
    return {(topic, p): max(int(off) - int(end.get(topic, {}).get(p, 0)), 0)
            for topic, parts in latest.items() for p, off in parts.items()}


class LagMeter:
    """One driver-side consumer that measures partition ends after each batch."""

    def __init__(self, bootstrap: str, timeout_s: float = 5.0) -> None:
        self.bootstrap, self.timeout_s = bootstrap, timeout_s
        self._consumer: Any = None

    def lag(self, progress: Any) -> Lag:
        end, reported = batch_offsets(progress)
        if not end:
            return {}
        tps = [TopicPartition(t, int(p)) for t, parts in end.items() for p in parts]
        try:
            if self._consumer is None:
                ms = int(self.timeout_s * 1000)
                self._consumer = make_consumer(self.bootstrap, request_timeout_ms=ms,
                                               bootstrap_timeout_ms=ms)
            ends = exact_end_offsets(self._consumer, tps, timeout_s=self.timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.debug("partition ends not measured (%s): the source's figure instead", exc)
            return behind(end, reported)
        return behind(end, {t: {str(tp.partition): ends[tp] for tp in ends if tp.topic == t}
                            for t in end})

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
