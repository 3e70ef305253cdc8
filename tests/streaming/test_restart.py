"""Kill -9 the job mid-stream and restart it from its checkpoint: no event lost, none
counted twice (the Redis records, evaluated at the log's last event, equal the batch
features of the whole log; their aggregates equal the batch's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.job import run
from tests.support.streaming import (
    assert_redis_equals_log,
    committed_batches,
    job_env,
    job_settings,
    produce,
)

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(
    spark: Any, kafka_bootstrap: str, stream_redis_url: str, tmp_path: Path
) -> None:
    log = generate(GeneratorConfig(users=30, events=2400, seed=21, malformed_rate=0.01,
                                   duplicate_rate=0.03, late_rate=0.01))
    settings = job_settings(tmp_path, kafka_bootstrap, stream_redis_url, "kill",
                            stream_max_records_per_trigger=300)
    produce(kafka_bootstrap, settings.topic_events, log, chunks=2)
    redis.Redis.from_url(stream_redis_url).flushdb()
    env = job_env(settings, kafka_bootstrap, stream_redis_url,
                  stream_max_records_per_trigger=300)
    job = subprocess.Popen([str(Path(sys.executable).parent / "segstream"), "stream",
                            "--trigger", "200ms"], env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while committed_batches(settings.checkpoint_dir) < 2:
            assert job.poll() is None, "the job exited before it was killed"
            assert time.monotonic() < deadline, "no batch committed within 240 s"
            time.sleep(0.2)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the job, its JVM and Python workers
        job.wait()
    done = committed_batches(settings.checkpoint_dir)
    assert done < -(-len(log.values) // 300), "the job finished before the kill"
    run(spark, settings, bootstrap=kafka_bootstrap, redis_url=stream_redis_url,
        available_now=True)
    assert_redis_equals_log(spark, redis.Redis.from_url(stream_redis_url), log, tmp_path,
                            settings)
