"""Webhook delivery of segment changes to the CMS.

Each change on ``segment-changes`` is POSTed as its JSON to every configured URL,
signed: ``X-Segstream-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>." + body)>`` (:func:`verify` is the receiver's check; reject old ``t`` to stop
replays). Failures (connection errors, timeouts, 408/429/5xx) are retried with
exponential backoff and full jitter (``webhook_backoff_s * 2^attempt``, capped at
``webhook_backoff_max_s``); other 4xx are final. After ``webhook_max_attempts`` the
delivery goes to the dead-letter list ``seg:webhooks:dlq`` (JSON: url, body,
attempts, last error) and ``segstream webhooks redrive`` sends them again. Offsets
advance only once every URL got the change or a dead letter, so nothing is lost
while a receiver is down: it is retried, then parked, never dropped.

Delivery is at least once: a receiver that stored a change but answered too late (a
timeout), a crash before the offsets commit, or a redrive sends it again. Every
request carries ``Idempotency-Key: <change_id>`` (the same on each retry, redrive and
republish; :func:`idempotency_key`), so a receiver drops repeats by that key. The body
holds the same ``change_id`` under the signature. A header is ASCII and user ids are any
Unicode, so the key is the id percent-encoded as UTF-8 (``%``, spaces, control and
non-ASCII characters; printable ASCII stays as it is): ``urllib.parse.unquote(key)`` is
the body's ``change_id``, one change has one key and two changes never share one.

A delivery that cannot even be sent (a request that cannot be built, any unexpected
error) is a failed attempt like a refused connection: retried, then dead-lettered. One
bad change never stops the dispatcher before its offsets commit.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import string
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from segstream.adapters.redis_keys import WEBHOOK_DLQ_KEY
from segstream.adapters.topic_reader import RedisOffsetReader
from segstream.config import Settings
from segstream.serving import metrics

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Segstream-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DLQ_KEY = WEBHOOK_DLQ_KEY
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
# printable ASCII but "%" (the escape itself: kept, "%C3%BC" and "ü" would share a key)
_KEY_SAFE = string.punctuation.replace("%", "")


def idempotency_key(body: bytes) -> str:
    """The ``Idempotency-Key`` of a delivery: the change's ``change_id`` (the same for
    every retry, redrive and republish of the change) percent-encoded to ASCII, else a
    hash of the body.

    >>> idempotency_key(b'{"change_id": "u1:10:0:20"}'), idempotency_key(b"{}")[:8]
    ('u1:10:0:20', '44136fa3')
    >>> idempotency_key('{"change_id": "ü 1:10:0:20"}'.encode())
    '%C3%BC%201:10:0:20'
    """
    try:
        change_id = orjson.loads(body).get("change_id")
    except (orjson.JSONDecodeError, AttributeError):
        change_id = None
    if not change_id:
        return hashlib.sha256(body).hexdigest()
    return quote(str(change_id), safe=_KEY_SAFE)


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes, *, tolerance_s: float = 300,
           now: float | None = None) -> bool:
    """The receiver's check: a valid signature over this body, made recently.

    >>> h = sign(b"k", b"{}", 100)
    >>> verify(b"k", h, b"{}", now=101), verify(b"k", h, b"{ }", now=101)
    (True, False)
    """
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, ts), f"t={ts},v1={parts.get('v1', '')}")


class Dispatcher:
    def __init__(self, settings: Settings, redis: Any, *,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        if settings.webhook_urls and settings.webhook_secret is None:
            raise ValueError("webhook_urls are set but webhook_secret is not")
        self.settings = settings
        self.redis = redis
        self.urls = list(settings.webhook_urls)
        secret = settings.webhook_secret
        self.secret = secret.get_secret_value().encode() if secret else b""
        self.client = httpx.Client(timeout=settings.webhook_timeout_s)
        self.sleep = sleep
        self.rng = rng or random.Random()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
        cap = min(self.settings.webhook_backoff_max_s,
                  self.settings.webhook_backoff_s * 2 ** attempt)
        return self.rng.uniform(0, cap)

    def attempt(self, url: str, body: bytes, key: str | None = None) -> str | None:
        """One POST; None on success, else the error (prefixed ``final:`` if not retryable)."""
        start = time.perf_counter()
        try:
            headers = {"Content-Type": "application/json",
                       IDEMPOTENCY_HEADER: key or idempotency_key(body),
                       SIGNATURE_HEADER: sign(self.secret, body, int(time.time()))}
            r = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a request that cannot be built: a failed attempt, retried
            # and parked like the rest; raised, it would stop the dispatcher before its
            # offsets commit, and the restarted one would die on the same change forever
            log.warning("could not send a webhook to %s: %r", url, exc)
            return f"{type(exc).__name__}: {exc}"
        finally:
            metrics.WEBHOOK_LATENCY.observe(time.perf_counter() - start)
        if r.status_code < 300:
            return None
        if r.status_code in RETRYABLE:
            return f"HTTP {r.status_code}"
        return f"final: HTTP {r.status_code}"

    def deliver(self, url: str, body: bytes) -> bool:
        """Deliver with retries; dead-letter and return False when out of attempts."""
        error = None
        attempts = 0
        key = idempotency_key(body)
        for attempt in range(self.settings.webhook_max_attempts):
            attempts = attempt + 1
            if attempt:
                metrics.WEBHOOK_RETRIES.inc()
                self.sleep(self.backoff(attempt - 1))
            error = self.attempt(url, body, key)
            if error is None:
                metrics.WEBHOOK_DELIVERIES.labels("success").inc()
                return True
            metrics.WEBHOOK_DELIVERIES.labels("failure").inc()
            if error.startswith("final:"):
                break
        text = body.decode(errors="replace")  # a stray non-UTF-8 record: parked, not a crash
        self.redis.rpush(DLQ_KEY, orjson.dumps({"url": url, "body": text,
                                                "attempts": attempts, "error": error,
                                                "dead_at": time.time()}))
        metrics.WEBHOOK_DEAD_LETTERS.inc()
        log.warning("dead-lettered change %s to %s after %d attempts: %s (it waits in %s "
                    "for `segstream webhooks redrive`)", key, url, attempts, error, DLQ_KEY)
        return False

    def run(self, reader: RedisOffsetReader, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_once(reader)

    def run_once(self, reader: RedisOffsetReader, timeout_ms: int = 500) -> int:
        """Deliver one polled batch to every URL, then commit its offsets."""
        records = reader.poll(timeout_ms)
        for r in records:
            for url in self.urls:
                if r.value:
                    self.deliver(url, r.value)
        if records:
            self.redis.hset(reader.key, mapping=reader.commit_fields(records))
        return len(records)

    def redrive(self) -> tuple[int, int]:
        """Send every dead letter again (each with a fresh set of attempts).

        Returns (delivered, still dead). The head entry is read, delivered (or re-parked
        at the tail by :meth:`deliver`), and only then removed: a crash mid-way
        repeats a delivery, never loses one.
        """
        delivered = failed = 0
        for _ in range(self.redis.llen(DLQ_KEY)):
            raw = self.redis.lindex(DLQ_KEY, 0)
            if raw is None:
                break
            entry = orjson.loads(raw)
            if self.deliver(entry["url"], entry["body"].encode()):
                delivered += 1
            else:
                failed += 1
            self.redis.lpop(DLQ_KEY)
        return delivered, failed

    def close(self) -> None:
        self.client.close()
