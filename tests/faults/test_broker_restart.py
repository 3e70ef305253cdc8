"""The embedded broker stopped and restarted mid-stream (own tansu started and stopped by
PID). It keeps no log across restarts, so once the topics are created again the
checkpoint's offsets point into a log that is gone, even where the new log is longer.

* The Python Kafka source, driver side: a stopped broker is ``KafkaUnavailable`` naming
  it; a restarted one is ``DataLossError`` naming each partition (found by the topic's
  new id even where the offsets still look valid), before anything is read; with
  ``failOnDataLoss=false`` the batch reads the new log from its beginning.
* The job (``segstream stream`` as a subprocess) through a broker restart: it stops with
  the data-loss error and Redis keeps exactly the old log's features; run with the reset
  policy it reads the whole new log: Redis equals the batch features of both logs, in
  order (nothing lost, nothing counted twice).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from segstream.adapters.endpoints import Service
from segstream.adapters.kafka import KafkaUnavailable, ensure_topics
from segstream.sources.generator import GeneratorConfig, generate
from segstream.sources.stack import free_port, start_broker, stop_service
from tests.support.streaming import job_env

pytestmark = [pytest.mark.kafka]


class OwnBroker:
    """A tansu broker on a fixed port, restartable (its log is lost each time)."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.tmp, self.starts = free_port(), tmp, 0
        self.svc: Service | None = None
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        self.svc = start_broker(self.port, self.tmp / f"tansu-{self.starts}.log")

    def stop(self) -> None:
        if self.svc is not None:
            stop_service(self.svc)
            self.svc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[OwnBroker]:
    from segstream.streaming.kafka_source import close_clients

    own = OwnBroker(tmp_path)
    yield own
    close_clients(own.address)  # the readers' cached clients in this process
    own.stop()


def _reader(bootstrap: str, topic: str, **options: str) -> Any:
    from segstream.streaming.kafka_source import KafkaStreamReader

    return KafkaStreamReader({"kafka.bootstrap.servers": bootstrap, "subscribe": topic,
                              **options})


def _send(bootstrap: str, topic: str, n: int, tag: str) -> None:
    from segstream.adapters.kafka import Producer

    p = Producer(bootstrap)
    for i in range(n):
        p.send(topic, f'{{"i": {i}, "log": "{tag}"}}'.encode(), key=f"k{i % 5}".encode())
    p.close()


def test_source_reports_a_stopped_then_reset_broker_and_resets_on_request(
        broker: OwnBroker) -> None:
    from pyspark.sql.streaming.datasource import ReadAllAvailable

    from segstream.streaming.kafka_offsets import from_spark
    from segstream.streaming.kafka_source import DataLossError

    ensure_topics(broker.address, ["ev"], 2)
    _send(broker.address, "ev", 40, "old")
    reader = _reader(broker.address, "ev")
    start = reader.initialOffset()
    assert start["@topic_ids"]["ev"], "the offsets carry the topic's id"
    checkpoint = reader.latestOffset(start, ReadAllAvailable())  # the batch the job read
    assert sum(from_spark(checkpoint).values()) == 40

    broker.stop()
    t0 = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=f"broker at {broker.address} did not answer"):
        reader.latestOffset(checkpoint, ReadAllAvailable())
    assert time.monotonic() - t0 < 35  # kafka-python's request timeout at most

    broker.start()
    ensure_topics(broker.address, ["ev"], 2)  # as `segstream stack up` does
    _send(broker.address, "ev", 100, "new")  # longer than the old log on each partition
    with pytest.raises(DataLossError) as err:
        reader.latestOffset(checkpoint, ReadAllAvailable())
    message = str(err.value)
    assert "created again" in message and "failOnDataLoss=false" in message
    assert all(f"partition {p} at" in message for p in (0, 1))

    reset = _reader(broker.address, "ev", failOnDataLoss="false")
    end = reset.latestOffset(checkpoint, ReadAllAvailable())
    assert end["@reset_from"] == {"ev": {"0": 0, "1": 0}}
    assert end["@topic_ids"]["ev"] != checkpoint["@topic_ids"]["ev"]
    tasks = reset.partitions(checkpoint, end)
    ranges = sorted((r.partition, r.start, r.end) for t in tasks for r in t.ranges)
    # two partitions, as created: no client of the source re-created `ev` on its own
    # (with the broker's default partition count) before `stack up` did
    assert [r[:2] for r in ranges] == [(0, 0), (1, 0)], ranges
    assert sum(r[2] for r in ranges) == 100
    rows = [row for t in tasks for b in reset.read(t) for row in b.to_pylist()]
    assert len(rows) == 100 and all(b'"new"' in r["value"] for r in rows)
    # the next batch goes on from there: no loss is found again
    assert "@reset_from" not in reset.latestOffset(end, ReadAllAvailable())


def _produce_log(bootstrap: str, topic: str, log: Any) -> None:
    """Send a generated log in order, keyed as generated, and close the client (a
    lingering one reconnects to the restarted broker)."""
    from segstream.adapters.kafka import Producer

    p = Producer(bootstrap)
    for key, value in zip(log.keys, log.values, strict=True):
        p.send(topic, value, key=key)
    p.close()


def _committed_rows(checkpoint: Path) -> int:
    """Records up to the end offsets of the newest committed batch."""
    import json

    from segstream.streaming.kafka_offsets import from_spark

    commits = sorted(int(p.name) for p in (checkpoint / "commits").glob("[0-9]*"))
    if not commits:
        return 0
    last = (checkpoint / "offsets" / str(commits[-1])).read_text().strip().splitlines()[-1]
    return sum(from_spark(json.loads(last)).values())


