"""The webhook receiver down for a while, with the real dispatcher process
(``segstream webhooks run``), changes made by the real change detector on the real
broker, and a real HTTP receiver on loopback that checks every HMAC and drops repeats
by the ``Idempotency-Key`` header.

* Down for less than the retry budget: every change is delivered once it is back, none
  dead-lettered. A receiver that stores a change but answers after the dispatcher's
  timeout gets it again, with the same key: each change id is seen at least once and,
  by key, exactly once.
* Down for longer than ``webhook_max_attempts``: the deliveries are dead-lettered and
  that is reported (``segstream_webhook_dead_letters_total``, a log line naming the
  change and the URL, the parked entries in Redis). Changes made after the receiver is
  back are delivered; the parked ones wait for ``segstream webhooks redrive``, which
  delivers them with their original keys, so after dedupe every change arrives once.
* User ids are any Unicode, a header is ASCII: a non-ASCII id is delivered with its id
  percent-encoded as the key (the same key on a replay), and a delivery that cannot be
  sent at all is a failed attempt, dead-lettered, never a dispatcher that dies on it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest

from segstream.adapters.kafka import Producer
from segstream.adapters.topic_reader import RedisOffsetReader
from segstream.config import Settings
from segstream.serving import metrics, webhooks
from segstream.serving.changes import ChangeDetector
from segstream.serving.model_holder import ModelHolder
from segstream.serving.model_source import StaticSource
from segstream.serving.webhooks import DLQ_KEY, Dispatcher
from segstream.sources.stack import free_port
from tests.support.archetypes import PARAMS, users_state
from tests.support.models import make_model
from tests.support.webhooks import T0, WEBHOOK_SECRET, Receiver, drain, produce_records

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def make_changes(settings: Settings, kafka_bootstrap: str, redis: Any, users: list[str],
                 at: int) -> list[str]:
    """Each user moves from segment 10 to 20 (records folded from real events, the real
    detector): the change ids it published to `segment-changes`."""
    records = []
    for i, u in enumerate(users):
        records.append((u, users_state({u: 0}, at + 1000 * i, seed=i).aggs[0]))
        records.append((u, users_state({u: 1}, at + 1000 * i + 500, seed=i).aggs[0]))
    produce_records(kafka_bootstrap, settings.topic_features, records)
    holder = ModelHolder(StaticSource(make_model(at_ms=T0), "1"), PARAMS)
    detector = ChangeDetector(settings, holder, redis, kafka_bootstrap)
    try:
        assert detector.run_available_now(timeout_s=60) == len(users)
    finally:
        detector.close()
    return [f"{u}:10:{at + 1000 * i}:20" for i, u in enumerate(users)]


def _env(settings: Settings, kafka_bootstrap: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    fields = {"data_dir": settings.data_dir, "kafka_bootstrap": kafka_bootstrap,
              "redis_url": redis_url, "topic_segment_changes": settings.topic_segment_changes,
              "webhook_urls": orjson.dumps(settings.webhook_urls).decode(),
              "webhook_secret": WEBHOOK_SECRET,
              "webhook_max_attempts": settings.webhook_max_attempts,
              "webhook_backoff_s": settings.webhook_backoff_s,
              "webhook_backoff_max_s": settings.webhook_backoff_max_s,
              "webhook_timeout_s": settings.webhook_timeout_s}
    env.update({f"SEGSTREAM_{k.upper()}": str(v) for k, v in fields.items()})
    return env


def _segstream() -> str:
    return str(Path(sys.executable).parent / "segstream")


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not {what} within {timeout_s} s"
        time.sleep(0.1)


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    found = re.findall(rf"^{name} (\S+)$", text, re.M)
    return float(found[0]) if found else 0.0


def _settings(settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
              port: int, **overrides: Any) -> Settings:
    return settings_factory(
        topic_features=topic_factory("features", partitions=1),
        topic_segment_changes=topic_factory("changes", partitions=2),
        segment_min_dwell_s=0, clock="event", webhook_urls=[f"http://127.0.0.1:{port}/hook"],
        webhook_secret=WEBHOOK_SECRET, **overrides)


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM (the dispatcher finishes its batch and commits), then its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def test_receiver_down_then_up_gets_every_change_once_by_key(
        settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
        kafka_bootstrap: str, redis_url: str, redis_client: Any,
        receivers: list[Receiver]) -> None:
    port, metrics_port = free_port(), free_port()  # nothing listens: the receiver is down
    settings = _settings(settings_factory, topic_factory, port, webhook_max_attempts=60,
                         webhook_backoff_s=0.05, webhook_backoff_max_s=0.2,
                         webhook_timeout_s=0.5)
    ids = make_changes(settings, kafka_bootstrap, redis_client, [f"u{i}" for i in range(6)], T0)
    proc = subprocess.Popen([_segstream(), "webhooks", "run", "--metrics-port",
                             str(metrics_port)], text=True,
                            env=_env(settings, kafka_bootstrap, redis_url),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def retrying() -> bool:  # the dispatcher is up and retrying against a closed port
            try:
                return _metric(metrics_port, "segstream_webhook_retries_total") >= 5
            except httpx.HTTPError:
                return False

        _wait("retrying", retrying)
        assert proc.poll() is None, "the dispatcher died while the receiver was down"
        # back; the first two changes it stores are answered after the sender's timeout
        receiver = Receiver(port, slow_first=2, slow_s=1.0)
        receivers.append(receiver)
        later = make_changes(settings, kafka_bootstrap, redis_client,
                             [f"v{i}" for i in range(3)], T0 + 60_000)
        _wait("every change applied", lambda: len(receiver.applied) == len(ids + later))
        _wait("offsets committed", lambda: sum(
            int(v) for v in redis_client.hgetall("seg:offsets:webhooks").values())
            == len(ids + later))
    finally:
        err = _stop(proc)
    assert proc.returncode == 0, err[-3000:]
    assert receiver.bad_signatures == 0
    keys = [k for k, _ in receiver.deliveries]
    assert sorted(set(keys)) == sorted(ids + later), "each change id at least once"
    assert len(keys) > len(set(keys)), "the late answers made the sender repeat"
    assert all(body["change_id"] == key for key, body in receiver.deliveries)
    assert sorted(receiver.applied) == sorted(ids + later)  # by key: exactly once
    assert redis_client.llen(DLQ_KEY) == 0


def test_receiver_down_past_max_attempts_is_dead_lettered_reported_and_redriven(
        settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
        kafka_bootstrap: str, redis_url: str, redis_client: Any,
        receivers: list[Receiver]) -> None:
    port, metrics_port = free_port(), free_port()
    settings = _settings(settings_factory, topic_factory, port, webhook_max_attempts=3,
                         webhook_backoff_s=0.01, webhook_backoff_max_s=0.02)
    parked = make_changes(settings, kafka_bootstrap, redis_client,
                          [f"u{i}" for i in range(4)], T0)
    env = _env(settings, kafka_bootstrap, redis_url)
    proc = subprocess.Popen([_segstream(), "webhooks", "run", "--metrics-port",
                             str(metrics_port)], text=True, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait("dead-lettered", lambda: redis_client.llen(DLQ_KEY) == len(parked))
        assert _metric(metrics_port, "segstream_webhook_dead_letters_total") == len(parked)
        entries = [orjson.loads(e) for e in redis_client.lrange(DLQ_KEY, 0, -1)]
        assert sorted(orjson.loads(e["body"])["change_id"] for e in entries) == sorted(parked)
        assert {e["attempts"] for e in entries} == {3}
        assert all("ConnectError" in e["error"] for e in entries), entries

        receiver = Receiver(port)  # back
        receivers.append(receiver)
        later = make_changes(settings, kafka_bootstrap, redis_client,
                             [f"v{i}" for i in range(2)], T0 + 60_000)
        _wait("later changes delivered", lambda: sorted(receiver.applied) == sorted(later))
        assert redis_client.llen(DLQ_KEY) == len(parked), "parked ones wait for a redrive"
    finally:
        err = _stop(proc)
    for change_id in parked:  # reported: which change, where, why, what to do
        assert re.search(rf"dead-lettered change {change_id} to http://127.0.0.1:{port}"
                         r"/hook after 3 attempts: ConnectError.*webhooks redrive", err), err

    redrive = subprocess.run([_segstream(), "webhooks", "redrive"], env=env, text=True,
                             capture_output=True, timeout=120)
    assert redrive.returncode == 0, redrive.stderr[-3000:]
    assert f"redelivered {len(parked)}, dead-lettered again 0" in redrive.stdout
    assert redis_client.llen(DLQ_KEY) == 0
    assert sorted(receiver.applied) == sorted(parked + later)  # by key: each once
    assert all(body["change_id"] == key for key, body in receiver.deliveries)
    assert receiver.bad_signatures == 0


def test_non_ascii_user_ids_are_delivered_with_an_ascii_key_stable_on_replay(
        settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
        kafka_bootstrap: str, redis_client: Any, receivers: list[Receiver]) -> None:
    port = free_port()
    receiver = Receiver(port)
    receivers.append(receiver)
    settings = _settings(settings_factory, topic_factory, port, webhook_max_attempts=2,
                         webhook_backoff_s=0.01, webhook_backoff_max_s=0.02)
    # "%C3%BC" is what "ü" encodes to: its own key must differ, or one would be dropped
    users = ["ü", "用户", "%C3%BC", "u 1", "u2"]
    ids = make_changes(settings, kafka_bootstrap, redis_client, users, T0)
    for replay in range(2):  # the second: a dispatcher that crashed before its commit
        redis_client.delete("seg:offsets:webhooks-test")
        dispatcher = Dispatcher(settings, redis_client)
        reader = RedisOffsetReader(kafka_bootstrap, settings.topic_segment_changes,
                                   redis_client, "webhooks-test")
        try:
            drain(dispatcher, reader, len(ids))
        finally:
            reader.close()
            dispatcher.close()
        assert len(receiver.deliveries) == len(ids) * (replay + 1)
    assert redis_client.llen(DLQ_KEY) == 0 and receiver.bad_signatures == 0
    keys = {body["change_id"]: key for key, body in receiver.deliveries}
    assert sorted(keys) == sorted(ids) and len(set(keys.values())) == len(ids)
    assert all(k.isascii() and unquote(k) == cid for cid, k in keys.items())
    assert keys[f"u2:10:{T0 + 4000}:20"] == f"u2:10:{T0 + 4000}:20"  # readable as it was
    assert keys[f"ü:10:{T0}:20"] == f"%C3%BC:10:{T0}:20"
    assert keys[f"u 1:10:{T0 + 3000}:20"] == f"u%201:10:{T0 + 3000}:20"
    # the replay repeated every change with its key: after dedupe each change once
    assert sorted(receiver.applied) == sorted(keys.values())


def test_a_delivery_that_cannot_be_sent_is_dead_lettered_not_a_dead_dispatcher(
        settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
        kafka_bootstrap: str, redis_client: Any, receivers: list[Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The key of before the ASCII fix (the raw change id) stands in for any request
    httpx cannot build: with it the real httpx raises UnicodeEncodeError, no
    httpx.HTTPError. A record that is not UTF-8 (a stray producer) comes first."""
    ascii_key = webhooks.idempotency_key
    monkeypatch.setattr(webhooks, "idempotency_key", lambda body: unquote(ascii_key(body)))
    port = free_port()
    receiver = Receiver(port)
    receivers.append(receiver)
    settings = _settings(settings_factory, topic_factory, port, webhook_max_attempts=3,
                         webhook_backoff_s=0.01, webhook_backoff_max_s=0.02)
    unsendable, fine = "ü:10:0:20", "u1:10:0:20"
    producer = Producer(kafka_bootstrap)
    producer.send(settings.topic_segment_changes, b"\xff{", key=b"stray")
    for cid in (unsendable, fine):
        producer.send(settings.topic_segment_changes,
                      orjson.dumps({"change_id": cid, "user_id": cid.split(":")[0]}),
                      key=cid.split(":")[0].encode())
    producer.flush()
    failures = metrics.WEBHOOK_DELIVERIES.labels("failure")._value.get()
    dispatcher = Dispatcher(settings, redis_client)
    reader = RedisOffsetReader(kafka_bootstrap, settings.topic_segment_changes,
                               redis_client, "webhooks-test")
    try:
        drain(dispatcher, reader, 3)  # raised before: the restarted one died here again
    finally:
        reader.close()
        dispatcher.close()
    parked = [orjson.loads(e) for e in redis_client.lrange(DLQ_KEY, 0, -1)]
    assert [e["attempts"] for e in parked] == [3, 3], parked
    assert parked[1]["error"].startswith("UnicodeEncodeError"), parked
    assert orjson.loads(parked[1]["body"])["change_id"] == unsendable  # redrivable as is
    assert metrics.WEBHOOK_DELIVERIES.labels("failure")._value.get() == failures + 6
    assert sorted(receiver.applied) == [fine]  # the change after it still flows
    assert sum(int(v) for v in redis_client.hgetall("seg:offsets:webhooks-test").values()) == 3
