"""Redis goes away while the stream runs (issue 11, fault tests).

* Down for a few seconds: the batch in flight retries its writes (``stream_redis_retry_s``)
  and goes through when Redis is back; nothing is lost or counted twice.
* Down for longer than that, stopped or hung (SIGSTOP: the port open, no answer): the
  job stops with an error naming Redis and what to do, commits nothing of the failed
  batch, and a restart resumes from the checkpoint.

Each test has its own redis-server (not the session one), stopped with SHUTDOWN SAVE
and restarted on the same port and directory, so the data survives as it would on a
persistent Redis. Redis == the batch features of the whole log, at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from segstream.generator import GeneratedLog, GeneratorConfig, generate
from segstream.stack import Service, free_port, start_redis, stop_service
from streaming.batch import compute_features_pandas
from streaming.job import StreamFailed, run
from tests.streaming.conftest import produce
from tests.streaming.test_job import assert_redis_equals_batch, job_settings
from tests.streaming.test_restart import _committed_batches

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


class OwnRedis:
    """A redis-server of this test's, to stop and start again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.svc: Service | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.svc = start_redis(self.port, self.workdir, self.workdir / "redis.log")

    def stop(self) -> None:
        """SHUTDOWN SAVE: the data is on disk and reloaded by the next start."""
        assert self.svc is not None
        with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it exits
            redis.Redis.from_url(self.url).shutdown(save=True)
        stop_service(self.svc)
        self.svc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    yield server
    if server.svc is not None:
        stop_service(server.svc)


def _log() -> GeneratedLog:
    return generate(GeneratorConfig(users=25, events=1500, seed=31, duplicate_rate=0.03,
                                    late_rate=0.01))


def _assert_redis_equals_batch(spark: Any, log: GeneratedLog, tmp_path: Path, url: str,
                               settings: Any) -> None:
    path = tmp_path / "events.jsonl"
    log.write_jsonl(path)
    batch = compute_features_pandas(spark, path, settings)
    assert_redis_equals_batch(redis.Redis.from_url(url), batch, settings)


def test_redis_down_for_seconds_mid_stream_is_retried_and_nothing_is_lost(
        spark: Any, kafka_bootstrap: str, own_redis: OwnRedis, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    log = _log()
    settings = job_settings(tmp_path, kafka_bootstrap, own_redis.url, "redis-blip",
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
        while _committed_batches(settings.checkpoint_dir) < 1:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        own_redis.stop()
        outage["down"] = time.monotonic()
        retrying.wait(timeout=120)
        time.sleep(1)  # a second retry fails too
        own_redis.start()
        outage["up"] = time.monotonic()

    handler = SeesRetries(level=logging.WARNING)
    logging.getLogger("segstream.stream").addHandler(handler)

    thread = threading.Thread(target=blip, daemon=True)
    thread.start()
    with caplog.at_level("WARNING", logger="segstream.stream"):
        run(spark, settings, bootstrap=kafka_bootstrap, redis_url=own_redis.url,
            available_now=True)
    thread.join(timeout=30)
    logging.getLogger("segstream.stream").removeHandler(handler)
    assert "up" in outage, "the outage never happened: the stream ended first"
    assert retrying.is_set()
    assert _committed_batches(settings.checkpoint_dir) >= 4  # batches after the outage too
    messages = [r.getMessage() for r in caplog.records]
    assert any("Redis unreachable" in m and "retrying" in m for m in messages), messages
    assert any("Redis is back" in m for m in messages), messages
    _assert_redis_equals_batch(spark, log, tmp_path, own_redis.url, settings)


@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_redis_down_longer_than_the_retry_stops_the_job_and_a_restart_resumes(
        how: str, spark: Any, kafka_bootstrap: str, own_redis: OwnRedis, tmp_path: Path
        ) -> None:
    """``hung``: SIGSTOP, the server keeps its port and never answers; the sink's socket
    timeout turns that into an error (without it the batch would wait forever)."""
    log = _log()
    settings = job_settings(tmp_path, kafka_bootstrap, own_redis.url, f"redis-{how}",
                            stream_max_records_per_trigger=600, stream_redis_retry_s=2)
    half = len(log.values) // 2
    first = GeneratedLog(values=log.values[:half], keys=log.keys[:half])
    produce(kafka_bootstrap, settings.topic_events, first)
    run(spark, settings, bootstrap=kafka_bootstrap, redis_url=own_redis.url,
        available_now=True)
    committed = _committed_batches(settings.checkpoint_dir)
    if how == "stopped":
        own_redis.stop()
    else:
        assert own_redis.svc is not None and own_redis.svc.pid is not None
        os.kill(own_redis.svc.pid, signal.SIGSTOP)
    rest = GeneratedLog(values=log.values[half:], keys=log.keys[half:])
    produce(kafka_bootstrap, settings.topic_events, rest)
    started = time.monotonic()
    # the sink's own error, not Spark's wrapping of it (what `segstream stream` prints)
    with pytest.raises(StreamFailed, match=r"^the streaming query failed: RuntimeError: "
                       r"Redis unreachable for 2 s") as failed:
        run(spark, settings, bootstrap=kafka_bootstrap, redis_url=own_redis.url,
            available_now=True)
    assert "restart the job when Redis is back" in str(failed.value)
    assert time.monotonic() - started < 120
    assert _committed_batches(settings.checkpoint_dir) == committed  # nothing committed
    if how == "stopped":
        own_redis.start()
    else:
        assert own_redis.svc is not None and own_redis.svc.pid is not None
        os.kill(own_redis.svc.pid, signal.SIGCONT)
    run(spark, settings, bootstrap=kafka_bootstrap, redis_url=own_redis.url,
        available_now=True)
    _assert_redis_equals_batch(spark, log, tmp_path, own_redis.url, settings)
