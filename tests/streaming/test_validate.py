"""Validation inside Spark: every record keeps its place and gets the contract
validator's decision, normalised fields and reason; a rejected one keeps its bytes for
the dead-letter topic, an accepted one does not carry them into the state step."""

from __future__ import annotations

from typing import Any

import pytest

from segstream.core.events import Rejection, validate_event
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.validate import VALIDATED_DDL, validate_records

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


def _expected(value: bytes) -> tuple[Any, ...]:
    out = validate_event(value)
    if isinstance(out, Rejection):
        return (out.reason, out.message(), None, None, None, None, None)
    return (None, None, out["user_id"], out["ts"], out["event_type"], out["dwell_ms"],
            out["amount"])


def test_validation_in_spark_matches_the_contract_validator_row_for_row(spark: Any) -> None:
    log = generate(GeneratorConfig(users=20, events=400, seed=3, malformed_rate=0.3))
    values: list[bytes | None] = [*dict.fromkeys(log.values), *EDGE_CASES, None]
    source = spark.createDataFrame(
        [(b"k%d" % i, v, "events", i % 3, 1000 + i) for i, v in enumerate(values)],
        "key binary, value binary, topic string, partition int, offset long")
    rows = source.repartition(2).mapInArrow(validate_records, VALIDATED_DDL).collect()
    assert len(rows) == len(values)
    reasons = set()
    for row in rows:
        i = row["offset"] - 1000
        assert row["partition"] == i % 3
        rejected = row["reason"] is not None  # the original bytes, for the dead-letter topic
        assert (row["key"], row["value"], row["topic"]) == (
            (b"k%d" % i, values[i], "events") if rejected else (None, None, None))
        got = (row["reason"], row["detail"], row["user_id"], row["ts"], row["event_type"],
               row["dwell_ms"], row["amount"])
        if values[i] is None:  # a tombstone
            assert row["reason"] == "invalid_json" and "no value" in row["detail"]
            continue
        reasons.add(row["reason"])
        want = _expected(values[i])
        if row["reason"] == "ts_in_future":  # the detail names "now", which moved on
            got, want = got[:1] + got[2:], want[:1] + want[2:]
        assert got == want, values[i][:120]
    # every reason the generator produces, and the edge cases' ones, were exercised
    assert reasons >= {None, "missing_field", "empty_field", "bad_timestamp", "negative_number",
                       "wrong_type", "invalid_json", "not_an_object", "invalid_utf8",
                       "record_too_large", "field_too_long", "ts_in_future"}
