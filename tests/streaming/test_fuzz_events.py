"""Fuzzed events on the real broker: hypothesis draws a mixed log (valid events in
every timestamp form, wrong types, missing and empty fields, odd unicode, huge numbers,
oversize records, non-JSON and non-UTF-8 bytes, tombstones, resends and reused event
ids, out-of-order and late events), it goes to a fresh `events` topic, and the stream
job runs over it with --available-now on the session's Spark.

The job must not crash, and every input record must be accounted for exactly once:

* **accepted**: folded into its user's Redis record; the per-user event counts sum to
  the accepted count, and each record equals the batch path's (``streaming.batch``:
  the same log as a file, the oracle);
* **dead-lettered**: on the DLQ topic with the reason the contract's validator gives
  (``late`` as the arrival rules decide over the whole log), a detail and the source;
* **a duplicate**: counted by the job (its ``duplicate_records`` metric).

The expected split comes from the contract (``segstream.events.validate_event``) and
the arrival rules (``streaming.arrivals.classify``) over the whole log in one call;
the stream decides per micro-batch (several here), so agreeing is the claim.

Spark runs cost ~15 s each: hypothesis draws two large logs (derandomized, so CI
replays the same ones), not hundreds of small ones, and does not shrink a failure
(each shrink step would be a job run); the failing log is printed instead.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import redis
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from segstream.adapters.kafka import Producer
from segstream.adapters.topic_reader import read_topic
from segstream.config import Settings
from segstream.core.contract import (
    DLQ_HEADER_DETAIL,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SOURCE,
    FEATURE_SPEC,
    MAX_EVENT_NUMBER,
    MAX_RECORD_BYTES,
)
from segstream.core.events import Rejection, validate_event
from segstream.streaming import metrics
from segstream.streaming.arrivals import classify
from segstream.streaming.batch import compute_features_pandas
from segstream.streaming.durations import duration_ms
from segstream.streaming.job import start
from segstream.training.data import missing_allowed
from tests.support.streaming import assert_redis_equals_batch, job_settings, redis_records

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

Record = tuple[bytes | None, bytes | None]  # (key, value) as produced
DAY, HOUR, MINUTE = 86_400_000, 3_600_000, 60_000
NOW_MS = int(time.time() * 1000)
BASE_MS = NOW_MS - 3 * DAY  # every valid time is days before now: none is ts_in_future
EVENT_TYPES = ["page_view", "search", "add_to_cart", "purchase", "play", "content_view",
               "login", "feature_use", "Kauf", "ünïcødé☃", "x" * 256]
ODD_TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
#: Extreme dwell_ms/amount values: up to the contract's bound (1e15) accepted, past it
#: rejected (1e160 ms once passed and made the dwell variance NaN), subnormal and zero.
HUGE_NUMBERS = [MAX_EVENT_NUMBER, 999_999_999_999_999, 1e-320, 0, 1e160, 1e200, 1e299,
                1.7976931348623157e308, 10**30, 2**63, 10**400]
HUGE_FIELDS = [(name, x) for name in ("dwell_ms", "amount") for x in HUGE_NUMBERS]
_serial = itertools.count()


@dataclass
class LogState:
    """What the drawing has produced so far (to resend, reuse ids and be late)."""

    users: list[str]
    newest: dict[str, int] = field(default_factory=dict)
    sent: list[tuple[str, dict[str, Any], bytes]] = field(default_factory=list)
    huge: int = 0  # huge-number records so far


def _ts_form(draw: st.DrawFn, ms: int) -> Any:
    """One of the contract's timestamp forms for ``ms`` (the validator reads them all)."""
    form = draw(st.sampled_from(["ms", "ms_text", "s", "us", "iso", "iso_offset"]))
    if form == "ms":
        return ms
    if form == "ms_text":
        return str(ms)
    if form == "s":
        return ms / 1000
    if form == "us":
        return ms * 1000 + draw(st.integers(0, 999))
    iso = pd.Timestamp(ms, unit="ms", tz="UTC")
    if form == "iso":
        return iso.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return (iso + pd.Timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+02:00"


def _event(draw: st.DrawFn, log: LogState, user: str, ms: int) -> dict[str, Any]:
    ev: dict[str, Any] = {"user_id": user, "ts": _ts_form(draw, ms),
                          "event_type": draw(st.sampled_from(EVENT_TYPES))}
    if not draw(st.integers(0, 3)):  # mostly an id; else the validator derives one
        ev["event_id"] = f"e{next(_serial)}"
    optional = {
        "session_id": st.one_of(st.none(), st.sampled_from(["s1", "s2"]), ODD_TEXT),
        "content_id": st.one_of(st.none(), ODD_TEXT),
        "category": st.one_of(st.none(), st.sampled_from(["news", "lux", "video"]), ODD_TEXT),
        "platform": st.one_of(st.none(), st.sampled_from(["web", "ios", "android", "tv"])),
        "channel": st.one_of(st.none(), st.sampled_from(["email", "push"])),
        "dwell_ms": st.one_of(st.none(), st.floats(0, 1e7), st.integers(0, 10**6)),
        "amount": st.one_of(st.none(), st.floats(0, 1e4), st.integers(0, 500)),
        "properties": st.one_of(st.none(), st.dictionaries(ODD_TEXT, st.integers(), max_size=3)),
    }
    for name, strategy in optional.items():
        if draw(st.integers(0, 2)) == 0:
            ev[name] = draw(strategy)
    return ev


def _valid_in_time(draw: st.DrawFn, log: LogState, *, late: bool = False) -> dict[str, Any]:
    user = draw(st.sampled_from(log.users))
    last = log.newest.get(user, BASE_MS)
    if late:  # well behind the 10-minute watermark
        ms = last - draw(st.integers(HOUR, 2 * DAY))
    else:  # forward, or a little out of order (inside the watermark)
        ms = last + draw(st.integers(-5 * MINUTE, 3 * HOUR))
    log.newest[user] = max(last, ms)
    return _event(draw, log, user, ms)


def _broken(draw: st.DrawFn, log: LogState) -> dict[str, Any]:
    """A valid-looking event with one field of the wrong type, missing, empty, too
    long, a bad or future time, a negative number."""
    ev = _valid_in_time(draw, log)
    how = draw(st.sampled_from([
        "wrong_type", "missing", "empty", "too_long", "bad_ts", "future", "negative"]))
    if how == "wrong_type":
        name, value = draw(st.sampled_from([
            ("user_id", 123), ("ts", True), ("event_type", ["a"]), ("dwell_ms", "12"),
            ("amount", {"x": 1}), ("properties", [1, 2]), ("platform", 5),
            ("session_id", 1.5), ("amount", True)]))
        ev[name] = value
    elif how == "missing":
        del ev[draw(st.sampled_from(["user_id", "ts", "event_type"]))]
    elif how == "empty":
        ev[draw(st.sampled_from(["user_id", "event_type"]))] = draw(
            st.sampled_from(["", "   ", "\u3000", "\t\n"]))
    elif how == "too_long":
        ev[draw(st.sampled_from(["user_id", "content_id", "category"]))] = "y" * 257
    elif how == "bad_ts":
        ev["ts"] = draw(st.sampled_from([-5, 10**17, 10**20, "19970101", "yesterday",
                                         "1969-12-31", "2026-13-45", "", float("nan")]))
    elif how == "future":
        ev["ts"] = NOW_MS + 3 * DAY
    else:
        ev[draw(st.sampled_from(["amount", "dwell_ms"]))] = -draw(st.integers(1, 10**6))
    return ev


def _dumps(ev: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(ev)
    except orjson.JSONEncodeError:  # NaN, ints past 64 bits: the text a producer could send
        import json

        return json.dumps(ev).encode()


def _keyed(draw: st.DrawFn, value: bytes | None, ev: dict[str, Any] | None) -> Record:
    """Valid-looking events are keyed by their user id, as the contract asks (a user's
    records in one partition, in order); anything else gets any key or none."""
    if ev is not None and isinstance(ev.get("user_id"), str):
        return ev["user_id"].encode(), value
    return draw(st.one_of(st.none(), st.binary(min_size=1, max_size=8))), value


#: How many records of each kind one log has; hypothesis draws their order and content.
#: A fixed mix rather than drawn weights: the first example hypothesis tries is its
#: simplest (every choice at its minimum), and a permutation's simplest is this order,
#: so even that one is a full mix, not 200 copies of one record.
KINDS = {"valid": 110, "huge_number": len(HUGE_FIELDS), "resend": 20, "reuse_id": 10,
         "late": 15, "broken": 30, "not_object": 5, "binary": 6, "bad_utf8": 4, "tombstone": 5,
         "oversize": 4}


@st.composite
def event_logs(draw: st.DrawFn) -> list[Record]:
    """One mixed log of ``sum(KINDS.values())`` records, plus five valid ones first (so
    resends and late events have something to refer to)."""
    users = ["fz-a", "fz-b", *draw(st.lists(ODD_TEXT.filter(lambda u: u.strip() == u),
                                            min_size=3, max_size=6, unique=True))]
    log = LogState(users=users)
    plan = ["valid"] * 5 + draw(st.permutations(
        [kind for kind, n in KINDS.items() for _ in range(n)]))
    records: list[Record] = []
    for kind in plan:
        ev: dict[str, Any] | None = None
        if kind in ("valid", "huge_number"):
            ev = _valid_in_time(draw, log)
            if kind == "huge_number":  # each value in each field once
                name, number = HUGE_FIELDS[log.huge % len(HUGE_FIELDS)]
                ev[name], log.huge = number, log.huge + 1
            value = _dumps(ev)
            log.sent.append((ev["user_id"], ev, value))
        elif kind == "resend":  # the same bytes again (a producer retry)
            _, ev, value = draw(st.sampled_from(log.sent))
        elif kind == "reuse_id":  # an earlier event id, other content and time
            user, old, _ = draw(st.sampled_from(log.sent))
            ev = {**_valid_in_time(draw, log), "user_id": user,
                  "event_id": old.get("event_id", "reused")}
            value = _dumps(ev)
        elif kind == "late":
            ev = _valid_in_time(draw, log, late=True)
            value = _dumps(ev)
        elif kind == "broken":
            ev = _broken(draw, log)
            value = _dumps(ev)
        elif kind == "not_object":
            value = _dumps(draw(st.sampled_from([[1, 2], 42, "text", None, True])))
        elif kind == "binary":
            value = draw(st.binary(min_size=0, max_size=64))
        elif kind == "bad_utf8":
            value = b'{"user_id": "' + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])
                                            ) + b'", "ts": 1, "event_type": "x"}'
        elif kind == "tombstone":
            value = None
        else:  # oversize: valid JSON past the record bound
            ev = {**_valid_in_time(draw, log), "properties": {"blob": "z" * MAX_RECORD_BYTES}}
            value = _dumps(ev)
        records.append(_keyed(draw, value, ev))
    return records


