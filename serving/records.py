"""The read path: users' aggregate records from Redis, evaluated as of a time.

A stored record holds a user's aggregates (``segstream.adapters.online_store``), not features:
features are a function of the record and an ``as_of`` time, evaluated here with the
one definition in ``segstream.core.aggregates`` (``evaluate_one`` for one user on the hot
path, ``evaluate`` for batches). So a user who stops acting ages in every answer:
recency grows, decayed rates fall, with no new event.

``as_of`` semantics (docs/api.md):

* default: now, per user ``max(now, last event)``: an event stamped slightly ahead of
  this host's clock (the validator accepts up to a day of skew) is evaluated at its own
  time rather than refused. "Now" follows the ``clock`` setting: ``wall`` (default) is
  the wall clock; ``event`` is the stream time the change detector has reached
  (replays and backfills of old logs), and until it is known each user is evaluated
  at their own newest event;
* explicit: that time for every user; earlier than a user's newest folded event is a
  422 (the record already holds later events; features at earlier times come from
  the history snapshots).

Errors are :mod:`segstream.serving.errors` classes: a record of other feature params or layout
is 503 (the service is misconfigured, not the caller), naming both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from segstream.adapters.online_store import OnlineRecord, decode_record
from segstream.core import times
from segstream.core.aggregates import (
    AGG_DTYPE,
    RECORD_BYTES,
    RECORD_DTYPE,
    RECORD_VERSION,
    FeatureParams,
    RecordMismatch,
    decode,
    evaluate,
    evaluate_one,
)
from segstream.core.times import format_time
from segstream.serving.errors import InvalidInput, Unavailable

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_as_of(text: str | None, field: str) -> int | None:
    """Epoch ms of an as-of time in the forms ``segstream.core.times`` reads (ISO-8601,
    no zone meaning UTC, or epoch s/ms/µs; the CLI's ``--as-of`` takes the same);
    ``None`` passes through. Anything else is a 422 naming ``field``.

    >>> parse_as_of("2026-12-01T10:00:00.250Z", "query.as_of")
    1796119200250
    >>> parse_as_of("2026-12-01", "query.as_of"), parse_as_of("1796083200", "query.as_of")
    (1796083200000, 1796083200000)
    """
    if text is None:
        return None
    try:
        return times.parse_as_of(text)
    except times.TimestampError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None


def wall_ms() -> int:
    return int(time.time() * 1000)


def decode_replies(user_ids: Sequence[str], replies: Sequence[Sequence[bytes | None]],
                   params: FeatureParams) -> list[OnlineRecord | None]:
    """Records of ``HMGET key agg n ts upd`` replies (``None`` for absent keys). Many
    records are decoded in one vectorised call; a mismatched one is a 503 naming it."""
    if len(replies) == 1:
        return [_decode_one(user_ids[0], replies[0], params)]
    present = [i for i, r in enumerate(replies) if r[0] is not None]
    out: list[OnlineRecord | None] = [None] * len(replies)
    if not present:
        return out
    try:
        aggs = decode([replies[i][0] for i in present], params)  # type: ignore[misc]
    except RecordMismatch:
        for i in present:  # find and name the first bad record
            _decode_one(user_ids[i], replies[i], params)
        raise
    for j, i in enumerate(present):
        _, n, ts, upd = replies[i]
        out[i] = OnlineRecord(aggs[j], int(n or 0), int(ts or 0), int(upd or 0))
    return out


def _decode_one(user_id: str, reply: Sequence[bytes | None], params: FeatureParams
                ) -> OnlineRecord | None:
    agg, n, ts, upd = reply
    if agg is not None and len(agg) == RECORD_BYTES:
        # the hot path: a read-only view of the packed fields when version and params
        # match (decode_record copies them, field by field, for writers; a lookup only
        # reads); anything else goes through decode_record and its errors
        rec = np.frombuffer(agg, RECORD_DTYPE)[0]
        if rec["version"] == RECORD_VERSION and rec["fingerprint"] == params.fingerprint:
            return OnlineRecord(rec["agg"], int(n or 0), int(ts or 0), int(upd or 0))
    try:
        return decode_record(reply, params)
    except RecordMismatch as exc:
        raise Unavailable(f"the stored record of user {user_id!r} cannot be evaluated by "
                          f"this API: {exc}") from exc


def as_of_times(user_ids: Sequence[str], records: Sequence[OnlineRecord],
                as_of_ms: int | None, field: str, now_ms: int | None) -> np.ndarray:
    """The as-of time of each record: ``max(now_ms, last event)`` by default (``now_ms``
    unknown: the last event), else ``as_of_ms`` (a 422 naming ``field`` if it is before
    a user's newest event)."""
    now = -1 if now_ms is None else now_ms
    if len(records) == 1 and (as_of_ms is None or as_of_ms >= records[0].last_event_ms):
        # the hot path (one user): plain ints, no numpy reductions
        t = max(records[0].last_event_ms, now) if as_of_ms is None else as_of_ms
        return np.array([t], dtype=np.int64)
    last = np.fromiter((r.last_event_ms for r in records), dtype=np.int64, count=len(records))
    if as_of_ms is None:
        return np.maximum(last, now)
    early = np.flatnonzero(last > as_of_ms)
    if len(early):
        i = int(early[0])
        raise InvalidInput(
            f"{field}: {format_time(as_of_ms)} is before the newest event of user "
            f"{user_ids[i]!r} ({format_time(int(last[i]))}); the stored record already holds "
            "it, so ask for a time at or after it (earlier features come from the "
            "history snapshots)", field=field)
    return np.full(len(records), as_of_ms, dtype=np.int64)


def evaluate_records(records: Sequence[OnlineRecord], as_of: np.ndarray,
                     params: FeatureParams) -> np.ndarray:
    """``(n, len(FEATURE_SPEC))`` features of the records at their as-of times."""
    if len(records) == 1:
        return evaluate_one(records[0].aggregates, int(as_of[0]), params)[None, :]
    aggs = np.array([r.aggregates for r in records], dtype=AGG_DTYPE)
    return evaluate(aggs, as_of, params)
