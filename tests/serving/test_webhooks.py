"""Segment-change detection and webhook delivery on the real broker and Redis, with
a local HTTP receiver that verifies every signature itself."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from segstream.config import Settings
from segstream.kafka import Producer, read_topic
from segstream.online_store import encode_feature_message
from segstream.stack import free_port
from serving import metrics
from serving.changes import ChangeDetector
from serving.model_holder import ModelHolder
from serving.model_source import StaticSource
from serving.offsets import RedisOffsetReader
from serving.webhooks import DLQ_KEY, SIGNATURE_HEADER, Dispatcher
from tests.serving.conftest import make_model, prototypes

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
SECRET = "whsec-test-0123456789"


class Receiver:
    """A CMS stand-in: checks the HMAC itself, answers 503 for the first ``fail`` calls."""

    def __init__(self, port: int, fail: int = 0) -> None:
        self.port, self.fail = port, fail
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                parts = dict(p.split("=", 1) for p in self.headers[SIGNATURE_HEADER].split(","))
                expect = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body,
                                  hashlib.sha256).hexdigest()
                receiver.calls += 1
                if not hmac.compare_digest(expect, parts["v1"]):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                elif receiver.calls <= receiver.fail:
                    self.send_response(503)
                else:
                    receiver.received.append(orjson.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for r in started:
        r.stop()


def _changes(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"change_id": f"u{i}:1:20", "user_id": f"u{i}", "from_segment": 10,
             "to_segment": 20} for i in range(start, start + n)]


def _produce(bootstrap: str, topic: str, values: list[bytes], keys: list[str]) -> None:
    p = Producer(bootstrap)
    for k, v in zip(keys, values, strict=True):
        p.send(topic, v, key=k.encode())
    p.flush()


def _drain(dispatcher: Dispatcher, reader: RedisOffsetReader, n: int) -> None:
    done, deadline = 0, time.monotonic() + 60
    while done < n:
        assert time.monotonic() < deadline, f"only {done} of {n} records consumed"
        done += dispatcher.run_once(reader, 300)


def test_detector_publishes_changes_with_hysteresis(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    kafka_bootstrap: str, redis_client: Any,
) -> None:
    features, changes = topic_factory("features"), topic_factory("changes")
    settings = settings_factory(topic_features=features, topic_segment_changes=changes,
                                segment_min_dwell_s=60)
    protos, s = prototypes(), 1000  # s: one second in ms
    updates = [  # (user, prototype row, event time)
        ("a", 0, 0), ("b", 0, 0),
        ("a", 1, 10 * s),   # 10 s in segment 10: under the 60 s dwell, held back
        ("a", 0, 20 * s),   # back in 10: nothing
        ("a", 1, 100 * s),  # 100 s in 10: published 10 -> 20
        ("a", 2, 130 * s),  # only 30 s in 20: held back
        ("b", 2, 200 * s),  # published 10 -> 30
    ]
    _produce(kafka_bootstrap, features,
             [encode_feature_message(u, protos[row], last_event_ms=t, updated_ms=t)
              for u, row, t in updates], [u for u, _, _ in updates])
    holder = ModelHolder(StaticSource(make_model(), "7"))
    holder.refresh()
    suppressed = metrics.SEGMENT_CHANGES_SUPPRESSED._value.get()
    detector = ChangeDetector(settings, holder, redis_client, kafka_bootstrap)
    seen, deadline = 0, time.monotonic() + 60
    while seen < len(updates):
        assert time.monotonic() < deadline
        records = detector.reader.poll(300)
        detector.process(records)
        seen += len(records)
    detector.close()
    got = sorted((orjson.loads(r.value) for r in read_topic(kafka_bootstrap, changes)),
                 key=lambda c: c["user_id"])
    assert [(c["user_id"], c["from_segment"], c["to_segment"]) for c in got] == [
        ("a", 10, 20), ("b", 10, 30)]
    assert got[0]["model_version"] == "7" and got[0]["persona"] == "Big spenders"
    assert got[0]["ts_ms"] == 100 * s
    assert metrics.SEGMENT_CHANGES_SUPPRESSED._value.get() == suppressed + 2
    # a restarted detector resumes from its offsets in Redis: nothing republished
    again = ChangeDetector(settings, holder, redis_client, kafka_bootstrap)
    assert again.reader.poll(500) == []
    again.close()


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
    _drain(dispatcher, reader, 5)
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
    _drain(dispatcher, reader, 4)
    assert redis_client.llen(DLQ_KEY) == 4
    assert metrics.WEBHOOK_DEAD_LETTERS._value.get() == dead + 4
    entry = orjson.loads(redis_client.lindex(DLQ_KEY, 0))
    assert entry["attempts"] == 3 and "ConnectError" in entry["error"]

    receivers.append(Receiver(port))  # the receiver comes back
    second = _changes(2, start=4)
    _produce(kafka_bootstrap, topic, [orjson.dumps(c) for c in second],
             [c["user_id"] for c in second])
    _drain(dispatcher, reader, 2)
    reader.close()
    assert dispatcher.redrive() == (4, 0)
    assert redis_client.llen(DLQ_KEY) == 0
    got = sorted(c["change_id"] for c in receivers[0].received)
    assert got == sorted(c["change_id"] for c in first + second)  # each exactly once
    assert receivers[0].bad_signatures == 0


def test_signature_helpers_reject_tampering_and_old_timestamps() -> None:
    from serving.webhooks import sign, verify

    header = sign(b"s", b'{"a":1}', 1000)
    assert verify(b"s", header, b'{"a":1}', now=1001)
    assert not verify(b"s", header, b'{"a":2}', now=1001)
    assert not verify(b"other", header, b'{"a":1}', now=1001)
    assert not verify(b"s", header, b'{"a":1}', now=5000)
    assert not verify(b"s", "garbage", b"{}", now=1000)