def _job(env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with open(out, "ab") as f:
        return subprocess.Popen([str(Path(sys.executable).parent / "segstream"), "stream",
                                 "--trigger", "200ms"], env=env, start_new_session=True,
                                stdout=f, stderr=subprocess.STDOUT)


def _wait_exit(job: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        return job.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        raise AssertionError(f"the job did not stop within {timeout_s:.0f} s") from None


@pytest.mark.spark
@pytest.mark.redis
@pytest.mark.slow  # a job subprocess (Spark start-up) and a second run: ~1 min
def test_job_through_a_broker_restart_stops_on_data_loss_then_resets_losing_nothing(
        broker: OwnBroker, redis_server: Any, spark: Any, tmp_path: Path) -> None:
    from segstream.sources.generator import DEFAULT_START
    from segstream.streaming.batch import compute_features_pandas
    from segstream.streaming.job import run
    from tests.support.streaming import assert_redis_equals_batch, job_settings

    settings = job_settings(tmp_path, broker.address, redis_server.url, "brk",
                            stream_max_records_per_trigger=300)
    old = generate(GeneratorConfig(users=20, events=600, seed=41, days=5))
    # the new log: later events of the same users, more of them than the old log had
    # on every partition, so the offsets alone would not show that the log changed
    new = generate(GeneratorConfig(users=20, events=1800, seed=42, days=5,
                                   start="2026-10-08T00:00:00Z"))
    assert DEFAULT_START < "2026-10-08"
    _produce_log(broker.address, settings.topic_events, old)
    env = job_env(settings, broker.address, redis_server.url,
                  stream_max_records_per_trigger=300)
    out = tmp_path / "job.out"
    job = _job(env, out)
    try:
        deadline = time.monotonic() + 240
        while _committed_rows(settings.checkpoint_dir) < len(old.values):
            assert job.poll() is None, out.read_text()[-3000:]
            assert time.monotonic() < deadline, "the old log was not processed in 240 s"
            time.sleep(0.2)
        broker.stop()  # mid-stream: the job keeps polling
        broker.start()  # an empty broker: the log is gone
        ensure_topics(broker.address, [settings.topic_events, settings.topic_dlq,
                                       settings.topic_features], 3)  # `stack up`
        _produce_log(broker.address, settings.topic_events, new)
        code = _wait_exit(job, 120)
        if "DataLossError" not in out.read_text():
            # it stopped on the outage itself (a poll while the broker was down): say so
            # clearly, and a restart (a supervisor's) meets the data loss
            assert "KafkaUnavailable" in out.read_text() or "does not exist" in \
                out.read_text(), out.read_text()[-3000:]
            job = _job(env, out)
            code = _wait_exit(job, 240)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    text = out.read_text()
    assert code != 0
    error = [line for line in text.splitlines() if line.startswith("error:")][-1]
    assert "DataLossError" in error and settings.topic_events in error, error
    assert "created again" in text and "failOnDataLoss=false" in text
    old_path = tmp_path / "old.jsonl"
    old.write_jsonl(old_path)
    client = redis.Redis.from_url(redis_server.url)
    # stopped before reading: Redis holds the old log's features, none of the new one's
    assert_redis_equals_batch(client, compute_features_pandas(spark, old_path, settings),
                              settings)

    # the reset policy: stream_fail_on_data_loss=false reads the new log from its start
    settings = settings.model_copy(update={"stream_fail_on_data_loss": False})
    run(spark, settings, bootstrap=broker.address, redis_url=redis_server.url,
        available_now=True)
    both = tmp_path / "both.jsonl"
    both.write_bytes(old_path.read_bytes() + b"".join(v + b"\n" for v in new.values))
    # the whole new log after the old one: nothing lost, nothing counted twice
    assert_redis_equals_batch(client, compute_features_pandas(spark, both, settings),
                              settings)


def test_a_broker_too_slow_for_a_minute_is_waited_for_not_a_failed_batch(
        broker: OwnBroker, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The 10-minute soak saturated the embedded broker: a fetch made no progress for
    60 s, the reader raised, and the job stopped while every record was still in the
    log. Now a stalled read checks the log: records still there, it waits (and says so).
    Here the broker is frozen (SIGSTOP) past the stall time, then resumed; the stall
    time is cut to 1 s so the test is quick."""
    import os
    import signal
    import threading

    import segstream.streaming.kafka_source as ks
    from segstream.adapters.kafka import Producer, ensure_topics

    ensure_topics(broker.address, ["warm", "slow"], 1)
    producer = Producer(broker.address)
    for i in range(100):
        producer.send("slow", f"r{i}".encode())
    producer.send("warm", b"w")
    producer.close()
    monkeypatch.setattr(ks, "STALL_TIMEOUT_S", 1.0)
    # the reader's cached consumer of partition 0, connected while the broker answers;
    # another topic, so nothing of "slow" is prefetched before the broker freezes
    first = list(ks.read_range(broker.address, ks.KafkaRange("warm", 0, 0, 1)))
    assert sum(b.num_rows for b in first) == 1
    assert broker.svc is not None and broker.svc.pid is not None
    pid = broker.svc.pid
    os.kill(pid, signal.SIGSTOP)
    resume = threading.Timer(3.0, os.kill, (pid, signal.SIGCONT))
    resume.start()
    try:
        with caplog.at_level("WARNING", logger="segstream.stream"):
            batches = list(ks.read_range(broker.address, ks.KafkaRange("slow", 0, 10, 100)))
    finally:
        resume.cancel()
        os.kill(pid, signal.SIGCONT)
    assert [v.as_py() for b in batches for v in b.column("value")] == [
        f"r{i}".encode() for i in range(10, 100)]
    assert any("the broker is slow; waiting" in r.getMessage() for r in caplog.records)
