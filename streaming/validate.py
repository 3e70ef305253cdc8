"""Validate raw records with the contract's own validator, in Spark's Python workers.

``validate_records`` is a ``mapInArrow`` function: Arrow batches of source records
(``key``, ``value``, ``topic``, ``partition``, ``offset``) in, Arrow batches of
``VALIDATED_SCHEMA`` out. Each value goes through ``segstream.core.events.validate_event``,
the one definition of a valid event, so the stream, the batch command, ``replay`` and
the tests all accept and reject exactly the same bytes for the same reasons. A rejected
record keeps its original bytes and gets ``reason`` and ``detail`` (field and why) for
the dead-letter topic; an accepted one keeps only where it came from (``partition``,
``offset``).

The Python Kafka source validates inside its ``read()`` (:func:`validate_values`), so
records cross from Python to the JVM once, already validated; Spark's JVM Kafka source
and files go through the ``mapInArrow`` function :func:`validate_records`.

Why Python and not the JVM: the contract checks JSON *types* (``"ts": "7"`` and
``"ts": 7`` are different records), which ``from_json`` cannot see, and the JVM
VARIANT parser that can took 3.4-4.9 s per 100k records here against ~1.0 s for this
function (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pyarrow as pa

from segstream.core.events import Rejection, validate_event
from segstream.streaming.step import EVENT_COLUMNS

_TYPES = {"ts": pa.int64(), "dwell_ms": pa.float64(), "amount": pa.float64()}
#: Source columns carried along for the dead-letter topic and the arrival order.
CARRIED_COLUMNS: tuple[str, ...] = ("key", "value", "topic", "partition", "offset")

VALIDATED_SCHEMA = pa.schema(
    [pa.field(c, _TYPES.get(c, pa.string())) for c in EVENT_COLUMNS]
    + [pa.field("key", pa.binary()), pa.field("value", pa.binary()),
       pa.field("topic", pa.string()), pa.field("partition", pa.int32()),
       pa.field("offset", pa.int64()),
       pa.field("reason", pa.string()), pa.field("detail", pa.string())]
)
_SPARK_TYPES = {pa.string(): "string", pa.int64(): "long", pa.float64(): "double",
                pa.binary(): "binary", pa.int32(): "int"}
#: The same schema as a Spark DDL string (for ``mapInArrow``).
VALIDATED_DDL = ", ".join(f"`{f.name}` {_SPARK_TYPES[f.type]}" for f in VALIDATED_SCHEMA)

_NULL_VALUE = Rejection("invalid_json", None, "the record has no value (a tombstone)")


def validate_values(values: Sequence[bytes | None], *, keys: Sequence[bytes | None],
                    topic: str | Sequence[str], partition: int | Sequence[int],
                    offsets: Sequence[int], now_ms: int | None = None) -> pa.RecordBatch:
    """Source records as columns -> ``VALIDATED_SCHEMA`` (same rows, same order).

    Only rejected rows keep their bytes (``key``, ``value``, ``topic``): accepted rows are
    the state step's input, where the bytes would be shuffled for nothing. The few
    accepted records later found late are re-read by (``partition``, ``offset``) for
    the dead-letter topic (:mod:`segstream.streaming.late_bytes`). ``topic`` and
    ``partition`` may be one value for every row (the Python source reads one range)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    n = len(values)
    columns: dict[str, list[object]] = {c: [None] * n for c in EVENT_COLUMNS}
    reasons: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    rejected: list[int] = []
    event_columns = [(c, columns[c]) for c in EVENT_COLUMNS]
    for i, value in enumerate(values):
        out = _NULL_VALUE if value is None else validate_event(value, now_ms=now)
        if isinstance(out, Rejection):
            rejected.append(i)
            reasons[i] = out.reason
            details[i] = out.message()
        else:
            for c, column in event_columns:
                column[i] = out[c]
    kept: dict[str, list[object]] = {c: [None] * n for c in ("key", "value", "topic")}
    for i in rejected:  # only rejected rows keep their bytes
        kept["key"][i], kept["value"][i] = keys[i], values[i]
        kept["topic"][i] = topic if isinstance(topic, str) else topic[i]
    arrays = [pa.array(columns[c], VALIDATED_SCHEMA.field(c).type) for c in EVENT_COLUMNS]
    arrays += [
        pa.array(kept["key"], pa.binary()), pa.array(kept["value"], pa.binary()),
        pa.array(kept["topic"], pa.string()),
        pa.array([partition] * n if isinstance(partition, int) else partition, pa.int32()),
        pa.array(offsets, pa.int64()),
        pa.array(reasons, pa.string()), pa.array(details, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=VALIDATED_SCHEMA)


def validate_batch(batch: pa.RecordBatch, now_ms: int | None = None) -> pa.RecordBatch:
    """One Arrow batch of source records (``CARRIED_COLUMNS``) -> ``VALIDATED_SCHEMA``.

    >>> b = pa.RecordBatch.from_pydict({
    ...     "key": [b"u1", None], "value": [b'{"user_id":"u1","ts":1767323045000,'
    ...     b'"event_type":"search"}', b'{"user_id":7}'], "topic": ["events"] * 2,
    ...     "partition": pa.array([0, 0], pa.int32()), "offset": [0, 1]})
    >>> out = validate_batch(b).to_pydict()
    >>> out["ts"], out["reason"], out["value"][0], out["offset"]
    ([1767323045000, None], [None, 'wrong_type'], None, [0, 1])
    >>> out["detail"][1]
    "wrong_type: field 'user_id': must be a string, got int"
    """
    cols = {c: batch.column(c).to_pylist() for c in CARRIED_COLUMNS}
    return validate_values(cols["value"], keys=cols["key"], topic=cols["topic"],
                           partition=cols["partition"], offsets=cols["offset"], now_ms=now_ms)


def validate_records(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The ``mapInArrow`` function (for Spark's JVM Kafka source and files):
    :func:`validate_batch` on every batch."""
    for batch in batches:
        yield validate_batch(batch)
