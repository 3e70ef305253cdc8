"""The original bytes of late records, re-read from the events topic for the dead letters.

Accepted records reach the state step without their bytes (``validate.validate_values``:
shuffling every value for the few found late cost more than reading those again). A
late record keeps its ``partition`` and ``offset``; before the dead letters are written,
:meth:`LateBytes.fill` reads its key and value back at that position, so the
dead-letter topic holds exactly the bytes that were sent. A record no longer in the log
(retention ran between the read and now) is still dead-lettered, without its bytes and
with a detail that says so: nothing is dropped silently.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pandas as pd

FETCH_TIMEOUT_S = 10.0
GONE = " (its bytes are no longer in the log)"


class LateBytes:
    """One consumer on the driver, opened at the first late record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer: Any = None

    def fill(self, dead: pd.DataFrame) -> pd.DataFrame:
        """``dead`` (``spark_state.DEAD_COLUMNS``) with each late row's key, value and
        topic read back from the log."""
        late = (dead["reason"] == "late") & dead["value"].isna()
        if not late.any():
            return dead
        dead = dead.copy()
        rows = dead.index[late]
        wanted = [(int(p), int(o)) for p, o in zip(dead.loc[late, "partition"].tolist(),
                                                    dead.loc[late, "offset"].tolist(),
                                                    strict=True)]
        found = self.read(wanted)
        for i, at in zip(rows, wanted, strict=True):
            dead.at[i, "topic"] = self.topic
            if at in found:
                dead.at[i, "key"], dead.at[i, "value"] = found[at]
            else:
                dead.at[i, "detail"] = f"{dead.at[i, 'detail']}{GONE}"
        return dead

    def read(self, wanted: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[Any, Any]]:
        """(key, value) of the records at these (partition, offset) still in the log."""
        from kafka import TopicPartition

        from segstream.adapters.kafka import exact_end_offsets, make_consumer

        if self._consumer is None:
            self._consumer = make_consumer(self.bootstrap, auto_offset_reset="none")
        consumer = self._consumer
        by_partition: dict[int, set[int]] = defaultdict(set)
        for partition, offset in wanted:
            by_partition[partition].add(offset)
        found: dict[tuple[int, int], tuple[Any, Any]] = {}
        for partition, offsets in by_partition.items():
            tp = TopicPartition(self.topic, partition)
            consumer.assign([tp])
            begin = consumer.beginning_offsets([tp])[tp]
            end = exact_end_offsets(consumer, [tp])[tp]
            for offset in sorted(o for o in offsets if begin <= o < end):
                consumer.seek(tp, offset)
                deadline = time.monotonic() + FETCH_TIMEOUT_S
                while (partition, offset) not in found and time.monotonic() < deadline:
                    for msg in consumer.poll(timeout_ms=200, max_records=1).get(tp, []):
                        if msg.offset == offset:
                            found[(partition, offset)] = (msg.key, msg.value)
                    if consumer.position(tp) > offset:
                        break
        consumer.assign([])
        return found

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
