"""Spark-style duration strings ("10 minutes", "1s", "500 ms") as milliseconds."""

from __future__ import annotations

import re

_UNITS_MS = {
    "ms": 1, "millisecond": 1, "milliseconds": 1,
    "s": 1000, "sec": 1000, "second": 1000, "seconds": 1000,
    "m": 60_000, "min": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def duration_ms(text: str) -> int:
    """
    >>> duration_ms("10 minutes"), duration_ms("1s"), duration_ms("0.5 seconds")
    (600000, 1000, 500)
    """
    m = _RE.match(text.lower())
    if not m or m.group(2) not in _UNITS_MS:
        raise ValueError(
            f"cannot read duration {text!r}; write a number and a unit, e.g. '10 minutes', "
            f"'1s', '500 ms' (units: {', '.join(sorted(set(_UNITS_MS)))})"
        )
    return int(float(m.group(1)) * _UNITS_MS[m.group(2)])
