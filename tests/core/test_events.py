"""Event contract v1: every rejection reason, normalisation, timestamp units, no crash on
any bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.core.contract import DLQ_REASONS, MAX_EVENT_NUMBER, MAX_RECORD_BYTES
from segstream.core.events import Rejection, derive_event_id, validate_event
from segstream.core.times import EPOCH_BANDS, TimestampError, parse_timestamp, read_timestamp

NOW = 1_790_000_000_000  # 2026-09-21


def ok(**fields: object) -> bytes:
    base: dict[str, object] = {"user_id": "u1", "ts": "2026-09-20T10:00:00Z",
                               "event_type": "page_view"}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def reject(raw: bytes) -> Rejection:
    result = validate_event(raw, now_ms=NOW)
    assert isinstance(result, Rejection), result
    assert result.reason in DLQ_REASONS
    return result


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"\xff\xfe{}", "invalid_utf8", None),
        (b'{"user_id": "u1",', "invalid_json", None),
        (b'["u1"]', "not_an_object", None),
        (b"42", "not_an_object", None),
        (b'{"a":"' + b"x" * MAX_RECORD_BYTES + b'"}', "record_too_large", None),
        (ok(user_id=...), "missing_field", "user_id"),
        (ok(ts=...), "missing_field", "ts"),
        (ok(event_type=...), "missing_field", "event_type"),
        (ok(user_id=""), "empty_field", "user_id"),
        (ok(user_id="   "), "empty_field", "user_id"),
        (ok(event_type=""), "empty_field", "event_type"),
        (ok(user_id=42), "wrong_type", "user_id"),
        (ok(user_id="u" * 300), "field_too_long", "user_id"),
        (ok(category="c" * 300), "field_too_long", "category"),
        (ok(session_id=7), "wrong_type", "session_id"),
        (ok(ts="yesterday"), "bad_timestamp", "ts"),
        (ok(ts="2026-13-45T10:00:00Z"), "bad_timestamp", "ts"),
        (ok(ts=True), "bad_timestamp", "ts"),
        (ok(ts=-5), "bad_timestamp", "ts"),
        (ok(ts="-5"), "bad_timestamp", "ts"),
        (ok(ts="1969-12-31"), "bad_timestamp", "ts"),
        (ok(ts=10**17), "bad_timestamp", "ts"),  # nanoseconds of 1973: beyond µs
        (ok(ts="19970101"), "bad_timestamp", "ts"),  # yyyymmdd or seconds of 1970?
        (ok(ts=NOW + 2 * 86_400_000), "ts_in_future", "ts"),
        (ok(dwell_ms="ten"), "wrong_type", "dwell_ms"),
        (ok(dwell_ms=True), "wrong_type", "dwell_ms"),
        (ok(amount=-1.5), "negative_number", "amount"),
        (ok(dwell_ms=-1), "negative_number", "dwell_ms"),
        (ok(properties=[1, 2]), "wrong_type", "properties"),
    ],
)
def test_each_rejection_names_reason_and_field(raw: bytes, reason: str, field: str | None) -> None:
    r = reject(raw)
    assert (r.reason, r.field) == (reason, field)
    assert r.detail
    assert reason in r.message()


def test_non_finite_number_is_rejected() -> None:
    r = validate_event({"user_id": "u", "ts": NOW, "event_type": "x", "amount": float("nan")},
                       now_ms=NOW)
    assert isinstance(r, Rejection) and (r.reason, r.field) == ("wrong_type", "amount")


@pytest.mark.parametrize("name", ["dwell_ms", "amount"])
@pytest.mark.parametrize("value", [1e200, 1.5e15, 10**30, 2**63])
def test_a_number_past_the_bound_is_rejected(name: str, value: float) -> None:
    """Finite but absurd: a 1e200 ms dwell was accepted and made the user's dwell
    variance NaN (its square overflows), 1e308 amounts an infinite spend."""
    r = validate_event({"user_id": "u", "ts": NOW, "event_type": "x", name: value},
                       now_ms=NOW)
    assert isinstance(r, Rejection) and (r.reason, r.field) == ("wrong_type", name)
    assert "1e+15" in r.detail


def test_numbers_up_to_the_bound_fold_to_finite_features() -> None:
    """The bound is low enough: the largest accepted dwell and amount, many times over,
    leave every feature finite."""
    from segstream.core.aggregates import FeatureParams, empty, evaluate, fold

    n = 1000
    events = [validate_event({"user_id": "u", "ts": NOW - n + i, "event_type": "purchase",
                              "dwell_ms": MAX_EVENT_NUMBER, "amount": MAX_EVENT_NUMBER},
                             now_ms=NOW) for i in range(n)]
    assert not any(isinstance(e, Rejection) for e in events)
    aggs = empty(1)
    fold(aggs, np.zeros(n, dtype=np.int64), pd.DataFrame(events), FeatureParams())
    assert np.isfinite(evaluate(aggs, NOW, FeatureParams())).all()


def test_normalises_a_full_event() -> None:
    ev = validate_event(ok(event_id="e1", session_id="s1", content_id="c1", category="news",
                           dwell_ms=1500, amount=0, platform="ios", channel="email",
                           properties={"b": 1, "a": [1]}), now_ms=NOW)
    assert not isinstance(ev, Rejection)
    assert ev == {
        "event_id": "e1", "user_id": "u1", "ts": 1_789_898_400_000,  # 2026-09-20T10:00Z
        "event_type": "page_view", "session_id": "s1", "content_id": "c1", "category": "news",
        "dwell_ms": 1500.0, "amount": 0.0, "platform": "ios", "channel": "email",
        "properties": '{"b":1,"a":[1]}',
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01T00:00:00", 1_767_225_600_000),  # naive means UTC
        ("2026-01-01 00:00", 1_767_225_600_000),
        ("2026-01-01", 1_767_225_600_000),
        ("2026-01-01T02:00:00+02:00", 1_767_225_600_000),
        ("2026-01-01T02:00:00+0200", 1_767_225_600_000),
        ("2026-01-01T00:00:00.123456789Z", 1_767_225_600_123),
        (1_767_225_600, 1_767_225_600_000),  # epoch seconds
        (1_767_225_600.5, 1_767_225_600_500),
        (1_767_225_600_000, 1_767_225_600_000),  # epoch ms
        ("1767225600000", 1_767_225_600_000),
        ("1767225600", 1_767_225_600_000),
        (1_767_225_600_123_456, 1_767_225_600_123),  # epoch µs
        ("1767225600123456", 1_767_225_600_123),
        (852_076_800, 852_076_800_000),  # 1997-01-01 in seconds
        ("852076800000", 852_076_800_000),  # ... in ms
        ("1997-01-01", 852_076_800_000),
        (0, 0), (12, 12_000), ("1970-01-01", 0),  # from 1970 on, whatever the unit
        ("1970-01-01T01:00:00+01:00", 0),
    ],
)
def test_timestamp_forms(value: object, expected: int) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(("value", "words"), [
    ("1969-12-31T23:59:59Z", ["ISO-8601", "1969-12-31T23:59:59Z", "before 1970-01-01"]),
    ("1970-01-01T00:30:00+01:00", ["1969-12-31T23:30:00+00:00", "before 1970"]),
    (-1, ["negative"]), ("-1767225600", ["negative"]),
    (10**17, ["beyond the microsecond range"]), (1.5e18, ["nanoseconds"]),
    (19_970_101, ["ambiguous", "1997-01-01", "1970-08-20", "--ts-format %Y%m%d"]),
    ("soon", ["neither ISO-8601", "nor an epoch number"]),
    (True, ["boolean"]), ([1], ["got list"]),
])
def test_bad_timestamps_say_why(value: object, words: list[str]) -> None:
    with pytest.raises(TimestampError) as exc:
        read_timestamp(value)
    for w in words:
        assert w in str(exc.value)
    r = reject(ok(ts=value))
    assert (r.reason, r.field) == ("bad_timestamp", "ts") and r.detail == str(exc.value)


@pytest.mark.parametrize(("value", "unit"), [
    (30_000_000_000, "epoch seconds"),  # ms of 1970-12: read as seconds, year 2920
    (30_000_000_000_000, "epoch milliseconds"),  # µs of 1970-12: read as ms, year 2920
    (NOW // 1000 + 3 * 86_400, "epoch seconds"),
    ("2026-09-25T00:00:00Z", "ISO-8601"),
])
def test_future_detail_says_how_the_value_was_read(value: object, unit: str) -> None:
    r = reject(ok(ts=value))
    assert r.reason == "ts_in_future" and f"read as {unit}" in r.detail
    assert "more than 24 h after now (2026-09-21" in r.detail


def test_epoch_bands_are_contiguous_and_start_at_1970() -> None:
    """Each unit's band begins where the coarser one ends; 1e11 / 1e14 / 1e17 are
    1973-03-03 in ms / µs / ns, so every instant from 1973-03-03 has one reading in
    each unit."""
    bounds = [b for b, _, _ in EPOCH_BANDS]
    assert bounds == [1e11, 1e14, 1e17]
    assert read_timestamp(99_999_999_999)[1].startswith("epoch seconds")
    assert read_timestamp(100_000_000_000)[1].startswith("epoch milliseconds")
    assert read_timestamp(99_999_999_999_999)[1].startswith("epoch milliseconds")
    assert read_timestamp(100_000_000_000_000)[1].startswith("epoch microseconds")
    assert read_timestamp(99_999_999_999_999_999)[1].startswith("epoch microseconds")


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=100_000_000_000, max_value=NOW))  # 1973-03-03 .. now, in ms
def test_one_instant_in_every_unit_reads_the_same(ms: int) -> None:
    s = ms // 1000
    assert parse_timestamp(s) == parse_timestamp(str(s)) == s * 1000
    assert parse_timestamp(ms) == parse_timestamp(str(ms)) == ms
    assert parse_timestamp(ms * 1000 + 999) == parse_timestamp(str(ms * 1000)) == ms


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2026, 9, 1)))
def test_every_iso_instant_from_1970_is_accepted_exactly(dt: datetime) -> None:
    text = dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    ms = (dt.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1)
    assert parse_timestamp(text) == ms
    ev = validate_event(ok(ts=text), now_ms=NOW)
    assert isinstance(ev, dict) and ev["ts"] == ms


def test_event_id_is_derived_deterministically_when_absent() -> None:
    a = validate_event(ok(content_id="c9"), now_ms=NOW)
    b = validate_event(ok(content_id="c9"), now_ms=NOW)
    c = validate_event(ok(content_id="c8"), now_ms=NOW)
    assert isinstance(a, dict) and isinstance(b, dict) and isinstance(c, dict)
    assert a["event_id"] == b["event_id"] != c["event_id"]
    assert a["event_id"] == derive_event_id(a)


def test_same_instant_in_other_forms_gets_the_same_derived_id() -> None:
    a = validate_event(ok(ts="2026-09-20T12:00:00+02:00"), now_ms=NOW)
    b = validate_event(ok(ts=1_789_898_400_000), now_ms=NOW)
    assert isinstance(a, dict) and isinstance(b, dict)
    assert a["ts"] == b["ts"] and a["event_id"] == b["event_id"]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_no_byte_string_crashes_the_validator(raw: bytes) -> None:
    result = validate_event(raw, now_ms=NOW)
    assert isinstance(result, dict | Rejection)
    if isinstance(result, Rejection):
        assert result.reason in DLQ_REASONS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                   max_size=3),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["user_id", "ts", "event_type", "event_id", "dwell_ms", "amount",
                     "properties", "session_id", "other"]), json_values))
def test_no_json_object_crashes_the_validator(obj: dict[str, object]) -> None:
    raw = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS) if _serialisable(obj) else b"{}"
    result = validate_event(raw, now_ms=NOW)
    assert isinstance(result, dict | Rejection)
    if isinstance(result, dict):  # accepted ⇒ normalised shape
        assert isinstance(result["ts"], int) and result["user_id"].strip()


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["user_id", "ts", "event_type", "dwell_ms", "amount"]),
    st.integers() | st.floats() | st.text(max_size=30) | st.sampled_from(
        [10**400, -(10**400), 10**17, 19_970_101, "1" * 30, "-0", "0.5"])))
def test_no_mapping_crashes_the_validator(obj: dict[str, object]) -> None:
    """Mappings (not JSON bytes) can carry integers of any size."""
    result = validate_event({"user_id": "u", "ts": NOW, "event_type": "x", **obj}, now_ms=NOW)
    assert isinstance(result, dict | Rejection)


def _serialisable(obj: object) -> bool:
    try:
        orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        return True
    except (TypeError, orjson.JSONEncodeError):
        return False

