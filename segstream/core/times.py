"""Every way a time is read or written: the event contract's timestamp forms, the
``as_of`` of the CLI and the API (the same forms for both), and the one text format.

Timestamps (``ts`` of an event, ``--as-of``, ``?as_of=``) are ISO-8601
(``YYYY-MM-DD[THH:MM[:SS[.f]]][Z|±HH:MM]``; naive means UTC) or an epoch number (JSON
number or digit string) whose unit is told by magnitude (:data:`EPOCH_BANDS`), from
1970-01-01 on. Times are written as ISO-8601 in UTC (``+00:00``).

>>> parse_as_of("2026-12-01T10:00:00.250Z"), parse_as_of("1796119200")
(1796119200250, 1796119200000)
>>> format_time(1796119200250)
'2026-12-01T10:00:00.250+00:00'
>>> format_time(1796119200250, "seconds")
'2026-12-01T10:00:00+00:00'
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

from segstream.core.contract import MIN_EVENT_TS_MS

_ISO_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
#: The common RFC 3339 shape, ASCII digits only: ``datetime.fromisoformat`` reads it as is,
#: to the same instant as the general path (tests/core/test_times.py), at a tenth the cost.
_RFC3339_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                         r"(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})")
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



def format_time(ms: int, timespec: Literal["milliseconds", "seconds"] = "milliseconds") -> str:
    """Epoch ms as ISO-8601 in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec=timespec)


def parse_as_of(value: Any) -> int:
    """Epoch ms of an as-of time in any timestamp form; :class:`TimestampError` naming
    the forms otherwise. The callers add the field (``--as-of``, ``query.as_of``)."""
    try:
        return read_timestamp(value.strip() if isinstance(value, str) else value)[0]
    except TimestampError as exc:
        hint = (" (a '+' in a URL query arrives as a space: send it as %2B, or use Z)"
                if isinstance(value, str) and " " in value.strip() else "")
        raise TimestampError(f"{exc}; write ISO-8601, e.g. 2026-01-31, "
                             f"2026-01-31T12:00:00Z or 2026-01-31T12:00:00+01:00 (no zone: "
                             f"UTC), or epoch seconds/ms{hint}") from None


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
    segstream.core.times.TimestampError: 19970101 is ambiguous: a yyyymmdd date (1997-01-01; ...
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
            raise TimestampError(f"{value[:40]!r} read as {ISO_READING} is "
                                 f"{format_time(ms, 'seconds')}, before 1970-01-01: the "
                                 "contract starts at the Unix epoch")
        return ms, ISO_READING
    raise TimestampError(f"must be ISO-8601 text or an epoch number, got {type(value).__name__}")


def _epoch_ms(number: int | float, text: str) -> tuple[int, str]:
    if number < 0:
        raise TimestampError(f"{text} is negative: epoch times count from 1970-01-01")
    if isinstance(number, int) and 19_700_101 <= number <= 20_991_231 and _YYYYMMDD_RE.match(
            str(number)):
        d = str(number)
        raise TimestampError(
            f"{number} is ambiguous: a yyyymmdd date ({d[:4]}-{d[4:6]}-{d[6:]}; replay: "
            f"--ts-format %Y%m%d) or epoch seconds ({format_time(number * 1000, 'seconds')}); "
            "send ISO-8601")
    for below, how, ms_per_unit in EPOCH_BANDS:
        if number < below:
            if isinstance(number, int):  # exact: no float rounding of large integers
                return number * round(ms_per_unit) if ms_per_unit >= 1 else number // round(
                    1 / ms_per_unit), how
            # seconds round to the nearest ms; ms and µs are truncated to whole ms
            return math.floor(number * ms_per_unit + (0.5 if ms_per_unit > 1 else 0.0)), how
    raise TimestampError(f"{text[:40]} is beyond the microsecond range (1e17 and more: "
                         "nanoseconds?); send seconds, milliseconds or microseconds")




def _parse_iso(text: str) -> int | None:
    if _RFC3339_RE.fullmatch(text):
        try:
            return _ms_since_epoch(datetime.fromisoformat(text))
        except ValueError:  # a day or an offset out of range
            return None
    return _parse_iso_general(text)


def _parse_iso_general(text: str) -> int | None:
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
    return _ms_since_epoch(dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC))


def _ms_since_epoch(dt: datetime) -> int:
    # exact integer arithmetic (timestamp() is a float; years before 1970 are negative)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


