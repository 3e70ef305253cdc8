"""Segment-change detection and webhook delivery on the real broker and Redis, with
a local HTTP receiver that verifies every signature itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from segstream.adapters.kafka import Producer
from segstream.adapters.topic_reader import RedisOffsetReader, read_topic
from segstream.config import Settings
from segstream.core.aggregates import encode
from segstream.serving import metrics
from segstream.serving.changes import ChangeDetector
from segstream.serving.model_holder import ModelHolder
from segstream.serving.model_source import StaticSource
from segstream.serving.rescore import CLOCK_STREAM
from segstream.serving.webhooks import DLQ_KEY, Dispatcher
from segstream.sources.stack import free_port
from tests.support.archetypes import PARAMS, users_state, write_records
from tests.support.models import lapsing_model, make_model
from tests.support.webhooks import T0, WEBHOOK_SECRET, Receiver, drain, produce_records

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
SECRET = WEBHOOK_SECRET


def _changes(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"change_id": f"u{i}:1:20", "user_id": f"u{i}", "from_segment": 10,
             "to_segment": 20} for i in range(start, start + n)]


def _produce(bootstrap: str, topic: str, values: list[bytes], keys: list[str]) -> None:
    p = Producer(bootstrap)
    for k, v in zip(keys, values, strict=True):
        p.send(topic, v, key=k.encode())
    p.flush()


def test_detector_publishes_changes_with_hysteresis(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    kafka_bootstrap: str, redis_client: Any,
) -> None:
    features, changes = topic_factory("features", partitions=1), topic_factory("changes")
    settings = settings_factory(topic_features=features, topic_segment_changes=changes,
                                segment_min_dwell_s=60, clock="event")
    s = 1000  # one second in ms
    updates = [  # (user, archetype row of the record, its newest event = the stream time)
        ("a", 0, 0), ("b", 0, 0),
        ("a", 1, 10 * s),   # 10 s in segment 10: under the 60 s dwell, held back
        ("a", 0, 20 * s),   # back in 10: nothing
        ("a", 1, 100 * s),  # 100 s in 10: published 10 -> 20
        ("a", 2, 130 * s),  # only 30 s in 20: held back
        ("b", 2, 200 * s),  # published 10 -> 30
    ]
    records = [(u, users_state({u: row}, T0 + t, seed=i).aggs[0])
               for i, (u, row, t) in enumerate(updates)]
    produce_records(kafka_bootstrap, features, records)
    holder = ModelHolder(StaticSource(make_model(at_ms=T0), "7"), PARAMS)
    holder.refresh()
    suppressed = metrics.SEGMENT_CHANGES_SUPPRESSED._value.get()
    detector = ChangeDetector(settings, holder, redis_client, kafka_bootstrap)
    assert detector.run_available_now(timeout_s=60) == 2  # a bounded run ends
    detector.close()
    got = sorted((orjson.loads(r.value) for r in read_topic(kafka_bootstrap, changes)),
                 key=lambda c: c["user_id"])
    assert [(c["user_id"], c["from_segment"], c["to_segment"]) for c in got] == [
        ("a", 10, 20), ("b", 10, 30)]
    assert got[0]["model_version"] == "7" and got[0]["persona"] == "Big spenders"
    assert got[0]["ts_ms"] == T0 + 100 * s and got[0]["trigger"] == "event"
    assert got[0]["change_id"] == f"a:10:{T0}:20"  # from, since, to: stable on replay
    assert metrics.SEGMENT_CHANGES_SUPPRESSED._value.get() == suppressed + 2
    # the stream time is kept with the offsets; a restarted detector resumes from them
    assert int(redis_client.hget(detector.reader.key, CLOCK_STREAM)) == T0 + 200 * s
    again = ChangeDetector(settings, holder, redis_client, kafka_bootstrap)
    assert again.clock.stream_ms == T0 + 200 * s
    assert again.reader.poll(500) == []
    assert again.run_available_now(timeout_s=30) == 0
    again.close()


def test_a_record_of_other_params_is_skipped_not_fatal(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    kafka_bootstrap: str, redis_client: Any,
) -> None:
    from segstream.core.aggregates import FeatureParams

    features, changes = topic_factory("features", partitions=1), topic_factory("changes")
    settings = settings_factory(topic_features=features, topic_segment_changes=changes,
                                segment_min_dwell_s=0, clock="event")
    p = Producer(kafka_bootstrap)
    stray = users_state({"x": 1}, T0).aggs[0]
    p.send(features, encode(stray, FeatureParams(half_life_long_days=60))[0], key=b"x")
    p.send(features, b"", key=b"tombstone")
    p.flush()
    produce_records(kafka_bootstrap, features, [
        ("a", users_state({"a": 0}, T0 + 1000).aggs[0]),
        ("a", users_state({"a": 1}, T0 + 2000).aggs[0])])
    skipped = metrics.CHANGE_RECORDS_SKIPPED.labels("record_mismatch")._value.get()
    holder = ModelHolder(StaticSource(make_model(at_ms=T0), "1"), PARAMS)
    detector = ChangeDetector(settings, holder, redis_client, kafka_bootstrap)
    assert detector.run_available_now(timeout_s=60) == 1
    detector.close()
    assert metrics.CHANGE_RECORDS_SKIPPED.labels("record_mismatch")._value.get() == skipped + 1
    assert redis_client.get("seg:segment:x") is None


def test_retries_until_the_receiver_answers_signed_and_in_order(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    kafka_bootstrap: str, redis_client: Any, receivers: list[Receiver],
) -> None:
    topic = topic_factory("changes", partitions=1)
    port = free_port()
    receivers.append(Receiver(port, fail=3))
    settings = settings_factory(webhook_urls=[f"http://127.0.0.1:{port}/hook"],
                                webhook_secret=SECRET, webhook_max_attempts=5,
                                webhook_backoff_s=0.01, webhook_backoff_max_s=0.05)
    sent = _changes(5)
    _produce(kafka_bootstrap, topic, [orjson.dumps(c) for c in sent], ["k"] * 5)
    retries = metrics.WEBHOOK_RETRIES._value.get()
    dispatcher = Dispatcher(settings, redis_client)
    reader = RedisOffsetReader(kafka_bootstrap, topic, redis_client, "webhooks-test")
    drain(dispatcher, reader, 5)
    reader.close()
    assert receivers[0].received == sent  # all, once, in order
    assert receivers[0].bad_signatures == 0
    assert metrics.WEBHOOK_RETRIES._value.get() == retries + 3
    assert redis_client.llen(DLQ_KEY) == 0


def test_receiver_down_then_up_dead_letters_then_redrive_loses_nothing(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    kafka_bootstrap: str, redis_client: Any, receivers: list[Receiver],
) -> None:
    topic = topic_factory("changes")
    port = free_port()  # nothing listens yet: the receiver is down
    settings = settings_factory(webhook_urls=[f"http://127.0.0.1:{port}/hook"],
                                webhook_secret=SECRET, webhook_max_attempts=3,
                                webhook_backoff_s=0.01, webhook_backoff_max_s=0.02)
    first = _changes(4)
    _produce(kafka_bootstrap, topic, [orjson.dumps(c) for c in first],
             [c["user_id"] for c in first])
    dead = metrics.WEBHOOK_DEAD_LETTERS._value.get()
    dispatcher = Dispatcher(settings, redis_client)
    reader = RedisOffsetReader(kafka_bootstrap, topic, redis_client, "webhooks-test")
    drain(dispatcher, reader, 4)
    assert redis_client.llen(DLQ_KEY) == 4
    assert metrics.WEBHOOK_DEAD_LETTERS._value.get() == dead + 4
    entry = orjson.loads(redis_client.lindex(DLQ_KEY, 0))
    assert entry["attempts"] == 3 and "ConnectError" in entry["error"]

    receivers.append(Receiver(port))  # the receiver comes back
    second = _changes(2, start=4)
    _produce(kafka_bootstrap, topic, [orjson.dumps(c) for c in second],
             [c["user_id"] for c in second])
    drain(dispatcher, reader, 2)
    reader.close()
    assert dispatcher.redrive() == (4, 0)
    assert redis_client.llen(DLQ_KEY) == 0
    got = sorted(c["change_id"] for c in receivers[0].received)
    assert got == sorted(c["change_id"] for c in first + second)  # each exactly once
    assert receivers[0].bad_signatures == 0


def test_signature_helpers_reject_tampering_and_old_timestamps() -> None:
    from segstream.serving.webhooks import sign, verify

    header = sign(b"s", b'{"a":1}', 1000)
    assert verify(b"s", header, b'{"a":1}', now=1001)
    assert not verify(b"s", header, b'{"a":2}', now=1001)
    assert not verify(b"other", header, b'{"a":1}', now=1001)
    assert not verify(b"s", header, b'{"a":1}', now=5000)
    assert not verify(b"s", "garbage", b"{}", now=1000)


def test_a_sweep_interrupted_by_a_crash_is_finished_after_restart_each_change_once(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    kafka_bootstrap: str, redis_client: Any,
) -> None:
    features, changes = topic_factory("features", partitions=1), topic_factory("changes")
    settings = settings_factory(topic_features=features, topic_segment_changes=changes,
                                clock="event", rescore_interval_s=3600,
                                segment_min_dwell_s=0)
    day, hour = 86_400_000, 3_600_000
    users = {f"u{i}": i % 3 for i in range(12)}
    write_records(redis_client, users_state(users, T0, seed=1))  # last active at T0
    holder = ModelHolder(StaticSource(lapsing_model(at_ms=T0), "1"), PARAMS)

    def tick(at: int) -> None:  # someone else's event moves the stream time to ``at``
        produce_records(kafka_bootstrap, features, [("tick", users_state({"tick": 0}, at)
                                                     .aggs[0])])

    a = ChangeDetector(settings, holder, redis_client, kafka_bootstrap)
    a.sweep_chunk_size = 3
    tick(T0)
    assert a.run_available_now(timeout_s=60) == 0  # the clock starts: nothing to compare
    tick(T0 + hour + 1)
    assert a.run_available_now(timeout_s=60) == 0  # first sweep: first segments recorded
    assert len(redis_client.keys("seg:segment:u*")) == 12
    tick(T0 + 200 * day)  # 200 days of silence: time alone moves all twelve
    deadline = time.monotonic() + 60
    first = 0
    while a._sweep is None:  # the tick is processed, the due sweep starts (a chunk too)
        assert time.monotonic() < deadline
        first += a.step(300)[1]
    while first == 0:
        first += a.sweep_chunk() or 0
    assert 0 < first < 12, "the sweep must have been cut short for this test to mean much"
    a.close()  # the crash: the sweep's time is not committed

    b = ChangeDetector(settings, holder, redis_client, kafka_bootstrap)
    assert b.clock.stream_ms == T0 + 200 * day and b.clock.swept_ms == T0 + hour + 1
    assert b.run_available_now(timeout_s=60) == 12 - first  # the restart finishes it
    b.close()
    got = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, changes)]
    moved = [c for c in got if c["user_id"] != "tick"]
    assert sorted(c["user_id"] for c in moved) == sorted(users)  # each exactly once
    assert {(c["to_segment"], c["trigger"]) for c in moved} == {(40, "time")}
    assert {c["ts_ms"] for c in moved} == {T0 + 200 * day}


@pytest.mark.mlflow
def test_detect_available_now_command_ends_after_the_topic(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    kafka_bootstrap: str, redis_url: str, redis_client: Any,
) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    from segstream.adapters.registry import Registry

    features, changes = topic_factory("features", partitions=2), topic_factory("changes")
    settings = settings_factory(topic_features=features, topic_segment_changes=changes)
    registry = Registry(settings)
    registry.set_alias(registry.register(make_model(at_ms=T0)), "champion")
    produce_records(kafka_bootstrap, features, [
        ("a", users_state({"a": 0}, T0 + 1000).aggs[0]),
        ("a", users_state({"a": 1}, T0 + 2000).aggs[0])])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    env.update(SEGSTREAM_DATA_DIR=str(settings.data_dir), SEGSTREAM_REDIS_URL=redis_url,
               SEGSTREAM_KAFKA_BOOTSTRAP=kafka_bootstrap, SEGSTREAM_TOPIC_FEATURES=features,
               SEGSTREAM_TOPIC_SEGMENT_CHANGES=changes, SEGSTREAM_CLOCK="event",
               SEGSTREAM_SEGMENT_MIN_DWELL_S="0")
    done = subprocess.run([str(Path(sys.executable).parent / "segstream"), "webhooks",
                           "detect", "--available-now"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "published 1 segment changes (clock=event)" in done.stdout
    (change,) = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, changes)]
    assert (change["user_id"], change["from_segment"], change["to_segment"]) == ("a", 10, 20)