# --- the oracle ----------------------------------------------------------------------

@dataclass
class Expected:
    dead: Counter[tuple[bytes | None, str]]  # (value, reason)
    accepted: Counter[str]  # user -> accepted events
    duplicates: int
    valid_values: list[bytes]  # the valid records' bytes, in order (the batch's input)


def expected_split(records: list[Record], watermark_ms: int) -> Expected:
    dead: Counter[tuple[bytes | None, str]] = Counter()
    valid: list[dict[str, Any]] = []
    for _, value in records:
        out = validate_event(value) if value is not None else Rejection(
            "invalid_json", None, "tombstone")  # as streaming/validate.py rejects one
        if isinstance(out, Rejection):
            dead[(value, out.reason)] += 1
        else:
            valid.append({"user_id": out["user_id"], "event_id": out["event_id"],
                          "ts": out["ts"], "value": value})
    frame = pd.DataFrame(valid, columns=["user_id", "event_id", "ts", "value"])
    arrived = classify(frame, kept=frame.iloc[:0], newest=pd.Series(dtype="int64"),
                       watermark_ms=watermark_ms)
    for value in arrived.late["value"]:
        dead[(value, "late")] += 1
    return Expected(dead=dead, accepted=Counter(arrived.accepted["user_id"]),
                    duplicates=arrived.duplicates, valid_values=list(frame["value"]))


