"""The typed accept path agrees with the full validator on every record it accepts, and
accepts the common shapes (else it would pass the agreement test by accepting nothing)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from segstream.core.events import validate_event
from segstream.core.fast_events import accept
from segstream.core.times import _RFC3339_RE, _parse_iso_general, read_timestamp
from segstream.sources.generator import GeneratorConfig, generate

NOW = 1_790_000_000_000  # 2026-09-21

iso = st.from_regex(_RFC3339_RE, fullmatch=True)
texts = st.text(max_size=8) | st.sampled_from(["", " ", "\t", "x" * 256, "x" * 257, "é" * 256,
                                                "\ud7ff", "a\x00b"])
numbers = (st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
           | st.sampled_from([0, -0.0, 1e15, 1e15 + 1, 10**15, 10**15 + 1, 2**63, -1]))
timestamps = (iso | st.integers(min_value=-10, max_value=10**18) | st.floats(allow_nan=False)
              | st.sampled_from(["19970101", 19970101, "852076800", "1790000000000.5",
                                 "2026-09-20", "2026-09-20 10:00", "2026-13-01T00:00:00Z",
                                 "1969-12-31T23:59:59Z", "2026-09-23T00:00:00Z", True]))
plain = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(plain, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=6)
field_values = {
    "user_id": texts | plain, "event_type": texts | plain, "ts": timestamps | plain,
    **{name: texts | plain for name in ("event_id", "session_id", "content_id", "category",
                                         "platform", "channel")},
    "dwell_ms": numbers | plain, "amount": numbers | plain,
    "properties": json_values, "other": json_values,
}
events = st.fixed_dictionaries({}, optional={k: v for k, v in field_values.items()})


def agree(raw: bytes) -> dict[str, Any] | None:
    typed = accept(raw, NOW)
    if typed is not None:
        full = validate_event(raw, now_ms=NOW, typed=False)
        assert isinstance(full, dict), f"typed path accepted what the rules reject: {full}"
        assert {**typed, "event_id": None} == {**full, "event_id": None}
        assert validate_event(raw, now_ms=NOW) == full  # the ids too, given or derived
    return typed


@settings(max_examples=1500, deadline=None)
@given(events.map(lambda obj: json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")))
@example(b'{"user_id":"a","user_id":7,"ts":1790000000000,"event_type":"x"}')
@example(b'{"user_id":7,"user_id":"a","ts":1790000000000,"event_type":"x"}')
@example(b'{"user_id":"a","ts":1790000000000,"event_type":"x","properties":{"n":1e400}}')
@example(b'{"user_id":"a","ts":1790000000000,"event_type":"x","properties":{"n":'
         b'123456789012345678901234567890}}')
@example(b'{"user_id":"\\ud800","ts":1790000000000,"event_type":"x"}')
@example(b'[{"user_id":"a","ts":1790000000000,"event_type":"x"}]')
def test_what_the_typed_path_accepts_the_rules_accept_the_same(raw: bytes) -> None:
    agree(raw)


def test_the_typed_path_accepts_the_common_shapes() -> None:
    log = generate(GeneratorConfig(users=50, events=2000, seed=3, start="2026-08-01",
                                          days=30))
    accepted = [agree(value) for value in log.values]
    assert all(event is not None for event in accepted)
    with_props = (b'{"user_id":"u","ts":"2026-09-20T10:00:00.5+02:00","event_type":"x",'
                  b'"amount":3,"properties":{"sku":"a","n":[1,2.5]}}')
    event = agree(with_props)
    assert event is not None and event["properties"] == '{"sku":"a","n":[1,2.5]}'
    assert event["amount"] == 3.0 and isinstance(event["amount"], float)


@pytest.mark.parametrize("raw", [
    b'{"user_id":" ","ts":1790000000000,"event_type":"x"}',  # blank: empty_field
    b'{"user_id":"u","ts":"7","event_type":"x"}',  # digit string: epoch seconds
    b'{"user_id":"u","ts":true,"event_type":"x"}',
    b'{"user_id":"u","ts":1790000000000,"event_type":"x","amount":-1}',
    b'{"user_id":"u","ts":1990000000000,"event_type":"x"}',  # ahead of the clock
])
def test_the_full_rules_decide_the_rest(raw: bytes) -> None:
    """Rejections (and unusual valid forms) come from the full path, with its reasons."""
    assert validate_event(raw, now_ms=NOW) == validate_event(raw, now_ms=NOW, typed=False)


@settings(max_examples=500, deadline=None)
@given(iso)
def test_the_rfc3339_shortcut_reads_the_instant_the_general_path_reads(text: str) -> None:
    general = _parse_iso_general(text)
    if general is None or general < 0:
        with pytest.raises(ValueError):
            read_timestamp(text)
    else:
        assert read_timestamp(text)[0] == general
