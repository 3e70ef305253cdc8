"""Validation and normalisation of behavioural events (event contract v1).

``validate_event`` takes the raw bytes of a Kafka record value (or an already
decoded mapping) and returns either a normalised :class:`dict` or a
:class:`Rejection` naming the field and the reason. It never raises on input: the
caller dead-letters rejections (``events.dlq``) with ``reason`` and ``detail``.

Rules (also in docs/events.md):

* ``user_id`` and ``event_type``: non-empty strings of at most 256 characters.
* ``ts``: ISO-8601 (``YYYY-MM-DD[THH:MM[:SS[.f]]][Z|±HH:MM]``; naive means UTC) or
  an epoch number (JSON number or digit string), its unit told by magnitude
  (:data:`EPOCH_BANDS`): below 1e11 seconds, below 1e14 milliseconds, below 1e17
  microseconds. Normalised to epoch milliseconds. Anything from 1970-01-01 on is
  valid; rejected as ``bad_timestamp``: negative numbers and dates before 1970, 1e17
  and more (nanoseconds?), and an 8-digit number that is also a ``yyyymmdd`` date
  (``19970101``: 1997-01-01, or 1970-08-20 in seconds?). More than a day ahead of
  the clock is ``ts_in_future``. Each detail says how the value was read.
* ``dwell_ms``, ``amount``: finite, non-negative JSON numbers, at most
  :data:`~segstream.contract.MAX_EVENT_NUMBER` (1e15; more is ``wrong_type``, as a
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
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from segstream.contract import (
    EVENT_FIELDS,
    MAX_EVENT_NUMBER,
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
_NUMBER_RE = re.compile(r"^-?\d{1,24}(?:\.\d{1,9})?$")
_YYYYMMDD_RE = re.compile(r"^(19[7-9]\d|20\d\d)(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")

#: Epoch units by magnitude: (upper bound, unit, ms per unit). Each bound is where
#: the next unit starts being more plausible: 1e11 s is the year 5138 while 1e11 ms
#: is 1973-03-03, and so on; so ms before 1973-03-03 and µs before 1973-03-03 are
#: read in the coarser unit, land centuries ahead and are rejected as ``ts_in_future``
#: with the reading in the detail.
EPOCH_BANDS: tuple[tuple[float, str, float], ...] = (
    (1e11, "epoch seconds (below 1e11)", 1000.0),
    (1e14, "epoch milliseconds (1e11 to 1e14)", 1.0),
    (1e17, "epoch microseconds (1e14 to 1e17)", 0.001),
)
ISO_READING = "ISO-8601"


class TimestampError(ValueError):
    """A ``ts`` value that is not a timestamp; the message says why."""


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
    >>> parse_timestamp(1767225600000000), parse_timestamp(852076800)  # µs; 1997 in s
    (1767225600000, 852076800000)
    >>> parse_timestamp("2026-01-01T01:00:00+01:00")
    1767225600000
    >>> parse_timestamp("yesterday") is None, parse_timestamp("1969-12-31") is None
    (True, True)
    """
    try:
        return read_timestamp(value)[0]
    except TimestampError:
        return None


def read_timestamp(value: Any) -> tuple[int, str]:
    """``(epoch ms, how it was read)`` of a ``ts`` value; :class:`TimestampError`
    saying why when it is not one (see the module docstring for the rules).

    >>> read_timestamp("852076800")
    (852076800000, 'epoch seconds (below 1e11)')
    >>> read_timestamp("19970101")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segstream.events.TimestampError: 19970101 is ambiguous: a yyyymmdd date (1997-01-01) ...
    """
    if isinstance(value, bool):
        raise TimestampError(f"{value!r} is a boolean, not ISO-8601 or an epoch number")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise TimestampError(f"{value!r} is not a finite number")
        # a JSON number has at most 20 digits; a mapping's int may have thousands
        text = repr(value) if not isinstance(value, int) or abs(value) < 10**40 else (
            "a number of more than 40 digits")
        return _epoch_ms(value, text)
    if isinstance(value, str):
        if _NUMBER_RE.match(value):
            return _epoch_ms(int(value) if value.lstrip("-").isdigit() else float(value),
                             value)
        ms = _parse_iso(value)
        if ms is None:
            raise TimestampError(
                f"{value[:40]!r} is neither ISO-8601 (YYYY-MM-DD[THH:MM[:SS[.f]]][Z|+HH:MM]) "
                "nor an epoch number")
        if ms < MIN_EVENT_TS_MS:
            raise TimestampError(f"{value[:40]!r} read as {ISO_READING} is {_iso(ms)}, before "
                                 "1970-01-01: the contract starts at the Unix epoch")
        return ms, ISO_READING
    raise TimestampError(f"must be ISO-8601 text or an epoch number, got {type(value).__name__}")


def _epoch_ms(number: int | float, text: str) -> tuple[int, str]:
    if number < 0:
        raise TimestampError(f"{text} is negative: epoch times count from 1970-01-01")
    if isinstance(number, int) and 19_700_101 <= number <= 20_991_231 and _YYYYMMDD_RE.match(
            str(number)):
        d = str(number)
        raise TimestampError(
            f"{number} is ambiguous: a yyyymmdd date ({d[:4]}-{d[4:6]}-{d[6:]}) or epoch "
            f"seconds ({_iso(number * 1000)}); send ISO-8601 (replay: --ts-format %Y%m%d)")
    for below, how, ms_per_unit in EPOCH_BANDS:
        if number < below:
            if isinstance(number, int):  # exact: no float rounding of large integers
                return number * round(ms_per_unit) if ms_per_unit >= 1 else number // round(
                    1 / ms_per_unit), how
            # seconds round to the nearest ms; ms and µs are truncated to whole ms
            return math.floor(number * ms_per_unit + (0.5 if ms_per_unit > 1 else 0.0)), how
    raise TimestampError(f"{text[:40]} is beyond the microsecond range (1e17 and more: "
                         "nanoseconds?); send seconds, milliseconds or microseconds")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    # exact integer arithmetic (timestamp() is a float; years before 1970 are negative)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    try:
        ts, how = read_timestamp(obj["ts"])
    except TimestampError as exc:
        return Rejection("bad_timestamp", "ts", str(exc))
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if ts > now + MAX_FUTURE_SKEW_MS:
        return Rejection("ts_in_future", "ts",
                         f"{str(obj['ts'])[:40]} read as {how} is {_iso(ts)}, more than 24 h "
                         f"after now ({_iso(now)})")
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
