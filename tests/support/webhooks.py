"""Webhook helpers: a local receiver that verifies every HMAC signature itself,
`features` messages as the streaming job writes them, and draining a dispatcher."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from segstream.adapters.kafka import Producer
from segstream.adapters.online_store import HEADER_UPDATED
from segstream.adapters.topic_reader import RedisOffsetReader
from segstream.core.aggregates import encode
from segstream.serving.webhooks import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, Dispatcher
from tests.support.archetypes import PARAMS

WEBHOOK_SECRET = "whsec-test-0123456789"
T0 = 1_780_000_000_000  # 2026-05-28: the stream's event times start here


class Receiver:
    """A CMS stand-in on loopback: checks the HMAC itself (401 to a bad one), answers 503
    to the first ``fail`` calls, and keeps every delivery it stored: ``received`` (the
    bodies) and ``deliveries`` ((``Idempotency-Key``, body), repeats too). It applies a
    change only the first time its key is seen (``applied``: key -> body). The first
    ``slow_first`` stored deliveries are answered after ``slow_s`` (past the sender's
    timeout), so the sender retries a change that was in fact stored."""

    def __init__(self, port: int, fail: int = 0, secret: str = WEBHOOK_SECRET, *,
                 slow_first: int = 0, slow_s: float = 0.0) -> None:
        self.port, self.fail = port, fail
        self.received: list[dict[str, Any]] = []
        self.deliveries: list[tuple[str, dict[str, Any]]] = []  # (key, body), repeats too
        self.applied: dict[str, dict[str, Any]] = {}  # key -> body, first time only
        self.bad_signatures = 0
        self.calls = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                parts = dict(p.split("=", 1) for p in self.headers[SIGNATURE_HEADER].split(","))
                expect = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body,
                                  hashlib.sha256).hexdigest()
                with receiver.lock:
                    receiver.calls += 1
                    calls = receiver.calls
                if not hmac.compare_digest(expect, parts["v1"]):
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self.send_response(401)
                elif calls <= receiver.fail:
                    self.send_response(503)
                else:
                    key, change = self.headers[IDEMPOTENCY_HEADER], orjson.loads(body)
                    with receiver.lock:
                        receiver.received.append(change)
                        receiver.deliveries.append((key, change))
                        receiver.applied.setdefault(key, change)
                        slow = len(receiver.deliveries) <= slow_first
                    if slow:
                        time.sleep(slow_s)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def produce_records(bootstrap: str, topic: str, records: list[tuple[str, Any]]) -> None:
    """`features` messages as the streaming job writes them: key = user id, value = the
    aggregates' bytes, header ``upd``."""
    p = Producer(bootstrap)
    for user, agg in records:
        p.send(topic, encode(agg, PARAMS)[0], key=user.encode(),
               headers={HEADER_UPDATED: str(int(agg["last_ms"])).encode()})
    p.flush()


def drain(dispatcher: Dispatcher, reader: RedisOffsetReader, n: int) -> None:
    """Run the dispatcher until it has consumed ``n`` records (60 s at the most)."""
    done, deadline = 0, time.monotonic() + 60
    while done < n:
        assert time.monotonic() < deadline, f"only {done} of {n} records consumed"
        done += dispatcher.run_once(reader, 300)
