"""Late records reach the dead letters with the bytes that were sent, read back from the
real broker by position; a position no longer in the log is still dead-lettered, and
says so."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from segstream.adapters.kafka import Producer
from segstream.streaming.late_bytes import GONE, LateBytes
from segstream.streaming.spark_state import DEAD_COLUMNS

pytestmark = pytest.mark.kafka


def test_late_rows_get_their_bytes_back_and_others_are_left_as_they_are(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory("late", partitions=1)
    producer = Producer(kafka_bootstrap)
    for i in range(6):  # offsets 0..5
        producer.send(topic, b'{"n":%d}' % i, key=b"k%d" % i)
    producer.flush()
    dead = pd.DataFrame([
        (None, None, None, 0, 4, "late", "late: behind"),
        (b"k", b"{bad", "events", 0, 9, "invalid_json", "invalid_json: x"),
        (None, None, None, 0, 1, "late", "late: behind"),
        (None, None, None, 0, 99, "late", "late: behind"),  # not in the log
    ], columns=list(DEAD_COLUMNS))
    late_bytes = LateBytes(kafka_bootstrap, topic)
    try:
        filled = late_bytes.fill(dead)
    finally:
        late_bytes.close()
    assert filled.loc[0, ["key", "value", "topic"]].tolist() == [b"k4", b'{"n":4}', topic]
    assert filled.loc[2, ["key", "value", "topic"]].tolist() == [b"k1", b'{"n":1}', topic]
    assert filled.loc[1].tolist() == dead.loc[1].tolist(), "a rejected row keeps its own bytes"
    assert filled.loc[3, "value"] is None and filled.loc[3, "detail"] == "late: behind" + GONE
    assert dead.loc[0, "value"] is None, "the caller's frame is not changed"
