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
from dataclasses import dataclass

import numpy as np

from segstream.adapters.online_store import decode_record
from segstream.core import times
from segstream.core.aggregates import (
    AGG_DTYPE,
    RECORD_BYTES,
    RECORD_DTYPE,
    RECORD_VERSION,
    FeatureParams,
    RecordMismatch,
    evaluate,
    evaluate_one,
)
from segstream.core.contract import FEATURE_SPEC
from segstream.core.times import format_time
from segstream.serving.errors import InvalidInput, Unavailable


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


@dataclass(frozen=True)
class StoredRows:
    """The ``HMGET key agg n ts upd`` replies of a micro-batch of ids, decoded at once.

    ``aggs`` holds the found records (``AGG_DTYPE``, a read-only view of the reply bytes
    when every record has this layout and params); ``row`` maps each id's position to
    its record (-1: no record); ``bad`` names the position and reason of a record this
    process cannot evaluate (other params or layout)."""

    aggs: np.ndarray
    row: list[int]
    last_ms: list[int]  # per found record: its newest event (the hash's ``ts``)
    updated_ms: list[int]  # per found record: when it was written (``upd``)
    bad: dict[int, str]


def decode_rows(replies: Sequence[Sequence[bytes | None]], params: FeatureParams
                ) -> StoredRows:
    """Every record of ``replies`` in one ``frombuffer`` (one check of version and
    params for all); a mismatched one is decoded alone to name its reason."""
    row = [-1] * len(replies)
    blobs: list[bytes] = []
    last: list[int] = []
    upd: list[int] = []
    for i, (agg, _, ts, up) in enumerate(replies):
        if agg is not None:
            row[i] = len(blobs)
            blobs.append(agg)  # type: ignore[arg-type]
            last.append(int(ts or 0))
            upd.append(int(up or 0))
    if not blobs:
        return StoredRows(np.zeros(0, dtype=AGG_DTYPE), row, last, upd, {})
    if all(len(b) == RECORD_BYTES for b in blobs):
        recs = np.frombuffer(b"".join(blobs) if len(blobs) > 1 else blobs[0], RECORD_DTYPE)
        ok = (recs["version"] == RECORD_VERSION) & (recs["fingerprint"] == params.fingerprint)
        if ok.all():
            return StoredRows(recs["agg"], row, last, upd, {})
    # one or more records of another layout or params: decode each, name the bad ones
    aggs = np.zeros(len(blobs), dtype=AGG_DTYPE)
    bad: dict[int, str] = {}
    for i, r in enumerate(row):
        if r < 0:
            continue
        try:
            rec = decode_record(replies[i], params)
        except RecordMismatch as exc:
            bad[i] = str(exc)
            continue
        assert rec is not None
        aggs[r] = rec.aggregates
    return StoredRows(aggs, row, last, upd, bad)


def unreadable(user_id: str, reason: str) -> Unavailable:
    """The 503 of a stored record this API cannot evaluate."""
    return Unavailable(f"the stored record of user {user_id!r} cannot be evaluated by "
                       f"this API: {reason}")


def too_early(field: str, as_of_ms: int, user_id: str, last_ms: int) -> InvalidInput:
    """The 422 of an explicit ``as_of`` before a user's newest folded event."""
    return InvalidInput(
        f"{field}: {format_time(as_of_ms)} is before the newest event of user "
        f"{user_id!r} ({format_time(last_ms)}); the stored record already holds "
        "it, so ask for a time at or after it (earlier features come from the "
        "history snapshots)", field=field)


#: below this many rows ``evaluate_one`` per row is cheaper than one ``evaluate``
#: (numpy's fixed cost per call; docs/serving.md, "Hot path")
VECTOR_ROWS = 8


def evaluate_rows(aggs: np.ndarray, as_of: list[int], params: FeatureParams) -> np.ndarray:
    """``(n, len(FEATURE_SPEC))`` features of the records at their as-of times, by the
    one definition (``segstream.core.aggregates``): row by row for a few, else one
    vectorised call."""
    if len(as_of) < VECTOR_ROWS:
        out = np.empty((len(as_of), len(FEATURE_SPEC)))
        for i, t in enumerate(as_of):
            out[i] = evaluate_one(aggs[i], t, params)
        return out
    return evaluate(aggs, np.asarray(as_of, dtype=np.int64), params)
