"""The JVM validator gives the Python validator's decision and reason for the same bytes."""

from __future__ import annotations

from typing import Any

import pytest

from segstream.events import Rejection, validate_event
from segstream.generator import GeneratorConfig, generate
from streaming.parse import parse_records

pytestmark = pytest.mark.spark

EDGE_CASES: list[bytes] = [
    b'{"user_id":"u1","ts":"2026-01-02T03:04:05Z","event_type":"search"}',
    b'{"user_id":"u1","ts":1767225600,"event_type":"x"}',
    b'{"user_id":"u1","ts":"1767225600000","event_type":"x"}',
    b'{"user_id":"u1","ts":1.5e3,"event_type":"x"}',
    b'{"user_id":"u1","ts":"2026-02-30","event_type":"x"}',
    b'{"user_id":"u1","ts":"2026-01-01T00:00:60Z","event_type":"x"}',
    b'{"user_id":"u1","ts":"2026-01-01T00:00:00+24:00","event_type":"x"}',
    b'{"user_id":"u1","ts":"2026-01-01T10:00:00.001+0130","event_type":"x"}',
    b'{"user_id":"u1","ts":"2026-01-01 10:00","event_type":"x"}',
    b'{"user_id":"u1","ts":"0000-01-01","event_type":"x"}',
    b'{"user_id":"u1","ts":"2099-01-01","event_type":"x"}',
    b'{"user_id":"u1","ts":true,"event_type":"x"}',
    b'{"user_id":"u1","ts":-5,"event_type":"x"}',
    b'{"user_id":"u1","ts":null,"event_type":"x"}',
    b'{"user_id":null,"ts":1767225600,"event_type":"x"}',
    b'{"user_id":7,"ts":1767225600,"event_type":"x"}',
    b'{"user_id":" \\t","ts":1767225600,"event_type":"x"}',
    b'{"user_id":"\\u00a0","ts":1767225600,"event_type":"x"}',
    b'{"user_id":"' + b"u" * 257 + b'","ts":1767225600,"event_type":"x"}',
    b'{"user_id":"u1","ts":1767225600,"event_type":"x","session_id":5}',
    b'{"user_id":"u1","ts":1767225600,"event_type":"x","category":""}',
    b'{"user_id":"u1","ts":1767225600,"event_type":"x","amount":true}',
    b'{"user_id":"u1","ts":1767225600,"event_type":"x","amount":-0.5}',
    b'{"user_id":"u1","ts":1767225600,"event_type":"x","dwell_ms":12}',
    b'{"user_id":"u1","ts":1767225600,"event_type":"x","properties":[1]}',
    b'{"user_id":"u1","ts":1767225600,"event_type":"x","properties":{"a":1}}',
    b'{"user_id":"u1","ts":1767225600,"event_type":"x"} trailing',
    b"null",
    b"42",
    b"",
    b"{" + b" " * 16_400 + b"}",
]


def _python(value: bytes) -> tuple[str | None, Any]:
    out = validate_event(value)
    if isinstance(out, Rejection):
        return out.reason, None
    return None, (out["user_id"], out["ts"], out["event_type"], out["dwell_ms"], out["amount"])


def test_jvm_and_python_agree_on_generated_and_edge_records(spark: Any) -> None:
    log = generate(GeneratorConfig(users=20, events=400, seed=3, malformed_rate=0.3))
    values = list(dict.fromkeys(log.values)) + EDGE_CASES
    df = spark.createDataFrame([(v,) for v in values], "value binary")
    rows = parse_records(df).select(
        "value", "reason", "user_id", "ts", "event_type", "dwell_ms", "amount").collect()
    assert len(rows) == len(values)
    reasons = set()
    for row in rows:
        reason, fields = _python(bytes(row["value"]))
        reasons.add(reason)
        assert row["reason"] == reason, bytes(row["value"])[:120]
        if reason is None:
            got = (row["user_id"], row["ts"], row["event_type"], row["dwell_ms"], row["amount"])
            assert got == fields, bytes(row["value"])[:120]
    # every reason the generator produces, and the edge cases' ones, were exercised
    assert reasons >= {None, "missing_field", "empty_field", "bad_timestamp", "negative_number",
                       "wrong_type", "invalid_json", "not_an_object", "invalid_utf8",
                       "record_too_large", "field_too_long", "ts_in_future"}
