"""Validation and normalisation of behavioural events (event contract v1).

``validate_event`` takes the raw bytes of a Kafka record value (or an already
decoded mapping) and returns either a normalised :class:`dict` or a
:class:`Rejection` naming the field and the reason. It never raises on input: the
caller dead-letters rejections (``events.dlq``) with ``reason`` and ``detail``.

Rules (also in docs/events.md):

* ``user_id`` and ``event_type``: non-empty strings of at most 256 characters.
* ``ts``: ISO-8601 (``YYYY-MM-DD[THH:MM[:SS[.f]]][Z|±HH:MM]``; naive means UTC) or
  an epoch number (JSON number or digit string), its unit told by magnitude
  (``segstream.core.times.EPOCH_BANDS``): below 1e11 seconds, below 1e14
  milliseconds, below 1e17 microseconds. Normalised to epoch milliseconds. Anything
  from 1970-01-01 on is valid; rejected as ``bad_timestamp``: negative numbers and
  dates before 1970, 1e17 and more (nanoseconds?), and an 8-digit number that is
  also a ``yyyymmdd`` date (``19970101``: 1997-01-01, or 1970-08-20 in seconds?).
  More than a day ahead of the clock is ``ts_in_future``. Each detail says how the value was read.
* ``dwell_ms``, ``amount``: finite, non-negative JSON numbers, at most
  :data:`~segstream.core.contract.MAX_EVENT_NUMBER` (1e15; more is ``wrong_type``, as a
  non-finite number is: the aggregates' sums of squares would overflow).
* ``event_id`` absent: derived deterministically from the other fields, so a
  resent duplicate gets the same id and is deduplicated downstream.

Examples
--------
>>> ev = validate_event(b'{"user_id":"u1","ts":"2026-01-02T03:04:05Z","event_type":"search"}')
>>> ev["ts"], ev["event_type"], len(ev["event_id"])
(1767323045000, 'search', 24)
>>> validate_event(b'{"user_id":"","ts":1,"event_type":"x"}')
Rejection(reason='empty_field', field='user_id', detail='must be a non-empty string')
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from segstream.core.contract import (
    EVENT_FIELDS,
    MAX_EVENT_NUMBER,
    MAX_FIELD_CHARS,
    MAX_FUTURE_SKEW_MS,
    MAX_RECORD_BYTES,
    OPTIONAL_NUMBER_FIELDS,
    OPTIONAL_STRING_FIELDS,
)
from segstream.core.fast_events import accept
from segstream.core.times import TimestampError, format_time, read_timestamp

Event = dict[str, Any]

@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was not accepted. ``reason`` is one of ``contract.DLQ_REASONS``."""

    reason: str
    field: str | None
    detail: str

    def message(self) -> str:
        where = f"field {self.field!r}: " if self.field else ""
        return f"{self.reason}: {where}{self.detail}"


def derive_event_id(event: Mapping[str, Any]) -> str:
    """A deterministic id from the normalised fields (except ``event_id``).

    Two records with the same content get the same id, so a producer that resends
    without ids is still deduplicated.
    """
    parts = [
        "" if event.get(name) is None else str(event[name])
        for name in EVENT_FIELDS
        if name != "event_id"
    ]
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def validate_event(
    raw: bytes | str | Mapping[str, Any], *, now_ms: int | None = None, typed: bool = True
) -> Event | Rejection:
    """Validate one record. See the module docstring for the rules.

    Bytes go first through the typed accept path (:mod:`segstream.core.fast_events`);
    what it does not accept gets the rules below. ``typed=False``: the rules alone (the
    reference the typed path is tested against)."""
    if isinstance(raw, bytes | bytearray | memoryview):
        raw = bytes(raw)
        event = accept(raw, int(time.time() * 1000) if now_ms is None else now_ms) \
            if typed else None
        if event is not None:  # the common shape, typed-decoded; the rest is checked here
            event["event_id"] = event["event_id"] or derive_event_id(event)
            return event
        if len(raw) > MAX_RECORD_BYTES:
            return Rejection(
                "record_too_large", None, f"{len(raw)} bytes, the limit is {MAX_RECORD_BYTES}"
            )
        try:  # orjson checks UTF-8 itself: decode only to tell the two failures apart
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                return Rejection("invalid_utf8", None, f"byte {bad.start} is not valid UTF-8")
            return Rejection("invalid_json", None, str(exc)[:200])
    elif isinstance(raw, str):
        if len(raw.encode("utf-8", "surrogatepass")) > MAX_RECORD_BYTES:
            return Rejection("record_too_large", None, f"the limit is {MAX_RECORD_BYTES} bytes")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return Rejection("invalid_json", None, str(exc)[:200])
    else:
        obj = raw
    if not isinstance(obj, Mapping):
        return Rejection("not_an_object", None, f"expected a JSON object, got {type(obj).__name__}")
    return _validate_object(obj, now_ms)


