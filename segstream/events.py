"""Validation and normalisation of behavioural events (event contract v1).

``validate_event`` takes the raw bytes of a Kafka record value (or an already
decoded mapping) and returns either a normalised :class:`dict` or a
:class:`Rejection` naming the field and the reason. It never raises on input: the
caller dead-letters rejections (``events.dlq``) with ``reason`` and ``detail``.

Rules (also in docs/events.md):

* ``user_id`` and ``event_type``: non-empty strings of at most 256 characters.
* ``ts``: ISO-8601 (``YYYY-MM-DD[THH:MM[:SS[.f]]][Z|±HH:MM]``; naive means UTC) or
  epoch seconds/milliseconds as a JSON number or digit string (values below 1e11
  are seconds). Normalised to epoch milliseconds. Before 2000 is rejected as a unit
  mistake; more than a day in the future is rejected as ``ts_in_future``.
* ``dwell_ms``, ``amount``: finite, non-negative JSON numbers.
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
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from segstream.contract import (
    EVENT_FIELDS,
    MAX_FIELD_CHARS,
    MAX_FUTURE_SKEW_MS,
    MAX_RECORD_BYTES,
    MIN_EVENT_TS_MS,
    OPTIONAL_NUMBER_FIELDS,
    OPTIONAL_STRING_FIELDS,
)

Event = dict[str, Any]

_ISO_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_DIGITS_RE = re.compile(r"^\d{1,16}$")
_EPOCH_SECONDS_BELOW = 100_000_000_000  # 1e11: as seconds that is year 5138, as ms 1973


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was not accepted. ``reason`` is one of ``contract.DLQ_REASONS``."""

    reason: str
    field: str | None
    detail: str

    def message(self) -> str:
        where = f"field {self.field!r}: " if self.field else ""
        return f"{self.reason}: {where}{self.detail}"


def parse_timestamp(value: Any) -> int | None:
    """Return epoch milliseconds for an accepted timestamp form, else ``None``.

    >>> parse_timestamp("2026-01-01")
    1767225600000
    >>> parse_timestamp(1767225600), parse_timestamp("1767225600000")
    (1767225600000, 1767225600000)
    >>> parse_timestamp("2026-01-01T01:00:00+01:00")
    1767225600000
    >>> parse_timestamp("yesterday") is None
    True
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            return None
        number = float(value)
    elif isinstance(value, str):
        if _DIGITS_RE.match(value):
            number = float(value)
        else:
            return _parse_iso(value)
    else:
        return None
    ms = number * 1000 if number < _EPOCH_SECONDS_BELOW else number
    return int(ms)


def _parse_iso(text: str) -> int | None:
    m = _ISO_RE.match(text)
    if not m:
        return None
    date, hhmm, ss, frac, zone = m.groups()
    iso = date + "T" + (hhmm or "00:00") + ":" + (ss or "00")
    if frac:
        iso += "." + frac[:6].ljust(6, "0")
    if zone and zone != "Z":
        iso += zone if ":" in zone else zone[:3] + ":" + zone[3:]
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


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
    raw: bytes | str | Mapping[str, Any], *, now_ms: int | None = None
) -> Event | Rejection:
    """Validate one record. See the module docstring for the rules."""
    if isinstance(raw, bytes | bytearray | memoryview):
        raw = bytes(raw)
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
    ts = parse_timestamp(obj["ts"])
    if ts is None:
        return Rejection(
            "bad_timestamp", "ts",
            f"{str(obj['ts'])[:40]!r} is neither ISO-8601 nor epoch seconds/milliseconds",
        )
    if ts < MIN_EVENT_TS_MS:
        return Rejection("bad_timestamp", "ts", f"{ts} ms is before 2000-01-01: a unit mistake?")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if ts > now + MAX_FUTURE_SKEW_MS:
        return Rejection("ts_in_future", "ts", f"{ts} ms is more than 24 h after now ({now} ms)")
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
        if not math.isfinite(value):
            return Rejection("wrong_type", name, "must be a finite number")
        if value < 0:
            return Rejection("negative_number", name, f"{value} is negative")
        out[name] = float(value)

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