def counted(name: str) -> float:
    """A counter of the job's metrics registry (this process's, so deltas are ours)."""
    return metrics.REGISTRY.get_sample_value(f"segstream_stream_{name}_total") or 0.0


def stream(spark: Any, s: Settings, bootstrap: str, redis_url: str, n_records: int
           ) -> dict[str, float]:
    """Run the job with --available-now; what it counted (records read, micro-batches,
    duplicates). The counts come from its query listener, which may report the last
    batch a moment after the query ends: wait for every record to be reported."""
    names = ("input_records", "batches", "duplicate_records")
    before = {name: counted(name) for name in names}
    query, writer, listener = start(spark, s, bootstrap=bootstrap, redis_url=redis_url,
                                    available_now=True)
    try:
        query.awaitTermination(300)
        assert not query.isActive, "the job did not finish within 300 s"
        assert query.exception() is None, f"the job crashed: {query.exception()}"
        deadline = time.monotonic() + 30
        while (counted("input_records") - before["input_records"] < n_records
               and time.monotonic() < deadline):
            time.sleep(0.1)
    finally:
        if query.isActive:
            query.stop()
        writer.sinks.close()
        spark.streams.removeListener(listener)
    return {name: counted(name) - before[name] for name in names}


@given(records=event_logs())
@settings(max_examples=2, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
def test_every_fuzzed_record_is_accepted_dead_lettered_or_a_duplicate(
        records: list[Record], spark: Any, kafka_bootstrap: str, stream_redis_url: str,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    s = job_settings(tmp, kafka_bootstrap, stream_redis_url, f"fuzz{next(_serial)}",
                     stream_max_records_per_trigger=len(records) // 3 + 1)
    expected = expected_split(records, duration_ms(s.stream_watermark))
    reasons: Counter[str] = Counter()
    for (_, reason), n in expected.dead.items():
        reasons[reason] += n
    note(f"{len(records)} records: {sum(expected.accepted.values())} accepted, "
         f"{sum(reasons.values())} dead {dict(reasons)}, {expected.duplicates} duplicates")
    note("log (key, value[:200]): " + repr([(k, v if v is None else v[:200])
                                            for k, v in records]))
    producer = Producer(kafka_bootstrap)
    for i, (key, value) in enumerate(records):
        producer.send(s.topic_events, value, key=key)
        if i % 70 == 69:  # several record batches per partition
            producer.flush()
    producer.close()
    del producer  # destroy the librdkafka client now, not after the broker has stopped
    client = redis.Redis.from_url(stream_redis_url)
    client.flushdb()

    job = stream(spark, s, kafka_bootstrap, stream_redis_url, len(records))

    assert job["input_records"] == len(records)
    assert job["batches"] >= 3  # decided per micro-batch, against the oracle's one call
    # dead-lettered: each with the contract's reason, a detail and its source
    dlq = list(read_topic(kafka_bootstrap, s.topic_dlq))
    got = Counter((r.value, r.headers[DLQ_HEADER_REASON].decode()) for r in dlq)
    assert got == expected.dead
    for r in dlq:
        assert r.headers[DLQ_HEADER_DETAIL]
        assert r.headers[DLQ_HEADER_SOURCE].decode().startswith(f"{s.topic_events}:")
    # accepted: folded into the user's record, no more and no fewer
    online = redis_records(client, s)
    assert {u: rec.events for u, rec in online.items()} == dict(expected.accepted)
    accepted = sum(rec.events for rec in online.values())
    # duplicates: counted by the job, as the arrival rules decide
    assert job["duplicate_records"] == expected.duplicates
    assert accepted + len(dlq) + job["duplicate_records"] == len(records)
    # and each record is what the batch path makes of the same log (the oracle)
    path = write_log(tmp / "valid.jsonl", expected.valid_values)
    batch = compute_features_pandas(spark, path, s)
    assert_redis_equals_batch(client, batch, s)
    # an accepted event leaves usable features: none is NaN or infinite (they would be
    # null in the API's answers and poison the model's distances), but where the spec
    # says a feature has no value (a purchase recency of a user who never bought)
    X = batch[list(FEATURE_SPEC.names)].to_numpy(dtype=float)
    bad = ~np.isfinite(X) & ~missing_allowed(X)
    assert not bad.any(), [FEATURE_SPEC.names[j] for j in np.flatnonzero(bad.any(0))]
    client.close()


def write_log(path: Path, values: list[bytes]) -> Path:
    """The valid records as JSON lines, in arrival order (no valid record's bytes hold a
    newline: they are orjson's)."""
    assert not any(b"\n" in v for v in values)
    path.write_bytes(b"".join(v + b"\n" for v in values))
    return path