def _validate_object(obj: Mapping[str, Any], now_ms: int | None) -> Event | Rejection:
    out: Event = dict.fromkeys(EVENT_FIELDS)
    for name in ("user_id", "event_type"):
        value = obj.get(name)
        if value is None:
            return Rejection("missing_field", name, "is required")
        if not isinstance(value, str):
            return Rejection("wrong_type", name, f"must be a string, got {type(value).__name__}")
        if not value.strip():
            return Rejection("empty_field", name, "must be a non-empty string")
        if len(value) > MAX_FIELD_CHARS:
            return Rejection("field_too_long", name, f"{len(value)} chars, max {MAX_FIELD_CHARS}")
        out[name] = value

    if obj.get("ts") is None:
        return Rejection("missing_field", "ts", "is required")
    try:
        ts, how = read_timestamp(obj["ts"])
    except TimestampError as exc:
        return Rejection("bad_timestamp", "ts", str(exc))
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if ts > now + MAX_FUTURE_SKEW_MS:
        return Rejection("ts_in_future", "ts",
                         f"{str(obj['ts'])[:40]} read as {how} is "
                         f"{format_time(ts, 'seconds')}, more than 24 h after now "
                         f"({format_time(now, 'seconds')})")
    out["ts"] = ts

    for name in OPTIONAL_STRING_FIELDS:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            return Rejection("wrong_type", name, f"must be a string, got {type(value).__name__}")
        if len(value) > MAX_FIELD_CHARS:
            return Rejection("field_too_long", name, f"{len(value)} chars, max {MAX_FIELD_CHARS}")
        out[name] = value or None

    for name in OPTIONAL_NUMBER_FIELDS:
        value = obj.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Rejection("wrong_type", name, f"must be a number, got {type(value).__name__}")
        number = float(value) if abs(value) < 1e300 else math.inf  # ints of any size
        if not math.isfinite(number):
            return Rejection("wrong_type", name, "must be a finite number")
        if number < 0:
            return Rejection("negative_number", name, f"{number} is negative")
        if number > MAX_EVENT_NUMBER:  # finite, but the fold's squares would not be
            return Rejection("wrong_type", name,
                             f"{number:g} is more than {MAX_EVENT_NUMBER:g}, the largest "
                             "accepted (beyond it the aggregates overflow; another unit?)")
        out[name] = number

    props = obj.get("properties")
    if props is not None:
        if not isinstance(props, Mapping):
            return Rejection(
                "wrong_type", "properties", f"must be an object, got {type(props).__name__}"
            )
        try:
            out["properties"] = orjson.dumps(props).decode()
        except (TypeError, orjson.JSONEncodeError) as exc:
            return Rejection("wrong_type", "properties", f"not serialisable as JSON: {exc}")

    event_id = out["event_id"] or derive_event_id(out)
    out["event_id"] = event_id
    return out
