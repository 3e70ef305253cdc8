"""Migrations: how many changes went from which segment (and RFM group) to which, per
hour of change time, counted where the changes are committed.

The change detector adds each change it publishes to the hash of the hour of its
``ts_ms`` (the as-of time of the evaluation that made it), ``seg:migrations:<hour start
ms>`` (:func:`~segstream.adapters.redis_keys.migrations_key`), with fields

* ``n``: change events (one event may change both the segment and the group);
* ``s:<from>><to>``: segment changes, by segment id;
* ``g:<from>><to>``: RFM-group changes, by group name (``segstream.core.rfm.GROUPS``).

The increments go in the same Redis transaction as the users' new state
(``seg:segment:<user>``), after the changes were flushed to ``segment-changes``. So a
bucket counts exactly the changes whose state is committed: a change republished after
a crash (the state was not committed, so it is decided again, with the same
``change_id``) is counted once, when its state commits. Counting from the topic
instead would read the window's messages on every request and need a dedupe by
``change_id``; the hashes are O(hours) to read. On a Redis Cluster the state keys span
slots (no transaction): the counts are written right after the state, so a crash
between the two leaves those changes uncounted (docs/serving.md).

``GET /v1/segments/migrations`` sums the hashes of the hours in a window: whole hours,
``since`` rounded down and ``until`` up, at most :data:`MAX_WINDOW_MS`.

>>> c = bucket_counts([{"ts_ms": 7_200_001, "changed": ["segment", "rfm_group"],
...                     "from_segment": 1, "to_segment": 2,
...                     "from_rfm_group": "Loyal", "to_rfm_group": "At Risk"}])
>>> dict(c[7_200_000])
{'n': 1, 's:1>2': 1, 'g:Loyal>At Risk': 1}
>>> m = matrix([[b"n", b"1", b"s:1>2", b"1", b"g:Loyal>At Risk", b"1"], [b"n", b"2",
...             b"s:1>2", b"2"]])
>>> m["changes"], m["segment_changes"], m["segments"]
(3, 3, [{'from_segment': 1, 'to_segment': 2, 'count': 3}])
>>> m["rfm_groups"]
[{'from_group': 'Loyal', 'to_group': 'At Risk', 'count': 1}]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from segstream.adapters.redis_keys import migrations_key

BUCKET_MS = 3_600_000  # one hour
MAX_WINDOW_MS = 31 * 24 * BUCKET_MS  # 744 hashes read per request at most
#: A bucket expires this long after its last write (a year of hours, then some).
RETENTION_S = 400 * 86_400
EVENTS = "n"
SEGMENT, GROUP = "s:", "g:"
_ARROW = ">"


def bucket_of(ts_ms: int) -> int:
    """The start of the hour ``ts_ms`` is in."""
    return ts_ms - ts_ms % BUCKET_MS


def window(since_ms: int, until_ms: int) -> tuple[int, int]:
    """``[since, until)`` widened to whole hours: since rounded down, until up.

    >>> window(5_400_000, 5_400_001)
    (3600000, 7200000)
    """
    end = bucket_of(until_ms)
    return bucket_of(since_ms), end if end == until_ms else end + BUCKET_MS


def buckets(start_ms: int, end_ms: int) -> list[int]:
    """The hour starts in ``[start_ms, end_ms)`` (both whole hours)."""
    return list(range(start_ms, end_ms, BUCKET_MS))


def bucket_counts(changes: Iterable[dict[str, Any]]) -> dict[int, Counter[str]]:
    """The increments of published changes, by hour of their ``ts_ms``."""
    out: dict[int, Counter[str]] = {}
    for c in changes:
        counts = out.setdefault(bucket_of(int(c["ts_ms"])), Counter())
        counts[EVENTS] += 1
        if "segment" in c["changed"]:
            counts[f"{SEGMENT}{c['from_segment']}{_ARROW}{c['to_segment']}"] += 1
        if "rfm_group" in c["changed"]:
            counts[f"{GROUP}{c['from_rfm_group']}{_ARROW}{c['to_rfm_group']}"] += 1
    return out


def add_counts(pipe: Any, counts: dict[int, Counter[str]]) -> None:
    """Queue the increments on a redis-py pipeline (the caller's transaction)."""
    for bucket, fields in counts.items():
        key = migrations_key(bucket)
        for field, n in fields.items():
            pipe.hincrby(key, field, n)
        pipe.expire(key, RETENTION_S)


def read_commands(start_ms: int, end_ms: int) -> list[tuple[str, str]]:
    """``HGETALL`` of every hour of the window."""
    return [("HGETALL", migrations_key(b)) for b in buckets(start_ms, end_ms)]


def matrix(replies: Sequence[Sequence[bytes]]) -> dict[str, Any]:
    """The summed matrices of ``HGETALL`` replies (flat field/value lists): totals and
    the non-zero from -> to cells, largest first (ties in key order)."""
    total: Counter[str] = Counter()
    for reply in replies:
        for raw, value in zip(reply[::2], reply[1::2], strict=True):
            total[raw.decode()] += int(value)
    segments, groups = [], []
    for field, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])):
        if field.startswith(SEGMENT):
            a, b = field[len(SEGMENT):].split(_ARROW)
            segments.append({"from_segment": int(a), "to_segment": int(b), "count": n})
        elif field.startswith(GROUP):
            a, b = field[len(GROUP):].split(_ARROW)
            groups.append({"from_group": a, "to_group": b, "count": n})
    return {"changes": total[EVENTS],
            "segment_changes": sum(c["count"] for c in segments),
            "rfm_group_changes": sum(c["count"] for c in groups),
            "segments": segments, "rfm_groups": groups}
