"""Redis goes away while the stream runs.

* Down for a few seconds: the batch in flight retries its writes (``stream_redis_retry_s``)
  and goes through when Redis is back; nothing is lost or counted twice.
* Down for longer than that, stopped or hung (SIGSTOP: the port open, no answer): the
  job stops with an error naming Redis and what to do, commits nothing of the failed
  batch, and a restart resumes from the checkpoint.

Each test has its own redis-server (``redis_server``, not the session one) with an
append-only file, stopped and restarted on the same port and directory, so the data
survives as it would on a persistent Redis. Redis == the batch features of the whole
log, at the end.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from segstream.sources.generator import GeneratedLog, GeneratorConfig, generate
from segstream.streaming.job import StreamFailed, run
from tests.support.servers import OwnRedis
from tests.support.streaming import (
    assert_redis_equals_log,
    committed_batches,
    job_settings,
    produce,
)

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def _log() -> GeneratedLog:
    return generate(GeneratorConfig(users=25, events=1500, seed=31, duplicate_rate=0.03,
                                    late_rate=0.01))


def test_redis_down_for_seconds_mid_stream_is_retried_and_nothing_is_lost(
        spark: Any, kafka_bootstrap: str, redis_server: OwnRedis, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    log = _log()
    settings = job_settings(tmp_path, kafka_bootstrap, redis_server.url, "redis-blip",
                            stream_max_records_per_trigger=300, stream_redis_retry_s=120)
    produce(kafka_bootstrap, settings.topic_events, log, chunks=3)
    outage: dict[str, float] = {}
    retrying = threading.Event()

    class SeesRetries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying" in record.getMessage():
                retrying.set()

    def blip() -> None:
        """After the first committed batch: down until a batch has retried (not a fixed
        time, which Spark's own work could swallow), then up again."""
        deadline = time.monotonic() + 180
        while committed_batches(settings.checkpoint_dir) < 1:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        redis_server.stop()
        outage["down"] = time.monotonic()
        retrying.wait(timeout=120)
        time.sleep(1)  # a second retry fails too
        redis_server.start()
        outage["up"] = time.monotonic()

    handler = SeesRetries(level=logging.WARNING)
    logging.getLogger("segstream.stream").addHandler(handler)

    thread = threading.Thread(target=blip, daemon=True)
    thread.start()
    with caplog.at_level("WARNING", logger="segstream.stream"):
        run(spark, settings, bootstrap=kafka_bootstrap, redis_url=redis_server.url,
            available_now=True)
    thread.join(timeout=30)
    logging.getLogger("segstream.stream").removeHandler(handler)
    assert "up" in outage, "the outage never happened: the stream ended first"
    assert retrying.is_set()
    assert committed_batches(settings.checkpoint_dir) >= 4  # batches after the outage too
    messages = [r.getMessage() for r in caplog.records]
    assert any("Redis unreachable" in m and "retrying" in m for m in messages), messages
    assert any("Redis is back" in m for m in messages), messages
    assert_redis_equals_log(spark, redis.Redis.from_url(redis_server.url), log, tmp_path,
                            settings)


@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_redis_down_longer_than_the_retry_stops_the_job_and_a_restart_resumes(
        how: str, spark: Any, kafka_bootstrap: str, redis_server: OwnRedis, tmp_path: Path
        ) -> None:
    """``hung``: SIGSTOP, the server keeps its port and never answers; the sink's socket
    timeout turns that into an error (without it the batch would wait forever)."""
    log = _log()
    settings = job_settings(tmp_path, kafka_bootstrap, redis_server.url, f"redis-{how}",
                            stream_max_records_per_trigger=600, stream_redis_retry_s=2)
    half = len(log.values) // 2
    first = GeneratedLog(values=log.values[:half], keys=log.keys[:half])
    produce(kafka_bootstrap, settings.topic_events, first)
    run(spark, settings, bootstrap=kafka_bootstrap, redis_url=redis_server.url,
        available_now=True)
    committed = committed_batches(settings.checkpoint_dir)
    if how == "stopped":
        redis_server.stop()
    else:
        assert redis_server.svc is not None and redis_server.svc.pid is not None
        os.kill(redis_server.svc.pid, signal.SIGSTOP)
    rest = GeneratedLog(values=log.values[half:], keys=log.keys[half:])
    produce(kafka_bootstrap, settings.topic_events, rest)
    started = time.monotonic()
    # the sink's own error, not Spark's wrapping of it (what `segstream stream` prints)
    with pytest.raises(StreamFailed, match=r"^the streaming query failed: RuntimeError: "
                       r"Redis unreachable for 2 s") as failed:
        run(spark, settings, bootstrap=kafka_bootstrap, redis_url=redis_server.url,
            available_now=True)
    assert "restart the job when Redis is back" in str(failed.value)
    assert time.monotonic() - started < 120
    assert committed_batches(settings.checkpoint_dir) == committed  # nothing committed
    if how == "stopped":
        redis_server.start()
    else:
        assert redis_server.svc is not None and redis_server.svc.pid is not None
        os.kill(redis_server.svc.pid, signal.SIGCONT)
    run(spark, settings, bootstrap=kafka_bootstrap, redis_url=redis_server.url,
        available_now=True)
    assert_redis_equals_log(spark, redis.Redis.from_url(redis_server.url), log, tmp_path,
                            settings)
